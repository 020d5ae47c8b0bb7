//! The XDP program through BPF_PROG_TEST_RUN with crafted frames: verdicts, the peer map, the
//! counters and the event ring buffer. Loads the object embedded in ha-agent; attaches nowhere.

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions};
use ha_agent::bpf::Datapath;
use ha_common::{
    change, sip_key, AuthKeys, Heartbeat, NodeState, PeerEvent, PeerKey, SipKey, XdpConfig, XdpStats,
    HEARTBEAT_LEN,
};
use ha_tests::{
    frames::{
        arp_request, ethernet, ipv4_frame, ipv4_udp_to, ipv6_frame, ipv6_to, neighbour_solicitation, udp,
        SRC_MAC,
    },
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const PORT: u16 = 9740;
const GROUP: u32 = 7;
const OWN_ID: u32 = 0x99;

const KEY: [u8; 16] = [0x11; 16];
const NEXT_KEY: [u8; 16] = [0x22; 16];

fn heartbeat(node_id: u32, priority: u8, state: NodeState) -> Heartbeat {
    Heartbeat {
        state,
        priority,
        flags: 0,
        group: GROUP,
        node_id,
        interval_ms: 100,
        target: 0,
        sequence: 1,
        tag: 0,
    }
}

/// `hb` with sequence `sequence`, signed with `key`.
fn signed(hb: Heartbeat, sequence: u64, key: &[u8; 16]) -> [u8; HEARTBEAT_LEN] {
    let key: SipKey = sip_key(key);
    Heartbeat { sequence, ..hb }.encode_signed(Some(&key))
}

fn keys(next: bool) -> AuthKeys {
    AuthKeys {
        current: sip_key(&KEY),
        next: if next { sip_key(&NEXT_KEY) } else { [0, 0] },
        count: if next { 2 } else { 1 },
        _pad0: 0,
    }
}

fn load_with(keys: AuthKeys) -> Datapath {
    require_root();
    let mut datapath =
        Datapath::load(&XdpConfig { port: PORT, own_node_id: OWN_ID, ..Default::default() }, &keys)
            .expect("the XDP object loads and passes the verifier");
    datapath.set_groups(&[GROUP]).expect("the group is set");
    datapath
}

fn load() -> Datapath {
    load_with(keys(false))
}

fn verdict(datapath: &Datapath, frame: &[u8]) -> u32 {
    let options = TestRunOptions { data_in: Some(frame), ..Default::default() };
    datapath.program().test_run(options).expect("BPF_PROG_TEST_RUN").return_value
}

fn stats(datapath: &Datapath) -> XdpStats {
    datapath.stats().unwrap()
}

#[test]
fn a_table_of_many_peers_reads_back_whole() {
    // Hundreds of peers, as 256 groups of 8 nodes give, read back through the agent's mapping
    // of the table: every one comes back, once, by its own key. (Node ids above OWN_ID's.)
    let datapath = load();
    let nodes = 1000..1700u32;
    for node_id in nodes.clone() {
        let frame = ipv4_frame(PORT, &signed(heartbeat(node_id, 100, NodeState::Standby), 1, &KEY), None);
        assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    }
    let mut read: Vec<u32> = datapath.peers().unwrap().iter().map(|(key, _)| key.node_id).collect();
    read.sort_unstable();
    assert_eq!(read, nodes.collect::<Vec<_>>());
}

#[test]
fn valid_ipv4_heartbeat_is_recorded_and_dropped() {
    let datapath = load();
    let frame = ipv4_frame(PORT, &signed(heartbeat(5, 150, NodeState::Active), 1, &KEY), None);
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    let peers = datapath.peers().unwrap();
    assert_eq!(peers.len(), 1);
    let (key, record) = peers[0];
    assert_eq!(key, PeerKey { group: GROUP, node_id: 5 });
    assert_eq!((record.priority, record.state, record.family), (150, NodeState::Active as u8, 4));
    assert_eq!(&record.src_addr[..4], &[192, 0, 2, 11]);
    assert_eq!(record.src_mac, SRC_MAC);
    assert_eq!((record.interval_ms, record.sequence, record.packets, record.vlan_id), (100, 1, 1, 0));
    assert!(record.last_seen_ns > 0);
    assert_eq!(stats(&datapath).accepted, 1);

    let next = ipv4_frame(PORT, &signed(heartbeat(5, 150, NodeState::Active), 2, &KEY), None);
    assert_eq!(verdict(&datapath, &next), XDP_DROP);
    assert_eq!(datapath.peers().unwrap()[0].1.packets, 2);
}

#[test]
fn valid_ipv6_heartbeat_is_recorded_and_dropped() {
    let datapath = load();
    let frame = ipv6_frame(PORT, &signed(heartbeat(6, 100, NodeState::Standby), 1, &KEY));
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    let (_, record) = datapath.peers().unwrap()[0];
    assert_eq!(record.family, 6);
    assert_eq!(record.src_addr, "2001:db8::11".parse::<std::net::Ipv6Addr>().unwrap().octets());
}

#[test]
fn vlan_tagged_heartbeat_is_recorded_with_its_vlan() {
    let datapath = load();
    let frame = ipv4_frame(PORT, &signed(heartbeat(8, 100, NodeState::Standby), 1, &KEY), Some(42));
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    assert_eq!(datapath.peers().unwrap()[0].1.vlan_id, 42);
}

#[test]
fn rejected_frames_are_counted_and_dropped_unrecorded() {
    type Counter = fn(&XdpStats) -> u64;
    let datapath = load();
    let good = signed(heartbeat(9, 100, NodeState::Standby), 1, &KEY);
    let mut bad_magic = good;
    bad_magic[0] = b'X';
    let mut bad_version = good;
    bad_version[4] = 9;
    let mut bad_state = good;
    bad_state[5] = 7;
    let other_group = Heartbeat { group: GROUP + 1, ..heartbeat(9, 100, NodeState::Standby) };
    let own = signed(heartbeat(OWN_ID, 100, NodeState::Standby), 1, &KEY);
    let forged = signed(heartbeat(9, 255, NodeState::Active), 1, &[0x99; 16]);
    let unsigned = heartbeat(9, 255, NodeState::Active).encode();
    let full = ipv4_frame(PORT, &good, None);
    let mut arp = ethernet(0x0806, None);
    arp.extend_from_slice(&[0; 28]);

    let passed: Vec<(&str, Vec<u8>)> =
        vec![("wrong port", ipv4_frame(PORT + 1, &good, None)), ("not IP", arp)];
    for (name, frame) in passed {
        let before = stats(&datapath).passed;
        assert_eq!(verdict(&datapath, &frame), XDP_PASS, "{name} must pass untouched");
        assert_eq!(stats(&datapath).passed, before + 1, "{name} must be counted");
    }
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        ("forged tag", ipv4_frame(PORT, &forged, None), |s| s.bad_tag),
        ("no tag", ipv4_frame(PORT, &unsigned, None), |s| s.bad_tag),
        ("bad magic", ipv4_frame(PORT, &bad_magic, None), |s| s.bad_magic),
        ("bad version", ipv4_frame(PORT, &bad_version, None), |s| s.bad_version),
        ("undefined state", ipv4_frame(PORT, &bad_state, None), |s| s.bad_field),
        ("short payload", ipv4_frame(PORT, &good[..30], None), |s| s.bad_length),
        ("oversized payload", ipv4_frame(PORT, &[0u8; 200], None), |s| s.bad_length),
        ("truncated frame", full[..full.len() - 10].to_vec(), |s| s.truncated),
        ("other group", ipv4_frame(PORT, &signed(other_group, 1, &KEY), None), |s| s.wrong_group),
        ("own node id", ipv4_frame(PORT, &own, None), |s| s.own_echo),
    ];
    for (name, frame, counter) in cases {
        let before = counter(&stats(&datapath));
        assert_eq!(verdict(&datapath, &frame), XDP_DROP, "{name} must be dropped at XDP");
        assert_eq!(counter(&stats(&datapath)), before + 1, "{name} must be counted");
        assert!(datapath.peers().unwrap().is_empty(), "{name} must not be recorded");
    }
    assert_eq!(stats(&datapath).accepted, 0);
}

