//! Heartbeat authentication: SipHash-2-4 (128-bit key, 64-bit tag) over the first
//! [`TAG_OFFSET`] bytes of a heartbeat.
//!
//! One implementation serves the XDP program and the agent: the `siphasher` crate, which builds
//! for the BPF target and passes the verifier (the XDP tests load it). The tests here check the
//! way keys and messages are handed to it against the reference vectors of the SipHash paper.

use core::hash::Hasher as _;

use siphasher::sip::SipHasher24;

use crate::{AuthKeys, HEARTBEAT_LEN, TAG_OFFSET};

/// A SipHash key as two little-endian 64-bit halves (k0 = bytes 0-7, k1 = bytes 8-15).
pub type SipKey = [u64; 2];

/// Splits 16 key bytes into a [`SipKey`].
pub const fn sip_key(bytes: &[u8; 16]) -> SipKey {
    [
        u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]),
        u64::from_le_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ]),
    ]
}

/// SipHash-2-4 of `data` under `key`.
#[allow(
    clippy::inline_always,
    reason = "the XDP program needs it inlined: the verifier rejects the call otherwise"
)]
#[inline(always)]
pub fn siphash24(key: &SipKey, data: &[u8]) -> u64 {
    let mut hasher = SipHasher24::new_with_keys(key[0], key[1]);
    hasher.write(data);
    hasher.finish()
}

/// The byte that follows a probe's covered bytes in the message its answer's tag covers: an
/// answer's tag is SipHash-2-4 of those [`TAG_OFFSET`] bytes and this one (see [`answer_tag`]).
/// Every heartbeat's tag covers exactly [`TAG_OFFSET`] bytes, so no answer's message is any
/// heartbeat's, and neither tag can stand for the other.
pub const ANSWER_DOMAIN: u8 = b'A';

/// SipHash-2-4's state under one key once it has taken in the [`TAG_OFFSET`] bytes a heartbeat's
/// tag covers: where that tag and the tag of the answer to it (if it is a probe) part ways.
///
/// Written out for exactly four message words rather than through the streaming hasher: in the
/// XDP program, verifying and signing are most of a heartbeat's and a probe answer's cost, and
/// the streaming hasher's buffering and tail handling cost more than the rounds themselves. The
/// tests check both tags against [`siphash24`] and the paper's vectors.
///
/// Inlined in the XDP program rather than a BPF function of its own: a BPF function's return
/// goes through the kernel's return thunk, which under the SRSO mitigation ("Safe RET", AMD) is
/// built to be mispredicted (`docs/DESIGN.md`).
#[derive(Clone, Copy)]
pub struct CoveredState([u64; 4]);

impl CoveredState {
    /// The state after the key and the four words of `payload`'s covered bytes.
    #[cfg_attr(
        target_arch = "bpf",
        allow(clippy::inline_always, reason = "a mispredicted return per check costs more than the copies")
    )]
    #[cfg_attr(target_arch = "bpf", inline(always))]
    pub fn new(key: &SipKey, payload: &[u8; HEARTBEAT_LEN]) -> Self {
        const _: () = assert!(TAG_OFFSET == 32, "the rounds below take exactly four words");
        let word = |i: usize| {
            u64::from_le_bytes([
                payload[i],
                payload[i + 1],
                payload[i + 2],
                payload[i + 3],
                payload[i + 4],
                payload[i + 5],
                payload[i + 6],
                payload[i + 7],
            ])
        };
        let mut state = Self([
            key[0] ^ 0x736f_6d65_7073_6575,
            key[1] ^ 0x646f_7261_6e64_6f6d,
            key[0] ^ 0x6c79_6765_6e65_7261,
            key[1] ^ 0x7465_6462_7974_6573,
        ]);
        for m in [word(0), word(8), word(16), word(24)] {
            state.compress(m);
        }
        state
    }

    /// The heartbeat's tag: SipHash-2-4 of the covered bytes alone, whose last block holds only
    /// the length (32) in its top byte.
    #[cfg_attr(
        target_arch = "bpf",
        allow(clippy::inline_always, reason = "a mispredicted return per check costs more than the copies")
    )]
    #[cfg_attr(target_arch = "bpf", inline(always))]
    pub fn heartbeat_tag(self) -> u64 {
        self.finish((TAG_OFFSET as u64) << 56)
    }

    /// The tag of the answer to this probe: SipHash-2-4 of the covered bytes followed by
    /// [`ANSWER_DOMAIN`], whose last block holds the length (33) and that byte. Six rounds on
    /// top of the probe's check, where a tag over a message of its own would take fourteen.
    #[cfg_attr(
        target_arch = "bpf",
        allow(clippy::inline_always, reason = "a mispredicted return per answer costs more than the copies")
    )]
    #[cfg_attr(target_arch = "bpf", inline(always))]
    pub fn answer_tag(self) -> u64 {
        self.finish(((TAG_OFFSET as u64 + 1) << 56) | u64::from(ANSWER_DOMAIN))
    }

    /// Takes in one message word: two rounds between the word's two XORs.
    #[allow(clippy::inline_always, reason = "inlined into the XDP program with the rest")]
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// Takes in the last block and runs the four finalization rounds.
    #[allow(clippy::inline_always, reason = "inlined into the XDP program with the rest")]
    #[inline(always)]
    fn finish(mut self, last: u64) -> u64 {
        self.compress(last);
        self.0[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        let [v0, v1, v2, v3] = self.0;
        v0 ^ v1 ^ v2 ^ v3
    }

    /// One SipRound.
    #[allow(clippy::inline_always, reason = "inlined into the XDP program with the rest")]
    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.0;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
}

