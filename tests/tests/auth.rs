//! Heartbeats nobody can forge or replay: an attacker on the LAN (the client host, with the
//! `hbtool` binary) floods forged heartbeats, replays captured ones and sends garbage; the
//! assertions are on what the LAN does (who holds the VIP, whether the client's pings are
//! answered) and on the agents' XDP counters.

use std::{
    process::{Child, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use ha_common::DEFAULT_PORT;
use ha_tests::{Agent, Lan, Prober, VipMonitor};

const CLIENT: usize = 3;
const HBTOOL: &str = env!("CARGO_BIN_EXE_hbtool");

fn hbtool(lan: &Lan, host: usize, args: &[&str]) -> Output {
    let output = lan.hosts[host].ns.command(HBTOOL).args(args).output().expect("running hbtool");
    assert!(output.status.success(), "hbtool {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn spawn_hbtool(lan: &Lan, host: usize, args: &[&str]) -> Child {
    lan.hosts[host].ns.command(HBTOOL).args(args).stdout(Stdio::piped()).spawn().expect("spawning hbtool")
}

/// One XDP counter from an agent's status.
fn counter(agent: &Agent, name: &str) -> u64 {
    let status = agent.status().expect("status");
    status["xdp_stats"]
        .as_array()
        .and_then(|pairs| pairs.iter().find(|p| p[0] == name))
        .and_then(|p| p[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

#[test]
fn a_forged_flood_moves_nothing_and_costs_no_ping() {
    let (lan, agents) = Lan::with_three_agents("flood", 4);
    let monitor = VipMonitor::start(&lan, 3).unwrap();
    let prober = Prober::start(&lan, CLIENT).unwrap();
    let port = DEFAULT_PORT.to_string();
    let output = hbtool(&lan, CLIENT, &["flood", "eth0", &port, "2"]);
    eprintln!("flood: {}", String::from_utf8_lossy(&output.stdout).trim());
    thread::sleep(Duration::from_millis(300));
    let (_, sent, received) = prober.stop_with_counts().unwrap();
    assert_eq!(monitor.stop().unwrap(), 0, "the forged heartbeats caused a transition");
    assert_eq!(lan.vip_holders(), vec![2]);
    // The request in flight when ping is stopped may go unanswered; nothing else may.
    assert!(sent > 100 && sent - received <= 1, "the client lost pings: {received} of {sent} answered");
    for agent in &agents {
        assert!(counter(agent, "bad_tag") > 1000, "the flood must reach XDP and be rejected there");
        let status = agent.status().unwrap();
        let peers = status["peers"].as_array().unwrap();
        assert!(peers.iter().all(|p| p["priority"] != 255), "a forged peer was recorded: {status}");
    }
}

#[test]
fn a_replayed_capture_does_not_keep_a_dead_active_alive() {
    let (lan, agents) = Lan::with_three_agents("replay", 4);
    let active_id = agents[2].status().unwrap()["node_id"].as_u64().unwrap().to_string();
    let capture = lan.dir.join("active.cap");
    let capture = capture.to_str().unwrap();
    let port = DEFAULT_PORT.to_string();
    // The client has no agent, so it sees the ACTIVE's multicast heartbeats like any host.
    hbtool(&lan, CLIENT, &["capture", "eth0", &port, &active_id, "20", capture]);

    lan.cut(2).unwrap();
    let cut_at = Instant::now();
    let mut replayer = spawn_hbtool(&lan, CLIENT, &["replay", "eth0", capture, "2", "50"]);
    while !lan.vip_holders().contains(&1) {
        assert!(cut_at.elapsed() < Duration::from_secs(1), "the replay kept the dead ACTIVE alive");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(replayer.wait().unwrap().success());
    assert!(counter(&agents[1], "replay") >= 20, "the replayed heartbeats must be counted as replays");
    assert!(lan.vip_holders().contains(&1), "the STANDBY must keep the VIP after the replay");
}

#[test]
fn garbage_to_the_heartbeat_port_is_counted_and_dropped() {
    let (lan, agents) = Lan::with_three_agents("junk", 4);
    let names = ["bad_length", "truncated", "bad_magic"];
    let before: Vec<u64> = names.iter().map(|n| counter(&agents[0], n)).collect();
    let monitor = VipMonitor::start(&lan, 3).unwrap();
    let port = DEFAULT_PORT.to_string();
    hbtool(&lan, CLIENT, &["garbage", "eth0", &port]);
    thread::sleep(Duration::from_millis(300));
    let after: Vec<u64> = names.iter().map(|n| counter(&agents[0], n)).collect();
    // 100 each: short, oversized and empty payloads (bad_length), cut frames, wrong magic.
    assert_eq!(after[0] - before[0], 300, "bad_length");
    assert_eq!(after[1] - before[1], 100, "truncated");
    assert_eq!(after[2] - before[2], 100, "bad_magic");
    assert_eq!(monitor.stop().unwrap(), 0);
    assert_eq!(lan.vip_holders(), vec![2]);
    for agent in &agents {
        assert!(agent.status().is_ok(), "every agent still answers");
    }
}

/// Writes `keys` (hex lines) into the LAN's key file, keeping its mode 0600.
fn write_keys(lan: &Lan, keys: &[&str]) {
    let text: String = keys.iter().flat_map(|k| [k, "\n"]).collect();
    std::fs::write(&lan.key_file, text).unwrap();
}

#[test]
fn a_new_key_rolls_out_with_sighup_and_no_flag_day() {
    let (lan, agents) = Lan::with_three_agents("rotate", 4);
    let old = std::fs::read_to_string(&lan.key_file).unwrap().trim().to_string();
    let new = "00112233445566778899aabbccddeeff";
    let monitor = VipMonitor::start(&lan, 3).unwrap();
    let reload_one_by_one = || {
        for agent in &agents {
            agent.signal(libc::SIGHUP);
            thread::sleep(Duration::from_millis(300));
        }
    };
    // 1: every node accepts the new key too; 2: one after the other they sign with it;
    // 3: the old key goes. At no step may a heartbeat be rejected.
    write_keys(&lan, &[&old, new]);
    reload_one_by_one();
    write_keys(&lan, &[new, &old]);
    reload_one_by_one();
    write_keys(&lan, &[new]);
    reload_one_by_one();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(monitor.stop().unwrap(), 0, "the rollout caused a transition");
    assert_eq!(lan.vip_holders(), vec![2]);
    for agent in &agents {
        let status = agent.status().unwrap();
        assert_eq!(status["auth"], "on (1 key)");
        let peers = status["peers"].as_array().unwrap();
        assert!(peers.len() == 2 && peers.iter().all(|p| p["live"] == true), "{status}");
    }
    // The old key is gone everywhere: its heartbeats are now forgeries.
    let before = counter(&agents[0], "bad_tag");
    write_keys(&lan, &[&old]);
    agents[2].signal(libc::SIGHUP);
    let start = Instant::now();
    while counter(&agents[0], "bad_tag") == before {
        assert!(start.elapsed() < Duration::from_secs(2), "old-key heartbeats must be rejected");
        thread::sleep(Duration::from_millis(20));
    }
}
