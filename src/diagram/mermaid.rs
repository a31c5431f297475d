//! Mermaid `flowchart TB`: frames as nested subgraphs, wires as edges. The syntax is kept
//! conservative: plain alphanumeric ids, every label quoted, entity codes for quotes and
//! angle brackets, `<br/>` for line breaks.

use super::{Facts, MAX_HOSTS, instances_in, shown, table_users, target_name, zones};
use crate::topology::{Lab, PublicIp};
use std::fmt::Write;

/// A quoted Mermaid label; lines joined with `<br/>`.
fn label(lines: &[String]) -> String {
    let body: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut out = String::new();
            for c in l.chars() {
                match c {
                    '"' => out.push_str("#quot;"),
                    '<' => out.push_str("#lt;"),
                    '>' => out.push_str("#gt;"),
                    '#' => out.push_str("#35;"),
                    '&' => out.push_str("#amp;"),
                    c if c.is_control() => out.push(' '),
                    c => out.push(c),
                }
            }
            out
        })
        .collect();
    format!("\"{}\"", body.join("<br/>"))
}

fn one(s: impl Into<String>) -> String {
    label(&[s.into()])
}

fn sg_names(lab: &Lab, groups: &[usize]) -> Vec<String> {
    groups
        .iter()
        .map(|&g| format!("SG {}", lab.security_groups[g].name))
        .collect()
}

