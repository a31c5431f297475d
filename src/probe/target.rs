//! What a probe's client connects to, as the source sees it: from the internet, an
//! instance's public DNS name; from inside the VPC, its private DNS name; a database's
//! endpoint from anywhere; a NAT gateway or Elastic IP by its public address.

use crate::topology::{Check, Expectation, Lab, NodeRef};
use anyhow::{Result, bail};
use std::net::Ipv4Addr;

#[derive(Debug, Clone)]
pub struct Target {
    /// Name or address for the client.
    pub host: String,
    /// The key pair for ssh.
    pub key_pair: Option<String>,
}

impl Target {
    pub fn display(&self) -> String {
        self.host.clone()
    }
}

/// Whether `node` sits on the internet (outside the VPC).
pub fn on_internet(lab: &Lab, node: &str) -> bool {
    matches!(lab.find(node), Some(NodeRef::Internet(_)))
}

pub fn resolve_target(lab: &Lab, e: &Expectation) -> Result<Target> {
    let outside = on_internet(lab, &e.from);
    if let Ok(ip) = e.to.parse::<Ipv4Addr>() {
        return Ok(Target {
            host: ip.to_string(),
            key_pair: None,
        });
    }
    let Some(node) = lab.find(&e.to) else {
        bail!("`{}` is not in the lab", e.to);
    };
    let t = match node {
        NodeRef::Instance(i) => {
            let host = match (e.check, outside, i.public_ip.address()) {
                // A DNS check asks for the public name: split horizon answers it.
                (Check::Dns, _, Some(p)) => lab.public_dns_name(p),
                (Check::Dns, _, None) => lab.private_dns_name(i.private_ip),
                (_, true, Some(p)) => lab.public_dns_name(p),
                // Without a public IP the internet can only try the private address.
                (_, true, None) => i.private_ip.to_string(),
                (_, false, _) => lab.private_dns_name(i.private_ip),
            };
            Target {
                host,
                key_pair: i.key_pair.clone(),
            }
        }
        NodeRef::Database(d) => Target {
            host: d.endpoint.clone(),
            key_pair: None,
        },
        NodeRef::DbNode(n) => Target {
            host: match (outside, n.public_ip) {
                (true, Some(p)) => p.to_string(),
                _ => n.private_ip.to_string(),
            },
            key_pair: None,
        },
        NodeRef::Internet(h) => Target {
            host: format!(
                "{}.{}",
                h.name,
                crate::topology::well_known::INTERNET_DOMAIN
            ),
            key_pair: None,
        },
        NodeRef::NatGateway(n) => Target {
            host: lab.elastic_ips[n.elastic_ip].address.to_string(),
            key_pair: None,
        },
        NodeRef::ElasticIp(eip) => Target {
            host: eip.address.to_string(),
            key_pair: None,
        },
    };
    Ok(t)
}
