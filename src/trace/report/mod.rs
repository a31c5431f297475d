//! A trace's report, built from what the trace observed: the captured request and reply,
//! the rules whose counters moved, the NAT gateways' conntrack mappings, and the Plan's
//! prediction of the path. Building it touches no kernel: the one question it asks the
//! kernel (a route lookup where a packet vanished) comes in as `route_get`, so the builder
//! is unit-tested without root.

use super::correlate::{Change, Leg, Seen};
use super::counters::{self, Moved};
use super::packet::{self, Tuple};
use super::path::{Dir, End, SimPath};
use super::resolve::{self, Target};
use super::send::{Outcome, Proto};
use crate::kernel::conntrack::CtEntry;
use crate::kernel::netlink::RouteLookup;
use crate::plan::firewall::is_acl_chain;
use crate::plan::{Plan, Role};
use crate::topology::Lab;
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

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

/// A node as a sentence names it: "NAT gateway my-nat", "the VPC router".
pub fn who(plan: &Plan, node: &str) -> String {
    match plan.netns(node).map(|n| n.role) {
        Some(Role::VpcRouter) => "the VPC router".into(),
        Some(Role::InternetRouter) => "the internet's core router".into(),
        _ => format!("{} {node}", device(plan, node)),
    }
}

/// What a trace observed, and the lab it ran on: everything the report is built from.
pub struct Observed<'a> {
    pub plan: &'a Plan,
    /// The lab as it runs now (its Elastic IPs name addresses in the steps).
    pub lab: &'a Lab,
    pub from: &'a str,
    pub target: &'a Target,
    /// The request and its reply, as the captures followed them.
    pub request: Option<&'a Leg>,
    pub reply: Option<&'a Leg>,
    /// The rules whose counters moved during the trace, per node.
    pub moved: &'a HashMap<String, Vec<Moved>>,
    /// Conntrack tables of the NAT gateways, read while the connection was open.
    pub mappings: &'a HashMap<String, Vec<CtEntry>>,
    /// The paths the Plan predicts for the request and its reply.
    pub sim_request: &'a SimPath,
    pub sim_reply: Option<&'a SimPath>,
    /// How the request ended, as the sending socket saw it.
    pub outcome: &'a Outcome,
}

/// `ip route get DST from SRC iif IIF`, asked inside namespace `netns`.
#[derive(Debug)]
pub struct RouteQuery<'a> {
    pub netns: &'a str,
    pub iif: &'a str,
    pub dst: Ipv4Addr,
    pub src: Ipv4Addr,
}

/// The kernel's answer to a `RouteQuery`; `None` when it could not be asked.
pub type RouteGet<'a> = &'a dyn Fn(&RouteQuery) -> Option<RouteLookup>;

/// The parts of a report a trace's observations make.
pub struct Findings {
    pub request: Option<LegReport>,
    pub reply: Option<LegReport>,
    pub reachable: bool,
    pub steps: Vec<Step>,
    pub stopped: Option<Stopped>,
    pub expected: Vec<String>,
}

/// Builds the hops, translations, steps and, when the reply did not come back, where and why
/// the packet stopped. `route_get` answers the route lookup asked where a packet vanished.
pub fn build(o: &Observed, route_get: RouteGet) -> Findings {
    let mut b = Builder {
        plan: o.plan,
        moved: o.moved,
        mappings: o.mappings,
        target: o.target,
        from: o.from,
        t0: o.request.and_then(|l| l.hops.first()).map(|h| h.ts),
        next_hop: 1,
        route_get,
    };
    let request = o.request.map(|l| b.leg(l, None, true));
    let reply = o.reply.map(|l| b.leg(l, o.request, false));
    let reachable = o.reply.is_some_and(|l| {
        l.last()
            .is_some_and(|h| h.node == o.from && h.dir == Dir::In)
            && !l.hops[0].kind.starts_with("ICMP ")
    });
    let steps = steps(o.plan, o.lab, o.from, request.as_ref(), reply.as_ref());
    let stopped = if reachable {
        None
    } else {
        Some(b.stopped(
            request.as_ref(),
            reply.as_ref(),
            o.request,
            o.reply,
            o.sim_request,
            o.sim_reply,
            o.outcome,
        ))
    };
    let expected = o
        .sim_request
        .hops
        .iter()
        .map(|h| format!("{}/{} {}", h.node, h.iface, h.dir.as_str()))
        .collect();
    Findings {
        request,
        reply,
        reachable,
        steps,
        stopped,
        expected,
    }
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
    route_get: RouteGet<'a>,
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
        // A forwarding hop also names the network ACL rules that let it through (the VPC
        // router's: the source subnet's outbound rule, then the destination's inbound).
        let chains: &[fn(&str) -> bool] = match h.dir {
            Dir::Out if first => &[|c| c == "output"],
            Dir::Out => &[
                |c| is_acl_chain(c, false),
                |c| is_acl_chain(c, true),
                |c| c == "forward",
            ],
            Dir::In if last && self.target.node.as_deref() == Some(h.node.as_str()) => {
                &[|c| c == "input"]
            }
            Dir::In => return vec![],
        };
        chains
            .iter()
            .flat_map(|c| counters::allow_rules(moved, c))
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
                Some(Role::VpcRouter) if m.comment.starts_with("network ACL ") => {
                    (m.comment.clone(), Some("SUBNET_ACL_RESTRICTION"))
                }
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
        let answer = (self.route_get)(&RouteQuery {
            netns: &ns.name,
            iif: &l3,
            dst: t.dst,
            src: t.src,
        })?;
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
fn address_label(plan: &Plan, lab: &Lab, ip: Ipv4Addr) -> Option<String> {
    let owner = resolve::owner(plan, ip)?;
    let elastic = lab.elastic_ips.iter().any(|e| e.address == ip);
    let private = plan.host(&owner).map(|h| h.private_ip).or_else(|| {
        plan.netns(&owner)
            .and_then(|n| n.addresses.iter().find(|a| a.dev == "eth0"))
            .map(|a| a.addr.addr())
    });
    if plan
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
fn steps(
    plan: &Plan,
    lab: &Lab,
    from: &str,
    req: Option<&LegReport>,
    reply: Option<&LegReport>,
) -> Vec<Step> {
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
        let label = address_label(plan, lab, h.src).unwrap_or_else(|| "address".into());
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
                let what = address_label(plan, lab, h.dst)
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

pub fn ep(ip: Ipv4Addr, port: Option<u16>) -> String {
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

#[cfg(test)]
mod tests;
