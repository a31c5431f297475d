//! Static reachability: the path a packet from FROM to TO takes through the Plan, told
//! component by component as Reachability Analyzer tells it (source network interface,
//! security group outbound, route table and the route it matched, NAT gateway, internet
//! gateway, the far side's security group, destination network interface), and when it
//! is blocked, the component that blocks it with AWS's explanation code.
//!
//! The packet is walked by `trace::path` over the same Plan `up` applies; this file only
//! names what the walk met. What the Plan cannot know (an instance stopped, an AZ down)
//! comes in as `Down`.

use crate::plan::firewall::is_acl_chain;
use crate::plan::network::IGW_VPC_IF;
use crate::plan::{MAIN_TABLE, Plan, Role, aws_id, route_table_id};
use crate::topology::{Lab, NetworkAcl, NodeRef, Peer, Protocol, SgRule};
use crate::trace::dns::Lookup;
use crate::trace::packet::Tuple;
use crate::trace::path::{self, Decision, End, SimHop, SimPath};
use crate::trace::resolve;
use crate::trace::send::Proto;
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Reachability Analyzer's explanation codes that a vpclab lab can produce.
///
/// `IGW_DESTINATION_ADDRESS_IN_VPC_CIDRS` cannot happen: validation rejects a route whose
/// destination overlaps the VPC CIDR, so the internet gateway never gets a packet for a
/// VPC address from inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    EniSgRulesMismatch,
    SgHasNoRules,
    SubnetAclRestriction,
    NoRouteToDestination,
    IgwPrivateIpAssociationForIngress,
    IgwPublicIpAssociationForEgress,
    NgwRequiresSourceInVpc,
    BadState,
    CannotRoute,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::EniSgRulesMismatch => "ENI_SG_RULES_MISMATCH",
            Code::SgHasNoRules => "SG_HAS_NO_RULES",
            Code::SubnetAclRestriction => "SUBNET_ACL_RESTRICTION",
            Code::NoRouteToDestination => "NO_ROUTE_TO_DESTINATION",
            Code::IgwPrivateIpAssociationForIngress => "IGW_PRIVATE_IP_ASSOCIATION_FOR_INGRESS",
            Code::IgwPublicIpAssociationForEgress => "IGW_PUBLIC_IP_ASSOCIATION_FOR_EGRESS",
            Code::NgwRequiresSourceInVpc => "NGW_REQUIRES_SOURCE_IN_VPC",
            Code::BadState => "BAD_STATE",
            Code::CannotRoute => "CANNOT_ROUTE",
        }
    }
}

/// What to analyse.
#[derive(Debug, Clone)]
pub struct Query {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: Option<u16>,
}

/// Nodes whose link is down, with why: stopped instances, the nodes of an AZ that is down.
pub type Down = BTreeMap<String, String>;

/// The nodes a running lab has taken down (`vpclab stop`, `vpclab drill az`).
pub fn down_nodes<'a>(
    plan: &Plan,
    stopped: impl IntoIterator<Item = &'a String>,
    azs_down: impl IntoIterator<Item = &'a String>,
) -> Down {
    let mut down: Down = stopped
        .into_iter()
        .map(|n| (n.clone(), format!("instance {n} is stopped")))
        .collect();
    for az in azs_down {
        for ns in plan.namespaces.iter().filter(|n| n.az.as_ref() == Some(az)) {
            down.entry(ns.node.clone())
                .or_insert_with(|| format!("{az} is down, and {} with it", ns.node));
        }
    }
    down
}

/// One component of the path, as Reachability Analyzer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// `network-interface`, `security-group`, `network-acl`, `route-table`,
    /// `nat-gateway`, `internet-gateway`, `internet-host`, `vpc-router`, `internet`.
    pub component: &'static str,
    /// The AWS-style id (`eni-0…`, `sg-0…`, `rtb-0…`), or the address of an internet host.
    pub id: String,
    /// The name the lab file gives it.
    pub name: String,
    /// `inbound` or `outbound`, for a security group or a network ACL.
    pub direction: Option<&'static str>,
    /// The rule or route that let the packet through (or, when blocked, why not).
    pub rule: Option<String>,
    /// Addresses at this component: a translation, the address of an interface.
    pub detail: Option<String>,
}

