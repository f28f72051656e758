//! The control socket's protocol types: every method's parameters and typed results, the
//! error every failed call carries, and the event subscriptions of a connection.
//!
//! The server reads requests with these definitions and the client writes them with the
//! same ones, so the two cannot drift apart. Every parameter struct rejects unknown fields:
//! a misspelt option is an `invalid_params` error naming it, not a setting silently ignored.
//! `docs/rpc.md` is the protocol's reference.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt;
use switchboard_core::config::LimitsConfig;
use switchboard_core::event::Event;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::{ConsumerId, Error, ErrorCode, ProducerId, RouterId, TransportId, WorkerId};

/// An error as the control socket reports it: a stable code, a message for people, and
/// optional structured detail (such as `{"field": "rtp_parameters.codecs[0]"}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Machine-readable detail, when there is some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with detail attached.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Bad parameters, naming the field at fault.
    pub fn invalid_param(field: &str, message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidParams, format!("{field}: {message}"))
            .with_data(serde_json::json!({ "field": field }))
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        Self::new(e.code, e.message)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

/// Control-socket counters, as `server.stats` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused because `rpc.max_connections` were open.
    pub connections_rejected: u64,
    /// Connections closed for a missing or wrong token.
    pub auth_failures: u64,
    /// Requests and notifications dispatched to a method.
    pub requests: u64,
    /// Of those, the ones that failed (any error code, timeouts included).
    pub request_errors: u64,
    /// Of those, the ones that ran past `rpc.request_timeout_ms`.
    pub request_timeouts: u64,
    /// Frames refused as `parse_error`, `invalid_request` or `frame_too_large`.
    pub protocol_errors: u64,
    /// Event notifications queued to subscribers.
    pub events_sent: u64,
    /// Event notifications dropped because a subscriber's queue was full, or because the
    /// server's event bus dropped them for a connection that fell behind.
    pub events_dropped: u64,
    /// Connections open now that have not made their first valid request (`auth` when a
    /// token is set); `connections_open` counts the others.
    #[serde(default)]
    pub connections_preauth: u64,
    /// Pre-auth connections closed to make room for a newer one
    /// (`rpc.max_preauth_connections`).
    #[serde(default)]
    pub preauth_evicted: u64,
    /// Connections closed for making no valid request within `rpc.auth_timeout_ms`.
    #[serde(default)]
    pub auth_timeouts: u64,
    /// Connections closed because a message took longer than `rpc.read_timeout_ms` to
    /// arrive.
    #[serde(default)]
    pub read_timeouts: u64,
    /// Connections closed for sending nothing for `rpc.idle_timeout_ms`.
    #[serde(default)]
    pub idle_timeouts: u64,
    /// Connections closed for invalid messages: a first message that is not a request, or
    /// `rpc.max_protocol_errors` of them.
    #[serde(default)]
    pub protocol_error_closes: u64,
    /// Connections that sent an HTTP request, answered with HTTP 400 and closed.
    #[serde(default)]
    pub http_refused: u64,
    /// Refused connections closed without being told why, because
    /// `rpc.max_refusals_in_flight` were being told already.
    #[serde(default)]
    pub refusals_unexplained: u64,
}

/// Which events a connection asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// Every event, of every room and of the workers.
    pub all: bool,
    /// Rooms whose events are wanted. A room leaves the set by itself once its
    /// `router_closed` event has been delivered.
    pub routers: BTreeSet<RouterId>,
}

impl Subscriptions {
    /// Whether an event is one these subscriptions ask for.
    pub fn wants(&self, event: &Event) -> bool {
        self.all || event.router().is_some_and(|r| self.routers.contains(&r))
    }
}

fn empty_map() -> Value {
    json!({})
}

/// No parameters: an empty map (or nil, or an empty array).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `auth`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// The shared secret, `rpc.token`.
    pub token: String,
}

/// A method that names a router.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterParams {
    /// The router (room).
    pub router: RouterId,
}

/// `peer.join`, `peer.leave`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerParams {
    /// The room.
    pub router: RouterId,
    /// The backend's id for the participant: 1 to 128 bytes, no control characters.
    pub peer: String,
}

