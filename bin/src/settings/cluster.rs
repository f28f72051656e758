//! A cluster of nodes on Redis.

use serde::{Deserialize, Serialize};
use switchboard_core::config::Problems;

/// A cluster of nodes on Redis: each node registers itself with a heartbeat and records which
/// rooms and producers it owns, so that any node can say where an object lives. Media and
/// local requests never wait for Redis; only requests that need the cluster's view do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis to share (`redis://host:port/db`, `redis+unix:///path/redis.sock`); empty
    /// (the default) runs the node alone, with no cluster.
    pub redis_url: String,
    /// This node's id, unique in the cluster; empty: generated at start.
    pub node_id: String,
    /// The control-socket address other nodes and backends use for this node; empty: the
    /// TCP address `rpc.listen` bound.
    pub advertise_rpc: String,
    /// Every how many milliseconds the node renews its entry (and looks at the others).
    pub heartbeat_ms: u64,
    /// How long a node's entry outlives its last heartbeat: a node silent this long is gone,
    /// and the others drop its directory entries. At least twice `heartbeat_ms`.
    pub node_ttl_ms: u64,
    /// How long one Redis command may take before the cluster counts as unavailable.
    pub redis_timeout_ms: u64,
    /// Prefix of every key the cluster writes, so that clusters can share one Redis.
    pub key_prefix: String,
    /// `router.create` without `node` or `worker` makes the room on the least-loaded
    /// serving node (this one when it is as little loaded as any); off, on the node asked.
    pub place_rooms: bool,
    /// On SIGTERM, drain first (no new rooms here, `/ready` 503, the node `draining` in the
    /// cluster) and shut down once the node's rooms have closed or `drain_timeout_ms` has
    /// passed; a second signal shuts down at once.
    pub drain_on_sigterm: bool,
    /// How long a drain waits for the node's rooms to close before it shuts down anyway.
    pub drain_timeout_ms: u64,
    /// `peer.join` without `node` puts the peer on another node of the room, or opens the
    /// room on a new node, when the room's nodes are at `span_above_percent` or more; off,
    /// peers join the room's first node unless `node` says otherwise.
    pub span_rooms: bool,
    /// The load (percent of a worker's threshold, the busiest worker's, as `cluster.nodes`
    /// lists it) from which a node takes no new peers of a room that can go elsewhere.
    pub span_above_percent: u64,
    /// How many nodes a node feeds one track to directly, in a room spanning nodes; further
    /// nodes take it from a node that has a copy (a tree). 0: every node takes it from the
    /// publisher's node (a star).
    pub fanout: u64,
    /// How long a draining node waits for a peer's connections to come up on the node it
    /// hands the peer to (the client applying the new offers, ICE, DTLS) before it gives up:
    /// the peer stays if it is still connected here, else it goes anyway.
    pub handover_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            node_id: String::new(),
            advertise_rpc: String::new(),
            heartbeat_ms: 1_000,
            node_ttl_ms: 5_000,
            redis_timeout_ms: 500,
            key_prefix: "switchboard".to_owned(),
            place_rooms: true,
            drain_on_sigterm: false,
            drain_timeout_ms: 60_000,
            span_rooms: true,
            span_above_percent: 80,
            fanout: 4,
            handover_timeout_ms: 15_000,
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

impl ClusterConfig {
    /// The `[cluster]` rules: a Redis URL the client understands, ids and prefixes that are safe
    /// inside Redis keys, and a TTL that survives a late heartbeat.
    pub(crate) fn validate(&self, p: &mut Problems) {
        let cluster = self;
        if !cluster.enabled() {
            return;
        }
        let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if !schemes.iter().any(|s| cluster.redis_url.starts_with(s)) {
            p.push(
                "cluster.redis_url",
                format!(
                    "{:?} is not a Redis URL: expected redis://host:port, rediss://host:port or \
                     redis+unix:///path, or empty to run alone",
                    cluster.redis_url
                ),
            );
        }
        let key_safe = |v: &str| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !key_safe(&cluster.node_id) || cluster.node_id.len() > 64 {
            p.push(
                "cluster.node_id",
                "must be at most 64 letters, digits, '-', '_' or '.' (or empty to generate one)",
            );
        }
        if cluster.key_prefix.is_empty() || !key_safe(&cluster.key_prefix) {
            p.push(
                "cluster.key_prefix",
                "must be letters, digits, '-', '_' or '.', and not empty",
            );
        }
        p.socket_addr("cluster.advertise_rpc", &cluster.advertise_rpc);
        p.at_least("cluster.heartbeat_ms", cluster.heartbeat_ms, 50);
        p.at_least("cluster.redis_timeout_ms", cluster.redis_timeout_ms, 10);
        p.at_least("cluster.drain_timeout_ms", cluster.drain_timeout_ms, 1);
        p.at_least("cluster.span_above_percent", cluster.span_above_percent, 1);
        p.at_least(
            "cluster.handover_timeout_ms",
            cluster.handover_timeout_ms,
            100,
        );
        if cluster.node_ttl_ms < cluster.heartbeat_ms.saturating_mul(2) {
            p.push(
                "cluster.node_ttl_ms",
                format!(
                    "must be at least twice cluster.heartbeat_ms ({}), got {}: one late heartbeat \
                     must not make a live node look gone",
                    cluster.heartbeat_ms.saturating_mul(2),
                    cluster.node_ttl_ms
                ),
            );
        }
    }
}
