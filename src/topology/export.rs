//! A checked lab written back as a lab file: what `vpclab export` prints and what the EC2
//! API records for a VPC it changed. Every address a lab holds is written as a fixed one
//! (private IPs, Elastic IPs), so `validate` accepts the file and `up` rebuilds the same
//! lab; only instances' auto-assigned public IPs stay `auto`, since the file has no way to
//! pin one (a running lab keeps them through its recorded allocations).

use super::flow_fields::DEFAULT_FORMAT;
use super::model::*;

/// The lab as a lab file.
pub fn to_yaml(lab: &Lab) -> String {
    let mut w = Writer::default();
    w.line(0, &format!("name: {}", q(&lab.name)));
    if let Some(d) = &lab.description {
        w.line(0, &format!("description: {}", q(d)));
    }
    w.line(0, &format!("region: {}", q(&lab.region)));
    w.line(0, "vpc:");
    w.line(1, &format!("name: {}", q(&lab.vpc.name)));
    w.line(1, &format!("cidr: {}", lab.vpc.cidr));
    if let Some(fl) = &lab.vpc.flow_logs {
        w.line(1, &format!("flow_logs: {}", flow_logs(fl)));
    }
    w.line(0, &format!("public_ip_pool: {}", lab.public_ip_pool));

    w.map_header(0, "subnets", lab.subnets.is_empty());
    for s in &lab.subnets {
        let mut f = vec![("az", q(&s.az)), ("cidr", s.cidr.to_string())];
        // Index 0 is the main route table, which a subnet gets by naming none.
        if s.route_table != 0 {
            f.push(("route_table", q(&lab.route_tables[s.route_table].name)));
        }
        if let Some(fl) = &s.flow_logs {
            f.push(("flow_logs", flow_logs(fl)));
        }
        w.line(1, &format!("{}: {}", q(&s.name), flow(&f)));
    }

    let tables = &lab.route_tables[1.min(lab.route_tables.len())..];
    if !tables.is_empty() {
        w.line(0, "route_tables:");
        for t in tables {
            let routes: Vec<&Route> = t
                .routes
                .iter()
                .filter(|r| r.target != RouteTarget::Local)
                .collect();
            if routes.is_empty() {
                w.line(1, &format!("{}: {{}}", q(&t.name)));
                continue;
            }
            w.line(1, &format!("{}:", q(&t.name)));
            for r in routes {
                let target = match &r.target {
                    RouteTarget::Local => unreachable!("filtered out above"),
                    RouteTarget::InternetGateway(n) => n.clone(),
                    RouteTarget::NatGateway(i) => lab.nat_gateways[*i].name.clone(),
                };
                w.line(2, &format!("{}: {}", r.destination, q(&target)));
            }
        }
    }
    if let Some(igw) = &lab.internet_gateway {
        w.line(0, &format!("internet_gateway: {}", q(igw)));
    }
    if !lab.elastic_ips.is_empty() {
        w.line(0, "elastic_ips:");
        for e in &lab.elastic_ips {
            w.line(1, &format!("{}: {}", q(&e.name), e.address));
        }
    }
    if !lab.nat_gateways.is_empty() {
        w.line(0, "nat_gateways:");
        for n in &lab.nat_gateways {
            let f = [
                ("subnet", q(&lab.subnets[n.subnet].name)),
                ("elastic_ip", q(&lab.elastic_ips[n.elastic_ip].name)),
                ("private_ip", n.private_ip.to_string()),
            ];
            w.line(1, &format!("{}: {}", q(&n.name), flow(&f)));
        }
    }
    if !lab.key_pairs.is_empty() {
        w.line(0, &format!("key_pairs: {}", list(&lab.key_pairs)));
    }
    if !lab.security_groups.is_empty() {
        w.line(0, "security_groups:");
        for g in &lab.security_groups {
            w.line(1, &format!("{}:", q(&g.name)));
            if let Some(d) = &g.description {
                w.line(2, &format!("description: {}", q(d)));
            }
            w.rules(lab, "inbound", &g.inbound, true);
            // A group whose file wrote no outbound rules has AWS's default one; writing
            // nothing keeps that default (and its description) as it was.
            if g.outbound != [default_outbound()] {
                w.rules(lab, "outbound", &g.outbound, false);
            }
        }
    }
    if !lab.network_acls.is_empty() {
        w.line(0, "network_acls:");
        for a in &lab.network_acls {
            w.line(1, &format!("{}:", q(&a.name)));
            let subnets: Vec<String> = a
                .subnets
                .iter()
                .map(|s| lab.subnets[*s].name.clone())
                .collect();
            w.line(2, &format!("subnets: {}", list(&subnets)));
            for (word, rules, inbound) in [
                ("inbound", &a.inbound, true),
                ("outbound", &a.outbound, false),
            ] {
                if rules.is_empty() {
                    continue;
                }
                w.line(2, &format!("{word}:"));
                for r in rules {
                    let mut f = vec![("rule", r.number.to_string())];
                    f.extend(traffic(r.protocol, r.ports, &r.label));
                    f.push((peer_key(inbound), r.peer.to_string()));
                    f.push(("action", r.action.as_str().to_string()));
                    w.line(3, &format!("- {}", flow(&f)));
                }
            }
        }
    }
    if !lab.instances.is_empty() {
        w.line(0, "instances:");
        for i in &lab.instances {
            let public = match &i.public_ip {
                PublicIp::None => "none".to_string(),
                PublicIp::Auto { .. } => "auto".to_string(),
                PublicIp::Elastic { eip, .. } => q(&lab.elastic_ips[*eip].name),
            };
            let mut f = vec![
                ("subnet", q(&lab.subnets[i.subnet].name)),
                ("private_ip", i.private_ip.to_string()),
                ("public_ip", public),
            ];
            if let Some(k) = &i.key_pair {
                f.push(("key_pair", q(k)));
            }
            f.push(("security_groups", group_list(lab, &i.security_groups)));
            if !i.services.is_empty() {
                let s: Vec<String> = i.services.iter().map(|s| s.as_str().into()).collect();
                f.push(("services", list(&s)));
            }
            if let Some(fl) = &i.flow_logs {
                f.push(("flow_logs", flow_logs(fl)));
            }
            w.line(1, &format!("{}: {}", q(&i.name), flow(&f)));
        }
    }
    if !lab.db_subnet_groups.is_empty() {
        w.line(0, "db_subnet_groups:");
        for g in &lab.db_subnet_groups {
            let s: Vec<String> = g
                .subnets
                .iter()
                .map(|s| lab.subnets[*s].name.clone())
                .collect();
            w.line(1, &format!("{}: {}", q(&g.name), list(&s)));
        }
    }
    if !lab.databases.is_empty() {
        w.line(0, "databases:");
        for d in &lab.databases {
            w.line(1, &format!("{}:", q(&d.name)));
            w.line(2, &format!("engine: {}", q(&d.engine)));
            w.line(2, &format!("multi_az: {}", d.multi_az));
            let group = &lab.db_subnet_groups[d.subnet_group].name;
            w.line(2, &format!("subnet_group: {}", q(group)));
            let az = &lab.subnets[d.primary.subnet].az;
            w.line(2, &format!("availability_zone: {}", q(az)));
            w.line(2, &format!("primary_ip: {}", d.primary.private_ip));
            if let Some(s) = &d.standby {
                w.line(2, &format!("standby_ip: {}", s.private_ip));
            }
            w.line(2, &format!("master_username: {}", q(&d.master_username)));
            if let Some(p) = &d.master_password {
                w.line(2, &format!("master_password: {}", q(p)));
            }
            w.line(2, &format!("database_name: {}", q(&d.database_name)));
            w.line(
                2,
                &format!("publicly_accessible: {}", d.publicly_accessible),
            );
            let groups = group_list(lab, &d.security_groups);
            w.line(2, &format!("security_groups: {groups}"));
            w.line(2, &format!("port: {}", d.port));
        }
    }
    if !lab.internet.is_empty() {
        w.line(0, "internet:");
        for h in &lab.internet {
            let mut f = vec![("ip", h.ip.to_string())];
            if h.my_ip {
                f.push(("my_ip", "true".into()));
            }
            if !h.services.is_empty() {
                let s: Vec<String> = h.services.iter().map(|s| s.as_str().into()).collect();
                f.push(("services", list(&s)));
            }
            w.line(1, &format!("{}: {}", q(&h.name), flow(&f)));
        }
    }
    if !lab.expectations.is_empty() {
        w.line(0, "expect:");
        for e in &lab.expectations {
            let result = match e.result {
                Outcome::Ok => "ok",
                Outcome::Blocked => "blocked",
            };
            let mut f = vec![
                ("from", q(&e.from)),
                ("to", q(&e.to)),
                ("check", e.check.as_str().to_string()),
                ("result", result.to_string()),
            ];
            if let Some(p) = e.port {
                f.push(("port", p.to_string()));
            }
            if let Some(s) = &e.seen_as {
                f.push(("seen_as", q(s)));
            }
            if let Some(a) = &e.answer {
                let a = match a {
                    Answer::Private => "private".to_string(),
                    Answer::Public => "public".to_string(),
                    Answer::Primary => "primary".to_string(),
                    Answer::Address(ip) => ip.to_string(),
                };
                f.push(("answer", a));
            }
            w.line(1, &format!("- {}", flow(&f)));
        }
    }
    w.out
}