#[test]
fn events_only_for_changes_that_need_a_reaction() {
    let mut datapath = load();
    let mut events = datapath.take_events().unwrap();
    let mut next_event =
        // SAFETY: the program writes whole PeerEvents; read_unaligned copes with any offset.
        || events.next().map(|item| unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PeerEvent>()) });
    let frame = |priority, state, sequence| {
        ipv4_frame(PORT, &signed(heartbeat(3, priority, state), sequence, &KEY), None)
    };

    assert_eq!(verdict(&datapath, &frame(100, NodeState::Standby, 1)), XDP_DROP);
    let event = next_event().expect("a new peer raises an event");
    assert_eq!((event.node_id, event.changes), (3, change::NEW_PEER));
    assert!(next_event().is_none());

    assert_eq!(verdict(&datapath, &frame(100, NodeState::Standby, 2)), XDP_DROP);
    assert!(next_event().is_none(), "an unchanged heartbeat raises no event");

    assert_eq!(verdict(&datapath, &frame(100, NodeState::Active, 3)), XDP_DROP);
    assert_eq!(next_event().map(|e| e.changes), Some(change::STATE));

    assert_eq!(verdict(&datapath, &frame(0, NodeState::Active, 4)), XDP_DROP);
    let event = next_event().unwrap();
    assert_eq!((event.changes, event.priority), (change::PRIORITY, 0));
}

