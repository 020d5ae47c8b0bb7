//! Crafted heartbeat frames for BPF_PROG_TEST_RUN (the XDP tests and the XDP cost benchmark).

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
    let udp = udp(port, payload);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 1, 17, 0, 0]);
    ip.extend_from_slice(&[192, 0, 2, 11]);
    ip.extend_from_slice(&[239, 255, 97, 1]);
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
    let udp = udp(port, payload);
    let mut frame = ethernet(0x86dd, None);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[17, 1]);
    frame.extend_from_slice(&"2001:db8::11".parse::<std::net::Ipv6Addr>().unwrap().octets());
    frame.extend_from_slice(&"ff02::4841".parse::<std::net::Ipv6Addr>().unwrap().octets());
    frame.extend_from_slice(&udp);
    frame
}
