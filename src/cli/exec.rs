use crate::lab::{self, hosts, state, up::require_root};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sudo vpclab exec web -- ip -br addr\n  sudo vpclab exec app -- curl -s http://example-web.example/\n  sudo vpclab exec vpc-router -- ip rule"
)]
pub struct Args {
    /// The lab (the only running lab, or `handson`, when omitted)
    #[arg(long)]
    lab: Option<String>,
    /// The node: an instance, database server, internet host, gateway or `vpc-router`
    node: String,
    /// The command and its arguments (after `--`)
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("exec")?;
    let r = lab::running(a.lab.as_deref())?;
    let env = hosts::env(
        &r.plan,
        &state::dir(&r.lab.name),
        &a.node,
        hosts::live_template(&r.state),
    )?;
    let mut cmd = env.command(&a.command[0])?;
    cmd.args(&a.command[1..]);
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("run `{}` on {}: {e}", a.command[0], a.node))?;
    // Pass the exit code through; a signal becomes 128 + signal, as shells report it.
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
