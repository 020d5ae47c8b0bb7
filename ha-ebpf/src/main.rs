//! ha-agent's XDP program.
//!
//! For every frame on the agent's interface: parse Ethernet (with one 802.1Q/802.1ad tag), IPv4 or
//! IPv6 and UDP; if the UDP destination is the heartbeat port, decode the heartbeat with the same
//! decoder user space uses, check group and node id, verify its SipHash tag with the keys in
//! `KEYS`, check that its sequence number is above the sender's last, and only then record the
//! peer in `PEERS` and wake the agent through `EVENTS` when something it must react to changed.
//! Every frame to the heartbeat port is dropped, accepted or not: nothing above XDP needs one,
//! and a forged or malformed one goes no further than the driver. Everything else passes
//! untouched. Every verdict and rejection is counted in the per-CPU `STATS` map.
#![no_std]
#![no_main]
// The `#[xdp]` macro wraps the entry point in a generated function without a doc comment,
// and takes the context by value.
#![allow(missing_docs, clippy::needless_pass_by_value)]
// Every helper is inlined on purpose: BPF-to-BPF calls would cost a frame each on the hot
// path, and the verifier tracks packet bounds best within one function.
#![allow(clippy::inline_always)]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::{Array, HashMap, PerCpuArray, RingBuf},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ha_common::{
    change, verify_tag, AuthKeys, DecodeError, Fence, Heartbeat, PeerEvent, PeerKey, PeerRecord, XdpConfig,
    XdpStats, FENCE_KEEP_FLOWS, HEARTBEAT_LEN, MAX_GROUPS, MAX_PEERS,
};

/// Peers by (group, node id). Written only here; read by the agent. Entries are never removed:
/// a peer that leaves keeps its last record (the agent judges it by its age), and the map's
/// size bounds how many there can be.
#[btf_map]
static PEERS: HashMap<PeerKey, PeerRecord, { MAX_PEERS as usize }> = HashMap::new();

/// The groups the agent serves (group id → 1), written before attaching and on reload. A hash
/// map rather than a list in `CONFIG`: one lookup per heartbeat however many groups there are.
#[btf_map]
static GROUPS: HashMap<u32, u32, { MAX_GROUPS as usize }> = HashMap::new();

/// Verdict and rejection counters, one copy per CPU so the hot path needs no atomics.
#[btf_map]
static STATS: PerCpuArray<XdpStats, 1> = PerCpuArray::new();

/// Written once by the agent before it attaches the program.
#[btf_map]
static CONFIG: Array<XdpConfig, 1> = Array::new();

/// The keys heartbeats must be signed with; written by the agent before attaching and on SIGHUP.
/// All zero (`count` 0) means authentication is off (`--insecure-no-auth`).
#[btf_map]
static KEYS: Array<AuthKeys, 1> = Array::new();

/// The agent's lease and the VIPs it guards; rewritten by the agent every time it wakes. Once the
/// lease runs out, frames about the VIPs are dropped (see `fenced`).
#[btf_map]
static FENCE: Array<Fence, 1> = Array::new();

/// Wakes the agent at once for a new peer, a state or worthiness change, or a peer heard again
/// after a silence. 16 KiB holds several hundred events, far more than a LAN of nodes produces
/// between two of the agent's reads.
#[btf_map]
static EVENTS: RingBuf<PeerEvent, { 16 * 1024 }> = RingBuf::new();

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
const ARP_LEN: usize = 28;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOUR_SOLICITATION: u8 = 135;
const ND_NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// What became of one frame; each maps to one `XdpStats` counter.
enum Outcome {
    /// Not a heartbeat at all.
    NotHeartbeat,
    /// Recorded in `PEERS`.
    Accepted,
    Truncated,
    Rejected(DecodeError),
    WrongGroup,
    OwnEcho,
    BadTag,
    Replay,
    /// Not a heartbeat, but about a VIP while the agent's lease has run out.
    Fenced,
}

/// Where in the frame the heartbeat's IP source address sits, and its family.
struct Source {
    offset: usize,
    family: u8,
}

