//! AWS's rules for a lab file. Every problem is collected (none stops the others), each
//! pinned to its line and column with a hint, and a `Lab` is built only when none is an
//! error. Addresses written as `auto` are allocated here, deterministically.
//!
//! `Validator::lab` runs one phase per kind of resource, each in its own file: `network`
//! (VPC, public IP pool, internet gateway, route tables, subnets), `internet` (internet
//! hosts, Elastic IPs, NAT gateways), `security_groups`, `network_acls`, `compute` (key
//! pairs, instances), `rds` (DB subnet groups, databases) and `expect` (expectations).
//! `alloc` hands out the `auto` addresses once every phase has passed.

use super::aws::{self, reserved_reason, usable_range};
use super::diag::Diagnostics;
use super::file::{LabFile, S, Scalar};
use super::model::{Allocations, Lab, Service, Subnet};
use super::well_known::RESERVED_NODE_NAMES;
use super::{LAB_NAME_HINT, check_lab_name};
use ipnet::Ipv4Net;
use serde_saphyr::Location;
use std::collections::HashMap;
use std::net::Ipv4Addr;

mod alloc;
mod compute;
mod expect;
mod internet;
mod network;
mod network_acls;
mod rds;
mod security_groups;
#[cfg(test)]
mod testing;

use alloc::{Address, Allocator};

pub struct Options {
    /// The lab name to use instead of the file's `name:` (from `--name`).
    pub name_override: Option<String>,
    /// Used when the file has no `name:` (the file's stem).
    pub default_name: String,
    /// The addresses a running lab's objects hold, which they keep (see `alloc`).
    pub kept: Allocations,
}

/// Checks a parsed lab file. Returns the lab when there is no error; warnings are in the
/// diagnostics either way.
pub fn validate(f: &LabFile, opts: &Options) -> (Option<Lab>, Diagnostics) {
    let mut v = Validator {
        d: Diagnostics::default(),
        used_ips: HashMap::new(),
    };
    let lab = v.lab(f, opts);
    let lab = if v.d.has_errors() { None } else { lab };
    (lab, v.d)
}

struct Validator {
    d: Diagnostics,
    /// Private addresses taken so far, with the owner's name, to catch a second use.
    used_ips: HashMap<Ipv4Addr, String>,
}

/// A node name waiting for the uniqueness check.
struct NodeDef {
    name: String,
    at: Location,
    kind: &'static str,
}

/// Where a name was defined, to say "already defined at line N".
struct NameTable {
    kind: &'static str,
    names: HashMap<String, Location>,
}

impl NameTable {
    fn new(kind: &'static str) -> Self {
        NameTable {
            kind,
            names: HashMap::new(),
        }
    }
}

fn loc<T>(s: &S<T>) -> Location {
    s.referenced
}

fn quoted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if v.is_empty() {
        "(none defined)".to_string()
    } else {
        v.join(", ")
    }
}

impl Validator {
    fn err(&mut self, at: Location, msg: impl Into<String>, hint: impl Into<String>) {
        self.d.error(at, msg, hint);
    }

