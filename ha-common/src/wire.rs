//! Heartbeat wire format, protocol version 1.
//!
//! One fixed-size UDP payload of [`HEARTBEAT_LEN`] bytes, all integers in network byte order:
//!
//! | offset | size | field        |
//! |-------:|-----:|--------------|
//! | 0      | 4    | magic `HAHB` |
//! | 4      | 1    | version (1)  |
//! | 5      | 1    | state        |
//! | 6      | 1    | priority (worthiness; 0 = releasing) |
//! | 7      | 1    | flags: bit 0 [`FLAG_YIELDED`], 1 [`FLAG_HANDOVER`], 2 [`FLAG_CHOSEN`], 3 [`FLAG_PROBE`], 4 [`FLAG_PROBE_ANSWER`], 5 [`FLAG_RESTARTING`], others 0 |
//! | 8      | 4    | group id     |
//! | 12     | 4    | node id      |
//! | 16     | 4    | sender's interval in ms |
//! | 20     | 4    | target node id: of a handover, a probe or an answer (0 otherwise) |
//! | 24     | 8    | sequence number |
//! | 32     | 8    | authentication tag |

/// First four bytes of every heartbeat: ASCII `HAHB`.
pub const MAGIC: u32 = u32::from_be_bytes(*b"HAHB");
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of a heartbeat payload in bytes; any other UDP payload length is rejected.
pub const HEARTBEAT_LEN: usize = 40;
/// Default UDP port for heartbeats.
pub const DEFAULT_PORT: u16 = 9740;
/// Default IPv4 multicast group (organisation-local scope, never routed off the LAN).
pub const DEFAULT_MCAST_V4: [u8; 4] = [239, 255, 97, 1];
/// Flag: the sender held the VIP within the last dead time and gave it up to a more worthy node.
/// The ACTIVE that sees it announces the VIP again, since the sender may have pointed the LAN's
/// ARP caches at itself.
pub const FLAG_YIELDED: u8 = 1;
/// Flag: the sender, releasing, hands its VIPs to the node named in `target`
/// (`ha-agent ctl handover`): that node takes over at once, the others leave it to it.
pub const FLAG_HANDOVER: u8 = 2;
/// Flag: the sender holds the VIPs because an operator handed them to it: more worthy nodes do
/// not preempt it (until it stops holding them).
pub const FLAG_CHOSEN: u8 = 4;
/// Flag: the sender (a STANDBY that would succeed the ACTIVE) suspects the ACTIVE named in
/// `target`, which has been silent for a little over an interval, and asks it to answer at once.
/// Otherwise it is an ordinary heartbeat of the sender, recorded as one.
pub const FLAG_PROBE: u8 = 8;
/// Flag: the answer of the node that sends it, made by its XDP program while its agent's loop
/// turns, to the probe whose sequence number it echoes, from the node named in `target`.
pub const FLAG_PROBE_ANSWER: u8 = 16;
/// Flag: the sender is about to re-execute itself (`SIGUSR2`, a planned upgrade): its successor
/// does not probe it (a restart has no loop to answer with) and waits out the dead time instead.
pub const FLAG_RESTARTING: u8 = 32;
/// The flags that name a node in `target`.
pub const TARGET_FLAGS: u8 = FLAG_HANDOVER | FLAG_PROBE | FLAG_PROBE_ANSWER;
/// Every flag this version defines; a heartbeat with any other bit set is rejected.
pub const KNOWN_FLAGS: u8 =
    FLAG_YIELDED | FLAG_HANDOVER | FLAG_CHOSEN | FLAG_PROBE | FLAG_PROBE_ANSWER | FLAG_RESTARTING;
/// Byte offset of the flags.
pub const FLAGS_OFFSET: usize = 7;
/// Byte offset of the authentication tag, which covers bytes `0..TAG_OFFSET`.
pub const TAG_OFFSET: usize = 32;
/// Length of an IPv4 header without options.
pub const IPV4_MIN_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header; its addresses are its last 32 bytes.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The IP protocol number (IPv6 next header) of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// What a node says it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum NodeState {
    /// Not holding the VIP; ready to take over.
    Standby = 1,
    /// Holding the VIP.
    Active = 2,
}

