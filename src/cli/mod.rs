//! Command-line wiring: one file per subcommand, no logic beyond calling the layers.

mod apply;
mod audit;
mod cidr;
mod diagram;
mod down;
mod drill;
mod drill_writer;
mod exec;
mod export;
mod flowlogs;
mod instance;
mod ls;
mod nat_table;
mod plan;
mod probe;
mod reach;
mod reboot;
mod repair;
mod serve;
mod ssh;
mod status;
mod supervise;
mod trace;
mod up;
mod validate;

use crate::topology;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vpclab",
    version,
    about = "An AWS-style VPC made of real Linux namespaces: subnets, route tables, internet and NAT gateways, security groups, EC2 hosts and RDS Multi-AZ",
    long_about = None,
    after_help = "With no FILE, commands use the built-in lab `handson` (labs/handson.yaml): the hands-on write-up's architecture."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a lab file against AWS's rules; report every problem with its line and column
    Validate(validate::Args),
    /// Show everything `up` would create: namespaces, links, route tables, NAT and
    /// security group rules, DNS records, services
    Plan(plan::Args),
    /// CIDR arithmetic: network, netmask, ranges, usable hosts (classic and AWS), split, merge
    Cidr(cidr::Args),
    /// Draw the lab's architecture like the write-up's picture (SVG, Graphviz dot or Mermaid)
    Diagram(diagram::Args),
    /// Build the lab for real: namespaces, links, route tables, NAT, security groups (root)
    Up(up::Args),
    /// Change a running lab to match its edited file, making only the difference (root;
    /// --dry-run shows it without root)
    Apply(apply::Args),
    /// Remove a lab and everything it made; works after a crash and without the YAML (root)
    Down(down::Args),
    /// Make a running lab what its recorded state says again: namespaces, links, routes,
    /// nftables, services, database servers, the supervisor, an unfinished apply (root)
    Repair(repair::Args),
    /// Serve the EC2 API (as the AWS CLI and SDKs call it) for this machine's labs: every
    /// call changes the real namespaces (root)
    Serve(serve::Args),
    /// Show a running lab, checked against the kernel
    Status(status::Args),
    /// List the labs on this machine
    Ls(ls::Args),
    /// Print a running lab as a lab file that `validate` accepts and `up` rebuilds, however
    /// the lab was made
    Export(export::Args),
    /// Run a command inside a node's namespaces, with its own resolv.conf, hosts and hostname (root)
    Exec(exec::Args),
    /// Stop an instance: its services stop, an auto-assigned public IP is released (root)
    Stop(instance::Args),
    /// Start a stopped instance: a new auto-assigned public IP (an Elastic IP stays), services back (root)
    Start(instance::Args),
    /// Reboot an RDS instance, with failover to its standby (--failover) or in place (root)
    Reboot(reboot::Args),
    /// Failover drills with a live writer (RTO, zero lost writes) and AZ outages (root)
    Drill(drill::Args),
    /// The drill's writer, run inside an instance by `drill failover`
    #[command(hide = true)]
    DrillWriter(drill_writer::Args),
    /// Check every expectation of the lab with real clients (ssh, curl, nslookup, ping, nc, mysql)
    Probe(probe::Args),
    /// Log in to an instance with the lab's key pair from my laptop, by its public DNS name
    Ssh(ssh::Args),
    /// The lab's supervisor process (started by `up`)
    #[command(hide = true)]
    Supervise(supervise::Args),
    /// Send one real request and show every hop it crosses, with each address
    /// translation and the rule that made it (captured with packet sockets)
    Trace(trace::Args),
    /// The NAT gateway's live mappings (its conntrack table), or the internet gateway's
    /// stateless 1:1 pairs with the packets each one rewrote
    NatTable(nat_table::Args),
    /// Can FROM reach TO? The path as AWS's Reachability Analyzer tells it, from the
    /// lab's plan alone (no root with --file); --verify proves it with a real packet
    Reach(reach::Args),
    /// Check the lab against AWS Security Hub's controls (EC2.2, EC2.9, EC2.13, EC2.18,
    /// EC2.19, RDS.2, RDS.5) and what the internet can reach; exit 1 on a critical or high finding
    Audit(audit::Args),
    FlowLogs(flowlogs::Args),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Cidr(a) => cidr::run(a),
        Command::Diagram(a) => diagram::run(a),
        Command::Up(a) => up::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Down(a) => down::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Status(a) => status::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Export(a) => export::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Stop(a) => instance::stop(a),
        Command::Start(a) => instance::start(a),
        Command::Reboot(a) => reboot::run(a),
        Command::Drill(a) => drill::run(a),
        Command::DrillWriter(a) => drill_writer::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Ssh(a) => ssh::run(a),
        Command::Supervise(a) => supervise::run(a),
        Command::Trace(a) => trace::run(a),
        Command::NatTable(a) => nat_table::run(a),
        Command::Reach(a) => reach::run(a),
        Command::Audit(a) => audit::run(a),
        Command::FlowLogs(a) => flowlogs::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vpclab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The lab a command works on: a file, or the built-in hands-on lab.
#[derive(clap::Args)]
pub struct LabArgs {
    /// Lab file (YAML); the built-in hands-on lab when omitted
    pub file: Option<std::path::PathBuf>,
}

impl LabArgs {
    /// Loads and validates the lab, printing warnings; `None` after printing errors.
    pub fn load(&self) -> anyhow::Result<Option<topology::Loaded>> {
        load_lab(self.file.as_deref(), None)
    }
}

pub fn load_lab(
    file: Option<&std::path::Path>,
    name: Option<&str>,
) -> anyhow::Result<Option<topology::Loaded>> {
    let source = topology::Source::from_arg(file);
    match topology::load(source, name) {
        Ok(l) => {
            if !l.warnings.items.is_empty() {
                eprintln!("{}", l.warnings.render(&l.source.label()));
            }
            Ok(Some(l))
        }
        Err(e @ topology::LoadError::Invalid(..)) => {
            eprintln!("{e}");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
