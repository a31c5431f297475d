//! Reading back what the kernel holds for a lab, in the plan's own types: the namespaces
//! that exist, and in each the bridges, addresses, routes, policy rules, sysctls and
//! nftables table it really has. The observed plan and the desired one then go through
//! `reconcile::delta` like any edit, so putting back what broke is the same code as
//! making a change (`vpclab repair`, and `status`'s check of the kernel).
//!
//! Only what the plan names is looked at: its links by name, the addresses on them, the
//! routes through them (not the kernel's own routes to a link's subnet, nor the local
//! table), the policy rules on them (not the kernel's three default rules), the sysctls
//! it sets. Whatever else a namespace holds was not made by vpclab and is left alone.
//! Nothing here writes to the kernel.

use super::netlink::{AddressRecord, LinkRecord, RouteRecord, RuleRecord, in_namespace};
use super::{libnft, netns};
use crate::plan::firewall::{Family, TABLE, Table};
use crate::plan::{Address, Netns, Plan, PolicyRule, Route, Sysctl, VethEnd};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;

/// A link of a namespace, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkRef {
    pub ns: String,
    pub name: String,
}

/// The kernel's side of a lab.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The desired plan with each namespace replaced by what the kernel holds, without
    /// the namespaces that don't exist and the veth pairs that aren't whole.
    pub plan: Plan,
    /// Namespaces of the plan that don't exist, in plan order.
    pub missing_namespaces: Vec<String>,
    /// Ends of veth pairs that are not what the plan says, with why: deleted before the
    /// pair is made again.
    pub stray_ends: Vec<(VethEnd, Stray)>,
    /// Links that exist but are down, other than those meant to be down.
    pub down_links: Vec<LinkRef>,
    /// Namespaces whose nftables table is there but not the plan's, with why.
    pub firewall_differences: Vec<(String, String)>,
}

/// Why a veth end that exists is not part of its planned pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stray {
    /// The peer's namespace is missing (a program keeps the old one, and in it the peer).
    PeerNamespaceMissing,
    /// It is not a port of the bridge the plan puts it on (that bridge was deleted, say).
    OffBridge,
    /// Its peer is not where the plan has it.
    PeerGone,
}

/// Everything one namespace holds that a plan could name.
struct Held {
    links: Vec<LinkRecord>,
    addresses: Vec<AddressRecord>,
    routes: Vec<RouteRecord>,
    rules: Vec<RuleRecord>,
    /// Each sysctl of the plan with its value, `None` where the key doesn't exist.
    sysctls: Vec<Option<String>>,
    firewall: Firewall,
    /// The flow-log counting table is there (looked for only when the plan has one).
    flow_log: bool,
}

/// The lab's nftables table as found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Firewall {
    /// The plan has none, so none was looked for.
    NotPlanned,
    Matches,
    Missing,
    Differs(String),
}

/// The kernel's own policy rules (lookup local, main and default), which every
/// namespace has and no plan lists.
const DEFAULT_RULE_PRIORITIES: [u32; 3] = [0, 32766, 32767];
const LOCAL_TABLE: u32 = 255;

