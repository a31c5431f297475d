use super::*;
use crate::topology::testing::{builtin, lab_from};
use crate::topology::{BUILTIN_YAML, Lab};

fn edit(old: &str, new: &str) -> Lab {
    assert!(BUILTIN_YAML.contains(old), "{old}");
    lab_from(&BUILTIN_YAML.replacen(old, new, 1))
}

fn run_down(lab: &Lab, down: &Down, from: &str, to: &str, port: Option<u16>) -> Analysis {
    let plan = crate::plan::compile(lab);
    let q = Query {
        from: from.into(),
        to: to.into(),
        proto: if port.is_some() {
            Proto::Tcp
        } else {
            Proto::Icmp
        },
        port,
    };
    analyze(lab, &plan, down, &q).unwrap()
}

fn run(lab: &Lab, from: &str, to: &str, port: u16) -> Analysis {
    run_down(lab, &Down::new(), from, to, Some(port))
}

fn kinds(a: &Analysis) -> Vec<String> {
    a.path
        .iter()
        .map(|c| match c.direction {
            Some(d) => format!("{} {d}", c.component),
            None => c.component.to_string(),
        })
        .collect()
}

#[test]
fn web_reaches_the_internet_through_its_route_table_and_the_internet_gateway() {
    let a = run(&builtin(), "web", "example-web", 80);
    assert!(a.reachable, "{a:#?}");
    assert_eq!(a.code, None);
    assert_eq!(
        kinds(&a),
        [
            "network-interface",
            "security-group outbound",
            "route-table",
            "internet-gateway",
            "internet-host"
        ]
    );
    assert_eq!(
        a.path[1].rule.as_deref(),
        Some("MyWebServer-SecurityGroup outbound: All traffic to 0.0.0.0/0")
    );
    let rt = &a.path[2];
    assert_eq!(rt.name, "public");
    assert!(rt.id.starts_with("rtb-0"), "{rt:?}");
    let route = rt.rule.as_deref().unwrap();
    assert!(
        route.starts_with("0.0.0.0/0 -> igw-0") && route.ends_with("(my-igw)"),
        "{route}"
    );
    assert_eq!(
        a.path[3].detail.as_deref(),
        Some("source 10.0.2.238 -> 198.51.100.10")
    );
    assert_eq!(
        (a.path[4].id.as_str(), a.path[4].detail.as_deref()),
        ("203.0.113.60", None)
    );
}

#[test]
fn a_private_instance_goes_out_through_the_nat_gateway_which_remaps_its_port() {
    let a = run(&builtin(), "app", "example-web", 80);
    assert!(a.reachable, "{a:#?}");
    assert_eq!(
        kinds(&a),
        [
            "network-interface",
            "security-group outbound",
            "route-table",
            "nat-gateway",
            "route-table",
            "internet-gateway",
            "internet-host"
        ]
    );
    assert_eq!(
        (a.path[2].name.as_str(), a.path[4].name.as_str()),
        ("private", "public")
    );
    assert_eq!(
        a.path[3].detail.as_deref(),
        Some("source 10.0.1.101:40000 -> 10.0.0.4:1024-65535 (the port is remapped)")
    );
    assert_eq!(
        a.path[5].detail.as_deref(),
        Some("source 10.0.0.4 -> 198.51.100.11")
    );
    assert!(
        a.notes.iter().any(|n| n.contains("REMAP_EPHEMERAL_PORT")),
        "{:?}",
        a.notes
    );
}

#[test]
fn the_far_sides_security_group_rule_is_named_on_the_way_in() {
    let a = run(&builtin(), "web", "my-database", 3306);
    assert!(a.reachable, "{a:#?}");
    let sg = a.path.iter().rev().nth(1).unwrap();
    assert_eq!(
        (sg.direction, sg.rule.as_deref()),
        (
            Some("inbound"),
            Some(
                "MyDatabase-SecurityGroup inbound: MYSQL/Aurora 3306 from MyWebServer-SecurityGroup"
            )
        )
    );
    assert_eq!(a.path.last().unwrap().name, "my-database-2c");
}

#[test]
fn a_security_group_without_a_matching_rule_is_eni_sg_rules_mismatch() {
    let a = run(&builtin(), "stranger", "web", 22);
    assert!(!a.reachable);
    assert_eq!(a.code, Some(Code::EniSgRulesMismatch));
    assert_eq!(a.blocked_at.as_deref(), Some("web"));
    let last = a.path.last().unwrap();
    assert_eq!(
        (last.component, last.direction),
        ("security-group", Some("inbound"))
    );
    assert_eq!(
        a.explanation.as_deref(),
        Some(
            "no inbound rule of MyWebServer-SecurityGroup on web allows tcp 22 from 192.0.2.66 to 10.0.2.238"
        )
    );
    let a = run(&builtin(), "app", "my-database", 3306);
    assert_eq!(a.code, Some(Code::EniSgRulesMismatch));
}

