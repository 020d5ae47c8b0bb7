//! The command line without a LAN: `ha-agent check-config`.

use std::{fs, process::Command};

#[test]
fn check_config_says_what_a_config_means_or_what_is_wrong_in_one_line() {
    let bin = ha_tests::agent_binary();
    let dir = std::env::temp_dir().join(format!("ha-check-config-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    assert!(Command::new(&bin).args(["keygen", "--key-file"]).arg(&key).status().unwrap().success());
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.toml",
        format!("iface = \"eth0\"\nvips = [\"192.0.2.100/24\", \"2001:db8::100/64\"]\npriority = 150\nkey_file = \"{}\"\n", key.display()),
    );
    let out = Command::new(&bin).arg("check-config").arg("--config").arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("config OK: 1 group on eth0")
            && stdout.contains("group 1: VIPs [192.0.2.100/24, 2001:db8::100/64], priority 150"),
        "{stdout}"
    );
    assert!(stdout.contains("(1 key)"), "{stdout}");

    let cases = [
        (
            write("typo.toml", "iface = \"eth0\"\nvip = [\"192.0.2.1/24\"]\n".into()),
            "line 2: unknown field `vip`",
        ),
        (
            write(
                "nokey.toml",
                "iface = \"eth0\"\nvips = [\"192.0.2.1/24\"]\nkey_file = \"/nonexistent/key\"\n".into(),
            ),
            "no key file /nonexistent/key",
        ),
        (
            write("dead.toml", "iface = \"eth0\"\nvips = [\"192.0.2.1/24\"]\ndead_time = \"50ms\"\n".into()),
            "at least two intervals",
        ),
    ];
    for (path, expected) in cases {
        let out = Command::new(&bin).arg("check-config").arg("--config").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} must be refused", path.display());
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(stderr.contains(expected), "{stderr:?} should say {expected:?}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// A corpus of keepalived.conf files as they are found on real load balancers: each converts,
/// says what it could not translate, and the result passes `check-config`.
#[test]
fn keepalived_configs_import_and_pass_check_config() {
    let bin = ha_tests::agent_binary();
    let dir = std::env::temp_dir().join(format!("ha-import-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    assert!(Command::new(&bin).args(["keygen", "--key-file"]).arg(&key).status().unwrap().success());
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keepalived");
    // What each file holds that has no equivalent, and must be said.
    let expected: [(&str, &[&str]); 6] = [
        ("haproxy-master.conf", &["global_defs", "authentication", "label eth0:vip"]),
        ("nginx-unicast-backup.conf", &["unicast_src_ip", "check_nginx timeout"]),
        ("active-active.conf", &["vrrp_sync_group"]),
        ("lvs-dr.conf", &["global_defs", "virtual_server", "smtp_alert", "authentication"]),
        ("ipv6-track-interface.conf", &["use_vmac"]),
        ("split-interfaces.conf", &["include", "on eth9", "vrrp_instance INSIDE"]),
    ];
    for (file, untranslated) in expected {
        let out = Command::new(&bin).arg("import-keepalived").arg(corpus.join(file)).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(
            stderr.contains(&format!("{} item(s) not translated", untranslated.len())),
            "{file}: {stderr}"
        );
        let listed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# - line")).collect();
        for what in untranslated {
            assert!(listed.iter().any(|l| l.contains(what)), "{file}: {what} not listed in\n{stdout}");
        }
        let converted = dir.join(file.replace(".conf", ".toml"));
        fs::write(&converted, stdout.as_bytes()).unwrap();
        let check = Command::new(&bin)
            .arg("check-config")
            .arg("--config")
            .arg(&converted)
            .arg("--key-file")
            .arg(&key)
            .output()
            .unwrap();
        assert!(check.status.success(), "{file}: {}\n{stdout}", String::from_utf8_lossy(&check.stderr));
    }
    fs::remove_dir_all(&dir).unwrap();
}
