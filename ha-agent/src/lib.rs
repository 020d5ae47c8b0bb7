//! ha-agent: an eBPF-accelerated failover agent.
//!
//! Nodes on one LAN share a virtual IP. Each sends a heartbeat every interval; the XDP program
//! (`ha-ebpf`) checks heartbeats in the kernel and records each peer in a BPF map; this library
//! polls that map (and wakes on ring-buffer events), runs the [`election`], and moves the VIP.
//!
//! The election is pure (time and the peer table passed in, actions out); everything that
//! touches the system sits at the edges, each with its own error type: [`bpf`] (XDP and maps),
//! [`vip`] (rtnetlink), [`garp`] (pnet), [`heartbeat`] (UDP), [`keys`] (key files), [`status`]
//! (control socket). [`daemon`] wires them together. [`cli`] is the command line, [`config`]
//! the file and flags checked into one [`config::Config`], [`ids`] the node and group ids.

pub mod alarms;
pub mod bpf;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod election;
pub mod garp;
pub mod heartbeat;
pub mod hooks;
pub mod ids;
pub mod keepalived;
pub mod keys;
pub mod metrics;
pub mod netwatch;
pub mod notify;
pub mod sequence;
pub mod status;
pub mod vip;