    /// Reports a reference to a `kind` the file does not define, listing the ones it does.
    fn not_defined<'a>(
        &mut self,
        s: &S<String>,
        kind: &str,
        defined: impl IntoIterator<Item = &'a str>,
    ) {
        self.err(
            loc(s),
            format!("{kind} `{}` is not defined", s.value),
            format!("defined {kind}s: {}", quoted_list(defined)),
        );
    }

    /// Parses `a.b.c.d/n`, rejecting host bits so a typo is not silently widened.
    fn cidr(&mut self, s: &S<Scalar>, what: &str) -> Option<Ipv4Net> {
        let text = s.value.0.trim();
        match text.parse::<Ipv4Net>() {
            Ok(net) if net.trunc() != net => {
                self.err(
                    loc(s),
                    format!("{what} `{text}` has host bits set"),
                    format!("the network address of that block is `{}`", net.trunc()),
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                let hint = match text.split_once('/') {
                    None => "write an IPv4 block with a prefix length, like `10.0.0.0/16`".into(),
                    Some((_, p)) if p.parse::<u8>().is_ok_and(|p| p > 32) => {
                        format!("an IPv4 prefix length is 0 to 32, not {p}")
                    }
                    Some(_) => "write an IPv4 block like `10.0.0.0/16`".to_string(),
                };
                self.err(
                    loc(s),
                    format!("{what} `{text}` is not a valid IPv4 CIDR"),
                    hint,
                );
                None
            }
        }
    }

    fn ip(&mut self, s: &S<Scalar>, what: &str) -> Option<Ipv4Addr> {
        let text = s.value.0.trim();
        match text.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    loc(s),
                    format!("{what} `{text}` is not a valid IPv4 address"),
                    "write four numbers 0-255 separated by dots, like `10.0.2.238`",
                );
                None
            }
        }
    }

    /// A node-style name: it becomes part of namespace names and DNS labels. Valid names
    /// are queued in `nodes`; `unique_nodes` then reports a name used twice.
    fn node_name(&mut self, s: &S<String>, kind: &'static str, nodes: &mut Vec<NodeDef>) -> bool {
        let name = &s.value;
        let ok_chars = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_chars {
            self.err(
                loc(s),
                format!("{kind} name `{name}` is not a valid name"),
                "use 1-32 letters, digits, `-` or `_`, starting with a letter or digit",
            );
            return false;
        }
        if RESERVED_NODE_NAMES.contains(&name.as_str()) {
            self.err(
                loc(s),
                format!("{kind} name `{name}` is reserved"),
                format!(
                    "vpclab uses {} for its own routers; pick another name",
                    quoted_list(RESERVED_NODE_NAMES.iter().copied())
                ),
            );
            return false;
        }
        nodes.push(NodeDef {
            name: s.value.clone(),
            at: loc(s),
            kind,
        });
        true
    }

    /// Every name a probe can point at shares one namespace. A name used twice is reported
    /// at its later use (in file order), naming the earlier one.
    fn unique_nodes(&mut self, mut nodes: Vec<NodeDef>) -> NameTable {
        nodes.sort_by_key(|n| (n.at.line(), n.at.column()));
        let mut table = NameTable::new("resource");
        let mut kinds: HashMap<String, &'static str> = HashMap::new();
        for n in nodes {
            if let Some(prev) = table.names.get(&n.name) {
                let line = prev.line();
                self.err(
                    n.at,
                    format!(
                        "{} name `{}` is already used by the {} at line {line}",
                        n.kind, n.name, kinds[&n.name]
                    ),
                    "instances, databases, gateways, Elastic IPs and internet hosts share one set of names; rename one of them",
                );
            } else {
                table.names.insert(n.name.clone(), n.at);
                kinds.insert(n.name, n.kind);
            }
        }
        table
    }

    fn unique(&mut self, s: &S<String>, kind: &str, table: &mut NameTable) -> bool {
        if let Some(prev) = table.names.get(&s.value) {
            let line = prev.line();
            self.err(
                loc(s),
                format!(
                    "{kind} name `{}` is already used by another {} at line {line}",
                    s.value, table.kind
                ),
                "names must be unique; rename one of them",
            );
            return false;
        }
        table.names.insert(s.value.clone(), loc(s));
        true
    }

    /// Records a private address, reporting a second use.
    fn claim(&mut self, at: Location, ip: Ipv4Addr, owner: &str) {
        if let Some(prev) = self.used_ips.get(&ip) {
            let prev = prev.clone();
            self.err(
                at,
                format!("private IP {ip} is already used by {prev}"),
                "each private IP belongs to one network interface; pick another or write `auto`",
            );
        } else {
            self.used_ips.insert(ip, owner.to_string());
        }
    }

    /// A fixed private IP must be inside its subnet and not one of the 5 reserved ones.
    fn fixed_private_ip(
        &mut self,
        s: &S<Scalar>,
        subnet: Option<&Subnet>,
        owner: &str,
    ) -> Option<Ipv4Addr> {
        let ip = self.ip(s, "private IP")?;
        let subnet = subnet?;
        if !subnet.cidr.contains(&ip) {
            self.err(
                loc(s),
                format!(
                    "private IP {ip} is outside subnet `{}` ({})",
                    subnet.name, subnet.cidr
                ),
                format!(
                    "pick an address in {} or write `auto`",
                    usable_range(subnet.cidr)
                ),
            );
            return None;
        }
        if let Some(why) = reserved_reason(subnet.cidr, ip) {
            self.err(
                loc(s),
                format!(
                    "private IP {ip} is {why} of subnet `{}` ({})",
                    subnet.name, subnet.cidr
                ),
                format!(
                    "AWS reserves the first four addresses and the last one of every subnet; use {}",
                    usable_range(subnet.cidr)
                ),
            );
            return None;
        }
        self.claim(loc(s), ip, owner);
        Some(ip)
    }

    /// A resource's private IP as written: `auto` (or not written), or a fixed one checked
    /// against its subnet. `None` after reporting a wrong fixed one.
    fn private_address(
        &mut self,
        written: Option<&S<Scalar>>,
        subnet: Option<&Subnet>,
        owner: &str,
    ) -> Option<Address> {
        match written {
            Some(s) if s.value.0 != "auto" => {
                self.fixed_private_ip(s, subnet, owner).map(Address::Fixed)
            }
            _ => Some(Address::Auto),
        }
    }

    /// The phases in the order they report: each checks one kind of resource and returns
    /// what passed, and later phases take earlier ones' results by reference. Addresses
    /// written as `auto` are handed out only when no phase found an error.
    fn lab(&mut self, f: &LabFile, opts: &Options) -> Option<Lab> {
        let name = self.lab_name(f, opts);
        let region_azs = self.region(f);
        // Every name a probe can point at (`from:`/`to:`) shares one table.
        let mut nodes: Vec<NodeDef> = Vec::new();
        let net = self.network(f, region_azs.as_deref(), &mut nodes);
        let key_pairs = self.key_pairs(f);
        // Before security groups: `my-ip` resolves to one of the internet hosts.
        let internet = self.internet_hosts(f, &net, &mut nodes);
        let security_groups = self.security_groups(f, internet.my_ip());
        let network_acls = self.network_acls(f, &net);
        // Which resource each Elastic IP is associated with, to catch a second one.
        let mut eip_owners: HashMap<String, String> = HashMap::new();
        let nat_gateways = self.nat_gateways(f, &net, &mut eip_owners, &mut nodes);
        let instances = self.instances(
            f,
            &net,
            &key_pairs,
            &security_groups,
            &mut eip_owners,
            &mut nodes,
        );
        let db_subnet_groups = self.db_subnet_groups(f, &net);
        let databases = self.databases(f, &net, &db_subnet_groups, &security_groups, &mut nodes);
        let mut alloc = Allocator::new(net.public_pool(), internet.ips.keys().copied(), &opts.kept);
        let elastic_ips = self.elastic_ips(f, &net, &internet, &mut alloc, &mut nodes);
        let nodes = self.unique_nodes(nodes);

        if self.d.has_errors() {
            // Still check expectations as far as names allow, so every mistake shows in
            // one run.
            self.expectations_without_lab(f);
            return None;
        }

        // A phase leaves a resource out only after reporting an error, so from here on
        // every resource of the file is present, in file order, and the indexes the
        // phases recorded (Elastic IPs, subnets, groups) point at the right ones.
        //
        // Instances' auto addresses come first: the write-up's web server gets the pool's
        // first one.
        let instances = self.address_instances(instances, &net.subnets, &mut alloc);
        let elastic_ips = self.allocate_elastic_ips(elastic_ips, &mut alloc);
        let instances = instances
            .into_iter()
            .map(|i| i.build(&name, &elastic_ips))
            .collect();
        let nat_gateways = self.allocate_nat_gateways(nat_gateways, &net.subnets, &mut alloc);
        let databases =
            self.allocate_databases(databases, &name, &f.region.value, &net.subnets, &mut alloc);
        self.database_server_names(&databases, &nodes);

        let mut lab = Lab {
            name,
            description: f.description.clone(),
            region: f.region.value.clone(),
            public_ip_pool: net.public_pool(),
            vpc: net.vpc,
            subnets: net.subnets,
            route_tables: net.route_tables,
            internet_gateway: net.internet_gateway,
            elastic_ips,
            nat_gateways,
            key_pairs: f.key_pairs.iter().map(|k| k.value.clone()).collect(),
            security_groups,
            network_acls,
            instances,
            db_subnet_groups,
            databases,
            internet: internet.hosts,
            expectations: Vec::new(),
        };
        lab.expectations = self.expectations(f, &lab);
        (!self.d.has_errors()).then_some(lab)
    }

    /// The region's availability zones, or `None` (after reporting) for an unknown region.
    fn region(&mut self, f: &LabFile) -> Option<Vec<String>> {
        let region = &f.region.value;
        let azs = aws::region_azs(region);
        if azs.is_none() {
            self.err(
                loc(&f.region),
                format!("unknown region `{region}`"),
                format!(
                    "known regions: {}",
                    aws::REGIONS
                        .iter()
                        .map(|(r, _)| *r)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        azs
    }

    fn lab_name(&mut self, f: &LabFile, opts: &Options) -> String {
        let (name, at) = match (&opts.name_override, &f.name) {
            (Some(n), _) => (n.clone(), None),
            (None, Some(s)) => (s.value.clone(), Some(loc(s))),
            (None, None) => (opts.default_name.clone(), None),
        };
        if let Err(why) = check_lab_name(&name) {
            // A bad --name or file stem has no place in the file (the command line reports
            // it first, before parsing).
            self.err(
                at.unwrap_or(Location::UNKNOWN),
                format!("lab name `{name}` is not valid: {why}"),
                LAB_NAME_HINT,
            );
        }
        name
    }

    fn services(&mut self, list: &[S<String>], owner: &str) -> Vec<Service> {
        let mut out = Vec::new();
        for s in list {
            match Service::ALL.iter().find(|x| x.as_str() == s.value) {
                Some(svc) if out.contains(svc) => self.err(
                    loc(s),
                    format!("service `{}` is listed twice for {owner}", s.value),
                    "list each service once",
                ),
                Some(svc) => out.push(*svc),
                None => self.err(
                    loc(s),
                    format!("unknown service `{}` for {owner}", s.value),
                    "services are `ssh`, `http` and `https`",
                ),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn a_name_used_twice_is_reported_at_its_later_use() {
        // `web` is an instance (earlier in the file) and now also an internet host.
        let text = edit(
            "stranger:    { ip: 192.0.2.66 }",
            "web:         { ip: 192.0.2.66 }",
        );
        let errs = errors(&text);
        let web_line = pos(&text, "  web:", "web").0;
        let (line, col, m) = &errs[0];
        assert_eq!(
            m,
            &format!("internet host name `web` is already used by the instance at line {web_line}")
        );
        assert_eq!((*line, *col), pos(&text, "web:         {", "web"));
    }

    #[test]
    fn a_private_ip_used_twice_names_its_first_owner() {
        let text = edit("private_ip: 10.0.1.101", "private_ip: 10.0.1.64");
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "private IP 10.0.1.64 is already used by instance `app`");
        assert_eq!(
            (line, col),
            pos(&text, "standby_ip: 10.0.1.64", "10.0.1.64")
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong_where() {
        // A duplicate key names the first one.
        let text = edit("  app:\n", "  web:\n");
        let (line, col, m) = one_error(&text);
        let first = pos(&text, "  web:", "web").0;
        assert_eq!(
            m,
            format!("key `web` appears twice in this map (first at line {first})")
        );
        assert_eq!(col, 3);
        assert!(line > first);
        // A missing key points at the map that lacks it.
        let text = edit("    subnet: public-2c\n", "");
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "missing field `subnet` in `web`");
        assert_eq!((line, col), pos(&text, "  web:", "web"));
        // A list where one value belongs points at the value.
        let text = edit("port: 3306", "port: [3306, 3307]");
        let (line, col, m) = one_error(&text);
        assert_eq!(
            m,
            "expected a single value (text or number) here, found a list"
        );
        assert_eq!((line, col), pos(&text, "port: [3306", "["));
    }
}
