//! Edits of the built-in lab, each checked for what a person is told (`changes`) and what
//! the kernel would be asked to do (`delta`).

use super::*;
use crate::plan::{self, Plan, namespace_name};
use crate::topology::testing::{builtin, lab_from};
use crate::topology::{BUILTIN_YAML, Service};

/// The built-in lab's text with each `(from, to)` replaced once; every `from` must occur.
fn edited_text(edits: &[(&str, &str)]) -> String {
    let mut text = BUILTIN_YAML.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "the built-in lab has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

fn edited(edits: &[(&str, &str)]) -> Lab {
    lab_from(&edited_text(edits))
}

fn lines(diff: &Diff) -> Vec<String> {
    diff.changes.iter().map(Change::to_string).collect()
}

fn ns(node: &str) -> String {
    namespace_name("handson", node)
}

fn plans(old: &Lab, new: &Lab) -> (Plan, Plan) {
    (plan::compile(old), plan::compile(new))
}

/// Names of the namespaces a delta creates, removes or changes: what `apply` touches.
fn touched(d: &PlanDelta) -> Vec<String> {
    let mut all: Vec<String> = d.create_namespaces.clone();
    all.extend(d.remove_namespaces.iter().cloned());
    all.extend(d.change_namespaces.iter().map(|n| n.name.clone()));
    all
}

const APP: &str = "  app:
    # The write-up's NAT gateway walk-through: a private instance with no public IP.
    subnet: private-2a
    private_ip: 10.0.1.101
    public_ip: none
    key_pair: aws-study
    security_groups: [MyApp-SecurityGroup]
    services: [ssh]
";

/// An instance appended after `app`, in the subnet and with the public IP given.
fn new_instance(subnet: &str, public_ip: &str) -> (&'static str, String) {
    (
        "    services: [ssh]\n",
        format!(
            "    services: [ssh]\n  app2:\n    subnet: {subnet}\n    public_ip: {public_ip}\n    security_groups: [MyApp-SecurityGroup]\n"
        ),
    )
}

#[test]
fn the_same_lab_changes_nothing() {
    let (old, new) = (builtin(), builtin());
    let diff = changes(&old, &new);
    assert!(diff.is_empty(), "{diff}");
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d.kernel_writes(&b), 0);
}

#[test]
fn a_new_inbound_rule_replaces_only_its_members_firewalls() {
    let old = builtin();
    let new = edited(&[(
        "      - { type: https, source: 0.0.0.0/0 }\n",
        "      - { type: https, source: 0.0.0.0/0 }\n      - { protocol: tcp, port: 22, source: 0.0.0.0/0 }\n",
    )]);
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        ["~ security group MyWebServer-SecurityGroup: + inbound tcp 22 from 0.0.0.0/0"]
    );
    assert!(!diff.is_refused());

    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("web")], "only the group's one member");
    let web = &d.change_namespaces[0];
    let Some(FirewallChange::Replace(table)) = &web.firewall else {
        panic!("web's table is not replaced: {web:?}");
    };
    assert_eq!(Some(table), b.netns("web").unwrap().firewall.as_ref());
    assert_eq!(d.kernel_writes(&b), 1, "one nft transaction");
    assert!(d.add_veths.is_empty() && d.remove_veths.is_empty());
    assert!(!d.dns_changed);
    assert!(d.change_hosts.is_empty());
}

