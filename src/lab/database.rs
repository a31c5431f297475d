//! RDS Multi-AZ instances of a lab: bringing the pair up, and what failover does.
//! The SQL is in `services::mariadb`; this layer decides which server does what.

use super::hosts::{self, host_dir};
use super::state::State;
use crate::kernel::process::Proc;
use crate::plan::Plan;
use crate::services::{self, mariadb};
use crate::topology::{Database, DbNode, Lab};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub const WHAT: &str = "mariadbd";

/// Loads a database's accounts, generating passwords the lab file doesn't give. They
/// are kept in 0600 files in the lab's key folder and never put on a command line:
/// `<db>.credentials.json` for vpclab, and `<db>.client.cnf` / `<db>.app.cnf` option
/// files for the `mysql` client (`--defaults-extra-file`).
pub fn credentials(db: &Database, state_dir: &Path) -> Result<mariadb::Credentials> {
    let keys = state_dir.join("keys");
    let file = keys.join(format!("{}.credentials.json", db.name));
    if let Ok(text) = std::fs::read_to_string(&file) {
        return serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()));
    }
    let c = mariadb::Credentials {
        master_user: db.master_username.clone(),
        master_password: match &db.master_password {
            Some(p) => p.clone(),
            None => mariadb::random_password(20)?,
        },
        app_user: "app".into(),
        app_password: mariadb::random_password(20)?,
        repl_password: mariadb::random_password(24)?,
        database: db.database_name.clone(),
    };
    std::fs::create_dir_all(&keys)?;
    let write = |name: String, text: String| -> Result<()> {
        let p = keys.join(name);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    };
    write(
        format!("{}.credentials.json", db.name),
        serde_json::to_string_pretty(&c)?,
    )?;
    write(
        format!("{}.master-password", db.name),
        format!("{}\n", c.master_password),
    )?;
    write(
        format!("{}.client.cnf", db.name),
        format!(
            "# the RDS master user of {}\n[client]\nuser={}\npassword={}\n",
            db.name, c.master_user, c.master_password
        ),
    )?;
    write(
        format!("{}.app.cnf", db.name),
        format!(
            "# the application user of {} (privileges on `{}` only)\n[client]\nuser={}\npassword={}\ndatabase={}\n",
            db.name, c.database, c.app_user, c.app_password, c.database
        ),
    )?;
    Ok(c)
}

pub fn paths(state_dir: &Path, node: &str) -> mariadb::Paths {
    mariadb::paths(&host_dir(state_dir, node))
}

/// Starts a node's server detached; the caller records it in the state file before
/// waiting on it.
pub fn start_server(
    plan: &Plan,
    state_dir: &Path,
    node: &str,
    as_standby: bool,
    template: Option<&Proc>,
) -> Result<Proc> {
    let p = paths(state_dir, node);
    let (program, args) = mariadb::command(&p, as_standby);
    let spec = services::Spec {
        node: node.into(),
        what: WHAT,
        program,
        args,
        ports: vec![],
        dir: host_dir(state_dir, node),
    };
    let env = hosts::env(plan, state_dir, node, template)?;
    services::start(&spec, &env)
}

/// Records a (re)started server, replacing the record of its previous process.
pub fn record(st: &mut State, p: &Proc) {
    st.processes
        .retain(|x| !(x.node == p.node && x.what == WHAT));
    st.processes.push(p.clone());
}

/// Brings up every database of the lab: datadirs from the template, servers started,
/// accounts created, the standby replicating from the primary with semi-sync.
pub fn bring_up(lab: &Lab, plan: &Plan, state_dir: &Path, st: &mut State) -> Result<()> {
    if lab.databases.is_empty() {
        return Ok(());
    }
    let template = mariadb::template()?;
    for db in &lab.databases {
        bring_up_one(db, plan, state_dir, &template, st)
            .with_context(|| format!("database `{}`", db.name))?;
    }
    Ok(())
}

