//! VPC flow logs on running labs with intervals of a second or two: the records' format,
//! ACCEPT counts that match what a capture on the instance's interface saw, REJECT for what
//! the security group and the network ACLs drop (AWS's ping case), NODATA when idle, nothing
//! for DNS, the three levels, a custom format, a NAT gateway's interface, and flow logs
//! turned on and off by `apply`. Root only; labs `t-fl…`.

mod common;

use common::{Files, Lab, text, vpclab};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vpclab::kernel::capture::{Capture, Point};

const FILE: &str = "tests/labs/flow-logs.yaml";
const WEB: &str = "10.0.0.10";
const LAPTOP: &str = "203.0.113.10";
const STRANGER: &str = "192.0.2.66";
const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

fn records(lab: &Lab, extra: &[&str]) -> Vec<Value> {
    let o = vpclab()
        .args(["flow-logs", &lab.name, "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Waits until the collector has closed an interval that began after `since`.
fn wait_for_interval_after(lab: &Lab, since: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = records(lab, &[]);
        if r.iter().any(|r| r["start"].as_u64().unwrap() >= since) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no interval after {since}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Packets and bytes of the records with this action, source, destination, protocol and
/// destination port (`None`: any).
fn total(
    r: &[Value],
    action: &str,
    src: &str,
    dst: &str,
    proto: u64,
    dport: Option<u64>,
) -> (u64, u64) {
    r.iter()
        .filter(|r| r["action"] == action)
        .filter(|f| f["srcaddr"] == src && f["dstaddr"] == dst && f["protocol"] == proto)
        .filter(|f| dport.is_none_or(|p| f["dstport"] == p))
        .fold((0, 0), |(p, b), f| {
            (
                p + f["packets"].as_u64().unwrap(),
                b + f["bytes"].as_u64().unwrap(),
            )
        })
}

/// IPv4 packets (count, bytes as in the IP header) a capture saw from `src` to `dst`
/// with IP protocol `proto`.
fn captured(
    frames: &[vpclab::kernel::capture::Frame],
    src: &str,
    dst: &str,
    proto: u8,
) -> (u64, u64) {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    frames
        .iter()
        .map(|f| &f.data)
        .filter(|d| d.len() >= 34 && d[12..14] == [0x08, 0x00])
        .map(|d| &d[14..])
        .filter(|ip| ip[9] == proto && ip[12..16] == src.octets() && ip[16..20] == dst.octets())
        .fold((0, 0), |(p, b), ip| {
            (p + 1, b + u64::from(u16::from_be_bytes([ip[2], ip[3]])))
        })
}

#[test]
fn records_count_what_crossed_the_interface_and_what_the_security_group_dropped() {
    require_root!();
    let lab = Lab::up(Some(FILE), "t-fl-records");

    // Idle: the lab just came up and nobody talks to web.
    let idle = wait_for_interval_after(&lab, now());
    assert!(
        idle.iter()
            .any(|r| r["log_status"] == "NODATA" && r["srcaddr"].is_null()),
        "{idle:?}"
    );

    let capture = Capture::start(&[Point {
        ns: lab.ns("web"),
        iface: "eth0".into(),
    }])
    .unwrap();
    let began = now();
    let o = lab.exec(
        "my-laptop",
        &["ping", "-c", "5", "-i", "0.2", "-q", "198.51.100.10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = lab.exec(
        "my-laptop",
        &["curl", "-sf", "-o", "/dev/null", "http://198.51.100.10/"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // One SYN only: the connection attempt ends before the first retransmission (1 s).
    let o = lab.exec(
        "stranger",
        &[
            "timeout",
            "0.5",
            "bash",
            "-c",
            "echo > /dev/tcp/198.51.100.10/22",
        ],
    );
    assert!(
        !o.status.success(),
        "the security group drops ssh from a stranger"
    );
    // A DNS query to the Amazon DNS server, which is never logged.
    let o = lab.exec(
        "web",
        &[
            "dig",
            "+short",
            "+tries=1",
            "ip-10-0-0-10.ap-northeast-2.compute.internal",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop();
    let after = now();

    let all = wait_for_interval_after(&lab, after + 1);
    let r: Vec<Value> = all
        .into_iter()
        .filter(|r| r["start"].as_u64().unwrap() + 2 >= began)
        .collect();

    // ICMP: exactly the 5 requests and 5 replies, 84 bytes each.
    assert_eq!(total(&r, "ACCEPT", LAPTOP, WEB, 1, None), (5, 420), "{r:?}");
    assert_eq!(total(&r, "ACCEPT", WEB, LAPTOP, 1, None), (5, 420), "{r:?}");
    assert_eq!(captured(&frames, LAPTOP, WEB, 1), (5, 420));

    // The HTTP exchange: what the capture saw in each direction.
    let to_web = captured(&frames, LAPTOP, WEB, 6);
    let from_web = captured(&frames, WEB, LAPTOP, 6);
    assert!(to_web.0 >= 5 && from_web.0 >= 4, "{to_web:?} {from_web:?}");
    assert_eq!(
        total(&r, "ACCEPT", LAPTOP, WEB, 6, Some(80)),
        to_web,
        "{r:?}"
    );
    let replies: (u64, u64) = r
        .iter()
        .filter(|r| r["action"] == "ACCEPT")
        .filter(|f| f["srcaddr"] == WEB && f["srcport"] == 80 && f["protocol"] == 6)
        .fold((0, 0), |(p, b), f| {
            (
                p + f["packets"].as_u64().unwrap(),
                b + f["bytes"].as_u64().unwrap(),
            )
        });
    assert_eq!(replies, from_web, "{r:?}");

    // The stranger's SYN: rejected by the security group, 60 bytes, never accepted.
    assert_eq!(
        total(&r, "REJECT", STRANGER, WEB, 6, Some(22)),
        (1, 60),
        "{r:?}"
    );
    assert_eq!(
        total(&r, "ACCEPT", STRANGER, WEB, 6, Some(22)),
        (0, 0),
        "{r:?}"
    );

    // DNS to VPC+2 is not logged, in either direction.
    assert!(
        !r.iter()
            .any(|f| f["srcaddr"] == "10.0.0.2" || f["dstaddr"] == "10.0.0.2"),
        "{r:?}"
    );
}

#[test]
fn the_log_file_is_aws_text_with_the_header_first_and_fourteen_fields() {
    require_root!();
    let lab = Lab::up(Some(FILE), "t-fl-format");
    let o = lab.exec(
        "my-laptop",
        &["ping", "-c", "2", "-i", "0.2", "-q", "198.51.100.10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_interval_after(&lab, now() + 1);

    let eni = r[0]["interface_id"].as_str().unwrap().to_string();
    assert!(eni.starts_with("eni-0") && eni.len() == 21, "{eni}");
    let file = format!("/run/vpclab/{}/flow-logs/{eni}.log", lab.name);
    let body = std::fs::read_to_string(&file).unwrap();
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let mut accepted = 0;
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 14, "{l}");
        assert_eq!(
            (f[0], f[1], f[2]),
            ("2", "123456789012", eni.as_str()),
            "{l}"
        );
        let (start, end): (u64, u64) = (f[10].parse().unwrap(), f[11].parse().unwrap());
        assert_eq!(end - start, 2, "{l}");
        match f[13] {
            "OK" => {
                assert!(f[12] == "ACCEPT" || f[12] == "REJECT", "{l}");
                for n in &f[3..10] {
                    assert_ne!(*n, "-", "{l}");
                }
                if f[12] == "ACCEPT" && f[7] == "1" {
                    accepted += f[8].parse::<u64>().unwrap();
                }
            }
            "NODATA" => assert_eq!(&f[3..10], ["-"; 7], "{l}"),
            other => panic!("log-status {other}: {l}"),
        }
    }
    assert_eq!(accepted, 4, "2 echo requests and 2 replies:\n{body}");

    // The text output is the same lines after one header.
    let o = vpclab()
        .args(["flow-logs", &lab.name, "--instance", "web"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert_eq!(printed.lines().next(), Some(HEADER));
    assert!(printed.lines().count() >= 2, "{printed}");
}

#[test]
fn a_flow_log_on_the_subnet_alone_logs_its_instances_at_its_own_interval() {
    require_root!();
    let yaml = std::fs::read_to_string(FILE)
        .unwrap()
        .replace("  flow_logs: { interval: 2, format: default }\n", "")
        .replace(
            "route_table: public }",
            "route_table: public, flow_logs: { interval: 1 } }",
        );
    assert!(yaml.contains("interval: 1") && !yaml.contains("interval: 2"));
    let files = Files::new("t-fl-levels");
    let file = files.write("levels.yaml", &yaml);
    let lab = Lab::up(Some(file.to_str().unwrap()), "t-fl-levels");
    let o = lab.exec(
        "my-laptop",
        &["ping", "-c", "2", "-i", "0.2", "-q", "198.51.100.10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_interval_after(&lab, now() + 1);
    assert!(
        r.iter()
            .all(|r| r["end"].as_u64().unwrap() - r["start"].as_u64().unwrap() == 1),
        "{r:?}"
    );
    assert_eq!(total(&r, "ACCEPT", LAPTOP, WEB, 1, None), (2, 168), "{r:?}");
}

#[test]
fn a_flow_log_on_the_instance_beats_its_subnets_and_logs_at_its_own_interval() {
    require_root!();
    let yaml = std::fs::read_to_string(FILE)
        .unwrap()
        .replace("  flow_logs: { interval: 2, format: default }\n", "")
        .replace(
            "route_table: public }",
            "route_table: public, flow_logs: { interval: 3 } }",
        )
        .replace(
            "    services: [ssh, http]\n",
            "    services: [ssh, http]\n    flow_logs: { interval: 1 }\n",
        );
    assert!(yaml.contains("interval: 1") && yaml.contains("interval: 3"));
    let files = Files::new("t-fl-instance");
    let file = files.write("instance.yaml", &yaml);
    let lab = Lab::up(Some(file.to_str().unwrap()), "t-fl-instance");
    let o = lab.exec(
        "my-laptop",
        &["ping", "-c", "2", "-i", "0.2", "-q", "198.51.100.10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_interval_after(&lab, now() + 1);
    assert!(
        r.iter()
            .all(|r| r["end"].as_u64().unwrap() - r["start"].as_u64().unwrap() == 1),
        "{r:?}"
    );
    assert_eq!(total(&r, "ACCEPT", LAPTOP, WEB, 1, None), (2, 168), "{r:?}");
}

/// The lab with a network ACL on web's subnet that lets everything in but ssh from the
/// stranger, and lets only TCP out: ICMP replies meet the final `*` rule.
fn acl_lab(files: &Files) -> String {
    let yaml = std::fs::read_to_string(FILE).unwrap().replace(
        "instances:\n",
        "network_acls:
  ping-acl:
    subnets: [public-2a]
    inbound:
      - { rule: 50, type: ssh, source: 192.0.2.66/32, action: deny }
      - { rule: 100, protocol: all, source: 0.0.0.0/0, action: allow }
    outbound:
      - { rule: 100, protocol: tcp, port: 0-65535, destination: 0.0.0.0/0, action: allow }
instances:\n",
    );
    let file = files.write("acl.yaml", &yaml);
    file.to_str().unwrap().to_string()
}

#[test]
fn a_ping_whose_reply_the_outbound_acl_denies_is_accept_for_the_request_and_reject_for_the_reply() {
    require_root!();
    let files = Files::new("t-fl-acl");
    let lab = Lab::up(Some(&acl_lab(&files)), "t-fl-acl");
    let capture = Capture::start(&[Point {
        ns: lab.ns("web"),
        iface: "eth0".into(),
    }])
    .unwrap();
    let began = now();
    let o = lab.exec(
        "my-laptop",
        &[
            "ping",
            "-c",
            "4",
            "-i",
            "0.2",
            "-W",
            "1",
            "-q",
            "198.51.100.10",
        ],
    );
    assert!(
        !o.status.success(),
        "the ACL drops the replies: {}",
        text(&o)
    );
    // The security group allows ssh from my-laptop only; the ACL denies the stranger's
    // first, on the way in.
    let o = lab.exec(
        "stranger",
        &[
            "timeout",
            "0.5",
            "bash",
            "-c",
            "echo > /dev/tcp/198.51.100.10/22",
        ],
    );
    assert!(!o.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop();
    let r: Vec<Value> = wait_for_interval_after(&lab, now() + 1)
        .into_iter()
        .filter(|r| r["start"].as_u64().unwrap() + 2 >= began)
        .collect();

    // The security group let the 4 requests in and the 4 replies out (web sent them, as
    // the capture saw); the ACL dropped the replies at the subnet's edge.
    assert_eq!(captured(&frames, LAPTOP, WEB, 1), (4, 336));
    assert_eq!(captured(&frames, WEB, LAPTOP, 1), (4, 336));
    assert_eq!(total(&r, "ACCEPT", LAPTOP, WEB, 1, None), (4, 336), "{r:?}");
    assert_eq!(total(&r, "REJECT", WEB, LAPTOP, 1, None), (4, 336), "{r:?}");
    assert_eq!(total(&r, "ACCEPT", WEB, LAPTOP, 1, None), (0, 0), "{r:?}");
    assert_eq!(total(&r, "REJECT", LAPTOP, WEB, 1, None), (0, 0), "{r:?}");
    // Rejected on the way in, on web's interface, though it never reached web.
    assert_eq!(captured(&frames, STRANGER, WEB, 6), (0, 0));
    assert_eq!(
        total(&r, "REJECT", STRANGER, WEB, 6, Some(22)),
        (1, 60),
        "{r:?}"
    );
}

/// A private instance behind a NAT gateway, flow logs in a version 5 format.
const NAT_LAB: &str = r#"name: flow-nat
region: ap-northeast-2
vpc:
  name: flow-vpc
  cidr: 10.0.0.0/16
  flow_logs:
    interval: 2
    format: "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${action} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${region} ${az-id} ${flow-direction} ${traffic-path} ${start} ${end} ${log-status}"
public_ip_pool: 198.51.100.0/24
subnets:
  public-2a: { az: ap-northeast-2a, cidr: 10.0.0.0/24, route_table: public }
  private-2a: { az: ap-northeast-2a, cidr: 10.0.1.0/24, route_table: private }
route_tables:
  public: { 0.0.0.0/0: igw }
  private: { 0.0.0.0/0: nat }
internet_gateway: igw
elastic_ips: { nat-eip: 198.51.100.20 }
nat_gateways:
  nat: { subnet: public-2a, elastic_ip: nat-eip, private_ip: 10.0.0.20 }
key_pairs: [key]
security_groups:
  app-sg:
    inbound:
      - { type: ssh, source: 10.0.0.0/16 }
instances:
  app:
    subnet: private-2a
    private_ip: 10.0.1.10
    key_pair: key
    security_groups: [app-sg]
internet:
  site: { ip: 192.0.2.80, services: [http] }
"#;

/// The records of one flow in one direction, with one action: (packets, bytes) and the
/// records themselves.
fn hop<'a>(
    r: &'a [Value],
    interface: &str,
    (src, dst): (&str, &str),
    (pkt_src, pkt_dst): (&str, &str),
) -> Vec<&'a Value> {
    r.iter()
        .filter(|r| r["interface_id"] == interface && r["protocol"] == 6)
        .filter(|r| r["srcaddr"] == src && r["dstaddr"] == dst)
        .filter(|r| r["pkt_srcaddr"] == pkt_src && r["pkt_dstaddr"] == pkt_dst)
        .collect()
}

fn packets(records: &[&Value]) -> u64 {
    records.iter().map(|r| r["packets"].as_u64().unwrap()).sum()
}

#[test]
fn a_custom_format_logs_the_nat_gateways_interface_with_the_original_ends() {
    require_root!();
    let files = Files::new("t-fl-nat");
    let file = files.write("nat.yaml", NAT_LAB);
    let lab = Lab::up(Some(file.to_str().unwrap()), "t-fl-nat");
    let o = vpclab()
        .args(["status", &lab.name, "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let eni = |node: &str| -> Value {
        status["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["node"] == node)
            .unwrap_or_else(|| panic!("no interface of {node}: {status}"))
            .clone()
    };
    let (app, nat) = (eni("app"), eni("nat"));
    assert_eq!(nat["kind"], "nat-gateway");
    assert!(nat["instance_id"].is_null());
    let (app_id, nat_id) = (app["id"].as_str().unwrap(), nat["id"].as_str().unwrap());
    assert!(
        nat_id.starts_with("eni-0") && nat_id.len() == 21,
        "{nat_id}"
    );

    let o = lab.http_status("app", "http://192.0.2.80/", 5);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{}", text(&o));
    let r = wait_for_interval_after(&lab, now() + 1);

    // The file: the format's own header, then records of version 5 in that order.
    let body = std::fs::read_to_string(format!("/run/vpclab/{}/flow-logs/{nat_id}.log", lab.name))
        .unwrap();
    let format = NAT_LAB
        .lines()
        .find_map(|l| l.trim().strip_prefix("format: "))
        .unwrap()
        .trim_matches('"')
        .replace("${", "")
        .replace('}', "");
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some(format.as_str()));
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 24, "{l}");
        assert_eq!(f[0], "5", "{l}");
        assert_eq!(f[3], "-", "no instance owns a NAT gateway's interface: {l}");
    }

    // The NAT gateway's interface, hop by hop as AWS's documentation shows it.
    let (a, n, site) = ("10.0.1.10", "10.0.0.20", "192.0.2.80");
    let from_app = hop(&r, nat_id, (a, n), (a, site));
    let to_site = hop(&r, nat_id, (n, site), (n, site));
    let from_site = hop(&r, nat_id, (site, n), (site, n));
    let to_app = hop(&r, nat_id, (n, a), (site, a));
    for (records, direction) in [
        (&from_app, "ingress"),
        (&to_site, "egress"),
        (&from_site, "ingress"),
        (&to_app, "egress"),
    ] {
        assert!(!records.is_empty(), "{direction}: {r:#?}");
        for rec in records {
            assert_eq!(rec["flow_direction"], direction, "{rec}");
            assert_eq!(rec["action"], "ACCEPT", "{rec}");
            assert_eq!(rec["type"], "IPv4", "{rec}");
            assert_eq!(rec["az_id"], "apne2-az1", "{rec}");
        }
    }
    // Egress to the internet goes through the internet gateway, back to app within the VPC.
    assert_eq!(to_site[0]["traffic_path"], 2);
    assert_eq!(to_app[0]["traffic_path"], 1);
    assert!(from_app[0]["traffic_path"].is_null());

    // app's own interface: what it sent is what reached the NAT gateway, one hop on.
    let sent = hop(&r, app_id, (a, site), (a, site));
    let got = hop(&r, app_id, (site, a), (site, a));
    assert_eq!(packets(&sent), packets(&from_app), "{r:#?}");
    assert_eq!(packets(&got), packets(&to_app), "{r:#?}");
    assert_eq!(packets(&to_site), packets(&from_app), "{r:#?}");
    assert_eq!(sent[0]["instance_id"], app["instance_id"]);
    assert_eq!(sent[0]["subnet_id"], app["subnet_id"]);
    assert_eq!(sent[0]["vpc_id"], app["vpc_id"]);
    assert_eq!(sent[0]["traffic_path"], 1, "through the NAT gateway");
    // The request's SYN and FIN, the reply's SYN-ACK (18 covers the SYN bit).
    let flags = |recs: &[&Value]| {
        recs.iter()
            .fold(0, |acc, r| acc | r["tcp_flags"].as_u64().unwrap())
    };
    assert_eq!(flags(&sent) & 3, 3, "{sent:?}");
    assert_eq!(flags(&got) & 18, 18, "{got:?}");
}

#[test]
fn flow_logs_come_and_go_with_apply_and_leave_the_security_groups_alone() {
    require_root!();
    let files = Files::new("t-fl-apply");
    let with = std::fs::read_to_string(FILE).unwrap();
    let without = with.replace("  flow_logs: { interval: 2, format: default }\n", "");
    assert_ne!(with, without);
    let (on, off) = (
        files.write("on.yaml", &with),
        files.write("off.yaml", &without),
    );
    let lab = Lab::up(Some(off.to_str().unwrap()), "t-fl-apply");
    let tables = || {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.ns("web"), "nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let handle = || {
        let o = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns("web"),
                "nft",
                "-a",
                "list",
                "table",
                "inet",
                "vpclab",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert!(!tables().contains("vpclab-flow"), "{}", tables());
    let o = vpclab().args(["flow-logs", &lab.name]).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no flow logs"),
        "{}",
        text(&o)
    );
    let groups = handle();

    let apply = |file: &std::path::Path| {
        let o = vpclab()
            .args(["apply", file.to_str().unwrap(), "--name", &lab.name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = apply(&on);
    assert!(
        out.contains("+ flow log vpc flow-vpc (every 2 s, format default)"),
        "{out}"
    );
    assert!(tables().contains("vpclab-flow"), "{}", tables());
    assert_eq!(
        handle(),
        groups,
        "the security groups' table stays as it was"
    );
    let o = lab.exec(
        "my-laptop",
        &["ping", "-c", "3", "-i", "0.2", "-q", "198.51.100.10"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = wait_for_interval_after(&lab, now() + 1);
    assert_eq!(total(&r, "ACCEPT", LAPTOP, WEB, 1, None), (3, 252), "{r:?}");

    let out = apply(&off);
    assert!(out.contains("- flow log vpc flow-vpc"), "{out}");
    assert!(!tables().contains("vpclab-flow"), "{}", tables());
    assert_eq!(handle(), groups);
    // No interval is logged after the flow log went away.
    let gone = now();
    std::thread::sleep(Duration::from_secs(4));
    let logged = std::fs::read_dir(format!("/run/vpclab/{}/flow-logs", lab.name))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    let last_end = logged
        .lines()
        .filter_map(|l| l.split(' ').nth(11)?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(last_end <= gone + 1, "{last_end} > {gone}: {logged}");
}
