//! The edits AWS refuses to make to a running object. The lab behaves like AWS, so `apply`
//! refuses them too, naming the rule, rather than quietly rebuilding what a person
//! expected to keep (an instance replaced behind their back loses its disk and sessions).

use super::changes::pair;
use super::{Kind, Refusal};
use crate::topology::{Lab, PublicIp};
use std::fmt::Display;

/// Rebuilding under a new name is how AWS replaces an object, and what `apply` can do.
fn replace_hint(name: &str) -> String {
    format!(
        "destroy and recreate it in the file (under a new name, apply destroys `{name}` and creates the new one), or `vpclab down` and `vpclab up`"
    )
}

/// For an address: it may have moved only because the file says `auto` and an object was
/// added or removed before it, in which case writing the old address keeps it.
fn renumber_hint(name: &str, field: &str, was: impl Display) -> String {
    format!(
        "{}; if the file says `auto`, an object added or removed before it moved the allocation: write `{field}: {was}` to keep the address",
        replace_hint(name)
    )
}

/// The VPC cannot be replaced on its own: a lab has exactly one.
const RESTART_HINT: &str =
    "`vpclab down` and `vpclab up` (a lab has one VPC, so it cannot be recreated on its own)";

struct Refusals(Vec<Refusal>);

impl Refusals {
    fn refuse(
        &mut self,
        kind: Kind,
        name: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.0.push(Refusal {
            kind,
            name: name.to_string(),
            message: message.into(),
            hint: hint.into(),
        });
    }
}

/// Every edit from `old` to `new` that AWS would refuse, in the order of the listing.
pub(super) fn refusals(old: &Lab, new: &Lab) -> Vec<Refusal> {
    let mut r = Refusals(Vec::new());
    vpc(&mut r, old, new);
    subnets(&mut r, old, new);
    internet_gateway(&mut r, old, new);
    elastic_ips(&mut r, old, new);
    nat_gateways(&mut r, old, new);
    security_groups(&mut r, old, new);
    instances(&mut r, old, new);
    databases(&mut r, old, new);
    r.0
}

fn vpc(r: &mut Refusals, old: &Lab, new: &Lab) {
    let name = &new.vpc.name;
    if old.region != new.region {
        r.refuse(
            Kind::Vpc,
            name,
            format!(
                "region {} -> {}: a VPC and everything in it live in one region, and nothing moves between regions",
                old.region, new.region
            ),
            RESTART_HINT,
        );
    }
    if old.vpc.cidr != new.vpc.cidr {
        r.refuse(
            Kind::Vpc,
            name,
            format!(
                "CIDR {} -> {}: AWS fixes a VPC's CIDR block when it creates the VPC",
                old.vpc.cidr, new.vpc.cidr
            ),
            RESTART_HINT,
        );
    }
}

fn subnets(r: &mut Refusals, old: &Lab, new: &Lab) {
    let paired = pair(&old.subnets, &new.subnets, |s| &s.name);
    for s in paired.gone {
        let index = old.subnets.iter().position(|x| x.name == s.name).unwrap();
        let dependents = dependents(old, new, index);
        if !dependents.is_empty() {
            r.refuse(
                Kind::Subnet,
                &s.name,
                format!(
                    "cannot delete it while it holds {}: AWS refuses with DependencyViolation (the subnet has dependencies and cannot be deleted)",
                    dependents.join(", ")
                ),
                "destroy those in the file too (remove them, or recreate them under new names), or `vpclab down` and `vpclab up`",
            );
        }
    }
    for (o, n) in paired.kept {
        if o.cidr != n.cidr {
            r.refuse(
                Kind::Subnet,
                &n.name,
                format!(
                    "CIDR {} -> {}: AWS fixes a subnet's CIDR block when it creates the subnet",
                    o.cidr, n.cidr
                ),
                replace_hint(&n.name),
            );
        }
        if o.az != n.az {
            r.refuse(
                Kind::Subnet,
                &n.name,
                format!(
                    "availability zone {} -> {}: a subnet stays in the availability zone it was created in",
                    o.az, n.az
                ),
                replace_hint(&n.name),
            );
        }
    }
}

