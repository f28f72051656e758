//! The server's configuration model: one typed tree, defaults embedded, validated once at start.
//!
//! Sources are layered by the binary: the defaults, then an optional TOML file
//! ([`Config::from_toml_str`]), then `SWITCHBOARD_*` environment variables
//! ([`Config::apply_env`]), then command-line flags. This module owns the shape, the defaults,
//! the parsing of each textual source and [`Config::validate`]. It does no I/O: the binary reads
//! the file and the environment and hands their text in, which keeps every rule testable here.
//!
//! Every step reports *all* the problems it finds, each as a [`ConfigError`] that names the
//! field (`limits.max_rooms`, `media.codecs[1].clock_rate`) or the environment variable it
//! concerns, so an operator fixes a config in one round instead of one error per restart.
//!
//! ```
//! use switchboard_core::config::Config;
//!
//! let mut config = Config::from_toml_str("[server]\nworkers = 2\n").unwrap();
//! config
//!     .apply_env([("SWITCHBOARD_LOG__FORMAT".to_owned(), "json".to_owned())])
//!     .unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.server.workers, 2);
//! ```

use crate::rtp_parameters::RtpCodecCapability;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Prefix of every environment variable that sets a configuration field.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Separates the levels of a field path in an environment variable name, so that
/// `SWITCHBOARD_RPC__LISTEN` sets `rpc.listen`. It is doubled because field names contain
/// single underscores (`SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS`).
pub const ENV_SEPARATOR: &str = "__";

/// `SWITCHBOARD_*` variables that are not configuration fields. The binary reads them itself
/// (`SWITCHBOARD_CONFIG` is the path of the config file), so [`Config::apply_env`] skips them
/// instead of rejecting them as typos.
pub const RESERVED_ENV_VARS: &[&str] = &["SWITCHBOARD_CONFIG"];

/// Upper bound for `server.workers`. Far above any real core count; it catches a stray extra
/// digit before the server tries to spawn thousands of threads.
pub const MAX_WORKERS: usize = 1024;

/// Upper bound for `media.retransmission_buffer_packets`: half the 16-bit sequence-number
/// space. A larger ring would hold two packets that share a sequence number, and a NACK could
/// then be answered with the wrong one.
pub const MAX_RETRANSMISSION_BUFFER_PACKETS: usize = 1 << 15;

/// The longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the final NUL).
const MAX_UNIX_SOCKET_PATH_BYTES: usize = 107;

/// One problem with a configuration.
///
/// Displayed as `field: message`, for example
/// `limits.max_rooms: must be at least 1, got 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What the problem is about: a dotted field path (`rpc.listen`,
    /// `media.codecs[0].clock_rate`), an environment variable (`SWITCHBOARD_SERVER__WORKERS`),
    /// or empty when it concerns a TOML document as a whole (a syntax error).
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Workers and their threads.
    pub server: ServerConfig,
    /// Limits on objects and requests.
    pub limits: LimitsConfig,
    /// Media defaults: router codecs, retransmission and keyframe behaviour.
    pub media: MediaConfig,
    /// The MessagePack-RPC control socket.
    pub rpc: RpcConfig,
    /// The WebRTC transport: where its worker sockets listen and what they announce.
    pub webrtc: WebRtcConfig,
    /// The plain RTP transport: where its transports bind and what they announce.
    pub rtp: RtpConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Middleware: queues, close timeout, what every room gets, default options.
    pub middleware: MiddlewareConfig,
    /// Where rooms and their transports go, and when a room spans workers.
    pub placement: PlacementConfig,
    /// Membership in a cluster of nodes sharing a Redis; without it the node runs alone.
    pub cluster: ClusterConfig,
}

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
        }
    }
}

impl ClusterConfig {
    /// Whether the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

/// The WebRTC transport's network settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcConfig {
    /// IP address each worker's UDP socket binds to. The default reaches only this machine;
    /// set the machine's address (or `0.0.0.0` with `announced_ip`) to serve others.
    pub listen_ip: String,
    /// IP address written into ICE candidates when it differs from `listen_ip` (a 1:1 NAT or
    /// a wildcard bind). Empty means `listen_ip`.
    pub announced_ip: String,
    /// First UDP port of the range the workers bind in, one port per worker. 0 lets the OS
    /// choose a free port for each worker.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// How long a connection may hear nothing from its client (connectivity checks, media,
    /// RTCP, DTLS) before it is closed with reason `ice_timeout`, in milliseconds. Browsers
    /// check consent every 5 s (RFC 7675), so a live client is never this quiet.
    pub consent_timeout_ms: u64,
    /// How long a peer whose WebRTC connections all closed on their own (`ice_timeout`,
    /// `dtls_closed`) stays in the room before it leaves with the same reason, in
    /// milliseconds; 0 keeps it until the backend removes it.
    pub peer_timeout_ms: u64,
    /// Which engine runs WebRTC connections. Only `native` remains (the server's own
    /// ICE-lite, DTLS and SRTP); the setting is kept so that configurations that name it
    /// still load, and `pc` (the general-purpose peer connection, removed) is refused.
    pub engine: String,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            listen_ip: "127.0.0.1".to_owned(),
            announced_ip: String::new(),
            port_min: 40_000,
            port_max: 40_099,
            consent_timeout_ms: 30_000,
            peer_timeout_ms: 10_000,
            engine: "native".to_owned(),
        }
    }
}

/// The plain RTP transport's network settings: the defaults of every `rtp` transport, which
/// its creator may override per transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpConfig {
    /// IP address each transport's sockets bind to.
    pub listen_ip: String,
    /// IP address reported to the transport's creator when it differs from `listen_ip` (a 1:1
    /// NAT or a wildcard bind). Empty means `listen_ip`.
    pub announced_ip: String,
    /// First UDP port of the range transports bind in. Each transport takes one port, two
    /// when RTCP has a port of its own. 0 lets the OS choose.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// SSRCs that no producer of a transport declared, per direction (RTP, RTCP), that the
    /// transport's inbound SRTP context may keep state for (half of them before a comedia
    /// transport knows its remote). Packets of further SSRCs are dropped before decryption.
    pub srtp_max_ssrcs: usize,
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            listen_ip: "127.0.0.1".to_owned(),
            announced_ip: String::new(),
            port_min: 41_000,
            port_max: 41_999,
            srtp_max_ssrcs: 32,
        }
    }
}

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

