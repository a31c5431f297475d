//! The path a packet should take, computed from the Plan alone: route lookups with the
//! router's policy rules, bridges, the nftables IR (NAT and filters) and a small
//! conntrack so the reply is translated back. `trace` uses it to know where to capture
//! and to explain a drop no counter saw (a chain's policy); `analyze` reads the decisions
//! it records (routes chosen, rules that accepted or translated) to explain a path the way
//! AWS's Reachability Analyzer does; tests use it without root.

use crate::plan::firewall::{self, Addr, Hook, L4, Match, Policy, Table, Verdict};
use crate::plan::{MAIN_TABLE, Netns, Plan};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::packet::{ICMP, TCP, Tuple, UDP};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// The frame arrived on the interface (from the other end of the link).
    In,
    /// The namespace sent the frame out of the interface.
    Out,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One interface crossing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimHop {
    pub node: String,
    pub iface: String,
    pub dir: Dir,
    pub tuple: Tuple,
}

/// How the simulated packet's journey ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "kebab-case")]
pub enum End {
    Delivered {
        node: String,
    },
    /// The route lookup in `node` found nothing for `dst`.
    NoRoute {
        node: String,
        dst: Ipv4Addr,
    },
    /// A filter rule (`comment`) or a chain's policy (`comment: None`) dropped it.
    Dropped {
        node: String,
        chain: String,
        comment: Option<String>,
    },
    /// A namespace that does not forward (a host) got a packet for someone else.
    NotForwarded {
        node: String,
    },
    /// Nobody on the link holds the next-hop address.
    NoNeighbour {
        node: String,
        addr: Ipv4Addr,
    },
    TooManyHops,
}

