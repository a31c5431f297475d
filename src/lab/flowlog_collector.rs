//! The supervisor's flow-log collector: a thread that, at the end of each interface's
//! aggregation interval, lists the counters (the interface's own counting table and the
//! VPC router's rejections) and appends the interval's records to that interface's log in
//! the lab's state directory, `flow-logs/<eni-id>.log`, header line first as AWS writes to
//! S3.
//!
//! What to log follows the lab's recorded state: whenever the state file changes (an
//! `apply` that turns a flow log on or off or changes its interval or format, an instance
//! stopped or started), the collector reads the lab again, starts logging the interfaces
//! that gained a flow log and stops for those that lost theirs. The counting tables
//! themselves belong to the plan and are loaded and deleted with it.

use super::flowlogs::{
    Counters, Interface, Listing, Record, growth, header, interfaces, parse_listing,
};
use super::{running, state};
use crate::kernel::{flow, netns, nft};
use crate::plan::Role;
use crate::plan::firewall::Family;
use crate::topology::FlowField;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory of a lab's flow logs.
pub fn dir(lab: &str) -> PathBuf {
    state::dir(lab).join("flow-logs")
}

/// One interface being logged.
struct Log {
    interface: Interface,
    interval: u64,
    fields: Vec<FlowField>,
    /// When the interval in progress began.
    start: u64,
    /// The counters at `start`.
    last: Counters,
}

struct Collector {
    lab: String,
    /// By interface id.
    logs: HashMap<String, Log>,
    /// The router's namespace, when its network ACL table counts rejections.
    router: Option<String>,
    /// The state file's modification time when the lab was last read.
    read_at: Option<SystemTime>,
}

/// The supervisor's collector, shared by its thread and the supervisor's `reload`.
static COLLECTOR: OnceLock<Mutex<Collector>> = OnceLock::new();

/// Starts the collector. Its first pass takes every logged interface's baseline before
/// the supervisor answers `up`, so nothing the lab carries once it is up goes uncounted.
pub fn start(lab: &str) -> Result<()> {
    let mut c = Collector {
        lab: lab.to_string(),
        logs: HashMap::new(),
        router: None,
        read_at: None,
    };
    c.follow_state();
    let shared = COLLECTOR.get_or_init(|| Mutex::new(c));
    std::thread::Builder::new()
        .name("flow-logs".into())
        .spawn(move || {
            loop {
                // Intervals end on whole seconds, however long a collection takes.
                std::thread::sleep(until_next_second());
                let mut c = shared.lock().unwrap_or_else(|e| e.into_inner());
                c.follow_state();
                c.collect_due(state::now());
            }
        })
        .context("start the flow-log collector")?;
    Ok(())
}

/// Reads the lab again now (the supervisor's `reload`, which `apply` asks for when a flow
/// log comes or goes): once it returns, the baselines of new logs are taken, so every
/// packet after the apply is logged.
pub fn follow_now(lab: &str) -> Result<()> {
    let Some(shared) = COLLECTOR.get() else {
        return Ok(());
    };
    let mut c = shared.lock().unwrap_or_else(|e| e.into_inner());
    if c.lab != lab {
        return Ok(());
    }
    c.read_at = None;
    c.follow_state();
    Ok(())
}

fn until_next_second() -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(now.as_secs() + 1).saturating_sub(now)
}

impl Collector {
    /// Reads the lab again when its state file changed since the last reading.
    fn follow_state(&mut self) {
        let modified = std::fs::metadata(state::file(&self.lab))
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified == self.read_at {
            return;
        }
        match self.refresh() {
            Ok(true) => self.read_at = modified,
            Ok(false) => {}
            Err(e) => eprintln!("flow logs: {e:#}"),
        }
    }