#[test]
fn a_silence_watch_wakes_the_agent_once_the_watched_peer_goes_quiet() {
    let mut datapath = load();
    let mut events = datapath.take_events().unwrap();
    let mut silent_events = || {
        let mut silent = Vec::new();
        while let Some(item) = events.next() {
            // SAFETY: the program writes whole PeerEvents; read_unaligned copes with any offset.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PeerEvent>()) };
            if event.changes & change::SILENT != 0 {
                silent.push((event.group, event.node_id));
            }
        }
        silent
    };
    // Heartbeats at a 100 ms interval: the watch counts 130 ms of silence.
    let frame =
        |sequence| ipv4_frame(PORT, &signed(heartbeat(3, 200, NodeState::Active), sequence, &KEY), None);
    assert!(!datapath.watch_silence(GROUP, 3, 1300).unwrap(), "a peer without a record cannot be watched");

    assert_eq!(verdict(&datapath, &frame(1)), XDP_DROP);
    assert!(datapath.watch_silence(GROUP, 3, 1300).unwrap(), "a recorded peer can be watched");
    for sequence in 2..10 {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(verdict(&datapath, &frame(sequence)), XDP_DROP);
    }
    assert_eq!(silent_events(), [], "a peer heard every half interval is never silent");

    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(silent_events(), [(GROUP, 3)], "a quiet peer's silence wakes the agent, once");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(silent_events(), [], "the watch stops after it fired");

    assert_eq!(verdict(&datapath, &frame(10)), XDP_DROP);
    assert!(datapath.watch_silence(GROUP, 3, 1300).unwrap());
    assert!(datapath.watch_silence(GROUP, 0, 0).unwrap(), "a watch can be stopped");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(silent_events(), [], "a stopped watch stays quiet");
}

