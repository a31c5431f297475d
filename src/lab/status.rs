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
    pub databases: Vec<DbStatus>,
    /// Every namespace and recorded process is there.
    pub healthy: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DbStatus {
    pub name: String,
    pub endpoint: String,
    pub primary: String,
    pub standby: Option<String>,
    pub servers: Vec<DbServer>,
}

#[derive(Debug, Serialize)]
pub struct DbServer {
    pub node: String,
    pub role: &'static str,
    pub az: String,
    pub private_ip: std::net::Ipv4Addr,
    /// `None` when the server doesn't answer on its socket.
    pub server: Option<crate::services::mariadb::NodeStatus>,
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
    let databases = if r.state.runtime.databases_off {
        Vec::new()
    } else {
        databases(r)
    };
    for d in &databases {
        for srv in &d.servers {
            match &srv.server {
                None => problems.push(format!("database server {} does not answer", srv.node)),
                Some(st) if srv.role == "standby" && !(st.io_running && st.sql_running) => {
                    problems.push(format!("standby {} is not replicating", srv.node))
                }
                _ => {}
            }
        }
    }
    Status {
        lab: r.lab.name.clone(),
        databases,
        phase: r.state.phase,
        source: r.state.source.clone(),
        age_seconds: state::now().saturating_sub(r.state.created),
        healthy: problems.is_empty(),
        namespaces,
        processes,
        problems,
    }
}

fn databases(r: &Running) -> Vec<DbStatus> {
    let dir = super::state::dir(&r.lab.name);
    r.lab
        .databases
        .iter()
        .map(|d| {
            let servers = std::iter::once(("primary", &d.primary))
                .chain(d.standby.iter().map(|s| ("standby", s)))
                .map(|(role, n)| DbServer {
                    node: n.name.clone(),
                    role,
                    az: r.lab.subnets[n.subnet].az.clone(),
                    private_ip: n.private_ip,
                    server: crate::services::mariadb::admin(
                        &super::database::paths(&dir, &n.name),
                        std::time::Duration::from_millis(500),
                    )
                    .ok()
                    .and_then(|mut c| crate::services::mariadb::status(&mut c).ok()),
                })
                .collect();
            DbStatus {
                name: d.name.clone(),
                endpoint: d.endpoint.clone(),
                primary: d.primary.name.clone(),
                standby: d.standby.as_ref().map(|s| s.name.clone()),
                servers,
            }
        })
        .collect()
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
    o.push_str(&format!(
        "namespaces: {present}/{} present\n",
        s.namespaces.len()
    ));
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
    for d in &s.databases {
        o.push_str(&format!("database {} (endpoint {}):\n", d.name, d.endpoint));
        for srv in &d.servers {
            let what = match &srv.server {
                None => "not answering".to_string(),
                Some(st) if srv.role == "primary" => format!(
                    "{}, semi-sync standbys {}, gtid {}",
                    if st.read_only {
                        "read-only"
                    } else {
                        "writable"
                    },
                    st.semi_sync_clients,
                    st.gtid_binlog_pos
                ),
                Some(st) => format!(
                    "{}, replicating from {} (io {}, sql {}), lag {}, gtid {}",
                    if st.read_only {
                        "read-only"
                    } else {
                        "WRITABLE"
                    },
                    st.replicating_from.as_deref().unwrap_or("nobody"),
                    if st.io_running { "yes" } else { "NO" },
                    if st.sql_running { "yes" } else { "NO" },
                    st.seconds_behind
                        .map(|l| format!("{l} s"))
                        .unwrap_or_else(|| "?".into()),
                    st.gtid_slave_pos
                ),
            };
            o.push_str(&format!(
                "  {:<8} {:<16} {:<16} {:<11} {what}\n",
                srv.role,
                srv.node,
                srv.az,
                srv.private_ip.to_string()
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
