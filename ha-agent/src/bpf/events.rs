//! The XDP program's event ring buffer, waited on from the tokio runtime.

use std::io;

use aya::maps::{MapData, RingBuf};
use ha_common::{change, PeerEvent, PeerKey};
use tokio::io::unix::AsyncFd;

/// The XDP program's ring buffer of [`PeerEvent`]s, registered with the tokio runtime.
pub struct Events(pub(super) AsyncFd<RingBuf<MapData>>);

impl Events {
    /// Waits until the program has written at least one event, then drains the buffer; returns
    /// the silence watches among them that fired (group and peer; see
    /// [`ha_common::SilenceWatch`]). Needs a tokio runtime.
    pub async fn next_batch(&mut self) -> io::Result<Vec<PeerKey>> {
        let mut guard = self.0.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut silent = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<PeerEvent>() {
                // SAFETY: the XDP program writes whole PeerEvents; read_unaligned copes with any
                // offset.
                let event: PeerEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                tracing::debug!(
                    node = format_args!("{:#x}", event.node_id),
                    changes = event.changes,
                    "peer event"
                );
                if event.changes & change::SILENT != 0 {
                    silent.push(PeerKey { group: event.group, node_id: event.node_id });
                }
            }
        }
        guard.clear_ready();
        Ok(silent)
    }
}

/// Registers a BPF ring buffer (or aya-log's, which wraps one) with the runtime for readability.
pub(super) fn readable_fd<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd and keeps it open, unchanged, for as long as it lives, and
    // the AsyncFd owns `inner`.
    let registered = unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) };
    registered.map_err(io::Error::from)
}
