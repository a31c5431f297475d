//! `vpclab validate` against the corpus of invalid labs in `tests/invalid/` (one mistake each,
//! with the exact message it must produce), the labs with one warning in `tests/warnings/`, a lab
//! with several mistakes in `tests/invalid-multi/`, and every valid lab we ship.
//!
//! The expected diagnostics are the `# expect: LINE:COLUMN: error: message` lines at the top of
//! each file; see `tests/invalid/README.md`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The issue asks for at least this many single-mistake files.
const MIN_INVALID_FILES: usize = 40;

const EXPECT: &str = "# expect: ";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `*.yaml` files of a folder (relative to the crate root), sorted, as relative paths.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// The `# expect:` lines at the top of a file, without the prefix.
fn expectations(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    text.lines()
        .take_while(|l| l.starts_with(EXPECT))
        .map(|l| l[EXPECT.len()..].to_string())
        .collect()
}

/// Runs the built binary from the crate root, so paths print as given.
fn vpclab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpclab"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run vpclab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What is wrong with one single-mistake file's output, if anything.
fn check_single_error(file: &str) -> Result<(), String> {
    let exp = expectations(file);
    let [exp] = exp.as_slice() else {
        return Err(format!(
            "needs exactly one `{EXPECT}...` line as its first line, has {}",
            exp.len()
        ));
    };
    let expected = format!("{file}:{exp}");
    let out = vpclab(&["validate", file]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let actual = lines
        .iter()
        .find(|l| l.contains(": error: "))
        .copied()
        .unwrap_or("(no error line)");
    let mut problems = Vec::new();
    if actual != expected {
        problems.push(format!("expected: {expected}\n    actual:   {actual}"));
    }
    if out.status.success() {
        problems.push("exit code is 0".into());
    }
    if !stdout.is_empty() {
        problems.push(format!("stdout is not empty: {stdout:?}"));
    }
    if lines.first() != Some(&actual) {
        problems.push(format!(
            "the error is not the first line on stderr (first: {:?})",
            lines.first()
        ));
    }
    let after = lines
        .iter()
        .position(|l| *l == actual)
        .and_then(|i| lines.get(i + 1));
    if !after.is_some_and(|l| l.starts_with("  hint: ")) {
        problems.push(format!(
            "the error is not followed by a `  hint: ` line: {after:?}"
        ));
    }
    let errors = lines.iter().filter(|l| l.contains(": error: ")).count();
    let summary = format!("1 error in {file}");
    if errors != 1 || lines.last() != Some(&summary.as_str()) {
        problems.push(format!(
            "must report exactly 1 error and end with {summary:?}; stderr was:\n{stderr}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

fn fail_listing(what: &str, failures: &[(String, String)]) {
    if failures.is_empty() {
        return;
    }
    let list: Vec<String> = failures
        .iter()
        .map(|(f, why)| format!("  {f}\n    {why}"))
        .collect();
    panic!(
        "{} {what} differ from their `# expect:` line:\n{}",
        failures.len(),
        list.join("\n")
    );
}

#[test]
fn every_invalid_file_reports_exactly_its_one_error() {
    let files = yaml_files("tests/invalid");
    assert!(
        files.len() >= MIN_INVALID_FILES,
        "tests/invalid has {} lab files; at least {MIN_INVALID_FILES} are required",
        files.len()
    );
    let failures: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| check_single_error(f).err().map(|e| (f.clone(), e)))
        .collect();
    fail_listing("files in tests/invalid", &failures);
}

#[test]
fn every_invalid_file_is_named_for_a_unique_mistake() {
    // Two files expecting the very same diagnostic test the same thing twice.
    let mut seen = std::collections::HashMap::new();
    for f in yaml_files("tests/invalid") {
        if let Some(e) = expectations(&f).first()
            && let Some(prev) = seen.insert(e.clone(), f.clone())
        {
            panic!("{f} and {prev} expect the same diagnostic: {e}");
        }
    }
}

#[test]
fn warnings_are_reported_and_the_lab_still_validates() {
    let files = yaml_files("tests/warnings");
    assert!(!files.is_empty(), "tests/warnings has no lab files");
    let mut failures = Vec::new();
    for file in &files {
        let exp = expectations(file);
        assert_eq!(exp.len(), 1, "{file}: needs exactly one `{EXPECT}` line");
        assert!(
            exp[0].contains(": warning: "),
            "{file}: expects a warning, not {}",
            exp[0]
        );
        let expected = format!("{file}:{}", exp[0]);
        let out = vpclab(&["validate", file]);
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let mut problems = Vec::new();
        if lines.first() != Some(&expected.as_str()) {
            problems.push(format!(
                "expected: {expected}\n    actual:   {:?}",
                lines.first()
            ));
        }
        if !lines.get(1).is_some_and(|l| l.starts_with("  hint: ")) {
            problems.push(format!(
                "no `  hint: ` line after the warning: {:?}",
                lines.get(1)
            ));
        }
        if lines.len() != 2 {
            problems.push(format!(
                "expected only the warning and its hint on stderr:\n{stderr}"
            ));
        }
        if !out.status.success() {
            problems.push(format!("exit code {:?}, expected 0", out.status.code()));
        }
        if !text(&out.stdout).starts_with(&format!("{file}: ok: ")) {
            problems.push(format!(
                "no `ok` summary on stdout: {:?}",
                text(&out.stdout)
            ));
        }
        if !problems.is_empty() {
            failures.push((file.clone(), problems.join("\n    ")));
        }
    }
    fail_listing("files in tests/warnings", &failures);
}

#[test]
fn several_mistakes_are_all_reported_in_one_run() {
    let file = "tests/invalid-multi/several-mistakes.yaml";
    let expected: Vec<String> = expectations(file)
        .iter()
        .map(|e| format!("{file}:{e}"))
        .collect();
    assert!(
        expected.len() >= 6,
        "{file} should hold at least 6 mistakes, has {}",
        expected.len()
    );
    let out = vpclab(&["validate", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).is_empty(),
        "stdout: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{file}:")))
        .collect();
    assert_eq!(
        errors,
        expected,
        "{file}: the errors differ.\nexpected:\n{}\nactual:\n{}",
        expected.join("\n"),
        errors.join("\n")
    );
    // Each error has its hint, and they come in file order.
    let lines: Vec<&str> = stderr.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(": error: ") {
            assert!(
                lines.get(i + 1).is_some_and(|h| h.starts_with("  hint: ")),
                "no hint after {l}"
            );
        }
    }
    let positions: Vec<(u64, u64)> = errors
        .iter()
        .map(|l| {
            let mut it = l[file.len() + 1..].split(':');
            let line = it.next().unwrap().parse().unwrap();
            let col = it.next().unwrap().parse().unwrap();
            (line, col)
        })
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(
        positions, sorted,
        "errors are not sorted by line and column"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("{} errors in {file}", expected.len()).as_str())
    );
}

