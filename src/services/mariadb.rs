//! MariaDB servers playing RDS MySQL: each a container of its own (the node's network,
//! mount and UTS namespaces plus a PID namespace: `unshare --pid --fork --mount-proc`),
//! datadir, socket and config in the node's folder of the state dir.
//!
//! Replication stands in for RDS Multi-AZ: GTID, semi-synchronous with `AFTER_SYNC`
//! (a commit acknowledged to a client is on both servers), `log_slave_updates`. Real RDS
//! replicates storage blocks synchronously instead; the guarantee shown (no acknowledged
//! write lost on failover) is the same. Every server boots read-only, so a restart can
//! never make a second writable server; only promotion turns `read_only` off.

use anyhow::{Context, Result, bail};
use mysql::prelude::Queryable;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const MARIADBD: &str = "/usr/sbin/mariadbd";
/// The server's data is kept small so copying the template is quick.
const LOG_FILE_SIZE: &str = "8M";
/// Where the initialised datadir is kept between labs (created once per MariaDB
/// version; copying it takes milliseconds, initialising takes seconds).
pub const TEMPLATE_ROOT: &str = "/var/cache/vpclab";

pub struct Paths {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub cnf: PathBuf,
    pub error_log: PathBuf,
}

pub fn paths(host_dir: &Path) -> Paths {
    let dir = host_dir.join("mysql");
    Paths {
        data: dir.join("data"),
        socket: dir.join("mysqld.sock"),
        cnf: dir.join("my.cnf"),
        error_log: dir.join("error.log"),
        dir,
    }
}

fn version() -> Result<String> {
    let out = Command::new(MARIADBD)
        .arg("--version")
        .output()
        .context("run mariadbd --version (is mariadb-server installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    text.split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(|v| v.replace(['/', '+'], "_"))
        .context("unrecognised mariadbd --version output")
}

/// The initialised datadir to copy, created on first use (atomically: built in a
/// temporary folder, then renamed, so concurrent labs never see half of one). Labs that
/// come up at the same time on a fresh machine take turns under a lock: two bootstraps at
/// once trip over each other's temporary tables in the shared /tmp.
pub fn template() -> Result<PathBuf> {
    let dest = Path::new(TEMPLATE_ROOT).join(format!("mariadb-{}-template", version()?));
    if dest.join("mysql").is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(TEMPLATE_ROOT)?;
    let _lock = crate::kernel::lock::exclusive(&Path::new(TEMPLATE_ROOT).join(".template.lock"))?;
    // Whoever held the lock before us may have made it.
    if dest.join("mysql").is_dir() {
        return Ok(dest);
    }
    let tmp = Path::new(TEMPLATE_ROOT).join(format!(".template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", tmp.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=mysql",
            "--skip-name-resolve",
        ])
        .arg(format!("--innodb-log-file-size={LOG_FILE_SIZE}"))
        .output()
        .context("run mariadb-install-db")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("install {}", dest.display()))?;
    Ok(dest)
}

