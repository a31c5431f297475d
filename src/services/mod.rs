//! Programs that run inside lab nodes: OpenSSH and nginx on EC2-like hosts and on the
//! internet's web server, MariaDB on database servers; and the supervisor's DNS and
//! metadata services, which take sockets someone else bound and a swappable table
//! someone else owns, so they know nothing about namespaces.

pub mod dns;
pub mod mariadb;
pub mod metadata;
pub mod ssh;
pub mod users;
pub mod web;

use crate::kernel::enter::HostEnv;
use crate::kernel::listening::Listeners;
use crate::kernel::process::Proc;
use crate::plan::{Host, Role};
use crate::topology::{Lab, Service};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `mysql` client's arguments for a probe against `database` at `host`: the
/// credentials come from a 0600 option file, never the command line.
pub fn mysql_probe_args(
    state_dir: &Path,
    lab: &Lab,
    database: &str,
    host: &str,
) -> Result<Vec<String>> {
    let db = lab
        .database(database)
        .with_context(|| format!("`{database}` is not a database"))?;
    let cnf = state_dir
        .join("keys")
        .join(format!("{database}.client.cnf"));
    Ok(vec![
        "mysql".into(),
        format!("--defaults-extra-file={}", cnf.display()),
        "--connect-timeout=1".into(),
        "-h".into(),
        host.into(),
        "-P".into(),
        db.port.to_string(),
        "-e".into(),
        "SELECT 1".into(),
    ])
}

/// One long-running program to start on a node.
#[derive(Debug, Clone)]
pub struct Spec {
    pub node: String,
    pub what: &'static str,
    pub program: String,
    pub args: Vec<String>,
    /// TCP ports it listens on once ready.
    pub ports: Vec<u16>,
    /// The node's own folder in the lab's state dir: the program's log goes there.
    pub dir: PathBuf,
}

impl Spec {
    /// Where the program's output goes.
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.what))
    }
}

/// Creates the lab's key pairs that don't exist yet (like the console's "Create key pair":
/// a .pem file with mode 0600) and returns their paths. A key pair, once made, is kept: an
/// edited lab adds new ones, its instances keep theirs. A key is there when its public half
/// is: one imported through the EC2 API has no private half on this machine.
pub fn key_pairs(lab: &Lab, state_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = lab
            .key_pairs
            .iter()
            .map(|k| (k, ssh::key_path(state_dir, k)))
            .filter(|(_, path)| !ssh::public_key_path(path).exists())
            .map(|(k, path)| {
                s.spawn(move || {
                    ssh::keygen(&path, &format!("{k}@vpclab-{}", lab.name))?;
                    Ok(path)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| bail!("the thread making a key pair panicked"))
            })
            .collect()
    })
}

/// ec2-user's ids, chosen once per lab and kept in the state dir.
pub fn users_account(state_dir: &Path) -> Result<users::Account> {
    let p = state_dir.join("ec2-user.ids");
    if let Ok(t) = std::fs::read_to_string(&p)
        && let Some((u, g)) = t.trim().split_once(':')
        && let (Ok(uid), Ok(gid)) = (u.parse(), g.parse())
    {
        return Ok(users::Account { uid, gid });
    }
    let a = users::pick_ids()?;
    std::fs::write(&p, format!("{}:{}\n", a.uid, a.gid))
        .with_context(|| format!("write {}", p.display()))?;
    Ok(a)
}

/// Writes the configuration, host keys and certificates of `h`'s services into `dir`, the
/// node's own folder, and returns what to start. `state_dir` holds the lab's key pairs.
pub fn prepare_host(
    lab: &Lab,
    h: &Host,
    dir: &Path,
    state_dir: &Path,
    account: users::Account,
) -> Result<Vec<Spec>> {
    let mut specs = Vec::new();
    if h.services.contains(&Service::Ssh) {
        let key_pair = lab
            .instance(&h.node)
            .and_then(|i| i.key_pair.as_deref())
            .with_context(|| format!("{} runs ssh but has no key pair", h.node))?;
        let authorized = ssh::public_key(&ssh::key_path(state_dir, key_pair))?;
        users::write_home(&dir.join("home"), account, &authorized)?;
        let ssh_dir = dir.join("ssh");
        let host_key = ssh_dir.join("ssh_host_ed25519_key");
        // A restarted instance keeps its host key, as a stopped EC2 instance keeps its disk.
        if !host_key.exists() {
            ssh::keygen(&host_key, &format!("root@{}", h.hostname))?;
        }
        std::fs::write(ssh_dir.join("sshd_config"), ssh::sshd_config(&ssh_dir))?;
        specs.push(Spec {
            node: h.node.clone(),
            what: "sshd",
            program: ssh::SSHD.into(),
            args: ssh::sshd_args(&ssh_dir),
            ports: vec![22],
            dir: dir.to_path_buf(),
        });
    }
    let http = h.services.contains(&Service::Http);
    let https = h.services.contains(&Service::Https);
    if http || https {
        let web_dir = dir.join("nginx");
        // One folder for all five kinds of temporary file: nginx numbers them from one
        // counter, and each folder is one more file to make and delete per host.
        std::fs::create_dir_all(web_dir.join("tmp"))?;
        let page = page_for(lab, h);
        std::fs::write(
            web_dir.join("nginx.conf"),
            web::nginx_conf(&web_dir, &page, http, https),
        )?;
        if https {
            let mut names = vec![lab.private_dns_name(h.private_ip)];
            let mut ips = vec![h.private_ip.to_string()];
            if let Some(p) = h.public_ip.filter(|_| h.role != Role::InternetHost) {
                names.insert(0, lab.public_dns_name(p));
                ips.push(p.to_string());
            }
            web::self_signed(&web_dir, &names[0], &names, &ips)?;
        }
        let mut ports = Vec::new();
        if http {
            ports.push(80);
        }
        if https {
            ports.push(443);
        }
        specs.push(Spec {
            node: h.node.clone(),
            what: "nginx",
            program: web::NGINX.into(),
            args: web::nginx_args(&web_dir),
            ports,
            dir: dir.to_path_buf(),
        });
    }
    Ok(specs)
}

