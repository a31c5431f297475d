//! Named network namespaces, compatible with `ip netns` (/run/netns/NAME).
//!
//! A namespace is created on a dedicated thread: the thread unshares its network
//! namespace and bind-mounts it at /run/netns/NAME, so nothing forks and the calling
//! thread never leaves the host's namespace. Work "inside" a namespace likewise runs on a
//! short-lived thread that `setns`es first; sockets opened there (netlink, DNS, capture)
//! stay in that namespace after the thread is gone.

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Opens a namespace handle (for `setns` and for moving a veth end into it).
pub fn open(name: &str) -> Result<File> {
    File::open(path(name)).with_context(|| format!("open network namespace {name}"))
}

/// Creates namespace `name` and runs `init` inside it, on the creating thread.
pub fn create_and<T: Send>(name: &str, init: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::fs::create_dir_all(NETNS_DIR).context("create /run/netns")?;
    let p = path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .with_context(|| format!("create {} (does the namespace already exist?)", p.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare network namespace")?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mount the new namespace at {}", p.display()))?;
            init()
        })
        .join()
        .unwrap_or_else(|_| bail!("thread creating namespace {name} panicked"))
    })
    .inspect_err(|_| {
        // A namespace that failed half-way is removed here; `down` would find it too.
        let _ = delete(name);
    })
}

/// Runs `f` on a fresh thread inside namespace `ns` (an open handle).
pub fn run_in<T: Send>(ns: &File, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            setns(ns, CloneFlags::CLONE_NEWNET).context("enter network namespace")?;
            f()
        })
        .join()
        .unwrap_or_else(|_| bail!("thread inside a namespace panicked"))
    })
}

/// Runs `work(i)` inside namespace `names[i]` for every `i`, on at most `workers` threads
/// that each enter one namespace after another: a namespace costs a `setns`, not a thread,
/// and the namespaces are worked on side by side. The threads exist for this call only, so
/// none goes back to other work in a lab namespace. Results come back in `names`' order.
pub fn for_each<T: Send>(
    names: &[&str],
    workers: usize,
    work: impl Fn(usize) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    if names.is_empty() {
        return vec![];
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<T>>> = names.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers.clamp(1, names.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let entered = open(name).and_then(|ns| {
                            setns(&ns, CloneFlags::CLONE_NEWNET)
                                .with_context(|| format!("enter network namespace {name}"))
                        });
                        done.push((i, entered.and_then(|()| work(i))));
                    }
                    done
                })
            })
            .collect();
        for t in threads {
            // A thread that panicked leaves its namespaces without a result (below).
            for (i, r) in t.join().unwrap_or_default() {
                results[i] = Some(r);
            }
        }
    });
    results
        .into_iter()
        .zip(names)
        .map(|(r, name)| {
            r.unwrap_or_else(|| bail!("the thread working in namespace {name} panicked"))
        })
        .collect()
}

/// Moves the calling thread into namespace `ns` (an open handle) for the rest of its
/// life: for a long-lived thread started for work that all belongs in the namespace (the
/// supervisor's health monitor). The thread never moves back, so a thread that goes on to
/// other work (the main thread, a runtime's worker) must use `run_in` instead.
pub fn move_this_thread(ns: &File) -> Result<()> {
    Ok(setns(ns, CloneFlags::CLONE_NEWNET)?)
}

/// Removes a namespace's name. The kernel frees the namespace (and every link, address,
/// route and nftables table in it) when its last process and handle are gone.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmount {}", p.display())),
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", p.display())),
    }
}

/// Every namespace name under /run/netns.
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return vec![];
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The namespace's inode, which is how /proc/PID/ns/net names it.
pub fn inode(name: &str) -> Option<u64> {
    std::fs::metadata(path(name)).ok().map(|m| m.ino())
}

/// Processes whose network namespace is one of `inodes` (as `ip netns pids` finds them).
pub fn pids_in(inodes: &[u64]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id() as i32;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| inodes.contains(&m.ino()))
                .unwrap_or(false)
        })
        .collect()
}
