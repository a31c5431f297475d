use crate::lab;
use crate::topology::export;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The running lab (the only running lab, or `handson`, when omitted), however it was
    /// made: from a file, or through `vpclab serve`'s EC2 API
    name: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let r = lab::running(a.name.as_deref())?;
    println!(
        "# Lab `{}` exported by `vpclab export` (from {}): `vpclab up` on this file rebuilds it.",
        r.state.lab, r.state.source
    );
    print!("{}", export::to_yaml(&r.file_lab));
    Ok(ExitCode::SUCCESS)
}
