//! vpclab: an AWS-style VPC built from real Linux namespaces.
//!
//! The spine is topology (YAML → checked `Lab`) → plan (pure data) → apply (the kernel).

mod cidr;
mod cli;
mod diagram;
mod drill;
mod kernel;
mod lab;
mod plan;
mod probe;
mod services;
mod topology;
mod trace;

fn main() -> std::process::ExitCode {
    cli::run()
}
