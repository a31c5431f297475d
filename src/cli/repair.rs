use crate::lab::repair;
use crate::lab::up::require_root;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    sudo vpclab repair              repair the only running lab (or `handson`)\n  \
    sudo vpclab repair my-lab       repair the lab `my-lab`\n\n\
The lab's state file says what the lab is (its file, stopped instances, which database\n\
server is primary, ...). The kernel is read back and compared with it: a namespace, link,\n\
address, route, policy rule, sysctl or nftables table that is missing or not as planned is\n\
made again; services, database servers and the supervisor that died are started again; an\n\
`apply` that was killed half-way is finished. Each line says what was found and what was\n\
done; `no changes` means the lab was whole, and nothing was written.")]
pub struct Args {
    /// The lab (the only running lab, or `handson`, when omitted)
    name: Option<String>,
    /// Print {"lab", "fixes": [{"found", "fixed"}], "kernel_writes", "healthy", "problems", "ms"}
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    require_root("repair")?;
    let out = repair::repair(a.name.as_deref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", repair::render(&out));
    }
    Ok(if out.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
