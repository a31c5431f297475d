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
//! The pure parts (path prediction, correlation, counters, name resolution, building the
//! report) live in their own files and are unit-tested without root; this file runs the
//! kernel side.

pub mod correlate;
pub mod counters;
pub mod dns;
pub mod nat;
pub mod packet;
pub mod path;
pub mod pcap;
pub mod render;
pub mod report;
pub mod resolve;
pub mod send;

use crate::kernel::capture::{self, Capture};
use crate::kernel::conntrack::{self, CtEntry};
use crate::kernel::netlink::{self, RouteLookup};
use crate::kernel::{apply::Indexes, netns, nft};
use crate::lab::Running;
use crate::plan::firewall::Family;
use crate::plan::{Plan, Role};
use anyhow::{Result, bail};
use correlate::{PointInfo, Probe, Side};
use counters::{Moved, RuleCount};
use packet::Tuple;
use report::{Endpoint, ListenerUse, Observed, Report, RouteQuery};
use send::{Listener, Proto};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddrV4;
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

/// What stays open after a trace with `--hold`.
pub struct Held {
    _socket: Option<OwnedFd>,
    _listener: Option<Listener>,
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

    let found = report::build(
        &Observed {
            plan,
            lab: &r.lab,
            from: &o.from,
            target: &target,
            request: req.as_ref(),
            reply: reply.as_ref(),
            moved: &moved,
            mappings: &mappings,
            sim_request: &sim_req,
            sim_reply: sim_reply.as_ref(),
            outcome: &sent.outcome,
        },
        &|q| route_get(plan, q),
    );

    let pcap_files = match &o.pcap {
        Some(dir) => pcap::write(dir, &points, plan, &frames)?,
        None => vec![],
    };
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
        reachable: found.reachable,
        request_ms: (sent.elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
        elapsed_ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        request: found.request,
        reply: found.reply,
        steps: found.steps,
        stopped: found.stopped,
        expected: found.expected,
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

/// Asks the kernel the route lookup a report asks where a packet vanished, from a netlink
/// socket inside the node's namespace.
fn route_get(plan: &Plan, q: &RouteQuery) -> Option<RouteLookup> {
    let index = Indexes::of(plan).get(q.netns, q.iif).ok()?;
    netlink::in_namespace(q.netns, async |nl| {
        nl.route_get_input(q.dst, q.src, index).await
    })
    .ok()
}
