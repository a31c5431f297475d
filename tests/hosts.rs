//! EC2-like hosts, VPC DNS, instance metadata and the probe suite, with the real tools:
//! ssh, curl, nslookup, dig. Root only; each test uses its own lab name.

mod common;

use common::{Lab, text, vpclab};
use std::process::Output;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ssh(lab: &Lab, args: &[&str]) -> Output {
    vpclab()
        .args(["ssh", "--lab", &lab.name])
        .args(args)
        .output()
        .unwrap()
}

const WEB_DNS: &str = "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com";

#[test]
fn ssh_with_the_key_pair_works_from_my_laptop_and_not_from_a_stranger() {
    require_root!();
    let lab = Lab::up(None, "t-ssh");
    let o = ssh(
        &lab,
        &["web", "--", "hostname; id -un; ip -o -4 addr show eth0"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = out(&o);
    assert!(s.starts_with("ip-10-0-2-238\nec2-user\n"), "{s}");
    assert!(
        s.contains("10.0.2.238/24") && !s.contains("198.51.100.10"),
        "{s}"
    );

    let o = ssh(&lab, &["web", "--from", "stranger", "--", "true"]);
    assert!(
        !o.status.success(),
        "the security group lets only my IP in: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("timed out"),
        "{}",
        text(&o)
    );

    // The key is the only way in: ec2-user has no password, root may not log in.
    let key = format!("/run/vpclab/{}/keys/aws-study.pem", lab.name);
    let meta = std::fs::metadata(&key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let o = lab.exec(
        "my-laptop",
        &[
            "ssh",
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=2",
            "-o",
            "PubkeyAuthentication=no",
            &format!("ec2-user@{WEB_DNS}"),
            "true",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied (publickey)"),
        "{}",
        text(&o)
    );
}

#[test]
fn web_pages_over_http_and_https_from_anywhere_show_the_client_address() {
    require_root!();
    let lab = Lab::up(None, "t-web");
    for (who, ip) in [("my-laptop", "203.0.113.10"), ("stranger", "192.0.2.66")] {
        for scheme in ["http", "https"] {
            let o = lab.exec(
                who,
                &["curl", "-sSk", "-m", "3", &format!("{scheme}://{WEB_DNS}/")],
            );
            assert!(o.status.success(), "{}", text(&o));
            let page = out(&o);
            assert!(page.contains("private IP: 10.0.2.238"), "{page}");
            assert!(
                page.contains("availability zone: ap-northeast-2c"),
                "{page}"
            );
            assert!(page.contains("instance id: i-0"), "{page}");
            assert!(
                page.contains(&format!("as this server saw it: {ip}")),
                "{page}"
            );
        }
    }
    // The certificate is self-signed for the instance's public name.
    let o = lab.exec(
        "my-laptop",
        &["curl", "-sS", "-m", "3", &format!("https://{WEB_DNS}/")],
    );
    assert!(
        !o.status.success(),
        "an unknown CA must be refused: {}",
        text(&o)
    );
    // example-web reports the address it saw: NAT from the far side.
    let o = lab.exec(
        "app",
        &["curl", "-sS", "-m", "3", "http://example-web.example/ip"],
    );
    assert_eq!(out(&o), "198.51.100.11", "{}", text(&o));
}

#[test]
fn instance_metadata_tells_an_instance_what_its_interfaces_do_not() {
    require_root!();
    let lab = Lab::up(None, "t-meta");
    let md = |node: &str, path: &str| {
        let o = lab.exec(
            node,
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-w",
                "\\n%{http_code}",
                &format!("http://169.254.169.254/latest/meta-data/{path}"),
            ],
        );
        out(&o)
    };
    assert_eq!(md("web", "local-ipv4"), "10.0.2.238\n200");
    assert_eq!(md("web", "public-ipv4"), "198.51.100.10\n200");
    assert_eq!(
        md("web", "local-hostname"),
        "ip-10-0-2-238.ap-northeast-2.compute.internal\n200"
    );
    assert_eq!(md("web", "public-hostname"), format!("{WEB_DNS}\n200"));
    assert_eq!(
        md("web", "placement/availability-zone"),
        "ap-northeast-2c\n200"
    );
    assert!(md("web", "instance-id").starts_with("i-0"));
    assert_eq!(
        md("app", "public-ipv4").lines().last(),
        Some("404"),
        "app has no public IP"
    );
    assert_eq!(
        md("app", "placement/availability-zone"),
        "ap-northeast-2a\n200"
    );
    // IMDSv2: a token, then a request with it.
    let o = lab.exec("web", &["sh", "-c", "t=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && curl -s -H \"X-aws-ec2-metadata-token: $t\" http://169.254.169.254/latest/meta-data/local-ipv4"]);
    assert_eq!(out(&o), "10.0.2.238", "{}", text(&o));
}

#[test]
fn dns_is_split_horizon_and_unknown_names_fail_fast() {
    require_root!();
    let lab = Lab::up(None, "t-dns");
    let dig = |node: &str, args: &[&str]| {
        let mut a = vec!["dig", "+short", "+time=1", "+tries=1"];
        a.extend(args);
        out(&lab.exec(node, &a))
    };
    assert_eq!(
        dig("web", &[WEB_DNS]),
        "10.0.2.238",
        "inside the VPC: the private IP"
    );
    assert_eq!(dig("app", &[WEB_DNS, "@169.254.169.253"]), "10.0.2.238");
    assert_eq!(
        dig("my-laptop", &[WEB_DNS]),
        "198.51.100.10",
        "on the internet: the public IP"
    );
    assert_eq!(
        dig("web", &["ip-10-0-1-101.ap-northeast-2.compute.internal"]),
        "10.0.1.101"
    );
    let o = lab.exec("web", &["nslookup", WEB_DNS]);
    assert!(out(&o).contains("Address: 10.0.2.238"), "{}", text(&o));

    let t = std::time::Instant::now();
    let o = lab.exec(
        "web",
        &["dig", "+time=1", "+tries=1", "no-such-host.example"],
    );
    assert!(out(&o).contains("status: NXDOMAIN"), "{}", text(&o));
    assert!(
        t.elapsed() < std::time::Duration::from_millis(900),
        "NXDOMAIN, not a timeout"
    );
}

#[test]
fn stop_and_start_change_an_auto_assigned_public_ip_but_not_an_elastic_ip() {
    require_root!();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/labs/elastic-and-auto.yaml"
    );
    let lab = Lab::up(Some(file), "t-stop");
    let public = |node: &str| {
        out(&lab.exec(
            node,
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "http://169.254.169.254/latest/meta-data/public-ipv4",
            ],
        ))
    };
    let auto_before = public("auto");
    let eip_before = public("elastic");
    assert_eq!(auto_before, "198.51.100.10");
    assert_eq!(eip_before, "198.51.100.200");

    for node in ["auto", "elastic"] {
        let o = vpclab()
            .args(["stop", node, "--lab", &lab.name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    // Stopped: nothing answers at the old addresses.
    let o = lab.exec(
        "my-laptop",
        &["curl", "-s", "-m", "1", &format!("http://{auto_before}/")],
    );
    assert!(!o.status.success());
    for node in ["auto", "elastic"] {
        let o = vpclab()
            .args(["start", node, "--lab", &lab.name, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let auto_after = public("auto");
    assert_ne!(
        auto_after, auto_before,
        "an auto-assigned public IP changes on start"
    );
    assert_eq!(public("elastic"), eip_before, "an Elastic IP stays");
    // The services came back, at the new address and under the new public DNS name.
    let new_dns = format!(
        "ec2-{}.compute-1.amazonaws.com",
        auto_after.replace('.', "-")
    );
    let o = lab.exec(
        "my-laptop",
        &["curl", "-s", "-m", "2", &format!("http://{new_dns}/ip")],
    );
    assert_eq!(out(&o), "203.0.113.10", "{}", text(&o));
    let o = vpclab()
        .args(["ssh", "auto", "--lab", &lab.name, "--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = vpclab().args(["probe", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn the_probe_suite_of_every_shipped_lab_passes() {
    require_root!();
    let labs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/labs")).unwrap();
    let mut checked = 0;
    for f in labs.filter_map(|e| e.ok()).map(|e| e.path()) {
        let text_ = std::fs::read_to_string(&f).unwrap();
        if !text_.contains("\nexpect:") {
            eprintln!(
                "{}: no expectations to probe (a benchmark lab)",
                f.display()
            );
            continue;
        }
        let name = format!("t-p-{}", f.file_stem().unwrap().to_string_lossy());
        let name: String = name.chars().take(20).collect();
        let lab = Lab::up(Some(f.to_str().unwrap()), &name);
        let o = vpclab()
            .args(["probe", &lab.name, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", f.display(), text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["failed"], 0);
        assert!(v["passed"].as_u64().unwrap() > 0);
        for p in v["probes"].as_array().unwrap() {
            for field in ["from", "to", "kind", "expect", "observed", "ok", "ms"] {
                assert!(p.get(field).is_some(), "probe without `{field}`: {p}");
            }
        }
        assert!(
            v["ms"].as_u64().unwrap() < 3000,
            "the suite takes under 3 s: {v}"
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "the built-in lab and labs/public-db.yaml at least"
    );
}

#[test]
fn a_wrong_expectation_makes_probe_fail_and_names_it() {
    require_root!();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/labs/wrong-expectation.yaml"
    );
    let lab = Lab::up(Some(file), "t-wrong");
    let o = vpclab().args(["probe", &lab.name]).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let s = out(&o);
    assert!(s.contains("1 passed, 1 failed"), "{s}");
    assert!(
        s.contains(
            "FAILED: line 24: stranger -> web ssh expected ok, observed blocked (timed out)"
        ),
        "{s}"
    );
}

#[test]
fn down_cleans_up_after_the_supervisor_died_and_status_says_so() {
    require_root!();
    let lab = Lab::up(None, "t-sup");
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/vpclab/{}/state.json", lab.name)).unwrap(),
    )
    .unwrap();
    let pid = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["what"] == "supervisor")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    let sock = format!("/run/vpclab/{}/supervisor.sock", lab.name);
    let meta = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the control socket is 0600"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Its standby has taken over: status says the lab is healthy, served by another
    // process, and no longer lists the dead one.
    let o = vpclab().args(["status", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let status = out(&o);
    let pair = status
        .lines()
        .find_map(|l| l.strip_prefix("supervisor: serving pid "))
        .unwrap_or_else(|| panic!("no supervisor line:\n{status}"));
    let (serving, standby) = pair.split_once(", standby pid ").unwrap();
    assert_ne!(serving, pid.to_string(), "{status}");
    assert_ne!(standby, pid.to_string(), "{status}");
    assert!(serving.parse::<u32>().is_ok(), "{status}");
    assert!(standby.parse::<u32>().is_ok(), "{status}");
    assert!(
        !status.lines().any(|l| l.ends_with(&format!(" pid {pid}"))),
        "{status}"
    );
    // `down` (run by the guard) still removes everything; checked explicitly here.
    let d = vpclab().args(["down", &lab.name]).output().unwrap();
    assert!(d.status.success(), "{}", text(&d));
    assert_eq!(common::leftovers(&lab.name), Vec::<String>::new());
}
