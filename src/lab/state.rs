//! A running lab's state dir (/run/vpclab/NAME): the state file, host files, keys, logs.
//!
//! The state file is written *before* each kernel object or process is created, so
//! `down` can remove everything after a crash and without the lab's YAML. It records the
//! lab text itself, so commands on a running lab (`status`, `probe`, `exec`) rebuild the
//! same plan without the file.

use crate::kernel::process::Proc;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const STATE_ROOT: &str = "/run/vpclab";

pub fn dir(lab: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(lab)
}

/// The lock an `apply` or a `repair` holds from start to end, so two of them never
/// interleave (the second finds what the first left) and a repair never runs into an apply
/// that is still going; a killed one releases it by dying.
pub fn changes_lock(lab: &str) -> PathBuf {
    dir(lab).join("changes.lock")
}

pub fn file(lab: &str) -> PathBuf {
    dir(lab).join("state.json")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `up` is running (or crashed while running).
    Creating,
    Up,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub lab: String,
    /// Where the lab came from (a path, or "built-in").
    pub source: String,
    /// The lab file's text, to rebuild the plan without the file.
    pub yaml: String,
    pub phase: Phase,
    /// Unix seconds.
    pub created: u64,
    /// Every namespace the plan has, recorded before the first is created.
    pub namespaces: Vec<String>,
    /// Processes started for the lab, by pid and start time (so a reused pid is never
    /// mistaken for ours).
    #[serde(default)]
    pub processes: Vec<Proc>,
    /// What changed since `up`: the lab file says how the lab starts, this says how it
    /// is now (stopped instances, new public IPs, which database server is primary).
    #[serde(default)]
    pub runtime: Runtime,
    /// An `apply` recorded a new `yaml` and has not finished making the kernel match it.
    #[serde(default)]
    pub applying: bool,
    /// The addresses the lab's objects hold: an edit of the file keeps them (AWS never
    /// renumbers a running network interface), so the lab is rebuilt from `yaml` with them.
    #[serde(default)]
    pub allocations: crate::topology::Allocations,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// Auto-assigned public IPs handed out by `start` (instance → address).
    #[serde(default)]
    pub public_ips: BTreeMap<String, Ipv4Addr>,
    /// Instances that are stopped.
    #[serde(default)]
    pub stopped: BTreeSet<String>,
    /// Database → the node that is primary now (after a failover).
    #[serde(default)]
    pub primaries: BTreeMap<String, String>,
    /// How often the supervisor checks each database primary (milliseconds).
    #[serde(default = "default_health_interval")]
    pub health_interval_ms: u64,
    /// Availability zones taken down by `drill az-outage`.
    #[serde(default)]
    pub azs_down: BTreeSet<String>,
    /// `up --no-databases`: the database servers were never started.
    #[serde(default)]
    pub databases_off: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            public_ips: BTreeMap::new(),
            stopped: BTreeSet::new(),
            primaries: BTreeMap::new(),
            health_interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            azs_down: BTreeSet::new(),
            databases_off: false,
        }
    }
}

/// Two failed checks 250 ms apart trigger a failover: detection well under a second,
/// which keeps the measured RTO within the 3 s target.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 250;

fn default_health_interval() -> u64 {
    DEFAULT_HEALTH_INTERVAL_MS
}

impl State {
    pub fn load(lab: &str) -> Result<Option<State>> {
        let p = file(lab);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(
                serde_json::from_str(&s).with_context(|| format!("parse {}", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
        }
    }

    /// Changes the state of a running lab under its lock: the CLI and the supervisor
    /// both write it (a failover moves the primary; `stop` changes public IPs), so
    /// every change re-reads the file first and none is lost.
    pub fn modify<T>(lab: &str, f: impl FnOnce(&mut State) -> Result<T>) -> Result<(State, T)> {
        let _lock = crate::kernel::lock::exclusive(&dir(lab).join("state.lock"))?;
        let mut st = State::load(lab)?.with_context(|| format!("lab `{lab}` has no state file"))?;
        let out = f(&mut st)?;
        st.save()?;
        Ok((st, out))
    }

    /// Writes atomically (temp file + rename): a crash never leaves half a state file.
    pub fn save(&self) -> Result<()> {
        let p = file(&self.lab);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("write {}", p.display()))
    }
}

/// Names of labs with a state dir.
pub fn labs() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(STATE_ROOT) else {
        return vec![];
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
