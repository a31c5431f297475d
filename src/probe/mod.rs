//! `vpclab probe`: every expectation of the lab checked with a real client (ssh, curl,
//! nslookup, ping, nc, mysql) run inside the source node, all in parallel.

mod target;

use crate::lab::{Running, hosts, state};
use crate::services::ssh;
use crate::topology::{Answer, Check, Expectation, Lab, NodeRef, Outcome};
use anyhow::Result;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
pub use target::{Target, resolve_target};

/// How long a client waits before calling a path blocked. Security groups drop
/// silently, so a blocked probe costs this much; all probes run at once.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub line: u64,
    pub from: String,
    pub to: String,
    /// The name or address the client used.
    pub target: String,
    pub kind: Check,
    pub expect: Outcome,
    /// What happened: `ok`, `blocked`, and what the client reported.
    pub observed: String,
    pub ok: bool,
    pub ms: u64,
    /// For http: the client address the far end saw (NAT checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_as: Option<Ipv4Addr>,
    /// For dns: the address the name resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Ipv4Addr>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub lab: String,
    pub probes: Vec<ProbeResult>,
    pub passed: usize,
    pub failed: usize,
    pub ms: u64,
}

pub fn run_all(r: &Running) -> Result<Report> {
    let started = Instant::now();
    let dir = state::dir(&r.lab.name);
    hosts::write_known_hosts(&r.lab, &r.plan, &dir)?;
    let probes: Vec<ProbeResult> = std::thread::scope(|s| {
        let jobs: Vec<_> = r
            .lab
            .expectations
            .iter()
            .map(|e| s.spawn(|| run_one(r, &dir, e)))
            .collect();
        jobs.into_iter()
            .zip(&r.lab.expectations)
            .map(|(j, e)| {
                j.join()
                    .unwrap_or_else(|_| failed(e, "the probe thread panicked".into()))
            })
            .collect()
    });
    let passed = probes.iter().filter(|p| p.ok).count();
    Ok(Report {
        lab: r.lab.name.clone(),
        failed: probes.len() - passed,
        passed,
        probes,
        ms: started.elapsed().as_millis() as u64,
    })
}

fn failed(e: &Expectation, why: String) -> ProbeResult {
    ProbeResult {
        line: e.line,
        from: e.from.clone(),
        to: e.to.clone(),
        target: String::new(),
        kind: e.check,
        expect: e.result,
        observed: why,
        ok: false,
        ms: 0,
        seen_as: None,
        answer: None,
    }
}

/// What a client run amounted to.
struct Observed {
    reached: bool,
    detail: String,
    seen_as: Option<Ipv4Addr>,
    answer: Option<Ipv4Addr>,
}

fn run_one(r: &Running, dir: &Path, e: &Expectation) -> ProbeResult {
    let t = Instant::now();
    let target = match resolve_target(&r.lab, e) {
        Ok(t) => t,
        Err(err) => return failed(e, format!("{err:#}")),
    };
    // A source that is down runs nothing; a target that is down says why it is silent.
    let obs = if let Some(why) = down_reason(r, &e.from) {
        Observed {
            reached: false,
            detail: format!("{} is down: {why}", e.from),
            seen_as: None,
            answer: None,
        }
    } else {
        match observe(r, dir, e, &target) {
            Ok(mut o) => {
                if let (false, Some(why)) = (o.reached, down_reason(r, &e.to)) {
                    o.detail = format!("{} is down: {why}", e.to);
                }
                o
            }
            Err(err) => return failed(e, format!("{err:#}")),
        }
    };
    let mut ok = match e.result {
        Outcome::Ok => obs.reached,
        Outcome::Blocked => !obs.reached,
    };
    let mut observed = if obs.reached {
        "ok".to_string()
    } else {
        "blocked".to_string()
    };
    if !obs.detail.is_empty() {
        observed.push_str(&format!(" ({})", obs.detail));
    }
    if let (Some(want), true) = (
        e.seen_as.as_deref().and_then(|n| r.lab.address_seen_as(n)),
        obs.reached,
    ) && obs.seen_as != Some(want)
    {
        ok = false;
        observed.push_str(&format!(", but the far end should have seen {want}"));
    }
    if e.check == Check::Dns && obs.reached {
        let want = expected_answer(&r.lab, e);
        if want.is_some() && obs.answer != want {
            ok = false;
            if let Some(w) = want {
                observed.push_str(&format!(", expected {w}"));
            }
        }
    }
    ProbeResult {
        line: e.line,
        from: e.from.clone(),
        to: e.to.clone(),
        target: target.display(),
        kind: e.check,
        expect: e.result,
        observed,
        ok,
        ms: t.elapsed().as_millis() as u64,
        seen_as: obs.seen_as,
        answer: obs.answer,
    }
}

