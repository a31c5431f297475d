//! A lab's lifecycle: up, down, status, and running programs on its nodes.
//! The kernel work itself is in `kernel`; this layer decides what to do, in which order,
//! records it in the state dir, and rolls back on failure.

pub mod apply;
pub mod control;
pub mod database;
pub mod down;
pub mod flowlog_collector;
pub mod flowlogs;
pub mod hosts;
pub mod instance;
pub mod progress;
pub mod repair;
pub mod state;
pub mod status;
pub mod summary;
pub mod supervisor;
pub mod up;

use crate::plan::{self, Plan};
use crate::topology::PublicIp;
use crate::topology::{self, Lab, Source};
use anyhow::{Context, Result, bail};
use state::{Runtime, State};

/// A lab that is up (or was being brought up), rebuilt from its state file.
pub struct Running {
    pub state: State,
    /// The lab as its file describes it.
    pub file_lab: Lab,
    /// The lab as it is now (stopped instances, new public IPs, failovers applied).
    pub lab: Lab,
    pub plan: Plan,
}

/// Finds a running lab by name; with no name, the only running lab (or `handson`).
pub fn running(name: Option<&str>) -> Result<Running> {
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let labs = state::labs();
            match labs.as_slice() {
                [] => bail!("no lab is up\n  hint: start one with `sudo vpclab up`"),
                [one] => one.clone(),
                many if many.iter().any(|l| l == topology::BUILTIN_NAME) => {
                    topology::BUILTIN_NAME.to_string()
                }
                many => bail!(
                    "several labs are up ({}); say which\n  hint: add the lab name, e.g. `vpclab status {}`",
                    many.join(", "),
                    many[0]
                ),
            }
        }
    };
    let Some(st) = State::load(&name)? else {
        bail!(
            "lab `{name}` is not up\n  hint: `vpclab ls` lists the labs that are; `sudo vpclab up` starts the built-in one"
        );
    };
    let (lab, diags) =
        topology::check_keeping(&st.yaml, &Source::Builtin, Some(&st.lab), &st.allocations);
    let lab = lab.with_context(|| {
        format!(
            "the lab text saved in the state of `{name}` no longer validates:\n{}",
            diags.render(&st.source)
        )
    })?;
    let file_lab = lab.clone();
    let lab = apply_runtime(lab, &st.runtime);
    let plan = plan::compile(&lab);
    Ok(Running {
        state: st,
        file_lab,
        lab,
        plan,
    })
}

/// The lab as it is now: the file's lab with what `stop`, `start` and failovers changed.
pub fn apply_runtime(mut lab: Lab, rt: &Runtime) -> Lab {
    for i in &mut lab.instances {
        if let Some(ip) = rt.public_ips.get(&i.name)
            && matches!(i.public_ip, PublicIp::Auto { .. })
        {
            i.public_ip = PublicIp::Auto { address: *ip };
        }
        // A stopped instance keeps its private IP but loses an auto-assigned public IP
        // (an Elastic IP stays associated), as on AWS.
        if rt.stopped.contains(&i.name) && matches!(i.public_ip, PublicIp::Auto { .. }) {
            i.public_ip = PublicIp::None;
        }
    }
    for d in &mut lab.databases {
        if let Some(primary) = rt.primaries.get(&d.name)
            && d.standby.as_ref().is_some_and(|s| &s.name == primary)
        {
            let standby = d.standby.take().expect("checked above");
            d.standby = Some(std::mem::replace(&mut d.primary, standby));
        }
    }
    lab
}
