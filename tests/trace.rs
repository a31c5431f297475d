//! `vpclab trace` and `vpclab nat-table` on real labs: the write-up's two walk-throughs hop by
//! hop (the internet gateway's static NAT, the NAT gateway's port translation), a path
//! the security group blocks, a missing route, pcap files tshark reads, and the NAT
//! gateway's live mapping table. Root only; each test has its own lab.

mod common;

use common::{Lab, text, vpclab};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WEB: &str = "10.0.2.238";
const WEB_PUBLIC: &str = "198.51.100.10";
const APP: &str = "10.0.1.101";
const NAT_PRIVATE: &str = "10.0.0.4";
const NAT_EIP: &str = "198.51.100.11";
const EXAMPLE_WEB: &str = "203.0.113.60";

fn trace(lab: &Lab, args: &[&str]) -> (Value, std::process::Output) {
    let o = vpclab()
        .args(["trace", "--lab", &lab.name, "--json"])
        .args(args)
        .output()
        .expect("run vpclab trace");
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("trace --json is not JSON ({e}):\n{}", text(&o)));
    (v, o)
}

fn trace_text(lab: &Lab, args: &[&str]) -> String {
    let o = vpclab()
        .args(["trace", "--lab", &lab.name])
        .args(args)
        .output()
        .expect("run vpclab trace");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A hop as `node/iface dir src dst` (with ports when the protocol has them).
fn hop(h: &Value) -> String {
    let ep = |ip: &str, port: &str| {
        let a = h[ip].as_str().unwrap().to_string();
        match h[port].as_u64() {
            Some(p) => format!("{a}:{p}"),
            None => a,
        }
    };
    format!(
        "{}/{} {} {} {}",
        h["node"].as_str().unwrap(),
        h["iface"].as_str().unwrap(),
        h["dir"].as_str().unwrap(),
        ep("src", "sport"),
        ep("dst", "dport")
    )
}

fn hops(v: &Value, leg: &str) -> Vec<String> {
    v[leg]["hops"]
        .as_array()
        .unwrap_or_else(|| panic!("no {leg} leg in {v:#}"))
        .iter()
        .map(hop)
        .collect()
}

fn steps(v: &Value) -> Vec<String> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("({}) {}", s["n"], s["text"].as_str().unwrap()))
        .collect()
}

fn port(v: &Value, leg: &str, i: usize, field: &str) -> u64 {
    v[leg]["hops"][i][field].as_u64().unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vpclab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `tshark -r` reads every file (skipped, saying so, when tshark is not installed).
fn tshark_reads(files: &[Value]) -> Option<Vec<String>> {
    if Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped the tshark check: tshark is not installed");
        return None;
    }
    Some(
        files
            .iter()
            .map(|f| {
                let f = f.as_str().unwrap();
                let o = Command::new("tshark").args(["-r", f]).output().unwrap();
                assert!(o.status.success(), "tshark -r {f}:\n{}", text(&o));
                String::from_utf8_lossy(&o.stdout).into_owned()
            })
            .collect(),
    )
}