/// Reads what the kernel holds for `desired`. `down` lists the links meant to be down
/// (a stopped instance's, those of an availability zone taken down): they are not
/// reported, and the routes through them, which the kernel dropped, must not be wanted
/// in `desired` either.
pub fn observe(desired: &Plan, down: &[LinkRef]) -> Result<Observed> {
    let (present, missing): (Vec<&Netns>, Vec<&Netns>) = desired
        .namespaces
        .iter()
        .partition(|n| netns::exists(&n.name));
    let held = read_all(&present)?;

    let mut out = Observed {
        plan: desired.clone(),
        missing_namespaces: missing.iter().map(|n| n.name.clone()).collect(),
        stray_ends: vec![],
        down_links: vec![],
        firewall_differences: vec![],
    };
    let mut namespaces = Vec::new();
    for (ns, held) in present.iter().zip(&held) {
        let known = planned_links(desired, ns);
        namespaces.push(netns_as_held(ns, held, &known));
        if let Firewall::Differs(why) = &held.firewall {
            out.firewall_differences
                .push((ns.name.clone(), why.clone()));
        }
        for l in held.links.iter().filter(|l| known.contains(&l.name)) {
            let link = LinkRef {
                ns: ns.name.clone(),
                name: l.name.clone(),
            };
            if !l.up && !down.contains(&link) {
                out.down_links.push(link);
            }
        }
    }

    let by_ns: HashMap<&str, &Held> = present
        .iter()
        .map(|n| n.name.as_str())
        .zip(held.iter())
        .collect();
    // An end exists (first), and is as planned (second) when it is under its bridge.
    let as_planned = |end: &VethEnd| -> (bool, bool) {
        let Some(h) = by_ns.get(end.ns.as_str()) else {
            return (false, false);
        };
        let Some(link) = h.links.iter().find(|l| l.name == end.name) else {
            return (false, false);
        };
        let master = link
            .master
            .and_then(|i| h.links.iter().find(|l| l.index == i))
            .map(|l| l.name.as_str());
        (true, master == end.master.as_deref())
    };
    let mut veths = Vec::new();
    for v in &desired.veths {
        let (a_exists, a_ok) = as_planned(&v.a);
        let (b_exists, b_ok) = as_planned(&v.b);
        if a_ok && b_ok {
            veths.push(v.clone());
            continue;
        }
        // Deleting one end deletes its peer too: one stray end per pair is enough.
        // Both ends there means one of them is off its bridge.
        let why = |peer: &VethEnd, peer_exists: bool| {
            if !by_ns.contains_key(peer.ns.as_str()) {
                Stray::PeerNamespaceMissing
            } else if peer_exists {
                Stray::OffBridge
            } else {
                Stray::PeerGone
            }
        };
        if a_exists {
            out.stray_ends.push((v.a.clone(), why(&v.b, b_exists)));
        } else if b_exists {
            out.stray_ends.push((v.b.clone(), why(&v.a, a_exists)));
        }
    }
    // A stray end's links are deleted and made again, so whether they are up is moot.
    out.down_links.retain(|l| {
        !desired
            .veths
            .iter()
            .filter(|v| !veths.contains(v))
            .flat_map(|v| [&v.a, &v.b])
            .any(|end| end.ns == l.ns && end.name == l.name)
    });
    out.plan.namespaces = namespaces;
    out.plan.veths = veths;
    Ok(out)
}

/// The links the plan puts in `ns`: `lo`, its bridges and its ends of veth pairs.
fn planned_links(plan: &Plan, ns: &Netns) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ns.bridges.iter().cloned().collect();
    names.insert("lo".into());
    for v in &plan.veths {
        for end in [&v.a, &v.b] {
            if end.ns == ns.name {
                names.insert(end.name.clone());
            }
        }
    }
    names
}

