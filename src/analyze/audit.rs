//! AWS Security Hub's controls for VPCs, EC2 and RDS, checked on a lab file, and
//! reachability findings in the style of Network Access Analyzer ("the internet can reach
//! database X on 3306"), computed with `reach` on the Plan.

use super::matrix;
use super::reach::{self, Down, Query};
use super::spans::{Loc, Spans};
use crate::plan::{Plan, aws_id};
use crate::topology::{AclAction, AclRule, Lab, NetworkAcl, Peer, Protocol, PublicIp, SgRule};
use crate::trace::send::Proto;
use ipnet::Ipv4Net;
use serde::Serialize;

/// Security Hub's severity labels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `EC2.19`, `RDS.2`, or `REACH` for a reachability finding.
    pub control: &'static str,
    pub severity: Severity,
    /// The resource that fails: `security-group Project-DB-SG`, `instance server`.
    pub resource: String,
    /// Where the lab file causes it.
    pub at: Option<Loc>,
    pub message: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// Controls checked that found nothing.
    pub passed: Vec<&'static str>,
    /// Controls that do not apply yet, with why.
    pub not_applicable: Vec<(&'static str, &'static str)>,
}

impl Audit {
    /// A critical or high finding: what makes `vpclab audit` exit 1.
    pub fn fails(&self) -> bool {
        self.findings.iter().any(|f| f.severity <= Severity::High)
    }
}

/// The ports Security Hub's EC2.19 calls high-risk.
pub const HIGH_RISK_PORTS: [u16; 24] = [
    20, 21, 22, 23, 25, 110, 135, 143, 445, 1433, 1434, 3000, 3306, 3389, 4333, 5000, 5432, 5500,
    5601, 8080, 8088, 8888, 9200, 9300,
];

/// The ports EC2.18 lets anyone reach by default.
const AUTHORIZED_PORTS: [u16; 2] = [80, 443];

/// The remote administration ports EC2.21 keeps network ACLs from opening: SSH and RDP.
const ADMIN_PORTS: [(u16, &str); 2] = [(22, "SSH"), (3389, "RDP")];

