//! `reach --all`: every source against every destination on every port the lab's
//! services and rules mention.
//!
//! Hosts that the Plan cannot tell apart are one row: instances in the same subnet with
//! the same security groups, the same kind of public IP and the same standing against
//! every CIDR the lab's rules and routes name get the same nftables rules and routes, so
//! one of them answers for all. That keeps a 1,000-instance lab to a few hundred pairs.
//! Database servers, NAT gateways and internet hosts are each their own row.

use super::reach::{self, Analysis, Code, Down, Query};
use crate::plan::{Plan, Role};
use crate::topology::{Lab, Peer, Protocol, PublicIp, Service};
use crate::trace::send::Proto;
use anyhow::Result;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Hosts that behave alike, named by the first of them.
#[derive(Debug, Clone, Serialize)]
pub struct Class {
    pub members: Vec<String>,
    /// Can send (an instance, a database server, an internet host), not only receive.
    #[serde(skip)]
    pub sends: bool,
}

impl Class {
    /// "web0000" or "web0000 (+499 alike)".
    pub fn label(&self) -> String {
        match self.members.len() {
            1 => self.members[0].clone(),
            n => format!("{} (+{} alike)", self.members[0], n - 1),
        }
    }
}

/// A protocol and port the matrix tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Probe {
    pub proto: Proto,
    pub port: Option<u16>,
}

impl Probe {
    pub fn label(&self) -> String {
        match self.port {
            Some(p) => format!("{}/{p}", self.proto.as_str()),
            None => self.proto.as_str().to_string(),
        }
    }
}

impl PartialOrd for Proto {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Proto {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.number().cmp(&other.number())
    }
}

/// One source class against one destination class.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub from: Class,
    pub to: Class,
    /// The representatives analysed (and sent from, with `--verify`).
    pub from_node: String,
    pub to_node: String,
    /// One per `Matrix::probes`.
    pub cells: Vec<Analysis>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub lab: String,
    pub probes: Vec<Probe>,
    pub rows: Vec<Row>,
}

/// The ports the lab's services, databases and inbound rules mention (a range by its
/// first port), with ping when a rule allows ICMP or all traffic; of network ACLs' inbound
/// rules, those for one port or for ICMP (a range there is mostly for replies).
pub fn probes(lab: &Lab) -> Vec<Probe> {
    let mut set = BTreeSet::new();
    let tcp = |port| Probe {
        proto: Proto::Tcp,
        port: Some(port),
    };
    let services = lab
        .instances
        .iter()
        .flat_map(|i| &i.services)
        .chain(lab.internet.iter().flat_map(|h| &h.services));
    for s in services {
        set.insert(tcp(match s {
            Service::Ssh => 22,
            Service::Http => 80,
            Service::Https => 443,
        }));
    }
    for d in &lab.databases {
        set.insert(tcp(d.port));
    }
    for r in lab.security_groups.iter().flat_map(|g| &g.inbound) {
        let proto = match r.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            // A rule for all traffic names no port; ping stands for it.
            Protocol::Icmp | Protocol::All => {
                set.insert(Probe {
                    proto: Proto::Icmp,
                    port: None,
                });
                continue;
            }
        };
        if let Some((lo, _)) = r.ports.filter(|p| *p != (0, 65535)) {
            set.insert(Probe {
                proto,
                port: Some(lo),
            });
        }
    }
    for r in lab.network_acls.iter().flat_map(|a| &a.inbound) {
        let proto = match r.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
            Protocol::Icmp => {
                set.insert(Probe {
                    proto: Proto::Icmp,
                    port: None,
                });
                continue;
            }
            Protocol::All => continue,
        };
        if let Some((port, _)) = r.ports.filter(|(lo, hi)| lo == hi) {
            set.insert(Probe {
                proto,
                port: Some(port),
            });
        }
    }
    set.into_iter().collect()
}

