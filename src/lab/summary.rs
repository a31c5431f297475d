//! The summary `up` prints, laid out like the AWS console's resource lists.

use crate::plan::{Plan, aws_id};
use crate::topology::{BUILTIN_NAME, Lab, PublicIp};
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

/// The "Try:" lines `up` prints last: commands to run next on this lab. Each names what
/// the lab has; a hint that does not apply to it is left out.
pub fn try_hints(lab: &Lab) -> String {
    let lab_arg = if lab.name == BUILTIN_NAME {
        String::new()
    } else {
        format!(" --lab {}", lab.name)
    };
    let mut hints = Vec::new();
    // Only an EC2 instance with a public IP shows it: the internet gateway translates
    // to its private address, the only one the instance holds.
    if let Some(i) = lab
        .instances
        .iter()
        .find(|i| i.public_ip.address().is_some())
    {
        hints.push(format!(
            "sudo vpclab exec{lab_arg} {} -- ip -br addr    (the instance never holds its public IP)",
            i.name
        ));
    }
    hints.push(format!(
        "sudo vpclab status {0}    |    sudo vpclab down {0}",
        lab.name
    ));
    let mut o = String::new();
    for (k, hint) in hints.iter().enumerate() {
        let lead = if k == 0 { "Try: " } else { "     " };
        let _ = writeln!(o, "{lead}{hint}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::{builtin, lab_from};

    /// Instances without public IPs, and an internet host named like the built-in
    /// lab's web server.
    const NO_PUBLIC_IP: &str = r#"
name: private-only
region: eu-west-1
vpc: { name: v, cidr: 10.1.0.0/16 }
subnets:
  only: { az: eu-west-1a, cidr: 10.1.0.0/24 }
security_groups:
  sg: {}
instances:
  app: { subnet: only, security_groups: [sg] }
internet:
  web: { ip: 203.0.113.80 }
"#;

    #[test]
    fn the_hands_on_gets_the_hints_it_always_got() {
        let lab = builtin();
        assert_eq!(
            try_hints(&lab),
            "Try: sudo vpclab exec web -- ip -br addr    (the instance never holds its public IP)\n     sudo vpclab status handson    |    sudo vpclab down handson\n"
        );
    }

    #[test]
    fn a_lab_without_public_ips_gets_no_exec_hint() {
        assert_eq!(
            try_hints(&lab_from(NO_PUBLIC_IP)),
            "Try: sudo vpclab status private-only    |    sudo vpclab down private-only\n"
        );
    }

    #[test]
    fn the_exec_hint_names_an_instance_with_a_public_ip_never_an_internet_host() {
        let labs = [
            lab_from(NO_PUBLIC_IP),
            lab_from(include_str!("../../tests/labs/elastic-and-auto.yaml")),
            lab_from(include_str!(
                "../../tests/labs/public-ip-private-subnet.yaml"
            )),
            lab_from(include_str!("../../tests/labs/nat-per-az.yaml")),
            lab_from(include_str!("../../labs/public-db.yaml")),
        ];
        let mut named = Vec::new();
        for lab in &labs {
            let hints = try_hints(lab);
            let Some(target) = hints.lines().find_map(|l| {
                let rest = l.split_once(" exec ")?.1;
                let rest = rest.strip_prefix(&format!("--lab {} ", lab.name))?;
                rest.split_whitespace().next()
            }) else {
                continue;
            };
            let inst = lab.instances.iter().find(|i| i.name == target);
            assert!(
                inst.is_some_and(|i| i.public_ip.address().is_some()),
                "lab {}: `{target}` is not an instance with a public IP",
                lab.name
            );
            assert!(!lab.internet.iter().any(|h| h.name == target));
            named.push(format!("{}: {target}", lab.name));
        }
        assert_eq!(
            named,
            [
                "eipauto: auto",
                "noigw: stuck",
                "natperaz: web-a",
                "public-db: server"
            ]
        );
    }
}
