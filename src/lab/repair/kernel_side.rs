//! The kernel half of a repair: what the kernel holds against the desired plan, as a delta
//! `kernel::edit` writes.

use super::super::Running;
use super::*;
use crate::kernel::netlink::in_namespace;
use crate::kernel::observe::{self, LinkRef, Observed, Stray};
use crate::kernel::{self};
use crate::plan::network::HOST_IF;
use crate::plan::{MAIN_TABLE, Plan, Route, VethEnd, firewall};
use crate::reconcile::{self, FirewallChange, FlowLogChange, PlanDelta};
use anyhow::{Context, Result};
use std::collections::BTreeSet;

/// The lab's plan as the kernel should hold it now, and the links meant to be down: a
/// stopped instance's and those of every node of an availability zone taken down. The
/// kernel drops the routes through a link that goes down, so they are not wanted.
pub(super) fn desired(r: &Running) -> (Plan, Vec<LinkRef>) {
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
pub(super) fn resting(r: &Running) -> BTreeSet<String> {
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
    pub(super) desired: Plan,
    pub(super) down: Vec<LinkRef>,
    pub(super) observed: Observed,
    pub(super) delta: PlanDelta,
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
pub(super) fn sysctls_in_plan_order(delta: &mut PlanDelta, desired: &Plan) {
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

pub(super) fn node_of<'a>(plan: &'a Plan, ns: &'a str) -> &'a str {
    plan.namespaces
        .iter()
        .find(|n| n.name == ns)
        .map_or(ns, |n| n.node.as_str())
}

pub(super) fn route_text(r: &Route) -> String {
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
pub(super) fn kernel_fixes(desired: &Plan, observed: &Observed, delta: &PlanDelta) -> Vec<Fix> {
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
        if let Some(FlowLogChange::Install(_)) = &c.flow_log {
            out.push(fix(
                format!(
                    "{node}: the flow-log counting table inet {} is missing",
                    crate::plan::flowlogs::TABLE
                ),
                "loaded it",
            ));
        }
    }
    out
}

/// Deletes a link, unless it is already gone: a stray end may vanish by itself while
/// the kernel frees the namespace its peer was in.
pub(super) fn delete_stray(end: &VethEnd) -> Result<()> {
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

pub(super) fn fix_kernel(check: &KernelCheck) -> Result<()> {
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
