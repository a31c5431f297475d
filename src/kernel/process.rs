//! Processes a lab started, known by pid *and* start time: a pid the kernel reused for
//! someone else's process is never mistaken for ours, so we never signal it.

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
    pub start_time: u64,
    pub node: String,
    pub what: String,
}

impl Proc {
    /// Records a process we just started.
    pub fn of(pid: i32, node: &str, what: &str) -> Result<Proc> {
        Ok(Proc {
            pid,
            start_time: start_time(pid).with_context(|| format!("read /proc/{pid}/stat"))?,
            node: node.into(),
            what: what.into(),
        })
    }

    /// Still the same process (not exited, not a zombie, pid not reused)?
    pub fn alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(s) => !s.exited() && s.start_time == self.start_time,
            None => false,
        }
    }
}

/// The two fields of /proc/PID/stat that vpclab needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z (zombie), X (dead), ...
    state: char,
    /// Field 22: the start time in clock ticks since boot.
    start_time: u64,
}

impl Stat {
    /// A process that exited but whose parent hasn't reaped it yet is as good as gone.
    fn exited(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses /proc/PID/stat. The comm field (2) may contain spaces and parentheses, so fields
/// are counted after its *last* closing parenthesis.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); start time is field 22, 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Start time of a process, or None when it no longer exists.
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// Gone, or a zombie waiting to be reaped.
fn exited(pid: i32) -> bool {
    read_stat(pid).is_none_or(|s| s.exited())
}

/// SIGTERM, a short grace period, then SIGKILL. Returns how many were signalled; what
/// could not be signalled is added to `failures`.
pub fn stop_all(pids: &[i32], failures: &mut Vec<String>) -> usize {
    let mut live: Vec<i32> = Vec::new();
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGTERM) {
            Ok(()) => live.push(pid),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => failures.push(format!("signal process {pid}: {e}")),
        }
    }
    let n = live.len();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !live.is_empty() && Instant::now() < deadline {
        live.retain(|pid| !exited(*pid));
        if !live.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for pid in live {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from /proc/PID/stat, with a comm that holds a space and a parenthesis.
    fn stat_line(comm: &str, state: char, start: u64) -> String {
        format!(
            "4242 ({comm}) {state} 1 4242 4242 0 -1 4194560 300 0 0 0 1 2 0 0 20 0 1 0 {start} 10000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn the_stat_line_is_read_after_the_last_parenthesis_of_comm() {
        let s = parse_stat(&stat_line("my (odd) prog", 'S', 987654)).unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                start_time: 987654
            }
        );
        assert!(!s.exited());
    }

    #[test]
    fn zombies_and_dead_processes_count_as_exited() {
        assert!(parse_stat(&stat_line("sshd", 'Z', 1)).unwrap().exited());
        assert!(parse_stat(&stat_line("sshd", 'X', 1)).unwrap().exited());
        assert!(!parse_stat(&stat_line("sshd", 'R', 1)).unwrap().exited());
    }

    #[test]
    fn a_truncated_stat_line_is_no_process() {
        assert_eq!(parse_stat("4242 (sshd) S 1 2 3"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn start_time_of_this_process_is_stable() {
        let me = std::process::id() as i32;
        let a = start_time(me).unwrap();
        assert!(a > 0);
        assert_eq!(start_time(me), Some(a));
        let p = Proc::of(me, "test", "test").unwrap();
        assert!(p.alive());
        let stale = Proc {
            start_time: a + 1,
            ..p
        };
        assert!(
            !stale.alive(),
            "a different start time is a different process"
        );
    }

    #[test]
    fn stopping_a_child_signals_it_and_waits_until_it_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Reap it as soon as it dies, as the supervisor does, so it doesn't linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        let mut failures = vec![];
        assert_eq!(stop_all(&[pid], &mut failures), 1);
        assert!(failures.is_empty(), "{failures:?}");
        assert!(!reaper.join().unwrap().unwrap().success());
        assert!(exited(pid));
    }
}
