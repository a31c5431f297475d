//! Applies a plan's network fabric: namespaces, sysctls, nftables, links, addresses,
//! routes and policy rules. Independent work runs concurrently (namespaces on worker
//! threads, netlink requests pipelined); each step names what failed.
//!
//! Every request goes through the [`Kernel`] trait: [`Live`] is the real kernel, and the
//! unit tests below put a recording fake (`kernel::fake`) in its place to check, without
//! root, the order requests go out in and what a failure stops.

use super::netlink::Netlink;
use super::{netns, nft, sysctl};
use crate::plan::{Netns, Plan, Veth};
use anyhow::{Context, Result, anyhow};
use futures::{TryStreamExt, stream};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The steps of `apply`, in the order they run. Each step finishes before the next
/// starts, so a crash between two steps leaves nothing of the later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Namespaces with their sysctls and nftables rulesets.
    Namespaces,
    /// Bridges, then veth pairs.
    Links,
    /// Addresses, then every link up.
    Addresses,
    /// Routes, then policy rules.
    Routes,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Namespaces, Step::Links, Step::Addresses, Step::Routes];

    /// The name progress lines show, and that the lab layer's test faults
    /// (`VPCLAB_FAULT=fail:NAME`, `kill:NAME`) match.
    pub fn name(self) -> &'static str {
        match self {
            Step::Namespaces => "namespaces",
            Step::Links => "links",
            Step::Addresses => "addresses",
            Step::Routes => "routes",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Step {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Step> {
        Step::ALL
            .into_iter()
            .find(|step| step.name() == s)
            .ok_or_else(|| anyhow!("unknown apply step {s}"))
    }
}

/// Interface indexes chosen by vpclab: `lo` is 1 in every namespace, then bridges, then
/// veth ends in plan order. Fixed indexes let every request go out without a lookup.
pub struct Indexes(HashMap<(String, String), u32>);
impl Indexes {
    pub fn of(plan: &Plan) -> Indexes {
        let mut next: HashMap<&str, u32> = HashMap::new();
        let mut map = HashMap::new();
        let mut ends: Vec<(&str, &str)> = vec![];
        for ns in &plan.namespaces {
            map.insert((ns.name.clone(), "lo".into()), 1);
            ends.extend(ns.bridges.iter().map(|b| (ns.name.as_str(), b.as_str())));
        }
        for v in &plan.veths {
            ends.push((&v.a.ns, &v.a.name));
            ends.push((&v.b.ns, &v.b.name));
        }
        for (ns, dev) in ends {
            let n = next.entry(ns).or_insert(2);
            map.insert((ns.to_string(), dev.to_string()), *n);
            *n += 1;
        }
        Indexes(map)
    }

    pub fn get(&self, ns: &str, dev: &str) -> Result<u32> {
        self.0
            .get(&(ns.to_string(), dev.to_string()))
            .copied()
            .ok_or_else(|| anyhow!("plan has no device {dev} in {ns}"))
    }
}

/// How many namespaces are set up at once. Creating one is mostly kernel work plus an
/// `nft` process, so a few per core keeps both cores busy.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 3
}

/// Concurrent netlink requests in flight.
const IN_FLIGHT: usize = 128;

/// Every request `Applier` makes of the kernel. Namespaces are created and opened on
/// worker threads (blocking calls); everything after that is a netlink request, sent
/// through an opened namespace and pipelined with others.
pub trait Kernel: Sync {
    /// A created namespace, opened for requests.
    type Namespace: Send + Sync;

    /// Creates namespace `ns` with its sysctls and nftables ruleset.
    fn create(&self, ns: &Netns) -> Result<()>;

    /// Opens a created namespace for the requests of the later steps.
    fn open(&self, ns: &Netns) -> Result<Self::Namespace>;

    fn add_bridge(
        &self,
        ns: &Self::Namespace,
        name: &str,
        index: u32,
    ) -> impl Future<Output = Result<()>>;

    /// Creates the pair `v`: end `a` (index `index`) in `ns`, with end `b` (index
    /// `peer_index`) placed directly in `peer_ns`.
    fn add_veth(
        &self,
        ns: &Self::Namespace,
        v: &Veth,
        index: u32,
        peer_index: u32,
        peer_ns: &Self::Namespace,
        alias: &str,
    ) -> impl Future<Output = Result<()>>;

