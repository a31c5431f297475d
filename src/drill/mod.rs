//! Failover drills: a writer on `web` inserts numbered rows through the endpoint while
//! the primary is rebooted with failover, killed, or loses its AZ; the drill measures how
//! long writes were impossible (RTO), proves no acknowledged write was lost, and checks
//! all along that two servers are never writable at once.

pub mod az;
pub mod writer;

use crate::lab::database::{self, Event};
use crate::lab::{Running, control, hosts, running, state};
use crate::probe;
use crate::services::mariadb;
use anyhow::{Context, Result, bail};
use mysql::prelude::Queryable;
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "az", rename_all = "kebab-case")]
pub enum Trigger {
    /// `reboot --failover`: the console's "Reboot with failover".
    Reboot,
    /// kill -9 of the primary's server process; the supervisor notices.
    Kill,
    /// The primary's availability zone goes down (restored after the drill).
    Az(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: f64,
    /// Milliseconds after the trigger.
    pub t_ms: i64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lab: String,
    pub database: String,
    pub trigger: Trigger,
    pub writer: String,
    /// Last acknowledged write before the outage → first acknowledged write after.
    pub rto_ms: u64,
    pub acked: usize,
    /// Acknowledged writes found on the new primary afterwards.
    pub present: usize,
    /// Acknowledged but missing: must be 0.
    pub lost: usize,
    pub lost_seqs: Vec<u64>,
    /// Failed attempts (errors while the endpoint moved).
    pub errors: usize,
    /// The endpoint's address as `nslookup` on the writer's instance showed it.
    pub before: Option<Ipv4Addr>,
    pub after: Option<Ipv4Addr>,
    pub primary_before: String,
    pub primary_after: String,
    /// Samples of both servers' `read_only` taken during the drill, and how many found
    /// two writable servers (must be 0).
    pub writable_samples: usize,
    pub two_writable: usize,
    pub timeline: Vec<TimelineEntry>,
}

/// The database to drill: the one given, or the lab's only Multi-AZ database.
pub fn pick_database(r: &Running, name: Option<&str>) -> Result<String> {
    let multi: Vec<&str> = r
        .lab
        .databases
        .iter()
        .filter(|d| d.standby.is_some())
        .map(|d| d.name.as_str())
        .collect();
    match name {
        Some(n) if multi.contains(&n) => Ok(n.into()),
        Some(n) => bail!("`{n}` is not a Multi-AZ database of lab `{}`", r.lab.name),
        None => match multi.as_slice() {
            [one] => Ok(one.to_string()),
            [] => bail!("lab `{}` has no Multi-AZ database to fail over", r.lab.name),
            many => bail!(
                "several Multi-AZ databases ({}); pick one with --db",
                many.join(", ")
            ),
        },
    }
}

/// The instance the writer runs on: one whose security groups the database lets in
/// (`web` in the built-in lab).
pub fn pick_writer(r: &Running, db: &str) -> Result<String> {
    let d = r.lab.database(db).context("no such database")?;
    let allowed: Vec<usize> = d
        .security_groups
        .iter()
        .flat_map(|g| &r.lab.security_groups[*g].inbound)
        .filter_map(|rule| match rule.peer {
            crate::topology::Peer::Group(g) => Some(g),
            _ => None,
        })
        .collect();
    r.lab
        .instances
        .iter()
        .find(|i| {
            !r.state.runtime.stopped.contains(&i.name)
                && i.security_groups.iter().any(|g| allowed.contains(g))
        })
        .or_else(|| r.lab.instances.first())
        .map(|i| i.name.clone())
        .context("the lab has no instance to run the writer on")
}

/// `nslookup ENDPOINT` on `node`, the address it printed.
pub fn lookup(r: &Running, node: &str, name: &str) -> Option<Ipv4Addr> {
    let dir = state::dir(&r.lab.name);
    let o = probe::client(
        r,
        &dir,
        node,
        &["nslookup".into(), "-timeout=1".into(), name.into()],
    )
    .ok()?;
    probe::parse_nslookup(&String::from_utf8_lossy(&o.stdout))
}

enum Line {
    Ack(u64, f64),
    Err(f64, String),
}

fn parse_line(l: &str) -> Option<Line> {
    let mut it = l.splitn(3, ' ');
    match it.next()? {
        "ack" => {
            let seq = it.next()?.parse().ok()?;
            let ms: f64 = it.next()?.trim().parse().ok()?;
            Some(Line::Ack(seq, ms / 1000.0))
        }
        "err" => {
            let ms: f64 = it.next()?.parse().ok()?;
            Some(Line::Err(ms / 1000.0, it.next().unwrap_or("").to_string()))
        }
        _ => None,
    }
}

/// The writer's binary inside the instance: a copy of this vpclab in the instance's own
/// folder (its /home, /tmp and /run are the instance's, so the host's path may not be
/// visible there).
fn writer_binary(dir: &std::path::Path, node: &str) -> Result<std::path::PathBuf> {
    let dest = hosts::host_dir(dir, node).join("vpclab-drill-writer");
    if !dest.exists() {
        let exe = std::env::current_exe().context("find the vpclab binary")?;
        if std::fs::hard_link(&exe, &dest).is_err() {
            std::fs::copy(&exe, &dest)
                .with_context(|| format!("copy vpclab to {}", dest.display()))?;
        }
    }
    Ok(dest)
}

pub fn failover(lab: Option<&str>, db: Option<&str>, trigger: Trigger) -> Result<Report> {
    let r = running(lab)?;
    let db = pick_database(&r, db)?;
    let dir = state::dir(&r.lab.name);
    let d = r.lab.database(&db).expect("picked").clone();
    let writer_node = pick_writer(&r, &db)?;
    let (primary_before, _) = database::roles(&r.lab, &db)?;
    if let Trigger::Az(az) = &trigger
        && r.lab.subnets[primary_before.subnet].az != *az
    {
        bail!(
            "the primary {} is in {}, not {az}: taking {az} down would not fail the database over",
            primary_before.name,
            r.lab.subnets[primary_before.subnet].az
        );
    }

    if let Trigger::Az(az) = &trigger
        && r.plan.netns(&writer_node).and_then(|n| n.az.as_deref()) == Some(az.as_str())
    {
        bail!(
            "the writer's instance {writer_node} is in {az} too: the outage would stop the writer itself
  hint: fail over first (`vpclab reboot {db} --failover`) so the primary is in another AZ than {writer_node}, or see `vpclab drill az-outage {az}` for what an outage of {az} does"
        );
    }

    // The drill's table, created through the primary (it replicates).
    let run_id = (database::unix_now() * 1000.0) as u64;
    {
        let mut c = mariadb::admin(
            &database::paths(&dir, &primary_before.name),
            Duration::from_secs(5),
        )?;
        c.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS `{}`.{} (run BIGINT NOT NULL, seq BIGINT NOT NULL, at DATETIME(6) NOT NULL, PRIMARY KEY (run, seq))",
            d.database_name,
            writer::TABLE
        ))?;
    }
    let before = lookup(&r, &writer_node, &d.endpoint);

    // Both servers' read_only, sampled all through the drill.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new((0usize, 0usize, Vec::<f64>::new())));
    let sampler = {
        let stop = stop_sampling.clone();
        let samples = samples.clone();
        let nodes: Vec<mariadb::Paths> =
            d.nodes().map(|n| database::paths(&dir, &n.name)).collect();
        std::thread::spawn(move || {
            let mut conns: Vec<Option<mysql::Conn>> = nodes.iter().map(|_| None).collect();
            while !stop.load(Ordering::SeqCst) {
                let mut writable = 0;
                for (p, c) in nodes.iter().zip(conns.iter_mut()) {
                    if c.is_none() {
                        *c = mariadb::admin(p, Duration::from_millis(300)).ok();
                    }
                    let ro: Option<i64> = c
                        .as_mut()
                        .and_then(|c| c.query_first("SELECT @@GLOBAL.read_only").ok().flatten());
                    match ro {
                        Some(0) => writable += 1,
                        Some(_) => {}
                        None => *c = None, // down or restarting: not writable
                    }
                }
                let mut s = samples.lock().unwrap();
                s.0 += 1;
                if writable >= 2 {
                    s.1 += 1;
                    s.2.push(database::unix_now());
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // The writer, on the instance, through the endpoint.
    let exe = writer_binary(&dir, &writer_node)?;
    let env = hosts::env(&r.plan, &dir, &writer_node, hosts::live_template(&r.state))?;
    let cnf = dir.join("keys").join(format!("{db}.app.cnf"));
    let mut child = env
        .command(&exe)?
        .args([
            "drill-writer",
            "--host",
            &d.endpoint,
            "--port",
            &d.port.to_string(),
            "--run",
        ])
        .arg(run_id.to_string())
        .arg("--option-file")
        .arg(&cnf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the writer")?;
    let lines: Arc<Mutex<Vec<Line>>> = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let lines = lines.clone();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(p) = parse_line(&l) {
                    lines.lock().unwrap().push(p);
                }
            }
        })
    };
    let acks = |lines: &Arc<Mutex<Vec<Line>>>| -> Vec<(u64, f64)> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| match l {
                Line::Ack(s, t) => Some((*s, *t)),
                _ => None,
            })
            .collect()
    };
    let wait_for = |what: &str, timeout: Duration, done: &dyn Fn() -> bool| -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() > deadline {
                bail!("{what} (waited {timeout:?})");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    };
    let result = (|| -> Result<(f64, f64)> {
        wait_for(
            "the writer got no write through the endpoint",
            Duration::from_secs(10),
            &|| acks(&lines).len() >= 20,
        )?;
        let t0 = database::unix_now();
        match &trigger {
            Trigger::Reboot => {
                control::request(
                    &r.lab.name,
                    &control::Request::Reboot {
                        database: db.clone(),
                        failover: true,
                    },
                    Duration::from_secs(120),
                )?;
            }
            Trigger::Kill => {
                let now = running(Some(&r.lab.name))?;
                let wrapper = now
                    .state
                    .processes
                    .iter()
                    .find(|p| {
                        p.node == primary_before.name && p.what == database::WHAT && p.alive()
                    })
                    .context("the primary's server process is not running")?;
                let server =
                    mariadb::server_pid(wrapper.pid).context("find mariadbd under its wrapper")?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(server),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .context("kill -9 the primary's mariadbd")?;
            }
            Trigger::Az(az) => {
                az::outage(&r.lab.name, az)?;
            }
        }
        let lab_name = r.lab.name.clone();
        let old = primary_before.name.clone();
        let dbn = db.clone();
        wait_for(
            "the database did not fail over",
            Duration::from_secs(30),
            &|| {
                running(Some(&lab_name))
                    .ok()
                    .and_then(|now| database::roles(&now.lab, &dbn).ok())
                    .is_some_and(|(p, _)| p.name != old)
            },
        )?;
        // Writes must flow again for a while after the failover.
        wait_for(
            "writes did not resume after the failover",
            Duration::from_secs(30),
            &|| acks(&lines).iter().filter(|(_, t)| *t > t0).count() >= 20,
        )?;
        Ok((t0, database::unix_now()))
    })();

    drop(child.stdin.take());
    let _ = child.wait();
    let _ = reader.join();
    stop_sampling.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    if let Trigger::Az(az) = &trigger {
        az::restore(&r.lab.name, Some(az)).context("bring the AZ back after the drill")?;
    }
    let (t0, t_end) = result?;

    let now = running(Some(&r.lab.name))?;
    let (primary_after, _) = database::roles(&now.lab, &db)?;
    let after = lookup(&now, &writer_node, &d.endpoint);
    let all_acks = acks(&lines);
    let errors: Vec<(f64, String)> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| match l {
            Line::Err(t, m) => Some((*t, m.clone())),
            _ => None,
        })
        .collect();

    // The outage: the longest pause between acknowledged writes around the trigger.
    let mut times: Vec<f64> = all_acks.iter().map(|a| a.1).collect();
    times.sort_by(f64::total_cmp);
    let (mut gap_from, mut gap_to) = (t0, t0);
    for w in times.windows(2) {
        if w[1] >= t0 - 0.5 && w[1] - w[0] > gap_to - gap_from {
            gap_from = w[0];
            gap_to = w[1];
        }
    }

    let present: BTreeSet<u64> = {
        let mut c = mariadb::admin(
            &database::paths(&dir, &primary_after.name),
            Duration::from_secs(5),
        )?;
        c.query::<u64, _>(format!(
            "SELECT seq FROM `{}`.{} WHERE run = {run_id}",
            d.database_name,
            writer::TABLE
        ))?
        .into_iter()
        .collect()
    };
    let acked: BTreeSet<u64> = all_acks.iter().map(|a| a.0).collect();
    let lost_seqs: Vec<u64> = acked.difference(&present).copied().collect();

    let events: Vec<Event> = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter(|e| e.database == db && e.at >= t0 - 0.05 && e.at <= t_end + 1.0)
        .collect();
    let mut timeline = vec![
        entry(
            t0,
            t0,
            match &trigger {
                Trigger::Reboot => format!("reboot {} with failover", primary_before.name),
                Trigger::Kill => format!("kill -9 mariadbd on {}", primary_before.name),
                Trigger::Az(az) => format!("{az} goes down"),
            },
        ),
        entry(
            t0,
            gap_from,
            "last acknowledged write before the outage".into(),
        ),
        entry(
            t0,
            gap_to,
            "first acknowledged write after the outage".into(),
        ),
    ];
    if let Some((t, m)) = errors.iter().find(|(t, _)| *t >= t0 - 0.05) {
        timeline.push(entry(t0, *t, format!("writer: first error: {m}")));
    }
    timeline.extend(events.iter().map(|e| entry(t0, e.at, e.message.clone())));
    timeline.sort_by(|a, b| a.at.total_cmp(&b.at));
    let s = samples.lock().unwrap();
    Ok(Report {
        lab: r.lab.name.clone(),
        database: db,
        trigger,
        writer: writer_node,
        rto_ms: ((gap_to - gap_from) * 1000.0).round() as u64,
        acked: acked.len(),
        present: acked.intersection(&present).count(),
        lost: lost_seqs.len(),
        lost_seqs,
        errors: errors.len(),
        before,
        after,
        primary_before: primary_before.name,
        primary_after: primary_after.name,
        writable_samples: s.0,
        two_writable: s.1,
        timeline,
    })
}

