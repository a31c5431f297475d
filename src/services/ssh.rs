//! OpenSSH on EC2-like hosts: the lab's key pairs (what the console's "Create key pair"
//! downloads), each host's own host key, and a key-only sshd for `ec2-user`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `up` leaves key pair `name` of a lab: `<state>/keys/<name>.pem` (mode 0600).
pub fn key_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("keys").join(format!("{name}.pem"))
}

/// `ssh-keygen` for an ed25519 key with no passphrase at `path` (and `path.pub`).
pub fn keygen(path: &Path, comment: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .context("run ssh-keygen (is openssh-client installed?)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen for {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn public_key(private: &Path) -> Result<String> {
    let p = PathBuf::from(format!("{}.pub", private.display()));
    std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
}

/// The host's sshd: key-only login for ec2-user, no PAM (so nothing of the host's
/// login stack is involved), host key and logs in the node's own folder.
pub fn sshd_config(ssh_dir: &Path) -> String {
    format!(
        "# written by vpclab\n\
         Port 22\n\
         ListenAddress 0.0.0.0\n\
         HostKey {key}\n\
         PidFile none\n\
         AuthorizedKeysFile .ssh/authorized_keys\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         AllowUsers ec2-user\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         StrictModes yes\n\
         Subsystem sftp internal-sftp\n",
        key = ssh_dir.join("ssh_host_ed25519_key").display()
    )
}

/// sshd must be started by absolute path (it re-executes itself per connection).
pub const SSHD: &str = "/usr/sbin/sshd";

pub fn sshd_args(ssh_dir: &Path) -> Vec<String> {
    vec![
        "-D".into(),
        "-e".into(),
        "-f".into(),
        ssh_dir.join("sshd_config").display().to_string(),
    ]
}

/// Where the lab's known_hosts lives: next to the key pairs, which every host sees.
pub fn known_hosts_path(state_dir: &Path) -> PathBuf {
    state_dir.join("keys").join("known_hosts")
}

/// The public half of a host's sshd key, in the node's folder `host_dir`.
pub fn host_public_key(host_dir: &Path) -> PathBuf {
    host_dir.join("ssh").join("ssh_host_ed25519_key.pub")
}

/// One known_hosts line: a host key under all of the host's names.
pub fn known_hosts_line(names: &[String], public_key: &str) -> String {
    let key: Vec<&str> = public_key.split_whitespace().take(2).collect();
    format!("{} {}\n", names.join(","), key.join(" "))
}

/// The OpenSSH client's arguments for logging in as ec2-user with a lab key: no user
/// config, strict host key checking against the lab's known_hosts, no prompts.
pub fn client_args(
    key: &Path,
    known_hosts: &Path,
    timeout: std::time::Duration,
    host: &str,
    command: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "ssh".into(),
        "-F".into(),
        "none".into(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("ConnectTimeout={}", timeout.as_secs().max(1)),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
        format!("ec2-user@{host}"),
    ];
    v.extend(command.iter().map(|c| c.to_string()));
    v
}
