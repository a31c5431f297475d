//! `vpclab serve`: the EC2 Query API over the real lab. A request is checked (Signature
//! Version 4), parsed (the Query protocol) and turned into a change of the account's
//! desired labs, which then goes the one way every lab change goes: validate, plan, diff,
//! apply. Answers are EC2's XML.

pub mod account;
pub mod actions;
pub mod error;
pub mod query;
pub mod server;
pub mod service;
pub mod sigv4;
pub mod xml;
