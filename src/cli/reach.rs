use crate::analyze::matrix::{self, Matrix};
use crate::analyze::reach::{self, Analysis, Down, Query};
use crate::lab::{self, up::require_root};
use crate::plan::Plan;
use crate::topology::Lab;
use crate::trace::{self, send::Proto};
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  vpclab reach stranger web --port 22                (blocked: ENI_SG_RULES_MISMATCH)\n  vpclab reach app example-web --port 80 --file labs/handson.yaml   (through the NAT gateway)\n  vpclab reach --all --file labs/public-db.yaml      (the whole matrix, before `up`)\n  sudo vpclab reach --all --verify                   (and prove it with real packets)\n\nWithout --file, the running lab is analysed (the only one, or --lab NAME), with what\n`stop` and `drill az` changed; with no lab up, the built-in lab. Exit status: 0 reachable,\n2 not reachable, 1 when the analysis and the packets disagree (a bug)."
)]
pub struct Args {
    /// The node that sends: an instance, a database, an internet host, an Elastic IP or an address
    #[arg(required_unless_present = "all")]
    from: Option<String>,
    /// The destination: a node, a database, a NAT gateway, an Elastic IP, a DNS name or an address
    #[arg(required_unless_present = "all")]
    to: Option<String>,
    /// Destination port (TCP and UDP)
    #[arg(long, short)]
    port: Option<u16>,
    /// Protocol; tcp when a port is given, icmp (ping) otherwise
    #[arg(long, value_enum)]
    proto: Option<Proto>,
    /// Analyse this lab file (no root, nothing running)
    #[arg(long, conflicts_with = "lab")]
    file: Option<PathBuf>,
    /// Analyse this running lab
    #[arg(long)]
    lab: Option<String>,
    /// Every source against every destination on the ports the lab's services and rules use
    #[arg(long, conflicts_with_all = ["from", "to", "port", "proto"])]
    all: bool,
    /// Send the real packet (with `trace`) and check that it agrees (root, lab up)
    #[arg(long, conflicts_with = "file")]
    verify: bool,
    /// With --verify: how long to wait for an answer, in milliseconds
    #[arg(long, default_value_t = 500, value_name = "MS")]
    timeout: u64,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// The lab analysed, and what it needs to be verified.
struct Subject {
    lab: Lab,
    plan: Plan,
    down: Down,
    running: Option<lab::Running>,
}

fn subject(a: &Args) -> Result<Option<Subject>> {
    let use_running = a.file.is_none() && (a.lab.is_some() || !lab::state::labs().is_empty());
    if use_running {
        let r = lab::running(a.lab.as_deref())?;
        let down = reach::down_nodes(&r.plan, &r.state.runtime.stopped, &r.state.runtime.azs_down);
        return Ok(Some(Subject {
            lab: r.lab.clone(),
            plan: r.plan.clone(),
            down,
            running: Some(r),
        }));
    }
    let Some(loaded) = super::load_lab(a.file.as_deref(), None)? else {
        return Ok(None);
    };
    let plan = crate::plan::compile(&loaded.lab);
    Ok(Some(Subject {
        lab: loaded.lab,
        plan,
        down: Down::new(),
        running: None,
    }))
}

/// What the packets said, next to the analysis.
#[derive(Serialize)]
struct Checked {
    #[serde(flatten)]
    analysis: Analysis,
    /// Whether the packets agree with the analysis (`null` without --verify).
    verified: Option<bool>,
    /// Where the trace saw the packet stop, when it did.
    packets: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.verify {
        require_root("reach --verify")?;
    }
    let Some(s) = subject(&a)? else {
        return Ok(ExitCode::FAILURE);
    };
    if a.verify && s.running.is_none() {
        bail!("--verify sends real packets: the lab must be up\n  hint: `sudo vpclab up` first");
    }
    if a.all {
        return all(&a, &s);
    }
    let proto = a.proto.unwrap_or(if a.port.is_some() {
        Proto::Tcp
    } else {
        Proto::Icmp
    });
    let q = Query {
        from: a.from.clone().expect("clap requires FROM"),
        to: a.to.clone().expect("clap requires TO"),
        proto,
        port: a.port,
    };
    let analysis = reach::analyze(&s.lab, &s.plan, &s.down, &q)?;
    let (verified, packets) = match &s.running {
        Some(r) if a.verify => {
            let (agree, packets) = verify(r, &s.lab, &analysis, a.timeout)?;
            (Some(agree), packets)
        }
        _ => (None, None),
    };
    let checked = Checked {
        analysis,
        verified,
        packets,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
    } else {
        print!("{}", render(&s.lab.name, &checked));
    }
    Ok(match (checked.verified, checked.analysis.reachable) {
        (Some(false), _) => ExitCode::FAILURE,
        (_, true) => ExitCode::SUCCESS,
        (_, false) => ExitCode::from(2),
    })
}

/// Sends the packet the analysis describes and says whether it agrees, with where the
/// trace saw it stop.
fn verify(
    r: &lab::Running,
    lab: &Lab,
    a: &Analysis,
    timeout: u64,
) -> Result<(bool, Option<String>)> {
    let opts = trace::Options {
        from: a.from.clone(),
        to: reach::target_spec(lab, &a.to),
        proto: a.proto,
        port: a.port,
        pcap: None,
        timeout: Duration::from_millis(timeout),
        hold: false,
        listener: true,
    };
    let (report, _) = trace::run(r, &opts)?;
    let packets = report
        .stopped
        .as_ref()
        .map(|s| format!("stopped at {}: {}", s.node, s.reason));
    Ok((report.reachable == a.reachable, packets))
}

fn render(lab: &str, c: &Checked) -> String {
    let a = &c.analysis;
    let what = match a.port {
        Some(p) => format!("{} {p}", a.proto.as_str()),
        None => a.proto.as_str().to_string(),
    };
    let mut s = format!(
        "{} -> {} ({}) {what}, lab {lab}: {}\n",
        a.from,
        a.to,
        a.destination,
        if a.reachable {
            "reachable".to_string()
        } else {
            format!("NOT reachable ({})", a.code.map_or("", |c| c.as_str()))
        }
    );
    for (i, p) in a.path.iter().enumerate() {
        let kind = p.kind();
        let id = if p.id.is_empty() || p.id == p.name {
            p.name.clone()
        } else {
            format!("{} {}", p.id, p.name)
        };
        s += &format!("  {:>2}. {kind:<26} {id}\n", i + 1);
        if let Some(d) = &p.detail {
            s += &format!("      {:<26} {d}\n", "");
        }
        if let Some(r) = &p.rule {
            s += &format!("      {:<26} {r}\n", "");
        }
    }
    if let (Some(code), Some(why)) = (a.code, &a.explanation) {
        s += &format!(
            "blocked at {} ({}): {why}\n",
            a.blocked_at.as_deref().unwrap_or("?"),
            code.as_str()
        );
    }
    for n in &a.notes {
        s += &format!("note: {n}\n");
    }
    match c.verified {
        Some(true) => s += "verified: the real packet agrees\n",
        Some(false) => {
            s += &format!(
                "BUG: the real packet disagrees: it {} ({})\n",
                if a.reachable {
                    "did not get through"
                } else {
                    "got through"
                },
                c.packets.as_deref().unwrap_or("no trace detail")
            );
        }
        None => {}
    }
    s
}

#[derive(Serialize)]
struct AllChecked<'m> {
    #[serde(flatten)]
    matrix: &'m Matrix,
    /// Per row, per probe: whether the packets agreed (empty without --verify).
    verified: Vec<Vec<bool>>,
    agree: Option<usize>,
    total: usize,
}

