//! Links, addresses, routes and rules over route netlink (rtnetlink), in-process.
//!
//! A `Netlink` is bound to the namespace of the thread that opened it; requests on it can
//! then be sent from anywhere, concurrently (rtnetlink pipelines them on one socket).
//! Interface indexes are chosen by vpclab (see `apply::Indexes`), so no request waits
//! for a lookup.

use super::netns;
use anyhow::{Context, Result};
use netlink_packet_route::link::{InfoData, InfoVeth};
use netlink_packet_route::route::RouteScope;
use netlink_packet_route::rule::RuleAction;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

/// Runs `work` with a netlink socket of namespace `ns` (a name under /run/netns) and
/// returns what it returns: for one-off requests outside `apply`, such as an instance's
/// link going down, e.g. `in_namespace(ns, async |nl| nl.set_state("eth0", false).await)`.
///
/// It all happens on a short-lived thread inside the namespace with a single-threaded
/// runtime of its own, so the calling thread never changes namespace and may itself be
/// running another runtime; the call returns once `work` is done.
pub fn in_namespace<T: Send>(
    ns: &str,
    work: impl AsyncFnOnce(&Netlink) -> Result<T> + Send,
) -> Result<T> {
    let handle = netns::open(ns)?;
    netns::run_in(&handle, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start a runtime")?;
        let nl = Netlink::open_here(rt.handle())?;
        rt.block_on(work(&nl))
    })
}

