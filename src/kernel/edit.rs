//! Changing a running lab in place: the kernel writes of a `PlanDelta`, and nothing else.
//!
//! `apply` builds a whole lab with indexes it chooses itself; an edit works among links that
//! already exist, so here the kernel picks the index of every new link and requests name
//! their links. Namespaces, links and tables that the delta does not name are never
//! touched, which is what keeps an edit from disturbing the connections and processes of
//! the rest of the lab. The order is the delta's: what goes away first (so a name or an
//! address can be reused), then new namespaces, links, addresses, routes and rules, then
//! firewall tables, each changed in one nftables transaction.

use super::apply::create_namespace;
use super::netlink::{Netlink, in_namespace};
use super::{netns, nft, nftnl, sysctl};
use crate::plan::firewall::{self, Family};
use crate::plan::{Address, Netns, Plan, PolicyRule, Route, Sysctl, Veth};
use crate::reconcile::{FirewallChange, NetnsDelta, PlanDelta};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;

/// Writes `d` to the kernel; `old` and `new` are the plans it was computed between.
pub fn apply(old: &Plan, new: &Plan, d: &PlanDelta) -> Result<()> {
    for name in &d.remove_namespaces {
        netns::delete(name).with_context(|| format!("delete namespace {name}"))?;
    }
    for c in &d.change_namespaces {
        let gone = Gone {
            rules: &c.remove_rules,
            routes: &c.remove_routes,
            addresses: &c.remove_addresses,
            veths: d.remove_veths.iter().filter(|v| v.a.ns == c.name).collect(),
            bridges: &c.remove_bridges,
        };
        if !gone.is_empty() {
            in_namespace(&c.name, async |nl| gone.remove(nl).await)
                .with_context(|| format!("in {}", c.name))?;
        }
    }
    // A veth whose `a` end sits in a namespace that did not otherwise change.
    for v in &d.remove_veths {
        if !d.change_namespaces.iter().any(|c| c.name == v.a.ns) {
            in_namespace(&v.a.ns, async |nl| nl.del_link(&v.a.name).await)
                .with_context(|| format!("in {}", v.a.ns))?;
        }
    }

    let created: Vec<&Netns> = d
        .create_namespaces
        .iter()
        .map(|name| {
            new.namespaces
                .iter()
                .find(|n| &n.name == name)
                .ok_or_else(|| anyhow!("the plan has no namespace {name}"))
        })
        .collect::<Result<_>>()?;
    for ns in &created {
        create_namespace(ns).with_context(|| format!("set up namespace {}", ns.name))?;
    }

    // Everything new, namespace by namespace: a created namespace gets all the plan puts
    // in it, a changed one only what the delta adds.
    let mut work: Vec<New> = created
        .iter()
        .map(|ns| New {
            ns: ns.name.clone(),
            sysctls: vec![],
            bridges: ns.bridges.clone(),
            addresses: ns.addresses.clone(),
            routes: ns.routes.clone(),
            rules: ns.rules.clone(),
            lo: true,
        })
        .collect();
    work.extend(d.change_namespaces.iter().map(|c| New {
        ns: c.name.clone(),
        sysctls: c.set_sysctls.clone(),
        bridges: c.add_bridges.clone(),
        addresses: c.add_addresses.clone(),
        routes: c.add_routes.clone(),
        rules: c.add_rules.clone(),
        lo: false,
    }));
    for w in &work {
        if !w.bridges.is_empty() || !w.sysctls.is_empty() {
            in_namespace(&w.ns, async |nl| w.links(nl).await)
                .with_context(|| format!("in {}", w.ns))?;
        }
    }
    let alias = format!("vpclab:{}", new.lab);
    for v in &d.add_veths {
        add_veth(v, &alias)?;
    }
    for w in work.iter().filter(|w| w.has_layer3()) {
        in_namespace(&w.ns, async |nl| w.layer3(nl).await)
            .with_context(|| format!("in {}", w.ns))?;
    }
    for v in &d.add_veths {
        forget_old_hardware_addresses(v, new, &d.create_namespaces)?;
    }

    firewalls(old, d)?;
    for c in &d.change_namespaces {
        if let Some(change) = &c.flow_log {
            super::flow::change(&c.name, change)?;
        }
    }
    Ok(())
}

/// What goes away inside one kept namespace, deleted in the reverse order of creation.
struct Gone<'a> {
    rules: &'a [PolicyRule],
    routes: &'a [Route],
    addresses: &'a [Address],
    veths: Vec<&'a Veth>,
    bridges: &'a [String],
}