/// Media behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The codecs every new router offers, in order of preference. Empty means the built-in
    /// set (Opus, VP8, VP9, H.264 constrained baseline and main, AV1).
    pub codecs: Vec<RtpCodecCapability>,
    /// Packets kept per producer to answer NACKs. Rounded up to a power of two.
    pub retransmission_buffer_packets: usize,
    /// Oldest packet the retransmission buffer will resend, in milliseconds.
    pub retransmission_max_age_ms: u64,
    /// Minimum interval between keyframe requests sent to one producer, in milliseconds.
    pub keyframe_request_interval_ms: u64,
    /// Interval between RTCP sender reports sent to consumers, in milliseconds.
    pub sender_report_interval_ms: u64,
    /// Most packets resent in answer to one NACK message.
    pub nack_max_resends_per_nack: usize,
    /// Most packets resent to one consumer per second (a token bucket holding one second's
    /// worth).
    pub nack_max_resends_per_second: u32,
    /// The round-trip time assumed for a consumer whose RTT is not measured yet, in
    /// milliseconds: a packet resent to a consumer is not resent again within its RTT.
    pub nack_default_rtt_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            codecs: Vec::new(),
            retransmission_buffer_packets: 1024,
            retransmission_max_age_ms: 2_000,
            keyframe_request_interval_ms: 1_000,
            sender_report_interval_ms: 1_000,
            nack_max_resends_per_nack: 128,
            nack_max_resends_per_second: 250,
            nack_default_rtt_ms: 100,
        }
    }
}

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

/// Upper bound for `middleware.queue_capacity`: a queue this long already holds minutes of a
/// video stream; beyond it a slow middleware would only hoard memory.
pub const MAX_MIDDLEWARE_QUEUE_CAPACITY: usize = 1 << 20;

/// Middleware: how instances are fed and closed, which are attached to every new room, and
/// the options each gets by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiddlewareConfig {
    /// Packets (RTP and RTCP) queued for one instance before further ones are dropped and
    /// counted. Events and producer announcements are never dropped.
    pub queue_capacity: usize,
    /// How long closing one instance (detach, room close, shutdown) may take, delivering what
    /// was queued and running its `close`, in milliseconds. Shutdown waits for all instances
    /// together, within `server.shutdown_timeout_ms`.
    pub close_timeout_ms: u64,
    /// Middleware attached to every new room, by registered name, in order.
    pub attach: Vec<String>,
    /// Default options per middleware name (`[middleware.options.recorder]`), overlaid key by
    /// key with the options of an attach request.
    pub options: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl Default for MiddlewareConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            close_timeout_ms: 3_000,
            attach: Vec::new(),
            options: Default::default(),
        }
    }
}

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

impl MiddlewareConfig {
    /// The options an instance of `name` gets: the configured defaults overlaid, top-level key
    /// by key, with `requested` (an object, or null for none).
    pub fn options_for(&self, name: &str, requested: &serde_json::Value) -> serde_json::Value {
        crate::middleware::overlay_options(&self.configured_options(name), requested)
    }

    /// The configured options of `name` (`[middleware.options.<name>]`), empty if none.
    pub fn configured_options(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        self.options.get(name).cloned().unwrap_or_default()
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

impl Config {
    /// Parses a TOML document. Missing sections and fields keep their defaults; an unknown
    /// key, a value of the wrong type or a TOML syntax error is an error that names the field
    /// and its line. Every bad field is reported, not only the first.
    ///
    /// This checks the shape only; call [`Config::validate`] for the rules between values.
    pub fn from_toml_str(text: &str) -> Result<Self, Vec<ConfigError>> {
        let root = DeTable::parse(text).map_err(|e| {
            let mut message = format!("invalid TOML: {}", e.message().trim_end());
            if let Some(span) = e.span() {
                message.push_str(&line_and_column(text, span.start));
            }
            vec![ConfigError::new("", message)]
        })?;
        let first = match Self::deserialize_document(root.clone()) {
            Ok(config) => return Ok(config),
            Err(e) => e,
        };
        // serde stops at the first error, so deserialize each field on its own to find the
        // others. Sections all default, which makes a one-field document a complete config.
        let mut located: Vec<(usize, ConfigError)> = one_field_documents(root)
            .into_iter()
            .filter_map(|doc| Self::deserialize_document(doc).err())
            .map(|e| document_error(text, &e))
            .collect();
        if located.is_empty() {
            located.push(document_error(text, &first));
        }
        located.sort_by_key(|(offset, _)| *offset);
        let mut errors: Vec<ConfigError> = located.into_iter().map(|(_, e)| e).collect();
        errors.dedup();
        Err(errors)
    }

    /// The configuration as a TOML document, in the form [`Config::from_toml_str`] reads.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Sets one field, named by its dotted path (`rpc.listen`, `server.workers`), from text,
    /// as an environment variable or a `--set` flag would. Strings are taken verbatim; other
    /// types are parsed as TOML values of the field's type (`4`, `true`, `[...]`).
    ///
    /// On error the configuration is left unchanged.
    pub fn set(&mut self, path: &str, raw: &str) -> Result<(), String> {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("{path:?} is not a field path such as rpc.listen"));
        }
        let mut table = self.to_table()?;
        set_in_table(&mut table, &segments, raw)?;
        *self = Self::from_table(table)?;
        Ok(())
    }

