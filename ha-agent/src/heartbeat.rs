//! The heartbeat edge: one UDP socket bound to the interface that sends this node's heartbeat to
//! the multicast group or to each unicast peer, with TTL (hop limit) 1 so it never leaves the LAN;
//! to a multicast group the same datagrams go out through a packet socket once their source
//! address is known, which costs a woken thread less (`heartbeat/frame.rs`). Receiving is the XDP
//! program's job: heartbeats are dropped there and never reach a socket.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd as _,
    time::Duration,
};

use ha_common::{
    Heartbeat, SipKey, FLAG_CHOSEN, FLAG_HANDOVER, FLAG_PROBE, FLAG_RESTARTING, FLAG_YIELDED, HEARTBEAT_LEN,
};
use pnet::datalink::NetworkInterface;
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    election::Advert,
    ids::{GroupId, NodeId},
};

mod frame;

pub use frame::FrameSender;

/// Where heartbeats go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// One multicast group.
    Multicast(SocketAddr),
    /// Each of these unicast peers.
    Unicast(Vec<SocketAddr>),
}

impl Destination {
    /// Whether heartbeats travel over IPv6.
    pub fn is_ipv6(&self) -> bool {
        match self {
            Self::Multicast(group) => group.is_ipv6(),
            Self::Unicast(peers) => peers.first().is_some_and(SocketAddr::is_ipv6),
        }
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Self::Multicast(group) => vec![*group],
            Self::Unicast(peers) => peers.clone(),
        }
    }
}

/// Who sends: what every heartbeat of this node says besides its group and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// This node.
    pub node_id: NodeId,
    /// How often it sends (peers may use it to judge its silence).
    pub interval: Duration,
}

/// Sends heartbeats and numbers them.
pub struct HeartbeatSender {
    /// Non-blocking, and not registered with the runtime: nothing reads it, and a send never
    /// waits (40 bytes against a send buffer of hundreds of KB; a full one fails the heartbeat,
    /// which the election counts). Registered, every send's freed buffer space woke the loop's
    /// epoll once more for nothing.
    socket: std::net::UdpSocket,
    /// The same heartbeats as whole datagrams through a packet socket, cheaper to send, for a
    /// multicast destination once its source address is known (see `heartbeat/frame.rs`).
    frames: Option<FrameSender>,
    destinations: Vec<SocketAddr>,
    origin: Origin,
    next_sequence: u64,
    key: Option<SipKey>,
}

impl HeartbeatSender {
    /// Opens the socket on `interface`; the first heartbeat will carry `first_sequence` (see
    /// [`crate::sequence`]).
    pub fn open(
        interface: &NetworkInterface,
        destination: &Destination,
        origin: Origin,
        first_sequence: u64,
    ) -> io::Result<Self> {
        let socket = open_socket(interface, destination)?;
        let frames = open_frames(&socket, interface, destination);
        Ok(Self {
            socket,
            frames,
            destinations: destination.addresses(),
            origin,
            next_sequence: first_sequence,
            key: None,
        })
    }

    /// Looks up again the source address of the heartbeats sent as whole datagrams: the loop
    /// calls it on every link or address change (the source may have gone).
    pub fn refresh_source(&mut self) {
        if let Some(frames) = &mut self.frames {
            frames.refresh_source();
        }
    }

    /// [`HeartbeatSender::refresh_source`] while no source is known (the interface had no
    /// address yet): the loop calls it at every turn, two syscalls only until one is found.
    pub fn find_source(&mut self) {
        if let Some(frames) = self.frames.as_mut().filter(|frames| !frames.ready()) {
            frames.refresh_source();
        }
    }

    /// The sequence number the next heartbeat will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Sends from `interface` from now on (the interface was recreated under its name), keeping
    /// the numbering and the key.
    pub fn rebind(&mut self, interface: &NetworkInterface, destination: &Destination) -> io::Result<()> {
        self.socket = open_socket(interface, destination)?;
        self.frames = open_frames(&self.socket, interface, destination);
        Ok(())
    }

    /// Advertises `interval` from now on (a reload changed it).
    pub fn set_interval(&mut self, interval: Duration) {
        self.origin.interval = interval;
    }

    /// Signs heartbeats with `key` from now on; `None` sends them unsigned (tag 0).
    pub fn set_key(&mut self, key: Option<SipKey>) {
        self.key = key;
    }