impl Component {
    /// The kind as the console writes it: "security group (outbound)", "network ACL
    /// (inbound)", "route table".
    pub fn kind(&self) -> String {
        let kind = match self.component {
            "network-acl" => "network ACL".to_string(),
            c => c.replace('-', " "),
        };
        match self.direction {
            Some(d) => format!("{kind} ({d})"),
            None => kind,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub from: String,
    pub to: String,
    /// The address the packet is sent to, as FROM sees TO.
    pub destination: Ipv4Addr,
    pub proto: Proto,
    pub port: Option<u16>,
    pub reachable: bool,
    pub code: Option<Code>,
    /// Why it is blocked, in a sentence.
    pub explanation: Option<String>,
    /// The node where the packet stops, when it does.
    pub blocked_at: Option<String>,
    /// The request's path; when blocked, the last component is the one that blocks it.
    pub path: Vec<Component>,
    /// The traps AWS documents that this path runs into.
    pub notes: Vec<String>,
}

/// FROM as the node that sends: a host, a database (its current primary), the instance
/// holding an Elastic IP, or the node holding an address.
pub fn source_node(lab: &Lab, plan: &Plan, spec: &str) -> Result<String> {
    if let Ok(ip) = spec.parse::<Ipv4Addr>() {
        return match resolve::owner(plan, ip) {
            Some(node) => Ok(node),
            None => bail!("no node of lab `{}` holds {ip}", lab.name),
        };
    }
    match lab.find(spec) {
        Some(NodeRef::Database(d)) => Ok(d.primary.name.clone()),
        Some(NodeRef::ElasticIp(e)) => match resolve::owner(plan, e.address) {
            Some(node) => Ok(node),
            None => bail!("Elastic IP {spec} ({}) is not associated", e.address),
        },
        _ => Ok(spec.to_string()),
    }
}

/// TO as `trace` takes it: a database becomes its current primary (the endpoint's
/// address), an Elastic IP name its address; anything else is passed on.
pub fn target_spec(lab: &Lab, spec: &str) -> String {
    match lab.find(spec) {
        Some(NodeRef::Database(d)) => d.primary.name.clone(),
        Some(NodeRef::ElasticIp(e)) => e.address.to_string(),
        _ => spec.to_string(),
    }
}

/// The source port the analysis sends from: an ordinary Linux ephemeral port.
const SOURCE_PORT: u16 = 40000;

/// Analyses one query on a lab and its plan.
pub fn analyze(lab: &Lab, plan: &Plan, down: &Down, q: &Query) -> Result<Analysis> {
    let from = source_node(lab, plan, &q.from)?;
    let to = target_spec(lab, &q.to);
    let target = resolve::resolve(plan, &from, &to, &|_, _| Lookup::NoServer)?;
    if target.node.as_deref() == Some(from.as_str()) {
        bail!(
            "{} is {from}'s own address: the packet would never leave it",
            target.ip
        );
    }
    let port = match (q.proto, q.port) {
        (Proto::Icmp, _) => None,
        (_, Some(p)) => Some(p),
        (p, None) => bail!("a {} analysis needs a port: add --port P", p.as_str()),
    };
    let src = plan
        .host(&from)
        .map(|h| h.private_ip)
        .expect("resolve checked FROM is a host");
    let tuple = Tuple {
        proto: q.proto.number(),
        src,
        sport: SOURCE_PORT,
        dst: target.ip,
        dport: port.unwrap_or(0),
    };
    let names = Names { lab, plan };
    let mut a = Analysis {
        from: from.clone(),
        to: q.to.clone(),
        destination: target.ip,
        proto: q.proto,
        port,
        reachable: false,
        code: None,
        explanation: None,
        blocked_at: None,
        path: vec![names.interface(&from, src)],
        notes: vec![],
    };
    if let Some(why) = down.get(&from) {
        a.block(&from, Code::BadState, why.clone(), None);
        return Ok(a);
    }
    let (req, reply) = path::round_trip(plan, &from, tuple);
    let cut = first_down(&req, down);
    for d in &req.decisions {
        if cut.is_some_and(|(node, _)| decision_node(d) == node) {
            break;
        }
        a.path.extend(names.component(&from, d));
    }
    a.notes = names.notes(&from, &req, q.proto);
    if let Some((node, why)) = cut {
        let mut c = names.node(node);
        c.rule = Some(why.clone());
        a.path.push(c);
        a.block(node, Code::BadState, why.clone(), None);
        return Ok(a);
    }
    let (reply, end) = match (&req.end, &reply) {
        (End::Delivered { node }, Some(reply)) => {
            let dst_ip = req.hops.last().map_or(target.ip, |h| h.tuple.dst);
            a.path.push(names.interface(node, dst_ip));
            (reply, &reply.end)
        }
        (end, _) => {
            let blocked = names.blocked(&from, &req, end);
            a.notes.extend(blocked.note.clone());
            a.path.push(blocked.component);
            a.block(&blocked.node, blocked.code, blocked.explanation, None);
            return Ok(a);
        }
    };
    // The reply's way back: stateful security groups and NAT let it through unless a
    // device on the way is down or routes it elsewhere.
    if let Some((node, why)) = first_down(reply, down) {
        a.block(
            node,
            Code::BadState,
            format!("on the way back: {why}"),
            None,
        );
    } else if !matches!(end, End::Delivered { node } if *node == from) {
        let blocked = names.blocked(&from, reply, end);
        if blocked.code == Code::SubnetAclRestriction {
            a.notes.push(
                "network ACLs are stateless: the reply is checked like any other packet, so \
                 it needs a rule of its own (to the client's ephemeral port, which can be \
                 anywhere in 1024-65535)"
                    .to_string(),
            );
        }
        a.path.push(blocked.component);
        a.block(
            &blocked.node,
            blocked.code,
            format!("the reply is blocked: {}", blocked.explanation),
            blocked.note,
        );
    } else {
        a.reachable = true;
    }
    Ok(a)
}

impl Analysis {
    fn block(&mut self, node: &str, code: Code, why: String, note: Option<String>) {
        self.reachable = false;
        self.code = Some(code);
        self.explanation = Some(why);
        self.blocked_at = Some(node.to_string());
        self.notes.extend(note);
    }
}

fn decision_node(d: &Decision) -> &str {
    match d {
        Decision::Route { node, .. }
        | Decision::Accept { node, .. }
        | Decision::Translate { node, .. } => node,
    }
}

/// The first node on the path whose link is down.
fn first_down<'d>(p: &SimPath, down: &'d Down) -> Option<(&'d String, &'d String)> {
    p.hops.iter().find_map(|h| down.get_key_value(&h.node))
}

/// Where a blocked packet stops, and why.
struct Blocked {
    node: String,
    code: Code,
    component: Component,
    explanation: String,
    note: Option<String>,
}

/// One rule of a network ACL, as a rule comment of the VPC router names it.
struct AclRuleRef<'a, 'c> {
    acl: &'a NetworkAcl,
    inbound: bool,
    /// The rule number, or `*` for the final rule that denies.
    number: &'c str,
    subnet: &'a str,
    /// What the rule does: `allow tcp 80 from 0.0.0.0/0`, `deny all traffic`.
    text: &'c str,
    comment: &'c str,
}

/// Names the Plan's parts as AWS does.
struct Names<'a> {
    lab: &'a Lab,
    plan: &'a Plan,
}

