//! Graphviz dot: the same frames as clusters (cloud ⊃ region ⊃ VPC ⊃ AZ ⊃ subnet), the
//! same wires as edges; `dot -Tsvg` or `dot -Tpng` lays it out.

use super::{Facts, MAX_HOSTS, instances_in, shown, table_users, target_name, zones};
use crate::topology::{Lab, PublicIp};
use std::fmt::Write;

/// A dot string literal, quotes included.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Lines joined with dot's centred line break.
fn lines(parts: &[String]) -> String {
    q(&parts.join("\n"))
}

fn sg_names(lab: &Lab, groups: &[usize]) -> Vec<String> {
    groups
        .iter()
        .map(|&g| format!("SG {}", lab.security_groups[g].name))
        .collect()
}

pub fn render(lab: &Lab) -> String {
    let facts = Facts::of(lab);
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", q(&lab.name));
    let _ = writeln!(
        s,
        "  graph [fontname=\"sans-serif\", fontsize=12, compound=true, newrank=true, nodesep=0.3, ranksep=0.45, labelloc=t, label={}];",
        q(&format!(
            "{}: VPC {} ({}) in {}",
            lab.name, lab.vpc.name, lab.vpc.cidr, lab.region
        ))
    );
    s.push_str("  node [fontname=\"sans-serif\", fontsize=10, shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", color=\"#545b64\"];\n");
    s.push_str("  edge [fontname=\"sans-serif\", fontsize=9, color=\"#545b64\"];\n");

    // The internet's nodes, each joined to the internet gateway.
    let mut hosts: Vec<String> = Vec::new();
    if lab.internet_gateway.is_some() || !lab.internet.is_empty() {
        s.push_str("  subgraph cluster_internet {\n    label=\"Internet\"; style=\"rounded,filled\"; fillcolor=\"#f4f5f6\"; color=\"#545b64\";\n");
        if lab.internet.is_empty() {
            s.push_str("    internet [shape=plaintext, style=\"\", label=\"(no hosts)\"];\n");
            hosts.push("internet".into());
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
            let _ = writeln!(s, "    host{h} [label={}];", lines(&l));
            hosts.push(format!("host{h}"));
        }
        if n < lab.internet.len() {
            let _ = writeln!(
                s,
                "    morehosts [style=\"rounded,dashed\", label={}];",
                q(&format!("+{} more hosts", lab.internet.len() - n))
            );
            hosts.push("morehosts".into());
        }
        s.push_str("  }\n");
    }

    s.push_str(
        "  subgraph cluster_cloud {\n    label=\"AWS Cloud\"; style=solid; color=\"#232f3e\";\n",
    );
    let _ = writeln!(
        s,
        "    subgraph cluster_region {{\n      label={}; style=dashed; color=\"#00a4a6\";",
        q(&format!("Region {}", lab.region))
    );
    if let Some(igw) = &lab.internet_gateway {
        let _ = writeln!(
            s,
            "      igw [label={}, color=\"#7d3ccf\"];",
            lines(&[igw.clone(), "internet gateway".into()])
        );
        // Declared this early, these edges make dot keep the AZ columns in name order.
        for &k in &facts.nat_egress {
            let _ = writeln!(
                s,
                "      igw -> nat{k} [dir=back, color=\"#7d3ccf\", fontcolor=\"#7d3ccf\", label=\"as EIP\"];"
            );
        }
    }
    let _ = writeln!(
        s,
        "      subgraph cluster_vpc {{\n        label={}; style=filled; fillcolor=\"#fcfaff\"; color=\"#8c4fff\";",
        q(&format!("VPC {} · {}", lab.vpc.name, lab.vpc.cidr))
    );
    let zones = zones(lab);
    // Invisible edges that stack each AZ top to bottom: subnet label, its cards, next subnet.
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut tops: Vec<String> = Vec::new();
    let mut bottoms: Vec<String> = Vec::new();
    for (c, (az, subnets)) in zones.iter().enumerate() {
        let _ = writeln!(
            s,
            "        subgraph cluster_az{c} {{\n          label={}; style=dashed; color=\"#6b7a90\";",
            q(az)
        );
        let mut prev: Option<String> = None;
        for &i in subnets {
            let sn = &lab.subnets[i];
            let (fill, color, what) = if sn.public {
                ("#eef6e7", "#7aa116", "public subnet")
            } else {
                ("#e8f1fa", "#147eba", "private subnet")
            };
            let _ = writeln!(
                s,
                "          subgraph cluster_sn{i} {{\n            label={}; style=\"rounded,filled\"; fillcolor=\"{fill}\"; color=\"{color}\";",
                q(&sn.name)
            );
            let _ = writeln!(
                s,
                "            sn{i} [shape=plaintext, style=\"\", label={}];",
                lines(&[sn.cidr.to_string(), what.into()])
            );
            let mut ids = vec![format!("sn{i}")];
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
                let _ = writeln!(
                    s,
                    "            nat{k} [label={}, color=\"#7d3ccf\"];",
                    lines(&l)
                );
                ids.push(format!("nat{k}"));
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
                let _ = writeln!(
                    s,
                    "            inst{k} [label={}, color=\"#c45500\"];",
                    lines(&l)
                );
                ids.push(format!("inst{k}"));
            }
            if hidden > 0 {
                let _ = writeln!(
                    s,
                    "            more{i} [style=\"rounded,dashed\", label={}];",
                    q(&format!("+{hidden} more instances"))
                );
                ids.push(format!("more{i}"));
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
                    let _ = writeln!(
                        s,
                        "            {id} [label={}, color=\"#3b48cc\"];",
                        lines(&l)
                    );
                    ids.push(id);
                }
            }
            s.push_str("          }\n");
            for w in ids.windows(2) {
                stack.push((w[0].clone(), w[1].clone()));
            }
            match prev {
                Some(p) => stack.push((p, format!("sn{i}"))),
                None => tops.push(format!("sn{i}")),
            }
            prev = ids.last().cloned();
        }
        s.push_str("        }\n");
        bottoms.extend(prev);
    }
    let panel = panel_text(lab);
    if !panel.is_empty() {
        let _ = writeln!(
            s,
            "        routes [shape=note, style=filled, fillcolor=\"#ffffff\", color=\"#c6c9cc\", label={}];",
            panel
        );
    }
    s.push_str("      }\n    }\n  }\n");

    for (a, b) in &stack {
        let _ = writeln!(s, "  {a} -> {b} [style=invis];");
    }
    // Same-rank chains keep file order left to right: AZs by name, hosts as written.
    for row in [&tops, &hosts] {
        if row.len() > 1 {
            let _ = writeln!(s, "  {{ rank=same; {}; }}", row.join("; "));
            let _ = writeln!(s, "  {} [style=invis];", row.join(" -> "));
        }
    }
    // The route table note goes under the columns.
    if !panel.is_empty() {
        for b in &bottoms {
            let _ = writeln!(s, "  {b} -> routes [style=invis];");
        }
    }
    if lab.internet_gateway.is_some() {
        for t in &tops {
            let _ = writeln!(s, "  igw -> {t} [style=invis];");
        }
        for h in &hosts {
            let _ = writeln!(
                s,
                "  {h} -> igw [dir=both, color=\"#232f3e\", penwidth=1.5];"
            );
        }
    }
    // Edges point from the upper node down (so ranks follow the picture) and `dir=back`
    // turns the arrow where traffic flows up.
    for &(sn, n) in &facts.nat_routes {
        let _ = writeln!(
            s,
            "  nat{n} -> sn{sn} [dir=back, lhead=cluster_sn{sn}, style=dashed, color=\"#7d3ccf\", fontcolor=\"#7d3ccf\", xlabel=\"0.0.0.0/0\"];"
        );
    }
    // One label per database: its other wires say the same.
    let mut labelled = std::collections::BTreeSet::new();
    for a in &facts.sg_allows {
        let label = if labelled.insert(a.database) {
            format!(", label={}", q(&format!("{}\nallowed by SG", a.short())))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  inst{} -> db{}p [color=\"#1d8102\", fontcolor=\"#1d8102\"{label}];",
            a.instance, a.database
        );
    }
    for &d in &facts.replicas {
        let _ = writeln!(
            s,
            "  db{d}p -> db{d}s [constraint=false, style=dashed, color=\"#3b48cc\", fontcolor=\"#3b48cc\", label=\"replication\"];"
        );
    }
    s.push_str("}\n");
    s
}

/// The route tables and RDS endpoints as a left-justified note label.
fn panel_text(lab: &Lab) -> String {
    let mut l: Vec<String> = Vec::new();
    if !lab.route_tables.is_empty() {
        l.push("Route tables".into());
    }
    for (t, table) in lab.route_tables.iter().enumerate() {
        let subnets = table_users(lab, t);
        l.push(format!("  {} ({subnets})", table.name));
        for r in &table.routes {
            l.push(format!(
                "    {} → {}",
                r.destination,
                target_name(lab, &r.target)
            ));
        }
    }
    if !lab.databases.is_empty() {
        l.push("RDS endpoints".into());
    }
    for db in &lab.databases {
        l.push(format!(
            "  {}:{} → {}",
            db.endpoint, db.port, db.primary.name
        ));
    }
    if l.is_empty() {
        return String::new();
    }
    // `\l` ends a left-justified line in dot; escape each line, then join.
    let body: Vec<String> = l
        .iter()
        .map(|x| {
            let quoted = q(x);
            quoted[1..quoted.len() - 1].to_string()
        })
        .collect();
    format!("\"{}\\l\"", body.join("\\l"))
}