/// The tag of an encoded heartbeat under `key`: SipHash-2-4 of bytes `0..TAG_OFFSET`.
#[cfg_attr(
    target_arch = "bpf",
    allow(clippy::inline_always, reason = "a mispredicted return per check costs more than the copies")
)]
#[cfg_attr(target_arch = "bpf", inline(always))]
pub fn heartbeat_tag(key: &SipKey, payload: &[u8; HEARTBEAT_LEN]) -> u64 {
    CoveredState::new(key, payload).heartbeat_tag()
}

/// The tag of the answer to the probe `probe` (its encoded payload) under `key`: SipHash-2-4 of
/// the probe's bytes `0..TAG_OFFSET` followed by [`ANSWER_DOMAIN`].
///
/// The answer echoes the probe's covered bytes but for its flags (see
/// [`crate::answer_payload`]), so that the prober checks it against the probe it sent,
/// and the probed node signs it from the state its check of the probe left: one SipHash and six
/// rounds per probe answered rather than two SipHash.
pub fn answer_tag(key: &SipKey, probe: &[u8; HEARTBEAT_LEN]) -> u64 {
    CoveredState::new(key, probe).answer_tag()
}

/// What an authentic heartbeat was found to be signed with.
#[derive(Clone, Copy)]
pub enum Verified {
    /// Authentication is off (no key configured): nothing was checked.
    Unsigned,
    /// Signed with the key whose state over the covered bytes this is.
    Signed(CoveredState),
}

impl Verified {
    /// The tag of the answer to this heartbeat (a probe), signed with the key that signed it;
    /// 0 while authentication is off.
    #[allow(clippy::inline_always, reason = "inlined into the XDP program with the rest")]
    #[inline(always)]
    pub fn answer_tag(self) -> u64 {
        match self {
            Self::Unsigned => 0,
            Self::Signed(state) => state.answer_tag(),
        }
    }
}

/// Whether `tag` authenticates `payload` under the current key or, while a new key rolls out,
/// the next one, and if so which key's state signs an answer to it. With no key configured
/// (`count == 0`) every tag is accepted.
#[allow(
    clippy::inline_always,
    reason = "the XDP program needs it inlined: the verifier rejects the call otherwise"
)]
#[inline(always)]
pub fn verify(keys: &AuthKeys, payload: &[u8; HEARTBEAT_LEN], tag: u64) -> Option<Verified> {
    if keys.count == 0 {
        return Some(Verified::Unsigned);
    }
    signer_state(keys, payload, |state| state.heartbeat_tag() == tag).map(Verified::Signed)
}

/// The state over `payload` under the first configured key that `signed` accepts: the current
/// key, then, while a new key rolls out, the next. The one walk over the keys that a heartbeat's
/// check and an answer's share.
#[allow(clippy::inline_always, reason = "inlined into the XDP program with its callers")]
#[inline(always)]
fn signer_state(
    keys: &AuthKeys,
    payload: &[u8; HEARTBEAT_LEN],
    signed: impl Fn(CoveredState) -> bool,
) -> Option<CoveredState> {
    let current = CoveredState::new(&keys.current, payload);
    if signed(current) {
        return Some(current);
    }
    if keys.count < 2 {
        return None;
    }
    let next = CoveredState::new(&keys.next, payload);
    signed(next).then_some(next)
}