    /// Applies `SWITCHBOARD_<SECTION>__<FIELD>` variables, for example
    /// `SWITCHBOARD_RPC__LISTEN=0.0.0.0:7700` or `SWITCHBOARD_LOG__FORMAT=json`.
    ///
    /// Pass the whole environment: variables without the [`ENV_PREFIX`] and those in
    /// [`RESERVED_ENV_VARS`] are skipped. Any other `SWITCHBOARD_` variable must name a field,
    /// so a typo is an error rather than a silently ignored setting. Values are parsed as
    /// [`Config::set`] does. Every bad variable is reported, by name; on error the
    /// configuration is left unchanged.
    pub fn apply_env<I>(&mut self, vars: I) -> Result<(), Vec<ConfigError>>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table = self
            .to_table()
            .map_err(|message| vec![ConfigError::new("", message)])?;
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !RESERVED_ENV_VARS.contains(&name.as_str())
            })
            .collect();
        // The environment has no order; sorting keeps the error list stable between runs.
        vars.sort();
        let mut errors = Vec::new();
        for (name, raw) in vars {
            let Some(path) = env_path(&name) else {
                errors.push(ConfigError::new(
                    name,
                    format!(
                        "is not a configuration variable: expected \
                         {ENV_PREFIX}<SECTION>{ENV_SEPARATOR}<FIELD>, \
                         such as SWITCHBOARD_RPC__LISTEN"
                    ),
                ));
                continue;
            };
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let mut candidate = table.clone();
            if let Err(message) = set_in_table(&mut candidate, &segments, &raw) {
                let message = format!("{message} (setting {})", path.join("."));
                errors.push(ConfigError::new(name, message));
                continue;
            }
            // Deserialization errors already name the field they are about.
            match Self::from_table(candidate.clone()) {
                Ok(_) => table = candidate,
                Err(message) => errors.push(ConfigError::new(name, message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *self = Self::from_table(table).map_err(|message| vec![ConfigError::new("", message)])?;
        Ok(())
    }

    /// The environment variable that sets the field at a dotted path:
    /// `rpc.listen` becomes `SWITCHBOARD_RPC__LISTEN`.
    pub fn env_var_name(path: &str) -> String {
        format!(
            "{ENV_PREFIX}{}",
            path.split('.')
                .collect::<Vec<_>>()
                .join(ENV_SEPARATOR)
                .to_ascii_uppercase()
        )
    }

    /// Checks the rules a well-typed configuration must also follow (ranges, addresses, the
    /// token rule, codec entries) and returns every violation, or `Ok(())`.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut p = Problems::default();

        let server = &self.server;
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

        let limits = &self.limits;
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

        let media = &self.media;
        validate_codecs(&mut p, &media.codecs);
        p.at_least(
            "media.retransmission_buffer_packets",
            media.retransmission_buffer_packets as u64,
            1,
        );
        if media.retransmission_buffer_packets > MAX_RETRANSMISSION_BUFFER_PACKETS {
            p.push(
                "media.retransmission_buffer_packets",
                format!(
                    "must be at most {MAX_RETRANSMISSION_BUFFER_PACKETS} (half the RTP sequence \
                     number space), got {}",
                    media.retransmission_buffer_packets
                ),
            );
        }
        p.at_least(
            "media.retransmission_max_age_ms",
            media.retransmission_max_age_ms,
            1,
        );
        p.at_least(
            "media.keyframe_request_interval_ms",
            media.keyframe_request_interval_ms,
            1,
        );
        p.at_least(
            "media.sender_report_interval_ms",
            media.sender_report_interval_ms,
            1,
        );
        p.at_least(
            "media.nack_max_resends_per_nack",
            media.nack_max_resends_per_nack as u64,
            1,
        );
        p.at_least(
            "media.nack_max_resends_per_second",
            u64::from(media.nack_max_resends_per_second),
            1,
        );
        p.at_least("media.nack_default_rtt_ms", media.nack_default_rtt_ms, 1);

        let rpc = &self.rpc;
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
        let webrtc = &self.webrtc;
        let listen_ip = webrtc.listen_ip.parse::<std::net::IpAddr>();
        if listen_ip.is_err() {
            p.push(
                "webrtc.listen_ip",
                format!("{:?} is not an IP address", webrtc.listen_ip),
            );
        }
        match webrtc.announced_ip.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => p.push(
                "webrtc.announced_ip",
                "must be an address clients can reach, not a wildcard",
            ),
            Err(_) if !webrtc.announced_ip.is_empty() => p.push(
                "webrtc.announced_ip",
                format!("{:?} is not an IP address", webrtc.announced_ip),
            ),
            _ => {}
        }
        if webrtc.announced_ip.is_empty() && listen_ip.is_ok_and(|ip| ip.is_unspecified()) {
            p.push(
                "webrtc.announced_ip",
                "is required when webrtc.listen_ip is a wildcard: candidates need a real address",
            );
        }
        if webrtc.port_min == 0 && webrtc.port_max != 0 {
            p.push("webrtc.port_min", "must be set when webrtc.port_max is");
        } else if webrtc.port_min > webrtc.port_max {
            p.push(
                "webrtc.port_max",
                format!(
                    "must be at least webrtc.port_min ({}), got {}",
                    webrtc.port_min, webrtc.port_max
                ),
            );
        } else if webrtc.port_min != 0 && self.server.workers <= MAX_WORKERS {
            let ports = usize::from(webrtc.port_max - webrtc.port_min) + 1;
            let workers = self.server.worker_count();
            if ports < workers {
                p.push(
                    "webrtc.port_max",
                    format!(
                        "the range {}-{} has {ports} ports for {workers} workers; each worker needs one",
                        webrtc.port_min, webrtc.port_max
                    ),
                );
            }
        }
        p.at_least("webrtc.consent_timeout_ms", webrtc.consent_timeout_ms, 100);
        if webrtc.engine != "native" {
            p.push(
                "webrtc.engine",
                format!(
                    "must be \"native\" (the peer-connection engine \"pc\" was removed; the setting can be left out), got {:?}",
                    webrtc.engine
                ),
            );
        }

        validate_rtp(&mut p, &self.rtp, webrtc);

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

        let metrics_addr = p.socket_addr("metrics.listen", &self.metrics.listen);
        let collision = rpc_addr
            .zip(metrics_addr)
            .filter(|(rpc, metrics)| addresses_collide(*rpc, *metrics));
        if let Some((rpc, metrics)) = collision {
            p.push(
                "metrics.listen",
                format!("{metrics} uses the same port as rpc.listen ({rpc})"),
            );
        }

        let middleware = &self.middleware;
        p.at_least(
            "middleware.queue_capacity",
            middleware.queue_capacity as u64,
            1,
        );
        if middleware.queue_capacity > MAX_MIDDLEWARE_QUEUE_CAPACITY {
            p.push(
                "middleware.queue_capacity",
                format!(
                    "must be at most {MAX_MIDDLEWARE_QUEUE_CAPACITY}, got {}",
                    middleware.queue_capacity
                ),
            );
        }
        p.at_least(
            "middleware.close_timeout_ms",
            middleware.close_timeout_ms,
            1,
        );
        for (i, name) in middleware.attach.iter().enumerate() {
            if name.trim().is_empty() {
                p.push(format!("middleware.attach[{i}]"), "must not be empty");
            } else if middleware.attach[..i].contains(name) {
                p.push(
                    format!("middleware.attach[{i}]"),
                    format!("{name:?} is listed twice; a room has each middleware once"),
                );
            }
        }

        let placement = &self.placement;
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

        validate_cluster(&mut p, &self.cluster);

        if self.log.level.trim().is_empty() {
            p.push(
                "log.level",
                "must not be empty: use a tracing filter such as `info` or \
                 `warn,switchboard=debug`",
            );
        }

        p.finish()
    }

    fn deserialize_document(
        doc: Spanned<DeTable<'_>>,
    ) -> Result<Self, serde_path_to_error::Error<toml::de::Error>> {
        serde_path_to_error::deserialize(toml::de::Deserializer::from(doc))
    }

    fn to_table(&self) -> Result<toml::Table, String> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => Ok(table),
            Ok(other) => Err(format!(
                "the configuration serialized to a {} instead of a table",
                other.type_str()
            )),
            Err(e) => Err(format!("the configuration cannot be written as TOML: {e}")),
        }
    }

    fn from_table(table: toml::Table) -> Result<Self, String> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let message = e.inner().message().trim_end().to_owned();
            match e.path().to_string().as_str() {
                "." => message,
                path => format!("{path}: {message}"),
            }
        })
    }
}

