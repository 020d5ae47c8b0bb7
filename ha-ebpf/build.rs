//! Rebuild the eBPF object when bpf-linker changes (a new linker can change the object), and
//! let LLVM access memory at any alignment.
//!
//! bpf-linker generates the code, so the target feature is a linker argument (aya-build sets
//! the compiler's flags itself). Without it every access to the packet, whose alignment is
//! unknown, is split into single bytes: a heartbeat's 40-byte payload took 40 loads and 40
//! stores to copy. The verifier allows misaligned packet and map value accesses on
//! architectures with efficient unaligned access (x86-64, arm64), but never a misaligned
//! stack access: a struct the program builds on the stack whose fields LLVM may merge into
//! wider stores must be aligned to 8 (`PeerEvent`). The xdp tests load both programs, so a
//! stack access that breaks this rule fails them.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
