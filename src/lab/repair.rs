//! `vpclab repair`: a running lab becomes again what its state file says, whatever broke
//! it: a namespace deleted by hand, a flushed nftables table, a link, address or route
//! removed, a killed service, database server or supervisor, an `apply` killed half-way.
//!
//! The kernel is repaired as an edit is applied, from the other side: `kernel::observe`
//! reads what the kernel holds into the plan's own types, and the difference between
//! that and the desired plan is an ordinary `reconcile::delta`, written by
//! `kernel::edit`. A lab that is whole gives an empty delta, so repairing it writes
//! nothing. Processes are then compared with what the lab runs: every host's services,
//! the database servers (a dead primary of a Multi-AZ database is the health monitor's
//! to fail over; repair waits for it), and the supervisor's pair.
//!
//! The order matters: namespaces an unfinished apply left behind go first, then the
//! programs stranded in a namespace whose name was deleted (they keep the old namespace,
//! and with it both ends of its veth pairs, alive), then the kernel, then the programs.

use super::state::{self, Phase, State};
use super::{Running, control, database, down, hosts, running, status, supervisor};
use crate::kernel::netlink::in_namespace;
use crate::kernel::observe::{self, LinkRef, Observed, Stray};
use crate::kernel::process::{self, Proc};
use crate::kernel::{self, netns};
use crate::plan::network::HOST_IF;
use crate::plan::{Host, MAIN_TABLE, Plan, Route, VethEnd, firewall};
use crate::reconcile::{self, FirewallChange, PlanDelta};
use crate::services::{self, mariadb};
use crate::topology::Service;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One thing found wrong, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub found: String,
    pub fixed: String,
}

/// What a repair did.
#[derive(Debug, Serialize)]
pub struct Repaired {
    pub lab: String,
    pub fixes: Vec<Fix>,
    /// Kernel objects created, deleted or rewritten: 0 when the kernel was whole.
    pub kernel_writes: usize,
    /// The lab as `status` sees it afterwards.
    pub healthy: bool,
    pub problems: Vec<String>,
    pub ms: u64,
}

/// How long a database server may take to come back (crash recovery included), and a
/// failover by the health monitor to happen.
const DATABASE_PATIENCE: Duration = Duration::from_secs(30);

