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

/// The tag of an encoded heartbeat under `key`: SipHash-2-4 of bytes `0..TAG_OFFSET`.
///
/// Written out for exactly [`TAG_OFFSET`] bytes (four message words and the length block) rather
/// than through the streaming hasher: in the XDP program, verifying and signing are most of a
/// heartbeat's and a probe answer's cost, and the streaming hasher's buffering and tail handling
/// cost more than the rounds themselves. The tests check it against [`siphash24`] and the paper's
/// vectors.
///
/// Inlined in the XDP program, at the check and at the probe answer's signature, rather than one
/// BPF function both call: a BPF function's return goes through the kernel's return thunk, which
/// under the SRSO mitigation ("Safe RET", AMD) is built to be mispredicted, and two such returns
/// cost a probe more than running its second SipHash from code of its own (`docs/DESIGN.md`).
#[cfg_attr(
    target_arch = "bpf",
    allow(clippy::inline_always, reason = "two mispredicted returns per probe cost more than the copies")
)]
#[cfg_attr(target_arch = "bpf", inline(always))]
pub fn heartbeat_tag(key: &SipKey, payload: &[u8; HEARTBEAT_LEN]) -> u64 {
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
    let mut v = [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ];
    // The four message words, then the last block: the length (32) in the top byte, no tail.
    for m in [word(0), word(8), word(16), word(24), (TAG_OFFSET as u64) << 56] {
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// One SipRound over the state `v`.
#[allow(clippy::inline_always, reason = "inlined into the XDP program with `heartbeat_tag`")]
#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
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

/// Whether `tag` authenticates `payload` under the current key or, while a new key rolls out,
/// the next one. With no key configured (`count == 0`) every tag is accepted.
#[allow(
    clippy::inline_always,
    reason = "the XDP program needs it inlined: the verifier rejects the call otherwise"
)]
#[inline(always)]
pub fn verify_tag(keys: &AuthKeys, payload: &[u8; HEARTBEAT_LEN], tag: u64) -> bool {
    if keys.count == 0 {
        return true;
    }
    if heartbeat_tag(&keys.current, payload) == tag {
        return true;
    }
    keys.count >= 2 && heartbeat_tag(&keys.next, payload) == tag
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
}
