use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The lab to supervise
    lab: String,
}

/// Started by `up`, not by people: serves the lab's DNS, metadata and health checks.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::lab::supervisor::run(&a.lab)?;
    Ok(ExitCode::SUCCESS)
}
