//! The words in the boxes and in the route-table panel that dot and Mermaid draw. They
//! are built here once, so that the two formats differ only in their syntax: how a node,
//! a line break and a panel are written. (The SVG styles each word and lays out its own
//! cards.)

use super::{
    MAX_HOSTS, database_servers_in, instances_in, nat_gateways_in, route_text, shown, table_users,
};
use crate::topology::{Lab, PublicIp};

/// What a box stands for; each format gives each kind its own look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Host,
    Nat,
    Instance,
    Database,
    /// "+N more …" where not all of a kind fit.
    More,
}

/// One box: its node id (the same in every format), its kind and its text, one line each.
pub(crate) struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub lines: Vec<String>,
}

impl Node {
    fn more(id: String, n: usize, what: &str) -> Node {
        Node {
            id,
            kind: NodeKind::More,
            lines: vec![format!("+{n} more {what}")],
        }
    }
}

/// "Region ap-northeast-2".
pub(crate) fn region_title(lab: &Lab) -> String {
    format!("Region {}", lab.region)
}

/// "VPC handson-vpc · 10.0.0.0/16".
/// "network ACL private-acl" for a subnet a custom ACL guards; nothing for the VPC's
/// default ACL, which allows everything and so says nothing worth drawing.
pub(crate) fn acl_note(lab: &Lab, s: usize) -> Option<String> {
    lab.network_acl_of(s)
        .map(|a| format!("network ACL {}", a.name))
}

pub(crate) fn vpc_title(lab: &Lab) -> String {
    format!("VPC {} · {}", lab.vpc.name, lab.vpc.cidr)
}

/// The internet hosts that are drawn (file order), then "+N more hosts" if any are not.
pub(crate) fn internet_nodes(lab: &Lab) -> Vec<Node> {
    let n = shown(lab.internet.len(), MAX_HOSTS);
    let mut nodes: Vec<Node> = lab.internet[..n]
        .iter()
        .enumerate()
        .map(|(h, host)| {
            let mut lines = vec![host.name.clone(), host.ip.to_string()];
            if host.my_ip {
                lines.push("my IP".into());
            } else if !host.services.is_empty() {
                let sv: Vec<&str> = host.services.iter().map(|s| s.as_str()).collect();
                lines.push(format!("serves {}", sv.join(", ")));
            }
            Node {
                id: format!("host{h}"),
                kind: NodeKind::Host,
                lines,
            }
        })
        .collect();
    if n < lab.internet.len() {
        nodes.push(Node::more(
            "morehosts".into(),
            lab.internet.len() - n,
            "hosts",
        ));
    }
    nodes
}

/// Subnet `s`'s boxes in drawing order: NAT gateways, instances (and "+N more
/// instances"), database servers.
pub(crate) fn subnet_nodes(lab: &Lab, s: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (k, n) in nat_gateways_in(lab, s) {
        let eip = &lab.elastic_ips[n.elastic_ip];
        nodes.push(Node {
            id: format!("nat{k}"),
            kind: NodeKind::Nat,
            lines: vec![
                format!("NAT gateway {}", n.name),
                format!("private {}", n.private_ip),
                format!("EIP {} ({})", eip.address, eip.name),
            ],
        });
    }
    let (instances, hidden) = instances_in(lab, s);
    for k in instances {
        let inst = &lab.instances[k];
        let mut lines = vec![
            format!("EC2 {}", inst.name),
            format!("private {}", inst.private_ip),
        ];
        match &inst.public_ip {
            PublicIp::None => {}
            PublicIp::Auto { address } => lines.push(format!("public {address} (auto)")),
            PublicIp::Elastic { eip, address } => lines.push(format!(
                "public {address} (EIP {})",
                lab.elastic_ips[*eip].name
            )),
        }
        lines.extend(sg_names(lab, &inst.security_groups));
        nodes.push(Node {
            id: format!("inst{k}"),
            kind: NodeKind::Instance,
            lines,
        });
    }
    if hidden > 0 {
        nodes.push(Node::more(format!("more{s}"), hidden, "instances"));
    }
    for (d, standby, server) in database_servers_in(lab, s) {
        let db = &lab.databases[d];
        let (suffix, role) = if standby {
            ('s', "standby")
        } else {
            ('p', "primary")
        };
        let mut lines = vec![
            format!("RDS {}", server.name),
            format!("{} {} · {role}", db.engine, db.name),
            format!("private {}", server.private_ip),
        ];
        if let Some(p) = server.public_ip {
            lines.push(format!("public {p}"));
        }
        lines.extend(sg_names(lab, &db.security_groups));
        nodes.push(Node {
            id: format!("db{d}{suffix}"),
            kind: NodeKind::Database,
            lines,
        });
    }
    nodes
}

fn sg_names(lab: &Lab, groups: &[usize]) -> Vec<String> {
    groups
        .iter()
        .map(|&g| format!("SG {}", lab.security_groups[g].name))
        .collect()
}

/// What the route-table panel says, before a format lays it out.
pub(crate) struct Panel {
    pub tables: Vec<TableText>,
    /// "endpoint:3306 → primary-server", one per database.
    pub endpoints: Vec<String>,
}

/// One route table: its name, the subnets it serves, its routes.
pub(crate) struct TableText {
    pub name: String,
    /// "public-2a, public-2c", or "no subnets".
    pub users: String,
    /// "0.0.0.0/0 → igw", one per route.
    pub routes: Vec<String>,
}

impl Panel {
    pub fn of(lab: &Lab) -> Panel {
        let tables = lab
            .route_tables
            .iter()
            .enumerate()
            .map(|(t, table)| TableText {
                name: table.name.clone(),
                users: table_users(lab, t),
                routes: table.routes.iter().map(|r| route_text(lab, r)).collect(),
            })
            .collect();
        let endpoints = lab
            .databases
            .iter()
            .map(|db| format!("{}:{} → {}", db.endpoint, db.port, db.primary.name))
            .collect();
        Panel { tables, endpoints }
    }
}