/// The program's entry point: classifies the frame, counts the outcome, and drops every frame
/// to the heartbeat port.
#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    let mut outcome = classify(&ctx);
    if matches!(outcome, Outcome::NotHeartbeat) && fenced(&ctx) {
        outcome = Outcome::Fenced;
    }
    count(&outcome);
    match outcome {
        Outcome::NotHeartbeat => xdp_action::XDP_PASS,
        _ => xdp_action::XDP_DROP,
    }
}

/// A copy of the `T` at `offset` bytes into the frame, or `None` if the frame is too short.
///
/// Every read of the packet goes through here, so the bounds check the verifier insists on is
/// written once. `T` is a byte array in every use (alignment 1, any bit pattern valid).
#[inline(always)]
fn read_at<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    // SAFETY: the check above keeps `offset .. offset + size_of::<T>()` inside the packet, which
    // the kernel keeps mapped and unchanged for the program's run; read_unaligned needs no
    // alignment, and the callers only read byte arrays, for which any bytes are valid.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read_at::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// The frame's link layer: the ethertype after at most one VLAN tag, where the network header
/// starts, and the VLAN id (0 when untagged).
struct LinkLayer {
    ethertype: u16,
    l3: usize,
    vlan_id: u16,
}

#[inline(always)]
fn link_layer(ctx: &XdpContext) -> Option<LinkLayer> {
    let ethertype = be16_at(ctx, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tci = be16_at(ctx, ETH_HLEN)?;
        let inner = be16_at(ctx, ETH_HLEN + 2)?;
        return Some(LinkLayer { ethertype: inner, l3: ETH_HLEN + VLAN_HLEN, vlan_id: tci & 0x0fff });
    }
    Some(LinkLayer { ethertype, l3: ETH_HLEN, vlan_id: 0 })
}

