use crate::lab::flowlog_collector::{dir, interface_id};
use crate::lab::flowlogs::{HEADER, Record};
use crate::lab::{self};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  vpclab flow-logs\n  vpclab flow-logs mylab --instance web --follow\n  vpclab flow-logs mylab --eni eni-0123456789abcdef0 --json"
)]
pub struct Args {
    /// The lab (optional: the only running lab, or `handson`)
    name: Option<String>,
    /// Only this network interface's log
    #[arg(long, conflicts_with = "instance")]
    eni: Option<String>,
    /// Only the log of this instance's network interface
    #[arg(long)]
    instance: Option<String>,
    /// Keep printing records as the collector writes them
    #[arg(long)]
    follow: bool,
    /// Print records as JSON (one object per line with --follow)
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let r = lab::running(a.name.as_deref())?;
    let lab = r.lab.name.clone();
    if !r
        .lab
        .instances
        .iter()
        .any(|i| r.lab.flow_logs_of(i).is_some())
    {
        bail!(
            "lab `{lab}` has no flow logs; add `flow_logs: {{ interval: 60 }}` to its `vpc`, a subnet or an instance, and `up` it again"
        );
    }
    let wanted = match (&a.eni, &a.instance) {
        (Some(eni), _) => Some(eni.clone()),
        (_, Some(name)) => {
            if r.lab.instance(name).is_none() {
                bail!("lab `{lab}` has no instance `{name}`");
            }
            Some(interface_id(&lab, name))
        }
        _ => None,
    };
    let mut files: BTreeMap<PathBuf, u64> = BTreeMap::new();
    if !a.json {
        println!("{HEADER}");
    }
    loop {
        if let Ok(entries) = std::fs::read_dir(dir(&lab)) {
            for e in entries.flatten() {
                let path = e.path();
                let eni = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                if wanted.as_deref().is_none_or(|w| w == eni) {
                    files.entry(path).or_insert(0);
                }
            }
        }
        let mut records = Vec::new();
        for (path, offset) in files.iter_mut() {
            let mut f =
                std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
            f.seek(SeekFrom::Start(*offset))?;
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            // A line still being written waits for the next round.
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            *offset += complete as u64;
            records.extend(text[..complete].lines().filter_map(Record::parse));
        }
        records.sort_by(|x, y| (x.start, &x.interface_id).cmp(&(y.start, &y.interface_id)));
        if a.json && !a.follow {
            println!("{}", serde_json::to_string_pretty(&records)?);
        } else {
            for rec in &records {
                if a.json {
                    println!("{}", serde_json::to_string(rec)?);
                } else {
                    println!("{}", rec.line());
                }
            }
        }
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