impl NodeState {
    /// Decodes a state byte; `None` for values this version does not define.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Standby),
            2 => Some(Self::Active),
            _ => None,
        }
    }

    /// Upper-case name as logged and shown by `ha-agent status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standby => "STANDBY",
            Self::Active => "ACTIVE",
        }
    }
}

/// A decoded heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Sender's state.
    pub state: NodeState,
    /// Sender's worthiness; 0 means "releasing, do not count me".
    pub priority: u8,
    /// Bitmask of `FLAG_*` constants.
    pub flags: u8,
    /// VIP group this heartbeat belongs to; several groups may share a LAN.
    pub group: u32,
    /// Sender's node id, unique within the group.
    pub node_id: u32,
    /// Sender's heartbeat interval in milliseconds.
    pub interval_ms: u32,
    /// With [`FLAG_HANDOVER`]: the node the sender hands its VIPs to; with [`FLAG_PROBE`]: the
    /// node asked; with [`FLAG_PROBE_ANSWER`]: the node answered; 0 otherwise.
    pub target: u32,
    /// Strictly increasing per sender (see `docs/PROTOCOL.md`).
    pub sequence: u64,
    /// Authentication tag over bytes `0..TAG_OFFSET`; 0 while authentication is off.
    pub tag: u64,
}

/// The flags of the answer to a probe with `probe_flags`: [`FLAG_PROBE`] becomes
/// [`FLAG_PROBE_ANSWER`], the others stay.
#[must_use]
pub const fn answer_flags(probe_flags: u8) -> u8 {
    (probe_flags & !FLAG_PROBE) | FLAG_PROBE_ANSWER
}

/// The answer to the probe `probe` (its payload as sent): the probe's bytes, its flags made an
/// answer's ([`answer_flags`]), and in place of its tag the answer tag ([`crate::answer_tag`]),
/// signed with `key`; `None` leaves the tag 0 (authentication off). So the answer names the
/// prober in `node_id`, the node probed in `target`, and echoes the probe's sequence number.
#[must_use]
pub fn answer_payload(probe: &[u8; HEARTBEAT_LEN], key: Option<&crate::SipKey>) -> [u8; HEARTBEAT_LEN] {
    answer_with_tag(probe, key.map_or(0, |key| crate::answer_tag(key, probe)))
}

/// The answer to the probe `probe` with `tag` as its tag (see [`answer_payload`]): for the XDP
/// program, which signs the tag from its check of the probe.
#[allow(clippy::inline_always, reason = "inlined into the XDP program's answer")]
#[inline(always)]
#[must_use]
pub fn answer_with_tag(probe: &[u8; HEARTBEAT_LEN], tag: u64) -> [u8; HEARTBEAT_LEN] {
    let mut answer = *probe;
    answer[FLAGS_OFFSET] = answer_flags(probe[FLAGS_OFFSET]);
    answer[TAG_OFFSET..].copy_from_slice(&tag.to_be_bytes());
    answer
}

/// The probe that the answer `answer` answers, as far as its tag covers it: the answer's bytes
/// with [`FLAG_PROBE_ANSWER`] made [`FLAG_PROBE`] again (the tag bytes are left as they are).
#[allow(clippy::inline_always, reason = "inlined into the XDP program's answer check")]
#[inline(always)]
#[must_use]
pub fn answered_probe(answer: &[u8; HEARTBEAT_LEN]) -> [u8; HEARTBEAT_LEN] {
    let mut probe = *answer;
    probe[FLAGS_OFFSET] = (answer[FLAGS_OFFSET] & !FLAG_PROBE_ANSWER) | FLAG_PROBE;
    probe
}

/// Why a payload is not a heartbeat this version accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload is not exactly [`HEARTBEAT_LEN`] bytes.
    BadLength,
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// The version byte is not [`VERSION`].
    BadVersion,
    /// A field holds a value this version does not define (state, flags, a handover target
    /// without the handover flag).
    BadField,
}