impl<'a> Names<'a> {
    fn role(&self, node: &str) -> Option<Role> {
        self.plan.netns(node).map(|n| n.role)
    }

    fn id(&self, prefix: &str, name: &str) -> String {
        aws_id(prefix, &self.lab.name, name)
    }

    /// The security groups of an instance or database server.
    fn groups(&self, node: &str) -> Vec<usize> {
        if let Some(i) = self.lab.instance(node) {
            return i.security_groups.clone();
        }
        self.lab
            .databases
            .iter()
            .find(|d| d.nodes().any(|n| n.name == node))
            .map(|d| d.security_groups.clone())
            .unwrap_or_default()
    }

    fn group_component(&self, node: &str, outbound: bool, rule: String) -> Component {
        let groups = self.groups(node);
        let names: Vec<&str> = groups
            .iter()
            .map(|g| self.lab.security_groups[*g].name.as_str())
            .collect();
        let ids: Vec<String> = names.iter().map(|n| self.id("sg", n)).collect();
        Component {
            component: "security-group",
            id: ids.join(", "),
            name: names.join(", "),
            direction: Some(if outbound { "outbound" } else { "inbound" }),
            rule: Some(rule),
            detail: Some(format!("of {node}")),
        }
    }

    /// A node by its role: an interface of a host, a gateway, the router, the internet.
    fn node(&self, node: &str) -> Component {
        let (component, id) = match self.role(node) {
            Some(Role::Instance | Role::Database) => ("network-interface", self.id("eni", node)),
            Some(Role::NatGateway) => ("nat-gateway", self.id("nat", node)),
            Some(Role::InternetGateway) => ("internet-gateway", self.id("igw", node)),
            Some(Role::VpcRouter) => ("vpc-router", self.id("vpc", &self.lab.vpc.name)),
            Some(Role::InternetHost) => (
                "internet-host",
                self.plan
                    .host(node)
                    .map_or(String::new(), |h| h.private_ip.to_string()),
            ),
            Some(Role::InternetRouter) | None => ("internet", String::new()),
        };
        Component {
            component,
            id,
            name: node.to_string(),
            direction: None,
            rule: None,
            detail: None,
        }
    }