fn page_for(lab: &Lab, h: &Host) -> web::Page {
    match (&h.instance_id, &h.az) {
        (Some(id), Some(az)) => web::Page {
            title: format!("{} ({id})", h.node),
            lines: vec![
                format!("instance id: {id}"),
                format!("private IP: {}", h.private_ip),
                format!("availability zone: {az}"),
                format!("region: {}", lab.region),
            ],
        },
        _ => web::Page {
            title: format!("{} on the internet ({})", h.node, h.private_ip),
            lines: vec![],
        },
    }
}

/// Starts a service detached from the terminal, its output in the node's folder, and
/// returns its record for the state file.
pub fn start(spec: &Spec, env: &HostEnv) -> Result<Proc> {
    let log_path = spec.log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let pid = env
        .spawn_service(Path::new(&spec.program), &spec.args, &log)
        .with_context(|| format!("start {} on {}", spec.what, spec.node))?;
    let record = Proc::of(pid, &spec.node, spec.what);
    // Reap it when it exits, so a long-lived parent (the supervisor) leaves no zombie.
    std::thread::spawn(move || nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None));
    record
}

/// A node's services still waited for, and a diagnostics socket in its namespace.
type Waiting<'a> = (Listeners, Vec<&'a (Spec, Proc)>);

/// Waits until every port of every started service listens, asking each node's network
/// namespace once a round for all of its listening ports (no test connection is made), so
/// the wait costs one query per node and round, however many nodes the lab has.
pub fn wait_ready(started: &[(Spec, Proc)], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pending: BTreeMap<&str, Waiting> = BTreeMap::new();
    for s in started.iter().filter(|(spec, _)| !spec.ports.is_empty()) {
        match pending.entry(s.0.node.as_str()) {
            Entry::Occupied(mut e) => e.get_mut().1.push(s),
            Entry::Vacant(e) => {
                let listeners = match Listeners::of_process(s.1.pid) {
                    Ok(l) => l,
                    Err(_) if !s.1.alive() => return Err(exited_during_start(&s.0)),
                    Err(e) => return Err(e),
                };
                e.insert((listeners, vec![s]));
            }
        }
    }
    loop {
        let mut done = Vec::new();
        for (node, (listeners, services)) in pending.iter_mut() {
            let ports = listeners.ports()?;
            services.retain(|(spec, _)| !spec.ports.iter().all(|p| ports.contains(p)));
            if let Some((spec, _)) = services.iter().find(|(_, p)| !p.alive()) {
                return Err(exited_during_start(spec));
            }
            if services.is_empty() {
                done.push(*node);
            }
        }
        for node in done {
            pending.remove(node);
        }
        let Some((_, (_, services))) = pending.iter().next() else {
            return Ok(());
        };
        if Instant::now() > deadline {
            let (spec, _) = services[0];
            bail!(
                "{} on {} is not listening on port{} {} after {timeout:?} ({} services on {} nodes still waited for)",
                spec.what,
                spec.node,
                if spec.ports.len() == 1 { "" } else { "s" },
                spec.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                pending.values().map(|(_, s)| s.len()).sum::<usize>(),
                pending.len()
            );
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// A service that exited before it listened: the last lines of its log say why.
fn exited_during_start(spec: &Spec) -> anyhow::Error {
    let log = spec.log();
    let tail = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    anyhow::anyhow!(
        "{} on {} exited during start:\n  {}\n  (log: {})",
        spec.what,
        spec.node,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n  "),
        log.display()
    )
}
