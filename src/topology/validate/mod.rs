//! AWS's rules for a lab file. Every problem is collected (none stops the others), each
//! pinned to its line and column with a hint, and a `Lab` is built only when none is an
//! error. Addresses written as `auto` are allocated here, deterministically.

use super::aws::{
    self, endpoint_id, overlaps, reserved_reason, special_block, stable_hash, usable_range,
};
use super::diag::Diagnostics;
use super::file::{self, LabFile, S, Scalar};
use super::model::*;
use super::well_known::{INTERNET_RESOLVER, RESERVED_NODE_NAMES, host_block};
use super::{LAB_NAME_HINT, check_lab_name};
use ipnet::Ipv4Net;
use serde_saphyr::Location;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

mod alloc;
mod expect;
mod network;
mod security_groups;
#[cfg(test)]
mod testing;

use alloc::Allocator;

pub struct Options {
    /// The lab name to use instead of the file's `name:` (from `--name`).
    pub name_override: Option<String>,
    /// Used when the file has no `name:` (the file's stem).
    pub default_name: String,
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

    fn lab(&mut self, f: &LabFile, opts: &Options) -> Option<Lab> {
        let name = self.lab_name(f, opts);
        let region = f.region.value.clone();
        let region_azs = aws::region_azs(&region);
        if region_azs.is_none() {
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

        // Every name a probe can point at (`from:`/`to:`) shares one table.
        let mut nodes: Vec<NodeDef> = Vec::new();

        let net = self.network(f, region_azs.as_deref(), &mut nodes);
        let subnet_ref = |v: &mut Self, s: &S<String>| v.subnet_ref(f, &net, s);
        let subnets = &net.subnets;
        let vpc_cidr = net.vpc_cidr;
        let pool = net.pool;

        // Key pairs
        let mut key_names = NameTable::new("key pair");
        for k in &f.key_pairs {
            self.unique(k, "key pair", &mut key_names);
        }

        // Internet hosts (before security groups: `my-ip` resolves to one of them)
        let mut internet = Vec::new();
        let mut internet_ips: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut my_ip_at: Option<(Location, String)> = None;
        for (key, h) in &f.internet {
            self.node_name(key, "internet host", &mut nodes);
            let ip = self.ip(&h.ip, "internet host IP");
            if let Some(ip) = ip {
                self.internet_ip(h, ip, vpc_cidr, pool, &internet_ips);
                internet_ips.insert(ip, key.value.clone());
            }
            let my_ip = h.my_ip.as_ref().is_some_and(|b| b.value);
            if my_ip {
                if let Some((_, prev)) = &my_ip_at {
                    let prev = prev.clone();
                    self.err(
                        loc(h.my_ip.as_ref().unwrap()),
                        format!(
                            "internet host `{}` is marked `my_ip`, but so is `{prev}`",
                            key.value
                        ),
                        "only one host can be \"my IP\"; remove one of the marks",
                    );
                } else {
                    my_ip_at = Some((loc(key), key.value.clone()));
                }
            }
            let services = self.services(&h.services, &format!("internet host `{}`", key.value));
            internet.push(InternetHost {
                name: key.value.clone(),
                ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                my_ip,
                services,
            });
        }
        let my_ip = internet.iter().find(|h| h.my_ip).map(|h| h.ip);

        // Security groups
        let security_groups = self.security_groups(f, my_ip);
        let sg_index: HashMap<String, usize> = security_groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
        let sg_refs = |v: &mut Self, list: &[S<String>]| -> Vec<usize> {
            let mut out = Vec::new();
            for s in list {
                match sg_index.get(&s.value) {
                    Some(i) => out.push(*i),
                    None => v.err(
                        loc(s),
                        format!("security group `{}` is not defined", s.value),
                        format!(
                            "defined security groups: {}",
                            quoted_list(security_groups.iter().map(|g| g.name.as_str()))
                        ),
                    ),
                }
            }
            out
        };

        // NAT gateways
        let mut eip_users: HashMap<String, (Location, String)> = HashMap::new();
        let mut nat_pending = Vec::new();
        for (key, n) in &f.nat_gateways {
            self.node_name(key, "NAT gateway", &mut nodes);
            let subnet = subnet_ref(self, &n.subnet);
            if let Some(si) = subnet
                && net.is_known_private(si)
            {
                self.err(
                    loc(&n.subnet),
                    format!(
                        "NAT gateway `{}` is in private subnet `{}`",
                        key.value, subnets[si].name
                    ),
                    "a NAT gateway must sit in a public subnet (one whose route table sends 0.0.0.0/0 to the internet gateway)",
                );
            }
            self.eip_use(f, &n.elastic_ip, &key.value, &mut eip_users);
            let fixed = n.private_ip.as_ref().and_then(|s| {
                if s.value.0 == "auto" {
                    None
                } else {
                    self.fixed_private_ip(
                        s,
                        subnet.map(|i| &subnets[i]),
                        &format!("NAT gateway `{}`", key.value),
                    )
                }
            });
            nat_pending.push((key.value.clone(), subnet, fixed, n.elastic_ip.value.clone()));
        }

        // Instances
        let mut inst_pending = Vec::new();
        for (key, i) in &f.instances {
            self.node_name(key, "instance", &mut nodes);
            let owner = format!("instance `{}`", key.value);
            let subnet = subnet_ref(self, &i.subnet);
            let fixed = match &i.private_ip {
                Some(s) if s.value.0 != "auto" => {
                    self.fixed_private_ip(s, subnet.map(|x| &subnets[x]), &owner)
                }
                _ => None,
            };
            let public = match &i.public_ip {
                None => PublicPending::None,
                Some(s) => match s.value.0.as_str() {
                    "none" | "false" => PublicPending::None,
                    "auto" | "true" => PublicPending::Auto,
                    other => {
                        let spanned = S {
                            value: other.to_string(),
                            referenced: s.referenced,
                            defined: s.defined,
                        };
                        if f.elastic_ips.keys().any(|k| k.value == other) {
                            self.eip_use(f, &spanned, &key.value, &mut eip_users);
                            PublicPending::Elastic(other.to_string())
                        } else if other.parse::<Ipv4Addr>().is_ok() {
                            self.err(
                                loc(s),
                                format!("public IP `{other}` is not `none`, `auto` or an Elastic IP"),
                                format!(
                                    "to fix the address, define an Elastic IP (`elastic_ips: {{ {}-eip: {other} }}`) and write its name here",
                                    key.value
                                ),
                            );
                            PublicPending::None
                        } else {
                            self.err(
                                loc(s),
                                format!("Elastic IP `{other}` is not defined"),
                                format!(
                                    "write `none`, `auto`, or one of the Elastic IPs: {}",
                                    quoted_list(f.elastic_ips.keys().map(|k| k.value.as_str()))
                                ),
                            );
                            PublicPending::None
                        }
                    }
                },
            };
            if let (Some(si), PublicPending::Auto | PublicPending::Elastic(_)) = (subnet, &public)
                && net.is_known_private(si)
            {
                self.d.warning(
                    loc(i.public_ip.as_ref().unwrap()),
                    format!(
                        "instance `{}` has a public IP but subnet `{}` has no route to the internet gateway",
                        key.value, subnets[si].name
                    ),
                    "as on AWS, it can't use the public IP; move it to a public subnet or write `public_ip: none`",
                );
            }
            let key_pair = i.key_pair.as_ref().map(|k| {
                if !key_names.names.contains_key(&k.value) {
                    self.err(
                        loc(k),
                        format!("key pair `{}` is not defined", k.value),
                        format!(
                            "add it to `key_pairs:`; defined key pairs: {}",
                            quoted_list(f.key_pairs.iter().map(|k| k.value.as_str()))
                        ),
                    );
                }
                k.value.clone()
            });
            let services = self.services(&i.services, &owner);
            if let Some(ssh) = i.services.iter().find(|s| s.value == Service::Ssh.as_str())
                && key_pair.is_none()
            {
                self.err(
                    loc(ssh),
                    format!("instance `{}` runs ssh but has no key pair", key.value),
                    "EC2 logs in with a key pair only: add `key_pair: <name>`",
                );
            }
            let sgs = if i.security_groups.is_empty() {
                self.err(
                    loc(key),
                    format!("instance `{}` has no security group", key.value),
                    "every instance needs at least one: add `security_groups: [<name>]`",
                );
                Vec::new()
            } else {
                sg_refs(self, &i.security_groups)
            };
            inst_pending.push(InstPending {
                name: key.value.clone(),
                subnet,
                fixed,
                public,
                key_pair,
                sgs,
                services,
            });
        }

        // DB subnet groups
        let mut groups = Vec::new();
        let mut group_index = HashMap::new();
        for (key, list) in &f.db_subnet_groups {
            let mut members = Vec::new();
            for s in list {
                if let Some(i) = subnet_ref(self, s) {
                    if members.contains(&i) {
                        self.err(
                            loc(s),
                            format!("subnet `{}` is listed twice", s.value),
                            "list each subnet once",
                        );
                    } else {
                        members.push(i);
                    }
                }
            }
            let azs: HashSet<&str> = members.iter().map(|i| subnets[*i].az.as_str()).collect();
            if azs.len() < 2 && members.len() == list.len() {
                self.err(
                    loc(key),
                    match azs.iter().next() {
                        Some(az) => format!(
                            "DB subnet group `{}` covers only one availability zone, `{az}`",
                            key.value
                        ),
                        None => format!("DB subnet group `{}` has no subnets", key.value),
                    },
                    "RDS requires subnets in at least two availability zones (and Multi-AZ places the standby in the other one)",
                );
            }
            group_index.insert(key.value.clone(), groups.len());
            groups.push(DbSubnetGroup {
                name: key.value.clone(),
                subnets: members,
            });
        }

        // Databases
        let mut db_pending = Vec::new();
        for (key, db) in &f.databases {
            self.node_name(key, "database", &mut nodes);
            if !["mysql", "mariadb"].contains(&db.engine.value.as_str()) {
                self.err(
                    loc(&db.engine),
                    format!("engine `{}` is not supported", db.engine.value),
                    "vpclab runs `mysql` (served by MariaDB, which speaks the MySQL protocol)",
                );
            }
            let group = match group_index.get(&db.subnet_group.value) {
                Some(g) => Some(*g),
                None => {
                    self.err(
                        loc(&db.subnet_group),
                        format!("DB subnet group `{}` is not defined", db.subnet_group.value),
                        format!(
                            "defined DB subnet groups: {}",
                            quoted_list(f.db_subnet_groups.keys().map(|k| k.value.as_str()))
                        ),
                    );
                    None
                }
            };
            let multi_az = db.multi_az.as_ref().is_some_and(|b| b.value);
            self.master_username(&db.master_username);
            if let Some(p) = &db.master_password {
                self.master_password(p);
            }
            if let Some(n) = &db.database_name {
                let ok = n.value.len() <= 64
                    && n.value
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                    && n.value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    self.err(
                        loc(n),
                        format!("database name `{}` is not valid", n.value),
                        "use letters, digits and `_`, starting with a letter (at most 64)",
                    );
                }
            }
            let port = match &db.port {
                None => 3306,
                Some(p) => match p.value.0.parse::<u64>() {
                    Ok(n) if (1150..=65535).contains(&n) => n as u16,
                    parsed => {
                        self.err(
                            loc(p),
                            match parsed {
                                Ok(n) => format!("database port {n} is outside 1150-65535"),
                                Err(_) => format!("database port `{}` is not a number", p.value.0),
                            },
                            "RDS for MySQL accepts ports 1150 to 65535 (the default is 3306)",
                        );
                        3306
                    }
                },
            };
            let sgs = if db.security_groups.is_empty() {
                self.err(
                    loc(key),
                    format!("database `{}` has no security group", key.value),
                    "add `security_groups: [<name>]`",
                );
                Vec::new()
            } else {
                sg_refs(self, &db.security_groups)
            };
            let placement =
                group.and_then(|g| self.db_placement(db, key, &groups[g], subnets, multi_az));
            db_pending.push((key, db, group, multi_az, port, sgs, placement));
        }

        // Elastic IPs: fixed ones are claimed now so auto ones never collide with them.
        let pool = net.public_pool();
        let mut alloc = Allocator::new(pool, internet_ips.keys().copied());
        let mut eip_fixed: Vec<Option<Ipv4Addr>> = Vec::new();
        for (key, val) in &f.elastic_ips {
            self.node_name(key, "Elastic IP", &mut nodes);
            let fixed = if val.value.0 == "auto" {
                None
            } else if let Some(ip) = self.ip(val, "Elastic IP") {
                if net.vpc.cidr.contains(&ip) {
                    self.err(
                        loc(val),
                        format!("Elastic IP {ip} is inside the VPC CIDR {}", net.vpc.cidr),
                        format!("an Elastic IP is public: pick one from {pool}"),
                    );
                } else if !alloc.claim_public(ip) {
                    self.err(
                        loc(val),
                        format!("Elastic IP {ip} is already in use"),
                        "every public address belongs to one resource",
                    );
                } else if let Some(h) = internet.iter().find(|h| host_block(h.ip).contains(&ip)) {
                    self.err(
                        loc(val),
                        format!(
                            "Elastic IP {ip} is on the /24 of internet host `{}` ({})",
                            h.name,
                            host_block(h.ip)
                        ),
                        format!("that /24 is a LAN of the internet, not routed to the lab; pick an address from {pool}"),
                    );
                }
                Some(ip)
            } else {
                None
            };
            eip_fixed.push(fixed);
        }
        let nodes = self.unique_nodes(nodes);

        // Expectations are resolved once names and addresses are known (below).
        if self.d.has_errors() {
            // Still check expectations as far as names allow, so every mistake shows in
            // one run.
            for e in &f.expect {
                self.expect_shape(&e.value);
                self.expect_names(&e.value, f);
            }
            return None;
        }

        // ---- Allocation: fixed addresses are claimed; now hand out `auto` ones. ----
        // Instances' auto public IPs first: the write-up's web server gets the first address.
        let mut instances = Vec::new();
        for (p, (key, _)) in inst_pending.into_iter().zip(&f.instances) {
            let subnet = p.subnet.unwrap();
            let private_ip = match p.fixed {
                Some(ip) => ip,
                None => alloc.private(self, &subnets[subnet], &p.name, loc(key)),
            };
            let public_ip = match &p.public {
                PublicPending::Auto => PublicIp::Auto {
                    address: alloc.public(self, loc(key)),
                },
                // Elastic IPs are filled in once they are allocated, below.
                PublicPending::None | PublicPending::Elastic(_) => PublicIp::None,
            };
            instances.push((
                p,
                Instance {
                    name: key.value.clone(),
                    id: format!("i-0{:016x}", stable_hash(&[&name, &key.value])),
                    subnet,
                    private_ip,
                    public_ip,
                    key_pair: None,
                    security_groups: Vec::new(),
                    services: Vec::new(),
                },
            ));
        }
        let mut elastic_ips: Vec<ElasticIp> = Vec::new();
        for ((key, _), fixed) in f.elastic_ips.iter().zip(eip_fixed) {
            let address = match fixed {
                Some(ip) => ip,
                None => alloc.public(self, loc(key)),
            };
            elastic_ips.push(ElasticIp {
                name: key.value.clone(),
                address,
            });
        }
        let eip_index = |n: &str| elastic_ips.iter().position(|e| e.name == n).unwrap();
        let instances: Vec<Instance> = instances
            .into_iter()
            .map(|(p, mut i)| {
                if let PublicPending::Elastic(e) = &p.public {
                    let eip = eip_index(e);
                    i.public_ip = PublicIp::Elastic {
                        eip,
                        address: elastic_ips[eip].address,
                    };
                }
                i.key_pair = p.key_pair;
                i.security_groups = p.sgs;
                i.services = p.services;
                i
            })
            .collect();

        let mut nat_gateways = Vec::new();
        for ((name, subnet, fixed, eip), (key, _)) in nat_pending.into_iter().zip(&f.nat_gateways) {
            let subnet = subnet.unwrap();
            let private_ip = match fixed {
                Some(ip) => ip,
                None => alloc.private(self, &subnets[subnet], &name, loc(key)),
            };
            nat_gateways.push(NatGateway {
                name,
                subnet,
                private_ip,
                elastic_ip: eip_index(&eip),
            });
        }

        let endpoint_id = endpoint_id(&name);
        let mut databases = Vec::new();
        for (key, db, group, multi_az, port, sgs, placement) in db_pending {
            let (primary_subnet, primary_fixed, standby) = placement.unwrap();
            let publicly = db.publicly_accessible.as_ref().is_some_and(|b| b.value);
            let mut node = |v: &mut Self, si: usize, fixed: Option<Ipv4Addr>| {
                let node_name = format!("{}-{}", key.value, az_suffix(&region, &subnets[si].az));
                let private_ip = match fixed {
                    Some(ip) => ip,
                    None => alloc.private(v, &subnets[si], &node_name, loc(key)),
                };
                DbNode {
                    name: node_name,
                    subnet: si,
                    private_ip,
                    public_ip: publicly.then(|| alloc.public(v, loc(key))),
                }
            };
            let primary = node(self, primary_subnet, primary_fixed);
            let standby = standby.map(|(si, fixed)| node(self, si, fixed));
            if publicly && !subnets[primary.subnet].public {
                self.d.warning(
                    loc(db.publicly_accessible.as_ref().unwrap()),
                    format!(
                        "database `{}` is publicly accessible but its subnet `{}` has no route to the internet gateway",
                        key.value, subnets[primary.subnet].name
                    ),
                    "as on AWS, its public IP is unusable; use public subnets in the DB subnet group",
                );
            }
            databases.push(Database {
                name: key.value.clone(),
                engine: db.engine.value.clone(),
                multi_az,
                subnet_group: group.unwrap(),
                primary,
                standby,
                master_username: db.master_username.value.clone(),
                master_password: db.master_password.as_ref().map(|p| p.value.clone()),
                database_name: db
                    .database_name
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| "app".into()),
                publicly_accessible: publicly,
                security_groups: sgs,
                port,
                endpoint: format!(
                    "{}.{endpoint_id}.{region}.rds.amazonaws.com",
                    key.value.to_lowercase()
                ),
            });
        }
        // Database node names join the shared namespace of names.
        for d in &databases {
            for n in d.nodes() {
                if let Some(prev) = nodes.names.get(&n.name) {
                    let at = *prev;
                    self.err(
                        at,
                        format!(
                            "name `{}` is also the name vpclab gives a server of database `{}`",
                            n.name, d.name
                        ),
                        "rename the resource: database servers are named <database>-<az suffix>",
                    );
                }
            }
        }

