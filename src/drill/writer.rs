//! The drill's writer: runs on an instance (inside its namespaces, so the endpoint is
//! resolved by the instance's own resolver, as an application would) and inserts
//! numbered rows through the endpoint until told to stop, reconnecting — and so
//! re-resolving the name — after every error. Each line it prints is one event:
//! `ack SEQ UNIX_MS` for a committed row, `err UNIX_MS MESSAGE` for a failure.

use anyhow::{Context, Result};
use mysql::prelude::Queryable;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const TABLE: &str = "vpclab_drill";

/// Reads `user`, `password` and `database` from a MySQL option file's `[client]`.
pub fn read_option_file(p: &Path) -> Result<(String, String, String)> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    let mut user = String::new();
    let mut password = String::new();
    let mut database = String::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "user" => user = v.trim().into(),
                "password" => password = v.trim().into(),
                "database" => database = v.trim().into(),
                _ => {}
            }
        }
    }
    Ok((user, password, database))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Writes until stdin closes.
pub fn run(host: &str, port: u16, option_file: &Path, run_id: u64, pause: Duration) -> Result<()> {
    let (user, password, database) = read_option_file(option_file)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(database))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_millis(500)))
        .read_timeout(Some(Duration::from_secs(1)))
        .write_timeout(Some(Duration::from_secs(1)));
    let mut out = std::io::stdout().lock();
    let mut conn: Option<mysql::Conn> = None;
    // Every attempt gets a new number: a row whose commit happened but whose
    // acknowledgement was lost must not collide with the retry.
    let mut seq: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match mysql::Conn::new(opts.clone()) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    writeln!(
                        out,
                        "err {} connect: {}",
                        now_ms(),
                        one_line(&e.to_string())
                    )?;
                    out.flush()?;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        seq += 1;
        let r = c.exec_drop(
            format!("INSERT INTO {TABLE} (run, seq, at) VALUES (?, ?, NOW(6))"),
            (run_id, seq),
        );
        match r {
            Ok(()) => writeln!(out, "ack {seq} {}", now_ms())?,
            Err(e) => {
                writeln!(out, "err {} insert: {}", now_ms(), one_line(&e.to_string()))?;
                conn = None;
            }
        }
        out.flush()?;
        std::thread::sleep(pause);
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
