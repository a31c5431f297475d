//! Topology → Plan: every namespace, link, address, route, policy rule, nftables table,
//! DNS record and host file the lab needs, as plain data.
//!
//! The plan is deterministic (the same lab gives a byte-identical plan) and touches
//! nothing; `kernel` applies it and `services` starts what runs on it.
//!
//! How AWS maps onto namespaces (the README's "How AWS maps to Linux" table has it all):
//! * the VPC router is one namespace with a bridge per subnet holding the subnet's .1;
//!   each route table is a kernel routing table selected by `iif <subnet bridge>`;
//! * the internet gateway is a namespace between the router and the internet doing
//!   1:1 NAT; the NAT gateway is a namespace with one interface in its public subnet;
//! * every instance, database server and internet host is a namespace of its own.

pub mod dns;
pub mod firewall;
pub mod flowlogs;
pub mod names;
pub mod network;
pub mod show;

use crate::topology::{Lab, Service};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;

pub use dns::{DnsPlan, RecordData};
pub use names::namespace_name;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub lab: String,
    pub region: String,
    pub vpc_cidr: Ipv4Net,
    pub namespaces: Vec<Netns>,
    pub veths: Vec<Veth>,
    pub route_tables: Vec<ConsoleRouteTable>,
    pub dns: DnsPlan,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    VpcRouter,
    InternetGateway,
    NatGateway,
    Instance,
    Database,
    InternetRouter,
    InternetHost,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::VpcRouter => "vpc-router",
            Role::InternetGateway => "internet-gateway",
            Role::NatGateway => "nat-gateway",
            Role::Instance => "instance",
            Role::Database => "database",
            Role::InternetRouter => "internet-router",
            Role::InternetHost => "internet-host",
        }
    }
}

/// One network namespace and everything configured inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Netns {
    /// The kernel name under /run/netns: `vpclab-<lab>.<node>`.
    pub name: String,
    pub node: String,
    pub role: Role,
    pub az: Option<String>,
    /// Written before any link exists, so new links inherit the `default` values.
    pub sysctls: Vec<Sysctl>,
    pub bridges: Vec<String>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub rules: Vec<PolicyRule>,
    pub firewall: Option<firewall::Table>,
    /// The flow-log counting table of an interface under a flow log (`plan::flowlogs`),
    /// apart from `firewall` so a flow log comes and goes without touching the filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_log: Option<flowlogs::Counting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

/// A veth pair: created in `a.ns`, its peer created directly in `b.ns` (never in the
/// host's namespace, not even for a moment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Veth {
    pub a: VethEnd,
    pub b: VethEnd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VethEnd {
    pub ns: String,
    pub name: String,
    /// The bridge this end joins, in its own namespace.
    pub master: Option<String>,
}

/// An address on a device: `addr/prefix` with host bits kept (10.0.2.238/24).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub dev: String,
    pub addr: Ipv4Net,
}

pub const MAIN_TABLE: u32 = 254;
/// Kernel table of route table `i` (index into `Lab::route_tables`).
pub fn route_table_id(i: usize) -> u32 {
    100 + i as u32
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub via: Option<Ipv4Addr>,
    pub dev: String,
}

/// `ip rule add priority P iif DEV lookup TABLE`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRule {
    pub priority: u32,
    pub iif: String,
    pub table: u32,
}

/// A route table as the console shows it: Destination / Target, and its subnets.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleRouteTable {
    pub name: String,
    pub id: String,
    pub table: u32,
    pub subnets: Vec<String>,
    pub routes: Vec<(Ipv4Net, String)>,
}

/// A node that runs programs: its files and the services `up` starts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    pub node: String,
    pub ns: String,
    pub role: Role,
    pub hostname: String,
    pub az: Option<String>,
    pub private_ip: Ipv4Addr,
    pub public_ip: Option<Ipv4Addr>,
    pub instance_id: Option<String>,
    pub nameserver: Ipv4Addr,
    pub search: Option<String>,
    pub services: Vec<Service>,
    /// Runs MariaDB (a database server).
    pub database: Option<String>,
}

impl Host {
    pub fn resolv_conf(&self) -> String {
        let mut s = String::from("# written by vpclab for this host\n");
        if let Some(search) = &self.search {
            s.push_str(&format!("search {search}\n"));
        }
        s.push_str(&format!(
            "nameserver {}\noptions timeout:1 attempts:2\n",
            self.nameserver
        ));
        s
    }

    pub fn hosts_file(&self) -> String {
        format!(
            "127.0.0.1\tlocalhost\n{}\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            self.private_ip, self.hostname
        )
    }
}

/// Compiles a checked lab into its plan.
pub fn compile(lab: &Lab) -> Plan {
    let net = network::compile(lab);
    Plan {
        lab: lab.name.clone(),
        region: lab.region.clone(),
        vpc_cidr: lab.vpc.cidr,
        namespaces: net.namespaces,
        veths: net.veths,
        route_tables: net.route_tables,
        dns: dns::compile(lab),
        hosts: network::hosts(lab),
    }
}

impl Plan {
    pub fn netns(&self, node: &str) -> Option<&Netns> {
        self.namespaces.iter().find(|n| n.node == node)
    }

    pub fn host(&self, node: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.node == node)
    }
}

/// Deterministic AWS-looking ids (`vpc-0…`, `subnet-0…`, `igw-0…`) for the console view.
/// An object the EC2 API made without a `Name` tag is named by its ID, which it keeps.
pub fn aws_id(prefix: &str, lab: &str, name: &str) -> String {
    if crate::topology::aws::is_id(prefix, name) {
        return name.to_string();
    }
    let h = crate::topology::aws::stable_hash(&[prefix, lab, name]);
    format!("{prefix}-0{:016x}", h)
}