/// What decided the packet's way at one point, in the order the packet met it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// A route lookup chose `dst` (the matched prefix) in kernel table `table`.
    Route {
        node: String,
        table: u32,
        dst: Ipv4Net,
        dev: String,
        via: Option<Ipv4Addr>,
    },
    /// A filter rule (its comment) accepted the packet in `chain`.
    Accept {
        node: String,
        chain: String,
        rule: String,
    },
    /// A NAT rule (its comment) rewrote the packet.
    Translate {
        node: String,
        rule: String,
        before: Tuple,
        after: Tuple,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct SimPath {
    pub hops: Vec<SimHop>,
    pub end: End,
    /// Routes, accepting rules and translations, in order (not part of `trace`'s output).
    #[serde(skip)]
    pub decisions: Vec<Decision>,
}

/// What conntrack remembers per namespace: the tuple before and after NAT.
#[derive(Debug, Default, Clone)]
pub struct Conntrack {
    entries: HashMap<String, Vec<(Tuple, Tuple)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct {
    New,
    Established,
}

struct Ctx<'a> {
    iif: Option<&'a str>,
    oif: Option<&'a str>,
    ct: Ct,
}

/// Where the walk writes what it crossed and what decided its way.
#[derive(Default)]
struct Log {
    hops: Vec<SimHop>,
    decisions: Vec<Decision>,
}

enum ChainResult {
    Continue,
    Drop(String, Option<String>),
}

const MAX_HOPS: usize = 64;

/// Follows `tuple` from `from` (a node that sends it) until it is delivered or dropped.
/// `reply` says it answers a connection whose request went through `ct` already.
pub fn simulate(plan: &Plan, from: &str, tuple: Tuple, ct: &mut Conntrack, reply: bool) -> SimPath {
    let mut log = Log::default();
    let end = walk(plan, from, tuple, ct, reply, &mut log);
    SimPath {
        hops: log.hops,
        end,
        decisions: log.decisions,
    }
}

/// One link crossing: out of `from`'s interface, into `to`'s.
fn cross(hops: &mut Vec<SimHop>, from: (&Netns, &str), to: (&Netns, &str), tuple: Tuple) {
    for (ns, iface, dir) in [(from.0, from.1, Dir::Out), (to.0, to.1, Dir::In)] {
        hops.push(SimHop {
            node: ns.node.clone(),
            iface: iface.to_string(),
            dir,
            tuple,
        });
    }
}

/// The journey itself: crossings go into `hops`, the return value says how it ended.
fn walk(
    plan: &Plan,
    from: &str,
    tuple: Tuple,
    ct: &mut Conntrack,
    reply: bool,
    log: &mut Log,
) -> End {
    let ctstate = if reply { Ct::Established } else { Ct::New };
    let Some(mut ns) = plan.netns(from) else {
        return End::NotForwarded { node: from.into() };
    };
    let mut pkt = tuple;
    // Sent by a local socket: output route, output filter, source NAT.
    let Some((dev, nh)) = route(ns, None, pkt.dst, log) else {
        return End::NoRoute {
            node: ns.node.clone(),
            dst: pkt.dst,
        };
    };
    let ctx = Ctx {
        iif: None,
        oif: Some(&dev),
        ct: ctstate,
    };
    if let ChainResult::Drop(chain, comment) = filter(ns, Hook::Output, &pkt, &ctx, log) {
        return End::Dropped {
            node: ns.node.clone(),
            chain,
            comment,
        };
    }
    if ctstate == Ct::New {
        pkt = nat(ns, Hook::Postrouting, pkt, &ctx, ct, log);
    }
    let mut out = (dev, nh);
    for _ in 0..MAX_HOPS {
        // Leave `ns` on `out.0` (a bridge: the port towards the next hop).
        let Some((port, next, next_if, master)) = egress(plan, ns, &out.0, out.1) else {
            return End::NoNeighbour {
                node: ns.node.clone(),
                addr: out.1,
            };
        };
        cross(&mut log.hops, (ns, &port), (next, &next_if), pkt);
        ns = next;
        // A bridge switches the frame to another port unless it is for the bridge's own
        // address (then the namespace routes it).
        let l3_if = match &master {
            Some(br) if !has_addr_on(ns, br, out.1) => {
                let Some((p2, n2, if2, m2)) = egress(plan, ns, br, out.1) else {
                    return End::NoNeighbour {
                        node: ns.node.clone(),
                        addr: out.1,
                    };
                };
                cross(&mut log.hops, (ns, &p2), (n2, &if2), pkt);
                ns = n2;
                m2.unwrap_or(if2)
            }
            Some(br) => br.clone(),
            None => next_if,
        };
        let ctx = Ctx {
            iif: Some(&l3_if),
            oif: None,
            ct: ctstate,
        };
        // Filter rules before the route lookup: the VPC router's network ACLs on the way
        // out of a subnet, which check replies like any packet (they keep no state).
        if let ChainResult::Drop(chain, comment) = filter(ns, Hook::Prerouting, &pkt, &ctx, log) {
            return End::Dropped {
                node: ns.node.clone(),
                chain,
                comment,
            };
        }
        // A reply gets its destination translated back before routing (prerouting) and
        // its source after filtering (postrouting), as conntrack does.
        let mut restored = pkt;
        pkt = match ctstate {
            Ct::New => nat(ns, Hook::Prerouting, pkt, &ctx, ct, log),
            // A stateless device rewrites the reply by its rules, as it did the request.
            Ct::Established if stateless(ns) => rewrite(ns, Hook::Prerouting, pkt, &ctx, log),
            Ct::Established => {
                restored = unnat(ns, pkt, ct);
                Tuple {
                    dst: restored.dst,
                    dport: restored.dport,
                    ..pkt
                }
            }
        };
        if is_local(ns, pkt.dst) {
            pkt = Tuple {
                src: restored.src,
                sport: restored.sport,
                ..pkt
            };
            if let ChainResult::Drop(chain, comment) = filter(ns, Hook::Input, &pkt, &ctx, log) {
                return End::Dropped {
                    node: ns.node.clone(),
                    chain,
                    comment,
                };
            }
            return End::Delivered {
                node: ns.node.clone(),
            };
        }
        if !forwards(ns) {
            return End::NotForwarded {
                node: ns.node.clone(),
            };
        }
        let Some((dev, nh)) = route(ns, Some(&l3_if), pkt.dst, log) else {
            return End::NoRoute {
                node: ns.node.clone(),
                dst: pkt.dst,
            };
        };
        let ctx = Ctx {
            iif: Some(&l3_if),
            oif: Some(&dev),
            ct: ctstate,
        };
        if let ChainResult::Drop(chain, comment) = filter(ns, Hook::Forward, &pkt, &ctx, log) {
            return End::Dropped {
                node: ns.node.clone(),
                chain,
                comment,
            };
        }
        pkt = match ctstate {
            Ct::New => nat(ns, Hook::Postrouting, pkt, &ctx, ct, log),
            Ct::Established if stateless(ns) => rewrite(ns, Hook::Postrouting, pkt, &ctx, log),
            Ct::Established => Tuple {
                src: restored.src,
                sport: restored.sport,
                ..pkt
            },
        };
        out = (dev, nh);
    }
    End::TooManyHops
}

/// The request's path and, when it is delivered, the reply's.
pub fn round_trip(plan: &Plan, from: &str, tuple: Tuple) -> (SimPath, Option<SimPath>) {
    let mut ct = Conntrack::default();
    let req = simulate(plan, from, tuple, &mut ct, false);
    let reply = match &req.end {
        End::Delivered { node } => {
            let last = req.hops.last().map(|h| h.tuple).unwrap_or(tuple);
            Some(simulate(plan, node, last.reversed(), &mut ct, true))
        }
        _ => None,
    };
    (req, reply)
}

fn forwards(ns: &Netns) -> bool {
    ns.sysctls
        .iter()
        .any(|s| s.key == "net.ipv4.ip_forward" && s.value == "1")
}

fn is_local(ns: &Netns, ip: Ipv4Addr) -> bool {
    ns.addresses.iter().any(|a| a.addr.addr() == ip)
}

fn has_addr_on(ns: &Netns, dev: &str, ip: Ipv4Addr) -> bool {
    ns.addresses
        .iter()
        .any(|a| a.dev == dev && a.addr.addr() == ip)
}

/// `lookup`, recording the route it chose.
fn route(
    ns: &Netns,
    iif: Option<&str>,
    dst: Ipv4Addr,
    log: &mut Log,
) -> Option<(String, Ipv4Addr)> {
    let (table, prefix, dev, nh) = choose(ns, iif, dst)?;
    log.decisions.push(Decision::Route {
        node: ns.node.clone(),
        table,
        dst: prefix,
        dev: dev.clone(),
        via: (nh != dst).then_some(nh),
    });
    Some((dev, nh))
}

/// Policy rules (`iif` → table), then the main table with the connected routes of the
/// namespace's addresses. Longest prefix wins within a table. Returns (device, next hop).
pub fn lookup(ns: &Netns, iif: Option<&str>, dst: Ipv4Addr) -> Option<(String, Ipv4Addr)> {
    choose(ns, iif, dst).map(|(_, _, dev, nh)| (dev, nh))
}

/// The route `lookup` takes: (table, matched prefix, device, next hop).
fn choose(
    ns: &Netns,
    iif: Option<&str>,
    dst: Ipv4Addr,
) -> Option<(u32, Ipv4Net, String, Ipv4Addr)> {
    let mut rules: Vec<_> = ns.rules.iter().collect();
    rules.sort_by_key(|r| r.priority);
    let tables = rules
        .iter()
        .filter(|r| Some(r.iif.as_str()) == iif)
        .map(|r| r.table)
        .chain([MAIN_TABLE]);
    for table in tables {
        let mut best: Option<(Ipv4Net, String, Ipv4Addr)> = None;
        let mut consider = |prefix: Ipv4Net, dev: &str, nh: Ipv4Addr| {
            if best
                .as_ref()
                .is_none_or(|b| prefix.prefix_len() > b.0.prefix_len())
            {
                best = Some((prefix, dev.to_string(), nh));
            }
        };
        for r in ns
            .routes
            .iter()
            .filter(|r| r.table == table && r.dst.contains(&dst))
        {
            consider(r.dst, &r.dev, r.via.unwrap_or(dst));
        }
        if table == MAIN_TABLE {
            for a in ns.addresses.iter().filter(|a| a.dev != "lo") {
                if a.addr.trunc().contains(&dst) {
                    consider(a.addr.trunc(), &a.dev, dst);
                }
            }
        }
        if let Some((prefix, dev, nh)) = best {
            return Some((table, prefix, dev, nh));
        }
    }
    None
}

/// Leaving `ns` by `dev` towards next hop `nh`: the veth end to send on (a bridge's port
/// whose far end holds `nh`), the namespace at the far end, its interface and bridge.
fn egress<'p>(
    plan: &'p Plan,
    ns: &Netns,
    dev: &str,
    nh: Ipv4Addr,
) -> Option<(String, &'p Netns, String, Option<String>)> {
    let ends = plan.veths.iter().flat_map(|v| [(&v.a, &v.b), (&v.b, &v.a)]);
    let candidates: Vec<_> = if ns.bridges.iter().any(|b| b == dev) {
        ends.filter(|(me, _)| me.ns == ns.name && me.master.as_deref() == Some(dev))
            .collect()
    } else {
        ends.filter(|(me, _)| me.ns == ns.name && me.name == dev)
            .collect()
    };
    for (me, peer) in candidates {
        let far = plan.namespaces.iter().find(|n| n.name == peer.ns)?;
        // The far end answers for `nh` if it holds it on that interface (or, for a point-to-
        // point link, it routes anyway: a veth has only one peer).
        let holds = match &peer.master {
            Some(br) => has_addr_on(far, br, nh) || bridge_reaches(plan, far, br, nh, &peer.name),
            None => has_addr_on(far, &peer.name, nh),
        };
        if holds || !ns.bridges.iter().any(|b| b == dev) {
            return Some((me.name.clone(), far, peer.name.clone(), peer.master.clone()));
        }
    }
    None
}

