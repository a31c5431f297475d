//! Hop-by-hop packet traces from real captures, and live NAT translation tables.
//!
//! `vpclab trace FROM TO` sends one real request from FROM's namespace and captures it
//! with packet sockets on every interface of every namespace the Plan says it crosses,
//! request and reply. Frames are matched across NAT by a fingerprint the translation does
//! not touch (TCP sequence numbers, UDP payload, ICMP echo sequence), put in order by the
//! kernel's timestamps, and each change of addresses is attributed to the device that
//! made it and the nftables rule whose counter moved. When the packet vanishes, the drop
//! rule whose counter moved where it was last seen (or the kernel's route lookup there)
//! says why.
//!
//! The pure parts (path prediction, correlation, counters, name resolution) live in their
//! own files and are unit-tested without root; this file runs the kernel side.

pub mod correlate;
pub mod counters;
pub mod dns;
pub mod nat;
pub mod packet;
pub mod path;
pub mod pcap;
pub mod render;
pub mod resolve;
pub mod send;

use crate::kernel::capture::{self, Capture};
use crate::kernel::conntrack::{self, CtEntry};
use crate::kernel::netlink::{Netlink, RouteLookup};
use crate::kernel::{apply::Indexes, netns, nft};
use crate::lab::Running;
use crate::plan::firewall::Family;
use crate::plan::{Plan, Role};
use anyhow::{Context, Result, bail};
use correlate::{Change, Leg, PointInfo, Probe, Seen, Side};
use counters::{Moved, RuleCount};
use packet::Tuple;
use path::{Dir, End, SimPath};
use resolve::Target;
use send::{Listener, Outcome, Proto};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to trace.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: Option<u16>,
    pub pcap: Option<PathBuf>,
    /// How long to wait for an answer.
    pub timeout: Duration,
    /// Keep the connection open after the trace (for `nat-table`).
    pub hold: bool,
    /// Listen on TO's port for the trace when nothing does.
    pub listener: bool,
}