#[test]
fn json_output_matches_the_text_output() {
    let file = "tests/invalid/private-ip-vpc-router.yaml";
    let out = vpclab(&["validate", "--json", file]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", text(&out.stdout)));
    assert_eq!(v["file"], file);
    assert_eq!(v["valid"], false);
    let diags = v["diagnostics"].as_array().expect("diagnostics is a list");
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 27);
    assert_eq!(d["column"], 37);
    assert_eq!(
        d["message"],
        "private IP 10.0.2.1 is reserved for the VPC router of subnet `pub-c` (10.0.2.0/24)"
    );
    let hint = d["hint"].as_str().expect("the hint is a string");
    assert!(hint.contains("10.0.2.4 to 10.0.2.254"), "{hint}");
    // The same diagnostic as the text output's `# expect:` line.
    let exp = &expectations(file)[0];
    assert_eq!(
        format!(
            "{}:{}: error: {}",
            d["line"],
            d["column"],
            d["message"].as_str().unwrap()
        ),
        *exp
    );

    // A warning: valid, exit 0, the warning listed.
    let file = "tests/warnings/vpc-cidr-not-rfc1918.yaml";
    let out = vpclab(&["validate", "--json", file]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["diagnostics"][0]["severity"], "warning");
    assert_eq!(v["diagnostics"][0]["line"], 4);
}

#[test]
fn every_shipped_lab_validates() {
    let mut labs = yaml_files("labs");
    assert!(labs.iter().any(|l| l == "labs/handson.yaml"), "{labs:?}");
    labs.extend(yaml_files("tests/valid"));
    let mut failures = Vec::new();
    for lab in &labs {
        let out = vpclab(&["validate", lab]);
        let stdout = text(&out.stdout);
        if !out.status.success() || !stdout.starts_with(&format!("{lab}: ok: ")) {
            failures.push(format!(
                "{lab}: exit {:?}\n{stdout}{}",
                out.status.code(),
                text(&out.stderr)
            ));
        }
        // The corpus base must be clean, or every corpus file would carry its warning.
        if lab.starts_with("tests/valid/") && !out.stderr.is_empty() {
            failures.push(format!("{lab}: warnings:\n{}", text(&out.stderr)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_files_differ_from_the_base_by_one_edit() {
    // Keeps the corpus honest: a file that drifted far from the base may hide a second
    // mistake behind the first. One edit changes or adds one line.
    let base = std::fs::read_to_string(root().join("tests/valid/base.yaml")).unwrap();
    let base: Vec<&str> = base.lines().skip(1).collect();
    for file in yaml_files("tests/invalid") {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        let changed = if lines.len() == base.len() {
            lines.iter().zip(&base).filter(|(a, b)| a != b).count()
        } else {
            // An added line: everything else must match around it.
            let common_prefix = lines.iter().zip(&base).take_while(|(a, b)| a == b).count();
            let common_suffix = lines
                .iter()
                .rev()
                .zip(base.iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            lines.len().saturating_sub(common_prefix + common_suffix)
        };
        assert_eq!(
            changed, 1,
            "{file}: {changed} lines differ from tests/valid/base.yaml; one mistake per file"
        );
    }
}
