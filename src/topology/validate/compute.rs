//! EC2: key pairs and instances (subnet, addresses, key pair, services, security groups).

use super::alloc::{Address, Allocator};
use super::network::Network;
use super::{NameTable, NodeDef, Validator, loc, quoted_list};
use crate::topology::aws::stable_hash;
use crate::topology::file::{LabFile, S};
use crate::topology::model::{
    ElasticIp, FlowLogs, Instance, PublicIp, SecurityGroup, Service, Subnet,
};
use serde_saphyr::Location;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// An instance that passed its checks.
pub(super) struct CheckedInstance {
    name: String,
    at: Location,
    subnet: usize,
    private_ip: Address,
    public_ip: PublicChoice,
    key_pair: Option<String>,
    security_groups: Vec<usize>,
    services: Vec<Service>,
    flow_logs: Option<FlowLogs>,
}

/// Where an instance's public IP comes from, as the file asks.
enum PublicChoice {
    None,
    Auto,
    /// Index into the file's Elastic IPs, which the lab keeps in the same order.
    Elastic(usize),
}

/// An instance with its own `auto` addresses handed out. An Elastic IP's address is looked
/// up when the instance is built: Elastic IPs get theirs after every instance.
pub(super) struct AddressedInstance {
    checked: CheckedInstance,
    private_ip: Ipv4Addr,
    public_ip: PublicAddress,
}

enum PublicAddress {
    None,
    Auto(Ipv4Addr),
    Elastic(usize),
}

impl AddressedInstance {
    pub(super) fn build(self, lab_name: &str, elastic_ips: &[ElasticIp]) -> Instance {
        let i = self.checked;
        let public_ip = match self.public_ip {
            PublicAddress::None => PublicIp::None,
            PublicAddress::Auto(address) => PublicIp::Auto { address },
            PublicAddress::Elastic(eip) => PublicIp::Elastic {
                eip,
                address: elastic_ips[eip].address,
            },
        };
        Instance {
            // An instance made through the EC2 API is named by its ID; one from a lab
            // file gets an ID derived from its names, the same on every run.
            id: if crate::topology::aws::is_id("i", &i.name) {
                i.name.clone()
            } else {
                format!("i-0{:016x}", stable_hash(&[lab_name, &i.name]))
            },
            name: i.name,
            subnet: i.subnet,
            private_ip: self.private_ip,
            public_ip,
            key_pair: i.key_pair,
            security_groups: i.security_groups,
            services: i.services,
            flow_logs: i.flow_logs,
        }
    }
}

impl Validator {
    pub(super) fn key_pairs(&mut self, f: &LabFile) -> NameTable {
        let mut names = NameTable::new("key pair");
        for k in &f.key_pairs {
            self.unique(k, "key pair", &mut names);
        }
        names
    }

