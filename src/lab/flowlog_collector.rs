//! The supervisor's flow-log collector: every interval it lists each running instance's
//! counting table and appends the interval's records to that interface's log file in the
//! lab's state directory, `flow-logs/<eni-id>.log`, header line first as AWS writes to S3.

use super::flowlogs::{HEADER, InterfaceLog, parse_listing};
use super::{running, state};
use crate::kernel::{flow, netns};
use crate::plan::{aws_id, flowlogs::counting_ruleset, namespace_name};
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory of a lab's flow logs.
pub fn dir(lab: &str) -> PathBuf {
    state::dir(lab).join("flow-logs")
}

/// The network interface id of an instance, as `reach` and the flow logs name it.
pub fn interface_id(lab: &str, instance: &str) -> String {
    aws_id("eni", lab, instance)
}

/// Starts a collector thread for each aggregation interval the lab's flow logs use.
pub fn start(lab: &str) -> Result<()> {
    let r = running(Some(lab))?;
    let intervals: BTreeSet<u64> = r
        .lab
        .instances
        .iter()
        .filter_map(|i| r.lab.flow_logs_of(i))
        .map(|f| f.interval_secs)
        .collect();
    for secs in intervals {
        let lab = lab.to_string();
        let mut logs: HashMap<String, InterfaceLog> = HashMap::new();
        let mut start = state::now();
        // The first pass installs the tables and takes the baselines; it logs nothing. It
        // runs before the supervisor answers `up`, so nothing the lab carries once it is up
        // goes uncounted.
        collect(&lab, secs, &mut logs, None);
        std::thread::Builder::new()
            .name(format!("flow-logs-{secs}s"))
            .spawn(move || {
                // Intervals follow each other exactly, ending on whole seconds, however
                // long a collection takes.
                loop {
                    let end = start + secs;
                    std::thread::sleep(until(end));
                    collect(&lab, secs, &mut logs, Some((start, end)));
                    start = end;
                }
            })
            .context("start the flow-log collector")?;
    }
    Ok(())
}

/// How long until the Unix time `at` (seconds).
fn until(at: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(at).saturating_sub(now)
}

/// Lists the counters of every running instance whose flow log aggregates over `secs`
/// and, for `span`, writes its records.
fn collect(
    lab: &str,
    secs: u64,
    logs: &mut HashMap<String, InterfaceLog>,
    span: Option<(u64, u64)>,
) {
    let Ok(r) = running(Some(lab)) else { return };
    let ruleset = counting_ruleset();
    for i in &r.lab.instances {
        let logged = r
            .lab
            .flow_logs_of(i)
            .is_some_and(|f| f.interval_secs == secs);
        if !logged || r.state.runtime.stopped.contains(&i.name) {
            continue;
        }
        let listing = netns::open(&namespace_name(lab, &i.name)).and_then(|ns| {
            netns::run_in(&ns, || {
                flow::ensure_here(&ruleset)?;
                flow::list_here()
            })
        });
        let snapshot = match listing.and_then(|l| parse_listing(&l)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("flow logs of {}: {e:#}", i.name);
                continue;
            }
        };
        let eni = interface_id(lab, &i.name);
        let (Some((start, end)), Some(log)) = (span, logs.get_mut(&i.name)) else {
            logs.insert(
                i.name.clone(),
                InterfaceLog::new(eni, r.lab.vpc.dns_server(), snapshot),
            );
            continue;
        };
        let records = log.interval(snapshot, start, end);
        if let Err(e) = append(lab, &eni, records.iter().map(|r| r.line())) {
            eprintln!("flow logs of {}: {e:#}", i.name);
        }
    }
}

fn append(lab: &str, eni: &str, lines: impl Iterator<Item = String>) -> Result<()> {
    let dir = dir(lab);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{eni}.log"));
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    if fresh {
        text += HEADER;
        text.push('\n');
    }
    for l in lines {
        text += &l;
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}
