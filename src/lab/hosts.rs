//! Each host's own files, kept in the lab's state dir (`hosts/<node>/`) and mounted over
//! the host's copies inside the node's private mount namespace:
//!
//! | in the state dir      | inside the node                                    |
//! |-----------------------|----------------------------------------------------|
//! | `etc/resolv.conf` ... | /etc/resolv.conf, hosts, hostname                  |
//! | `../../etc/passwd` ...| /etc/passwd, group, shadow (one copy for the lab)  |
//! | `home/`               | /home (ec2-user's home)                            |
//! | `log/`                | /var/log (sshd's login records stay in the lab)    |
//! | `tmp/`                | /tmp                                               |
//! | the folder itself     | the same path, in a fresh /run with /run/sshd      |

use crate::kernel::enter::{HostEnv, PrivateRun};
use crate::kernel::mount_template;
use crate::kernel::process::Proc;
use crate::lab::state::State;
use crate::plan::{Host, Plan};
use crate::services::{
    self,
    users::{self, Account},
};
use crate::topology::well_known::ROUTER;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn host_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("hosts").join(node)
}

/// Files of each host's own, and files every host of the lab shares (`<state>/etc/`).
const HOST_FILES: [&str; 3] = ["resolv.conf", "hosts", "hostname"];
const ACCOUNT_FILES: [&str; 3] = ["passwd", "group", "shadow"];

/// Writes the files every host shares. `account` is ec2-user's uid/gid on this machine.
pub fn write_shared_files(state_dir: &Path, account: Account) -> Result<()> {
    // Every host sees the lab's key folder (see `env`), even when it holds no key yet.
    std::fs::create_dir_all(state_dir.join("keys"))?;
    // The accounts (the host's plus ec2-user) are the same on every host: one copy.
    let shared = state_dir.join("etc");
    std::fs::create_dir_all(&shared)?;
    users::write_account_files(&shared, &users::account_files(account)?)?;
    Ok(())
}

/// A host's own files, written the first time something runs on it (a lab of 1,000
/// instances that only routes packets never needs 1,000 folders).
fn ensure_host(h: &Host, dir: &Path) -> Result<()> {
    if dir.join("etc").join("hostname").exists() {
        return Ok(());
    }
    write_host(h, dir).with_context(|| format!("prepare the files of {}", h.node))
}

/// Writes a host's own files (resolv.conf, hosts, hostname) again: an edit changed them.
/// Bind mounts keep pointing at the same files, so the host sees the new content at once.
pub fn rewrite_host_files(h: &Host, state_dir: &Path) -> Result<()> {
    let dir = host_dir(state_dir, &h.node);
    if !dir.join("etc").join("hostname").exists() {
        // Never used yet: it gets its files when something first runs on it.
        return Ok(());
    }
    write_host(h, &dir).with_context(|| format!("rewrite the files of {}", h.node))
}