#[test]
fn a_rule_of_a_referenced_group_reaches_every_member_and_no_one_else() {
    // MyDatabase-SecurityGroup allows MySQL from MyWebServer-SecurityGroup's members:
    // putting `app` in that group changes the databases' sets as well as app's table.
    let old = builtin();
    let new = edited(&[(
        "    security_groups: [MyApp-SecurityGroup]",
        "    security_groups: [MyApp-SecurityGroup, MyWebServer-SecurityGroup]",
    )]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["~ instance app: security groups: + MyWebServer-SecurityGroup"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(
        touched(&d),
        [ns("app"), ns("my-database-2c"), ns("my-database-2a")]
    );
    assert!(
        d.change_namespaces
            .iter()
            .all(|n| n.kernel_writes() == 1
                && matches!(n.firewall, Some(FirewallChange::Replace(_))))
    );
}

#[test]
fn retargeting_the_private_default_route_rewrites_one_route_in_the_vpc_router() {
    let old = builtin();
    let new = edited(&[("    0.0.0.0/0: my-nat", "    0.0.0.0/0: my-igw")]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["~ route table private: route 0.0.0.0/0: my-nat -> my-igw"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("vpc-router")]);
    let router = &d.change_namespaces[0];
    let route = |r: &plan::Route| format!("{} {} via {:?} dev {}", r.table, r.dst, r.via, r.dev);
    assert_eq!(
        router.remove_routes.iter().map(route).collect::<Vec<_>>(),
        ["102 0.0.0.0/0 via Some(10.0.0.4) dev br-public-2a"]
    );
    assert_eq!(
        router.add_routes.iter().map(route).collect::<Vec<_>>(),
        ["102 0.0.0.0/0 via Some(169.254.1.2) dev to-igw"]
    );
    assert_eq!(d.kernel_writes(&b), 2);
    assert!(!d.dns_changed && d.change_hosts.is_empty());
}

#[test]
fn removing_the_private_default_route_deletes_it_and_nothing_else() {
    let old = builtin();
    let new = edited(&[("  private:\n    0.0.0.0/0: my-nat\n", "  private: {}\n")]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["~ route table private: - route 0.0.0.0/0 -> my-nat"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("vpc-router")]);
    assert_eq!(d.change_namespaces[0].remove_routes.len(), 1);
    assert_eq!(d.kernel_writes(&b), 1);
}

#[test]
fn a_new_private_instance_is_one_namespace_one_veth_and_its_dns_names() {
    let old = builtin();
    let (from, to) = new_instance("public-2c", "none");
    let new = edited(&[(from, &to)]);
    let diff = changes(&old, &new);
    assert_eq!(lines(&diff), ["+ instance app2 (public-2c, 10.0.2.4)"]);
    assert!(!diff.is_refused());

    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("app2")], "no other namespace is touched");
    assert_eq!(d.add_veths.len(), 1);
    let veth = &d.add_veths[0];
    assert_eq!(
        (veth.a.ns.as_str(), veth.a.name.as_str()),
        (ns("app2").as_str(), "eth0")
    );
    // The router's side: a port on the subnet's bridge, nothing else in the router.
    assert_eq!(veth.b.ns, ns("vpc-router"));
    assert_eq!(veth.b.master.as_deref(), Some("br-public-2c"));
    assert!(d.remove_veths.is_empty());
    assert!(d.dns_changed);
    assert_eq!(d.add_hosts, ["app2"]);
    assert!(d.remove_hosts.is_empty() && d.change_hosts.is_empty());
}

#[test]
fn a_new_instance_with_an_elastic_ip_also_maps_it_in_the_internet_gateway() {
    let old = builtin();
    let (from, to) = new_instance("public-2c", "app2-eip");
    let new = edited(&[
        (from, &to),
        (
            "  my-nat-eip: auto\n",
            "  my-nat-eip: auto\n  app2-eip: 198.51.100.50\n",
        ),
    ]);
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        [
            "+ elastic ip app2-eip (198.51.100.50)",
            "+ instance app2 (public-2c, 10.0.2.4, public ip app2-eip)",
        ]
    );
    assert!(!diff.is_refused(), "{diff}");
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("app2"), ns("my-igw")]);
    assert!(matches!(
        d.change_namespaces[0].firewall,
        Some(FirewallChange::Replace(_))
    ));
    assert_eq!(d.change_namespaces[0].kernel_writes(), 1);
}

#[test]
fn removing_an_instance_removes_its_namespace_and_host_only() {
    let old = builtin();
    let new = edited(&[
        (APP, ""),
        (
            "  - { from: app, to: example-web, check: http, result: ok, seen_as: my-nat-eip }\n",
            "",
        ),
        (
            "  - { from: app, to: my-database, check: mysql, result: blocked }\n",
            "",
        ),
        (
            "  - { from: stranger, to: app, check: ssh, result: blocked }\n",
            "",
        ),
    ]);
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        [
            "- instance app",
            "- expectation app -> example-web: http ok seen as my-nat-eip",
            "- expectation app -> my-database: mysql blocked",
            "- expectation stranger -> app: ssh blocked",
        ]
    );
    assert!(!diff.is_refused());
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("app")]);
    assert_eq!(d.remove_namespaces, [ns("app")]);
    assert!(
        d.remove_veths.is_empty(),
        "deleting the namespace deletes its veth and the router's end"
    );
    assert_eq!(d.remove_hosts, ["app"]);
    assert!(d.dns_changed);
    assert_eq!(d.kernel_writes(&b), 1);
}

