//! What is up: the state file checked against the kernel.

use super::Running;
use super::state::{self, Phase};
use crate::kernel::netns;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    pub lab: String,
    pub phase: Phase,
    pub source: String,
    pub age_seconds: u64,
    pub namespaces: Vec<NsStatus>,
    pub processes: Vec<ProcStatus>,
    /// Every namespace and recorded process is there.
    pub healthy: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NsStatus {
    pub name: String,
    pub node: String,
    pub role: &'static str,
    pub present: bool,
}

#[derive(Debug, Serialize)]
pub struct ProcStatus {
    pub pid: i32,
    pub node: String,
    pub what: String,
    pub alive: bool,
}

pub fn status(r: &Running) -> Status {
    let namespaces: Vec<NsStatus> = r
        .plan
        .namespaces
        .iter()
        .map(|n| NsStatus {
            name: n.name.clone(),
            node: n.node.clone(),
            role: n.role.as_str(),
            present: netns::exists(&n.name),
        })
        .collect();
    let processes: Vec<ProcStatus> = r
        .state
        .processes
        .iter()
        .map(|p| ProcStatus {
            pid: p.pid,
            node: p.node.clone(),
            what: p.what.clone(),
            alive: p.alive(),
        })
        .collect();
    let mut problems = Vec::new();
    if r.state.phase == Phase::Creating {
        problems.push("`up` has not finished (or crashed): `sudo vpclab down` cleans up".into());
    }
    for n in namespaces.iter().filter(|n| !n.present) {
        problems.push(format!("namespace {} ({}) has vanished", n.name, n.node));
    }
    for p in processes.iter().filter(|p| !p.alive) {
        problems.push(format!("{} on {} (pid {}) is gone", p.what, p.node, p.pid));
    }
    Status {
        lab: r.lab.name.clone(),
        phase: r.state.phase,
        source: r.state.source.clone(),
        age_seconds: state::now().saturating_sub(r.state.created),
        healthy: problems.is_empty(),
        namespaces,
        processes,
        problems,
    }
}

pub fn render(s: &Status) -> String {
    let present = s.namespaces.iter().filter(|n| n.present).count();
    let mut o = format!(
        "lab {}: {} ({}), up {}, from {}\n",
        s.lab,
        if s.healthy { "healthy" } else { "DEGRADED" },
        match s.phase {
            Phase::Up => "up",
            Phase::Creating => "creating",
        },
        age(s.age_seconds),
        s.source
    );
    o.push_str(&format!("namespaces: {present}/{} present\n", s.namespaces.len()));
    for n in &s.namespaces {
        o.push_str(&format!(
            "  {:<4} {:<18} {:<17} {}\n",
            if n.present { "ok" } else { "GONE" },
            n.node,
            n.role,
            n.name
        ));
    }
    if !s.processes.is_empty() {
        o.push_str("processes:\n");
        for p in &s.processes {
            o.push_str(&format!(
                "  {:<4} {:<18} {:<17} pid {}\n",
                if p.alive { "ok" } else { "GONE" },
                p.node,
                p.what,
                p.pid
            ));
        }
    }
    for p in &s.problems {
        o.push_str(&format!("problem: {p}\n"));
    }
    o
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
