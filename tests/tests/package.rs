//! The Debian package: it installs with `dpkg -i` into a scratch root, the binary runs, the unit
//! passes `systemd-analyze verify`, and the man page, completions and example config are there.
//! `cargo xtask test` builds it first (`cargo xtask deb`) and names it in `HA_AGENT_DEB`.

use std::{fs, path::PathBuf, process::Command};

use ha_tests::require_root;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn package() -> PathBuf {
    let path = std::env::var_os("HA_AGENT_DEB").map(PathBuf::from).expect(
        "HA_AGENT_DEB is not set: run the tests through `cargo xtask test`, which builds the package",
    );
    assert!(path.is_file(), "{} is missing: `cargo xtask deb` builds it", path.display());
    path
}

#[test]
fn the_package_installs_into_a_scratch_root_and_runs() {
    require_root();
    let deb = package();
    let root = Scratch(std::env::temp_dir().join(format!("ha-deb-root-{}", std::process::id())));
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        fs::create_dir_all(root.0.join(dir)).unwrap();
    }
    fs::write(root.0.join("var/lib/dpkg/status"), "").unwrap();
    // The scratch root has no libc6 package on record (the host's libc is what runs it).
    let install = Command::new("dpkg")
        .arg(format!("--root={}", root.0.display()))
        .args(["--force-depends", "-i"])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(install.status.success(), "dpkg -i: {}", String::from_utf8_lossy(&install.stderr));

    let binary = root.0.join("usr/sbin/ha-agent");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ha-agent {}", env!("CARGO_PKG_VERSION"))
    );

    for file in [
        "lib/systemd/system/ha-agent.service",
        "usr/share/man/man8/ha-agent.8.gz",
        "usr/share/bash-completion/completions/ha-agent",
        "usr/share/zsh/vendor-completions/_ha-agent",
        "usr/share/fish/vendor_completions.d/ha-agent.fish",
        "usr/share/doc/ha-agent/examples/ha-agent.toml",
    ] {
        let path = root.0.join(file);
        assert!(fs::metadata(&path).is_ok_and(|m| m.len() > 0), "{file} is missing or empty");
    }
    // The example config is a valid config: it fails only where the machine differs (no eth0 or
    // no key here), past the config check.
    let example = root.0.join("usr/share/doc/ha-agent/examples/ha-agent.toml");
    let run = Command::new(&binary)
        .arg("--config")
        .arg(&example)
        .args(["--iface", "no-such-if0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("unknown interface no-such-if0") || stderr.contains("must run as root"),
        "{stderr}"
    );

    // The unit, with its binary where the scratch root has it, passes systemd's own check.
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let unit = fs::read_to_string(root.0.join("lib/systemd/system/ha-agent.service")).unwrap();
        let unit_dir = Scratch(std::env::temp_dir().join(format!("ha-deb-unit-{}", std::process::id())));
        fs::create_dir_all(&unit_dir.0).unwrap();
        let copy = unit_dir.0.join("ha-agent.service");
        fs::write(&copy, unit.replace("/usr/sbin/ha-agent", &binary.to_string_lossy())).unwrap();
        let verify =
            Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy).output().unwrap();
        let complaints = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && complaints.trim().is_empty(),
            "systemd-analyze verify: {complaints}"
        );
    } else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
    }
}

/// The datagrams the agent sent to the notify socket within `window`.
fn notifications(socket: &std::os::unix::net::UnixDatagram, window: std::time::Duration) -> Vec<String> {
    let start = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    while start.elapsed() < window {
        if let Ok(n) = socket.recv(&mut buf) {
            received.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
    }
    received
}

#[test]
fn the_agent_tells_systemd_it_is_ready_and_its_loop_kicks_the_watchdog() {
    use std::{os::unix::net::UnixDatagram, time::Duration};

    require_root();
    let lan = ha_tests::Lan::new("notify", 1).unwrap();
    // Playing the service manager: Type=notify with WatchdogSec=400ms.
    let path = lan.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let notify_socket = format!("NOTIFY_SOCKET={}", path.display());
    let env = ["env", notify_socket.as_str(), "WATCHDOG_USEC=400000"];
    let agent = lan.start_agent_under(&env, 0, 100, &[]).unwrap();

    // Alone, it is ACTIVE within the second: its heartbeats are the pacer's, and its loop still
    // turns at least every half watchdog period.
    let running = notifications(&socket, Duration::from_secs(1));
    assert!(running.iter().any(|m| m == "READY=1"), "{running:?}");
    let kicks = |messages: &[String]| messages.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(kicks(&running) >= 4, "the loop turns at least every 200 ms: {running:?}");

    // A stalled loop stops kicking: systemd would kill and restart it.
    agent.signal(libc::SIGSTOP);
    notifications(&socket, Duration::from_millis(100));
    assert_eq!(kicks(&notifications(&socket, Duration::from_secs(1))), 0);
    agent.signal(libc::SIGCONT);
    let resumed = notifications(&socket, Duration::from_secs(1));
    assert!(kicks(&resumed) >= 4, "{resumed:?}");
}