/// The inbound rules of a network ACL that let anyone in to SSH or RDP, with those ports.
/// Per port, the lowest-numbered rule from 0.0.0.0/0 that covers TCP to it decides for the
/// internet: an allow is the finding; a deny shadows every rule after it.
fn open_to_admin(acl: &NetworkAcl) -> Vec<(&AclRule, Vec<(u16, &'static str)>)> {
    let mut out: Vec<(&AclRule, Vec<(u16, &'static str)>)> = Vec::new();
    for (port, name) in ADMIN_PORTS {
        let covers = |r: &&AclRule| {
            r.peer.prefix_len() == 0
                && match r.protocol {
                    Protocol::All => true,
                    Protocol::Tcp => r.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port)),
                    Protocol::Udp | Protocol::Icmp => false,
                }
        };
        let Some(rule) = acl
            .inbound
            .iter()
            .find(covers)
            .filter(|r| r.action == AclAction::Allow)
        else {
            continue;
        };
        match out.iter_mut().find(|(r, _)| r.number == rule.number) {
            Some((_, ports)) => ports.push((port, name)),
            None => out.push((rule, vec![(port, name)])),
        }
    }
    out.sort_by_key(|(r, _)| r.number);
    out
}

fn unrestricted(r: &SgRule) -> bool {
    r.peer == Peer::Cidr(Ipv4Net::default())
}

/// The TCP/UDP ports a rule opens (ICMP opens none).
fn port_range(r: &SgRule) -> Option<(u16, u16)> {
    match r.protocol {
        Protocol::Icmp => None,
        Protocol::All => Some((0, 65535)),
        Protocol::Tcp | Protocol::Udp => Some(r.ports.unwrap_or((0, 65535))),
    }
}

fn ports_text(r: &SgRule) -> String {
    match port_range(r) {
        Some((0, 65535)) | None => format!("{} (all ports)", r.protocol.as_str()),
        Some((a, b)) if a == b => format!("{} {a}", r.protocol.as_str()),
        Some((a, b)) => format!("{} {a}-{b}", r.protocol.as_str()),
    }
}

/// Checks a lab (its file text gives the positions).
pub fn audit(lab: &Lab, plan: &Plan, text: &str) -> Audit {
    let spans = Spans::parse(text);
    let mut findings = Vec::new();
    let mut finding = |control, severity, resource: String, at, message, fix: &str| {
        findings.push(Finding {
            control,
            severity,
            resource,
            at,
            message,
            fix: fix.to_string(),
        })
    };

    for g in &lab.security_groups {
        let resource = format!("security-group {}", g.name);
        // EC2.2: the VPC's default security group restricts all traffic.
        if g.name == "default" && !(g.inbound.is_empty() && g.outbound.is_empty()) {
            finding(
                "EC2.2",
                Severity::High,
                resource.clone(),
                spans.security_group(&g.name),
                "the VPC's default security group allows traffic".into(),
                "remove every inbound and outbound rule of `default` (write `inbound: []` and `outbound: []`) and use groups of your own",
            );
        }
        for (i, r) in g.inbound.iter().enumerate() {
            if !unrestricted(r) {
                continue;
            }
            let at = spans.inbound_rule(&g.name, i);
            let Some((lo, hi)) = port_range(r) else {
                continue;
            };
            let opens = |p: u16| (lo..=hi).contains(&p);
            if opens(22) && r.protocol != Protocol::Udp {
                finding(
                    "EC2.13",
                    Severity::High,
                    resource.clone(),
                    at,
                    format!(
                        "inbound {} from 0.0.0.0/0 allows SSH (22) from anywhere",
                        ports_text(r)
                    ),
                    "allow SSH from `my-ip` or your own CIDR only",
                );
            }
            let risky: Vec<String> = HIGH_RISK_PORTS
                .iter()
                .filter(|p| opens(**p))
                .map(u16::to_string)
                .collect();
            if !risky.is_empty() {
                finding(
                    "EC2.19",
                    Severity::Critical,
                    resource.clone(),
                    at,
                    format!(
                        "inbound {} from 0.0.0.0/0 opens high-risk port{} {} to anyone",
                        ports_text(r),
                        if risky.len() == 1 { "" } else { "s" },
                        risky.join(", ")
                    ),
                    "replace 0.0.0.0/0 with the security group (or CIDR) of the clients that need it",
                );
            }
            if !(lo == hi && AUTHORIZED_PORTS.contains(&lo)) {
                finding(
                    "EC2.18",
                    Severity::High,
                    resource.clone(),
                    at,
                    format!(
                        "inbound {} from 0.0.0.0/0: only 80 and 443 may be open to anyone",
                        ports_text(r)
                    ),
                    "restrict the source to the clients that need it",
                );
            }
        }
    }

    // EC2.21 on the ACLs the file writes; the VPC's default ACL (everything allowed) has no
    // rule in the file to point at or to fix, so it is not checked.
    for acl in &lab.network_acls {
        for (r, ports) in open_to_admin(acl) {
            let ports: Vec<String> = ports.iter().map(|(p, n)| format!("{n} ({p})")).collect();
            finding(
                "EC2.21",
                Severity::Medium,
                format!(
                    "network-acl {} ({})",
                    acl.name,
                    aws_id("acl", &lab.name, &acl.name)
                ),
                spans.acl_rule(&acl.name, true, r.number),
                format!(
                    "inbound rule {} lets anyone in to {}",
                    r.describe(true),
                    ports.join(" and ")
                ),
                "allow SSH and RDP only from the CIDRs that need them (your own /32, the VPC's CIDR), or deny them from 0.0.0.0/0 with a lower rule number",
            );
        }
    }

    for i in &lab.instances {
        if let PublicIp::Auto { address } | PublicIp::Elastic { address, .. } = i.public_ip {
            finding(
                "EC2.9",
                Severity::High,
                format!("instance {} ({})", i.name, i.id),
                spans.instance_public_ip(&i.name),
                format!("instance {} has the public IPv4 address {address}", i.name),
                "put it in a private subnet with `public_ip: none` and reach it through a load balancer, a NAT gateway or a bastion",
            );
        }
    }

    for d in &lab.databases {
        let resource = format!("db-instance {}", d.name);
        if d.publicly_accessible {
            finding(
                "RDS.2",
                Severity::Critical,
                resource.clone(),
                spans.database_public(&d.name),
                format!("database {} is publicly accessible", d.name),
                "set `publicly_accessible: false` and keep it in private subnets",
            );
        }
        if !d.multi_az {
            finding(
                "RDS.5",
                Severity::Medium,
                resource.clone(),
                spans.database_multi_az(&d.name),
                format!(
                    "database {} is not Multi-AZ: an AZ outage takes it down",
                    d.name
                ),
                "set `multi_az: true` (a standby in another AZ of the subnet group)",
            );
        }
    }

    findings.extend(reachability(lab, plan, &spans));

    let mut passed: Vec<&'static str> = [
        "EC2.2", "EC2.9", "EC2.13", "EC2.18", "EC2.19", "EC2.21", "RDS.2", "RDS.5", "REACH",
    ]
    .into_iter()
    .filter(|c| !findings.iter().any(|f| f.control == *c))
    .collect();
    passed.sort();
    findings.sort_by(|a, b| (a.severity, a.control).cmp(&(b.severity, b.control)));
    Audit {
        findings,
        passed,
        not_applicable: vec![("EC2.6", "vpclab labs have no VPC flow logs yet")],
    }
}

