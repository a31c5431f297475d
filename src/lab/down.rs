//! Removing a lab: its processes, its namespaces (and with them every link, address,
//! route and nftables table), its state dir. Works without the YAML, after a crash and
//! twice in a row; keeps going past failures and reports them at the end.

use super::state::{self, State};
use crate::kernel::netns;
use crate::plan::names::{lab_of_namespace, namespace_prefix};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    pub lab: String,
    pub namespaces: usize,
    pub processes: usize,
    pub state_dir: bool,
    pub failures: Vec<String>,
}

/// Labs that have a state dir or namespaces carrying the vpclab owner tag.
pub fn known_labs() -> Vec<String> {
    let mut labs = state::labs();
    for ns in netns::list() {
        if let Some((lab, _)) = lab_of_namespace(&ns)
            && !labs.iter().any(|l| l == lab)
        {
            labs.push(lab.to_string());
        }
    }
    labs.sort();
    labs
}

/// The lab's namespaces that exist now: those in its state file and any other carrying
/// its owner tag (a crash can happen between creating one and recording the next step).
pub fn lab_namespaces(lab: &str, st: Option<&State>) -> Vec<String> {
    let prefix = namespace_prefix(lab);
    let mut names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if let Some(st) = st {
        for n in &st.namespaces {
            if !names.contains(n) && netns::exists(n) {
                names.push(n.clone());
            }
        }
    }
    names.sort();
    names
}

pub fn down(lab: &str) -> DownReport {
    let mut r = DownReport {
        lab: lab.to_string(),
        ..Default::default()
    };
    let st = match State::load(lab) {
        Ok(s) => s,
        Err(e) => {
            r.failures.push(format!("{e:#} (continuing without it)"));
            None
        }
    };
    let names = lab_namespaces(lab, st.as_ref());

    // Processes: the ones we recorded (the supervisor lives outside the lab's
    // namespaces) and every process inside a lab namespace, found by namespace inode.
    let mut pids: Vec<i32> = st
        .iter()
        .flat_map(|s| s.processes.iter())
        .filter(|p| p.alive())
        .map(|p| p.pid)
        .collect();
    let inodes: Vec<u64> = names.iter().filter_map(|n| netns::inode(n)).collect();
    for pid in netns::pids_in(&inodes) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    r.processes = stop_processes(&pids, &mut r.failures);

    for n in &names {
        match netns::delete(n) {
            Ok(()) => r.namespaces += 1,
            Err(e) => r.failures.push(format!("{e:#}")),
        }
    }

    let dir = state::dir(lab);
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => r.state_dir = true,
            Err(e) => r.failures.push(format!("remove {}: {e}", dir.display())),
        }
    }
    r
}

/// SIGTERM, a short grace period, then SIGKILL. Returns how many were stopped.
pub fn stop_processes(pids: &[i32], failures: &mut Vec<String>) -> usize {
    let mut live: Vec<i32> = Vec::new();
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => live.push(pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => failures.push(format!("signal process {pid}: {e}")),
        }
    }
    let n = live.len();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !live.is_empty() && Instant::now() < deadline {
        live.retain(|pid| !gone_or_zombie(*pid));
        if !live.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for pid in live {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    n
}

/// A process that exited but whose parent hasn't reaped it yet is as good as gone.
fn gone_or_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_none_or(|c| c == 'Z' || c == 'X'),
    }
}
