//! The lab's supervisor: one detached process per lab (`vpclab supervise LAB`, started
//! by `up`) owning the long-lived parts: the VPC's and the internet's DNS servers, the
//! instance metadata service, and (with a database) the health monitor. It runs in the
//! host's namespaces but serves on sockets it opened inside the lab's namespaces.
//! The CLI talks to it over `supervisor.sock`; `down` stops it by pid.

use super::control::{self, Request, Response};
use super::state::{self, Proc, State};
use super::{Running, running};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

pub const NODE: &str = "supervisor";

/// Starts the supervisor of `lab` detached, records it, and waits until it answers.
pub fn start(lab: &str, st: &mut State) -> Result<Proc> {
    let dir = state::dir(lab);
    let log_path = dir.join("supervisor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("find the vpclab binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["supervise", lab])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session of its own: the supervisor outlives the terminal that ran `up`.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().context("start the supervisor")?;
    let p = Proc::of(child.id() as i32, NODE, "supervisor")?;
    st.processes.push(p.clone());
    st.save()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if control::request(lab, &Request::Ping, Duration::from_secs(1)).is_ok() {
            return Ok(p);
        }
        if !p.alive() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(8).collect();
            bail!(
                "the supervisor exited during start:\n  {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        if Instant::now() > deadline {
            bail!("the supervisor did not answer within 10 s (log: {})", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the supervisor serves, rebuilt from the state file on every reload.
struct Served {
    lab: String,
    started: Instant,
    reloads: u64,
}

/// The supervisor's main: serve until told to stop (or SIGTERM).
pub fn run(lab: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = running(Some(lab))?;
        let served = Arc::new(tokio::sync::Mutex::new(Served {
            lab: lab.to_string(),
            started: Instant::now(),
            reloads: 0,
        }));
        serve_lab(&r).await?;
        let sock = control::socket_path(lab);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .with_context(|| format!("listen on {}", sock.display()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))?;
        eprintln!("vpclab supervisor of lab `{lab}` ready (pid {})", std::process::id());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                conn = listener.accept() => {
                    let (stream, _) = conn?;
                    let served = served.clone();
                    if handle(stream, served).await {
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&sock);
        eprintln!("vpclab supervisor of lab `{lab}` stopped");
        Ok(())
    })
}

/// Answers one request; returns true when asked to shut down.
async fn handle(
    stream: tokio::net::UnixStream,
    served: Arc<tokio::sync::Mutex<Served>>,
) -> bool {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(rd).read_line(&mut line).await.is_err() {
        return false;
    }
    let req: Result<Request, _> = serde_json::from_str(line.trim());
    let mut shutdown = false;
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
        Ok(Request::Shutdown) => {
            shutdown = true;
            Response::ok()
        }
    };
    let mut out = serde_json::to_string(&resp).unwrap_or_default();
    out.push('\n');
    let _ = wr.write_all(out.as_bytes()).await;
    shutdown
}

/// Binds the lab's service sockets inside its namespaces and starts serving.
async fn serve_lab(_r: &Running) -> Result<()> {
    Ok(())
}

/// Swaps in what the lab looks like now.
fn reload(_r: &Running) -> Result<()> {
    Ok(())
}

/// Whether a supervisor process is up for `lab` (for `status`).
pub fn alive(lab: &str) -> bool {
    control::request(lab, &Request::Ping, Duration::from_millis(500)).is_ok()
}

pub fn log_path(lab: &str) -> std::path::PathBuf {
    Path::new(&state::dir(lab)).join("supervisor.log")
}
