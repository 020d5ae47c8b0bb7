//! The BPF edge: load the embedded XDP object, configure it, attach it, pin its maps under the
//! per-instance pin directory, and read the peer and stats maps back.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{xdp::XdpMode as AyaXdpMode, Xdp},
    Ebpf, EbpfLoader,
};
use ha_common::{
    AuthKeys, PeerKey, PeerRecord, XdpConfig, XdpStats, CONFIG_MAP, EVENTS_MAP, KEYS_MAP, PEERS_MAP,
    STATS_MAP, XDP_PROGRAM,
};

use crate::config::XdpMode;

/// The XDP object built by `build.rs`, embedded so the binary is self-contained.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf"));

/// The maps pinned under the pin directory, by the file name `bpftool map dump pinned` takes.
/// `KEYS` is not pinned: the keys stay in this process and the kernel.
const PINNED_MAPS: [(&str, &str); 4] =
    [(PEERS_MAP, "peers"), (STATS_MAP, "stats"), (CONFIG_MAP, "config"), (EVENTS_MAP, "events")];

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors of the BPF edge.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The object did not load (verifier, no BPF support, not root).
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    /// The program did not attach to the interface.
    #[error("attaching XDP to {iface} failed: {reason}")]
    Attach {
        /// Interface.
        iface: String,
        /// Why.
        reason: String,
    },
    /// A map is missing from the object or of the wrong kind.
    #[error("map {0}: {1}")]
    Map(&'static str, String),
    /// The pin directory could not be set up.
    #[error("pin directory {path}: {reason}")]
    Pin {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
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
        let mut ebpf =
            EbpfLoader::new().load(EBPF_OBJECT).map_err(|err| BpfError::Load(error_chain(&err)))?;
        set_slot(&mut ebpf, CONFIG_MAP, config)?;
        set_slot(&mut ebpf, KEYS_MAP, keys)?;
        let program: &mut Xdp = ebpf
            .program_mut(XDP_PROGRAM)
            .ok_or_else(|| BpfError::Load(format!("program {XDP_PROGRAM} not in the object")))?
            .try_into()
            .map_err(|err: aya::programs::ProgramError| BpfError::Load(err.to_string()))?;
        program.load().map_err(|err| BpfError::Load(error_chain(&err)))?;
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
        let mut last = String::new();
        for &(aya_mode, name) in attempts {
            match program.attach(iface, aya_mode) {
                Ok(_link) => {
                    self.attached_mode = Some(name);
                    return Ok(name);
                }
                Err(err) => last = format!("{name} mode: {}", error_chain(&err)),
            }
        }
        Err(BpfError::Attach { iface: iface.to_string(), reason: last })
    }

    /// Pins every map under `dir` (replacing a crashed instance's stale pins), so that
    /// `bpftool map dump pinned DIR/peers` works while the agent runs. Mounts a bpf filesystem on
    /// /sys/fs/bpf first if there is none (as inside `ip netns exec`).
    pub fn pin(&mut self, dir: &Path) -> Result<(), BpfError> {
        let pin_err = |reason: String| BpfError::Pin { path: dir.to_path_buf(), reason };
        ensure_bpffs(dir).map_err(pin_err)?;
        fs::create_dir_all(dir).map_err(|err| pin_err(err.to_string()))?;
        for (map_name, file) in PINNED_MAPS {
            let path = dir.join(file);
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a stale pin"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(pin_err(format!("cannot remove stale {file}: {err}"))),
            }
            let map =
                self.ebpf.map(map_name).ok_or_else(|| BpfError::Map(map_name, "not in the object".into()))?;
            map.pin(&path).map_err(|err| pin_err(format!("pinning {file}: {err}")))?;
        }
        self.pin_dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// Every peer the XDP program has recorded.
    pub fn peers(&self) -> Result<Vec<(PeerKey, PeerRecord)>, BpfError> {
        let map = self.ebpf.map(PEERS_MAP).ok_or_else(|| BpfError::Map(PEERS_MAP, "missing".into()))?;
        let peers: HashMap<&MapData, PeerKey, PeerRecord> =
            HashMap::try_from(map).map_err(|err| BpfError::Map(PEERS_MAP, err.to_string()))?;
        peers.iter().collect::<Result<Vec<_>, _>>().map_err(|err| BpfError::Map(PEERS_MAP, err.to_string()))
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<XdpStats, BpfError> {
        let map = self.ebpf.map(STATS_MAP).ok_or_else(|| BpfError::Map(STATS_MAP, "missing".into()))?;
        let per_cpu: PerCpuArray<&MapData, XdpStats> =
            PerCpuArray::try_from(map).map_err(|err| BpfError::Map(STATS_MAP, err.to_string()))?;
        let values = per_cpu.get(&0, 0).map_err(|err| BpfError::Map(STATS_MAP, err.to_string()))?;
        let mut total = XdpStats::default();
        for value in values.iter() {
            total.add(value);
        }
        Ok(total)
    }

    /// Takes the event ring buffer (once) for the agent to poll through `AsyncFd`.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, BpfError> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or_else(|| BpfError::Map(EVENTS_MAP, "already taken".into()))?;
        RingBuf::try_from(map).map_err(|err| BpfError::Map(EVENTS_MAP, err.to_string()))
    }

    /// The loaded object, for aya-log.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
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
    let map = ebpf.map_mut(name).ok_or_else(|| BpfError::Map(name, "not in the object".into()))?;
    let mut array: Array<_, T> = Array::try_from(map).map_err(|err| BpfError::Map(name, err.to_string()))?;
    array.set(0, value, 0).map_err(|err| BpfError::Map(name, err.to_string()))
}

/// Makes sure `dir` lies on a bpf filesystem, mounting one on /sys/fs/bpf when that is where
/// `dir` lies and nothing is mounted there (`ip netns exec` remounts /sys without one).
fn ensure_bpffs(dir: &Path) -> Result<(), String> {
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if fs_magic(existing)? == BPF_FS_MAGIC {
        return Ok(());
    }
    let bpffs_root = Path::new("/sys/fs/bpf");
    if !dir.starts_with(bpffs_root) || !bpffs_root.is_dir() {
        return Err(format!(
            "not on a bpf filesystem; mount one first (mount -t bpf bpf {}) or use --pin-dir under one",
            existing.display()
        ));
    }
    let target = CString::new(bpffs_root.as_os_str().as_bytes()).expect("no NUL in a literal path");
    // SAFETY: all arguments are valid NUL-terminated strings; data may be null.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(format!("mounting a bpf filesystem on /sys/fs/bpf: {}", io::Error::last_os_error()));
    }
    tracing::info!("mounted a bpf filesystem on /sys/fs/bpf");
    Ok(())
}

fn fs_magic(path: &Path) -> Result<i64, String> {
    let c_path =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| "path holds a NUL byte".to_string())?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!("statfs {}: {}", path.display(), io::Error::last_os_error()));
    }
    Ok(stat.f_type as i64)
}

/// An error and its sources on one line (aya's errors nest the interesting part).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    // The verifier log is many lines; keep the last meaningful one for the one-line error.
    if text.contains('\n') {
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        let first = text.lines().next().unwrap_or("").to_string();
        return format!("{first} … {last}");
    }
    text
}