/// Groups the lab's hosts (and NAT gateways, as destinations) into classes.
pub fn classes(lab: &Lab, plan: &Plan, down: &Down) -> Vec<Class> {
    // Every CIDR a rule or a route names: where an address falls against them is part of
    // what makes two instances alike.
    let mut cidrs: BTreeSet<Ipv4Net> = BTreeSet::new();
    for g in &lab.security_groups {
        for r in g.inbound.iter().chain(&g.outbound) {
            if let Peer::Cidr(n) = r.peer {
                cidrs.insert(n);
            }
        }
    }
    for rt in &lab.route_tables {
        cidrs.extend(rt.routes.iter().map(|r| r.destination));
    }
    for acl in &lab.network_acls {
        cidrs.extend(acl.inbound.iter().chain(&acl.outbound).map(|r| r.peer));
    }
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for ns in &plan.namespaces {
        let key = match ns.role {
            Role::Instance => {
                let i = lab
                    .instance(&ns.node)
                    .expect("the plan's instances are the lab's");
                let mut groups = i.security_groups.clone();
                groups.sort();
                let public = match i.public_ip {
                    PublicIp::None => "none",
                    PublicIp::Auto { .. } => "auto",
                    PublicIp::Elastic { .. } => "elastic",
                };
                let mut key = format!("i {} {groups:?} {public}", i.subnet);
                for ip in [Some(i.private_ip), i.public_ip.address()]
                    .into_iter()
                    .flatten()
                {
                    key.extend(
                        cidrs
                            .iter()
                            .map(|c| if c.contains(&ip) { '1' } else { '0' }),
                    );
                }
                if let Some(why) = down.get(&ns.node) {
                    key.push_str(why);
                }
                key
            }
            Role::Database | Role::InternetHost | Role::NatGateway => format!("n {}", ns.node),
            Role::VpcRouter | Role::InternetGateway | Role::InternetRouter => continue,
        };
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(ns.node.clone());
    }
    order
        .into_iter()
        .map(|k| {
            let members = by_key.remove(&k).expect("every key was filled");
            let sends = plan
                .netns(&members[0])
                .is_some_and(|n| n.role != Role::NatGateway);
            Class { members, sends }
        })
        .collect()
}

/// The whole matrix, statically.
pub fn all(lab: &Lab, plan: &Plan, down: &Down) -> Result<Matrix> {
    let probes = probes(lab);
    let classes = classes(lab, plan, down);
    let mut rows = Vec::new();
    for from in classes.iter().filter(|c| c.sends) {
        for to in &classes {
            let from_node = from.members[0].clone();
            // Within one class, a member to another member; a lone host has no pair.
            let to_node = if std::ptr::eq(from, to) {
                match to.members.get(1) {
                    Some(n) => n.clone(),
                    None => continue,
                }
            } else {
                to.members[0].clone()
            };
            let mut cells = Vec::new();
            for p in &probes {
                let q = Query {
                    from: from_node.clone(),
                    to: to_node.clone(),
                    proto: p.proto,
                    port: p.port,
                };
                cells.push(reach::analyze(lab, plan, down, &q)?);
            }
            rows.push(Row {
                from: from.clone(),
                to: to.clone(),
                from_node,
                to_node,
                cells,
            });
        }
    }
    Ok(Matrix {
        lab: lab.name.clone(),
        probes,
        rows,
    })
}

