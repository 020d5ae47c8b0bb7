//! ha-agent: an eBPF-accelerated failover agent.
//!
//! Nodes on one LAN share a virtual IP. Each sends a heartbeat every interval; the XDP program
//! (`ha-ebpf`) checks heartbeats in the kernel and records each peer in a BPF map; this library
//! polls that map (and wakes on ring-buffer events), runs the [`election`], and moves the VIP.
//!
//! The election is pure; everything that touches the system sits at the edges:
//! [`bpf`] (XDP and maps), [`vip`] (rtnetlink), [`garp`] (pnet), [`heartbeat`] (UDP),
//! [`keys`] (key files), [`status`] (control socket). [`daemon`] wires them together.

pub mod bpf;
pub mod config;
pub mod daemon;
pub mod election;
pub mod garp;
pub mod heartbeat;
pub mod keys;
pub mod status;
pub mod vip;
