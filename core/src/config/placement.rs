//! Placement of rooms and transports on workers.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// How placement picks a worker among those with headroom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PlacementPolicy {
    /// The least-loaded worker first: spreads load evenly.
    #[default]
    Spread,
    /// The busiest worker that still has headroom: keeps a room's transports together and
    /// leaves idle workers idle.
    Pack,
}

/// Placement of rooms on workers, and of a busy room's new transports on other workers.
///
/// A worker's load is measured from what its thread does: RTP packets it handled per second
/// (received plus forwarded) and the CPU time its thread used, sampled every
/// `sample_interval_ms`. A worker is over its threshold when either figure reaches its limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    /// Which worker gets a new room, and a spanning room's new transport.
    pub policy: PlacementPolicy,
    /// Let a room span workers: when its worker is over the threshold, a new transport goes to
    /// a router of the same room on another worker, fed through `pipe` transports.
    pub span_rooms: bool,
    /// CPU time of a worker thread, as a fraction of one core (0 < x ≤ 1), at which the
    /// worker counts as loaded.
    pub max_worker_cpu: f64,
    /// RTP packets per second (received plus forwarded) at which a worker counts as loaded.
    pub max_worker_packets_per_second: u64,
    /// How often worker load is sampled, in milliseconds.
    pub sample_interval_ms: u64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            policy: PlacementPolicy::Spread,
            span_rooms: true,
            max_worker_cpu: 0.8,
            max_worker_packets_per_second: 200_000,
            sample_interval_ms: 1_000,
        }
    }
}

impl PlacementConfig {
    /// Checks this section's rules, adding each violation to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let placement = self;
        if !(placement.max_worker_cpu > 0.0 && placement.max_worker_cpu <= 1.0) {
            p.push(
                "placement.max_worker_cpu",
                format!(
                    "must be a fraction of one core above 0 and at most 1, got {}",
                    placement.max_worker_cpu
                ),
            );
        }
        p.at_least(
            "placement.max_worker_packets_per_second",
            placement.max_worker_packets_per_second,
            1,
        );
        p.at_least(
            "placement.sample_interval_ms",
            placement.sample_interval_ms,
            10,
        );
        if placement.sample_interval_ms > 60_000 {
            p.push(
                "placement.sample_interval_ms",
                format!(
                    "must be at most 60000 (a minute), got {}",
                    placement.sample_interval_ms
                ),
            );
        }
    }
}
