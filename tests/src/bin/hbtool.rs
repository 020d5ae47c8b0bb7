//! hbtool: what an attacker on the test LAN does, for the authentication tests and the
//! benchmark. Runs inside a host namespace (`ip netns exec`), sends raw frames with AF_PACKET.
//!
//! - `flood IFACE PORT SECONDS`: heartbeats with the highest worthiness, signed with a random key,
//!   as fast as this host can send; prints `{"sent":N,"seconds":S}`.
//! - `capture IFACE PORT NODE_ID COUNT FILE`: records COUNT heartbeat frames of NODE_ID.
//! - `replay IFACE FILE SECONDS GAP_MS`: sends the recorded frames again and again, GAP_MS apart.
//! - `garbage IFACE PORT`: malformed frames to the heartbeat port; prints how many of each kind.

use std::{
    fs,
    io::{Read as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use ha_common::{sip_key, Heartbeat, NodeState, HEARTBEAT_LEN};
use ha_tests::frames::ipv4_frame;

fn ifindex(iface: &str) -> anyhow::Result<i32> {
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("unknown interface {iface}");
    }
    Ok(index as i32)
}

/// A raw AF_PACKET socket on one interface.
struct RawSocket {
    fd: i32,
    address: libc::sockaddr_ll,
}

impl RawSocket {
    /// `receive_all`: also receive every frame (ETH_P_ALL); otherwise send only.
    fn open(iface: &str, receive_all: bool) -> anyhow::Result<Self> {
        let protocol = if receive_all { i32::from((libc::ETH_P_ALL as u16).to_be()) } else { 0 };
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol as u16;
        address.sll_ifindex = ifindex(iface)?;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let socket = Self { fd, address };
        if receive_all {
            // SAFETY: a valid socket and address of the size given.
            let rc = unsafe {
                libc::bind(fd, (&raw const socket.address).cast(), size_of::<libc::sockaddr_ll>() as u32)
            };
            if rc != 0 {
                bail!("bind: {}", std::io::Error::last_os_error());
            }
            let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
            // SAFETY: a valid socket and option value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const timeout).cast(),
                    size_of::<libc::timeval>() as u32,
                )
            };
        }
        Ok(socket)
    }

    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: the frame and address are valid for the sizes given.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const self.address).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        sent == frame.len() as isize
    }

    fn receive(&self, buffer: &mut [u8]) -> Option<usize> {
        // SAFETY: the buffer is valid for its length.
        let got = unsafe { libc::recv(self.fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        (got > 0).then_some(got as usize)
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // SAFETY: the buffer is valid for N bytes.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), N, 0) };
    bytes
}

fn flood(iface: &str, port: u16, seconds: f64) -> anyhow::Result<()> {
    let socket = RawSocket::open(iface, false)?;
    let wrong_key = sip_key(&random_bytes::<16>());
    let mut heartbeat = Heartbeat {
        state: NodeState::Active,
        priority: 255,
        flags: 0,
        group: 1,
        node_id: 0x7fff_fff0,
        interval_ms: 100,
        target: 0,
        sequence: u64::from_be_bytes(random_bytes::<8>()) >> 1,
        tag: 0,
    };
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while start.elapsed() < limit {
        for _ in 0..256 {
            heartbeat.sequence += 1;
            let frame = ipv4_frame(port, &heartbeat.encode_signed(Some(&wrong_key)), None);
            if socket.send(&frame) {
                sent += 1;
            }
        }
    }
    println!("{{\"sent\":{sent},\"seconds\":{}}}", start.elapsed().as_secs_f64());
    Ok(())
}

/// The heartbeat payload of an untagged IPv4/UDP frame to `port`, if it is one.
fn heartbeat_payload(frame: &[u8], port: u16) -> Option<&[u8]> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
        return None;
    }
    let l4 = 14 + ((frame[14] & 0x0f) as usize) * 4;
    let udp = frame.get(l4..l4 + 8)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    frame.get(l4 + 8..l4 + 8 + HEARTBEAT_LEN)
}

fn capture(iface: &str, port: u16, node_id: u32, count: usize, file: &str) -> anyhow::Result<()> {
    let socket = RawSocket::open(iface, true)?;
    let mut out = fs::File::create(file)?;
    let mut buffer = [0u8; 2048];
    let mut kept = 0;
    let start = Instant::now();
    while kept < count {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("captured only {kept} of {count} heartbeats of node {node_id:#x}");
        }
        let Some(len) = socket.receive(&mut buffer) else { continue };
        let frame = &buffer[..len];
        let Some(payload) = heartbeat_payload(frame, port) else { continue };
        if Heartbeat::decode(payload).is_ok_and(|h| h.node_id == node_id) {
            out.write_all(&(len as u32).to_le_bytes())?;
            out.write_all(frame)?;
            kept += 1;
        }
    }
    println!("{{\"captured\":{kept}}}");
    Ok(())
}

fn replay(iface: &str, file: &str, seconds: f64, gap_ms: u64) -> anyhow::Result<()> {
    let socket = RawSocket::open(iface, false)?;
    let mut bytes = Vec::new();
    fs::File::open(file)?.read_to_end(&mut bytes)?;
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
        frames.push(bytes.get(at + 4..at + 4 + len).context("truncated capture file")?.to_vec());
        at += 4 + len;
    }
    if frames.is_empty() {
        bail!("{file} holds no frame");
    }
    let start = Instant::now();
    let mut sent = 0;
    'outer: loop {
        for frame in &frames {
            if start.elapsed() > Duration::from_secs_f64(seconds) {
                break 'outer;
            }
            if socket.send(frame) {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    }
    println!("{{\"replayed\":{sent}}}");
    Ok(())
}

fn garbage(iface: &str, port: u16) -> anyhow::Result<()> {
    let socket = RawSocket::open(iface, false)?;
    let full = ipv4_frame(port, &[0u8; HEARTBEAT_LEN], None);
    let mut bad_magic = random_bytes::<HEARTBEAT_LEN>();
    bad_magic[0] = b'X';
    let kinds: Vec<(&str, Vec<u8>)> = vec![
        ("short", ipv4_frame(port, &random_bytes::<10>(), None)),
        ("oversized", ipv4_frame(port, &[0x41; 1200], None)),
        ("truncated", full[..full.len() - 12].to_vec()),
        ("bad_magic", ipv4_frame(port, &bad_magic, None)),
        ("empty", ipv4_frame(port, &[], None)),
    ];
    let mut report = Vec::new();
    for (name, frame) in &kinds {
        let sent = (0..100).filter(|_| socket.send(frame)).count();
        report.push(format!("\"{name}\":{sent}"));
    }
    println!("{{{}}}", report.join(","));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize| args.get(i).map(String::as_str).context("missing argument; see the source's doc comment");
    match arg(0)? {
        "flood" => flood(arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?),
        "capture" => capture(arg(1)?, arg(2)?.parse()?, parse_id(arg(3)?)?, arg(4)?.parse()?, arg(5)?),
        "replay" => replay(arg(1)?, arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?),
        "garbage" => garbage(arg(1)?, arg(2)?.parse()?),
        other => bail!("unknown command {other}: flood, capture, replay or garbage"),
    }
}

fn parse_id(text: &str) -> anyhow::Result<u32> {
    Ok(match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16)?,
        None => text.parse()?,
    })
}
