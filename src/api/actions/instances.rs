//! Key pairs and instances. An instance is the lab's: RunInstances adds it to the lab
//! (its services from a `vpclab:services` tag, sshd alone by default, as an Amazon Linux
//! AMI boots, when it has a key pair), Stop and Start are `vpclab stop` and `vpclab start`, and TerminateInstances
//! removes it from the lab. Image and type are recorded, not modelled.

use super::edit;
use crate::api::account::{InstanceInfo, KeyPair, Terminated, new_id, write_atomic};
use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Params;
use crate::api::service::{Answer, Service, dry_run_error, filtered, ok, tag_filter, vpc_id};
use crate::api::sigv4::iso8601;
use crate::api::xml::X;
use crate::lab::{self, Running};
use crate::plan::aws_id;
use crate::topology::{Instance, PublicIp, Service as Svc};
use base64ct::Encoding;
use std::process::Command;
use std::sync::Arc;

/// The tag that names an instance's services (`ssh,http,https`).
pub const SERVICES_TAG: &str = "vpclab:services";
/// At most this many instances in one RunInstances call.
const MAX_COUNT: i64 = 20;

impl Service {
    pub fn create_key_pair(&mut self, p: &Params) -> Answer {
        let name = p.require("KeyName")?.to_string();
        check_key_name(&name)?;
        if self.account.data.key_pairs.contains_key(&name) {
            return Err(ApiError::new(
                "InvalidKeyPair.Duplicate",
                format!("The keypair '{name}' already exists."),
            ));
        }
        let key_type = p.get("KeyType").unwrap_or("rsa").to_string();
        let args: &[&str] = match key_type.as_str() {
            "rsa" => &["-t", "rsa", "-b", "2048", "-m", "PEM"],
            "ed25519" => &["-t", "ed25519"],
            other => {
                return Err(ApiError::invalid(format!(
                    "Value ({other}) for parameter keyType is invalid: rsa or ed25519"
                )));
            }
        };
        let tags = p.tag_specifications("key-pair")?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let path = self.account.key_file(&name);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(format!("{}.pub", path.display()));
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", &name])
            .args(args)
            .arg("-f")
            .arg(&path))?;
        let fingerprint = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(format!("{}.pub", path.display())))?
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
        let material = std::fs::read_to_string(&path)
            .map_err(|e| ApiError::internal(format!("read {}: {e}", path.display())))?;
        let id = new_id("key")?;
        self.account.data.key_pairs.insert(
            name.clone(),
            KeyPair {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                key_type,
                created: lab::state::now() as i64,
            },
        );
        self.set_tags(&id, &tags);
        self.save()?;
        Ok(X::new("body")
            .text("keyName", &name)
            .text("keyFingerprint", fingerprint)
            .text("keyMaterial", material)
            .text("keyPairId", &id)
            .list("tagSet", self.tag_set(&id, "")))
    }

    /// ImportKeyPair: the caller keeps the private half; instances launched with the key
    /// trust the public one, which is all a lab needs of a key it did not make.
    pub fn import_key_pair(&mut self, p: &Params) -> Answer {
        let name = p.require("KeyName")?.to_string();
        check_key_name(&name)?;
        let encoded = p.require("PublicKeyMaterial")?;
        if self.account.data.key_pairs.contains_key(&name) {
            return Err(ApiError::new(
                "InvalidKeyPair.Duplicate",
                format!("The keypair '{name}' already exists."),
            ));
        }
        let public = public_key_material(encoded)?;
        let key_type = match public.algorithm() {
            ssh_key::Algorithm::Rsa { .. } => "rsa",
            ssh_key::Algorithm::Ed25519 => "ed25519",
            other => {
                return Err(ApiError::new(
                    "InvalidKey.Format",
                    format!("{other} keys are not supported; import an rsa or ed25519 key"),
                ));
            }
        };
        let tags = p.tag_specifications("key-pair")?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let path = self.account.key_file(&name);
        // Only the public half exists: a private key left by an earlier pair of this name
        // would not match it.
        let _ = std::fs::remove_file(&path);
        let line = public
            .to_openssh()
            .map_err(|e| ApiError::internal(format!("encode the public key: {e}")))?;
        write_atomic(
            std::path::Path::new(&format!("{}.pub", path.display())),
            format!("{line}\n").as_bytes(),
        )
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        let id = new_id("key")?;
        self.account.data.key_pairs.insert(
            name.clone(),
            KeyPair {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                key_type: key_type.to_string(),
                created: lab::state::now() as i64,
            },
        );
        self.set_tags(&id, &tags);
        self.save()?;
        Ok(X::new("body")
            .text("keyName", &name)
            .text("keyFingerprint", fingerprint)
            .text("keyPairId", &id)
            .list("tagSet", self.tag_set(&id, "")))
    }

    pub fn describe_key_pairs(&self, p: &Params) -> Answer {
        let names = p.list("KeyName");
        let ids = p.list("KeyPairId");
        for n in &names {
            if !self.account.data.key_pairs.contains_key(n) {
                return Err(ApiError::new(
                    "InvalidKeyPair.NotFound",
                    format!("The key pair '{n}' does not exist"),
                ));
            }
        }
        let all: Vec<(&String, &KeyPair)> = self
            .account
            .data
            .key_pairs
            .iter()
            .filter(|(n, k)| {
                (names.is_empty() || names.contains(n)) && (ids.is_empty() || ids.contains(&k.id))
            })
            .collect();
        let all = filtered(all, &p.filters()?, |(n, k), f| match f {
            "key-name" => Some(vec![n.to_string()]),
            "key-pair-id" => Some(vec![k.id.clone()]),
            "fingerprint" => Some(vec![k.fingerprint.clone()]),
            _ => tag_filter(&self.tags(&k.id, ""), f),
        })?;
        let items = all.into_iter().map(|(n, k)| {
            X::new("item")
                .text("keyPairId", &k.id)
                .text("keyName", n)
                .text("keyFingerprint", &k.fingerprint)
                .text("keyType", &k.key_type)
                .text("createTime", iso8601(k.created))
                .list("tagSet", self.tag_set(&k.id, ""))
        });
        Ok(X::new("body").list("keySet", items.collect::<Vec<_>>()))
    }

    pub fn delete_key_pair(&mut self, p: &Params) -> Answer {
        let name = match (p.get("KeyName"), p.get("KeyPairId")) {
            (Some(n), _) => n.to_string(),
            (None, Some(id)) => {
                match self.account.data.key_pairs.iter().find(|(_, k)| k.id == id) {
                    Some((n, _)) => n.clone(),
                    None => return Ok(ok()),
                }
            }
            (None, None) => return Err(ApiError::missing("KeyName")),
        };
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        // As on AWS, instances launched with the key keep trusting it; deleting a key
        // that does not exist succeeds.
        if let Some(k) = self.account.data.key_pairs.remove(&name) {
            self.account.data.tags.remove(&k.id);
            let path = self.account.key_file(&name);
            let _ = std::fs::remove_file(format!("{}.pub", path.display()));
            let _ = std::fs::remove_file(&path);
            self.save()?;
        }
        Ok(ok())
    }

    /// The lab and index of instance `id`.
    pub fn instance(&self, region: &str, id: &str) -> ApiResult<(Arc<Running>, usize)> {
        self.find(region, |r| {
            r.file_lab.instances.iter().position(|i| i.id == id)
        })
        .ok_or_else(|| ApiError::not_found("InvalidInstanceID.NotFound", "instance", id))
    }

    pub fn run_instances(&mut self, p: &Params, region: &str) -> Answer {
        let image = p.require("ImageId")?.to_string();
        let instance_type = p.get("InstanceType").unwrap_or("m1.small").to_string();
        let max = p.int("MaxCount")?.unwrap_or(1);
        let min = p.int("MinCount")?.unwrap_or(1);
        if min < 1 || max < min || max > MAX_COUNT {
            return Err(ApiError::invalid(format!(
                "MinCount ({min}) and MaxCount ({max}) must be 1 to {MAX_COUNT}, MinCount not over MaxCount"
            )));
        }
        let nic = "NetworkInterface.1";
        let subnet = p
            .get("SubnetId")
            .or(p.get(&format!("{nic}.SubnetId")))
            .ok_or_else(|| {
                ApiError::new(
                    "MissingInput",
                    "No subnets found for the default VPC; give SubnetId",
                )
            })?
            .to_string();
        let (r, s) = self.subnet(region, &subnet)?;
        let mut groups = p.list("SecurityGroupId");
        groups.extend(p.list(&format!("{nic}.SecurityGroupId")));
        let lab_name = r.file_lab.name.clone();
        let mut group_indexes = Vec::new();
        for g in &groups {
            group_indexes.push(group_by_id(&r.file_lab, g).ok_or_else(|| {
                ApiError::new(
                    "InvalidGroup.NotFound",
                    format!(
                        "The security group '{g}' does not exist in VPC '{}'",
                        vpc_id(&r.file_lab)
                    ),
                )
            })?);
        }
        for name in p.list("SecurityGroup") {
            let i = r
                .file_lab
                .security_groups
                .iter()
                .position(|x| x.name == name);
            group_indexes.push(i.ok_or_else(|| {
                ApiError::new(
                    "InvalidGroup.NotFound",
                    format!(
                        "The security group '{name}' does not exist in VPC '{}'",
                        vpc_id(&r.file_lab)
                    ),
                )
            })?);
        }
        if group_indexes.is_empty() {
            // The VPC's default group, as on AWS.
            if let Some(i) = r
                .file_lab
                .security_groups
                .iter()
                .position(|x| x.name == super::network::DEFAULT_GROUP)
            {
                group_indexes.push(i);
            }
        }
        let key = p.get("KeyName").map(str::to_string);
        if let Some(k) = &key
            && !self.account.data.key_pairs.contains_key(k)
            && !r.file_lab.key_pairs.contains(k)
        {
            return Err(ApiError::new(
                "InvalidKeyPair.NotFound",
                format!("The key pair '{k}' does not exist"),
            ));
        }
        let subnet_id = aws_id("subnet", &lab_name, &r.file_lab.subnets[s].name);
        let public = match p.bool(&format!("{nic}.AssociatePublicIpAddress"))? {
            Some(b) => b,
            None => self
                .account
                .data
                .map_public_ip_on_launch
                .contains(&subnet_id),
        };
        let tags = p.tag_specifications("instance")?;
        let services = match tags.iter().find(|(k, _)| k == SERVICES_TAG) {
            Some((_, v)) => parse_services(v)?,
            // sshd, as an Amazon Linux AMI boots, when there is a key to log in with.
            None if key.is_some() => vec![Svc::Ssh],
            None => vec![],
        };
        // awscli moves `--private-ip-address` into the interface's address list when it
        // builds a NetworkInterface (for `--associate-public-ip-address`).
        let fixed_ip = match p
            .get("PrivateIpAddress")
            .or(p.get(&format!("{nic}.PrivateIpAddress")))
            .or(p.get(&format!("{nic}.PrivateIpAddresses.1.PrivateIpAddress")))
        {
            Some(t) => Some(t.parse().map_err(|_| {
                ApiError::invalid(format!(
                    "Value ({t}) for parameter privateIpAddress is invalid"
                ))
            })?),
            None => None,
        };
        if fixed_ip.is_some() && max > 1 {
            return Err(ApiError::invalid(
                "A private IP address is for one instance: MaxCount must be 1",
            ));
        }
        let user_data = p.get("UserData").map(str::to_string);
        let mut names = Vec::new();
        for _ in 0..max {
            // One name per instance: the Name tag can name only the first.
            let taken_tags: &[(String, String)] = if names.is_empty() { &tags } else { &[] };
            names.push(super::network::object_name(&r.file_lab, taken_tags, "i")?);
        }
        self.change(&r, p.dry_run()?, |lab| {
            if let Some(k) = &key
                && !lab.key_pairs.contains(k)
            {
                lab.key_pairs.push(k.clone());
            }
            for name in &names {
                let private_ip = match fixed_ip {
                    Some(ip) => ip,
                    None => super::gateways::free_private_ip(lab, s)?,
                };
                lab.instances.push(Instance {
                    flow_logs: None,
                    name: name.clone(),
                    id: String::new(),
                    subnet: s,
                    private_ip,
                    // `auto` in the lab file: validation hands out the address.
                    public_ip: if public {
                        PublicIp::Auto {
                            address: std::net::Ipv4Addr::UNSPECIFIED,
                        }
                    } else {
                        PublicIp::None
                    },
                    key_pair: key.clone(),
                    security_groups: group_indexes.clone(),
                    services: services.clone(),
                });
            }
            Ok(())
        })?;
        let r = self.vpc(region, &vpc_id(&r.file_lab))?;
        let now = lab::state::now() as i64;
        let mut items = Vec::new();
        for name in &names {
            let Some(i) = r.file_lab.instances.iter().position(|x| &x.name == name) else {
                continue;
            };
            let id = r.file_lab.instances[i].id.clone();
            self.account.data.instances.insert(
                id.clone(),
                InstanceInfo {
                    image_id: image.clone(),
                    instance_type: instance_type.clone(),
                    launch_time: now,
                    user_data: user_data.clone(),
                    public_ip_on_launch: public,
                    terminated: None,
                },
            );
            self.set_tags(&id, &tags);
            items.push(i);
        }
        self.save()?;
        let instances: Vec<X> = items
            .iter()
            .map(|i| self.instance_xml(&r, *i, Some((0, "pending"))))
            .collect();
        Ok(X::new("body")
            .text("reservationId", aws_id("r", &lab_name, &names[0]))
            .text("ownerId", &self.owner_id)
            .list("groupSet", [])
            .list("instancesSet", instances))
    }

    /// An instance as `item`; `state` overrides the one it is in (a call's answer shows
    /// `pending` while Describe shows `running`).
    fn instance_xml(&self, r: &Running, i: usize, state: Option<(u8, &str)>) -> X {
        let lab = &r.lab;
        let x = &lab.instances[i];
        let info = self.account.data.instances.get(&x.id);
        let stopped = r.state.runtime.stopped.contains(&x.name);
        let (code, name) = state.unwrap_or(if stopped {
            (80, "stopped")
        } else {
            (16, "running")
        });
        let subnet = &lab.subnets[x.subnet];
        let public = x.public_ip.address();
        let groups: Vec<X> = x
            .security_groups
            .iter()
            .map(|g| {
                X::new("item")
                    .text(
                        "groupId",
                        aws_id("sg", &lab.name, &lab.security_groups[*g].name),
                    )
                    .text("groupName", &lab.security_groups[*g].name)
            })
            .collect();
        X::new("item")
            .text("instanceId", &x.id)
            .text(
                "imageId",
                info.map_or("ami-vpclab", |i| i.image_id.as_str()),
            )
            .child(
                X::new("instanceState")
                    .text("code", code)
                    .text("name", name),
            )
            .text("privateDnsName", lab.private_dns_name(x.private_ip))
            .text(
                "dnsName",
                public.map(|ip| lab.public_dns_name(ip)).unwrap_or_default(),
            )
            .opt("keyName", x.key_pair.as_ref())
            .text("amiLaunchIndex", 0)
            .text(
                "instanceType",
                info.map_or("t2.micro", |i| i.instance_type.as_str()),
            )
            .text(
                "launchTime",
                iso8601(info.map_or(r.state.created as i64, |i| i.launch_time)),
            )
            .child(
                X::new("placement")
                    .text("availabilityZone", &subnet.az)
                    .text("tenancy", "default"),
            )
            .child(X::new("monitoring").text("state", "disabled"))
            .text("subnetId", aws_id("subnet", &lab.name, &subnet.name))
            .text("vpcId", vpc_id(lab))
            .text("privateIpAddress", x.private_ip)
            .opt("ipAddress", public)
            .text("sourceDestCheck", "true")
            .list("groupSet", groups)
            .text("architecture", "x86_64")
            .text("rootDeviceType", "ebs")
            .text("rootDeviceName", "/dev/xvda")
            .text("virtualizationType", "hvm")
            .text("hypervisor", "xen")
            .list("tagSet", self.tag_set(&x.id, &x.name))
    }

    pub fn describe_instances(&self, p: &Params, region: &str) -> Answer {
        let asked = p.list("InstanceId");
        let labs = self.labs(region);
        // (lab index or terminated, instance index, ID)
        let mut all: Vec<(Option<usize>, usize, String)> = Vec::new();
        for (l, r) in labs.iter().enumerate() {
            for (i, x) in r.lab.instances.iter().enumerate() {
                all.push((Some(l), i, x.id.clone()));
            }
        }
        for (id, info) in &self.account.data.instances {
            if info.terminated.is_some() {
                all.push((None, 0, id.clone()));
            }
        }
        let all: Vec<_> = all
            .into_iter()
            .filter(|a| asked.is_empty() || asked.contains(&a.2))
            .collect();
        let found: Vec<String> = all.iter().map(|a| a.2.clone()).collect();
        if let Some(missing) = asked.iter().find(|a| !found.contains(a)) {
            return Err(ApiError::new(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{missing}' does not exist"),
            ));
        }
        let all = filtered(all, &p.filters()?, |(l, i, id), f| {
            let Some(l) = l else {
                let t = self.account.data.instances[id]
                    .terminated
                    .as_ref()
                    .expect("terminated above");
                return match f {
                    "instance-id" => Some(vec![id.clone()]),
                    "instance-state-name" => Some(vec!["terminated".into()]),
                    "vpc-id" => Some(vec![t.vpc_id.clone()]),
                    "subnet-id" => Some(vec![t.subnet_id.clone()]),
                    "private-ip-address" => Some(vec![t.private_ip.to_string()]),
                    _ => tag_filter(&self.tags(id, ""), f).or(Some(vec![])),
                };
            };
            let r = &labs[*l];
            let x = &r.lab.instances[*i];
            let stopped = r.state.runtime.stopped.contains(&x.name);
            match f {
                "instance-id" => Some(vec![id.clone()]),
                "instance-state-name" => {
                    Some(vec![if stopped { "stopped" } else { "running" }.into()])
                }
                "vpc-id" => Some(vec![vpc_id(&r.lab)]),
                "subnet-id" => Some(vec![aws_id(
                    "subnet",
                    &r.lab.name,
                    &r.lab.subnets[x.subnet].name,
                )]),
                "private-ip-address" => Some(vec![x.private_ip.to_string()]),
                "ip-address" => Some(
                    x.public_ip
                        .address()
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                ),
                "key-name" => Some(x.key_pair.iter().cloned().collect()),
                "instance.group-id" | "group-id" => Some(
                    x.security_groups
                        .iter()
                        .map(|g| aws_id("sg", &r.lab.name, &r.lab.security_groups[*g].name))
                        .collect(),
                ),
                "availability-zone" => Some(vec![r.lab.subnets[x.subnet].az.clone()]),
                _ => tag_filter(&self.tags(id, &x.name), f),
            }
        })?;
        let reservations = all.iter().map(|(l, i, id)| {
            let instance = match l {
                Some(l) => self.instance_xml(&labs[*l], *i, None),
                None => self.terminated_xml(id),
            };
            X::new("item")
                .text("reservationId", id.replacen("i-", "r-", 1))
                .text("ownerId", &self.owner_id)
                .list("groupSet", [])
                .list("instancesSet", [instance])
        });
        Ok(X::new("body").list("reservationSet", reservations.collect::<Vec<_>>()))
    }

    fn terminated_xml(&self, id: &str) -> X {
        let info = &self.account.data.instances[id];
        let t = info
            .terminated
            .as_ref()
            .expect("only terminated instances come here");
        X::new("item")
            .text("instanceId", id)
            .text("imageId", &info.image_id)
            .child(
                X::new("instanceState")
                    .text("code", 48)
                    .text("name", "terminated"),
            )
            .text("instanceType", &info.instance_type)
            .text("launchTime", iso8601(info.launch_time))
            .text("vpcId", &t.vpc_id)
            .text("subnetId", &t.subnet_id)
            .text("privateIpAddress", t.private_ip)
            .list("tagSet", self.tag_set(id, ""))
    }

    /// Stops or starts every instance named, as `vpclab stop` and `start` do.
    pub fn stop_start(&mut self, p: &Params, region: &str, stop: bool) -> Answer {
        let ids = p.list("InstanceId");
        if ids.is_empty() {
            return Err(ApiError::missing("InstanceId"));
        }
        let found: Vec<(Arc<Running>, usize)> = ids
            .iter()
            .map(|id| self.instance(region, id))
            .collect::<ApiResult<_>>()?;
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        let mut items = Vec::new();
        for (r, i) in found {
            let x = &r.lab.instances[i];
            let was_stopped = r.state.runtime.stopped.contains(&x.name);
            let previous = if was_stopped {
                (80, "stopped")
            } else {
                (16, "running")
            };
            let current = match (stop, was_stopped) {
                (true, false) => {
                    lab::instance::stop(Some(&r.lab.name), &x.name)
                        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
                    (64, "stopping")
                }
                (false, true) => {
                    lab::instance::start(Some(&r.lab.name), &x.name)
                        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
                    (0, "pending")
                }
                _ => previous,
            };
            items.push(state_change(&x.id, current, previous));
        }
        Ok(X::new("body").list("instancesSet", items))
    }

    pub fn reboot_instances(&mut self, p: &Params, region: &str) -> Answer {
        for id in p.list("InstanceId") {
            self.instance(region, &id)?;
        }
        if p.dry_run()? {
            return Err(dry_run_error());
        }
        Ok(ok())
    }

    pub fn terminate_instances(&mut self, p: &Params, region: &str) -> Answer {
        let ids = p.list("InstanceId");
        if ids.is_empty() {
            return Err(ApiError::missing("InstanceId"));
        }
        let dry_run = p.dry_run()?;
        let mut items = Vec::new();
        for id in &ids {
            if self
                .account
                .data
                .instances
                .get(id)
                .is_some_and(|i| i.terminated.is_some())
            {
                items.push(state_change(id, (48, "terminated"), (48, "terminated")));
                continue;
            }
            let (r, i) = self.instance(region, id)?;
            let x = r.file_lab.instances[i].clone();
            let stopped = r.state.runtime.stopped.contains(&x.name);
            let record = Terminated {
                lab: r.file_lab.name.clone(),
                vpc_id: vpc_id(&r.file_lab),
                subnet_id: aws_id(
                    "subnet",
                    &r.file_lab.name,
                    &r.file_lab.subnets[x.subnet].name,
                ),
                private_ip: x.private_ip,
            };
            let account_eip = match x.public_ip {
                PublicIp::Elastic { eip, .. } => {
                    Some((eip, r.file_lab.elastic_ips[eip].name.clone()))
                }
                _ => None,
            };
            self.change(&r, dry_run, |lab| {
                lab.instances.remove(i);
                // Its Elastic IP is disassociated, and stays the account's.
                if let Some((eip, _)) = &account_eip {
                    edit::remove_elastic_ip(lab, *eip);
                }
                Ok(())
            })?;
            if let Some((_, name)) = account_eip
                && let Some(a) = self.account.data.addresses.get_mut(&name)
            {
                a.lab = None;
            }
            let info = self
                .account
                .data
                .instances
                .entry(id.clone())
                .or_insert_with(|| InstanceInfo {
                    image_id: "ami-vpclab".into(),
                    instance_type: "t2.micro".into(),
                    launch_time: r.state.created as i64,
                    user_data: None,
                    public_ip_on_launch: false,
                    terminated: None,
                });
            info.terminated = Some(record);
            let previous = if stopped {
                (80, "stopped")
            } else {
                (16, "running")
            };
            items.push(state_change(id, (32, "shutting-down"), previous));
        }
        self.save()?;
        Ok(X::new("body").list("instancesSet", items))
    }

    pub fn modify_instance_attribute(&mut self, p: &Params, region: &str) -> Answer {
        let id = p.require("InstanceId")?.to_string();
        let groups = p.list("GroupId");
        if groups.is_empty() {
            return Err(ApiError::new(
                "UnsupportedOperation",
                "vpclab changes only an instance's security groups (GroupId.N)",
            ));
        }
        let (r, i) = self.instance(region, &id)?;
        let mut indexes = Vec::new();
        for g in &groups {
            indexes.push(group_by_id(&r.file_lab, g).ok_or_else(|| {
                ApiError::new(
                    "InvalidGroup.NotFound",
                    format!("The security group '{g}' does not exist"),
                )
            })?);
        }
        self.change(&r, p.dry_run()?, |lab| {
            lab.instances[i].security_groups = indexes;
            Ok(())
        })?;
        Ok(ok())
    }
}