impl Heartbeat {
    /// Encodes into the fixed wire layout.
    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
        let mut buf = [0u8; HEARTBEAT_LEN];
        buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        buf[4] = VERSION;
        buf[5] = self.state as u8;
        buf[6] = self.priority;
        buf[FLAGS_OFFSET] = self.flags;
        buf[8..12].copy_from_slice(&self.group.to_be_bytes());
        buf[12..16].copy_from_slice(&self.node_id.to_be_bytes());
        buf[16..20].copy_from_slice(&self.interval_ms.to_be_bytes());
        buf[20..24].copy_from_slice(&self.target.to_be_bytes());
        buf[24..32].copy_from_slice(&self.sequence.to_be_bytes());
        buf[32..40].copy_from_slice(&self.tag.to_be_bytes());
        buf
    }

    /// Encodes and signs with `key`: the tag field becomes the SipHash-2-4 tag of the rest.
    /// `None` leaves the tag 0 (authentication off).
    pub fn encode_signed(&self, key: Option<&crate::SipKey>) -> [u8; HEARTBEAT_LEN] {
        let mut buf = Heartbeat { tag: 0, ..*self }.encode();
        if let Some(key) = key {
            let tag = crate::heartbeat_tag(key, &buf);
            buf[TAG_OFFSET..].copy_from_slice(&tag.to_be_bytes());
        }
        buf
    }

    /// Decodes a UDP payload of any length (user space, tests, fuzzing).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let array: &[u8; HEARTBEAT_LEN] = payload.try_into().map_err(|_| DecodeError::BadLength)?;
        Self::decode_array(array)
    }

    /// Decodes a payload already known to be [`HEARTBEAT_LEN`] bytes long.
    ///
    /// This is the form the XDP program calls: a fixed-size array copied from the packet keeps
    /// every access provably in bounds for the verifier.
    #[allow(clippy::inline_always, reason = "the XDP program needs it inlined to keep the verifier's bounds")]
    #[inline(always)]
    pub fn decode_array(buf: &[u8; HEARTBEAT_LEN]) -> Result<Self, DecodeError> {
        if u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if buf[4] != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let Some(state) = NodeState::from_u8(buf[5]) else {
            return Err(DecodeError::BadField);
        };
        let target = u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]);
        let flags = buf[FLAGS_OFFSET];
        if flags & !KNOWN_FLAGS != 0 || (flags & TARGET_FLAGS == 0 && target != 0) {
            return Err(DecodeError::BadField);
        }
        Ok(Self {
            state,
            priority: buf[6],
            flags,
            group: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            node_id: u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]),
            interval_ms: u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]),
            target,
            sequence: u64::from_be_bytes([
                buf[24], buf[25], buf[26], buf[27], buf[28], buf[29], buf[30], buf[31],
            ]),
            tag: u64::from_be_bytes([buf[32], buf[33], buf[34], buf[35], buf[36], buf[37], buf[38], buf[39]]),
        })
    }
}