fn entry(t0: f64, at: f64, what: String) -> TimelineEntry {
    TimelineEntry {
        at,
        t_ms: ((at - t0) * 1000.0).round() as i64,
        what,
    }
}

pub fn render(r: &Report) -> String {
    let ip = |v: Option<Ipv4Addr>| v.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
    let mut o = format!(
        "Failover drill on `{}` ({}), writer on {}\n\n",
        r.database,
        match &r.trigger {
            Trigger::Reboot => "reboot with failover".to_string(),
            Trigger::Kill => "kill -9 of the primary".to_string(),
            Trigger::Az(az) => format!("outage of {az}"),
        },
        r.writer
    );
    o.push_str("timeline (ms after the trigger):\n");
    for e in &r.timeline {
        o.push_str(&format!(
            "  {}  {:>+7}  {}\n",
            database::fmt_time(e.at),
            e.t_ms,
            e.what
        ));
    }
    o.push_str(&format!(
        "\nRTO            {} ms (last acknowledged write before -> first after)\n",
        r.rto_ms
    ));
    o.push_str(&format!(
        "writes         {} acknowledged, {} present on the new primary, {} lost{}\n",
        r.acked,
        r.present,
        r.lost,
        if r.lost == 0 { "" } else { "  <-- LOST WRITES" }
    ));
    o.push_str(&format!(
        "errors         {} failed attempts while the endpoint moved\n",
        r.errors
    ));
    o.push_str(&format!(
        "endpoint       {} before, {} after (nslookup on {})\n",
        ip(r.before),
        ip(r.after),
        r.writer
    ));
    o.push_str(&format!(
        "primary        {} -> {}\n",
        r.primary_before, r.primary_after
    ));
    o.push_str(&format!(
        "writable       {} samples of both servers' read_only, {} with two writable{}\n",
        r.writable_samples,
        r.two_writable,
        if r.two_writable == 0 {
            ""
        } else {
            "  <-- SPLIT BRAIN"
        }
    ));
    o
}
