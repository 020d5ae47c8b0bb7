//! Heartbeats to a multicast group as whole IP datagrams through a packet socket: the datagram
//! the UDP socket would send, built here, handed to the interface without the IP stack's output
//! path (no route lookup, no socket buffer accounting, no netfilter OUTPUT hook). On the test VM
//! a woken thread's send costs about 30 % less so (a throwaway C program, 200 sends every 100 ms:
//! 0.050-0.070 % of a core against 0.091-0.096 % through a UDP socket), and an idle ACTIVE's CPU
//! is those sends (`docs/BENCHMARKS.md`).
//!
//! The source address is the one the kernel picks for the group on the interface (a UDP socket
//! connected to the group, then `getsockname`), looked up again whenever the caller asks
//! ([`FrameSender::refresh_source`]); without one (no address yet), the caller sends through its
//! UDP socket.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use ha_common::{ones_sum, udp6_checksum, IPPROTO_UDP, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};
use socket2::{Domain, Protocol, Socket, Type};

/// Hop limit (TTL) 1: a heartbeat never leaves the LAN.
const HOP_LIMIT: u8 = 1;

/// A packet socket on one interface that sends heartbeats to one multicast group.
pub struct FrameSender {
    socket: OwnedFd,
    /// The interface and the group's link-layer address.
    link: libc::sockaddr_ll,
    group: SocketAddr,
    source_port: u16,
    /// The length of every payload it sends.
    payload_len: usize,
    /// A UDP socket bound to the interface, connected to the group to learn the source address.
    lookup: Socket,
    /// The frame built for the current source, the payload rewritten for each heartbeat.
    frame: Option<Vec<u8>>,
    /// The socket's other reference, released after the process is gone (last: dropped after
    /// `socket`).
    _release: Option<DeferredRelease>,
}

/// `IORING_REGISTER_FILES` (include/uapi/linux/io_uring.h).
const IORING_REGISTER_FILES: libc::c_long = 2;

/// A second reference to a packet socket, held in an otherwise unused io_uring's table of
/// registered files, so that the socket's last reference goes with the ring, which the kernel
/// tears down from a workqueue: the process, killed or exiting, does not wait for it. The kernel
/// releases a packet socket with a full RCU grace period (`synchronize_net` in
/// `packet_release`), 15-25 ms here, which a SIGKILLed agent's exit otherwise waited for: at a
/// 20 ms interval that is most of what a restart has before the successor's probes find the old
/// program silent (the agent, from SIGKILL to reaped: 7-15 ms without, 1.0-1.5 ms with). Where
/// io_uring is unavailable (`kernel.io_uring_disabled`, a seccomp profile) the socket is
/// released as before.
struct DeferredRelease {
    /// The ring: held, never used, closed on drop.
    _ring: OwnedFd,
}

impl DeferredRelease {
    /// Registers `socket` with a new one-entry io_uring; `None` if io_uring is not available.
    fn hold(socket: &OwnedFd) -> Option<Self> {
        // `struct io_uring_params` (120 bytes), all zero: no flags, the kernel fills in the rest.
        let mut params = [0u32; 30];
        // SAFETY: io_uring_setup with a writable io_uring_params of the size the kernel expects.
        let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
        let ring = i32::try_from(ring).ok().filter(|&fd| fd >= 0)?;
        // SAFETY: a new descriptor (close-on-exec, as io_uring makes them) that nothing else owns.
        let ring = unsafe { OwnedFd::from_raw_fd(ring) };
        let files = [socket.as_raw_fd()];
        // SAFETY: an array of one valid descriptor, its length given.
        let registered = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd(),
                IORING_REGISTER_FILES,
                files.as_ptr(),
                1u32,
            )
        };
        (registered == 0).then_some(Self { _ring: ring })
    }
}

