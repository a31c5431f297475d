//! Architecture diagrams (SVG, Graphviz dot, Mermaid) drawn from a checked lab.
//!
//! The picture is the write-up's: the AWS cloud and region, the VPC with one column per
//! availability zone, public and private subnets, the internet gateway on the VPC's edge
//! with the internet above it, the NAT gateway with its Elastic IP, instances, the RDS
//! primary and standby, and a summary of the route tables.
//!
//! All three formats draw the same [`Facts`] (who routes through whom, which security
//! group admits whom). The SVG is laid out here (`layout`, pure geometry that tests can
//! check) and written by hand (`svg`); dot and Mermaid leave the layout to their renderers
//! and write the same box and panel texts (`text`), each in its own syntax.
//! Output is deterministic: the same lab gives byte-identical text.

mod dot;
mod layout;
mod mermaid;
mod metrics;
mod svg;
mod text;

use crate::topology::{DbNode, Lab, NatGateway, Peer, Protocol, Route, RouteTarget};
use std::collections::BTreeSet;

/// The diagram formats `vpclab diagram` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Dot,
    Mermaid,
}

/// Draws the lab in `format`.
pub fn render(lab: &Lab, format: Format) -> String {
    match format {
        Format::Svg => svg::render(&layout::layout(lab)),
        Format::Dot => dot::render(lab),
        Format::Mermaid => mermaid::render(lab),
    }
}

/// The connections every format draws, derived once from the lab.
pub(crate) struct Facts {
    /// (subnet, NAT gateway): the subnet's route table sends traffic to the NAT gateway.
    pub nat_routes: Vec<(usize, usize)>,
    /// NAT gateways in a public subnet of a VPC with an internet gateway: they reach the
    /// internet through it, as their Elastic IP.
    pub nat_egress: Vec<usize>,
    /// Drawn instances a database's security group admits by group, on its port.
    pub sg_allows: Vec<SgAllow>,
    /// Databases with a Multi-AZ standby.
    pub replicas: Vec<usize>,
}

/// An instance that a database's security group admits because of the instance's group.
pub(crate) struct SgAllow {
    pub instance: usize,
    pub database: usize,
    pub protocol: Protocol,
    pub port: u16,
}

impl SgAllow {
    /// "tcp 3306".
    pub fn short(&self) -> String {
        format!("{} {}", self.protocol.as_str(), self.port)
    }
}

impl Facts {
    pub fn of(lab: &Lab) -> Facts {
        let mut nat_routes = Vec::new();
        for (s, subnet) in lab.subnets.iter().enumerate() {
            let table = &lab.route_tables[subnet.route_table];
            for r in &table.routes {
                if let RouteTarget::NatGateway(n) = r.target
                    && !nat_routes.contains(&(s, n))
                {
                    nat_routes.push((s, n));
                }
            }
        }
        let nat_egress = lab
            .nat_gateways
            .iter()
            .enumerate()
            .filter(|(_, n)| lab.internet_gateway.is_some() && lab.subnets[n.subnet].public)
            .map(|(k, _)| k)
            .collect();
        let mut sg_allows = Vec::new();
        for (d, db) in lab.databases.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for &g in &db.security_groups {
                for rule in &lab.security_groups[g].inbound {
                    let Peer::Group(peer) = rule.peer else {
                        continue;
                    };
                    let proto_ok = matches!(rule.protocol, Protocol::Tcp | Protocol::All);
                    let port_ok = rule
                        .ports
                        .is_none_or(|(lo, hi)| (lo..=hi).contains(&db.port));
                    if !(proto_ok && port_ok) {
                        continue;
                    }
                    for (i, inst) in lab.instances.iter().enumerate() {
                        let drawn = || instances_in(lab, inst.subnet).0.contains(&i);
                        if inst.security_groups.contains(&peer) && drawn() && seen.insert(i) {
                            sg_allows.push(SgAllow {
                                instance: i,
                                database: d,
                                protocol: Protocol::Tcp,
                                port: db.port,
                            });
                        }
                    }
                }
            }
        }
        let replicas = lab
            .databases
            .iter()
            .enumerate()
            .filter(|(_, d)| d.standby.is_some())
            .map(|(d, _)| d)
            .collect();
        Facts {
            nat_routes,
            nat_egress,
            sg_allows,
            replicas,
        }
    }
}

