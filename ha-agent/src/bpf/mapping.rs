//! A shared memory mapping of a `BPF_F_MMAPABLE` array map: how the agent reads the peer table
//! and writes the fence without a syscall each time.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::{Map, MapData};

/// One shared mapping of an array map, unmapped when dropped.
pub(super) struct Mapping {
    base: NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of the array map `map` (its values, back to back), read-only
    /// unless `writable`.
    pub(super) fn new(map: &MapData, len: usize, writable: bool) -> io::Result<Self> {
        let fd = map.fd().as_fd().as_raw_fd();
        let protection = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping of a file descriptor this process holds, at an address the
        // kernel picks; the kernel checks that `len` fits the map and that it is mappable.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, protection, libc::MAP_SHARED, fd, 0) };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base).ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Self { base, len })
    }

    /// The mapping's first byte (page-aligned).
    pub(super) fn base(&self) -> NonNull<libc::c_void> {
        self.base
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length, unmapped once; no reference into
        // it outlives `self` (readers copy values out).
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory, valid from any thread of the process; its users
// read and write it by value, with volatile accesses.
unsafe impl Send for Mapping {}

/// The `Map::Array` behind `map`, or an error naming what it is instead.
pub(super) fn array(map: &Map) -> io::Result<&MapData> {
    match map {
        Map::Array(data) => Ok(data),
        _ => Err(io::Error::other("not an array map")),
    }
}
