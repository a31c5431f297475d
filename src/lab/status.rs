//! What is up: the state file checked against the kernel.

use super::Running;
use super::flowlogs::{Interface, interfaces};
use super::state::{self, Phase, State};
use super::{control, supervisor};
use crate::kernel::netns;
use crate::topology::flow_fields::format_version;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Status {
    pub lab: String,
    pub phase: Phase,
    pub source: String,
    pub age_seconds: u64,
    pub namespaces: Vec<NsStatus>,
    /// Every instance's and NAT gateway's network interface, with its flow log.
    pub interfaces: Vec<Interface>,
    pub processes: Vec<ProcStatus>,
    pub databases: Vec<DbStatus>,
    /// `None` for a lab brought up without services.
    pub supervisor: Option<SupervisorStatus>,
    /// Every namespace and recorded process is there, and the kernel holds what the
    /// plan says (checked with root only).
    pub healthy: bool,
    pub problems: Vec<String>,
    /// The command that fixes the problems, when `repair` can.
    pub repair: Option<String>,
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

/// The supervisor's pair of processes (see `supervisor`): the one that answers on the
/// control socket and the standby that takes over when it dies.
#[derive(Debug, Serialize)]
pub struct SupervisorStatus {
    pub serving: Option<i32>,
    pub standby: Option<i32>,
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
    if r.state.applying {
        problems.push(format!(
            "an apply of {} did not finish: the lab may not be all it says",
            r.state.source
        ));
    }
    // Reading inside the lab's namespaces takes root; without it, what the kernel holds
    // goes unchecked.
    if r.state.phase == Phase::Up && nix::unistd::geteuid().is_root() {
        match super::repair::kernel_problems(r) {
            Ok(found) => problems.extend(found),
            Err(e) => problems.push(format!("the kernel could not be read: {e:#}")),
        }
    }
    // A dead supervisor process is replaced by the other one of its pair; whether that
    // worked is checked below.
    for p in processes
        .iter()
        .filter(|p| !p.alive && p.node != supervisor::NODE)
    {
        problems.push(format!("{} on {} (pid {}) is gone", p.what, p.node, p.pid));
    }
    let supervised = r.state.processes.iter().any(|p| p.node == supervisor::NODE);
    let supervisor = supervised.then(|| supervisor_status(&r.lab.name));
    if let Some(s) = &supervisor {
        let monitors =
            r.lab.databases.iter().any(|d| d.standby.is_some()) && !r.state.runtime.databases_off;
        let serves = if monitors {
            "the lab's DNS, instance metadata and database health checks"
        } else {
            "the lab's DNS and instance metadata"
        };
        problems.extend(supervisor_problems(&r.lab.name, serves, s));
    }
    let databases = if r.state.runtime.databases_off {
        Vec::new()
    } else {
        databases(r)
    };
    for d in &databases {
        // A server in an AZ that a drill took down is meant to be off until `drill restore`.
        for srv in d
            .servers
            .iter()
            .filter(|srv| !r.state.runtime.azs_down.contains(&srv.az))
        {
            match &srv.server {
                None => problems.push(format!("database server {} does not answer", srv.node)),
                Some(st) if srv.role == "standby" && !(st.io_running && st.sql_running) => {
                    problems.push(format!("standby {} is not replicating", srv.node))
                }
                _ => {}
            }
        }
    }
    // `up` that did not finish is `down`'s to clean up; everything else is repair's.
    let repair = (!problems.is_empty() && r.state.phase == Phase::Up)
        .then(|| format!("sudo vpclab repair {}", r.lab.name));
    Status {
        repair,
        lab: r.lab.name.clone(),
        databases,
        supervisor,
        phase: r.state.phase,
        source: r.state.source.clone(),
        age_seconds: state::now().saturating_sub(r.state.created),
        healthy: problems.is_empty(),
        namespaces,
        interfaces: interfaces(&r.lab),
        processes,
        problems,
    }
}

/// Asks the supervisor, and looks for its standby in the state file, waiting out a
/// takeover in progress (while a process of the pair lives, one may still answer).
fn supervisor_status(lab: &str) -> SupervisorStatus {
    let deadline = Instant::now() + control::TAKEOVER;
    loop {
        let recorded: Vec<_> = State::load(lab)
            .ok()
            .flatten()
            .map(|st| st.processes)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.node == supervisor::NODE && p.alive())
            .collect();
        let record = |what: &str| recorded.iter().find(|p| p.what == what).map(|p| p.pid);
        let s = SupervisorStatus {
            serving: match control::ping(lab) {
                control::Ping::Answered(pid) => Some(pid as i32),
                // Without root, the process recorded as serving is all there is to go by.
                control::Ping::NotAllowed => record(supervisor::SERVING),
                control::Ping::NoAnswer => None,
            },
            standby: record(supervisor::STANDBY),
        };
        let whole = s.serving.is_some() && s.standby.is_some();
        if whole || recorded.is_empty() || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `serves` names what stops while no supervisor process serves.
fn supervisor_problems(lab: &str, serves: &str, s: &SupervisorStatus) -> Vec<String> {
    let log = state::dir(lab).join("supervisor.log");
    let rebuild = format!("`sudo vpclab repair {lab}` starts it again");
    match (s.serving, s.standby) {
        (Some(_), Some(_)) => vec![],
        (Some(pid), None) => vec![format!(
            "the supervisor (pid {pid}) has no standby: were it killed, nothing would restart it\n  hint: its log says why: {}",
            log.display()
        )],
        (None, Some(pid)) => vec![format!(
            "the supervisor does not answer and its standby (pid {pid}) has not taken over: {serves} are down\n  hint: its log says why: {}; {rebuild}",
            log.display()
        )],
        (None, None) => vec![format!(
            "the supervisor is gone (both of its processes died): {serves} are down\n  hint: {rebuild}"
        )],
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
    if !s.interfaces.is_empty() {
        o.push_str("network interfaces:\n");
        for i in &s.interfaces {
            let log = match &i.flow_log {
                Some(f) => format!(
                    "flow log every {} s, version {}",
                    f.interval_secs,
                    format_version(&f.fields)
                ),
                None => "no flow log".into(),
            };
            o.push_str(&format!(
                "  {:<21} {:<12} {:<12} {:<15} {:<10} {log}\n",
                i.id,
                i.node,
                i.subnet,
                i.address.to_string(),
                i.az_id,
            ));
        }
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
    if let Some(sup) = &s.supervisor {
        let pid = |p: Option<i32>| p.map_or_else(|| "NONE".to_string(), |p| p.to_string());
        o.push_str(&format!(
            "supervisor: serving pid {}, standby pid {}\n",
            pid(sup.serving),
            pid(sup.standby)
        ));
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
    if let Some(fix) = &s.repair {
        o.push_str(&format!(
            "hint: `{fix}` puts back what is missing or broken, from the lab's recorded state\n"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(serving: Option<i32>, standby: Option<i32>) -> Vec<String> {
        supervisor_problems(
            "lab1",
            "DNS and metadata",
            &SupervisorStatus { serving, standby },
        )
    }

    #[test]
    fn a_supervisor_with_its_standby_is_no_problem() {
        assert_eq!(problems(Some(10), Some(11)), Vec::<String>::new());
    }

    #[test]
    fn a_supervisor_found_dead_is_reported_with_what_stops_and_the_fix() {
        let p = problems(None, None);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("the supervisor is gone"), "{}", p[0]);
        assert!(
            p[0].contains("died): DNS and metadata are down"),
            "{}",
            p[0]
        );
        assert!(
            p[0].contains("hint: `sudo vpclab repair lab1` starts it again"),
            "{}",
            p[0]
        );
        let p = problems(None, Some(11));
        assert!(
            p[0].contains("standby (pid 11) has not taken over"),
            "{}",
            p[0]
        );
        assert!(p[0].contains("/run/vpclab/lab1/supervisor.log"), "{}", p[0]);
    }

    #[test]
    fn a_supervisor_without_a_standby_is_reported() {
        let p = problems(Some(10), None);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("the supervisor (pid 10) has no standby"),
            "{}",
            p[0]
        );
    }
}