#[test]
fn a_security_group_with_no_rules_is_sg_has_no_rules_either_way() {
    let lab = edit(
        "    inbound:\n      - { type: ssh, source: 10.0.0.0/16 }",
        "    inbound: []\n    outbound: []",
    );
    let a = run(&lab, "web", "app", 22);
    assert_eq!(a.code, Some(Code::SgHasNoRules), "{a:#?}");
    assert_eq!(a.blocked_at.as_deref(), Some("app"));
    let a = run(&lab, "app", "web", 80);
    assert_eq!(a.code, Some(Code::SgHasNoRules), "{a:#?}");
    assert_eq!(a.path.last().unwrap().direction, Some("outbound"));
}

#[test]
fn a_route_table_without_a_route_is_no_route_to_destination() {
    let lab = edit("  private:\n    0.0.0.0/0: my-nat\n", "  private: {}\n");
    let a = run(&lab, "app", "example-web", 80);
    assert_eq!(a.code, Some(Code::NoRouteToDestination), "{a:#?}");
    let last = a.path.last().unwrap();
    assert_eq!(
        (last.component, last.name.as_str()),
        ("route-table", "private")
    );
}

#[test]
fn the_internet_gateway_lets_nothing_in_to_a_private_ip_nor_out_without_a_public_one() {
    let a = run(&builtin(), "stranger", "app", 22);
    assert_eq!(
        a.code,
        Some(Code::IgwPrivateIpAssociationForIngress),
        "{a:#?}"
    );
    assert_eq!(a.path.last().unwrap().component, "internet-gateway");
    // A private subnet routed to the internet gateway instead of the NAT gateway.
    let lab = edit(
        "  private:\n    0.0.0.0/0: my-nat\n",
        "  private:\n    0.0.0.0/0: my-igw\n",
    );
    let a = run(&lab, "app", "example-web", 80);
    assert_eq!(
        a.code,
        Some(Code::IgwPublicIpAssociationForEgress),
        "{a:#?}"
    );
    assert_eq!(a.blocked_at.as_deref(), Some("my-igw"));
}

#[test]
fn nothing_from_outside_connects_through_a_nat_gateway() {
    for to in ["my-nat", "my-nat-eip", "198.51.100.11"] {
        let a = run(&builtin(), "stranger", to, 80);
        assert_eq!(a.code, Some(Code::NgwRequiresSourceInVpc), "{to}: {a:#?}");
        assert_eq!(a.blocked_at.as_deref(), Some("my-nat"));
    }
}

#[test]
fn a_stopped_instance_or_a_gateway_in_a_down_zone_is_bad_state() {
    let lab = builtin();
    let plan = crate::plan::compile(&lab);
    let stopped = down_nodes(&plan, &["web".to_string()], &[]);
    let a = run_down(&lab, &stopped, "stranger", "web", Some(80));
    assert_eq!(
        (a.code, a.blocked_at.as_deref()),
        (Some(Code::BadState), Some("web"))
    );
    let a = run_down(&lab, &stopped, "web", "example-web", Some(80));
    assert_eq!(a.code, Some(Code::BadState));
    let zone_a = down_nodes(&plan, &[], &["ap-northeast-2a".to_string()]);
    assert!(zone_a.contains_key("my-nat") && zone_a.contains_key("app"));
    let a = run_down(&lab, &zone_a, "web", "my-nat", Some(80));
    assert_eq!(
        (a.code, a.blocked_at.as_deref()),
        (Some(Code::BadState), Some("my-nat"))
    );
    assert_eq!(a.path.last().unwrap().component, "nat-gateway");
}

#[test]
fn a_group_reference_does_not_match_a_member_arriving_from_a_public_address() {
    // web's HTTP is for the app servers' group only; app reaches web's public IP
    // through the NAT gateway and the internet gateway, so it arrives as the NAT
    // gateway's Elastic IP, which the group reference does not match.
    let lab = edit(
        "      - { type: http, source: 0.0.0.0/0 }",
        "      - { type: http, source: MyApp-SecurityGroup }",
    );
    let a = run(&lab, "app", "web", 80);
    assert!(a.reachable, "the private IP matches: {a:#?}");
    let a = run(&lab, "app", "198.51.100.10", 80);
    assert_eq!(a.code, Some(Code::EniSgRulesMismatch), "{a:#?}");
    assert!(
        a.notes
            .iter()
            .any(|n| n.contains("arrives from 198.51.100.11") && n.contains("private IPs only")),
        "{:?}",
        a.notes
    );
    assert!(
        a.notes.iter().any(|n| n.contains("comes back in")),
        "{:?}",
        a.notes
    );
}

