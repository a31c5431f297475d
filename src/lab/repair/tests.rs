use super::super::Running;
use super::super::state::State;
use super::*;
use crate::kernel::observe::{Observed, Stray};
use crate::lab::apply_runtime;
use crate::lab::database;
use crate::plan::Plan;
use crate::plan::network::HOST_IF;
use crate::reconcile::{self};
use crate::topology::{self, Source};

/// The built-in lab as running, with `change` made to its runtime record.
fn running_with(change: impl FnOnce(&mut state::Runtime)) -> Running {
    let loaded = topology::load(Source::Builtin, None).expect("built-in lab loads");
    let mut runtime = state::Runtime::default();
    change(&mut runtime);
    let lab = apply_runtime(loaded.lab.clone(), &runtime);
    let plan = crate::plan::compile(&lab);
    Running {
        state: State {
            lab: lab.name.clone(),
            source: "built-in".into(),
            yaml: loaded.text,
            phase: Phase::Up,
            created: 0,
            namespaces: plan.namespaces.iter().map(|n| n.name.clone()).collect(),
            processes: vec![],
            runtime,
            applying: false,
            allocations: crate::topology::Allocations::of(&loaded.lab),
        },
        file_lab: loaded.lab,
        lab,
        plan,
    }
}

fn whole(plan: &Plan) -> Observed {
    Observed {
        plan: plan.clone(),
        missing_namespaces: vec![],
        stray_ends: vec![],
        down_links: vec![],
        firewall_differences: vec![],
    }
}

fn ns<'a>(plan: &'a mut Plan, node: &str) -> &'a mut crate::plan::Netns {
    plan.namespaces.iter_mut().find(|n| n.node == node).unwrap()
}

fn found(fixes: &[Fix]) -> Vec<&str> {
    fixes.iter().map(|f| f.found.as_str()).collect()
}

#[test]
fn a_kernel_that_holds_the_plan_needs_no_write_and_no_fix() {
    let r = running_with(|_| {});
    let (desired, _) = desired(&r);
    let observed = whole(&desired);
    let delta = reconcile::delta(&observed.plan, &desired);
    assert!(delta.is_empty());
    assert_eq!(delta.kernel_writes(&desired), 0);
    assert!(kernel_fixes(&desired, &observed, &delta).is_empty());
}

#[test]
fn what_is_missing_or_extra_in_a_kept_namespace_is_one_line_each() {
    let r = running_with(|_| {});
    let (desired, _) = desired(&r);
    let mut observed = whole(&desired);
    let app = ns(&mut observed.plan, "app");
    app.routes.clear();
    app.addresses.push(crate::plan::Address {
        dev: "eth0".into(),
        addr: "10.0.1.200/24".parse().unwrap(),
    });
    app.sysctls[0].value = "7".into();
    let key = app.sysctls[0].key.clone();
    let want = desired.netns("app").unwrap().sysctls[0].value.clone();
    ns(&mut observed.plan, "vpc-router").rules.remove(1);
    ns(&mut observed.plan, "web").firewall = None;
    observed.firewall_differences.push((
        desired.netns("web").unwrap().name.clone(),
        "chain input has 0 of its 7 rules".into(),
    ));
    ns(&mut observed.plan, "my-igw").firewall = None;
    let mut delta = reconcile::delta(&observed.plan, &desired);
    sysctls_in_plan_order(&mut delta, &desired);
    let fixes = kernel_fixes(&desired, &observed, &delta);
    assert_eq!(
        found(&fixes),
        [
            "vpc-router: policy rule priority 1001 iif br-private-2a lookup 102 is missing",
            "my-igw: nftables table ip vpclab is missing",
            "web: nftables table inet vpclab is not the plan's (chain input has 0 of its 7 rules)",
            &format!("app: sysctl {key} is 7, not {want}"),
            "app: address 10.0.1.200/24 on eth0 is not in the plan",
            "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing",
        ]
    );
    assert_eq!(
        fixes[2].fixed,
        "replaced it with the plan's, in one transaction"
    );
    assert_eq!(fixes[4].fixed, "deleted it");
    // The first sysctl was wrong: all of them are written again, in order, though
    // only the wrong one is named.
    let all = &desired.netns("app").unwrap().sysctls;
    let app = delta
        .change_namespaces
        .iter()
        .find(|c| c.name == desired.netns("app").unwrap().name)
        .unwrap();
    assert_eq!(&app.set_sysctls, all);
    assert_eq!(delta.kernel_writes(&desired), fixes.len() - 1 + all.len());
}