/// Repairs the running lab `name` (the only one, or `handson`, when `None`).
pub fn repair(name: Option<&str>) -> Result<Repaired> {
    let started = Instant::now();
    let lab = running(name)?.lab.name;
    let _one_at_a_time = crate::kernel::lock::exclusive(&state::changes_lock(&lab))?;
    // Read once the lock is held: what an earlier repair did is part of it.
    let r = running(Some(&lab))?;
    if r.state.phase == Phase::Creating {
        bail!(
            "`up` of lab `{lab}` did not finish, so there is no complete lab to repair\n  hint: `sudo vpclab down {lab}` removes what it made; then `up` again"
        );
    }
    let mut fixes = Vec::new();
    remove_leftover_namespaces(&r, &mut fixes)?;
    stop_stranded(&r, &mut fixes)?;
    stop_unwanted(&r, &mut fixes)?;

    let check = check_kernel(&r)?;
    let kernel_writes = check.kernel_writes();
    if kernel_writes > 0 {
        fix_kernel(&check)?;
        fixes.extend(check.fixes());
    }

    // A lab brought up without services (`up --no-services`) runs no programs at all.
    let services_on = r.state.processes.iter().any(|p| p.node == supervisor::NODE);
    if services_on {
        repair_supervisor(&r, &check.observed.missing_namespaces, &mut fixes)?;
        repair_host_files(&r, &mut fixes)?;
        repair_services(&r, &mut fixes)?;
        if !r.state.runtime.databases_off {
            repair_databases(&lab, &mut fixes)?;
        }
    }
    if r.state.applying {
        super::apply::finish(&r.lab.name, &r.lab, &r.plan)?;
        fixes.push(Fix {
            found: format!(
                "an apply of {} did not finish (its lab file was recorded, not all of it made)",
                r.state.source
            ),
            fixed: "made the rest and cleared its mark".into(),
        });
    }
    if services_on && !fixes.is_empty() {
        control::request(&lab, &control::Request::Reload, Duration::from_secs(5))
            .context("reload the supervisor's DNS records and instance metadata")?;
    }

    let after = status::status(&running(Some(&lab))?);
    Ok(Repaired {
        lab,
        fixes,
        kernel_writes,
        healthy: after.healthy,
        problems: after.problems,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// What `repair` prints: one line per fix, then the outcome.
pub fn render(r: &Repaired) -> String {
    let mut o = String::new();
    for f in &r.fixes {
        o.push_str(&format!("{}: {}\n", f.found, f.fixed));
    }
    if r.fixes.is_empty() && r.healthy {
        o.push_str("no changes\n");
    } else if !r.fixes.is_empty() {
        o.push_str(&format!(
            "\nrepaired {} problem{} of lab {} in {} ms ({} kernel write{})\n",
            r.fixes.len(),
            plural(r.fixes.len()),
            r.lab,
            r.ms,
            r.kernel_writes,
            plural(r.kernel_writes)
        ));
    }
    for p in &r.problems {
        o.push_str(&format!("still wrong: {p}\n"));
    }
    o
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The lab's plan as the kernel should hold it now, and the links meant to be down: a
/// stopped instance's and those of every node of an availability zone taken down. The
/// kernel drops the routes through a link that goes down, so they are not wanted.
fn desired(r: &Running) -> (Plan, Vec<LinkRef>) {
    let resting = resting(r);
    let mut plan = r.plan.clone();
    let mut down = Vec::new();
    for ns in &mut plan.namespaces {
        if resting.contains(&ns.node) {
            ns.routes.retain(|route| route.dev != HOST_IF);
            down.push(LinkRef {
                ns: ns.name.clone(),
                name: HOST_IF.into(),
            });
        }
    }
    (plan, down)
}

/// The nodes whose link is meant to be down (stopped instances, every node of an
/// availability zone taken down): nothing runs on them.
fn resting(r: &Running) -> BTreeSet<String> {
    r.plan
        .namespaces
        .iter()
        .filter(|ns| {
            r.state.runtime.stopped.contains(&ns.node)
                || ns
                    .az
                    .as_ref()
                    .is_some_and(|az| r.state.runtime.azs_down.contains(az))
        })
        .map(|ns| ns.node.clone())
        .collect()
}

/// The kernel compared with the desired plan.
pub struct KernelCheck {
    desired: Plan,
    down: Vec<LinkRef>,
    observed: Observed,
    delta: PlanDelta,
}

/// Reads the kernel's side of the lab and what it takes to make it the desired plan.
pub fn check_kernel(r: &Running) -> Result<KernelCheck> {
    let (desired, down) = desired(r);
    let observed = observe::observe(&desired, &down)?;
    let mut delta = reconcile::delta(&observed.plan, &desired);
    sysctls_in_plan_order(&mut delta, &desired);
    Ok(KernelCheck {
        desired,
        down,
        observed,
        delta,
    })
}

/// Writing one sysctl can change another (turning `ip_forward` on or off resets
/// `accept_redirects`), which is why the plan orders them: from the first one that is
/// wrong on, a namespace's sysctls are all written again in the plan's order.
fn sysctls_in_plan_order(delta: &mut PlanDelta, desired: &Plan) {
    for c in &mut delta.change_namespaces {
        let Some(first) = c.set_sysctls.first() else {
            continue;
        };
        if let Some(ns) = desired.namespaces.iter().find(|n| n.name == c.name)
            && let Some(i) = ns.sysctls.iter().position(|s| s.key == first.key)
        {
            c.set_sysctls = ns.sysctls[i..].to_vec();
        }
    }
}

impl KernelCheck {
    pub fn kernel_writes(&self) -> usize {
        self.delta.kernel_writes(&self.desired)
            + self.observed.stray_ends.len()
            + self.observed.down_links.len()
    }

    pub fn fixes(&self) -> Vec<Fix> {
        kernel_fixes(&self.desired, &self.observed, &self.delta)
    }
}

/// What `status` reports of the kernel: everything `repair` would fix there but the
/// missing namespaces, which `status` names itself.
pub fn kernel_problems(r: &Running) -> Result<Vec<String>> {
    let check = check_kernel(r)?;
    let missing = &check.observed.missing_namespaces;
    Ok(check
        .fixes()
        .into_iter()
        .skip(missing.len())
        .map(|f| f.found)
        .collect())
}

fn node_of<'a>(plan: &'a Plan, ns: &'a str) -> &'a str {
    plan.namespaces
        .iter()
        .find(|n| n.name == ns)
        .map_or(ns, |n| n.node.as_str())
}

fn route_text(r: &Route) -> String {
    let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
    let table = if r.table == MAIN_TABLE {
        String::new()
    } else {
        format!(" table {}", r.table)
    };
    format!("route {}{via} dev {}{table}", r.dst, r.dev)
}

/// One line per kernel object the delta writes, by what it is missing or has too much:
/// the missing namespaces first. What a namespace or veth pair made again brings with it
/// (its addresses and routes) is part of that line.
fn kernel_fixes(desired: &Plan, observed: &Observed, delta: &PlanDelta) -> Vec<Fix> {
    let mut out = Vec::new();
    let fix = |found: String, fixed: &str| Fix {
        found,
        fixed: fixed.into(),
    };
    let missing = |ns: &str| observed.missing_namespaces.iter().any(|m| m == ns);
    for ns in &observed.missing_namespaces {
        out.push(fix(
            format!("namespace {ns} ({}) is missing", node_of(desired, ns)),
            "created it with everything the plan puts in it",
        ));
    }
    let at = |end: &VethEnd| format!("{}/{}", node_of(desired, &end.ns), end.name);
    for (end, why) in &observed.stray_ends {
        let Some(v) = desired.veths.iter().find(|v| v.a == *end || v.b == *end) else {
            continue;
        };
        let peer = if v.a == *end { &v.b } else { &v.a };
        let found = match why {
            Stray::PeerNamespaceMissing => format!(
                "{} lost its peer {} (its namespace is missing)",
                at(end),
                at(peer)
            ),
            Stray::PeerGone => format!("{} lost its peer {}", at(end), at(peer)),
            Stray::OffBridge => {
                format!("veth pair {} <-> {} is off its bridge", at(&v.a), at(&v.b))
            }
        };
        let fixed = if missing(&peer.ns) {
            "deleted it; the pair is made again with the namespace"
        } else {
            "deleted it and made the pair again"
        };
        out.push(fix(found, fixed));
    }
    let stray = |v: &crate::plan::Veth| {
        observed
            .stray_ends
            .iter()
            .any(|(end, _)| *end == v.a || *end == v.b)
    };
    for v in &delta.add_veths {
        if !missing(&v.a.ns) && !missing(&v.b.ns) && !stray(v) {
            out.push(fix(
                format!("veth pair {} <-> {} is missing", at(&v.a), at(&v.b)),
                "created it with its addresses and routes",
            ));
        }
    }
    for l in &observed.down_links {
        out.push(fix(
            format!("{}: link {} is down", node_of(desired, &l.ns), l.name),
            "brought it up",
        ));
    }
    for c in &delta.change_namespaces {
        let node = node_of(desired, &c.name);
        // Links made again start bare: what they carry is part of making them.
        let fresh: BTreeSet<&str> = delta
            .add_veths
            .iter()
            .flat_map(|v| [&v.a, &v.b])
            .filter(|end| end.ns == c.name)
            .map(|end| end.name.as_str())
            .collect();
        for s in &c.set_sysctls {
            let now = observed
                .plan
                .netns(node)
                .and_then(|n| n.sysctls.iter().find(|o| o.key == s.key))
                .map_or("unset", |o| o.value.as_str());
            if now == s.value {
                continue; // written again only to keep the plan's order
            }
            out.push(fix(
                format!("{node}: sysctl {} is {now}, not {}", s.key, s.value),
                "set it",
            ));
        }
        for b in &c.add_bridges {
            out.push(fix(format!("{node}: bridge {b} is missing"), "created it"));
        }
        for b in &c.remove_bridges {
            out.push(fix(
                format!("{node}: bridge {b} is not in the plan"),
                "deleted it",
            ));
        }
        for a in c
            .add_addresses
            .iter()
            .filter(|a| !fresh.contains(a.dev.as_str()))
        {
            out.push(fix(
                format!("{node}: address {} on {} is missing", a.addr, a.dev),
                "added it",
            ));
        }
        for a in &c.remove_addresses {
            out.push(fix(
                format!("{node}: address {} on {} is not in the plan", a.addr, a.dev),
                "deleted it",
            ));
        }
        for r in c
            .add_routes
            .iter()
            .filter(|r| !fresh.contains(r.dev.as_str()))
        {
            out.push(fix(
                format!("{node}: {} is missing", route_text(r)),
                "added it",
            ));
        }
        for r in &c.remove_routes {
            out.push(fix(
                format!("{node}: {} is not in the plan", route_text(r)),
                "deleted it",
            ));
        }
        for r in &c.add_rules {
            out.push(fix(
                format!(
                    "{node}: policy rule priority {} iif {} lookup {} is missing",
                    r.priority, r.iif, r.table
                ),
                "added it",
            ));
        }
        for r in &c.remove_rules {
            out.push(fix(
                format!(
                    "{node}: policy rule priority {} iif {} lookup {} is not in the plan",
                    r.priority, r.iif, r.table
                ),
                "deleted it",
            ));
        }
        if let Some(FirewallChange::Replace(t)) = &c.firewall {
            let family = match t.family {
                firewall::Family::Ip => "ip",
                firewall::Family::Inet => "inet",
            };
            let table = format!("nftables table {family} {}", firewall::TABLE);
            match observed
                .firewall_differences
                .iter()
                .find(|(ns, _)| *ns == c.name)
            {
                Some((_, why)) => out.push(fix(
                    format!("{node}: {table} is not the plan's ({why})"),
                    "replaced it with the plan's, in one transaction",
                )),
                None => out.push(fix(format!("{node}: {table} is missing"), "loaded it")),
            }
        }
    }
    out
}

/// Deletes a link, unless it is already gone: a stray end may vanish by itself while
/// the kernel frees the namespace its peer was in.
fn delete_stray(end: &VethEnd) -> Result<()> {
    in_namespace(&end.ns, async |nl| {
        if let Err(e) = nl.del_link(&end.name).await
            && nl.index_of(&end.name).await.is_ok()
        {
            return Err(e);
        }
        Ok(())
    })
    .with_context(|| format!("in {}", end.ns))
}

fn fix_kernel(check: &KernelCheck) -> Result<()> {
    for (end, _) in &check.observed.stray_ends {
        delete_stray(end)?;
    }
    for l in &check.observed.down_links {
        in_namespace(&l.ns, async |nl| nl.set_state(&l.name, true).await)
            .with_context(|| format!("in {}", l.ns))?;
    }
    kernel::edit::apply(&check.observed.plan, &check.desired, &check.delta)
        .context("change the kernel")?;
    // A namespace made again has every link up; one meant to be down goes down again.
    for l in &check.down {
        if check.observed.missing_namespaces.contains(&l.ns) {
            kernel::link_down(&l.ns, &l.name)?;
        }
    }
    Ok(())
}

/// Namespaces of the lab that its plan no longer has (an apply that removed a node was
/// killed before deleting them): their programs stop and they go.
fn remove_leftover_namespaces(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
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

fn es(n: usize) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// Whether a recorded process of a lab node runs inside that node's namespace as it is
/// now. After `ip netns del`, its programs keep the deleted namespace alive, and with it
/// their addresses and one end of each veth pair.
fn in_its_namespace(r: &Running, p: &Proc) -> bool {
    let Some(ns) = r.plan.netns(&p.node) else {
        return false;
    };
    netns::inode(&ns.name).is_some_and(|want| observe::netns_of(p.pid) == Some(want))
}

/// Stops the programs that run in a namespace whose name was deleted, and everything
/// else in there (nginx's workers, login sessions), so that namespace is freed.
fn stop_stranded(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
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
fn programs(h: &Host) -> Vec<(&'static str, Vec<u16>)> {
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
fn wanted(r: &Running, resting: &BTreeSet<String>, node: &str, what: &str) -> bool {
    if node == supervisor::NODE {
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
fn stop_unwanted(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
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
fn repair_supervisor(r: &Running, recreated: &[String], fixes: &mut Vec<Fix>) -> Result<()> {
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
fn repair_host_files(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
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
fn repair_services(r: &Running, fixes: &mut Vec<Fix>) -> Result<()> {
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
    hosts::start_services(
        &r.lab,
        &r.plan,
        &dir,
        &|n| nodes.contains(&n),
        &already,
        &mut |p| {
            started.push(p.clone());
            State::modify(lab, |st| {
                st.processes
                    .retain(|x| !(x.node == p.node && x.what == p.what));
                st.processes.push(p.clone());
                Ok(())
            })
            .map(|_| ())
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
fn server_up(r: &Running, node: &str) -> bool {
    r.state
        .processes
        .iter()
        .any(|p| p.node == node && p.what == database::WHAT && p.alive() && in_its_namespace(r, p))
}

/// The processes of `node`'s server (its `unshare` parent and mariadbd), recorded or not.
fn server_pids(lab: &str, node: &str) -> Vec<i32> {
    let cnf = database::paths(&state::dir(lab), node).cnf;
    observe::pids_with_arg(&format!("--defaults-file={}", cnf.display()))
}

/// How long a server that runs without a live record may take to get one: the health
/// monitor records a server it starts at once.
const RECORD_GRACE: Duration = Duration::from_secs(2);

/// Waits up to `patience` until `ready` holds for the lab as it is then.
fn wait_for(
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
fn repair_databases(lab: &str, fixes: &mut Vec<Fix>) -> Result<()> {
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
fn settled(r: &Running, db: &str) -> bool {
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
fn restart_primary(r: &Running, db: &str) -> Result<()> {
    let lab = &r.lab.name;
    let dir = state::dir(lab);
    let d = r.lab.database(db).context("no such database")?;
    let node = &d.primary.name;
    let p = database::start_server(&r.plan, &dir, node, false)?;
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

/// What `apply` does once it has made everything: the mark goes, and so do the records
/// of what the applied file no longer has.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::apply_runtime;
    use crate::topology::{self, Source};

    /// The built-in lab as running, with `change` made to its runtime record.
    fn running_with(change: impl FnOnce(&mut state::Runtime)) -> Running {
        let loaded = topology::load(Source::Builtin, None).expect("built-in lab loads");
        let mut runtime = state::Runtime::default();
        change(&mut runtime);
        let lab = apply_runtime(loaded.lab.clone(), &runtime);
        let plan = crate::plan::compile(&lab);
        Running {
            state: State {
                lab: lab.name.clone(),
                source: "built-in".into(),
                yaml: loaded.text,
                phase: Phase::Up,
                created: 0,
                namespaces: plan.namespaces.iter().map(|n| n.name.clone()).collect(),
                processes: vec![],
                runtime,
                applying: false,
                allocations: crate::topology::Allocations::of(&loaded.lab),
            },
            file_lab: loaded.lab,
            lab,
            plan,
        }
    }

    fn whole(plan: &Plan) -> Observed {
        Observed {
            plan: plan.clone(),
            missing_namespaces: vec![],
            stray_ends: vec![],
            down_links: vec![],
            firewall_differences: vec![],
        }
    }

    fn ns<'a>(plan: &'a mut Plan, node: &str) -> &'a mut crate::plan::Netns {
        plan.namespaces.iter_mut().find(|n| n.node == node).unwrap()
    }

    fn found(fixes: &[Fix]) -> Vec<&str> {
        fixes.iter().map(|f| f.found.as_str()).collect()
    }

    #[test]
    fn a_kernel_that_holds_the_plan_needs_no_write_and_no_fix() {
        let r = running_with(|_| {});
        let (desired, _) = desired(&r);
        let observed = whole(&desired);
        let delta = reconcile::delta(&observed.plan, &desired);
        assert!(delta.is_empty());
        assert_eq!(delta.kernel_writes(&desired), 0);
        assert!(kernel_fixes(&desired, &observed, &delta).is_empty());
    }

    #[test]
    fn what_is_missing_or_extra_in_a_kept_namespace_is_one_line_each() {
        let r = running_with(|_| {});
        let (desired, _) = desired(&r);
        let mut observed = whole(&desired);
        let app = ns(&mut observed.plan, "app");
        app.routes.clear();
        app.addresses.push(crate::plan::Address {
            dev: "eth0".into(),
            addr: "10.0.1.200/24".parse().unwrap(),
        });
        app.sysctls[0].value = "7".into();
        let key = app.sysctls[0].key.clone();
        let want = desired.netns("app").unwrap().sysctls[0].value.clone();
        ns(&mut observed.plan, "vpc-router").rules.remove(1);
        ns(&mut observed.plan, "web").firewall = None;
        observed.firewall_differences.push((
            desired.netns("web").unwrap().name.clone(),
            "chain input has 0 of its 7 rules".into(),
        ));
        ns(&mut observed.plan, "my-igw").firewall = None;
        let mut delta = reconcile::delta(&observed.plan, &desired);
        sysctls_in_plan_order(&mut delta, &desired);
        let fixes = kernel_fixes(&desired, &observed, &delta);
        assert_eq!(
            found(&fixes),
            [
                "vpc-router: policy rule priority 1001 iif br-private-2a lookup 102 is missing",
                "my-igw: nftables table ip vpclab is missing",
                "web: nftables table inet vpclab is not the plan's (chain input has 0 of its 7 rules)",
                &format!("app: sysctl {key} is 7, not {want}"),
                "app: address 10.0.1.200/24 on eth0 is not in the plan",
                "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing",
            ]
        );
        assert_eq!(
            fixes[2].fixed,
            "replaced it with the plan's, in one transaction"
        );
        assert_eq!(fixes[4].fixed, "deleted it");
        // The first sysctl was wrong: all of them are written again, in order, though
        // only the wrong one is named.
        let all = &desired.netns("app").unwrap().sysctls;
        let app = delta
            .change_namespaces
            .iter()
            .find(|c| c.name == desired.netns("app").unwrap().name)
            .unwrap();
        assert_eq!(&app.set_sysctls, all);
        assert_eq!(delta.kernel_writes(&desired), fixes.len() - 1 + all.len());
    }

    #[test]
    fn a_missing_namespace_is_one_line_and_its_surviving_peer_another() {
        let r = running_with(|_| {});
        let (desired, _) = desired(&r);
        let mut observed = whole(&desired);
        let web = desired.netns("web").unwrap().name.clone();
        observed.plan.namespaces.retain(|n| n.name != web);
        observed.missing_namespaces.push(web.clone());
        let pair = |v: &&crate::plan::Veth| v.a.ns == web || v.b.ns == web;
        let veth = desired.veths.iter().find(pair).unwrap().clone();
        observed.plan.veths.retain(|v| v != &veth);
        let router_end = if veth.a.ns == web { &veth.b } else { &veth.a };
        observed
            .stray_ends
            .push((router_end.clone(), Stray::PeerNamespaceMissing));
        // A link of a kept namespace deleted by hand: its pair is missing as a whole.
        let app = desired.netns("app").unwrap().name.clone();
        let app_veth = desired
            .veths
            .iter()
            .find(|v| v.a.ns == app || v.b.ns == app)
            .unwrap()
            .clone();
        observed.plan.veths.retain(|v| v != &app_veth);
        ns(&mut observed.plan, "app").addresses.clear();
        ns(&mut observed.plan, "app").routes.clear();
        let delta = reconcile::delta(&observed.plan, &desired);
        let fixes = kernel_fixes(&desired, &observed, &delta);
        assert_eq!(
            found(&fixes),
            [
                format!("namespace {web} (web) is missing"),
                "vpc-router/p-web lost its peer web/eth0 (its namespace is missing)".to_string(),
                "veth pair app/eth0 <-> vpc-router/p-app is missing".to_string(),
            ]
        );
        assert_eq!(
            fixes[1].fixed,
            "deleted it; the pair is made again with the namespace"
        );
        assert_eq!(delta.create_namespaces, [web]);
        assert!(delta.add_veths.contains(&veth) && delta.add_veths.contains(&app_veth));
        // The fresh link gets its address and route back without a line of its own.
        let app_delta = delta
            .change_namespaces
            .iter()
            .find(|c| c.name == app)
            .unwrap();
        assert_eq!(app_delta.add_addresses.len(), 1);
        assert_eq!(app_delta.add_routes.len(), 1);
    }

    #[test]
    fn a_stopped_instance_and_a_downed_zone_keep_their_links_down_without_routes() {
        let r = running_with(|rt| {
            rt.stopped.insert("web".into());
            rt.azs_down.insert("ap-northeast-2a".into());
        });
        let (plan, down) = desired(&r);
        let mut nodes: Vec<&str> = down.iter().map(|l| node_of(&plan, &l.ns)).collect();
        nodes.sort();
        assert_eq!(nodes, ["app", "my-database-2a", "my-nat", "web"]);
        assert!(down.iter().all(|l| l.name == HOST_IF));
        for node in nodes {
            assert!(
                plan.netns(node)
                    .unwrap()
                    .routes
                    .iter()
                    .all(|r| r.dev != HOST_IF),
                "{node}"
            );
        }
        assert!(!plan.netns("my-database-2c").unwrap().routes.is_empty());
        let resting = resting(&r);
        assert!(!wanted(&r, &resting, "web", "sshd"));
        assert!(!wanted(&r, &resting, "my-database-2a", database::WHAT));
        assert!(wanted(&r, &resting, "my-database-2c", database::WHAT));
        assert!(wanted(&r, &resting, "example-web", "nginx"));
        assert!(!wanted(&r, &resting, "example-web", "sshd"));
        assert!(wanted(&r, &resting, supervisor::NODE, supervisor::STANDBY));
    }

    #[test]
    fn each_service_is_one_program_listening_on_its_ports() {
        let r = running_with(|_| {});
        assert_eq!(
            programs(r.plan.host("web").unwrap()),
            [("sshd", vec![22]), ("nginx", vec![80, 443])]
        );
        assert_eq!(programs(r.plan.host("app").unwrap()), [("sshd", vec![22])]);
        assert!(programs(r.plan.host("my-laptop").unwrap()).is_empty());
    }

    #[test]
    fn the_report_says_no_changes_only_for_a_whole_lab() {
        let mut out = Repaired {
            lab: "lab1".into(),
            fixes: vec![],
            kernel_writes: 0,
            healthy: true,
            problems: vec![],
            ms: 3,
        };
        assert_eq!(render(&out), "no changes\n");
        out.healthy = false;
        out.problems = vec!["database server db-2a does not answer".into()];
        assert_eq!(
            render(&out),
            "still wrong: database server db-2a does not answer\n"
        );
        out.healthy = true;
        out.problems.clear();
        out.kernel_writes = 1;
        out.fixes = vec![Fix {
            found: "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing".into(),
            fixed: "added it".into(),
        }];
        assert_eq!(
            render(&out),
            "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing: added it\n\nrepaired 1 problem of lab lab1 in 3 ms (1 kernel write)\n"
        );
    }
}
