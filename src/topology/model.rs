//! A checked lab: every reference resolved, every address concrete.
//!
//! `validate` is the only way to build a `Lab`, so code downstream (plan, diagram, probes)
//! never re-checks AWS rules and never meets an "auto" address.

pub use super::flow_fields::FlowField;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize)]
pub struct Lab {
    pub name: String,
    pub description: Option<String>,
    pub region: String,
    pub vpc: Vpc,
    pub public_ip_pool: Ipv4Net,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub internet_gateway: Option<String>,
    pub elastic_ips: Vec<ElasticIp>,
    pub nat_gateways: Vec<NatGateway>,
    pub key_pairs: Vec<String>,
    pub security_groups: Vec<SecurityGroup>,
    /// The custom network ACLs; a subnet none of them names has the VPC's default ACL,
    /// which allows everything both ways.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_acls: Vec<NetworkAcl>,
    pub instances: Vec<Instance>,
    pub db_subnet_groups: Vec<DbSubnetGroup>,
    pub databases: Vec<Database>,
    pub internet: Vec<InternetHost>,
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vpc {
    pub name: String,
    pub cidr: Ipv4Net,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_logs: Option<FlowLogs>,
}

/// A flow log of every network interface in the VPC or a subnet, or of one instance's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowLogs {
    /// The aggregation interval: AWS offers 60 and 600 seconds; anything shorter is a
    /// lab-only choice so a test or a learner need not wait a minute.
    pub interval_secs: u64,
    /// The fields of each record, in order: AWS's default format unless the file lists
    /// its own.
    pub fields: Vec<FlowField>,
}