#[test]
fn replays_and_duplicates_change_nothing() {
    let datapath = load();
    let hb = heartbeat(4, 100, NodeState::Active);
    assert_eq!(verdict(&datapath, &ipv4_frame(PORT, &signed(hb, 10, &KEY), None)), XDP_DROP);
    let recorded = datapath.peers().unwrap()[0].1;
    for (name, sequence) in [("duplicate", 10), ("older", 9), ("much older", 1)] {
        let replayed = Heartbeat { priority: 50, ..hb };
        assert_eq!(verdict(&datapath, &ipv4_frame(PORT, &signed(replayed, sequence, &KEY), None)), XDP_DROP);
        assert_eq!(datapath.peers().unwrap()[0].1, recorded, "a {name} heartbeat must not touch the record");
    }
    assert_eq!(stats(&datapath).replay, 3);
    assert_eq!(verdict(&datapath, &ipv4_frame(PORT, &signed(hb, 11, &KEY), None)), XDP_DROP);
    assert_eq!(datapath.peers().unwrap()[0].1.sequence, 11);
}

#[test]
fn peers_that_share_a_hint_are_each_recorded_as_themselves() {
    // Two peers whose keys land on one PEER_HINTS entry take turns: each heartbeat finds the
    // hint the other one left, which names the other's record, and must still be recorded in
    // its sender's own record (through PEER_SLOTS), never in the other's.
    let datapath = load();
    let first = PeerKey { group: GROUP, node_id: 1 };
    let second = (2..100_000u32)
        .map(|node_id| PeerKey { group: GROUP, node_id })
        .find(|key| key.hint_index() == first.hint_index())
        .expect("a node id sharing the first one's hint");
    let send = |key: PeerKey, priority, sequence| {
        let hb = heartbeat(key.node_id, priority, NodeState::Standby);
        assert_eq!(verdict(&datapath, &ipv4_frame(PORT, &signed(hb, sequence, &KEY), None)), XDP_DROP);
    };
    for round in 1..=3 {
        send(first, 110, round);
        send(second, 120, 2 * round - 1);
        // And the same peer twice in a row: the second time it finds its own hint.
        send(second, 120, 2 * round);
    }
    let record = |key| datapath.peer(key).unwrap().expect("the peer is recorded");
    let (first, second) = (record(first), record(second));
    assert_eq!((first.sequence, first.packets, first.priority), (3, 3, 110));
    assert_eq!((second.sequence, second.packets, second.priority), (6, 6, 120));
    assert_eq!(datapath.peers().unwrap().len(), 2);
    assert_eq!(stats(&datapath).accepted, 9);
}

#[test]
fn a_known_peer_follows_its_group_across_reloads_that_free_and_reuse_its_entry() {
    const OTHER: u32 = 8;
    let mut datapath = active_datapath(Duration::from_millis(10));
    let from_5 =
        |sequence| ipv4_frame(PORT, &signed(heartbeat(5, 100, NodeState::Standby), sequence, &KEY), None);
    assert_eq!(verdict(&datapath, &from_5(1)), XDP_DROP);
    // A reload drops GROUP and adds OTHER, which takes the entry peer 5's slot points at.
    datapath.set_groups(&[OTHER]).unwrap();
    assert_eq!(verdict(&datapath, &from_5(2)), XDP_DROP);
    assert_eq!((stats(&datapath).wrong_group, stats(&datapath).accepted), (1, 1), "GROUP is not served");
    // GROUP is back, at another entry: found through GROUPS, and the slot put right.
    datapath.set_groups(&[OTHER, GROUP]).unwrap();
    datapath.set_state(GROUP, NodeState::Active).unwrap();
    datapath.set_state(OTHER, NodeState::Standby).unwrap();
    assert_eq!(verdict(&datapath, &from_5(3)), XDP_DROP);
    assert_eq!(verdict(&datapath, &from_5(4)), XDP_DROP);
    assert_eq!((stats(&datapath).wrong_group, stats(&datapath).accepted), (1, 3));
    assert_eq!(datapath.peer(PeerKey { group: GROUP, node_id: 5 }).unwrap().unwrap().sequence, 4);
    // And a probe in GROUP is answered (the agent said what this node is there).
    let frame = ipv4_udp_to(std::net::Ipv4Addr::new(192, 0, 2, 13), PORT, &probe(5, OWN_ID, 5), None);
    let (action, out) = run_out(&datapath, &frame);
    assert_eq!(action, XDP_TX);
    assert_eq!(out[42..], ha_common::answer_payload(&probe(5, OWN_ID, 5), Some(&sip_key(&KEY))));
}