/// What the internet reaches, with `reach`: each database on its port, each instance on
/// the high-risk ports the lab uses. "The internet" is every internet host that is not
/// the lab's own `my_ip` (reaching from my own IP is what a rule for `my-ip` is for).
fn reachability(lab: &Lab, plan: &Plan, spans: &Spans) -> Vec<Finding> {
    let strangers: Vec<&str> = lab
        .internet
        .iter()
        .filter(|h| !h.my_ip)
        .map(|h| h.name.as_str())
        .collect();
    let reaches = |to: &str, port: u16| {
        strangers.iter().find_map(|from| {
            let q = Query {
                from: from.to_string(),
                to: to.to_string(),
                proto: Proto::Tcp,
                port: Some(port),
            };
            reach::analyze(lab, plan, &Down::new(), &q)
                .ok()
                .filter(|a| a.reachable)
                .map(|a| (from.to_string(), a))
        })
    };
    let through = |a: &reach::Analysis| {
        a.path
            .iter()
            .filter(|c| c.direction == Some("inbound"))
            .filter_map(|c| c.rule.clone())
            .next_back()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for d in &lab.databases {
        if let Some((from, a)) = reaches(&d.name, d.port) {
            out.push(Finding {
                control: "REACH",
                severity: Severity::Critical,
                resource: format!("db-instance {}", d.name),
                at: spans.database_public(&d.name),
                message: format!(
                    "the internet can reach database {} on {} ({from} -> {}, through {})",
                    d.name,
                    d.port,
                    a.destination,
                    through(&a)
                ),
                fix: "make it private (`publicly_accessible: false`) and allow its port only from the application's security group".into(),
            });
        }
    }
    let risky: Vec<u16> = matrix::probes(lab)
        .iter()
        .filter_map(|p| {
            p.port
                .filter(|port| p.proto == Proto::Tcp && HIGH_RISK_PORTS.contains(port))
        })
        .collect();
    for i in &lab.instances {
        for port in &risky {
            if let Some((from, a)) = reaches(&i.name, *port) {
                out.push(Finding {
                    control: "REACH",
                    severity: Severity::High,
                    resource: format!("instance {} ({})", i.name, i.id),
                    at: spans.instance_public_ip(&i.name),
                    message: format!(
                        "the internet can reach instance {} on {port} ({from} -> {}, through {})",
                        i.name,
                        a.destination,
                        through(&a)
                    ),
                    fix: "allow that port only from the addresses that need it (`my-ip`, a security group)".into(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::testing::{builtin, lab_from};

    fn run(lab: &Lab, text: &str) -> Audit {
        audit(lab, &crate::plan::compile(lab), text)
    }

    fn summary(a: &Audit) -> Vec<String> {
        a.findings
            .iter()
            .map(|f| {
                let at =
                    f.at.map_or("-".into(), |l| format!("{}:{}", l.line, l.column));
                format!("{} {} {} {at}", f.control, f.severity.as_str(), f.resource)
            })
            .collect()
    }

    const PUBLIC_DB: &str = include_str!("../../labs/public-db.yaml");
    const SCALE: &str = include_str!("../../labs/scale-1000.yaml");
    const NACL: &str = include_str!("../../labs/nacl.yaml");

    #[test]
    fn the_public_database_lab_fails_rds_2_ec2_19_and_the_internet_reaches_it() {
        let a = run(&lab_from(PUBLIC_DB), PUBLIC_DB);
        assert_eq!(
            summary(&a),
            [
                "EC2.19 CRITICAL security-group Project-Web-SG 26:9",
                "EC2.19 CRITICAL security-group Project-DB-SG 31:9",
                "RDS.2 CRITICAL db-instance project-db 51:26",
                "REACH CRITICAL db-instance project-db 51:26",
                "EC2.13 HIGH security-group Project-Web-SG 26:9",
                "EC2.18 HIGH security-group Project-Web-SG 26:9",
                "EC2.18 HIGH security-group Project-DB-SG 31:9",
                "EC2.9 HIGH instance server (i-061c1229b8dc8c7c0) 36:16",
                "REACH HIGH instance server (i-061c1229b8dc8c7c0) 36:16",
                "RDS.5 MEDIUM db-instance project-db 47:15",
            ]
        );
        let reach = &a.findings[3];
        assert!(
            reach
                .message
                .starts_with("the internet can reach database project-db on 3306"),
            "{}",
            reach.message
        );
        assert!(a.findings[1].message.contains("high-risk port 3306"));
        assert!(a.fails());
        // A lab without network ACLs has only the default ACL, which the file never writes.
        assert_eq!(a.passed, ["EC2.2", "EC2.21"]);
    }

    #[test]
    fn the_built_in_lab_has_no_critical_finding_only_its_public_web_server() {
        let a = run(&builtin(), crate::topology::BUILTIN_YAML);
        assert_eq!(
            summary(&a),
            ["EC2.9 HIGH instance web (i-04c5734544adf7dae) 59:16"]
        );
        assert!(a.fails(), "a high finding fails the audit");
    }

    #[test]
    fn the_scale_lab_fails_only_ec2_9_for_its_public_web_servers() {
        let lab = lab_from(SCALE);
        let a = run(&lab, SCALE);
        let public = lab
            .instances
            .iter()
            .filter(|i| i.public_ip.address().is_some())
            .count();
        assert_eq!(public, 80);
        assert_eq!(a.findings.len(), public);
        assert!(a.findings.iter().all(|f| f.control == "EC2.9"));
    }

    #[test]
    fn the_network_acl_lab_fails_only_ec2_9_its_acl_opens_no_admin_port_to_anyone() {
        let a = run(&lab_from(NACL), NACL);
        assert_eq!(
            summary(&a),
            ["EC2.9 HIGH instance web (i-01113e25d03db7f4b) 64:16"]
        );
        assert!(a.passed.contains(&"EC2.21"), "{:?}", a.passed);
        assert!(
            !a.not_applicable.iter().any(|(c, _)| *c == "EC2.21"),
            "{:?}",
            a.not_applicable
        );
    }

    #[test]
    fn an_acl_rule_letting_anyone_in_to_ssh_or_rdp_is_ec2_21_unless_a_deny_comes_first() {
        // Rule 90 denies SSH from anywhere first, so rule 300 (all traffic) opens RDP only;
        // rule 130 opens SSH to anyone too but rule 90 shadows it.
        let old = "      - { rule: 120, type: ssh, source: 10.0.0.0/16, action: allow }\n";
        assert!(NACL.contains(old));
        let text = NACL.replacen(
            old,
            &format!(
                "{old}      - {{ rule: 90, type: ssh, source: 0.0.0.0/0, action: deny }}
      - {{ rule: 130, type: ssh, source: 0.0.0.0/0, action: allow }}
      - {{ rule: 300, protocol: all, source: 0.0.0.0/0, action: allow }}
      - {{ rule: 310, protocol: tcp, port: 3000-4000, source: 0.0.0.0/0, action: allow }}
"
            ),
            1,
        );
        let a = run(&lab_from(&text), &text);
        let ec2_21: Vec<&Finding> = a
            .findings
            .iter()
            .filter(|f| f.control == "EC2.21")
            .collect();
        assert_eq!(ec2_21.len(), 1, "{:#?}", a.findings);
        let f = ec2_21[0];
        assert_eq!(f.severity, Severity::Medium);
        assert!(
            f.resource.starts_with("network-acl public-acl (acl-0"),
            "{}",
            f.resource
        );
        assert_eq!(
            f.at,
            Some(Loc {
                line: 58,
                column: 9
            })
        );
        assert_eq!(
            f.message,
            "inbound rule 300 allow all traffic from 0.0.0.0/0 lets anyone in to RDP (3389)"
        );
        // Without the deny, rule 130 opens SSH and rule 300 still opens RDP.
        let text = text.replacen(
            "      - { rule: 90, type: ssh, source: 0.0.0.0/0, action: deny }\n",
            "",
            1,
        );
        let a = run(&lab_from(&text), &text);
        let messages: Vec<&str> = a
            .findings
            .iter()
            .filter(|f| f.control == "EC2.21")
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "inbound rule 130 allow tcp 22 from 0.0.0.0/0 lets anyone in to SSH (22)",
                "inbound rule 300 allow all traffic from 0.0.0.0/0 lets anyone in to RDP (3389)"
            ]
        );
        assert!(!a.passed.contains(&"EC2.21"));
    }

    #[test]
    fn a_default_group_with_rules_and_wide_open_ports_are_findings() {
        let text = crate::topology::BUILTIN_YAML
            .replacen(
                "security_groups:\n",
                "security_groups:\n  default:\n    inbound:\n      - { protocol: all, source: 0.0.0.0/0 }\n",
                1,
            )
            .replacen(
                "    security_groups: [MyApp-SecurityGroup]",
                "    security_groups: [MyApp-SecurityGroup, default]",
                1,
            );
        let a = run(&lab_from(&text), &text);
        let controls: Vec<&str> = a
            .findings
            .iter()
            .filter(|f| f.resource == "security-group default")
            .map(|f| f.control)
            .collect();
        assert_eq!(controls, ["EC2.19", "EC2.13", "EC2.18", "EC2.2"]);
        let ec2_19 = &a.findings[0];
        assert!(
            ec2_19.message.contains("20, 21, 22, 23, 25"),
            "{}",
            ec2_19.message
        );
        // HTTP and HTTPS open to anyone pass EC2.18.
        assert!(
            !a.findings.iter().any(|f| f.control == "EC2.18"
                && f.resource == "security-group MyWebServer-SecurityGroup")
        );
    }
}
