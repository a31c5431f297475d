use crate::lab::{progress::Progress, summary, up};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Lab file (YAML); the built-in hands-on lab when omitted
    file: Option<std::path::PathBuf>,
    /// Run this lab under another name (a second copy next to the first)
    #[arg(long)]
    name: Option<String>,
    /// Print no progress and no summary
    #[arg(long, short)]
    quiet: bool,
    /// Leave the database servers off (their namespaces and addresses still exist)
    #[arg(long)]
    no_databases: bool,
    /// Build the network only: no key pairs, services, databases or supervisor (DNS,
    /// metadata) — what the fabric benchmarks measure
    #[arg(long, conflicts_with = "no_databases")]
    fabric_only: bool,
    /// How often the supervisor health-checks each database primary, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = crate::lab::state::DEFAULT_HEALTH_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    health_interval: u64,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = &a.name {
        crate::topology::check_lab_name(n)
            .map_err(|why| anyhow::anyhow!("--name `{n}` is not a valid lab name: {why}"))?;
    }
    let Some(loaded) = super::load_lab(a.file.as_deref(), a.name.as_deref())? else {
        return Ok(ExitCode::FAILURE);
    };
    let mut progress = Progress::new(!a.quiet);
    progress.note(&format!(
        "vpclab: bringing up lab `{}` from {}",
        loaded.lab.name,
        loaded.source.label()
    ));
    let opts = up::Options {
        services: !a.fabric_only,
        databases: !a.no_databases && !a.fabric_only,
        health_interval_ms: a.health_interval,
    };
    let out = up::up(&loaded, &opts, &mut progress)?;
    if !a.quiet {
        println!("Lab `{}` is up ({:.2} s).\n", loaded.lab.name, out.seconds);
        print!("{}", summary::render(&loaded.lab, &out.plan));
        let dir = crate::lab::state::dir(&loaded.lab.name);
        for k in &loaded.lab.key_pairs {
            let key = crate::services::ssh::key_path(&dir, k);
            if key.exists() {
                println!(
                    "\nKey pair {k}: {} (mode 0600, like the console's download)",
                    key.display()
                );
            }
        }
        print!("\n{}", summary::try_hints(&loaded.lab));
    }
    Ok(ExitCode::SUCCESS)
}
