//! CLOCK_MONOTONIC: the clock of `bpf_ktime_get_ns`, so the agent's "now" and the XDP program's
//! timestamps (peers' last-seen times, the lease) compare directly.

use std::time::Duration;

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`, as a duration since boot.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A duration in whole nanoseconds, as the XDP program's clock counts.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds, for logs and the status report.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