/// `ns` as the kernel holds it, limited to the links `known`.
fn netns_as_held(ns: &Netns, held: &Held, known: &BTreeSet<String>) -> Netns {
    let name_of: HashMap<u32, &str> = held
        .links
        .iter()
        .filter(|l| known.contains(&l.name))
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    let loopback: ipnet::Ipv4Net = "127.0.0.1/8".parse().expect("a valid network");
    Netns {
        sysctls: ns
            .sysctls
            .iter()
            .zip(&held.sysctls)
            .map(|(want, found)| match found {
                // A key the kernel lacks (br_netfilter not loaded, conntrack not in use
                // yet) has nothing to set.
                Some(v) if !same_value(v, &want.value) => Sysctl {
                    key: want.key.clone(),
                    value: v.clone(),
                },
                _ => want.clone(),
            })
            .collect(),
        bridges: ns
            .bridges
            .iter()
            .filter(|b| held.links.iter().any(|l| &l.name == *b && l.bridge))
            .cloned()
            .collect(),
        addresses: held
            .addresses
            .iter()
            .filter_map(|a| {
                let dev = *name_of.get(&a.index)?;
                (!(dev == "lo" && a.addr == loopback)).then(|| Address {
                    dev: dev.to_string(),
                    addr: a.addr,
                })
            })
            .collect(),
        routes: held
            .routes
            .iter()
            .filter(|r| !r.kernel_made && r.unicast && r.table != LOCAL_TABLE)
            .filter_map(|r| {
                Some(Route {
                    table: r.table,
                    dst: r.dst,
                    via: r.via,
                    dev: name_of.get(&r.oif?)?.to_string(),
                })
            })
            .collect(),
        rules: held
            .rules
            .iter()
            .filter(|r| !DEFAULT_RULE_PRIORITIES.contains(&r.priority))
            .filter_map(|r| {
                let iif = r.iif.as_ref().filter(|i| known.contains(*i))?;
                Some(PolicyRule {
                    priority: r.priority,
                    iif: iif.clone(),
                    table: r.table,
                })
            })
            .collect(),
        firewall: match held.firewall {
            Firewall::Matches => ns.firewall.clone(),
            _ => None,
        },
        flow_log: ns.flow_log.filter(|_| held.flow_log),
        ..ns.clone()
    }
}

/// Sysctl values compare field by field (`ip_local_port_range` is "1024\t65535").
fn same_value(found: &str, want: &str) -> bool {
    found.split_whitespace().eq(want.split_whitespace())
}

/// Reads the namespaces a few at a time; the result is in the order given.
fn read_all(namespaces: &[&Netns]) -> Result<Vec<Held>> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let chunk = namespaces.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let jobs: Vec<_> = namespaces
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|ns| read(ns).with_context(|| format!("read {}", ns.name)))
                        .collect::<Result<Vec<Held>>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for j in jobs {
            all.extend(
                j.join()
                    .map_err(|_| anyhow!("reading a namespace panicked"))??,
            );
        }
        Ok(all)
    })
}

/// Reads one namespace, from a thread inside it.
fn read(ns: &Netns) -> Result<Held> {
    in_namespace(&ns.name, async |nl| {
        Ok(Held {
            links: nl.links().await?,
            addresses: nl.addresses().await?,
            routes: nl.routes().await?,
            rules: nl.rules().await?,
            // /proc/sys/net is the namespace of the thread that opens the file: this one.
            sysctls: ns.sysctls.iter().map(|s| read_sysctl(&s.key)).collect(),
            firewall: match &ns.firewall {
                None => Firewall::NotPlanned,
                Some(t) => match list_table_here(t.family)? {
                    None => Firewall::Missing,
                    Some(listing) => match table_difference(&listing, t) {
                        None => Firewall::Matches,
                        Some(why) => Firewall::Differs(why),
                    },
                },
            },
            flow_log: ns.flow_log.is_some() && super::flow::present_here()?,
        })
    })
}

fn read_sysctl(key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
        .ok()
        .map(|v| v.trim().to_string())
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ip => "ip",
        Family::Inet => "inet",
    }
}

