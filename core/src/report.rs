//! What the stats and dump requests answer, one type per object: the `router.stats`,
//! `router.dump`, `transport.*`, `producer.*` and `consumer.*` results of the RPC
//! (`docs/rpc.md`), and the results of the same calls on `ServerHandle`.
//!
//! A plugin's own part (`plugin` in a transport's stats and dump) stays a JSON value: each
//! plugin kind reports what it has, described by its own documentation.

use crate::event::TransportState;
use crate::forward::{ForwarderStats, MediaTotals};
use crate::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use crate::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};
use serde::Serialize;
use serde_json::Value;

/// Which kind of object a stats result describes (its `type` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectType {
    /// A router (a room).
    Router,
    /// A transport.
    Transport,
    /// A producer.
    Producer,
    /// A consumer.
    Consumer,
}

/// A router's part in its room: the only one, or the home or a secondary router of a room
/// that spans workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterRole {
    /// The router the room was created on.
    Home,
    /// A router the room added on another worker.
    Secondary,
}

/// `router.stats`: counts and forwarding counters.
#[derive(Clone, Debug, Serialize)]
pub struct RouterStats {
    /// Always [`ObjectType::Router`].
    #[serde(rename = "type")]
    pub object: ObjectType,
    /// The room.
    pub id: RouterId,
    /// The worker of its home router.
    pub worker: WorkerId,
    /// Peers in the room.
    pub peers: usize,
    /// Transports of the home router.
    pub transports: usize,
    /// Producers of the home router.
    pub producers: usize,
    /// Consumers of the home router.
    pub consumers: usize,
    /// The home router's forwarding counters.
    pub counters: ForwarderStats,
    /// Everything the room counted since it opened, closed objects included.
    pub totals: MediaTotals,
    /// The attached middleware instances.
    pub middleware: Vec<MiddlewareStats>,
    /// Every router of a room that spans workers, home first; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routers: Option<Vec<RouterPartStats>>,
}

/// One attached middleware instance in [`RouterStats`].
#[derive(Clone, Debug, Serialize)]
pub struct MiddlewareStats {
    /// Its registered name.
    pub name: String,
    /// Packets put into its queue.
    pub queued: u64,
    /// Packets handed to it.
    pub delivered: u64,
    /// Packets dropped because its queue was full.
    pub dropped: u64,
    /// What the middleware reports itself, as its thread last took it.
    pub stats: Value,
}

/// One router of a spanning room in [`RouterStats`], counting what the backend sees.
#[derive(Clone, Debug, Serialize)]
pub struct RouterPartStats {
    /// Its worker.
    pub worker: WorkerId,
    /// Home or secondary.
    pub role: RouterRole,
    /// Its transports.
    pub transports: usize,
    /// Its producers.
    pub producers: usize,
    /// Its consumers.
    pub consumers: usize,
    /// Its pipes to the room's other routers.
    pub pipes: Vec<PipeStats>,
    /// Its forwarding counters (packets sent into pipes included).
    pub counters: ForwarderStats,
}

/// A pipe from one router of a spanning room to another.
#[derive(Clone, Debug, Serialize)]
pub struct PipeStats {
    /// The pipe's (internal) transport on this router.
    pub transport: TransportId,
    /// The worker of the router at the other end.
    pub remote_worker: WorkerId,
    /// This router's producers piped to that worker.
    pub producers_out: usize,
    /// Copies of that worker's producers here.
    pub producers_in: usize,
    /// RTP packets sent into the pipe.
    pub packets_out: u64,
}

/// `router.dump`: the room's tree.
#[derive(Clone, Debug, Serialize)]
pub struct RouterDump {
    /// The room.
    pub id: RouterId,
    /// The worker of its home router.
    pub worker: WorkerId,
    /// The room's RTP capabilities.
    pub rtp_capabilities: RtpCapabilities,
    /// Whether receive connections get every track automatically (`router.create`).
    pub auto_subscribe: bool,
    /// Whether each peer sends and receives on one connection (`router.create`).
    pub single_connection: bool,
    /// Peers and their WebRTC connections.
    pub peers: Vec<PeerDump>,
    /// The room's transports (of every router it spans).
    pub transports: Vec<TransportEntry>,
    /// The room's producers.
    pub producers: Vec<ProducerEntry>,
    /// The room's consumers.
    pub consumers: Vec<ConsumerEntry>,
    /// Names of the attached middleware.
    pub middleware: Vec<String>,
    /// Every router of a room that spans workers, home first; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routers: Option<Vec<RouterPartDump>>,
}

/// A peer in [`RouterDump`].
#[derive(Clone, Debug, Serialize)]
pub struct PeerDump {
    /// The peer.
    pub id: PeerId,
    /// The connection carrying what it sends.
    pub send: Option<TransportId>,
    /// The connection carrying what it receives.
    pub recv: Option<TransportId>,
}

/// A transport in [`RouterDump`].
#[derive(Clone, Debug, Serialize)]
pub struct TransportEntry {
    /// The transport.
    pub id: TransportId,
    /// Its plugin kind.
    pub kind: String,
    /// Its peer.
    pub peer: Option<PeerId>,
    /// Its worker, in a room that spans workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
}

