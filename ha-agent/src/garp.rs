//! Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6) for the VIPs, so that
//! every host on the LAN points the VIP at this node's MAC at once.
//!
//! Frames are built by pure functions (tested with byte fixtures); an [`Announcer`] sends them through
//! a pnet datalink channel opened for the burst and closed after it, so that no raw socket sits
//! open copying every frame of the interface while nothing is being announced.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use pnet::{
    datalink::{self, Channel, NetworkInterface},
    packet::{
        arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket},
        ethernet::{EtherTypes, MutableEthernetPacket},
        icmpv6::{self, Icmpv6Packet},
    },
    util::MacAddr,
};

use crate::vip::Vip;

/// Gratuitous ARP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpSettings {
    /// How many announcements on promotion.
    pub count: u32,
    /// Time between them.
    pub spacing: Duration,
    /// Period of the refresh while ACTIVE; `None` for no refresh.
    pub refresh: Option<Duration>,
}

/// Length of an Ethernet + ARP frame.
pub const ARP_FRAME_LEN: usize = 14 + 28;
/// Length of an Ethernet + IPv6 + neighbour advertisement (with target link-layer option) frame.
pub const NA_FRAME_LEN: usize = 14 + 40 + 32;

/// A gratuitous ARP in request form (`arping -U`) or reply form (`arping -A`): some hosts only
/// update their cache from one of the two, so both are sent.
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr, operation: ArpOperation) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    {
        let mut ethernet = MutableEthernetPacket::new(&mut frame).expect("frame is large enough");
        ethernet.set_destination(MacAddr::broadcast());
        ethernet.set_source(MacAddr::from(mac));
        ethernet.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut frame[14..]).expect("frame is large enough");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(operation);
    arp.set_sender_hw_addr(MacAddr::from(mac));
    arp.set_sender_proto_addr(ip);
    // Request form: target MAC unknown (zero). Reply form: target MAC is our own, as arping -A.
    let target_mac = if operation == ArpOperations::Reply { MacAddr::from(mac) } else { MacAddr::zero() };
    arp.set_target_hw_addr(target_mac);
    arp.set_target_proto_addr(ip);
    frame
}

