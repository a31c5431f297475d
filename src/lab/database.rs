//! RDS Multi-AZ instances of a lab: bringing the pair up, and what failover does.
//! The SQL is in `services::mariadb`; this layer decides which server does what.

use super::hosts::{self, host_dir};
use super::state::{Proc, State};
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

/// Starts a node's server (detached, recorded in the state file before anything waits
/// on it).
pub fn start_server(
    plan: &Plan,
    state_dir: &Path,
    node: &str,
    as_standby: bool,
    st: &mut State,
) -> Result<Proc> {
    let p = paths(state_dir, node);
    let (program, args) = mariadb::command(&p, as_standby);
    let spec = services::Spec {
        node: node.into(),
        what: WHAT,
        program,
        args,
        ports: vec![],
    };
    let env = hosts::env(plan, state_dir, node)?;
    let proc_ = services::start(&spec, &env, state_dir)?;
    st.processes.retain(|x| !(x.node == node && x.what == WHAT));
    st.processes.push(proc_.clone());
    st.save()?;
    Ok(proc_)
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
            j.join().unwrap_or_else(|_| bail!("preparing a datadir panicked"))?;
        }
        Ok(())
    })?;
    let mut wrappers = Vec::new();
    for n in &nodes {
        wrappers.push(start_server(plan, state_dir, &n.name, false, st)?);
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
            .map(|j| j.join().unwrap_or_else(|_| bail!("waiting for mariadbd panicked")))
            .collect::<Result<Vec<_>>>()
    })?;

    let (primary, rest) = conns.split_first_mut().expect("a database has a primary");
    mariadb::create_accounts(primary, &creds, false)?;
    if let Some(standby) = rest.first_mut() {
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