#[test]
fn a_missing_namespace_is_one_line_and_its_surviving_peer_another() {
    let r = running_with(|_| {});
    let (desired, _) = desired(&r);
    let mut observed = whole(&desired);
    let web = desired.netns("web").unwrap().name.clone();
    observed.plan.namespaces.retain(|n| n.name != web);
    observed.missing_namespaces.push(web.clone());
    let pair = |v: &&crate::plan::Veth| v.a.ns == web || v.b.ns == web;
    let veth = desired.veths.iter().find(pair).unwrap().clone();
    observed.plan.veths.retain(|v| v != &veth);
    let router_end = if veth.a.ns == web { &veth.b } else { &veth.a };
    observed
        .stray_ends
        .push((router_end.clone(), Stray::PeerNamespaceMissing));
    // A link of a kept namespace deleted by hand: its pair is missing as a whole.
    let app = desired.netns("app").unwrap().name.clone();
    let app_veth = desired
        .veths
        .iter()
        .find(|v| v.a.ns == app || v.b.ns == app)
        .unwrap()
        .clone();
    observed.plan.veths.retain(|v| v != &app_veth);
    ns(&mut observed.plan, "app").addresses.clear();
    ns(&mut observed.plan, "app").routes.clear();
    let delta = reconcile::delta(&observed.plan, &desired);
    let fixes = kernel_fixes(&desired, &observed, &delta);
    assert_eq!(
        found(&fixes),
        [
            format!("namespace {web} (web) is missing"),
            "vpc-router/p-web lost its peer web/eth0 (its namespace is missing)".to_string(),
            "veth pair app/eth0 <-> vpc-router/p-app is missing".to_string(),
        ]
    );
    assert_eq!(
        fixes[1].fixed,
        "deleted it; the pair is made again with the namespace"
    );
    assert_eq!(delta.create_namespaces, [web]);
    assert!(delta.add_veths.contains(&veth) && delta.add_veths.contains(&app_veth));
    // The fresh link gets its address and route back without a line of its own.
    let app_delta = delta
        .change_namespaces
        .iter()
        .find(|c| c.name == app)
        .unwrap();
    assert_eq!(app_delta.add_addresses.len(), 1);
    assert_eq!(app_delta.add_routes.len(), 1);
}

#[test]
fn a_stopped_instance_and_a_downed_zone_keep_their_links_down_without_routes() {
    let r = running_with(|rt| {
        rt.stopped.insert("web".into());
        rt.azs_down.insert("ap-northeast-2a".into());
    });
    let (plan, down) = desired(&r);
    let mut nodes: Vec<&str> = down.iter().map(|l| node_of(&plan, &l.ns)).collect();
    nodes.sort();
    assert_eq!(nodes, ["app", "my-database-2a", "my-nat", "web"]);
    assert!(down.iter().all(|l| l.name == HOST_IF));
    for node in nodes {
        assert!(
            plan.netns(node)
                .unwrap()
                .routes
                .iter()
                .all(|r| r.dev != HOST_IF),
            "{node}"
        );
    }
    assert!(!plan.netns("my-database-2c").unwrap().routes.is_empty());
    let resting = resting(&r);
    assert!(!wanted(&r, &resting, "web", "sshd"));
    assert!(!wanted(&r, &resting, "my-database-2a", database::WHAT));
    assert!(wanted(&r, &resting, "my-database-2c", database::WHAT));
    assert!(wanted(&r, &resting, "example-web", "nginx"));
    assert!(!wanted(&r, &resting, "example-web", "sshd"));
    assert!(wanted(&r, &resting, supervisor::NODE, supervisor::STANDBY));
}

#[test]
fn each_service_is_one_program_listening_on_its_ports() {
    let r = running_with(|_| {});
    assert_eq!(
        programs(r.plan.host("web").unwrap()),
        [("sshd", vec![22]), ("nginx", vec![80, 443])]
    );
    assert_eq!(programs(r.plan.host("app").unwrap()), [("sshd", vec![22])]);
    assert!(programs(r.plan.host("my-laptop").unwrap()).is_empty());
}

#[test]
fn the_report_says_no_changes_only_for_a_whole_lab() {
    let mut out = Repaired {
        lab: "lab1".into(),
        fixes: vec![],
        kernel_writes: 0,
        healthy: true,
        problems: vec![],
        ms: 3,
    };
    assert_eq!(render(&out), "no changes\n");
    out.healthy = false;
    out.problems = vec!["database server db-2a does not answer".into()];
    assert_eq!(
        render(&out),
        "still wrong: database server db-2a does not answer\n"
    );
    out.healthy = true;
    out.problems.clear();
    out.kernel_writes = 1;
    out.fixes = vec![Fix {
        found: "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing".into(),
        fixed: "added it".into(),
    }];
    assert_eq!(
        render(&out),
        "app: route 0.0.0.0/0 via 10.0.1.1 dev eth0 is missing: added it\n\nrepaired 1 problem of lab lab1 in 3 ms (1 kernel write)\n"
    );
}
