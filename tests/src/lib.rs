//! Test LANs in network namespaces, for the integration tests and `cargo xtask demo`.
//!
//! A [`Lan`] is a switch namespace holding a bridge, plus host namespaces joined to it by veth
//! pairs, addressed from 192.0.2.0/24. Every name carries a per-LAN prefix so tests run in
//! parallel; every resource sits behind a guard whose `Drop` removes it, so a failing test
//! leaves no namespace, agent, pin or VIP behind. Nothing here touches the root namespace's
//! interfaces or sends to any address outside the LAN.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

pub mod frames;
mod prober;

pub use prober::Prober;

/// The VIP the test LANs share.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The VIP with its prefix, as the agent takes it.
pub const VIP_CIDR: &str = "192.0.2.100/24";

static LAN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command and fails with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !output.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `condition` every 2 ms until it holds; returns how long that took, or fails naming
/// `what` after `limit`.
pub fn wait_for(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// [`wait_for`] for a test: panics with its message when `condition` does not come to hold.
pub fn wait_until(limit: Duration, what: &str, condition: impl FnMut() -> bool) {
    wait_for(limit, what, condition).unwrap_or_else(|err| panic!("{err}"));
}

/// Panics with a clear message unless the process runs as root (the tests need namespaces,
/// XDP and BPF_PROG_TEST_RUN).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert!(uid == 0, "this test needs root (network namespaces, XDP, BPF): run `cargo xtask test` as root");
}