    fn add_address(
        &self,
        ns: &Self::Namespace,
        index: u32,
        dev: &str,
        addr: ipnet::Ipv4Net,
    ) -> impl Future<Output = Result<()>>;

    /// Brings a link up, enslaving it to the bridge `master` first when given.
    fn up(
        &self,
        ns: &Self::Namespace,
        index: u32,
        name: &str,
        master: Option<u32>,
    ) -> impl Future<Output = Result<()>>;

    fn add_route(
        &self,
        ns: &Self::Namespace,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        oif: u32,
        dev: &str,
    ) -> impl Future<Output = Result<()>>;

    fn add_rule(
        &self,
        ns: &Self::Namespace,
        priority: u32,
        iif: &str,
        table: u32,
    ) -> impl Future<Output = Result<()>>;
}

/// The real kernel: namespaces under /run/netns, requests over route netlink.
pub struct Live {
    /// Runs the connection task of each namespace's netlink socket.
    rt: tokio::runtime::Handle,
}

/// A lab namespace as `Live` opened it: its netlink socket, and its handle, which a veth
/// created elsewhere needs to place its peer here.
pub struct LiveNamespace {
    nl: Netlink,
    handle: File,
}

impl Kernel for Live {
    type Namespace = LiveNamespace;

    fn create(&self, ns: &Netns) -> Result<()> {
        create_namespace(ns)
    }

    fn open(&self, ns: &Netns) -> Result<LiveNamespace> {
        let handle = netns::open(&ns.name)?;
        let nl = netns::run_in(&handle, || Netlink::open_here(&self.rt))?;
        Ok(LiveNamespace { nl, handle })
    }

    fn add_bridge(
        &self,
        ns: &LiveNamespace,
        name: &str,
        index: u32,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.add_bridge(name, index)
    }

    fn add_veth(
        &self,
        ns: &LiveNamespace,
        v: &Veth,
        index: u32,
        peer_index: u32,
        peer_ns: &LiveNamespace,
        alias: &str,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.add_veth(
            &v.a.name,
            index,
            &v.b.name,
            peer_index,
            peer_ns.handle.as_raw_fd(),
            alias,
        )
    }

    fn add_address(
        &self,
        ns: &LiveNamespace,
        index: u32,
        dev: &str,
        addr: ipnet::Ipv4Net,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.add_address(index, dev, addr)
    }

    fn up(
        &self,
        ns: &LiveNamespace,
        index: u32,
        name: &str,
        master: Option<u32>,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.up(index, name, master)
    }

    fn add_route(
        &self,
        ns: &LiveNamespace,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        oif: u32,
        dev: &str,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.add_route(table, dst, via, oif, dev)
    }

    fn add_rule(
        &self,
        ns: &LiveNamespace,
        priority: u32,
        iif: &str,
        table: u32,
    ) -> impl Future<Output = Result<()>> {
        ns.nl.add_rule(priority, iif, table)
    }
}

/// Creates namespace `ns` and does everything that happens inside it before any link
/// exists, on the thread that created it: sysctls (new links inherit the `default` ones),
/// then its nftables ruleset and flow-log counting table, then the sysctls that must follow
/// the ruleset.
pub fn create_namespace(ns: &Netns) -> Result<()> {
    netns::create_and(&ns.name, || {
        let (early, late): (Vec<_>, Vec<_>) = ns
            .sysctls
            .iter()
            .cloned()
            .partition(|s| !sysctl::after_firewall(s));
        sysctl::apply(&early)?;
        if let Some(t) = &ns.firewall {
            nft::apply_here(t)?;
        }
        if let Some(c) = ns.flow_log {
            super::flow::install_here(c)?;
        }
        sysctl::apply(&late)
    })
}

/// Called after each namespace is created, with how many exist so far.
pub type NamespaceHook<'p> = &'p (dyn Fn(usize) -> Result<()> + Sync);

/// Called as each step starts, before it makes any request.
pub type StepHook<'p> = &'p (dyn Fn(Step) -> Result<()> + Sync);

