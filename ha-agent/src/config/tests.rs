//! The merge, the defaults and every one-line error, without files or root.

use super::*;

fn flags(iface: &str, vips: &[&str]) -> RunArgs {
    RunArgs {
        iface: Some(iface.into()),
        vips: vips.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

fn resolve(file: &str, flags: &RunArgs) -> Result<Config, String> {
    from_text(Path::new("ha.toml"), file, flags).map_err(|err| {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        text
    })
}

#[test]
fn defaults_give_sub_second_failover() {
    let config = resolve("", &flags("eth0", &["192.0.2.100/24"])).unwrap();
    assert_eq!(config.interval, Duration::from_millis(100));
    assert_eq!(config.dead_time, Duration::from_millis(350));
    assert_eq!(config.groups.len(), 1);
    assert_eq!((config.groups[0].priority, config.groups[0].id), (100, GroupId(1)));
    assert_eq!(config.pin_dir, Path::new("/sys/fs/bpf/ha-agent/eth0"));
    assert_eq!(config.run_dir, Path::new("/run/ha-agent/eth0"));
    assert_eq!(config.state_dir, Path::new("/var/lib/ha-agent/eth0"));
    assert_eq!(config.key_file.as_deref(), Some(Path::new("/etc/ha-agent/key")));
    assert_eq!(config.garp, GarpSettings { count: 3, spacing: Duration::from_millis(100), refresh: None });
    assert!(matches!(config.destination, Destination::Multicast(a) if a.to_string() == "239.255.97.1:9740"));
}

#[test]
fn flags_override_the_file_key_by_key() {
    let file = "iface = \"eth1\"\nvips = [\"198.51.100.7/24\"]\npriority = 50\ninterval = \"1s\"\n\
                insecure_no_auth = true\ngarp_refresh = \"10s\"\n";
    let mut f = flags("eth0", &[]);
    f.priority = Some(200);
    let config = resolve(file, &f).unwrap();
    assert_eq!(config.iface, "eth0");
    assert_eq!(config.groups[0].priority, 200);
    assert_eq!(config.groups[0].vips[0].to_string(), "198.51.100.7/24", "the file's VIPs stay when no --vip");
    assert_eq!(config.dead_time, Duration::from_millis(3500), "dead time follows the file's interval");
    assert_eq!(config.key_file, None, "a flag left out does not undo the file's true");
    assert_eq!(config.garp.refresh, Some(Duration::from_secs(10)));
}

#[test]
fn preemption_policy_from_file_and_flags() {
    let config =
        resolve("preempt = false\npreempt_delay = \"30s\"\n", &flags("eth0", &["192.0.2.1/24"])).unwrap();
    assert_eq!((config.groups[0].preempt, config.groups[0].preempt_delay), (false, Duration::from_secs(30)));
    let f = RunArgs { preempt: Some(true), ..flags("eth0", &["192.0.2.1/24"]) };
    assert!(resolve("preempt = false\n", &f).unwrap().groups[0].preempt, "the flag wins");
    assert!(resolve("", &flags("eth0", &["192.0.2.1/24"])).unwrap().groups[0].preempt, "on by default");
}

/// Two groups, active/active: each prefers another node; the top-level keys fill in.
const GROUPS: &str = "priority = 50\nnotify = 'logger all'\n\
    [[check]]\nname = 'web'\nhttp = 'http://127.0.0.1:8080/'\nfall = 3\nweight = -60\n\
    [[group]]\nid = 1\nvips = ['192.0.2.100/24']\npriority = 150\ntrack = ['web']\n\
    [[group]]\nid = 2\nvips = ['192.0.2.101/24', '2001:db8::101/64']\npreempt = false\nnotify_active = 'up'\n";

#[test]
fn group_tables_make_one_election_each() {
    let config = resolve(GROUPS, &flags("eth0", &[])).unwrap();
    let [one, two] = &config.groups[..] else { panic!("two groups: {:?}", config.groups) };
    assert_eq!(
        (one.id, one.priority, one.preempt, one.track.clone()),
        (GroupId(1), 150, true, vec!["web".to_string()])
    );
    assert_eq!(one.hooks.any.as_deref(), Some("logger all"), "the top-level hooks are the default");
    assert_eq!((two.id, two.priority, two.preempt, two.vips.len()), (GroupId(2), 50, false, 2));
    assert_eq!(
        (two.hooks.active.as_deref(), two.hooks.any.as_deref()),
        (Some("up"), None),
        "a group's own hooks replace them"
    );
    assert_eq!(config.all_vips().count(), 3);
    assert_eq!(config.checks[0].fall, 3);
}

#[test]
fn unicast_peers_take_the_port() {
    let mut f = flags("eth0", &["192.0.2.1/24"]);
    f.peers = vec!["192.0.2.9".into(), "192.0.2.10:9999".into()];
    f.port = Some(9000);
    let config = resolve("", &f).unwrap();
    let expected = vec!["192.0.2.9:9000".parse().unwrap(), "192.0.2.10:9999".parse().unwrap()];
    assert_eq!(config.destination, Destination::Unicast(expected));
}

#[test]
fn bad_input_is_one_clear_line() {
    let with = |change: fn(&mut RunArgs)| {
        let mut f = flags("eth0", &["192.0.2.1/24"]);
        change(&mut f);
        f
    };
    let cases: Vec<(&str, RunArgs, &str)> = vec![
        ("", flags("eth0", &[]), "no VIP configured"),
        ("", flags("eth0", &["192.0.2.1"]), "bad VIP '192.0.2.1': no prefix length"),
        ("", flags("eth0", &["192.0.2.1/33"]), "prefix length above 32"),
        ("", flags("eth0", &["nonsense/24"]), "not an IP address"),
        ("", RunArgs { vips: vec!["192.0.2.1/24".into()], ..Default::default() }, "no interface"),
        ("", with(|f| f.interval = Some("fast".into())), "bad duration 'fast'"),
        ("", with(|f| f.dead_time = Some("150ms".into())), "at least two intervals"),
        ("", with(|f| f.interval = Some("5ms".into())), "bad interval 5 ms"),
        ("", with(|f| f.priority = Some(0)), "bad priority 0"),
        ("", with(|f| f.port = Some(0)), "bad port 0"),
        ("", with(|f| f.garp_count = Some(0)), "bad garp count 0"),
        ("", with(|f| f.mcast_group = Some("192.0.2.9".into())), "not a multicast"),
        ("", with(|f| f.mcast_group = Some("nowhere".into())), "bad address 'nowhere'"),
        ("", with(|f| f.peers = vec!["192.0.2.9".into(), "2001:db8::9".into()]), "mix IPv4 and IPv6"),
        ("", with(|f| f.peers = vec!["239.1.1.1".into()]), "bad peer 239.1.1.1: not a unicast"),
        ("", with(|f| f.iface = Some("a/b".into())), "bad interface name 'a/b'"),
        (
            "",
            with(|f| f.vips = (0..=1024).map(|i| format!("2001:db8::{i:x}/64")).collect()),
            "1025 VIPs: at most 1024",
        ),
        (
            "iface = \"eth0\"\nvipz = []\n",
            flags("eth0", &["192.0.2.1/24"]),
            "ha.toml line 2: unknown field `vipz`",
        ),
        (
            "\n\ninterval = \"soon\"\n",
            flags("eth0", &["192.0.2.1/24"]),
            "ha.toml line 3: bad duration 'soon'",
        ),
        ("vips = [\n", flags("eth0", &[]), "config file ha.toml line"),
        ("priority = 999\n", flags("eth0", &["192.0.2.1/24"]), "ha.toml line 1"),
        (GROUPS, flags("eth0", &["192.0.2.1/24"]), "`vips` at the top level and [[group]] tables"),
        (
            "[[group]]\nid = 1\nvips = ['192.0.2.1/24']\n[[group]]\nid = 1\nvips = ['192.0.2.2/24']\n",
            flags("eth0", &[]),
            "two [[group]] tables have id 1",
        ),
        (
            "[[group]]\nid = 1\nvips = ['192.0.2.1/24']\n[[group]]\nid = 2\nvips = ['192.0.2.1/24']\n",
            flags("eth0", &[]),
            "VIP 192.0.2.1/24 is configured twice",
        ),
        ("[[group]]\nid = 1\n", flags("eth0", &[]), "no VIP configured"),
        (
            "[[group]]\nid = 1\nvips = ['192.0.2.1/24']\ncolour = 'red'\n",
            flags("eth0", &[]),
            "unknown field `colour`",
        ),
        (
            "track = ['web']\n",
            flags("eth0", &["192.0.2.1/24"]),
            "group 1 tracks check web, which is not configured",
        ),
        (
            "[[check]]\nname = 'a'\nexec = 'true'\n[[check]]\nname = 'a'\nexec = 'true'\n",
            flags("eth0", &["192.0.2.1/24"]),
            "two checks are named a",
        ),
        ("[[check]]\nname = 'a'\n", flags("eth0", &["192.0.2.1/24"]), "check a: give exactly one of"),
        ("group = 'x'\n", flags("eth0", &["192.0.2.1/24"]), "group is a number"),
    ];
    for (file, f, expected) in cases {
        let err = resolve(file, &f).unwrap_err();
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        assert!(!err.contains('\n'), "{err:?} is more than one line");
    }
}

#[test]
fn an_explicit_config_file_must_exist() {
    let f = RunArgs { config: Some("/nonexistent/ha.toml".into()), ..flags("eth0", &["192.0.2.1/24"]) };
    let err = load(&f).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot read config file /nonexistent/ha.toml"));
}