    /// A host's network interface with the address the packet uses there.
    fn interface(&self, node: &str, ip: Ipv4Addr) -> Component {
        let mut c = self.node(node);
        let subnet = self
            .lab
            .instance(node)
            .map(|i| i.subnet)
            .or_else(|| {
                self.lab
                    .databases
                    .iter()
                    .flat_map(|d| d.nodes())
                    .find(|n| n.name == node)
                    .map(|n| n.subnet)
            })
            .map(|s| &self.lab.subnets[s]);
        c.detail = match subnet {
            Some(s) => Some(format!("{ip} in subnet {} ({})", s.name, s.az)),
            None if c.id == ip.to_string() => None,
            None => Some(ip.to_string()),
        };
        c
    }

    /// The console's route table for a kernel table of the VPC router.
    fn route_table(&self, table: u32) -> Option<&crate::plan::ConsoleRouteTable> {
        self.plan.route_tables.iter().find(|t| t.table == table)
    }

    fn route_table_component(&self, table: u32, rule: String) -> Component {
        let (id, name) = match self.route_table(table) {
            Some(t) => (t.id.clone(), t.name.clone()),
            None => (String::new(), format!("table {table}")),
        };
        Component {
            component: "route-table",
            id,
            name,
            direction: None,
            rule: Some(rule),
            detail: None,
        }
    }

    /// The console route a kernel route stands for: the same destination, or the
    /// `local` route the subnet routes make up.
    fn console_route(&self, table: u32, dst: ipnet::Ipv4Net) -> String {
        let Some(t) = self.route_table(table) else {
            return dst.to_string();
        };
        let exact = t.routes.iter().find(|(d, _)| *d == dst);
        let local = t
            .routes
            .iter()
            .find(|(d, target)| target == "local" && d.contains(&dst));
        match exact.or(local) {
            Some((d, target)) => format!("{d} -> {target}"),
            None => dst.to_string(),
        }
    }

    /// The component a decision stands for, when AWS would list one.
    fn component(&self, from: &str, d: &Decision) -> Option<Component> {
        match d {
            Decision::Accept { node, chain, rule }
                if matches!(self.role(node), Some(Role::Instance | Role::Database)) =>
            {
                let outbound = chain == "output";
                // A host's own output chain is its outbound rules; a reply leaving the
                // destination is not part of the request's path.
                (outbound == (node == from))
                    .then(|| self.group_component(node, outbound, rule.clone()))
            }
            // The router's exemption for its own addresses names no ACL: not a component.
            Decision::Accept { node, chain, rule } if self.role(node) == Some(Role::VpcRouter) => {
                self.acl_rule(chain, rule).map(|r| self.acl_component(&r))
            }
            Decision::Route {
                node, table, dst, ..
            } if self.role(node) == Some(Role::VpcRouter) && *table != MAIN_TABLE => {
                Some(self.route_table_component(*table, self.console_route(*table, *dst)))
            }
            Decision::Translate {
                node,
                rule,
                before,
                after,
            } => {
                let mut c = self.node(node);
                c.rule = Some(rule.clone());
                c.detail = Some(match self.role(node) {
                    Some(Role::NatGateway) if before.proto != crate::trace::packet::ICMP => {
                        format!(
                            "source {}:{} -> {}:1024-65535 (the port is remapped)",
                            before.src, before.sport, after.src
                        )
                    }
                    _ => translation(before, after),
                });
                Some(c)
            }
            _ => None,
        }
    }

