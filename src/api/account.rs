//! The account `vpclab serve` is: its root access keys and what the EC2 API knows that no
//! lab file holds (tags, key pairs, Elastic IPs not yet in a VPC, detached internet
//! gateways, instances' image and type, terminated instances, subnets' launch setting).
//! Everything is written whole to a temp file and renamed over the old one, so a crash
//! never leaves half a file. The labs themselves are the desired model: each VPC the API
//! made has its lab file in `labs/`, which is what a restart brings back up.

use super::error::{ApiError, ApiResult};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the account lives unless `serve --state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vpclab";
/// The shared-credentials profile the keys are written under.
pub const PROFILE: &str = "vpclab-root";

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret: String,
}

/// An Elastic IP the account holds; `lab` is the VPC it is in use in, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub lab: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPair {
    pub id: String,
    pub fingerprint: String,
    pub key_type: String,
    pub created: i64,
}

/// What RunInstances was told about an instance that the lab does not model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub image_id: String,
    pub instance_type: String,
    pub launch_time: i64,
    #[serde(default)]
    pub user_data: Option<String>,
    /// Launched with a public IP (asked for, or its subnet's MapPublicIpOnLaunch): as on
    /// AWS, it gets a new one when an Elastic IP is disassociated from it.
    #[serde(default)]
    pub public_ip_on_launch: bool,
    /// Set once terminated: the instance is gone from its lab, and Describe calls show it
    /// as `terminated` (with these details) as AWS does for a while.
    #[serde(default)]
    pub terminated: Option<Terminated>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Terminated {
    pub lab: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub private_ip: Ipv4Addr,
}

/// A NAT gateway deleted through the API, kept so `deleted` can be described.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedNat {
    pub vpc_id: String,
    pub subnet_id: String,
    pub allocation_id: String,
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Data {
    /// Labs the API made: their files are `labs/NAME.yaml`.
    #[serde(default)]
    pub labs: BTreeSet<String>,
    /// Internet gateways by ID, with the lab each is attached to.
    #[serde(default)]
    pub internet_gateways: BTreeMap<String, Option<String>>,
    /// Elastic IPs by allocation ID.
    #[serde(default)]
    pub addresses: BTreeMap<String, Address>,
    #[serde(default)]
    pub key_pairs: BTreeMap<String, KeyPair>,
    /// Tags by resource ID. A resource with no entry shows its lab name as `Name`.
    #[serde(default)]
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceInfo>,
    #[serde(default)]
    pub deleted_nat_gateways: BTreeMap<String, DeletedNat>,
    /// Subnets (by ID) whose instances get a public IP unless RunInstances says otherwise.
    #[serde(default)]
    pub map_public_ip_on_launch: BTreeSet<String>,
}

pub struct Account {
    pub dir: PathBuf,
    pub credentials: Credentials,
    pub data: Data,
}

impl Account {
    /// Opens the account in `dir`, creating it (and its root keys) on first start. The
    /// second value says whether the keys were just made.
    pub fn open(dir: &Path) -> Result<(Account, bool)> {
        std::fs::create_dir_all(dir.join("labs"))
            .with_context(|| format!("create {}", dir.join("labs").display()))?;
        std::fs::create_dir_all(dir.join("keys"))?;
        std::fs::set_permissions(dir.join("keys"), std::fs::Permissions::from_mode(0o700))?;
        let cred_path = credentials_file(dir);
        let (credentials, created) = match std::fs::read_to_string(&cred_path) {
            Ok(text) => (parse_credentials(&text).with_context(|| {
                format!(
                    "{} has no [{PROFILE}] profile with aws_access_key_id and aws_secret_access_key\n  hint: remove the file and restart `vpclab serve` to make new keys",
                    cred_path.display()
                )
            })?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Credentials {
                    access_key: format!("AKIA{}", random_chars(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")?),
                    secret: random_chars(
                        40,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                    )?,
                };
                write_private(
                    &cred_path,
                    format!(
                        "[{PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                        c.access_key, c.secret
                    )
                    .as_bytes(),
                )?;
                (c, true)
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", cred_path.display())),
        };
        let data_path = dir.join("account.json");
        let data = match std::fs::read_to_string(&data_path) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("parse {}", data_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data::default(),
            Err(e) => return Err(e).with_context(|| format!("read {}", data_path.display())),
        };
        Ok((
            Account {
                dir: dir.to_path_buf(),
                credentials,
                data,
            },
            created,
        ))
    }

    /// Writes the account's data (temp file, then rename).
    pub fn save(&self) -> ApiResult<()> {
        let bytes =
            serde_json::to_vec_pretty(&self.data).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomic(&self.dir.join("account.json"), &bytes)
            .map_err(|e| ApiError::internal(format!("{e:#}")))
    }

    pub fn lab_file(&self, lab: &str) -> PathBuf {
        self.dir.join("labs").join(format!("{lab}.yaml"))
    }

    pub fn key_file(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{name}.pem"))
    }

    pub fn tags_of(&self, id: &str) -> Option<&BTreeMap<String, String>> {
        self.data.tags.get(id)
    }
}

pub fn credentials_file(dir: &Path) -> PathBuf {
    dir.join("credentials")
}

fn parse_credentials(text: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut key, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line == format!("[{PROFILE}]");
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => key = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key: key?,
        secret: secret?,
    })
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// A file only its owner can read, created with that mode (never readable in between).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// `n` characters of `alphabet`, from the kernel's random source.
pub fn random_chars(n: usize, alphabet: &[u8]) -> Result<String> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read random bytes from /dev/urandom")?;
    Ok(bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect())
}

/// A fresh resource ID: `PREFIX-0` and 16 random hex digits.
pub fn new_id(prefix: &str) -> ApiResult<String> {
    random_chars(16, b"0123456789abcdef")
        .map(|h| format!("{prefix}-0{h}"))
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_makes_private_keys_that_a_restart_reads_back() {
        let dir = std::env::temp_dir().join(format!("vpclab-account-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, created) = Account::open(&dir).unwrap();
        assert!(created);
        assert!(
            a.credentials.access_key.starts_with("AKIA") && a.credentials.access_key.len() == 20
        );
        assert_eq!(a.credentials.secret.len(), 40);
        let mode = std::fs::metadata(credentials_file(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = Account::open(&dir).unwrap();
        assert!(!created);
        assert_eq!(b.credentials.secret, a.credentials.secret);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_ids_have_ec2s_shape() {
        let id = new_id("subnet").unwrap();
        assert!(crate::topology::aws::is_id("subnet", &id), "{id}");
    }
}