/// `transport.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportCreateParams {
    /// The room.
    pub router: RouterId,
    /// The transport plugin, such as `direct`.
    pub kind: String,
    /// The peer it belongs to (closed when the peer leaves); the peer must have joined.
    #[serde(default)]
    pub peer: Option<String>,
    /// Plugin-specific options.
    #[serde(default = "empty_map")]
    pub options: Value,
}

/// `transport.connect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConnectParams {
    /// The transport.
    pub transport: TransportId,
    /// The remote side's plugin-specific parameters (addresses, DTLS fingerprints, ...).
    #[serde(default = "empty_map")]
    pub remote: Value,
}

/// A method that names a transport.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportParams {
    /// The transport.
    pub transport: TransportId,
}

/// `producer.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerCreateParams {
    /// The transport the media arrives on.
    pub transport: TransportId,
    /// `audio` or `video`.
    pub kind: MediaKind,
    /// What the sender sends: payload types, header-extension ids, SSRCs.
    pub rtp_parameters: RtpParameters,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A method that names a producer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerParams {
    /// The producer.
    pub producer: ProducerId,
}

/// `consumer.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerCreateParams {
    /// The transport the media leaves on.
    pub transport: TransportId,
    /// The producer to consume.
    pub producer: ProducerId,
    /// What the receiver can receive.
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A method that names a consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerParams {
    /// The consumer.
    pub consumer: ConsumerId,
}

/// `middleware.attach`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareAttachParams {
    /// The room.
    pub router: RouterId,
    /// The registered middleware name.
    pub name: String,
    /// Middleware-specific options.
    #[serde(default = "empty_map")]
    pub options: Value,
}

/// `middleware.detach`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareDetachParams {
    /// The room.
    pub router: RouterId,
    /// The attached middleware's name.
    pub name: String,
}

/// `events.subscribe`, `events.unsubscribe`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// One room; without it, everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterId>,
}

/// `server.info`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    /// Always `switchboard`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Worker threads.
    pub workers: usize,
    /// Registered transport plugin kinds.
    pub transports: Vec<String>,
    /// Registered middleware names.
    pub middleware: Vec<String>,
    /// Every RPC method, sorted.
    pub methods: Vec<String>,
    /// Every codec and header extension the server can route.
    pub rtp_capabilities: RtpCapabilities,
    /// The configured object limits.
    pub limits: LimitsConfig,
    /// The control socket's own limits.
    pub rpc: RpcLimits,
}

/// The control socket's limits, as `server.info` reports them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest accepted message, in bytes.
    pub max_frame_bytes: usize,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Time a request may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Whether `auth` must come first.
    pub auth_required: bool,
    /// Time a new connection has to make its first valid request, in milliseconds.
    #[serde(default)]
    pub auth_timeout_ms: u64,
    /// Time an established connection may send nothing, in milliseconds; 0 is no limit.
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// Values one message may hold.
    #[serde(default)]
    pub max_message_values: usize,
}

/// `server.stats`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerStats {
    /// Rooms open.
    pub rooms: usize,
    /// Each worker's load.
    pub workers: Vec<WorkerSummary>,
    /// Events the server's bus dropped because a subscriber fell behind (all subscribers,
    /// including ones inside the process).
    pub events_dropped: u64,
    /// Control-socket counters.
    pub rpc: RpcStats,
}

/// One worker's load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerSummary {
    /// The worker's number.
    pub id: WorkerId,
    /// Routers on it.
    pub routers: usize,
    /// Transports on it.
    pub transports: usize,
    /// Producers on it.
    pub producers: usize,
    /// Consumers on it.
    pub consumers: usize,
    /// RTP packets received so far.
    pub packets_in: u64,
    /// RTP packets forwarded so far.
    pub packets_out: u64,
    /// RTP payload bytes received so far.
    #[serde(default)]
    pub bytes_in: u64,
    /// RTP payload bytes forwarded so far.
    #[serde(default)]
    pub bytes_out: u64,
    /// Rooms + transports + producers + consumers: breaks ties between equally loaded
    /// workers in placement.
    #[serde(default)]
    pub load_score: usize,
    /// RTP packets handled per second (received plus forwarded), as last sampled.
    #[serde(default)]
    pub packets_per_second: u64,
    /// CPU time of the worker's thread as last sampled, in percent of one core.
    #[serde(default)]
    pub cpu_percent: u64,
    /// Load relative to the `[placement]` thresholds, in percent; 100 or more is loaded.
    #[serde(default)]
    pub load_percent: u64,
}