const PUBLIC_2B: (&str, &str) = (
    "  private-2c: { az: ap-northeast-2c, cidr: 10.0.3.0/24, route_table: private }\n",
    "  private-2c: { az: ap-northeast-2c, cidr: 10.0.3.0/24, route_table: private }\n  public-2b:  { az: ap-northeast-2b, cidr: 10.0.4.0/24, route_table: public }\n",
);

#[test]
fn a_new_subnet_is_a_bridge_and_its_routes_in_the_vpc_router() {
    let old = builtin();
    let new = edited(&[PUBLIC_2B]);
    assert_eq!(
        lines(&changes(&old, &new)),
        [
            "~ route table public: + subnet public-2b",
            "+ subnet public-2b (10.0.4.0/24, ap-northeast-2b)",
        ]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("vpc-router")]);
    let router = &d.change_namespaces[0];
    assert_eq!(router.add_bridges, ["br-public-2b"]);
    assert_eq!(
        router
            .add_addresses
            .iter()
            .map(|a| format!("{} {}", a.dev, a.addr))
            .collect::<Vec<_>>(),
        ["br-public-2b 10.0.4.1/24"]
    );
    // The local route of every route table (main, public, private) now covers it.
    assert_eq!(
        router
            .add_routes
            .iter()
            .map(|r| format!("{} {} {}", r.table, r.dst, r.dev))
            .collect::<Vec<_>>(),
        [
            "100 10.0.4.0/24 br-public-2b",
            "101 10.0.4.0/24 br-public-2b",
            "102 10.0.4.0/24 br-public-2b",
        ]
    );
    assert_eq!(router.add_rules.len(), 1);
    assert_eq!(router.add_rules[0].iif, "br-public-2b");
    assert!(router.remove_routes.is_empty() && router.remove_rules.is_empty());
    assert!(router.firewall.is_none());
    assert!(!d.dns_changed);
    assert_eq!(d.kernel_writes(&b), 6);
}

#[test]
fn an_empty_subnet_can_be_removed() {
    let old = edited(&[PUBLIC_2B]);
    let new = builtin();
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        [
            "- subnet public-2b",
            "~ route table public: - subnet public-2b"
        ]
    );
    assert!(!diff.is_refused());
    let (a, b) = plans(&old, &new);
    assert_eq!(touched(&delta(&a, &b)), [ns("vpc-router")]);
}

#[test]
fn a_subnet_that_still_holds_an_instance_cannot_be_removed() {
    let old = builtin();
    let new = edited(&[
        (
            "  public-2c:  { az: ap-northeast-2c, cidr: 10.0.2.0/24, route_table: public }\n",
            "",
        ),
        (
            "    subnet: public-2c\n    private_ip: 10.0.2.238",
            "    subnet: public-2a\n    private_ip: 10.0.0.238",
        ),
    ]);
    let diff = changes(&old, &new);
    assert!(lines(&diff).contains(&"- subnet public-2c".to_string()));
    let refusals: Vec<String> = diff.refusals.iter().map(Refusal::to_string).collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    assert!(
        refusals[0].starts_with("subnet public-2c: cannot delete it while it holds instance `web`: AWS refuses with DependencyViolation"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains("`vpclab down` and `vpclab up`"));
    assert!(
        refusals[1].starts_with("instance web: subnet public-2c -> public-2a: an instance's network interface stays in the subnet it was launched in"),
        "{}",
        refusals[1]
    );
}

#[test]
fn a_new_vpc_cidr_is_refused_naming_the_rule() {
    let old = builtin();
    let new = edited(&[("  cidr: 10.0.0.0/16", "  cidr: 10.0.0.0/17")]);
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        ["~ vpc my-vpc-01: cidr: 10.0.0.0/16 -> 10.0.0.0/17"]
    );
    assert_eq!(diff.refusals.len(), 1);
    assert_eq!(
        diff.refusals[0].to_string(),
        "vpc my-vpc-01: CIDR 10.0.0.0/16 -> 10.0.0.0/17: AWS fixes a VPC's CIDR block when it creates the VPC\n  hint: `vpclab down` and `vpclab up` (a lab has one VPC, so it cannot be recreated on its own)"
    );
}

