//! The plan as people read it: what `vpclab up` will create, section by section.

use super::*;
use std::fmt::Write;

pub fn render(plan: &Plan) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "Plan for lab `{}` ({}), VPC {}",
        plan.lab, plan.region, plan.vpc_cidr
    );

    let _ = writeln!(w, "\nNamespaces ({}):", plan.namespaces.len());
    for n in &plan.namespaces {
        let az =
            n.az.as_deref()
                .map(|a| format!("  [{a}]"))
                .unwrap_or_default();
        let _ = writeln!(w, "  {:<34} {}{az}", n.name, n.role.as_str());
    }

    let _ = writeln!(w, "\nLinks ({} veth pairs):", plan.veths.len());
    for v in &plan.veths {
        let end = |e: &VethEnd| {
            let node = e.ns.split_once('.').map(|x| x.1).unwrap_or(&e.ns);
            match &e.master {
                Some(m) => format!("{node}/{} (bridge {m})", e.name),
                None => format!("{node}/{}", e.name),
            }
        };
        let _ = writeln!(w, "  {:<28} <-> {}", end(&v.a), end(&v.b));
    }

    let _ = writeln!(w, "\nAddresses:");
    for n in &plan.namespaces {
        for a in &n.addresses {
            let _ = writeln!(w, "  {:<16} {:<12} {}", n.node, a.dev, a.addr);
        }
    }

    let _ = writeln!(w, "\nRoute tables (as the console shows them):");
    for rt in &plan.route_tables {
        let subnets = if rt.subnets.is_empty() {
            "no subnets".to_string()
        } else {
            rt.subnets.join(", ")
        };
        let _ = writeln!(
            w,
            "  {} ({}), kernel table {}, subnets: {subnets}",
            rt.name, rt.id, rt.table
        );
        let _ = writeln!(w, "    {:<18} Target", "Destination");
        for (d, t) in &rt.routes {
            let _ = writeln!(w, "    {:<18} {t}", d.to_string());
        }
    }

    let _ = writeln!(w, "\nKernel routes and policy rules:");
    for n in &plan.namespaces {
        for r in &n.rules {
            let _ = writeln!(
                w,
                "  {:<16} rule   priority {} iif {} lookup {}",
                n.node, r.priority, r.iif, r.table
            );
        }
        for r in &n.routes {
            let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
            let table = if r.table == MAIN_TABLE {
                String::new()
            } else {
                format!(" table {}", r.table)
            };
            let _ = writeln!(
                w,
                "  {:<16} route  {}{via} dev {}{table}",
                n.node, r.dst, r.dev
            );
        }
    }

    let _ = writeln!(w, "\nnftables (one atomic batch per namespace):");
    for n in &plan.namespaces {
        if let Some(t) = &n.firewall {
            let _ = writeln!(w, "  # {}", n.name);
            for line in t.to_string().lines() {
                let _ = writeln!(w, "  {line}");
            }
        }
        if let Some(c) = n.flow_log {
            let _ = writeln!(w, "  # {} (flow-log counting table)", n.name);
            for line in c.ruleset().lines() {
                let _ = writeln!(w, "  {line}");
            }
        }
    }

    let _ = writeln!(w, "\nDNS records:");
    for (label, r) in [
        ("VPC resolver", &plan.dns.vpc),
        ("internet resolver", &plan.dns.internet),
    ] {
        let listen: Vec<String> = r.listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(w, "  {label} at {}:", listen.join(", "));
        for rec in &r.records {
            let (ty, val) = match &rec.data {
                RecordData::A(ip) => ("A", ip.to_string()),
                RecordData::Cname(t) => ("CNAME", t.clone()),
            };
            let _ = writeln!(w, "    {:<58} {:>3}s {:<5} {val}", rec.name, rec.ttl, ty);
        }
    }

    let _ = writeln!(w, "\nHosts and services:");
    for h in &plan.hosts {
        let mut what: Vec<String> = h.services.iter().map(|s| s.as_str().to_string()).collect();
        if let Some(db) = &h.database {
            what.push(format!("mariadb ({db})"));
        }
        let public = h
            .public_ip
            .map(|p| format!(" public {p}"))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "  {:<16} hostname {:<16} private {}{public}  services: {}",
            h.node,
            h.hostname,
            h.private_ip,
            if what.is_empty() {
                "-".to_string()
            } else {
                what.join(", ")
            }
        );
    }
    o
}
