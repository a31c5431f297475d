//! The programs half of a repair: namespaces and programs left behind, then every host's
//! services, the database servers and the supervisor, started again in their roles.

use super::super::state::{self, State};
use super::super::{Running, control, database, down, hosts, running, supervisor};
use super::*;
use crate::kernel::observe::{self};
use crate::kernel::process::{self, Proc};
use crate::kernel::{mount_template, netns};
use crate::plan::Host;
use crate::services::{self, mariadb};
use crate::topology::Service;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Namespaces of the lab that its plan no longer has (an apply that removed a node was
/// killed before deleting them): their programs stop and they go.
pub(super) fn remove_leftover_namespaces(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let planned = |n: &str| r.plan.namespaces.iter().any(|p| p.name == n);
    for ns in down::lab_namespaces(&r.lab.name, Some(&r.state)) {
        if planned(&ns) {
            continue;
        }
        let mut failures = Vec::new();
        let pids = netns::inode(&ns).map_or_else(Vec::new, |i| netns::pids_in(&[i]));
        let stopped = process::stop_all(&pids, &mut failures);
        if !failures.is_empty() {
            bail!("stop the programs in {ns}: {}", failures.join("; "));
        }
        netns::delete(&ns)?;
        fixes.push(Fix {
            found: format!("namespace {ns} is not in the lab"),
            fixed: if stopped == 0 {
                "deleted it".into()
            } else {
                format!(
                    "stopped its {stopped} process{} and deleted it",
                    es(stopped)
                )
            },
        });
    }
    Ok(())
}

pub(super) fn es(n: usize) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// Whether a recorded process of a lab node runs inside that node's namespace as it is
/// now. After `ip netns del`, its programs keep the deleted namespace alive, and with it
/// their addresses and one end of each veth pair.
pub(super) fn in_its_namespace(r: &Running, p: &Proc) -> bool {
    let Some(ns) = r.plan.netns(&p.node) else {
        return false;
    };
    netns::inode(&ns.name).is_some_and(|want| observe::netns_of(p.pid) == Some(want))
}

/// Stops the programs that run in a namespace whose name was deleted, and everything
/// else in there (nginx's workers, login sessions), so that namespace is freed.
pub(super) fn stop_stranded(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let stranded: Vec<&Proc> = r
        .state
        .processes
        .iter()
        .filter(|p| p.node != supervisor::NODE && r.plan.netns(&p.node).is_some())
        .filter(|p| p.alive() && !in_its_namespace(r, p))
        .collect();
    if stranded.is_empty() {
        return Ok(());
    }
    let inodes: BTreeSet<u64> = stranded
        .iter()
        .filter_map(|p| observe::netns_of(p.pid))
        .collect();
    let inodes: Vec<u64> = inodes.into_iter().collect();
    let mut failures = Vec::new();
    process::stop_all(&netns::pids_in(&inodes), &mut failures);
    if !failures.is_empty() {
        bail!("stop stranded programs: {}", failures.join("; "));
    }
    State::modify(&r.lab.name, |st| {
        st.processes.retain(|p| !stranded.contains(&p));
        Ok(())
    })?;
    for p in stranded {
        fixes.push(Fix {
            found: format!(
                "{} on {} (pid {}) runs in a namespace whose name was deleted",
                p.what, p.node, p.pid
            ),
            fixed: "stopped it with everything else in there".into(),
        });
    }
    Ok(())
}

/// The programs a host runs, with the ports each listens on.
pub(super) fn programs(h: &Host) -> Vec<(&'static str, Vec<u16>)> {
    let mut out = Vec::new();
    if h.services.contains(&Service::Ssh) {
        out.push(("sshd", vec![22]));
    }
    let mut web = Vec::new();
    if h.services.contains(&Service::Http) {
        web.push(80);
    }
    if h.services.contains(&Service::Https) {
        web.push(443);
    }
    if !web.is_empty() {
        out.push(("nginx", web));
    }
    out
}

/// Whether the lab runs program `what` on `node` now.
pub(super) fn wanted(r: &Running, resting: &BTreeSet<String>, node: &str, what: &str) -> bool {
    if node == supervisor::NODE || what == mount_template::WHAT {
        return true;
    }
    if resting.contains(node) {
        return false;
    }
    if what == database::WHAT {
        return !r.state.runtime.databases_off
            && r.lab
                .databases
                .iter()
                .any(|d| d.nodes().any(|n| n.name == node));
    }
    r.plan
        .host(node)
        .is_some_and(|h| programs(h).iter().any(|(w, _)| *w == what))
}

/// Programs recorded for what the lab no longer runs (an apply that removed a service
/// was killed before stopping it) stop, and their records go.
pub(super) fn stop_unwanted(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let resting = resting(r);
    let unwanted: Vec<&Proc> = r
        .state
        .processes
        .iter()
        .filter(|p| !wanted(r, &resting, &p.node, &p.what))
        .collect();
    if unwanted.is_empty() {
        return Ok(());
    }
    let live: Vec<i32> = unwanted
        .iter()
        .filter(|p| p.alive())
        .map(|p| p.pid)
        .collect();
    let mut failures = Vec::new();
    process::stop_all(&live, &mut failures);
    if !failures.is_empty() {
        bail!("stop programs: {}", failures.join("; "));
    }
    State::modify(&r.lab.name, |st| {
        st.processes.retain(|p| !unwanted.contains(&p));
        Ok(())
    })?;
    for p in unwanted {
        fixes.push(Fix {
            found: format!(
                "{} on {} (pid {}) is not part of the lab any more",
                p.what, p.node, p.pid
            ),
            fixed: if live.contains(&p.pid) {
                "stopped it".into()
            } else {
                "dropped its record".into()
            },
        });
    }
    Ok(())
}

/// The supervisor's pair: started again when both died, restarted when it lost its
/// standby for good, and handed over to its standby when a namespace it serves in was
/// made again (its sockets are still in the old one).
pub(super) fn repair_supervisor(
    r: &Running,
    recreated: &[String],
    fixes: &mut Vec<Fix>,
) -> Result<()> {
    let lab = &r.lab.name;
    let serves_in = [&r.plan.dns.vpc.ns, &r.plan.dns.internet.ns];
    let moved = recreated.iter().any(|n| serves_in.contains(&n));
    let live = || -> Vec<Proc> {
        State::load(lab)
            .ok()
            .flatten()
            .map(|st| st.processes)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.node == supervisor::NODE && p.alive())
            .collect()
    };
    let has_standby = || live().iter().any(|p| p.what == supervisor::STANDBY);
    // While a process of the pair lives, a takeover may be under way.
    let deadline = Instant::now() + control::TAKEOVER;
    let serving = loop {
        match control::ping(lab) {
            control::Ping::Answered(pid) if has_standby() || Instant::now() > deadline => {
                break Some(pid as i32);
            }
            control::Ping::Answered(_) => {}
            _ if live().is_empty() || Instant::now() > deadline => break None,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let found = match serving {
        Some(pid) if moved => {
            let standby = live()
                .into_iter()
                .find(|p| p.what == supervisor::STANDBY)
                .map(|p| p.pid);
            if let Some(standby) = standby {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    if let control::Ping::Answered(now) = control::ping(lab)
                        && now as i32 != pid
                    {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "the supervisor's standby (pid {standby}) did not take over within 10 s (log: {})",
                            state::dir(lab).join("supervisor.log").display()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                fixes.push(Fix {
                    found: format!(
                        "the supervisor (pid {pid}) serves DNS and metadata in namespaces that were deleted"
                    ),
                    fixed: format!(
                        "stopped it; its standby (pid {standby}) took over in the new ones"
                    ),
                });
                return Ok(());
            }
            format!(
                "the supervisor (pid {pid}) serves DNS and metadata in namespaces that were deleted, and has no standby"
            )
        }
        Some(_) if has_standby() => return Ok(()),
        Some(pid) => format!("the supervisor (pid {pid}) has no standby"),
        None => "the supervisor is gone (both of its processes died)".to_string(),
    };
    // Start afresh: what is left of the pair stops first.
    let mut failures = Vec::new();
    let left: Vec<i32> = live().iter().map(|p| p.pid).collect();
    process::stop_all(&left, &mut failures);
    if !failures.is_empty() {
        bail!("stop the supervisor: {}", failures.join("; "));
    }
    let pair = supervisor::start(lab)?;
    fixes.push(Fix {
        found,
        fixed: format!(
            "started it again (pid {}{})",
            pair.serving.pid,
            pair.standby
                .map(|p| format!(", standby pid {}", p.pid))
                .unwrap_or_default()
        ),
    });
    Ok(())
}

/// A host's resolv.conf, hosts and hostname files, and the lab's key pairs, as the lab
/// says (an apply killed before rewriting them leaves the old ones).
pub(super) fn repair_host_files(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let dir = state::dir(&r.lab.name);
    for h in &r.plan.hosts {
        let etc = hosts::host_dir(&dir, &h.node).join("etc");
        if !etc.join("hostname").exists() {
            continue; // never used: written when something first runs there
        }
        let stale = [
            ("resolv.conf", h.resolv_conf()),
            ("hosts", h.hosts_file()),
            ("hostname", format!("{}\n", h.hostname)),
        ]
        .iter()
        .any(|(f, want)| std::fs::read_to_string(etc.join(f)).ok().as_ref() != Some(want));
        if stale {
            hosts::rewrite_host_files(h, &dir)?;
            fixes.push(Fix {
                found: format!(
                    "{}: its resolv.conf, hosts or hostname is out of date",
                    h.node
                ),
                fixed: "wrote them again".into(),
            });
        }
    }
    for key in services::key_pairs(&r.lab, &dir)? {
        fixes.push(Fix {
            found: format!("key pair file {} is missing", key.display()),
            fixed: "created the key pair".into(),
        });
    }
    Ok(())
}

/// Every host's services run, each in its node's namespace.
/// A dead holder of the lab's mount template is replaced: programs started from now on
/// copy the template (those already running keep their own mounts).
pub(super) fn repair_mount_template(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let Some(dead) = r
        .state
        .processes
        .iter()
        .find(|p| p.what == mount_template::WHAT && !p.alive())
    else {
        return Ok(());
    };
    let now = hosts::template_of(&r.lab.name, &r.plan)?;
    fixes.push(Fix {
        found: format!("{} on {} (pid {}) is gone", dead.what, dead.node, dead.pid),
        fixed: format!("started a new one (pid {})", now.pid),
    });
    Ok(())
}

pub(super) fn repair_services(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
    let lab = &r.lab.name;
    let resting = resting(r);
    let st = State::load(lab)?.with_context(|| format!("lab `{lab}` has no state file"))?;
    let running_now: Vec<&Proc> = st
        .processes
        .iter()
        .filter(|p| p.alive() && in_its_namespace(r, p))
        .collect();
    let mut missing: Vec<(&Host, &'static str, Vec<u16>)> = Vec::new();
    for h in r.plan.hosts.iter().filter(|h| !resting.contains(&h.node)) {
        for (what, ports) in programs(h) {
            if !running_now
                .iter()
                .any(|p| p.node == h.node && p.what == what)
            {
                missing.push((h, what, ports));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    // What a killed program left holding its ports (nginx's workers outlive their
    // master) would keep the new one from listening.
    let mut failures = Vec::new();
    for (h, _, ports) in &missing {
        let Some(inode) = netns::inode(&h.ns) else {
            continue;
        };
        let others: Vec<i32> = netns::pids_in(&[inode])
            .into_iter()
            .filter(|pid| !running_now.iter().any(|p| p.pid == *pid))
            .collect();
        for port in ports {
            process::stop_all(&observe::listening_on(&others, *port), &mut failures);
        }
    }
    if !failures.is_empty() {
        bail!(
            "stop what holds the services' ports: {}",
            failures.join("; ")
        );
    }
    let dir = state::dir(lab);
    let nodes: Vec<&str> = missing.iter().map(|(h, _, _)| h.node.as_str()).collect();
    let already: Vec<(String, String)> = running_now
        .iter()
        .map(|p| (p.node.clone(), p.what.clone()))
        .collect();
    let mut started: Vec<Proc> = Vec::new();
    let template = hosts::template_of(lab, &r.plan)?;
    hosts::start_services(
        &r.lab,
        &r.plan,
        &dir,
        &|n| nodes.contains(&n),
        &already,
        &template,
        &mut |ps| {
            started.extend_from_slice(ps);
            hosts::record_started(lab, ps)
        },
    )?;
    for (h, what, _) in &missing {
        let was = st
            .processes
            .iter()
            .find(|p| p.node == h.node && p.what == *what)
            .map(|p| format!(" (pid {}) is gone", p.pid))
            .unwrap_or_else(|| " is not running".into());
        let now = started
            .iter()
            .find(|p| p.node == h.node && p.what == *what)
            .map(|p| format!(" (pid {})", p.pid))
            .unwrap_or_default();
        fixes.push(Fix {
            found: format!("{what} on {}{was}", h.node),
            fixed: format!("started it{now}"),
        });
    }
    Ok(())
}

/// A database server is up: a live recorded process in its node's namespace.
pub(super) fn server_up(r: &Running, node: &str) -> bool {
    r.state
        .processes
        .iter()
        .any(|p| p.node == node && p.what == database::WHAT && p.alive() && in_its_namespace(r, p))
}

/// The processes of `node`'s server (its `unshare` parent and mariadbd), recorded or not.
pub(super) fn server_pids(lab: &str, node: &str) -> Vec<i32> {
    let cnf = database::paths(&state::dir(lab), node).cnf;
    observe::pids_with_arg(&format!("--defaults-file={}", cnf.display()))
}

/// How long a server that runs without a live record may take to get one: the health
/// monitor records a server it starts at once.
pub(super) const RECORD_GRACE: Duration = Duration::from_secs(2);

/// Waits up to `patience` until `ready` holds for the lab as it is then.
pub(super) fn wait_for(
    lab: &str,
    patience: Duration,
    ready: impl Fn(&Running) -> bool,
) -> Result<Option<Running>> {
    let deadline = Instant::now() + patience;
    loop {
        let r = running(Some(lab))?;
        if ready(&r) {
            return Ok(Some(r));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every database server runs in its role, one server fixed per round:
/// * a server that runs without a live record (mariadbd drops the parent-death signal
///   when it changes user, so it outlives a killed `unshare` parent) is stopped, to be
///   started again like a dead one;
/// * a dead primary of a Multi-AZ database whose standby runs is the health monitor's: it
///   fails over and brings the old primary back as the standby, as RDS does, and repair
///   waits for that;
/// * any other dead primary restarts in place, and a dead standby rejoins its primary.
pub(super) fn repair_databases(lab: &str, fixes: &mut Vec<Fix>) -> Result<()> {
    let names: Vec<String> = running(Some(lab))?
        .lab
        .databases
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let dir = state::dir(lab);
    for db in &names {
        // At most: an unrecorded server of each node stopped, then each node started.
        for _ in 0..4 {
            let r = running(Some(lab))?;
            let resting = resting(&r);
            let d = r.lab.database(db).expect("listed above");
            let primary = d.primary.name.clone();
            let standby = d.standby.as_ref().map(|s| s.name.clone());
            // A server never brought up (no datadir) is not repair's to create.
            let needs_repair = |n: &String| {
                !resting.contains(n) && !server_up(&r, n) && database::paths(&dir, n).data.exists()
            };
            let Some(node) = [Some(&primary), standby.as_ref()]
                .into_iter()
                .flatten()
                .find(|n| needs_repair(n))
                .cloned()
            else {
                break;
            };
            let role = if node == primary {
                "primary"
            } else {
                "standby"
            };
            let found = match r
                .state
                .processes
                .iter()
                .find(|p| p.node == node && p.what == database::WHAT)
            {
                Some(p) => format!(
                    "the {role} of {db} (mariadbd on {node}, pid {}) is gone",
                    p.pid
                ),
                None => format!("the {role} of {db} (mariadbd on {node}) is not running"),
            };
            if !server_pids(lab, &node).is_empty() {
                if wait_for(lab, RECORD_GRACE, |now| server_up(now, &node))?.is_some() {
                    continue;
                }
                let mut failures = Vec::new();
                process::stop_all(&server_pids(lab, &node), &mut failures);
                if !failures.is_empty() {
                    bail!("stop mariadbd on {node}: {}", failures.join("; "));
                }
                fixes.push(Fix {
                    found: format!("{found}, but its server runs on unrecorded"),
                    fixed: "stopped the server, to start it again in its role".into(),
                });
                continue;
            }
            if node == primary {
                let monitored = standby
                    .as_ref()
                    .is_some_and(|s| !resting.contains(s) && server_up(&r, s))
                    && matches!(control::ping(lab), control::Ping::Answered(_));
                if monitored {
                    let failed_over = |now: &Running| {
                        database::roles(&now.lab, db).is_ok_and(|(p, _)| p.name != primary)
                            && server_up(now, &primary)
                    };
                    let Some(now) = wait_for(lab, DATABASE_PATIENCE, failed_over)? else {
                        bail!(
                            "{db} did not fail over from {primary} within {DATABASE_PATIENCE:?} (the supervisor's log: {})",
                            dir.join("supervisor.log").display()
                        );
                    };
                    let (new, _) = database::roles(&now.lab, db)?;
                    fixes.push(Fix {
                        found,
                        fixed: format!(
                            "the health monitor failed {db} over to {} and {primary} rejoined as its standby",
                            new.name
                        ),
                    });
                } else {
                    restart_primary(&r, db)?;
                    fixes.push(Fix {
                        found,
                        fixed: "restarted it as the primary".into(),
                    });
                }
            } else {
                let mut ev = database::Events::new(lab, db);
                database::rejoin(lab, db, &node, &mut ev)?;
                fixes.push(Fix {
                    found,
                    fixed: format!("restarted it; it replicates from {primary} again"),
                });
            }
        }
        // A server just started, by repair or by the health monitor, takes a moment to
        // answer and replicate.
        wait_for(lab, DATABASE_PATIENCE, |now| settled(now, db))?;
    }
    Ok(())
}

/// Every server of `db` that should run answers, and its standby replicates.
pub(super) fn settled(r: &Running, db: &str) -> bool {
    let Some(d) = r.lab.database(db) else {
        return true;
    };
    let resting = resting(r);
    let dir = state::dir(&r.lab.name);
    d.nodes().filter(|n| !resting.contains(&n.name)).all(|n| {
        let Ok(mut c) = mariadb::admin(&database::paths(&dir, &n.name), Duration::from_millis(500))
        else {
            return false;
        };
        n.name == d.primary.name
            || mariadb::status(&mut c).is_ok_and(|s| s.io_running && s.sql_running)
    })
}

/// Starts a database's primary again in place, writable once it is back (and, with a
/// live standby, once that replicates semi-synchronously again).
pub(super) fn restart_primary(r: &Running, db: &str) -> Result<()> {
    let lab = &r.lab.name;
    let dir = state::dir(lab);
    let d = r.lab.database(db).context("no such database")?;
    let node = &d.primary.name;
    let p = database::start_server(&r.plan, &dir, node, false, hosts::live_template(&r.state))?;
    State::modify(lab, |st| {
        database::record(st, &p);
        Ok(())
    })?;
    let mut c = mariadb::wait_ready(&database::paths(&dir, node), p.pid, DATABASE_PATIENCE)?;
    if let Some(s) = d.standby.as_ref().filter(|s| server_up(r, &s.name)) {
        mariadb::become_semi_sync_master(&mut c)?;
        let mut sc = mariadb::admin(&database::paths(&dir, &s.name), Duration::from_secs(5))?;
        database::wait_replicating(&mut c, &mut sc, Duration::from_secs(15))?;
    }
    mysql::prelude::Queryable::query_drop(&mut c, "SET GLOBAL read_only = 0")?;
    Ok(())
}