impl Gone<'_> {
    fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.routes.is_empty()
            && self.addresses.is_empty()
            && self.veths.is_empty()
            && self.bridges.is_empty()
    }

    async fn remove(&self, nl: &Netlink) -> Result<()> {
        for r in self.rules {
            nl.del_rule(r.priority, &r.iif, r.table).await?;
        }
        for r in self.routes {
            nl.del_route(r.table, r.dst, r.via, &r.dev).await?;
        }
        for a in self.addresses {
            nl.del_address(&a.dev, a.addr).await?;
        }
        for v in &self.veths {
            nl.del_link(&v.a.name).await?;
        }
        for b in self.bridges {
            nl.del_link(b).await?;
        }
        Ok(())
    }
}

/// What is new inside one namespace.
struct New {
    ns: String,
    sysctls: Vec<Sysctl>,
    bridges: Vec<String>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    rules: Vec<PolicyRule>,
    /// A fresh namespace's loopback is down until someone brings it up.
    lo: bool,
}

impl New {
    /// Sysctls and bridges: before any veth, so a port has its bridge to join.
    async fn links(&self, nl: &Netlink) -> Result<()> {
        sysctl::apply(&self.sysctls)?;
        for b in &self.bridges {
            nl.add_bridge(b, 0).await?;
            nl.up_by_name(b, None).await?;
        }
        Ok(())
    }

    /// Whether `layer3` has anything to do: a security-group change alone reaches hundreds
    /// of namespaces that need no netlink socket.
    fn has_layer3(&self) -> bool {
        self.lo || !self.addresses.is_empty() || !self.routes.is_empty() || !self.rules.is_empty()
    }

    /// Once every veth exists and is up: addresses, routes and rules.
    async fn layer3(&self, nl: &Netlink) -> Result<()> {
        if self.lo {
            nl.up_by_name("lo", None).await?;
        }
        for a in &self.addresses {
            let index = nl.index_of(&a.dev).await?;
            nl.add_address(index, &a.dev, a.addr).await?;
        }
        for r in &self.routes {
            let index = nl.index_of(&r.dev).await?;
            nl.add_route(r.table, r.dst, r.via, index, &r.dev).await?;
        }
        for r in &self.rules {
            nl.add_rule(r.priority, &r.iif, r.table).await?;
        }
        Ok(())
    }
}

/// Threads editing firewalls side by side. Each namespace is a few system calls and the
/// kernel's work on them; on the 2-core machine the 1,000-instance benchmark runs on, 2 and
/// 4 threads took about the same time and 8 more.
const FIREWALL_WORKERS: usize = 4;