/// A short tag for a matrix cell, and its legend.
pub fn tag(code: Option<Code>) -> &'static str {
    match code {
        None => "yes",
        Some(Code::EniSgRulesMismatch) => "sg",
        Some(Code::SgHasNoRules) => "sg-empty",
        Some(Code::SubnetAclRestriction) => "acl",
        Some(Code::NoRouteToDestination) => "no-route",
        Some(Code::IgwPrivateIpAssociationForIngress) => "igw-private",
        Some(Code::IgwPublicIpAssociationForEgress) => "igw-no-public",
        Some(Code::NgwRequiresSourceInVpc) => "ngw-inbound",
        Some(Code::BadState) => "down",
        Some(Code::CannotRoute) => "cannot-route",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::{builtin, lab_from};

    fn cell<'m>(m: &'m Matrix, from: &str, to: &str, probe: &str) -> &'m Analysis {
        let row = m
            .rows
            .iter()
            .find(|r| r.from_node == from && r.to_node == to)
            .unwrap_or_else(|| panic!("no row {from} -> {to}"));
        let i = m.probes.iter().position(|p| p.label() == probe).unwrap();
        &row.cells[i]
    }

    #[test]
    fn the_built_in_lab_tries_every_host_on_the_ports_its_services_and_rules_use() {
        let lab = builtin();
        let plan = crate::plan::compile(&lab);
        let m = all(&lab, &plan, &Down::new()).unwrap();
        let labels: Vec<String> = m.probes.iter().map(Probe::label).collect();
        assert_eq!(labels, ["tcp/22", "tcp/80", "tcp/443", "tcp/3306"]);
        // 7 hosts that send, 8 destinations (with the NAT gateway), no host to itself.
        assert_eq!(m.rows.len(), 7 * 8 - 7);
        assert!(cell(&m, "web", "my-database-2c", "tcp/3306").reachable);
        assert!(cell(&m, "my-laptop", "web", "tcp/22").reachable);
        assert_eq!(
            cell(&m, "stranger", "web", "tcp/22").code,
            Some(Code::EniSgRulesMismatch)
        );
        assert_eq!(
            cell(&m, "stranger", "app", "tcp/22").code,
            Some(Code::IgwPrivateIpAssociationForIngress)
        );
        assert_eq!(
            cell(&m, "my-laptop", "my-nat", "tcp/80").code,
            Some(Code::NgwRequiresSourceInVpc)
        );
    }

    #[test]
    fn instances_alike_are_one_row_and_a_cidr_rule_tells_them_apart() {
        let lab = lab_from(&crate::topology::BUILTIN_YAML.replacen(
            "instances:\n",
            "instances:\n  app2: { subnet: private-2a, private_ip: 10.0.1.102, security_groups: [MyApp-SecurityGroup] }\n  app3: { subnet: private-2a, private_ip: 10.0.1.200, security_groups: [MyApp-SecurityGroup] }\n",
            1,
        ).replacen(
            "      - { type: ssh, source: 10.0.0.0/16 }",
            "      - { type: ssh, source: 10.0.0.0/16 }\n      - { protocol: tcp, port: 8080, source: 10.0.1.128/25 }",
            1,
        ));
        let plan = crate::plan::compile(&lab);
        let classes = classes(&lab, &plan, &Down::new());
        let members: Vec<Vec<String>> = classes.iter().map(|c| c.members.clone()).collect();
        assert!(
            members.contains(&vec!["app2".into(), "app".into()]),
            "{members:?}"
        );
        assert!(members.contains(&vec!["app3".into()]), "{members:?}");
        let m = all(&lab, &plan, &Down::new()).unwrap();
        // app3 is the only one in 10.0.1.128/25; app2 to app (its class) is refused.
        assert!(cell(&m, "app3", "app2", "tcp/8080").reachable);
        assert_eq!(
            cell(&m, "app2", "app", "tcp/8080").code,
            Some(Code::EniSgRulesMismatch)
        );
    }

    #[test]
    fn a_network_acl_rule_tells_instances_apart_and_adds_its_ports() {
        let text = crate::topology::BUILTIN_YAML.replacen(
            "instances:\n",
            "instances:\n  app2: { subnet: private-2a, private_ip: 10.0.1.102, security_groups: [MyApp-SecurityGroup] }\n  app3: { subnet: private-2a, private_ip: 10.0.1.200, security_groups: [MyApp-SecurityGroup] }\n",
            1,
        ) + "network_acls:
  web-acl:
    subnets: [public-2c]
    inbound:
      - { rule: 90, type: http, source: 10.0.1.128/25, action: deny }
      - { rule: 95, protocol: tcp, port: 8443, source: 10.0.0.0/16, action: allow }
      - { rule: 100, protocol: icmp, source: 10.0.0.0/16, action: allow }
      - { rule: 200, protocol: all, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
";
        let lab = lab_from(&text);
        let plan = crate::plan::compile(&lab);
        let m = all(&lab, &plan, &Down::new()).unwrap();
        let labels: Vec<String> = m.probes.iter().map(Probe::label).collect();
        assert_eq!(
            labels,
            [
                "icmp", "tcp/22", "tcp/80", "tcp/443", "tcp/3306", "tcp/8443"
            ]
        );
        // Only the ACL's rule 90 names 10.0.1.128/25, where app3 is and app2 is not.
        let members: Vec<Vec<String>> = classes(&lab, &plan, &Down::new())
            .iter()
            .map(|c| c.members.clone())
            .collect();
        assert!(members.contains(&vec!["app3".into()]), "{members:?}");
        assert!(cell(&m, "app2", "web", "tcp/80").reachable);
        assert_eq!(
            cell(&m, "app3", "web", "tcp/80").code,
            Some(Code::SubnetAclRestriction)
        );
        assert_eq!(tag(Some(Code::SubnetAclRestriction)), "acl");
    }
}
