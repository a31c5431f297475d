use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The lab to supervise
    lab: String,
}

/// Started by `up`, and by the supervisor itself as its standby, not by people: serves
/// the lab's DNS, metadata and health checks, or waits to take over doing so.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::lab::supervisor::run(&a.lab)?;
    Ok(ExitCode::SUCCESS)
}
