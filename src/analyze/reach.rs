//! Static reachability: the path a packet from FROM to TO takes through the Plan, told
//! component by component as Reachability Analyzer tells it (source network interface,
//! security group outbound, route table and the route it matched, NAT gateway, internet
//! gateway, the far side's security group, destination network interface), and when it
//! is blocked, the component that blocks it with AWS's explanation code.
//!
//! The packet is walked by `trace::path` over the same Plan `up` applies; this file only
//! names what the walk met. What the Plan cannot know (an instance stopped, an AZ down)
//! comes in as `Down`.

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

    /// The network ACL rule a rule of the VPC router's `acl-*` chains stands for, read
    /// back from its comment (`network ACL {acl} {dir} rule {n} ({subnet}): {text}`);
    /// `None` for the router's exemption of its own addresses, which names no ACL.
    fn acl_rule<'c>(&self, chain: &str, comment: &'c str) -> Option<AclRuleRef<'a, 'c>> {
        let inbound = match chain {
            "acl-inbound" => true,
            "acl-outbound" => false,
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
mod tests {
    use super::*;
    use crate::topology::testing::{builtin, lab_from};
    use crate::topology::{BUILTIN_YAML, Lab};

    fn edit(old: &str, new: &str) -> Lab {
        assert!(BUILTIN_YAML.contains(old), "{old}");
        lab_from(&BUILTIN_YAML.replacen(old, new, 1))
    }

    fn run_down(lab: &Lab, down: &Down, from: &str, to: &str, port: Option<u16>) -> Analysis {
        let plan = crate::plan::compile(lab);
        let q = Query {
            from: from.into(),
            to: to.into(),
            proto: if port.is_some() {
                Proto::Tcp
            } else {
                Proto::Icmp
            },
            port,
        };
        analyze(lab, &plan, down, &q).unwrap()
    }

    fn run(lab: &Lab, from: &str, to: &str, port: u16) -> Analysis {
        run_down(lab, &Down::new(), from, to, Some(port))
    }

    fn kinds(a: &Analysis) -> Vec<String> {
        a.path
            .iter()
            .map(|c| match c.direction {
                Some(d) => format!("{} {d}", c.component),
                None => c.component.to_string(),
            })
            .collect()
    }

    #[test]
    fn web_reaches_the_internet_through_its_route_table_and_the_internet_gateway() {
        let a = run(&builtin(), "web", "example-web", 80);
        assert!(a.reachable, "{a:#?}");
        assert_eq!(a.code, None);
        assert_eq!(
            kinds(&a),
            [
                "network-interface",
                "security-group outbound",
                "route-table",
                "internet-gateway",
                "internet-host"
            ]
        );
        assert_eq!(
            a.path[1].rule.as_deref(),
            Some("MyWebServer-SecurityGroup outbound: All traffic to 0.0.0.0/0")
        );
        let rt = &a.path[2];
        assert_eq!(rt.name, "public");
        assert!(rt.id.starts_with("rtb-0"), "{rt:?}");
        let route = rt.rule.as_deref().unwrap();
        assert!(
            route.starts_with("0.0.0.0/0 -> igw-0") && route.ends_with("(my-igw)"),
            "{route}"
        );
        assert_eq!(
            a.path[3].detail.as_deref(),
            Some("source 10.0.2.238 -> 198.51.100.10")
        );
        assert_eq!(
            (a.path[4].id.as_str(), a.path[4].detail.as_deref()),
            ("203.0.113.60", None)
        );
    }

    #[test]
    fn a_private_instance_goes_out_through_the_nat_gateway_which_remaps_its_port() {
        let a = run(&builtin(), "app", "example-web", 80);
        assert!(a.reachable, "{a:#?}");
        assert_eq!(
            kinds(&a),
            [
                "network-interface",
                "security-group outbound",
                "route-table",
                "nat-gateway",
                "route-table",
                "internet-gateway",
                "internet-host"
            ]
        );
        assert_eq!(
            (a.path[2].name.as_str(), a.path[4].name.as_str()),
            ("private", "public")
        );
        assert_eq!(
            a.path[3].detail.as_deref(),
            Some("source 10.0.1.101:40000 -> 10.0.0.4:1024-65535 (the port is remapped)")
        );
        assert_eq!(
            a.path[5].detail.as_deref(),
            Some("source 10.0.0.4 -> 198.51.100.11")
        );
        assert!(
            a.notes.iter().any(|n| n.contains("REMAP_EPHEMERAL_PORT")),
            "{:?}",
            a.notes
        );
    }

    #[test]
    fn the_far_sides_security_group_rule_is_named_on_the_way_in() {
        let a = run(&builtin(), "web", "my-database", 3306);
        assert!(a.reachable, "{a:#?}");
        let sg = a.path.iter().rev().nth(1).unwrap();
        assert_eq!(
            (sg.direction, sg.rule.as_deref()),
            (
                Some("inbound"),
                Some(
                    "MyDatabase-SecurityGroup inbound: MYSQL/Aurora 3306 from MyWebServer-SecurityGroup"
                )
            )
        );
        assert_eq!(a.path.last().unwrap().name, "my-database-2c");
    }

    #[test]
    fn a_security_group_without_a_matching_rule_is_eni_sg_rules_mismatch() {
        let a = run(&builtin(), "stranger", "web", 22);
        assert!(!a.reachable);
        assert_eq!(a.code, Some(Code::EniSgRulesMismatch));
        assert_eq!(a.blocked_at.as_deref(), Some("web"));
        let last = a.path.last().unwrap();
        assert_eq!(
            (last.component, last.direction),
            ("security-group", Some("inbound"))
        );
        assert_eq!(
            a.explanation.as_deref(),
            Some(
                "no inbound rule of MyWebServer-SecurityGroup on web allows tcp 22 from 192.0.2.66 to 10.0.2.238"
            )
        );
        let a = run(&builtin(), "app", "my-database", 3306);
        assert_eq!(a.code, Some(Code::EniSgRulesMismatch));
    }

    #[test]
    fn a_security_group_with_no_rules_is_sg_has_no_rules_either_way() {
        let lab = edit(
            "    inbound:\n      - { type: ssh, source: 10.0.0.0/16 }",
            "    inbound: []\n    outbound: []",
        );
        let a = run(&lab, "web", "app", 22);
        assert_eq!(a.code, Some(Code::SgHasNoRules), "{a:#?}");
        assert_eq!(a.blocked_at.as_deref(), Some("app"));
        let a = run(&lab, "app", "web", 80);
        assert_eq!(a.code, Some(Code::SgHasNoRules), "{a:#?}");
        assert_eq!(a.path.last().unwrap().direction, Some("outbound"));
    }

    #[test]
    fn a_route_table_without_a_route_is_no_route_to_destination() {
        let lab = edit("  private:\n    0.0.0.0/0: my-nat\n", "  private: {}\n");
        let a = run(&lab, "app", "example-web", 80);
        assert_eq!(a.code, Some(Code::NoRouteToDestination), "{a:#?}");
        let last = a.path.last().unwrap();
        assert_eq!(
            (last.component, last.name.as_str()),
            ("route-table", "private")
        );
    }

    #[test]
    fn the_internet_gateway_lets_nothing_in_to_a_private_ip_nor_out_without_a_public_one() {
        let a = run(&builtin(), "stranger", "app", 22);
        assert_eq!(
            a.code,
            Some(Code::IgwPrivateIpAssociationForIngress),
            "{a:#?}"
        );
        assert_eq!(a.path.last().unwrap().component, "internet-gateway");
        // A private subnet routed to the internet gateway instead of the NAT gateway.
        let lab = edit(
            "  private:\n    0.0.0.0/0: my-nat\n",
            "  private:\n    0.0.0.0/0: my-igw\n",
        );
        let a = run(&lab, "app", "example-web", 80);
        assert_eq!(
            a.code,
            Some(Code::IgwPublicIpAssociationForEgress),
            "{a:#?}"
        );
        assert_eq!(a.blocked_at.as_deref(), Some("my-igw"));
    }

    #[test]
    fn nothing_from_outside_connects_through_a_nat_gateway() {
        for to in ["my-nat", "my-nat-eip", "198.51.100.11"] {
            let a = run(&builtin(), "stranger", to, 80);
            assert_eq!(a.code, Some(Code::NgwRequiresSourceInVpc), "{to}: {a:#?}");
            assert_eq!(a.blocked_at.as_deref(), Some("my-nat"));
        }
    }

    #[test]
    fn a_stopped_instance_or_a_gateway_in_a_down_zone_is_bad_state() {
        let lab = builtin();
        let plan = crate::plan::compile(&lab);
        let stopped = down_nodes(&plan, &["web".to_string()], &[]);
        let a = run_down(&lab, &stopped, "stranger", "web", Some(80));
        assert_eq!(
            (a.code, a.blocked_at.as_deref()),
            (Some(Code::BadState), Some("web"))
        );
        let a = run_down(&lab, &stopped, "web", "example-web", Some(80));
        assert_eq!(a.code, Some(Code::BadState));
        let zone_a = down_nodes(&plan, &[], &["ap-northeast-2a".to_string()]);
        assert!(zone_a.contains_key("my-nat") && zone_a.contains_key("app"));
        let a = run_down(&lab, &zone_a, "web", "my-nat", Some(80));
        assert_eq!(
            (a.code, a.blocked_at.as_deref()),
            (Some(Code::BadState), Some("my-nat"))
        );
        assert_eq!(a.path.last().unwrap().component, "nat-gateway");
    }

    #[test]
    fn a_group_reference_does_not_match_a_member_arriving_from_a_public_address() {
        // web's HTTP is for the app servers' group only; app reaches web's public IP
        // through the NAT gateway and the internet gateway, so it arrives as the NAT
        // gateway's Elastic IP, which the group reference does not match.
        let lab = edit(
            "      - { type: http, source: 0.0.0.0/0 }",
            "      - { type: http, source: MyApp-SecurityGroup }",
        );
        let a = run(&lab, "app", "web", 80);
        assert!(a.reachable, "the private IP matches: {a:#?}");
        let a = run(&lab, "app", "198.51.100.10", 80);
        assert_eq!(a.code, Some(Code::EniSgRulesMismatch), "{a:#?}");
        assert!(
            a.notes.iter().any(|n| n.contains("arrives from 198.51.100.11")
                && n.contains("private IPs only")),
            "{:?}",
            a.notes
        );
        assert!(
            a.notes.iter().any(|n| n.contains("comes back in")),
            "{:?}",
            a.notes
        );
    }

    /// Two subnets, each with a network ACL; security groups that allow everything, so
    /// whatever stops a packet here is an ACL.
    const ACL_LAB: &str = "name: acls
region: ap-northeast-2
vpc: { name: acl-vpc, cidr: 10.0.0.0/16 }
public_ip_pool: 198.51.100.0/24
subnets:
  public-2a:  { az: ap-northeast-2a, cidr: 10.0.0.0/24, route_table: public }
  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24 }
route_tables:
  public: { 0.0.0.0/0: igw }
internet_gateway: igw
security_groups:
  open:
    inbound:
      - { protocol: all, source: 0.0.0.0/0 }
network_acls:
  web-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 90, type: ssh, source: 10.0.1.128/25, action: deny }
      - { rule: 100, protocol: all, source: 10.0.0.0/16, action: allow }
      - { rule: 200, protocol: tcp, port: 1024-65535, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
  app-acl:
    subnets: [private-2a]
    inbound:
      - { rule: 100, protocol: all, source: 10.0.0.0/16, action: allow }
    outbound:
      - { rule: 100, protocol: tcp, port: 22, destination: 10.0.0.0/24, action: allow }
      - { rule: 110, protocol: tcp, port: 1024-65535, destination: 10.0.0.0/16, action: allow }
instances:
  web:  { subnet: public-2a, private_ip: 10.0.0.10, public_ip: auto, security_groups: [open] }
  app:  { subnet: private-2a, private_ip: 10.0.1.10, security_groups: [open] }
  app2: { subnet: private-2a, private_ip: 10.0.1.200, security_groups: [open] }
internet:
  laptop: { ip: 203.0.113.10 }
";

    #[test]
    fn network_acl_rules_are_components_between_the_security_groups_and_the_route_table() {
        let lab = lab_from(ACL_LAB);
        let a = run(&lab, "app", "web", 22);
        assert!(a.reachable, "{a:#?}");
        assert_eq!(
            kinds(&a),
            [
                "network-interface",
                "security-group outbound",
                "network-acl outbound",
                "route-table",
                "network-acl inbound",
                "security-group inbound",
                "network-interface"
            ]
        );
        let (out, inb) = (&a.path[2], &a.path[4]);
        assert_eq!(
            (out.name.as_str(), out.rule.as_deref()),
            (
                "app-acl",
                Some(
                    "network ACL app-acl outbound rule 100 (private-2a): allow tcp 22 to 10.0.0.0/24"
                )
            )
        );
        assert!(out.id.starts_with("acl-0"), "{out:?}");
        assert_eq!(out.detail.as_deref(), Some("of subnet private-2a"));
        assert_eq!(out.kind(), "network ACL (outbound)");
        assert_eq!(
            (inb.name.as_str(), inb.rule.as_deref()),
            (
                "web-acl",
                Some(
                    "network ACL web-acl inbound rule 100 (public-2a): allow all traffic from 10.0.0.0/16"
                )
            )
        );
        // The reply to app's port 40000 gets out by rule 110.
        let a = run(&lab, "web", "app", 22);
        assert!(a.reachable, "{a:#?}");
    }

    #[test]
    fn a_network_acl_that_denies_the_request_is_subnet_acl_restriction() {
        let lab = lab_from(ACL_LAB);
        // Rule 90 denies ssh from the upper half of private-2a before rule 100 allows it.
        let a = run(&lab, "app2", "web", 22);
        assert_eq!(
            (a.code, a.blocked_at.as_deref()),
            (Some(Code::SubnetAclRestriction), Some("vpc-router")),
            "{a:#?}"
        );
        let last = a.path.last().unwrap();
        assert_eq!(
            (last.component, last.direction, last.name.as_str()),
            ("network-acl", Some("inbound"), "web-acl")
        );
        assert_eq!(
            a.explanation.as_deref(),
            Some(
                "network ACL web-acl denies tcp 22 from 10.0.1.200 to 10.0.0.10 entering subnet \
                 public-2a (inbound rule 90: deny tcp 22 from 10.0.1.128/25)"
            )
        );
        // No outbound rule of app-acl allows port 80: the final rule denies it.
        let a = run(&lab, "app", "web", 80);
        assert_eq!(a.code, Some(Code::SubnetAclRestriction), "{a:#?}");
        assert_eq!(
            a.explanation.as_deref(),
            Some(
                "network ACL app-acl denies tcp 80 from 10.0.1.10 to 10.0.0.10 leaving subnet \
                 private-2a (outbound rule *: deny all traffic)"
            )
        );
        assert_eq!(
            kinds(&a),
            [
                "network-interface",
                "security-group outbound",
                "network-acl outbound"
            ]
        );
        // From the internet, web-acl lets in only the ephemeral ports.
        let a = run(&lab, "laptop", "web", 80);
        assert_eq!(a.code, Some(Code::SubnetAclRestriction), "{a:#?}");
        assert!(a.notes.is_empty(), "the request is blocked: {:?}", a.notes);
    }

    #[test]
    fn a_reply_a_stateless_acl_blocks_makes_the_path_unreachable() {
        let text = include_str!("../../labs/nacl.yaml");
        let a = run(&lab_from(text), "my-laptop", "web", 80);
        assert!(!a.reachable);
        assert_eq!(a.code, Some(Code::SubnetAclRestriction));
        assert_eq!(
            kinds(&a),
            [
                "internet-host",
                "internet-gateway",
                "network-acl inbound",
                "security-group inbound",
                "network-interface",
                "network-acl outbound"
            ]
        );
        assert_eq!(
            a.path[2].rule.as_deref(),
            Some(
                "network ACL public-acl inbound rule 100 (public-2a): allow tcp 80 from 0.0.0.0/0"
            )
        );
        assert_eq!(
            a.explanation.as_deref(),
            Some(
                "the reply is blocked: network ACL public-acl denies tcp 40000 from 10.0.0.10 to \
                 203.0.113.10 leaving subnet public-2a (outbound rule *: deny all traffic)"
            )
        );
        assert!(
            a.notes.iter().any(|n| n.contains("stateless")),
            "{:?}",
            a.notes
        );
        // Inside the subnet the bridge switches it: no ACL on the path at all.
        let a = run(&lab_from(text), "bastion", "web", 22);
        assert!(a.reachable, "{a:#?}");
        assert!(!kinds(&a).iter().any(|k| k.starts_with("network-acl")));
    }

    #[test]
    fn the_routers_exemption_for_its_own_addresses_is_not_a_component() {
        let lab = lab_from(ACL_LAB);
        let plan = crate::plan::compile(&lab);
        let router = plan
            .namespaces
            .iter()
            .find(|n| n.role == Role::VpcRouter)
            .unwrap();
        let chain = router
            .firewall
            .iter()
            .flat_map(|t| &t.chains)
            .find(|c| c.name == "acl-outbound")
            .unwrap();
        let names = Names {
            lab: &lab,
            plan: &plan,
        };
        let accept = |rule: &str| Decision::Accept {
            node: router.node.clone(),
            chain: chain.name.clone(),
            rule: rule.to_string(),
        };
        let exemption = &chain.rules[0].comment;
        assert!(exemption.starts_with("VPC router"), "{exemption}");
        assert_eq!(names.component("app", &accept(exemption)), None);
        let first_acl_rule = &chain.rules[1].comment;
        assert_eq!(
            names
                .component("app", &accept(first_acl_rule))
                .map(|c| c.component),
            Some("network-acl")
        );
    }

    #[test]
    fn icmp_needs_no_port_and_tcp_needs_one() {
        let a = run_down(&builtin(), &Down::new(), "web", "example-web", None);
        assert!(a.reachable, "{a:#?}");
        let lab = builtin();
        let plan = crate::plan::compile(&lab);
        let q = Query {
            from: "web".into(),
            to: "app".into(),
            proto: Proto::Tcp,
            port: None,
        };
        assert!(analyze(&lab, &plan, &Down::new(), &q).is_err());
        let q = Query {
            to: "web".into(),
            port: Some(22),
            ..q
        };
        assert!(
            analyze(&lab, &plan, &Down::new(), &q).is_err(),
            "its own address"
        );
    }
}
