//! `cargo xtask …`: the project's tasks.
//!
//! - `install-deps`: installs what building and testing need, idempotently (apt packages, the
//!   nightly `rust-src` component, bpf-linker 0.10.3). `--check` only reports what is missing.
//! - `build-ebpf`: builds the XDP object alone and prints its path.
//! - `demo`: a LAN of three agents and a client in network namespaces; a failover, a heal and a
//!   planned stop, with the outage the client saw.
//! - `lint`: formatting, clippy (also on the XDP program, for its BPF target) and rustdoc, any
//!   warning an error: what CI runs before the tests.
//! - `test`: every test: unit, XDP through BPF_PROG_TEST_RUN, network namespaces.
//! - `bench`: the failover benchmark, side by side with keepalived when it is installed.
//! - `deb`: a Debian package (binary, systemd unit, man page, completions, example config).

mod bench;
mod deb;
mod demo;
mod deps;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ha-agent's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (apt packages, rust-src, bpf-linker).
    InstallDeps {
        /// Only report what is missing.
        #[arg(long)]
        check: bool,
    },
    /// Build the XDP object alone and print its path (for bpftool and llvm-objdump).
    BuildEbpf,
    /// Three agents and a client in network namespaces: failover, heal and planned stop.
    Demo,
    /// The failover benchmark: outages, false transitions, CPU and XDP cost (needs root).
    Bench(bench::BenchArgs),
    /// Check formatting, clippy (user space and the XDP program) and the docs; any warning fails.
    Lint,
    /// Build a Debian package in target/debian and print its path.
    Deb,
    /// Run every test (needs root: namespaces, XDP, BPF_PROG_TEST_RUN).
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::InstallDeps { check } => deps::ensure(!check),
        Task::BuildEbpf => build_ebpf().map(|path| println!("{}", path.display())),
        Task::Demo => demo::run(),
        Task::Lint => lint(),
        Task::Deb => deb::build().map(|path| println!("{}", path.display())),
        Task::Test { args } => test(&args),
        Task::Bench(args) => bench::run(&args),
    };
    if let Err(err) = result {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask's parent directory).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

/// Runs a command in the workspace, failing if it fails.
fn run_in_workspace(command: &mut Command) -> anyhow::Result<()> {
    let status =
        command.current_dir(workspace()).status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn require_root(task: &str) -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`cargo xtask {task}` needs root (network namespaces, XDP): run it as root, or with sudo -E");
    }
    Ok(())
}

/// Installs what is missing, builds the release agent, and points the test-LAN fixtures at it.
fn use_release_agent() -> anyhow::Result<()> {
    deps::ensure(true)?;
    eprintln!("building ha-agent (release)…");
    run_in_workspace(Command::new("cargo").args(["build", "--release", "--package", "ha-agent"]))?;
    // SAFETY: single-threaded at this point; the fixtures read it when they spawn agents.
    unsafe { std::env::set_var("HA_AGENT_BIN", workspace().join("target/release/ha-agent")) };
    Ok(())
}

/// Builds the XDP object exactly as ha-agent's build.rs (aya-build) does, into target/ebpf.
fn build_ebpf() -> anyhow::Result<PathBuf> {
    deps::ensure(false)?;
    let target_dir = workspace().join("target/ebpf");
    let rustflags = ["--cfg=bpf_target_arch=\"x86_64\"", "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f");
    run_in_workspace(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "build", "--package", "ha-ebpf", "--bins", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--target-dir"])
            .arg(&target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )?;
    Ok(target_dir.join("bpfel-unknown-none/release/ha-ebpf"))
}

/// `cargo fmt --check`, clippy and rustdoc with every warning an error, for user space and for
/// the XDP program (nightly, its BPF target, as it is built).
fn lint() -> anyhow::Result<()> {
    deps::ensure(false)?;
    run_in_workspace(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    run_in_workspace(Command::new("cargo").args([
        "clippy",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_in_workspace(
        Command::new("cargo").args(["doc", "--no-deps", "--locked"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run_in_workspace(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "clippy", "--locked", "--package", "ha-ebpf", "--release"])
            .args([
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
                "target/ebpf-clippy",
            ])
            .args(["--", "-D", "warnings"])
            .env("CARGO_ENCODED_RUSTFLAGS", "--cfg=bpf_target_arch=\"x86_64\"")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
}

/// Builds the agent (debug) and the Debian package, and runs every test of the default members
/// against them.
fn test(extra: &[String]) -> anyhow::Result<()> {
    require_root("test")?;
    deps::ensure(false)?;
    run_in_workspace(Command::new("cargo").args(["build", "--package", "ha-agent"]))?;
    let binary = workspace().join("target/debug/ha-agent");
    let package = deb::build()?;
    run_in_workspace(
        Command::new("cargo")
            .arg("test")
            .args(extra)
            .env("HA_AGENT_BIN", &binary)
            .env("HA_AGENT_DEB", &package),
    )
}
