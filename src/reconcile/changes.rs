//! The objects an edit creates, changes and destroys, in the words of the lab file.
//!
//! A checked lab refers to other objects by index (a subnet's route table, an instance's
//! security groups); indices shift when the file gains or loses an object, so every
//! reference is compared by the name it resolves to.

use super::{Change, Kind, Op};
use crate::topology::flow_fields::DEFAULT_FORMAT;
use crate::topology::{
    Answer, Database, Expectation, FlowLogs, InternetHost, Lab, NetworkAcl, Outcome, Peer,
    Protocol, PublicIp, RouteTable, RouteTarget, SecurityGroup, Service, SgRule,
};
use std::fmt::Display;

/// Objects of one kind, paired by name.
pub(super) struct Paired<'a, T> {
    /// In the old lab only, in its file order.
    pub gone: Vec<&'a T>,
    /// In both labs (old, new), in the new file order.
    pub kept: Vec<(&'a T, &'a T)>,
    /// In the new lab only, in its file order.
    pub added: Vec<&'a T>,
}

pub(super) fn pair<'a, T>(old: &'a [T], new: &'a [T], name: impl Fn(&T) -> &str) -> Paired<'a, T> {
    let find = |list: &'a [T], n: &str| list.iter().find(|x| name(x) == n);
    Paired {
        gone: old
            .iter()
            .filter(|o| find(new, name(o)).is_none())
            .collect(),
        kept: new
            .iter()
            .filter_map(|n| find(old, name(n)).map(|o| (o, n)))
            .collect(),
        added: new
            .iter()
            .filter(|n| find(old, name(n)).is_none())
            .collect(),
    }
}

/// `label: + x` and `label: - y` for what a list gained and lost (`security groups: + X`).
fn list_edits<T: PartialEq + Display>(label: &str, old: &[T], new: &[T]) -> Vec<String> {
    let prefix = if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    };
    let mut out: Vec<String> = new
        .iter()
        .filter(|x| !old.contains(x))
        .map(|x| format!("{prefix}+ {x}"))
        .collect();
    out.extend(
        old.iter()
            .filter(|x| !new.contains(x))
            .map(|x| format!("{prefix}- {x}")),
    );
    out
}

