//! The account's labs as the EC2 API sees them, and the one way a call changes one: the
//! lab's desired model is edited, written as a lab file, validated exactly like a file
//! (`check_keeping`, so objects keep their addresses) and applied by `lab::apply`.
//! Validation errors become AWS's error codes (`diagnostic_error`).

use super::account::{Account, write_atomic};
use super::error::{ApiError, ApiResult};
use super::query::{Filter, Params};
use super::xml::X;
use crate::lab::{self, Running, state};
use crate::plan::aws_id;
use crate::topology::{self, InternetHost, Lab, Loaded, Source, export};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

pub struct Service {
    pub account: Account,
    /// The internet every VPC the API makes gets (the built-in lab's, or `--internet`'s).
    pub internet: Vec<InternetHost>,
    /// The 12-digit account number answers show as `ownerId`.
    pub owner_id: String,
    /// Each running lab as last read, with the stamp of the state file it was read from.
    /// Reading a lab means validating its text and compiling its plan, milliseconds for
    /// the built-in lab and far more for big ones, and every Describe looks at every lab;
    /// every change of a lab (an apply, a stop, a `vpclab` command run beside serve)
    /// writes its state file anew, so an unchanged stamp means an unchanged lab.
    read: RefCell<HashMap<String, (Stamp, Arc<Running>)>>,
}