/// Collects validation problems.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

/// The `[cluster]` rules: a Redis URL the client understands, ids and prefixes that are safe
/// inside Redis keys, and a TTL that survives a late heartbeat.
fn validate_cluster(p: &mut Problems, cluster: &ClusterConfig) {
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

/// The `[rtp]` rules: addresses like `[webrtc]`'s, a well-formed port range, and no overlap
/// with the WebRTC range, whose workers must each find their port free.
fn validate_rtp(p: &mut Problems, rtp: &RtpConfig, webrtc: &WebRtcConfig) {
    let listen_ip = rtp.listen_ip.parse::<std::net::IpAddr>();
    if listen_ip.is_err() {
        p.push(
            "rtp.listen_ip",
            format!("{:?} is not an IP address", rtp.listen_ip),
        );
    }
    match rtp.announced_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => p.push(
            "rtp.announced_ip",
            "must be an address remote senders can reach, not a wildcard",
        ),
        Err(_) if !rtp.announced_ip.is_empty() => p.push(
            "rtp.announced_ip",
            format!("{:?} is not an IP address", rtp.announced_ip),
        ),
        _ => {}
    }
    if rtp.announced_ip.is_empty() && listen_ip.is_ok_and(|ip| ip.is_unspecified()) {
        p.push(
            "rtp.announced_ip",
            "is required when rtp.listen_ip is a wildcard: creators need a real address to send to",
        );
    }
    if rtp.port_min == 0 && rtp.port_max != 0 {
        p.push("rtp.port_min", "must be set when rtp.port_max is");
    } else if rtp.port_min > rtp.port_max {
        p.push(
            "rtp.port_max",
            format!(
                "must be at least rtp.port_min ({}), got {}",
                rtp.port_min, rtp.port_max
            ),
        );
    } else if rtp.port_min != 0
        && webrtc.port_min != 0
        && rtp.port_min <= webrtc.port_max
        && webrtc.port_min <= rtp.port_max
    {
        p.push(
            "rtp.port_min",
            format!(
                "the range {}-{} overlaps the webrtc range {}-{}",
                rtp.port_min, rtp.port_max, webrtc.port_min, webrtc.port_max
            ),
        );
    }
    p.at_least("rtp.srtp_max_ssrcs", rtp.srtp_max_ssrcs as u64, 1);
}

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(field, message));
    }

    fn at_least(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.push(field, format!("must be at least {min}, got {value}"));
        }
    }

    /// Parses a listen address; empty means "disabled" and is fine.
    fn socket_addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        if value.is_empty() {
            return None;
        }
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.push(
                    field,
                    format!(
                        "{value:?} is not a socket address: expected IP:port such as \
                         127.0.0.1:7700 or [::1]:7700, or empty to disable"
                    ),
                );
                None
            }
        }
    }

    fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Codec entries are checked for shape, then (when well-formed) by the same negotiation a new
/// router runs, so an unsupported codec stops the server at start rather than at the first room.
fn validate_codecs(p: &mut Problems, codecs: &[RtpCodecCapability]) {
    let problems_before = p.0.len();
    check_codec_shapes(p, codecs);
    if p.0.len() == problems_before
        && !codecs.is_empty()
        && let Err(e) = crate::negotiation::router_capabilities(codecs)
    {
        p.push("media.codecs", e.message);
    }
}

fn check_codec_shapes(p: &mut Problems, codecs: &[RtpCodecCapability]) {
    let mut payload_types: HashMap<u8, usize> = HashMap::new();
    for (i, codec) in codecs.iter().enumerate() {
        let field = |name: &str| format!("media.codecs[{i}].{name}");
        let mime = &codec.mime_type;
        match mime.split_once('/') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                if !kind.eq_ignore_ascii_case(&codec.kind.to_string()) {
                    p.push(
                        field("kind"),
                        format!("is {} but mime_type {mime:?} is {kind}", codec.kind),
                    );
                }
            }
            _ if mime.is_empty() => p.push(
                field("mime_type"),
                "must not be empty: use a MIME type such as \"audio/opus\"",
            ),
            _ => p.push(
                field("mime_type"),
                format!("{mime:?} is not a MIME type of the form kind/name, such as \"video/VP8\""),
            ),
        }
        if codec.clock_rate == 0 {
            p.push(field("clock_rate"), "must be at least 1 Hz, got 0");
        }
        if codec.channels == Some(0) {
            p.push(field("channels"), "must be at least 1 when set, got 0");
        }
        if let Some(pt) = codec.preferred_payload_type {
            if pt > 127 {
                p.push(
                    field("preferred_payload_type"),
                    format!("must be at most 127 (payload types are 7 bits), got {pt}"),
                );
            } else if let Some(first) = payload_types.get(&pt) {
                p.push(
                    field("preferred_payload_type"),
                    format!("{pt} is already used by media.codecs[{first}]"),
                );
            } else {
                payload_types.insert(pt, i);
            }
        }
    }
}

/// Whether two listeners would fight over one port. Port 0 asks the OS for a free port, so it
/// never collides; an unspecified IP (`0.0.0.0`, `[::]`) overlaps every address.
fn addresses_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Splits a document into documents of one field each (one per key of each top-level table,
/// or the whole entry for a top-level key that is not a table).
fn one_field_documents(root: Spanned<DeTable<'_>>) -> Vec<Spanned<DeTable<'_>>> {
    let span = root.span();
    let mut docs = Vec::new();
    for (key, value) in root.into_inner() {
        let value_span = value.span();
        match value.into_inner() {
            DeValue::Table(fields) if !fields.is_empty() => {
                for (field, field_value) in fields {
                    let mut section = DeTable::new();
                    section.insert(field, field_value);
                    let mut doc = DeTable::new();
                    doc.insert(
                        key.clone(),
                        Spanned::new(value_span.clone(), DeValue::Table(section)),
                    );
                    docs.push(Spanned::new(span.clone(), doc));
                }
            }
            other => {
                let mut doc = DeTable::new();
                doc.insert(key, Spanned::new(value_span, other));
                docs.push(Spanned::new(span.clone(), doc));
            }
        }
    }
    docs
}

/// A deserialization error as a [`ConfigError`], with the byte offset it points at (for
/// sorting) and its line and column in the message.
fn document_error(
    text: &str,
    error: &serde_path_to_error::Error<toml::de::Error>,
) -> (usize, ConfigError) {
    let path = error.path().to_string();
    let field = if path == "." { String::new() } else { path };
    let inner = error.inner();
    let mut message = inner.message().trim_end().to_owned();
    let offset = match inner.span() {
        Some(span) => {
            message.push_str(&line_and_column(text, span.start));
            span.start
        }
        None => usize::MAX,
    };
    (offset, ConfigError::new(field, message))
}

/// ` (line L, column C)` for a byte offset, both counted from 1.
fn line_and_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!(" (line {line}, column {column})")
}

/// `SWITCHBOARD_RPC__LISTEN` → `["rpc", "listen"]`; `None` if the name has no field part.
fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let path: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    (path.len() >= 2 && path.iter().all(|s| !s.is_empty())).then_some(path)
}

