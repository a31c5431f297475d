//! Starting a program "inside" a lab node, the way `ip netns exec` does it and then some:
//! the node's network namespace, a private mount namespace where the node's own
//! /etc/resolv.conf, /etc/hosts (and for EC2-like hosts more files) are bind-mounted over
//! the host's, /sys showing the node's interfaces, and its own hostname (UTS namespace).
//! The host's files are never modified: the mounts live and die with the program's
//! mount namespace.

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::ffi::CString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// What a program started on a node sees.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    /// The node's network namespace name (under /run/netns).
    pub netns: String,
    /// Hostname for a new UTS namespace; `None` keeps the host's UTS namespace.
    pub hostname: Option<String>,
    /// `(source, target)` bind mounts made in the program's private mount namespace.
    pub binds: Vec<(PathBuf, PathBuf)>,
}

struct Prepared {
    net: File,
    hostname: Option<CString>,
    binds: Vec<(CString, CString)>,
}

fn cstring(p: &std::path::Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).context("path contains a NUL byte")
}

impl HostEnv {
    /// A command that runs `program` inside this node. Everything the child needs is
    /// prepared here, before fork, so the child only makes system calls.
    pub fn command(&self, program: &str) -> Result<Command> {
        let net = super::netns::open(&self.netns)?;
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
        };
        let mut cmd = Command::new(program);
        unsafe {
            cmd.pre_exec(move || enter(&p).map_err(std::io::Error::from));
        }
        Ok(cmd)
    }
}

/// Runs in the forked child before exec: only system calls, no allocation (another
/// thread may have held the allocator's lock at fork time).
fn enter(p: &Prepared) -> nix::Result<()> {
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
    if let Some(h) = &p.hostname {
        let b = h.to_bytes();
        // SAFETY: a valid pointer and length into a CString owned by `p`.
        let r = unsafe { libc::sethostname(b.as_ptr().cast(), b.len()) };
        nix::errno::Errno::result(r)?;
    }
    Ok(())
}
