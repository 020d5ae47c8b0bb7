//! Nanoseconds per frame in the XDP program through BPF_PROG_TEST_RUN, for a valid heartbeat
//! and for a rejected one (bad magic). Prints one JSON object; `cargo xtask bench` runs it.
//!
//! `cargo run --release -p ha-tests --example xdp_cost -- [REPEAT]` (default 1000000; needs root).
use aya::programs::{TestRun as _, TestRunOptions};
use ha_agent::bpf::Datapath;
use ha_common::{Heartbeat, NodeState, XdpConfig, DEFAULT_PORT};
use ha_tests::frames::ipv4_frame;

fn ns_per_frame(datapath: &Datapath, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let options = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..Default::default()
    };
    let result = datapath.program().test_run(options)?;
    // The kernel reports the mean duration of one run.
    Ok(result.duration.as_nanos() as f64)
}

fn main() -> anyhow::Result<()> {
    let repeat: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let datapath = Datapath::load(&XdpConfig {
        port: DEFAULT_PORT,
        group: 1,
        own_node_id: 99,
        ..Default::default()
    })?;
    let heartbeat = Heartbeat {
        state: NodeState::Standby,
        priority: 100,
        flags: 0,
        group: 1,
        node_id: 5,
        interval_ms: 100,
        sequence: 1,
        tag: 0,
    };
    let valid = ipv4_frame(DEFAULT_PORT, &heartbeat.encode(), None);
    let mut forged = heartbeat.encode();
    forged[0] = b'X';
    let rejected = ipv4_frame(DEFAULT_PORT, &forged, None);
    let valid_ns = ns_per_frame(&datapath, &valid, repeat)?;
    let rejected_ns = ns_per_frame(&datapath, &rejected, repeat)?;
    println!("{{\"repeat\":{repeat},\"valid_ns\":{valid_ns},\"rejected_ns\":{rejected_ns}}}");
    Ok(())
}
