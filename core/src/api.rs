//! The plain data types of the control API: options for new objects and descriptions of
//! them. The actor server takes and returns them, and the RPC protocol carries them
//! serialised, so a backend's client needs only this crate to speak it.

use crate::rtp_parameters::{MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters};
use crate::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Options for a new router.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterOptions {
    /// The room's id; `None` draws a new one. A cluster gives a room's routers on other nodes
    /// the room's id, so that requests and events name the room the same everywhere.
    pub id: Option<RouterId>,
    /// Codecs for this router; `None` uses the configured (or built-in) set.
    pub codecs: Option<Vec<RtpCodecCapability>>,
    /// Pin the router to a worker instead of placing it on the least-loaded one.
    pub worker: Option<WorkerId>,
    /// Subscribe every peer's receiving connection to every other peer's tracks
    /// automatically (the default). Off, the backend creates consumers itself.
    pub auto_subscribe: bool,
    /// Give each peer one connection for sending and receiving, instead of one for each
    /// direction. The client then offers for what it sends and answers the server's offers for
    /// what it receives on the same connection; it must answer a pending server offer before
    /// it sends a new offer of its own (glare is refused, not resolved).
    pub single_connection: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            id: None,
            codecs: None,
            worker: None,
            auto_subscribe: true,
            single_connection: false,
        }
    }
}

/// A created router.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RouterInfo {
    /// Its id.
    pub id: RouterId,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// What it can route: codecs with payload types, header extensions.
    pub rtp_capabilities: RtpCapabilities,
}

/// A created transport.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransportInfo {
    /// Its id.
    pub id: TransportId,
    /// Its router.
    pub router: RouterId,
    /// The peer it belongs to, if any.
    pub peer: Option<PeerId>,
    /// The plugin that made it.
    pub kind: String,
    /// Plugin-specific local parameters (addresses, ICE credentials, ...).
    pub local: Value,
}

/// Options for a new producer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceOptions {
    /// Audio or video.
    pub kind: MediaKind,
    /// What the sender sends: its payload types, extension ids and SSRCs.
    pub rtp_parameters: RtpParameters,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A created producer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProducerInfo {
    /// Its id.
    pub id: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The stream as the router offers it to consumers (router payload types).
    pub consumable_rtp_parameters: RtpParameters,
}

/// Options for a new consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeOptions {
    /// The producer to consume.
    pub producer: ProducerId,
    /// What the receiver can receive; its payload types and ids are used where given.
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A created consumer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConsumerInfo {
    /// Its id.
    pub id: ConsumerId,
    /// The producer feeding it.
    pub producer: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// What the receiver will get: payload types, extension ids, SSRCs.
    pub rtp_parameters: RtpParameters,
    /// Whether it starts paused.
    pub paused: bool,
}

/// The result of a plugin-specific transport request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TransportRequestResult {
    /// The plugin's answer (for WebRTC, an SDP answer or offer).
    pub response: Value,
    /// Producers created because of the request, with the plugin's description of each.
    pub producers: Vec<(ProducerInfo, Value)>,
    /// Producers closed because of the request.
    pub closed_producers: Vec<ProducerId>,
}

/// A track a moved send connection's client goes on sending: the producer the old server had
/// for the m-line `mid`, made again here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResumedTrack {
    /// The client's m-line.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The producer's parameters as the old server made them (the client's numbering and
    /// SSRCs, which an ICE or DTLS restart does not change).
    pub rtp_parameters: RtpParameters,
    /// Whether the backend had paused it.
    #[serde(default)]
    pub paused: bool,
}

/// The result of a subscribe (`webrtc.subscribe`) or an ICE restart: the peer's receive
/// connection and the server's SDP offer for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SubscribeResult {
    /// The peer's receive connection.
    pub transport: TransportId,
    /// The server's SDP offer.
    pub sdp: String,
}
