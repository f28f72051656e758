//! Workers and limits.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// Upper bound for `server.workers`. Far above any real core count; it catches a stray extra
/// digit before the server tries to spawn thousands of threads.
pub const MAX_WORKERS: usize = 1024;

/// Workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Number of workers (threads that carry media). 0 means one per CPU core.
    pub workers: usize,
    /// How long graceful shutdown may take before the process exits anyway, in milliseconds.
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            shutdown_timeout_ms: 5_000,
        }
    }
}

impl ServerConfig {
    /// The number of workers to start, resolving 0 to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

impl ServerConfig {
    /// Checks this section's rules, adding each violation to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let server = self;
        if server.workers > MAX_WORKERS {
            p.push(
                "server.workers",
                format!(
                    "must be at most {MAX_WORKERS}, got {} (0 means one per CPU core)",
                    server.workers
                ),
            );
        }
        p.at_least("server.shutdown_timeout_ms", server.shutdown_timeout_ms, 1);
    }
}

/// Limits. Every limit is enforced and reported with the `limit_exceeded` error code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Rooms (routers) in the whole server.
    pub max_rooms: usize,
    /// Peers in one room.
    pub max_peers_per_room: usize,
    /// Transports in one room.
    pub max_transports_per_room: usize,
    /// Producers on one transport.
    pub max_producers_per_transport: usize,
    /// Consumers on one transport.
    pub max_consumers_per_transport: usize,
    /// Bytes of one SDP offer or answer from the backend (`webrtc.publish`, `webrtc.answer`).
    pub max_sdp_bytes: usize,
    /// m-lines in one SDP; at least `max_consumers_per_transport` + 1, since a receive
    /// connection's answer has one per consumer and its data channel.
    pub max_sdp_media_sections: usize,
    /// `a=ssrc` lines in one m-line (two or four per SSRC are usual; simulcast with RTX has six
    /// SSRCs).
    pub max_sdp_ssrc_lines: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_rooms: 1_000,
            max_peers_per_room: 100,
            max_transports_per_room: 250,
            max_producers_per_transport: 16,
            max_consumers_per_transport: 500,
            max_sdp_bytes: 512 * 1024,
            max_sdp_media_sections: 1_024,
            max_sdp_ssrc_lines: 64,
        }
    }
}

impl LimitsConfig {
    /// Checks this section's rules, adding each violation to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let limits = self;
        p.at_least("limits.max_rooms", limits.max_rooms as u64, 1);
        p.at_least(
            "limits.max_peers_per_room",
            limits.max_peers_per_room as u64,
            1,
        );
        p.at_least(
            "limits.max_transports_per_room",
            limits.max_transports_per_room as u64,
            1,
        );
        p.at_least(
            "limits.max_producers_per_transport",
            limits.max_producers_per_transport as u64,
            1,
        );
        p.at_least(
            "limits.max_consumers_per_transport",
            limits.max_consumers_per_transport as u64,
            1,
        );
        p.at_least("limits.max_sdp_bytes", limits.max_sdp_bytes as u64, 1024);
        p.at_least(
            "limits.max_sdp_media_sections",
            limits.max_sdp_media_sections as u64,
            limits.max_consumers_per_transport.saturating_add(1) as u64,
        );
        p.at_least(
            "limits.max_sdp_ssrc_lines",
            limits.max_sdp_ssrc_lines as u64,
            8,
        );
    }
}