#[test]
fn internet_gateway_walkthrough_web_to_example_web() {
    require_root!();
    let lab = Lab::up(None, "t-trace-igw");
    let dir = tempdir("trace-igw");
    let (v, o) = trace(
        &lab,
        &[
            "web",
            "example-web",
            "--port",
            "80",
            "--pcap",
            dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(v["reachable"], true, "{v:#}");
    // Nothing listens on example-web unless the lab runs its web server; either way the
    // handshake completes.
    assert!(
        v["listener"] == "temporary" || v["listener"] == "existing",
        "{}",
        v["listener"]
    );

    let p = port(&v, "request", 0, "sport");
    let req = hops(&v, "request");
    // (1) the private source leaves web; (2) the internet gateway maps it to the public IP.
    assert_eq!(
        req,
        [
            format!("web/eth0 out {WEB}:{p} {EXAMPLE_WEB}:80"),
            format!("vpc-router/p-web in {WEB}:{p} {EXAMPLE_WEB}:80"),
            format!("vpc-router/to-igw out {WEB}:{p} {EXAMPLE_WEB}:80"),
            format!("my-igw/to-vpc in {WEB}:{p} {EXAMPLE_WEB}:80"),
            format!("my-igw/to-internet out {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
            format!("internet/to-igw in {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
            format!("internet/h-example-web out {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
            format!("example-web/eth0 in {WEB_PUBLIC}:{p} {EXAMPLE_WEB}:80"),
        ]
    );
    // (3) the reply is addressed to the public IP; (4) the IGW maps it back.
    let reply = hops(&v, "reply");
    assert_eq!(
        reply,
        [
            format!("example-web/eth0 out {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
            format!("internet/h-example-web in {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
            format!("internet/to-igw out {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
            format!("my-igw/to-internet in {EXAMPLE_WEB}:80 {WEB_PUBLIC}:{p}"),
            format!("my-igw/to-vpc out {EXAMPLE_WEB}:80 {WEB}:{p}"),
            format!("vpc-router/to-igw in {EXAMPLE_WEB}:80 {WEB}:{p}"),
            format!("vpc-router/p-web out {EXAMPLE_WEB}:80 {WEB}:{p}"),
            format!("web/eth0 in {EXAMPLE_WEB}:80 {WEB}:{p}"),
        ]
    );
    let t = &v["request"]["translations"][0];
    assert_eq!(t["node"], "my-igw");
    assert_eq!(t["device"], "internet gateway");
    assert_eq!(
        t["rules"][0]["comment"],
        format!("my-igw: static NAT {WEB} -> {WEB_PUBLIC} (web)"),
        "the SNAT rule whose counter moved"
    );
    // The internet gateway is stateless: its rule rewrote every packet of the request
    // direction (the handshake's SYN and ACK at least), not just the first.
    assert!(
        t["rules"][0]["packets"].as_u64().unwrap() >= 2,
        "a stateless rule counts every packet: {t:#}"
    );
    // The reply is rewritten by the other rule of the pair, not by a connection table.
    let r = &v["reply"]["translations"][0];
    assert_eq!(r["node"], "my-igw", "{v:#}");
    assert_eq!(r["by"], "stateless rule");
    assert_eq!(
        r["rules"][0]["comment"],
        format!("my-igw: static NAT {WEB_PUBLIC} -> {WEB} (web)"),
        "the DNAT rule rewrote the reply"
    );
    assert!(r["rules"][0]["packets"].as_u64().unwrap() >= 1, "{r:#}");
    let s = steps(&v);
    assert!(
        s[0].starts_with("(1) web sends from its private IP"),
        "{s:?}"
    );
    assert_eq!(
        s[1],
        format!("(2) internet gateway: static NAT {WEB} → {WEB_PUBLIC}")
    );
    assert!(
        s[2].starts_with(&format!(
            "(3) the reply comes back addressed to {WEB_PUBLIC}:{p} (web's public IP)"
        )),
        "{s:?}"
    );
    assert_eq!(
        s[3],
        format!("(4) internet gateway: static NAT {WEB_PUBLIC} → {WEB}")
    );
    assert!(
        v["elapsed_ms"].as_f64().unwrap() < 3000.0,
        "a reachable trace is quick: {}",
        v["elapsed_ms"]
    );

    // One pcap file per capture point, each one tshark reads; the request is in web's.
    let files = v["pcap"].as_array().unwrap();
    assert!(files.len() >= 8, "{files:?}");
    for f in files {
        let name = std::path::Path::new(f.as_str().unwrap())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(name.ends_with(".pcap") && name.contains('_'), "{name}");
    }
    if let Some(outputs) = tshark_reads(files) {
        let at = |name: &str| {
            let i = files
                .iter()
                .position(|f| f.as_str().unwrap().ends_with(name))
                .unwrap();
            outputs[i].clone()
        };
        let web = at("/web_eth0.pcap");
        assert!(web.contains(WEB) && web.contains("[SYN]"), "{web}");
        let outside = at("/my-igw_to-internet.pcap");
        assert!(
            outside.contains(WEB_PUBLIC) && !outside.contains(WEB),
            "{outside}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // The same trace for people quotes the write-up's steps.
    let out = trace_text(&lab, &["web", "example-web", "--port", "80"]);
    assert!(
        out.contains(&format!(
            "(2) internet gateway: static NAT {WEB} → {WEB_PUBLIC}"
        )),
        "{out}"
    );
    assert!(out.contains("Result: reachable"), "{out}");

    // A ping takes the same way through the same static NAT.
    let (v, _) = trace(&lab, &["web", "example-web"]);
    assert_eq!(v["proto"], "icmp");
    assert_eq!(v["reachable"], true, "{v:#}");
    assert_eq!(v["reply"]["packet"], "echo reply");
    assert_eq!(v["request"]["translations"][0]["after"]["src"], WEB_PUBLIC);
}

#[test]
fn nat_gateway_walkthrough_app_to_example_web() {
    require_root!();
    let lab = Lab::up(None, "t-trace-nat");
    let (v, o) = trace(&lab, &["app", "example-web", "--port", "80"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(v["reachable"], true, "{v:#}");
    let p = port(&v, "request", 0, "sport");
    // The port the NAT gateway chose (Linux keeps the source port when it is free).
    let q = port(&v, "request", 4, "sport");
    let req = hops(&v, "request");
    assert_eq!(
        req,
        [
            format!("app/eth0 out {APP}:{p} {EXAMPLE_WEB}:80"),
            format!("vpc-router/p-app in {APP}:{p} {EXAMPLE_WEB}:80"),
            format!("vpc-router/p-my-nat out {APP}:{p} {EXAMPLE_WEB}:80"),
            format!("my-nat/eth0 in {APP}:{p} {EXAMPLE_WEB}:80"),
            // (2) the NAT gateway's private IP
            format!("my-nat/eth0 out {NAT_PRIVATE}:{q} {EXAMPLE_WEB}:80"),
            format!("vpc-router/p-my-nat in {NAT_PRIVATE}:{q} {EXAMPLE_WEB}:80"),
            format!("vpc-router/to-igw out {NAT_PRIVATE}:{q} {EXAMPLE_WEB}:80"),
            format!("my-igw/to-vpc in {NAT_PRIVATE}:{q} {EXAMPLE_WEB}:80"),
            // (3) its Elastic IP
            format!("my-igw/to-internet out {NAT_EIP}:{q} {EXAMPLE_WEB}:80"),
            format!("internet/to-igw in {NAT_EIP}:{q} {EXAMPLE_WEB}:80"),
            format!("internet/h-example-web out {NAT_EIP}:{q} {EXAMPLE_WEB}:80"),
            format!("example-web/eth0 in {NAT_EIP}:{q} {EXAMPLE_WEB}:80"),
        ]
    );
    let reply = hops(&v, "reply");
    assert_eq!(
        reply,
        [
            // (4) addressed to the Elastic IP
            format!("example-web/eth0 out {EXAMPLE_WEB}:80 {NAT_EIP}:{q}"),
            format!("internet/h-example-web in {EXAMPLE_WEB}:80 {NAT_EIP}:{q}"),
            format!("internet/to-igw out {EXAMPLE_WEB}:80 {NAT_EIP}:{q}"),
            format!("my-igw/to-internet in {EXAMPLE_WEB}:80 {NAT_EIP}:{q}"),
            // (5) back to the NAT gateway's private IP
            format!("my-igw/to-vpc out {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{q}"),
            format!("vpc-router/to-igw in {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{q}"),
            format!("vpc-router/p-my-nat out {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{q}"),
            format!("my-nat/eth0 in {EXAMPLE_WEB}:80 {NAT_PRIVATE}:{q}"),
            // (6) from the recorded mapping back to app, port included
            format!("my-nat/eth0 out {EXAMPLE_WEB}:80 {APP}:{p}"),
            format!("vpc-router/p-my-nat in {EXAMPLE_WEB}:80 {APP}:{p}"),
            format!("vpc-router/p-app out {EXAMPLE_WEB}:80 {APP}:{p}"),
            // (7) the reply reaches app
            format!("app/eth0 in {EXAMPLE_WEB}:80 {APP}:{p}"),
        ]
    );
    let s = steps(&v);
    assert_eq!(s.len(), 7, "the write-up's seven steps: {s:?}");
    assert!(
        s[1].starts_with(&format!("(2) NAT gateway: {APP}:{p} → {NAT_PRIVATE}:{q}")),
        "{s:?}"
    );
    assert_eq!(
        s[2],
        format!("(3) internet gateway: static NAT {NAT_PRIVATE} → {NAT_EIP}")
    );
    assert!(
        s[3].contains(&format!("{NAT_EIP}:{q} (my-nat's Elastic IP)")),
        "{s:?}"
    );
    assert_eq!(
        s[4],
        format!("(5) internet gateway: static NAT {NAT_EIP} → {NAT_PRIVATE}")
    );
    assert!(
        s[5].starts_with(&format!("(6) NAT gateway: {NAT_PRIVATE}:{q} → {APP}:{p}")),
        "{s:?}"
    );
    assert_eq!(s[6], format!("(7) the reply reaches app at {APP}:{p}"));
    // The rule that made the NAT gateway's translation, and the mapping it recorded.
    let t = &v["request"]["translations"][0];
    assert_eq!(t["node"], "my-nat");
    assert_eq!(
        t["rules"][0]["comment"],
        format!("my-nat: port address translation to {NAT_PRIVATE} (tcp)")
    );
    assert_eq!(t["mapping"]["orig"]["src"], APP);
    assert_eq!(t["mapping"]["reply"]["dst"], NAT_PRIVATE);
    assert_eq!(t["mapping"]["reply"]["dport"], q);

    // UDP goes the same way; vpclab's temporary listener answers the datagram.
    let (v, _) = trace(
        &lab,
        &["app", "example-web", "--proto", "udp", "--port", "53"],
    );
    assert_eq!(v["reachable"], true, "{v:#}");
    let t = &v["request"]["translations"][0];
    assert_eq!(
        t["rules"][0]["comment"],
        format!("my-nat: port address translation to {NAT_PRIVATE} (udp)")
    );
    assert_eq!(
        v["reply"]["translations"][1]["rules"][0]["comment"],
        t["rules"][0]["comment"]
    );

    // Nothing listening and no temporary listener: example-web's kernel answers RST,
    // which still comes back through both translations.
    let (v, o) = trace(
        &lab,
        &["app", "example-web", "--port", "81", "--no-listener"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["reply"]["packet"], "RST-ACK");
    assert_eq!(v["reply"]["translations"].as_array().unwrap().len(), 2);
}

#[test]
fn a_blocked_path_names_the_security_group_where_it_stopped() {
    require_root!();
    let lab = Lab::up(None, "t-trace-block");
    let (v, o) = trace(
        &lab,
        &["stranger", "web", "--port", "22", "--timeout", "600"],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "a blocked trace exits 2:\n{}",
        text(&o)
    );
    assert_eq!(v["reachable"], false);
    assert_eq!(
        v["to"]["ip"], WEB_PUBLIC,
        "stranger reaches web by its public IP"
    );
    assert!(v["reply"].is_null());
    let req = hops(&v, "request");
    let last = req.last().unwrap();
    assert!(
        last.starts_with("web/eth0 in 192.0.2.66:") && last.ends_with(&format!("{WEB}:22")),
        "{req:?}"
    );
    let st = &v["stopped"];
    assert_eq!(st["node"], "web");
    assert_eq!(st["leg"], "request");
    assert_eq!(st["last_seen"].as_u64().unwrap() as usize, req.len());
    assert_eq!(st["code"], "ENI_SG_RULES_MISMATCH");
    assert!(
        st["reason"].as_str().unwrap().contains("security group"),
        "{st:#}"
    );
    assert_eq!(
        st["rule"]["comment"],
        "MyWebServer-SecurityGroup: no inbound rule allows this"
    );
    assert_eq!(st["rule"]["chain"], "input");

    let out = trace_text(
        &lab,
        &["stranger", "web", "--port", "22", "--timeout", "600"],
    );
    assert!(out.contains("Result: NOT reachable"), "{out}");
    assert!(
        out.contains("security group: MyWebServer-SecurityGroup: no inbound rule allows this"),
        "{out}"
    );

    // The one source the security group lets in gets through the same way.
    let (v, _) = trace(&lab, &["my-laptop", "web", "--port", "22"]);
    assert_eq!(v["reachable"], true, "{v:#}");
    assert!(
        v["request"]["hops"].as_array().unwrap().last().unwrap()["allowed_by"][0]
            .as_str()
            .unwrap()
            .contains("SSH 22 from my IP 203.0.113.10")
    );

    // A public IP nobody holds: the internet gateway has no mapping for it.
    let (v, _) = trace(
        &lab,
        &[
            "stranger",
            "198.51.100.99",
            "--port",
            "80",
            "--timeout",
            "300",
        ],
    );
    assert_eq!(v["stopped"]["node"], "my-igw");
    assert!(
        v["stopped"]["rule"]["comment"]
            .as_str()
            .unwrap()
            .contains("no NAT mapping"),
        "{v:#}"
    );
    // The NAT gateway takes no connection from outside: its input policy drops it.
    let (v, _) = trace(
        &lab,
        &["stranger", "my-nat", "--port", "80", "--timeout", "300"],
    );
    assert_eq!(v["to"]["ip"], NAT_EIP);
    assert_eq!(v["stopped"]["node"], "my-nat");
    assert!(
        v["stopped"]["reason"]
            .as_str()
            .unwrap()
            .contains("policy is drop"),
        "{v:#}"
    );
    // The internet has no route to a private address: its router answers so.
    let (v, _) = trace(&lab, &["stranger", "app", "--port", "22"]);
    assert_eq!(v["stopped"]["node"], "internet");
    assert_eq!(v["stopped"]["code"], "NO_ROUTE_TO_DESTINATION");
    assert_eq!(v["reply"]["packet"], "ICMP net unreachable");
}

#[test]
fn a_missing_route_is_found_in_the_route_table_of_the_subnet() {
    require_root!();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/labs/public-ip-private-subnet.yaml"
    );
    let lab = Lab::up(Some(file), "t-trace-noroute");
    let (v, _) = trace(&lab, &["stuck", "example-web", "--port", "80"]);
    assert_eq!(v["reachable"], false);
    let st = &v["stopped"];
    assert_eq!(st["node"], "vpc-router");
    assert_eq!(st["code"], "NO_ROUTE_TO_DESTINATION");
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("route table isolated"),
        "{st:#}"
    );
    assert_eq!(
        hops(&v, "request")
            .last()
            .unwrap()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        ["vpc-router/p-stuck", "in"]
    );
}

#[test]
fn nat_table_shows_the_mappings_of_open_connections() {
    require_root!();
    let lab = Lab::up(None, "t-trace-nattab");
    // A connection a probe holds open: its mapping is in the NAT gateway's table.
    let _server = lab.listen("example-web", "0.0.0.0:8080");
    let conn = lab
        .connect("app", &format!("{EXAMPLE_WEB}:8080"))
        .expect("app reaches example-web");
    let local = conn.local_addr().unwrap();
    let table = |which: &str| -> Value {
        let o = vpclab()
            .args(["nat-table", &lab.name, which, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let nat = table("nat-gateway");
    let entries = nat[0]["entries"].as_array().unwrap();
    let e = entries
        .iter()
        .find(|e| e["original_source"] == local.to_string())
        .unwrap_or_else(|| panic!("no entry for {local} in {nat:#}"));
    assert_eq!(e["proto"], "tcp");
    assert_eq!(e["original_destination"], format!("{EXAMPLE_WEB}:8080"));
    assert!(
        e["translated_source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{NAT_PRIVATE}:")),
        "{e}"
    );
    assert_eq!(e["translated_destination"], format!("{EXAMPLE_WEB}:8080"));
    assert_eq!(e["state"], "ESTABLISHED");
    assert!(
        e["timeout"].as_u64().unwrap() <= 350,
        "AWS's 350 s idle timeout: {e}"
    );
    // At the internet gateway the same connection leaves as the Elastic IP: a fixed pair,
    // no connection table, the pair's counters grow with the connection's packets.
    let igw = table("igw");
    assert_eq!(igw[0]["stateless"], true, "{igw:#}");
    assert_eq!(igw[0]["entries"].as_array().unwrap().len(), 0, "{igw:#}");
    let pair = |t: &Value| -> Value {
        t[0]["static_nat"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["private"] == NAT_PRIVATE)
            .cloned()
            .unwrap_or_else(|| panic!("no pair for {NAT_PRIVATE}: {t:#}"))
    };
    let before = pair(&igw);
    assert_eq!(before["public"], NAT_EIP);
    assert_eq!(before["owner"], "my-nat");
    assert!(before["packets_out"].as_u64().unwrap() >= 2, "{before}");
    assert!(before["packets_in"].as_u64().unwrap() >= 1, "{before}");
    drop(conn);
    // Closing the connection sends a FIN through the pair (give the veths a moment).
    let deadline = Instant::now() + Duration::from_secs(3);
    let after = loop {
        let now = pair(&table("igw"));
        if now["packets_out"].as_u64() > before["packets_out"].as_u64() || Instant::now() > deadline
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        after["packets_out"].as_u64() > before["packets_out"].as_u64(),
        "the pair's counter grows with every packet: {before} then {after}"
    );

    // A trace that holds its connection shows up too, for as long as it holds it.
    let mut child = vpclab()
        .args([
            "trace",
            "--lab",
            &lab.name,
            "app",
            "example-web",
            "--port",
            "80",
            "--json",
            "--hold",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        let nat = table("nat-gateway");
        let hit = nat[0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["original_destination"] == format!("{EXAMPLE_WEB}:80")
                    && e["state"] == "ESTABLISHED"
            })
            .cloned();
        if hit.is_some() || Instant::now() > deadline {
            break hit;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let e = found.expect("the held trace's mapping appears in nat-table");
    assert!(
        e["original_source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{APP}:")),
        "{e}"
    );

    let o = vpclab()
        .args(["nat-table", &lab.name, "nat-gateway"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("NAT gateway my-nat"), "{out}");
    assert!(out.contains(&format!("Elastic IP {NAT_EIP}")), "{out}");
    let o = vpclab()
        .args(["nat-table", &lab.name, "igw"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("stateless 1:1 NAT"), "{out}");
    assert!(out.contains(&format!("{NAT_PRIVATE}   ")), "{out}");
    let o = vpclab()
        .args(["nat-table", &lab.name, "web"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "web is not a gateway");
}