/// A trace, as data (`--json` prints it).
#[derive(Debug, Serialize)]
pub struct Report {
    pub lab: String,
    pub from: Endpoint,
    pub to: Target,
    pub proto: Proto,
    pub port: Option<u16>,
    pub listener: ListenerUse,
    pub outcome: Outcome,
    /// The reply came back to FROM.
    pub reachable: bool,
    /// From sending the request to its outcome (the answer, or the timeout).
    pub request_ms: f64,
    /// The whole trace: resolving, opening captures, sending, reading counters.
    pub elapsed_ms: f64,
    pub request: Option<LegReport>,
    pub reply: Option<LegReport>,
    /// The write-up's walk-through steps, where this trace shows them.
    pub steps: Vec<Step>,
    /// Where and why the packet stopped, when it did.
    pub stopped: Option<Stopped>,
    /// The interfaces the Plan says the request crosses (`node/iface dir`).
    pub expected: Vec<String>,
    pub pcap: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub node: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerUse {
    /// Something already listened on TO's port.
    Existing,
    /// vpclab listened on TO's port for the trace.
    Temporary,
    /// Nobody was asked to listen (ICMP, `--no-listener`, or TO is not a lab node).
    None,
}

#[derive(Debug, Serialize)]
pub struct LegReport {
    /// "SYN", "SYN-ACK", "echo reply", "ICMP net unreachable", ...
    pub packet: String,
    pub hops: Vec<Hop>,
    pub translations: Vec<Translation>,
}

#[derive(Debug, Serialize)]
pub struct Hop {
    /// Numbered across request and reply.
    pub n: usize,
    pub node: String,
    pub iface: String,
    pub dir: Dir,
    pub src: Ipv4Addr,
    pub sport: Option<u16>,
    pub dst: Ipv4Addr,
    pub dport: Option<u16>,
    /// Microseconds since the request left FROM (kernel timestamps).
    pub t_us: f64,
    /// The same packet crossed this point again (retransmissions).
    pub repeats: usize,
    /// Filter rules whose counters show they let the request through here.
    pub allowed_by: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Translation {
    /// The hop (`n`) that left the device translated.
    pub hop: usize,
    pub node: String,
    /// "internet gateway", "NAT gateway", ...
    pub device: String,
    pub changed: Vec<&'static str>,
    pub before: Tuple,
    pub after: Tuple,
    /// The NAT rules that made the mapping, one per changed field (for a reply through a
    /// stateful device: the rules whose mapping conntrack reversed).
    pub rules: Vec<RuleRef>,
    /// "nat rule" for the first packet; for a reply "conntrack" (the NAT gateway) or
    /// "stateless rule" (the internet gateway rewrites every packet by its rules).
    pub by: &'static str,
    /// The NAT gateway's conntrack entry for the connection (the write-up's "mapping").
    pub mapping: Option<CtEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleRef {
    pub node: String,
    pub chain: String,
    pub comment: String,
    /// The rule as `vpclab plan` and `nft list` show it.
    pub rule: String,
    /// Packets its counter gained during the trace.
    pub packets: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub n: u32,
    pub leg: &'static str,
    /// The hop (`n`) the step happens at.
    pub hop: usize,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Stopped {
    pub leg: &'static str,
    /// The last hop (`n`) where the packet was seen; `None` when it never left FROM.
    pub last_seen: Option<usize>,
    pub node: String,
    pub reason: String,
    pub rule: Option<RuleRef>,
    /// A Reachability-Analyzer-like explanation code.
    pub code: Option<&'static str>,
}

/// What stays open after a trace with `--hold`.
pub struct Held {
    _socket: Option<OwnedFd>,
    _listener: Option<Listener>,
}

/// The AWS device a node stands for, as the write-up names it.
pub fn device(plan: &Plan, node: &str) -> String {
    match plan.netns(node).map(|n| n.role) {
        Some(Role::InternetGateway) => "internet gateway".into(),
        Some(Role::NatGateway) => "NAT gateway".into(),
        Some(Role::VpcRouter) => "VPC router".into(),
        Some(Role::Instance) => "instance".into(),
        Some(Role::Database) => "database server".into(),
        Some(Role::InternetRouter) => "internet".into(),
        Some(Role::InternetHost) => "internet host".into(),
        None => node.into(),
    }
}

/// `VPCLAB_TRACE_DEBUG=1` prints every captured IPv4 frame (time, point, direction,
/// addresses, fingerprint) on stderr.
pub const DEBUG_ENV: &str = "VPCLAB_TRACE_DEBUG";

fn debug_dump(infos: &[PointInfo], frames: &[capture::Frame]) {
    for (i, p) in infos.iter().enumerate() {
        let n = frames.iter().filter(|f| f.point == i).count();
        eprintln!("point {i} {}/{} {:?}: {n} frames", p.node, p.iface, p.side);
    }
    for f in frames {
        if let Some(pk) = packet::parse(&f.data) {
            let p = &infos[f.point];
            eprintln!(
                "{:?} {}/{} {} {:?} {} {:?}",
                f.ts,
                p.node,
                p.iface,
                p.side.dir(pk.src_mac).as_str(),
                pk.tuple(),
                pk.kind(),
                pk.fingerprint()
            );
        }
    }
}

/// A node as a sentence names it: "NAT gateway my-nat", "the VPC router".
pub fn who(plan: &Plan, node: &str) -> String {
    match plan.netns(node).map(|n| n.role) {
        Some(Role::VpcRouter) => "the VPC router".into(),
        Some(Role::InternetRouter) => "the internet's core router".into(),
        _ => format!("{} {node}", device(plan, node)),
    }
}

/// Runs a trace on a running lab.
pub fn run(r: &Running, o: &Options) -> Result<(Report, Option<Held>)> {
    let plan = &r.plan;
    let started = Instant::now();
    let from_ns = plan
        .netns(&o.from)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let target = resolve::resolve(plan, &o.from, &o.to, &|server, name| {
        dns::lookup(&from_ns, server, name)
    })?;
    let Some(from_ip) = plan.host(&o.from).map(|h| h.private_ip) else {
        bail!("`{}` is not a host of lab `{}`", o.from, plan.lab);
    };
    if target.node.as_deref() == Some(o.from.as_str()) {
        bail!(
            "{} is {}'s own address: the packet would never leave it (loopback)",
            target.ip,
            o.from
        );
    }
    let port = match (o.proto, o.port) {
        (Proto::Icmp, _) => None,
        (_, Some(p)) => Some(p),
        (p, None) => bail!("a {} trace needs a port: add --port P", p.as_str()),
    };
    let dport = port.unwrap_or(0);

    // Where to look: every namespace the Plan says the request and the reply cross.
    let guess = Tuple {
        proto: o.proto.number(),
        src: from_ip,
        sport: 40000,
        dst: target.ip,
        dport,
    };
    let (sim_req, sim_reply) = path::round_trip(plan, &o.from, guess);
    let mut nodes: Vec<String> = vec![o.from.clone()];
    for h in sim_req
        .hops
        .iter()
        .chain(sim_reply.iter().flat_map(|p| p.hops.iter()))
    {
        if !nodes.contains(&h.node) {
            nodes.push(h.node.clone());
        }
    }
    let (points, infos) = capture_points(plan, &nodes)?;

    // Captures first: the kernel switches frame timestamps on while the counters are read.
    let cap = Capture::start(&points)?;
    let before = read_counters(plan, &nodes);
    let (listener, listener_use) = match (&target.node, port) {
        (Some(node), Some(p)) if o.listener && o.proto != Proto::Icmp => {
            let ns = plan.netns(node).map(|n| n.name.clone()).unwrap_or_default();
            match send::listen(&ns, o.proto, p)? {
                Some(l) => (Some(l), ListenerUse::Temporary),
                None => (None, ListenerUse::Existing),
            }
        }
        _ => (None, ListenerUse::None),
    };

    let from_ns = plan
        .netns(&o.from)
        .expect("resolve checked FROM")
        .name
        .clone();
    // The connection stays open until the NAT gateways' mappings are read, so they show
    // it as it is while in use (and the capture ends before the connection closes).
    let sent = send::request(
        &from_ns,
        o.proto,
        SocketAddrV4::new(target.ip, dport),
        o.timeout,
        true,
    );
    let mappings: HashMap<String, Vec<CtEntry>> = nodes
        .iter()
        .filter_map(|n| plan.netns(n).filter(|ns| ns.role == Role::NatGateway))
        .filter_map(|ns| Some((ns.node.clone(), conntrack::dump(&ns.name).ok()?)))
        .collect();
    // The readers hand over what the kernel already queued to them.
    std::thread::sleep(Duration::from_millis(40));
    let frames = cap.stop();
    let mut sent = sent?;
    if !o.hold {
        sent.socket = None;
    }
    let after = read_counters(plan, &nodes);
    let moved: HashMap<String, Vec<Moved>> = after
        .iter()
        .map(|(node, a)| {
            let b = before.get(node).map(Vec::as_slice).unwrap_or(&[]);
            (node.clone(), counters::diff(b, a))
        })
        .collect();

    if std::env::var_os(DEBUG_ENV).is_some() {
        debug_dump(&infos, &frames);
    }
    let raw: Vec<(usize, Duration, Vec<u8>)> = frames
        .iter()
        .map(|f| (f.point, f.ts, f.data.clone()))
        .collect();
    let obs = correlate::observations(&infos, &raw);
    let probe = Probe {
        from: o.from.clone(),
        proto: o.proto.number(),
        local_port: sent.local_port,
        dst: target.ip,
        dport,
    };
    let (req, reply) = correlate::legs(&infos, &obs, &probe);

    let mut b = Builder {
        plan,
        moved: &moved,
        mappings: &mappings,
        target: &target,
        from: &o.from,
        t0: req.as_ref().and_then(|l| l.hops.first()).map(|h| h.ts),
        next_hop: 1,
    };
    let request = req.as_ref().map(|l| b.leg(l, None, true));
    let reply_report = reply.as_ref().map(|l| b.leg(l, req.as_ref(), false));
    let reachable = reply.as_ref().is_some_and(|l| {
        l.last()
            .is_some_and(|h| h.node == o.from && h.dir == Dir::In)
            && !l.hops[0].kind.starts_with("ICMP ")
    });
    let steps = steps(r, &o.from, request.as_ref(), reply_report.as_ref());
    let stopped = if reachable {
        None
    } else {
        Some(b.stopped(
            request.as_ref(),
            reply_report.as_ref(),
            req.as_ref(),
            reply.as_ref(),
            &sim_req,
            sim_reply.as_ref(),
            &sent.outcome,
        ))
    };

    let pcap_files = match &o.pcap {
        Some(dir) => pcap::write(dir, &points, plan, &frames)?,
        None => vec![],
    };
    let expected = sim_req
        .hops
        .iter()
        .map(|h| format!("{}/{} {}", h.node, h.iface, h.dir.as_str()))
        .collect();
    let report = Report {
        lab: plan.lab.clone(),
        from: Endpoint {
            node: o.from.clone(),
            ip: from_ip,
        },
        to: target.clone(),
        proto: o.proto,
        port,
        listener: listener_use,
        outcome: sent.outcome.clone(),
        reachable,
        request_ms: (sent.elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
        elapsed_ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        request,
        reply: reply_report,
        steps,
        stopped,
        expected,
        pcap: pcap_files,
    };
    let held = (o.hold && sent.socket.is_some()).then(|| Held {
        _socket: sent.socket,
        _listener: listener,
    });
    Ok((report, held))
}

/// Every veth end in the given nodes' namespaces (bridges would show each frame twice),
/// and how to tell the direction of a frame on it.
fn capture_points(plan: &Plan, nodes: &[String]) -> Result<(Vec<capture::Point>, Vec<PointInfo>)> {
    let mut points = Vec::new();
    let mut ends = Vec::new();
    for node in nodes {
        let ns = plan.netns(node).expect("nodes come from the plan");
        for v in &plan.veths {
            for (me, peer) in [(&v.a, &v.b), (&v.b, &v.a)] {
                if me.ns == ns.name {
                    points.push(capture::Point {
                        ns: me.ns.clone(),
                        iface: me.name.clone(),
                    });
                    ends.push((node.clone(), me, peer));
                }
            }
        }
    }
    let wanted: BTreeSet<&str> = ends
        .iter()
        .flat_map(|(_, me, peer)| [me.ns.as_str(), peer.ns.as_str()])
        .collect();
    let mut macs: HashMap<&str, BTreeMap<String, [u8; 6]>> = HashMap::new();
    for ns in wanted {
        macs.insert(ns, capture::macs(ns)?);
    }
    let mac = |ns: &str, dev: &str| macs.get(ns).and_then(|m| m.get(dev)).copied();
    let infos = ends
        .iter()
        .map(|(node, me, peer)| PointInfo {
            node: node.clone(),
            iface: me.name.clone(),
            side: match &me.master {
                Some(_) => mac(&peer.ns, &peer.name).map_or(Side::Unknown, Side::PeerMac),
                None => mac(&me.ns, &me.name).map_or(Side::Unknown, Side::OwnMac),
            },
        })
        .collect();
    Ok((points, infos))
}

/// The counters of every rule of the lab's nftables table in one namespace.
fn rule_counts(netns_name: &str, family: Family) -> Result<Vec<RuleCount>> {
    let h = netns::open(netns_name)?;
    let json = netns::run_in(&h, || nft::list_here(family))?;
    Ok(counters::parse(&json))
}

/// The counters of every nftables rule in the given nodes, read in parallel.
fn read_counters(plan: &Plan, nodes: &[String]) -> HashMap<String, Vec<RuleCount>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .filter_map(|node| {
                let ns = plan.netns(node)?;
                let family = ns.firewall.as_ref()?.family;
                let name = ns.name.clone();
                Some((node.clone(), s.spawn(move || rule_counts(&name, family))))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(node, h)| Some((node, h.join().ok()?.ok()?)))
            .collect()
    })
}

struct Builder<'a> {
    plan: &'a Plan,
    moved: &'a HashMap<String, Vec<Moved>>,
    /// Conntrack tables of the NAT gateways, read while the connection was open.
    mappings: &'a HashMap<String, Vec<CtEntry>>,
    target: &'a Target,
    from: &'a str,
    t0: Option<Duration>,
    next_hop: usize,
}

impl Builder<'_> {
    fn rule_ref(&self, node: &str, chain: &str, comment: &str, packets: Option<u64>) -> RuleRef {
        let text = self
            .plan
            .netns(node)
            .and_then(|n| n.firewall.as_ref())
            .and_then(|t| {
                let c = t.chains.iter().find(|c| c.name == chain)?;
                let r = c.rules.iter().find(|r| r.comment == comment)?;
                Some(t.rule_text(r))
            })
            .unwrap_or_default();
        RuleRef {
            node: node.to_string(),
            chain: chain.to_string(),
            comment: comment.to_string(),
            rule: text,
            packets,
        }
    }