/// The network interfaces in old subnet `index` whose owners the new lab still has: what
/// keeps AWS from deleting the subnet.
fn dependents(old: &Lab, new: &Lab, index: usize) -> Vec<String> {
    let mut out: Vec<String> = old
        .instances
        .iter()
        .filter(|i| i.subnet == index && new.instance(&i.name).is_some())
        .map(|i| format!("instance `{}`", i.name))
        .collect();
    out.extend(
        old.nat_gateways
            .iter()
            .filter(|g| g.subnet == index && new.nat_gateways.iter().any(|n| n.name == g.name))
            .map(|g| format!("nat gateway `{}`", g.name)),
    );
    out.extend(
        old.databases
            .iter()
            .filter(|d| d.nodes().any(|n| n.subnet == index) && new.database(&d.name).is_some())
            .map(|d| format!("database `{}`", d.name)),
    );
    out
}

/// AWS detaches an internet gateway only once no public address in the VPC maps through it.
fn internet_gateway(r: &mut Refusals, old: &Lab, new: &Lab) {
    let Some(igw) = &old.internet_gateway else {
        return;
    };
    if new.internet_gateway.as_ref() == Some(igw) {
        return;
    }
    let mut mapped: Vec<String> = new
        .instances
        .iter()
        .filter(|i| i.public_ip != PublicIp::None)
        .map(|i| format!("instance `{}`", i.name))
        .collect();
    mapped.extend(
        new.nat_gateways
            .iter()
            .map(|g| format!("nat gateway `{}`", g.name)),
    );
    mapped.extend(
        new.databases
            .iter()
            .filter(|d| d.publicly_accessible)
            .map(|d| format!("database `{}`", d.name)),
    );
    if !mapped.is_empty() {
        r.refuse(
            Kind::InternetGateway,
            igw,
            format!(
                "cannot detach it while the VPC has public addresses ({}): AWS refuses with DependencyViolation (the network has some mapped public addresses)",
                mapped.join(", ")
            ),
            "take those public addresses away in the same edit (`public_ip: none`, no NAT gateway, no publicly accessible database), or `vpclab down` and `vpclab up`",
        );
    }
}

fn elastic_ips(r: &mut Refusals, old: &Lab, new: &Lab) {
    for (o, n) in pair(&old.elastic_ips, &new.elastic_ips, |e| &e.name).kept {
        if o.address != n.address {
            r.refuse(
                Kind::ElasticIp,
                &n.name,
                format!(
                    "address {} -> {}: an Elastic IP is an address you hold, and AWS never changes it",
                    o.address, n.address
                ),
                renumber_hint(&n.name, &n.name, o.address),
            );
        }
    }
}

fn nat_gateways(r: &mut Refusals, old: &Lab, new: &Lab) {
    for (o, n) in pair(&old.nat_gateways, &new.nat_gateways, |g| &g.name).kept {
        let (was, is) = (&old.subnets[o.subnet].name, &new.subnets[n.subnet].name);
        if was != is {
            r.refuse(
                Kind::NatGateway,
                &n.name,
                format!(
                    "subnet {was} -> {is}: a NAT gateway stays in the subnet it was created in"
                ),
                replace_hint(&n.name),
            );
        } else if o.private_ip != n.private_ip {
            r.refuse(
                Kind::NatGateway,
                &n.name,
                format!(
                    "private IP {} -> {}: AWS never renumbers a running network interface",
                    o.private_ip, n.private_ip
                ),
                renumber_hint(&n.name, "private_ip", o.private_ip),
            );
        }
        let (was, is) = (
            &old.elastic_ips[o.elastic_ip].name,
            &new.elastic_ips[n.elastic_ip].name,
        );
        if was != is {
            r.refuse(
                Kind::NatGateway,
                &n.name,
                format!(
                    "elastic ip {was} -> {is}: a NAT gateway keeps the Elastic IP it was created with"
                ),
                replace_hint(&n.name),
            );
        }
    }
}