/// The outbound rule a group has when its file writes none: all traffic anywhere.
pub fn default_outbound() -> SgRule {
    SgRule {
        protocol: Protocol::All,
        ports: None,
        peer: Peer::Cidr(ipnet::Ipv4Net::default()),
        label: "All traffic".into(),
        description: Some("default outbound rule".into()),
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// `key:` before the map's entries, or `key: {}` when it has none.
    fn map_header(&mut self, depth: usize, key: &str, empty: bool) {
        let braces = if empty { " {}" } else { "" };
        self.line(depth, &format!("{key}:{braces}"));
    }

    fn rules(&mut self, lab: &Lab, word: &str, rules: &[SgRule], inbound: bool) {
        if rules.is_empty() {
            self.line(2, &format!("{word}: []"));
            return;
        }
        self.line(2, &format!("{word}:"));
        for r in rules {
            let mut f = traffic(r.protocol, r.ports, &r.label);
            let peer = match &r.peer {
                Peer::Cidr(c) => c.to_string(),
                Peer::Group(g) => q(&lab.security_groups[*g].name),
                Peer::MyIp(_) => "my-ip".to_string(),
            };
            f.push((peer_key(inbound), peer));
            if let Some(d) = &r.description {
                f.push(("description", q(d)));
            }
            self.line(3, &format!("- {}", flow(&f)));
        }
    }
}

fn peer_key(inbound: bool) -> &'static str {
    if inbound { "source" } else { "destination" }
}

