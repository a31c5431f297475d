//! The network fabric with real packets: NAT, security groups, route tables, isolation,
//! lifecycle and crash safety. Root only; each test uses its own lab name.

mod common;

use common::{Lab, accept_source, leftovers, text, vpclab};
use std::net::IpAddr;

const WEB_PUBLIC: &str = "198.51.100.10";
const NAT_EIP: &str = "198.51.100.11";

fn source_ip(l: &std::net::TcpListener) -> IpAddr {
    accept_source(l).expect("a connection arrived").ip()
}

#[test]
fn internet_gateway_and_nat_gateway_translate_sources() {
    require_root!();
    let lab = Lab::up(None, "t-nat");
    // A listener of the test's own (nginx already serves port 80 there).
    let server = lab.listen("example-web", "0.0.0.0:8080");

    lab.connect("web", "203.0.113.60:8080")
        .expect("web reaches example-web");
    assert_eq!(
        source_ip(&server).to_string(),
        WEB_PUBLIC,
        "1:1 NAT at the IGW"
    );

    lab.connect("app", "203.0.113.60:8080")
        .expect("app reaches example-web via NAT");
    assert_eq!(
        source_ip(&server).to_string(),
        NAT_EIP,
        "NAT gateway, then the IGW"
    );

    // The instance never holds its public IP on an interface.
    let addrs = lab.exec("web", &["ip", "-o", "-4", "addr"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains("10.0.2.238/24"), "{addrs}");
    assert!(!addrs.contains(WEB_PUBLIC), "{addrs}");
}

#[test]
fn security_group_allows_ssh_from_my_ip_only_and_web_from_anywhere() {
    require_root!();
    let lab = Lab::up(None, "t-sg");
    // web's own sshd and nginx listen on 22, 80 and 443.
    let target = |p: u16| format!("{WEB_PUBLIC}:{p}");

    lab.connect("my-laptop", &target(22))
        .expect("my IP reaches ssh");
    assert!(
        lab.connect("stranger", &target(22)).is_err(),
        "stranger must not reach ssh"
    );
    for who in ["my-laptop", "stranger", "example-web"] {
        for port in [80, 443] {
            lab.connect(who, &target(port))
                .unwrap_or_else(|e| panic!("{who} -> web:{port}: {e}"));
        }
    }
}

#[test]
fn nothing_from_the_internet_reaches_private_hosts_unsolicited() {
    require_root!();
    let lab = Lab::up(None, "t-priv");
    // app's sshd listens on 22, MariaDB on 3306 of both database servers.
    for target in [
        "10.0.1.101:22",
        "10.0.3.87:3306",
        "10.0.1.64:3306",
        &format!("{NAT_EIP}:22"),
        &format!("{NAT_EIP}:80"),
    ] {
        for who in ["stranger", "my-laptop"] {
            assert!(
                lab.connect(who, target).is_err(),
                "{who} must not reach {target}"
            );
        }
    }
    // ...while app's own connections get their replies back through the NAT gateway.
    let server = lab.listen("example-web", "0.0.0.0:8080");
    lab.connect("app", "203.0.113.60:8080")
        .expect("app's own connection");
    assert_eq!(source_ip(&server).to_string(), NAT_EIP);
}

#[test]
fn database_port_accepts_only_the_web_servers_security_group() {
    require_root!();
    let lab = Lab::up(None, "t-db");
    // MariaDB listens on 3306 of both servers.
    for db in ["10.0.3.87:3306", "10.0.1.64:3306"] {
        lab.connect("web", db)
            .unwrap_or_else(|e| panic!("web -> {db}: {e}"));
        assert!(lab.connect("app", db).is_err(), "app must not reach {db}");
        assert!(
            lab.connect("my-laptop", db).is_err(),
            "my-laptop must not reach {db}"
        );
    }
}

#[test]
fn a_subnet_without_an_internet_gateway_route_stays_off_the_internet() {
    require_root!();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/labs/public-ip-private-subnet.yaml"
    );
    let lab = Lab::up(Some(file), "t-noigw");
    let server = lab.listen("example-web", "0.0.0.0:80");
    // `stuck` has a public IP but its route table has no route to the internet gateway.
    assert!(lab.connect("stuck", "203.0.113.60:80").is_err());
    assert!(lab.connect("my-laptop", "198.51.100.10:22").is_err());
    // The control: `web` in a public subnet gets out.
    lab.connect("web", "203.0.113.60:80")
        .expect("web reaches the internet");
    assert_eq!(source_ip(&server).to_string(), "198.51.100.11");
}

