//! Types shared by the ha-agent XDP program (`ha-ebpf`) and user space (`ha-agent`).
//!
//! Everything here is `no_std` and allocation-free so that the very same decoder runs inside the
//! XDP program and in the agent's tests. Four parts:
//!
//! - [`wire`]: the heartbeat packet (protocol v1, see `docs/PROTOCOL.md`), its encoder and the one
//!   decoder both sides use.
//! - [`auth`]: SipHash-2-4 heartbeat tags, verified in XDP and produced by the agent.
//! - [`units`]: the duration syntax of the config file and the flags.
//! - [`maps`]: the `#[repr(C)]` records stored in the BPF maps, with explicit padding so that the
//!   kernel, the eBPF object's BTF and user space agree byte for byte.
#![no_std]
#![deny(missing_docs)]

pub mod auth;
pub mod maps;
pub mod units;
pub mod wire;

pub use auth::{
    answer_tag, heartbeat_tag, sip_key, siphash24, verify, verify_answer, verify_tag, CoveredState, SipKey,
    Verified, ANSWER_DOMAIN,
};
pub use maps::*;
pub use units::parse_duration;
pub use wire::*;