    pub(super) fn instances(
        &mut self,
        f: &LabFile,
        net: &Network,
        key_pairs: &NameTable,
        security_groups: &[SecurityGroup],
        eip_owners: &mut HashMap<String, String>,
        nodes: &mut Vec<NodeDef>,
    ) -> Vec<CheckedInstance> {
        let mut out = Vec::new();
        for (key, i) in &f.instances {
            self.node_name(key, "instance", nodes);
            let owner = format!("instance `{}`", key.value);
            let subnet = self.subnet_ref(f, net, &i.subnet);
            let private_ip = self.private_address(
                i.private_ip.as_ref(),
                subnet.map(|x| &net.subnets[x]),
                &owner,
            );
            let public_ip = match &i.public_ip {
                None => PublicChoice::None,
                Some(s) => match s.value.0.as_str() {
                    "none" | "false" => PublicChoice::None,
                    "auto" | "true" => PublicChoice::Auto,
                    other => {
                        let spanned = S {
                            value: other.to_string(),
                            referenced: s.referenced,
                            defined: s.defined,
                        };
                        if f.elastic_ips.keys().any(|k| k.value == other) {
                            self.eip_use(f, &spanned, &key.value, eip_owners)
                                .map_or(PublicChoice::None, PublicChoice::Elastic)
                        } else if other.parse::<Ipv4Addr>().is_ok() {
                            self.err(
                                loc(s),
                                format!("public IP `{other}` is not `none`, `auto` or an Elastic IP"),
                                format!(
                                    "to fix the address, define an Elastic IP (`elastic_ips: {{ {}-eip: {other} }}`) and write its name here",
                                    key.value
                                ),
                            );
                            PublicChoice::None
                        } else {
                            self.err(
                                loc(s),
                                format!("Elastic IP `{other}` is not defined"),
                                format!(
                                    "write `none`, `auto`, or one of the Elastic IPs: {}",
                                    quoted_list(f.elastic_ips.keys().map(|k| k.value.as_str()))
                                ),
                            );
                            PublicChoice::None
                        }
                    }
                },
            };
            if let (Some(si), PublicChoice::Auto | PublicChoice::Elastic(_), Some(written)) =
                (subnet, &public_ip, &i.public_ip)
                && net.is_known_private(si)
            {
                self.d.warning(
                    loc(written),
                    format!(
                        "instance `{}` has a public IP but subnet `{}` has no route to the internet gateway",
                        key.value, net.subnets[si].name
                    ),
                    "as on AWS, it can't use the public IP; move it to a public subnet or write `public_ip: none`",
                );
            }
            let key_pair = i.key_pair.as_ref().map(|k| {
                if !key_pairs.names.contains_key(&k.value) {
                    self.err(
                        loc(k),
                        format!("key pair `{}` is not defined", k.value),
                        format!(
                            "add it to `key_pairs:`; defined key pairs: {}",
                            quoted_list(f.key_pairs.iter().map(|k| k.value.as_str()))
                        ),
                    );
                }
                k.value.clone()
            });
            let services = self.services(&i.services, &owner);
            if let Some(ssh) = i.services.iter().find(|s| s.value == Service::Ssh.as_str())
                && key_pair.is_none()
            {
                self.err(
                    loc(ssh),
                    format!("instance `{}` runs ssh but has no key pair", key.value),
                    "EC2 logs in with a key pair only: add `key_pair: <name>`",
                );
            }
            let security_groups = self.attached_security_groups(
                security_groups,
                &i.security_groups,
                loc(key),
                &owner,
                "every instance needs at least one: add `security_groups: [<name>]`",
            );
            let flow_logs = i.flow_logs.as_ref().map(|fl| self.flow_logs(fl));
            if let (Some(subnet), Some(private_ip)) = (subnet, private_ip) {
                out.push(CheckedInstance {
                    name: key.value.clone(),
                    at: loc(key),
                    subnet,
                    private_ip,
                    public_ip,
                    key_pair,
                    security_groups,
                    services,
                    flow_logs,
                });
            }
        }
        out
    }

    /// Hands out the instances' `auto` addresses in file order: each one's private address,
    /// then its public one.
    pub(super) fn address_instances(
        &mut self,
        instances: Vec<CheckedInstance>,
        subnets: &[Subnet],
        alloc: &mut Allocator,
    ) -> Vec<AddressedInstance> {
        let mut out = Vec::new();
        for i in instances {
            let private_ip = alloc.private(self, i.private_ip, &subnets[i.subnet], &i.name, i.at);
            let public_ip = match i.public_ip {
                PublicChoice::None => PublicAddress::None,
                PublicChoice::Auto => PublicAddress::Auto(alloc.public(self, &i.name, i.at)),
                PublicChoice::Elastic(eip) => PublicAddress::Elastic(eip),
            };
            out.push(AddressedInstance {
                checked: i,
                private_ip,
                public_ip,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn ssh_without_key_pair_points_at_ssh() {
        let text = edit(
            "    key_pair: aws-study\n    security_groups: [MyApp",
            "    security_groups: [MyApp",
        );
        let (line, col, m) = one_error(&text);
        assert_eq!(m, "instance `app` runs ssh but has no key pair");
        // `app`'s `services: [ssh]` is the last one in the file.
        let lines: Vec<&str> = text.lines().collect();
        let last = lines
            .iter()
            .rposition(|l| l.contains("services: [ssh]"))
            .unwrap();
        assert_eq!(
            (line, col),
            (last as u64 + 1, lines[last].find("ssh").unwrap() as u64 + 1)
        );
    }
}
