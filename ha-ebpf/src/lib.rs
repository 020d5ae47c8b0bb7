//! Empty library target: it lets ha-agent declare ha-ebpf as a build dependency, so that cargo
//! rebuilds the agent when the XDP program changes. The program itself is the `ha-ebpf` binary.
#![no_std]
