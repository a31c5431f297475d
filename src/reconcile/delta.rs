//! The kernel side of an edit: what to create, delete and rewrite so the running lab's
//! namespaces match the edited plan, and nothing else.
//!
//! A namespace, link or host that did not change does not appear at all: `apply` must
//! leave it exactly as it is (the same network namespace, the same processes and their
//! connections), which is the point of applying an edit instead of `down` and `up`.
//!
//! Applied in this order, no step needs something a later step makes: remove namespaces;
//! in each changed namespace remove rules, routes and addresses; remove veths, then
//! bridges; create namespaces; add bridges, veths, addresses, routes and rules; replace
//! firewall tables; load or delete flow-log tables; reload DNS; stop and start services.

use crate::plan::flowlogs::Counting;
use crate::plan::{Address, Host, Netns, Plan, PolicyRule, Route, Sysctl, Veth, firewall};
use crate::topology::Service;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanDelta {
    /// Namespaces to create with everything the new plan puts in them (their names, as
    /// in `Plan::namespaces`), in plan order.
    pub create_namespaces: Vec<String>,
    /// Namespaces to delete. A namespace whose node changed role (an instance removed and
    /// an internet host of the same name added) is in both lists: it is another machine.
    pub remove_namespaces: Vec<String>,
    /// Namespaces kept whose contents changed, each with only what changed.
    pub change_namespaces: Vec<NetnsDelta>,
    /// Veth pairs to create: new ones, and those with an end in a created namespace.
    pub add_veths: Vec<Veth>,
    /// Veth pairs to delete between namespaces that stay. Deleting a namespace deletes
    /// its links and so their peers too, so those are not listed.
    pub remove_veths: Vec<Veth>,
    /// The DNS records or resolvers changed: the supervisor reloads them.
    pub dns_changed: bool,
    /// Hosts (nodes that run programs) that are new, by node name.
    pub add_hosts: Vec<String>,
    /// Hosts that go away, by node name.
    pub remove_hosts: Vec<String>,
    /// Hosts kept whose services or files changed.
    pub change_hosts: Vec<HostDelta>,
}

/// What changed inside a namespace that stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsDelta {
    pub name: String,
    /// Values to write. There is no removing a sysctl: every namespace sets the same
    /// keys for its role, and a role change replaces the namespace.
    pub set_sysctls: Vec<Sysctl>,
    pub add_bridges: Vec<String>,
    pub remove_bridges: Vec<String>,
    pub add_addresses: Vec<Address>,
    pub remove_addresses: Vec<Address>,
    pub add_routes: Vec<Route>,
    pub remove_routes: Vec<Route>,
    pub add_rules: Vec<PolicyRule>,
    pub remove_rules: Vec<PolicyRule>,
    /// `None`: the table is unchanged and stays loaded.
    pub firewall: Option<FirewallChange>,
    /// `None`: the flow-log counting table stays as it is (or absent).
    pub flow_log: Option<FlowLogChange>,
}

/// A namespace's nftables table changes in one nft transaction, so no packet ever meets
/// half an old ruleset and half a new one (the kernel layer edits the rules and set
/// elements that differ in place when that is all, and loads the table whole otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallChange {
    /// Load this table in place of the current one (or where there was none).
    Replace(firewall::Table),
    /// Delete the table: the namespace has none any more.
    Delete,
}

/// A flow log on the namespace's interface begins or ends. The counting table is loaded
/// or deleted whole; the security groups' table is not touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowLogChange {
    Install(Counting),
    Delete,
}

/// A host that stays, with what to do to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDelta {
    pub node: String,
    pub ns: String,
    pub start: Vec<Service>,
    pub stop: Vec<Service>,
    /// Its hosts file, resolv.conf, hostname or what its metadata service answers changed
    /// (anything of `Host` but its services): rewrite them.
    pub files_changed: bool,
}

impl NetnsDelta {
    fn is_empty(&self) -> bool {
        self.kernel_writes() == 0
    }

    /// Kernel objects written or deleted inside this namespace.
    pub fn kernel_writes(&self) -> usize {
        self.set_sysctls.len()
            + self.add_bridges.len()
            + self.remove_bridges.len()
            + self.add_addresses.len()
            + self.remove_addresses.len()
            + self.add_routes.len()
            + self.remove_routes.len()
            + self.add_rules.len()
            + self.remove_rules.len()
            + usize::from(self.firewall.is_some())
            + usize::from(self.flow_log.is_some())
    }
}

impl PlanDelta {
    /// The running lab already is the plan: nothing to write, reload or restart.
    pub fn is_empty(&self) -> bool {
        self.create_namespaces.is_empty()
            && self.remove_namespaces.is_empty()
            && self.change_namespaces.is_empty()
            && self.add_veths.is_empty()
            && self.remove_veths.is_empty()
            && !self.dns_changed
            && self.add_hosts.is_empty()
            && self.remove_hosts.is_empty()
            && self.change_hosts.is_empty()
    }

