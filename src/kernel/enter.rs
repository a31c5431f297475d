//! Starting a program "inside" a lab node, the way `ip netns exec` does it and then some:
//! the node's network namespace, a private mount namespace where the node's own files are
//! bind-mounted over the host's (/etc/resolv.conf, /etc/hosts, /etc/passwd, /home...),
//! /sys showing the node's interfaces, a private /run, and its own hostname (UTS
//! namespace). The host's files are never modified: the mounts live and die with the
//! program's mount namespace.

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a program started on a node sees.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    /// The node's network namespace name (under /run/netns).
    pub netns: String,
    /// Hostname for a new UTS namespace; `None` keeps the host's UTS namespace.
    pub hostname: Option<String>,
    /// `(source, target)` bind mounts over paths that exist on the host.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Give the node a fresh /run, like a machine of its own (sshd wants /run/sshd,
    /// MariaDB /run/mysqld), keeping one directory of the host's /run visible at the same
    /// path: the node's own folder in the lab's state dir.
    pub private_run: Option<PrivateRun>,
    /// Start a new session, so a long-running service outlives the terminal that
    /// started it.
    pub detach: bool,
}

#[derive(Debug, Clone)]
pub struct PrivateRun {
    /// Directories under /run that stay visible (same paths) inside the node.
    pub keep: Vec<PathBuf>,
    /// Directories created in the fresh /run (mode 0755, root).
    pub mkdirs: Vec<PathBuf>,
}

/// Everything the child needs, prepared before fork so the child only makes system
/// calls (another thread may hold the allocator's lock at fork time).
struct Prepared {
    net: File,
    hostname: Option<CString>,
    binds: Vec<(CString, CString)>,
    run: Option<Run>,
    detach: bool,
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).context("path contains a NUL byte")
}

/// The private /run: kept directories (each with the directories to recreate for it)
/// and extra directories to create.
struct Run {
    keep: Vec<(CString, Vec<CString>)>,
    mkdirs: Vec<CString>,
}

/// `/run/a/b` → [`/run/a`, `/run/a/b`]: the directories to create inside the new /run.
fn ancestors_below_run(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = p
        .ancestors()
        .filter(|a| a.starts_with("/run") && *a != Path::new("/run"))
        .map(Path::to_path_buf)
        .collect();
    v.reverse();
    v
}

impl HostEnv {
    /// A command that runs `program` inside this node.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let net = super::netns::open(&self.netns)?;
        let run = match &self.private_run {
            None => None,
            Some(r) => {
                anyhow::ensure!(
                    r.keep.len() <= MAX_KEEP,
                    "at most {MAX_KEEP} kept directories"
                );
                let mut keep = Vec::new();
                for k in &r.keep {
                    anyhow::ensure!(
                        k.starts_with("/run/"),
                        "the kept directory {} is not under /run",
                        k.display()
                    );
                    let dirs = ancestors_below_run(k)
                        .iter()
                        .map(|d| cstring(d))
                        .collect::<Result<Vec<_>>>()?;
                    keep.push((cstring(k)?, dirs));
                }
                let mkdirs = r.mkdirs.iter().map(|d| cstring(d)).collect::<Result<_>>()?;
                Some(Run { keep, mkdirs })
            }
        };
        let p = Prepared {
            net,
            hostname: self
                .hostname
                .as_deref()
                .map(CString::new)
                .transpose()
                .context("hostname contains a NUL byte")?,
            binds: self
                .binds
                .iter()
                .map(|(s, t)| Ok((cstring(s)?, cstring(t)?)))
                .collect::<Result<_>>()?,
            run,
            detach: self.detach,
        };
        let mut cmd = Command::new(program);
        // SAFETY: `enter` only makes system calls on data prepared above.
        unsafe {
            cmd.pre_exec(move || enter(&p).map_err(std::io::Error::from));
        }
        Ok(cmd)
    }
}

/// Kept directories are counted into a fixed array: the child may not allocate.
const MAX_KEEP: usize = 8;

// open_tree(2) and move_mount(2) flags (linux/mount.h).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn enter(p: &Prepared) -> nix::Result<()> {
    if p.detach {
        nix::unistd::setsid()?;
    }
    setns(&p.net, CloneFlags::CLONE_NEWNET)?;
    let mut flags = CloneFlags::CLONE_NEWNS;
    if p.hostname.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    unshare(flags)?;
    // Our mounts must never propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    // /sys of the new network namespace, so tools see the node's interfaces.
    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
        mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            MsFlags::empty(),
            None::<&str>,
        )?;
    }
    for (src, target) in &p.binds {
        mount(
            Some(src.as_c_str()),
            target.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
    }
    if let Some(run) = &p.run {
        // Detach copies of the kept directories, cover /run with a fresh tmpfs, then put
        // the copies back at their old paths inside it.
        let mut trees = [0 as libc::c_int; MAX_KEEP];
        for (i, (keep, _)) in run.keep.iter().enumerate() {
            // SAFETY: a plain system call with a NUL-terminated path owned by `p`.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    keep.as_ptr(),
                    OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
                )
            };
            trees[i] = nix::errno::Errno::result(fd)? as libc::c_int;
        }
        mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?;
        let mkdir = |d: &CString| -> nix::Result<()> {
            // SAFETY: a NUL-terminated path owned by `p`.
            let r = unsafe { libc::mkdir(d.as_ptr(), 0o755) };
            if r != 0 && nix::errno::Errno::last() != nix::errno::Errno::EEXIST {
                return Err(nix::errno::Errno::last());
            }
            Ok(())
        };
        for (i, (keep, dirs)) in run.keep.iter().enumerate() {
            for d in dirs {
                mkdir(d)?;
            }
            // SAFETY: `trees[i]` is an fd from open_tree; the path is owned by `p`.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    trees[i],
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    keep.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                )
            };
            nix::errno::Errno::result(r)?;
            // SAFETY: closing the fd we opened.
            unsafe { libc::close(trees[i]) };
        }
        for d in &run.mkdirs {
            mkdir(d)?;
        }
    }
    if let Some(h) = &p.hostname {
        let b = h.to_bytes();
        // SAFETY: a valid pointer and length into a CString owned by `p`.
        let r = unsafe { libc::sethostname(b.as_ptr().cast(), b.len()) };
        nix::errno::Errno::result(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_to_recreate_under_the_new_run() {
        assert_eq!(
            ancestors_below_run(Path::new("/run/vpclab/handson/hosts/web")),
            [
                "/run/vpclab",
                "/run/vpclab/handson",
                "/run/vpclab/handson/hosts",
                "/run/vpclab/handson/hosts/web"
            ]
            .map(PathBuf::from)
        );
    }
}