#[test]
fn the_next_key_is_accepted_during_a_rollout() {
    let frame = ipv4_frame(PORT, &signed(heartbeat(6, 100, NodeState::Standby), 1, &NEXT_KEY), None);
    let before = load();
    assert_eq!(verdict(&before, &frame), XDP_DROP);
    assert!(before.peers().unwrap().is_empty(), "the next key is not accepted before it is configured");
    assert_eq!(stats(&before).bad_tag, 1);
    let during = load_with(keys(true));
    assert_eq!(verdict(&during, &frame), XDP_DROP);
    assert_eq!(during.peers().unwrap().len(), 1);
}

#[test]
fn without_keys_every_tag_is_accepted() {
    let datapath = load_with(AuthKeys::default());
    let frame = ipv4_frame(PORT, &heartbeat(6, 100, NodeState::Standby).encode(), None);
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    assert_eq!(datapath.peers().unwrap().len(), 1);
}

#[test]
fn a_stale_lease_fences_the_vips_and_nothing_else() {
    use std::net::Ipv6Addr;

    let mut datapath = load();
    // The two VIPs the frames name, among hundreds (many groups on one node).
    let many = (1..=254)
        .map(|n| format!("198.51.100.{n}/24"))
        .chain((1..=300).map(|n| format!("2001:db8:1::{n:x}/64")));
    let vips: Vec<ha_agent::vip::Vip> = ["192.0.2.100/24".to_string(), "2001:db8::100/64".to_string()]
        .into_iter()
        .chain(many)
        .map(|v| v.parse().unwrap())
        .collect();
    let (vip4, vip6) = ("192.0.2.100".parse().unwrap(), "2001:db8::100".parse::<Ipv6Addr>().unwrap());
    let (other4, other6) = ("192.0.2.7".parse().unwrap(), "2001:db8::7".parse::<Ipv6Addr>().unwrap());
    let lease = Duration::from_millis(350);
    let about_vips = [
        ("ARP request for the VIP", arp_request(vip4), true),
        ("IPv4 to the VIP", ipv4_udp_to(vip4, 80, b"GET", None), false),
        ("neighbour solicitation for the VIP", neighbour_solicitation(vip6), true),
        ("IPv6 to the VIP", ipv6_to(vip6, 17, &udp(80, b"GET")), false),
    ];
    let not_about_vips = [
        ("ARP request for another address", arp_request(other4)),
        ("IPv4 to another address", ipv4_udp_to(other4, 80, b"GET", None)),
        ("neighbour solicitation for another address", neighbour_solicitation(other6)),
        ("IPv6 to another address", ipv6_to(other6, 17, &udp(80, b"GET"))),
    ];
    let now = ha_agent::clock::monotonic_now();

    // A fresh lease: everything passes.
    datapath.set_fence(ha_agent::bpf::fence(lease, lease, false), &vips, now).unwrap();
    for (name, frame, _) in &about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_PASS, "{name} with a fresh lease");
    }
    assert_eq!(stats(&datapath).fenced, 0);

    // The lease ran out: what is about a VIP is dropped and counted; the rest passes.
    let stale = now.checked_sub(Duration::from_secs(1)).unwrap();
    datapath.set_fence(ha_agent::bpf::fence(lease, lease, false), &vips, stale).unwrap();
    for (name, frame, _) in &about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_DROP, "{name} with a stale lease");
    }
    for (name, frame) in &not_about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_PASS, "{name} with a stale lease");
    }
    assert_eq!(stats(&datapath).fenced, 4);

    // Keeping flows: only address resolution for the VIPs is dropped.
    datapath.set_fence(ha_agent::bpf::fence(lease, lease, true), &vips, stale).unwrap();
    for (name, frame, resolution) in &about_vips {
        let expected = if *resolution { XDP_DROP } else { XDP_PASS };
        assert_eq!(verdict(&datapath, frame), expected, "{name} with a stale lease, keeping flows");
    }

    // A reload without the IPv4 VIP: the fence no longer guards it.
    let fewer = &vips[1..];
    datapath.set_fence(ha_agent::bpf::fence(lease, lease, false), fewer, stale).unwrap();
    assert_eq!(verdict(&datapath, &about_vips[0].1), XDP_PASS, "ARP for a VIP no longer served");
    assert_eq!(
        verdict(&datapath, &about_vips[2].1),
        XDP_DROP,
        "neighbour solicitation for a VIP still served"
    );

    // Disarmed (the node holds no VIPs), a lease that ran out fences nothing; armed again, it does.
    datapath.keep_fence(false, stale).unwrap();
    assert_eq!(verdict(&datapath, &about_vips[2].1), XDP_PASS, "a disarmed fence drops nothing");
    datapath.keep_fence(true, stale).unwrap();
    assert_eq!(verdict(&datapath, &about_vips[2].1), XDP_DROP, "armed again with a stale lease");

    // Renewing the lease lifts the fence at once.
    datapath.keep_fence(true, ha_agent::clock::monotonic_now()).unwrap();
    assert_eq!(verdict(&datapath, &about_vips[0].1), XDP_PASS);
}

