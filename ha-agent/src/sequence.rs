//! Heartbeat sequence numbers that keep increasing across restarts whatever the wall clock does.
//!
//! A sequence is an epoch in the high 32 bits and a per-run counter in the low 32. The epoch is
//! kept in `STATE_DIR/epoch`, raised by one at every start and written durably (a new file,
//! fsynced, renamed over the old, the directory fsynced) before the first heartbeat goes out. So
//! a restart is heard at once even after the clock stepped back, and a capture of an earlier run
//! stays a replay. The first epoch of a node (no file yet) is the wall clock in seconds: that lies
//! above the wall-clock-nanosecond sequences of the versions before this scheme, so an upgrade is
//! heard at once too.

use std::{
    fs, io,
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

/// The file name of the epoch in the state directory.
pub const EPOCH_FILE: &str = "epoch";

/// Why the epoch could not be raised.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    /// Reading or writing the state directory failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// read, create or write.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The epoch file holds no number.
    #[error("{} holds no epoch: remove it to start a new one", .0.display())]
    Malformed(PathBuf),
    /// 2^32 starts: the epoch cannot grow any more.
    #[error("{}: the epoch cannot grow any more: remove it (peers must restart to accept the new one)", .0.display())]
    Exhausted(PathBuf),
}

/// The epoch of this run: the stored one plus one, or the wall clock in seconds on a first start;
/// written durably to `dir` before it is returned.
pub fn next_epoch(dir: &Path) -> Result<u32, SequenceError> {
    let path = dir.join(EPOCH_FILE);
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| SequenceError::Io { action, path, source }
    };
    let next = match fs::read_to_string(&path) {
        Ok(text) => {
            let stored: u32 = text.trim().parse().map_err(|_| SequenceError::Malformed(path.clone()))?;
            stored.checked_add(1).ok_or_else(|| SequenceError::Exhausted(path.clone()))?
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => first_epoch(),
        Err(err) => return Err(io_err("read", &path)(err)),
    };
    store_epoch(dir, next).map_err(|(action, at, err)| io_err(action, &at)(err))?;
    Ok(next)
}

/// Writes `epoch` to `dir` durably; on failure, what failed, on which path.
fn store_epoch(dir: &Path, epoch: u32) -> Result<(), (&'static str, PathBuf, io::Error)> {
    fs::create_dir_all(dir).map_err(|err| ("create", dir.to_path_buf(), err))?;
    let path = dir.join(EPOCH_FILE);
    let temporary = dir.join(format!("{EPOCH_FILE}.new"));
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        writeln!(file, "{epoch}")?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        // The rename is durable only once the directory is.
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|err| ("write", path.clone(), err))
}

/// The wall clock in seconds (on 32 bits until 2106), the epoch of a node's first start.
fn first_epoch() -> u32 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs());
    u32::try_from(seconds).unwrap_or(u32::MAX - 1).max(1)
}

/// The first sequence number of a run of epoch `epoch`.
#[must_use]
pub fn first_sequence(epoch: u32) -> u64 {
    u64::from(epoch) << 32
}

/// The epoch a sequence number lies in: once a long run's counter overflows into the next
/// epoch (2^32 heartbeats: 13 years at 100 ms), that epoch must be stored too.
#[must_use]
pub fn epoch_of(sequence: u64) -> u32 {
    (sequence >> 32) as u32
}

/// Stores `epoch` if a long run's counter reached it (see [`epoch_of`]).
pub fn note_epoch(dir: &Path, epoch: u32) -> Result<(), SequenceError> {
    store_epoch(dir, epoch).map_err(|(action, path, source)| SequenceError::Io { action, path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ha-agent-epoch-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn every_start_raises_the_epoch_whatever_the_clock() {
        let dir = scratch("raise");
        let first = next_epoch(&dir).unwrap();
        assert!(first > 1_700_000_000, "the first epoch is the wall clock in seconds");
        assert_eq!(next_epoch(&dir).unwrap(), first + 1);
        // A clock stepped back changes nothing: the stored epoch rules.
        fs::write(dir.join(EPOCH_FILE), "5\n").unwrap();
        assert_eq!(next_epoch(&dir).unwrap(), 6);
        assert_eq!(fs::read_to_string(dir.join(EPOCH_FILE)).unwrap(), "6\n");
        assert!(!dir.join("epoch.new").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sequences_order_by_epoch_then_count() {
        // A new run's first heartbeat is above anything the run before sent (if it stayed in its
        // epoch), and above the nanosecond sequences of the scheme before.
        assert!(first_sequence(7) > first_sequence(6) + u64::from(u32::MAX) - 1);
        let wall_clock_ns_2026 = 1_795_000_000_000_000_000u64;
        assert!(first_sequence(1_795_000_000) > wall_clock_ns_2026);
        assert_eq!(epoch_of(first_sequence(9) + 12), 9);
    }

    #[test]
    fn a_bad_epoch_file_is_one_clear_line() {
        let dir = scratch("bad");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(EPOCH_FILE), "soon\n").unwrap();
        let err = next_epoch(&dir).unwrap_err().to_string();
        assert!(err.contains("holds no epoch"), "{err}");
        fs::write(dir.join(EPOCH_FILE), format!("{}\n", u32::MAX)).unwrap();
        assert!(matches!(next_epoch(&dir), Err(SequenceError::Exhausted(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