    /// The traps a delivered or blocked path runs into.
    fn notes(&self, from: &str, p: &SimPath, proto: Proto) -> Vec<String> {
        let mut notes = Vec::new();
        for d in &p.decisions {
            if let Decision::Translate { node, .. } = d
                && self.role(node) == Some(Role::NatGateway)
                && proto != Proto::Icmp
            {
                notes.push(format!(
                    "NAT gateway {node} remaps the source port into 1024-65535 \
                     (REMAP_EPHEMERAL_PORT): the reply returns to one of those ports, so a \
                     network ACL on its subnet must allow 1024-65535 inbound"
                ));
            }
        }
        let hairpin = p
            .hops
            .iter()
            .filter(|h| self.role(&h.node) == Some(Role::InternetGateway))
            .count()
            == 2
            && p.hops
                .iter()
                .all(|h| self.role(&h.node) != Some(Role::InternetRouter));
        if hairpin && !matches!(self.role(from), Some(Role::InternetHost)) {
            notes.push(
                "the packet leaves the VPC through the internet gateway and comes back in \
                 (a public IP of the VPC's own): the destination sees a public source address"
                    .to_string(),
            );
        }
        notes
    }

    /// The component that stops the packet, the explanation code and the sentence.
    fn blocked(&self, from: &str, p: &SimPath, end: &End) -> Blocked {
        let last: Option<&SimHop> = p.hops.last();
        let arriving = last.map(|h| h.tuple);
        let vpc = self.lab.vpc.cidr;
        let b = |node: &str, code: Code, component: Component, explanation: String| Blocked {
            node: node.to_string(),
            code,
            component,
            explanation,
            note: None,
        };
        if let End::Dropped {
            node,
            chain,
            comment: Some(comment),
        } = end
            && self.role(node) == Some(Role::VpcRouter)
            && let Some(r) = self.acl_rule(chain, comment)
        {
            let t = arriving.expect("a packet reached the VPC router");
            let (dir, way) = if r.inbound {
                ("inbound", "entering")
            } else {
                ("outbound", "leaving")
            };
            let explanation = format!(
                "network ACL {} denies {} {way} subnet {} ({dir} rule {}: {})",
                r.acl.name,
                flow(&t),
                r.subnet,
                r.number,
                r.text
            );
            return b(
                node,
                Code::SubnetAclRestriction,
                self.acl_component(&r),
                explanation,
            );
        }
        match end {
            End::Dropped {
                node,
                chain,
                comment,
            } => match self.role(node) {
                Some(Role::Instance | Role::Database) => {
                    let outbound = chain == "output";
                    let groups = self.groups(node);
                    let rules: usize = groups
                        .iter()
                        .map(|g| {
                            let sg = &self.lab.security_groups[*g];
                            if outbound {
                                sg.outbound.len()
                            } else {
                                sg.inbound.len()
                            }
                        })
                        .sum();
                    let component = self.group_component(
                        node,
                        outbound,
                        comment
                            .clone()
                            .unwrap_or_else(|| format!("{chain} policy drop")),
                    );
                    let names = component.name.clone();
                    let t = arriving.unwrap_or(p.hops.first().map_or(
                        Tuple {
                            proto: 0,
                            src: Ipv4Addr::UNSPECIFIED,
                            sport: 0,
                            dst: Ipv4Addr::UNSPECIFIED,
                            dport: 0,
                        },
                        |h| h.tuple,
                    ));
                    let what = flow(&t);
                    let (code, explanation) = if rules == 0 {
                        let dir = if outbound { "outbound" } else { "inbound" };
                        (
                            Code::SgHasNoRules,
                            format!("security group {names} of {node} has no {dir} rules"),
                        )
                    } else if outbound {
                        (
                            Code::EniSgRulesMismatch,
                            format!("no outbound rule of {names} allows {what}"),
                        )
                    } else {
                        (
                            Code::EniSgRulesMismatch,
                            format!("no inbound rule of {names} on {node} allows {what}"),
                        )
                    };
                    let mut blocked = b(node, code, component, explanation);
                    if !outbound {
                        blocked.note = self.group_reference_trap(from, node, &t);
                    }
                    blocked
                }
                Some(Role::InternetGateway) => {
                    let mut c = self.node(node);
                    c.rule = comment.clone();
                    let t = arriving.expect("a packet reached the gateway");
                    if last.is_some_and(|h| h.iface == IGW_VPC_IF) {
                        b(
                            node,
                            Code::IgwPublicIpAssociationForEgress,
                            c,
                            format!(
                                "{} has no public IP or Elastic IP: the internet gateway only \
                                 carries traffic of addresses it has a public IP for (a private \
                                 subnet reaches the internet through a NAT gateway)",
                                t.src
                            ),
                        )
                    } else {
                        b(
                            node,
                            Code::NoRouteToDestination,
                            c,
                            format!("no instance or NAT gateway has the public IP {}", t.dst),
                        )
                    }
                }
                Some(Role::NatGateway) => {
                    let mut c = self.node(node);
                    c.rule = Some(comment.clone().unwrap_or_else(|| {
                        format!("{chain}: only connections started inside the VPC")
                    }));
                    let t = arriving.expect("a packet reached the gateway");
                    if vpc.contains(&t.src) {
                        b(
                            node,
                            Code::CannotRoute,
                            c,
                            format!(
                                "NAT gateway {node} accepts no connections of its own: it only \
                                 translates traffic passing through it to the internet"
                            ),
                        )
                    } else {
                        b(
                            node,
                            Code::NgwRequiresSourceInVpc,
                            c,
                            format!(
                                "the source {} is outside the VPC: a NAT gateway only carries \
                                 connections started inside its VPC, nothing can connect in \
                                 through it",
                                t.src
                            ),
                        )
                    }
                }
                _ => {
                    let mut c = self.node(node);
                    c.rule = comment.clone();
                    b(
                        node,
                        Code::CannotRoute,
                        c,
                        format!("{node} drops it ({chain})"),
                    )
                }
            },
            End::NoRoute { node, dst } => match self.role(node) {
                Some(Role::VpcRouter) => {
                    let table = last.and_then(|h| self.table_of_port(&h.iface));
                    let (c, who) = match table {
                        Some(t) => {
                            let c =
                                self.route_table_component(t, format!("no route matches {dst}"));
                            let who = format!("route table {} ({})", c.name, c.id);
                            (c, who)
                        }
                        None => (self.node(node), "the VPC router".to_string()),
                    };
                    b(
                        node,
                        Code::NoRouteToDestination,
                        c,
                        format!("{who} has no route to {dst}"),
                    )
                }
                Some(Role::InternetRouter) if vpc.contains(dst) => {
                    // The internet gateway is the component AWS names, though the
                    // packet stops one hop earlier: nothing routes a private address to it.
                    let c = match &self.lab.internet_gateway {
                        Some(igw) => self.node(igw),
                        None => self.node(node),
                    };
                    b(
                        &c.name.clone(),
                        Code::IgwPrivateIpAssociationForIngress,
                        c,
                        format!(
                            "{dst} is a private address of the VPC: the internet gateway only \
                             lets the internet in to public IPs (give the instance a public IP \
                             or an Elastic IP, in a public subnet)"
                        ),
                    )
                }
                _ => b(
                    node,
                    Code::NoRouteToDestination,
                    self.node(node),
                    format!("{node} has no route to {dst}"),
                ),
            },
            End::NoNeighbour { node, addr } => b(
                node,
                Code::NoRouteToDestination,
                self.node(node),
                format!("no network interface holds {addr}"),
            ),
            End::NotForwarded { node } => b(
                node,
                Code::CannotRoute,
                self.node(node),
                format!("{node} does not forward packets for other addresses"),
            ),
            End::TooManyHops => b(
                from,
                Code::CannotRoute,
                self.node(from),
                "the packet loops between routes".into(),
            ),
            End::Delivered { node } => b(
                node,
                Code::CannotRoute,
                self.node(node),
                format!("delivered to {node} instead"),
            ),
        }
    }