/// `worker.list`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerList {
    /// Every worker, by number.
    pub workers: Vec<WorkerSummary>,
}

/// One room in `router.list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterSummary {
    /// The router.
    pub id: RouterId,
    /// Its worker.
    pub worker: WorkerId,
}

/// `router.list`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterList {
    /// Every open room, sorted by id.
    pub routers: Vec<RouterSummary>,
}

/// `transport.request`: a plugin-specific operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportRequestParams {
    /// The transport.
    pub transport: TransportId,
    /// The plugin's operation, e.g. `offer` for `webrtc`.
    pub method: String,
    /// Its parameters.
    #[serde(default = "empty_map")]
    pub params: Value,
}

/// `webrtc.publish`: a peer's SDP offer for its send connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcOfferParams {
    /// The room.
    pub router: RouterId,
    /// The peer.
    pub peer: String,
    /// The SDP.
    pub sdp: String,
}

/// `webrtc.answer`: a peer's SDP answer to the server's last offer on one of its
/// connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcAnswerParams {
    /// The room.
    pub router: RouterId,
    /// The peer.
    pub peer: String,
    /// The SDP answer.
    pub sdp: String,
    /// Which connection's offer it answers: `recv` (the default) or `send` (the
    /// `renegotiation_needed` event says which).
    #[serde(default)]
    pub connection: switchboard_core::event::Connection,
}

/// One producer created by `webrtc.publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishedTrack {
    /// The producer.
    pub id: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The m-line's mid.
    pub mid: Option<String>,
    /// The MediaStream id (msid) the track belongs to.
    pub stream_id: Option<String>,
    /// The track id (msid).
    pub track_id: Option<String>,
}

/// The result of `webrtc.publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebRtcPublishResult {
    /// The peer's send connection.
    pub transport: TransportId,
    /// The server's SDP answer.
    pub sdp: String,
    /// Producers this offer created.
    pub producers: Vec<PublishedTrack>,
    /// Producers closed because their m-lines stopped sending.
    pub closed_producers: Vec<ProducerId>,
}

/// Whether a node takes new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes new rooms and transports.
    Serving,
    /// Takes nothing new; its peers are being moved away.
    Draining,
}

/// A node's entry in the cluster, renewed by its heartbeat (`cluster.nodes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Its id (`cluster.node_id`).
    pub id: String,
    /// Its control socket, for backends and other nodes.
    pub rpc: String,
    /// Serving or draining.
    pub state: NodeState,
    /// Worker threads.
    pub workers: usize,
    /// Rooms (routers) it holds.
    pub rooms: usize,
    /// Transports it holds.
    pub transports: usize,
    /// Producers it holds.
    pub producers: usize,
    /// Consumers it holds.
    pub consumers: usize,
    /// RTP packets per second its workers handle (received plus forwarded).
    pub packets_per_second: u64,
    /// Its busiest worker's load, percent of that worker's threshold (`worker.list`).
    pub load_percent: u64,
    /// Its least loaded worker's load, percent of that worker's threshold: what it has left
    /// for a room, whose transports can go to any of its workers. (0 from a node that
    /// predates it.)
    #[serde(default)]
    pub spare_load_percent: u64,
    /// Its version.
    pub version: String,
    /// When it started, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When it wrote this entry, milliseconds since the Unix epoch.
    pub heartbeat_ms: u64,
}

/// Where an object lives (`cluster.locate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    /// The owning node's id.
    pub node: String,
    /// Its control socket (`None` when its entry just expired).
    pub rpc: Option<String>,
}

/// `cluster.nodes`: the live nodes of the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterNodes {
    /// The node that answered.
    pub node: String,
    /// Every live node, by id, the answering one included.
    pub nodes: Vec<ClusterNode>,
}

