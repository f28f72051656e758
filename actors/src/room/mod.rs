//! One router's state: the room as plain data, with the logic that keeps it consistent.
//!
//! The Router, its Transports, Producers and Consumers all run on one worker thread, so they
//! share this state through `Rc<RefCell<_>>` instead of copying it through messages. It holds
//! the forwarding table and the object tree, and it owns the closing logic: every closure goes
//! through one function here ([`close`]), which removes the object everywhere, closes its
//! dependants first and emits exactly one event.
//!
//! Nothing in this module knows an actor. What the room needs from the server around it
//! (starting and stopping the actors of its objects, indexing them, reaching the room's other
//! routers) it asks of its [`RoomHost`]; the actor layer provides one, and the unit tests
//! (`tests.rs`) a recording one, so cascades are tested without actix.

pub(crate) mod budget;
mod close;
mod host;
mod io;
pub(crate) mod middleware;
pub(crate) mod renegotiation;
pub(crate) mod span;
#[cfg(test)]
mod tests;
pub(crate) mod tracks;

pub(crate) use close::{cascade, close_plugin};
pub(crate) use host::{ChildClosed, Object, RoomHost, SpanNotice};
pub(crate) use io::RoomIo;

use crate::events::EventBus;
use crate::load::WorkerLoad;
use crate::middleware::instance::Attached;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_core::config::Config;
use switchboard_core::event::Event;
use switchboard_core::forward::MediaTotals;
use switchboard_core::forward::{Forwarder, ForwarderConfig, RtpOutcome};
use switchboard_core::middleware::Audience;
use switchboard_core::negotiation::RtpMapping;
use switchboard_core::report;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::transport::{MediaSink, Transport};
use switchboard_core::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};

/// Shared handle to a room.
pub(crate) type RoomRef = Rc<RefCell<Room>>;

/// A plugin transport, shared by its actor and the room so that closing releases it at once.
pub(crate) type PluginRef = Rc<RefCell<Option<Box<dyn Transport>>>>;

/// A transport as the room knows it.
pub(crate) struct TransportNode {
    /// How the transport reports to the room; holds its state and drop counter.
    pub io: Rc<RoomIo>,
    pub peer: Option<PeerId>,
    pub kind: String,
    pub sink: Rc<dyn MediaSink>,
    pub plugin: PluginRef,
}

/// A producer as the room knows it.
#[derive(Clone, Serialize)]
pub(crate) struct ProducerNode {
    pub transport: TransportId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub consumable: RtpParameters,
    #[serde(skip)]
    pub mapping: RtpMapping,
    pub paused: bool,
}

/// A consumer as the room knows it; the forwarder holds its packet-path state.
#[derive(Clone, Serialize)]
pub(crate) struct ConsumerNode {
    pub transport: TransportId,
    pub producer: ProducerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub paused: bool,
}

/// A participant and its (at most) two connections.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PeerState {
    pub id: PeerId,
    /// The connection carrying what the peer sends.
    pub send: Option<TransportId>,
    /// The connection carrying what the peer receives.
    pub recv: Option<TransportId>,
    /// Whether the peer has subscribed (its receive connection takes new tracks).
    #[serde(skip)]
    pub subscribed: bool,
}

/// What a room is made with.
pub(crate) struct RoomSetup {
    pub id: RouterId,
    pub worker: WorkerId,
    pub config: Arc<Config>,
    pub events: Arc<EventBus>,
    pub load: Arc<WorkerLoad>,
    pub host: Rc<dyn RoomHost>,
    pub capabilities: RtpCapabilities,
    pub auto_subscribe: bool,
    pub single_connection: bool,
    /// A secondary router of a room that spans workers.
    pub secondary: bool,
}

pub(crate) struct Room {
    pub id: RouterId,
    pub worker: WorkerId,
    pub config: Arc<Config>,
    pub events: Arc<EventBus>,
    /// The counters of this room's worker.
    pub load: Arc<WorkerLoad>,
    pub host: Rc<dyn RoomHost>,
    pub capabilities: RtpCapabilities,
    pub forwarder: Forwarder<Rc<dyn MediaSink>>,
    pub transports: HashMap<TransportId, TransportNode>,
    pub producers: HashMap<ProducerId, ProducerNode>,
    pub consumers: HashMap<ConsumerId, ConsumerNode>,
    /// Peers in the room, in join order.
    pub peers: Vec<PeerState>,
    /// Transports whose consumers changed since their last offer.
    pub renegotiate: BTreeSet<TransportId>,
    /// Whether newcomers are subscribed to everything and everyone to newcomers.
    pub auto_subscribe: bool,
    /// Whether a peer's sending and receiving share one connection.
    pub single_connection: bool,
    /// Attached middleware instances, in attach order.
    pub middleware: Vec<Attached>,
    /// Tracks middleware published for one peer only (automatic subscription honours it).
    pub middleware_audience: HashMap<ProducerId, Audience>,
    pub closed: bool,
    /// What closed producers, consumers and transports of this room counted, so the room's
    /// totals never go backwards.
    pub closed_totals: MediaTotals,
    /// This router's part in a room that spans workers: its pipes and piped producers.
    pub span: span::SpanState,
}

