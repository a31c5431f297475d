use crate::lab::{down, up::require_root};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The lab to remove (the only running lab, or `handson`, when omitted)
    name: Option<String>,
    /// Remove every vpclab lab on this machine
    #[arg(long, conflicts_with = "name")]
    all: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("down")?;
    let labs = if a.all {
        down::known_labs()
    } else {
        match a.name {
            Some(n) => vec![n],
            None => match down::known_labs().as_slice() {
                [] => vec![crate::topology::BUILTIN_NAME.to_string()],
                [one] => vec![one.clone()],
                many if many.iter().any(|l| l == crate::topology::BUILTIN_NAME) => {
                    vec![crate::topology::BUILTIN_NAME.to_string()]
                }
                many => anyhow::bail!(
                    "several labs are up ({}); say which, or use --all",
                    many.join(", ")
                ),
            },
        }
    };
    let reports: Vec<down::DownReport> = labs.iter().map(|l| down::down(l)).collect();
    let failed = reports.iter().any(|r| !r.failures.is_empty());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        if reports.is_empty() {
            println!("no vpclab lab on this machine");
        }
        for r in &reports {
            if r.namespaces == 0 && r.processes == 0 && !r.state_dir && r.failures.is_empty() {
                println!("lab `{}`: nothing to remove (already down)", r.lab);
                continue;
            }
            println!(
                "lab `{}`: removed {} namespaces, stopped {} processes{}",
                r.lab,
                r.namespaces,
                r.processes,
                if r.state_dir {
                    ", removed its state dir"
                } else {
                    ""
                }
            );
            for f in &r.failures {
                eprintln!("vpclab: error: {f}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
