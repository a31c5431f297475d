//! VPC flow logs on a running lab with a 2-second interval: the records' format, ACCEPT
//! counts that match what a capture on the instance's interface saw, REJECT for what the
//! security group drops, NODATA when idle, nothing for DNS. Root only; labs `t-fl…`.

mod common;

use common::{Lab, text, vpclab};
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
    let file = std::env::temp_dir().join("t-fl-levels.yaml");
    std::fs::write(&file, yaml).unwrap();
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
