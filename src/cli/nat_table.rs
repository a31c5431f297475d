use crate::lab::{self, up::require_root};
use crate::trace::nat;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sudo vpclab nat-table nat-gateway\n  sudo vpclab nat-table handson igw --json"
)]
pub struct Args {
    /// [LAB] GATEWAY: the lab (optional: the only running lab, or `handson`), then `igw`,
    /// `nat-gateway` or a gateway's name
    #[arg(num_args = 1..=2, required = true, value_names = ["LAB", "GATEWAY"])]
    words: Vec<String>,
    /// Print the table as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("nat-table")?;
    let (lab, which) = match a.words.as_slice() {
        [which] => (None, which.as_str()),
        [lab, which] => (Some(lab.as_str()), which.as_str()),
        _ => unreachable!("clap takes one or two words"),
    };
    let r = lab::running(lab)?;
    let tables = nat::select(&r.plan, which)?
        .into_iter()
        .map(|ns| nat::read(&r.plan, ns))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&tables)?);
    } else {
        let text: Vec<String> = tables.iter().map(nat::render).collect();
        print!("{}", text.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}