    /// The network ACL rule a rule of the VPC router's ACL chains stands for, read
    /// back from its comment (`network ACL {acl} {dir} rule {n} ({subnet}): {text}`);
    /// `None` for the router's exemption of its own addresses, which names no ACL.
    fn acl_rule<'c>(&self, chain: &str, comment: &'c str) -> Option<AclRuleRef<'a, 'c>> {
        let inbound = match chain {
            c if is_acl_chain(c, true) => true,
            c if is_acl_chain(c, false) => false,
            _ => return None,
        };
        let dir = if inbound { "inbound" } else { "outbound" };
        let rest = comment.strip_prefix("network ACL ")?;
        self.lab.network_acls.iter().find_map(|acl| {
            let rest = rest.strip_prefix(&format!("{} {dir} rule ", acl.name))?;
            let (number, rest) = rest.split_once(" (")?;
            acl.subnets.iter().find_map(|s| {
                let subnet = self.lab.subnets[*s].name.as_str();
                let text = rest.strip_prefix(&format!("{subnet}): "))?;
                Some(AclRuleRef {
                    acl,
                    inbound,
                    number,
                    subnet,
                    text,
                    comment,
                })
            })
        })
    }

    fn acl_component(&self, r: &AclRuleRef) -> Component {
        Component {
            component: "network-acl",
            id: self.id("acl", &r.acl.name),
            name: r.acl.name.clone(),
            direction: Some(if r.inbound { "inbound" } else { "outbound" }),
            rule: Some(r.comment.to_string()),
            detail: Some(format!("of subnet {}", r.subnet)),
        }
    }

    /// The kernel table the VPC router picks for packets entering on a subnet port.
    fn table_of_port(&self, port: &str) -> Option<u32> {
        let router = self
            .plan
            .namespaces
            .iter()
            .find(|n| n.role == Role::VpcRouter)?;
        let bridge = self
            .plan
            .veths
            .iter()
            .flat_map(|v| [&v.a, &v.b])
            .find(|e| e.ns == router.name && e.name == port)?
            .master
            .clone()?;
        router
            .rules
            .iter()
            .find(|r| r.iif == bridge)
            .map(|r| r.table)
            .filter(|t| (0..self.lab.route_tables.len()).any(|i| route_table_id(i) == *t))
    }

    /// AWS's trap: a rule naming another security group matches that group's members by
    /// their private IPs only, so the member's traffic arriving from a public address (a
    /// NAT gateway's Elastic IP, its own public IP) does not match it.
    fn group_reference_trap(&self, from: &str, node: &str, arriving: &Tuple) -> Option<String> {
        let from_ip = self.plan.host(from)?.private_ip;
        if arriving.src == from_ip {
            return None;
        }
        self.groups(node).iter().find_map(|g| {
            let sg = &self.lab.security_groups[*g];
            sg.inbound.iter().find_map(|r| match r.peer {
                Peer::Group(peer)
                    if covers(r, arriving) && self.lab.members_of(peer).contains(&from_ip) =>
                {
                    Some(format!(
                        "{} allows {} from security group {}, and {from} is a member, but the \
                         packet arrives from {} instead of {from}'s private IP {from_ip}: a rule \
                         that names a security group matches its members' private IPs only, not \
                         traffic through a NAT gateway or a public IP",
                        sg.name, r.label, self.lab.security_groups[peer].name, arriving.src
                    ))
                }
                _ => None,
            })
        })
    }
}

