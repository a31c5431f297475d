//! Asking FROM's own resolver, from a UDP socket inside FROM's namespace: the answer FROM
//! would get right now (after an RDS failover, the endpoint's new target). When no DNS
//! server answers (a lab without its resolver running), `resolve` falls back to the
//! records the Plan says the resolver serves.

use crate::kernel::netns;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

/// What FROM's resolver said about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The address, and the answer chain (`name CNAME target`, `name A ip`).
    Answer(Ipv4Addr, Vec<String>),
    /// The resolver answered: no such name (or no address for it).
    NoSuchName,
    /// Nothing answered.
    NoServer,
}

const TIMEOUT: Duration = Duration::from_millis(400);

/// Asks `nameserver` for the A record of `name`, from inside namespace `ns`.
pub fn lookup(ns: &str, nameserver: Ipv4Addr, name: &str) -> Lookup {
    let Ok(handle) = netns::open(ns) else {
        return Lookup::NoServer;
    };
    let Ok(fqdn) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
        return Lookup::NoSuchName;
    };
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(fqdn, RecordType::A));
    let Ok(bytes) = q.to_vec() else {
        return Lookup::NoServer;
    };
    let answer = netns::run_in(&handle, || {
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.connect(SocketAddrV4::new(nameserver, 53))?;
        sock.send(&bytes)?;
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    });
    match answer {
        Ok(data) => parse(&data, q.metadata.id),
        Err(_) => Lookup::NoServer,
    }
}

fn parse(data: &[u8], id: u16) -> Lookup {
    let Ok(m) = Message::from_vec(data) else {
        return Lookup::NoServer;
    };
    if m.metadata.id != id {
        return Lookup::NoServer;
    }
    if m.metadata.response_code != ResponseCode::NoError {
        return Lookup::NoSuchName;
    }
    let mut chain = Vec::new();
    for r in &m.answers {
        let name = r.name.to_string();
        let name = name.trim_end_matches('.');
        match &r.data {
            RData::CNAME(c) => chain.push(format!(
                "{name} CNAME {}",
                c.0.to_string().trim_end_matches('.')
            )),
            RData::A(a) => {
                chain.push(format!("{name} A {}", a.0));
                return Lookup::Answer(a.0, chain);
            }
            _ => {}
        }
    }
    Lookup::NoSuchName
}
