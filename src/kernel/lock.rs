//! Exclusive file locks (flock) that decide which of several processes may act, or make
//! their changes take turns. The
//! kernel drops such a lock when its holder dies, SIGKILL included, so a waiter takes over
//! without anyone having to notice the death.

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An exclusive lock this process holds until it drops the value or exits.
#[derive(Debug)]
pub struct Held {
    _lock: Flock<File>,
}

/// Waits until this process holds the exclusive lock on `path` (created if missing).
/// `None` when, once the lock is ours, `path` names another file or none: the directory
/// was removed (and maybe made again) while we waited, so the lock guards nothing now.
pub fn wait_exclusive(path: &Path) -> Result<Option<Held>> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let lock = loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => break lock,
            Err((again, Errno::EINTR)) => file = again,
            Err((_, e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
    };
    let locked = lock
        .metadata()
        .with_context(|| format!("stat the lock on {}", path.display()))?;
    let still_there = std::fs::metadata(path)
        .is_ok_and(|now| now.dev() == locked.dev() && now.ino() == locked.ino());
    Ok(still_there.then_some(Held { _lock: lock }))
}

/// Waits for, and holds until dropped, the exclusive lock on `path`: for what several
/// processes change in turn (a lab's state file, the MariaDB template made once per machine).
pub fn exclusive(path: &Path) -> Result<Held> {
    wait_exclusive(path)?
        .with_context(|| format!("{} was removed while waiting for its lock", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vpclab-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_second_waiter_gets_the_lock_only_when_the_first_lets_go() {
        let dir = temp_dir("turns");
        let path = dir.join("x.lock");
        let first = wait_exclusive(&path).unwrap().expect("the file is there");
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let held = wait_exclusive(&p).unwrap();
            tx.send(()).unwrap();
            held
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "two holders at once"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the waiter takes the lock once it is free");
        assert!(waiter.join().unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_waiter_whose_file_was_replaced_meanwhile_holds_nothing() {
        let dir = temp_dir("replaced");
        let path = dir.join("x.lock");
        let first = wait_exclusive(&path).unwrap().expect("the file is there");
        let p = path.clone();
        let waiter = std::thread::spawn(move || wait_exclusive(&p).unwrap());
        // The kernel lists a blocked waiter with `->` before its lock line.
        let inode = format!(":{} ", std::fs::metadata(&path).unwrap().ino());
        let blocked = || {
            std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|l| l.contains("-> FLOCK") && l.contains(&inode))
        };
        for _ in 0..500 {
            if blocked() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(blocked(), "the waiter blocks on the old file");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        drop(first);
        assert!(waiter.join().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
