//! The `ec2-user` account of an EC2-like host, without touching the host's users: copies
//! of /etc/passwd, /etc/group and /etc/shadow with one more line each, bind-mounted over
//! the originals inside the node's mount namespace only.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

pub const USER: &str = "ec2-user";

#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Picks a uid/gid free on this host (from 1000 up), the same for every node of a lab.
pub fn pick_ids() -> Result<Account> {
    let used = |file: &str| -> Result<HashSet<u32>> {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect())
    };
    let uids = used("/etc/passwd")?;
    let gids = used("/etc/group")?;
    let id = (1000..60000)
        .find(|n| !uids.contains(n) && !gids.contains(n))
        .context("no free uid/gid between 1000 and 60000")?;
    Ok(Account { uid: id, gid: id })
}

/// The host's passwd, group and shadow plus ec2-user (no password: it logs in with the
/// key pair only), as (file name, text, mode); made once per lab, written per host.
pub fn account_files(a: Account) -> Result<Vec<(&'static str, String, u32)>> {
    let add = |src: &str, line: String| -> Result<String> {
        let mut t = std::fs::read_to_string(src).with_context(|| format!("read {src}"))?;
        if !t.ends_with('\n') && !t.is_empty() {
            t.push('\n');
        }
        t.push_str(&line);
        t.push('\n');
        Ok(t)
    };
    Ok(vec![
        (
            "passwd",
            add(
                "/etc/passwd",
                format!(
                    "{USER}:x:{}:{}:EC2 Default User:/home/{USER}:/bin/bash",
                    a.uid, a.gid
                ),
            )?,
            0o644,
        ),
        (
            "group",
            add("/etc/group", format!("{USER}:x:{}:", a.gid))?,
            0o644,
        ),
        (
            "shadow",
            add("/etc/shadow", format!("{USER}:*:20000:0:99999:7:::"))?,
            0o640,
        ),
    ])
}

/// Writes the account files into `dir`.
pub fn write_account_files(dir: &Path, files: &[(&str, String, u32)]) -> Result<()> {
    for (name, text, mode) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Creates `/home/ec2-user` (in the node's own /home) with the key pair's public key as
/// its only authorized key, owned and moded as sshd's StrictModes wants.
pub fn write_home(home_root: &Path, a: Account, authorized_key: &str) -> Result<()> {
    let home = home_root.join(USER);
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).with_context(|| format!("create {}", ssh.display()))?;
    std::fs::set_permissions(home_root, std::fs::Permissions::from_mode(0o755))?;
    let keys = ssh.join("authorized_keys");
    std::fs::write(&keys, authorized_key).with_context(|| format!("write {}", keys.display()))?;
    std::fs::write(
        home.join(".bash_profile"),
        "PS1='[\\u@\\h \\W]\\$ '\nexport PS1\n",
    )?;
    for (p, mode) in [(&home, 0o700), (&ssh, 0o700), (&keys, 0o600)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
        chown(p, Some(a.uid), Some(a.gid)).with_context(|| format!("chown {}", p.display()))?;
    }
    chown(home.join(".bash_profile"), Some(a.uid), Some(a.gid))?;
    Ok(())
}