/// Instances drawn per subnet; more become one "+N more instances" line.
pub(crate) const MAX_INSTANCES: usize = 4;
/// Internet hosts drawn; more become one "+N more hosts" line.
pub(crate) const MAX_HOSTS: usize = 6;

/// How many of `total` items to draw where `max` fit: all, or `max - 1` and a "+N more".
pub(crate) fn shown(total: usize, max: usize) -> usize {
    if total > max { max - 1 } else { total }
}

/// The instances of subnet `s` that are drawn (file order), and how many are not.
pub(crate) fn instances_in(lab: &Lab, s: usize) -> (Vec<usize>, usize) {
    let all: Vec<usize> = (0..lab.instances.len())
        .filter(|&i| lab.instances[i].subnet == s)
        .collect();
    let n = shown(all.len(), MAX_INSTANCES);
    (all[..n].to_vec(), all.len() - n)
}

/// The NAT gateways in subnet `s`, with their indices.
pub(crate) fn nat_gateways_in(lab: &Lab, s: usize) -> impl Iterator<Item = (usize, &NatGateway)> {
    lab.nat_gateways
        .iter()
        .enumerate()
        .filter(move |(_, n)| n.subnet == s)
}

/// The database servers in subnet `s` (database order, primary before standby): the
/// database's index, whether the server is the standby, and the server.
pub(crate) fn database_servers_in(lab: &Lab, s: usize) -> Vec<(usize, bool, &DbNode)> {
    let mut servers = Vec::new();
    for (d, db) in lab.databases.iter().enumerate() {
        for (standby, node) in [(false, Some(&db.primary)), (true, db.standby.as_ref())] {
            if let Some(node) = node.filter(|n| n.subnet == s) {
                servers.push((d, standby, node));
            }
        }
    }
    servers
}

/// How a route target reads in a summary: `local`, the gateway's name.
pub(crate) fn target_name(lab: &Lab, t: &RouteTarget) -> String {
    match t {
        RouteTarget::Local => "local".into(),
        RouteTarget::InternetGateway(name) => name.clone(),
        RouteTarget::NatGateway(n) => lab.nat_gateways[*n].name.clone(),
    }
}

/// A route as a summary lists it: "0.0.0.0/0 → igw".
pub(crate) fn route_text(lab: &Lab, r: &Route) -> String {
    format!("{} → {}", r.destination, target_name(lab, &r.target))
}

/// Availability zones in name order, each with its subnets (public first, file order).
pub(crate) fn zones(lab: &Lab) -> Vec<(String, Vec<usize>)> {
    let names: BTreeSet<&str> = lab.subnets.iter().map(|s| s.az.as_str()).collect();
    names
        .into_iter()
        .map(|az| {
            let in_az = |public: bool| {
                lab.subnets
                    .iter()
                    .enumerate()
                    .filter(move |(_, s)| s.az == az && s.public == public)
                    .map(|(i, _)| i)
            };
            (az.to_string(), in_az(true).chain(in_az(false)).collect())
        })
        .collect()
}

/// The subnets a route table serves, "public-2a, public-2c", or "no subnets".
pub(crate) fn table_users(lab: &Lab, table: usize) -> String {
    let names = lab
        .subnets
        .iter()
        .filter(|s| s.route_table == table)
        .map(|s| s.name.as_str());
    let list = name_list(names, 4);
    if list.is_empty() {
        "no subnets".into()
    } else {
        list
    }
}

/// "public-2a, public-2c" for at most `max` names, then "+N more".
pub(crate) fn name_list<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.len() <= max {
        names.join(", ")
    } else {
        format!(
            "{}, +{} more",
            names[..max - 1].join(", "),
            names.len() - (max - 1)
        )
    }
}

#[cfg(test)]
mod tests;