/// The ones' complement sum of `bytes` (big-endian 16-bit words, an odd last byte padded with
/// 0) and `start`, folded to 16 bits: the internet checksum is its complement. For user space:
/// the XDP program has its own, shaped for the verifier.
#[must_use]
pub fn ones_sum(bytes: &[u8], start: u32) -> u16 {
    let mut sum = start;
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The ones' complement sum over the IPv6 datagram `datagram`'s UDP pseudo-header (addresses,
/// UDP length, next header 17) and its UDP header and payload, the checksum field as it stands:
/// 0xffff when that checksum holds. For user space, as [`ones_sum`].
#[must_use]
pub fn udp6_sum(datagram: &[u8]) -> u16 {
    let (header, udp) = datagram.split_at(IPV6_HEADER_LEN.min(datagram.len()));
    let addresses = header.get(8..).unwrap_or_default();
    let length = u32::try_from(udp.len()).unwrap_or(u32::MAX).to_be_bytes();
    let pseudo = ones_sum(&[length[0], length[1], length[2], length[3], 0, 0, 0, IPPROTO_UDP], 0);
    ones_sum(udp, u32::from(ones_sum(addresses, u32::from(pseudo))))
}

/// The UDP checksum of the IPv6 datagram `datagram` whose checksum field is zero: the
/// complement of [`udp6_sum`], 0 sent as 0xffff (IPv6 forbids a zero UDP checksum).
#[must_use]
pub fn udp6_checksum(datagram: &[u8]) -> u16 {
    match !udp6_sum(datagram) {
        0 => 0xffff,
        checksum => checksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Heartbeat {
        Heartbeat {
            state: NodeState::Active,
            priority: 200,
            flags: 0,
            group: 7,
            node_id: 0xdead_beef,
            interval_ms: 100,
            target: 0,
            sequence: 0x0102_0304_0506_0708,
            tag: 0,
        }
    }

    /// The exact bytes of `sample()`: a fixture that pins the wire layout.
    const SAMPLE_BYTES: [u8; HEARTBEAT_LEN] = [
        b'H', b'A', b'H', b'B', 1, 2, 200, 0, // magic, version, state, priority, flags
        0, 0, 0, 7, // group
        0xde, 0xad, 0xbe, 0xef, // node id
        0, 0, 0, 100, // interval
        0, 0, 0, 0, // handover target
        1, 2, 3, 4, 5, 6, 7, 8, // sequence
        0, 0, 0, 0, 0, 0, 0, 0, // tag
    ];

    #[test]
    fn encode_matches_fixture() {
        assert_eq!(sample().encode(), SAMPLE_BYTES);
    }

    #[test]
    fn decode_fixture() {
        assert_eq!(Heartbeat::decode(&SAMPLE_BYTES), Ok(sample()));
    }

    #[test]
    fn rejects_short_and_long() {
        assert_eq!(Heartbeat::decode(&SAMPLE_BYTES[..39]), Err(DecodeError::BadLength));
        assert_eq!(Heartbeat::decode(&[]), Err(DecodeError::BadLength));
        let mut long = [0u8; HEARTBEAT_LEN + 1];
        long[..HEARTBEAT_LEN].copy_from_slice(&SAMPLE_BYTES);
        assert_eq!(Heartbeat::decode(&long), Err(DecodeError::BadLength));
    }

    #[test]
    fn rejects_bad_magic() {
        let mut bytes = SAMPLE_BYTES;
        bytes[0] = b'X';
        assert_eq!(Heartbeat::decode(&bytes), Err(DecodeError::BadMagic));
    }

    #[test]
    fn rejects_bad_version() {
        for version in [0u8, 2, 255] {
            let mut bytes = SAMPLE_BYTES;
            bytes[4] = version;
            assert_eq!(Heartbeat::decode(&bytes), Err(DecodeError::BadVersion));
        }
    }

    #[test]
    fn rejects_undefined_fields() {
        // A state of 0 or 3, an undefined flag, a handover target without the handover flag.
        for (offset, value) in [(5usize, 0u8), (5, 3), (7, 64), (20, 1), (23, 0x80)] {
            let mut bytes = SAMPLE_BYTES;
            bytes[offset] = value;
            assert_eq!(Heartbeat::decode(&bytes), Err(DecodeError::BadField), "offset {offset}");
        }
    }

    fn any_heartbeat() -> impl Strategy<Value = Heartbeat> {
        (
            prop_oneof![Just(NodeState::Standby), Just(NodeState::Active)],
            any::<u8>(),
            0..=KNOWN_FLAGS,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(state, priority, flags, group, node_id, interval_ms, target, sequence, tag)| {
                    let target = if flags & TARGET_FLAGS == 0 { 0 } else { target };
                    Heartbeat { state, priority, flags, group, node_id, interval_ms, target, sequence, tag }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(hb in any_heartbeat()) {
            prop_assert_eq!(Heartbeat::decode(&hb.encode()), Ok(hb));
        }

        /// The fuzz target: whatever comes off the wire, decoding and verifying never panic, and
        /// a decoded heartbeat re-encodes to the same bytes. `cargo xtask bench` runs it with
        /// PROPTEST_CASES=1000000.
        #[test]
        fn fuzz_decode_and_verify(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            current in any::<[u64; 2]>(),
            next in any::<[u64; 2]>(),
            count in 0..=3u32,
        ) {
            let keys = crate::AuthKeys { current, next, count, _pad0: 0 };
            if let Ok(hb) = Heartbeat::decode(&bytes) {
                prop_assert_eq!(&hb.encode()[..], &bytes[..]);
                let array: &[u8; HEARTBEAT_LEN] = bytes.as_slice().try_into().unwrap();
                let accepted = crate::verify_tag(&keys, array, hb.tag);
                prop_assert!(count == 0 || !accepted || hb.tag == crate::heartbeat_tag(&keys.current, array)
                    || hb.tag == crate::heartbeat_tag(&keys.next, array));
            }
        }
    }
}
