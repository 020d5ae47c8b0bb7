//! The peer table read through memory: `PEERS` and `PEER_COUNT` are `BPF_F_MMAPABLE` arrays
//! mapped into the agent, so that reading every peer at every poll costs no syscall. With 256
//! groups of 8 nodes the table holds 1,792 records: read with `BPF_MAP_LOOKUP_BATCH` that was
//! about 0.3 ms of kernel time per poll on the test machine, read from memory it is a copy.

use std::io;

use aya::maps::Map;
use ha_common::{PeerKey, PeerRecord, MAX_PEERS, PEER_COUNT_SLACK};

use super::mapping::{array, Mapping};

/// The XDP program's peer records, mapped into this process.
pub(super) struct PeerTable {
    records: Mapping,
    count: Mapping,
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
        let at = self.records.base().as_ptr().cast::<PeerRecord>().wrapping_add(slot as usize);
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
        let handed_out = unsafe { self.count.base().as_ptr().cast::<u64>().read_volatile() };
        let end =
            u32::try_from(handed_out).unwrap_or(u32::MAX).saturating_add(PEER_COUNT_SLACK).min(MAX_PEERS);
        for record in (0..end).filter_map(|slot| self.get(slot)) {
            f(record.key(), record);
        }
    }
}