/// Writes the delta's firewall changes. A table that only gains or loses rules and set
/// elements (a security group's rule, its membership) is edited in place, in one
/// transaction per namespace and namespaces side by side: a group can have hundreds of
/// members. A table that is new, goes away, changes otherwise, or is not what the old plan
/// says it is (changed by hand) is replaced whole, as `nft::replace_here` always did. Every
/// namespace is tried; the error names each one that failed.
fn firewalls(old: &Plan, d: &PlanDelta) -> Result<()> {
    // (namespace, its old table, which edit); the members of a group mostly share their
    // table, so an edit is worked out once for each distinct pair of tables.
    let mut in_place: Vec<(&NetnsDelta, &firewall::Table, usize)> = Vec::new();
    let mut edits: Vec<(&firewall::Table, &firewall::Table, nftnl::Edit)> = Vec::new();
    let mut whole: Vec<&NetnsDelta> = Vec::new();
    let old_tables: HashMap<&str, &firewall::Table> = old
        .namespaces
        .iter()
        .filter_map(|n| Some((n.name.as_str(), n.firewall.as_ref()?)))
        .collect();
    for c in &d.change_namespaces {
        let Some(change) = &c.firewall else { continue };
        let before = old_tables.get(c.name.as_str()).copied();
        let (FirewallChange::Replace(after), Some(before)) = (change, before) else {
            whole.push(c);
            continue;
        };
        let known = edits
            .iter()
            .rposition(|(b, a, _)| *b == before && *a == after);
        let edit = match known {
            Some(i) => Some(i),
            None => nftnl::Edit::between(before, after).map(|e| {
                edits.push((before, after, e));
                edits.len() - 1
            }),
        };
        match edit {
            Some(i) => in_place.push((c, before, i)),
            None => whole.push(c),
        }
    }
    let names: Vec<&str> = in_place.iter().map(|(c, ..)| c.name.as_str()).collect();
    let edited = netns::for_each(&names, FIREWALL_WORKERS, |i| {
        let (_, before, e) = in_place[i];
        nftnl::edit_here(before, &edits[e].2)
    });
    let mut failed = Vec::new();
    let mut retry = Vec::new();
    // Sockets stay open until every namespace is edited: closing one waits for the kernel
    // to free what its edit deleted, and by now that has mostly happened.
    let mut sockets = Vec::new();
    for (result, (c, ..)) in edited.into_iter().zip(in_place) {
        match result {
            Ok(Some(socket)) => sockets.push(socket),
            // Not the table the old plan says (changed by hand): replaced whole.
            Ok(None) => whole.push(c),
            Err(e) => retry.push((c, e)),
        }
    }
    drop(sockets);
    for c in whole {
        if let Err(e) = replace_whole(old, c) {
            failed.push(format!("{}: {e:#}", c.name));
        }
    }
    // An edit the kernel refused (a set element someone deleted by hand) changed nothing
    // there; loading the whole table may still work.
    for (c, edit_error) in retry {
        if let Err(e) = replace_whole(old, c) {
            failed.push(format!("{}: {edit_error:#}; then {e:#}", c.name));
        }
    }
    if !failed.is_empty() {
        bail!(
            "the firewall of {} namespace{} could not be changed:\n  {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// Loads the new table of `c` in one transaction, or deletes the table it no longer has.
fn replace_whole(old: &Plan, c: &NetnsDelta) -> Result<()> {
    let Some(change) = &c.firewall else {
        return Ok(());
    };
    let handle = netns::open(&c.name)?;
    netns::run_in(&handle, || match change {
        FirewallChange::Replace(t) => nft::replace_here(t),
        FirewallChange::Delete => {
            let family = old
                .namespaces
                .iter()
                .find(|n| n.name == c.name)
                .and_then(|n| n.firewall.as_ref())
                .map_or(Family::Inet, |t| t.family);
            nft::delete_here(family)
        }
    })
    .with_context(|| format!("replace the firewall of {}", c.name))
}

/// A veth end made again has a new hardware address, but across the pair the neighbour
/// table may still remember the old one for its addresses (the same instance made again,
/// or one added with the IP of one just removed): such entries are deleted, so the next
/// packet asks again instead of going to a link that no longer exists. Where a bridge holds
/// the other end, the bridge is the device that keeps the table. A namespace just created
/// remembers nothing.
fn forget_old_hardware_addresses(v: &Veth, new: &Plan, created: &[String]) -> Result<()> {
    for (end, peer) in [(&v.a, &v.b), (&v.b, &v.a)] {
        if created.contains(&peer.ns) {
            continue;
        }
        let ips: Vec<_> = new
            .namespaces
            .iter()
            .filter(|n| n.name == end.ns)
            .flat_map(|n| &n.addresses)
            .filter(|a| a.dev == end.name)
            .map(|a| a.addr.addr())
            .collect();
        if ips.is_empty() {
            continue;
        }
        let dev = peer.master.as_deref().unwrap_or(&peer.name);
        in_namespace(&peer.ns, async |nl| {
            for ip in &ips {
                nl.forget_neighbour(dev, *ip).await?;
            }
            Ok(())
        })
        .with_context(|| format!("in {}", peer.ns))?;
    }
    Ok(())
}

/// Creates `v` in its `a` namespace with the peer placed directly in its `b` namespace
/// (the kernel picks both indexes), then brings each end up, joined to its bridge.
fn add_veth(v: &Veth, alias: &str) -> Result<()> {
    let peer = netns::open(&v.b.ns)?;
    in_namespace(&v.a.ns, async |nl| {
        use std::os::fd::AsRawFd;
        nl.add_veth(&v.a.name, 0, &v.b.name, 0, peer.as_raw_fd(), alias)
            .await?;
        nl.up_by_name(&v.a.name, v.a.master.as_deref()).await
    })
    .with_context(|| format!("in {}", v.a.ns))?;
    in_namespace(&v.b.ns, async |nl| {
        nl.up_by_name(&v.b.name, v.b.master.as_deref()).await
    })
    .with_context(|| format!("in {}", v.b.ns))
}
