//! The lab file as written: YAML shapes with the source position of every value.
//!
//! Values that can be *wrong* (CIDRs, addresses, ports, names, enum words) are kept as
//! spanned strings here and checked in `validate`, so one run reports every such mistake
//! with its line and column. Only structural mistakes (an unknown key, a list where a map
//! belongs) stop parsing, because serde cannot continue past them.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with the line and column where the file wrote it.
pub type S<T> = Spanned<T>;

/// A named collection, in file order. Keys carry their position for "defined here" errors.
pub type Named<T> = IndexMap<S<String>, T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub name: Option<S<String>>,
    pub description: Option<String>,
    pub region: S<String>,
    pub vpc: VpcFile,
    pub public_ip_pool: Option<S<Scalar>>,
    pub subnets: Named<SubnetFile>,
    #[serde(default)]
    pub route_tables: Named<Named<S<Scalar>>>,
    pub internet_gateway: Option<S<String>>,
    #[serde(default)]
    pub elastic_ips: Named<S<Scalar>>,
    #[serde(default)]
    pub nat_gateways: Named<NatGatewayFile>,
    #[serde(default)]
    pub key_pairs: Vec<S<String>>,
    #[serde(default)]
    pub security_groups: Named<SecurityGroupFile>,
    #[serde(default)]
    pub network_acls: Named<NetworkAclFile>,
    #[serde(default)]
    pub instances: Named<InstanceFile>,
    #[serde(default)]
    pub db_subnet_groups: Named<Vec<S<String>>>,
    #[serde(default)]
    pub databases: Named<DatabaseFile>,
    #[serde(default)]
    pub internet: Named<InternetHostFile>,
    #[serde(default)]
    pub expect: Vec<S<ExpectFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcFile {
    pub name: S<String>,
    pub cidr: S<Scalar>,
    pub flow_logs: Option<FlowLogsFile>,
}

/// `flow_logs: { interval: 60, format: default }`, on the VPC, a subnet or an instance;
/// `format` is `default` or a list of fields (`${version} ${vpc-id} ...`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogsFile {
    pub interval: Option<S<Scalar>>,
    pub format: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetFile {
    pub az: S<String>,
    pub cidr: S<Scalar>,
    pub route_table: Option<S<String>>,
    pub flow_logs: Option<FlowLogsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGatewayFile {
    pub subnet: S<String>,
    pub elastic_ip: S<String>,
    pub private_ip: Option<S<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupFile {
    pub description: Option<String>,
    #[serde(default)]
    pub inbound: Vec<S<SgRuleFile>>,
    /// `None` means "not written": AWS's default of all outbound traffic allowed.
    pub outbound: Option<Vec<S<SgRuleFile>>>,
}

/// One security group rule. Either `type` (the console's shortcut: ssh, http, ...) or
/// `protocol` with an optional `port`; `source` for inbound, `destination` for outbound.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleFile {
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub protocol: Option<S<String>>,
    pub port: Option<S<Scalar>>,
    pub source: Option<S<String>>,
    pub destination: Option<S<String>>,
    pub description: Option<String>,
}

/// A network ACL: the subnets it guards and its numbered rules per direction.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAclFile {
    #[serde(default)]
    pub subnets: Vec<S<String>>,
    #[serde(default)]
    pub inbound: Vec<S<AclRuleFile>>,
    #[serde(default)]
    pub outbound: Vec<S<AclRuleFile>>,
}

/// One network ACL rule: a security-group rule's `type` or `protocol` and `port`, a CIDR
/// `source` (inbound) or `destination` (outbound), its number and `allow` or `deny`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleFile {
    pub rule: S<Scalar>,
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub protocol: Option<S<String>>,
    pub port: Option<S<Scalar>>,
    pub source: Option<S<String>>,
    pub destination: Option<S<String>>,
    pub action: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    pub subnet: S<String>,
    pub private_ip: Option<S<Scalar>>,
    pub public_ip: Option<S<Scalar>>,
    pub key_pair: Option<S<String>>,
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
    #[serde(default)]
    pub services: Vec<S<String>>,
    pub flow_logs: Option<FlowLogsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub engine: S<String>,
    #[serde(default)]
    pub multi_az: Option<S<bool>>,
    pub subnet_group: S<String>,
    pub availability_zone: Option<S<String>>,
    pub primary_ip: Option<S<Scalar>>,
    pub standby_ip: Option<S<Scalar>>,
    pub master_username: S<String>,
    pub master_password: Option<S<String>>,
    pub database_name: Option<S<String>>,
    #[serde(default)]
    pub publicly_accessible: Option<S<bool>>,
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
    pub port: Option<S<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternetHostFile {
    pub ip: S<Scalar>,
    #[serde(default)]
    pub my_ip: Option<S<bool>>,
    #[serde(default)]
    pub services: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectFile {
    pub from: S<String>,
    pub to: S<String>,
    pub check: S<String>,
    /// `ok` when omitted.
    pub result: Option<S<String>>,
    pub port: Option<S<Scalar>>,
    pub seen_as: Option<S<String>>,
    pub answer: Option<S<String>>,
}

/// Any YAML scalar, kept as the text the file wrote: `port: 22` and `port: "1024-65535"`
/// both arrive here, and validation says what is wrong with either.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scalar(pub String);

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a single value (text or number)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