fn write_host(h: &Host, dir: &Path) -> Result<()> {
    let etc = dir.join("etc");
    for sub in ["etc", "home", "log", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    for (name, content) in [
        ("resolv.conf", h.resolv_conf()),
        ("hosts", h.hosts_file()),
        ("hostname", format!("{}\n", h.hostname)),
    ] {
        std::fs::write(etc.join(name), content)
            .with_context(|| format!("write {}/{name}", etc.display()))?;
    }
    Ok(())
}

/// How many started programs are recorded at once: the state file is rewritten once a
/// batch, not once a program (a lab of 1,000 instances starts 2,000), and a crash leaves at
/// most a batch unrecorded, which `down` still finds in the lab's namespaces.
const RECORD_BATCH: usize = 64;

/// Prepares and starts the services of the nodes `which` picks, handing the processes to
/// `record` (the state file) in batches as they start, then waits until all of them listen.
/// Each starts from the lab's mount `template` (see [`ensure_template`]).
///
/// `running` lists the programs (node, program) that already run and are left alone: an
/// edit that adds https to a host running sshd restarts nginx only.
pub fn start_services(
    lab: &crate::topology::Lab,
    plan: &Plan,
    state_dir: &Path,
    which: &dyn Fn(&str) -> bool,
    running: &[(String, String)],
    template: &Proc,
    record: &mut dyn FnMut(&[Proc]) -> Result<()>,
) -> Result<Started> {
    let t = Instant::now();
    let specs: Vec<services::Spec> = prepare(lab, plan, state_dir, which)?
        .into_iter()
        .filter(|s| !running.contains(&(s.node.clone(), s.what.to_string())))
        .collect();
    let files = t.elapsed();
    let t = Instant::now();
    let started = start_all(plan, state_dir, template, specs, record)?;
    let start = t.elapsed();
    let t = Instant::now();
    services::wait_ready(&started, Duration::from_secs(10))?;
    Ok(Started {
        specs: started.into_iter().map(|(s, _)| s).collect(),
        files,
        start,
        ready: t.elapsed(),
    })
}

/// Threads starting programs side by side: a start is mostly the kernel making the
/// program's namespaces and mounts, which two cores can do at once.
const STARTERS: usize = 4;

/// Starts every program in `specs`, recording them in batches as they start. When one
/// fails to start, the others already started are recorded all the same (so a rollback
/// stops them) and the first failure is returned.
fn start_all(
    plan: &Plan,
    state_dir: &Path,
    template: &Proc,
    specs: Vec<services::Spec>,
    record: &mut dyn FnMut(&[Proc]) -> Result<()>,
) -> Result<Vec<(services::Spec, Proc)>> {
    let per_thread = specs.len().div_ceil(STARTERS).max(1);
    let mut pids: Vec<Option<Proc>> = vec![None; specs.len()];
    let mut unrecorded = Vec::new();
    let mut failure = None;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for (n, chunk) in specs.chunks(per_thread).enumerate() {
            let tx = tx.clone();
            s.spawn(move || {
                for (i, spec) in chunk.iter().enumerate() {
                    let r = env(plan, state_dir, &spec.node, Some(template))
                        .and_then(|e| services::start(spec, &e));
                    let failed = r.is_err();
                    if tx.send((n * per_thread + i, r)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            match r {
                Ok(p) => {
                    unrecorded.push(p.clone());
                    pids[i] = Some(p);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
            if unrecorded.len() == RECORD_BATCH {
                if let Err(e) = record(&unrecorded) {
                    failure.get_or_insert(e);
                }
                unrecorded.clear();
            }
        }
    });
    if !unrecorded.is_empty() {
        record(&unrecorded)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(specs
        .into_iter()
        .zip(pids)
        .filter_map(|(s, p)| p.map(|p| (s, p)))
        .collect())
}

/// What `start_services` started, and where its time went.
pub struct Started {
    pub specs: Vec<services::Spec>,
    /// Writing configurations, host keys and certificates.
    pub files: Duration,
    /// Starting the programs.
    pub start: Duration,
    /// Waiting until every one listens.
    pub ready: Duration,
}

/// The lab's mount template, when its holder still runs.
pub fn live_template(st: &State) -> Option<&Proc> {
    st.processes
        .iter()
        .find(|p| p.what == mount_template::WHAT && p.alive())
}

/// The lab's mount template, made (and recorded in `st`, replacing a dead holder's
/// record) when there is none. The caller saves `st`.
pub fn ensure_template(plan: &Plan, st: &mut State) -> Result<Proc> {
    if let Some(p) = live_template(st) {
        return Ok(p.clone());
    }
    let router = plan
        .netns(ROUTER)
        .with_context(|| format!("lab `{}` has no VPC router", plan.lab))?;
    let p = mount_template::start(&router.name, ROUTER)?;
    st.processes.retain(|x| x.what != mount_template::WHAT);
    st.processes.push(p.clone());
    Ok(p)
}

/// The lab's mount template, made and recorded when there is none, for a command that
/// changes a running lab (the state file is read and written under its lock).
pub fn template_of(lab: &str, plan: &Plan) -> Result<Proc> {
    Ok(State::modify(lab, |st| ensure_template(plan, st))?.1)
}

/// Records programs just started on a running lab, each replacing the record of an
/// earlier process of the same program on the same node.
pub fn record_started(lab: &str, started: &[Proc]) -> Result<()> {
    State::modify(lab, |st| {
        st.processes
            .retain(|x| !started.iter().any(|p| p.node == x.node && p.what == x.what));
        st.processes.extend_from_slice(started);
        Ok(())
    })
    .map(|_| ())
}

/// Writes every service's configuration, host keys and certificates (hosts in
/// parallel) and returns what to start.
fn prepare(
    lab: &crate::topology::Lab,
    plan: &Plan,
    state_dir: &Path,
    which: &dyn Fn(&str) -> bool,
) -> Result<Vec<services::Spec>> {
    let account = services::users_account(state_dir)?;
    let hosts: Vec<&Host> = plan
        .hosts
        .iter()
        .filter(|h| !h.services.is_empty() && which(&h.node))
        .collect();
    let per_host: Vec<Result<Vec<services::Spec>>> = std::thread::scope(|s| {
        let jobs: Vec<_> = hosts
            .iter()
            .map(|h| {
                let dir = host_dir(state_dir, &h.node);
                s.spawn(move || {
                    ensure_host(h, &dir)?;
                    services::prepare_host(lab, h, &dir, state_dir, account)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| bail!("preparing a host panicked"))
            })
            .collect()
    });
    let mut specs = Vec::new();
    for r in per_host {
        specs.extend(r?);
    }
    Ok(specs)
}

/// Writes a known_hosts with every sshd's host key under all of its current names (the
/// public ones change when an instance is stopped and started), so clients can check
/// host keys strictly instead of trusting on first use.
pub fn write_known_hosts(lab: &crate::topology::Lab, plan: &Plan, state_dir: &Path) -> Result<()> {
    let mut out = String::new();
    for h in &plan.hosts {
        let Ok(key) = std::fs::read_to_string(services::ssh::host_public_key(&host_dir(
            state_dir, &h.node,
        ))) else {
            continue;
        };
        let mut names = vec![h.private_ip.to_string(), lab.private_dns_name(h.private_ip)];
        if let Some(p) = h.public_ip {
            names.push(p.to_string());
            names.push(lab.public_dns_name(p));
        }
        out.push_str(&services::ssh::known_hosts_line(&names, &key));
    }
    let p = services::ssh::known_hosts_path(state_dir);
    std::fs::write(&p, out).with_context(|| format!("write {}", p.display()))
}

/// How to run a program on `node`: a host gets its own files, /run and hostname; a
/// gateway or router just its network namespace.
/// `template` is the lab's mount template when it has one (see [`live_template`]);
/// without it, a program starts from a copy of the machine's own mounts, which works the
/// same and costs more the more namespaces the machine has.
pub fn env(plan: &Plan, state_dir: &Path, node: &str, template: Option<&Proc>) -> Result<HostEnv> {
    if let Some(h) = plan.host(node) {
        let dir = host_dir(state_dir, node);
        ensure_host(h, &dir)?;
        let mut binds: Vec<(PathBuf, PathBuf)> = HOST_FILES
            .iter()
            .map(|f| (dir.join("etc").join(f), Path::new("/etc").join(f)))
            .chain(
                ACCOUNT_FILES
                    .iter()
                    .map(|f| (state_dir.join("etc").join(f), Path::new("/etc").join(f))),
            )
            .collect();
        binds.push((dir.join("home"), "/home".into()));
        binds.push((dir.join("log"), "/var/log".into()));
        binds.push((dir.join("tmp"), "/tmp".into()));
        // A host missing one of the targets (a minimal system without /etc/hostname)
        // simply keeps its own; sources are ours and always exist.
        binds.retain(|(_, target)| target.exists());
        return Ok(HostEnv {
            netns: h.ns.clone(),
            hostname: Some(h.hostname.clone()),
            binds,
            private_run: Some(PrivateRun {
                // The node's own folder, and the lab's key pairs (every host has the
                // "downloaded" .pem at the same path as outside).
                keep: vec![dir, state_dir.join("keys")],
                mkdirs: vec!["/run/sshd".into(), "/run/mysqld".into()],
            }),
            detach: false,
            mount_template: template.map(mount_template::path),
        });
    }
    match plan.netns(node) {
        Some(ns) => Ok(HostEnv {
            netns: ns.name.clone(),
            ..Default::default()
        }),
        None => {
            let mut names: Vec<&str> = plan.namespaces.iter().map(|n| n.node.as_str()).collect();
            names.sort();
            bail!(
                "lab `{}` has no node `{node}`\n  hint: nodes are {}",
                plan.lab,
                names.join(", ")
            )
        }
    }
}
