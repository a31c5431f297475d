use crate::analyze::audit::{self, Audit};
use crate::lab;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  vpclab audit labs/public-db.yaml     (the write-up's public database: RDS.2, EC2.19, the internet reaching it)\n  vpclab audit                         (the built-in lab)\n  vpclab audit --lab handson --json\n\nExit status: 1 when a critical or high finding exists, 0 otherwise (for CI)."
)]
pub struct Args {
    /// Lab file (YAML); the built-in hands-on lab when omitted
    #[arg(conflicts_with = "lab")]
    file: Option<PathBuf>,
    /// Audit this running lab (the file it was started from)
    #[arg(long)]
    lab: Option<String>,
    /// Print the findings as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (lab, text, label) = match &a.lab {
        Some(name) => {
            let r = lab::running(Some(name))?;
            (r.file_lab, r.state.yaml, r.state.source)
        }
        None => {
            let Some(l) = super::load_lab(a.file.as_deref(), None)? else {
                return Ok(ExitCode::FAILURE);
            };
            let label = l.source.label();
            (l.lab, l.text, label)
        }
    };
    let plan = crate::plan::compile(&lab);
    let result = audit::audit(&lab, &plan, &text);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render(&label, &result));
    }
    Ok(if result.fails() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render(file: &str, r: &Audit) -> String {
    let mut s = String::new();
    for f in &r.findings {
        let at = match f.at {
            Some(l) => format!("{file}:{}:{}", l.line, l.column),
            None => file.to_string(),
        };
        s += &format!(
            "{at}: {} [{}] {}: {}\n  fix: {}\n",
            f.control,
            f.severity.as_str(),
            f.resource,
            f.message,
            f.fix
        );
    }
    let count = |sev| r.findings.iter().filter(|f| f.severity == sev).count();
    s += &format!(
        "{} finding{}: {} critical, {} high, {} medium; passed: {}\n",
        r.findings.len(),
        if r.findings.len() == 1 { "" } else { "s" },
        count(audit::Severity::Critical),
        count(audit::Severity::High),
        count(audit::Severity::Medium),
        r.passed.join(", ")
    );
    for (c, why) in &r.not_applicable {
        s += &format!("not applicable: {c}: {why}\n");
    }
    s
}
