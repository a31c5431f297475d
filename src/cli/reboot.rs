use crate::lab::{self, control, database, up::require_root};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "The write-up's \"Reboot\" with \"Reboot with failover?\" checked:\n  \
sudo vpclab reboot my-database --failover\n\
The standby is promoted, the endpoint's DNS record flips to it, and the old primary comes back as the \
new standby. Without --failover the primary restarts in place: an outage, no flip."
)]
pub struct Args {
    /// The RDS instance (database name in the lab file)
    database: String,
    /// Fail over to the standby in the other AZ while the primary reboots
    #[arg(long)]
    failover: bool,
    /// The lab (the only running lab, or `handson`, when omitted)
    #[arg(long)]
    lab: Option<String>,
    /// Print the events as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("reboot")?;
    let r = lab::running(a.lab.as_deref())?;
    if r.lab.database(&a.database).is_none() {
        let names: Vec<&str> = r.lab.databases.iter().map(|d| d.name.as_str()).collect();
        anyhow::bail!(
            "lab `{}` has no database `{}`\n  hint: its databases are {}",
            r.lab.name,
            a.database,
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    let resp = control::request(
        &r.lab.name,
        &control::Request::Reboot {
            database: a.database.clone(),
            failover: a.failover,
        },
        Duration::from_secs(120),
    )?;
    let events: Vec<database::Event> =
        serde_json::from_value(resp.data["events"].clone()).unwrap_or_default();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        let t0 = events.first().map(|e| e.at).unwrap_or(0.0);
        for e in &events {
            println!(
                "{}  +{:>6.3}s  {}",
                database::fmt_time(e.at),
                e.at - t0,
                e.message
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