impl Vpc {
    /// The Amazon-provided DNS server: the VPC's base address plus two.
    pub fn dns_server(&self) -> Ipv4Addr {
        offset(self.cidr.network(), 2)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Subnet {
    pub name: String,
    pub az: String,
    pub cidr: Ipv4Net,
    /// Index into `Lab::route_tables`.
    pub route_table: usize,
    /// Its route table sends 0.0.0.0/0 to the internet gateway.
    pub public: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_logs: Option<FlowLogs>,
}

impl Subnet {
    /// The VPC router's address in this subnet (reserved .1).
    pub fn gateway(&self) -> Ipv4Addr {
        offset(self.cidr.network(), 1)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTable {
    pub name: String,
    /// The implicit `VPC CIDR -> local` route comes first, as in the console.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub destination: Ipv4Net,
    pub target: RouteTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum RouteTarget {
    Local,
    InternetGateway(String),
    /// Index into `Lab::nat_gateways`.
    NatGateway(usize),
}

#[derive(Debug, Clone, Serialize)]
pub struct ElasticIp {
    pub name: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize)]
pub struct NatGateway {
    pub name: String,
    pub subnet: usize,
    pub private_ip: Ipv4Addr,
    /// Index into `Lab::elastic_ips`.
    pub elastic_ip: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityGroup {
    pub name: String,
    pub description: Option<String>,
    pub inbound: Vec<SgRule>,
    pub outbound: Vec<SgRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SgRule {
    pub protocol: Protocol,
    /// Inclusive port range; `None` means all ports (or not applicable, for ICMP).
    pub ports: Option<(u16, u16)>,
    /// Source for inbound rules, destination for outbound rules.
    pub peer: Peer,
    /// How the console would name the rule ("SSH", "HTTP", "Custom TCP").
    pub label: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Peer {
    Cidr(Ipv4Net),
    /// Index into `Lab::security_groups`: matches the members' private IPs.
    Group(usize),
    /// The internet host marked `my_ip: true`, resolved to its address.
    MyIp(Ipv4Addr),
}

/// A network ACL: stateless, checked where traffic enters or leaves its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkAcl {
    pub name: String,
    /// Indexes into `Lab::subnets`; a subnet is in at most one ACL.
    pub subnets: Vec<usize>,
    /// Sorted by rule number: the lowest number that matches decides.
    pub inbound: Vec<AclRule>,
    pub outbound: Vec<AclRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclRule {
    /// 1 to 32766.
    pub number: u16,
    pub protocol: Protocol,
    /// Inclusive destination port range; `None` means all ports (or not applicable).
    pub ports: Option<(u16, u16)>,
    /// The source of an inbound rule, the destination of an outbound one.
    pub peer: Ipv4Net,
    pub action: AclAction,
    /// How the console names the rule's type ("SSH", "Custom TCP").
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Allow,
    Deny,
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        }
    }
}

impl std::fmt::Display for AclRule {
    /// `100 allow tcp 1024-65535 from 0.0.0.0/0` without the direction's word, which the
    /// caller adds (`from` inbound, `to` outbound) through `describe`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.number,
            self.action.as_str(),
            self.traffic()
        )
    }
}

impl AclRule {
    /// What traffic the rule matches: `tcp 22`, `udp 1024-65535`, `icmp`, `all traffic`.
    pub fn traffic(&self) -> String {
        let protocol = match self.protocol {
            Protocol::All => "all traffic",
            p => p.as_str(),
        };
        match self.ports {
            Some((0, 65535)) | None => protocol.to_string(),
            Some((a, b)) if a == b => format!("{protocol} {a}"),
            Some((a, b)) => format!("{protocol} {a}-{b}"),
        }
    }

    /// The rule in one line for a direction: `100 allow tcp 22 from 10.0.0.0/16`.
    pub fn describe(&self, inbound: bool) -> String {
        let word = if inbound { "from" } else { "to" };
        format!("{self} {word} {}", self.peer)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub name: String,
    /// `i-` and 17 hex digits, derived from the lab and instance names (stable across runs).
    pub id: String,
    pub subnet: usize,
    pub private_ip: Ipv4Addr,
    pub public_ip: PublicIp,
    pub key_pair: Option<String>,
    pub security_groups: Vec<usize>,
    pub services: Vec<Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_logs: Option<FlowLogs>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PublicIp {
    None,
    /// Auto-assigned from the pool; changes when the instance is stopped and started.
    Auto {
        address: Ipv4Addr,
    },
    /// Index into `Lab::elastic_ips`; survives stop and start.
    Elastic {
        eip: usize,
        address: Ipv4Addr,
    },
}

impl PublicIp {
    pub fn address(&self) -> Option<Ipv4Addr> {
        match self {
            PublicIp::None => None,
            PublicIp::Auto { address } | PublicIp::Elastic { address, .. } => Some(*address),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Ssh,
    Http,
    Https,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Ssh, Service::Http, Service::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Ssh => "ssh",
            Service::Http => "http",
            Service::Https => "https",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DbSubnetGroup {
    pub name: String,
    pub subnets: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub name: String,
    pub engine: String,
    pub multi_az: bool,
    pub subnet_group: usize,
    pub primary: DbNode,
    pub standby: Option<DbNode>,
    pub master_username: String,
    /// `None`: generated at `up` into a 0600 file in the lab's state dir.
    #[serde(skip)]
    pub master_password: Option<String>,
    pub database_name: String,
    pub publicly_accessible: bool,
    pub security_groups: Vec<usize>,
    pub port: u16,
    /// `<id>.<12 characters>.<region>.rds.amazonaws.com`
    pub endpoint: String,
}

impl Database {
    pub fn nodes(&self) -> impl Iterator<Item = &DbNode> {
        std::iter::once(&self.primary).chain(self.standby.as_ref())
    }
}

/// One server of an RDS instance (the primary, or the Multi-AZ standby).
#[derive(Debug, Clone, Serialize)]
pub struct DbNode {
    /// Node name: the database name and its AZ's short suffix (`my-database-2c`).
    pub name: String,
    pub subnet: usize,
    pub private_ip: Ipv4Addr,
    /// Set when the database is publicly accessible.
    pub public_ip: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InternetHost {
    pub name: String,
    pub ip: Ipv4Addr,
    pub my_ip: bool,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    /// Line of the expectation in the lab file, for messages.
    pub line: u64,
    pub from: String,
    pub to: String,
    pub check: Check,
    pub result: Outcome,
    pub port: Option<u16>,
    /// Whose address the far end must see (NAT checks): an address, or the name of an
    /// instance, Elastic IP, NAT gateway or internet host, resolved when probing (an
    /// auto-assigned public IP changes on stop and start).
    pub seen_as: Option<String>,
    pub answer: Option<Answer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Ssh,
    Http,
    Https,
    Mysql,
    Dns,
    Ping,
    Tcp,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::Ssh,
        Check::Http,
        Check::Https,
        Check::Mysql,
        Check::Dns,
        Check::Ping,
        Check::Tcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Ssh => "ssh",
            Check::Http => "http",
            Check::Https => "https",
            Check::Mysql => "mysql",
            Check::Dns => "dns",
            Check::Ping => "ping",
            Check::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Blocked,
}

/// What a DNS check must resolve to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "address", rename_all = "snake_case")]
pub enum Answer {
    /// The target's private IP (split horizon, asked from inside the VPC).
    Private,
    /// The target's public IP (asked from the internet).
    Public,
    /// The database's current primary, whichever AZ it is in.
    Primary,
    Address(Ipv4Addr),
}

/// `base + n`, for the reserved addresses of a block.
pub fn offset(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(n))
}

/// What a name in the lab refers to.
#[derive(Debug, Clone, Copy)]
pub enum NodeRef<'a> {
    Instance(&'a Instance),
    Database(&'a Database),
    DbNode(&'a DbNode),
    Internet(&'a InternetHost),
    NatGateway(&'a NatGateway),
    ElasticIp(&'a ElasticIp),
}

impl Lab {
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The flow log that covers an instance's interface: its own, else its subnet's, else
    /// the VPC's. (AWS would keep one log per level; the lab keeps the closest one.)
    pub fn flow_logs_of<'a>(&'a self, i: &'a Instance) -> Option<&'a FlowLogs> {
        i.flow_logs
            .as_ref()
            .or_else(|| self.flow_logs_of_subnet(i.subnet))
    }

    /// The flow log that covers the interfaces of subnet `s` that have none of their own
    /// (a NAT gateway's): the subnet's, else the VPC's.
    pub fn flow_logs_of_subnet(&self, s: usize) -> Option<&FlowLogs> {
        self.subnets[s]
            .flow_logs
            .as_ref()
            .or(self.vpc.flow_logs.as_ref())
    }

    /// Whether any flow log is on, at any level.
    pub fn has_flow_logs(&self) -> bool {
        self.vpc.flow_logs.is_some()
            || self.subnets.iter().any(|s| s.flow_logs.is_some())
            || self.instances.iter().any(|i| i.flow_logs.is_some())
    }

    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// Resolves a node, database, NAT gateway or Elastic IP by the name the file gave it.
    pub fn find(&self, name: &str) -> Option<NodeRef<'_>> {
        if let Some(i) = self.instance(name) {
            return Some(NodeRef::Instance(i));
        }
        if let Some(d) = self.database(name) {
            return Some(NodeRef::Database(d));
        }
        for d in &self.databases {
            if let Some(n) = d.nodes().find(|n| n.name == name) {
                return Some(NodeRef::DbNode(n));
            }
        }
        if let Some(h) = self.internet.iter().find(|h| h.name == name) {
            return Some(NodeRef::Internet(h));
        }
        if let Some(n) = self.nat_gateways.iter().find(|n| n.name == name) {
            return Some(NodeRef::NatGateway(n));
        }
        self.elastic_ips
            .iter()
            .find(|e| e.name == name)
            .map(NodeRef::ElasticIp)
    }

    /// The address a far end sees for `name` (see `Expectation::seen_as`).
    pub fn address_seen_as(&self, name: &str) -> Option<Ipv4Addr> {
        if let Ok(ip) = name.parse::<Ipv4Addr>() {
            return Some(ip);
        }
        match self.find(name)? {
            NodeRef::Instance(i) => i.public_ip.address().or(Some(i.private_ip)),
            NodeRef::ElasticIp(e) => Some(e.address),
            NodeRef::NatGateway(n) => Some(self.elastic_ips[n.elastic_ip].address),
            NodeRef::Internet(h) => Some(h.ip),
            _ => None,
        }
    }

    /// The custom network ACL that guards subnet `subnet`, if any (else the default ACL).
    pub fn network_acl_of(&self, subnet: usize) -> Option<&NetworkAcl> {
        self.network_acls
            .iter()
            .find(|a| a.subnets.contains(&subnet))
    }

    /// The internet host whose address is "my IP".
    pub fn my_ip(&self) -> Option<&InternetHost> {
        self.internet.iter().find(|h| h.my_ip)
    }

    /// Private DNS name of an address: `ip-10-0-2-238.ap-northeast-2.compute.internal`.
    pub fn private_dns_name(&self, ip: Ipv4Addr) -> String {
        format!("{}.{}", hostname_for(ip), self.internal_domain())
    }

    /// The VPC's private DNS domain, also the instances' resolv.conf search domain.
    pub fn internal_domain(&self) -> String {
        if self.region == "us-east-1" {
            "ec2.internal".to_string()
        } else {
            format!("{}.compute.internal", self.region)
        }
    }

    /// Public DNS name of an address: `ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com`.
    pub fn public_dns_name(&self, ip: Ipv4Addr) -> String {
        let dashed = ip.to_string().replace('.', "-");
        if self.region == "us-east-1" {
            format!("ec2-{dashed}.compute-1.amazonaws.com")
        } else {
            format!("ec2-{dashed}.{}.compute.amazonaws.com", self.region)
        }
    }

    /// Security groups whose members include this private IP.
    pub fn members_of(&self, group: usize) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self
            .instances
            .iter()
            .filter(|i| i.security_groups.contains(&group))
            .map(|i| i.private_ip)
            .collect();
        for d in &self.databases {
            if d.security_groups.contains(&group) {
                ips.extend(d.nodes().map(|n| n.private_ip));
            }
        }
        ips
    }
}

/// The private addresses in use per subnet (instances, NAT gateways, database servers), each
/// with its owner, sorted: what `vpclab cidr` counts as in use.
pub fn private_ips_by_subnet(lab: &Lab) -> BTreeMap<String, Vec<(Ipv4Addr, String)>> {
    let mut out: BTreeMap<String, Vec<(Ipv4Addr, String)>> = BTreeMap::new();
    for i in &lab.instances {
        out.entry(lab.subnets[i.subnet].name.clone())
            .or_default()
            .push((i.private_ip, i.name.clone()));
    }
    for n in &lab.nat_gateways {
        out.entry(lab.subnets[n.subnet].name.clone())
            .or_default()
            .push((n.private_ip, n.name.clone()));
    }
    for d in &lab.databases {
        for n in d.nodes() {
            out.entry(lab.subnets[n.subnet].name.clone())
                .or_default()
                .push((n.private_ip, n.name.clone()));
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

pub fn az_suffix<'a>(region: &str, az: &'a str) -> &'a str {
    match region.rsplit_once('-') {
        Some((prefix, _)) => az
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('-'))
            .unwrap_or(az),
        None => az,
    }
}

/// The EC2 hostname of a private address: `ip-10-0-2-238`.
pub fn hostname_for(ip: Ipv4Addr) -> String {
    format!("ip-{}", ip.to_string().replace('.', "-"))
}

/// The addresses a lab's objects hold, by owner: private ones (instances, NAT gateways,
/// database servers) and public ones (instances' auto-assigned, Elastic IPs, publicly
/// accessible database servers). A running lab records them so an edit of its file keeps
/// every existing object's addresses (validation hands out `auto` ones to new objects only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Allocations {
    #[serde(default)]
    pub private: std::collections::BTreeMap<String, Ipv4Addr>,
    #[serde(default)]
    pub public: std::collections::BTreeMap<String, Ipv4Addr>,
}

impl Allocations {
    pub fn of(lab: &Lab) -> Allocations {
        let mut a = Allocations::default();
        for i in &lab.instances {
            a.private.insert(i.name.clone(), i.private_ip);
            if let PublicIp::Auto { address } = i.public_ip {
                a.public.insert(i.name.clone(), address);
            }
        }
        for n in &lab.nat_gateways {
            a.private.insert(n.name.clone(), n.private_ip);
        }
        for e in &lab.elastic_ips {
            a.public.insert(e.name.clone(), e.address);
        }
        for d in &lab.databases {
            for n in std::iter::once(&d.primary).chain(&d.standby) {
                a.private.insert(n.name.clone(), n.private_ip);
                if let Some(p) = n.public_ip {
                    a.public.insert(n.name.clone(), p);
                }
            }
        }
        a
    }

    /// Some object holds public address `ip`.
    pub fn holds_public(&self, ip: Ipv4Addr) -> bool {
        self.public.values().any(|&p| p == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Source, load};
    use super::*;

    #[test]
    fn private_ips_are_listed_per_subnet_in_address_order() {
        let lab = load(Source::Builtin, None).unwrap().lab;
        let ips: Vec<(String, Vec<(String, String)>)> = private_ips_by_subnet(&lab)
            .into_iter()
            .map(|(subnet, v)| {
                let v = v.into_iter().map(|(ip, who)| (ip.to_string(), who));
                (subnet, v.collect())
            })
            .collect();
        let row = |s: &str, v: &[(&str, &str)]| {
            let v = v.iter().map(|(a, b)| (a.to_string(), b.to_string()));
            (s.to_string(), v.collect::<Vec<_>>())
        };
        assert_eq!(
            ips,
            [
                row(
                    "private-2a",
                    &[("10.0.1.64", "my-database-2a"), ("10.0.1.101", "app")]
                ),
                row("private-2c", &[("10.0.3.87", "my-database-2c")]),
                row("public-2a", &[("10.0.0.4", "my-nat")]),
                row("public-2c", &[("10.0.2.238", "web")]),
            ]
        );
    }
}
