//! What the benchmark measures: one [`Scenario`] per row of the report.

/// One measured figure of the benchmark, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// The client's outage when the ACTIVE's link is cut.
    LinkCut,
    /// From the cut to the successor holding the VIP.
    LinkCutTakeover,
    /// The client's outage when the ACTIVE's daemon is killed (SIGKILL).
    Crash,
    /// From the kill to the successor holding the VIP.
    CrashTakeover,
    /// MACs answering ARP for the VIP a dead time after the crash (1 is right: the dead node's
    /// copy of the VIP must not answer).
    CrashMacs,
    /// The client's outage when the ACTIVE stops on SIGTERM.
    PlannedStop,
    /// The client's outage when a more worthy node joins.
    Preemption,
    /// The client's outage when the ACTIVE's daemon is killed and started again at once.
    RestartOutage,
    /// VIP moves caused by that restart.
    RestartMoves,
    /// VIP moves while a STANDBY is stopped (SIGSTOP) for 2 s.
    Stall,
    /// VIP moves during the 1 % loss soak.
    Loss,
    /// VIP moves during the 5 % loss soak.
    Loss5,
    /// CPU of the ACTIVE, in % of a core.
    CpuActive,
    /// CPU of the least worthy STANDBY, in % of a core.
    CpuStandby,
    /// CPU of the STANDBY next in line (the one that would take over), in % of a core.
    CpuNext,
    /// XDP time per valid signed heartbeat.
    XdpValid,
    /// XDP time per replayed heartbeat.
    XdpReplayed,
    /// XDP time per forged heartbeat.
    XdpForged,
    /// XDP time per forged heartbeat while two keys are accepted.
    XdpForgedTwoKeys,
    /// XDP time per probe answered (recorded as the prober's heartbeat, answered with XDP_TX).
    XdpProbeAnswer,
    /// Rate at which the attacker sent forged heartbeats.
    FloodRate,
    /// VIP moves during a forged flood on a quiet LAN.
    FloodTransitions,
    /// The client's outage for a link cut under a forged flood.
    FloodLinkCut,
    /// From that cut to the successor holding the VIP.
    FloodLinkCutTakeover,
    /// Fuzz cases of the decoder and verifier that ran without a panic.
    FuzzCases,
    /// 256 groups × 8 nodes: from the first agent's start to every group held by its most
    /// worthy node alone.
    ScaleSettle,
    /// 256 groups × 8 nodes: each node's agent CPU, in % of a core (one sample per node).
    ScaleCpu,
    /// 256 groups × 8 nodes: the XDP program's mean time per frame, as the kernel counts it.
    ScaleXdp,
    /// 256 groups × 8 nodes: frames through each node's XDP program per second.
    ScaleXdpRate,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Self; 29] = [
        Self::LinkCut,
        Self::LinkCutTakeover,
        Self::Crash,
        Self::CrashTakeover,
        Self::CrashMacs,
        Self::PlannedStop,
        Self::Preemption,
        Self::RestartOutage,
        Self::RestartMoves,
        Self::Stall,
        Self::Loss,
        Self::Loss5,
        Self::CpuActive,
        Self::CpuStandby,
        Self::CpuNext,
        Self::XdpValid,
        Self::XdpReplayed,
        Self::XdpForged,
        Self::XdpForgedTwoKeys,
        Self::XdpProbeAnswer,
        Self::FloodRate,
        Self::FloodTransitions,
        Self::FloodLinkCut,
        Self::FloodLinkCutTakeover,
        Self::FuzzCases,
        Self::ScaleSettle,
        Self::ScaleCpu,
        Self::ScaleXdp,
        Self::ScaleXdpRate,
    ];

    /// The scenarios of a `--quick` run (and of the CI test): those of every trial, scenarios
    /// 1-4 and 11, which lead [`Scenario::ALL`].
    pub const QUICK: &'static [Self] = Self::ALL.split_at(9).0;

    /// Its key in the JSON report (stable: `docs/bench-latest.json` uses them).
    #[must_use]
    pub const fn key(self) -> &'static str {
        self.describe().0
    }

    /// What is measured, for the table.
    #[must_use]
    pub const fn title(self) -> &'static str {
        self.describe().1
    }

    /// Unit of the figures.
    #[must_use]
    pub const fn unit(self) -> &'static str {
        self.describe().2
    }

    /// Whether the figure is an outage in ms (drawn on the chart).
    #[must_use]
    pub const fn is_outage(self) -> bool {
        matches!(
            self,
            Self::LinkCut
                | Self::Crash
                | Self::PlannedStop
                | Self::Preemption
                | Self::RestartOutage
                | Self::FloodLinkCut
        )
    }

    /// (key, title, unit), in one table so the three never disagree.
    const fn describe(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::LinkCut => ("link_cut", "1 link cut: outage", "ms"),
            Self::LinkCutTakeover => ("link_cut_takeover", "1 link cut: takeover", "ms"),
            Self::Crash => ("crash", "2 crash: outage", "ms"),
            Self::CrashTakeover => ("crash_takeover", "2 crash: takeover", "ms"),
            Self::CrashMacs => ("crash_macs", "2 crash: MACs answering for the VIP", "count"),
            Self::PlannedStop => ("planned_stop", "3 planned stop: outage", "ms"),
            Self::Preemption => ("preemption", "4 preemption: outage", "ms"),
            Self::RestartOutage => ("restart", "11 restart of the ACTIVE: outage", "ms"),
            Self::RestartMoves => ("restart_moves", "11 restart of the ACTIVE: VIP moves", "count"),
            Self::Stall => ("stall", "5 STANDBY stalled 2 s: false transitions", "count"),
            Self::Loss => ("loss", "6 1% loss: false transitions", "count"),
            Self::Loss5 => ("loss5", "6 5% loss: false transitions", "count"),
            Self::CpuActive => ("cpu_active", "7 CPU of the ACTIVE", "% core"),
            Self::CpuStandby => ("cpu_standby", "7 CPU of the least worthy STANDBY", "% core"),
            Self::CpuNext => ("cpu_next", "7 CPU of the STANDBY next in line", "% core"),
            Self::XdpValid => ("xdp_valid", "8 XDP per valid signed heartbeat", "ns"),
            Self::XdpReplayed => ("xdp_replayed", "8 XDP per replayed heartbeat", "ns"),
            Self::XdpForged => ("xdp_forged", "8 XDP per forged heartbeat", "ns"),
            Self::XdpForgedTwoKeys => ("xdp_forged_two_keys", "8 XDP per forged, during a key rollout", "ns"),
            Self::XdpProbeAnswer => ("xdp_probe_answer", "8 XDP per probe answered (XDP_TX)", "ns"),
            Self::FloodRate => ("flood_rate", "9 forged flood: rate sent", "pkt/s"),
            Self::FloodTransitions => ("flood_transitions", "9 forged flood: false transitions", "count"),
            Self::FloodLinkCut => ("flood_link_cut", "9 link cut under forged flood: outage", "ms"),
            Self::FloodLinkCutTakeover => {
                ("flood_link_cut_takeover", "9 link cut under forged flood: takeover", "ms")
            }
            Self::FuzzCases => ("fuzz_cases", "10 fuzz decode+verify: cases without panic", "cases"),
            Self::ScaleSettle => ("scale_settle", "12 256 groups x 8 nodes: start to one holder each", "ms"),
            Self::ScaleCpu => ("scale_cpu", "12 256 groups x 8 nodes: agent CPU per node", "% core"),
            Self::ScaleXdp => ("scale_xdp", "12 256 groups x 8 nodes: XDP per frame", "ns"),
            Self::ScaleXdpRate => ("scale_xdp_rate", "12 256 groups x 8 nodes: frames per node", "pkt/s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_all_is_in_order() {
        let mut keys: Vec<&str> = Scenario::ALL.iter().map(|s| s.key()).collect();
        let sorted = Scenario::ALL.windows(2).all(|w| w[0] < w[1]);
        assert!(sorted, "ALL lists the scenarios in declaration order");
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Scenario::ALL.len());
    }
}
