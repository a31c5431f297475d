//! `vpclab reach --verify` on real labs: the static analysis against real packets on the
//! built-in lab, the public-database lab and the network ACL lab (every source,
//! destination and port: 100 % agreement), and on a lab mutated after the fact (a removed
//! rule, a stopped instance) where the explanation code changes as the packets do. Root
//! only; each test has its own lab, named `t-rc…`.

mod common;

use common::{Lab, text, vpclab};
use serde_json::Value;

fn reach(lab: &Lab, args: &[&str]) -> (Value, std::process::Output) {
    let o = vpclab()
        .args(["reach", "--lab", &lab.name, "--json"])
        .args(args)
        .output()
        .expect("run vpclab reach");
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("reach --json is not JSON ({e}):\n{}", text(&o)));
    (v, o)
}

/// `reach --all --verify`: every cell agrees with its real packet.
fn all_agree(lab: &Lab) -> Value {
    let (v, o) = reach(lab, &["--all", "--verify"]);
    let total = v["total"].as_u64().unwrap();
    assert!(total > 0, "{}", text(&o));
    assert_eq!(
        v["agree"].as_u64(),
        Some(total),
        "analysis and packets disagree:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{}", text(&o));
    v
}

/// The cell of the matrix for FROM -> TO on `probe` (`tcp/3306`).
fn cell<'v>(v: &'v Value, from: &str, to: &str, probe: &str) -> &'v Value {
    let i = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|p| format!("{}/{}", p["proto"].as_str().unwrap(), p["port"]) == probe)
        .unwrap_or_else(|| panic!("no probe {probe}"));
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["from_node"] == from && r["to_node"] == to)
        .unwrap_or_else(|| panic!("no row {from} -> {to}"));
    &row["cells"][i]
}

#[test]
fn t_rc_the_built_in_lab_agrees_with_real_packets_everywhere() {
    require_root!();
    let lab = Lab::up(None, "t-rc1");
    let v = all_agree(&lab);
    assert_eq!(
        cell(&v, "web", "my-database-2c", "tcp/3306")["reachable"],
        true
    );
    assert_eq!(
        cell(&v, "stranger", "web", "tcp/22")["code"],
        "ENI_SG_RULES_MISMATCH"
    );
    assert_eq!(
        cell(&v, "stranger", "app", "tcp/22")["code"],
        "IGW_PRIVATE_IP_ASSOCIATION_FOR_INGRESS"
    );
    assert_eq!(
        cell(&v, "my-laptop", "my-nat", "tcp/80")["code"],
        "NGW_REQUIRES_SOURCE_IN_VPC"
    );
    // One path in full, verified: through the NAT gateway and the internet gateway.
    let (one, o) = reach(&lab, &["app", "example-web", "--port", "80", "--verify"]);
    assert_eq!(one["verified"], true, "{}", text(&o));
    let kinds: Vec<&str> = one["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "network-interface",
            "security-group",
            "route-table",
            "nat-gateway",
            "route-table",
            "internet-gateway",
            "internet-host"
        ]
    );
}

#[test]
fn t_rc_the_public_database_lab_agrees_and_anyone_reaches_the_database() {
    require_root!();
    let lab = Lab::up(Some("labs/public-db.yaml"), "t-rc2");
    let v = all_agree(&lab);
    assert_eq!(
        cell(&v, "stranger", "project-db-2a", "tcp/3306")["reachable"],
        true
    );
    assert_eq!(
        cell(&v, "stranger", "project-db-2a", "tcp/22")["code"],
        "ENI_SG_RULES_MISMATCH"
    );
}