    /// A flow-log counting table is loaded or deleted in a namespace that stays: the
    /// supervisor's collector must start or stop logging that interface.
    pub fn flow_logs_changed(&self) -> bool {
        self.change_namespaces.iter().any(|c| c.flow_log.is_some())
    }

    /// How many kernel objects the delta creates, deletes or rewrites: one per namespace
    /// created or deleted, veth pair, bridge, address, route, policy rule, sysctl and
    /// nftables table (a created namespace counts everything in it). A measure of how
    /// small an edit is for the kernel, not a count of system calls.
    pub fn kernel_writes(&self, new: &Plan) -> usize {
        let created: usize = new
            .namespaces
            .iter()
            .filter(|n| self.create_namespaces.contains(&n.name))
            .map(|n| {
                1 + n.sysctls.len()
                    + n.bridges.len()
                    + n.addresses.len()
                    + n.routes.len()
                    + n.rules.len()
                    + usize::from(n.firewall.is_some())
                    + usize::from(n.flow_log.is_some())
            })
            .sum();
        created
            + self.remove_namespaces.len()
            + self.add_veths.len()
            + self.remove_veths.len()
            + self
                .change_namespaces
                .iter()
                .map(NetnsDelta::kernel_writes)
                .sum::<usize>()
    }
}

/// Items of `b` that `a` lacks, in `b`'s order.
fn missing<T: PartialEq + Clone>(a: &[T], b: &[T]) -> Vec<T> {
    b.iter().filter(|x| !a.contains(x)).cloned().collect()
}

/// The links of one kept namespace that the delta deletes or (re)creates. The kernel
/// deletes a device's addresses and routes with it, and a created device starts bare.
#[derive(Default)]
struct Links<'a> {
    gone: BTreeSet<&'a str>,
    fresh: BTreeSet<&'a str>,
}

impl Links<'_> {
    /// New items the namespace lacks: those not there before, and all of a fresh link's.
    fn to_add<T: PartialEq + Clone>(&self, old: &[T], new: &[T], dev: fn(&T) -> &str) -> Vec<T> {
        new.iter()
            .filter(|x| !old.contains(x) || self.fresh.contains(dev(x)))
            .cloned()
            .collect()
    }

    /// Old items to delete, except those a deleted link takes with it.
    fn to_remove<T: PartialEq + Clone>(&self, old: &[T], new: &[T], dev: fn(&T) -> &str) -> Vec<T> {
        old.iter()
            .filter(|x| !new.contains(x) && !self.gone.contains(dev(x)))
            .cloned()
            .collect()
    }
}

fn netns_delta(old: &Netns, new: &Netns, links: &Links) -> NetnsDelta {
    NetnsDelta {
        name: new.name.clone(),
        set_sysctls: missing(&old.sysctls, &new.sysctls),
        add_bridges: missing(&old.bridges, &new.bridges),
        remove_bridges: missing(&new.bridges, &old.bridges),
        add_addresses: links.to_add(&old.addresses, &new.addresses, |a| &a.dev),
        remove_addresses: links.to_remove(&old.addresses, &new.addresses, |a| &a.dev),
        add_routes: links.to_add(&old.routes, &new.routes, |r| &r.dev),
        remove_routes: links.to_remove(&old.routes, &new.routes, |r| &r.dev),
        // Policy rules match an interface by name and outlive it, so links don't matter.
        add_rules: missing(&old.rules, &new.rules),
        remove_rules: missing(&new.rules, &old.rules),
        firewall: (old.firewall != new.firewall).then(|| match &new.firewall {
            Some(table) => FirewallChange::Replace(table.clone()),
            None => FirewallChange::Delete,
        }),
        flow_log: (old.flow_log != new.flow_log).then_some(match new.flow_log {
            Some(c) => FlowLogChange::Install(c),
            None => FlowLogChange::Delete,
        }),
    }
}

fn host_delta(old: &Host, new: &Host) -> Option<HostDelta> {
    let without_services = |h: &Host| Host {
        services: vec![],
        ..h.clone()
    };
    let d = HostDelta {
        node: new.node.clone(),
        ns: new.ns.clone(),
        start: missing(&old.services, &new.services),
        stop: missing(&new.services, &old.services),
        files_changed: without_services(old) != without_services(new),
    };
    (!d.start.is_empty() || !d.stop.is_empty() || d.files_changed).then_some(d)
}

