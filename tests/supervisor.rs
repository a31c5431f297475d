//! The lab's supervisor heals itself: a `kill -9` of either of its two processes (the one
//! serving DNS, metadata and health checks, or its standby) is repaired within 2 s, with
//! the records of the state file (a database endpoint moved by a failover included), never
//! two processes serving at once, and `down` still leaves nothing. Root only; every lab
//! here is named `t-sv…`.

mod common;

use common::{Lab, text, vpclab};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How long the supervisor may be away after a `kill -9`.
const BACK_WITHIN: Duration = Duration::from_secs(2);
const APP_DNS: &str = "ip-10-0-1-101.ap-northeast-2.compute.internal";

fn state(lab: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("/run/vpclab/{lab}/state.json")).unwrap())
        .unwrap()
}

/// Every pid the state file records now.
fn recorded_pids(lab: &str) -> BTreeSet<i32> {
    state(lab)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect()
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

fn kill9(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
}

/// The supervisor's pair as `vpclab status --json` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pair {
    serving: i32,
    standby: i32,
}

fn status_json(lab: &Lab) -> (bool, serde_json::Value) {
    let o = vpclab()
        .args(["status", &lab.name, "--json"])
        .output()
        .unwrap();
    (
        o.status.success(),
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o))),
    )
}

fn pair(lab: &Lab) -> Pair {
    let (healthy, v) = status_json(lab);
    assert!(healthy, "status: {v:#}");
    let pid = |k: &str| {
        v["supervisor"][k]
            .as_i64()
            .unwrap_or_else(|| panic!("{v:#}")) as i32
    };
    Pair {
        serving: pid("serving"),
        standby: pid("standby"),
    }
}

