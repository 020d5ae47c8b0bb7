//! Notify hooks on a LAN: they run in transition order even under a storm of transitions, and a
//! hook that hangs is killed at its timeout without slowing a failover.

use std::{fs, thread, time::Duration};

use ha_tests::{require_root, wait_for, wait_until, Lan};

#[test]
fn hooks_run_in_transition_order_under_a_storm() {
    require_root();
    let lan = Lan::new("hookorder", 2).unwrap();
    let record = lan.dir.join("transitions");
    // A slow hook, so that transitions queue up behind it.
    let hook = format!("sleep 0.05; echo \"$HA_OLD_STATE>$HA_NEW_STATE\" >> {}", record.display());
    let _low = lan.start_agent(0, 100, &[]).unwrap();
    let mut high = lan.start_agent(1, 200, &["--notify", &hook]).unwrap();
    wait_until(Duration::from_secs(5), "host 1 holding the VIP", || lan.vip_holders() == [1]);
    // The storm: the link flaps faster than the hooks run.
    for _ in 0..6 {
        lan.cut(1).unwrap();
        thread::sleep(Duration::from_millis(60));
        lan.heal(1).unwrap();
        thread::sleep(Duration::from_millis(60));
    }
    wait_until(Duration::from_secs(5), "host 1 holding the VIP again", || lan.vip_holders() == [1]);
    high.signal(libc::SIGTERM);
    assert_eq!(high.wait_exit(Duration::from_secs(10)).unwrap(), Some(0));

    let text = fs::read_to_string(&record).unwrap();
    let transitions: Vec<(&str, &str)> = text.lines().filter_map(|line| line.split_once('>')).collect();
    assert!(transitions.len() >= 8, "a storm of transitions: {text}");
    assert_eq!(transitions[0], ("STANDBY", "ACTIVE"), "{text}");
    assert_eq!(transitions.last().map(|t| t.1), Some("STOPPED"), "{text}");
    for pair in transitions.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "out of order: {text}");
    }
    assert!(text.contains(">FAULT"), "the cuts are FAULTs: {text}");
}

#[test]
fn a_hook_that_hangs_is_killed_and_does_not_slow_a_failover() {
    require_root();
    let lan = Lan::new("hookhang", 3).unwrap();
    // A unique duration to find the hook's process by.
    let marker = format!("30.{}", std::process::id());
    let hang = format!("sleep {marker}");
    let _mid = lan.start_agent(0, 150, &["--notify-active", &hang, "--hook-timeout", "1s"]).unwrap();
    let _high = lan.start_agent(1, 200, &[]).unwrap();
    wait_until(Duration::from_secs(5), "host 1 holding the VIP", || lan.vip_holders() == [1]);
    lan.cut(1).unwrap();
    // Host 0's ACTIVE hook hangs; the takeover does not wait for it.
    let took =
        wait_for(Duration::from_secs(2), "takeover by host 0", || lan.vip_holders().contains(&0)).unwrap();
    assert!(took < Duration::from_millis(800), "the takeover took {took:?}");
    let hanging = || {
        fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|entry| {
            // `sleep MARKER` itself (the agent's own command line names the hook too).
            fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmd| cmd == format!("sleep\0{marker}\0").as_bytes())
        })
    };
    wait_until(Duration::from_secs(1), "the hook running", hanging);
    wait_until(Duration::from_secs(3), "the hook killed at its 1 s timeout", || !hanging());
    assert!(lan.vip_answers_ping(2), "the client's ping to the VIP is not answered");
}
