//! The pure half of `apply`: what an edit of a running lab's file changes, and what it
//! would take in the kernel.
//!
//! * `changes` compares two checked labs object by object, as AWS sees them: the list a
//!   person reads before saying yes (Terraform-style `+ ~ -` lines), and the edits AWS would
//!   refuse to make in place (`rules`).
//! * `delta` compares the two labs' plans namespace by namespace: the smallest set of
//!   kernel writes that turns the running lab into the edited one, leaving every untouched
//!   namespace, link and process exactly as it is.
//!
//! Objects are matched by the name the file gives them, so renaming an object is
//! destroying it and creating another: the same as on AWS, where a new name is a new
//! resource, and the way out this module offers for a change AWS can only make by
//! replacement.

mod changes;
mod delta;
mod rules;
#[cfg(test)]
mod tests;

pub use delta::{FirewallChange, FlowLogChange, HostDelta, NetnsDelta, PlanDelta, delta};

use crate::topology::Lab;
use serde::{Serialize, Serializer};
use std::fmt;

/// What an edit does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    // The order is the order of the listing: what goes away, then what changes, then
    // what is new.
    Destroy,
    Change,
    Create,
}

impl Op {
    pub fn sign(self) -> char {
        match self {
            Op::Destroy => '-',
            Op::Change => '~',
            Op::Create => '+',
        }
    }
}

/// The AWS objects a lab file describes, in the order a listing shows them: each after
/// the objects it depends on (an Elastic IP before the NAT gateway holding it, a DB subnet
/// group before its databases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Vpc,
    Subnet,
    RouteTable,
    InternetGateway,
    ElasticIp,
    NatGateway,
    SecurityGroup,
    NetworkAcl,
    Instance,
    FlowLog,
    DbSubnetGroup,
    Database,
    InternetHost,
    Expectation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::RouteTable => "route table",
            Kind::InternetGateway => "internet gateway",
            Kind::ElasticIp => "elastic ip",
            Kind::NatGateway => "nat gateway",
            Kind::SecurityGroup => "security group",
            Kind::NetworkAcl => "network acl",
            Kind::Instance => "instance",
            Kind::FlowLog => "flow log",
            Kind::DbSubnetGroup => "db subnet group",
            Kind::Database => "database",
            Kind::InternetHost => "internet host",
            Kind::Expectation => "expectation",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One object the edit creates, changes or destroys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub op: Op,
    pub kind: Kind,
    pub name: String,
    /// For a creation, what the new object is (`10.0.4.0/24`, `ap-northeast-2c`); for a
    /// change, one entry per thing that changed (`+ inbound tcp 22 from 0.0.0.0/0`); empty
    /// for a destruction.
    pub detail: Vec<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.op.sign(), self.kind, self.name)?;
        if self.detail.is_empty() {
            return Ok(());
        }
        match self.op {
            Op::Change => write!(f, ": {}", self.detail.join(", ")),
            _ => write!(f, " ({})", self.detail.join(", ")),
        }
    }
}

/// An edit AWS cannot make to a running object, with the rule that forbids it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub kind: Kind,
    pub name: String,
    /// The edit and the AWS rule it breaks.
    pub message: String,
    /// The ways out.
    pub hint: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}\n  hint: {}",
            self.kind, self.name, self.message, self.hint
        )
    }
}

/// What an edit of a lab file changes, for people, and what of it AWS would refuse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Destroys, then changes, then creates; each by kind, then in file order.
    pub changes: Vec<Change>,
    /// Every refused edit at once, so one round of fixing the file is enough.
    pub refusals: Vec<Refusal>,
}

impl Diff {
    /// Nothing to do: the running lab already matches the file.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.refusals.is_empty()
    }

    pub fn is_refused(&self) -> bool {
        !self.refusals.is_empty()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for r in &self.refusals {
            writeln!(f, "refused: {r}")?;
        }
        Ok(())
    }
}

/// Compares the running lab (`old`) with the edited file (`new`).
pub fn changes(old: &Lab, new: &Lab) -> Diff {
    let mut changes = changes::list(old, new);
    // A stable sort keeps file order within one op and kind.
    changes.sort_by_key(|c| (c.op, c.kind));
    Diff {
        changes,
        refusals: rules::refusals(old, new),
    }
}
