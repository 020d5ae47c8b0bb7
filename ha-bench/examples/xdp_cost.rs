//! Nanoseconds per frame in the XDP program through BPF_PROG_TEST_RUN: a valid authenticated
//! heartbeat (accepted: a fresh sequence number each run), the same heartbeat replayed, a forged
//! one (signed with a wrong key) from a known node id and from one never heard, a forged one while
//! two keys are configured (a key rollout: two SipHash computations), and a probe answered.
//! Prints one JSON object; `cargo xtask bench` runs it.
//!
//! BPF_PROG_TEST_RUN repeats one input, so a repeated valid heartbeat is a replay after its first
//! run. The accepting path is therefore timed one run per call with a new sequence each time,
//! less the per-call timer overhead, calibrated on a frame that passes (another port) timed both
//! ways.
//!
//! `cargo run --release -p ha-bench --example xdp_cost -- [REPEAT]` (default 1000000; needs root).
use aya::programs::{TestRun as _, TestRunOptions};
use ha_agent::bpf::Datapath;
use ha_common::{sip_key, AuthKeys, Heartbeat, NodeState, XdpConfig, DEFAULT_PORT, FLAG_PROBE};
use ha_tests::frames::ipv4_frame;

fn load(keys: &AuthKeys) -> anyhow::Result<Datapath> {
    let config = XdpConfig { port: DEFAULT_PORT, own_node_id: 99, ..Default::default() };
    let mut datapath = Datapath::load(&config, keys)?;
    datapath.set_groups(&[1])?;
    Ok(datapath)
}

/// Mean ns of one run of `frame` over `repeat` runs. The kernel reports the mean of one run.
fn ns_per_frame(datapath: &Datapath, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let options = TestRunOptions { data_in: Some(frame), repeat, ..Default::default() };
    Ok(datapath.program().test_run(options)?.duration.as_nanos() as f64)
}

/// Mean ns of single runs, one call each, over `frames`.
fn ns_single_runs(datapath: &Datapath, frames: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for frame in frames {
        total += ns_per_frame(datapath, frame, 1)?;
    }
    Ok(total / frames.len() as f64)
}

fn main() -> anyhow::Result<()> {
    let repeat: u32 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let key = sip_key(&[0x11; 16]);
    let one_key = AuthKeys { current: key, count: 1, ..Default::default() };
    let two_keys = AuthKeys { current: key, next: sip_key(&[0x22; 16]), count: 2, _pad0: 0 };
    let heartbeat = Heartbeat {
        state: NodeState::Standby,
        priority: 100,
        flags: 0,
        group: 1,
        node_id: 5,
        interval_ms: 100,
        target: 0,
        sequence: 1,
        tag: 0,
    };
    let datapath = load(&one_key)?;
    let singles = (repeat / 10).clamp(1000, 100_000);
    let fresh: Vec<Vec<u8>> = (1..=u64::from(singles))
        .map(|sequence| {
            ipv4_frame(DEFAULT_PORT, &Heartbeat { sequence, ..heartbeat }.encode_signed(Some(&key)), None)
        })
        .collect();
    let other_port = ipv4_frame(DEFAULT_PORT + 1, &heartbeat.encode_signed(Some(&key)), None);
    let overhead = ns_single_runs(&datapath, &vec![other_port.clone(); singles as usize])?
        - ns_per_frame(&datapath, &other_port, repeat)?;
    let valid_ns = ns_single_runs(&datapath, &fresh)? - overhead;
    // The last fresh frame, repeated: every run after none is a replay.
    let replayed_ns = ns_per_frame(&datapath, fresh.last().expect("at least one frame"), repeat)?;
    let wrong_key = sip_key(&[0x99; 16]);
    let forged_by =
        |heartbeat: Heartbeat| ipv4_frame(DEFAULT_PORT, &heartbeat.encode_signed(Some(&wrong_key)), None);
    let forged = forged_by(heartbeat);
    let forged_ns = ns_per_frame(&datapath, &forged, repeat)?;
    // Forged from a node id never heard: no hint, and `PEER_SLOTS` misses before `GROUPS`.
    let forged_unheard_ns =
        ns_per_frame(&datapath, &forged_by(Heartbeat { node_id: 77, ..heartbeat }), repeat)?;
    let forged_two_keys_ns = ns_per_frame(&load(&two_keys)?, &forged, repeat)?;
    // Probes to node 99, each fresh, answered with XDP_TX: the loop "turned" within an hour.
    let mut answering = load(&one_key)?;
    answering.set_state(1, NodeState::Active)?;
    let hour = std::time::Duration::from_hours(1);
    answering.set_fence(ha_agent::bpf::fence(hour, hour, false), &[], ha_agent::clock::monotonic_now())?;
    let probes: Vec<Vec<u8>> = (1..=u64::from(singles))
        .map(|sequence| {
            let probe = Heartbeat { sequence, flags: FLAG_PROBE, target: 99, ..heartbeat };
            ipv4_frame(DEFAULT_PORT, &probe.encode_signed(Some(&key)), None)
        })
        .collect();
    let probe_answer_ns = ns_single_runs(&answering, &probes)? - overhead;
    let answered = answering.stats()?.probes_answered;
    anyhow::ensure!(answered == u64::from(singles), "{answered} of {singles} probes answered");
    println!(
        "{{\"repeat\":{repeat},\"valid_ns\":{valid_ns:.1},\"replayed_ns\":{replayed_ns},\"forged_ns\":{forged_ns},\"forged_unheard_ns\":{forged_unheard_ns},\"forged_two_keys_ns\":{forged_two_keys_ns},\"probe_answer_ns\":{probe_answer_ns:.1},\"timer_overhead_ns\":{overhead:.1}}}"
    );
    Ok(())
}