/// An unsolicited neighbour advertisement for `ip` to all nodes (RFC 4861 §7.2.6), with the
/// override flag so that caches switch to `mac` at once.
pub fn neighbour_advertisement(mac: [u8; 6], ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut frame = [0u8; NA_FRAME_LEN];
    frame[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ipv6 = &mut frame[14..54];
    ipv6[0] = 0x60;
    ipv6[4..6].copy_from_slice(&32u16.to_be_bytes()); // payload length
    ipv6[6] = 58; // ICMPv6
    ipv6[7] = 255; // hop limit: neighbour discovery requires 255
    ipv6[8..24].copy_from_slice(&ip.octets());
    ipv6[24..40].copy_from_slice(&all_nodes.octets());
    let icmp = &mut frame[54..];
    icmp[0] = 136; // neighbour advertisement
    icmp[4] = 0x20; // override flag
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2; // option: target link-layer address
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let checksum = icmpv6::checksum(&Icmpv6Packet::new(icmp).expect("large enough"), &ip, &all_nodes);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    frame
}

/// Every frame that announces `vips` from `mac`, in sending order.
pub fn announcement_frames(mac: [u8; 6], vips: &[Vip]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for vip in vips {
        match vip.addr {
            IpAddr::V4(ip) => {
                frames.push(arp_announcement(mac, ip, ArpOperations::Request).to_vec());
                frames.push(arp_announcement(mac, ip, ArpOperations::Reply).to_vec());
            }
            IpAddr::V6(ip) => frames.push(neighbour_advertisement(mac, ip).to_vec()),
        }
    }
    frames
}

/// An open datalink channel and the frames that announce the VIPs from this interface.
///
/// Opened per burst: the first round is sent at once, inline, before the promotion heartbeat, so
/// that the LAN points at us before the old holder, hearing that heartbeat, drops the VIP; the
/// repeats follow off the runtime thread.
pub struct Announcer {
    tx: Box<dyn datalink::DataLinkSender>,
    frames: Vec<Vec<u8>>,
}

impl Announcer {
    /// Opens a channel on `interface` for announcing `vips`.
    pub fn open(interface: &NetworkInterface, vips: &[Vip]) -> std::io::Result<Self> {
        let mac = interface
            .mac
            .ok_or_else(|| std::io::Error::other(format!("{} has no MAC address", interface.name)))?;
        let config = datalink::Config { read_timeout: Some(Duration::from_millis(1)), ..Default::default() };
        let Channel::Ethernet(tx, _rx) = datalink::channel(interface, config)? else {
            return Err(std::io::Error::other("pnet returned a non-Ethernet channel"));
        };
        Ok(Self { tx, frames: announcement_frames(mac.octets(), vips) })
    }

    /// Sends every announcement frame once.
    pub fn send_round(&mut self) -> std::io::Result<()> {
        for frame in &self.frames {
            match self.tx.send_to(frame, None) {
                Some(Ok(())) => {}
                Some(Err(err)) => return Err(err),
                None => return Err(std::io::Error::other("pnet could not send")),
            }
        }
        Ok(())
    }

    /// Sends `rounds` more rounds, `spacing` apart, while `still_holder()` says the VIPs are
    /// still ours: a node that steps down mid-burst must not pull the LAN back to itself.
    /// Blocking: run it off the async runtime.
    pub fn repeat(
        mut self,
        rounds: u32,
        spacing: Duration,
        still_holder: impl Fn() -> bool,
    ) -> std::io::Result<()> {
        for _ in 0..rounds {
            std::thread::sleep(spacing);
            if !still_holder() {
                break;
            }
            self.send_round()?;
        }
        Ok(())
    }
}

/// Counts how often this node gave the VIPs up. A burst started while holding them stops as
/// soon as the count moves: a node that steps down mid-burst must not pull the LAN back.
#[derive(Clone, Debug, Default)]
pub struct Holding(Arc<AtomicU64>);

impl Holding {
    /// Records that the VIPs are given up: bursts under way stop at their next round.
    pub fn released(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Announces `vips` from `interface`: the first round now, inline, and `rounds - 1` more
/// `spacing` apart off the runtime thread, while `holding` says the VIPs are still ours.
/// Needs a tokio runtime. A failure of a later round is logged, not returned.
pub fn announce(
    interface: &NetworkInterface,
    vips: &[Vip],
    rounds: u32,
    spacing: Duration,
    holding: &Holding,
) -> std::io::Result<()> {
    let mut announcer = Announcer::open(interface, vips)?;
    announcer.send_round()?;
    if rounds > 1 {
        let holding = holding.clone();
        let started_in = holding.count();
        tokio::task::spawn_blocking(move || {
            if let Err(err) = announcer.repeat(rounds - 1, spacing, || holding.count() == started_in) {
                tracing::warn!(error = &err as &dyn std::error::Error, "gratuitous ARP failed");
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];

    #[test]
    fn arp_request_fixture() {
        let frame = arp_announcement(MAC, Ipv4Addr::new(192, 0, 2, 100), ArpOperations::Request);
        #[rustfmt::skip]
        let expected: [u8; ARP_FRAME_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0, 0, 0, 0, 0x0a, 192, 0, 2, 100,
            0, 0, 0, 0, 0, 0, 192, 0, 2, 100,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn arp_reply_form_names_our_mac_as_target() {
        let frame = arp_announcement(MAC, Ipv4Addr::new(192, 0, 2, 100), ArpOperations::Reply);
        assert_eq!(&frame[20..22], &[0, 2]);
        assert_eq!(&frame[32..38], &MAC);
    }

    #[test]
    fn neighbour_advertisement_checksum_verifies() {
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = neighbour_advertisement(MAC, ip);
        let icmp = Icmpv6Packet::new(&frame[54..]).unwrap();
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(icmpv6::checksum(&icmp, &ip, &all_nodes), u16::from_be_bytes([frame[56], frame[57]]));
        assert_eq!(frame[54], 136);
        assert_eq!(&frame[80..86], &MAC);
    }

    #[test]
    fn two_frames_per_ipv4_vip_one_per_ipv6() {
        let vips = ["192.0.2.100/24".parse().unwrap(), "2001:db8::100/64".parse().unwrap()];
        let frames = announcement_frames(MAC, &vips);
        assert_eq!(frames.len(), 3);
    }
}