    /// The Plan's NAT rule that maps to `to` (SNAT for a source, DNAT for a destination).
    fn plan_nat_rule(&self, node: &str, source: bool, to: Ipv4Addr, proto: u8) -> Option<RuleRef> {
        use crate::plan::firewall::{L4, Match, Verdict};
        let t = self.plan.netns(node)?.firewall.as_ref()?;
        let proto_ok = |ms: &[Match]| {
            ms.iter().all(|m| match m {
                Match::Proto(p) => match p {
                    L4::Tcp => proto == packet::TCP,
                    L4::Udp => proto == packet::UDP,
                    L4::Icmp => proto == packet::ICMP,
                },
                _ => true,
            })
        };
        t.chains.iter().find_map(|c| {
            c.rules.iter().find_map(|r| match (&r.verdict, source) {
                (Verdict::Snat { addr, .. }, true) | (Verdict::Dnat { addr }, false)
                    if *addr == to && proto_ok(&r.matches) =>
                {
                    Some(self.rule_ref(node, &c.name, &r.comment, None))
                }
                _ => None,
            })
        })
    }

    fn leg(&mut self, l: &Leg, request: Option<&Leg>, is_request: bool) -> LegReport {
        let base = self.next_hop;
        self.next_hop += l.hops.len();
        let last = l.hops.len().saturating_sub(1);
        let hops = l
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let allowed_by = if is_request {
                    self.allowed(h, i == 0, i == last)
                } else {
                    vec![]
                };
                hop(base + i, h, self.t0, allowed_by)
            })
            .collect();
        let translations = l
            .changes
            .iter()
            .map(|c| self.translation(c, base + c.hop, request))
            .collect();
        LegReport {
            packet: l.hops.first().map(|h| h.kind.clone()).unwrap_or_default(),
            hops,
            translations,
        }
    }

    /// Accept rules that moved where the request crossed a filter: leaving FROM (output),
    /// forwarded by a namespace with a forward chain, arriving at TO (input).
    fn allowed(&self, h: &Seen, first: bool, last: bool) -> Vec<String> {
        let Some(moved) = self.moved.get(&h.node) else {
            return vec![];
        };
        let chain = match h.dir {
            Dir::Out if first => "output",
            Dir::Out => "forward",
            Dir::In if last && self.target.node.as_deref() == Some(h.node.as_str()) => "input",
            Dir::In => return vec![],
        };
        counters::allow_rules(moved, chain)
            .into_iter()
            .map(|m| m.comment.clone())
            .collect()
    }

    fn translation(&self, c: &Change, hop: usize, request: Option<&Leg>) -> Translation {
        let mut changed = vec![];
        if (c.before.src, c.before.sport) != (c.after.src, c.after.sport) {
            changed.push("source");
        }
        if (c.before.dst, c.before.dport) != (c.after.dst, c.after.dport) {
            changed.push("destination");
        }
        let proto = c.before.proto;
        let stateless = self
            .plan
            .netns(&c.node)
            .and_then(|n| n.firewall.as_ref())
            .is_some_and(|t| t.stateless);
        let rules: Vec<RuleRef> = changed
            .iter()
            .filter_map(|field| {
                let source = *field == "source";
                if request.is_none() || stateless {
                    // The first packet: the NAT rule whose counter moved made the mapping.
                    // In a stateless table (the internet gateway) a rule rewrites every
                    // packet, replies included.
                    let to = if source { c.after.src } else { c.after.dst };
                    self.moved
                        .get(&c.node)
                        .and_then(|m| counters::nat_rule(m, source, to))
                        .map(|m| self.rule_ref(&c.node, &m.chain, &m.comment, Some(m.packets)))
                        .or_else(|| self.plan_nat_rule(&c.node, source, to, proto))
                } else {
                    // A reply: conntrack reverses the request's mapping and no rule runs.
                    // The rule that made it: a source rewritten back was a DNAT to that
                    // source, a destination rewritten back an SNAT to that destination.
                    let to = if source { c.before.src } else { c.before.dst };
                    self.plan_nat_rule(&c.node, !source, to, proto)
                }
            })
            .collect();
        let by = if request.is_none() {
            "nat rule"
        } else if stateless {
            "stateless rule"
        } else {
            "conntrack"
        };
        // The mapping the NAT gateway recorded for the request (the reply uses it again).
        let mapping = (request.is_none()
            && self.plan.netns(&c.node).map(|n| n.role) == Some(Role::NatGateway))
        .then(|| self.mapping(&c.node, c.before))
        .flatten();
        Translation {
            hop,
            node: c.node.clone(),
            device: device(self.plan, &c.node),
            changed,
            before: c.before,
            after: c.after,
            rules,
            by,
            mapping,
        }
    }

    /// The conntrack entry of `node` for the connection whose original tuple is `orig`.
    fn mapping(&self, node: &str, orig: Tuple) -> Option<CtEntry> {
        self.mappings
            .get(node)?
            .iter()
            .find(|e| {
                e.proto == orig.proto
                    && e.orig.src == orig.src
                    && e.orig.dst == orig.dst
                    && e.orig.sport == Some(orig.sport)
                    && (orig.proto == packet::ICMP || e.orig.dport == Some(orig.dport))
            })
            .cloned()
    }

    #[allow(clippy::too_many_arguments)]
    fn stopped(
        &self,
        request: Option<&LegReport>,
        reply: Option<&LegReport>,
        req: Option<&Leg>,
        rep: Option<&Leg>,
        sim_req: &SimPath,
        sim_reply: Option<&SimPath>,
        outcome: &Outcome,
    ) -> Stopped {
        // An ICMP error came back: the request stopped where it was last seen, and the
        // reply leg shows the error going home.
        let icmp_error = rep.is_some_and(|l| l.hops[0].kind.starts_with("ICMP "));
        let (leg, seen, report, sim) = match (req, rep) {
            (Some(_), Some(r)) if !icmp_error => ("reply", r.last(), reply, sim_reply),
            (Some(q), _) => ("request", q.last(), request, Some(sim_req)),
            (None, _) => ("request", None, None, Some(sim_req)),
        };
        let last_seen = report.and_then(|r| r.hops.last()).map(|h| h.n);
        let Some(seen) = seen else {
            // Never left FROM: its security group's outbound rules, or no route.
            return self.diagnose(leg, self.from, None, None, sim, outcome);
        };
        // Arrived at its destination and nobody answered.
        if leg == "request"
            && seen.dir == Dir::In
            && self.target.node.as_deref() == Some(seen.node.as_str())
            && self.drop_in(&seen.node).is_none()
            && !matches!(sim.map(|s| &s.end), Some(End::Dropped { node, .. }) if *node == seen.node)
        {
            return Stopped {
                leg,
                last_seen,
                node: seen.node.clone(),
                reason: format!(
                    "the request reached {} but nothing answered ({})",
                    seen.node,
                    outcome_text(outcome)
                ),
                rule: None,
                code: None,
            };
        }
        self.diagnose(leg, &seen.node, Some(seen), last_seen, sim, outcome)
    }

    fn drop_in(&self, node: &str) -> Option<&Moved> {
        self.moved.get(node).and_then(|m| counters::drop_rule(m))
    }

    fn diagnose(
        &self,
        leg: &'static str,
        node: &str,
        seen: Option<&Seen>,
        last_seen: Option<usize>,
        sim: Option<&SimPath>,
        outcome: &Outcome,
    ) -> Stopped {
        let role = self.plan.netns(node).map(|n| n.role);
        // 1. A drop rule whose counter moved.
        if let Some(m) = self.drop_in(node) {
            let rule = self.rule_ref(node, &m.chain, &m.comment, Some(m.packets));
            let (reason, code) = match role {
                Some(Role::Instance | Role::Database) => {
                    let dir = if m.chain == "output" {
                        "outbound"
                    } else {
                        "inbound"
                    };
                    (
                        format!(
                            "security group: {} (the {dir} rules of {node}'s security groups)",
                            m.comment
                        ),
                        Some("ENI_SG_RULES_MISMATCH"),
                    )
                }
                Some(Role::InternetGateway)
                    if m.comment.contains("IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS") =>
                {
                    (
                        format!("internet gateway: {}", m.comment),
                        Some("IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS"),
                    )
                }
                Some(Role::InternetGateway) => (format!("internet gateway: {}", m.comment), None),
                _ => (format!("{}: {}", who(self.plan, node), m.comment), None),
            };
            return Stopped {
                leg,
                last_seen,
                node: node.to_string(),
                reason,
                rule: Some(rule),
                code,
            };
        }
        // 2. A chain's policy (no counter): the Plan says which chain.
        if let Some(End::Dropped {
            node: n,
            chain,
            comment: None,
        }) = sim.map(|s| &s.end)
            && n == node
        {
            let why = match role {
                Some(Role::NatGateway) => {
                    " (a NAT gateway only translates connections started inside the VPC; nothing can connect to it)"
                }
                _ => "",
            };
            return Stopped {
                leg,
                last_seen,
                node: node.to_string(),
                reason: format!(
                    "{}: no rule of its {chain} chain accepts this, and the chain's policy is drop{why}",
                    who(self.plan, node)
                ),
                rule: None,
                code: None,
            };
        }
        // 3. The kernel's route lookup where the packet entered.
        if let Some(seen) = seen.filter(|s| s.dir == Dir::In)
            && let Some(Err(msg)) = self.route_check(node, &seen.iface, seen.tuple)
        {
            return Stopped {
                leg,
                last_seen,
                node: node.to_string(),
                reason: format!(
                    "no route: {} has no route to {} (`ip route get {} from {} iif {}` in {node}: {msg})",
                    match self.route_table_of(node, &seen.iface) {
                        Some(t) => format!("route table {t} of the {}", device(self.plan, node)),
                        None => who(self.plan, node),
                    },
                    seen.tuple.dst,
                    seen.tuple.dst,
                    seen.tuple.src,
                    self.l3_iface(node, &seen.iface),
                ),
                rule: None,
                code: Some("NO_ROUTE_TO_DESTINATION"),
            };
        }
        if seen.is_none()
            && let Some(End::NoRoute { node: n, dst }) = sim.map(|s| &s.end)
            && n == node
        {
            return Stopped {
                leg,
                last_seen,
                node: node.to_string(),
                reason: format!(
                    "no route: {node} has no route to {dst} ({})",
                    outcome_text(outcome)
                ),
                rule: None,
                code: Some("NO_ROUTE_TO_DESTINATION"),
            };
        }
        let reason = match seen {
            None => format!(
                "the {leg} never left {node} ({}); no drop rule counted it",
                outcome_text(outcome)
            ),
            Some(s) => format!(
                "the {leg} was last seen at {}/{} ({}) and no drop rule counted it",
                s.node,
                s.iface,
                s.dir.as_str()
            ),
        };
        Stopped {
            leg,
            last_seen,
            node: node.to_string(),
            reason,
            rule: None,
            code: None,
        }
    }

    /// The routing device of a veth end: its bridge when it is a bridge port.
    fn l3_iface(&self, node: &str, iface: &str) -> String {
        let Some(ns) = self.plan.netns(node) else {
            return iface.into();
        };
        self.plan
            .veths
            .iter()
            .flat_map(|v| [&v.a, &v.b])
            .find(|e| e.ns == ns.name && e.name == iface)
            .and_then(|e| e.master.clone())
            .unwrap_or_else(|| iface.into())
    }

    fn route_table_of(&self, node: &str, iface: &str) -> Option<String> {
        let ns = self.plan.netns(node)?;
        let l3 = self.l3_iface(node, iface);
        let rule = ns.rules.iter().find(|r| r.iif == l3)?;
        let t = self
            .plan
            .route_tables
            .iter()
            .find(|t| t.table == rule.table)?;
        Some(format!("{} ({})", t.name, t.id))
    }

    /// `ip route get DST from SRC iif DEV` in the node's namespace: `Some(Err(msg))`
    /// when the kernel has no route.
    fn route_check(&self, node: &str, iface: &str, t: Tuple) -> Option<Result<(), String>> {
        let ns = self.plan.netns(node)?;
        let forwards = ns
            .sysctls
            .iter()
            .any(|s| s.key == "net.ipv4.ip_forward" && s.value == "1");
        if !forwards {
            return None;
        }
        let l3 = self.l3_iface(node, iface);
        let index = Indexes::of(self.plan).get(&ns.name, &l3).ok()?;
        let handle = netns::open(&ns.name).ok()?;
        let answer = netns::run_in(&handle, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start a runtime")?;
            let nl = Netlink::open_here(rt.handle())?;
            rt.block_on(nl.route_get_input(t.dst, t.src, index))
        })
        .ok()?;
        Some(match answer {
            RouteLookup::Unreachable(msg) => Err(msg),
            _ => Ok(()),
        })
    }
}