/// Whether a security group rule covers a packet's protocol and destination port.
fn covers(r: &SgRule, t: &Tuple) -> bool {
    use crate::trace::packet::{ICMP, TCP, UDP};
    let proto = match r.protocol {
        Protocol::All => return true,
        Protocol::Tcp => TCP,
        Protocol::Udp => UDP,
        Protocol::Icmp => ICMP,
    };
    proto == t.proto
        && (proto == ICMP || r.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&t.dport)))
}

/// "tcp 3306 from 10.0.1.101 to 10.0.3.87", "icmp from … to …".
fn flow(t: &Tuple) -> String {
    use crate::trace::packet::{ICMP, TCP, UDP};
    let mut s = match t.proto {
        TCP => format!("tcp {}", t.dport),
        UDP => format!("udp {}", t.dport),
        ICMP => "icmp".to_string(),
        p => format!("protocol {p}"),
    };
    let _ = write!(s, " from {} to {}", t.src, t.dst);
    s
}

/// What a translation changed: "source 10.0.2.238 -> 198.51.100.10".
fn translation(before: &Tuple, after: &Tuple) -> String {
    let mut parts = Vec::new();
    if before.src != after.src {
        parts.push(format!("source {} -> {}", before.src, after.src));
    }
    if before.dst != after.dst {
        parts.push(format!("destination {} -> {}", before.dst, after.dst));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests;
