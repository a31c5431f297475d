//! `vpclab repair` puts a running lab back together, whatever broke it, with the real
//! commands an operator would break it with: `ip netns del`, `ip link del`, `nft flush`,
//! `sysctl -w`, `kill -9`, and an `apply` killed half-way. Each time `status` reports the
//! problem and names `repair`, `repair` says what it found and fixed, the probe suite
//! passes again, and a second `repair` says `no changes`. Root only; every lab here is
//! named `t-rp…`.

mod common;

use common::{Lab, text, vpclab};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::Instant;

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must succeed (the breakages).
fn run(program: &str, args: &[&str]) {
    let o = Command::new(program).args(args).output().unwrap();
    assert!(o.status.success(), "{program} {args:?}:\n{}", text(&o));
}

fn state(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!("/run/vpclab/{}/state.json", lab.name)).unwrap(),
    )
    .unwrap()
}

/// The pid recorded for program `what` on `node`.
fn recorded(lab: &Lab, node: &str, what: &str) -> i32 {
    let st = state(lab);
    st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == node && p["what"] == what)
        .unwrap_or_else(|| panic!("no {what} on {node} in {st:#}"))["pid"]
        .as_i64()
        .unwrap() as i32
}

/// Alive and not a zombie (a killed process nobody reaped yet is dead all the same).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?;
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// `kill -9` of all of `pids` at once, then waits until they are dead: a signal is
/// delivered asynchronously.
fn kill9(pids: &[i32]) {
    for pid in pids {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).unwrap();
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    for pid in pids {
        while alive(*pid) {
            assert!(Instant::now() < deadline, "pid {pid} survived kill -9");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// `status` finds the lab broken, names each of `problems`, and names `repair` as the fix.
fn status_reports(lab: &Lab, problems: &[&str]) {
    let o = vpclab().args(["status", &lab.name]).output().unwrap();
    let s = out(&o);
    assert!(!o.status.success(), "status should fail:\n{}", text(&o));
    for p in problems {
        assert!(s.contains(&format!("problem: {p}")), "no `{p}` in:\n{s}");
    }
    assert!(
        s.contains(&format!("hint: `sudo vpclab repair {}`", lab.name)),
        "{s}"
    );
}

/// `repair` succeeds and has a line starting with each of `fixed`; then the lab is whole:
/// the probe suite passes, status is healthy and another repair changes nothing.
fn repairs(lab: &Lab, fixed: &[&str]) {
    let o = vpclab().args(["repair", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = out(&o);
    for f in fixed {
        assert!(
            s.lines().any(|l| l.starts_with(f)),
            "no line `{f}` in:\n{s}"
        );
    }
    whole(lab, &s);
}

/// The probe suite passes, status is healthy, and `repair` finds nothing to do and
/// writes nothing to the kernel.
fn whole(lab: &Lab, after: &str) {
    let p = vpclab().args(["probe", &lab.name]).output().unwrap();
    assert!(
        p.status.success(),
        "probe after:\n{after}\n{}\nthe supervisor's log:\n{}",
        text(&p),
        std::fs::read_to_string(format!("/run/vpclab/{}/supervisor.log", lab.name))
            .unwrap_or_default()
    );
    let s = vpclab().args(["status", &lab.name]).output().unwrap();
    assert!(s.status.success(), "status:\n{}", text(&s));
    assert!(out(&s).contains("healthy"), "{}", text(&s));
    let again = vpclab()
        .args(["repair", &lab.name, "--json"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["fixes"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["kernel_writes"], 0, "{v:#}");
    assert_eq!(v["healthy"], true, "{v:#}");
    let plain = vpclab().args(["repair", &lab.name]).output().unwrap();
    assert!(plain.status.success(), "{}", text(&plain));
    assert_eq!(out(&plain), "no changes\n");
}

fn down_leaves_nothing(lab: &Lab) {
    let d = vpclab().args(["down", &lab.name]).output().unwrap();
    assert!(d.status.success(), "{}", text(&d));
    assert_eq!(common::leftovers(&lab.name), Vec::<String>::new());
}

#[test]
fn repair_puts_back_what_was_deleted_flushed_or_killed() {
    require_root!();
    let started = Instant::now();
    let lab = Lab::up(None, "t-rpb");
    whole(&lab, "up");
    let ns = |node: &str| lab.ns(node);

    // nftables: one table flushed, another namespace's whole ruleset.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns("web"),
            "nft",
            "flush",
            "table",
            "inet",
            "vpclab",
        ],
    );
    run(
        "ip",
        &["netns", "exec", &ns("my-igw"), "nft", "flush", "ruleset"],
    );
    status_reports(
        &lab,
        &[
            "web: nftables table inet vpclab is not the plan's (chain input has 0 of its 7 rules)",
            "my-igw: nftables table ip vpclab is missing",
        ],
    );
    repairs(
        &lab,
        &[
            "web: nftables table inet vpclab is not the plan's (chain input has 0 of its 7 rules): replaced it with the plan's, in one transaction",
            "my-igw: nftables table ip vpclab is missing: loaded it",
        ],
    );

    // An address, a route and a policy rule removed; a link deleted.
    run(
        "ip",
        &[
            "-n",
            &ns("my-nat"),
            "addr",
            "del",
            "10.0.0.4/24",
            "dev",
            "eth0",
        ],
    );
    run("ip", &["-n", &ns("web"), "route", "del", "default"]);
    run(
        "ip",
        &["-n", &ns("vpc-router"), "rule", "del", "priority", "1001"],
    );
    run("ip", &["-n", &ns("app"), "link", "del", "eth0"]);
    run(
        "ip",
        &["-n", &ns("stranger"), "link", "set", "eth0", "down"],
    );
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns("vpc-router"),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ],
    );
    status_reports(
        &lab,
        &[
            "my-nat: address 10.0.0.4/24 on eth0 is missing",
            "web: route 0.0.0.0/0 via 10.0.2.1 dev eth0 is missing",
            "vpc-router: policy rule priority 1001 iif br-private-2a lookup 102 is missing",
            "veth pair app/eth0 <-> vpc-router/p-app is missing",
            "stranger: link eth0 is down",
            "vpc-router: sysctl net.ipv4.ip_forward is 0, not 1",
        ],
    );
    repairs(
        &lab,
        &[
            "my-nat: address 10.0.0.4/24 on eth0 is missing: added it",
            "web: route 0.0.0.0/0 via 10.0.2.1 dev eth0 is missing: added it",
            "vpc-router: policy rule priority 1001 iif br-private-2a lookup 102 is missing: added it",
            "veth pair app/eth0 <-> vpc-router/p-app is missing: created it with its addresses and routes",
            "stranger: link eth0 is down: brought it up",
            "stranger: route 0.0.0.0/0 via 192.0.2.1 dev eth0 is missing: added it",
            "vpc-router: sysctl net.ipv4.ip_forward is 0, not 1: set it",
        ],
    );

    // A namespace deleted by name while its programs keep it alive.
    run("ip", &["netns", "del", &ns("web")]);
    let web = ns("web");
    status_reports(&lab, &[&format!("namespace {web} (web) has vanished")]);
    repairs(
        &lab,
        &[
            &format!(
                "namespace {web} (web) is missing: created it with everything the plan puts in it"
            ),
            "sshd on web is not running: started it",
        ],
    );

    // The VPC router's namespace, where the supervisor serves DNS and metadata and
    // every subnet's bridge is.
    run("ip", &["netns", "del", &ns("vpc-router")]);
    let router = ns("vpc-router");
    status_reports(
        &lab,
        &[
            &format!("namespace {router} (vpc-router) has vanished"),
            "web/eth0 lost its peer vpc-router/p-web (its namespace is missing)",
        ],
    );
    repairs(
        &lab,
        &[
            &format!(
                "namespace {router} (vpc-router) is missing: created it with everything the plan puts in it"
            ),
            "web/eth0 lost its peer vpc-router/p-web (its namespace is missing): deleted it; the pair is made again with the namespace",
        ],
    );

    // Services killed with kill -9: sshd, nginx (whose worker keeps the ports), the
    // database's standby server, and the holder of the mount namespace that every program
    // on a host starts from.
    let sshd = recorded(&lab, "app", "sshd");
    let nginx = recorded(&lab, "web", "nginx");
    let standby = recorded(&lab, "my-database-2a", "mariadbd");
    let template = recorded(&lab, "vpc-router", "mount-template");
    // A host's programs see none of the machine's network namespace mounts.
    let mounts = std::fs::read_to_string(format!("/proc/{sshd}/mountinfo")).unwrap();
    assert!(
        !mounts.contains("/run/netns"),
        "sshd on app sees the machine's namespace mounts:\n{mounts}"
    );
    kill9(&[sshd, nginx, standby, template]);
    status_reports(
        &lab,
        &[
            &format!("sshd on app (pid {sshd}) is gone"),
            &format!("nginx on web (pid {nginx}) is gone"),
            &format!("mariadbd on my-database-2a (pid {standby}) is gone"),
            &format!("mount-template on vpc-router (pid {template}) is gone"),
        ],
    );
    let o = vpclab().args(["repair", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = out(&o);
    for started in [
        format!("sshd on app (pid {sshd}) is gone: started it (pid "),
        format!("nginx on web (pid {nginx}) is gone: started it (pid "),
        format!(
            "the standby of my-database (mariadbd on my-database-2a, pid {standby}) is gone: restarted it; it replicates from my-database-2c again"
        ),
        format!("mount-template on vpc-router (pid {template}) is gone: started a new one (pid "),
    ] {
        assert!(s.contains(&started), "no `{started}` in:\n{s}");
    }
    whole(&lab, &s);

    // Both processes of the supervisor at once.
    let pair = [
        recorded(&lab, "supervisor", "supervisor"),
        recorded(&lab, "supervisor", "standby"),
    ];
    kill9(&pair);
    status_reports(
        &lab,
        &["the supervisor is gone (both of its processes died)"],
    );
    let o = vpclab().args(["repair", &lab.name]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out(&o).contains(
            "the supervisor is gone (both of its processes died): started it again (pid "
        ),
        "{}",
        text(&o)
    );
    whole(&lab, &out(&o));

    down_leaves_nothing(&lab);
    eprintln!("repair test took {:.1} s", started.elapsed().as_secs_f64());
}

/// The built-in lab edited: an instance `app2` in private-2c with ssh, in the group that
/// lets the VPC in by ssh, and one more inbound rule in that group.
fn edited() -> String {
    let yaml = std::fs::read_to_string("labs/handson.yaml").unwrap();
    let rule = "      - { type: ssh, source: 10.0.0.0/16 }\n";
    let app2 = "  app2:\n    subnet: private-2c\n    private_ip: 10.0.3.20\n    public_ip: none\n    key_pair: aws-study\n    security_groups: [MyApp-SecurityGroup]\n    services: [ssh]\n\ndb_subnet_groups:";
    assert!(yaml.contains(rule) && yaml.contains("db_subnet_groups:"));
    yaml.replacen(
        rule,
        &format!("{rule}      - {{ type: http, source: 10.0.0.0/16 }}\n"),
        1,
    )
    .replacen("db_subnet_groups:", app2, 1)
}

#[test]
fn repair_finishes_an_apply_killed_at_any_point() {
    require_root!();
    let started = Instant::now();
    let lab = Lab::up(None, "t-rpa");
    let file = std::env::temp_dir().join(format!("vpclab-t-rpa-{}.yaml", std::process::id()));
    std::fs::write(&file, edited()).unwrap();
    let file = file.to_str().unwrap();
    let apply = |f: &str, fault: Option<&str>| {
        let mut c = vpclab();
        c.args(["apply", f, "--name", &lab.name]);
        if let Some(point) = fault {
            c.env("VPCLAB_FAULT", format!("kill:{point}"));
        }
        c.output().unwrap()
    };
    for point in [
        "apply:recorded",
        "apply:stopped",
        "apply:kernel",
        "apply:services",
    ] {
        let killed = apply(file, Some(point));
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{point}: {}",
            text(&killed)
        );
        status_reports(&lab, &[&format!("an apply of {file} did not finish")]);
        let o = vpclab().args(["repair", &lab.name]).output().unwrap();
        assert!(o.status.success(), "{point}: {}", text(&o));
        assert!(
            out(&o).contains(&format!(
                "an apply of {file} did not finish (its lab file was recorded, not all of it made): made the rest and cleared its mark"
            )),
            "{point}: {}",
            text(&o)
        );
        whole(&lab, &format!("{point}: {}", out(&o)));
        let nc = lab.exec("web", &["nc", "-z", "-w2", "10.0.3.20", "22"]);
        assert!(nc.status.success(), "{point}: app2's sshd: {}", text(&nc));
        let again = apply(file, None);
        assert!(again.status.success(), "{point}: {}", text(&again));
        assert_eq!(out(&again), "no changes\n", "{point}");
        // Back to the built-in lab for the next kill point.
        let back = apply("labs/handson.yaml", None);
        assert!(back.status.success(), "{point}: {}", text(&back));
        assert!(!common::namespaces_of(&lab.name).contains(&lab.ns("app2")));
    }
    down_leaves_nothing(&lab);
    let _ = std::fs::remove_file(file);
    eprintln!(
        "apply crash test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
