//! The built-in lab's plan is pinned: `vpclab plan` (text and JSON) must match the
//! golden files byte for byte, so any change to what `up` would build shows up in review.
//! After an intended change, regenerate them with `VPCLAB_BLESS=1 cargo test --test plan_golden`.

use std::process::Command;

fn check(args: &[&str], golden: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_vpclab"))
        .args(args)
        .output()
        .expect("run vpclab plan");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = format!("{}/tests/golden/{golden}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("VPCLAB_BLESS").is_some() {
        std::fs::write(&path, &o.stdout).unwrap();
        return;
    }
    let want =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (VPCLAB_BLESS=1 creates it)"));
    if o.stdout != want {
        let got = String::from_utf8_lossy(&o.stdout);
        let want = String::from_utf8_lossy(&want);
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "`vpclab {}` differs from {path} at line {}:\n  got:  {}\n  want: {}\n(if intended: VPCLAB_BLESS=1 cargo test --test plan_golden)",
            args.join(" "),
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>")
        );
    }
}

#[test]
fn the_built_in_labs_plan_is_pinned() {
    check(&["plan"], "handson.plan.txt");
    check(&["plan", "--json"], "handson.plan.json");
}

#[test]
fn the_plan_is_deterministic() {
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_vpclab"))
            .args(["plan", "--json", "labs/scale-1000.yaml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .stdout
    };
    let a = run();
    assert!(a.len() > 100_000, "the 1,000-instance plan is big");
    assert_eq!(a, run());
}
