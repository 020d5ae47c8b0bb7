//! The fence's record: built from the VIPs for the agent to write, and the one a predecessor
//! left pinned, which a restarted agent renews before it replaces that agent's program.

use std::{io, mem::offset_of, net::IpAddr, path::Path, time::Duration};

use aya::maps::{Array, Map, MapData};
use ha_common::{Fence, FENCE_KEEP_FLOWS, FENCE_MAP};

use super::mapping::{array, Mapping};

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex, MutexGuard, OnceLock, PoisonError,
};

use super::{BpfError, FENCE_PIN};

/// The thread that renews a predecessor's lease ([`PredecessorFence::keep_alive`]), and this
/// agent's own once it is handed over ([`KeepAlive::vouch_for`]); stops it when dropped.
pub struct KeepAlive {
    stop: Arc<AtomicBool>,
    /// This agent's own fence, renewed beside the predecessor's from [`KeepAlive::vouch_for`] on.
    own: Arc<OnceLock<SharedFence>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeepAlive {
    /// Renews `fence` (this agent's own, set up but not yet attached) too, at once and then with
    /// every renewal of the predecessor's, until dropped. The new program answers probes only
    /// within an answer window of its fence's last heartbeat (a little over an interval), and
    /// between setting up its fence and the loop's first heartbeat the agent attaches it and
    /// gets ready: 15-30 ms here, more on a busy machine, which at a 20 ms interval left the
    /// successor's probes unanswered just after the program was replaced (one restart in eight
    /// moved the VIP).
    pub fn vouch_for(&self, fence: SharedFence) {
        fence.lock().vouch(crate::clock::monotonic_now());
        let _ = self.own.set(fence);
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Woken rather than waited for: the loop's start waits on this.
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The `FENCE` map's one record, mapped into this process and written in place: the agent writes
/// it before every heartbeat, and a `bpf()` syscall each time was a tenth of an idle ACTIVE's
/// CPU on the test machine.
pub(super) struct FenceMemory(Mapping);

// `FenceMemory::write` addresses the fields as whole words of their own size.
const _: () = {
    assert!(offset_of!(Fence, renewed_ns) % 8 == 0 && offset_of!(Fence, lease_ns) % 8 == 0);
    assert!(offset_of!(Fence, last_sent_sequence) % 8 == 0 && offset_of!(Fence, answer_window_ns) % 8 == 0);
    assert!(offset_of!(Fence, heartbeat_ns) % 8 == 0);
    assert!(offset_of!(Fence, count) % 4 == 0 && offset_of!(Fence, flags) % 4 == 0);
};

impl FenceMemory {
    /// Maps `FENCE` (a `BPF_F_MMAPABLE` array of one record) for writing.
    pub(super) fn new(map: &Map) -> io::Result<Self> {
        Ok(Self(Mapping::new(array(map)?, size_of::<Fence>(), true)?))
    }

    /// Writes `fence` field by field, in the order of the struct and `count` last: the XDP
    /// program reads the fields while they change, and a count that arms the fence must not be
    /// seen before the fresh renewal it comes with.
    pub(super) fn write(&mut self, fence: &Fence) {
        let base = self.0.base().as_ptr();
        let put = |offset: usize, value: u64| {
            let at = base.cast::<u64>().wrapping_add(offset / size_of::<u64>());
            // SAFETY: the mapping holds one `Fence` at its page-aligned start and every u64 field
            // sits at a multiple of 8 in it (repr(C)); the XDP program only reads it, and a
            // volatile write is neither elided nor moved past the others.
            unsafe { at.write_volatile(value) };
        };
        let put32 = |offset: usize, value: u32| {
            let at = base.cast::<u32>().wrapping_add(offset / size_of::<u32>());
            // SAFETY: as above, for the two u32 fields at multiples of 4.
            unsafe { at.write_volatile(value) };
        };
        put(offset_of!(Fence, renewed_ns), fence.renewed_ns);
        put(offset_of!(Fence, lease_ns), fence.lease_ns);
        put(offset_of!(Fence, last_sent_sequence), fence.last_sent_sequence);
        put(offset_of!(Fence, answer_window_ns), fence.answer_window_ns);
        put(offset_of!(Fence, heartbeat_ns), fence.heartbeat_ns);
        put32(offset_of!(Fence, flags), fence.flags);
        put32(offset_of!(Fence, count), fence.count);
    }
}

/// The fence as this agent keeps it: the record last written and whether it is armed. Shared
/// (see [`SharedFence`]) by the loop, which sets and arms it, and the heartbeat pacer, which
/// renews it with every heartbeat round it sends.
pub struct FenceKeeper {
    /// The fence as last written (with its VIP count, even while `fencing` is off).
    fence: Fence,
    /// Whether the fence is armed: while no group holds VIPs it is written with a count of 0 (see
    /// [`FenceKeeper::keep`]).
    fencing: bool,
    /// The fence's record, mapped into memory for writing.
    memory: FenceMemory,
}

/// The fence keeper of one [`super::Datapath`], for every thread that writes it.
#[derive(Clone)]
pub struct SharedFence(Arc<Mutex<FenceKeeper>>);

impl SharedFence {
    pub(super) fn new(memory: FenceMemory) -> Self {
        Self(Arc::new(Mutex::new(FenceKeeper { fence: Fence::default(), fencing: true, memory })))
    }

    /// The keeper, for one write. A writer that panicked left a whole record behind (each write
    /// is a sequence of word stores), so a poisoned lock is taken as it is.
    pub fn lock(&self) -> MutexGuard<'_, FenceKeeper> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FenceKeeper {
    /// Sets what the fence guards (`count` VIPs, already in the `FENCED` map) and how long a
    /// renewal lasts (`fence`), and renews it at `now`.
    pub(super) fn set(&mut self, fence: Fence, count: u32, now: Duration) {
        self.fence = Fence { last_sent_sequence: self.fence.last_sent_sequence, count, ..fence };
        self.vouch(now);
    }

    /// Renews the lease at `now` and records that a heartbeat goes out now, carrying `sequence`
    /// (see [`Fence::last_sent_sequence`] and [`Fence::heartbeat_ns`]).
    pub fn note_sending(&mut self, now: Duration, sequence: u64) {
        self.fence.last_sent_sequence = sequence;
        self.vouch(now);
    }

    /// Renews the lease at `now` and vouches for the agent as a heartbeat would (probes are
    /// answered for another answer window), without a heartbeat: for a restarted agent that is
    /// alive but has not sent one yet (see [`KeepAlive::vouch_for`]).
    pub fn vouch(&mut self, now: Duration) {
        self.fence.heartbeat_ns = crate::clock::nanos(now);
        self.write(now);
    }

    /// Renews the lease at `now` with the fence armed, or disarms it (`armed` false); see
    /// [`super::Datapath::keep_fence`].
    pub(super) fn keep(&mut self, armed: bool, now: Duration) {
        let renewed = Duration::from_nanos(self.fence.renewed_ns);
        let fresh = now.saturating_sub(renewed) < Duration::from_millis(1);
        if armed == self.fencing && (fresh || !armed) {
            return;
        }
        self.fencing = armed;
        self.write(now);
    }

    fn write(&mut self, now: Duration) {
        self.fence.renewed_ns = crate::clock::nanos(now);
        let written = Fence { count: if self.fencing { self.fence.count } else { 0 }, ..self.fence };
        self.memory.write(&written);
    }
}

/// A fence with a lease of `lease` and probes answered within `answer_window` of a heartbeat;
/// `keep_flows` lets IP traffic to the VIPs through while fenced. The VIPs it guards, and so its
/// `count`, come with [`super::Datapath::set_fence`].
#[must_use]
pub fn fence(lease: Duration, answer_window: Duration, keep_flows: bool) -> Fence {
    Fence {
        lease_ns: crate::clock::nanos(lease),
        answer_window_ns: crate::clock::nanos(answer_window),
        flags: if keep_flows { FENCE_KEEP_FLOWS } else { 0 },
        ..Fence::default()
    }
}

/// The `FENCED` map's key of `addr`: IPv4 as an IPv4-mapped IPv6 address, as the XDP program
/// looks it up.
#[must_use]
pub fn fenced_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(addr) => ha_common::fenced_key_v4(addr.octets()),
        IpAddr::V6(addr) => addr.octets(),
    }
}

/// The fence a previous agent with the same pin directory left pinned: read before this agent
/// pins its own maps there, since how recently that agent renewed its lease tells a restart
/// within the dead time from a leftover of long ago; and renewed while this agent loads its
/// program, so that the old one, still attached, does not fence the VIPs meanwhile.
pub struct PredecessorFence {
    array: Array<MapData, Fence>,
    fence: Fence,
}

impl PredecessorFence {
    /// The fence pinned in `dir`, if any (none on a first start, or after a clean stop).
    #[must_use]
    pub fn open(dir: &Path) -> Option<Self> {
        let map = Map::from_map_data(MapData::from_pin(dir.join(FENCE_PIN)).ok()?).ok()?;
        let array: Array<MapData, Fence> = Array::try_from(map).ok()?;
        let fence = array.get(&0, 0).ok()?;
        Some(Self { array, fence })
    }