fn security_groups(r: &mut Refusals, old: &Lab, new: &Lab) {
    for (o, n) in pair(&old.security_groups, &new.security_groups, |g| &g.name).kept {
        if o.description != n.description {
            r.refuse(
                Kind::SecurityGroup,
                &n.name,
                format!(
                    "description {:?} -> {:?}: AWS fixes a security group's description when it creates the group (its rules can change)",
                    o.description.as_deref().unwrap_or(""),
                    n.description.as_deref().unwrap_or("")
                ),
                replace_hint(&n.name),
            );
        }
    }
}

fn instances(r: &mut Refusals, old: &Lab, new: &Lab) {
    for (o, n) in pair(&old.instances, &new.instances, |i| &i.name).kept {
        let (was, is) = (&old.subnets[o.subnet].name, &new.subnets[n.subnet].name);
        if was != is {
            r.refuse(
                Kind::Instance,
                &n.name,
                format!(
                    "subnet {was} -> {is}: an instance's network interface stays in the subnet it was launched in"
                ),
                replace_hint(&n.name),
            );
        } else if o.private_ip != n.private_ip {
            r.refuse(
                Kind::Instance,
                &n.name,
                format!(
                    "private IP {} -> {}: AWS never renumbers a running network interface (an instance keeps its primary private IP for life)",
                    o.private_ip, n.private_ip
                ),
                renumber_hint(&n.name, "private_ip", o.private_ip),
            );
        }
        if o.key_pair != n.key_pair {
            let show = |k: &Option<String>| k.clone().unwrap_or_else(|| "none".into());
            r.refuse(
                Kind::Instance,
                &n.name,
                format!(
                    "key pair {} -> {}: the key pair is installed when an instance is launched, and AWS cannot change it later",
                    show(&o.key_pair),
                    show(&n.key_pair)
                ),
                replace_hint(&n.name),
            );
        }
    }
}

fn databases(r: &mut Refusals, old: &Lab, new: &Lab) {
    for (o, n) in pair(&old.databases, &new.databases, |d| &d.name).kept {
        let mut refuse = |message: String| {
            r.refuse(Kind::Database, &n.name, message, replace_hint(&n.name));
        };
        if o.engine != n.engine {
            refuse(format!(
                "engine {} -> {}: an RDS instance keeps its engine for life (only its version can be upgraded)",
                o.engine, n.engine
            ));
        }
        let (was, is) = (
            &old.db_subnet_groups[o.subnet_group].name,
            &new.db_subnet_groups[n.subnet_group].name,
        );
        if was != is {
            refuse(format!(
                "DB subnet group {was} -> {is}: an RDS instance changes its DB subnet group only when it moves to another VPC"
            ));
        }
        if o.master_username != n.master_username {
            refuse(format!(
                "master username {} -> {}: AWS fixes it when it creates the RDS instance",
                o.master_username, n.master_username
            ));
        }
        if o.database_name != n.database_name {
            refuse(format!(
                "database name {} -> {}: RDS creates the initial database once, with the instance",
                o.database_name, n.database_name
            ));
        }
        if o.primary.name != n.primary.name {
            refuse(format!(
                "primary {} -> {}: the primary stays where RDS created it, and AWS moves it only by a failover",
                o.primary.name, n.primary.name
            ));
        }
        for b in o.nodes() {
            let Some(a) = n.nodes().find(|a| a.name == b.name) else {
                continue;
            };
            if a.private_ip != b.private_ip {
                let field = if b.name == o.primary.name {
                    "primary_ip"
                } else {
                    "standby_ip"
                };
                r.refuse(
                    Kind::Database,
                    &n.name,
                    format!(
                        "server {} private IP {} -> {}: AWS never renumbers a running network interface",
                        b.name, b.private_ip, a.private_ip
                    ),
                    renumber_hint(&n.name, field, b.private_ip),
                );
            }
        }
    }
}
