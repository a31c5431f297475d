//! The lab's supervisor (`vpclab supervise LAB`, started detached by `up`) owns the
//! long-lived parts of a lab: the VPC's and the internet's DNS servers, the instance
//! metadata service, and (with a database) the health monitor. It runs in the host's
//! namespaces but serves on sockets it opened inside the lab's namespaces. The CLI talks
//! to it over `supervisor.sock`.
//!
//! On AWS these services never disappear, so a `kill -9` of the supervisor must not end
//! them either. It therefore runs as a pair, like the Multi-AZ database it watches: two
//! `vpclab supervise LAB` processes, one serving and one standing by. Whichever holds the
//! exclusive lock on `supervisor.lock` serves; the standby blocks on that lock. The kernel
//! drops the lock the moment its holder dies, however it dies, so the standby takes over
//! within milliseconds without anyone having to notice the death, and two processes can
//! never serve (bind the lab's sockets) at once. The serving process keeps the pair whole:
//! the standby is its child, and when that exits another is started. A `kill -9` of
//! either process is thus repaired by the other; only both dying at once ends the
//! supervisor, which is what `down` does. (A keeper parent restarting its child would
//! itself need a keeper; with the lock, the serving process needs no watcher at all.)
//!
//! What to serve comes from the state file, never from the lab file alone: a supervisor
//! that takes over serves the database endpoint at the primary a failover moved it to.
//!
//! `down` must win against restarts: it leaves a `stopping` mark under the state file's
//! lock before it signals anything, and every supervisor process is started, and takes
//! over, only under that lock and only while the mark is absent, recording itself before
//! the lock is released. So `down` either finds a new process in the state file or none
//! starts.

use super::control::{self, Request, Response};
use super::state::{self, State};
use super::{Running, database, running};
use crate::kernel::lock;
use crate::kernel::process::Proc;
use crate::kernel::{self, netns};
use crate::plan::aws_id;
use crate::services::{dns, metadata};
use crate::topology::well_known::METADATA;
use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// The node both supervisor processes are recorded under in the state file.
pub const NODE: &str = "supervisor";
/// The record of the process that serves.
pub const SERVING: &str = "supervisor";
/// The record of the process waiting to take over.
pub const STANDBY: &str = "standby";

/// Standbys that keep dying at once (say, their binary is gone) are restarted at most
/// this often, not in a busy loop; the first restart is immediate.
const STANDBY_RESTART_PACE: Duration = Duration::from_millis(500);

fn serving_lock(lab: &str) -> PathBuf {
    state::dir(lab).join("supervisor.lock")
}

fn stopping_mark(lab: &str) -> PathBuf {
    state::dir(lab).join("stopping")
}

fn log_path(lab: &str) -> PathBuf {
    state::dir(lab).join("supervisor.log")
}

/// Called by `down` before it signals anything: from now on no supervisor process of
/// the lab starts or takes over. Under the state lock, so a start in progress has either
/// recorded its process already or will see the mark.
pub fn forbid_restarts(lab: &str) -> Result<()> {
    State::modify(lab, |_| {
        std::fs::write(stopping_mark(lab), b"")
            .with_context(|| format!("write {}", stopping_mark(lab).display()))
    })?;
    Ok(())
}

/// `vpclab supervise LAB`, detached, logging to the lab's supervisor log.
fn supervise_command(lab: &str) -> Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(lab))
        .with_context(|| format!("open {}", log_path(lab).display()))?;
    // The very binary running now, even if a rebuild has replaced the file at its path
    // since: both processes of the pair then always speak the same protocol.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "vpclab".into()),
    )
    .args(["supervise", lab])
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log);
    // A session of its own: it outlives the terminal that ran `up`, and a signal to the
    // process group of one process of the pair doesn't reach the other.
    kernel::start_in_new_session(&mut cmd);
    Ok(cmd)
}