/// A fresh datadir for a node, copied from the template and owned by `mysql`.
pub fn prepare_datadir(p: &Paths, template: &Path) -> Result<()> {
    std::fs::create_dir_all(&p.dir)?;
    let _ = std::fs::remove_dir_all(&p.data);
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(template)
        .arg(&p.data)
        .output()
        .context("copy the template datadir")?;
    if !out.status.success() {
        bail!("cp: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let out = Command::new("chown")
        .args(["-R", "mysql:mysql"])
        .arg(&p.dir)
        .output()
        .context("chown the datadir")?;
    if !out.status.success() {
        bail!("chown: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn write_config(p: &Paths, server_id: u32, port: u16) -> Result<()> {
    let cnf = format!(
        "# written by vpclab\n\
         [mysqld]\n\
         datadir={data}\n\
         socket={sock}\n\
         pid-file={dir}/mysqld.pid\n\
         log-error={err}\n\
         port={port}\n\
         bind-address=0.0.0.0\n\
         skip-name-resolve=1\n\
         server-id={server_id}\n\
         log-bin=mysql-bin\n\
         relay-log=mysqld-relay-bin\n\
         log-slave-updates=1\n\
         binlog-format=ROW\n\
         gtid-strict-mode=1\n\
         # every server boots read-only; promotion is the only way to writable\n\
         read-only=1\n\
         # semi-sync master only on the primary (set when promoted): a standby applying\n\
         # events must not wait for acknowledgements from replicas it doesn't have\n\
         rpl-semi-sync-master-enabled=0\n\
         rpl-semi-sync-slave-enabled=1\n\
         rpl-semi-sync-master-wait-point=AFTER_SYNC\n\
         rpl-semi-sync-master-timeout=3000\n\
         innodb-log-file-size={LOG_FILE_SIZE}\n\
         innodb-buffer-pool-size=32M\n\
         innodb-temp-data-file-path=ibtmp1:1M:autoextend\n\
         performance-schema=0\n\
         max-connections=100\n",
        data = p.data.display(),
        sock = p.socket.display(),
        dir = p.dir.display(),
        err = p.error_log.display(),
    );
    std::fs::write(&p.cnf, cnf).with_context(|| format!("write {}", p.cnf.display()))?;
    std::fs::set_permissions(&p.cnf, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// The program and arguments that start a node's server in a PID namespace of its own
/// (mariadbd is PID 1 there). `as_standby` restarts a crashed former primary so that
/// recovery drops binlog transactions never acknowledged by the standby.
pub fn command(p: &Paths, as_standby: bool) -> (String, Vec<String>) {
    let mut args = vec![
        "--pid".into(),
        "--fork".into(),
        "--kill-child".into(),
        "--mount-proc".into(),
        MARIADBD.into(),
        format!("--defaults-file={}", p.cnf.display()),
        "--user=mysql".into(),
    ];
    if as_standby {
        args.push("--init-rpl-role=SLAVE".into());
    }
    ("unshare".into(), args)
}

/// The server process (host pid) of a node started through `unshare --fork`: its
/// child. Signals for the server go here; `unshare` itself ignores SIGTERM.
pub fn server_pid(wrapper: i32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// An administrative connection as root over the node's Unix socket (root exists only
/// at localhost, and the socket lives in the root-only state dir).
pub fn admin(p: &Paths, timeout: Duration) -> Result<mysql::Conn> {
    let opts = mysql::OptsBuilder::new()
        .socket(Some(p.socket.display().to_string()))
        .user(Some("root"))
        .prefer_socket(true)
        .read_timeout(Some(timeout))
        .write_timeout(Some(timeout));
    mysql::Conn::new(opts).with_context(|| format!("connect to {}", p.socket.display()))
}

/// Waits until the server accepts connections on its socket.
pub fn wait_ready(p: &Paths, wrapper: i32, timeout: Duration) -> Result<mysql::Conn> {
    let deadline = Instant::now() + timeout;
    loop {
        if p.socket.exists()
            && let Ok(c) = admin(p, Duration::from_secs(5))
        {
            return Ok(c);
        }
        if std::fs::metadata(format!("/proc/{wrapper}")).is_err() {
            let log = std::fs::read_to_string(&p.error_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            bail!(
                "mariadbd exited during start:\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "mariadbd did not accept connections within {timeout:?} ({})",
                p.error_log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The accounts of an RDS instance.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub master_user: String,
    pub master_password: String,
    pub app_user: String,
    pub app_password: String,
    pub repl_password: String,
    pub database: String,
}

/// A random password of letters and digits (no characters RDS forbids).
pub fn random_password(len: usize) -> Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Privileges of the RDS master user: broad, but neither SUPER nor READ_ONLY ADMIN,
/// so `read_only` stops it on a standby (as RDS's master user has no SUPER).
const MASTER_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, \
REFERENCES, INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, \
REPLICATION SLAVE, BINLOG MONITOR, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, \
CREATE USER, EVENT, TRIGGER";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Creates the accounts on one server without writing them to its binlog (each server
/// gets its own copy; nothing replicates that would clash). On a standby the client
/// accounts are locked: it serves no client reads or writes.
pub fn create_accounts(c: &mut mysql::Conn, cr: &Credentials, locked: bool) -> Result<()> {
    let lock = if locked { " ACCOUNT LOCK" } else { "" };
    let stmts = [
        "SET SESSION sql_log_bin = 0".to_string(),
        format!(
            "CREATE OR REPLACE USER {}@'%' IDENTIFIED BY {}{lock}",
            quote(&cr.master_user),
            quote(&cr.master_password)
        ),
        format!(
            "GRANT {MASTER_PRIVILEGES} ON *.* TO {}@'%' WITH GRANT OPTION",
            quote(&cr.master_user)
        ),
        format!(
            "CREATE OR REPLACE USER {}@'%' IDENTIFIED BY {}{lock}",
            quote(&cr.app_user),
            quote(&cr.app_password)
        ),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON `{}`.* TO {}@'%'",
            cr.database,
            quote(&cr.app_user)
        ),
        format!(
            "CREATE OR REPLACE USER 'repl'@'%' IDENTIFIED BY {}",
            quote(&cr.repl_password)
        ),
        "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'".to_string(),
        "SET SESSION sql_log_bin = 1".to_string(),
    ];
    for s in stmts {
        c.query_drop(&s)
            .with_context(|| s.split(" IDENTIFIED").next().unwrap_or(&s).to_string())?;
    }
    Ok(())
}

/// Locks or unlocks the client accounts (not replicated).
pub fn set_client_access(c: &mut mysql::Conn, cr: &Credentials, open: bool) -> Result<()> {
    let what = if open { "UNLOCK" } else { "LOCK" };
    c.query_drop("SET SESSION sql_log_bin = 0")?;
    for u in [&cr.master_user, &cr.app_user] {
        c.query_drop(format!("ALTER USER {}@'%' ACCOUNT {what}", quote(u)))?;
    }
    c.query_drop("SET SESSION sql_log_bin = 1")?;
    Ok(())
}

/// Ends every client session (replication threads and our own excepted), so clients
/// notice the change and reconnect through the endpoint.
pub fn kick_clients(c: &mut mysql::Conn, cr: &Credentials) -> Result<()> {
    let ids: Vec<u64> = c.query(format!(
        "SELECT id FROM information_schema.processlist WHERE user IN ({}, {})",
        quote(&cr.master_user),
        quote(&cr.app_user)
    ))?;
    for id in ids {
        let _ = c.query_drop(format!("KILL CONNECTION {id}"));
    }
    Ok(())
}

/// Makes a server the writable primary: it stops applying replicated events, becomes
/// a semi-sync master (commits wait for the standby's acknowledgement) if asked, lets
/// clients in and turns writes on. Its replication connection is dropped afterwards
/// by `forget_primary`: stopping the I/O thread can take seconds when the old primary
/// is unreachable, and nobody should wait for that.
pub fn promote(c: &mut mysql::Conn, cr: &Credentials, semi_sync: bool) -> Result<()> {
    c.query_drop("STOP SLAVE SQL_THREAD")?;
    if semi_sync {
        become_semi_sync_master(c)?;
    }
    set_client_access(c, cr, true)?;
    c.query_drop("SET GLOBAL read_only = 0")?;
    Ok(())
}

/// Ends a promoted server's replication from its former primary.
pub fn forget_primary(c: &mut mysql::Conn) -> Result<()> {
    c.query_drop("STOP SLAVE")?;
    c.query_drop("RESET SLAVE ALL")?;
    Ok(())
}

pub fn become_semi_sync_master(c: &mut mysql::Conn) -> Result<()> {
    c.query_drop("SET GLOBAL rpl_semi_sync_master_enabled = 1")?;
    Ok(())
}

/// Makes a server read-only and closes it to clients (first step of a planned
/// failover, and what every standby is). Returns its binlog GTID position.
pub fn fence(c: &mut mysql::Conn, cr: &Credentials) -> Result<String> {
    c.query_drop("SET GLOBAL read_only = 1")?;
    set_client_access(c, cr, false)?;
    kick_clients(c, cr)?;
    let pos: Option<String> = c.query_first("SELECT @@GLOBAL.gtid_binlog_pos")?;
    Ok(pos.unwrap_or_default())
}

/// Starts replicating from `primary`. `demote` turns a former primary's own binlog
/// position into its replication position (MariaDB's MASTER_DEMOTE_TO_SLAVE).
pub fn replicate_from(
    c: &mut mysql::Conn,
    primary: std::net::Ipv4Addr,
    port: u16,
    cr: &Credentials,
    demote: bool,
) -> Result<()> {
    c.query_drop("STOP SLAVE").ok();
    c.query_drop(format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER='repl', MASTER_PASSWORD={}, \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1{}",
        quote(&primary.to_string()),
        quote(&cr.repl_password),
        if demote { ", MASTER_DEMOTE_TO_SLAVE=1" } else { "" }
    ))
    .context("CHANGE MASTER TO")?;
    c.query_drop("START SLAVE")?;
    Ok(())
}

/// Waits until this server has applied everything up to GTID position `pos`.
pub fn wait_gtid(c: &mut mysql::Conn, pos: &str, timeout: Duration) -> Result<()> {
    if pos.is_empty() {
        return Ok(());
    }
    let r: Option<i64> = c.query_first(format!(
        "SELECT MASTER_GTID_WAIT({}, {})",
        quote(pos),
        timeout.as_secs_f64()
    ))?;
    match r {
        Some(0) => Ok(()),
        _ => bail!("did not reach GTID position {pos} within {timeout:?}"),
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeStatus {
    pub read_only: bool,
    pub gtid_binlog_pos: String,
    pub gtid_slave_pos: String,
    pub gtid_io_pos: String,
    pub replicating_from: Option<String>,
    pub io_running: bool,
    pub sql_running: bool,
    pub seconds_behind: Option<u64>,
    pub semi_sync_clients: u64,
}

pub fn status(c: &mut mysql::Conn) -> Result<NodeStatus> {
    let (ro, binlog, slave): (i64, String, String) = c
        .query_first(
            "SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos",
        )?
        .context("no answer")?;
    let mut s = NodeStatus {
        read_only: ro != 0,
        gtid_binlog_pos: binlog,
        gtid_slave_pos: slave,
        ..Default::default()
    };
    let rows: Vec<mysql::Row> = c.query("SHOW SLAVE STATUS")?;
    if let Some(row) = rows.into_iter().next() {
        let get = |name: &str| -> Option<String> {
            row.get_opt::<Option<String>, _>(name)
                .and_then(|r| r.ok())
                .flatten()
        };
        s.replicating_from = get("Master_Host").filter(|h| !h.is_empty());
        s.io_running = get("Slave_IO_Running").as_deref() == Some("Yes");
        s.sql_running = get("Slave_SQL_Running").as_deref() == Some("Yes");
        s.seconds_behind = get("Seconds_Behind_Master").and_then(|v| v.parse().ok());
        s.gtid_io_pos = get("Gtid_IO_Pos").unwrap_or_default();
    }
    let clients: Option<(String, String)> =
        c.query_first("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")?;
    s.semi_sync_clients = clients.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    Ok(s)
}
