use crate::lab::apply::{self, Refused};
use crate::lab::up::require_root;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    sudo vpclab apply my-lab.yaml              change the running lab `my-lab` (its file's name:) to match the file\n  \
    sudo vpclab apply my-lab.yaml --dry-run    show what would change; change nothing\n  \
    sudo vpclab apply labs/handson.yaml --name copy    apply to the lab started with `up --name copy`\n\n\
Each line names one AWS object: `+` created, `~` changed (with what changed), `-` destroyed.\n\
Only the difference is made: namespaces, links, processes and connections of what did not\n\
change are left as they are. Changes AWS can't make in place (a VPC's or subnet's CIDR, an\n\
instance's subnet or private IP, ...) are refused, all at once, and nothing is changed.")]
pub struct Args {
    /// The edited lab file (YAML); the built-in hands-on lab when omitted
    file: Option<std::path::PathBuf>,
    /// The running lab to change, when it was started under another name (`up --name`)
    #[arg(long)]
    name: Option<String>,
    /// Show the difference and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print {"changes": [{"op", "kind", "name", "detail"}], "applied", "kernel_writes", "ms"}
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !a.dry_run {
        require_root("apply")?;
    }
    let Some(loaded) = super::load_lab(a.file.as_deref(), a.name.as_deref())? else {
        return Ok(ExitCode::FAILURE);
    };
    match apply::apply(&loaded, a.dry_run) {
        Ok(out) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", apply::render(&out));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.downcast::<Refused>() {
            Ok(refused) => {
                eprint!("vpclab: {refused}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e),
        },
    }
}
