//! Events: what the server tells the backend happened.
//!
//! Every object closure emits exactly one `*Closed` event carrying its [`CloseReason`], so a
//! backend can mirror the object tree without polling. Cascaded closures (a router taking its
//! transports with it) say so in their reason.

use crate::id::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};
use crate::rtp_parameters::MediaKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an object closed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum CloseReason {
    /// Someone asked for it (the backend, or Rust code).
    Requested,
    /// Its parent closed (router → transports → producers/consumers).
    ParentClosed,
    /// A consumer's producer closed.
    ProducerClosed,
    /// The object (or its actor) failed; the message says how.
    Crashed {
        /// What went wrong.
        message: String,
    },
    /// The server is shutting down.
    Shutdown,
    /// A WebRTC transport heard nothing from its client (no connectivity check, no media,
    /// no RTCP) for `webrtc.consent_timeout_ms`: the client vanished. A peer whose
    /// connections all closed so leaves the room with it after `webrtc.peer_timeout_ms`.
    IceTimeout,
    /// The client ended DTLS (close_notify or a fatal alert).
    DtlsClosed,
    /// The client's connectivity checks arrived but it completed no DTLS handshake within a
    /// third of `webrtc.consent_timeout_ms` (a client that keeps its old DTLS session when
    /// its connection moves to another server, as webrtc-rs does; a broken client).
    DtlsTimeout,
    /// The client's SDP answer rejected the consumer's m-line (port 0): it cannot take the
    /// track.
    Rejected,
    /// In a cluster, the node at the other end of a pipe was lost (its entry expired): the
    /// pipe's transport closes, and with it the producer it fed and that producer's consumers.
    NodeLost,
    /// In a cluster, a draining node handed the peer (and its receive connection) over to
    /// another node, where it goes on (`peer_joined` there, and `renegotiation_needed` with
    /// the new offer).
    Moved,
}

/// Which of a peer's (at most two) WebRTC connections something is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// The connection carrying what the peer receives (also the one connection of a
    /// `single_connection` room's peer).
    #[default]
    Recv,
    /// The connection carrying what the peer sends. The server offers on it only after
    /// a draining cluster node moved it here.
    Send,
}

/// Something that happened in the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A worker started.
    WorkerStarted {
        /// Which.
        worker: WorkerId,
    },
    /// A worker's actor died (its routers are closed with `crashed`).
    WorkerDied {
        /// Which.
        worker: WorkerId,
        /// Why.
        message: String,
    },
    /// A dead worker was started again.
    WorkerRestarted {
        /// Which.
        worker: WorkerId,
    },
    /// A router (room) was created.
    RouterCreated {
        /// The router.
        router: RouterId,
        /// Its worker.
        worker: WorkerId,
    },
    /// A router closed.
    RouterClosed {
        /// The router.
        router: RouterId,
        /// Why.
        #[serde(flatten)]
        reason: CloseReason,
    },
    /// A peer joined a room.
    PeerJoined {
        /// The room.
        router: RouterId,
        /// The peer.
        peer: PeerId,
    },
    /// A peer left a room (its transports closed first).
    PeerLeft {
        /// The room.
        router: RouterId,
        /// The peer.
        peer: PeerId,
        /// Why.
        #[serde(flatten)]
        reason: CloseReason,
    },
    /// A connection's tracks changed (consumers added or closed), or it moved here from
    /// another node: the client must apply this new offer and answer it through the backend.
    RenegotiationNeeded {
        /// The room.
        router: RouterId,
        /// The peer whose connection it is, if it belongs to one.
        #[serde(default)]
        peer: Option<PeerId>,
        /// The connection (transport).
        transport: TransportId,
        /// Which of the peer's connections: its receive connection, or (after a move from a
        /// draining node) its send connection, whose answer goes to `webrtc.answer` with
        /// `connection: "send"`.
        #[serde(default)]
        connection: Connection,
        /// The server's new SDP offer.
        sdp: String,
    },
    /// A transport was created.
    TransportCreated {
        /// Its router.
        router: RouterId,
        /// The transport.
        transport: TransportId,
        /// Its plugin kind.
        kind: String,
        /// The peer it belongs to, if any.
        #[serde(default)]
        peer: Option<PeerId>,
    },
    /// A transport's connection state changed.
    TransportStateChanged {
        /// Its router.
        router: RouterId,
        /// The transport.
        transport: TransportId,
        /// The new state.
        state: TransportState,
    },
    /// A transport closed.
    TransportClosed {
        /// Its router.
        router: RouterId,
        /// The transport.
        transport: TransportId,
        /// Why.
        #[serde(flatten)]
        reason: CloseReason,
    },
    /// A producer was created.
    ProducerCreated {
        /// Its router.
        router: RouterId,
        /// Its transport.
        transport: TransportId,
        /// The producer.
        producer: ProducerId,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A producer was paused or resumed.
    ProducerPaused {
        /// Its router.
        router: RouterId,
        /// The producer.
        producer: ProducerId,
        /// Now paused?
        paused: bool,
    },
    /// A producer closed.
    ProducerClosed {
        /// Its router.
        router: RouterId,
        /// Its transport.
        transport: TransportId,
        /// The producer.
        producer: ProducerId,
        /// Why.
        #[serde(flatten)]
        reason: CloseReason,
    },
    /// A consumer was created.
    ConsumerCreated {
        /// Its router.
        router: RouterId,
        /// Its transport.
        transport: TransportId,
        /// The consumer.
        consumer: ConsumerId,
        /// The producer feeding it.
        producer: ProducerId,
        /// Audio or video.
        kind: MediaKind,
    },
    /// A consumer was paused or resumed.
    ConsumerPaused {
        /// Its router.
        router: RouterId,
        /// The consumer.
        consumer: ConsumerId,
        /// Now paused?
        paused: bool,
    },
    /// A consumer closed.
    ConsumerClosed {
        /// Its router.
        router: RouterId,
        /// Its transport.
        transport: TransportId,
        /// The consumer.
        consumer: ConsumerId,
        /// The producer that fed it.
        producer: ProducerId,
        /// Why.
        #[serde(flatten)]
        reason: CloseReason,
    },
    /// A middleware attached to a room reports something (a recording finished, a disk is
    /// full). The `name` and `data` are the middleware's own; docs/middleware.md lists the
    /// built-ins'.
    Middleware {
        /// The room.
        router: RouterId,
        /// The middleware's registered name, e.g. `recorder`.
        middleware: String,
        /// What happened, e.g. `recording_finished`.
        name: String,
        /// The details.
        data: serde_json::Value,
    },
}