#[test]
fn our_own_id_is_another_node_only_above_what_we_sent() {
    let mut datapath = load();
    datapath.note_sending(ha_agent::clock::monotonic_now(), 5).unwrap();
    let own =
        |sequence| ipv4_frame(PORT, &signed(heartbeat(OWN_ID, 100, NodeState::Active), sequence, &KEY), None);
    assert_eq!(verdict(&datapath, &own(3)), XDP_DROP);
    assert_eq!((stats(&datapath).replay, stats(&datapath).own_echo), (1, 0), "ours, replayed or reflected");
    assert_eq!(verdict(&datapath, &own(6)), XDP_DROP);
    assert_eq!((stats(&datapath).replay, stats(&datapath).own_echo), (1, 1), "another node with our id");
}

const XDP_TX: u32 = 3;

/// A probe from node `from` to node `target`, signed.
fn probe(from: u32, target: u32, sequence: u64) -> [u8; HEARTBEAT_LEN] {
    let hb = Heartbeat { flags: ha_common::FLAG_PROBE, target, ..heartbeat(from, 100, NodeState::Standby) };
    signed(hb, sequence, &KEY)
}

/// The datapath of a node that is ACTIVE in GROUP, its loop last turned `ago`.
fn active_datapath(ago: Duration) -> Datapath {
    let mut datapath = load();
    datapath.set_state(GROUP, NodeState::Active).unwrap();
    let fence = ha_agent::bpf::fence(Duration::from_millis(350), Duration::from_millis(115), false);
    datapath.set_fence(fence, &[], ha_agent::clock::monotonic_now().saturating_sub(ago)).unwrap();
    datapath
}

/// Runs `frame`; returns the verdict and the frame as the program left it.
fn run_out(datapath: &Datapath, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 64];
    let options = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() };
    let result = datapath.program().test_run(options).expect("BPF_PROG_TEST_RUN");
    out.truncate(frame.len());
    (result.return_value, out)
}

/// Whether the IPv6 frame's UDP checksum (over the pseudo-header) is right.
fn udp6_checksum_ok(frame: &[u8]) -> bool {
    ha_common::udp6_sum(&frame[14..]) == 0xffff
}

/// Gives an IPv6/UDP frame a valid UDP checksum.
fn with_udp6_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    frame[60..62].copy_from_slice(&[0, 0]);
    let checksum = ha_common::udp6_checksum(&frame[14..]);
    frame[60..62].copy_from_slice(&checksum.to_be_bytes());
    frame
}

