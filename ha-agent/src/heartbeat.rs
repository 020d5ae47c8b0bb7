//! The heartbeat edge: one UDP socket bound to the interface that sends this node's heartbeat to
//! the multicast group or to each unicast peer, with TTL (hop limit) 1 so it never leaves the LAN.
//! Receiving is the XDP program's job: heartbeats are dropped there and never reach a socket.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd as _,
    time::{SystemTime, UNIX_EPOCH},
};

use ha_common::{Heartbeat, SipKey, FLAG_YIELDED};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{config::Destination, election::Advert};

/// Sends heartbeats and numbers them.
pub struct HeartbeatSender {
    socket: tokio::net::UdpSocket,
    destinations: Vec<SocketAddr>,
    group: u32,
    node_id: u32,
    interval_ms: u32,
    next_sequence: u64,
    key: Option<SipKey>,
}

/// The first sequence number of a sender that starts now: the wall clock in nanoseconds, so that
/// a restarted sender keeps increasing (see docs/PROTOCOL.md).
pub fn initial_sequence() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

impl HeartbeatSender {
    /// Opens the socket on interface `iface` (index `ifindex`). Needs a tokio runtime.
    pub fn new(
        iface: &str,
        ifindex: u32,
        destination: &Destination,
        group: u32,
        node_id: u32,
        interval_ms: u32,
    ) -> io::Result<Self> {
        let (ipv6, destinations) = match destination {
            Destination::Multicast(group) => (group.is_ipv6(), vec![*group]),
            Destination::Unicast(peers) => (destination.is_ipv6(), peers.clone()),
        };
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind_device(Some(iface.as_bytes()))?;
        if ipv6 {
            socket.set_only_v6(true)?;
            socket.set_multicast_if_v6(ifindex)?;
            socket.set_multicast_hops_v6(1)?;
            socket.set_unicast_hops_v6(1)?;
            socket.set_multicast_loop_v6(false)?;
            socket.bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).into())?;
        } else {
            set_multicast_ifindex_v4(&socket, ifindex)?;
            socket.set_multicast_ttl_v4(1)?;
            socket.set_ttl_v4(1)?;
            socket.set_multicast_loop_v4(false)?;
            socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).into())?;
        }
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket.into())?;
        Ok(Self {
            socket,
            destinations,
            group,
            node_id,
            interval_ms,
            next_sequence: initial_sequence(),
            key: None,
        })
    }

    /// Signs heartbeats with `key` from now on; `None` sends them unsigned (tag 0).
    pub fn set_key(&mut self, key: Option<SipKey>) {
        self.key = key;
    }

    /// Sends one heartbeat saying `advert` to every destination.
    pub async fn send(&mut self, advert: Advert) -> io::Result<()> {
        let heartbeat = Heartbeat {
            state: advert.state,
            priority: advert.priority,
            flags: if advert.yielded { FLAG_YIELDED } else { 0 },
            group: self.group,
            node_id: self.node_id,
            interval_ms: self.interval_ms,
            sequence: self.next_sequence,
            tag: 0,
        };
        self.next_sequence += 1;
        let bytes = heartbeat.encode_signed(self.key.as_ref());
        let mut result = Ok(());
        for destination in &self.destinations {
            // One unreachable peer must not keep the others from hearing us.
            if let Err(err) = self.socket.send_to(&bytes, destination).await {
                result = Err(err);
            }
        }
        result
    }
}

/// IP_MULTICAST_IF by interface index (`ip_mreqn`), which works before the interface has an
/// address and cannot pick another interface that shares one.
fn set_multicast_ifindex_v4(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as i32,
    };
    // SAFETY: a valid fd and a pointer to a live ip_mreqn of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &request as *const libc::ip_mreqn as *const libc::c_void,
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