/// What the last `Address:` line of `nslookup` from `web` says: the answer, or the
/// server's own `IP#53` when there was none.
fn nslookup(lab: &Lab, name: &str) -> String {
    let o = lab.exec("web", &["nslookup", "-timeout=1", "-retry=0", name]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Address: "))
        .next_back()
        .unwrap_or("")
        .to_string()
}

/// Polls `nslookup name` until it gives an answer (up to 10 s); returns the first
/// answer and how long after `since` it came.
fn first_answer(lab: &Lab, name: &str, since: Instant) -> (String, Duration) {
    loop {
        let a = nslookup(lab, name);
        if !a.is_empty() && !a.contains('#') {
            return (a, since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no answer for {name} 10 s after the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pids holding, and waiting for, the lock that decides who serves.
fn serving_lock(lab: &str) -> (Vec<i32>, Vec<i32>) {
    let m = std::fs::metadata(format!("/run/vpclab/{lab}/supervisor.lock")).unwrap();
    let dev = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(m.dev()),
        nix::sys::stat::minor(m.dev()),
        m.ino()
    );
    let (mut holders, mut waiters) = (vec![], vec![]);
    for line in std::fs::read_to_string("/proc/locks").unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (waiting, f) = match f.get(1) {
            Some(&"->") => (true, &f[2..]),
            _ => (false, &f[1..]),
        };
        // FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END
        if f.len() >= 5 && f[0] == "FLOCK" && f[4] == dev {
            let pid = f[3].parse().unwrap();
            if waiting {
                waiters.push(pid)
            } else {
                holders.push(pid)
            }
        }
    }
    (holders, waiters)
}

/// `vpclab supervise LAB` processes, found by their command line, not by the state file.
fn supervise_processes(lab: &str) -> BTreeSet<i32> {
    let wanted = format!("\0supervise\0{lab}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&wanted))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Exactly one process serves: the one that answers holds the lock, the standby waits
/// for it, and no other `vpclab supervise` of the lab runs.
fn assert_one_serves(lab: &Lab, p: Pair) {
    assert_ne!(p.serving, p.standby);
    let (holders, waiters) = serving_lock(&lab.name);
    assert_eq!(holders, vec![p.serving], "who holds the serving lock");
    assert_eq!(waiters, vec![p.standby], "who waits for it");
    assert_eq!(
        supervise_processes(&lab.name),
        BTreeSet::from([p.serving, p.standby])
    );
    let st = state(&lab.name);
    let records: Vec<(String, i32)> = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == "supervisor")
        .map(|r| {
            (
                r["what"].as_str().unwrap().to_string(),
                r["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    assert_eq!(
        records,
        vec![
            ("supervisor".to_string(), p.serving),
            ("standby".to_string(), p.standby)
        ],
        "the state file records the pair, and nothing else, as the supervisor"
    );
}

/// Waits until status shows the pair whole again after `killed` died.
fn healed(lab: &Lab, killed: i32, since: Instant) -> (Pair, Duration) {
    loop {
        let (healthy, v) = status_json(lab);
        let pid = |k: &str| v["supervisor"][k].as_i64().map(|p| p as i32);
        if healthy
            && let (Some(serving), Some(standby)) = (pid("serving"), pid("standby"))
            && serving != killed
            && standby != killed
        {
            return (Pair { serving, standby }, since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the supervisor's pair is not whole 10 s after the kill: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `down` stops every process the lab ever recorded and leaves nothing behind.
fn down_leaves_nothing(lab: &Lab, ever: &BTreeSet<i32>) {
    let d = vpclab().args(["down", &lab.name]).output().unwrap();
    assert!(d.status.success(), "{}", text(&d));
    // A restart racing `down` would show up a moment later.
    std::thread::sleep(Duration::from_millis(300));
    let survivors: Vec<i32> = ever.iter().copied().filter(|p| alive(*p)).collect();
    assert_eq!(
        survivors,
        Vec::<i32>::new(),
        "processes of the lab after down"
    );
    assert_eq!(supervise_processes(&lab.name), BTreeSet::new());
    assert_eq!(common::leftovers(&lab.name), Vec::<String>::new());
}

#[test]
fn a_killed_supervisor_serves_again_within_two_seconds_and_alone() {
    require_root!();
    let lab = Lab::up(None, "t-sv-kill");
    let mut ever = recorded_pids(&lab.name);
    let before = pair(&lab);
    assert_one_serves(&lab, before);
    assert_eq!(nslookup(&lab, APP_DNS), "10.0.1.101");

    // A plain `kill` (SIGTERM) too: only `down` stops the supervisor for good.
    for (round, signal) in [Signal::SIGKILL, Signal::SIGKILL, Signal::SIGTERM]
        .into_iter()
        .enumerate()
    {
        let p = pair(&lab);
        let t = Instant::now();
        kill(Pid::from_raw(p.serving), signal).unwrap();
        let (answer, took) = first_answer(&lab, APP_DNS, t);
        eprintln!(
            "round {round}: DNS answered {took:?} after {signal} to the serving supervisor {}",
            p.serving
        );
        assert_eq!(answer, "10.0.1.101");
        assert!(took <= BACK_WITHIN, "DNS was back only after {took:?}");
        let gone = Instant::now() + Duration::from_secs(2);
        while alive(p.serving) {
            assert!(Instant::now() < gone, "{} outlived {signal}", p.serving);
            std::thread::sleep(Duration::from_millis(10));
        }
        let (now, whole) = healed(&lab, p.serving, t);
        eprintln!("round {round}: the pair was whole again after {whole:?}");
        assert_eq!(now.serving, p.standby, "the standby took over");
        assert_one_serves(&lab, now);
        ever.extend(recorded_pids(&lab.name));
    }
    down_leaves_nothing(&lab, &ever);
}

#[test]
fn a_restarted_supervisor_serves_the_endpoint_a_failover_moved_and_monitors_the_new_primary() {
    require_root!();
    let lab = Lab::up(None, "t-sv-fo");
    let mut ever = recorded_pids(&lab.name);
    let (_, v) = status_json(&lab);
    let endpoint = v["databases"][0]["endpoint"].as_str().unwrap().to_string();
    assert_eq!(
        nslookup(&lab, &endpoint),
        "10.0.3.87",
        "the lab file's primary"
    );

    let o = vpclab()
        .args(["reboot", "my-database", "--failover", "--lab", &lab.name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        nslookup(&lab, &endpoint),
        "10.0.1.64",
        "moved by the failover"
    );
    ever.extend(recorded_pids(&lab.name));

    let p = pair(&lab);
    let t = Instant::now();
    kill9(p.serving);
    let (answer, took) = first_answer(&lab, &endpoint, t);
    eprintln!("the endpoint answered {took:?} after kill -9 of the supervisor");
    assert_eq!(
        answer, "10.0.1.64",
        "the restarted supervisor serves the primary recorded in the state file, not the lab file's"
    );
    assert!(took <= BACK_WITHIN, "DNS was back only after {took:?}");
    let (now, _) = healed(&lab, p.serving, t);
    assert_one_serves(&lab, now);
    ever.extend(recorded_pids(&lab.name));

    // The restarted supervisor's health monitor fails the new primary over by itself.
    let st = state(&lab.name);
    let wrapper = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == "my-database-2a" && p["what"] == "mariadbd")
        .unwrap()["pid"]
        .as_i64()
        .unwrap();
    let server: i32 = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    kill9(server);
    while nslookup(&lab, &endpoint) != "10.0.3.87" {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no automatic failover 10 s after kill -9 of the primary"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the restarted supervisor failed over {:?} after kill -9 of the primary",
        t.elapsed()
    );
    let events = std::fs::read_to_string(format!("/run/vpclab/{}/events.jsonl", lab.name)).unwrap();
    assert!(events.contains("failed health checks"), "{events}");
    ever.extend(recorded_pids(&lab.name));
    down_leaves_nothing(&lab, &ever);
}

#[test]
fn a_killed_standby_is_replaced_within_two_seconds_and_then_takes_over_in_turn() {
    require_root!();
    let lab = Lab::up(None, "t-sv-standby");
    let mut ever = recorded_pids(&lab.name);
    let p = pair(&lab);

    let t = Instant::now();
    kill9(p.standby);
    let (now, took) = healed(&lab, p.standby, t);
    eprintln!(
        "a new standby {} was waiting {took:?} after kill -9 of the standby {}",
        now.standby, p.standby
    );
    assert!(
        took <= BACK_WITHIN,
        "the standby was back only after {took:?}"
    );
    assert_eq!(
        now.serving, p.serving,
        "the serving supervisor went on serving"
    );
    assert!(!alive(p.standby));
    assert_one_serves(&lab, now);
    assert_eq!(nslookup(&lab, APP_DNS), "10.0.1.101");
    ever.extend(recorded_pids(&lab.name));

    // The new standby works: it takes over from the supervisor that started it.
    let t = Instant::now();
    kill9(now.serving);
    let (answer, took) = first_answer(&lab, APP_DNS, t);
    eprintln!("DNS answered {took:?} after kill -9 of the serving supervisor");
    assert_eq!(answer, "10.0.1.101");
    assert!(took <= BACK_WITHIN, "DNS was back only after {took:?}");
    let (last, _) = healed(&lab, now.serving, t);
    assert_eq!(last.serving, now.standby);
    assert_one_serves(&lab, last);
    ever.extend(recorded_pids(&lab.name));
    down_leaves_nothing(&lab, &ever);
}

/// `down` right after a `kill -9`, while the standby is taking over (or being replaced):
/// no restart happens once `down` has begun, and nothing of the lab survives.
#[test]
fn down_during_a_takeover_leaves_no_process() {
    require_root!();
    for round in 0..4 {
        let o = vpclab()
            .args(["up", "--quiet", "--no-databases", "--name", "t-sv-race"])
            .output()
            .unwrap();
        assert!(o.status.success(), "round {round}: {}", text(&o));
        let lab = Lab {
            name: "t-sv-race".into(),
        };
        let ever = recorded_pids(&lab.name);
        let p = pair(&lab);
        let (killed, other) = if round % 2 == 0 {
            (p.serving, p.standby)
        } else {
            (p.standby, p.serving)
        };
        kill9(killed);
        down_leaves_nothing(&lab, &ever);
        assert!(!alive(other), "round {round}: {other} outlived down");
    }
}
