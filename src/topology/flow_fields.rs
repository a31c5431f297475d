//! The fields of a VPC flow log record, by AWS's names, each with the format version that
//! introduced it: a custom `format:` may list any of them, in any order.

use serde::{Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowField {
    Version,
    AccountId,
    InterfaceId,
    Srcaddr,
    Dstaddr,
    Srcport,
    Dstport,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcaddr,
    PktDstaddr,
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
}

use FlowField::*;

/// Every field: its name in a format string and the version that introduced it.
const FIELDS: [(FlowField, &str, u8); 29] = [
    (Version, "version", 2),
    (AccountId, "account-id", 2),
    (InterfaceId, "interface-id", 2),
    (Srcaddr, "srcaddr", 2),
    (Dstaddr, "dstaddr", 2),
    (Srcport, "srcport", 2),
    (Dstport, "dstport", 2),
    (Protocol, "protocol", 2),
    (Packets, "packets", 2),
    (Bytes, "bytes", 2),
    (Start, "start", 2),
    (End, "end", 2),
    (Action, "action", 2),
    (LogStatus, "log-status", 2),
    (VpcId, "vpc-id", 3),
    (SubnetId, "subnet-id", 3),
    (InstanceId, "instance-id", 3),
    (TcpFlags, "tcp-flags", 3),
    (Type, "type", 3),
    (PktSrcaddr, "pkt-srcaddr", 3),
    (PktDstaddr, "pkt-dstaddr", 3),
    (Region, "region", 4),
    (AzId, "az-id", 4),
    (SublocationType, "sublocation-type", 4),
    (SublocationId, "sublocation-id", 4),
    (PktSrcAwsService, "pkt-src-aws-service", 5),
    (PktDstAwsService, "pkt-dst-aws-service", 5),
    (FlowDirection, "flow-direction", 5),
    (TrafficPath, "traffic-path", 5),
];

/// AWS's default format: the version 2 fields, in this order.
pub const DEFAULT_FORMAT: [FlowField; 14] = [
    Version,
    AccountId,
    InterfaceId,
    Srcaddr,
    Dstaddr,
    Srcport,
    Dstport,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
];

impl FlowField {
    fn entry(self) -> &'static (FlowField, &'static str, u8) {
        FIELDS
            .iter()
            .find(|(f, _, _)| *f == self)
            .expect("every field is listed")
    }

    /// The name AWS gives the field (`pkt-srcaddr`), as a format string and a log file's
    /// header line write it.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The flow log format version that introduced the field.
    pub fn version(self) -> u8 {
        self.entry().2
    }

    pub fn from_name(name: &str) -> Option<FlowField> {
        FIELDS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(f, _, _)| *f)
    }

    /// Every field name, for a hint.
    pub fn names() -> impl Iterator<Item = &'static str> {
        FIELDS.iter().map(|(_, n, _)| *n)
    }
}

/// The version a record of these fields carries: the highest version among them.
pub fn format_version(fields: &[FlowField]) -> u8 {
    fields.iter().map(|f| f.version()).max().unwrap_or(2)
}

/// A format string's fields, AWS's `${field}` tokens or bare names separated by spaces;
/// `Err` holds the first token that names no field.
pub fn parse_format(text: &str) -> Result<Vec<FlowField>, String> {
    text.split_whitespace()
        .map(|token| {
            let name = token
                .strip_prefix("${")
                .and_then(|t| t.strip_suffix('}'))
                .unwrap_or(token);
            FlowField::from_name(name).ok_or_else(|| token.to_string())
        })
        .collect()
}

impl fmt::Display for FlowField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for FlowField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_tokens_and_bare_names_both_parse_and_unknown_ones_are_named() {
        assert_eq!(
            parse_format("${version} ${vpc-id} srcaddr  ${traffic-path}"),
            Ok(vec![Version, VpcId, Srcaddr, TrafficPath])
        );
        assert_eq!(parse_format("version ${vpcid}"), Err("${vpcid}".into()));
    }

    #[test]
    fn the_version_is_the_highest_any_field_needs() {
        assert_eq!(format_version(&DEFAULT_FORMAT), 2);
        assert_eq!(format_version(&[Version, TcpFlags]), 3);
        assert_eq!(format_version(&[AzId, Version]), 4);
        assert_eq!(format_version(&[FlowDirection, VpcId]), 5);
    }

    #[test]
    fn every_field_has_one_name_that_reads_back() {
        for name in FlowField::names() {
            assert_eq!(FlowField::from_name(name).unwrap().name(), name);
        }
        assert_eq!(FlowField::names().count(), FIELDS.len());
    }
}