#[test]
fn a_probe_is_answered_in_xdp_signed_and_sent_back() {
    let datapath = active_datapath(Duration::from_millis(10));
    let frame = ipv4_udp_to(std::net::Ipv4Addr::new(192, 0, 2, 13), PORT, &probe(5, OWN_ID, 7), None);
    let (action, out) = run_out(&datapath, &frame);
    assert_eq!(action, XDP_TX);
    // Back to the prober: its MAC and address are now the destination, both ports the heartbeat port.
    assert_eq!((&out[0..6], &out[6..12]), (&SRC_MAC[..], &frame[0..6]));
    assert_eq!((&out[26..30], &out[30..34]), (&[192, 0, 2, 13][..], &[192, 0, 2, 11][..]));
    assert_eq!((&out[34..36], &out[36..38]), (&PORT.to_be_bytes()[..], &PORT.to_be_bytes()[..]));
    let payload: [u8; HEARTBEAT_LEN] = out[42..].try_into().unwrap();
    let answer = Heartbeat::decode(&payload).unwrap();
    assert_eq!(answer.flags, ha_common::FLAG_PROBE_ANSWER);
    assert_eq!(
        (answer.group, answer.node_id, answer.target, answer.sequence),
        (GROUP, 5, OWN_ID, 7),
        "it echoes the probe"
    );
    assert_eq!(
        payload,
        ha_common::answer_payload(&probe(5, OWN_ID, 7), Some(&sip_key(&KEY))),
        "the answer, signed with the current key"
    );
    assert!(ha_common::verify_answer(&keys(false), &ha_common::answered_probe(&payload), answer.tag));
    assert!(!ha_common::verify_tag(&keys(true), &payload, answer.tag), "an answer's tag is no heartbeat's");
    let counters = stats(&datapath);
    assert_eq!((counters.probes_answered, counters.accepted), (1, 1));
    assert!(
        datapath.peers().unwrap().iter().any(|(key, _)| key.node_id == 5),
        "the probe is the prober's heartbeat"
    );

    // The same probe again is a replay, a forged one fails the tag: neither is answered.
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    let forged = ipv4_frame(
        PORT,
        &signed(
            Heartbeat {
                flags: ha_common::FLAG_PROBE,
                target: OWN_ID,
                ..heartbeat(5, 100, NodeState::Standby)
            },
            8,
            &NEXT_KEY,
        ),
        None,
    );
    assert_eq!(verdict(&datapath, &forged), XDP_DROP);
    let counters = stats(&datapath);
    assert_eq!((counters.probes_answered, counters.replay, counters.bad_tag), (1, 1, 1));
    // A probe for another node is an ordinary heartbeat of its sender.
    assert_eq!(verdict(&datapath, &ipv4_frame(PORT, &probe(5, 0x77, 9), None)), XDP_DROP);
}

#[test]
fn an_ipv6_answer_carries_a_valid_udp_checksum() {
    let datapath = active_datapath(Duration::from_millis(10));
    let frame =
        with_udp6_checksum(ipv6_to("2001:db8::13".parse().unwrap(), 17, &udp(PORT, &probe(5, OWN_ID, 3))));
    assert!(udp6_checksum_ok(&frame), "the test's own frame");
    let (action, out) = run_out(&datapath, &frame);
    assert_eq!(action, XDP_TX);
    assert_eq!(
        &out[38..54],
        &"2001:db8::11".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        "back to the prober"
    );
    assert_eq!(&out[22..38], &frame[38..54], "from the address it was sent to");
    assert_eq!((&out[0..6], &out[6..12]), (&frame[6..12], &frame[0..6]), "the MACs swapped");
    assert!(udp6_checksum_ok(&out), "the answer's checksum");
}

#[test]
fn a_node_whose_loop_stopped_does_not_answer() {
    // The loop last turned 200 ms ago: more than the 115 ms answer window.
    let datapath = active_datapath(Duration::from_millis(200));
    let frame = ipv4_frame(PORT, &probe(5, OWN_ID, 7), None);
    assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    assert_eq!((stats(&datapath).probes_answered, stats(&datapath).accepted), (0, 1));
}