/// A producer in [`RouterDump`].
#[derive(Clone, Debug, Serialize)]
pub struct ProducerEntry {
    /// The producer.
    pub id: ProducerId,
    /// Its transport.
    pub transport: TransportId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Whether it is paused.
    pub paused: bool,
    /// Its worker, in a room that spans workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
}

/// A consumer in [`RouterDump`].
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerEntry {
    /// The consumer.
    pub id: ConsumerId,
    /// Its transport.
    pub transport: TransportId,
    /// The producer it takes.
    pub producer: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Whether it is paused.
    pub paused: bool,
    /// Its worker, in a room that spans workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
}

/// One router of a spanning room in [`RouterDump`].
#[derive(Clone, Debug, Serialize)]
pub struct RouterPartDump {
    /// Its worker.
    pub worker: WorkerId,
    /// Home or secondary.
    pub role: RouterRole,
    /// Its pipes to the room's other routers.
    pub pipes: Vec<PipeStats>,
}

/// `transport.stats`.
#[derive(Clone, Debug, Serialize)]
pub struct TransportStats {
    /// Always [`ObjectType::Transport`].
    #[serde(rename = "type")]
    pub object: ObjectType,
    /// The transport.
    pub id: TransportId,
    /// Its router.
    pub router: RouterId,
    /// Its plugin kind.
    pub kind: String,
    /// Its peer.
    pub peer: Option<PeerId>,
    /// The last connection state it reported.
    pub state: Option<TransportState>,
    /// Its producers.
    pub producers: usize,
    /// Its consumers.
    pub consumers: usize,
    /// Packets it delivered while its room was busy sending, dropped.
    pub reentrant_drops: Option<u64>,
    /// The plugin's own counters.
    pub plugin: Value,
}

/// `transport.dump`.
#[derive(Clone, Debug, Serialize)]
pub struct TransportDump {
    /// The transport.
    pub id: TransportId,
    /// Its router.
    pub router: RouterId,
    /// Its plugin kind.
    pub kind: String,
    /// Its producers.
    pub producers: Vec<ProducerId>,
    /// Its consumers.
    pub consumers: Vec<ConsumerId>,
    /// The plugin's own state.
    pub plugin: Value,
}

/// `producer.stats`.
#[derive(Clone, Debug, Serialize)]
pub struct ProducerStats {
    /// Always [`ObjectType::Producer`].
    #[serde(rename = "type")]
    pub object: ObjectType,
    /// The producer.
    pub id: ProducerId,
    /// Its router.
    pub router: RouterId,
    /// Its transport.
    pub transport: Option<TransportId>,
    /// Audio or video.
    pub kind: Option<MediaKind>,
    /// Whether it is paused.
    pub paused: Option<bool>,
    /// The SSRC it was matched on (learnt from the first packet when it had none).
    pub ssrc: Option<u32>,
    /// Its counters.
    pub counters: crate::forward::ProducerStats,
}

/// `producer.dump`.
#[derive(Clone, Debug, Serialize)]
pub struct ProducerDump {
    /// The producer.
    pub id: ProducerId,
    /// Its router.
    pub router: RouterId,
    /// Its transport.
    pub transport: TransportId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its parameters as created.
    pub rtp_parameters: RtpParameters,
    /// Its parameters as offered to consumers, in the router's numbering.
    pub consumable: RtpParameters,
    /// Whether it is paused.
    pub paused: bool,
}

/// `consumer.stats`.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerStats {
    /// Always [`ObjectType::Consumer`].
    #[serde(rename = "type")]
    pub object: ObjectType,
    /// The consumer.
    pub id: ConsumerId,
    /// Its router.
    pub router: RouterId,
    /// Its transport.
    pub transport: Option<TransportId>,
    /// The producer it takes.
    pub producer: Option<ProducerId>,
    /// Audio or video.
    pub kind: Option<MediaKind>,
    /// Whether it is paused.
    pub paused: Option<bool>,
    /// The SSRC it sends with.
    pub ssrc: Option<u32>,
    /// Its counters.
    pub counters: crate::forward::ConsumerStats,
    /// What its receiver last reported.
    pub remote: RemoteInbound,
}

/// What a consumer's receiver last reported, in base units, named as in WebRTC's
/// `remote-inbound-rtp` statistics.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteInbound {
    /// Round-trip time, in seconds, once measured.
    pub round_trip_time: Option<f64>,
    /// Fraction of packets lost since the previous report (0 to 1).
    pub fraction_lost: f64,
    /// Cumulative packets lost (negative when duplicates outnumber losses).
    pub packets_lost: i32,
    /// Interarrival jitter, in seconds, when the clock rate is known.
    pub jitter: Option<f64>,
}

/// `consumer.dump`.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerDump {
    /// The consumer.
    pub id: ConsumerId,
    /// Its router.
    pub router: RouterId,
    /// Its transport.
    pub transport: TransportId,
    /// The producer it takes.
    pub producer: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its parameters.
    pub rtp_parameters: RtpParameters,
    /// Whether it is paused.
    pub paused: bool,
}

/// A plugin's typed stats or dump as the JSON value [`crate::transport::Transport::stats`]
/// and [`crate::transport::Transport::dump`] return.
pub fn plugin_value(report: &impl Serialize) -> Value {
    // Only a map with non-string keys fails to serialise to JSON; reports have none.
    serde_json::to_value(report).unwrap_or(Value::Null)
}
