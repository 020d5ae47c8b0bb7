//! The peer table read through memory: `PEERS` and `PEER_COUNT` are `BPF_F_MMAPABLE` arrays
//! mapped into the agent, so that reading every peer at every poll costs no syscall. With 256
//! groups of 8 nodes the table holds 1,792 records: read with `BPF_MAP_LOOKUP_BATCH` that was
//! about 0.3 ms of kernel time per poll on the test machine, read from memory it is a copy.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::{Map, MapData};
use ha_common::{PeerKey, PeerRecord, MAX_PEERS, PEER_COUNT_SLACK};

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

/// The XDP program's peer records, mapped into this process.
pub(super) struct PeerTable {
    records: Mapping,
    count: Mapping,
}

/// The `Map::Array` behind `map`, or an error naming what it is instead.
pub(super) fn array(map: &Map) -> io::Result<&MapData> {
    match map {
        Map::Array(data) => Ok(data),
        _ => Err(io::Error::other("not an array map")),
    }
}

impl PeerTable {
    /// Maps `PEERS` (`records`) and `PEER_COUNT` (`count`).
    pub(super) fn new(records: &Map, count: &Map) -> io::Result<Self> {
        let records = Mapping::new(array(records)?, MAX_PEERS as usize * size_of::<PeerRecord>(), false)?;
        // A one-slot array of u64: the kernel maps whole pages, and the value starts the first.
        let count = Mapping::new(array(count)?, size_of::<u64>(), false)?;
        Ok(Self { records, count })
    }

    /// The record in `slot`, if the slot was handed out and written.
    pub(super) fn get(&self, slot: u32) -> Option<PeerRecord> {
        if slot >= MAX_PEERS {
            return None;
        }
        // `wrapping_add` needs no proof; the read below does.
        let at = self.records.base.as_ptr().cast::<PeerRecord>().wrapping_add(slot as usize);
        // SAFETY: `slot` is below MAX_PEERS, so the record lies inside the mapping, which is
        // page-aligned (and records are 8-byte multiples); the XDP program writes it while we
        // read, so it is read volatile, by value, and any bytes are a valid `PeerRecord` (Pod).
        let record = unsafe { at.read_volatile() };
        record.is_written().then_some(record)
    }

    /// Calls `f` with every record written so far, in slot order, and its key: no allocation
    /// (the whole table, collected, would be over glibc's mmap threshold at every poll).
    pub(super) fn each(&self, mut f: impl FnMut(PeerKey, PeerRecord)) {
        // SAFETY: the mapping holds at least one u64 at its page-aligned start, which the XDP
        // program writes whole; a volatile read sees some value it held.
        let handed_out = unsafe { self.count.base.as_ptr().cast::<u64>().read_volatile() };
        let end =
            u32::try_from(handed_out).unwrap_or(u32::MAX).saturating_add(PEER_COUNT_SLACK).min(MAX_PEERS);
        for record in (0..end).filter_map(|slot| self.get(slot)) {
            f(record.key(), record);
        }
    }
}