        let mut lab = Lab {
            name,
            description: f.description.clone(),
            region,
            vpc: net.vpc,
            public_ip_pool: pool,
            subnets: net.subnets,
            route_tables: net.route_tables,
            internet_gateway: net.internet_gateway,
            elastic_ips,
            nat_gateways,
            key_pairs: f.key_pairs.iter().map(|k| k.value.clone()).collect(),
            security_groups,
            instances,
            db_subnet_groups: groups,
            databases,
            internet,
            expectations: Vec::new(),
        };
        lab.expectations = f
            .expect
            .iter()
            .filter_map(|e| self.expectation(e, &lab))
            .collect();
        (!self.d.has_errors()).then_some(lab)
    }

    fn lab_name(&mut self, f: &LabFile, opts: &Options) -> String {
        let (name, at) = match (&opts.name_override, &f.name) {
            (Some(n), _) => (n.clone(), None),
            (None, Some(s)) => (s.value.clone(), Some(loc(s))),
            (None, None) => (opts.default_name.clone(), None),
        };
        if let Err(why) = check_lab_name(&name) {
            match at {
                Some(at) => self.err(
                    at,
                    format!("lab name `{name}` is not valid: {why}"),
                    LAB_NAME_HINT,
                ),
                // A bad --name or file stem is reported by the command line, before parsing.
                None => self.err(
                    Location::UNKNOWN,
                    format!("lab name `{name}` is not valid: {why}"),
                    LAB_NAME_HINT,
                ),
            }
        }
        name
    }

    fn internet_ip(
        &mut self,
        h: &file::InternetHostFile,
        ip: Ipv4Addr,
        vpc: Option<Ipv4Net>,
        pool: Option<Ipv4Net>,
        seen: &HashMap<Ipv4Addr, String>,
    ) {
        let block = host_block(ip);
        let special = special_block(Ipv4Net::new(ip, 32).unwrap());
        // A /24 that overlaps the VPC or the pool is reported for its first host only.
        let lan_reported = seen.keys().any(|other| block.contains(other));
        if let Some(prev) = seen.get(&ip) {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is already used by `{prev}`"),
                "each internet host needs its own address",
            );
        } else if vpc.is_some_and(|v| v.contains(&ip)) {
            self.err(
                loc(&h.ip),
                format!(
                    "internet host address {ip} is inside the VPC CIDR {}",
                    vpc.unwrap()
                ),
                "internet hosts live outside the VPC; use RFC 5737 addresses like 203.0.113.10",
            );
        } else if pool.is_some_and(|p| p.contains(&ip)) {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is inside the public IP pool {}", pool.unwrap()),
                "the pool's addresses belong to instances and Elastic IPs; use another block, like 203.0.113.0/24",
            );
        } else if ip == INTERNET_RESOLVER {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is the internet's DNS resolver"),
                "vpclab runs the internet's resolver there; pick another address",
            );
        } else if let Some((range, why)) = special {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is in {why} {range}"),
                "vpclab's own links use 169.254.0.0/16 and the others are not host addresses; use RFC 5737 documentation addresses like 203.0.113.10 or 192.0.2.66",
            );
        } else if let Some(why) = match u32::from(ip) - u32::from(block.network()) {
            0 => Some("the network address of"),
            1 => Some("the internet router's address on"),
            255 => Some("the broadcast address of"),
            _ => None,
        } {
            self.err(
                loc(&h.ip),
                format!("internet host address {ip} is {why} its /24 ({block})"),
                "every /24 that holds internet hosts is a LAN whose .1 is the internet router (the hosts' gateway); use .2 to .254",
            );
        } else if !lan_reported && let Some(v) = vpc.filter(|v| overlaps(*v, block)) {
            self.err(
                loc(&h.ip),
                format!(
                    "the /24 of internet host address {ip} ({block}) overlaps the VPC CIDR {v}"
                ),
                "internet hosts sit on a /24 LAN outside the VPC; pick an address in another /24",
            );
        } else if !lan_reported && let Some(p) = pool.filter(|p| overlaps(*p, block)) {
            self.err(
                loc(&h.ip),
                format!("the /24 of internet host address {ip} ({block}) overlaps the public IP pool {p}"),
                "the internet reaches the pool through the internet gateway, not on a host's LAN; pick an address in another /24",
            );
        }
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

    fn eip_use(
        &mut self,
        f: &LabFile,
        eip: &S<String>,
        user: &str,
        users: &mut HashMap<String, (Location, String)>,
    ) {
        if !f.elastic_ips.keys().any(|k| k.value == eip.value) {
            self.err(
                loc(eip),
                format!("Elastic IP `{}` is not defined", eip.value),
                format!(
                    "add it under `elastic_ips:` (e.g. `{}: auto`); defined: {}",
                    eip.value,
                    quoted_list(f.elastic_ips.keys().map(|k| k.value.as_str()))
                ),
            );
            return;
        }
        if let Some((_, prev)) = users.get(&eip.value) {
            let prev = prev.clone();
            self.err(
                loc(eip),
                format!(
                    "Elastic IP `{}` is already associated with `{prev}`",
                    eip.value
                ),
                "an Elastic IP maps to one network interface at a time; allocate another",
            );
        } else {
            users.insert(eip.value.clone(), (loc(eip), user.to_string()));
        }
    }

    fn master_username(&mut self, u: &S<String>) {
        let n = &u.value;
        let ok = (1..=16).contains(&n.len())
            && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.err(
                loc(u),
                format!("master username `{n}` is not valid"),
                "RDS for MySQL wants 1 to 16 letters, digits or `_`, starting with a letter",
            );
        } else if ["root", "rdsadmin", "mysql"].contains(&n.to_lowercase().as_str()) {
            self.err(
                loc(u),
                format!("master username `{n}` is reserved"),
                "pick another name, like `admin`",
            );
        }
    }

    fn master_password(&mut self, p: &S<String>) {
        let bad = p
            .value
            .chars()
            .find(|c| matches!(c, '/' | '"' | '@' | '\'' | ' ') || !c.is_ascii_graphic());
        if p.value.len() < 8 || p.value.len() > 41 {
            self.err(
                loc(p),
                "master password must be 8 to 41 characters",
                "or leave it out: vpclab generates one into a 0600 file in the lab's state dir",
            );
        } else if let Some(c) = bad {
            self.err(
                loc(p),
                format!("master password contains `{c}`, which RDS does not allow"),
                "use printable ASCII except /, \", @, ' and spaces",
            );
        }
    }

    /// Where the primary and standby go: (primary subnet, fixed primary IP, standby).
    #[allow(clippy::type_complexity)]
    fn db_placement(
        &mut self,
        db: &file::DatabaseFile,
        key: &S<String>,
        group: &DbSubnetGroup,
        subnets: &[Subnet],
        multi_az: bool,
    ) -> Option<(usize, Option<Ipv4Addr>, Option<(usize, Option<Ipv4Addr>)>)> {
        if group.subnets.is_empty() {
            return None;
        }
        let in_group = |v: &mut Self, s: &S<Scalar>, role: &str| -> Option<(usize, Ipv4Addr)> {
            let ip = v.ip(s, &format!("{role} IP"))?;
            let owner = format!("the {role} of database `{}`", key.value);
            match group
                .subnets
                .iter()
                .find(|i| subnets[**i].cidr.contains(&ip))
            {
                Some(si) => {
                    let ip = v.fixed_private_ip(s, Some(&subnets[*si]), &owner)?;
                    Some((*si, ip))
                }
                None => {
                    v.err(
                        loc(s),
                        format!(
                            "{role} IP {ip} is not in any subnet of DB subnet group `{}`",
                            group.name
                        ),
                        format!(
                            "its subnets are {}",
                            group
                                .subnets
                                .iter()
                                .map(|i| format!("{} ({})", subnets[*i].name, subnets[*i].cidr))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
            }
        };
        let az_wanted = db.availability_zone.as_ref();
        if let Some(az) = az_wanted
            && !group.subnets.iter().any(|i| subnets[*i].az == az.value)
        {
            self.err(
                loc(az),
                format!(
                    "availability zone `{}` has no subnet in DB subnet group `{}`",
                    az.value, group.name
                ),
                format!(
                    "the group covers {}",
                    quoted_list(group.subnets.iter().map(|i| subnets[*i].az.as_str()))
                ),
            );
            return None;
        }
        let primary = match &db.primary_ip {
            Some(s) if s.value.0 != "auto" => {
                let (si, ip) = in_group(self, s, "primary")?;
                if let Some(az) = az_wanted
                    && subnets[si].az != az.value
                {
                    self.err(
                        loc(s),
                        format!(
                            "primary IP {ip} is in `{}` but `availability_zone` is `{}`",
                            subnets[si].az, az.value
                        ),
                        "the primary lives in `availability_zone`; pick an address there",
                    );
                    return None;
                }
                (si, Some(ip))
            }
            _ => {
                let si = *group
                    .subnets
                    .iter()
                    .find(|i| az_wanted.is_none_or(|az| subnets[**i].az == az.value))
                    .unwrap();
                (si, None)
            }
        };
        let standby = if multi_az {
            let other_az = |i: &usize| subnets[*i].az != subnets[primary.0].az;
            match &db.standby_ip {
                Some(s) if s.value.0 != "auto" => {
                    let (si, ip) = in_group(self, s, "standby")?;
                    if !other_az(&si) {
                        self.err(
                            loc(s),
                            format!(
                                "standby IP {ip} is in the primary's availability zone `{}`",
                                subnets[si].az
                            ),
                            "Multi-AZ puts the standby in another AZ; pick an address in another subnet of the group",
                        );
                        return None;
                    }
                    Some((si, Some(ip)))
                }
                _ => group
                    .subnets
                    .iter()
                    .find(|i| other_az(i))
                    .map(|si| (*si, None)),
            }
        } else {
            if let Some(s) = &db.standby_ip {
                self.err(
                    loc(s),
                    "`standby_ip` is set but `multi_az` is not true",
                    "a single-AZ database has no standby: add `multi_az: true` or remove `standby_ip`",
                );
            }
            None
        };
        Some((primary.0, primary.1, standby))
    }
}

enum PublicPending {
    None,
    Auto,
    Elastic(String),
}

struct InstPending {
    name: String,
    subnet: Option<usize>,
    fixed: Option<Ipv4Addr>,
    public: PublicPending,
    key_pair: Option<String>,
    sgs: Vec<usize>,
    services: Vec<Service>,
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn internet_hosts_avoid_the_router_network_and_broadcast_of_their_24() {
        for (ip, why) in [
            (
                "203.0.113.1",
                "is the internet router's address on its /24 (203.0.113.0/24)",
            ),
            (
                "203.0.113.0",
                "is the network address of its /24 (203.0.113.0/24)",
            ),
            (
                "203.0.113.255",
                "is the broadcast address of its /24 (203.0.113.0/24)",
            ),
        ] {
            let text = edit(
                "{ ip: 203.0.113.10, my_ip: true }",
                &format!("{{ ip: {ip}, my_ip: true }}"),
            );
            let (line, col, msg) = one_error(&text);
            assert_eq!(msg, format!("internet host address {ip} {why}"));
            assert_eq!((line, col), pos(&text, "my-laptop:", ip));
        }
        for ip in ["203.0.113.2", "203.0.113.254"] {
            let text = edit(
                "{ ip: 203.0.113.10, my_ip: true }",
                &format!("{{ ip: {ip}, my_ip: true }}"),
            );
            assert_eq!(errors(&text), []);
        }
    }

    #[test]
    fn internet_host_lans_stay_clear_of_the_pool_and_special_ranges() {
        let text = edit(
            "public_ip_pool: 198.51.100.0/24",
            "public_ip_pool: 203.0.113.128/25",
        );
        let (_, _, msg) = one_error(&text);
        assert_eq!(
            msg,
            "the /24 of internet host address 203.0.113.10 (203.0.113.0/24) overlaps the public IP pool 203.0.113.128/25"
        );
        let text = edit("{ ip: 192.0.2.66 }", "{ ip: 127.0.0.5 }");
        assert_eq!(
            one_error(&text).2,
            "internet host address 127.0.0.5 is in the loopback range 127.0.0.0/8"
        );
        let text = edit("my-nat-eip: auto", "my-nat-eip: 192.0.2.99");
        let (line, col, msg) = one_error(&text);
        assert_eq!(
            msg,
            "Elastic IP 192.0.2.99 is on the /24 of internet host `stranger` (192.0.2.0/24)"
        );
        assert_eq!((line, col), pos(&text, "my-nat-eip: 192", "192"));
    }

    #[test]
    fn ssh_without_key_pair_points_at_ssh() {
        let text = edit(
            "    key_pair: aws-study\n    security_groups: [MyApp",
            "    security_groups: [MyApp",
        );
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "instance `app` runs ssh but has no key pair");
        // `app`'s `services: [ssh]` is the last one in the file.
        let lines: Vec<&str> = text.lines().collect();
        let last = lines
            .iter()
            .rposition(|l| l.contains("services: [ssh]"))
            .unwrap();
        assert_eq!(
            (line, col),
            (last as u64 + 1, lines[last].find("ssh").unwrap() as u64 + 1)
        );
    }

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