fn hop(n: usize, h: &Seen, t0: Option<Duration>, allowed_by: Vec<String>) -> Hop {
    let ports = h.tuple.has_ports();
    Hop {
        n,
        node: h.node.clone(),
        iface: h.iface.clone(),
        dir: h.dir,
        src: h.tuple.src,
        sport: ports.then_some(h.tuple.sport),
        dst: h.tuple.dst,
        dport: ports.then_some(h.tuple.dport),
        t_us: t0.map_or(0.0, |t| {
            (h.ts.saturating_sub(t).as_secs_f64() * 1e7).round() / 10.0
        }),
        repeats: h.repeats,
        allowed_by,
    }
}

pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Answered => "answered".into(),
        Outcome::Refused => "refused".into(),
        Outcome::Unreachable(e) => format!("unreachable: {e}"),
        Outcome::TimedOut => "no answer before the timeout".into(),
    }
}

/// Names an address the way the write-up does: an instance's public IP, a NAT gateway's
/// Elastic IP.
fn address_label(r: &Running, ip: Ipv4Addr) -> Option<String> {
    let owner = resolve::owner(&r.plan, ip)?;
    let elastic = r.lab.elastic_ips.iter().any(|e| e.address == ip);
    let private = r.plan.host(&owner).map(|h| h.private_ip).or_else(|| {
        r.plan
            .netns(&owner)
            .and_then(|n| n.addresses.iter().find(|a| a.dev == "eth0"))
            .map(|a| a.addr.addr())
    });
    if r.plan
        .netns(&owner)
        .is_some_and(|n| n.role == Role::InternetHost)
    {
        Some(format!("{owner}'s address"))
    } else if private == Some(ip) {
        Some(format!("{owner}'s private IP"))
    } else if elastic {
        Some(format!("{owner}'s Elastic IP"))
    } else {
        Some(format!("{owner}'s public IP"))
    }
}

