use crate::lab::flowlog_collector::dir;
use crate::lab::flowlogs::{header_fields, interface_id, interfaces, record_json};
use crate::lab::{self};
use crate::topology::FlowField;
use anyhow::{Context, bail};
use serde_json::{Map, Value};
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
    /// Only this network interface's log (`vpclab status` lists the interfaces)
    #[arg(long, conflicts_with = "instance")]
    eni: Option<String>,
    /// Only the log of this instance's (or NAT gateway's) network interface
    #[arg(long)]
    instance: Option<String>,
    /// Keep printing records as the collector writes them
    #[arg(long)]
    follow: bool,
    /// Print records as JSON objects, one key per field of the log's format (one object
    /// per line with --follow)
    #[arg(long)]
    json: bool,
}

/// A record as its log wrote it, and read back.
type Line = (String, Map<String, Value>);

/// A log file being read: where the next line starts, and its fields once the header
/// was read.
#[derive(Default)]
struct Reading {
    offset: u64,
    fields: Option<Vec<FlowField>>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let r = lab::running(a.name.as_deref())?;
    let lab = r.lab.name.clone();
    let all = interfaces(&r.lab);
    if !all.iter().any(|i| i.flow_log.is_some()) {
        bail!(
            "lab `{lab}` has no flow logs; add `flow_logs: {{ interval: 60 }}` to its `vpc`, a subnet or an instance, and `vpclab apply` the file"
        );
    }
    let wanted = match (&a.eni, &a.instance) {
        (Some(eni), _) => Some(eni.clone()),
        (_, Some(name)) => {
            if !all.iter().any(|i| &i.node == name) {
                bail!("lab `{lab}` has no instance or NAT gateway `{name}`");
            }
            Some(interface_id(&lab, name))
        }
        _ => None,
    };
    let mut files: BTreeMap<PathBuf, Reading> = BTreeMap::new();
    let mut headers_shown: Vec<Vec<FlowField>> = Vec::new();
    loop {
        if let Ok(entries) = std::fs::read_dir(dir(&lab)) {
            for e in entries.flatten() {
                let path = e.path();
                // `<eni-id>.log`, or `<eni-id>.<time>.log` for a log of an earlier format.
                let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("");
                let eni = name.split('.').next().unwrap_or("");
                if wanted.as_deref().is_none_or(|w| w == eni) {
                    files.entry(path).or_default();
                }
            }
        }
        // Records by the fields of their log, in the order the formats were first met.
        let mut groups: Vec<(Vec<FlowField>, Vec<Line>)> = Vec::new();
        for (path, reading) in files.iter_mut() {
            let mut f =
                std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
            f.seek(SeekFrom::Start(reading.offset))?;
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            // A line still being written waits for the next round.
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            reading.offset += complete as u64;
            for line in text[..complete].lines() {
                let Some(fields) = &reading.fields else {
                    reading.fields = header_fields(line);
                    continue;
                };
                let Some(record) = record_json(fields, line) else {
                    continue;
                };
                match groups.iter_mut().find(|(f, _)| f == fields) {
                    Some((_, records)) => records.push((line.to_string(), record)),
                    None => groups.push((fields.clone(), vec![(line.to_string(), record)])),
                }
            }
        }
        for (_, records) in &mut groups {
            records.sort_by(|(_, x), (_, y)| {
                let key = |r: &Map<String, Value>| {
                    (
                        r.get("start").and_then(Value::as_u64),
                        r.get("interface_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    )
                };
                key(x).cmp(&key(y))
            });
        }
        if a.json && !a.follow {
            let all: Vec<&Map<String, Value>> = groups
                .iter()
                .flat_map(|(_, records)| records.iter().map(|(_, r)| r))
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(ExitCode::SUCCESS);
        }
        for (fields, records) in &groups {
            for (line, record) in records {
                if a.json {
                    println!("{}", serde_json::to_string(record)?);
                    continue;
                }
                if !headers_shown.contains(fields) {
                    println!(
                        "{}",
                        fields
                            .iter()
                            .map(|f| f.name())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    headers_shown.push(fields.clone());
                }
                println!("{line}");
            }
        }
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