pub struct Applier<'p, K: Kernel = Live> {
    plan: &'p Plan,
    kernel: K,
    on_namespace: Option<NamespaceHook<'p>>,
    before_step: Option<StepHook<'p>>,
    idx: Indexes,
    namespaces: HashMap<String, K::Namespace>,
}

impl<'p> Applier<'p, Live> {
    /// Applies `plan` to the real kernel; netlink connections run on `rt`, which must be
    /// a multi-threaded runtime (namespaces are created from `block_in_place`).
    pub fn new(plan: &'p Plan, rt: tokio::runtime::Handle) -> Self {
        Applier::with_kernel(plan, Live { rt })
    }
}

impl<'p, K: Kernel> Applier<'p, K> {
    fn with_kernel(plan: &'p Plan, kernel: K) -> Self {
        Applier {
            plan,
            kernel,
            on_namespace: None,
            before_step: None,
            idx: Indexes::of(plan),
            namespaces: HashMap::new(),
        }
    }

    pub fn on_namespace(mut self, hook: NamespaceHook<'p>) -> Self {
        self.on_namespace = Some(hook);
        self
    }

    pub fn before_step(mut self, hook: StepHook<'p>) -> Self {
        self.before_step = Some(hook);
        self
    }

    /// Runs one step; its error (or the hook's) says which step failed.
    pub async fn step(&mut self, step: Step) -> Result<()> {
        let result = match self.before_step.map_or(Ok(()), |hook| hook(step)) {
            Ok(()) => match step {
                Step::Namespaces => self.namespaces().await,
                Step::Links => self.links().await,
                Step::Addresses => self.addresses().await,
                Step::Routes => self.routes().await,
            },
            Err(e) => Err(e),
        };
        result.with_context(|| format!("step `{step}` failed"))
    }

    /// Creates every namespace and, inside it, its sysctls and nftables ruleset; then
    /// opens a netlink socket in each for the later steps. Rulesets go first, while the
    /// process holds few file descriptors: libnftables waits on its socket with
    /// select(), which can't watch descriptors above 1023.
    async fn namespaces(&mut self) -> Result<()> {
        let plan = self.plan;
        let hook = self.on_namespace;
        let kernel = &self.kernel;
        let created = AtomicUsize::new(0);
        tokio::task::block_in_place(|| {
            par_each(&plan.namespaces, |ns| {
                kernel
                    .create(ns)
                    .with_context(|| format!("set up namespace {}", ns.name))?;
                let n = created.fetch_add(1, Ordering::SeqCst) + 1;
                hook.map_or(Ok(()), |h| h(n))
            })
        })?;
        let opened = tokio::task::block_in_place(|| {
            par_each(&plan.namespaces, |ns| {
                Ok((ns.name.clone(), kernel.open(ns)?))
            })
        })?;
        self.namespaces.extend(opened);
        Ok(())
    }

    fn ns(&self, name: &str) -> Result<&K::Namespace> {
        self.namespaces
            .get(name)
            .ok_or_else(|| anyhow!("namespace {name} was not created"))
    }