#[test]
fn every_refusal_is_reported_at_once() {
    let old = builtin();
    let new = edited(&[
        ("  cidr: 10.0.0.0/16", "  cidr: 10.0.0.0/17"),
        (
            "  public-2c:  { az: ap-northeast-2c,",
            "  public-2c:  { az: ap-northeast-2d,",
        ),
        ("    engine: mysql", "    engine: mariadb"),
    ]);
    let refusals = changes(&old, &new).refusals;
    let what: Vec<(Kind, &str)> = refusals.iter().map(|r| (r.kind, r.name.as_str())).collect();
    assert_eq!(
        what,
        [
            (Kind::Vpc, "my-vpc-01"),
            (Kind::Subnet, "public-2c"),
            (Kind::Database, "my-database"),
        ]
    );
    assert!(
        refusals[1]
            .message
            .contains("a subnet stays in the availability zone it was created in")
    );
    assert!(
        refusals[2]
            .message
            .contains("an RDS instance keeps its engine for life")
    );
    // Replaceable objects offer both ways out.
    for r in &refusals[1..] {
        assert!(
            r.hint.starts_with("destroy and recreate it in the file"),
            "{}",
            r.hint
        );
        assert!(
            r.hint.ends_with("or `vpclab down` and `vpclab up`"),
            "{}",
            r.hint
        );
    }
}

// Addresses written `auto` are allocated in file order each time the file is checked, so
// an object added (or removed) before another moves that one's address. AWS never
// renumbers a running network interface or an Elastic IP, so `changes` refuses the move,
// and the hint says how to pin the address. (Keeping allocations sticky across edits is
// for the validator to learn; these tests document what happens until then.)

#[test]
fn an_auto_address_moved_by_a_new_instance_is_refused() {
    let old = builtin();
    // `app2` takes public-2a's first free address, which was the NAT gateway's: instances
    // are allocated before NAT gateways.
    let (from, to) = new_instance("public-2a", "none");
    let new = edited(&[(from, &to)]);
    assert_eq!(
        new.instance("app2").unwrap().private_ip.to_string(),
        "10.0.0.4"
    );
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        [
            "~ nat gateway my-nat: private ip: 10.0.0.4 -> 10.0.0.5",
            "+ instance app2 (public-2a, 10.0.0.4)",
        ]
    );
    assert_eq!(diff.refusals.len(), 1);
    let r = &diff.refusals[0];
    assert_eq!((r.kind, r.name.as_str()), (Kind::NatGateway, "my-nat"));
    assert!(
        r.message
            .contains("AWS never renumbers a running network interface")
    );
    assert!(
        r.hint
            .contains("write `private_ip: 10.0.0.4` to keep the address"),
        "{}",
        r.hint
    );
}

#[test]
fn an_elastic_ip_moved_by_a_new_public_instance_is_refused() {
    let old = builtin();
    // Instances' auto public IPs are handed out before auto Elastic IPs.
    let (from, to) = new_instance("public-2c", "auto");
    let new = edited(&[(from, &to)]);
    let diff = changes(&old, &new);
    assert_eq!(diff.refusals.len(), 1, "{diff}");
    let r = &diff.refusals[0];
    assert_eq!((r.kind, r.name.as_str()), (Kind::ElasticIp, "my-nat-eip"));
    assert_eq!(
        r.message,
        "address 198.51.100.11 -> 198.51.100.12: an Elastic IP is an address you hold, and AWS never changes it"
    );
    assert!(
        r.hint.contains("write `my-nat-eip: 198.51.100.11`"),
        "{}",
        r.hint
    );
}

#[test]
fn pinning_the_moved_address_makes_the_edit_acceptable() {
    let old = builtin();
    let (from, to) = new_instance("public-2a", "none");
    let new = edited(&[
        (from, &to),
        (
            "  my-nat: { subnet: public-2a, elastic_ip: my-nat-eip }",
            "  my-nat: { subnet: public-2a, elastic_ip: my-nat-eip, private_ip: 10.0.0.4 }",
        ),
    ]);
    let diff = changes(&old, &new);
    assert!(!diff.is_refused(), "{diff}");
    assert_eq!(lines(&diff), ["+ instance app2 (public-2a, 10.0.0.5)"]);
}

