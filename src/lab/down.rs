//! Removing a lab: its processes, its namespaces (and with them every link, address,
//! route and nftables table), its state dir. Works without the YAML, after a crash and
//! twice in a row; keeps going past failures and reports them at the end.

use super::state::{self, State};
use crate::kernel::{netns, process};
use crate::plan::names::{lab_of_namespace, namespace_prefix};
use std::path::{Path, PathBuf};

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
    // First of all: no supervisor process starts or takes over from now on, so the
    // processes read from the state file below are all there will be. Without a state
    // file there is nothing to mark, and no supervisor process can record itself either.
    if state::file(lab).exists()
        && let Err(e) = super::supervisor::forbid_restarts(lab)
    {
        r.failures.push(format!("{e:#}"));
    }
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
    r.processes = process::stop_all(&pids, &mut r.failures);

    for n in &names {
        match netns::delete(n) {
            Ok(()) => r.namespaces += 1,
            Err(e) => r.failures.push(format!("{e:#}")),
        }
    }

    let dir = state::dir(lab);
    if dir.exists() {
        match remove_state_dir(&dir) {
            Ok(()) => r.state_dir = true,
            Err(e) => r.failures.push(format!("remove {}: {e}", dir.display())),
        }
    }
    r
}

/// Threads deleting the hosts' folders side by side.
const REMOVERS: usize = 16;

/// Removes a lab's state dir, the hosts' folders (some 20 files each) on several threads:
/// on a file system that discards every freed block synchronously (an ext4 mounted with
/// `discard` holding /run), one thread deleting 1,000 hosts' files waited 20 s on the disk.
fn remove_state_dir(dir: &Path) -> std::io::Result<()> {
    let hosts: Vec<PathBuf> = match std::fs::read_dir(dir.join("hosts")) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    let per_thread = hosts.len().div_ceil(REMOVERS).max(1);
    std::thread::scope(|s| {
        for chunk in hosts.chunks(per_thread) {
            // What fails here is found again, and reported, by the removal below.
            s.spawn(move || chunk.iter().for_each(|h| drop(std::fs::remove_dir_all(h))));
        }
    });
    std::fs::remove_dir_all(dir)
}