/// Whether a host on bridge `br` of `ns` (other than through `except`) holds `ip`.
fn bridge_reaches(plan: &Plan, ns: &Netns, br: &str, ip: Ipv4Addr, except: &str) -> bool {
    plan.veths
        .iter()
        .flat_map(|v| [(&v.a, &v.b), (&v.b, &v.a)])
        .filter(|(me, _)| me.ns == ns.name && me.master.as_deref() == Some(br) && me.name != except)
        .any(|(_, peer)| {
            plan.namespaces
                .iter()
                .find(|n| n.name == peer.ns)
                .is_some_and(|n| has_addr_on(n, &peer.name, ip))
        })
}

fn chains(ns: &Netns, hook: Hook) -> impl Iterator<Item = (&Table, &firewall::Chain)> {
    ns.firewall.iter().flat_map(move |t| {
        t.chains
            .iter()
            .filter(move |c| c.hook == Some(hook))
            .map(move |c| (t, c))
    })
}

/// How the rules of a chain (and the chains its rules went on in) ended.
enum Outcome {
    Accepted,
    /// In this chain, by the rule with this comment (`None`: by its policy).
    Dropped(String, Option<String>),
    /// No rule gave a verdict.
    Fell,
}

fn filter(ns: &Netns, hook: Hook, pkt: &Tuple, ctx: &Ctx, log: &mut Log) -> ChainResult {
    for (t, c) in chains(ns, hook) {
        match run_chain(ns, t, c, pkt, ctx, log) {
            Outcome::Accepted => {}
            Outcome::Dropped(chain, comment) => return ChainResult::Drop(chain, comment),
            Outcome::Fell if c.policy == Policy::Drop => {
                return ChainResult::Drop(c.name.clone(), None);
            }
            Outcome::Fell => {}
        }
    }
    ChainResult::Continue
}