    /// Bridges, then veth pairs: each created in one namespace with its peer placed
    /// directly in the other.
    async fn links(&mut self) -> Result<()> {
        let k = &self.kernel;
        let mut bridges = Vec::new();
        for ns in &self.plan.namespaces {
            for b in &ns.bridges {
                bridges.push((self.ns(&ns.name)?, b.as_str(), self.idx.get(&ns.name, b)?));
            }
        }
        stream::iter(bridges.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, b, i)| k.add_bridge(ns, b, i))
            .await?;
        let alias = format!("vpclab:{}", self.plan.lab);
        let mut veths = Vec::new();
        for v in &self.plan.veths {
            veths.push((
                self.ns(&v.a.ns)?,
                v,
                self.idx.get(&v.a.ns, &v.a.name)?,
                self.idx.get(&v.b.ns, &v.b.name)?,
                self.ns(&v.b.ns)?,
            ));
        }
        let alias = alias.as_str();
        stream::iter(veths.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, v, ia, ib, peer_ns)| async move {
                k.add_veth(ns, v, ia, ib, peer_ns, alias)
                    .await
                    .with_context(|| format!("in {}", v.a.ns))
            })
            .await
    }

    /// Addresses, then every link up (ports joined to their bridge on the way).
    async fn addresses(&mut self) -> Result<()> {
        let k = &self.kernel;
        let mut addrs = Vec::new();
        for ns in &self.plan.namespaces {
            for a in &ns.addresses {
                addrs.push((
                    self.ns(&ns.name)?,
                    a,
                    self.idx.get(&ns.name, &a.dev)?,
                    &ns.name,
                ));
            }
        }
        stream::iter(addrs.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, a, i, name)| async move {
                k.add_address(ns, i, &a.dev, a.addr)
                    .await
                    .with_context(|| format!("in {name}"))
            })
            .await?;

        let mut ups = Vec::new();
        for ns in &self.plan.namespaces {
            ups.push((self.ns(&ns.name)?, 1, "lo".to_string(), None));
            for b in &ns.bridges {
                ups.push((
                    self.ns(&ns.name)?,
                    self.idx.get(&ns.name, b)?,
                    b.clone(),
                    None,
                ));
            }
        }
        for v in &self.plan.veths {
            for end in [&v.a, &v.b] {
                let master = match &end.master {
                    Some(m) => Some(self.idx.get(&end.ns, m)?),
                    None => None,
                };
                ups.push((
                    self.ns(&end.ns)?,
                    self.idx.get(&end.ns, &end.name)?,
                    end.name.clone(),
                    master,
                ));
            }
        }
        stream::iter(ups.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, i, name, master)| async move {
                k.up(ns, i, &name, master).await
            })
            .await
    }

    async fn routes(&mut self) -> Result<()> {
        let k = &self.kernel;
        let mut routes = Vec::new();
        let mut rules = Vec::new();
        for ns in &self.plan.namespaces {
            let opened = self.ns(&ns.name)?;
            for r in &ns.routes {
                routes.push((opened, r, self.idx.get(&ns.name, &r.dev)?, &ns.name));
            }
            for r in &ns.rules {
                rules.push((opened, r, &ns.name));
            }
        }
        stream::iter(routes.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, r, oif, name)| async move {
                k.add_route(ns, r.table, r.dst, r.via, oif, &r.dev)
                    .await
                    .with_context(|| format!("in {name}"))
            })
            .await?;
        stream::iter(rules.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(ns, r, name)| async move {
                k.add_rule(ns, r.priority, &r.iif, r.table)
                    .await
                    .with_context(|| format!("in {name}"))
            })
            .await
    }
}