    /// Whether its lease still held at `now`: its agent was alive less than a dead time ago.
    #[must_use]
    pub fn alive(&self, now: Duration) -> bool {
        self.fence.count != 0 && !self.fence.expired(crate::clock::nanos(now))
    }

    /// How long before `now` its agent last renewed the lease.
    #[must_use]
    pub fn renewed_before(&self, now: Duration) -> Duration {
        now.saturating_sub(Duration::from_nanos(self.fence.renewed_ns))
    }

    /// Keeps its lease renewed every `period` from a thread of its own until the returned guard is
    /// dropped: while a restarted agent loads and attaches its own program (a good part of an
    /// interval), the old program keeps the VIPs unfenced and answers the successor's probes, so
    /// that a planned restart moves nothing.
    #[must_use]
    pub fn keep_alive(mut self, period: Duration) -> KeepAlive {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let own: Arc<OnceLock<SharedFence>> = Arc::default();
        let own_fence = Arc::clone(&own);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let now = crate::clock::monotonic_now();
                let _ = self.renew(now);
                if let Some(fence) = own_fence.get() {
                    fence.lock().vouch(now);
                }
                std::thread::park_timeout(period);
            }
        });
        KeepAlive { stop, own, thread: Some(thread) }
    }

    /// Renews its lease at `now`, and vouches for it as a heartbeat would: the restarted agent
    /// is alive, and probes of its predecessor's ACTIVE are answered while it loads.
    pub fn renew(&mut self, now: Duration) -> Result<(), BpfError> {
        self.fence.renewed_ns = crate::clock::nanos(now);
        self.fence.heartbeat_ns = self.fence.renewed_ns;
        self.array.set(0, self.fence, 0).map_err(|err| BpfError::Map(FENCE_MAP, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_has_its_lease_and_keys_the_vips_as_the_program_does() {
        let vips: Vec<crate::vip::Vip> =
            ["192.0.2.100/24", "2001:db8::100/64"].iter().map(|v| v.parse().unwrap()).collect();
        let fence = fence(Duration::from_millis(350), Duration::from_millis(115), true);
        assert_eq!((fence.lease_ns, fence.flags), (350_000_000, FENCE_KEEP_FLOWS));
        assert_eq!(fenced_key(vips[0].addr), ha_common::fenced_key_v4([192, 0, 2, 100]));
        assert_eq!(fenced_key(vips[1].addr), "2001:db8::100".parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
}
