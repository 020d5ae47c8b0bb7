//! Health checks on a LAN: an HTTP check that fails moves the VIP within fall × interval plus a
//! heartbeat interval and, once it recovers, the VIP comes back without a lost ping; a check that
//! hangs is killed at its timeout without slowing a failover; a reload that changes only a
//! check's interval moves nothing.

use std::{
    fs,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use ha_tests::{require_root, wait_for, wait_until, Agent, Lan, Prober};

const HTTPSTUB: &str = env!("CARGO_BIN_EXE_httpstub");
const CLIENT: usize = 2;

/// A background process in a host's namespace, killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent's answer to `ctl COMMAND`, or its error.
fn ctl(agent: &Agent, command: &str) -> String {
    agent.ctl(&[command]).unwrap_or_else(|err| err)
}

#[test]
fn a_failing_http_check_moves_the_vip_and_its_recovery_brings_it_back_gap_free() {
    require_root();
    let lan = Lan::new("httpcheck", 3).unwrap();
    let host = &lan.hosts[1];
    host.ns.ip(&["link", "set", "lo", "up"]).unwrap();
    let healthy = lan.dir.join("healthy");
    fs::write(&healthy, "").unwrap();
    let stub =
        host.ns.command(HTTPSTUB).arg("127.0.0.1:8080").arg(&healthy).stderr(Stdio::null()).spawn().unwrap();
    let _stub = Background(stub);
    // 200 - 150 = 50 while the check is down: below the other node's 100.
    let config = lan.write_file(
        "http.toml",
        &format!(
            "vips = ['{}']\ntrack = ['web']\n[[check]]\nname = 'web'\nhttp = 'http://127.0.0.1:8080/health'\n\
             interval = '200ms'\nfall = 2\nrise = 2\nweight = -150\n",
            ha_tests::VIP_CIDR
        ),
    );
    let _low = lan.start_agent(0, 100, &[]).unwrap();
    let high = lan.start_agent(1, 200, &["--config", &config]).unwrap();
    wait_until(Duration::from_secs(5), "host 1 holding the VIP", || lan.vip_holders() == [1]);
    assert_eq!(high.report().unwrap()["checks"][0]["state"], "UP");

    fs::remove_file(&healthy).unwrap();
    let failed_at = Instant::now();
    wait_until(Duration::from_secs(3), "host 0 holding the VIP alone", || lan.vip_holders() == [0]);
    let moved = failed_at.elapsed();
    // fall × interval + one heartbeat interval, and 100 ms for this test's own polling of `ip`.
    assert!(moved < Duration::from_millis(2 * 200 + 100 + 100), "the VIP moved after {moved:?}");
    let status = high.status().unwrap();
    assert_eq!(
        (status["checks"][0]["state"].as_str(), status["priority"].as_u64()),
        (Some("DOWN"), Some(50)),
        "{status}"
    );
    assert!(status["checks"][0]["last_failure"].as_str().is_some_and(|why| why.contains("503")), "{status}");

    // Recovery: the more worthy node preempts back, and the client loses no ping.
    let prober = Prober::start(&lan, CLIENT).unwrap();
    thread::sleep(Duration::from_millis(200));
    fs::write(&healthy, "").unwrap();
    wait_until(Duration::from_secs(3), "host 1 holding the VIP alone again", || lan.vip_holders() == [1]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(prober.stop_counting_lost().unwrap(), 0, "the way back must lose no ping");
    assert_eq!(lan.neighbour_mac(CLIENT).as_deref(), Some(lan.hosts[1].mac.as_str()));
}

#[test]
fn a_check_that_hangs_is_killed_and_does_not_slow_a_failover() {
    require_root();
    let lan = Lan::new("checkhang", 3).unwrap();
    let marker = format!("31.{}", std::process::id());
    let config = lan.write_file(
        "hang.toml",
        &format!(
            "vips = ['{}']\ntrack = ['stuck']\n[[check]]\nname = 'stuck'\nexec = 'sleep {marker}'\n\
             interval = '500ms'\ntimeout = '300ms'\nweight = 10\n",
            ha_tests::VIP_CIDR
        ),
    );
    let mid = lan.start_agent(0, 150, &["--config", &config]).unwrap();
    let _high = lan.start_agent(1, 200, &[]).unwrap();
    wait_until(Duration::from_secs(5), "host 1 holding the VIP", || lan.vip_holders() == [1]);
    let hanging = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| {
                fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|cmd| cmd == format!("sleep\0{marker}\0").as_bytes())
            })
            .count()
    };
    // Every probe is killed at its timeout: there is never more than one at a time.
    for _ in 0..20 {
        assert!(hanging() <= 1, "probes pile up: {} running", hanging());
        thread::sleep(Duration::from_millis(50));
    }
    let status = mid.status().unwrap();
    let check = &status["checks"][0];
    assert_eq!(check["state"], "DOWN", "{status}");
    assert!(check["last_failure"].as_str().is_some_and(|why| why.contains("killed")), "{status}");
    lan.cut(1).unwrap();
    let took =
        wait_for(Duration::from_secs(2), "takeover by host 0", || lan.vip_holders().contains(&0)).unwrap();
    assert!(took < Duration::from_millis(800), "the takeover took {took:?}");
    assert!(lan.vip_answers_ping(CLIENT), "the client's ping to the VIP is not answered");
}

#[test]
fn a_reload_that_changes_only_a_check_interval_moves_nothing() {
    require_root();
    let lan = Lan::new("reloadcheck", 3).unwrap();
    let text = |interval: &str| {
        format!(
            "vips = ['{}']\ntrack = ['alive']\n[[check]]\nname = 'alive'\nexec = 'true'\ninterval = '{interval}'\nweight = -150\n",
            ha_tests::VIP_CIDR
        )
    };
    let config = lan.write_file("reload.toml", &text("1s"));
    let _low = lan.start_agent(0, 100, &["--config", &config]).unwrap();
    let high = lan.start_agent(1, 200, &["--config", &config]).unwrap();
    wait_until(Duration::from_secs(5), "host 1 holding the VIP", || lan.vip_holders() == [1]);
    let monitor = ha_tests::VipMonitor::start(&lan, 2).unwrap();
    let before = high.status().unwrap()["state_for_ms"].as_u64().unwrap();

    fs::write(&config, text("300ms")).unwrap();
    let answer = ctl(&high, "reload");
    assert!(answer.starts_with("reload: group 1 ACTIVE"), "{answer}");
    thread::sleep(Duration::from_secs(2));
    let status = high.status().unwrap();
    assert_eq!(status["checks"][0]["interval_ms"], 300, "the new interval is in force: {status}");
    assert_eq!(status["state"], "ACTIVE");
    assert!(status["state_for_ms"].as_u64().unwrap() > before, "no transition: {status}");
    assert_eq!(lan.vip_holders(), [1]);
    assert_eq!(monitor.stop().unwrap(), 0, "no VIP was added anywhere");

    // A reload that changes what cannot change live is refused whole, in one line.
    fs::write(&config, format!("port = 9999\n{}", text("300ms"))).unwrap();
    let refused = ctl(&high, "reload");
    assert!(refused.contains("port cannot change on a reload"), "{refused}");
    assert_eq!(refused.trim().lines().count(), 1, "{refused}");
    assert!(lan.vip_answers_ping(CLIENT));
}