/// Whether `tag` authenticates `payload` (see [`verify`]).
#[allow(clippy::inline_always, reason = "inlined into the XDP program with `verify`")]
#[inline(always)]
pub fn verify_tag(keys: &AuthKeys, payload: &[u8; HEARTBEAT_LEN], tag: u64) -> bool {
    verify(keys, payload, tag).is_some()
}

/// Whether `tag` is the answer tag (see [`answer_tag`]) of the probe `probe`, under the current
/// key or, while a new key rolls out, the next one. With no key configured every tag is accepted.
#[allow(clippy::inline_always, reason = "inlined into the XDP program's answer check")]
#[inline(always)]
pub fn verify_answer(keys: &AuthKeys, probe: &[u8; HEARTBEAT_LEN], tag: u64) -> bool {
    keys.count == 0 || signer_state(keys, probe, |state| state.answer_tag() == tag).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SipHash-2-4 with key 00..0f of the messages 00, 00 01, 00 01 02, … (lengths 0 to 32), as
    /// the little-endian bytes of the tag: the reference vectors (`vectors.h`) of the SipHash paper.
    #[rustfmt::skip]
    const REFERENCE: [[u8; 8]; 33] = [
        [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72], [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74],
        [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d], [0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85],
        [0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf], [0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18],
        [0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb], [0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab],
        [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93], [0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e],
        [0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a], [0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4],
        [0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75], [0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14],
        [0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7], [0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1],
        [0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f], [0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69],
        [0x9c, 0xd3, 0x8d, 0x96, 0xf0, 0xb3, 0xc1, 0x4b], [0xbd, 0x61, 0x79, 0xa7, 0x1d, 0xc9, 0x6d, 0xbb],
        [0x98, 0xee, 0xa2, 0x1a, 0xf2, 0x5c, 0xd6, 0xbe], [0xc7, 0x67, 0x3b, 0x2e, 0xb0, 0xcb, 0xf2, 0xd0],
        [0x88, 0x3e, 0xa3, 0xe3, 0x95, 0x67, 0x53, 0x93], [0xc8, 0xce, 0x5c, 0xcd, 0x8c, 0x03, 0x0c, 0xa8],
        [0x94, 0xaf, 0x49, 0xf6, 0xc6, 0x50, 0xad, 0xb8], [0xea, 0xb8, 0x85, 0x8a, 0xde, 0x92, 0xe1, 0xbc],
        [0xf3, 0x15, 0xbb, 0x5b, 0xb8, 0x35, 0xd8, 0x17], [0xad, 0xcf, 0x6b, 0x07, 0x63, 0x61, 0x2e, 0x2f],
        [0xa5, 0xc9, 0x1d, 0xa7, 0xac, 0xaa, 0x4d, 0xde], [0x71, 0x65, 0x95, 0x87, 0x66, 0x50, 0xa2, 0xa6],
        [0x28, 0xef, 0x49, 0x5c, 0x53, 0xa3, 0x87, 0xad], [0x42, 0xc3, 0x41, 0xd8, 0xfa, 0x92, 0xd8, 0x32],
        [0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71],
    ];

    const REFERENCE_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    #[test]
    fn reference_vectors() {
        let message: [u8; 32] = core::array::from_fn(|i| i as u8);
        for (length, expected) in REFERENCE.iter().enumerate() {
            let tag = siphash24(&sip_key(&REFERENCE_KEY), &message[..length]);
            assert_eq!(tag, u64::from_le_bytes(*expected), "length {length}");
        }
    }

    #[test]
    fn the_fixed_length_tag_is_siphash_of_the_covered_bytes() {
        // The paper's 32-byte vector: key 00..0f, message 00..1f.
        let payload: [u8; HEARTBEAT_LEN] = core::array::from_fn(|i| i as u8);
        let tag = heartbeat_tag(&sip_key(&REFERENCE_KEY), &payload);
        assert_eq!(tag, u64::from_le_bytes(REFERENCE[32]));
    }

    #[test]
    fn the_tag_covers_everything_but_itself() {
        let key = sip_key(&[5; 16]);
        let payload: [u8; HEARTBEAT_LEN] = core::array::from_fn(|i| i as u8);
        assert_eq!(heartbeat_tag(&key, &payload), siphash24(&key, &payload[..TAG_OFFSET]));
        let mut other_tag = payload;
        other_tag[TAG_OFFSET] ^= 0xff;
        assert_eq!(heartbeat_tag(&key, &payload), heartbeat_tag(&key, &other_tag));
    }

    proptest! {
        /// The written-out rounds agree with the streaming hasher for any key and payload.
        #[test]
        fn the_fixed_length_tag_agrees_with_the_streaming_hasher(
            key in any::<[u8; 16]>(), payload in any::<[u8; HEARTBEAT_LEN]>(),
        ) {
            let key = sip_key(&key);
            prop_assert_eq!(heartbeat_tag(&key, &payload), siphash24(&key, &payload[..TAG_OFFSET]));
        }

        /// Any change to a covered byte changes the tag (a 2^-64 chance aside).
        #[test]
        fn every_covered_byte_counts(key in any::<[u8; 16]>(), index in 0..TAG_OFFSET, flip in 1..=255u8) {
            let key = sip_key(&key);
            let payload = [0x5a; HEARTBEAT_LEN];
            let mut changed = payload;
            changed[index] ^= flip;
            prop_assert_ne!(heartbeat_tag(&key, &payload), heartbeat_tag(&key, &changed));
        }
    }

    #[test]
    fn verify_accepts_current_and_next_only() {
        let current = sip_key(&[1; 16]);
        let next = sip_key(&[2; 16]);
        let other = sip_key(&[3; 16]);
        let payload = [7u8; HEARTBEAT_LEN];
        let keys = AuthKeys { current, next, count: 2, _pad0: 0 };
        assert!(verify_tag(&keys, &payload, heartbeat_tag(&current, &payload)));
        assert!(verify_tag(&keys, &payload, heartbeat_tag(&next, &payload)));
        assert!(!verify_tag(&keys, &payload, heartbeat_tag(&other, &payload)));
        let only_current = AuthKeys { count: 1, ..keys };
        assert!(!verify_tag(&only_current, &payload, heartbeat_tag(&next, &payload)));
        let off = AuthKeys { count: 0, ..keys };
        assert!(verify_tag(&off, &payload, 0));
    }

    #[test]
    fn the_answer_tag_is_siphash_of_the_covered_bytes_and_the_domain_byte() {
        let key = sip_key(&REFERENCE_KEY);
        let probe: [u8; HEARTBEAT_LEN] = core::array::from_fn(|i| i as u8);
        let mut message = [0u8; TAG_OFFSET + 1];
        message[..TAG_OFFSET].copy_from_slice(&probe[..TAG_OFFSET]);
        message[TAG_OFFSET] = ANSWER_DOMAIN;
        assert_eq!(answer_tag(&key, &probe), siphash24(&key, &message));
        assert_ne!(answer_tag(&key, &probe), heartbeat_tag(&key, &probe));
    }

    #[test]
    fn an_answer_is_signed_with_the_key_that_signed_its_probe() {
        let (current, next) = (sip_key(&[1; 16]), sip_key(&[2; 16]));
        let keys = AuthKeys { current, next, count: 2, _pad0: 0 };
        let probe = [9u8; HEARTBEAT_LEN];
        for key in [current, next] {
            let verified = verify(&keys, &probe, heartbeat_tag(&key, &probe)).expect("authentic");
            assert_eq!(verified.answer_tag(), answer_tag(&key, &probe));
            assert!(verify_answer(&keys, &probe, verified.answer_tag()));
        }
        assert!(!verify_answer(&AuthKeys { count: 1, ..keys }, &probe, answer_tag(&next, &probe)));
        let off = AuthKeys { count: 0, ..keys };
        assert_eq!(verify(&off, &probe, 0).map(Verified::answer_tag), Some(0));
    }

    #[test]
    fn an_answer_echoes_its_probe_but_for_the_flags_and_the_tag() {
        let key = sip_key(&[4; 16]);
        let probe = crate::Heartbeat {
            state: crate::NodeState::Standby,
            priority: 100,
            flags: crate::FLAG_PROBE | crate::FLAG_YIELDED,
            group: 3,
            node_id: 5,
            interval_ms: 100,
            target: 9,
            sequence: 77,
            tag: 0,
        }
        .encode_signed(Some(&key));
        let answer = crate::answer_payload(&probe, Some(&key));
        let decoded = crate::Heartbeat::decode(&answer).expect("an answer decodes");
        assert_eq!(decoded.flags, crate::FLAG_PROBE_ANSWER | crate::FLAG_YIELDED);
        assert_eq!((decoded.node_id, decoded.target, decoded.sequence), (5, 9, 77));
        assert_eq!(crate::answered_probe(&answer)[..TAG_OFFSET], probe[..TAG_OFFSET]);
        let keys = AuthKeys { current: key, count: 1, ..Default::default() };
        assert!(verify_answer(&keys, &crate::answered_probe(&answer), decoded.tag));
        assert!(!verify_tag(&keys, &answer, decoded.tag), "an answer's tag is no heartbeat's");
    }
}