/// Sets `path` in a serialized configuration to `raw`, typed like the value it replaces.
/// Whether the field exists is left to deserialization, whose `deny_unknown_fields` knows
/// best and lists the valid names.
fn set_in_table(table: &mut toml::Table, path: &[&str], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty field path".to_owned());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            other => {
                return Err(format!(
                    "{} is {}, not a section",
                    path[..=depth].join("."),
                    describe_type(other)
                ));
            }
        };
    }
    let value = match current.get(*last) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(existing) => match raw.trim().parse::<toml::Value>() {
            Ok(value) if value.same_type(existing) => value,
            Ok(toml::Value::Integer(i)) if existing.is_float() => toml::Value::Float(i as f64),
            _ => return Err(format!("expected {}, got {raw:?}", describe_type(existing))),
        },
        // Absent from the serialized form (an unset optional field, or an unknown name):
        // take TOML if it parses, else the text itself.
        None => raw
            .trim()
            .parse::<toml::Value>()
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
    };
    current.insert(last.to_string(), value);
    Ok(())
}

fn describe_type(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a TOML date-time",
        toml::Value::Array(_) => "a TOML array such as [1, 2]",
        toml::Value::Table(_) => "a TOML inline table such as { key = \"value\" }",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_parameters::MediaKind;

    #[test]
    fn middleware_settings_come_from_toml_and_env_and_are_checked() {
        let mut config = Config::from_toml_str(
            "[middleware]\nqueue_capacity = 16\nattach = [\"logging\"]\n\
             [middleware.options.logging]\ninterval_ms = 500\nmedia = true\n",
        )
        .unwrap();
        assert_eq!(config.middleware.queue_capacity, 16);
        assert_eq!(config.middleware.attach, ["logging"]);
        config
            .apply_env(env(&[
                (
                    "SWITCHBOARD_MIDDLEWARE__OPTIONS__LOGGING__INTERVAL_MS",
                    "2000",
                ),
                (
                    "SWITCHBOARD_MIDDLEWARE__OPTIONS__RECORDER__DIRECTORY",
                    "/var/rec",
                ),
                (
                    "SWITCHBOARD_MIDDLEWARE__ATTACH",
                    "[\"logging\", \"recorder\"]",
                ),
                ("SWITCHBOARD_MIDDLEWARE__CLOSE_TIMEOUT_MS", "1500"),
            ]))
            .unwrap();
        assert_eq!(config.middleware.close_timeout_ms, 1500);
        assert_eq!(config.middleware.attach, ["logging", "recorder"]);
        let logging = config
            .middleware
            .options_for("logging", &serde_json::json!({ "media": false }));
        assert_eq!(
            logging,
            serde_json::json!({ "interval_ms": 2000, "media": false }),
            "attach options overlay the configured ones"
        );
        assert_eq!(
            config
                .middleware
                .options_for("recorder", &serde_json::Value::Null),
            serde_json::json!({ "directory": "/var/rec" })
        );
        config.validate().unwrap();

        config.middleware.queue_capacity = 0;
        config.middleware.close_timeout_ms = 0;
        config.middleware.attach = vec!["logging".into(), "".into(), "logging".into()];
        let errors = config.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "middleware.queue_capacity",
                "middleware.close_timeout_ms",
                "middleware.attach[1]",
                "middleware.attach[2]"
            ]
        );
    }

    fn fields(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn placement_parses_and_rejects_out_of_range_thresholds() {
        let c = Config::from_toml_str(
            "[placement]\npolicy = \"pack\"\nmax_worker_cpu = 0.5\nmax_worker_packets_per_second = 10\n",
        )
        .unwrap();
        assert_eq!(c.placement.policy, PlacementPolicy::Pack);
        assert_eq!(c.placement.max_worker_packets_per_second, 10);
        c.validate().unwrap();
        let mut bad = Config::default();
        bad.placement.max_worker_cpu = 1.5;
        bad.placement.max_worker_packets_per_second = 0;
        bad.placement.sample_interval_ms = 5;
        let errors = bad.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "placement.max_worker_cpu",
                "placement.max_worker_packets_per_second",
                "placement.sample_interval_ms"
            ]
        );
        let mut env = Config::default();
        env.apply_env([(
            "SWITCHBOARD_PLACEMENT__MAX_WORKER_CPU".to_owned(),
            "1".to_owned(),
        )])
        .unwrap();
        assert_eq!(env.placement.max_worker_cpu, 1.0);
        assert!(Config::from_toml_str("[placement]\npolicy = \"random\"\n").is_err());
    }

    #[test]
    fn cluster_is_off_by_default_and_checked_when_on() {
        let c = Config::default();
        assert!(!c.cluster.enabled());
        c.validate().unwrap();
        let c = Config::from_toml_str(
            "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nnode_id = \"node-a\"\n",
        )
        .unwrap();
        assert!(c.cluster.enabled());
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.cluster.redis_url = "127.0.0.1:6379".to_owned();
        bad.cluster.node_id = "a b".to_owned();
        bad.cluster.key_prefix = String::new();
        bad.cluster.advertise_rpc = "nowhere".to_owned();
        bad.cluster.heartbeat_ms = 1_000;
        bad.cluster.node_ttl_ms = 1_500;
        let errors = bad.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                "cluster.redis_url",
                "cluster.node_id",
                "cluster.key_prefix",
                "cluster.advertise_rpc",
                "cluster.node_ttl_ms"
            ]
        );
        let mut env = Config::default();
        env.apply_env([(
            "SWITCHBOARD_CLUSTER__REDIS_URL".to_owned(),
            "redis+unix:///tmp/r.sock".to_owned(),
        )])
        .unwrap();
        assert!(env.cluster.enabled());
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn opus() -> RtpCodecCapability {
        RtpCodecCapability {
            kind: MediaKind::Audio,
            mime_type: "audio/opus".to_owned(),
            preferred_payload_type: Some(111),
            clock_rate: 48_000,
            channels: Some(2),
            parameters: Default::default(),
            rtcp_feedback: Vec::new(),
        }
    }

    // --- TOML ---

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn empty_document_is_the_defaults() {
        assert_eq!(Config::from_toml_str(""), Ok(Config::default()));
    }

    #[test]
    fn webrtc_addresses_and_port_range_are_checked() {
        let mut config = Config::default();
        config.server.workers = 4;
        config.webrtc.listen_ip = "0.0.0.0".into();
        config.webrtc.port_min = 50_000;
        config.webrtc.port_max = 50_001;
        let errors = config.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["webrtc.announced_ip", "webrtc.port_max"]);
        config.webrtc.announced_ip = "203.0.113.7".into();
        config.webrtc.port_max = 50_003;
        assert!(config.validate().is_ok());
        config.webrtc.listen_ip = "localhost".into();
        assert_eq!(config.validate().unwrap_err()[0].field, "webrtc.listen_ip");
    }

    #[test]
    fn rtp_addresses_and_port_range_are_checked() {
        let mut config = Config::default();
        config.rtp.listen_ip = "0.0.0.0".into();
        config.rtp.port_min = 40_050;
        config.rtp.port_max = 40_200;
        let errors = config.validate().unwrap_err();
        assert_eq!(fields(&errors), ["rtp.announced_ip", "rtp.port_min"]);
        assert!(
            errors[1]
                .message
                .contains("overlaps the webrtc range 40000-40099")
        );
        config.rtp.announced_ip = "203.0.113.7".into();
        config.rtp.port_min = 40_100;
        assert_eq!(config.validate(), Ok(()));
        config.rtp.port_max = 40_000;
        assert_eq!(fields(&config.validate().unwrap_err()), ["rtp.port_max"]);
        config.rtp.port_min = 0;
        assert_eq!(fields(&config.validate().unwrap_err()), ["rtp.port_min"]);
        config.rtp.port_max = 0;
        config.rtp.announced_ip = "::".into();
        config.rtp.listen_ip = "nowhere".into();
        assert_eq!(
            fields(&config.validate().unwrap_err()),
            ["rtp.listen_ip", "rtp.announced_ip"]
        );
        // OS-chosen ports never collide with a range.
        config.rtp = RtpConfig {
            port_min: 0,
            port_max: 0,
            ..RtpConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        config.set("rtp.port_min", "41000").unwrap();
        assert_eq!(config.rtp.port_min, 41_000);
        config.rtp.port_min = 0;
        config.set("rtp.srtp_max_ssrcs", "0").unwrap();
        assert_eq!(
            fields(&config.validate().unwrap_err()),
            ["rtp.srtp_max_ssrcs"]
        );
    }

    #[test]
    fn unsupported_codecs_fail_validation() {
        let mut config = Config::default();
        let mut codec = opus();
        codec.mime_type = "audio/speex".into();
        config.media.codecs.push(codec);
        let errors = config.validate().unwrap_err();
        assert_eq!(errors[0].field, "media.codecs");
        assert!(errors[0].message.contains("speex"), "{}", errors[0].message);
    }

    #[test]
    fn toml_round_trips_including_codecs() {
        let mut config = Config::default();
        config.media.codecs.push(opus());
        config.rpc.token = "a-secret-of-32-characters-......".to_owned();
        let text = config.to_toml_string().unwrap();
        assert_eq!(Config::from_toml_str(&text), Ok(config));
    }

    #[test]
    fn partial_document_keeps_other_defaults() {
        let config = Config::from_toml_str(
            "[server]\nworkers = 3\n\n[log]\nformat = \"json\"\n\n\
             [[media.codecs]]\nkind = \"audio\"\nmime_type = \"audio/opus\"\nclock_rate = 48000\n",
        )
        .unwrap();
        assert_eq!(config.server.workers, 3);
        assert_eq!(
            config.server.shutdown_timeout_ms,
            ServerConfig::default().shutdown_timeout_ms
        );
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.media.codecs.len(), 1);
        assert_eq!(config.rpc, RpcConfig::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line_and_the_valid_names() {
        let errors = Config::from_toml_str("[limits]\nmax_room = 5\n").unwrap_err();
        assert_eq!(fields(&errors), ["limits.max_room"]);
        let message = &errors[0].message;
        assert!(message.contains("unknown field `max_room`"), "{message}");
        assert!(message.contains("max_rooms"), "{message}");
        assert!(message.contains("line 2, column 1"), "{message}");
    }

    #[test]
    fn unknown_section_and_top_level_key_are_errors() {
        let errors = Config::from_toml_str("workers = 2\n[rcp]\nlisten = \"x\"\n").unwrap_err();
        assert_eq!(fields(&errors), ["workers", "rcp"]);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let errors = Config::from_toml_str("[server]\nworkers = \"many\"\n").unwrap_err();
        assert_eq!(fields(&errors), ["server.workers"]);
        assert!(errors[0].message.contains("invalid type: string \"many\""));
        assert!(errors[0].message.contains("line 2, column 11"));
        assert_eq!(
            errors[0].to_string(),
            format!("server.workers: {}", errors[0].message)
        );
    }

    #[test]
    fn every_bad_field_is_reported_in_document_order() {
        let text = "[server]\nworkers = -1\nshutdown_timeout_ms = 10\n\n\
                    [log]\nformat = \"xml\"\n\n[limits]\nmax_rooms = true\nmax_roms = 1\n";
        let errors = Config::from_toml_str(text).unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "server.workers",
                "log.format",
                "limits.max_rooms",
                "limits.max_roms"
            ]
        );
        assert!(errors[1].message.contains("expected `human` or `json`"));
    }

    #[test]
    fn codec_entries_are_located_by_index() {
        let text = "[[media.codecs]]\nkind = \"audio\"\nmime_type = \"audio/opus\"\nclock_rate = 48000\n\
                    [[media.codecs]]\nkind = \"video\"\nmime_type = \"video/VP8\"\nclock_rate = -90000\n";
        let errors = Config::from_toml_str(text).unwrap_err();
        assert_eq!(fields(&errors), ["media.codecs[1].clock_rate"]);
        assert!(errors[0].message.contains("line 8"));
    }

    #[test]
    fn syntax_error_is_one_error_with_a_line() {
        let errors = Config::from_toml_str("[server\nworkers = 1\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "");
        assert!(errors[0].message.starts_with("invalid TOML"));
        assert!(errors[0].message.contains("line 1"));
        assert_eq!(errors[0].to_string(), errors[0].message);
    }

    // --- validation ---

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = Config::default();
        config.server.shutdown_timeout_ms = 0;
        config.limits = LimitsConfig {
            max_rooms: 0,
            max_peers_per_room: 0,
            max_transports_per_room: 0,
            max_producers_per_transport: 0,
            max_consumers_per_transport: 0,
            max_sdp_bytes: 0,
            max_sdp_media_sections: 0,
            max_sdp_ssrc_lines: 0,
        };
        config.media.retransmission_max_age_ms = 0;
        config.media.keyframe_request_interval_ms = 0;
        config.media.sender_report_interval_ms = 0;
        config.media.nack_max_resends_per_nack = 0;
        config.media.nack_max_resends_per_second = 0;
        config.media.nack_default_rtt_ms = 0;
        config.rpc.max_frame_bytes = 0;
        config.rpc.max_connections = 0;
        config.rpc.request_timeout_ms = 0;
        config.rpc.max_preauth_frame_bytes = 0;
        config.rpc.max_preauth_connections = 0;
        config.rpc.auth_timeout_ms = 0;
        config.rpc.read_timeout_ms = 0;
        config.rpc.max_message_values = 0;
        config.rpc.max_protocol_errors = 0;
        config.rpc.max_refusals_in_flight = 0;
        config.log.level = " ".to_owned();
        let errors = config.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "server.shutdown_timeout_ms",
                "limits.max_rooms",
                "limits.max_peers_per_room",
                "limits.max_transports_per_room",
                "limits.max_producers_per_transport",
                "limits.max_consumers_per_transport",
                "limits.max_sdp_bytes",
                "limits.max_sdp_media_sections",
                "limits.max_sdp_ssrc_lines",
                "media.retransmission_max_age_ms",
                "media.keyframe_request_interval_ms",
                "media.sender_report_interval_ms",
                "media.nack_max_resends_per_nack",
                "media.nack_max_resends_per_second",
                "media.nack_default_rtt_ms",
                "rpc.max_frame_bytes",
                "rpc.max_connections",
                "rpc.request_timeout_ms",
                "rpc.max_preauth_frame_bytes",
                "rpc.max_preauth_connections",
                "rpc.auth_timeout_ms",
                "rpc.read_timeout_ms",
                "rpc.max_message_values",
                "rpc.max_protocol_errors",
                "rpc.max_refusals_in_flight",
                "log.level",
            ]
        );
        assert_eq!(
            errors[1].to_string(),
            "limits.max_rooms: must be at least 1, got 0"
        );
    }

    #[test]
    fn worker_count_and_retransmission_buffer_are_bounded() {
        let mut config = Config::default();
        // Let the OS pick ports, so the WebRTC port range does not bound the workers here.
        config.webrtc.port_min = 0;
        config.webrtc.port_max = 0;
        config.server.workers = MAX_WORKERS + 1;
        config.media.retransmission_buffer_packets = MAX_RETRANSMISSION_BUFFER_PACKETS + 1;
        let errors = config.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            ["server.workers", "media.retransmission_buffer_packets"]
        );
        config.server.workers = MAX_WORKERS;
        config.media.retransmission_buffer_packets = MAX_RETRANSMISSION_BUFFER_PACKETS;
        assert_eq!(config.validate(), Ok(()));
        config.media.retransmission_buffer_packets = 0;
        assert_eq!(
            fields(&config.validate().unwrap_err()),
            ["media.retransmission_buffer_packets"]
        );
    }

    #[test]
    fn listen_addresses_must_be_socket_addresses_or_empty() {
        let mut config = Config::default();
        config.rpc.listen = "x".to_owned();
        config.metrics.listen = "localhost:9700".to_owned();
        let errors = config.validate().unwrap_err();
        assert_eq!(fields(&errors), ["rpc.listen", "metrics.listen"]);
        assert!(
            errors[0]
                .message
                .starts_with("\"x\" is not a socket address")
        );

        config.rpc.listen = String::new();
        config.metrics.listen = String::new();
        assert_eq!(config.validate(), Ok(()));
        config.rpc.listen = "[::1]:0".to_owned();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn token_is_required_off_loopback() {
        let mut config = Config::default();
        for listen in ["0.0.0.0:7700", "192.0.2.2:7700", "[::]:7700"] {
            config.rpc.listen = listen.to_owned();
            let errors = config.validate().unwrap_err();
            assert_eq!(fields(&errors), ["rpc.token"], "{listen}");
            assert!(errors[0].message.contains(listen), "{}", errors[0]);
        }
        config.rpc.token = "s3cret-s3cret-s3cret".to_owned();
        assert_eq!(config.validate(), Ok(()));

        config.rpc.token = String::new();
        for listen in [
            "127.0.0.1:7700",
            "127.1.2.3:7700",
            "[::1]:7700",
            "[::ffff:127.0.0.1]:7700",
        ] {
            config.rpc.listen = listen.to_owned();
            assert_eq!(config.validate(), Ok(()), "{listen}");
        }
    }

    #[test]
    fn short_tokens_are_refused() {
        let mut config = Config::default();
        config.rpc.token = "x".repeat(MIN_RPC_TOKEN_BYTES - 1);
        let errors = config.validate().unwrap_err();
        assert_eq!(fields(&errors), ["rpc.token"]);
        assert!(
            errors[0].message.contains("at least 16 bytes"),
            "{}",
            errors[0]
        );
        config.rpc.token = "x".repeat(MIN_RPC_TOKEN_BYTES);
        assert_eq!(config.validate(), Ok(()));
        // No token at all is still fine on loopback.
        config.rpc.token = String::new();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn rpc_and_metrics_must_not_share_a_port() {
        let mut config = Config::default();
        config.rpc.listen = "127.0.0.1:7700".to_owned();
        config.metrics.listen = "127.0.0.1:7700".to_owned();
        assert_eq!(fields(&config.validate().unwrap_err()), ["metrics.listen"]);
        config.metrics.listen = "0.0.0.0:7700".to_owned();
        assert_eq!(fields(&config.validate().unwrap_err()), ["metrics.listen"]);
        // Different IPs, or OS-assigned ports, do not collide.
        config.metrics.listen = "127.0.0.2:7700".to_owned();
        assert_eq!(config.validate(), Ok(()));
        config.rpc.listen = "127.0.0.1:0".to_owned();
        config.metrics.listen = "127.0.0.1:0".to_owned();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn unix_socket_path_must_fit_sun_path() {
        let mut config = Config::default();
        config.rpc.unix_socket = format!("/tmp/{}", "s".repeat(MAX_UNIX_SOCKET_PATH_BYTES));
        assert_eq!(fields(&config.validate().unwrap_err()), ["rpc.unix_socket"]);
        config.rpc.unix_socket = "/run/switchboard.sock".to_owned();
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn codec_entries_are_checked() {
        let mut config = Config::default();
        config.media.codecs = vec![opus(); 6];
        config.media.codecs[1].mime_type = String::new();
        config.media.codecs[1].preferred_payload_type = None;
        config.media.codecs[2].mime_type = "opus".to_owned();
        config.media.codecs[2].preferred_payload_type = Some(128);
        config.media.codecs[3].mime_type = "video/VP8".to_owned();
        config.media.codecs[3].clock_rate = 0;
        config.media.codecs[3].preferred_payload_type = Some(96);
        config.media.codecs[4].channels = Some(0);
        config.media.codecs[4].preferred_payload_type = Some(100);
        // [5] repeats [0]'s payload type 111.
        let errors = config.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "media.codecs[1].mime_type",
                "media.codecs[2].mime_type",
                "media.codecs[2].preferred_payload_type",
                "media.codecs[3].kind",
                "media.codecs[3].clock_rate",
                "media.codecs[4].channels",
                "media.codecs[5].preferred_payload_type",
            ]
        );
        assert!(errors[6].message.contains("media.codecs[0]"));
        // MIME types compare case-insensitively, as SDP does.
        config.media.codecs = vec![opus()];
        config.media.codecs[0].mime_type = "AUDIO/OPUS".to_owned();
        assert_eq!(config.validate(), Ok(()));
    }

    // --- environment ---

    #[test]
    fn env_sets_strings_integers_and_enums() {
        let mut config = Config::default();
        config
            .apply_env(env(&[
                ("SWITCHBOARD_RPC__LISTEN", "0.0.0.0:7701"),
                ("SWITCHBOARD_RPC__TOKEN", "t0123456789abcdef"),
                ("SWITCHBOARD_SERVER__WORKERS", "4"),
                ("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS", "1_500"),
                ("SWITCHBOARD_LOG__FORMAT", "json"),
                ("SWITCHBOARD_METRICS__LISTEN", ""),
            ]))
            .unwrap();
        assert_eq!(config.rpc.listen, "0.0.0.0:7701");
        assert_eq!(config.rpc.token, "t0123456789abcdef");
        assert_eq!(config.server.workers, 4);
        assert_eq!(config.server.shutdown_timeout_ms, 1_500);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.metrics.listen, "");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn env_ignores_other_and_reserved_variables() {
        let mut config = Config::default();
        config
            .apply_env(env(&[
                ("PATH", "/usr/bin"),
                ("SWITCHBOARD_CONFIG", "/etc/switchboard.toml"),
                ("switchboard_server__workers", "x"),
            ]))
            .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn env_errors_name_the_variable_and_change_nothing() {
        let mut config = Config::default();
        let errors = config
            .apply_env(env(&[
                ("SWITCHBOARD_SERVER__WORKERS", "lots"),
                ("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS", "-5"),
                ("SWITCHBOARD_LOG__FORMAT", "xml"),
                ("SWITCHBOARD_RPC__LISTN", "127.0.0.1:1"),
                ("SWITCHBOARD_RCP__LISTEN", "127.0.0.1:1"),
                ("SWITCHBOARD_WORKERS", "2"),
                ("SWITCHBOARD_RPC__LISTEN__PORT", "1"),
                ("SWITCHBOARD_LIMITS__MAX_ROOMS", "7"),
            ]))
            .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "SWITCHBOARD_LOG__FORMAT",
                "SWITCHBOARD_RCP__LISTEN",
                "SWITCHBOARD_RPC__LISTEN__PORT",
                "SWITCHBOARD_RPC__LISTN",
                "SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS",
                "SWITCHBOARD_SERVER__WORKERS",
                "SWITCHBOARD_WORKERS",
            ]
        );
        let message = |name: &str| {
            errors
                .iter()
                .find(|e| e.field == name)
                .map(|e| e.message.clone())
                .unwrap()
        };
        assert!(
            message("SWITCHBOARD_SERVER__WORKERS").contains("expected an integer, got \"lots\"")
        );
        assert!(message("SWITCHBOARD_SERVER__WORKERS").contains("(setting server.workers)"));
        assert!(
            message("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS")
                .starts_with("server.shutdown_timeout_ms: invalid value: integer `-5`")
        );
        assert!(message("SWITCHBOARD_LOG__FORMAT").contains("unknown variant `xml`"));
        assert!(message("SWITCHBOARD_RPC__LISTN").starts_with("rpc.listn: unknown field `listn`"));
        assert!(message("SWITCHBOARD_RCP__LISTEN").contains("unknown field `rcp`"));
        assert!(message("SWITCHBOARD_WORKERS").contains("<SECTION>__<FIELD>"));
        assert!(message("SWITCHBOARD_RPC__LISTEN__PORT").contains("rpc.listen is a string"));
        // The one good variable is not applied either: a config is taken whole or not at all.
        assert_eq!(config, Config::default());
    }

    #[test]
    fn env_can_replace_a_list_with_toml() {
        let mut config = Config::default();
        config
            .apply_env(env(&[(
                "SWITCHBOARD_MEDIA__CODECS",
                r#"[{ kind = "audio", mime_type = "audio/opus", clock_rate = 48000, channels = 2 }]"#,
            )]))
            .unwrap();
        assert_eq!(config.media.codecs.len(), 1);
        assert_eq!(config.media.codecs[0].channels, Some(2));

        let errors = config
            .apply_env(env(&[("SWITCHBOARD_MEDIA__CODECS", "opus")]))
            .unwrap_err();
        assert!(errors[0].message.contains("expected a TOML array"));
    }

    #[test]
    fn set_takes_a_dotted_path() {
        let mut config = Config::default();
        config.set("limits.max_rooms", "12").unwrap();
        assert_eq!(config.limits.max_rooms, 12);
        assert!(config.set("limits.max_rooms", "twelve").is_err());
        assert!(config.set("limits..max_rooms", "1").is_err());
        assert!(
            config
                .set("limits.nope", "1")
                .unwrap_err()
                .contains("unknown field `nope`")
        );
        assert_eq!(config.limits.max_rooms, 12);
    }

    #[test]
    fn env_var_names_match_field_paths() {
        assert_eq!(
            Config::env_var_name("rpc.listen"),
            "SWITCHBOARD_RPC__LISTEN"
        );
        assert_eq!(
            Config::env_var_name("server.shutdown_timeout_ms"),
            "SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS"
        );
        let mut config = Config::default();
        config
            .apply_env([(
                Config::env_var_name("media.sender_report_interval_ms"),
                "250".to_owned(),
            )])
            .unwrap();
        assert_eq!(config.media.sender_report_interval_ms, 250);
    }
}
