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
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
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
    /// The mount namespace to copy instead of the caller's: the lab's template (see
    /// `mount_template`), a few mounts instead of one per network namespace.
    pub mount_template: Option<PathBuf>,
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
    template: Option<File>,
    /// The caller's working directory, entered again inside the template (joining a mount
    /// namespace moves the caller to its root).
    cwd: Option<CString>,
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
        let p = self.prepare()?;
        let mut cmd = Command::new(program);
        // SAFETY: `enter` only makes system calls on data prepared above.
        unsafe {
            cmd.pre_exec(move || enter(&p).map_err(std::io::Error::from));
        }
        Ok(cmd)
    }

    /// Starts a long-running program inside this node in a session of its own, stdin from
    /// /dev/null, stdout and stderr appended to `log`; returns its pid, which the caller
    /// reaps.
    ///
    /// `command` forks: the child gets a copy of the caller's page tables, and every page
    /// the caller then writes is copied again. Starting 2,000 servers that way spent most
    /// of `up`'s time copying vpclab's memory. Here the child borrows the caller's memory
    /// until it executes the program (`clone(CLONE_VM | CLONE_VFORK)`, what `posix_spawn`
    /// does), so the cost no longer depends on how big the caller is.
    pub fn spawn_service(&self, program: &Path, args: &[String], log: &File) -> Result<i32> {
        let program = &on_path(program)?;
        let mut p = self.prepare()?;
        p.detach = true;
        let argv: Vec<CString> = std::iter::once(cstring(program))
            .chain(
                args.iter()
                    .map(|a| CString::new(a.as_str()).context("NUL in an argument")),
            )
            .collect::<Result<_>>()?;
        let envp: Vec<CString> = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend(v.into_encoded_bytes());
                CString::new(kv).context("NUL in the environment")
            })
            .collect::<Result<_>>()?;
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        let devnull = File::open("/dev/null").context("open /dev/null")?;
        let (failed_r, failed_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("make a pipe")?;
        let io = [devnull.as_raw_fd(), log.as_raw_fd(), log.as_raw_fd()];
        let report = failed_w.as_raw_fd();
        let mut stack = vec![0u8; CHILD_STACK];
        let child: nix::sched::CloneCb = Box::new(|| {
            let e = start_in_child(&p, io, &argv_ptrs, &envp_ptrs);
            let code = (e as i32).to_ne_bytes();
            // SAFETY: writing 4 bytes from a live buffer to a pipe we own, then leaving
            // without running anything of the parent's (atexit handlers, destructors).
            unsafe {
                libc::write(report, code.as_ptr().cast(), code.len());
                libc::_exit(127)
            }
        });
        // SAFETY: CLONE_VFORK suspends this thread until the child has executed the
        // program or exited, so the child's stack, `p` and the argument arrays outlive it;
        // the child only makes system calls on data prepared above (no allocation: other
        // threads of ours may hold the allocator's lock), and without CLONE_SIGHAND it
        // resets its own copy of the signal handlers before anything can reach them.
        let pid = unsafe {
            nix::sched::clone(
                child,
                &mut stack,
                CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
                Some(libc::SIGCHLD),
            )
        }
        .with_context(|| format!("start {}", program.display()))?;
        drop(failed_w);
        let mut code = [0u8; 4];
        match nix::unistd::read(&failed_r, &mut code) {
            Ok(4) => {
                let _ = nix::sys::wait::waitpid(pid, None);
                let e = nix::errno::Errno::from_raw(i32::from_ne_bytes(code));
                Err(std::io::Error::from(e))
                    .with_context(|| format!("start {} on {}", program.display(), self.netns))
            }
            _ => Ok(pid.as_raw()),
        }
    }

    /// Everything a child needs to enter this node, made before it exists.
    fn prepare(&self) -> Result<Prepared> {
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
        let template = match &self.mount_template {
            Some(t) => Some(
                File::open(t)
                    .with_context(|| format!("open the mount template {}", t.display()))?,
            ),
            None => None,
        };
        let cwd = match (&template, std::env::current_dir()) {
            (Some(_), Ok(d)) => Some(cstring(&d)?),
            _ => None,
        };
        let p = Prepared {
            net,
            template,
            cwd,
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
        Ok(p)
    }
}

/// Where `program` is: itself when it names a path, else the first executable of that
/// name on $PATH (found before the child exists, which may not allocate to search).
fn on_path(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .with_context(|| {
            format!(
                "{} is not installed (not found on $PATH)",
                program.display()
            )
        })
}

/// The stack of a child started by `spawn_service`, until it executes the program.
const CHILD_STACK: usize = 256 * 1024;

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The child of `spawn_service`, sharing its parent's memory: default signal handling,
/// the node's namespaces, stdin/stdout/stderr, then the program. Returns only on failure.
fn start_in_child(
    p: &Prepared,
    io: [RawFd; 3],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> nix::errno::Errno {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    // Nothing of the parent's may run in here: block everything, put every handler back
    // to the default (this copy of the table is the child's own), and unblock just before
    // the program starts, which then sees what a freshly started program sees.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing the default disposition runs no code of ours.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
    if let Err(e) = enter(p) {
        return e;
    }
    for (target, fd) in io.into_iter().enumerate() {
        // SAFETY: duplicating descriptors the parent keeps open until we exec.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return nix::errno::Errno::last();
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: NUL-terminated strings in NULL-terminated arrays, alive until exec.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    nix::errno::Errno::last()
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
    if let Some(t) = &p.template {
        setns(t, CloneFlags::CLONE_NEWNS)?;
        if let Some(cwd) = &p.cwd {
            // A directory the template lacks leaves the program at /, as before `cd`.
            let _ = nix::unistd::chdir(cwd.as_c_str());
        }
    }
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