/// The lab's table in the calling thread's namespace as nft lists it in JSON, or `None`
/// when there is no such table.
fn list_table_here(family: Family) -> Result<Option<Value>> {
    let fam = family_name(family);
    let found = if libnft::available() {
        let cmd =
            serde_json::json!({"nftables": [{"list": {"table": {"family": fam, "name": TABLE}}}]});
        libnft::list(&cmd.to_string())?
    } else {
        let out = std::process::Command::new("nft")
            .args(["-j", "list", "table", fam, TABLE])
            .output()
            .context("run nft (is the nftables package installed?)")?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    match found {
        Ok(json) => Ok(Some(
            serde_json::from_str(&json).context("parse nft's listing")?,
        )),
        Err(e) if e.contains("No such file or directory") => Ok(None),
        Err(e) => bail!("nft list table {fam} {TABLE}: {e}"),
    }
}

/// How a listed table (`nft -j list table`) differs from the plan's, or `None` when it
/// has the plan's sets with their elements and the plan's chains with their hooks,
/// policies and rules. Rules are recognised by their comments, in order: nft lists a
/// rule's matches in its own normalised form (`meta l4proto tcp tcp dport 22` comes back
/// as `tcp dport 22`), and every rule of a plan carries a comment naming it.
pub fn table_difference(listing: &Value, t: &Table) -> Option<String> {
    let Some(objects) = listing["nftables"].as_array() else {
        return Some("nft's listing is not understood".into());
    };
    let mut sets: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut chains: BTreeMap<&str, &Value> = BTreeMap::new();
    let mut rules: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for o in objects {
        if let Some(s) = o.get("set") {
            let elements = s["elem"]
                .as_array()
                .map(|e| e.iter().map(element).collect())
                .unwrap_or_default();
            sets.insert(s["name"].as_str().unwrap_or(""), elements);
        } else if let Some(c) = o.get("chain") {
            chains.insert(c["name"].as_str().unwrap_or(""), c);
        } else if let Some(r) = o.get("rule") {
            rules
                .entry(r["chain"].as_str().unwrap_or(""))
                .or_default()
                .push(r["comment"].as_str().unwrap_or(""));
        }
    }
    // A flow set's elements are the flows counted so far: only the set must be there.
    for s in &t.flow_sets {
        if sets.remove(s.name.as_str()).is_none() {
            return Some(format!("set {} is missing", s.name));
        }
    }
    for s in &t.sets {
        let want: BTreeSet<String> = s.elements.iter().map(|e| e.to_string()).collect();
        match sets.remove(s.name.as_str()) {
            None => return Some(format!("set {} is missing", s.name)),
            Some(found) if found != want => {
                return Some(format!(
                    "set {} holds {} address{} instead of the plan's {}",
                    s.name,
                    found.len(),
                    if found.len() == 1 { "" } else { "es" },
                    want.len()
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = sets.keys().next() {
        return Some(format!("set {extra} is not in the plan"));
    }
    for c in &t.chains {
        let Some(found) = chains.remove(c.name.as_str()) else {
            return Some(format!("chain {} is missing", c.name));
        };
        let policy = match c.policy {
            crate::plan::firewall::Policy::Accept => "accept",
            crate::plan::firewall::Policy::Drop => "drop",
        };
        match c.hook {
            Some(hook) => {
                let same_hook = found["type"] == t.chain_type(c)
                    && found["hook"] == hook.as_str()
                    && found["prio"] == hook.priority()
                    && found["policy"] == policy;
                if !same_hook {
                    return Some(format!(
                        "chain {} is not `type {} hook {} priority {}; policy {policy}`",
                        c.name,
                        t.chain_type(c),
                        hook.as_str(),
                        hook.priority()
                    ));
                }
            }
            None if found.get("hook").is_some() => {
                return Some(format!(
                    "chain {} is a base chain, not a regular one",
                    c.name
                ));
            }
            None => {}
        }
        let found = rules.remove(c.name.as_str()).unwrap_or_default();
        let want: Vec<&str> = c.rules.iter().map(|r| r.comment.as_str()).collect();
        if found.len() != want.len() {
            return Some(format!(
                "chain {} has {} of its {} rules",
                c.name,
                found.len(),
                want.len()
            ));
        }
        if found != want {
            return Some(format!("the rules of chain {} are not the plan's", c.name));
        }
    }
    if let Some(extra) = chains.keys().next() {
        return Some(format!("chain {extra} is not in the plan"));
    }
    None
}

/// A set element as text: an address is listed as a plain string.
fn element(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The network namespace a process is in (the inode `netns::inode` gives for a name).
pub fn netns_of(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// Those of `pids` holding a TCP socket that listens on `port` (a program's leftover
/// children, say the workers of an nginx whose master was killed, keep its port).
/// `pids` must share one network namespace, whose socket table is read once.
pub fn listening_on(pids: &[i32], port: u16) -> Vec<i32> {
    let Some(first) = pids.first() else {
        return vec![];
    };
    let table = std::fs::read_to_string(format!("/proc/{first}/net/tcp")).unwrap_or_default();
    let sockets = listening_sockets(&table, port);
    if sockets.is_empty() {
        return vec![];
    }
    pids.iter()
        .copied()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse::<u64>()
                        .ok()
                })
                .any(|inode| sockets.contains(&inode))
        })
        .collect()
}

/// The inodes of the sockets listening on `port` in a /proc/net/tcp table.
fn listening_sockets(table: &str, port: u16) -> BTreeSet<u64> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, ..., st (0A is LISTEN), ..., inode (field 9).
            (f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A")
                .then(|| f[9].parse().ok())
                .flatten()
        })
        .collect()
}

/// Processes started with `arg` as one of their arguments (a database server's
/// `--defaults-file=...`, which names its node's own folder).
pub fn pids_with_arg(arg: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::firewall::{Chain, Hook, Match, Policy, Rule, Set, Verdict};
    use serde_json::json;

    fn table() -> Table {
        let rule = |comment: &str| Rule {
            matches: vec![Match::Iif("eth0".into())],
            verdict: Verdict::Accept,
            comment: comment.into(),
        };
        Table {
            family: Family::Inet,
            stateless: false,
            sets: vec![Set {
                name: "web".into(),
                elements: vec!["10.0.2.238".parse().unwrap(), "10.0.0.10".parse().unwrap()],
            }],
            flow_sets: vec![],
            chains: vec![Chain {
                name: "input".into(),
                hook: Some(Hook::Input),
                policy: Policy::Drop,
                rules: vec![rule("replies"), rule("mysql from web")],
            }],
        }
    }

    /// The table as nft 1.0 lists it (handles and counters left out where they don't
    /// matter), with the rules' matches in nft's own form.
    fn listing() -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "vpclab", "handle": 3}},
            {"set": {"family": "inet", "name": "web", "table": "vpclab", "type": "ipv4_addr",
                     "handle": 1, "elem": ["10.0.0.10", "10.0.2.238"]}},
            {"chain": {"family": "inet", "table": "vpclab", "name": "input", "handle": 2,
                       "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": "vpclab", "chain": "input", "handle": 4,
                      "comment": "replies", "expr": [{"accept": null}]}},
            {"rule": {"family": "inet", "table": "vpclab", "chain": "input", "handle": 5,
                      "comment": "mysql from web",
                      "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 3306}},
                               {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}
        ]})
    }

    fn without(mut v: Value, f: impl Fn(&Value) -> bool) -> Value {
        v["nftables"].as_array_mut().unwrap().retain(|o| !f(o));
        v
    }

    #[test]
    fn the_planned_table_as_nft_lists_it_matches_whatever_the_order_of_set_elements() {
        assert_eq!(table_difference(&listing(), &table()), None);
    }

    #[test]
    fn a_flushed_table_is_told_by_its_missing_rules() {
        let flushed = without(listing(), |o| o.get("rule").is_some());
        assert_eq!(
            table_difference(&flushed, &table()).as_deref(),
            Some("chain input has 0 of its 2 rules")
        );
    }

    #[test]
    fn a_deleted_or_foreign_rule_set_or_chain_is_a_difference() {
        let one_gone = without(listing(), |o| o["rule"]["handle"] == 4);
        assert_eq!(
            table_difference(&one_gone, &table()).as_deref(),
            Some("chain input has 1 of its 2 rules")
        );
        let mut swapped = listing();
        swapped["nftables"][4]["rule"]["comment"] = json!("added by hand");
        assert_eq!(
            table_difference(&swapped, &table()).as_deref(),
            Some("the rules of chain input are not the plan's")
        );
        let mut fewer = listing();
        fewer["nftables"][2]["set"]["elem"] = json!(["10.0.2.238"]);
        assert_eq!(
            table_difference(&fewer, &table()).as_deref(),
            Some("set web holds 1 address instead of the plan's 2")
        );
        let no_chain = without(listing(), |o| o.get("chain").is_some());
        assert_eq!(
            table_difference(&no_chain, &table()).as_deref(),
            Some("chain input is missing")
        );
        let mut accepting = listing();
        accepting["nftables"][3]["chain"]["policy"] = json!("accept");
        assert_eq!(
            table_difference(&accepting, &table()).as_deref(),
            Some("chain input is not `type filter hook input priority 0; policy drop`")
        );
        let mut extra = listing();
        extra["nftables"]
            .as_array_mut()
            .unwrap()
            .push(json!({"chain": {"name": "output", "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}}));
        assert_eq!(
            table_difference(&extra, &table()).as_deref(),
            Some("chain output is not in the plan")
        );
    }

    #[test]
    fn a_flow_set_counts_whatever_it_holds_and_a_regular_chain_has_no_hook() {
        use crate::plan::flowlogs::acl_rejection_sets;
        let mut t = table();
        t.flow_sets = acl_rejection_sets(false)[..1].to_vec();
        t.chains.push(Chain {
            name: "rejected-outbound".into(),
            hook: None,
            policy: Policy::Accept,
            rules: vec![],
        });
        let mut found = listing();
        let objects = found["nftables"].as_array_mut().unwrap();
        objects.push(
            json!({"set": {"family": "inet", "name": "acl-outbound-rejected", "table": "vpclab",
            "elem": [{"elem": {"val": {"concat": ["10.0.0.10", "203.0.113.10", "icmp"]},
                               "counter": {"packets": 4, "bytes": 336}}}]}}),
        );
        objects.push(json!({"chain": {"family": "inet", "table": "vpclab", "name": "rejected-outbound", "handle": 9}}));
        assert_eq!(table_difference(&found, &t), None);
        let mut hooked = found.clone();
        let last = hooked["nftables"].as_array().unwrap().len() - 1;
        hooked["nftables"][last]["chain"]["hook"] = json!("input");
        assert_eq!(
            table_difference(&hooked, &t).as_deref(),
            Some("chain rejected-outbound is a base chain, not a regular one")
        );
        let no_set = without(found, |o| o["set"]["name"] == "acl-outbound-rejected");
        assert_eq!(
            table_difference(&no_set, &t).as_deref(),
            Some("set acl-outbound-rejected is missing")
        );
    }

    #[test]
    fn listening_sockets_are_read_from_the_namespace_socket_table() {
        // Two listeners (ports 22 and 80) and a connection from port 22 (state 01).
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: EE02000A:0016 0A00CB0A:D431 01 00000000:00000000 02:0009F1B6 00000000     0        0 3333 4 0000000000000000 20 4 29 10 -1
";
        assert_eq!(listening_sockets(table, 22), BTreeSet::from([1111]));
        assert_eq!(listening_sockets(table, 80), BTreeSet::from([2222]));
        assert!(listening_sockets(table, 443).is_empty());
    }

    #[test]
    fn this_process_is_found_by_an_argument_it_was_started_with() {
        let me = std::process::id() as i32;
        let arg0 = std::env::args().next().unwrap();
        assert!(pids_with_arg(&arg0).contains(&me));
        assert!(!pids_with_arg("--no-process-has-this-argument-7f3a").contains(&me));
        let mine = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(netns_of(me), Some(mine));
        assert_eq!(netns_of(-1), None);
    }
}