/// Why a node can't answer or send now: stopped, or its availability zone is down.
fn down_reason(r: &Running, node: &str) -> Option<String> {
    if r.state.runtime.stopped.contains(node) {
        return Some("stopped".into());
    }
    let az = r.plan.netns(node)?.az.as_ref()?;
    r.state
        .runtime
        .azs_down
        .contains(az)
        .then(|| format!("{az} is down"))
}

/// The address a dns check must get back.
fn expected_answer(lab: &Lab, e: &Expectation) -> Option<Ipv4Addr> {
    let answer = e.answer.as_ref()?;
    let node = lab.find(&e.to);
    match (answer, node) {
        (Answer::Address(ip), _) => Some(*ip),
        (Answer::Private, Some(NodeRef::Instance(i))) => Some(i.private_ip),
        (Answer::Public, Some(NodeRef::Instance(i))) => i.public_ip.address(),
        (Answer::Primary | Answer::Private, Some(NodeRef::Database(d))) => {
            Some(d.primary.private_ip)
        }
        (Answer::Public, Some(NodeRef::Database(d))) => d.primary.public_ip,
        (Answer::Private, Some(NodeRef::Internet(h)))
        | (Answer::Public, Some(NodeRef::Internet(h))) => Some(h.ip),
        _ => None,
    }
}

/// Runs a client inside `node` with a deadline, output captured.
pub fn client(r: &Running, dir: &Path, node: &str, argv: &[String]) -> Result<Output> {
    let env = hosts::env(&r.plan, dir, node, hosts::live_template(&r.state))?;
    let mut cmd: Command = env.command("timeout")?;
    // `timeout` backs the clients' own timeouts: nothing may hang the suite.
    cmd.arg("-k")
        .arg("1")
        .arg(format!("{}", TIMEOUT.as_secs() + 2))
        .args(argv)
        .stdin(Stdio::null());
    Ok(cmd.output()?)
}

/// Why a client failed, in a few words (the full message is in `--json`'s detail).
fn why(o: &Output) -> String {
    let text = last_line(o);
    let l = text.to_lowercase();
    let short = if o.status.code() == Some(124) || l.contains("timed out") || l.contains("(110)") {
        "timed out"
    } else if l.contains("unreachable")
        || l.contains("no route")
        || l.contains("(101)")
        || l.contains("(113)")
        // The MariaDB client reports an asynchronous connect that an ICMP "unreachable"
        // ended as EINPROGRESS.
        || l.contains("(115)")
    {
        "no route"
    } else if l.contains("refused") || l.contains("(111)") {
        "connection refused"
    } else if l.contains("denied") || l.contains("locked") {
        "access denied"
    } else if l.contains("nxdomain") || l.contains("can't find") || l.contains("could not resolve")
    {
        "name not found"
    } else {
        return text.chars().take(60).collect();
    };
    short.to_string()
}

