//! The I/O of suspicion (`election/suspicion.rs`): a probe sent to the ACTIVE's last known
//! address with the burst recorded for the XDP program, and the answers it marked fed back.

use std::{net::SocketAddr, time::Duration};

use ha_common::{PeerKey, ProbeState};
use tracing::{debug, warn};

use super::agent::{Agent, AsDynError as _, Fed};
use crate::{
    clock::monotonic_now,
    election::{Event, Output},
    ids::NodeId,
    status::source_address,
};

impl Agent {
    /// Sends group `index`'s next probe to `to`; `first` starts a burst. A probe is numbered and
    /// signed as a heartbeat is, and the election hears whether it went out (not as a heartbeat:
    /// only the suspected ACTIVE hears it).
    pub(super) fn send_probe(&mut self, index: usize, to: NodeId, first: bool) -> Output {
        let group_id = self.groups[index].config.id;
        let record = match self.datapath.peer(PeerKey { group: group_id.0, node_id: to.0 }) {
            Ok(Some(record)) => record,
            Ok(None) => return Output::default(),
            Err(err) => {
                warn!(error = err.as_dyn(), "reading the probed peer's record failed");
                return Output::default();
            }
        };
        let address = SocketAddr::new(source_address(&record), self.config.port);
        let now = monotonic_now();
        // The sequence read, noted and sent under one lock: the pacer numbers heartbeats too.
        let mut paced = self.pacer.lock();
        let sequence = paced.outbox.sender.next_sequence();
        if first {
            self.groups[index].probe_started = now;
        }
        let previous = if first { None } else { self.datapath.probe(group_id.0).ok().flatten() };
        let burst = ProbeState {
            first_sequence: previous.map_or(sequence, |p| p.first_sequence),
            last_sequence: sequence,
            answered_ns: previous.map_or(0, |p| p.answered_ns),
            target: to.0,
            _pad0: 0,
        };
        if let Err(err) = self.datapath.set_probe(group_id.0, burst) {
            warn!(error = err.as_dyn(), "recording the probe for XDP failed");
        }
        paced.outbox.note_sending(1, now);
        let advert = self.groups[index].election.advertised(now);
        let result = paced.outbox.sender.send_probe(group_id, advert, to, address);
        drop(paced);
        match &result {
            Ok(sequence) => debug!(group = %group_id, peer = %to, %address, first, sequence, "probe sent"),
            Err(err) => debug!(group = %group_id, peer = %to, "sending a probe failed: {err}"),
        }
        self.groups[index].election.handle(Event::ProbeSent { now, ok: result.is_ok() })
    }

    /// The groups whose burst the XDP program marked answered: their elections hear of it.
    pub(super) fn probe_answers(&mut self) -> Fed {
        let now = monotonic_now();
        let mut fed = Vec::new();
        for (index, group) in self.groups.iter_mut().enumerate() {
            let Some(target) = group.election.probing() else { continue };
            let answered_at = match self.datapath.probe(group.config.id.0) {
                Ok(Some(probe)) if probe.target == target.0 && probe.answered_ns != 0 => {
                    Some(Duration::from_nanos(probe.answered_ns))
                }
                Ok(_) => None,
                Err(err) => {
                    warn!(error = err.as_dyn(), "reading the probe burst failed");
                    None
                }
            };
            if let Some(answered_at) = answered_at {
                let round_trip = answered_at.saturating_sub(group.probe_started);
                self.metrics.probe_answered(round_trip);
                debug!(group = %group.config.id, peer = %target, ?round_trip, "probe answered");
                fed.push((index, group.election.handle(Event::ProbeAnswered { now, from: target })));
            }
        }
        fed
    }
}