/// Runs a chain's rules in order; a `goto` (or a device map's) goes on in the chain it
/// names. A drop by a chain that only records the rejected flow is the drop of the rule
/// that sent the packet there.
fn run_chain(
    ns: &Netns,
    t: &Table,
    c: &firewall::Chain,
    pkt: &Tuple,
    ctx: &Ctx,
    log: &mut Log,
) -> Outcome {
    let regular = |name: &str| t.chains.iter().find(|c| c.name == name && c.hook.is_none());
    for r in &c.rules {
        if !r.matches.iter().all(|m| matches(t, m, pkt, ctx)) {
            continue;
        }
        let next = match &r.verdict {
            Verdict::Accept => {
                log.decisions.push(Decision::Accept {
                    node: ns.node.clone(),
                    chain: c.name.clone(),
                    rule: r.comment.clone(),
                });
                return Outcome::Accepted;
            }
            Verdict::Drop | Verdict::RecordDrop(_) => {
                return Outcome::Dropped(c.name.clone(), Some(r.comment.clone()));
            }
            Verdict::Goto(chain) => regular(chain),
            Verdict::DeviceMap { output, chains } => {
                let dev = if *output { ctx.oif } else { ctx.iif };
                match chains.iter().find(|(d, _)| Some(d.as_str()) == dev) {
                    Some((_, chain)) => regular(chain),
                    None => continue,
                }
            }
            Verdict::Snat { .. } | Verdict::Dnat { .. } => continue,
        };
        let Some(next) = next else {
            return Outcome::Fell;
        };
        return match run_chain(ns, t, next, pkt, ctx, log) {
            Outcome::Dropped(_, _) if is_rejection_chain(next) => {
                Outcome::Dropped(c.name.clone(), Some(r.comment.clone()))
            }
            other => other,
        };
    }
    Outcome::Fell
}