/// A plan's namespaces, veths and hosts by name: a 1,000-instance lab compared item by
/// item against lists would take a million comparisons.
struct Index<'a> {
    namespaces: HashMap<&'a str, &'a Netns>,
    /// By their `a` end: a namespace has one link of a name.
    veths: HashMap<(&'a str, &'a str), &'a Veth>,
    hosts: HashMap<&'a str, &'a Host>,
}

impl<'a> Index<'a> {
    fn of(plan: &'a Plan) -> Index<'a> {
        Index {
            namespaces: plan
                .namespaces
                .iter()
                .map(|n| (n.name.as_str(), n))
                .collect(),
            veths: plan
                .veths
                .iter()
                .map(|v| ((v.a.ns.as_str(), v.a.name.as_str()), v))
                .collect(),
            hosts: plan.hosts.iter().map(|h| (h.node.as_str(), h)).collect(),
        }
    }

    fn namespace(&self, name: &str) -> Option<&'a Netns> {
        self.namespaces.get(name).copied()
    }

    fn has_veth(&self, v: &Veth) -> bool {
        self.veths
            .get(&(v.a.ns.as_str(), v.a.name.as_str()))
            .is_some_and(|mine| *mine == v)
    }

    fn host(&self, node: &str) -> Option<&'a Host> {
        self.hosts.get(node).copied()
    }
}

/// Compares the running lab's plan (`old`) with the edited lab's (`new`).
pub fn delta(old: &Plan, new: &Plan) -> PlanDelta {
    let (old_index, new_index) = (Index::of(old), Index::of(new));
    // A namespace is kept when the same node keeps the same role.
    let kept =
        |n: &Netns, other: &Index| other.namespace(&n.name).is_some_and(|o| o.role == n.role);
    let mut d = PlanDelta {
        create_namespaces: new
            .namespaces
            .iter()
            .filter(|n| !kept(n, &old_index))
            .map(|n| n.name.clone())
            .collect(),
        remove_namespaces: old
            .namespaces
            .iter()
            .filter(|n| !kept(n, &new_index))
            .map(|n| n.name.clone())
            .collect(),
        dns_changed: old.dns != new.dns,
        ..PlanDelta::default()
    };
    let created: BTreeSet<&str> = d.create_namespaces.iter().map(String::as_str).collect();
    let removed: BTreeSet<&str> = d.remove_namespaces.iter().map(String::as_str).collect();
    let touches = |v: &Veth, set: &BTreeSet<&str>| {
        set.contains(v.a.ns.as_str()) || set.contains(v.b.ns.as_str())
    };
    // Re-created too: a veth unchanged in the plan whose other end's namespace is new.
    d.add_veths = new
        .veths
        .iter()
        .filter(|v| !old_index.has_veth(v) || touches(v, &created))
        .cloned()
        .collect();
    // Deleting a namespace deletes its links, and a veth's two ends go together.
    let ending: Vec<&Veth> = old
        .veths
        .iter()
        .filter(|v| !new_index.has_veth(v) || touches(v, &removed))
        .collect();
    d.remove_veths = ending
        .iter()
        .filter(|v| !touches(v, &removed))
        .map(|v| (*v).clone())
        .collect();

    let mut links: BTreeMap<&str, Links> = BTreeMap::new();
    for v in &ending {
        for end in [&v.a, &v.b] {
            links.entry(&end.ns).or_default().gone.insert(&end.name);
        }
    }
    for v in &d.add_veths {
        for end in [&v.a, &v.b] {
            links.entry(&end.ns).or_default().fresh.insert(&end.name);
        }
    }
    let unchanged_links = Links::default();
    for n in new.namespaces.iter().filter(|n| kept(n, &old_index)) {
        let links = links.get(n.name.as_str()).unwrap_or(&unchanged_links);
        let changes = netns_delta(old_index.namespace(&n.name).expect("kept"), n, links);
        if !changes.is_empty() {
            d.change_namespaces.push(changes);
        }
    }

    // A host lives in its namespace: a replaced namespace is a replaced host.
    let host_kept = |h: &Host, other: &Index| {
        !created.contains(h.ns.as_str())
            && !removed.contains(h.ns.as_str())
            && other.host(&h.node).is_some_and(|o| o.ns == h.ns)
    };
    d.add_hosts = new
        .hosts
        .iter()
        .filter(|h| !host_kept(h, &old_index))
        .map(|h| h.node.clone())
        .collect();
    d.remove_hosts = old
        .hosts
        .iter()
        .filter(|h| !host_kept(h, &new_index))
        .map(|h| h.node.clone())
        .collect();
    d.change_hosts = new
        .hosts
        .iter()
        .filter(|h| host_kept(h, &old_index))
        .filter_map(|h| host_delta(old_index.host(&h.node).expect("kept"), h))
        .collect();
    d
}