#[test]
fn a_removed_service_stops_on_its_host_and_nothing_else_changes() {
    let old = builtin();
    let new = edited(&[(
        "    services: [ssh, http, https]",
        "    services: [ssh, http]",
    )]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["~ instance web: services: - https"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert!(touched(&d).is_empty());
    assert_eq!(d.kernel_writes(&b), 0);
    assert_eq!(
        d.change_hosts,
        [HostDelta {
            node: "web".into(),
            ns: ns("web"),
            start: vec![],
            stop: vec![Service::Https],
            files_changed: false,
        }]
    );
}

#[test]
fn a_change_lists_as_json_with_op_kind_name_and_detail() {
    let c = Change {
        op: Op::Change,
        kind: Kind::SecurityGroup,
        name: "MyWebServer-SecurityGroup".into(),
        detail: vec![
            "+ inbound tcp 22 from 0.0.0.0/0".into(),
            "- inbound tcp 80 from 0.0.0.0/0".into(),
        ],
    };
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({
            "op": "change",
            "kind": "security group",
            "name": "MyWebServer-SecurityGroup",
            "detail": ["+ inbound tcp 22 from 0.0.0.0/0", "- inbound tcp 80 from 0.0.0.0/0"],
        })
    );
    assert_eq!(
        c.to_string(),
        "~ security group MyWebServer-SecurityGroup: + inbound tcp 22 from 0.0.0.0/0, - inbound tcp 80 from 0.0.0.0/0"
    );
}

#[test]
fn moving_my_ip_changes_the_rules_that_name_it() {
    let old = builtin();
    let new = edited(&[(
        "ip: 203.0.113.10, my_ip: true",
        "ip: 203.0.113.11, my_ip: true",
    )]);
    assert_eq!(
        lines(&changes(&old, &new)),
        [
            "~ security group MyWebServer-SecurityGroup: + inbound tcp 22 from my-ip (203.0.113.11), - inbound tcp 22 from my-ip (203.0.113.10)",
            "~ internet host my-laptop: ip: 203.0.113.10 -> 203.0.113.11",
        ]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("web"), ns("my-laptop")]);
    let laptop = &d.change_namespaces[1];
    assert_eq!(laptop.add_addresses.len(), 1);
    assert_eq!(laptop.remove_addresses.len(), 1);
    assert!(d.dns_changed, "my-laptop.example has a new address");
    assert_eq!(d.change_hosts.len(), 1);
    assert!(
        d.change_hosts[0].files_changed,
        "its hosts file names its address"
    );
}

#[test]
fn a_replaced_internet_gateway_is_refused_and_its_links_come_back_whole() {
    let old = builtin();
    let new = edited(&[
        ("    0.0.0.0/0: my-igw", "    0.0.0.0/0: my-igw-2"),
        ("internet_gateway: my-igw", "internet_gateway: my-igw-2"),
    ]);
    let diff = changes(&old, &new);
    assert_eq!(
        lines(&diff),
        [
            "- internet gateway my-igw",
            "~ route table public: route 0.0.0.0/0: my-igw -> my-igw-2",
            "+ internet gateway my-igw-2",
        ]
    );
    assert_eq!(diff.refusals.len(), 1);
    assert!(
        diff.refusals[0]
            .message
            .starts_with("cannot detach it while the VPC has public addresses (instance `web`, nat gateway `my-nat`)"),
        "{}",
        diff.refusals[0]
    );

    // The delta is still right, for when the refusal is lifted: the router's and the
    // internet's ends of the gateway's links are deleted with the old gateway's namespace,
    // so their addresses and routes are added again on the new links.
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(d.remove_namespaces, [ns("my-igw")]);
    assert_eq!(d.create_namespaces, [ns("my-igw-2")]);
    assert_eq!(d.add_veths.len(), 2);
    assert!(d.remove_veths.is_empty());
    assert_eq!(
        touched(&d),
        [
            ns("my-igw-2"),
            ns("my-igw"),
            ns("vpc-router"),
            ns("internet")
        ]
    );
    for n in &d.change_namespaces {
        assert!(
            !n.add_addresses.is_empty() && !n.add_routes.is_empty(),
            "{n:?}"
        );
        assert!(n.add_addresses.iter().all(|a| a.dev == "to-igw"), "{n:?}");
        assert!(n.add_routes.iter().all(|r| r.dev == "to-igw"), "{n:?}");
        assert!(
            n.remove_addresses.is_empty() && n.remove_routes.is_empty(),
            "{n:?}"
        );
    }
}

const PRIVATE_ACL: &str = "network_acls:
  private-acl:
    subnets: [private-2a]
    inbound:
      - { rule: 100, type: ssh, source: 10.0.0.0/16, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: allow }
instances:
";

