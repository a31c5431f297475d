//! The CLI ↔ supervisor protocol: one JSON request per line on a Unix socket (mode
//! 0600, in the lab's state dir), one JSON response per line.

use super::state;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn socket_path(lab: &str) -> PathBuf {
    state::dir(lab).join("supervisor.sock")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Are you there? (and which pid)
    Ping,
    /// Re-read the state file: the lab changed (an instance stopped or started, a
    /// database failed over); rebuild DNS records and instance metadata.
    Reload,
    /// What the supervisor is doing.
    Status,
    /// Reboot a database's primary, with failover to the standby or in place.
    Reboot { database: String, failover: bool },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Free-form details (status).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Default::default()
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        }
    }
}

/// How long a standby may take to replace a supervisor that died, socket included.
pub const TAKEOVER: Duration = Duration::from_secs(2);

/// Connects to the supervisor's socket, trying again for `patience` while it is missing
/// or refuses connections (a standby may be taking over from a supervisor that died).
fn connect(path: &Path, patience: Duration) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + patience;
    loop {
        match UnixStream::connect(path) {
            Err(e)
                if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            done => return done,
        }
    }
}

/// Sends one request to a lab's supervisor and waits for its answer.
pub fn request(lab: &str, req: &Request, timeout: Duration) -> Result<Response> {
    exchange(lab, req, timeout, TAKEOVER)
}

/// What pinging the lab's supervisor found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The pid of the process that serves.
    Answered(u32),
    /// The socket is root's alone (mode 0600): a user may not ask.
    NotAllowed,
    NoAnswer,
}

/// Pings the lab's supervisor once, without waiting for a takeover: for callers that
/// watch the processes themselves while they poll.
pub fn ping(lab: &str) -> Ping {
    match exchange(lab, &Request::Ping, Duration::from_secs(1), Duration::ZERO) {
        Ok(Response { pid: Some(pid), .. }) => Ping::Answered(pid),
        Err(e)
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == ErrorKind::PermissionDenied) =>
        {
            Ping::NotAllowed
        }
        _ => Ping::NoAnswer,
    }
}

fn exchange(lab: &str, req: &Request, timeout: Duration, patience: Duration) -> Result<Response> {
    let path = socket_path(lab);
    let mut s = connect(&path, patience).with_context(|| {
        format!(
            "the supervisor of lab `{lab}` does not answer at {}\n  hint: `vpclab status {lab}` shows whether it is running; `sudo vpclab down {lab}` and `up` restart the lab",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .context("read the supervisor's answer")?;
    let r: Response = serde_json::from_str(answer.trim())
        .with_context(|| format!("the supervisor's answer is not understood: {answer:?}"))?;
    if !r.ok {
        bail!(
            "the supervisor of lab `{lab}`: {}",
            r.error.as_deref().unwrap_or("failed")
        );
    }
    Ok(r)
}