/// The lab's security group with EC2 ID `id`.
fn group_by_id(lab: &crate::topology::Lab, id: &str) -> Option<usize> {
    lab.security_groups
        .iter()
        .position(|x| aws_id("sg", &lab.name, &x.name) == id)
}

fn state_change(id: &str, current: (u8, &str), previous: (u8, &str)) -> X {
    X::new("item")
        .text("instanceId", id)
        .child(
            X::new("currentState")
                .text("code", current.0)
                .text("name", current.1),
        )
        .child(
            X::new("previousState")
                .text("code", previous.0)
                .text("name", previous.1),
        )
}

fn parse_services(v: &str) -> ApiResult<Vec<Svc>> {
    let mut out = Vec::new();
    for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let s = Svc::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Tag {SERVICES_TAG}: unknown service '{word}' (ssh, http, https)"
                ))
            })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Key names become file names, so they are kept to characters that can't climb out.
fn check_key_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+=".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Value ({name}) for parameter keyName is invalid: use up to 255 letters, digits and - _ . @ + =, not starting with a dot"
        )))
    }
}

/// ImportKeyPair's `PublicKeyMaterial`: base64 (the SDKs encode the blob) of a public key
/// in OpenSSH's one-line format, as `ssh-keygen` writes it to `NAME.pub`.
fn public_key_material(encoded: &str) -> ApiResult<ssh_key::PublicKey> {
    let invalid = |why: String| {
        ApiError::new(
            "InvalidKey.Format",
            format!("Key is not in valid OpenSSH public key format: {why}"),
        )
    };
    let bytes = base64ct::Base64::decode_vec(encoded.trim())
        .map_err(|_| invalid("PublicKeyMaterial is not base64".into()))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not text".into()))?;
    ssh_key::PublicKey::from_openssh(text.trim()).map_err(|e| invalid(e.to_string()))
}