/// A chain that only counts the flows network ACL rules reject, then drops them.
fn is_rejection_chain(c: &firewall::Chain) -> bool {
    [true, false]
        .iter()
        .any(|inbound| c.name == firewall::rejection_chain(*inbound))
}

/// A namespace whose NAT keeps no state (the internet gateway): every packet, reply or
/// not, goes through its rewrite rules.
fn stateless(ns: &Netns) -> bool {
    ns.firewall.as_ref().is_some_and(|t| t.stateless)
}

/// The first translation rule of `hook` that matches, applied to `pkt`.
fn rewrite(ns: &Netns, hook: Hook, pkt: Tuple, ctx: &Ctx, log: &mut Log) -> Tuple {
    for (t, c) in chains(ns, hook) {
        for r in &c.rules {
            if !r.matches.iter().all(|m| matches(t, m, &pkt, ctx)) {
                continue;
            }
            let after = match r.verdict {
                // Linux keeps the source port when it is inside the range and free.
                Verdict::Snat { addr, .. } => Tuple { src: addr, ..pkt },
                Verdict::Dnat { addr } => Tuple { dst: addr, ..pkt },
                _ => pkt,
            };
            if after != pkt {
                log.decisions.push(Decision::Translate {
                    node: ns.node.clone(),
                    rule: r.comment.clone(),
                    before: pkt,
                    after,
                });
            }
            return after;
        }
    }
    pkt
}

fn nat(ns: &Netns, hook: Hook, pkt: Tuple, ctx: &Ctx, ct: &mut Conntrack, log: &mut Log) -> Tuple {
    let after = rewrite(ns, hook, pkt, ctx, log);
    if after != pkt && !stateless(ns) {
        // One connection, one entry: a second translation in the same namespace (DNAT
        // in prerouting, then SNAT in postrouting) extends the first.
        let entries = ct.entries.entry(ns.node.clone()).or_default();
        match entries.iter_mut().find(|(_, now)| *now == pkt) {
            Some(e) => e.1 = after,
            None => entries.push((pkt, after)),
        }
    }
    after
}

/// A reply through a namespace that translated the request gets the reverse translation.
fn unnat(ns: &Netns, pkt: Tuple, ct: &Conntrack) -> Tuple {
    for (before, after) in ct.entries.get(&ns.node).into_iter().flatten() {
        if after.reversed() == pkt {
            return before.reversed();
        }
    }
    pkt
}

fn addr_matches(t: &Table, a: &Addr, ip: Ipv4Addr) -> bool {
    match a {
        Addr::Net(n) => n.contains(&ip),
        Addr::Set(name) => t
            .sets
            .iter()
            .any(|s| &s.name == name && s.elements.contains(&ip)),
    }
}

