//! Names of kernel objects. The namespace name is the lab's owner tag: every namespace
//! of lab `handson` is `vpclab-handson.<node>`, so `down` finds them with or without the
//! state file and never touches another lab's. Lab names can't contain `.`, so one
//! lab's prefix is never the start of another's.

use crate::topology::aws::stable_hash;
use std::collections::HashSet;

/// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

pub fn namespace_prefix(lab: &str) -> String {
    format!("vpclab-{lab}.")
}

pub fn namespace_name(lab: &str, node: &str) -> String {
    format!("{}{node}", namespace_prefix(lab))
}

/// The lab a namespace belongs to, if it is a vpclab namespace.
pub fn lab_of_namespace(ns: &str) -> Option<(&str, &str)> {
    ns.strip_prefix("vpclab-")?.split_once('.')
}

/// Hands out interface names unique within one namespace, shortening long ones with a
/// stable hash suffix: `p-my-database-2c` becomes `p-my-data-3f2a`.
#[derive(Default)]
pub struct IfNames {
    taken: HashSet<String>,
}

impl IfNames {
    pub fn name(&mut self, prefix: &str, base: &str) -> String {
        let full = format!("{prefix}{base}");
        let mut candidate = if full.len() <= IFNAME_MAX {
            full
        } else {
            let keep = IFNAME_MAX - prefix.len() - 5;
            let short: String = base.chars().take(keep).collect();
            format!(
                "{prefix}{short}-{:04x}",
                stable_hash(&[prefix, base]) & 0xffff
            )
        };
        let mut n = 2;
        while self.taken.contains(&candidate) {
            let suffix = format!("{n}");
            candidate.truncate(IFNAME_MAX - suffix.len());
            candidate.push_str(&suffix);
            n += 1;
        }
        self.taken.insert(candidate.clone());
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_carry_the_lab() {
        assert_eq!(namespace_name("handson", "web"), "vpclab-handson.web");
        assert_eq!(
            lab_of_namespace("vpclab-handson.web"),
            Some(("handson", "web"))
        );
        assert_eq!(lab_of_namespace("vpclab-a-b.web"), Some(("a-b", "web")));
        assert_eq!(lab_of_namespace("other"), None);
        assert!(!namespace_name("a-b", "web").starts_with(&namespace_prefix("a")));
    }

    #[test]
    fn interface_names_fit_and_are_unique() {
        let mut n = IfNames::default();
        assert_eq!(n.name("p-", "web"), "p-web");
        let long = n.name("p-", "my-database-2c");
        assert!(long.len() <= IFNAME_MAX, "{long}");
        assert!(long.starts_with("p-my-data"));
        let long2 = n.name("p-", "my-database-2a");
        assert_ne!(long, long2);
        assert_eq!(n.name("p-", "web").len(), 6); // p-web taken: p-web2
        let mut m = IfNames::default();
        assert_eq!(m.name("p-", "my-database-2c"), long, "stable across runs");
    }
}