impl Event {
    /// The router the event concerns, if any; lets subscribers filter per room.
    pub fn router(&self) -> Option<RouterId> {
        match self {
            Event::WorkerStarted { .. }
            | Event::WorkerDied { .. }
            | Event::WorkerRestarted { .. } => None,
            Event::RouterCreated { router, .. }
            | Event::RouterClosed { router, .. }
            | Event::PeerJoined { router, .. }
            | Event::PeerLeft { router, .. }
            | Event::RenegotiationNeeded { router, .. }
            | Event::TransportCreated { router, .. }
            | Event::TransportStateChanged { router, .. }
            | Event::TransportClosed { router, .. }
            | Event::ProducerCreated { router, .. }
            | Event::ProducerPaused { router, .. }
            | Event::ProducerClosed { router, .. }
            | Event::ConsumerCreated { router, .. }
            | Event::ConsumerPaused { router, .. }
            | Event::ConsumerClosed { router, .. }
            | Event::Middleware { router, .. } => Some(*router),
        }
    }

    /// The event's name as the wire writes it, e.g. `router_closed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::WorkerStarted { .. } => "worker_started",
            Event::WorkerDied { .. } => "worker_died",
            Event::WorkerRestarted { .. } => "worker_restarted",
            Event::RouterCreated { .. } => "router_created",
            Event::RouterClosed { .. } => "router_closed",
            Event::PeerJoined { .. } => "peer_joined",
            Event::PeerLeft { .. } => "peer_left",
            Event::RenegotiationNeeded { .. } => "renegotiation_needed",
            Event::TransportCreated { .. } => "transport_created",
            Event::TransportStateChanged { .. } => "transport_state_changed",
            Event::TransportClosed { .. } => "transport_closed",
            Event::ProducerCreated { .. } => "producer_created",
            Event::ProducerPaused { .. } => "producer_paused",
            Event::ProducerClosed { .. } => "producer_closed",
            Event::ConsumerCreated { .. } => "consumer_created",
            Event::ConsumerPaused { .. } => "consumer_paused",
            Event::ConsumerClosed { .. } => "consumer_closed",
            Event::Middleware { .. } => "middleware",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_flat_with_their_name_and_reason() {
        let router = RouterId::new();
        let e = Event::RouterClosed {
            router,
            reason: CloseReason::Crashed {
                message: "boom".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "router_closed");
        assert_eq!(v["reason"], "crashed");
        assert_eq!(v["message"], "boom");
        assert_eq!(v["router"], router.to_string());
        assert_eq!(e.name(), "router_closed");
        assert_eq!(e.router(), Some(router));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}

/// Connection state of a transport, as the backend sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportState {
    /// Created, not yet connected.
    New,
    /// Connecting (ICE checks, DTLS handshake).
    Connecting,
    /// Media can flow.
    Connected,
    /// Connectivity lost; may recover.
    Disconnected,
    /// Failed for good.
    Failed,
    /// Closed.
    Closed,
}

impl fmt::Display for TransportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}
