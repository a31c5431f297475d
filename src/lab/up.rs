//! Bringing a lab up: state first, then the fabric step by step, then host files.
//! A failure at any step rolls back everything made so far and names the step.

use super::down;
use super::hosts;
use super::progress::{Progress, grouped};
use super::state::{self, Phase, State};
use super::{database, supervisor};
use crate::kernel::apply::{Applier, Step};
use crate::plan::{self, Plan};
use crate::services;
use crate::topology::Loaded;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Test hook: `VPCLAB_FAULT=fail:STEP` makes `up` fail at checkpoint STEP (to test
/// rollback), `kill:STEP` makes it SIGKILL itself there (to test crash recovery).
/// Checkpoints: `state`, each apply step, `namespace:N` after the Nth namespace,
/// `host-files`, `ready`.
pub const FAULT_ENV: &str = "VPCLAB_FAULT";

pub struct Options {
    /// Start services, databases and the supervisor (off: the network only).
    pub services: bool,
    /// Start the database servers (off: their namespaces exist, MariaDB doesn't run).
    pub databases: bool,
    pub health_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            services: true,
            databases: true,
            health_interval_ms: state::DEFAULT_HEALTH_INTERVAL_MS,
        }
    }
}

pub struct Outcome {
    pub plan: Plan,
    pub seconds: f64,
}

pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`vpclab {what}` needs root: it creates network namespaces, links and nftables rules.\n  hint: run it with sudo (sudo vpclab {what} ...)"
        );
    }
    Ok(())
}

pub(crate) fn checkpoint(name: &str) -> Result<()> {
    let Ok(fault) = std::env::var(FAULT_ENV) else {
        return Ok(());
    };
    match fault.split_once(':') {
        Some(("fail", at)) if at == name => Err(anyhow!("injected failure ({FAULT_ENV}={fault})")),
        Some(("kill", at)) if at == name => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            unreachable!("SIGKILL can't be caught");
        }
        _ => Ok(()),
    }
}

