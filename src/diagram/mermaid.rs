//! Mermaid `flowchart TB`: frames as nested subgraphs, wires as edges. The syntax is kept
//! conservative: plain alphanumeric ids, every label quoted, entity codes for quotes and
//! angle brackets, `<br/>` for line breaks.

use super::text::{self, Panel};
use super::{Facts, zones};
use crate::topology::Lab;
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
        for host in text::internet_nodes(lab) {
            let _ = writeln!(s, "    {}[{}]", host.id, label(&host.lines));
            hosts.push(host.id);
        }
        s.push_str("  end\n");
        styles.push("  style internet fill:#f4f5f6,stroke:#545b64".into());
    }
    let _ = writeln!(s, "  subgraph cloud[{}]", one("AWS Cloud"));
    let _ = writeln!(s, "    subgraph region[{}]", one(text::region_title(lab)));
    if let Some(igw) = &lab.internet_gateway {
        let _ = writeln!(
            s,
            "      igw[{}]",
            label(&[igw.clone(), "internet gateway".into()])
        );
    }
    let _ = writeln!(s, "      subgraph vpc[{}]", one(text::vpc_title(lab)));
    for (c, (az, subnets)) in zones(lab).iter().enumerate() {
        let _ = writeln!(s, "        subgraph az{c}[{}]", one(az.as_str()));
        for &i in subnets {
            let sn = &lab.subnets[i];
            let what = if sn.public { "public" } else { "private" };
            let _ = writeln!(
                s,
                "          subgraph sn{i}[{}]",
                one(match text::acl_note(lab, i) {
                    Some(acl) => format!("{} · {} · {what} · {acl}", sn.name, sn.cidr),
                    None => format!("{} · {} · {what}", sn.name, sn.cidr),
                })
            );
            let cards = text::subnet_nodes(lab, i);
            for card in &cards {
                let _ = writeln!(s, "            {}[{}]", card.id, label(&card.lines));
            }
            if cards.is_empty() {
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
    let panel = panel_lines(&Panel::of(lab));
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

/// The route tables, a line each with their routes, and the RDS endpoints.
fn panel_lines(panel: &Panel) -> Vec<String> {
    let mut l = Vec::new();
    if !panel.tables.is_empty() {
        l.push("Route tables".to_string());
    }
    for table in &panel.tables {
        l.push(format!(
            "{} ({}): {}",
            table.name,
            table.users,
            table.routes.join(", ")
        ));
    }
    l.extend(panel.endpoints.iter().map(|e| format!("RDS endpoint {e}")));
    l
}