/// Runs `f` on every item on a few worker threads; stops at the first error.
fn par_each<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> Result<T> + Sync) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<T>> = Mutex::new(Vec::with_capacity(items.len()));
    let first_err: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers().min(items.len().max(1)) {
            s.spawn(|| {
                while first_err.lock().unwrap().is_none() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match f(item) {
                        Ok(v) => out.lock().unwrap().push(v),
                        Err(e) => {
                            first_err.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(out.into_inner().unwrap()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::{Recorder, Request};
    use crate::topology::{self, Source};

    fn handson() -> Plan {
        let loaded = topology::load(Source::Builtin, None).expect("built-in lab loads");
        crate::plan::compile(&loaded.lab)
    }

    /// Where a request falls in the order `apply` promises: each kind only after every
    /// request of the kinds before it.
    fn rank(r: &Request) -> usize {
        match r {
            Request::CreateNamespace(_) => 0,
            Request::OpenNamespace(_) => 1,
            Request::Bridge { .. } => 2,
            Request::Veth { .. } => 3,
            Request::Address { .. } => 4,
            Request::Up { .. } => 5,
            Request::Route { .. } => 6,
            Request::Rule { .. } => 7,
        }
    }

    fn step_of(r: &Request) -> Step {
        Step::ALL[rank(r) / 2]
    }

    fn count(log: &[Request], kind: usize) -> usize {
        log.iter().filter(|r| rank(r) == kind).count()
    }

    /// Runs the steps in order as `up` does, stopping at the first failure.
    async fn run(applier: &mut Applier<'_, &Recorder>) -> Result<()> {
        for step in Step::ALL {
            applier.step(step).await?;
        }
        Ok(())
    }

    #[test]
    fn steps_keep_the_names_progress_and_test_faults_use() {
        let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["namespaces", "links", "addresses", "routes"]);
        for step in Step::ALL {
            assert_eq!(step.to_string(), step.name());
            assert_eq!(step.name().parse::<Step>().unwrap(), step);
        }
        assert!("namespace:5".parse::<Step>().is_err());
        assert!("Links".parse::<Step>().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_step_sends_only_its_own_requests_in_dependency_order() {
        let plan = handson();
        let kernel = Recorder::granting();
        let mut applier = Applier::with_kernel(&plan, &kernel);
        for step in Step::ALL {
            let before = kernel.requests().len();
            applier.step(step).await.unwrap();
            let sent = kernel.requests();
            assert!(sent.len() > before, "step {step} sent nothing");
            for r in &sent[before..] {
                assert_eq!(step_of(r), step, "{r:?} sent during step {step}");
            }
        }
        let log = kernel.requests();
        for pair in log.windows(2) {
            assert!(
                rank(&pair[0]) <= rank(&pair[1]),
                "{:?} went out after {:?}",
                pair[1],
                pair[0]
            );
        }

        let per_ns = |f: fn(&Netns) -> usize| plan.namespaces.iter().map(f).sum::<usize>();
        let namespaces = plan.namespaces.len();
        let bridges = per_ns(|n| n.bridges.len());
        assert_eq!(count(&log, 0), namespaces);
        assert_eq!(count(&log, 1), namespaces);
        assert_eq!(count(&log, 2), bridges);
        assert_eq!(count(&log, 3), plan.veths.len());
        assert_eq!(count(&log, 4), per_ns(|n| n.addresses.len()));
        // Every namespace's `lo`, every bridge and both ends of every veth.
        assert_eq!(count(&log, 5), namespaces + bridges + 2 * plan.veths.len());
        assert_eq!(count(&log, 6), per_ns(|n| n.routes.len()));
        assert_eq!(count(&log, 7), per_ns(|n| n.rules.len()));
        assert!(bridges > 0 && per_ns(|n| n.rules.len()) > 0);

        let mut created: Vec<&String> = log
            .iter()
            .filter_map(|r| match r {
                Request::CreateNamespace(n) => Some(n),
                _ => None,
            })
            .collect();
        created.sort();
        let mut planned: Vec<&String> = plan.namespaces.iter().map(|n| &n.name).collect();
        planned.sort();
        assert_eq!(created, planned);
    }

    /// Interface indexes are chosen up front, so every request that names a device by
    /// index must use the index the device was created with, and a port's master must be
    /// a bridge of its own namespace.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn later_requests_use_the_indexes_links_were_created_with() {
        let plan = handson();
        let kernel = Recorder::granting();
        run(&mut Applier::with_kernel(&plan, &kernel))
            .await
            .unwrap();
        let log = kernel.requests();

        let mut created: HashMap<(String, String), u32> = plan
            .namespaces
            .iter()
            .map(|n| ((n.name.clone(), "lo".to_string()), 1))
            .collect();
        let mut bridges = Vec::new();
        for r in &log {
            match r {
                Request::Bridge { ns, name, index } => {
                    bridges.push((ns.clone(), *index));
                    assert_eq!(created.insert((ns.clone(), name.clone()), *index), None);
                }
                Request::Veth {
                    ns,
                    name,
                    index,
                    peer,
                    peer_index,
                    peer_ns,
                    alias,
                } => {
                    assert_eq!(alias, "vpclab:handson");
                    assert!(
                        plan.veths.iter().any(|v| v.a.ns == *ns
                            && v.a.name == *name
                            && v.b.ns == *peer_ns
                            && v.b.name == *peer),
                        "{r:?} is not a veth of the plan"
                    );
                    assert_eq!(created.insert((ns.clone(), name.clone()), *index), None);
                    assert_eq!(
                        created.insert((peer_ns.clone(), peer.clone()), *peer_index),
                        None
                    );
                }
                _ => {}
            }
        }
        let index_of = |ns: &str, dev: &str| created.get(&(ns.to_string(), dev.to_string()));
        let mut ports = 0;
        for r in &log {
            match r {
                Request::Address { ns, index, dev, .. } => {
                    assert_eq!(index_of(ns, dev), Some(index), "{r:?}");
                }
                Request::Up {
                    ns,
                    index,
                    name,
                    master,
                } => {
                    assert_eq!(index_of(ns, name), Some(index), "{r:?}");
                    if let Some(m) = master {
                        ports += 1;
                        assert!(bridges.contains(&(ns.clone(), *m)), "{r:?}");
                    }
                }
                Request::Route { ns, oif, dev, .. } => {
                    assert_eq!(index_of(ns, dev), Some(oif), "{r:?}");
                }
                _ => {}
            }
        }
        let planned_ports = plan
            .veths
            .iter()
            .flat_map(|v| [&v.a, &v.b])
            .filter(|end| end.master.is_some())
            .count();
        assert!(planned_ports > 0);
        assert_eq!(ports, planned_ports);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_request_fails_its_step_and_nothing_later_is_sent() {
        let plan = handson();
        let everything = Recorder::granting();
        run(&mut Applier::with_kernel(&plan, &everything))
            .await
            .unwrap();
        let everything = everything.requests();
        for kind in 0..8 {
            // The first request of this kind: others of its kind may already be in
            // flight, but nothing of a later kind may follow.
            let n = everything.iter().position(|r| rank(r) == kind).unwrap() + 1;
            let kernel = Recorder::refusing_nth(n);
            let err = run(&mut Applier::with_kernel(&plan, &kernel))
                .await
                .expect_err("a refused request fails the run");
            let log = kernel.requests();
            let refused = &log[n - 1];
            assert_eq!(rank(refused), kind);
            let step = step_of(refused);
            assert_eq!(err.to_string(), format!("step `{step}` failed"));
            let chain = format!("{err:#}");
            assert!(chain.contains(&format!("refused request {n}:")), "{chain}");
            let named = match refused {
                Request::CreateNamespace(ns) => Some(format!("set up namespace {ns}")),
                Request::Veth { ns, .. }
                | Request::Address { ns, .. }
                | Request::Route { ns, .. }
                | Request::Rule { ns, .. } => Some(format!("in {ns}")),
                _ => None,
            };
            if let Some(named) = named {
                assert!(chain.contains(&named), "{chain} should say {named}");
            }
            let after: Vec<&Request> = log.iter().filter(|r| rank(r) > kind).collect();
            assert!(
                after.is_empty(),
                "sent after a refused {refused:?}: {after:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_step_hook_stops_the_step_before_its_first_request() {
        let plan = handson();
        let kernel = Recorder::granting();
        let fault = |step: Step| match step {
            Step::Links => Err(anyhow!("injected failure")),
            _ => Ok(()),
        };
        let err = run(&mut Applier::with_kernel(&plan, &kernel).before_step(&fault))
            .await
            .unwrap_err();
        assert_eq!(format!("{err:#}"), "step `links` failed: injected failure");
        let log = kernel.requests();
        assert_eq!(log.len(), 2 * plan.namespaces.len());
        assert!(log.iter().all(|r| step_of(r) == Step::Namespaces));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_namespace_hook_counts_every_namespace_and_can_stop_the_step() {
        let plan = handson();
        let seen = AtomicUsize::new(0);
        let count = |n: usize| {
            seen.fetch_max(n, Ordering::SeqCst);
            Ok(())
        };
        let kernel = Recorder::granting();
        Applier::with_kernel(&plan, &kernel)
            .on_namespace(&count)
            .step(Step::Namespaces)
            .await
            .unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), plan.namespaces.len());

        let stop_at_third = |n: usize| match n {
            3 => Err(anyhow!("injected failure")),
            _ => Ok(()),
        };
        let kernel = Recorder::granting();
        let err = Applier::with_kernel(&plan, &kernel)
            .on_namespace(&stop_at_third)
            .step(Step::Namespaces)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "step `namespaces` failed: injected failure"
        );
        let log = kernel.requests();
        assert!(log.len() >= 3);
        assert!(
            log.iter().all(|r| matches!(r, Request::CreateNamespace(_))),
            "nothing is opened once creation failed: {log:?}"
        );
    }
}
