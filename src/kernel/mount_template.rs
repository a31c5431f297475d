//! A lab's template mount namespace: the starting point of every program the lab runs on
//! its hosts.
//!
//! A program entering a host gets a mount namespace of its own (see `enter`), and
//! `unshare(CLONE_NEWNS)` copies every mount of the namespace it is called from. The
//! host's namespace holds one mount per network namespace under /run/netns, so with
//! 1,000 instances each new program copied 1,000 mounts, joined their propagation groups,
//! and received every later netns mount and unmount by propagation: starting services grew
//! with the square of the instances, and so did `down`.
//!
//! The template is copied from the host's namespace once per lab, made private (no
//! propagation either way) and emptied of /run/netns. Programs then copy the template's
//! few mounts instead. A holder process (`sleep infinity`, in the lab's router namespace so
//! a `down` sweeping the lab's namespaces finds it too) keeps the template alive between
//! vpclab commands; it is recorded in the lab's state like the lab's other programs.

use super::netns;
use super::process::Proc;
use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the holder is recorded among the lab's programs.
pub const WHAT: &str = "mount-template";

/// The holder's program: it only has to exist.
const HOLDER: &str = "sleep";

/// The mount namespace file of a template held by `holder`.
pub fn path(holder: &Proc) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/mnt", holder.pid))
}

/// Makes a template mount namespace and starts its holder in network namespace `netns`
/// (a namespace of the lab's); returns the holder, recorded as `node`/[`WHAT`].
pub fn start(netns: &str, node: &str) -> Result<Proc> {
    let net = netns::open(netns)?;
    // A thread of our own enters the new namespaces, so the caller's stay as they are;
    // the holder, forked from that thread, inherits them.
    let child = std::thread::scope(|s| {
        s.spawn(|| -> Result<std::process::Child> {
            unshare(CloneFlags::CLONE_NEWNS).context("unshare a mount namespace")?;
            // Private: nothing the template or its copies mount reaches the host, and
            // nothing the host mounts later (other labs' namespaces) reaches them.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .context("make the template's mounts private")?;
            let mountinfo = std::fs::read_to_string("/proc/thread-self/mountinfo")
                .context("read the template's mounts")?;
            for m in netns_mounts(&mountinfo) {
                // EINVAL: already gone with a parent detached before it; ENOENT: another
                // lab's namespace, deleted since the listing was read.
                match umount2(m.as_path(), MntFlags::MNT_DETACH) {
                    Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("detach {}", m.display()));
                    }
                }
            }
            setns(&net, CloneFlags::CLONE_NEWNET).context("enter the lab's namespace")?;
            Command::new(HOLDER)
                .arg("infinity")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: a Ctrl-C in the terminal that ran `up` is not
                // meant for it.
                .process_group(0)
                .spawn()
                .context("start the mount template's holder (sleep, from coreutils)")
        })
        .join()
        .unwrap_or_else(|_| bail!("the thread making the mount template panicked"))
    })?;
    let pid = child.id() as i32;
    let record = Proc::of(pid, node, WHAT);
    // Reap it when it is stopped, so a long-lived parent leaves no zombie.
    let mut child = child;
    std::thread::spawn(move || child.wait());
    record
}

/// The mount points at or below /run/netns in a mountinfo listing, shallowest first:
/// detaching /run/netns (when it is a mount point, as `ip netns` makes it) takes the
/// namespaces' mounts with it.
fn netns_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let dir = Path::new(netns::NETNS_DIR);
    let mut v: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| p.components().count());
    v.dedup();
    v
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if b[i] == b'\\'
            && let Some(d) = octal
        {
            out.push(
                d.iter()
                    .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_netns_mounts_shallowest_first() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 22 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw
46 45 0:4 net:[4026532178] /run/netns/vpclab-a.vpc-router rw shared:2 - nsfs nsfs rw
47 45 0:4 net:[4026532247] /run/netns/with\\040space rw shared:3 - nsfs nsfs rw
48 22 0:5 / /run/netnsx rw - tmpfs tmpfs rw
49 22 0:6 / /proc rw - proc proc rw
";
        assert_eq!(
            netns_mounts(info),
            vec![
                PathBuf::from("/run/netns"),
                PathBuf::from("/run/netns/vpclab-a.vpc-router"),
                PathBuf::from("/run/netns/with space"),
            ]
        );
    }

    #[test]
    fn unescapes_octal_and_keeps_a_trailing_backslash() {
        assert_eq!(unescape("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape("end\\"), "end\\");
        assert_eq!(unescape("\\13"), "\\13");
    }
}
