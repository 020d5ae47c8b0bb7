//! The XDP program through BPF_PROG_TEST_RUN with crafted frames: verdicts, the peer map, the
//! counters and the event ring buffer. Loads the object embedded in ha-agent; attaches nowhere.

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
        handover_to: 0,
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
    use std::{net::Ipv6Addr, time::Duration};

    let mut datapath = load();
    let vips: Vec<ha_agent::vip::Vip> =
        ["192.0.2.100/24", "2001:db8::100/64"].iter().map(|v| v.parse().unwrap()).collect();
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
    datapath.set_fence(ha_agent::bpf::fence(&vips, lease, false), now).unwrap();
    for (name, frame, _) in &about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_PASS, "{name} with a fresh lease");
    }
    assert_eq!(stats(&datapath).fenced, 0);

    // The lease ran out: what is about a VIP is dropped and counted; the rest passes.
    let stale = now.checked_sub(Duration::from_secs(1)).unwrap();
    datapath.set_fence(ha_agent::bpf::fence(&vips, lease, false), stale).unwrap();
    for (name, frame, _) in &about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_DROP, "{name} with a stale lease");
    }
    for (name, frame) in &not_about_vips {
        assert_eq!(verdict(&datapath, frame), XDP_PASS, "{name} with a stale lease");
    }
    assert_eq!(stats(&datapath).fenced, 4);

    // Keeping flows: only address resolution for the VIPs is dropped.
    datapath.set_fence(ha_agent::bpf::fence(&vips, lease, true), stale).unwrap();
    for (name, frame, resolution) in &about_vips {
        let expected = if *resolution { XDP_DROP } else { XDP_PASS };
        assert_eq!(verdict(&datapath, frame), expected, "{name} with a stale lease, keeping flows");
    }

    // Renewing the lease lifts the fence at once.
    datapath.renew_lease(ha_agent::clock::monotonic_now()).unwrap();
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
