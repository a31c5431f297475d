use crate::kernel::netns;
use crate::lab::{down, state};
use crate::plan::names::namespace_prefix;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print the list as JSON
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Entry {
    lab: String,
    phase: Option<state::Phase>,
    source: Option<String>,
    namespaces: usize,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let all = netns::list();
    let entries: Vec<Entry> = down::known_labs()
        .into_iter()
        .map(|lab| {
            let st = state::State::load(&lab).ok().flatten();
            let prefix = namespace_prefix(&lab);
            Entry {
                namespaces: all.iter().filter(|n| n.starts_with(&prefix)).count(),
                phase: st.as_ref().map(|s| s.phase),
                source: st.map(|s| s.source),
                lab,
            }
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no lab is up");
    } else {
        println!("{:<20} {:<10} {:>10}  source", "LAB", "PHASE", "NAMESPACES");
        for e in entries {
            let phase = match e.phase {
                Some(state::Phase::Up) => "up",
                Some(state::Phase::Creating) => "creating",
                None => "orphaned",
            };
            println!(
                "{:<20} {:<10} {:>10}  {}",
                e.lab,
                phase,
                e.namespaces,
                e.source
                    .unwrap_or_else(|| "(no state file: `sudo vpclab down` it)".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