impl FrameSender {
    /// A sender on the interface `ifindex` (named `iface`) to `group` (a multicast address),
    /// from `source_port`, of payloads of `payload_len` bytes. `None` for a unicast destination,
    /// which needs the neighbour table.
    pub fn open(
        iface: &str,
        ifindex: u32,
        group: SocketAddr,
        source_port: u16,
        payload_len: usize,
    ) -> io::Result<Option<Self>> {
        let Some(mac) = multicast_mac(group.ip()) else { return Ok(None) };
        let ethertype = if group.is_ipv4() { libc::ETH_P_IP } else { libc::ETH_P_IPV6 } as u16;
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns. Protocol 0: it receives nothing.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_ll, filled in below.
        let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_protocol = ethertype.to_be();
        link.sll_ifindex = ifindex.cast_signed();
        link.sll_halen = 6;
        link.sll_addr[..6].copy_from_slice(&mac);
        let lookup = if group.is_ipv4() {
            Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?
        } else {
            Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?
        };
        lookup.bind_device(Some(iface.as_bytes()))?;
        if group.is_ipv6() {
            lookup.set_multicast_if_v6(ifindex)?;
        }
        let release = DeferredRelease::hold(&socket);
        Ok(Some(Self {
            socket,
            link,
            group,
            source_port,
            payload_len,
            lookup,
            frame: None,
            _release: release,
        }))
    }

    /// Looks up again which source address the kernel would send from (an address may have
    /// come or gone); without one, [`FrameSender::send`] refuses and the caller uses its UDP
    /// socket.
    pub fn refresh_source(&mut self) {
        let source = self.lookup.connect(&self.group.into()).and_then(|()| self.lookup.local_addr());
        let source = source.ok().and_then(|addr| addr.as_socket()).map(|addr| addr.ip());
        let current = self.frame.as_deref().and_then(frame_source);
        if source.is_some() && source == current {
            return;
        }
        self.frame = source
            .filter(|source| !source.is_unspecified())
            .map(|source| frame(source, self.group, self.source_port, &vec![0; self.payload_len]));
    }

    /// Whether a source address is known: [`FrameSender::send`] can send.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.frame.is_some()
    }

    /// Sends `payload` to the group as one datagram.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        let Some(frame) = self.frame.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, "no source address"));
        };
        set_payload(frame, payload)?;
        // SAFETY: a valid descriptor, a live buffer of the length given, and a sockaddr_ll of
        // the size given.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const self.link).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The link-layer address of multicast group `group` (RFC 1112, RFC 2464); `None` if it is not
/// a multicast address.
#[must_use]
pub fn multicast_mac(group: IpAddr) -> Option<[u8; 6]> {
    match group {
        IpAddr::V4(group) if group.is_multicast() => {
            let [_, b, c, d] = group.octets();
            Some([0x01, 0x00, 0x5e, b & 0x7f, c, d])
        }
        IpAddr::V6(group) if group.is_multicast() => {
            let octets = group.octets();
            Some([0x33, 0x33, octets[12], octets[13], octets[14], octets[15]])
        }
        _ => None,
    }
}

/// The IP datagram carrying `payload` from `source`:`source_port` to `group`: hop limit 1; over
/// IPv4 with DF set and identification 0 (an atomic datagram, RFC 6864) and no UDP checksum
/// (optional there, as the XDP program's probe answers send it), over IPv6 with its checksum.
#[must_use]
pub fn frame(source: IpAddr, group: SocketAddr, source_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(UDP_HEADER_LEN + payload.len()).unwrap_or(u16::MAX);
    let mut frame = match (source, group.ip()) {
        (IpAddr::V4(source), IpAddr::V4(group)) => ipv4_header(source, group, udp_len),
        (IpAddr::V6(source), IpAddr::V6(group)) => ipv6_header(source, group, udp_len),
        // A source of the other family: the UDP socket sends instead.
        _ => return Vec::new(),
    };
    frame.extend_from_slice(&source_port.to_be_bytes());
    frame.extend_from_slice(&group.port().to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    if group.is_ipv6() {
        let checksum = udp6_checksum(&frame);
        frame[IPV6_HEADER_LEN + 6..IPV6_HEADER_LEN + 8].copy_from_slice(&checksum.to_be_bytes());
    }
    frame
}

fn ipv4_header(source: Ipv4Addr, group: Ipv4Addr, udp_len: u16) -> Vec<u8> {
    let total = (IPV4_MIN_HEADER_LEN as u16).saturating_add(udp_len).to_be_bytes();
    let mut header = vec![0x45, 0, total[0], total[1], 0, 0, 0x40, 0, HOP_LIMIT, IPPROTO_UDP, 0, 0];
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&group.octets());
    let checksum = !ones_sum(&header, 0);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    header
}

