//! Sysctls of the calling thread's network namespace (/proc/sys/net is per namespace,
//! resolved when the file is opened).

use crate::plan::Sysctl;
use anyhow::{Context, Result};

fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Writes sysctls in the current thread's namespace. Keys of features the host kernel
/// doesn't have loaded (`net.bridge.*` without br_netfilter) are skipped: without the
/// feature there is nothing to switch off.
pub fn apply(sysctls: &[Sysctl]) -> Result<()> {
    for s in sysctls {
        let path = proc_path(&s.key);
        match std::fs::write(&path, &s.value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && optional(&s.key) => {}
            Err(e) => return Err(e).with_context(|| format!("set {} = {}", s.key, s.value)),
        }
    }
    Ok(())
}

fn optional(key: &str) -> bool {
    key.starts_with("net.bridge.")
}

/// Conntrack's sysctls appear once conntrack is in use in the namespace, so they are
/// written after the nftables ruleset.
pub fn after_firewall(s: &Sysctl) -> bool {
    s.key.starts_with("net.netfilter.")
}