/// The write-up's walk-through steps, numbered as the write-up numbers them: (1) the request
/// leaves, one step per translation on the way out, the reply arriving addressed to the
/// translated address, one step per translation on the way back, and the reply reaching
/// FROM. A trace without translations has no steps.
fn steps(r: &Running, from: &str, req: Option<&LegReport>, reply: Option<&LegReport>) -> Vec<Step> {
    let mut out = Vec::new();
    let Some(req) = req else { return out };
    let has_nat = !req.translations.is_empty() || reply.is_some_and(|l| !l.translations.is_empty());
    if !has_nat {
        return out;
    }
    let mut n = 0;
    let mut push = |leg, hop, text: String| {
        n += 1;
        out.push(Step { n, leg, hop, text });
    };
    if let Some(h) = req.hops.first() {
        let label = address_label(r, h.src).unwrap_or_else(|| "address".into());
        let label = label
            .strip_prefix(&format!("{from}'s "))
            .unwrap_or(&label)
            .to_string();
        push(
            "request",
            h.n,
            format!(
                "{from} sends from its {label}: source {}, destination {}",
                ep(h.src, h.sport),
                ep(h.dst, h.dport)
            ),
        );
    }
    for t in &req.translations {
        push("request", t.hop, translation_text(t, true));
    }
    if let Some(reply) = reply {
        if let Some(first) = reply.translations.first() {
            // The hop where the reply entered the first device that translates it back.
            if let Some(h) = reply
                .hops
                .iter()
                .rev()
                .find(|h| h.n < first.hop && h.node == first.node)
            {
                let what = address_label(r, h.dst)
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                push(
                    "reply",
                    h.n,
                    format!(
                        "the reply comes back addressed to {}{what}",
                        ep(h.dst, h.dport)
                    ),
                );
            }
        }
        for t in &reply.translations {
            push("reply", t.hop, translation_text(t, false));
        }
        if let Some(h) = reply
            .hops
            .last()
            .filter(|h| h.node == from && h.dir == Dir::In)
        {
            push(
                "reply",
                h.n,
                format!("the reply reaches {from} at {}", ep(h.dst, h.dport)),
            );
        }
    }
    out
}