/// Starts a supervisor process recorded as `what`, replacing the records of dead ones
/// in that role. `None` when `down` has begun. Started and recorded under the state lock,
/// so `down` never misses it (see the module comment).
fn start_recorded(lab: &str, what: &str) -> Result<Option<(Child, Proc)>> {
    let mut started: Option<Child> = None;
    let recorded = State::modify(lab, |st| {
        if stopping_mark(lab).exists() {
            return Ok(None);
        }
        let child = started.insert(
            supervise_command(lab)?
                .spawn()
                .context("start a supervisor process")?,
        );
        let p = Proc::of(child.id() as i32, NODE, what)?;
        st.processes
            .retain(|x| !(x.node == NODE && x.what == what && !x.alive()));
        st.processes.push(p.clone());
        Ok(Some(p))
    });
    match (recorded, started) {
        (Ok((_, Some(p))), Some(child)) => Ok(Some((child, p))),
        (Ok(_), _) => Ok(None),
        (Err(e), child) => {
            // Unrecorded, `down` would never stop it.
            if let Some(mut child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(e)
        }
    }
}

/// The supervisor's two processes, as `up` reports them.
pub struct Pair {
    pub serving: Proc,
    pub standby: Option<Proc>,
}

/// Starts the supervisor of `lab` (the pair's first process, which starts the standby),
/// records it, and waits until it answers.
pub fn start(lab: &str) -> Result<Pair> {
    let Some((_, serving)) = start_recorded(lab, SERVING)? else {
        bail!("lab `{lab}` is being removed (`down` has begun)");
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if matches!(control::ping(lab), control::Ping::Answered(_)) {
            break;
        }
        if !serving.alive() {
            let log = std::fs::read_to_string(log_path(lab)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            bail!(
                "the supervisor exited during start:\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the supervisor did not answer within 10 s (log: {})",
                log_path(lab).display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = State::load(lab)?.with_context(|| format!("lab `{lab}` has no state file"))?;
    let standby = st
        .processes
        .iter()
        .find(|p| p.node == NODE && p.what == STANDBY)
        .cloned();
    Ok(Pair { serving, standby })
}

/// Records this process as the one serving, in place of the one it replaces. `None`
/// when `down` has begun; otherwise the pids of the processes it replaced.
fn take_over(lab: &str) -> Result<Option<Vec<i32>>> {
    let me = Proc::of(std::process::id() as i32, NODE, SERVING)?;
    let is_me = |p: &Proc| p.pid == me.pid && p.start_time == me.start_time;
    // The lock is ours, so a process recorded as serving has let go of it: it is dead
    // or in its last moments of exiting (after SIGTERM), and must not be reported as the
    // supervisor. Dead standbys go too.
    let replaced = |p: &Proc| p.node == NODE && !is_me(p) && (p.what == SERVING || !p.alive());
    let (_, replaced) = State::modify(lab, |st| {
        if stopping_mark(lab).exists() {
            return Ok(None);
        }
        let pids: Vec<i32> = st
            .processes
            .iter()
            .filter(|p| replaced(p))
            .map(|p| p.pid)
            .collect();
        st.processes.retain(|p| !replaced(p) && !is_me(p));
        st.processes.push(me.clone());
        Ok(Some(pids))
    })?;
    Ok(replaced)
}

/// Starts the standby, and another whenever it exits, until `down` begins.
fn keep_a_standby(lab: &str) -> Result<Option<Proc>> {
    let Some((first, p)) = start_recorded(lab, STANDBY)? else {
        return Ok(None);
    };
    let lab = lab.to_string();
    std::thread::Builder::new()
        .name("standby".into())
        .spawn(move || {
            let mut standby = first;
            let mut last_restart: Option<Instant> = None;
            loop {
                let pid = standby.id();
                let how = standby
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                eprintln!(
                    "vpclab supervisor of lab `{lab}`: its standby (pid {pid}) ended ({how})"
                );
                let since = last_restart.map(|t| t.elapsed());
                if let Some(rest) = since.and_then(|s| STANDBY_RESTART_PACE.checked_sub(s)) {
                    std::thread::sleep(rest);
                }
                last_restart = Some(Instant::now());
                standby = loop {
                    match start_recorded(&lab, STANDBY) {
                        Ok(Some((child, _))) => break child,
                        Ok(None) => return,
                        // Without a state file there is no lab to stand by for.
                        Err(_) if !state::file(&lab).exists() => return,
                        Err(e) => {
                            eprintln!("vpclab supervisor of lab `{lab}`: start a standby: {e:#}");
                            std::thread::sleep(STANDBY_RESTART_PACE);
                        }
                    }
                };
                eprintln!(
                    "vpclab supervisor of lab `{lab}`: standby pid {} started",
                    standby.id()
                );
            }
        })
        .context("start the standby's keeper")?;
    Ok(Some(p))
}

/// What the supervisor serves, rebuilt from the state file on every reload.
struct Served {
    lab: String,
    started: Instant,
    reloads: u64,
    /// One database operation at a time: a reboot request and the health monitor's
    /// automatic failover never interleave.
    db_ops: Arc<std::sync::Mutex<()>>,
}

/// The supervisor's main: wait for the turn to serve (at once for the first process of
/// the pair), then serve until SIGTERM.
pub fn run(lab: &str) -> Result<()> {
    let me = std::process::id();
    // Declared before the runtime, so dropped after it: the lab's sockets are closed
    // before a standby can take over and bind them again.
    let Some(_turn) = lock::wait_exclusive(&serving_lock(lab))? else {
        eprintln!("vpclab supervisor of lab `{lab}` (pid {me}): the lab was removed; exiting");
        return Ok(());
    };
    let Some(replaced) = take_over(lab)? else {
        eprintln!("vpclab supervisor of lab `{lab}` (pid {me}): the lab is going down; exiting");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = running(Some(lab))?;
        let db_ops = Arc::new(std::sync::Mutex::new(()));
        let served = Arc::new(tokio::sync::Mutex::new(Served {
            lab: lab.to_string(),
            started: Instant::now(),
            reloads: 0,
            db_ops: db_ops.clone(),
        }));
        serve_lab(&r).await?;
        let monitored = r
            .lab
            .databases
            .iter()
            .filter(|d| d.standby.is_some() && !r.state.runtime.databases_off);
        for d in monitored {
            start_monitor(&r, &d.name, db_ops.clone())?;
        }
        super::flowlog_collector::start(lab)?;
        // Before the control socket: once `up` gets an answer, the pair is whole.
        let standby = keep_a_standby(lab)?;
        let sock = control::socket_path(lab);
        let _ = std::fs::remove_file(&sock);
        let listener =
            UnixListener::bind(&sock).with_context(|| format!("listen on {}", sock.display()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
        let replaced = match replaced.as_slice() {
            [] => String::new(),
            pids => format!(
                ", in place of pid {}",
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let standby = match standby {
            Some(p) => format!("standby pid {}", p.pid),
            None => "no standby: the lab is going down".into(),
        };
        eprintln!("vpclab supervisor of lab `{lab}` ready (pid {me}{replaced}; {standby})");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                conn = listener.accept() => {
                    let (stream, _) = conn?;
                    handle(stream, served.clone()).await;
                }
            }
        }
        eprintln!("vpclab supervisor of lab `{lab}` (pid {me}) stopped");
        Ok(())
    })
}

/// Answers one request.
async fn handle(stream: tokio::net::UnixStream, served: Arc<tokio::sync::Mutex<Served>>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(rd).read_line(&mut line).await.is_err() {
        return;
    }
    let req: Result<Request, _> = serde_json::from_str(line.trim());
    let resp = match req {
        Err(e) => Response::error(format!("bad request: {e}")),
        Ok(Request::Ping) => Response {
            pid: Some(std::process::id()),
            ..Response::ok()
        },
        Ok(Request::Status) => {
            let s = served.lock().await;
            Response {
                pid: Some(std::process::id()),
                data: serde_json::json!({
                    "lab": s.lab,
                    "uptime_s": s.started.elapsed().as_secs(),
                    "reloads": s.reloads,
                }),
                ..Response::ok()
            }
        }
        Ok(Request::Reload) => {
            let mut s = served.lock().await;
            match running(Some(&s.lab)).map(|r| reload(&r)) {
                Ok(Ok(())) => {
                    s.reloads += 1;
                    Response::ok()
                }
                Ok(Err(e)) | Err(e) => Response::error(format!("{e:#}")),
            }
        }
        Ok(Request::Reboot { database, failover }) => {
            let (lab, ops) = {
                let s = served.lock().await;
                (s.lab.clone(), s.db_ops.clone())
            };
            let job = tokio::task::spawn_blocking(move || reboot(&lab, &database, failover, &ops));
            match job.await {
                Ok(Ok(events)) => Response {
                    data: serde_json::json!({ "events": events }),
                    ..Response::ok()
                },
                Ok(Err(e)) => Response::error(format!("{e:#}")),
                Err(e) => Response::error(e),
            }
        }
    };
    let mut out = serde_json::to_string(&resp).unwrap_or_default();
    out.push('\n');
    let _ = wr.write_all(out.as_bytes()).await;
}

/// What the supervisor serves, swappable while serving: reload and failover replace
/// the tables atomically, queries in flight see the old or the new one.
struct World {
    vpc: Arc<ArcSwap<dns::Zone>>,
    internet: Arc<ArcSwap<dns::Zone>>,
    metadata: metadata::Table,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The resolvers' and metadata service's sockets, bound inside the lab's namespaces.
fn bind_in(ns: &str, addrs: &[Ipv4Addr], port: u16) -> Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let f = netns::open(ns)?;
    netns::run_in(&f, || {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for a in addrs {
            let sa = SocketAddr::from((*a, port));
            udp.push(
                bind_once_free(|| UdpSocket::bind(sa))
                    .with_context(|| format!("bind udp {sa} in {ns}"))?,
            );
            tcp.push(
                bind_once_free(|| TcpListener::bind(sa))
                    .with_context(|| format!("bind tcp {sa} in {ns}"))?,
            );
        }
        for s in &udp {
            s.set_nonblocking(true)?;
        }
        for s in &tcp {
            s.set_nonblocking(true)?;
        }
        Ok((udp, tcp))
    })
}

/// Binds, waiting up to a second while the address is in use: the lock that let this
/// process take over may be released a moment before the sockets of the process that
/// died are closed.
fn bind_once_free<S>(bind: impl Fn() -> std::io::Result<S>) -> std::io::Result<S> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match bind() {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            done => return done,
        }
    }
}

/// Binds the lab's service sockets inside its namespaces and starts serving.
async fn serve_lab(r: &Running) -> Result<()> {
    let world = World {
        vpc: Arc::new(ArcSwap::from_pointee(dns::Zone::new(
            &r.plan.dns.vpc.records,
        ))),
        internet: Arc::new(ArcSwap::from_pointee(dns::Zone::new(
            &r.plan.dns.internet.records,
        ))),
        metadata: Arc::new(ArcSwap::from_pointee(metadata_table(r))),
    };
    let (udp, tcp) = bind_in(&r.plan.dns.vpc.ns, &r.plan.dns.vpc.listen, 53)?;
    dns::spawn(world.vpc.clone(), udp, tcp).context("serve the VPC resolver")?;
    let (udp, tcp) = bind_in(&r.plan.dns.internet.ns, &r.plan.dns.internet.listen, 53)?;
    dns::spawn(world.internet.clone(), udp, tcp).context("serve the internet resolver")?;
    let (_, mut tcp) = bind_in(&r.plan.dns.vpc.ns, &[METADATA], 80)?;
    metadata::spawn(world.metadata.clone(), tcp.remove(0)).context("serve instance metadata")?;
    WORLD
        .set(world)
        .map_err(|_| anyhow::anyhow!("the lab is already being served"))?;
    Ok(())
}

/// Swaps in what the lab looks like now (DNS records, instance metadata).
fn reload(r: &Running) -> Result<()> {
    let w = WORLD.get().context("not serving yet")?;
    w.vpc
        .store(Arc::new(dns::Zone::new(&r.plan.dns.vpc.records)));
    w.internet
        .store(Arc::new(dns::Zone::new(&r.plan.dns.internet.records)));
    w.metadata.store(Arc::new(metadata_table(r)));
    super::flowlog_collector::follow_now(&r.lab.name)
}

/// What each running instance's metadata service says, keyed by its private IP.
fn metadata_table(r: &Running) -> HashMap<Ipv4Addr, metadata::InstanceMeta> {
    let lab = &r.lab;
    lab.instances
        .iter()
        .filter(|i| !r.state.runtime.stopped.contains(&i.name))
        .map(|i| {
            let subnet = &lab.subnets[i.subnet];
            let h = crate::topology::aws::stable_hash(&["mac", &lab.name, &i.name]);
            let mac = format!(
                "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                (h >> 32) as u8,
                (h >> 24) as u8,
                (h >> 16) as u8,
                (h >> 8) as u8,
                h as u8
            );
            let meta = metadata::InstanceMeta {
                instance_id: i.id.clone(),
                instance_type: "t2.micro".into(),
                ami_id: aws_id("ami", &lab.name, "amazon-linux"),
                account_id: "123456789012".into(),
                local_ipv4: i.private_ip,
                public_ipv4: i.public_ip.address(),
                local_hostname: lab.private_dns_name(i.private_ip),
                public_hostname: i.public_ip.address().map(|p| lab.public_dns_name(p)),
                availability_zone: subnet.az.clone(),
                region: lab.region.clone(),
                security_groups: i
                    .security_groups
                    .iter()
                    .map(|g| lab.security_groups[*g].name.clone())
                    .collect(),
                mac,
                vpc_id: aws_id("vpc", &lab.name, &lab.vpc.name),
                vpc_ipv4_cidr_block: lab.vpc.cidr,
                subnet_id: aws_id("subnet", &lab.name, &subnet.name),
                subnet_ipv4_cidr_block: subnet.cidr,
            };
            (i.private_ip, meta)
        })
        .collect()
}

fn reload_lab(lab: &str) -> Result<()> {
    reload(&running(Some(lab))?)
}

/// `vpclab reboot DB [--failover]`, run by the supervisor so the health monitor and
/// the endpoint's DNS record stay in step.
fn reboot(
    lab: &str,
    db: &str,
    failover: bool,
    ops: &std::sync::Mutex<()>,
) -> Result<Vec<database::Event>> {
    let _one_at_a_time = ops.lock().unwrap_or_else(|p| p.into_inner());
    let mut ev = database::Events::echoing(lab, db);
    if failover {
        let r = running(Some(lab))?;
        let (old, _) = database::roles(&r.lab, db)?;
        database::failover(lab, db, database::Cause::Reboot, &mut ev, &|| {
            reload_lab(lab)
        })?;
        database::rejoin(lab, db, &old.name, &mut ev)?;
    } else {
        database::reboot_in_place(lab, db, &mut ev)?;
    }
    Ok(ev.list)
}

/// Health-checks a database's primary from the VPC router (as RDS's monitoring does
/// from outside the instance): a TCP connection that must bring the server's greeting.
/// Two failures in a row fail the database over; a crashed primary then rejoins as
/// the standby.
fn start_monitor(r: &Running, db: &str, ops: Arc<std::sync::Mutex<()>>) -> Result<()> {
    let router = netns::open(&r.plan.dns.vpc.ns)?;
    let lab = r.lab.name.clone();
    let db = db.to_string();
    std::thread::Builder::new()
        .name(format!("health-{db}"))
        .spawn(move || {
            if let Err(e) = netns::move_this_thread(&router) {
                eprintln!("health monitor of {db}: enter the VPC router namespace: {e}");
                return;
            }
            let mut failures = 0u32;
            loop {
                let Ok(r) = running(Some(&lab)) else { return };
                let interval = Duration::from_millis(r.state.runtime.health_interval_ms.max(50));
                // After a failed check, check again at once: two failures in a row
                // confirm the primary is gone without another full interval.
                if failures == 0 {
                    std::thread::sleep(interval);
                }
                let Ok((primary, _)) = database::roles(&r.lab, &db) else {
                    return;
                };
                let port = r.lab.database(&db).map(|d| d.port).unwrap_or(3306);
                let _one_at_a_time = ops.lock().unwrap_or_else(|p| p.into_inner());
                // Re-read after waiting for the lock: a reboot may have moved the primary.
                let Ok(now) = running(Some(&lab)) else { return };
                let Ok((current, _)) = database::roles(&now.lab, &db) else {
                    return;
                };
                if current.name != primary.name {
                    failures = 0;
                    continue;
                }
                if healthy(
                    primary.private_ip,
                    port,
                    interval.clamp(Duration::from_millis(100), Duration::from_millis(250)),
                ) {
                    failures = 0;
                    continue;
                }
                failures += 1;
                if failures < 2 {
                    continue;
                }
                failures = 0;
                let mut ev = database::Events::echoing(&lab, &db);
                let flipped =
                    database::failover(&lab, &db, database::Cause::Unhealthy, &mut ev, &|| {
                        reload_lab(&lab)
                    });
                if let Err(e) = flipped {
                    ev.push(format!("failover failed: {e:#}"));
                    continue;
                }
                // A primary whose AZ is down stays down until `drill restore`.
                let az = now.lab.subnets[primary.subnet].az.clone();
                if now.state.runtime.azs_down.contains(&az) {
                    ev.push(format!("{} stays down with {az}", primary.name));
                } else if let Err(e) = database::rejoin(&lab, &db, &primary.name, &mut ev) {
                    ev.push(format!("{} could not rejoin: {e:#}", primary.name));
                }
            }
        })
        .context("start the health monitor")?;
    Ok(())
}

/// One health check: the server must send its greeting within `timeout`.
fn healthy(ip: std::net::Ipv4Addr, port: u16, timeout: Duration) -> bool {
    use std::io::Read;
    let addr = std::net::SocketAddr::from((ip, port));
    match std::net::TcpStream::connect_timeout(&addr, timeout) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let mut b = [0u8; 4];
            matches!(s.read(&mut b), Ok(n) if n > 0)
        }
        Err(_) => false,
    }
}
