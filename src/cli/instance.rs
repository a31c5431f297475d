use crate::lab::{instance, up::require_root};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The instance
    instance: String,
    /// The lab (the only running lab, or `handson`, when omitted)
    #[arg(long)]
    lab: Option<String>,
    /// Print the change as JSON
    #[arg(long)]
    json: bool,
}

fn show(c: &instance::Change, json: bool, verb: &str) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(c)?);
        return Ok(ExitCode::SUCCESS);
    }
    let ip =
        |v: Option<std::net::Ipv4Addr>| v.map(|i| i.to_string()).unwrap_or_else(|| "none".into());
    match verb {
        "stopped" => println!(
            "instance {} stopped; public IP {} released",
            c.instance,
            ip(c.public_ip_before)
        ),
        _ => println!(
            "instance {} started; public IP {}{}",
            c.instance,
            ip(c.public_ip_after),
            c.public_dns_after
                .as_deref()
                .map(|d| format!(", public DNS {d}"))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(a: Args) -> anyhow::Result<ExitCode> {
    require_root("stop")?;
    let c = instance::stop(a.lab.as_deref(), &a.instance)?;
    show(&c, a.json, "stopped")
}

pub fn start(a: Args) -> anyhow::Result<ExitCode> {
    require_root("start")?;
    let c = instance::start(a.lab.as_deref(), &a.instance)?;
    show(&c, a.json, "started")
}
