//! Several VIP groups in one agent, one XDP program: active/active, each group preferring
//! another node, asserted on the addresses each host holds and on the client's pings.

use std::{net::Ipv4Addr, time::Duration};

use ha_tests::{has_address, require_root, wait_until, Agent, Lan};

const CLIENT: usize = 2;
const VIP_ONE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP_TWO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);

/// Host `host`'s config file: one name for each, so that a reload reads what the test wrote last.
fn config_name(host: usize) -> String {
    format!("groups-h{}.toml", host + 1)
}

/// A config with groups 1 and 2, this node's priorities `one` and `two` in them.
fn config(lan: &Lan, host: usize, one: u8, two: u8) -> String {
    let text = format!(
        "[[group]]\nid = 1\nvips = ['{VIP_ONE}/24']\npriority = {one}\n\n\
         [[group]]\nid = 2\nvips = ['{VIP_TWO}/24']\npriority = {two}\n"
    );
    lan.write_file(&config_name(host), &text)
}

fn holders(lan: &Lan, vip: Ipv4Addr) -> Vec<usize> {
    (0..CLIENT).filter(|&i| has_address(&lan.hosts[i].ns, vip)).collect()
}

fn answers(lan: &Lan, vip: Ipv4Addr) -> bool {
    let args = ["-c", "2", "-i", "0.1", "-W", "1", &vip.to_string()];
    lan.hosts[CLIENT].ns.exec("ping", &args).is_ok_and(|out| out.status.success())
}

/// A LAN of three hosts where host 0 is ACTIVE in group 1 and host 1 in group 2, each the other's
/// STANDBY (host 2 is the client): the LAN and the two agents, once both VIPs are held so.
fn active_active(name: &str) -> (Lan, Agent, Agent) {
    require_root();
    let lan = Lan::new(name, 3).unwrap();
    let first = config(&lan, 0, 200, 100);
    let second = config(&lan, 1, 100, 200);
    let zero = lan.start_agent(0, 100, &["--config", &first]).unwrap();
    let one = lan.start_agent(1, 100, &["--config", &second]).unwrap();
    wait_until(Duration::from_secs(5), "host 0 holding group 1, host 1 group 2", || {
        holders(&lan, VIP_ONE) == [0] && holders(&lan, VIP_TWO) == [1]
    });
    (lan, zero, one)
}

#[test]
fn two_groups_run_active_active_and_fail_over_each_on_its_own() {
    let (lan, mut zero, _one) = active_active("actact");
    assert!(answers(&lan, VIP_ONE) && answers(&lan, VIP_TWO), "the client reaches both VIPs");
    let report = zero.report().unwrap();
    let states: Vec<&str> =
        report["groups"].as_array().unwrap().iter().map(|g| g["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["ACTIVE", "STANDBY"], "{report}");
    // One XDP program serves both groups: every heartbeat of either is accepted, none refused.
    let stats = &report["xdp_stats"];
    let count =
        |name: &str| stats.as_array().unwrap().iter().find(|c| c[0] == name).unwrap()[1].as_u64().unwrap();
    assert!(count("accepted") > 0 && count("wrong_group") == 0, "{stats}");

    // Host 0 stops: group 1 moves to host 1, group 2 stays where it is.
    zero.signal(libc::SIGTERM);
    assert_eq!(zero.wait_exit(Duration::from_secs(5)).unwrap(), Some(0));
    wait_until(Duration::from_secs(2), "host 1 holding both groups", || {
        holders(&lan, VIP_ONE) == [1] && holders(&lan, VIP_TWO) == [1]
    });
    assert!(answers(&lan, VIP_ONE) && answers(&lan, VIP_TWO), "the client reaches both VIPs on host 1");
}

/// Host 0's config reduced to one group with priority `priority` in it.
fn one_group(lan: &Lan, id: u8, vip: Ipv4Addr, priority: u8) -> String {
    let text = format!("[[group]]\nid = {id}\nvips = ['{vip}/24']\npriority = {priority}\n");
    lan.write_file(&config_name(0), &text)
}

#[test]
fn a_reload_that_drops_a_group_hands_it_over_and_serves_the_rest() {
    let (lan, zero, mut one) = active_active("dropgroup");

    // Group 1, where host 0 is ACTIVE, leaves its config: it releases the VIP, and host 1 takes
    // it over at once rather than after a dead time.
    one_group(&lan, 2, VIP_TWO, 100);
    let answer = zero.ctl(&["reload"]).unwrap_or_else(|err| panic!("ctl reload: {err}"));
    assert!(answer.starts_with("reload: group 2 STANDBY"), "{answer}");
    wait_until(Duration::from_secs(1), "host 1 holding both groups", || {
        holders(&lan, VIP_ONE) == [1] && holders(&lan, VIP_TWO) == [1]
    });
    assert!(answers(&lan, VIP_ONE), "the client reaches group 1's VIP on host 1");

    // Group 2, where host 0 is the STANDBY that watches host 1, leaves it too: host 0 serves
    // group 1 alone, and when host 1 stops it takes group 1 and nothing of group 2.
    one_group(&lan, 1, VIP_ONE, 50);
    let answer = zero.ctl(&["reload"]).unwrap_or_else(|err| panic!("ctl reload: {err}"));
    assert!(answer.starts_with("reload: group 1 STANDBY"), "{answer}");
    one.signal(libc::SIGTERM);
    assert_eq!(one.wait_exit(Duration::from_secs(5)).unwrap(), Some(0));
    wait_until(Duration::from_secs(2), "host 0 holding group 1 alone", || holders(&lan, VIP_ONE) == [0]);
    assert_eq!(holders(&lan, VIP_TWO), Vec::<usize>::new(), "group 2 is no longer host 0's");
    let report = zero.report().unwrap();
    let ids: Vec<u64> =
        report["groups"].as_array().unwrap().iter().map(|g| g["group"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1], "{report}");
    assert!(answers(&lan, VIP_ONE), "the client reaches group 1's VIP on host 0");
}
