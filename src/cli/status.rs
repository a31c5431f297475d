use crate::lab::{self, status};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The lab (the only running lab, or `handson`, when omitted)
    name: Option<String>,
    /// Print the status as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let r = lab::running(a.name.as_deref())?;
    let s = status::status(&r);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::render(&s));
    }
    Ok(if s.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
