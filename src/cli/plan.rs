use super::LabArgs;
use crate::plan;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    /// Print the plan as JSON (pure data: what `up` will create)
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Some(loaded) = a.lab.load()? else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = plan::compile(&loaded.lab);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan::show::render(&plan));
    }
    Ok(ExitCode::SUCCESS)
}