impl Room {
    /// A new, empty room.
    pub fn new(setup: RoomSetup) -> Self {
        let forwarder = Forwarder::new(ForwarderConfig::from(&setup.config.media));
        Self {
            id: setup.id,
            worker: setup.worker,
            config: setup.config,
            events: setup.events,
            load: setup.load,
            host: setup.host,
            capabilities: setup.capabilities,
            forwarder,
            transports: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            peers: Vec::new(),
            renegotiate: BTreeSet::new(),
            auto_subscribe: setup.auto_subscribe,
            single_connection: setup.single_connection,
            middleware: Vec::new(),
            middleware_audience: HashMap::new(),
            closed: false,
            closed_totals: MediaTotals::default(),
            span: span::SpanState {
                secondary: setup.secondary,
                ..Default::default()
            },
        }
    }

    /// The peer with this id.
    pub fn peer(&self, id: &PeerId) -> Option<&PeerState> {
        self.peers.iter().find(|p| &p.id == id)
    }

    /// The peer with this id, for changes.
    pub fn peer_mut(&mut self, id: &PeerId) -> Option<&mut PeerState> {
        self.peers.iter_mut().find(|p| &p.id == id)
    }

    /// Emits an event to middleware and subscribers.
    pub fn emit(&mut self, event: Event) {
        if span::hidden(self, &event) {
            return;
        }
        // In the span of whatever caused it (room, peer, transport), so a room's story can be
        // followed in the logs at debug level.
        tracing::debug!(?event, "room event");
        self.offer_event(&event);
        self.events.emit(event);
    }

    /// Adds a transport the actor layer created, and announces it.
    pub fn add_transport(&mut self, id: TransportId, node: TransportNode, internal: bool) {
        let kind = node.kind.clone();
        let peer = node.peer.clone();
        self.transports.insert(id, node);
        self.load.transports.fetch_add(1, Ordering::Relaxed);
        if internal {
            self.span.internal.insert(id);
        }
        let router = self.id;
        self.emit(Event::TransportCreated {
            router,
            transport: id,
            kind,
            peer,
        });
    }

    /// Counts a datagram a transport could not parse as RTP.
    pub fn on_malformed_rtp(&mut self) {
        self.forwarder.on_malformed_rtp();
        // Counted here too, so the worker's count equals the sum of its routers'.
        self.load.packets_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Forwards one RTP packet, showing it to middleware first.
    pub fn on_rtp(&mut self, transport: TransportId, packet: rtc_rtp::Packet) {
        #[cfg(feature = "fault-injection")]
        if packet
            .payload
            .ends_with(switchboard_core::fault::FORWARD_PANIC)
        {
            panic!("injected fault on the forwarding path");
        }
        let Room {
            forwarder,
            middleware,
            producers,
            load,
            ..
        } = self;
        let payload = packet.payload.len() as u64;
        // Middleware get a copy in their own queue; the forwarding loop does not wait for them.
        let outcome = forwarder.on_packet_with(transport, packet, Instant::now(), |pid, pkt| {
            if middleware.is_empty() {
                return;
            }
            let Some(kind) = producers.get(&pid).map(|p| p.kind) else {
                return;
            };
            for m in middleware.iter_mut() {
                m.offer_rtp(pid, kind, pkt);
            }
        });
        load.packets_in.fetch_add(1, Ordering::Relaxed);
        load.bytes_in.fetch_add(payload, Ordering::Relaxed);
        if let RtpOutcome::Forwarded { consumers, .. } = outcome {
            load.packets_out
                .fetch_add(consumers as u64, Ordering::Relaxed);
            load.bytes_out
                .fetch_add(payload * consumers as u64, Ordering::Relaxed);
        }
    }

    /// Everything this room has counted since it opened: the forwarder's router-wide
    /// counters, its live producers and consumers, and those that closed.
    pub fn totals(&self) -> MediaTotals {
        let mut t = self.closed_totals.clone();
        let live = MediaTotals {
            router: self.forwarder.stats().clone(),
            ..Default::default()
        };
        t.merge(&live);
        for id in self.producers.keys() {
            if let Some(s) = self.forwarder.producer_stats(*id) {
                t.producers.add(s);
            }
        }
        for id in self.consumers.keys() {
            if let Some(s) = self.forwarder.consumer_stats(*id) {
                t.consumers.add(s);
            }
        }
        for node in self.transports.values() {
            t.reentrant_drops += node.io.reentrant_drops.get();
        }
        t
    }
}

/// A room's objects as `router.dump` lists them.
pub(crate) struct Entries {
    pub transports: Vec<report::TransportEntry>,
    pub producers: Vec<report::ProducerEntry>,
    pub consumers: Vec<report::ConsumerEntry>,
}

impl Room {
    /// The objects the backend sees: with `internal`, the pipes and what they carry too.
    /// `worker` is written into each entry (for a room that spans workers).
    pub fn entries(&self, internal: bool, worker: Option<WorkerId>) -> Entries {
        let shown = |t: &TransportId| internal || !self.span.internal.contains(t);
        Entries {
            transports: self
                .transports
                .iter()
                .filter(|(id, _)| shown(id))
                .map(|(id, t)| report::TransportEntry {
                    id: *id,
                    kind: t.kind.clone(),
                    peer: t.peer.clone(),
                    worker,
                })
                .collect(),
            producers: self
                .producers
                .iter()
                .filter(|(_, p)| shown(&p.transport))
                .map(|(id, p)| report::ProducerEntry {
                    id: *id,
                    transport: p.transport,
                    kind: p.kind,
                    paused: p.paused,
                    worker,
                })
                .collect(),
            consumers: self
                .consumers
                .iter()
                .filter(|(_, c)| shown(&c.transport))
                .map(|(id, c)| report::ConsumerEntry {
                    id: *id,
                    transport: c.transport,
                    producer: c.producer,
                    kind: c.kind,
                    paused: c.paused,
                    worker,
                })
                .collect(),
        }
    }
}