fn all(a: &Args, s: &Subject) -> Result<ExitCode> {
    let m = matrix::all(&s.lab, &s.plan, &s.down)?;
    let mut verified = Vec::new();
    if let (true, Some(r)) = (a.verify, &s.running) {
        for row in &m.rows {
            let mut v = Vec::new();
            for cell in &row.cells {
                let (agree, packets) = verify(r, &s.lab, cell, a.timeout)?;
                if !agree {
                    eprintln!(
                        "BUG: {} -> {} {}: the analysis says {}, the packet {}",
                        cell.from,
                        cell.to,
                        cell.port
                            .map_or(cell.proto.as_str().to_string(), |p| format!(
                                "{} {p}",
                                cell.proto.as_str()
                            )),
                        matrix::tag(cell.code),
                        packets.as_deref().unwrap_or("got through")
                    );
                }
                v.push(agree);
            }
            verified.push(v);
        }
    }
    let total: usize = m.rows.iter().map(|r| r.cells.len()).sum();
    let agree = a
        .verify
        .then(|| verified.iter().flatten().filter(|v| **v).count());
    let out = AllChecked {
        matrix: &m,
        verified,
        agree,
        total,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_all(&out));
    }
    Ok(match agree {
        Some(n) if n != total => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

fn render_all(out: &AllChecked) -> String {
    let m = out.matrix;
    let from_w = m
        .rows
        .iter()
        .map(|r| r.from.label().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let to_w = m
        .rows
        .iter()
        .map(|r| r.to.label().len())
        .max()
        .unwrap_or(2)
        .max(2);
    let cell_w = |i: usize| {
        m.rows
            .iter()
            .map(|r| matrix::tag(r.cells[i].code).len() + 1)
            .chain([m.probes[i].label().len()])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..m.probes.len()).map(cell_w).collect();
    let mut s = format!("{:<from_w$}  {:<to_w$}", "FROM", "TO");
    for (p, w) in m.probes.iter().zip(&widths) {
        s += &format!("  {:<w$}", p.label());
    }
    if out.agree.is_some() {
        s += "  AGREE";
    }
    s += "\n";
    let mut codes = std::collections::BTreeSet::new();
    for (ri, r) in m.rows.iter().enumerate() {
        s += &format!("{:<from_w$}  {:<to_w$}", r.from.label(), r.to.label());
        for (ci, (cell, w)) in r.cells.iter().zip(&widths).enumerate() {
            let agreed = out.verified.get(ri).and_then(|v| v.get(ci)).copied();
            let mark = if agreed == Some(false) { "!" } else { "" };
            s += &format!("  {:<w$}", format!("{}{mark}", matrix::tag(cell.code)));
            codes.extend(cell.code);
        }
        if let Some(v) = out.verified.get(ri) {
            s += &format!("  {}/{}", v.iter().filter(|a| **a).count(), v.len());
        }
        s += "\n";
    }
    for c in codes {
        s += &format!("  {:<14} {}\n", matrix::tag(Some(c)), c.as_str());
    }
    let reachable = m
        .rows
        .iter()
        .flat_map(|r| &r.cells)
        .filter(|c| c.reachable)
        .count();
    s += &format!(
        "{} pairs x {} ports: {reachable} of {} reachable\n",
        m.rows.len(),
        m.probes.len(),
        out.total
    );
    if let Some(n) = out.agree {
        s += &format!(
            "agreement with real packets: {n}/{} ({:.0}%){}\n",
            out.total,
            100.0 * n as f64 / out.total.max(1) as f64,
            if n == out.total {
                ""
            } else {
                "  BUG: every disagreement is printed above"
            }
        );
    }
    s
}