/// What identifies one version of a state file: it is replaced by a rename on every
/// save, so its inode changes with its times and size.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(lab: &str) -> Option<Stamp> {
        let m = std::fs::metadata(state::file(lab)).ok()?;
        Some(Stamp {
            inode: m.ino(),
            size: m.size(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// What a call is answered with: the members of `<ActionResponse>`.
pub type Answer = ApiResult<X>;

/// `<return>true</return>`, the answer of calls that return nothing else.
pub fn ok() -> X {
    X::new("body").text("return", "true")
}

pub fn dry_run_error() -> ApiError {
    ApiError {
        status: 412,
        ..ApiError::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        )
    }
}

pub fn vpc_id(lab: &Lab) -> String {
    aws_id("vpc", &lab.name, &lab.vpc.name)
}

impl Service {
    pub fn new(account: Account, internet: Vec<InternetHost>) -> Service {
        let h = topology::aws::stable_hash(&[&account.credentials.access_key]);
        Service {
            account,
            internet,
            owner_id: format!("{:012}", h % 1_000_000_000_000),
            read: RefCell::new(HashMap::new()),
        }
    }

    /// Every lab up on this machine in `region`, however it was made.
    pub fn labs(&self, region: &str) -> Vec<Arc<Running>> {
        let names = state::labs();
        let mut read = self.read.borrow_mut();
        read.retain(|name, _| names.contains(name));
        names
            .iter()
            .filter_map(|name| {
                let stamp = Stamp::of(name)?;
                if let Some((s, r)) = read.get(name)
                    && *s == stamp
                {
                    return Some(r.clone());
                }
                let r = Arc::new(lab::running(Some(name)).ok()?);
                // A state file replaced while it was read is read again next time.
                if Stamp::of(name) == Some(stamp) {
                    read.insert(name.clone(), (stamp, r.clone()));
                }
                Some(r)
            })
            .filter(|r| r.file_lab.region == region)
            .collect()
    }

    /// The lab whose object `matches`, with what it found.
    pub fn find<T>(
        &self,
        region: &str,
        matches: impl Fn(&Running) -> Option<T>,
    ) -> Option<(Arc<Running>, T)> {
        self.labs(region)
            .into_iter()
            .find_map(|r| matches(&r).map(|t| (r, t)))
    }

    pub fn vpc(&self, region: &str, id: &str) -> ApiResult<Arc<Running>> {
        self.find(region, |r| (vpc_id(&r.file_lab) == id).then_some(()))
            .map(|(r, _)| r)
            .ok_or_else(|| ApiError::not_found("InvalidVpcID.NotFound", "vpc", id))
    }

    /// The tags of resource `id`, named `name` in its lab: the recorded ones, or `Name`
    /// as the lab file names it when nothing was recorded (a lab made from a file).
    pub fn tags(&self, id: &str, name: &str) -> BTreeMap<String, String> {
        match self.account.tags_of(id) {
            Some(t) => t.clone(),
            None if name != id && !name.is_empty() => {
                BTreeMap::from([("Name".to_string(), name.to_string())])
            }
            None => BTreeMap::new(),
        }
    }

    pub fn tag_set(&self, id: &str, name: &str) -> Vec<X> {
        self.tags(id, name)
            .into_iter()
            .map(|(k, v)| X::new("item").text("key", k).text("value", v))
            .collect()
    }

    /// Records tags given at creation.
    pub fn set_tags(&mut self, id: &str, tags: &[(String, String)]) {
        if tags.is_empty() {
            return;
        }
        let t = self.account.data.tags.entry(id.to_string()).or_default();
        for (k, v) in tags {
            t.insert(k.clone(), v.clone());
        }
    }

    /// Changes the lab `r` with `edit`, then makes the running lab match: the one path.
    /// With `dry_run`, the edited lab is validated and nothing else happens.
    pub fn change<T>(
        &mut self,
        r: &Running,
        dry_run: bool,
        edit: impl FnOnce(&mut Lab) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut desired = r.file_lab.clone();
        let out = edit(&mut desired)?;
        let name = desired.name.clone();
        let owned = self.account.data.labs.contains(&name);
        let source = self.source(&name);
        let text = export::to_yaml(&desired);
        let (checked, warnings) =
            topology::check_keeping(&text, &source, Some(&name), &r.state.allocations);
        let Some(checked) = checked else {
            return Err(diagnostic_error(&warnings));
        };
        if dry_run {
            return Err(dry_run_error());
        }
        self.stage_key_pairs(&checked)?;
        if owned {
            write_atomic(&self.account.lab_file(&name), text.as_bytes())
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        }
        let loaded = Loaded {
            lab: checked,
            warnings,
            source,
            text,
        };
        lab::apply::apply(&loaded, false).map_err(|e| {
            if let Some(refused) = e.downcast_ref::<lab::apply::Refused>() {
                ApiError::invalid(refused.to_string().trim().to_string())
            } else {
                ApiError::internal(format!(
                    "{e:#}\n(the change is recorded; `sudo vpclab repair {name}` completes it)"
                ))
            }
        })?;
        Ok(out)
    }

    /// How a lab's state names where it came from.
    pub fn source(&self, lab: &str) -> Source {
        if self.account.data.labs.contains(lab) {
            Source::File(self.account.lab_file(lab))
        } else {
            Source::File("vpclab serve (EC2 API)".into())
        }
    }

    /// Puts the account's key pairs that `lab` uses into the lab's state dir, where the
    /// lab looks for them, so instances trust the key CreateKeyPair handed out.
    pub fn stage_key_pairs(&self, lab: &Lab) -> ApiResult<()> {
        let dir = state::dir(&lab.name);
        if !dir.exists() {
            return Ok(());
        }
        for k in &lab.key_pairs {
            let from = self.account.key_file(k);
            let to = crate::services::ssh::key_path(&dir, k);
            let public = crate::services::ssh::public_key_path;
            if !public(&from).exists() || public(&to).exists() {
                continue;
            }
            // An imported key pair has no private half here: the caller holds it.
            let copy = || -> anyhow::Result<()> {
                std::fs::create_dir_all(to.parent().expect("a key path has a folder"))?;
                if from.exists() {
                    std::fs::copy(&from, &to)?;
                }
                std::fs::copy(public(&from), public(&to))?;
                Ok(())
            };
            copy().map_err(|e| ApiError::internal(format!("stage key pair {k}: {e:#}")))?;
        }
        Ok(())
    }

    /// Brings back every lab of the account that is not up (after a reboot, or a
    /// `down`), from its recorded file and with the same IDs: the network first, then,
    /// with the account's key pairs in place, its instances, by the usual apply. A lab
    /// whose state an interrupted call left half-changed is finished by `repair`.
    /// Returns a line per lab for the log.
    pub fn restore(&self) -> Vec<String> {
        let mut log = Vec::new();
        for name in self.account.data.labs.clone() {
            let result = (|| -> anyhow::Result<Option<String>> {
                if let Some(st) = state::State::load(&name)? {
                    if st.applying {
                        crate::lab::repair::repair(Some(&name))?;
                        return Ok(Some(format!(
                            "lab `{name}`: finished a change a crash interrupted"
                        )));
                    }
                    return Ok(None);
                }
                let loaded = topology::load(self.source(&name), Some(&name))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut network = loaded.lab.clone();
                network.instances.clear();
                network.key_pairs.clear();
                let text = export::to_yaml(&network);
                let (lab, warnings) = topology::check(&text, &loaded.source, Some(&name));
                let lab = lab.ok_or_else(|| anyhow::anyhow!("{}", warnings.render(&name)))?;
                super::actions::network::bring_up(&Loaded {
                    lab,
                    warnings,
                    source: loaded.source.clone(),
                    text,
                })?;
                self.stage_key_pairs(&loaded.lab)?;
                lab::apply::apply(&loaded, false)?;
                Ok(Some(format!(
                    "lab `{name}` is up again from {}",
                    self.account.lab_file(&name).display()
                )))
            })();
            match result {
                Ok(Some(line)) => log.push(line),
                Ok(None) => {}
                Err(e) => log.push(format!("lab `{name}` could not be brought back: {e:#}")),
            }
        }
        log
    }

    pub fn save(&self) -> ApiResult<()> {
        self.account.save()
    }
}

/// The AWS error a validation message stands for. The validator's words are AWS's rules,
/// so its first error, with its hint, is the message.
pub fn diagnostic_error(d: &topology::Diagnostics) -> ApiError {
    let Some(e) = d.errors().next() else {
        return ApiError::internal("the lab did not validate, without an error");
    };
    let m = &e.message;
    let code =
        if m.starts_with("VPC CIDR") && (m.contains("larger than") || m.contains("smaller than")) {
            "InvalidVpc.Range"
        } else if m.starts_with("subnet CIDR")
            && (m.contains("larger than") || m.contains("smaller than"))
            || m.contains("is not inside the VPC CIDR")
        {
            "InvalidSubnet.Range"
        } else if m.contains("overlaps subnet") {
            "InvalidSubnet.Conflict"
        } else if m.starts_with("private IP") && m.contains("already used") {
            "InvalidIPAddress.InUse"
        } else {
            "InvalidParameterValue"
        };
    match &e.hint {
        Some(h) => ApiError::new(code, format!("{m} ({h})")),
        None => ApiError::new(code, m.clone()),
    }
}

/// Keeps the items every filter matches; `value_of(filter name)` gives an item's values
/// for that filter (`None`: a filter this item kind does not know, an error as on AWS).
pub fn filtered<T>(
    items: Vec<T>,
    filters: &[Filter],
    value_of: impl Fn(&T, &str) -> Option<Vec<String>>,
) -> ApiResult<Vec<T>> {
    let mut out = Vec::new();
    'items: for item in items {
        for f in filters {
            let Some(values) = value_of(&item, &f.name) else {
                return Err(ApiError::invalid(format!(
                    "The filter '{}' is invalid",
                    f.name
                )));
            };
            if !values.iter().any(|v| f.matches(v)) {
                continue 'items;
            }
        }
        out.push(item);
    }
    Ok(out)
}

/// The values of the tag filters every Describe knows: `tag:KEY`, `tag-key`, `tag-value`.
pub fn tag_filter(tags: &BTreeMap<String, String>, filter: &str) -> Option<Vec<String>> {
    if let Some(key) = filter.strip_prefix("tag:") {
        return Some(tags.get(key).cloned().into_iter().collect());
    }
    match filter {
        "tag-key" => Some(tags.keys().cloned().collect()),
        "tag-value" => Some(tags.values().cloned().collect()),
        _ => None,
    }
}

/// IDs a Describe call asks for (`VpcId.1`, ...); an empty list means all.
pub fn wanted(p: &Params, key: &str) -> Vec<String> {
    p.list(key)
}

/// Checks that every asked-for ID was found, as AWS does (one missing ID fails the call).
pub fn all_found(asked: &[String], found: &[String], code: &str, what: &str) -> ApiResult<()> {
    match asked.iter().find(|a| !found.contains(a)) {
        Some(missing) => Err(ApiError::not_found(code, what, missing)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{BUILTIN_YAML, check};

    fn first_error(from: &str, to: &str) -> ApiError {
        let (lab, d) = check(&BUILTIN_YAML.replace(from, to), &Source::Builtin, None);
        assert!(lab.is_none());
        diagnostic_error(&d)
    }

    #[test]
    fn validation_errors_become_aws_codes() {
        let e = first_error("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/12");
        assert_eq!(e.code, "InvalidVpc.Range");
        let e = first_error("cidr: 10.0.1.0/24", "cidr: 10.0.0.128/25");
        assert_eq!(e.code, "InvalidSubnet.Conflict");
        let e = first_error("cidr: 10.0.1.0/24", "cidr: 10.1.1.0/24");
        assert_eq!(e.code, "InvalidSubnet.Range", "{e}");
        let e = first_error("private_ip: 10.0.1.101", "private_ip: 10.0.1.64");
        assert_eq!(e.code, "InvalidIPAddress.InUse", "{e}");
    }
}