fn bring_up_one(
    db: &Database,
    plan: &Plan,
    state_dir: &Path,
    template: &Path,
    st: &mut State,
) -> Result<()> {
    let creds = credentials(db, state_dir)?;
    let nodes: Vec<&DbNode> = db.nodes().collect();
    std::thread::scope(|s| -> Result<()> {
        let jobs: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                s.spawn(move || -> Result<()> {
                    let p = paths(state_dir, &n.name);
                    mariadb::prepare_datadir(&p, template)?;
                    mariadb::write_config(&p, i as u32 + 1, db.port)
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .unwrap_or_else(|_| bail!("preparing a datadir panicked"))?;
        }
        Ok(())
    })?;
    let mounts = hosts::ensure_template(plan, st)?;
    let mut wrappers = Vec::new();
    for n in &nodes {
        let p = start_server(plan, state_dir, &n.name, false, Some(&mounts))?;
        record(st, &p);
        st.save()?;
        wrappers.push(p);
    }
    let timeout = Duration::from_secs(20);
    let mut conns: Vec<mysql::Conn> = std::thread::scope(|s| {
        let jobs: Vec<_> = nodes
            .iter()
            .zip(&wrappers)
            .map(|(n, w)| {
                s.spawn(move || mariadb::wait_ready(&paths(state_dir, &n.name), w.pid, timeout))
            })
            .collect();
        jobs.into_iter()
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| bail!("waiting for mariadbd panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?;

    let (primary, rest) = conns.split_first_mut().expect("a database has a primary");
    mariadb::create_accounts(primary, &creds, false)?;
    if let Some(standby) = rest.first_mut() {
        // Semi-sync only with a standby: alone, every commit would wait for its timeout.
        mariadb::become_semi_sync_master(primary)?;
        mariadb::create_accounts(standby, &creds, true)?;
        mariadb::replicate_from(standby, db.primary.private_ip, db.port, &creds, false)?;
        // Only once the standby acknowledges does the first replicated write go out:
        // earlier, semi-sync would wait for its timeout.
        wait_replicating(primary, standby, Duration::from_secs(10))?;
    }
    mysql::prelude::Queryable::query_drop(
        primary,
        format!("CREATE DATABASE IF NOT EXISTS `{}`", creds.database),
    )?;
    mysql::prelude::Queryable::query_drop(primary, "SET GLOBAL read_only = 0")?;
    Ok(())
}

/// Waits until the standby's replication runs and the primary counts it as a
/// semi-sync client (from then on every commit is on both before it is acknowledged).
pub fn wait_replicating(
    primary: &mut mysql::Conn,
    standby: &mut mysql::Conn,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = mariadb::status(standby)?;
        let p = mariadb::status(primary)?;
        if s.io_running && s.sql_running && p.semi_sync_clients >= 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the standby is not replicating after {timeout:?} (io {}, sql {}, semi-sync clients {})",
                s.io_running,
                s.sql_running,
                p.semi_sync_clients
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A failover's timeline, in RDS's words, as it happens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unix time, seconds.
    pub at: f64,
    pub database: String,
    pub message: String,
}

pub struct Events {
    pub list: Vec<Event>,
    file: std::path::PathBuf,
    database: String,
    /// Also print each event on stderr (the supervisor's log).
    echo: bool,
}

impl Events {
    /// Events are also appended to `<state>/events.jsonl`, the lab's event log.
    pub fn new(lab: &str, database: &str) -> Events {
        Events {
            list: Vec::new(),
            file: super::state::dir(lab).join("events.jsonl"),
            database: database.into(),
            echo: false,
        }
    }

    /// Events that are also written to stderr as they happen.
    pub fn echoing(lab: &str, database: &str) -> Events {
        Events {
            echo: true,
            ..Events::new(lab, database)
        }
    }

    pub fn push(&mut self, message: impl Into<String>) {
        let e = Event {
            at: unix_now(),
            database: self.database.clone(),
            message: message.into(),
        };
        if let Ok(line) = serde_json::to_string(&e) {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)
            {
                let _ = writeln!(f, "{line}");
            }
        }
        if self.echo {
            eprintln!("{} {}: {}", fmt_time(e.at), e.database, e.message);
        }
        self.list.push(e);
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `HH:MM:SS.mmm` (UTC) for event lines.
pub fn fmt_time(at: f64) -> String {
    let secs = at as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ((at - secs as f64) * 1000.0) as u64
    )
}

/// Why a failover happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// "Reboot with failover": the primary is fenced first, nothing in flight is lost.
    Reboot,
    /// The primary stopped answering health checks.
    Unhealthy,
}

/// The pair as it is now: (primary, standby) node names of `db`.
pub fn roles(lab: &Lab, db: &str) -> Result<(DbNode, DbNode)> {
    let d = lab
        .database(db)
        .with_context(|| format!("lab `{}` has no database `{db}`", lab.name))?;
    let standby = d.standby.clone().with_context(|| {
        format!("database `{db}` is not Multi-AZ: it has no standby to fail over to")
    })?;
    Ok((d.primary.clone(), standby))
}

/// The recorded server process of a node, if it is still alive.
fn server_proc(st: &State, node: &str) -> Option<Proc> {
    st.processes
        .iter()
        .find(|p| p.node == node && p.what == WHAT && p.alive())
        .cloned()
}

/// Stops a node's server cleanly (SIGTERM to mariadbd; its `unshare` parent follows).
pub fn stop_server(st: &State, node: &str, timeout: Duration) -> Result<()> {
    let Some(wrapper) = server_proc(st, node) else {
        return Ok(());
    };
    if let Some(server) = mariadb::server_pid(wrapper.pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + timeout;
    while wrapper.alive() {
        if Instant::now() > deadline {
            bail!("mariadbd on {node} did not stop within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Moves the primary role to the standby. `flip` makes the endpoint follow (the
/// supervisor swaps its DNS records). Never are two servers writable: the old
/// primary is fenced (or dead) before the standby opens.
pub fn failover(
    lab_name: &str,
    db: &str,
    cause: Cause,
    ev: &mut Events,
    flip: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let r = super::running(Some(lab_name))?;
    let dir = super::state::dir(lab_name);
    let (old, new) = roles(&r.lab, db)?;
    let creds = credentials(r.lab.database(db).expect("checked"), &dir)?;
    ev.push(match cause {
        Cause::Reboot => "Multi-AZ instance failover started".to_string(),
        Cause::Unhealthy => format!(
            "Multi-AZ instance failover started (the primary {} failed health checks)",
            old.name
        ),
    });
    let mut standby = mariadb::admin(&paths(&dir, &new.name), Duration::from_secs(10))
        .with_context(|| format!("reach the standby {}", new.name))?;
    // Everything the standby must apply before it opens: after a fence, the old
    // primary's last position; after a crash, everything the standby received (with
    // AFTER_SYNC, every acknowledged commit was received).
    let target = match cause {
        Cause::Reboot => {
            let mut p = mariadb::admin(&paths(&dir, &old.name), Duration::from_secs(5))?;
            let pos = mariadb::fence(&mut p, &creds)?;
            ev.push(format!(
                "primary {} is read-only and closed to clients",
                old.name
            ));
            pos
        }
        Cause::Unhealthy => mariadb::status(&mut standby)?.gtid_io_pos,
    };
    mariadb::wait_gtid(&mut standby, &target, Duration::from_secs(30))?;
    // A primary whose AZ is gone won't come back to acknowledge commits: until it does
    // (`drill restore`), commits don't wait for it (replication is asynchronous then,
    // as RDS's is while its standby is being replaced).
    let old_az = &r.lab.subnets[old.subnet].az;
    let old_gone = r.state.runtime.azs_down.contains(old_az);
    mariadb::promote(&mut standby, &creds, !old_gone)?;
    if old_gone {
        ev.push(format!(
            "{} replicates to nobody until {old_az} is back",
            new.name
        ));
    }
    super::state::State::modify(lab_name, |st| {
        st.runtime
            .primaries
            .insert(db.to_string(), new.name.clone());
        Ok(())
    })?;
    flip()?;
    ev.push(format!(
        "Multi-AZ instance failover completed: {} ({}) is the primary, the endpoint points at {}",
        new.name, r.lab.subnets[new.subnet].az, new.private_ip
    ));
    mariadb::forget_primary(&mut standby)?;
    Ok(())
}

/// Brings a former primary back as the standby of the current primary: restarted (it
/// was rebooted, or it crashed) and replicating with its own position demoted.
pub fn rejoin(lab_name: &str, db: &str, node: &str, ev: &mut Events) -> Result<()> {
    let r = super::running(Some(lab_name))?;
    let dir = super::state::dir(lab_name);
    let (primary, _) = roles(&r.lab, db)?;
    let d = r.lab.database(db).expect("checked by roles");
    let creds = credentials(d, &dir)?;
    stop_server(&r.state, node, Duration::from_secs(30))?;
    let p = start_server(&r.plan, &dir, node, true, hosts::live_template(&r.state))?;
    super::state::State::modify(lab_name, |st| {
        record(st, &p);
        Ok(())
    })?;
    let paths_ = paths(&dir, node);
    let mut c = mariadb::wait_ready(&paths_, p.pid, Duration::from_secs(30))?;
    mariadb::set_client_access(&mut c, &creds, false)?;
    mysql::prelude::Queryable::query_drop(&mut c, "SET GLOBAL read_only = 1")?;
    mariadb::replicate_from(&mut c, primary.private_ip, d.port, &creds, true)?;
    let mut pc = mariadb::admin(&paths(&dir, &primary.name), Duration::from_secs(5))?;
    mariadb::become_semi_sync_master(&mut pc)?;
    wait_replicating(&mut pc, &mut c, Duration::from_secs(30))?;
    ev.push(format!(
        "{node} rebooted and rejoined as the standby of {}",
        primary.name
    ));
    Ok(())
}

/// "Reboot" without failover: the primary restarts in place; writes stop until it is
/// back (an outage, no endpoint change).
pub fn reboot_in_place(lab_name: &str, db: &str, ev: &mut Events) -> Result<()> {
    let r = super::running(Some(lab_name))?;
    let dir = super::state::dir(lab_name);
    let (primary, standby) = match roles(&r.lab, db) {
        Ok((p, s)) => (p, Some(s)),
        Err(_) => (
            r.lab
                .database(db)
                .with_context(|| format!("no database `{db}`"))?
                .primary
                .clone(),
            None,
        ),
    };
    ev.push("Rebooting DB instance");
    stop_server(&r.state, &primary.name, Duration::from_secs(30))?;
    let p = start_server(
        &r.plan,
        &dir,
        &primary.name,
        false,
        hosts::live_template(&r.state),
    )?;
    super::state::State::modify(lab_name, |st| {
        record(st, &p);
        Ok(())
    })?;
    let mut c = mariadb::wait_ready(&paths(&dir, &primary.name), p.pid, Duration::from_secs(30))?;
    if let Some(s) = standby {
        mariadb::become_semi_sync_master(&mut c)?;
        // The standby reconnects by itself (connect retry 1 s); wait for it so the
        // first commits are semi-synchronous again.
        let mut sc = mariadb::admin(&paths(&dir, &s.name), Duration::from_secs(5))?;
        wait_replicating(&mut c, &mut sc, Duration::from_secs(15))?;
    }
    mysql::prelude::Queryable::query_drop(&mut c, "SET GLOBAL read_only = 0")?;
    ev.push("DB instance restarted");
    Ok(())
}
