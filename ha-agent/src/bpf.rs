//! The BPF edge: load the embedded XDP object, configure it, attach it, pin its maps under the
//! per-instance pin directory, and read the peer and stats maps back.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{xdp::XdpMode as AyaXdpMode, ProgramError, Xdp},
    Ebpf, EbpfLoader,
};
use ha_common::{
    AuthKeys, PeerEvent, PeerKey, PeerRecord, XdpConfig, XdpStats, CONFIG_MAP, EVENTS_MAP, KEYS_MAP,
    PEERS_MAP, STATS_MAP, XDP_PROGRAM,
};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// The XDP object built by `build.rs`, embedded so the binary is self-contained.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf"));

/// The maps pinned under the pin directory, by the file name `bpftool map dump pinned` takes.
/// `KEYS` is not pinned: the keys stay in this process and the kernel.
const PINNED_MAPS: [(&str, &str); 4] =
    [(PEERS_MAP, "peers"), (STATS_MAP, "stats"), (CONFIG_MAP, "config"), (EVENTS_MAP, "events")];

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode where the driver has it, generic (skb) otherwise.
    #[default]
    Auto,
    /// Native mode only; fail if the driver lacks it.
    Native,
    /// Generic mode, which works on every interface.
    Skb,
}

/// Errors of the BPF edge.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The object did not parse or its maps could not be created (no BPF support, not root).
    #[error("loading the XDP object failed")]
    Object(#[source] aya::EbpfError),
    /// The object has no XDP program of the expected name.
    #[error("the XDP object has no program {XDP_PROGRAM}")]
    NoProgram,
    /// The kernel refused the program (the verifier) or it is not an XDP program.
    #[error("loading the XDP program failed")]
    Program(#[source] ProgramError),
    /// The program did not attach to the interface in any of the modes tried.
    #[error("attaching XDP to {iface} in {mode} mode failed")]
    Attach {
        /// Interface.
        iface: String,
        /// The last mode tried.
        mode: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// A map is missing from the object (or was already taken).
    #[error("map {0} is not in the XDP object")]
    NoMap(&'static str),
    /// A map is of the wrong kind, or reading or writing it failed.
    #[error("map {0}")]
    Map(&'static str, #[source] MapError),
    /// A map's file descriptor could not be registered with the tokio runtime.
    #[error("registering a BPF ring buffer with the runtime")]
    Runtime(#[source] io::Error),
    /// The pin directory could not be set up.
    #[error("pin directory {}", path.display())]
    Pin {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: PinDirError,
    },
}

/// Why the pin directory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PinDirError {
    /// The directory is not on a bpf filesystem and none could be mounted for it.
    #[error("not on a bpf filesystem; mount one first (mount -t bpf bpf {0}) or use --pin-dir under one")]
    NotBpffs(String),
    /// Mounting a bpf filesystem on /sys/fs/bpf failed.
    #[error("mounting a bpf filesystem on /sys/fs/bpf")]
    Mount(#[source] io::Error),
    /// A file system call failed.
    #[error("{0}")]
    Io(String, #[source] io::Error),
    /// Pinning a map failed.
    #[error("pinning {0}")]
    PinMap(&'static str, #[source] aya::pin::PinError),
}

/// The XDP program's ring buffer of [`PeerEvent`]s, registered with the tokio runtime.
pub struct Events(AsyncFd<RingBuf<MapData>>);

impl Events {
    /// Waits until the program has written at least one event, then drains the buffer;
    /// returns how many events it held. Needs a tokio runtime.
    pub async fn next_batch(&mut self) -> io::Result<usize> {
        let mut guard = self.0.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut count = 0;
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<PeerEvent>() {
                // SAFETY: the XDP program writes whole PeerEvents; read_unaligned copes with any
                // offset.
                let event: PeerEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                tracing::debug!(
                    node = format_args!("{:#x}", event.node_id),
                    changes = event.changes,
                    "peer event"
                );
            }
            count += 1;
        }
        guard.clear_ready();
        Ok(count)
    }
}

/// Registers a BPF ring buffer (or aya-log's, which wraps one) with the runtime for readability.
fn readable_fd<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd and keeps it open, unchanged, for as long as it lives, and
    // the AsyncFd owns `inner`.
    let registered = unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) };
    registered.map_err(io::Error::from)
}

/// The loaded XDP program and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    /// Which mode the program was attached in, if attached.
    pub attached_mode: Option<&'static str>,
}

impl Datapath {
    /// Loads the object and writes its config and keys; does not attach (tests run it through
    /// BPF_PROG_TEST_RUN this way).
    pub fn load(config: &XdpConfig, keys: &AuthKeys) -> Result<Self, BpfError> {
        let mut ebpf = EbpfLoader::new().load(EBPF_OBJECT).map_err(BpfError::Object)?;
        set_slot(&mut ebpf, CONFIG_MAP, config)?;
        set_slot(&mut ebpf, KEYS_MAP, keys)?;
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or(BpfError::NoProgram)?
            .try_into()
            .map_err(BpfError::Program)?;
        program.load().map_err(BpfError::Program)?;
        Ok(Self { ebpf, pin_dir: None, attached_mode: None })
    }

    /// Replaces the keys heartbeats are verified with (on SIGHUP).
    pub fn set_keys(&mut self, keys: &AuthKeys) -> Result<(), BpfError> {
        set_slot(&mut self.ebpf, KEYS_MAP, keys)
    }

    /// The XDP program, for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(XDP_PROGRAM)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("the program was loaded as XDP in Datapath::load")
    }

    /// Attaches to `iface` in the requested mode; `auto` tries native first, then generic.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<&'static str, BpfError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(XDP_PROGRAM)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("the program was loaded as XDP in Datapath::load");
        let attempts: &[(AyaXdpMode, &'static str)] = match mode {
            XdpMode::Auto => &[(AyaXdpMode::Driver, "native"), (AyaXdpMode::Skb, "skb")],
            XdpMode::Native => &[(AyaXdpMode::Driver, "native")],
            XdpMode::Skb => &[(AyaXdpMode::Skb, "skb")],
        };
        let mut failure = None;
        for &(aya_mode, name) in attempts {
            match program.attach(iface, aya_mode) {
                Ok(_link) => {
                    self.attached_mode = Some(name);
                    return Ok(name);
                }
                Err(source) => failure = Some((name, source)),
            }
        }
        let (mode, source) = failure.expect("every mode lists at least one attempt");
        Err(BpfError::Attach { iface: iface.to_string(), mode, source })
    }

    /// Pins every map under `dir` (replacing a crashed instance's stale pins), so that
    /// `bpftool map dump pinned DIR/peers` works while the agent runs. Mounts a bpf filesystem on
    /// /sys/fs/bpf first if there is none (as inside `ip netns exec`).
    pub fn pin(&mut self, dir: &Path) -> Result<(), BpfError> {
        let pin_err = |source: PinDirError| BpfError::Pin { path: dir.to_path_buf(), source };
        ensure_bpffs(dir).map_err(pin_err)?;
        fs::create_dir_all(dir).map_err(|err| pin_err(PinDirError::Io("creating it".into(), err)))?;
        for (map_name, file) in PINNED_MAPS {
            let path = dir.join(file);
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a stale pin"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(pin_err(PinDirError::Io(format!("removing the stale {file}"), err))),
            }
            let map = self.ebpf.map(map_name).ok_or(BpfError::NoMap(map_name))?;
            map.pin(&path).map_err(|err| pin_err(PinDirError::PinMap(file, err)))?;
        }
        self.pin_dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// Every peer the XDP program has recorded.
    pub fn peers(&self) -> Result<Vec<(PeerKey, PeerRecord)>, BpfError> {
        let map = self.ebpf.map(PEERS_MAP).ok_or(BpfError::NoMap(PEERS_MAP))?;
        let map_err = |err| BpfError::Map(PEERS_MAP, err);
        let peers: HashMap<&MapData, PeerKey, PeerRecord> = HashMap::try_from(map).map_err(map_err)?;
        peers.iter().collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<XdpStats, BpfError> {
        let map = self.ebpf.map(STATS_MAP).ok_or(BpfError::NoMap(STATS_MAP))?;
        let map_err = |err| BpfError::Map(STATS_MAP, err);
        let per_cpu: PerCpuArray<&MapData, XdpStats> = PerCpuArray::try_from(map).map_err(map_err)?;
        let values = per_cpu.get(&0, 0).map_err(map_err)?;
        let mut total = XdpStats::default();
        for value in values.iter() {
            total.add(value);
        }
        Ok(total)
    }

    /// Takes the event ring buffer (once), for tests that read it directly.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self.ebpf.take_map(EVENTS_MAP).ok_or(BpfError::NoMap(EVENTS_MAP))?;
        RingBuf::try_from(map).map_err(|err| BpfError::Map(EVENTS_MAP, err))
    }

    /// Takes the event ring buffer (once), registered with the tokio runtime for the agent's
    /// loop to wait on.
    pub fn events(&mut self) -> Result<Events, BpfError> {
        readable_fd(self.take_events()?).map(Events).map_err(BpfError::Runtime)
    }

    /// Forwards the program's aya-log messages to `tracing`, from a task on the tokio runtime.
    /// A program built without logs is no error: there is nothing to forward.
    pub fn forward_logs(&mut self) -> Result<(), BpfError> {
        let logger = match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => logger,
            Err(err) => {
                tracing::warn!(error = &err as &dyn std::error::Error, "XDP logs unavailable");
                return Ok(());
            }
        };
        let mut logger = readable_fd(logger).map_err(BpfError::Runtime)?;
        tokio::spawn(async move {
            while let Ok(mut guard) = logger.readable_mut().await {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
        Ok(())
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        // The program detaches when its link is dropped with `ebpf`; the pins must go by hand or
        // they would keep the maps alive.
        if let Some(dir) = self.pin_dir.take() {
            for (_, file) in PINNED_MAPS {
                let _ = fs::remove_file(dir.join(file));
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// Writes `value` into slot 0 of the one-slot array `name`.
fn set_slot<T: aya::Pod>(ebpf: &mut Ebpf, name: &'static str, value: &T) -> Result<(), BpfError> {
    let map = ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?;
    let mut array: Array<_, T> = Array::try_from(map).map_err(|err| BpfError::Map(name, err))?;
    array.set(0, value, 0).map_err(|err| BpfError::Map(name, err))
}

/// Makes sure `dir` lies on a bpf filesystem, mounting one on /sys/fs/bpf when that is where
/// `dir` lies and nothing is mounted there (`ip netns exec` remounts /sys without one).
fn ensure_bpffs(dir: &Path) -> Result<(), PinDirError> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if fs_magic(existing)? == BPF_FS_MAGIC {
        return Ok(());
    }
    let bpffs_root = Path::new("/sys/fs/bpf");
    if !dir.starts_with(bpffs_root) || !bpffs_root.is_dir() {
        return Err(PinDirError::NotBpffs(existing.display().to_string()));
    }
    let target = CString::new(bpffs_root.as_os_str().as_bytes()).expect("no NUL in a literal path");
    // SAFETY: all arguments are valid NUL-terminated strings; data may be null.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(PinDirError::Mount(io::Error::last_os_error()));
    }
    tracing::info!("mounted a bpf filesystem on /sys/fs/bpf");
    Ok(())
}

fn fs_magic(path: &Path) -> Result<i64, PinDirError> {
    let statfs_err = |err| PinDirError::Io(format!("statfs {}", path.display()), err);
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| statfs_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: statfs is plain old data for which all zeroes is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) } != 0 {
        return Err(statfs_err(io::Error::last_os_error()));
    }
    Ok(stat.f_type)
}
