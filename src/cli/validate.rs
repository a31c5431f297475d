use crate::topology::{self, LoadError, Source};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Lab file (YAML); the built-in hands-on lab when omitted
    file: Option<PathBuf>,
    /// Print the result as JSON: {"valid": bool, "diagnostics": [...]}
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let source = Source::from_arg(a.file.as_deref());
    let label = source.label();
    let result = topology::load(source, None);
    if a.json {
        let (valid, diags) = match &result {
            Ok(l) => (true, l.warnings.items.clone()),
            Err(LoadError::Invalid(_, d)) => (false, d.items.clone()),
            Err(e @ LoadError::Io(..)) => return Err(anyhow::anyhow!("{e}")),
        };
        let out = serde_json::json!({ "file": label, "valid": valid, "diagnostics": diags });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    match result {
        Ok(l) => {
            if !l.warnings.items.is_empty() {
                eprintln!("{}", l.warnings.render(&label));
            }
            let lab = &l.lab;
            println!(
                "{label}: ok: lab `{}` in {}: VPC {} ({}), {} subnets, {} instances, {} databases, {} internet hosts, {} expectations",
                lab.name,
                lab.region,
                lab.vpc.name,
                lab.vpc.cidr,
                lab.subnets.len(),
                lab.instances.len(),
                lab.databases.len(),
                lab.internet.len(),
                lab.expectations.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ LoadError::Invalid(..)) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}
