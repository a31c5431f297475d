//! A stand-in for the kernel in unit tests: it records every request `apply` makes, in
//! the order they are made, and can be told to refuse one of them, so the order of
//! requests and what a failure stops are checked without root.

use super::apply::Kernel;
use crate::plan::{Netns, Veth};
use anyhow::{Result, bail};
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// One request, with the namespace it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreateNamespace(String),
    OpenNamespace(String),
    Bridge {
        ns: String,
        name: String,
        index: u32,
    },
    Veth {
        ns: String,
        name: String,
        index: u32,
        peer: String,
        peer_index: u32,
        peer_ns: String,
        alias: String,
    },
    Address {
        ns: String,
        index: u32,
        dev: String,
        addr: ipnet::Ipv4Net,
    },
    Up {
        ns: String,
        index: u32,
        name: String,
        master: Option<u32>,
    },
    Route {
        ns: String,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        oif: u32,
        dev: String,
    },
    Rule {
        ns: String,
        priority: u32,
        iif: String,
        table: u32,
    },
}

pub struct Recorder {
    log: Mutex<Vec<Request>>,
    /// The request to refuse, counting from 1.
    refuse: Option<usize>,
}

impl Recorder {
    /// A kernel that grants every request.
    pub fn granting() -> Recorder {
        Recorder {
            log: Mutex::new(vec![]),
            refuse: None,
        }
    }

    /// A kernel that refuses the `n`th request it gets (from 1) and grants the others.
    pub fn refusing_nth(n: usize) -> Recorder {
        Recorder {
            log: Mutex::new(vec![]),
            refuse: Some(n),
        }
    }

    /// Every request made so far, refused ones included, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    fn record(&self, r: Request) -> Result<()> {
        let mut log = self.log.lock().unwrap();
        log.push(r.clone());
        if self.refuse == Some(log.len()) {
            bail!("the fake kernel refused request {}: {r:?}", log.len());
        }
        Ok(())
    }
}

/// Each request is recorded as the method is called, so the log has the order in which
/// `apply` issued them.
impl Kernel for &Recorder {
    /// The namespace's name.
    type Namespace = String;

    fn create(&self, ns: &Netns) -> Result<()> {
        self.record(Request::CreateNamespace(ns.name.clone()))
    }

    fn open(&self, ns: &Netns) -> Result<String> {
        self.record(Request::OpenNamespace(ns.name.clone()))?;
        Ok(ns.name.clone())
    }

    fn add_bridge(&self, ns: &String, name: &str, index: u32) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Bridge {
            ns: ns.clone(),
            name: name.into(),
            index,
        }))
    }

    fn add_veth(
        &self,
        ns: &String,
        v: &Veth,
        index: u32,
        peer_index: u32,
        peer_ns: &String,
        alias: &str,
    ) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Veth {
            ns: ns.clone(),
            name: v.a.name.clone(),
            index,
            peer: v.b.name.clone(),
            peer_index,
            peer_ns: peer_ns.clone(),
            alias: alias.into(),
        }))
    }

    fn add_address(
        &self,
        ns: &String,
        index: u32,
        dev: &str,
        addr: ipnet::Ipv4Net,
    ) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Address {
            ns: ns.clone(),
            index,
            dev: dev.into(),
            addr,
        }))
    }

    fn up(
        &self,
        ns: &String,
        index: u32,
        name: &str,
        master: Option<u32>,
    ) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Up {
            ns: ns.clone(),
            index,
            name: name.into(),
            master,
        }))
    }

    fn add_route(
        &self,
        ns: &String,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        oif: u32,
        dev: &str,
    ) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Route {
            ns: ns.clone(),
            table,
            dst,
            via,
            oif,
            dev: dev.into(),
        }))
    }

    fn add_rule(
        &self,
        ns: &String,
        priority: u32,
        iif: &str,
        table: u32,
    ) -> impl Future<Output = Result<()>> {
        std::future::ready(self.record(Request::Rule {
            ns: ns.clone(),
            priority,
            iif: iif.into(),
            table,
        }))
    }
}
