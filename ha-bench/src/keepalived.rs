//! keepalived (VRRPv3) on a test LAN host, for the side-by-side benchmark. Killed on drop.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use ha_tests::{wait_for, Lan, VIP_CIDR};

/// Whether keepalived is installed (`apt-get install keepalived`).
pub fn available() -> bool {
    std::process::Command::new("keepalived")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One keepalived: its parent process (which we spawned) and its VRRP child (from its pid file).
pub struct Keepalived {
    parent: Option<Child>,
    dir: PathBuf,
}

impl Keepalived {
    /// Starts keepalived on host `index` with `priority`, advertising every `interval`, for the
    /// same VIP the agents use; waits until its VRRP process runs.
    pub fn start(lan: &Lan, index: usize, priority: u8, interval: Duration) -> anyhow::Result<Self> {
        let dir = lan.dir.join(format!("keepalived-h{}", index + 1));
        fs::create_dir_all(&dir)?;
        let config = format!(
            "global_defs {{\n  router_id h{host}\n  vrrp_version 3\n}}\n\
             vrrp_instance VI {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
             priority {priority}\n  advert_int {advert:.2}\n  virtual_ipaddress {{\n    {VIP_CIDR}\n  }}\n}}\n",
            host = index + 1,
            advert = interval.as_secs_f64(),
        );
        fs::write(dir.join("keepalived.conf"), config)?;
        let log = fs::File::create(dir.join("log"))?;
        let parent = lan.hosts[index]
            .ns
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "-f"])
            .arg(dir.join("keepalived.conf"))
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning keepalived (apt-get install keepalived)")?;
        let keepalived = Self { parent: Some(parent), dir };
        wait_for(Duration::from_secs(10), "keepalived's VRRP process", || keepalived.vrrp_pid().is_some())?;
        Ok(keepalived)
    }

    fn vrrp_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.join("vrrp.pid")).ok()?.trim().parse().ok()
    }

    /// The parent's and the VRRP child's process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.parent.as_ref().map(Child::id).into_iter().chain(self.vrrp_pid()).collect()
    }

    /// Sends `signal` to the parent (SIGTERM: it stops the child, which releases the VIP).
    pub fn signal(&self, signal: i32) {
        if let Some(parent) = &self.parent {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(parent.id() as i32, signal) };
        }
    }

    /// Sends `signal` to both processes (SIGKILL for a crash, SIGSTOP/SIGCONT for a stall).
    pub fn signal_all(&self, signal: i32) {
        for pid in self.pids() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// Waits for the parent to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<()> {
        let parent = self.parent.as_mut().context("already reaped")?;
        wait_for(limit, "keepalived's exit", || matches!(parent.try_wait(), Ok(Some(_))))?;
        self.parent = None;
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.signal_all(libc::SIGKILL);
        if let Some(mut parent) = self.parent.take() {
            let _ = parent.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