pub fn up(loaded: &Loaded, opts: &Options, progress: &mut Progress) -> Result<Outcome> {
    require_root("up")?;
    let lab = &loaded.lab;
    let plan = plan::compile(lab);
    let started = Instant::now();

    std::fs::create_dir_all(state::STATE_ROOT)
        .with_context(|| format!("create {}", state::STATE_ROOT))?;
    let dir = state::dir(&lab.name);
    // Creating the state dir is the lock: two `up`s of one lab can't both get here.
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            let hint = match State::load(&lab.name).ok().flatten() {
                Some(s) if s.phase == Phase::Up => "it is already up".to_string(),
                _ => "a previous `up` of it did not finish".to_string(),
            };
            bail!(
                "lab `{}` exists: {hint}.\n  hint: `sudo vpclab status {0}` shows it; `sudo vpclab down {0}` removes it; `--name NAME` starts a second copy",
                lab.name
            );
        }
        return Err(e).with_context(|| format!("create {}", dir.display()));
    }
    let leftovers = down::lab_namespaces(&lab.name, None);
    if !leftovers.is_empty() {
        let _ = std::fs::remove_dir(&dir);
        bail!(
            "namespaces of a lab named `{}` already exist ({}), left by an earlier run.\n  hint: `sudo vpclab down {0}` removes them",
            lab.name,
            leftovers.join(", ")
        );
    }

    let result = (|| -> Result<()> {
        let st = State {
            lab: lab.name.clone(),
            source: loaded.source.label(),
            yaml: loaded.text.clone(),
            phase: Phase::Creating,
            created: state::now(),
            namespaces: plan.namespaces.iter().map(|n| n.name.clone()).collect(),
            processes: vec![],
            runtime: state::Runtime {
                health_interval_ms: opts.health_interval_ms,
                databases_off: !opts.databases,
                ..Default::default()
            },
            applying: false,
            allocations: crate::topology::Allocations::of(lab),
        };
        st.save()?;
        checkpoint("state")?;
        let account = services::users_account(&dir)?;
        hosts::write_shared_files(&dir, account)?;
        checkpoint("host-files")?;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?;
        rt.block_on(async {
            let namespace_fault = |i: usize| checkpoint(&format!("namespace:{i}"));
            let step_fault = |step: Step| checkpoint(step.name());
            let mut applier = Applier::new(&plan, rt.handle().clone())
                .on_namespace(&namespace_fault)
                .before_step(&step_fault);
            for step in Step::ALL {
                let t = Instant::now();
                progress.start(step.name());
                applier.step(step).await?;
                progress.done(step.name(), &step_summary(&plan, step), t.elapsed());
            }
            Ok::<(), anyhow::Error>(())
        })?;
        let mut st = st;
        if !opts.services {
            checkpoint("ready")?;
            st.phase = Phase::Up;
            return st.save();
        }
        start_services(lab, &plan, &dir, &mut st, progress)?;
        if opts.databases && !lab.databases.is_empty() {
            checkpoint("database")?;
            let t = Instant::now();
            progress.start("database");
            database::bring_up(lab, &plan, &dir, &mut st)?;
            let what: Vec<String> = lab
                .databases
                .iter()
                .map(|d| match &d.standby {
                    Some(s) => format!(
                        "{} (primary {}, standby {} replicating)",
                        d.name, d.primary.name, s.name
                    ),
                    None => format!("{} ({})", d.name, d.primary.name),
                })
                .collect();
            progress.done("database", &what.join(", "), t.elapsed());
        }
        checkpoint("supervisor")?;
        let t = Instant::now();
        progress.start("supervisor");
        let sup = supervisor::start(&lab.name)?;
        let standby = sup
            .standby
            .map(|p| format!(" (standby pid {})", p.pid))
            .unwrap_or_default();
        progress.done(
            "supervisor",
            &format!(
                "pid {}{standby}: VPC and internet DNS, instance metadata",
                sup.serving.pid
            ),
            t.elapsed(),
        );
        checkpoint("ready")?;
        // Under the lock: the supervisor records a new standby whenever one exits.
        State::modify(&lab.name, |st| {
            st.phase = Phase::Up;
            Ok(())
        })?;
        Ok(())
    })();

    if let Err(e) = result {
        progress.fail();
        let r = down::down(&lab.name);
        let mut msg = format!("{e:#}");
        msg.push_str(&format!(
            "\nrolled back: removed {} namespace{} and {} process{} of lab `{}`",
            r.namespaces,
            if r.namespaces == 1 { "" } else { "s" },
            r.processes,
            if r.processes == 1 { "" } else { "es" },
            lab.name
        ));
        for f in r.failures {
            msg.push_str(&format!("\nrollback problem: {f}"));
        }
        bail!(msg);
    }
    Ok(Outcome {
        plan,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Key pairs, then every host's services in parallel; started processes are recorded in
/// the state file in batches as they start, and `down` finds any a crash left unrecorded
/// in the lab's namespaces.
fn start_services(
    lab: &crate::topology::Lab,
    plan: &Plan,
    dir: &std::path::Path,
    st: &mut State,
    progress: &mut Progress,
) -> Result<()> {
    let t = Instant::now();
    progress.start("services");
    let keys = services::key_pairs(lab, dir)?;
    checkpoint("services")?;
    let started = if plan.hosts.iter().any(|h| !h.services.is_empty()) {
        let template = hosts::ensure_template(plan, st)?;
        st.save()?;
        let s = hosts::start_services(lab, plan, dir, &|_| true, &[], &template, &mut |ps| {
            st.processes.extend_from_slice(ps);
            st.save()
        })?;
        // Where the time went, once there is some to speak of.
        let phases = if t.elapsed() >= Duration::from_secs(1) {
            format!(
                "; files {:.1} s, start {:.1} s, listening {:.1} s",
                s.files.as_secs_f64(),
                s.start.as_secs_f64(),
                s.ready.as_secs_f64()
            )
        } else {
            String::new()
        };
        (s.specs, phases)
    } else {
        (Vec::new(), String::new())
    };
    let (started, phases) = started;
    progress.done(
        "services",
        &format!(
            "{} key pair{}, {}{phases}",
            keys.len(),
            if keys.len() == 1 { "" } else { "s" },
            services_summary(&started)
        ),
        t.elapsed(),
    );
    Ok(())
}

/// What the services step started, in one line: each program by name on a small lab,
/// counts per program on a large one (the per-host list is in `status`).
fn services_summary(started: &[services::Spec]) -> String {
    const LISTED: usize = 8;
    if started.is_empty() {
        return "no services".into();
    }
    if started.len() <= LISTED {
        let what: Vec<String> = started
            .iter()
            .map(|s| format!("{} on {}", s.what, s.node))
            .collect();
        return what.join(", ");
    }
    let mut per_program: BTreeMap<&str, usize> = BTreeMap::new();
    for s in started {
        *per_program.entry(s.what).or_default() += 1;
    }
    let nodes: BTreeSet<&str> = started.iter().map(|s| s.node.as_str()).collect();
    let counts: Vec<String> = per_program
        .iter()
        .map(|(what, n)| format!("{} {what}", grouped(*n as u64)))
        .collect();
    format!(
        "{} services on {} hosts: {}",
        grouped(started.len() as u64),
        grouped(nodes.len() as u64),
        counts.join(", ")
    )
}

fn step_summary(plan: &Plan, step: Step) -> String {
    let count = |f: fn(&crate::plan::Netns) -> usize| plan.namespaces.iter().map(f).sum::<usize>();
    match step {
        Step::Namespaces => format!(
            "{} namespaces, {} nftables rulesets",
            plan.namespaces.len(),
            plan.namespaces
                .iter()
                .filter(|n| n.firewall.is_some())
                .count()
        ),
        Step::Links => format!(
            "{} bridges, {} veth pairs",
            count(|n| n.bridges.len()),
            plan.veths.len()
        ),
        Step::Addresses => format!("{} addresses, all links up", count(|n| n.addresses.len())),
        Step::Routes => format!(
            "{} routes, {} policy rules",
            count(|n| n.routes.len()),
            count(|n| n.rules.len())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(node: &str, what: &'static str) -> services::Spec {
        services::Spec {
            node: node.into(),
            what,
            program: String::new(),
            args: vec![],
            ports: vec![],
            dir: "/nonexistent".into(),
        }
    }

    #[test]
    fn a_few_services_are_named_one_by_one() {
        let s = [spec("web", "sshd"), spec("web", "nginx")];
        assert_eq!(services_summary(&s), "sshd on web, nginx on web");
        assert_eq!(services_summary(&[]), "no services");
    }

    #[test]
    fn many_services_are_counted_per_program() {
        let s: Vec<services::Spec> = (0..1000)
            .flat_map(|i| {
                let node = format!("app{i:04}");
                [spec(&node, "sshd"), spec(&node, "nginx")]
            })
            .chain([spec("example-web", "nginx")])
            .collect();
        assert_eq!(
            services_summary(&s),
            "2,001 services on 1,001 hosts: 1,001 nginx, 1,000 sshd"
        );
    }
}
