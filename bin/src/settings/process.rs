//! The process around the media: the control socket, the metrics endpoint, logging.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use switchboard_core::config::Problems;

/// The longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the final NUL).
pub(crate) const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

/// The control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// TCP address to listen on; empty disables TCP.
    pub listen: String,
    /// Unix socket path to listen on; empty disables it.
    pub unix_socket: String,
    /// Shared secret the backend must present. Required on non-loopback addresses.
    pub token: String,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Concurrent backend connections.
    pub max_connections: usize,
    /// Time a request may take before it fails with `timeout`, in milliseconds.
    pub request_timeout_ms: u64,
    /// Largest message accepted before a successful `auth`, when a token is set, in bytes
    /// (capped at `max_frame_bytes`).
    pub max_preauth_frame_bytes: usize,
    /// Connections that have not made their first valid request yet (`auth` when a token is
    /// set). When they are all taken, the oldest is closed to make room for a new one.
    pub max_preauth_connections: usize,
    /// Time a new connection has to make its first valid request, in milliseconds.
    pub auth_timeout_ms: u64,
    /// Time a message that has begun to arrive may take to arrive whole, in milliseconds.
    pub read_timeout_ms: u64,
    /// Time an established connection may send nothing before it is closed, in
    /// milliseconds; 0 never closes it (connections that only listen to events stay open).
    pub idle_timeout_ms: u64,
    /// Values (scalars, arrays, maps, map keys) one message may hold.
    pub max_message_values: usize,
    /// Invalid messages one connection may send; the last one closes it.
    pub max_protocol_errors: u32,
    /// Refused or rejected connections being told why at once; beyond this, further ones
    /// are closed without an explanation.
    pub max_refusals_in_flight: usize,
}

/// The shortest `rpc.token` accepted, in bytes.
pub const MIN_RPC_TOKEN_BYTES: usize = 16;

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7700".to_owned(),
            unix_socket: String::new(),
            token: String::new(),
            max_frame_bytes: 1 << 20,
            max_connections: 64,
            request_timeout_ms: 10_000,
            max_preauth_frame_bytes: 4096,
            max_preauth_connections: 16,
            auth_timeout_ms: 10_000,
            read_timeout_ms: 10_000,
            idle_timeout_ms: 0,
            max_message_values: 65_536,
            max_protocol_errors: 10,
            max_refusals_in_flight: 16,
        }
    }
}

impl RpcConfig {
    /// Checks this section's rules, adding each violation to `p`; returns the listen address
    /// when it is valid and set.
    pub(crate) fn validate(&self, p: &mut Problems) -> Option<SocketAddr> {
        let rpc = self;
        let rpc_addr = p.socket_addr("rpc.listen", &rpc.listen);
        let exposed = rpc_addr.filter(|addr| !addr.ip().to_canonical().is_loopback());
        if let Some(addr) = exposed.filter(|_| rpc.token.is_empty()) {
            p.push(
                "rpc.token",
                format!(
                    "is required when rpc.listen is not a loopback address ({addr}): \
                     anyone who reaches the port could control the server"
                ),
            );
        }
        if rpc.unix_socket.contains('\0') {
            p.push("rpc.unix_socket", "must not contain a NUL byte");
        } else if rpc.unix_socket.len() > MAX_UNIX_SOCKET_PATH_BYTES {
            p.push(
                "rpc.unix_socket",
                format!(
                    "is {} bytes long; Unix socket paths are limited to \
                     {MAX_UNIX_SOCKET_PATH_BYTES} bytes",
                    rpc.unix_socket.len()
                ),
            );
        }
        p.at_least("rpc.max_frame_bytes", rpc.max_frame_bytes as u64, 1);
        p.at_least("rpc.max_connections", rpc.max_connections as u64, 1);
        p.at_least("rpc.request_timeout_ms", rpc.request_timeout_ms, 1);
        p.at_least(
            "rpc.max_preauth_frame_bytes",
            rpc.max_preauth_frame_bytes as u64,
            1,
        );
        p.at_least(
            "rpc.max_preauth_connections",
            rpc.max_preauth_connections as u64,
            1,
        );
        p.at_least("rpc.auth_timeout_ms", rpc.auth_timeout_ms, 1);
        p.at_least("rpc.read_timeout_ms", rpc.read_timeout_ms, 1);
        p.at_least("rpc.max_message_values", rpc.max_message_values as u64, 1);
        p.at_least(
            "rpc.max_protocol_errors",
            u64::from(rpc.max_protocol_errors),
            1,
        );
        p.at_least(
            "rpc.max_refusals_in_flight",
            rpc.max_refusals_in_flight as u64,
            1,
        );
        if !rpc.token.is_empty() && rpc.token.len() < MIN_RPC_TOKEN_BYTES {
            p.push(
                "rpc.token",
                format!(
                    "is {} bytes long; a token must be at least {MIN_RPC_TOKEN_BYTES} bytes \
                     (for example `openssl rand -hex 16`, 32 characters)",
                    rpc.token.len()
                ),
            );
        }
        rpc_addr
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// HTTP address serving `/metrics`; empty disables it.
    pub listen: String,
    /// Also export media metrics per room (a `room` label). Off by default: every room adds
    /// its own series, and a busy server's rooms come and go faster than Prometheus forgets.
    pub per_room_labels: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9700".to_owned(),
            per_room_labels: false,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `switchboard=debug`; `RUST_LOG` overrides it.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Human,
        }
    }
}

impl LogConfig {
    /// Checks this section's rules, adding each violation to `p`.
    pub(crate) fn validate(&self, p: &mut Problems) {
        if self.level.trim().is_empty() {
            p.push(
                "log.level",
                "must not be empty: use a tracing filter such as `info` or \
                 `warn,switchboard=debug`",
            );
        }
    }
}
