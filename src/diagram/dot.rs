//! Graphviz dot: the same frames as clusters (cloud ⊃ region ⊃ VPC ⊃ AZ ⊃ subnet), the
//! same wires as edges; `dot -Tsvg` or `dot -Tpng` lays it out.

use super::text::{self, Node, NodeKind, Panel};
use super::{Facts, zones};
use crate::topology::Lab;
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

/// A node statement: the box's id, its look and its text.
fn node(n: &Node) -> String {
    let label = lines(&n.lines);
    let attributes = match n.kind {
        NodeKind::Host => format!("label={label}"),
        NodeKind::Nat => format!("label={label}, color=\"#7d3ccf\""),
        NodeKind::Instance => format!("label={label}, color=\"#c45500\""),
        NodeKind::Database => format!("label={label}, color=\"#3b48cc\""),
        NodeKind::More => format!("style=\"rounded,dashed\", label={label}"),
    };
    format!("{} [{attributes}];", n.id)
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
        for host in text::internet_nodes(lab) {
            let _ = writeln!(s, "    {}", node(&host));
            hosts.push(host.id);
        }
        s.push_str("  }\n");
    }

    s.push_str(
        "  subgraph cluster_cloud {\n    label=\"AWS Cloud\"; style=solid; color=\"#232f3e\";\n",
    );
    let _ = writeln!(
        s,
        "    subgraph cluster_region {{\n      label={}; style=dashed; color=\"#00a4a6\";",
        q(&text::region_title(lab))
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
        q(&text::vpc_title(lab))
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
                lines(
                    &[sn.cidr.to_string(), what.into()]
                        .into_iter()
                        .chain(text::acl_note(lab, i))
                        .collect::<Vec<_>>()
                )
            );
            let mut ids = vec![format!("sn{i}")];
            for card in text::subnet_nodes(lab, i) {
                let _ = writeln!(s, "            {}", node(&card));
                ids.push(card.id);
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
    let panel = panel_text(&Panel::of(lab));
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
fn panel_text(panel: &Panel) -> String {
    let mut l: Vec<String> = Vec::new();
    if !panel.tables.is_empty() {
        l.push("Route tables".into());
    }
    for table in &panel.tables {
        l.push(format!("  {} ({})", table.name, table.users));
        l.extend(table.routes.iter().map(|r| format!("    {r}")));
    }
    if !panel.endpoints.is_empty() {
        l.push("RDS endpoints".into());
    }
    l.extend(panel.endpoints.iter().map(|e| format!("  {e}")));
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
