use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    run: u64,
    #[arg(long)]
    option_file: std::path::PathBuf,
    /// Pause between writes, in milliseconds
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
}

/// Started by `drill failover` inside an instance, not by people.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::drill::writer::run(
        &a.host,
        a.port,
        &a.option_file,
        a.run,
        std::time::Duration::from_millis(a.pause_ms),
    )?;
    Ok(ExitCode::SUCCESS)
}