/// A locally administered, unicast hardware address derived from a bridge's name. Bridges
/// are separate segments, so two with one name in two namespaces never meet.
fn bridge_mac(name: &str) -> [u8; 6] {
    let b = crate::topology::aws::stable_hash(&["bridge", name]).to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a route-netlink socket in the calling thread's network namespace; its
    /// connection task runs on `rt`.
    pub fn open_here(rt: &tokio::runtime::Handle) -> Result<Netlink> {
        let _guard = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection().context("open a netlink socket")?;
        rt.spawn(conn);
        Ok(Netlink { handle })
    }

    /// Creates bridge `name` with a fixed hardware address: a bridge that takes its ports'
    /// lowest address changes it when a port is added later (an instance launched into a
    /// running lab), and every host on the segment then sends to the old one until its ARP
    /// entry expires.
    pub async fn add_bridge(&self, name: &str, index: u32) -> Result<()> {
        let msg = LinkBridge::new(name)
            .index(index)
            .address(bridge_mac(name).to_vec())
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("create bridge {name}"))
    }

    /// Creates veth `name` here and its peer directly in the namespace `peer_ns`, so the
    /// peer never appears in this (or the host's) namespace.
    pub async fn add_veth(
        &self,
        name: &str,
        index: u32,
        peer: &str,
        peer_index: u32,
        peer_ns: RawFd,
        alias: &str,
    ) -> Result<()> {
        let peer_msg = LinkUnspec::new_with_name(peer)
            .index(peer_index)
            .setns_by_fd(peer_ns)
            .alias(alias)
            .build();
        let msg = LinkVeth::new(name, peer)
            .index(index)
            .alias(alias)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("create veth pair {name} <-> {peer}"))
    }

    /// Brings a link up, enslaving it to `master` first when given.
    pub async fn up(&self, index: u32, name: &str, master: Option<u32>) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(m) = master {
            b = b.controller(m);
        }
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .with_context(|| format!("set link {name} up"))
    }

    /// Up or down by name (no index needed: the kernel looks names up itself).
    pub async fn set_state(&self, name: &str, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_name(name);
        let b = if up { b.up() } else { b.down() };
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .with_context(|| format!("set link {name} {}", if up { "up" } else { "down" }))
    }

    pub async fn index_of(&self, name: &str) -> Result<u32> {
        use futures::TryStreamExt;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links
            .try_next()
            .await
            .with_context(|| format!("find link {name}"))?
        {
            Some(msg) => Ok(msg.header.index),
            None => anyhow::bail!("no link {name}"),
        }
    }

    pub async fn add_address(&self, index: u32, dev: &str, addr: ipnet::Ipv4Net) -> Result<()> {
        self.handle
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
            .execute()
            .await
            .with_context(|| format!("add address {addr} on {dev}"))
    }

    pub async fn add_route(
        &self,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        oif: u32,
        dev: &str,
    ) -> Result<()> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .output_interface(oif)
            .table_id(table);
        b = match via {
            Some(gw) => b.gateway(gw),
            // A route without a gateway is on-link, as `ip route add ... dev X` makes it.
            None => b.scope(RouteScope::Link),
        };
        let via_s = via.map(|v| format!(" via {v}")).unwrap_or_default();
        self.handle
            .route()
            .add(b.build())
            .execute()
            .await
            .with_context(|| format!("add route {dst}{via_s} dev {dev} table {table}"))
    }

    /// `ip rule add priority P iif DEV lookup TABLE` (the action must be set explicitly:
    /// a rule without `ToTable` silently blackholes).
    pub async fn add_rule(&self, priority: u32, iif: &str, table: u32) -> Result<()> {
        self.handle
            .rule()
            .add()
            .v4()
            .priority(priority)
            .input_interface(iif)
            .table_id(table)
            .action(RuleAction::ToTable)
            .execute()
            .await
            .with_context(|| format!("add rule priority {priority} iif {iif} lookup {table}"))
    }

    /// Brings a link up by name, enslaving it to the bridge `master` (by name) first when
    /// given: for links whose index the kernel chose (an edit of a running lab).
    pub async fn up_by_name(&self, name: &str, master: Option<&str>) -> Result<()> {
        let index = self.index_of(name).await?;
        let master = match master {
            Some(m) => Some(self.index_of(m).await?),
            None => None,
        };
        self.up(index, name, master).await
    }

    /// Deletes a link; deleting one end of a veth pair deletes its peer too.
    pub async fn del_link(&self, name: &str) -> Result<()> {
        let index = self.index_of(name).await?;
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .with_context(|| format!("delete link {name}"))
    }

    pub async fn del_address(&self, dev: &str, addr: ipnet::Ipv4Net) -> Result<()> {
        use futures::TryStreamExt;
        let index = self.index_of(dev).await?;
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V4(addr.addr()))
            .set_prefix_length_filter(addr.prefix_len())
            .execute();
        while let Some(msg) = found
            .try_next()
            .await
            .with_context(|| format!("find address {addr} on {dev}"))?
        {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .with_context(|| format!("delete address {addr} on {dev}"))?;
        }
        Ok(())
    }

    pub async fn del_route(
        &self,
        table: u32,
        dst: ipnet::Ipv4Net,
        via: Option<Ipv4Addr>,
        dev: &str,
    ) -> Result<()> {
        // The kernel deletes only a route whose scope matches: the same as `add_route`'s.
        let b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .table_id(table);
        let b = match via {
            Some(gw) => b.gateway(gw),
            None => b.scope(RouteScope::Link),
        };
        let via_s = via.map(|v| format!(" via {v}")).unwrap_or_default();
        self.handle
            .route()
            .del(b.build())
            .execute()
            .await
            .with_context(|| format!("delete route {dst}{via_s} dev {dev} table {table}"))
    }

    /// Forgets what the neighbour table of link `dev` knows of `ip` (`ip neigh del IP dev
    /// DEV`), if anything: for an address that moved to a new link, whose hardware address
    /// differs from the one remembered.
    pub async fn forget_neighbour(&self, dev: &str, ip: Ipv4Addr) -> Result<()> {
        use netlink_packet_route::AddressFamily;
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage,
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.index_of(dev).await?;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.handle.neighbours().del(msg).execute().await {
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.is_some_and(|c| -c.get() == libc::ENOENT) =>
            {
                Ok(())
            }
            done => done.with_context(|| format!("forget neighbour {ip} on {dev}")),
        }
    }

    pub async fn del_rule(&self, priority: u32, iif: &str, table: u32) -> Result<()> {
        use futures::TryStreamExt;
        use netlink_packet_route::rule::RuleAttribute;
        let mut rules = self.handle.rule().get(rtnetlink::IpVersion::V4).execute();
        while let Some(msg) = rules.try_next().await.context("list policy rules")? {
            let matches = msg.attributes.contains(&RuleAttribute::Priority(priority))
                && msg
                    .attributes
                    .contains(&RuleAttribute::Iifname(iif.to_string()));
            if matches {
                return self
                    .handle
                    .rule()
                    .del(msg)
                    .execute()
                    .await
                    .with_context(|| {
                        format!("delete rule priority {priority} iif {iif} lookup {table}")
                    });
            }
        }
        Ok(())
    }

    /// `ip route get DST from SRC iif DEV`: the route the kernel picks for a packet that
    /// arrives on interface `iif` (for `trace`, to confirm a missing route).
    pub async fn route_get_input(
        &self,
        dst: Ipv4Addr,
        src: Ipv4Addr,
        iif: u32,
    ) -> Result<RouteLookup> {
        use futures::TryStreamExt;
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, 32)
            .source_prefix(src, 32)
            .input_interface(iif)
            .build();
        let mut answers = self.handle.route().get(msg).execute();
        match answers.try_next().await {
            Ok(Some(r)) => {
                use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
                if r.header.kind == RouteType::Local {
                    return Ok(RouteLookup::Local);
                }
                let mut oif = None;
                let mut gateway = None;
                for a in r.attributes {
                    match a {
                        RouteAttribute::Oif(i) => oif = Some(i),
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(g),
                        _ => {}
                    }
                }
                Ok(RouteLookup::Via { oif, gateway })
            }
            Ok(None) => Ok(RouteLookup::Unreachable("no answer".into())),
            Err(rtnetlink::Error::NetlinkError(e)) => Ok(RouteLookup::Unreachable(
                e.code
                    .map(|c| nix::errno::Errno::from_raw(-c.get()).desc().to_string())
                    .unwrap_or_else(|| "error".into()),
            )),
            Err(e) => Err(e).with_context(|| format!("ip route get {dst} from {src} iif {iif}")),
        }
    }
}