    /// Sends one heartbeat of `group` saying `advert` to every destination. The groups of a node
    /// share one numbering: every heartbeat it sends is above all it sent before.
    pub fn send(&mut self, group: GroupId, advert: Advert) -> io::Result<()> {
        let heartbeat = self.heartbeat(group, advert);
        let bytes = heartbeat.encode_signed(self.key.as_ref());
        if let Some(frames) = self.frames.as_mut().filter(|frames| frames.ready()) {
            // Through the socket below if this fails: whatever made it fail may not stop that.
            if frames.send(&bytes).is_ok() {
                return Ok(());
            }
        }
        let mut result = Ok(());
        for destination in &self.destinations {
            // One unreachable peer must not keep the others from hearing us.
            if let Err(err) = self.socket.send_to(&bytes, destination) {
                result = Err(err);
            }
        }
        result
    }
}

impl HeartbeatSender {
    /// Sends one probe of `group` saying `advert` to `target` at `address` (the heartbeat port of
    /// its last heartbeat's source): a heartbeat with `FLAG_PROBE` that asks it to answer at once.
    /// Returns the probe's sequence number, which the answer echoes.
    pub fn send_probe(
        &mut self,
        group: GroupId,
        advert: Advert,
        target: NodeId,
        address: SocketAddr,
    ) -> io::Result<u64> {
        let mut probe = self.heartbeat(group, advert);
        probe.flags = (probe.flags & !FLAG_HANDOVER) | FLAG_PROBE;
        probe.target = target.0;
        self.socket.send_to(&probe.encode_signed(self.key.as_ref()), address)?;
        Ok(probe.sequence)
    }

    /// The next heartbeat of `group` saying `advert`, numbered.
    fn heartbeat(&mut self, group: GroupId, advert: Advert) -> Heartbeat {
        let heartbeat = Heartbeat {
            state: advert.state,
            priority: advert.priority,
            flags: advert_flags(&advert),
            group: group.0,
            node_id: self.origin.node_id.0,
            interval_ms: u32::try_from(advert.interval.max(self.origin.interval).as_millis())
                .unwrap_or(u32::MAX),
            target: advert.handover_to.map_or(0, |node| node.0),
            sequence: self.next_sequence,
            tag: 0,
        };
        self.next_sequence += 1;
        heartbeat
    }

    /// The interval it advertises.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.origin.interval
    }
}

/// The heartbeat flags that say `advert`.
#[must_use]
fn advert_flags(advert: &Advert) -> u8 {
    let flag = |on: bool, flag: u8| if on { flag } else { 0 };
    flag(advert.yielded, FLAG_YIELDED)
        | flag(advert.handover_to.is_some(), FLAG_HANDOVER)
        | flag(advert.chosen, FLAG_CHOSEN)
        | flag(advert.restarting, FLAG_RESTARTING)
}

/// A UDP socket bound to `interface`, with TTL (hop limit) 1 and no multicast loop, for
/// `destination`'s family.
fn open_socket(interface: &NetworkInterface, destination: &Destination) -> io::Result<std::net::UdpSocket> {
    let (iface, ifindex, ipv6) = (&interface.name, interface.index, destination.is_ipv6());
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
    Ok(socket.into())
}

/// The packet socket for `destination` if it is a multicast group, its source address looked up
/// (see [`FrameSender`]); `None` otherwise, or if it cannot be opened: the UDP socket sends.
fn open_frames(
    socket: &std::net::UdpSocket,
    interface: &NetworkInterface,
    destination: &Destination,
) -> Option<FrameSender> {
    let Destination::Multicast(group) = destination else { return None };
    let port = socket.local_addr().ok()?.port();
    match FrameSender::open(&interface.name, interface.index, *group, port, HEARTBEAT_LEN) {
        Ok(Some(mut frames)) => {
            frames.refresh_source();
            Some(frames)
        }
        Ok(None) => None,
        Err(err) => {
            tracing::debug!("no packet socket for the heartbeats ({err}): they go through the UDP socket");
            None
        }
    }
}

/// IP_MULTICAST_IF by interface index (`ip_mreqn`), which works before the interface has an
/// address and cannot pick another interface that shares one.
fn set_multicast_ifindex_v4(socket: &Socket, ifindex: u32) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex.cast_signed(),
    };
    // SAFETY: a valid fd and a pointer to a live ip_mreqn of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&raw const request).cast::<libc::c_void>(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
