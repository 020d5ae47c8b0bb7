//! Suspicion and probes on a LAN: a crashed ACTIVE is replaced well before the dead time, because
//! its XDP program stops answering probes once its agent's loop stops; a live ACTIVE whose
//! heartbeats go missing answers the probes, and nothing moves.

use std::{
    thread,
    time::{Duration, Instant},
};

use ha_tests::{require_root, wait_for, Lan, VipMonitor};

const CLIENT: usize = 3;

fn xdp_counter(status: &serde_json::Value, name: &str) -> u64 {
    status["xdp_stats"].as_array().unwrap().iter().find(|c| c[0] == name).and_then(|c| c[1].as_u64()).unwrap()
}

#[test]
fn a_crashed_active_is_replaced_before_the_dead_time() {
    let (lan, mut agents) = Lan::with_three_agents("probecrash", 4);
    thread::sleep(Duration::from_millis(300));
    agents[2].signal(libc::SIGKILL);
    let killed = Instant::now();
    let took = wait_for(Duration::from_secs(2), "host 1 holding the VIP", || lan.vip_holders().contains(&1))
        .unwrap();
    // The dead time alone: 250-350 ms after the crash. Probed: the 130 ms suspicion after the
    // last heartbeat, 25 ms of probes, and this test's own polling.
    assert!(took < Duration::from_millis(250), "the takeover took {took:?}: {}", agents[1].log());
    let reason = agents[1].log();
    assert!(reason.contains("did not answer 5 probes"), "{reason}");
    let _ = agents[2].wait_exit(Duration::from_secs(1));
    assert!(killed.elapsed() < Duration::from_secs(3));
    assert!(lan.vip_answers_ping(CLIENT), "the client's ping to the VIP is not answered");
}

#[test]
fn a_live_active_answers_probes_and_keeps_the_vip() {
    require_root();
    let (lan, agents) = Lan::with_three_agents("probelive", 4);
    let nft = |args: &[&str]| lan.switch_nft(args).unwrap();
    // The ACTIVE's multicast heartbeats go missing for 250 ms (under the 350 ms dead time, well
    // over the 130 ms suspicion); unicast (probes and their answers) still flows.
    nft(&["add", "table", "bridge", "ha_probe"]);
    nft(&["add", "chain", "bridge", "ha_probe", "forward", "{ type filter hook forward priority 0; }"]);
    let port = &lan.hosts[2].port;
    nft(&[
        "add",
        "rule",
        "bridge",
        "ha_probe",
        "forward",
        "iifname",
        port,
        "ip",
        "daddr",
        "239.255.97.1",
        "drop",
    ]);
    thread::sleep(Duration::from_millis(250));
    nft(&["delete", "table", "bridge", "ha_probe"]);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(lan.vip_holders(), [2], "nothing moved");
    let answered = xdp_counter(&agents[2].status().unwrap(), "probes_answered");
    let answers = xdp_counter(&agents[1].status().unwrap(), "probe_answers");
    assert!(answered > 0 && answers > 0, "the successor probed and was answered: {answered} / {answers}");
    assert_eq!(agents[1].status().unwrap()["state"], "STANDBY");
}

#[test]
fn a_live_active_sends_one_heartbeat_every_interval_and_is_not_probed() {
    require_root();
    // The pacer sends most rounds and the loop the one at each of its polls (daemon/pacer.rs):
    // together one every interval, none missed (its successor would probe it, a burst each
    // time) and none twice. Counted where they arrive: the ACTIVE's record in the successor's
    // XDP map, and the probes the ACTIVE's XDP program answered, over five seconds; and the VIP
    // stays where it is (a round missing leaves the probes it sets off unanswered too).
    let (lan, agents) = Lan::with_three_agents("probequiet", 4);
    let monitor = VipMonitor::start(&lan, 3).expect("watching the VIP");
    let heard = || -> (Instant, u64, u64) {
        let successor = agents[1].status().expect("status of the successor");
        let peers = successor["peers"].as_array().cloned().unwrap_or_default();
        let active = peers.iter().find(|peer| peer["state"] == "ACTIVE");
        let packets =
            active.and_then(|peer| peer["packets"].as_u64()).unwrap_or_else(|| panic!("{successor}"));
        let answered = xdp_counter(&agents[2].status().expect("status of the ACTIVE"), "probes_answered");
        (Instant::now(), packets, answered)
    };
    let (start, heartbeats_before, answered_before) = heard();
    thread::sleep(Duration::from_secs(5));
    let (end, heartbeats_after, answered_after) = heard();
    assert_eq!(monitor.stop().expect("the VIP watch"), 0, "the VIP moved on a quiet LAN");
    let intervals = u64::try_from(end.duration_since(start).as_millis() / 100).unwrap_or(u64::MAX);
    let heartbeats = heartbeats_after - heartbeats_before;
    assert!(
        heartbeats + 2 >= intervals && heartbeats <= intervals + 2,
        "{heartbeats} heartbeats in {intervals} intervals"
    );
    // One burst at most: a heartbeat held up on a busy machine may set one off.
    let answered = answered_after - answered_before;
    assert!(answered <= 5, "the ACTIVE answered {answered} probes on a quiet LAN");
}