/// `cluster.locate`: exactly one of the two.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLocateParams {
    /// A router (room).
    #[serde(default)]
    pub router: Option<RouterId>,
    /// A producer.
    #[serde(default)]
    pub producer: Option<ProducerId>,
}

/// `cluster.forward`: a request one node sends another that owns its object. Nodes send it;
/// backends have no reason to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterForwardParams {
    /// The method to run.
    pub method: String,
    /// Its parameters, as the backend sent them.
    #[serde(default)]
    pub params: Value,
}

/// `cluster.pipe`: a producer into a router, wherever each is in the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPipeParams {
    /// The producer to pipe.
    pub producer: ProducerId,
    /// The router (room) that gets it.
    pub router: RouterId,
    /// The node whose router of the room gets it, for a room spanning nodes; default: the
    /// room's first node. (Not `node`, which names where a request runs.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_node: Option<String>,
}

/// What `cluster.pipe` made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPipeResult {
    /// The producer in the destination router, fed by the pipe: what its consumers consume.
    pub producer: ProducerId,
    /// The destination side's `rtp` transport (closing it undoes the pipe there).
    pub transport: TransportId,
    /// The source side's `rtp` transport.
    pub source_transport: TransportId,
    /// The source side's consumer of the piped producer.
    pub source_consumer: ConsumerId,
}

/// `cluster.span`: open a router of a room on a node, for a room to span nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpanParams {
    /// The room.
    pub router: RouterId,
    /// The node to open it on; default: the node asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What `cluster.span` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpanResult {
    /// The room.
    pub router: RouterId,
    /// The node that now holds a router of it.
    pub node: String,
    /// Whether it was opened now (false: the node already held one).
    pub opened: bool,
}

/// `cluster.pipe_peer`: which node holds the other end of a pipe transport. Nodes send it
/// to each other while setting up a pipe.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPipePeerParams {
    /// One end of the pipe.
    pub transport: TransportId,
    /// The node that holds the other end. (Not `node`, which names where a request runs.)
    pub peer: String,
    /// On the source end: the original producer it feeds to the other node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerId>,
}

/// `cluster.adopt`: take over a peer, with its WebRTC connections, that a draining node
/// hands over. Nodes send it to each other.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterAdoptParams {
    /// The room.
    pub router: RouterId,
    /// The peer.
    pub peer: String,
    /// Its WebRTC receive connection's state (`transport.request` `resume_state` on the old
    /// node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<serde_json::Value>,
    /// With `resume`: the tracks of the connection's open media lines, in order (original
    /// ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<ProducerId>,
    /// Its WebRTC send connection, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<ClusterAdoptSend>,
    /// Instead of `resume` and `send`: its plain RTP receivers, each `{options, remote,
    /// producers}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtp: Vec<serde_json::Value>,
}

/// A send connection in [`ClusterAdoptParams`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterAdoptSend {
    /// Its state (`transport.request` `resume_state` on the old node).
    pub resume: serde_json::Value,
    /// The producers of the m-lines the client sends on, made again on the new node.
    pub tracks: Vec<switchboard_core::api::ResumedTrack>,
}

/// What `cluster.adopt` made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterAdopted {
    /// The new WebRTC receive connection, with `resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportId>,
    /// Its offer (also announced with `renegotiation_needed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// The new plain RTP transports, with `rtp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transports: Vec<TransportId>,
    /// The new WebRTC send connection, with `send` (its offer is announced with
    /// `renegotiation_needed`, `connection: "send"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<TransportId>,
    /// The producers made on it, in the order of `send.tracks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<ProducerId>,
}

/// `cluster.feeds`: what a node can feed of a track. Nodes ask each other while building a
/// room's fan-out tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFeedsParams {
    /// The original producer.
    pub producer: ProducerId,
}

/// What `cluster.feeds` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFeeds {
    /// Whether the node has the track (the original, or a copy piped in).
    pub has: bool,
    /// How many nodes it feeds the track to.
    pub feeds: usize,
}

/// `server.drain`: the node now drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// Always true: draining does not end while the process runs.
    pub draining: bool,
    /// Rooms still open on the node.
    pub rooms: usize,
}
