//! Builds the XDP program (`ha-ebpf`) with the nightly toolchain and bpf-linker, and leaves the
//! object in OUT_DIR, where `src/bpf.rs` embeds it: the release binary is self-contained.
use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("ha-agent has no parent directory"))?
        .join("ha-ebpf");
    let root_dir = metadata_root.to_str().context("non-UTF-8 path to ha-ebpf")?;
    aya_build::build_ebpf([Package { name: "ha-ebpf", root_dir, ..Default::default() }], Toolchain::default())
        .context(
            "building the XDP program failed; it needs `rustup component add rust-src --toolchain nightly` \
         and `cargo install bpf-linker@0.10.3 --locked` (or run `cargo xtask install-deps`)",
        )
}