fn ipv6_header(source: Ipv6Addr, group: Ipv6Addr, udp_len: u16) -> Vec<u8> {
    let length = udp_len.to_be_bytes();
    let mut header = vec![0x60, 0, 0, 0, length[0], length[1], IPPROTO_UDP, HOP_LIMIT];
    header.extend_from_slice(&source.octets());
    header.extend_from_slice(&group.octets());
    header
}

/// The source address of a frame [`frame`] built.
fn frame_source(frame: &[u8]) -> Option<IpAddr> {
    match frame.first()? >> 4 {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(12..16)?).ok()?))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(8..24)?).ok()?))),
        _ => None,
    }
}

/// Puts `payload` in `frame` (built for a payload of its length), and the IPv6 checksum right.
fn set_payload(frame: &mut [u8], payload: &[u8]) -> io::Result<()> {
    let ipv6 = frame.first().is_some_and(|b| b >> 4 == 6);
    let at = if ipv6 { IPV6_HEADER_LEN } else { IPV4_MIN_HEADER_LEN } + UDP_HEADER_LEN;
    let Some(slot) = frame.get_mut(at..).filter(|slot| slot.len() == payload.len()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "payload of another length"));
    };
    slot.copy_from_slice(payload);
    if ipv6 {
        frame[IPV6_HEADER_LEN + 6..IPV6_HEADER_LEN + 8].fill(0);
        let checksum = udp6_checksum(frame);
        frame[IPV6_HEADER_LEN + 6..IPV6_HEADER_LEN + 8].copy_from_slice(&checksum.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_groups_map_to_their_link_layer_addresses() {
        assert_eq!(multicast_mac("224.0.0.18".parse().unwrap()), Some([1, 0, 0x5e, 0, 0, 18]));
        assert_eq!(multicast_mac("239.129.2.3".parse().unwrap()), Some([1, 0, 0x5e, 1, 2, 3]), "23 bits");
        assert_eq!(multicast_mac("ff02::12".parse().unwrap()), Some([0x33, 0x33, 0, 0, 0, 0x12]));
        assert_eq!(multicast_mac("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn an_ipv4_frame_is_the_datagram_the_udp_socket_would_send() {
        let group: SocketAddr = "224.0.0.240:5999".parse().unwrap();
        let frame = frame("192.0.2.14".parse().unwrap(), group, 40000, &[0xab; 4]);
        #[rustfmt::skip]
        let expected = [
            0x45, 0, 0, 32, 0, 0, 0x40, 0, 1, 17, 0xd6, 0xce, 192, 0, 2, 14, 224, 0, 0, 240,
            0x9c, 0x40, 0x17, 0x6f, 0, 12, 0, 0, 0xab, 0xab, 0xab, 0xab,
        ];
        assert_eq!(frame, expected);
        assert_eq!(!ones_sum(&frame[..IPV4_MIN_HEADER_LEN], 0), 0, "the header checksum holds");
        assert_eq!(frame_source(&frame), Some("192.0.2.14".parse().unwrap()));
    }

    #[test]
    fn an_ipv6_frame_carries_a_checksum_that_holds_for_each_payload() {
        let group: SocketAddr = "[ff02::12]:5999".parse().unwrap();
        let source: IpAddr = "2001:db8::1".parse().unwrap();
        let mut frame = frame(source, group, 40000, &[1, 2, 3, 4]);
        assert_eq!(frame.len(), IPV6_HEADER_LEN + UDP_HEADER_LEN + 4);
        assert_eq!(&frame[..8], &[0x60, 0, 0, 0, 0, 12, 17, 1]);
        let holds = |frame: &[u8]| {
            let mut pseudo = frame[8..IPV6_HEADER_LEN].to_vec();
            pseudo.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 17]);
            !ones_sum(&frame[IPV6_HEADER_LEN..], u32::from(ones_sum(&pseudo, 0))) == 0
        };
        assert!(holds(&frame));
        set_payload(&mut frame, &[9, 9, 9, 9]).unwrap();
        assert!(holds(&frame) && frame[IPV6_HEADER_LEN + UDP_HEADER_LEN..] == [9, 9, 9, 9]);
        assert!(set_payload(&mut frame, &[1]).is_err(), "a payload of another length");
        assert_eq!(frame_source(&frame), Some(source));
    }
}