fn ep(ip: Ipv4Addr, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    }
}

/// "internet gateway: static NAT 10.0.2.238 → 198.51.100.10",
/// "NAT gateway: 10.0.1.101:40001 → 10.0.0.4:40001 (mapping recorded)".
pub fn translation_text(t: &Translation, request: bool) -> String {
    let ports = t.before.has_ports();
    let parts: Vec<String> = t
        .changed
        .iter()
        .map(|field| {
            let (b, a) = if *field == "source" {
                ((t.before.src, t.before.sport), (t.after.src, t.after.sport))
            } else {
                ((t.before.dst, t.before.dport), (t.after.dst, t.after.dport))
            };
            let which = if t.changed.len() > 1 {
                format!(" ({field})")
            } else {
                String::new()
            };
            match t.device.as_str() {
                "internet gateway" => format!("{} → {}{which}", b.0, a.0),
                "NAT gateway" if ports => {
                    let port = if b.1 == a.1 {
                        "port kept"
                    } else {
                        "port changed"
                    };
                    let note = if request {
                        format!("{field} translated, {port}; mapping recorded")
                    } else {
                        format!("{field} translated back from the recorded mapping")
                    };
                    format!("{}:{} → {}:{} ({note})", b.0, b.1, a.0, a.1)
                }
                "NAT gateway" => {
                    let note = if request {
                        "mapping recorded"
                    } else {
                        "from the recorded mapping"
                    };
                    format!("{} → {} ({field}, {note})", b.0, a.0)
                }
                _ => format!(
                    "{field} {} → {}",
                    ep(b.0, ports.then_some(b.1)),
                    ep(a.0, ports.then_some(a.1))
                ),
            }
        })
        .collect();
    let parts = parts.join(", and ");
    match t.device.as_str() {
        "internet gateway" => format!("internet gateway: static NAT {parts}"),
        "NAT gateway" => format!("NAT gateway: {parts}"),
        d => format!("{d} {}: {parts}", t.node),
    }
}
