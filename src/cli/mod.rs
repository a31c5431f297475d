//! Command-line wiring: one file per subcommand, no logic beyond calling the layers.

mod validate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vpclab",
    version,
    about = "An AWS-style VPC made of real Linux namespaces: subnets, route tables, internet and NAT gateways, security groups, EC2 hosts and RDS Multi-AZ",
    long_about = None,
    after_help = "With no FILE, commands use the built-in lab `handson` (labs/handson.yaml): the seed's hands-on architecture."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a lab file against AWS's rules; report every problem with its line and column
    Validate(validate::Args),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => validate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vpclab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