/// A rule's traffic as the file writes it: the console's `type` when one has exactly this
/// protocol, ports and label, else `protocol` and `port`.
fn traffic(
    protocol: Protocol,
    ports: Option<(u16, u16)>,
    label: &str,
) -> Vec<(&'static str, String)> {
    if let Some(t) = super::aws::RULE_TYPES
        .iter()
        .find(|t| t.protocol == protocol && t.ports == ports && t.label == label)
    {
        return vec![("type", t.name.to_string())];
    }
    let mut f = vec![("protocol", protocol.as_str().to_string())];
    match ports {
        Some((a, b)) if a == b => f.push(("port", a.to_string())),
        Some((a, b)) => f.push(("port", format!("{a}-{b}"))),
        None => {}
    }
    f
}

/// A flow log's settings; a custom format as AWS writes one (`${field} ...`).
fn flow_logs(fl: &FlowLogs) -> String {
    if fl.fields == DEFAULT_FORMAT {
        return format!("{{ interval: {} }}", fl.interval_secs);
    }
    let format: Vec<String> = fl
        .fields
        .iter()
        .map(|f| format!("${{{}}}", f.name()))
        .collect();
    format!(
        "{{ interval: {}, format: {} }}",
        fl.interval_secs,
        q(&format.join(" "))
    )
}

fn flow(fields: &[(&str, String)]) -> String {
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", parts.join(", "))
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

fn group_list(lab: &Lab, groups: &[usize]) -> String {
    let names: Vec<String> = groups
        .iter()
        .map(|g| lab.security_groups[*g].name.clone())
        .collect();
    list(&names)
}

/// A string as a YAML scalar: plain when it can only be read back as that same string,
/// else double-quoted (JSON's escaping is valid YAML).
fn q(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !is_yaml_keyword_or_number(s);
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string always serializes")
    }
}

fn is_yaml_keyword_or_number(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(&lower.as_str())
        || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Source, check, load};

    /// Exported and read back, a lab is the same lab: for the built-in one and every lab
    /// file the repository ships.
    #[test]
    fn every_shipped_lab_survives_export_and_validation() {
        let mut files: Vec<std::path::PathBuf> = ["labs", "tests/valid"]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{files:?}");
        for path in files {
            let lab = load(Source::File(path.clone()), None).unwrap().lab;
            let text = to_yaml(&lab);
            let (again, d) = check(&text, &Source::Builtin, None);
            let again = again.unwrap_or_else(|| {
                panic!(
                    "{}: export does not validate:\n{}\n{text}",
                    path.display(),
                    d.render("export")
                )
            });
            // Expectations record their line in the file, which export moves.
            let without_lines = |l: &Lab| {
                let mut v = serde_json::to_value(l).unwrap();
                for e in v["expectations"].as_array_mut().unwrap() {
                    e["line"] = serde_json::Value::Null;
                }
                v.to_string()
            };
            assert!(
                without_lines(&lab) == without_lines(&again),
                "{}: the exported lab differs:\n{text}",
                path.display()
            );
        }
    }

    #[test]
    fn strings_yaml_would_read_as_something_else_are_quoted() {
        assert_eq!(q("public-2a"), "public-2a");
        assert_eq!(q("10.0.0.0/16"), "10.0.0.0/16");
        assert_eq!(q("yes"), "\"yes\"");
        assert_eq!(q("0012"), "\"0012\"");
        assert_eq!(q("SSH from: my IP"), "\"SSH from: my IP\"");
        assert_eq!(q(""), "\"\"");
    }
}