fn run(cmd: &mut Command) -> ApiResult<String> {
    let out = cmd.output().map_err(|e| {
        ApiError::internal(format!(
            "run ssh-keygen (is openssh-client installed?): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_tags_and_key_names_are_checked() {
        assert_eq!(parse_services("ssh, http").unwrap(), [Svc::Ssh, Svc::Http]);
        assert_eq!(
            parse_services("ftp").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert!(check_key_name("aws-study").is_ok());
        assert!(check_key_name("../etc/passwd").is_err());
        assert!(check_key_name("a/b").is_err());
    }

    #[test]
    fn imported_public_keys_are_base64_of_an_openssh_line() {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMj/veh9BlUrXCxUICI535jvpNfP0HWjuVltAjFsuV+/ me@laptop";
        let key = public_key_material(&base64ct::Base64::encode_string(line.as_bytes())).unwrap();
        assert_eq!(key.algorithm(), ssh_key::Algorithm::Ed25519);
        for bad in [
            "not base64!".to_string(),
            base64ct::Base64::encode_string(b"ssh-ed25519 truncated"),
            base64ct::Base64::encode_string(&[0xff, 0xfe]),
        ] {
            assert_eq!(
                public_key_material(&bad).unwrap_err().code,
                "InvalidKey.Format",
                "{bad}"
            );
        }
    }
}
