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
use crate::kernel::process::Proc;
use crate::plan::{Host, Role};
use crate::topology::{Lab, Service};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
/// edited lab adds new ones, its instances keep theirs.
pub fn key_pairs(lab: &Lab, state_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = lab
            .key_pairs
            .iter()
            .map(|k| (k, ssh::key_path(state_dir, k)))
            .filter(|(_, path)| !path.exists())
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
                    .unwrap_or_else(|_| bail!("ssh-keygen thread panicked"))
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
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(web_dir.join("tmp").join(sub))?;
        }
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
    let mut env = env.clone();
    env.detach = true;
    let mut child = env
        .command(&spec.program)?
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {} on {}", spec.what, spec.node))?;
    let record = Proc::of(child.id() as i32, &spec.node, spec.what);
    // Reap it when it exits, so a long-lived parent (the supervisor) leaves no zombie.
    std::thread::spawn(move || child.wait());
    record
}

/// Waits until every port of every started service listens, reading each process's
/// own /proc/PID/net/tcp (its namespace's sockets) so no test connection is made.
pub fn wait_ready(started: &[(Spec, Proc)], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for (spec, proc_) in started {
        for port in &spec.ports {
            loop {
                if listening(proc_.pid, *port) {
                    break;
                }
                if !proc_.alive() {
                    let log = spec.log();
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                    bail!(
                        "{} on {} exited during start:\n  {}\n  (log: {})",
                        spec.what,
                        spec.node,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n  "),
                        log.display()
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} on {} is not listening on port {port} after {timeout:?}",
                        spec.what,
                        spec.node
                    );
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        }
    }
    Ok(())
}

/// A TCP socket in LISTEN state on `port` in the network namespace of `pid`.
pub fn listening(pid: i32, port: u16) -> bool {
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let want = format!(":{port:04X}");
    t.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}