/// Two subnets, each with a network ACL; security groups that allow everything, so
/// whatever stops a packet here is an ACL.
const ACL_LAB: &str = "name: acls
region: ap-northeast-2
vpc: { name: acl-vpc, cidr: 10.0.0.0/16 }
public_ip_pool: 198.51.100.0/24
subnets:
  public-2a:  { az: ap-northeast-2a, cidr: 10.0.0.0/24, route_table: public }
  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24 }
route_tables:
  public: { 0.0.0.0/0: igw }
internet_gateway: igw
security_groups:
  open:
    inbound:
      - { protocol: all, source: 0.0.0.0/0 }
network_acls:
  web-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 90, type: ssh, source: 10.0.1.128/25, action: deny }
      - { rule: 100, protocol: all, source: 10.0.0.0/16, action: allow }
      - { rule: 200, protocol: tcp, port: 1024-65535, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
  app-acl:
    subnets: [private-2a]
    inbound:
      - { rule: 100, protocol: all, source: 10.0.0.0/16, action: allow }
    outbound:
      - { rule: 100, protocol: tcp, port: 22, destination: 10.0.0.0/24, action: allow }
      - { rule: 110, protocol: tcp, port: 1024-65535, destination: 10.0.0.0/16, action: allow }
instances:
  web:  { subnet: public-2a, private_ip: 10.0.0.10, public_ip: auto, security_groups: [open] }
  app:  { subnet: private-2a, private_ip: 10.0.1.10, security_groups: [open] }
  app2: { subnet: private-2a, private_ip: 10.0.1.200, security_groups: [open] }
internet:
  laptop: { ip: 203.0.113.10 }
";

#[test]
fn network_acl_rules_are_components_between_the_security_groups_and_the_route_table() {
    let lab = lab_from(ACL_LAB);
    let a = run(&lab, "app", "web", 22);
    assert!(a.reachable, "{a:#?}");
    assert_eq!(
        kinds(&a),
        [
            "network-interface",
            "security-group outbound",
            "network-acl outbound",
            "route-table",
            "network-acl inbound",
            "security-group inbound",
            "network-interface"
        ]
    );
    let (out, inb) = (&a.path[2], &a.path[4]);
    assert_eq!(
        (out.name.as_str(), out.rule.as_deref()),
        (
            "app-acl",
            Some("network ACL app-acl outbound rule 100 (private-2a): allow tcp 22 to 10.0.0.0/24")
        )
    );
    assert!(out.id.starts_with("acl-0"), "{out:?}");
    assert_eq!(out.detail.as_deref(), Some("of subnet private-2a"));
    assert_eq!(out.kind(), "network ACL (outbound)");
    assert_eq!(
        (inb.name.as_str(), inb.rule.as_deref()),
        (
            "web-acl",
            Some(
                "network ACL web-acl inbound rule 100 (public-2a): allow all traffic from 10.0.0.0/16"
            )
        )
    );
    // The reply to app's port 40000 gets out by rule 110.
    let a = run(&lab, "web", "app", 22);
    assert!(a.reachable, "{a:#?}");
}

#[test]
fn a_network_acl_that_denies_the_request_is_subnet_acl_restriction() {
    let lab = lab_from(ACL_LAB);
    // Rule 90 denies ssh from the upper half of private-2a before rule 100 allows it.
    let a = run(&lab, "app2", "web", 22);
    assert_eq!(
        (a.code, a.blocked_at.as_deref()),
        (Some(Code::SubnetAclRestriction), Some("vpc-router")),
        "{a:#?}"
    );
    let last = a.path.last().unwrap();
    assert_eq!(
        (last.component, last.direction, last.name.as_str()),
        ("network-acl", Some("inbound"), "web-acl")
    );
    assert_eq!(
        a.explanation.as_deref(),
        Some(
            "network ACL web-acl denies tcp 22 from 10.0.1.200 to 10.0.0.10 entering subnet \
                 public-2a (inbound rule 90: deny tcp 22 from 10.0.1.128/25)"
        )
    );
    // No outbound rule of app-acl allows port 80: the final rule denies it.
    let a = run(&lab, "app", "web", 80);
    assert_eq!(a.code, Some(Code::SubnetAclRestriction), "{a:#?}");
    assert_eq!(
        a.explanation.as_deref(),
        Some(
            "network ACL app-acl denies tcp 80 from 10.0.1.10 to 10.0.0.10 leaving subnet \
                 private-2a (outbound rule *: deny all traffic)"
        )
    );
    assert_eq!(
        kinds(&a),
        [
            "network-interface",
            "security-group outbound",
            "network-acl outbound"
        ]
    );
    // From the internet, web-acl lets in only the ephemeral ports.
    let a = run(&lab, "laptop", "web", 80);
    assert_eq!(a.code, Some(Code::SubnetAclRestriction), "{a:#?}");
    assert!(a.notes.is_empty(), "the request is blocked: {:?}", a.notes);
}

#[test]
fn a_reply_a_stateless_acl_blocks_makes_the_path_unreachable() {
    let text = include_str!("../../../labs/nacl.yaml");
    let a = run(&lab_from(text), "my-laptop", "web", 80);
    assert!(!a.reachable);
    assert_eq!(a.code, Some(Code::SubnetAclRestriction));
    assert_eq!(
        kinds(&a),
        [
            "internet-host",
            "internet-gateway",
            "network-acl inbound",
            "security-group inbound",
            "network-interface",
            "network-acl outbound"
        ]
    );
    assert_eq!(
        a.path[2].rule.as_deref(),
        Some("network ACL public-acl inbound rule 100 (public-2a): allow tcp 80 from 0.0.0.0/0")
    );
    assert_eq!(
        a.explanation.as_deref(),
        Some(
            "the reply is blocked: network ACL public-acl denies tcp 40000 from 10.0.0.10 to \
                 203.0.113.10 leaving subnet public-2a (outbound rule *: deny all traffic)"
        )
    );
    assert!(
        a.notes.iter().any(|n| n.contains("stateless")),
        "{:?}",
        a.notes
    );
    // Inside the subnet the bridge switches it: no ACL on the path at all.
    let a = run(&lab_from(text), "bastion", "web", 22);
    assert!(a.reachable, "{a:#?}");
    assert!(!kinds(&a).iter().any(|k| k.starts_with("network-acl")));
}

#[test]
fn the_routers_exemption_for_its_own_addresses_is_not_a_component() {
    let lab = lab_from(ACL_LAB);
    let plan = crate::plan::compile(&lab);
    let router = plan
        .namespaces
        .iter()
        .find(|n| n.role == Role::VpcRouter)
        .unwrap();
    let chain = router
        .firewall
        .iter()
        .flat_map(|t| &t.chains)
        .find(|c| c.name == "acl-outbound")
        .unwrap();
    let names = Names {
        lab: &lab,
        plan: &plan,
    };
    let accept = |rule: &str| Decision::Accept {
        node: router.node.clone(),
        chain: chain.name.clone(),
        rule: rule.to_string(),
    };
    let exemption = &chain.rules[0].comment;
    assert!(exemption.starts_with("VPC router"), "{exemption}");
    assert_eq!(names.component("app", &accept(exemption)), None);
    // The subnet's own chain holds its ACL's rules, reached from the base chain.
    let subnet_chain = router
        .firewall
        .iter()
        .flat_map(|t| &t.chains)
        .find(|c| c.name.starts_with("acl-outbound-"))
        .unwrap();
    let first_acl_rule = Decision::Accept {
        node: router.node.clone(),
        chain: subnet_chain.name.clone(),
        rule: subnet_chain.rules[0].comment.clone(),
    };
    assert_eq!(
        names.component("app", &first_acl_rule).map(|c| c.component),
        Some("network-acl")
    );
}

#[test]
fn icmp_needs_no_port_and_tcp_needs_one() {
    let a = run_down(&builtin(), &Down::new(), "web", "example-web", None);
    assert!(a.reachable, "{a:#?}");
    let lab = builtin();
    let plan = crate::plan::compile(&lab);
    let q = Query {
        from: "web".into(),
        to: "app".into(),
        proto: Proto::Tcp,
        port: None,
    };
    assert!(analyze(&lab, &plan, &Down::new(), &q).is_err());
    let q = Query {
        to: "web".into(),
        port: Some(22),
        ..q
    };
    assert!(
        analyze(&lab, &plan, &Down::new(), &q).is_err(),
        "its own address"
    );
}
