//! RDS: DB subnet groups, databases, and where each database's primary and standby go.

use super::alloc::{Address, Allocator};
use super::network::Network;
use super::{NameTable, NodeDef, Validator, loc, quoted_list};
use crate::topology::aws::endpoint_id;
use crate::topology::file::{self, LabFile, S, Scalar};
use crate::topology::model::{Database, DbNode, DbSubnetGroup, SecurityGroup, Subnet, az_suffix};
use serde_saphyr::Location;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// A database that passed its checks.
pub(super) struct CheckedDatabase {
    name: String,
    at: Location,
    engine: String,
    multi_az: bool,
    subnet_group: usize,
    primary: Placement,
    standby: Option<Placement>,
    master_username: String,
    master_password: Option<String>,
    database_name: String,
    /// Where the file says `publicly_accessible: true`, if it does.
    publicly_accessible: Option<Location>,
    security_groups: Vec<usize>,
    port: u16,
}

/// Where a database server goes: its subnet and its private address there.
struct Placement {
    subnet: usize,
    private_ip: Address,
}

impl Validator {
    pub(super) fn db_subnet_groups(&mut self, f: &LabFile, net: &Network) -> Vec<DbSubnetGroup> {
        let mut groups = Vec::new();
        for (key, list) in &f.db_subnet_groups {
            let mut members = Vec::new();
            for s in list {
                if let Some(i) = self.subnet_ref(f, net, s) {
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
            let azs: HashSet<&str> = members
                .iter()
                .map(|i| net.subnets[*i].az.as_str())
                .collect();
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
            groups.push(DbSubnetGroup {
                name: key.value.clone(),
                subnets: members,
            });
        }
        groups
    }

    pub(super) fn databases(
        &mut self,
        f: &LabFile,
        net: &Network,
        groups: &[DbSubnetGroup],
        security_groups: &[SecurityGroup],
        nodes: &mut Vec<NodeDef>,
    ) -> Vec<CheckedDatabase> {
        let mut out = Vec::new();
        for (key, db) in &f.databases {
            self.node_name(key, "database", nodes);
            if !["mysql", "mariadb"].contains(&db.engine.value.as_str()) {
                self.err(
                    loc(&db.engine),
                    format!("engine `{}` is not supported", db.engine.value),
                    "vpclab runs `mysql` (served by MariaDB, which speaks the MySQL protocol)",
                );
            }
            let group = groups.iter().position(|g| g.name == db.subnet_group.value);
            if group.is_none() {
                let defined = f.db_subnet_groups.keys().map(|k| k.value.as_str());
                self.not_defined(&db.subnet_group, "DB subnet group", defined);
            }
            let multi_az = db.multi_az.as_ref().is_some_and(|b| b.value);
            self.master_username(&db.master_username);
            if let Some(p) = &db.master_password {
                self.master_password(p);
            }
            if let Some(n) = &db.database_name {
                self.database_name(n);
            }
            let port = self.database_port(db.port.as_ref());
            let security_groups = self.attached_security_groups(
                security_groups,
                &db.security_groups,
                loc(key),
                &format!("database `{}`", key.value),
                "add `security_groups: [<name>]`",
            );
            let Some(group) = group else { continue };
            let Some((primary, standby)) =
                self.db_placement(db, key, &groups[group], &net.subnets, multi_az)
            else {
                continue;
            };
            out.push(CheckedDatabase {
                name: key.value.clone(),
                at: loc(key),
                engine: db.engine.value.clone(),
                multi_az,
                subnet_group: group,
                primary,
                standby,
                master_username: db.master_username.value.clone(),
                master_password: db.master_password.as_ref().map(|p| p.value.clone()),
                database_name: db
                    .database_name
                    .as_ref()
                    .map(|n| n.value.clone())
                    .unwrap_or_else(|| "app".into()),
                publicly_accessible: db.publicly_accessible.as_ref().filter(|b| b.value).map(loc),
                security_groups,
                port,
            });
        }
        out
    }

    /// The databases with their servers' `auto` addresses handed out, in file order: each
    /// server's private address, then its public one if the database is publicly accessible.
    pub(super) fn allocate_databases(
        &mut self,
        databases: Vec<CheckedDatabase>,
        lab_name: &str,
        region: &str,
        subnets: &[Subnet],
        alloc: &mut Allocator,
    ) -> Vec<Database> {
        let endpoint_id = endpoint_id(lab_name);
        let mut out = Vec::new();
        for d in databases {
            let mut server = |v: &mut Self, p: &Placement| {
                let subnet = &subnets[p.subnet];
                let name = format!("{}-{}", d.name, az_suffix(region, &subnet.az));
                let private_ip = alloc.private(v, p.private_ip, subnet, &name, d.at);
                let public_ip = d.publicly_accessible.map(|_| alloc.public(v, &name, d.at));
                DbNode {
                    name,
                    subnet: p.subnet,
                    private_ip,
                    public_ip,
                }
            };
            let primary = server(self, &d.primary);
            let standby = d.standby.as_ref().map(|p| server(self, p));
            if let Some(at) = d.publicly_accessible
                && !subnets[primary.subnet].public
            {
                self.d.warning(
                    at,
                    format!(
                        "database `{}` is publicly accessible but its subnet `{}` has no route to the internet gateway",
                        d.name, subnets[primary.subnet].name
                    ),
                    "as on AWS, its public IP is unusable; use public subnets in the DB subnet group",
                );
            }
            out.push(Database {
                endpoint: format!(
                    "{}.{endpoint_id}.{region}.rds.amazonaws.com",
                    d.name.to_lowercase()
                ),
                name: d.name,
                engine: d.engine,
                multi_az: d.multi_az,
                subnet_group: d.subnet_group,
                primary,
                standby,
                master_username: d.master_username,
                master_password: d.master_password,
                database_name: d.database_name,
                publicly_accessible: d.publicly_accessible.is_some(),
                security_groups: d.security_groups,
                port: d.port,
            });
        }
        out
    }

    /// Database servers are named `<database>-<az suffix>`, and those names join the one
    /// namespace of names: reports a resource that already has one.
    pub(super) fn database_server_names(&mut self, databases: &[Database], nodes: &NameTable) {
        for d in databases {
            for n in d.nodes() {
                if let Some(at) = nodes.names.get(&n.name) {
                    self.err(
                        *at,
                        format!(
                            "name `{}` is also the name vpclab gives a server of database `{}`",
                            n.name, d.name
                        ),
                        "rename the resource: database servers are named <database>-<az suffix>",
                    );
                }
            }
        }
    }

    fn database_name(&mut self, n: &S<String>) {
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

    /// The port the file gives, or MySQL's 3306 (also after reporting a wrong one).
    fn database_port(&mut self, port: Option<&S<Scalar>>) -> u16 {
        let Some(p) = port else { return 3306 };
        match p.value.0.parse::<u64>() {
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

    /// Where the primary and the standby go, both in the DB subnet group: the primary in
    /// `availability_zone` (or at `primary_ip`), the standby in another zone.
    fn db_placement(
        &mut self,
        db: &file::DatabaseFile,
        key: &S<String>,
        group: &DbSubnetGroup,
        subnets: &[Subnet],
        multi_az: bool,
    ) -> Option<(Placement, Option<Placement>)> {
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
        // The primary's subnet unless `primary_ip` picks another: the group's first one in
        // `availability_zone`, if the file gives one.
        let Some(first_in_az) = group
            .subnets
            .iter()
            .copied()
            .find(|i| az_wanted.is_none_or(|az| subnets[*i].az == az.value))
        else {
            // The group is not empty, so only a wanted zone can be missing from it.
            if let Some(az) = az_wanted {
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
            }
            return None;
        };
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
                Placement {
                    subnet: si,
                    private_ip: Address::Fixed(ip),
                }
            }
            _ => Placement {
                subnet: first_in_az,
                private_ip: Address::Auto,
            },
        };
        let standby = if multi_az {
            let other_az = |i: &usize| subnets[*i].az != subnets[primary.subnet].az;
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
                    Some(Placement {
                        subnet: si,
                        private_ip: Address::Fixed(ip),
                    })
                }
                _ => group
                    .subnets
                    .iter()
                    .find(|i| other_az(i))
                    .map(|si| Placement {
                        subnet: *si,
                        private_ip: Address::Auto,
                    }),
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
        Some((primary, standby))
    }
}
