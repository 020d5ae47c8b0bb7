//! Crafted frames for BPF_PROG_TEST_RUN (the XDP tests and the XDP cost benchmark): heartbeats,
//! and the ARP, neighbour discovery and IP frames the fence must drop or pass.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Source MAC of every crafted frame.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// An Ethernet header to the broadcast address from [`SRC_MAC`], optionally 802.1Q-tagged.
pub fn ethernet(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&SRC_MAC);
    if let Some(id) = vlan {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&id.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// A UDP header (from port 40000, checksum 0) and payload.
pub fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&port.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    udp
}

/// An Ethernet/IPv4/UDP frame from 192.0.2.11 to 239.255.97.1, optionally 802.1Q-tagged.
pub fn ipv4_frame(port: u16, payload: &[u8], vlan: Option<u16>) -> Vec<u8> {
    ipv4_udp_to(Ipv4Addr::new(239, 255, 97, 1), port, payload, vlan)
}

/// An Ethernet/IPv4/UDP frame from 192.0.2.11 to `dst`, optionally 802.1Q-tagged.
pub fn ipv4_udp_to(dst: Ipv4Addr, port: u16, payload: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let udp = udp(port, payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 1, 17, 0, 0]);
    ip.extend_from_slice(&[192, 0, 2, 11]);
    ip.extend_from_slice(&dst.octets());
    let sum = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut frame = ethernet(0x0800, vlan);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&udp);
    frame
}

/// An Ethernet/IPv6/UDP frame from 2001:db8::11 to ff02::4841.
pub fn ipv6_frame(port: u16, payload: &[u8]) -> Vec<u8> {
    ipv6_to("ff02::4841".parse().expect("a literal address"), 17, &udp(port, payload))
}

/// An Ethernet/IPv6 frame from 2001:db8::11 to `dst` carrying `payload` as `next_header`.
pub fn ipv6_to(dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(0x86dd, None);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[next_header, 255]);
    frame.extend_from_slice(&"2001:db8::11".parse::<Ipv6Addr>().expect("a literal address").octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(payload);
    frame
}

/// An ARP request from 192.0.2.11 asking who has `target`.
pub fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(0x0806, None);
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&[192, 0, 2, 11]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

/// An IPv6 neighbour solicitation for `target` (checksum left 0: XDP does not check it).
pub fn neighbour_solicitation(target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    let [.., a, b, c] = target.octets();
    let solicited_node =
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(a), u16::from_be_bytes([b, c]));
    ipv6_to(solicited_node, 58, &icmp)
}
