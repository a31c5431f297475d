//! vpclab: an AWS-style VPC built from real Linux namespaces.
//!
//! The spine is topology (YAML → checked `Lab`) → plan (pure data) → kernel (the only layer that
//! touches the kernel). `lab` runs that pipeline (up, down, state, supervisor); `services` are the
//! processes inside a lab (sshd, nginx, MariaDB, DNS, metadata); `probe`, `trace` and `drill` act on
//! a running lab; `diagram` and `cidr` only read a lab file. `cli` is the argument wiring of the
//! `vpclab` binary, one file per subcommand. The crate is a library so that integration tests can
//! call the validator and the planner directly.

pub mod analyze;
pub mod api;
pub mod cidr;
pub mod cli;
pub mod diagram;
pub mod drill;
pub mod kernel;
pub mod lab;
pub mod plan;
pub mod probe;
pub mod reconcile;
pub mod services;
pub mod topology;
pub mod trace;
