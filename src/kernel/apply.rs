//! Applies a plan's network fabric: namespaces, sysctls, nftables, links, addresses,
//! routes and policy rules. Independent work runs concurrently (namespaces on worker
//! threads, netlink requests pipelined); each step names what failed.

use super::netlink::Netlink;
use super::{netns, nft, sysctl};
use crate::plan::{Netns, Plan};
use anyhow::{Context, Result, anyhow};
use futures::{TryStreamExt, stream};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The steps of `apply`, in order; the lab layer reports progress and injects test
/// faults at these names.
pub const STEPS: &[&str] = &["namespaces", "links", "addresses", "routes"];

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

/// Called after each namespace is created, with how many exist so far.
pub type NamespaceHook<'p> = &'p (dyn Fn(usize) -> Result<()> + Sync);

pub struct Applier<'p> {
    plan: &'p Plan,
    on_namespace: Option<NamespaceHook<'p>>,
    idx: Indexes,
    rt: tokio::runtime::Handle,
    nl: HashMap<String, Netlink>,
    files: HashMap<String, File>,
}

impl<'p> Applier<'p> {
    pub fn new(plan: &'p Plan, rt: tokio::runtime::Handle) -> Self {
        Applier {
            plan,
            on_namespace: None,
            idx: Indexes::of(plan),
            rt,
            nl: HashMap::new(),
            files: HashMap::new(),
        }
    }

    pub fn on_namespace(mut self, hook: NamespaceHook<'p>) -> Self {
        self.on_namespace = Some(hook);
        self
    }

    pub async fn step(&mut self, name: &str) -> Result<()> {
        match name {
            "namespaces" => self.namespaces().await,
            "links" => self.links().await,
            "addresses" => self.addresses().await,
            "routes" => self.routes().await,
            other => Err(anyhow!("unknown apply step {other}")),
        }
    }

    /// Creates every namespace and, inside it, its sysctls and nftables ruleset; then
    /// opens a netlink socket in each for the later steps. Rulesets go first, while the
    /// process holds few file descriptors: libnftables waits on its socket with
    /// select(), which can't watch descriptors above 1023.
    async fn namespaces(&mut self) -> Result<()> {
        let plan = self.plan;
        let hook = self.on_namespace;
        let created = AtomicUsize::new(0);
        tokio::task::block_in_place(|| {
            par_each(&plan.namespaces, |ns| {
                create_one(ns).with_context(|| format!("set up namespace {}", ns.name))?;
                let n = created.fetch_add(1, Ordering::SeqCst) + 1;
                hook.map_or(Ok(()), |h| h(n))
            })
        })?;
        let rt = self.rt.clone();
        let handles = tokio::task::block_in_place(|| {
            par_each(&plan.namespaces, |ns| {
                let f = netns::open(&ns.name)?;
                let nl = netns::run_in(&f, || Netlink::open_here(&rt))?;
                Ok((ns.name.clone(), nl, f))
            })
        })?;
        for (name, nl, f) in handles {
            self.nl.insert(name.clone(), nl);
            self.files.insert(name, f);
        }
        Ok(())
    }

    fn nl(&self, ns: &str) -> Result<&Netlink> {
        self.nl
            .get(ns)
            .ok_or_else(|| anyhow!("namespace {ns} was not created"))
    }

    /// Bridges, then veth pairs: each created in one namespace with its peer placed
    /// directly in the other.
    async fn links(&mut self) -> Result<()> {
        let mut bridges = Vec::new();
        for ns in &self.plan.namespaces {
            for b in &ns.bridges {
                bridges.push((self.nl(&ns.name)?, b.as_str(), self.idx.get(&ns.name, b)?));
            }
        }
        stream::iter(bridges.into_iter().map(Ok))
            .try_for_each_concurrent(
                IN_FLIGHT,
                |(nl, b, i)| async move { nl.add_bridge(b, i).await },
            )
            .await?;
        let alias = format!("vpclab:{}", self.plan.lab);
        let mut veths = Vec::new();
        for v in &self.plan.veths {
            let peer_fd = self
                .files
                .get(&v.b.ns)
                .ok_or_else(|| anyhow!("namespace {} was not created", v.b.ns))?
                .as_raw_fd();
            veths.push((
                self.nl(&v.a.ns)?,
                v,
                self.idx.get(&v.a.ns, &v.a.name)?,
                self.idx.get(&v.b.ns, &v.b.name)?,
                peer_fd,
            ));
        }
        let alias = alias.as_str();
        stream::iter(veths.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(nl, v, ia, ib, fd)| async move {
                nl.add_veth(&v.a.name, ia, &v.b.name, ib, fd, alias)
                    .await
                    .with_context(|| format!("in {}", v.a.ns))
            })
            .await
    }

    /// Addresses, then every link up (ports joined to their bridge on the way).
    async fn addresses(&mut self) -> Result<()> {
        let mut addrs = Vec::new();
        for ns in &self.plan.namespaces {
            for a in &ns.addresses {
                addrs.push((
                    self.nl(&ns.name)?,
                    a,
                    self.idx.get(&ns.name, &a.dev)?,
                    &ns.name,
                ));
            }
        }
        stream::iter(addrs.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(nl, a, i, ns)| async move {
                nl.add_address(i, &a.dev, a.addr)
                    .await
                    .with_context(|| format!("in {ns}"))
            })
            .await?;

        let mut ups = Vec::new();
        for ns in &self.plan.namespaces {
            ups.push((self.nl(&ns.name)?, 1, "lo".to_string(), None));
            for b in &ns.bridges {
                ups.push((
                    self.nl(&ns.name)?,
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
                    self.nl(&end.ns)?,
                    self.idx.get(&end.ns, &end.name)?,
                    end.name.clone(),
                    master,
                ));
            }
        }
        stream::iter(ups.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(nl, i, name, master)| async move {
                nl.up(i, &name, master).await
            })
            .await
    }

    async fn routes(&mut self) -> Result<()> {
        let mut routes = Vec::new();
        let mut rules = Vec::new();
        for ns in &self.plan.namespaces {
            let nl = self.nl(&ns.name)?;
            for r in &ns.routes {
                routes.push((nl, r, self.idx.get(&ns.name, &r.dev)?, &ns.name));
            }
            for r in &ns.rules {
                rules.push((nl, r, &ns.name));
            }
        }
        stream::iter(routes.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(nl, r, oif, ns)| async move {
                nl.add_route(r.table, r.dst, r.via, oif, &r.dev)
                    .await
                    .with_context(|| format!("in {ns}"))
            })
            .await?;
        stream::iter(rules.into_iter().map(Ok))
            .try_for_each_concurrent(IN_FLIGHT, |(nl, r, ns)| async move {
                nl.add_rule(r.priority, &r.iif, r.table)
                    .await
                    .with_context(|| format!("in {ns}"))
            })
            .await
    }
}

/// Everything done inside one new namespace, on the thread that created it.
fn create_one(ns: &Netns) -> Result<()> {
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
        sysctl::apply(&late)
    })
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
