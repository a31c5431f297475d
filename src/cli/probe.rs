use crate::lab::{self, up::require_root};
use crate::probe;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Each expectation of the lab file runs as a real client inside the source node: \
ssh (ssh -i key ec2-user@host true), http and https (curl), dns (nslookup), ping, tcp (nc -z) and \
mysql. Exit code 0 only when every probe matched its expectation."
)]
pub struct Args {
    /// The lab (the only running lab, or `handson`, when omitted)
    name: Option<String>,
    /// Print {"probes": [...], "passed": N, "failed": N} as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("probe")?;
    let r = lab::running(a.name.as_deref())?;
    let rep = probe::run_all(&r)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", probe::render(&rep));
    }
    Ok(if rep.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
