//! OpenSSH on EC2-like hosts: the lab's key pairs (what the console's "Create key pair"
//! downloads), each host's own host key, and a key-only sshd for `ec2-user`.

use anyhow::{Context, Result};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use std::path::{Path, PathBuf};

/// Where `up` leaves key pair `name` of a lab: `<state>/keys/<name>.pem` (mode 0600).
pub fn key_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("keys").join(format!("{name}.pem"))
}

/// A new ed25519 key with no passphrase at `path` (mode 0600) and `path.pub`, in the
/// formats `ssh-keygen` writes. Made in-process: a lab of 1,000 instances needs 1,000 host
/// keys, and running `ssh-keygen` for each cost more than starting its sshd.
pub fn keygen(path: &Path, comment: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generate an ed25519 key")?;
    key.set_comment(comment);
    key.write_openssh_file(path, LineEnding::LF)
        .with_context(|| format!("write {}", path.display()))?;
    let public = PathBuf::from(format!("{}.pub", path.display()));
    key.public_key()
        .write_openssh_file(&public)
        .with_context(|| format!("write {}", public.display()))
}

/// Where the public half of the key at `private` is.
pub fn public_key_path(private: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", private.display()))
}

pub fn public_key(private: &Path) -> Result<String> {
    let p = public_key_path(private);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_key_openssh_reads() {
        let dir = std::env::temp_dir().join(format!("vpclab-keygen-{}", std::process::id()));
        let key = dir.join("k").join("host_key");
        keygen(&key, "root@web").unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "a private key must be readable by its owner only"
        );
        let public = public_key(&key).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert!(public.trim_end().ends_with(" root@web"), "{public}");
        // The real OpenSSH derives the same public key from the private file.
        let derived = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&key)
            .output();
        if let Ok(out) = derived {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let derived = String::from_utf8(out.stdout).unwrap();
            let field = |s: &str| s.split_whitespace().nth(1).unwrap().to_string();
            assert_eq!(field(&derived), field(&public));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