fn l4(p: L4) -> u8 {
    match p {
        L4::Tcp => TCP,
        L4::Udp => UDP,
        L4::Icmp => ICMP,
    }
}

fn matches(t: &Table, m: &Match, pkt: &Tuple, ctx: &Ctx) -> bool {
    match m {
        Match::Iif(n) => ctx.iif == Some(n.as_str()),
        Match::NotIif(n) => ctx.iif != Some(n.as_str()),
        Match::Oif(n) => ctx.oif == Some(n.as_str()),
        Match::Saddr(a) => addr_matches(t, a, pkt.src),
        Match::Daddr(a) => addr_matches(t, a, pkt.dst),
        Match::NotSaddr(a) => !addr_matches(t, a, pkt.src),
        Match::NotDaddr(a) => !addr_matches(t, a, pkt.dst),
        Match::Proto(p) => pkt.proto == l4(*p),
        Match::Dport(p, lo, hi) => pkt.proto == l4(*p) && (*lo..=*hi).contains(&pkt.dport),
        Match::CtState(states) => states.iter().any(|s| match s {
            firewall::CtState::New => ctx.ct == Ct::New,
            firewall::CtState::Established | firewall::CtState::Related => {
                ctx.ct == Ct::Established
            }
            firewall::CtState::Invalid => false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology;

    pub fn handson() -> Plan {
        let loaded = topology::load(topology::Source::Builtin, None).expect("built-in lab loads");
        crate::plan::compile(&loaded.lab)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            proto: TCP,
            src: ip(src),
            sport,
            dst: ip(dst),
            dport,
        }
    }

    fn points(p: &SimPath) -> Vec<String> {
        p.hops
            .iter()
            .map(|h| format!("{}/{} {}", h.node, h.iface, h.dir.as_str()))
            .collect()
    }

    #[test]
    fn web_to_example_web_crosses_the_internet_gateway_with_static_nat() {
        let plan = handson();
        let (req, reply) = round_trip(&plan, "web", tcp("10.0.2.238", 40001, "203.0.113.60", 80));
        assert_eq!(
            points(&req),
            [
                "web/eth0 out",
                "vpc-router/p-web in",
                "vpc-router/to-igw out",
                "my-igw/to-vpc in",
                "my-igw/to-internet out",
                "internet/to-igw in",
                "internet/h-example-web out",
                "example-web/eth0 in",
            ]
        );
        assert_eq!(
            req.end,
            End::Delivered {
                node: "example-web".into()
            }
        );
        // (2) static NAT at the internet gateway.
        assert_eq!(req.hops[3].tuple.src, ip("10.0.2.238"));
        assert_eq!(req.hops[4].tuple.src, ip("198.51.100.10"));
        let reply = reply.unwrap();
        assert_eq!(reply.end, End::Delivered { node: "web".into() });
        // (3) the reply is addressed to the public IP, (4) translated back.
        let at_igw_in = &reply.hops[3];
        assert_eq!(
            (at_igw_in.node.as_str(), at_igw_in.tuple.dst),
            ("my-igw", ip("198.51.100.10"))
        );
        assert_eq!(reply.hops[4].tuple.dst, ip("10.0.2.238"));
        assert_eq!(
            reply.hops.last().unwrap().tuple,
            tcp("203.0.113.60", 80, "10.0.2.238", 40001)
        );
    }

    #[test]
    fn app_to_example_web_goes_through_the_nat_gateway_then_the_internet_gateway() {
        let plan = handson();
        let (req, reply) = round_trip(&plan, "app", tcp("10.0.1.101", 40001, "203.0.113.60", 80));
        assert_eq!(
            points(&req),
            [
                "app/eth0 out",
                "vpc-router/p-app in",
                "vpc-router/p-my-nat out",
                "my-nat/eth0 in",
                "my-nat/eth0 out",
                "vpc-router/p-my-nat in",
                "vpc-router/to-igw out",
                "my-igw/to-vpc in",
                "my-igw/to-internet out",
                "internet/to-igw in",
                "internet/h-example-web out",
                "example-web/eth0 in",
            ]
        );
        let srcs: Vec<Ipv4Addr> = req.hops.iter().map(|h| h.tuple.src).collect();
        assert_eq!(srcs[3], ip("10.0.1.101"));
        assert_eq!(srcs[4], ip("10.0.0.4"), "(2) the NAT gateway's private IP");
        assert_eq!(
            srcs[8],
            ip("198.51.100.11"),
            "(3) its Elastic IP at the IGW"
        );
        let reply = reply.unwrap();
        assert_eq!(reply.end, End::Delivered { node: "app".into() });
        let last = reply.hops.last().unwrap();
        assert_eq!(
            (last.node.as_str(), last.tuple.dst, last.tuple.dport),
            ("app", ip("10.0.1.101"), 40001)
        );
    }

    #[test]
    fn stranger_to_ssh_on_web_is_dropped_by_the_security_group() {
        let plan = handson();
        let (req, reply) = round_trip(
            &plan,
            "stranger",
            tcp("192.0.2.66", 40001, "198.51.100.10", 22),
        );
        assert!(reply.is_none());
        assert_eq!(
            req.end,
            End::Dropped {
                node: "web".into(),
                chain: "input".into(),
                comment: Some("MyWebServer-SecurityGroup: no inbound rule allows this".into()),
            }
        );
        assert_eq!(req.hops.last().unwrap().tuple.dst, ip("10.0.2.238"));
        // my-laptop is the one source the group lets in.
        let (ok, _) = round_trip(
            &plan,
            "my-laptop",
            tcp("203.0.113.10", 40001, "198.51.100.10", 22),
        );
        assert_eq!(ok.end, End::Delivered { node: "web".into() });
    }

    #[test]
    fn with_flow_logs_a_reply_the_acl_denies_is_still_dropped_by_the_acl_rule() {
        let mut lab = topology::load(
            topology::Source::File(concat!(env!("CARGO_MANIFEST_DIR"), "/labs/nacl.yaml").into()),
            None,
        )
        .expect("labs/nacl.yaml loads")
        .lab;
        lab.vpc.flow_logs = Some(topology::FlowLogs {
            interval_secs: 60,
            fields: topology::flow_fields::DEFAULT_FORMAT.to_vec(),
        });
        let plan = crate::plan::compile(&lab);
        let (_, reply) = round_trip(
            &plan,
            "my-laptop",
            tcp("203.0.113.10", 40001, "198.51.100.10", 80),
        );
        // The chain that counts the rejected flow drops it; the rule that sent it there
        // is the one named.
        assert_eq!(
            reply.unwrap().end,
            End::Dropped {
                node: "vpc-router".into(),
                chain: "acl-outbound-public-2a".into(),
                comment: Some(
                    "network ACL public-acl outbound rule * (public-2a): deny all traffic".into()
                ),
            }
        );
    }

    #[test]
    fn a_network_acl_without_ephemeral_ports_drops_the_reply_at_the_vpc_router() {
        let loaded = topology::load(
            topology::Source::File(concat!(env!("CARGO_MANIFEST_DIR"), "/labs/nacl.yaml").into()),
            None,
        )
        .expect("labs/nacl.yaml loads");
        let plan = crate::plan::compile(&loaded.lab);
        let (req, reply) = round_trip(
            &plan,
            "my-laptop",
            tcp("203.0.113.10", 40001, "198.51.100.10", 80),
        );
        // The request passes inbound rule 100 and reaches web.
        assert_eq!(req.end, End::Delivered { node: "web".into() });
        // The reply to port 40001 leaves public-2a: no outbound rule but `*` matches it.
        assert_eq!(
            reply.unwrap().end,
            End::Dropped {
                node: "vpc-router".into(),
                chain: "acl-outbound-public-2a".into(),
                comment: Some(
                    "network ACL public-acl outbound rule * (public-2a): deny all traffic".into()
                ),
            }
        );
        // Inside public-2a the bridge switches the packets: no ACL on the way.
        let (req, reply) = round_trip(&plan, "bastion", tcp("10.0.0.20", 40001, "10.0.0.10", 22));
        assert_eq!(req.end, End::Delivered { node: "web".into() });
        assert_eq!(
            reply.unwrap().end,
            End::Delivered {
                node: "bastion".into()
            }
        );
    }

    #[test]
    fn the_internet_has_no_route_to_private_addresses_and_the_nat_gateway_takes_no_connections() {
        let plan = handson();
        let (req, _) = round_trip(
            &plan,
            "stranger",
            tcp("192.0.2.66", 40001, "10.0.1.101", 22),
        );
        assert_eq!(
            req.end,
            End::NoRoute {
                node: "internet".into(),
                dst: ip("10.0.1.101")
            }
        );
        let (req, _) = round_trip(
            &plan,
            "stranger",
            tcp("192.0.2.66", 40001, "198.51.100.11", 80),
        );
        assert_eq!(
            req.end,
            End::Dropped {
                node: "my-nat".into(),
                chain: "input".into(),
                comment: None
            }
        );
        let (req, _) = round_trip(
            &plan,
            "stranger",
            tcp("192.0.2.66", 40001, "198.51.100.99", 80),
        );
        match req.end {
            End::Dropped {
                node,
                comment: Some(c),
                ..
            } => {
                assert_eq!(node, "my-igw");
                assert!(c.contains("no NAT mapping"), "{c}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_private_host_reaching_a_public_ip_of_its_own_vpc_hairpins_at_the_internet_gateway() {
        let plan = handson();
        let (req, reply) = round_trip(&plan, "app", tcp("10.0.1.101", 40001, "198.51.100.10", 80));
        assert_eq!(req.end, End::Delivered { node: "web".into() });
        let igw: Vec<&SimHop> = req.hops.iter().filter(|h| h.node == "my-igw").collect();
        assert_eq!(igw.len(), 2);
        assert_eq!(
            (igw[0].iface.as_str(), igw[1].iface.as_str()),
            ("to-vpc", "to-vpc")
        );
        // Both addresses change there: the NAT gateway's EIP to web's private IP.
        assert_eq!(igw[1].tuple, tcp("198.51.100.11", 40001, "10.0.2.238", 80));
        let back = reply.unwrap();
        assert_eq!(back.end, End::Delivered { node: "app".into() });
        assert_eq!(
            back.hops.last().unwrap().tuple,
            tcp("198.51.100.10", 80, "10.0.1.101", 40001)
        );
    }

    #[test]
    fn the_internet_gateway_translates_a_reply_it_holds_no_state_for() {
        // A stateless 1:1 NAT needs no memory of the request: a reply to web's public IP
        // is rewritten by the same pair even when nothing was recorded for it.
        let plan = handson();
        let mut empty = Conntrack::default();
        let back = simulate(
            &plan,
            "example-web",
            tcp("203.0.113.60", 80, "198.51.100.10", 40001),
            &mut empty,
            true,
        );
        assert_eq!(back.end, End::Delivered { node: "web".into() });
        assert_eq!(
            back.hops.last().unwrap().tuple,
            tcp("203.0.113.60", 80, "10.0.2.238", 40001)
        );
        assert!(empty.entries.is_empty(), "{:?}", empty.entries);
    }

    #[test]
    fn hosts_on_one_subnet_are_switched_by_the_bridge_without_routing() {
        let plan = handson();
        let (req, reply) = round_trip(&plan, "app", tcp("10.0.1.101", 40001, "10.0.1.64", 3306));
        let p = points(&req);
        assert_eq!(p[1], "vpc-router/p-app in");
        assert!(
            p[2].starts_with("vpc-router/p-my-datab") && p[2].ends_with("out"),
            "{p:?}"
        );
        // The database's security group only admits the web servers' group.
        assert!(
            matches!(req.end, End::Dropped { ref node, .. } if node == "my-database-2a"),
            "{:?}",
            req.end
        );
        assert!(reply.is_none());
        let (req, reply) = round_trip(&plan, "web", tcp("10.0.2.238", 40001, "10.0.3.87", 3306));
        assert_eq!(
            req.end,
            End::Delivered {
                node: "my-database-2c".into()
            }
        );
        assert_eq!(reply.unwrap().end, End::Delivered { node: "web".into() });
    }
}
