//! The summary `up` prints, laid out like the AWS console's resource lists.

use crate::plan::{Plan, aws_id};
use crate::topology::{Lab, PublicIp};
use std::fmt::Write;

pub fn render(lab: &Lab, plan: &Plan) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "VPC              {} ({})  {}  region {}",
        lab.vpc.name,
        aws_id("vpc", &lab.name, &lab.vpc.name),
        lab.vpc.cidr,
        lab.region
    );
    let _ = writeln!(w, "\nSubnets");
    let _ = writeln!(
        w,
        "  {:<14} {:<17} {:<15} {:<13} type",
        "name", "AZ", "CIDR", "route table"
    );
    for s in &lab.subnets {
        let _ = writeln!(
            w,
            "  {:<14} {:<17} {:<15} {:<13} {}",
            s.name,
            s.az,
            s.cidr.to_string(),
            lab.route_tables[s.route_table].name,
            if s.public { "public" } else { "private" }
        );
    }
    let _ = writeln!(w, "\nRoute tables");
    for rt in &plan.route_tables {
        if rt.subnets.is_empty() && rt.name == "main" {
            continue;
        }
        let _ = writeln!(w, "  {} ({}): {}", rt.name, rt.id, rt.subnets.join(", "));
        for (d, t) in &rt.routes {
            let _ = writeln!(w, "    {:<18} -> {t}", d.to_string());
        }
    }
    if let Some(igw) = &lab.internet_gateway {
        let _ = writeln!(
            w,
            "\nInternet gateway {igw} ({})",
            aws_id("igw", &lab.name, igw)
        );
    }
    for n in &lab.nat_gateways {
        let _ = writeln!(
            w,
            "NAT gateway      {} ({}) in {}: private IP {}, Elastic IP {}",
            n.name,
            aws_id("nat", &lab.name, &n.name),
            lab.subnets[n.subnet].name,
            n.private_ip,
            lab.elastic_ips[n.elastic_ip].address
        );
    }
    if !lab.instances.is_empty() {
        let _ = writeln!(w, "\nInstances");
        let _ = writeln!(
            w,
            "  {:<10} {:<20} {:<16} {:<14} {:<15} security groups",
            "name", "instance id", "AZ", "private IP", "public IP"
        );
        for i in &lab.instances {
            let public = match &i.public_ip {
                PublicIp::None => "-".to_string(),
                PublicIp::Auto { address } => address.to_string(),
                PublicIp::Elastic { address, .. } => format!("{address} (EIP)"),
            };
            let sgs: Vec<&str> = i
                .security_groups
                .iter()
                .map(|g| lab.security_groups[*g].name.as_str())
                .collect();
            let _ = writeln!(
                w,
                "  {:<10} {:<20} {:<16} {:<14} {:<15} {}",
                i.name,
                i.id,
                lab.subnets[i.subnet].az,
                i.private_ip.to_string(),
                public,
                sgs.join(", ")
            );
            if let Some(p) = i.public_ip.address() {
                let _ = writeln!(w, "  {:<10} public DNS {}", "", lab.public_dns_name(p));
            }
        }
    }
    for d in &lab.databases {
        let _ = writeln!(
            w,
            "\nDatabase         {} ({}, Multi-AZ: {})",
            d.name,
            d.engine,
            if d.multi_az { "yes" } else { "no" }
        );
        let _ = writeln!(w, "  endpoint       {}:{}", d.endpoint, d.port);
        for (role, n) in
            std::iter::once(("primary", &d.primary)).chain(d.standby.iter().map(|s| ("standby", s)))
        {
            let _ = writeln!(
                w,
                "  {role:<14} {} in {} ({}){}",
                n.name,
                lab.subnets[n.subnet].az,
                n.private_ip,
                n.public_ip
                    .map(|p| format!(", public {p}"))
                    .unwrap_or_default()
            );
        }
    }
    if !lab.internet.is_empty() {
        let _ = writeln!(w, "\nInternet");
        for h in &lab.internet {
            let _ = writeln!(
                w,
                "  {:<12} {}{}",
                h.name,
                h.ip,
                if h.my_ip { "  (my IP)" } else { "" }
            );
        }
    }
    o
}
