use crate::drill::{self, Trigger, az};
use crate::lab::up::require_root;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Fail the database over while a writer on `web` inserts rows through the endpoint;
    /// report the RTO, acknowledged and lost writes, the endpoint before and after
    Failover {
        /// Kill -9 the primary's server instead of rebooting it with failover
        #[arg(long, conflicts_with = "az")]
        kill: bool,
        /// Take the primary's availability zone down instead (restored afterwards)
        #[arg(long)]
        az: Option<String>,
        /// The Multi-AZ database (the lab's only one when omitted)
        #[arg(long)]
        db: Option<String>,
        /// The lab (the only running lab, or `handson`, when omitted)
        #[arg(long)]
        lab: Option<String>,
        /// Print the report as JSON (rto_ms, acked, lost, before, after, timeline, ...)
        #[arg(long)]
        json: bool,
    },
    /// Take a whole availability zone down and report what survived
    AzOutage {
        /// The availability zone, e.g. ap-northeast-2c
        az: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Bring the availability zones taken down by `az-outage` back
    Restore {
        #[arg(long)]
        lab: Option<String>,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("drill")?;
    match a.what {
        What::Failover {
            kill,
            az,
            db,
            lab,
            json,
        } => {
            let trigger = match (kill, az) {
                (true, _) => Trigger::Kill,
                (_, Some(az)) => Trigger::Az(az),
                _ => Trigger::Reboot,
            };
            let rep = drill::failover(lab.as_deref(), db.as_deref(), trigger)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                print!("{}", drill::render(&rep));
            }
            Ok(if rep.lost == 0 && rep.two_writable == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        What::AzOutage {
            az: zone,
            lab,
            json,
        } => {
            let rep = az::drill(lab.as_deref(), &zone)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                print!("{}", az::render(&rep));
            }
            Ok(ExitCode::SUCCESS)
        }
        What::Restore { lab } => {
            let r = crate::lab::running(lab.as_deref())?;
            let (back, events) = az::restore(&r.lab.name, None)?;
            println!("back up: {}", back.join(", "));
            for e in events {
                println!("{}  {}", crate::lab::database::fmt_time(e.at), e.message);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