/// Whether the frame must be dropped because the agent's lease ran out and it is about a VIP:
/// an ARP packet naming one, an IPv6 neighbour solicitation or advertisement for one, or (unless
/// `FENCE_KEEP_FLOWS`) IP traffic to one. Then the kernel never answers for the VIPs of a node
/// whose agent died or hangs, and the LAN hears exactly one MAC: the successor's.
#[inline(always)]
fn fenced(ctx: &XdpContext) -> bool {
    let Some(fence) = FENCE.get(0) else {
        return false;
    };
    // SAFETY: a helper without arguments, callable from any program.
    let now = unsafe { bpf_ktime_get_ns() };
    if !fence.expired(now) {
        return false;
    }
    let keep_flows = fence.flags & FENCE_KEEP_FLOWS != 0;
    let Some(LinkLayer { ethertype, l3, .. }) = link_layer(ctx) else {
        return false;
    };
    let v4 = |offset: usize| {
        read_at::<[u8; 4]>(ctx, offset).is_some_and(|addr| {
            let mut padded = [0u8; 16];
            padded[..4].copy_from_slice(&addr);
            fence.guards(4, &padded)
        })
    };
    let v6 = |offset: usize| read_at::<[u8; 16]>(ctx, offset).is_some_and(|addr| fence.guards(6, &addr));
    match ethertype {
        // Sender and target protocol addresses: requests for a VIP, and announcements of one.
        ETH_P_ARP => read_at::<[u8; ARP_LEN]>(ctx, l3).is_some() && (v4(l3 + 14) || v4(l3 + 24)),
        ETH_P_IP => !keep_flows && v4(l3 + 16),
        ETH_P_IPV6 => {
            let Some(header) = read_at::<[u8; 8]>(ctx, l3) else {
                return false;
            };
            let icmp = l3 + IPV6_HLEN;
            let neighbour_discovery = header[6] == IPPROTO_ICMPV6
                && read_at::<[u8; 1]>(ctx, icmp).is_some_and(|[kind]| {
                    kind == ND_NEIGHBOUR_SOLICITATION || kind == ND_NEIGHBOUR_ADVERTISEMENT
                });
            // The target address of both sits 8 bytes into the ICMPv6 message.
            (neighbour_discovery && v6(icmp + 8)) || (!keep_flows && v6(l3 + 24))
        }
        _ => false,
    }
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Outcome {
    let config = match CONFIG.get(0) {
        Some(config) if config.port != 0 => *config,
        _ => return Outcome::NotHeartbeat,
    };
    let Some(LinkLayer { ethertype, l3, vlan_id }) = link_layer(ctx) else {
        return Outcome::NotHeartbeat;
    };

    let (l4, source) = match ethertype {
        ETH_P_IP => {
            let Some(header) = read_at::<[u8; IPV4_MIN_HLEN]>(ctx, l3) else {
                return Outcome::NotHeartbeat;
            };
            let ihl = ((header[0] & 0x0f) as usize) * 4;
            // Fragments (MF set or a non-zero offset) never hold a whole heartbeat.
            let fragment = u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0;
            if header[0] >> 4 != 4 || ihl < IPV4_MIN_HLEN || header[9] != IPPROTO_UDP || fragment {
                return Outcome::NotHeartbeat;
            }
            (l3 + ihl, Source { offset: l3 + 12, family: 4 })
        }
        ETH_P_IPV6 => {
            let Some(header) = read_at::<[u8; 8]>(ctx, l3) else {
                return Outcome::NotHeartbeat;
            };
            // Heartbeats carry no extension headers: next header must be UDP itself.
            if header[6] != IPPROTO_UDP {
                return Outcome::NotHeartbeat;
            }
            (l3 + IPV6_HLEN, Source { offset: l3 + 8, family: 6 })
        }
        _ => return Outcome::NotHeartbeat,
    };

    let Some(udp) = read_at::<[u8; UDP_HLEN]>(ctx, l4) else {
        return Outcome::NotHeartbeat;
    };
    if u16::from_be_bytes([udp[2], udp[3]]) != config.port {
        return Outcome::NotHeartbeat;
    }
    if u16::from_be_bytes([udp[4], udp[5]]) as usize != UDP_HLEN + HEARTBEAT_LEN {
        return Outcome::Rejected(DecodeError::BadLength);
    }
    // Copied into a fixed-size array: the decoder's every access is then in bounds by its type.
    let Some(payload) = read_at::<[u8; HEARTBEAT_LEN]>(ctx, l4 + UDP_HLEN) else {
        return Outcome::Truncated;
    };
    let heartbeat = match Heartbeat::decode_array(&payload) {
        Ok(heartbeat) => heartbeat,
        Err(reason) => return Outcome::Rejected(reason),
    };
    if GROUPS.get_ptr(heartbeat.group).is_none() {
        return Outcome::WrongGroup;
    }
    let Some(keys) = KEYS.get(0) else {
        return Outcome::BadTag;
    };
    if !verify_tag(keys, &payload, heartbeat.tag) {
        return Outcome::BadTag;
    }
    // Only after the tag: a forged heartbeat with our id must count as forged, not inflate the
    // counter that says another node claims our id. And one at or below the sequence we last
    // sent is our own, reflected or replayed: only a newer one proves another node.
    if heartbeat.node_id == config.own_node_id {
        let ours = FENCE.get(0).is_some_and(|fence| heartbeat.sequence <= fence.last_sent_sequence);
        return if ours { Outcome::Replay } else { Outcome::OwnEcho };
    }
    record(ctx, &heartbeat, &source, vlan_id)
}

/// Updates the peer's record (unless the heartbeat is a replay) and raises an event if the agent
/// must react now.
#[inline(always)]
fn record(ctx: &XdpContext, heartbeat: &Heartbeat, source: &Source, vlan_id: u16) -> Outcome {
    // SAFETY: a helper without arguments, callable from any program.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = PeerKey { group: heartbeat.group, node_id: heartbeat.node_id };

    let mut src_addr = [0u8; 16];
    if source.family == 4 {
        let Some(addr) = read_at::<[u8; 4]>(ctx, source.offset) else {
            return Outcome::Truncated;
        };
        src_addr[..4].copy_from_slice(&addr);
    } else {
        let Some(addr) = read_at::<[u8; 16]>(ctx, source.offset) else {
            return Outcome::Truncated;
        };
        src_addr = addr;
    }
    let Some(src_mac) = read_at::<[u8; 6]>(ctx, 6) else {
        return Outcome::Truncated;
    };

    let mut changes = 0u32;
    let mut packets = 1u64;
    match PEERS.get_ptr(key) {
        Some(old) => {
            // SAFETY: a pointer the map lookup returned points at a live, aligned value; another
            // CPU may update the entry meanwhile, which at worst gives a torn copy of one peer's
            // counters, and the record written below replaces it whole.
            let old = unsafe { &*old };
            // Senders number their heartbeats in strictly increasing order, across restarts too:
            // anything else is a replay (or a duplicate) and must not keep a dead peer alive.
            if heartbeat.sequence <= old.sequence {
                return Outcome::Replay;
            }
            packets = old.packets + 1;
            if old.state != heartbeat.state as u8 {
                changes |= change::STATE;
            }
            if old.priority != heartbeat.priority {
                changes |= change::PRIORITY;
            }
            if old.flags != heartbeat.flags {
                changes |= change::FLAGS;
            }
            // Silent for more than two of its intervals: it may come back from a partition as a
            // second ACTIVE, which must be resolved now rather than at the next poll.
            let silence_ns = now.saturating_sub(old.last_seen_ns);
            if silence_ns > 2 * 1_000_000 * u64::from(old.interval_ms) {
                changes |= change::REVIVED;
            }
        }
        None => changes = change::NEW_PEER,
    }

    let new_record = PeerRecord {
        last_seen_ns: now,
        sequence: heartbeat.sequence,
        packets,
        interval_ms: heartbeat.interval_ms,
        vlan_id,
        family: source.family,
        flags: heartbeat.flags,
        src_addr,
        src_mac,
        priority: heartbeat.priority,
        state: heartbeat.state as u8,
        handover_to: heartbeat.handover_to,
        _pad0: 0,
    };
    if PEERS.insert(key, new_record, 0).is_err() {
        // The map is full: more peers than MAX_PEERS. Leave the frame to the stack.
        return Outcome::NotHeartbeat;
    }

    if changes != 0 {
        if changes & change::NEW_PEER != 0 {
            debug!(ctx, "new peer {} in group {}", heartbeat.node_id, heartbeat.group);
        }
        let event = PeerEvent {
            group: heartbeat.group,
            node_id: heartbeat.node_id,
            changes,
            priority: heartbeat.priority,
            state: heartbeat.state as u8,
            _pad0: [0; 2],
        };
        if EVENTS.output(event, 0).is_err() {
            bump(|stats| stats.events_lost += 1);
        }
    }
    Outcome::Accepted
}

/// Applies `f` to this CPU's counters.
#[inline(always)]
fn bump(f: impl FnOnce(&mut XdpStats)) {
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: slot 0 of a per-CPU array is this CPU's own value, and XDP does not preempt
        // itself on one CPU: nothing else holds a reference to it while `f` runs.
        f(unsafe { &mut *stats });
    }
}

#[inline(always)]
fn count(outcome: &Outcome) {
    bump(|stats| match outcome {
        Outcome::NotHeartbeat => stats.passed += 1,
        Outcome::Accepted => stats.accepted += 1,
        Outcome::Truncated => stats.truncated += 1,
        Outcome::Rejected(DecodeError::BadLength) => stats.bad_length += 1,
        Outcome::Rejected(DecodeError::BadMagic) => stats.bad_magic += 1,
        Outcome::Rejected(DecodeError::BadVersion) => stats.bad_version += 1,
        Outcome::Rejected(DecodeError::BadField) => stats.bad_field += 1,
        Outcome::WrongGroup => stats.wrong_group += 1,
        Outcome::OwnEcho => stats.own_echo += 1,
        Outcome::BadTag => stats.bad_tag += 1,
        Outcome::Replay => stats.replay += 1,
        Outcome::Fenced => stats.fenced += 1,
    });
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