pub fn render(lab: &Lab) -> String {
    let facts = Facts::of(lab);
    let mut s = String::from("flowchart TB\n");
    let mut styles: Vec<String> = Vec::new();
    // The internet's nodes, each joined to the internet gateway.
    let mut hosts: Vec<String> = Vec::new();
    if lab.internet_gateway.is_some() || !lab.internet.is_empty() {
        let _ = writeln!(s, "  subgraph internet[{}]", one("Internet"));
        if lab.internet.is_empty() {
            let _ = writeln!(s, "    nohosts[{}]", one("(no hosts)"));
            hosts.push("nohosts".into());
        }
        let n = shown(lab.internet.len(), MAX_HOSTS);
        for (h, host) in lab.internet.iter().enumerate().take(n) {
            let mut l = vec![host.name.clone(), host.ip.to_string()];
            if host.my_ip {
                l.push("my IP".into());
            } else if !host.services.is_empty() {
                let sv: Vec<&str> = host.services.iter().map(|s| s.as_str()).collect();
                l.push(format!("serves {}", sv.join(", ")));
            }
            let _ = writeln!(s, "    host{h}[{}]", label(&l));
            hosts.push(format!("host{h}"));
        }
        if n < lab.internet.len() {
            let more = format!("+{} more hosts", lab.internet.len() - n);
            let _ = writeln!(s, "    morehosts[{}]", one(more));
            hosts.push("morehosts".into());
        }
        s.push_str("  end\n");
        styles.push("  style internet fill:#f4f5f6,stroke:#545b64".into());
    }
    let _ = writeln!(s, "  subgraph cloud[{}]", one("AWS Cloud"));
    let _ = writeln!(
        s,
        "    subgraph region[{}]",
        one(format!("Region {}", lab.region))
    );
    if let Some(igw) = &lab.internet_gateway {
        let _ = writeln!(
            s,
            "      igw[{}]",
            label(&[igw.clone(), "internet gateway".into()])
        );
    }
    let _ = writeln!(
        s,
        "      subgraph vpc[{}]",
        one(format!("VPC {} · {}", lab.vpc.name, lab.vpc.cidr))
    );
    for (c, (az, subnets)) in zones(lab).iter().enumerate() {
        let _ = writeln!(s, "        subgraph az{c}[{}]", one(az.as_str()));
        for &i in subnets {
            let sn = &lab.subnets[i];
            let what = if sn.public { "public" } else { "private" };
            let _ = writeln!(
                s,
                "          subgraph sn{i}[{}]",
                one(format!("{} · {} · {what}", sn.name, sn.cidr))
            );
            let mut empty = true;
            for (k, n) in lab
                .nat_gateways
                .iter()
                .enumerate()
                .filter(|(_, n)| n.subnet == i)
            {
                let eip = &lab.elastic_ips[n.elastic_ip];
                let l = [
                    format!("NAT gateway {}", n.name),
                    format!("private {}", n.private_ip),
                    format!("EIP {} ({})", eip.address, eip.name),
                ];
                let _ = writeln!(s, "            nat{k}[{}]", label(&l));
                empty = false;
            }
            let (shown_instances, hidden) = instances_in(lab, i);
            for k in shown_instances {
                let inst = &lab.instances[k];
                let mut l = vec![
                    format!("EC2 {}", inst.name),
                    format!("private {}", inst.private_ip),
                ];
                match &inst.public_ip {
                    PublicIp::None => {}
                    PublicIp::Auto { address } => l.push(format!("public {address} (auto)")),
                    PublicIp::Elastic { eip, address } => l.push(format!(
                        "public {address} (EIP {})",
                        lab.elastic_ips[*eip].name
                    )),
                }
                l.extend(sg_names(lab, &inst.security_groups));
                let _ = writeln!(s, "            inst{k}[{}]", label(&l));
                empty = false;
            }
            if hidden > 0 {
                let _ = writeln!(
                    s,
                    "            more{i}[{}]",
                    one(format!("+{hidden} more instances"))
                );
            }
            for (d, db) in lab.databases.iter().enumerate() {
                for (id, role, node) in [
                    (format!("db{d}p"), "primary", Some(&db.primary)),
                    (format!("db{d}s"), "standby", db.standby.as_ref()),
                ] {
                    let Some(node) = node.filter(|n| n.subnet == i) else {
                        continue;
                    };
                    let mut l = vec![
                        format!("RDS {}", node.name),
                        format!("{} {} · {role}", db.engine, db.name),
                        format!("private {}", node.private_ip),
                    ];
                    if let Some(p) = node.public_ip {
                        l.push(format!("public {p}"));
                    }
                    l.extend(sg_names(lab, &db.security_groups));
                    let _ = writeln!(s, "            {id}[{}]", label(&l));
                    empty = false;
                }
            }
            if empty {
                // Mermaid draws an empty subgraph poorly; say that it is empty.
                let _ = writeln!(s, "            sn{i}empty[{}]", one("no resources"));
            }
            s.push_str("          end\n");
            styles.push(if sn.public {
                format!("  style sn{i} fill:#eef6e7,stroke:#7aa116")
            } else {
                format!("  style sn{i} fill:#e8f1fa,stroke:#147eba")
            });
        }
        s.push_str("        end\n");
    }
    let panel = panel_lines(lab);
    if !panel.is_empty() {
        let _ = writeln!(s, "        routes[{}]", label(&panel));
    }
    s.push_str("      end\n    end\n  end\n");

    if lab.internet_gateway.is_some() {
        for h in &hosts {
            let _ = writeln!(s, "  {h} <--> igw");
        }
    }
    for &(sn, n) in &facts.nat_routes {
        let _ = writeln!(s, "  sn{sn} -.->|{}| nat{n}", one("0.0.0.0/0"));
    }
    for &k in &facts.nat_egress {
        let _ = writeln!(s, "  nat{k} -->|{}| igw", one("as EIP"));
    }
    for a in &facts.sg_allows {
        let _ = writeln!(
            s,
            "  inst{} -->|{}| db{}p",
            a.instance,
            one(format!("{} allowed by SG", a.short())),
            a.database
        );
    }
    for &d in &facts.replicas {
        let _ = writeln!(s, "  db{d}p -.->|{}| db{d}s", one("replication"));
    }
    s.push_str("  style vpc fill:#fcfaff,stroke:#8c4fff\n");
    for st in styles {
        s.push_str(&st);
        s.push('\n');
    }
    s
}

fn panel_lines(lab: &Lab) -> Vec<String> {
    let mut l = Vec::new();
    if !lab.route_tables.is_empty() {
        l.push("Route tables".to_string());
    }
    for (t, table) in lab.route_tables.iter().enumerate() {
        let subnets = table_users(lab, t);
        let routes: Vec<String> = table
            .routes
            .iter()
            .map(|r| format!("{} → {}", r.destination, target_name(lab, &r.target)))
            .collect();
        l.push(format!("{} ({subnets}): {}", table.name, routes.join(", ")));
    }
    for db in &lab.databases {
        l.push(format!(
            "RDS endpoint {}:{} → {}",
            db.endpoint, db.port, db.primary.name
        ));
    }
    l
}