/// `label: old -> new` when the value changed.
fn edit<T: PartialEq + Display>(label: &str, old: T, new: T) -> Option<String> {
    (old != new).then(|| format!("{label}: {old} -> {new}"))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Appends one change per object of a kind that differs: `summary` describes a new
/// object, `detail` lists what changed in a kept one (nothing: unchanged).
fn compare<T>(
    out: &mut Vec<Change>,
    kind: Kind,
    objects: Paired<'_, T>,
    name: impl Fn(&T) -> String,
    summary: impl Fn(&T) -> Vec<String>,
    detail: impl Fn(&T, &T) -> Vec<String>,
) {
    for o in objects.gone {
        out.push(Change {
            op: Op::Destroy,
            kind,
            name: name(o),
            detail: vec![],
        });
    }
    for (o, n) in objects.kept {
        let detail = detail(o, n);
        if !detail.is_empty() {
            out.push(Change {
                op: Op::Change,
                kind,
                name: name(n),
                detail,
            });
        }
    }
    for n in objects.added {
        out.push(Change {
            op: Op::Create,
            kind,
            name: name(n),
            detail: summary(n),
        });
    }
}

/// Every change from `old` to `new`, grouped by kind, in file order.
pub(super) fn list(old: &Lab, new: &Lab) -> Vec<Change> {
    let mut out = Vec::new();
    vpc(&mut out, old, new);
    compare(
        &mut out,
        Kind::Subnet,
        pair(&old.subnets, &new.subnets, |s| &s.name),
        |s| s.name.clone(),
        |s| vec![s.cidr.to_string(), s.az.clone()],
        |o, n| {
            [edit("cidr", o.cidr, n.cidr), edit("az", &o.az, &n.az)]
                .into_iter()
                .flatten()
                .collect()
        },
    );
    route_tables(&mut out, old, new);
    compare(
        &mut out,
        Kind::InternetGateway,
        pair(
            old.internet_gateway.as_slice(),
            new.internet_gateway.as_slice(),
            |g| g,
        ),
        |g| g.clone(),
        |_| vec![],
        |_, _| vec![],
    );
    compare(
        &mut out,
        Kind::ElasticIp,
        pair(&old.elastic_ips, &new.elastic_ips, |e| &e.name),
        |e| e.name.clone(),
        |e| vec![e.address.to_string()],
        |o, n| edit("address", o.address, n.address).into_iter().collect(),
    );
    compare(
        &mut out,
        Kind::NatGateway,
        pair(&old.nat_gateways, &new.nat_gateways, |g| &g.name),
        |g| g.name.clone(),
        |g| {
            vec![
                new.subnets[g.subnet].name.clone(),
                g.private_ip.to_string(),
                new.elastic_ips[g.elastic_ip].name.clone(),
            ]
        },
        |o, n| {
            [
                edit(
                    "subnet",
                    &old.subnets[o.subnet].name,
                    &new.subnets[n.subnet].name,
                ),
                edit("private ip", o.private_ip, n.private_ip),
                edit(
                    "elastic ip",
                    &old.elastic_ips[o.elastic_ip].name,
                    &new.elastic_ips[n.elastic_ip].name,
                ),
            ]
            .into_iter()
            .flatten()
            .collect()
        },
    );
    security_groups(&mut out, old, new);
    network_acls(&mut out, old, new);
    instances(&mut out, old, new);
    flow_logs(&mut out, old, new);
    compare(
        &mut out,
        Kind::DbSubnetGroup,
        pair(&old.db_subnet_groups, &new.db_subnet_groups, |g| &g.name),
        |g| g.name.clone(),
        |g| subnet_names(new, &g.subnets),
        |o, n| {
            list_edits(
                "",
                &subnet_names(old, &o.subnets)
                    .into_iter()
                    .map(|s| format!("subnet {s}"))
                    .collect::<Vec<_>>(),
                &subnet_names(new, &n.subnets)
                    .into_iter()
                    .map(|s| format!("subnet {s}"))
                    .collect::<Vec<_>>(),
            )
        },
    );
    databases(&mut out, old, new);
    compare(
        &mut out,
        Kind::InternetHost,
        pair(&old.internet, &new.internet, |h| &h.name),
        |h| h.name.clone(),
        internet_host_summary,
        |o, n| {
            let mut d: Vec<String> = [
                edit("ip", o.ip, n.ip),
                edit("my ip", yes_no(o.my_ip), yes_no(n.my_ip)),
            ]
            .into_iter()
            .flatten()
            .collect();
            d.extend(list_edits(
                "services",
                &service_names(&o.services),
                &service_names(&n.services),
            ));
            d
        },
    );
    expectations(&mut out, old, new);
    out
}

/// A lab has exactly one VPC, so a new name is a new Name tag, not a new VPC.
fn vpc(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let detail: Vec<String> = [
        edit("name", &old.vpc.name, &new.vpc.name),
        edit("cidr", old.vpc.cidr, new.vpc.cidr),
        edit("region", &old.region, &new.region),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !detail.is_empty() {
        out.push(Change {
            op: Op::Change,
            kind: Kind::Vpc,
            name: new.vpc.name.clone(),
            detail,
        });
    }
}

fn subnet_names(lab: &Lab, subnets: &[usize]) -> Vec<String> {
    subnets
        .iter()
        .map(|s| lab.subnets[*s].name.clone())
        .collect()
}

fn group_names(lab: &Lab, groups: &[usize]) -> Vec<String> {
    groups
        .iter()
        .map(|g| lab.security_groups[*g].name.clone())
        .collect()
}

/// A route table's routes as `(destination, target name)`, without the implicit local
/// route (it follows the VPC's CIDR, which cannot change).
fn routes(lab: &Lab, table: &RouteTable) -> Vec<(String, String)> {
    table
        .routes
        .iter()
        .filter_map(|r| {
            let target = match &r.target {
                RouteTarget::Local => return None,
                RouteTarget::InternetGateway(name) => name.clone(),
                RouteTarget::NatGateway(n) => lab.nat_gateways[*n].name.clone(),
            };
            Some((r.destination.to_string(), target))
        })
        .collect()
}

/// The subnets associated with a route table: AWS keeps associations on the route table.
fn associated(lab: &Lab, table: &RouteTable) -> Vec<String> {
    let index = lab.route_tables.iter().position(|t| t.name == table.name);
    lab.subnets
        .iter()
        .filter(|s| Some(s.route_table) == index)
        .map(|s| format!("subnet {}", s.name))
        .collect()
}

fn route_tables(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    compare(
        out,
        Kind::RouteTable,
        pair(&old.route_tables, &new.route_tables, |t| &t.name),
        |t| t.name.clone(),
        |t| {
            let mut s: Vec<String> = routes(new, t)
                .into_iter()
                .map(|(dst, target)| format!("{dst} -> {target}"))
                .collect();
            s.extend(associated(new, t));
            s
        },
        |o, n| {
            let (before, after) = (routes(old, o), routes(new, n));
            let mut d = Vec::new();
            for (dst, target) in &after {
                match before.iter().find(|(b, _)| b == dst) {
                    Some((_, was)) if was != target => {
                        d.push(format!("route {dst}: {was} -> {target}"))
                    }
                    Some(_) => {}
                    None => d.push(format!("+ route {dst} -> {target}")),
                }
            }
            for (dst, was) in &before {
                if !after.iter().any(|(a, _)| a == dst) {
                    d.push(format!("- route {dst} -> {was}"));
                }
            }
            d.extend(list_edits("", &associated(old, o), &associated(new, n)));
            d
        },
    );
}

/// A rule as a person reads it: `inbound tcp 22 from 0.0.0.0/0`. It names the rule; the
/// console label and description are attributes AWS can edit in place.
fn rule_text(lab: &Lab, direction: &str, r: &SgRule) -> String {
    let protocol = match r.protocol {
        Protocol::All => "all traffic",
        p => p.as_str(),
    };
    let ports = match r.ports {
        Some((0, 65535)) | None => String::new(),
        Some((a, b)) if a == b => format!(" {a}"),
        Some((a, b)) => format!(" {a}-{b}"),
    };
    let peer = match &r.peer {
        Peer::Cidr(net) => net.to_string(),
        // The address too: moving "my IP" changes what the rule allows.
        Peer::MyIp(ip) => format!("my-ip ({ip})"),
        Peer::Group(g) => lab.security_groups[*g].name.clone(),
    };
    let word = if direction == "inbound" { "from" } else { "to" };
    format!("{direction} {protocol}{ports} {word} {peer}")
}

fn security_groups(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let rules = |lab: &Lab, sg: &SecurityGroup| -> Vec<(String, SgRule)> {
        let inbound = sg.inbound.iter().map(|r| ("inbound", r));
        let outbound = sg.outbound.iter().map(|r| ("outbound", r));
        inbound
            .chain(outbound)
            .map(|(dir, r)| (rule_text(lab, dir, r), r.clone()))
            .collect()
    };
    let plural = |n: usize, what: &str| format!("{n} {what} rule{}", if n == 1 { "" } else { "s" });
    compare(
        out,
        Kind::SecurityGroup,
        pair(&old.security_groups, &new.security_groups, |g| &g.name),
        |g| g.name.clone(),
        |g| {
            vec![
                plural(g.inbound.len(), "inbound"),
                plural(g.outbound.len(), "outbound"),
            ]
        },
        |o, n| {
            let (before, after) = (rules(old, o), rules(new, n));
            let mut d: Vec<String> = edit(
                "description",
                quoted(&o.description),
                quoted(&n.description),
            )
            .into_iter()
            .collect();
            let texts = |rules: &[(String, SgRule)]| -> Vec<String> {
                rules.iter().map(|(t, _)| t.clone()).collect()
            };
            d.extend(list_edits("", &texts(&before), &texts(&after)));
            for (text, r) in &after {
                let Some((_, was)) = before.iter().find(|(t, _)| t == text) else {
                    continue;
                };
                d.extend(edit(
                    &format!("{text}: description"),
                    quoted(&was.description),
                    quoted(&r.description),
                ));
                d.extend(edit(&format!("{text}: type"), &was.label, &r.label));
            }
            d
        },
    );
}

/// An ACL's rules as people read them (`inbound 100 allow tcp 22 from 10.0.0.0/16`) and its
/// subnets (`subnet private-2a`). A rule is named by all of it: one edited in place (the
/// same number, another port) shows as the old rule gone and the new one added, as
/// ReplaceNetworkAclEntry swaps a whole entry.
fn acl_entries(lab: &Lab, acl: &NetworkAcl) -> (Vec<String>, Vec<String>) {
    let inbound = acl
        .inbound
        .iter()
        .map(|r| format!("inbound {}", r.describe(true)));
    let outbound = acl
        .outbound
        .iter()
        .map(|r| format!("outbound {}", r.describe(false)));
    let subnets = subnet_names(lab, &acl.subnets)
        .into_iter()
        .map(|s| format!("subnet {s}"))
        .collect();
    (inbound.chain(outbound).collect(), subnets)
}

fn network_acls(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let plural = |n: usize, what: &str| format!("{n} {what} rule{}", if n == 1 { "" } else { "s" });
    compare(
        out,
        Kind::NetworkAcl,
        pair(&old.network_acls, &new.network_acls, |a| &a.name),
        |a| a.name.clone(),
        |a| {
            let mut s = subnet_names(new, &a.subnets)
                .into_iter()
                .map(|s| format!("subnet {s}"))
                .collect::<Vec<_>>();
            s.push(plural(a.inbound.len(), "inbound"));
            s.push(plural(a.outbound.len(), "outbound"));
            s
        },
        |o, n| {
            let (rules_before, subnets_before) = acl_entries(old, o);
            let (rules_after, subnets_after) = acl_entries(new, n);
            let mut d = list_edits("", &rules_before, &rules_after);
            d.extend(list_edits("", &subnets_before, &subnets_after));
            d
        },
    );
}

fn service_names(services: &[Service]) -> Vec<&'static str> {
    services.iter().map(|s| s.as_str()).collect()
}

/// A description as the file writes it, quoted: it may be empty or hold commas.
fn quoted(description: &Option<String>) -> String {
    format!("{:?}", description.as_deref().unwrap_or(""))
}

fn internet_host_summary(h: &InternetHost) -> Vec<String> {
    let mut s = vec![h.ip.to_string()];
    if h.my_ip {
        s.push("my ip".into());
    }
    if !h.services.is_empty() {
        s.push(format!("services {}", service_names(&h.services).join(" ")));
    }
    s
}

/// How the file says it: `none`, `auto` or the Elastic IP's name.
fn public_ip_text(lab: &Lab, p: &PublicIp) -> String {
    match p {
        PublicIp::None => "none".into(),
        PublicIp::Auto { .. } => "auto".into(),
        PublicIp::Elastic { eip, .. } => lab.elastic_ips[*eip].name.clone(),
    }
}

fn instances(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let key_pair = |k: &Option<String>| k.clone().unwrap_or_else(|| "none".into());
    compare(
        out,
        Kind::Instance,
        pair(&old.instances, &new.instances, |i| &i.name),
        |i| i.name.clone(),
        |i| {
            let mut s = vec![new.subnets[i.subnet].name.clone(), i.private_ip.to_string()];
            if i.public_ip != PublicIp::None {
                s.push(format!("public ip {}", public_ip_text(new, &i.public_ip)));
            }
            s
        },
        |o, n| {
            let mut d: Vec<String> = [
                edit(
                    "subnet",
                    &old.subnets[o.subnet].name,
                    &new.subnets[n.subnet].name,
                ),
                edit("private ip", o.private_ip, n.private_ip),
                edit(
                    "public ip",
                    public_ip_text(old, &o.public_ip),
                    public_ip_text(new, &n.public_ip),
                ),
                edit("key pair", key_pair(&o.key_pair), key_pair(&n.key_pair)),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Both `auto` yet another address: the pool handed it out in another order.
            if let (PublicIp::Auto { address: a }, PublicIp::Auto { address: b }) =
                (&o.public_ip, &n.public_ip)
                && a != b
            {
                d.push(format!("public ip: {a} -> {b} (auto)"));
            }
            d.extend(list_edits(
                "security groups",
                &group_names(old, &o.security_groups),
                &group_names(new, &n.security_groups),
            ));
            d.extend(list_edits(
                "services",
                &service_names(&o.services),
                &service_names(&n.services),
            ));
            d
        },
    );
}

/// Every flow log of a lab, named by what it is on (`vpc my-vpc`, `subnet public-2a`,
/// `instance web`): on AWS each is a resource of its own, attached to one of them.
fn flow_log_list(lab: &Lab) -> Vec<(String, FlowLogs)> {
    let vpc = lab
        .vpc
        .flow_logs
        .iter()
        .map(|f| (format!("vpc {}", lab.vpc.name), f.clone()));
    let subnets = lab.subnets.iter().filter_map(|s| {
        s.flow_logs
            .as_ref()
            .map(|f| (format!("subnet {}", s.name), f.clone()))
    });
    let instances = lab.instances.iter().filter_map(|i| {
        i.flow_logs
            .as_ref()
            .map(|f| (format!("instance {}", i.name), f.clone()))
    });
    vpc.chain(subnets).chain(instances).collect()
}

/// `default`, or the fields in the order the records give them.
fn format_text(f: &FlowLogs) -> String {
    if f.fields == DEFAULT_FORMAT {
        return "default".into();
    }
    f.fields
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(" ")
}

fn flow_logs(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let (before, after) = (flow_log_list(old), flow_log_list(new));
    compare(
        out,
        Kind::FlowLog,
        pair(&before, &after, |(on, _)| on),
        |(on, _)| on.clone(),
        |(_, f)| {
            vec![
                format!("every {} s", f.interval_secs),
                format!("format {}", format_text(f)),
            ]
        },
        |(_, o), (_, n)| {
            [
                edit(
                    "interval",
                    format!("{} s", o.interval_secs),
                    format!("{} s", n.interval_secs),
                ),
                edit("format", format_text(o), format_text(n)),
            ]
            .into_iter()
            .flatten()
            .collect()
        },
    );
}

fn databases(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let group = |lab: &Lab, d: &Database| lab.db_subnet_groups[d.subnet_group].name.clone();
    let on_off = |b: bool| if b { "on" } else { "off" };
    compare(
        out,
        Kind::Database,
        pair(&old.databases, &new.databases, |d| &d.name),
        |d| d.name.clone(),
        |d| {
            let mut s = vec![d.engine.clone(), group(new, d)];
            if d.multi_az {
                s.push("multi-az".into());
            }
            if d.publicly_accessible {
                s.push("publicly accessible".into());
            }
            s
        },
        |o, n| {
            let mut d: Vec<String> = [
                edit("engine", &o.engine, &n.engine),
                edit("subnet group", group(old, o), group(new, n)),
                edit("multi-az", on_off(o.multi_az), on_off(n.multi_az)),
                edit(
                    "publicly accessible",
                    yes_no(o.publicly_accessible),
                    yes_no(n.publicly_accessible),
                ),
                edit("port", o.port, n.port),
                edit("master username", &o.master_username, &n.master_username),
                edit("database name", &o.database_name, &n.database_name),
                edit("primary", &o.primary.name, &n.primary.name),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Never the password itself: the listing may be shown or saved.
            if o.master_password != n.master_password {
                d.push("master password changed".into());
            }
            d.extend(list_edits(
                "security groups",
                &group_names(old, &o.security_groups),
                &group_names(new, &n.security_groups),
            ));
            let (before, after): (Vec<_>, Vec<_>) = (o.nodes().collect(), n.nodes().collect());
            for b in &before {
                match after.iter().find(|a| a.name == b.name) {
                    Some(a) => d.extend(edit(
                        &format!("server {}", a.name),
                        b.private_ip,
                        a.private_ip,
                    )),
                    None => d.push(format!("- server {}", b.name)),
                }
            }
            for a in &after {
                if !before.iter().any(|b| b.name == a.name) {
                    d.push(format!("+ server {} ({})", a.name, a.private_ip));
                }
            }
            d
        },
    );
}

/// What an expectation checks, which is all there is to it: an edited expectation is
/// another expectation.
fn expectation_text(e: &Expectation) -> String {
    let mut s = format!("{} -> {}: {}", e.from, e.to, e.check.as_str());
    if let Some(port) = e.port {
        s.push_str(&format!(" {port}"));
    }
    s.push_str(match e.result {
        Outcome::Ok => " ok",
        Outcome::Blocked => " blocked",
    });
    if let Some(who) = &e.seen_as {
        s.push_str(&format!(" seen as {who}"));
    }
    if let Some(answer) = &e.answer {
        s.push_str(&match answer {
            Answer::Private => " answer private".to_string(),
            Answer::Public => " answer public".to_string(),
            Answer::Primary => " answer primary".to_string(),
            Answer::Address(ip) => format!(" answer {ip}"),
        });
    }
    s
}

/// Expectations have no names and a file may repeat one, so they pair up one for one by
/// what they check.
fn expectations(out: &mut Vec<Change>, old: &Lab, new: &Lab) {
    let mut unmatched: Vec<String> = old.expectations.iter().map(expectation_text).collect();
    let mut created = Vec::new();
    for e in &new.expectations {
        let text = expectation_text(e);
        match unmatched.iter().position(|t| *t == text) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => created.push(text),
        }
    }
    for (op, texts) in [(Op::Destroy, unmatched), (Op::Create, created)] {
        out.extend(texts.into_iter().map(|name| Change {
            op,
            kind: Kind::Expectation,
            name,
            detail: vec![],
        }));
    }
}