    /// Starts logging interfaces that gained a flow log (or whose interval or format
    /// changed), with a baseline taken now; forgets those that lost theirs. `false` when
    /// an interface's table could not be read yet (an apply under way loads it): the next
    /// pass tries again.
    fn refresh(&mut self) -> Result<bool> {
        let r = running(Some(&self.lab))?;
        self.router = r
            .plan
            .namespaces
            .iter()
            .find(|n| {
                n.role == Role::VpcRouter
                    && n.firewall.as_ref().is_some_and(|t| !t.flow_sets.is_empty())
            })
            .map(|n| n.name.clone());
        let wanted: Vec<Interface> = interfaces(&r.lab)
            .into_iter()
            .filter(|i| i.flow_log.is_some())
            .filter(|i| !r.state.runtime.stopped.contains(&i.node))
            .collect();
        // A log whose interval or format changed goes on from where it was: its counters
        // and the start of the interval in progress carry over to the new one.
        let mut replaced: HashMap<String, (u64, Counters)> = HashMap::new();
        self.logs.retain(|id, log| {
            let same = wanted.iter().any(|i| &i.id == id && same_log(i, log));
            if !same && wanted.iter().any(|i| &i.id == id) {
                replaced.insert(id.clone(), (log.start, std::mem::take(&mut log.last)));
            }
            same
        });
        let new: Vec<Interface> = wanted
            .into_iter()
            .filter(|i| !self.logs.contains_key(&i.id))
            .collect();
        if new.is_empty() {
            return Ok(true);
        }
        let router = self.router_listing();
        let now = state::now();
        let mut complete = true;
        for i in new {
            let log = i.flow_log.clone().expect("only logged interfaces");
            if let Some((start, last)) = replaced.remove(&i.id) {
                self.logs.insert(
                    i.id.clone(),
                    Log {
                        last,
                        interval: log.interval_secs,
                        fields: log.fields,
                        start,
                        interface: i,
                    },
                );
                continue;
            }
            let own = match listing_in(&i.ns) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("flow logs of {}: {e:#}", i.node);
                    complete = false;
                    continue;
                }
            };
            self.logs.insert(
                i.id.clone(),
                Log {
                    last: i.counters(&own, &router),
                    interval: log.interval_secs,
                    fields: log.fields,
                    start: now,
                    interface: i,
                },
            );
        }
        Ok(complete)
    }

    /// The router's rejections, or none when no network ACL counts them.
    fn router_listing(&self) -> Listing {
        let Some(ns) = &self.router else {
            return Listing::new();
        };
        let listed = netns::open(ns)
            .and_then(|h| netns::run_in(&h, || nft::list_here(Family::Ip)))
            .and_then(|json| parse_listing(&json));
        listed.unwrap_or_else(|e| {
            eprintln!("flow logs: the VPC router's rejections: {e:#}");
            Listing::new()
        })
    }

    /// Writes the records of every interval that ended by `now`.
    fn collect_due(&mut self, now: u64) {
        if !self.logs.values().any(|l| l.start + l.interval <= now) {
            return;
        }
        // The router first: a packet it counted was counted by the interface that sent
        // it before, so the interface's listing, taken after, has it too.
        let router = self.router_listing();
        for log in self.logs.values_mut() {
            let end = log.start + log.interval;
            if end > now {
                continue;
            }
            let counters = match listing_in(&log.interface.ns) {
                Ok(own) => log.interface.counters(&own, &router),
                Err(e) => {
                    eprintln!("flow logs of {}: {e:#}", log.interface.node);
                    continue;
                }
            };
            let records = log
                .interface
                .records(&growth(&log.last, &counters), log.start, end);
            if let Err(e) = append(&self.lab, log, &records) {
                eprintln!("flow logs of {}: {e:#}", log.interface.node);
            }
            log.last = counters;
            log.start = end;
        }
    }
}

fn same_log(i: &Interface, log: &Log) -> bool {
    i.flow_log
        .as_ref()
        .is_some_and(|f| f.interval_secs == log.interval && f.fields == log.fields)
}

fn listing_in(ns: &str) -> Result<Listing> {
    let json = netns::open(ns).and_then(|h| netns::run_in(&h, flow::list_here))?;
    parse_listing(&json)
}

/// Appends records to the interface's log. A log whose header names other fields (the
/// format changed) is set aside as `<eni-id>.<time>.log` and a new one begun.
fn append(lab: &str, log: &Log, records: &[Record]) -> Result<()> {
    let dir = dir(lab);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{}.log", log.interface.id));
    let header = header(&log.fields);
    let first_line = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string));
    if first_line.as_ref().is_some_and(|l| *l != header) {
        let aside = dir.join(format!("{}.{}.log", log.interface.id, state::now()));
        std::fs::rename(&path, &aside).with_context(|| format!("set {} aside", path.display()))?;
    }
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    if fresh {
        text += &header;
        text.push('\n');
    }
    for r in records {
        text += &log.interface.line(&log.fields, r);
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}