#[test]
fn a_new_network_acl_is_listed_and_only_the_router_table_is_loaded() {
    let old = builtin();
    let new = edited(&[("instances:\n", PRIVATE_ACL)]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["+ network acl private-acl (subnet private-2a, 1 inbound rule, 1 outbound rule)"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("vpc-router")]);
    let router = &d.change_namespaces[0];
    let Some(FirewallChange::Replace(table)) = &router.firewall else {
        panic!("the router gains its ACL table: {router:?}");
    };
    assert_eq!(
        Some(table),
        b.netns("vpc-router").unwrap().firewall.as_ref()
    );
    assert_eq!(d.kernel_writes(&b), 1);
    // Removing the last custom ACL deletes the table: the default ACL is no table at all.
    let back = delta(&b, &a);
    assert_eq!(
        back.change_namespaces[0].firewall,
        Some(FirewallChange::Delete)
    );
    assert_eq!(lines(&changes(&new, &old)), ["- network acl private-acl"]);
}

#[test]
fn acl_rule_and_association_edits_are_listed_and_replace_the_router_table() {
    let old = edited(&[("instances:\n", PRIVATE_ACL)]);
    // Moved to the other private subnet, a rule added, the outbound rule turned to deny.
    let new = edited(&[(
        "instances:\n",
        "network_acls:
  private-acl:
    subnets: [private-2c]
    inbound:
      - { rule: 100, type: ssh, source: 10.0.0.0/16, action: allow }
      - { rule: 200, protocol: tcp, port: 1024-65535, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, protocol: all, destination: 0.0.0.0/0, action: deny }
instances:
",
    )]);
    let diff = changes(&old, &new);
    assert!(!diff.is_refused());
    assert_eq!(
        lines(&diff),
        [
            "~ network acl private-acl: + inbound 200 allow tcp 1024-65535 from 0.0.0.0/0, \
          + outbound 100 deny all traffic to 0.0.0.0/0, - outbound 100 allow all traffic to 0.0.0.0/0, \
          + subnet private-2c, - subnet private-2a"
        ]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    assert_eq!(touched(&d), [ns("vpc-router")]);
    assert!(matches!(
        d.change_namespaces[0].firewall,
        Some(FirewallChange::Replace(_))
    ));
}

#[test]
fn a_flow_log_turned_on_loads_a_counting_table_in_each_interface_it_covers_and_nothing_else() {
    let old = builtin();
    let new = edited(&[(
        "private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24, route_table: private }",
        "private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24, route_table: private, flow_logs: { interval: 60 } }",
    )]);
    assert_eq!(
        lines(&changes(&old, &new)),
        ["+ flow log subnet private-2a (every 60 s, format default)"]
    );
    let (a, b) = plans(&old, &new);
    let d = delta(&a, &b);
    // app is the only interface in private-2a; its security groups' table stays.
    assert_eq!(touched(&d), [ns("app")]);
    let app = &d.change_namespaces[0];
    assert_eq!(
        app.flow_log,
        Some(FlowLogChange::Install(
            crate::plan::flowlogs::Counting::Instance
        ))
    );
    assert_eq!(app.firewall, None);
    assert_eq!(d.kernel_writes(&b), 1);
    let back = delta(&b, &a);
    assert_eq!(
        back.change_namespaces[0].flow_log,
        Some(FlowLogChange::Delete)
    );
    assert_eq!(
        lines(&changes(&new, &old)),
        ["- flow log subnet private-2a"]
    );
}

#[test]
fn a_vpc_flow_log_covers_the_nat_gateway_and_a_new_format_changes_no_table() {
    let old = edited(&[(
        "  cidr: 10.0.0.0/16\n",
        "  cidr: 10.0.0.0/16\n  flow_logs: {}\n",
    )]);
    let (_, a) = plans(&builtin(), &old);
    let covered: Vec<&str> = a
        .namespaces
        .iter()
        .filter(|n| n.flow_log.is_some())
        .map(|n| n.node.as_str())
        .collect();
    assert_eq!(covered, ["my-nat", "web", "app"]);
    let new = edited(&[(
        "  cidr: 10.0.0.0/16\n",
        "  cidr: 10.0.0.0/16\n  flow_logs: { interval: 60, format: '${version} ${srcaddr} ${action}' }\n",
    )]);
    assert_eq!(
        lines(&changes(&old, &new)),
        [
            "~ flow log vpc my-vpc-01: interval: 600 s -> 60 s, format: default -> version srcaddr action"
        ]
    );
    let (a, b) = plans(&old, &new);
    // The collector reads the new interval and format; the kernel counts as before.
    assert!(delta(&a, &b).is_empty());
}
