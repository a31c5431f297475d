//! RDS Multi-AZ with real MariaDB: the write-up's section 7 (mysql from web, nslookup,
//! reboot with failover, nslookup again), automatic failover after kill -9, and twenty
//! drills in a row with no lost write and never two writable servers. Root only.

mod common;

use common::{Lab, text, vpclab};
use std::process::Output;
use std::time::{Duration, Instant};

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn endpoint(lab: &Lab) -> String {
    let o = vpclab()
        .args(["status", &lab.name, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["databases"][0]["endpoint"].as_str().unwrap().to_string()
}

fn nslookup(lab: &Lab, name: &str) -> String {
    let o = lab.exec("web", &["nslookup", name]);
    out(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .next_back()
        .unwrap_or("")
        .to_string()
}

/// `mysql -h <endpoint>` as the master user, credentials from the lab's option file.
fn mysql(lab: &Lab, from: &str, host: &str, sql: &str) -> Output {
    let cnf = format!("/run/vpclab/{}/keys/my-database.client.cnf", lab.name);
    lab.exec(
        from,
        &[
            "mysql",
            &format!("--defaults-extra-file={cnf}"),
            "--connect-timeout=2",
            "-h",
            host,
            "-N",
            "-e",
            sql,
        ],
    )
}

#[test]
fn the_write_ups_sequence_mysql_nslookup_reboot_with_failover_nslookup_mysql() {
    require_root!();
    let lab = Lab::up(None, "t-writeup");
    let ep = endpoint(&lab);
    assert!(ep.starts_with("my-database.") && ep.ends_with(".ap-northeast-2.rds.amazonaws.com"));

    let o = mysql(&lab, "web", &ep, "SELECT @@hostname, @@read_only");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(out(&o), "ip-10-0-3-87\t0");
    assert_eq!(nslookup(&lab, &ep), "10.0.3.87");

    let o = vpclab()
        .args(["reboot", "my-database", "--failover", "--lab", &lab.name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let events = out(&o);
    assert!(
        events.contains("Multi-AZ instance failover started"),
        "{events}"
    );
    assert!(
        events.contains("Multi-AZ instance failover completed"),
        "{events}"
    );
    assert!(events.contains("rejoined as the standby"), "{events}");

    assert_eq!(
        nslookup(&lab, &ep),
        "10.0.1.64",
        "the endpoint follows the primary"
    );
    let o = mysql(&lab, "web", &ep, "SELECT @@hostname, @@read_only");
    assert_eq!(out(&o), "ip-10-0-1-64\t0", "{}", text(&o));
    // The old primary is the standby now: read-only and closed to clients.
    let o = mysql(&lab, "web", "10.0.3.87", "SELECT 1");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("account is locked"),
        "{}",
        text(&o)
    );
    let s = vpclab()
        .args(["status", &lab.name, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let standby = &v["databases"][0]["servers"][1];
    assert_eq!(standby["node"], "my-database-2c");
    assert_eq!(standby["server"]["read_only"], true);
    assert_eq!(standby["server"]["io_running"], true);
}

#[test]
fn the_supervisor_fails_over_by_itself_when_the_primary_is_killed() {
    require_root!();
    let lab = Lab::up(None, "t-kill");
    let ep = endpoint(&lab);
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("/run/vpclab/{}/state.json", lab.name)).unwrap(),
    )
    .unwrap();
    let wrapper = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == "my-database-2c" && p["what"] == "mariadbd")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    let server: i32 = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while nslookup(&lab, &ep) != "10.0.1.64" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no failover 10 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = mysql(&lab, "web", &ep, "SELECT @@hostname");
    assert_eq!(out(&o), "ip-10-0-1-64", "{}", text(&o));
    let events = std::fs::read_to_string(format!("/run/vpclab/{}/events.jsonl", lab.name)).unwrap();
    assert!(events.contains("failed health checks"), "{events}");
}

#[test]
fn twenty_drills_alternate_with_no_lost_write_and_never_two_writable_servers() {
    require_root!();
    let lab = Lab::up(None, "t-drills");
    let mut primary = "my-database-2c".to_string();
    let mut rtos = Vec::new();
    for i in 0..20 {
        let args: Vec<&str> = match i % 4 {
            3 => vec!["drill", "failover", "--kill", "--json", "--lab", &lab.name],
            _ => vec!["drill", "failover", "--json", "--lab", &lab.name],
        };
        let o = vpclab().args(&args).output().unwrap();
        assert!(o.status.success(), "drill {i}: {}", text(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["lost"], 0, "drill {i}: {r}");
        assert_eq!(r["two_writable"], 0, "drill {i}: {r}");
        assert!(
            r["writable_samples"].as_u64().unwrap() > 10,
            "drill {i}: the check ran"
        );
        assert!(r["acked"].as_u64().unwrap() >= 40, "drill {i}: {r}");
        assert_eq!(r["present"], r["acked"], "drill {i}");
        assert_eq!(r["primary_before"], primary.as_str(), "drill {i}");
        assert_ne!(
            r["primary_after"], r["primary_before"],
            "drill {i}: the direction alternates"
        );
        assert_ne!(r["before"], r["after"], "drill {i}: the endpoint moved");
        primary = r["primary_after"].as_str().unwrap().to_string();
        rtos.push(r["rto_ms"].as_u64().unwrap());
    }
    eprintln!("RTOs (ms): {rtos:?}");
}

#[test]
fn no_password_ever_appears_on_a_command_line() {
    require_root!();
    let lab = Lab::up(None, "t-secret");
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "/run/vpclab/{}/keys/my-database.credentials.json",
            lab.name
        ))
        .unwrap(),
    )
    .unwrap();
    let secrets: Vec<String> = ["master_password", "app_password", "repl_password"]
        .iter()
        .map(|k| creds[k].as_str().unwrap().to_string())
        .collect();
    let o = vpclab().args(["probe", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            for s in &secrets {
                assert!(
                    !cmd.contains(s.as_str()),
                    "a password on the command line of {}: {cmd}",
                    e.path().display()
                );
            }
        }
    }
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "credentials.json",
        "client.cnf",
        "app.cnf",
        "master-password",
    ] {
        let p = format!("/run/vpclab/{}/keys/my-database.{f}", lab.name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{p}"
        );
    }
    // The application user has privileges on its database only: read_only stops it.
    let app = format!("/run/vpclab/{}/keys/my-database.app.cnf", lab.name);
    let o = lab.exec(
        "web",
        &[
            "mysql",
            &format!("--defaults-extra-file={app}"),
            "-h",
            "10.0.3.87",
            "-e",
            "CREATE DATABASE other",
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
}

/// `drill az-outage` on a lab with one NAT gateway per AZ: each report line says what happened
/// in *that* lab. Losing the standby's AZ fails nothing over and cuts off only the subnet routed
/// through that AZ's NAT gateway; losing the primary's AZ fails the database over.
#[test]
fn an_az_outage_reports_what_happened_in_that_lab() {
    require_root!();
    let lab = Lab::up(Some("tests/labs/nat-per-az.yaml"), "t-azrep");
    let drill = |args: &[&str]| {
        let o = vpclab()
            .arg("drill")
            .args(args)
            .args(["--lab", &lab.name])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        out(&o)
    };

    let standby_lost = drill(&["az-outage", "us-east-1b"]);
    assert!(
        standby_lost.contains(
            "database orders lost its standby orders-1b in us-east-1b; nothing failed over"
        ),
        "{standby_lost}"
    );
    assert!(
        standby_lost.contains("NAT gateway nat-b was in us-east-1b: the private subnets routed through it (route table private-b: private-b)"),
        "{standby_lost}"
    );
    assert!(!standby_lost.contains("every AZ"), "{standby_lost}");
    assert!(!standby_lost.contains("failed over to"), "{standby_lost}");
    assert!(
        standby_lost.contains("brings the AZ back (orders-1b rejoins as a standby)"),
        "{standby_lost}"
    );
    drill(&["restore"]);

    let primary_lost = drill(&["az-outage", "us-east-1a"]);
    assert!(
        primary_lost.contains("database orders failed over to orders-1b in us-east-1b"),
        "{primary_lost}"
    );
    assert!(
        primary_lost.contains("(route table private-a: private-a)"),
        "{primary_lost}"
    );
    assert!(!primary_lost.contains("private-b"), "{primary_lost}");
    drill(&["restore"]);
}