#[test]
fn t_rc_the_network_acl_lab_agrees_and_its_acl_drops_the_reply() {
    require_root!();
    let lab = Lab::up(Some("labs/nacl.yaml"), "t-rc8");
    let v = all_agree(&lab);
    assert_eq!(
        cell(&v, "my-laptop", "web", "tcp/80")["code"],
        "SUBNET_ACL_RESTRICTION"
    );
    assert_eq!(cell(&v, "bastion", "web", "tcp/22")["reachable"], true);
    // The request gets in by inbound rule 100; the reply to the client's port is what the
    // final outbound rule drops.
    let (one, o) = reach(&lab, &["my-laptop", "web", "--port", "80", "--verify"]);
    assert_eq!(
        (&one["code"], &one["verified"]),
        (&Value::from("SUBNET_ACL_RESTRICTION"), &Value::Bool(true)),
        "{}",
        text(&o)
    );
    let path = one["path"].as_array().unwrap();
    let acls: Vec<(&str, &str)> = path
        .iter()
        .filter(|c| c["component"] == "network-acl")
        .map(|c| {
            (
                c["direction"].as_str().unwrap(),
                c["rule"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        acls,
        [
            (
                "inbound",
                "network ACL public-acl inbound rule 100 (public-2a): allow tcp 80 from 0.0.0.0/0"
            ),
            (
                "outbound",
                "network ACL public-acl outbound rule * (public-2a): deny all traffic"
            )
        ]
    );
    assert!(
        one["explanation"]
            .as_str()
            .unwrap()
            .starts_with("the reply is blocked: network ACL public-acl denies"),
        "{}",
        text(&o)
    );
}

#[test]
fn t_rc_a_removed_rule_and_a_stopped_instance_change_the_code_as_the_packets_do() {
    require_root!();
    let dir = std::env::temp_dir().join("vpclab-t-rc3");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("public-db-no-mysql.yaml");
    let original = std::fs::read_to_string("labs/public-db.yaml").unwrap();
    let rule = "    inbound:\n      - { type: mysql, source: 0.0.0.0/0 }\n";
    assert!(original.contains(rule));
    std::fs::write(&file, original.replace(rule, "    inbound: []\n")).unwrap();
    let lab = Lab::up(Some(file.to_str().unwrap()), "t-rc3");

    let (v, o) = reach(
        &lab,
        &["stranger", "project-db", "--port", "3306", "--verify"],
    );
    assert_eq!(
        (&v["reachable"], &v["code"], &v["verified"]),
        (
            &Value::Bool(false),
            &Value::from("SG_HAS_NO_RULES"),
            &Value::Bool(true)
        ),
        "{}",
        text(&o)
    );
    assert_eq!(o.status.code(), Some(2), "not reachable, and agreed");

    let (v, o) = reach(&lab, &["project-db", "server", "--port", "22", "--verify"]);
    assert_eq!(
        (&v["reachable"], &v["verified"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{}",
        text(&o)
    );
    let o = vpclab()
        .args(["stop", "--lab", &lab.name, "server"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (v, o) = reach(&lab, &["project-db", "server", "--port", "22", "--verify"]);
    assert_eq!(
        (
            &v["reachable"],
            &v["code"],
            &v["blocked_at"],
            &v["verified"]
        ),
        (
            &Value::Bool(false),
            &Value::from("BAD_STATE"),
            &Value::from("server"),
            &Value::Bool(true)
        ),
        "{}",
        text(&o)
    );
    let (v, o) = reach(&lab, &["server", "stranger", "--port", "80", "--verify"]);
    assert_eq!(
        (&v["code"], &v["verified"]),
        (&Value::from("BAD_STATE"), &Value::Bool(true)),
        "{}",
        text(&o)
    );
    all_agree(&lab);
}

/// Every lab the tests use agrees with its real packets too: each brought up, then
/// `reach --all --verify`.
#[test]
fn t_rc_every_test_lab_agrees_with_real_packets() {
    require_root!();
    // Every file there, so a lab added to the tests is checked too.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labs");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for (i, file) in files.iter().enumerate() {
        let lab = Lab::up(Some(file), &format!("t-rcl{i}"));
        let v = all_agree(&lab);
        eprintln!("{file}: {} of {} cells agree", v["agree"], v["total"]);
    }
}