/// A link as a dump of its namespace lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub index: u32,
    pub name: String,
    pub bridge: bool,
    /// The index of the bridge it is a port of.
    pub master: Option<u32>,
    /// Administratively up (`ip link set X up`), whatever its carrier.
    pub up: bool,
}

/// An IPv4 address on the link with index `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    pub index: u32,
    pub addr: ipnet::Ipv4Net,
}

/// An IPv4 route of any table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub table: u32,
    pub dst: ipnet::Ipv4Net,
    pub via: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    /// Made by the kernel itself (`proto kernel`: the route to a link's own subnet).
    pub kernel_made: bool,
    /// A plain route to somewhere (not local, broadcast, blackhole, ...).
    pub unicast: bool,
}

/// An IPv4 policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    pub priority: u32,
    pub iif: Option<String>,
    pub table: u32,
}

/// Dumps: everything of a kind the namespace holds, for reading it back (`observe`).
impl Netlink {
    pub async fn links(&self) -> Result<Vec<LinkRecord>> {
        use futures::TryStreamExt;
        use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo};
        let msgs: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .context("list links")?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut r = LinkRecord {
                    index: m.header.index,
                    name: String::new(),
                    bridge: false,
                    master: None,
                    up: m.header.flags.contains(LinkFlags::Up),
                };
                for a in m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => r.name = n,
                        LinkAttribute::Controller(i) => r.master = Some(i),
                        LinkAttribute::LinkInfo(infos) => {
                            r.bridge = infos.contains(&LinkInfo::Kind(InfoKind::Bridge))
                        }
                        _ => {}
                    }
                }
                r
            })
            .collect())
    }

    pub async fn addresses(&self) -> Result<Vec<AddressRecord>> {
        use futures::TryStreamExt;
        use netlink_packet_route::address::AddressAttribute;
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .context("list addresses")?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                // IFA_LOCAL is the interface's own address; IFA_ADDRESS equals it except on
                // point-to-point links, where it is the peer's.
                let (mut local, mut address) = (None, None);
                for a in &m.attributes {
                    match a {
                        AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
                        AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
                        _ => {}
                    }
                }
                let ip = local.or(address)?;
                Some(AddressRecord {
                    index: m.header.index,
                    addr: ipnet::Ipv4Net::new(ip, m.header.prefix_len).ok()?,
                })
            })
            .collect())
    }

    pub async fn routes(&self) -> Result<Vec<RouteRecord>> {
        use futures::TryStreamExt;
        use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteType};
        // No destination: a dump of every table.
        let msgs: Vec<_> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .context("list routes")?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| {
                let mut r = RouteRecord {
                    table: u32::from(m.header.table),
                    dst: ipnet::Ipv4Net::default(),
                    via: None,
                    oif: None,
                    kernel_made: m.header.protocol == RouteProtocol::Kernel,
                    unicast: m.header.kind == RouteType::Unicast,
                };
                let mut dst = Ipv4Addr::UNSPECIFIED;
                for a in m.attributes {
                    match a {
                        RouteAttribute::Table(t) => r.table = t,
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = ip,
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.via = Some(ip),
                        RouteAttribute::Oif(i) => r.oif = Some(i),
                        _ => {}
                    }
                }
                r.dst = ipnet::Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?;
                Some(r)
            })
            .collect())
    }

    pub async fn rules(&self) -> Result<Vec<RuleRecord>> {
        use futures::TryStreamExt;
        use netlink_packet_route::rule::RuleAttribute;
        let msgs: Vec<_> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .context("list policy rules")?;
        Ok(msgs
            .into_iter()
            .map(|m| {
                let mut r = RuleRecord {
                    priority: 0,
                    iif: None,
                    table: u32::from(m.header.table),
                };
                for a in m.attributes {
                    match a {
                        RuleAttribute::Priority(p) => r.priority = p,
                        RuleAttribute::Iifname(n) => r.iif = Some(n),
                        RuleAttribute::Table(t) => r.table = t,
                        _ => {}
                    }
                }
                r
            })
            .collect())
    }
}

/// What `ip route get ... iif DEV` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteLookup {
    Local,
    Via {
        oif: Option<u32>,
        gateway: Option<Ipv4Addr>,
    },
    /// The kernel's error, e.g. "Network is unreachable".
    Unreachable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_address_is_unicast_locally_administered_and_stable() {
        let mac = bridge_mac("br-public-2a");
        assert_eq!(
            mac[0] & 0b11,
            0b10,
            "locally administered, unicast: {mac:02x?}"
        );
        assert_eq!(mac, bridge_mac("br-public-2a"));
        assert_ne!(mac, bridge_mac("br-public-2c"));
    }
}
