//! The BPF edge's errors: each carries aya's (or the system's) error as its source.

use std::{io, path::PathBuf};

use aya::{
    maps::MapError,
    programs::{links::LinkError, ProgramError},
};

/// Errors of the BPF edge.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The object did not parse or its maps could not be created (no BPF support, not root).
    #[error("loading the XDP object failed")]
    Object(#[source] aya::EbpfError),
    /// The object has no program of the expected name.
    #[error("the XDP object has no program {0}")]
    NoProgram(&'static str),
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
    /// Setting a silence watch failed: the program's test run, or (`None`) a timer helper in it
    /// or the kernel, which refused the program at load.
    #[error("setting the silence watch of group {group}")]
    Watch {
        /// The group.
        group: u32,
        /// Why, if the run itself failed.
        #[source]
        source: Option<ProgramError>,
    },
    /// More groups than the program has room for.
    #[error("more than {0} groups")]
    TooManyGroups(u32),
    /// A map is missing from the object (or was already taken).
    #[error("map {0} is not in the XDP object")]
    NoMap(&'static str),
    /// A map is of the wrong kind, or reading or writing it failed.
    #[error("map {0}")]
    Map(&'static str, #[source] MapError),
    /// The XDP link could not be pinned, or a pinned one not reused.
    #[error("XDP link {}", path.display())]
    Link {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: LinkPinError,
    },
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

/// Why the XDP link could not be pinned or reused.
#[derive(Debug, thiserror::Error)]
pub enum LinkPinError {
    /// Opening, converting or replacing the link failed.
    #[error("reusing it")]
    Link(#[from] LinkError),
    /// Attaching the new program to the old link failed.
    #[error("replacing the program behind it")]
    Replace(#[from] ProgramError),
    /// Pinning failed.
    #[error("pinning it")]
    Pin(#[from] aya::pin::PinError),
    /// Removing the old pin failed.
    #[error("removing the old pin")]
    Remove(#[from] io::Error),
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
