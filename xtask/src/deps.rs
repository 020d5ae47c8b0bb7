//! What building, testing and the demo need, and how to install it. Idempotent: each step is
//! skipped when what it installs is already there.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

/// Commands the tests and the demo call, and the Debian package that has each.
const APT_COMMANDS: [(&str, &str); 7] = [
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("arping", "iputils-arping"),
    ("bpftool", "bpftool"),
    ("nft", "nftables"),
    ("faketime", "faketime"),
    ("ethtool", "ethtool"),
];

/// Files the tests and the benchmark read, and the Debian package that has each.
const APT_FILES: [(&str, &str); 1] =
    [("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core")];

/// The bpf-linker that works with this nightly's LLVM (newer ones want a newer LLVM).
const BPF_LINKER_VERSION: &str = "0.10.3";

/// Finds a command on PATH or in the sbin directories (bpftool lives in /usr/sbin).
pub fn which(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(command))
        .find(|candidate| candidate.is_file())
}

fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|o| o.status.success())
}

fn nightly_has_rust_src() -> bool {
    let Ok(output) = Command::new("rustc").args(["+nightly", "--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success() && Path::new(&sysroot).join("lib/rustlib/src/rust/library/core").is_dir()
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

/// Installs what is missing (`install`), or fails naming what to run.
pub fn ensure(install: bool) -> anyhow::Result<()> {
    let missing_commands = APT_COMMANDS.iter().filter(|(cmd, _)| which(cmd).is_none());
    let missing_files = APT_FILES.iter().filter(|(file, _)| !Path::new(file).is_file());
    let missing_packages: Vec<&str> = missing_commands.chain(missing_files).map(|(_, pkg)| *pkg).collect();
    let rust_src = nightly_has_rust_src();
    let linker = bpf_linker_ok();
    if missing_packages.is_empty() && rust_src && linker {
        return Ok(());
    }
    if !install {
        let mut steps = Vec::new();
        if !missing_packages.is_empty() {
            steps.push(format!("apt-get install -y {}", missing_packages.join(" ")));
        }
        if !rust_src {
            steps.push("rustup component add rust-src --toolchain nightly".into());
        }
        if !linker {
            steps.push(format!("cargo install bpf-linker@{BPF_LINKER_VERSION} --locked"));
        }
        bail!("missing prerequisites; run `cargo xtask install-deps` or: {}", steps.join("; "));
    }
    if !missing_packages.is_empty() {
        eprintln!("xtask: installing {}", missing_packages.join(" "));
        if !succeeds(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive")) {
            bail!("apt-get update failed (root needed)");
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing_packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get install {} failed", missing_packages.join(" "));
        }
    }
    if !rust_src {
        eprintln!("xtask: adding rust-src to the nightly toolchain");
        if !succeeds(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        {
            bail!("`rustup component add rust-src --toolchain nightly` failed");
        }
    }
    if !linker {
        eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
        let status = Command::new("cargo")
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"])
            .status()
            .context("running cargo install")?;
        if !status.success() {
            bail!("cargo install bpf-linker@{BPF_LINKER_VERSION} failed");
        }
    }
    Ok(())
}