fn last_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    err.lines()
        .chain(out.lines())
        .rfind(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn observe(r: &Running, dir: &Path, e: &Expectation, t: &Target) -> Result<Observed> {
    let secs = format!("{:.1}", TIMEOUT.as_secs_f64());
    let host = t.host.clone();
    let s = |v: &str| v.to_string();
    let plain = |o: Output| Observed {
        reached: o.status.success(),
        detail: if o.status.success() {
            String::new()
        } else {
            why(&o)
        },
        seen_as: None,
        answer: None,
    };
    Ok(match e.check {
        Check::Ssh => {
            let key = t
                .key_pair
                .as_deref()
                .map(|k| ssh::key_path(dir, k))
                .unwrap_or_else(|| dir.join("keys/none.pem"));
            let argv =
                ssh::client_args(&key, &ssh::known_hosts_path(dir), TIMEOUT, &host, &["true"]);
            plain(client(r, dir, &e.from, &argv)?)
        }
        Check::Http | Check::Https => {
            let scheme = if e.check == Check::Https {
                "https"
            } else {
                "http"
            };
            let argv = vec![
                s("curl"),
                s("-sS"),
                s("-k"),
                s("--connect-timeout"),
                secs.clone(),
                s("-m"),
                secs,
                format!("{scheme}://{host}/ip"),
            ];
            let o = client(r, dir, &e.from, &argv)?;
            let mut obs = plain(o.clone());
            if o.status.success() {
                let body = String::from_utf8_lossy(&o.stdout);
                obs.seen_as = body.trim().parse().ok();
                if let Some(ip) = obs.seen_as {
                    obs.detail = format!("seen as {ip}");
                }
            }
            obs
        }
        Check::Dns => {
            let o = client(
                r,
                dir,
                &e.from,
                &[s("nslookup"), s("-timeout=1"), host.clone()],
            )?;
            let text = String::from_utf8_lossy(&o.stdout);
            let answer = parse_nslookup(&text);
            Observed {
                reached: o.status.success() && answer.is_some(),
                detail: match answer {
                    Some(a) => format!("-> {a}"),
                    None => why(&o),
                },
                seen_as: None,
                answer,
            }
        }
        Check::Ping => plain(client(
            r,
            dir,
            &e.from,
            &[s("ping"), s("-c1"), s("-W1"), host.clone()],
        )?),
        Check::Tcp => {
            let port = e.port.unwrap_or(0).to_string();
            let argv = vec![s("nc"), s("-zv"), s("-w"), s("1"), host.clone(), port];
            plain(client(r, dir, &e.from, &argv)?)
        }
        Check::Mysql => {
            let argv = crate::services::mysql_probe_args(dir, &r.lab, &e.to, &host)?;
            plain(client(r, dir, &e.from, &argv)?)
        }
    })
}

/// The last address of nslookup's answer (the server's own, `Address: 10.0.0.2#53`,
/// carries a port and is skipped).
pub fn parse_nslookup(out: &str) -> Option<Ipv4Addr> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(str::trim)
        .filter(|a| !a.contains('#'))
        .filter_map(|a| a.parse().ok())
        .next_back()
}

pub fn render(rep: &Report) -> String {
    let mut o = format!(
        "{:<4} {:<12} {:<14} {:<6} {:<8} {:<34} {:>6}\n",
        "", "FROM", "TO", "CHECK", "EXPECT", "OBSERVED", "TIME"
    );
    for p in &rep.probes {
        o.push_str(&format!(
            "{:<4} {:<12} {:<14} {:<6} {:<8} {:<34} {:>4}ms\n",
            if p.ok { "ok" } else { "FAIL" },
            p.from,
            p.to,
            p.kind.as_str(),
            match p.expect {
                Outcome::Ok => "ok",
                Outcome::Blocked => "blocked",
            },
            p.observed,
            p.ms
        ));
    }
    o.push_str(&format!(
        "\n{} passed, {} failed ({} probes in {:.2} s)\n",
        rep.passed,
        rep.failed,
        rep.probes.len(),
        rep.ms as f64 / 1000.0
    ));
    for p in rep.probes.iter().filter(|p| !p.ok) {
        o.push_str(&format!(
            "FAILED: line {}: {} -> {} {} expected {}, observed {}\n",
            p.line,
            p.from,
            p.to,
            p.kind.as_str(),
            match p.expect {
                Outcome::Ok => "ok",
                Outcome::Blocked => "blocked",
            },
            p.observed
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nslookup_answers_are_parsed_after_the_server_address() {
        let out = "Server:\t\t10.0.0.2\nAddress:\t10.0.0.2#53\n\nNon-authoritative answer:\nmy-database.c1.ap-northeast-2.rds.amazonaws.com\tcanonical name = ip-10-0-3-87.ap-northeast-2.compute.internal.\nName:\tip-10-0-3-87.ap-northeast-2.compute.internal\nAddress: 10.0.3.87\n";
        assert_eq!(parse_nslookup(out), Some("10.0.3.87".parse().unwrap()));
        let nx =
            "Server:\t\t10.0.0.2\nAddress:\t10.0.0.2#53\n\n** server can't find nope: NXDOMAIN\n";
        assert_eq!(parse_nslookup(nx), None);
        let plain = "Server:\t\t192.0.2.53\nAddress:\t192.0.2.53#53\n\nName:\tec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com\nAddress: 198.51.100.10\n";
        assert_eq!(
            parse_nslookup(plain),
            Some("198.51.100.10".parse().unwrap())
        );
    }
}