/// Path of the ha-agent binary under test: `HA_AGENT_BIN`, or the workspace's debug build.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HA_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent");
    let path = workspace.join("target/debug/ha-agent");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p ha-agent`) or set HA_AGENT_BIN",
        path.display()
    );
    path
}

/// A copy of the agent binary in `dir` (created world-readable), which an unprivileged user can
/// run: the checkout may sit where `nobody` cannot reach it.
pub fn agent_binary_for_anyone(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::create_dir_all(dir)?;
    for open in
        dir.ancestors().take_while(|d| d.starts_with(std::env::temp_dir()) && *d != std::env::temp_dir())
    {
        fs::set_permissions(open, fs::Permissions::from_mode(0o755))?;
    }
    let binary = dir.join("ha-agent");
    fs::copy(agent_binary(), &binary)?;
    Ok(binary)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates it, with loopback up.
    pub fn new(name: String) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.command(program).args(args).output()?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// One host on the LAN: its namespace, with `eth0` plugged into switch port `port`.
pub struct Host {
    /// The host's namespace.
    pub ns: Netns,
    /// Name of its port on the switch (in the switch namespace).
    pub port: String,
    /// Its own address.
    pub addr: Ipv4Addr,
    /// MAC address of its eth0.
    pub mac: String,
}

/// A switch (bridge) and hosts; hosts are dropped before the switch.
pub struct Lan {
    /// Prefix of every namespace name of this LAN.
    pub prefix: String,
    /// The hosts, in creation order.
    pub hosts: Vec<Host>,
    /// The switch namespace.
    pub switch: Netns,
    /// Scratch directory (run dirs, logs), removed on drop.
    pub dir: PathBuf,
    /// The LAN's heartbeat key, made by `ha-agent keygen`; every agent gets it.
    pub key_file: PathBuf,
    /// A bpf filesystem mounted for this LAN, holding each agent's pin directory. Mounted here,
    /// outside the agents' `ip netns exec` mount namespaces, so that pins outlive the agent that
    /// made them, as the host's /sys/fs/bpf does on a real server: a SIGKILLed agent's XDP link
    /// stays, and fences.
    pub bpffs: BpfFs,
    /// How the switch's ports take frames in, set when the LAN is made.
    ports: Ports,
}

/// How the switch's ports take frames in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Ports {
    /// As a veth does by default: the sender's own system call carries each frame through the
    /// bridge and into every receiver's stack and XDP program, so that all their work counts as
    /// the sender's CPU time.
    #[default]
    Inline,
    /// Each port takes frames in on a kernel thread of its own (veth GRO, threaded NAPI), as a NIC hands a frame to the wire: the sender's system call ends at its
    /// own interface, and the switch's and the receivers' work is not charged to it. For
    /// measuring a daemon's CPU time; needs ethtool.
    Threaded,
}

impl Lan {
    /// A LAN of `hosts` hosts, addressed 192.0.2.11, .12, …
    pub fn new(tag: &str, hosts: usize) -> anyhow::Result<Self> {
        Self::with_ports(tag, hosts, Ports::Inline)
    }

    /// [`Lan::new`] with the switch's ports taking frames in as `ports` says.
    pub fn with_ports(tag: &str, hosts: usize, ports: Ports) -> anyhow::Result<Self> {
        let n = LAN_COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ha{}-{}{}", std::process::id(), tag, n);
        let dir = std::env::temp_dir().join(&prefix);
        fs::create_dir_all(&dir)?;
        let switch = Netns::new(format!("{prefix}-sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        // No multicast snooping: the bridge floods heartbeats like a plain switch.
        switch.ip(&["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        // A switch forwards frames without reading them. Where br_netfilter is built in, the
        // bridge would otherwise check IP headers and drop malformed frames before the hosts see
        // them (absent sysctls, on kernels without it, are fine to ignore).
        let _ = switch
            .command("sysctl")
            .args(["-q", "-w", "net.bridge.bridge-nf-call-iptables=0"])
            .args(["net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0"])
            .stderr(Stdio::null())
            .status();
        let key_file = dir.join("key");
        let keygen = Command::new(agent_binary()).arg("keygen").arg("--key-file").arg(&key_file).output()?;
        if !keygen.status.success() {
            bail!("ha-agent keygen failed: {}", String::from_utf8_lossy(&keygen.stderr).trim());
        }
        let bpffs = BpfFs::mount(&dir.join("bpf"))?;
        let mut lan = Self { prefix, hosts: Vec::new(), switch, dir, key_file, bpffs, ports };
        for _ in 0..hosts {
            lan.add_host()?;
        }
        Ok(lan)
    }

    /// Adds one more host and returns its index.
    pub fn add_host(&mut self) -> anyhow::Result<usize> {
        let index = self.hosts.len();
        let ns = Netns::new(format!("{}-h{}", self.prefix, index + 1))?;
        let port = format!("p{}", index + 1);
        let addr = Ipv4Addr::new(192, 0, 2, 11 + index as u8);
        let mac = self.plug(&ns, &port, addr)?;
        self.hosts.push(Host { ns, port, addr, mac });
        Ok(index)
    }

    /// Gives `ns` an `eth0` with address `addr`, joined to the switch by a veth pair whose switch
    /// end is `port`; returns its MAC.
    fn plug(&self, ns: &Netns, port: &str, addr: Ipv4Addr) -> anyhow::Result<String> {
        let veth = ["link", "add", "eth0", "netns", &ns.name, "type", "veth", "peer", "name", port];
        run("ip", &[&veth[..], &["netns", &self.switch.name]].concat())?;
        self.switch.ip(&["link", "set", port, "master", "br0", "up"])?;
        if self.ports == Ports::Threaded {
            self.thread_port(ns, port)?;
        }
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        fs_mac(ns)
    }

    /// Makes switch port `port`, the peer of `ns`'s eth0, take frames in on a thread of its own
    /// ([`Ports::Threaded`]; a new veth takes them inline). A veth
    /// hands a frame to its peer's NAPI instance only when the peer has GRO on and the sender no
    /// TSO; the instance exists once GRO is on, and only then can it be threaded. Not UDP GRO
    /// forwarding, which would also let the port take frames from a TSO sender: it merges a burst
    /// of heartbeats into one frame, of which XDP parses the first.
    fn thread_port(&self, ns: &Netns, port: &str) -> anyhow::Result<()> {
        let ethtool = |netns: &Netns, args: &[&str]| -> anyhow::Result<()> {
            let output = netns
                .command("ethtool")
                .args(args)
                .output()
                .context("running ethtool (apt-get install ethtool)")?;
            if !output.status.success() {
                bail!("ethtool {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
            }
            Ok(())
        };
        ethtool(ns, &["-K", "eth0", "tso", "off"])?;
        ethtool(&self.switch, &["-K", port, "gro", "on"])?;
        let output = self
            .switch
            .command("sh")
            .args(["-c", &format!("echo 1 > /sys/class/net/{port}/threaded")])
            .output()?;
        if !output.status.success() {
            bail!("threaded NAPI on {port}: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// Deletes host `index`'s interface (with its switch port) and makes it anew after
    /// `down_for`, as a driver reload or a recreated VLAN would: same name and address, a new
    /// index and MAC. Returns the new MAC.
    pub fn recreate_link(&self, index: usize, down_for: Duration) -> anyhow::Result<String> {
        let host = &self.hosts[index];
        host.ns.ip(&["link", "del", "eth0"])?;
        thread::sleep(down_for);
        self.plug(&host.ns, &host.port, host.addr)
    }

    /// Takes host `index`'s switch port down (its link is cut).
    pub fn cut(&self, index: usize) -> anyhow::Result<()> {
        self.switch.ip(&["link", "set", &self.hosts[index].port, "down"]).map(drop)
    }

    /// Brings host `index`'s switch port back up.
    pub fn heal(&self, index: usize) -> anyhow::Result<()> {
        self.switch.ip(&["link", "set", &self.hosts[index].port, "up"]).map(drop)
    }

    /// Runs `nft ARGS` in the switch's namespace: bridge-family rules there drop frames between
    /// hosts (loss, a one-way link), which a host's own netfilter, running after XDP, cannot.
    pub fn switch_nft(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = self
            .switch
            .command("nft")
            .args(args)
            .status()
            .context("running nft (apt-get install nftables)")?;
        if !status.success() {
            bail!("nft {} failed", args.join(" "));
        }
        Ok(())
    }

    /// Indices of the hosts that have the VIP on their eth0.
    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.hosts.len()).filter(|&i| self.holds_vip(i)).collect()
    }

    /// Whether host `index` holds the VIP: one `ip` run rather than one per host, for timing a
    /// takeover to a known host closely.
    pub fn holds_vip(&self, index: usize) -> bool {
        has_address(&self.hosts[index].ns, VIP)
    }

    /// Waits until exactly one host holds the VIP and returns it, or fails after `limit`.
    pub fn wait_single_holder(&self, limit: Duration) -> anyhow::Result<usize> {
        wait_for(limit, "exactly one VIP holder", || self.vip_holders().len() == 1)
            .map_err(|err| anyhow::anyhow!("{err}: the VIP is held by hosts {:?}", self.vip_holders()))?;
        Ok(self.vip_holders()[0])
    }

    /// Three agents (hosts 0-2, priorities 100, 150, 200) on a LAN of `hosts` hosts, after the
    /// first election: host 2 holds the VIP. Panics with a message if that does not happen.
    pub fn with_three_agents(tag: &str, hosts: usize) -> (Self, Vec<Agent>) {
        Self::with_three_agents_and(tag, hosts, &[])
    }

    /// [`Lan::with_three_agents`], every agent started with the flags `extra`.
    pub fn with_three_agents_and(tag: &str, hosts: usize, extra: &[&str]) -> (Self, Vec<Agent>) {
        require_root();
        let lan = Self::new(tag, hosts).expect("building the test LAN");
        let agents = [100u8, 150, 200]
            .iter()
            .enumerate()
            .map(|(i, &priority)| lan.start_agent(i, priority, extra).expect("starting an agent"))
            .collect();
        // Started one after the other, the first may hold the VIP for a moment before the more
        // worthy preempt it: the first election is over once the priority-200 node alone holds it.
        wait_for(Duration::from_secs(5), "the priority-200 node alone holding the VIP", || {
            lan.vip_holders() == [2]
        })
        .unwrap_or_else(|err| panic!("the first election: {err}: holders {:?}", lan.vip_holders()));
        (lan, agents)
    }

    /// Starts an agent on host `index` with `priority` and any extra flags.
    pub fn start_agent(&self, index: usize, priority: u8, extra: &[&str]) -> anyhow::Result<Agent> {
        self.start_agent_under(&[], index, priority, extra)
    }

    /// [`Lan::start_agent`] through a wrapper command, e.g. `faketime -f -1h`.
    pub fn start_agent_under(
        &self,
        wrapper: &[&str],
        index: usize,
        priority: u8,
        extra: &[&str],
    ) -> anyhow::Result<Agent> {
        let host = &self.hosts[index];
        let run_dir = self.dir.join(format!("run-h{}", index + 1));
        let log_path = self.dir.join(format!("agent-h{}.log", index + 1));
        let log = fs::File::create(&log_path)?;
        let priority = priority.to_string();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = host.ns.command(program);
                command.args(args).arg(agent_binary());
                command
            }
            None => host.ns.command(agent_binary()),
        };
        // The LAN's VIP unless the test gives its own, or a config file (which may hold groups).
        let own_vips = extra.contains(&"--vip") || extra.contains(&"--config");
        let vip: &[&str] = if own_vips { &[] } else { &["--vip", VIP_CIDR] };
        // And the LAN's key unless the test gives another.
        let key: &[&std::ffi::OsStr] = if extra.contains(&"--key-file") {
            &[]
        } else {
            &["--key-file".as_ref(), self.key_file.as_os_str()]
        };
        command
            .args(["--iface", "eth0", "--priority", &priority])
            .args(vip)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--pin-dir")
            .arg(self.pin_dir(index))
            .arg("--state-dir")
            .arg(self.dir.join(format!("state-h{}", index + 1)))
            .args(key)
            .args(extra)
            .env("RUST_LOG", "info,ha_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // A process group of its own, so that dropping the agent ends everything it started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context("spawning ha-agent")?;
        let agent = Agent { child: Some(child), run_dir, log_path, ns: host.ns.name.clone() };
        agent.wait_ready(Duration::from_secs(10))?;
        Ok(agent)
    }

    /// Writes `text` to the file `name` in the LAN's directory (a config, say); returns its path,
    /// as an agent's flag takes it.
    pub fn write_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        path.to_string_lossy().into_owned()
    }

    /// Host `index`'s agent's pin directory.
    pub fn pin_dir(&self, index: usize) -> PathBuf {
        self.bpffs.path().join(format!("h{}", index + 1))
    }

    /// The MACs that answer an ARP request for the VIP from host `client` (three requests, a
    /// seconds at most): exactly one when the LAN is healthy.
    pub fn macs_answering_for_vip(&self, client: usize) -> anyhow::Result<Vec<String>> {
        // -b: keep broadcasting (arping otherwise unicasts to the first MAC that answered).
        // -c with -w: until three replies, at most 3 s (one request a second).
        let args = ["-b", "-c", "3", "-w", "3", "-I", "eth0", &VIP.to_string()];
        let output = self.hosts[client].ns.exec("arping", &args)?;
        let mut macs: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains("reply from"))
            .filter_map(|line| Some(line.split('[').nth(1)?.split(']').next()?.to_lowercase()))
            .collect();
        macs.sort();
        macs.dedup();
        Ok(macs)
    }

    /// Whether the VIP answers host `client`'s ping (two requests, 100 ms apart, a second each).
    pub fn vip_answers_ping(&self, client: usize) -> bool {
        let args = ["-c", "2", "-i", "0.1", "-W", "1", &VIP.to_string()];
        self.hosts[client].ns.exec("ping", &args).is_ok_and(|out| out.status.success())
    }

    /// The MAC the client `client` has for the VIP in its neighbour table, if any.
    pub fn neighbour_mac(&self, client: usize) -> Option<String> {
        let out = self.hosts[client].ns.ip(&["neigh", "show", &VIP.to_string(), "dev", "eth0"]).ok()?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first (their veths go with them), then the switch, then the pins left by killed
        // agents (`bpffs`, whose unmounting drops them), then the scratch files.
        self.hosts.clear();
        self.bpffs.unmount();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A bpf filesystem mounted for a test at a directory of its own, so that nothing is pinned in
/// the machine's /sys/fs/bpf; unmounted (which drops every pin in it) and its directory removed
/// when dropped.
pub struct BpfFs {
    path: PathBuf,
    mounted: bool,
}

impl BpfFs {
    /// Creates `path` and mounts a bpf filesystem there.
    pub fn mount(path: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(path)?;
        let bpffs = Self { path: path.to_path_buf(), mounted: true };
        run("mount", &["-t", "bpf", "bpf", &path.to_string_lossy()])?;
        Ok(bpffs)
    }

    /// Where it is mounted.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts it (lazily: a process may still hold it) and removes its directory; once.
    fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn fs_mac(ns: &Netns) -> anyhow::Result<String> {
    let out = ns.ip(&["-br", "link", "show", "eth0"])?;
    out.split_whitespace().nth(2).map(str::to_string).context("no MAC in `ip -br link` output")
}

/// Whether `cidr` (e.g. `2001:db8::100/64`) is on the namespace's eth0, in either family.
pub fn has_cidr(ns: &Netns, cidr: &str) -> bool {
    ns.ip(&["-br", "addr", "show", "dev", "eth0"]).is_ok_and(|out| out.split_whitespace().any(|w| w == cidr))
}

/// Whether `addr` is on the namespace's eth0.
pub fn has_address(ns: &Netns, addr: Ipv4Addr) -> bool {
    let wanted = format!("{addr}/");
    ns.ip(&["-4", "-br", "addr", "show", "dev", "eth0"])
        .is_ok_and(|out| out.split_whitespace().any(|w| w.starts_with(&wanted)))
}

/// A running agent, killed on drop.
pub struct Agent {
    child: Option<Child>,
    /// Its run directory (control socket).
    pub run_dir: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    ns: String,
}

impl Agent {
    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        // Connecting, not the file: a SIGKILLed predecessor leaves its socket file behind.
        let socket = self.run_dir.join("control.sock");
        wait_for(limit, "the agent's start", || std::os::unix::net::UnixStream::connect(&socket).is_ok())
            .map(drop)
            .map_err(|err| anyhow::anyhow!("{err}; log:\n{}", self.log()))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The status of a single-group agent: the report's node-wide fields with its first group's
    /// fields (state, peers, VIPs, fault…) laid over them.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let mut report = self.report()?;
        let group = report["groups"][0].clone();
        if let (Some(top), Some(fields)) = (report.as_object_mut(), group.as_object()) {
            top.extend(fields.clone());
        }
        Ok(report)
    }

    /// `ha-agent status --json`, run from another `ip netns exec` of the agent's namespace.
    pub fn report(&self) -> anyhow::Result<serde_json::Value> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(agent_binary())
            .args(["status", "--json", "--run-dir"])
            .arg(&self.run_dir)
            .output()?;
        if !output.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// `ha-agent ctl ARGS…` against this agent: its answer, or its error (stderr).
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(agent_binary())
            .arg("ctl")
            .args(args)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .output()
            .map_err(|err| err.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The agent's process id while it runs (`ip netns exec` execs it, so this is the agent's).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // `ip netns exec` execs the agent, so the child's pid is the agent's.
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Waits for the agent to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let child = self.child.as_mut().context("already reaped")?;
        let mut code = None;
        wait_for(limit, "the agent's exit", || match child.try_wait() {
            Ok(Some(status)) => {
                code = Some(status.code());
                true
            }
            _ => false,
        })?;
        self.child = None;
        Ok(code.flatten())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole process group: a wrapper such as faketime forks the agent rather than
            // exec it, and killing the wrapper alone would leave the agent running.
            // SAFETY: kill has no memory preconditions; the group is the child's own.
            let group_killed =
                i32::try_from(child.id()).is_ok_and(|pid| unsafe { libc::kill(-pid, libc::SIGKILL) } == 0);
            if !group_killed {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // The run dir stays: a restarted agent on the same host uses it; the LAN's scratch
        // directory, which holds it, goes with the LAN.
    }
}

/// Watches the VIP being added on every node (`ip monitor address`): each addition after the
/// start is a transition to ACTIVE.
pub struct VipMonitor {
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

impl VipMonitor {
    /// Starts watching the first `hosts` hosts of `lan`.
    pub fn start(lan: &Lan, hosts: usize) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        let mut files = Vec::new();
        for (i, host) in lan.hosts.iter().take(hosts).enumerate() {
            let file = lan.dir.join(format!("monitor-h{}.log", i + 1));
            children.push(
                Command::new("ip")
                    .args(["-n", &host.ns.name, "-o", "monitor", "address", "dev", "eth0"])
                    .stdout(fs::File::create(&file)?)
                    .stderr(Stdio::null())
                    .spawn()?,
            );
            files.push(file);
        }
        thread::sleep(Duration::from_millis(100));
        Ok(Self { children, files })
    }

    /// Stops watching; returns how many times the VIP was added anywhere.
    pub fn stop(mut self) -> anyhow::Result<usize> {
        self.end();
        let vip = format!("inet {VIP_CIDR}");
        let mut added = 0;
        for file in &self.files {
            let text = fs::read_to_string(file)?;
            added += text.lines().filter(|l| l.contains(&vip) && !l.starts_with("Deleted")).count();
        }
        Ok(added)
    }

    fn end(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for VipMonitor {
    fn drop(&mut self) {
        self.end();
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
    }
}

/// The longest gap between consecutive replies (seconds, as [`Prober::stop`] returns them), in ms.
pub fn longest_gap_ms(replies: &[f64]) -> f64 {
    replies.windows(2).map(|w| (w[1] - w[0]) * 1000.0).fold(0.0, f64::max)
}