#[test]
fn an_answer_to_our_burst_is_recorded_and_nothing_else_is() {
    let mut datapath = load();
    let burst =
        ha_common::ProbeState { first_sequence: 10, last_sequence: 14, answered_ns: 0, target: 5, _pad0: 0 };
    datapath.set_probe(GROUP, burst).unwrap();
    // The answer `answered` sends to the probe `prober` sent it, signed with `key`.
    let answer = |prober: u32, answered: u32, sequence: u64, key: &[u8; 16]| {
        let probe = Heartbeat {
            flags: ha_common::FLAG_PROBE,
            target: answered,
            sequence,
            ..heartbeat(prober, 100, NodeState::Standby)
        };
        ipv4_frame(PORT, &ha_common::answer_payload(&probe.encode(), Some(&sip_key(key))), None)
    };
    // Signed as a heartbeat is rather than as an answer: an answer's form with a heartbeat's tag.
    let heartbeat_tagged = Heartbeat {
        flags: ha_common::FLAG_PROBE_ANSWER,
        target: 5,
        ..heartbeat(OWN_ID, 100, NodeState::Standby)
    };
    // Older than the burst, from another node, to another node's probe, forged, a heartbeat's
    // tag: not recorded.
    for frame in [
        answer(OWN_ID, 5, 9, &KEY),
        answer(OWN_ID, 6, 12, &KEY),
        answer(0x77, 5, 12, &KEY),
        answer(OWN_ID, 5, 12, &NEXT_KEY),
        ipv4_frame(PORT, &signed(heartbeat_tagged, 12, &KEY), None),
    ] {
        assert_eq!(verdict(&datapath, &frame), XDP_DROP);
    }
    assert_eq!(datapath.probe(GROUP).unwrap().unwrap().answered_ns, 0);
    assert_eq!(verdict(&datapath, &answer(OWN_ID, 5, 12, &KEY)), XDP_DROP);
    assert!(datapath.probe(GROUP).unwrap().unwrap().answered_ns > 0);
    let counters = stats(&datapath);
    assert_eq!((counters.probe_answers, counters.replay, counters.bad_tag, counters.accepted), (1, 3, 2, 0));
    assert!(datapath.peers().unwrap().is_empty(), "an answer is not a heartbeat of its sender");
}

#[test]
fn a_restarting_agent_vouches_for_both_programs_until_its_first_heartbeat() {
    // The predecessor's program and the new one: neither agent has sent a heartbeat for 200 ms,
    // more than the 115 ms answer window, so neither would answer a probe by itself.
    let pins =
        ha_tests::BpfFs::mount(&std::env::temp_dir().join(format!("ha-test-vouch-{}", std::process::id())))
            .expect("a bpf filesystem for the pins");
    let mut old = active_datapath(Duration::from_millis(200));
    old.pin(pins.path()).unwrap();
    let new = active_datapath(Duration::from_millis(200));
    let predecessor =
        ha_agent::bpf::PredecessorFence::open(pins.path()).expect("the predecessor's pinned fence");
    let keep_alive = predecessor.keep_alive(Duration::from_millis(5));
    keep_alive.vouch_for(new.shared_fence());
    // Longer than the window: only the keep-alive's renewals can keep both answering.
    std::thread::sleep(Duration::from_millis(150));
    for (which, datapath) in [("old", &old), ("new", &new)] {
        let frame = ipv4_frame(PORT, &probe(5, OWN_ID, 7), None);
        assert_eq!(
            run_out(datapath, &frame).0,
            XDP_TX,
            "the {which} program answers while the restart is under way"
        );
    }
    // The first heartbeat is out: from then on the agent's own heartbeats vouch for it.
    drop(keep_alive);
    std::thread::sleep(Duration::from_millis(150));
    let frame = ipv4_frame(PORT, &probe(5, OWN_ID, 8), None);
    assert_eq!(verdict(&new, &frame), XDP_DROP, "no answer once nothing vouches for the agent");
    assert_eq!(stats(&new).probes_answered, 1);
}