#[test]
fn two_labs_up_at_once_do_not_interfere_and_up_twice_is_refused() {
    require_root!();
    let a = Lab::up(None, "t-twin-a");
    let b = Lab::up(None, "t-twin-b");
    let sa = a.listen("example-web", "0.0.0.0:8080");
    let sb = b.listen("example-web", "0.0.0.0:8080");
    a.connect("app", "203.0.113.60:8080").unwrap();
    b.connect("web", "203.0.113.60:8080").unwrap();
    assert_eq!(source_ip(&sa).to_string(), NAT_EIP);
    assert_eq!(source_ip(&sb).to_string(), WEB_PUBLIC);

    let again = vpclab()
        .args(["up", "--quiet", "--name", "t-twin-a"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("lab `t-twin-a` exists: it is already up"),
        "{}",
        text(&again)
    );
    // The refused `up` must not have touched the running lab.
    a.connect("app", "203.0.113.60:8080").unwrap();
    assert_eq!(source_ip(&sa).to_string(), NAT_EIP);
}

#[test]
fn a_non_root_user_gets_a_clear_error() {
    require_root!();
    use std::os::unix::process::CommandExt;
    let o = vpclab()
        .args(["up", "--name", "t-nonroot"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`vpclab up` needs root"), "{}", text(&o));
    assert!(!err.contains("panicked"), "{err}");
    assert!(leftovers("t-nonroot").is_empty());
}

#[test]
fn an_invalid_lab_creates_nothing() {
    require_root!();
    let dir = tempdir("t-invalid");
    let file = dir.join("bad.yaml");
    let text_ = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/labs/handson.yaml"))
        .unwrap()
        .replace("cidr: 10.0.3.0/24", "cidr: 10.0.3.0/33");
    std::fs::write(&file, text_).unwrap();
    let o = vpclab()
        .args(["up", "--name", "t-invalid"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not a valid IPv4 CIDR"),
        "{}",
        text(&o)
    );
    assert_eq!(leftovers("t-invalid"), Vec::<String>::new());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failure_in_the_middle_rolls_back_and_names_the_step() {
    require_root!();
    for step in ["namespace:5", "links", "addresses", "routes"] {
        let o = vpclab()
            .args(["up", "--quiet", "--name", "t-fail"])
            .env("VPCLAB_FAULT", format!("fail:{step}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("injected failure"), "{}", text(&o));
        assert!(err.contains("rolled back: removed"), "{}", text(&o));
        if !step.starts_with("namespace:") {
            assert!(
                err.contains(&format!("step `{step}` failed")),
                "{}",
                text(&o)
            );
        }
        assert_eq!(
            leftovers("t-fail"),
            Vec::<String>::new(),
            "after a failure at {step}"
        );
    }
}

#[test]
fn kill_9_at_ten_points_then_down_leaves_nothing() {
    require_root!();
    let points = [
        "state",
        "host-files",
        "namespaces",
        "namespace:1",
        "namespace:6",
        "namespace:11",
        "links",
        "addresses",
        "routes",
        "ready",
    ];
    for p in points {
        let o = vpclab()
            .args(["up", "--quiet", "--name", "t-crash"])
            .env("VPCLAB_FAULT", format!("kill:{p}"))
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(o.status.signal(), Some(9), "killed at {p}: {}", text(&o));
        let d = vpclab().args(["down", "t-crash"]).output().unwrap();
        assert!(d.status.success(), "down after kill at {p}: {}", text(&d));
        assert_eq!(
            leftovers("t-crash"),
            Vec::<String>::new(),
            "after kill -9 at {p}"
        );
        // A second down is harmless.
        let d2 = vpclab().args(["down", "t-crash"]).output().unwrap();
        assert!(d2.status.success(), "{}", text(&d2));
        assert!(String::from_utf8_lossy(&d2.stdout).contains("already down"));
    }
}

#[test]
fn status_reports_a_namespace_that_vanished() {
    require_root!();
    let lab = Lab::up(None, "t-status");
    let ok = vpclab()
        .args(["status", "t-status", "--json"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["namespaces"].as_array().unwrap().len(), 11);

    let ns = lab.ns("stranger");
    let del = std::process::Command::new("ip")
        .args(["netns", "del", &ns])
        .output()
        .unwrap();
    assert!(del.status.success());
    let bad = vpclab().args(["status", "t-status"]).output().unwrap();
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains(&format!("namespace {ns} (stranger) has vanished")),
        "{out}"
    );
}

#[test]
fn exec_passes_the_exit_code_and_uses_the_nodes_own_files() {
    require_root!();
    let lab = Lab::up(None, "t-exec");
    let o = lab.exec("web", &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = lab.exec("web", &["cat", "/etc/resolv.conf", "/etc/hostname"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("nameserver 10.0.0.2"), "{out}");
    assert!(out.contains("ip-10-0-2-238"), "{out}");
    let o = lab.exec("web", &["hostname"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ip-10-0-2-238");
    let o = lab.exec("my-laptop", &["cat", "/etc/resolv.conf"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nameserver 192.0.2.53"));
    let o = lab.exec("nowhere", &["true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no node `nowhere`"));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vpclab-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
