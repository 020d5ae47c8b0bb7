//! `cargo xtask deb`: a Debian package of the agent, assembled with `dpkg-deb`: the release
//! binary, the systemd unit, a man page and shell completions generated from the command line's
//! own definition (`ha-agent generate`), and an example config.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{deps, run_in_workspace, workspace};

/// Where the package is written.
const OUT_DIR: &str = "target/debian";

/// Builds the package; returns its path.
pub fn build() -> anyhow::Result<PathBuf> {
    deps::ensure(false)?;
    run_in_workspace(Command::new("cargo").args([
        "build",
        "--release",
        "--locked",
        "--package",
        "ha-agent",
    ]))?;
    let root = workspace();
    let binary = root.join("target/release/ha-agent");
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let name = format!("ha-agent_{version}_{arch}");
    let staging = root.join(OUT_DIR).join(&name);
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }

    install(&binary, &staging.join("usr/sbin/ha-agent"), 0o755)?;
    install(
        &root.join("packaging/ha-agent.service"),
        &staging.join("lib/systemd/system/ha-agent.service"),
        0o644,
    )?;
    install(
        &root.join("packaging/ha-agent.toml"),
        &staging.join("usr/share/doc/ha-agent/examples/ha-agent.toml"),
        0o644,
    )?;
    install(&root.join("README.md"), &staging.join("usr/share/doc/ha-agent/README.md"), 0o644)?;
    let man = staging.join("usr/share/man/man8/ha-agent.8");
    write(&man, &generated(&binary, &["man"])?, 0o644)?;
    run_in_workspace(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&man))?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/ha-agent"),
        ("zsh", "usr/share/zsh/vendor-completions/_ha-agent"),
        ("fish", "usr/share/fish/vendor_completions.d/ha-agent.fish"),
    ] {
        write(&staging.join(path), &generated(&binary, &["completions", shell])?, 0o644)?;
    }
    let control = format!(
        "Package: ha-agent\nVersion: {version}\nArchitecture: {arch}\nSection: net\nPriority: optional\n\
         Maintainer: ha-agent developers <dev@ha-agent.invalid>\nDepends: libc6\n\
         Description: eBPF-accelerated failover of virtual IPs\n \
         Nodes on one LAN share virtual IPs; heartbeats are checked in XDP and the most worthy live\n \
         node holds the VIPs, taking over in well under a second, handing over without a lost\n \
         packet on a planned stop, with authenticated heartbeats and self-fencing.\n"
    );
    write(&staging.join("DEBIAN/control"), control.as_bytes(), 0o644)?;

    let package = root.join(OUT_DIR).join(format!("{name}.deb"));
    run_in_workspace(
        Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&staging).arg(&package),
    )?;
    Ok(package)
}

/// What `ha-agent generate ARGS…` prints.
fn generated(binary: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out =
        Command::new(binary).arg("generate").args(args).output().context("running ha-agent generate")?;
    if !out.status.success() {
        bail!("ha-agent generate {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command.output().with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    write(to, &fs::read(from).with_context(|| format!("reading {}", from.display()))?, mode)
}

fn write(to: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}
