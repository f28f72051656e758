//! One router's state, shared by its actors on its worker thread.
//!
//! The Router, its Transports, Producers and Consumers all run on one worker thread, so they
//! share this state through `Rc<RefCell<_>>` instead of copying it through messages. It holds
//! the forwarding table and the object tree, and it owns the closing logic: every closure goes
//! through one function here, which removes the object everywhere, closes its dependants
//! first, emits exactly one event, and stops the object's actor.

use crate::consumer::ConsumerActor;
use crate::metrics::MediaTotals;
use crate::producer::ProducerActor;
use crate::shared::Shared;
use crate::supervision::contain;
use crate::transport::TransportActor;
use actix::Addr;
use bytes::Bytes;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::forward::{Forwarder, RtpOutcome};
use switchboard_core::negotiation::RtpMapping;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::transport::{MediaSink, Transport, TransportIo, TransportState};
use switchboard_core::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};

/// Shared handle to a room.
pub(crate) type RoomRef = Rc<RefCell<Room>>;

/// The crash guard of an actor whose object lives in `room`: if the actor dies uncleanly,
/// `close` closes the object there with reason `crashed`, through the same room functions as
/// any other closure (so parents and the backend hear of it exactly once).
pub(crate) fn crash_guard(
    room: &RoomRef,
    close: impl FnOnce(&mut Room, CloseReason) + 'static,
) -> crate::supervision::CrashGuard {
    let weak = Rc::downgrade(room);
    crate::supervision::CrashGuard::new(move |message| {
        if let Some(room) = weak.upgrade()
            && let Ok(mut r) = room.try_borrow_mut()
        {
            close(&mut r, CloseReason::Crashed { message });
        }
    })
}

/// Stops an actor without it emitting anything: the room already did.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

/// A plugin transport, shared by its actor and the room so that closing releases it at once.
pub(crate) type PluginRef = Rc<RefCell<Option<Box<dyn Transport>>>>;

pub(crate) struct TransportNode {
    pub addr: Addr<TransportActor>,
    /// How the transport reports to the room; holds its state and drop counter.
    pub io: Rc<RoomIo>,
    pub peer: Option<PeerId>,
    pub kind: String,
    pub sink: Rc<dyn MediaSink>,
    pub plugin: PluginRef,
}

/// Tells a transport's plugin that a producer or consumer of it closed: at once, so that
/// whatever the room does next (a renegotiation offer) already reflects it; through the
/// transport's mailbox only when the plugin is busy right now.
fn tell_plugin(t: &TransportNode, child: crate::transport::ChildClosed) {
    let Ok(mut plugin) = t.plugin.try_borrow_mut() else {
        t.addr.do_send(child);
        return;
    };
    let Some(p) = plugin.as_mut() else {
        return;
    };
    let result = contain(|| match child {
        crate::transport::ChildClosed::Producer(id) => p.producer_removed(id),
        crate::transport::ChildClosed::Consumer(id) => p.consumer_removed(id),
    });
    if let Err(message) = result {
        tracing::error!(%message, "transport plugin panicked while a child closed");
    }
}

/// Closes a plugin transport once; later calls find it gone.
pub(crate) fn close_plugin(id: TransportId, plugin: &PluginRef) {
    let taken = plugin.try_borrow_mut().ok().and_then(|mut p| p.take());
    if let Some(mut t) = taken
        && let Err(message) = contain(|| t.close())
    {
        tracing::error!(transport = %id, %message, "transport plugin panicked while closing");
    }
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
    #[serde(skip)]
    pub addr: Addr<ProducerActor>,
}

/// A consumer as the room knows it.
#[derive(Clone, Serialize)]
pub(crate) struct ConsumerNode {
    pub transport: TransportId,
    pub producer: ProducerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub paused: bool,
    #[serde(skip)]
    pub addr: Addr<ConsumerActor>,
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

impl Room {
    /// The peer with this id.
    pub fn peer(&self, id: &PeerId) -> Option<&PeerState> {
        self.peers.iter().find(|p| &p.id == id)
    }

    /// The peer with this id, for changes.
    pub fn peer_mut(&mut self, id: &PeerId) -> Option<&mut PeerState> {
        self.peers.iter_mut().find(|p| &p.id == id)
    }
}

pub(crate) struct Room {
    pub id: RouterId,
    pub worker: WorkerId,
    pub shared: Arc<Shared>,
    pub capabilities: RtpCapabilities,
    pub forwarder: Forwarder<Rc<dyn MediaSink>>,
    pub transports: HashMap<TransportId, TransportNode>,
    pub producers: HashMap<ProducerId, ProducerNode>,
    pub consumers: HashMap<ConsumerId, ConsumerNode>,
    /// Peers in the room, in join order.
    pub peers: Vec<PeerState>,
    /// Transports whose consumers changed since their last offer.
    pub renegotiate: std::collections::BTreeSet<TransportId>,
    /// Whether newcomers are subscribed to everything and everyone to newcomers.
    pub auto_subscribe: bool,
    /// Whether a peer's sending and receiving share one connection.
    pub single_connection: bool,
    /// Attached middleware instances, in attach order.
    pub middleware: Vec<crate::middleware::Attached>,
    /// Tracks middleware published for one peer only (automatic subscription honours it).
    pub middleware_audience: HashMap<ProducerId, switchboard_core::middleware::Audience>,
    pub closed: bool,
    /// What closed producers, consumers and transports of this room counted, so the room's
    /// totals never go backwards.
    pub closed_totals: MediaTotals,
    /// This router's part in a room that spans workers: its pipes and piped producers.
    pub span: crate::span::RoomSpan,
}

impl Room {
    /// Emits an event to middleware and subscribers.
    pub fn emit(&mut self, event: Event) {
        if crate::span::hidden(self, &event) {
            return;
        }
        // In the span of whatever caused it (room, peer, transport), so a room's story can be
        // followed in the logs at debug level.
        tracing::debug!(?event, "room event");
        self.offer_event(&event);
        self.shared.events.emit(event);
    }

    /// Counts a datagram a transport could not parse as RTP.
    pub fn on_malformed_rtp(&mut self) {
        self.forwarder.on_malformed_rtp();
        // Counted here too, so the worker's count equals the sum of its routers'.
        self.shared
            .load(self.worker)
            .packets_in
            .fetch_add(1, Ordering::Relaxed);
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
        let load = self.shared.load(self.worker);
        load.packets_in.fetch_add(1, Ordering::Relaxed);
        load.bytes_in.fetch_add(payload, Ordering::Relaxed);
        if let RtpOutcome::Forwarded { consumers, .. } = outcome {
            load.packets_out
                .fetch_add(consumers as u64, Ordering::Relaxed);
            load.bytes_out
                .fetch_add(payload * consumers as u64, Ordering::Relaxed);
        }
    }

    /// Closes a consumer. Returns false if it was already gone.
    pub fn close_consumer(&mut self, id: ConsumerId, reason: CloseReason) -> bool {
        let Some(node) = self.consumers.remove(&id) else {
            return false;
        };
        if let Some(stats) = self.forwarder.consumer_stats(id) {
            self.closed_totals.consumers.add(stats);
        }
        self.forwarder.remove_consumer(id);
        self.renegotiate.insert(node.transport);
        self.shared.index.consumers.remove(&id);
        self.shared
            .load(self.worker)
            .consumers
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.transports.get(&node.transport) {
            tell_plugin(t, crate::transport::ChildClosed::Consumer(id));
        }
        node.addr.do_send(Stop);
        self.emit(Event::ConsumerClosed {
            router: self.id,
            transport: node.transport,
            consumer: id,
            producer: node.producer,
            reason,
        });
        true
    }

    /// Closes a producer and, first, its consumers.
    pub fn close_producer(&mut self, id: ProducerId, reason: CloseReason) -> bool {
        let Some(node) = self.producers.remove(&id) else {
            return false;
        };
        let consumers: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.producer == id)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in consumers {
            self.close_consumer(cid, CloseReason::ProducerClosed);
        }
        if let Some(stats) = self.forwarder.producer_stats(id) {
            self.closed_totals.producers.add(stats);
        }
        self.forwarder.remove_producer(id);
        // A piped copy shares its original's id; only the original is indexed.
        self.shared
            .index
            .producers
            .remove_if(&id, |_, (_, addr)| *addr == node.addr);
        crate::span::producer_closed(self, id);
        self.shared
            .load(self.worker)
            .producers
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.transports.get(&node.transport) {
            tell_plugin(t, crate::transport::ChildClosed::Producer(id));
        }
        node.addr.do_send(Stop);
        self.emit(Event::ProducerClosed {
            router: self.id,
            transport: node.transport,
            producer: id,
            reason,
        });
        true
    }

    /// Closes a transport and, first, its consumers and producers.
    pub fn close_transport(&mut self, id: TransportId, reason: CloseReason) -> bool {
        if !self.transports.contains_key(&id) {
            return false;
        }
        let child_reason = cascade(&reason);
        let consumers: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.transport == id)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in consumers {
            self.close_consumer(cid, child_reason.clone());
        }
        let producers: Vec<ProducerId> = self
            .producers
            .iter()
            .filter(|(_, p)| p.transport == id)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in producers {
            self.close_producer(pid, child_reason.clone());
        }
        let Some(node) = self.transports.remove(&id) else {
            return false;
        };
        crate::span::release_transport_slot(self, id);
        self.closed_totals.reentrant_drops += node.io.reentrant_drops.get();
        self.renegotiate.remove(&id);
        for p in &mut self.peers {
            if p.send == Some(id) {
                p.send = None;
            }
            if p.recv == Some(id) {
                p.recv = None;
            }
        }
        self.shared.index.transports.remove(&id);
        self.shared
            .load(self.worker)
            .transports
            .fetch_sub(1, Ordering::Relaxed);
        // Release sockets and ports before announcing the closure.
        close_plugin(id, &node.plugin);
        node.addr.do_send(Stop);
        self.emit(Event::TransportClosed {
            router: self.id,
            transport: id,
            reason,
        });
        true
    }

    /// Removes a peer, closing its transports first.
    pub fn close_peer(&mut self, peer: &PeerId, reason: CloseReason) -> bool {
        let Some(i) = self.peers.iter().position(|p| &p.id == peer) else {
            return false;
        };
        self.peers.remove(i);
        let child_reason = cascade(&reason);
        let transports: Vec<TransportId> = self
            .transports
            .iter()
            .filter(|(_, t)| t.peer.as_ref() == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for t in transports {
            self.close_transport(t, child_reason.clone());
        }
        let router = self.id;
        self.emit(Event::PeerLeft {
            router,
            peer: peer.clone(),
            reason,
        });
        true
    }

    /// Closes everything in the room, then the room itself. Idempotent.
    pub fn close(&mut self, reason: CloseReason) -> bool {
        if self.span.secondary {
            return crate::span::close_secondary(self, reason);
        }
        if self.closed {
            return false;
        }
        self.closed = true;
        crate::span::home_closing(self, &reason);
        let child_reason = cascade(&reason);
        for peer in self.peers.iter().map(|p| p.id.clone()).collect::<Vec<_>>() {
            self.close_peer(&peer, child_reason.clone());
        }
        let transports: Vec<TransportId> = self.transports.keys().copied().collect();
        for t in transports {
            self.close_transport(t, child_reason.clone());
        }
        // Their threads deliver what is queued and close on their own; shutdown waits for them.
        while !self.middleware.is_empty() {
            let last = self.middleware.len() - 1;
            let _ = self.take_middleware(last, cascade(&reason));
        }
        self.shared.index.routers.remove(&self.id);
        self.shared
            .load(self.worker)
            .routers
            .fetch_sub(1, Ordering::Relaxed);
        crate::metrics::room_closed(self.id, &self.totals());
        self.shared.events.emit(Event::RouterClosed {
            router: self.id,
            reason,
        });
        true
    }
}

impl Room {
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

/// The reason children get when their parent closes for `reason`.
pub(crate) fn cascade(reason: &CloseReason) -> CloseReason {
    match reason {
        CloseReason::Shutdown => CloseReason::Shutdown,
        _ => CloseReason::ParentClosed,
    }
}

/// How a transport hands what it receives to its room.
pub(crate) struct RoomIo {
    pub transport: TransportId,
    pub router: RouterId,
    pub room: Weak<RefCell<Room>>,
    pub shared: Arc<Shared>,
    pub on_crash: Box<dyn Fn(String)>,
    /// The transport gave up on its remote: its router closes it with this reason.
    pub on_gave_up: Box<dyn Fn(CloseReason)>,
    /// Packets dropped because they arrived while the room was busy (a sink re-entering).
    pub reentrant_drops: std::cell::Cell<u64>,
    /// Whether `transport_created` has been announced; a state change reported while the
    /// plugin is still being created waits for it, so no event precedes its object's birth.
    pub announced: std::cell::Cell<bool>,
    pub pending_state: std::cell::Cell<Option<TransportState>>,
    /// The plugin kind, for metrics by kind.
    pub kind: String,
    /// The last state the transport reported.
    pub state: std::cell::Cell<TransportState>,
    /// Whether it was ever connected.
    pub ever_connected: std::cell::Cell<bool>,
    /// The stage of a failure the transport is about to report (`on_failure`).
    pub failure_stage: std::cell::Cell<Option<&'static str>>,
}

impl RoomIo {
    /// Marks the transport announced and reports a state it reached before that.
    pub fn announce(&self) {
        self.announced.set(true);
        if let Some(state) = self.pending_state.take() {
            self.on_state(state);
        }
    }
}

impl RoomIo {
    fn with_room(&self, f: impl FnOnce(&mut Room)) {
        let Some(room) = self.room.upgrade() else {
            return;
        };
        let result = contain(|| match room.try_borrow_mut() {
            Ok(mut r) if !r.closed => f(&mut r),
            Ok(_) => {}
            Err(_) => {
                // A sink delivered into the router that is calling it. Dropping keeps the
                // forwarding table consistent; the counter makes the plugin bug visible.
                self.reentrant_drops.set(self.reentrant_drops.get() + 1);
                tracing::warn!(transport = %self.transport, "re-entrant delivery dropped");
            }
        });
        if let Err(message) = result {
            (self.on_crash)(message);
        }
    }
}

impl TransportIo for RoomIo {
    fn on_gave_up(&self, reason: CloseReason) {
        (self.on_gave_up)(reason);
    }

    fn on_rtp(&self, packet: rtc_rtp::Packet) {
        let transport = self.transport;
        self.with_room(|r| r.on_rtp(transport, packet));
    }

    fn on_malformed_rtp(&self) {
        self.with_room(|r| r.on_malformed_rtp());
    }

    fn on_rtcp(&self, packet: Bytes) {
        let transport = self.transport;
        self.with_room(|r| {
            r.offer_rtcp(transport, &packet);
            r.forwarder.on_rtcp(transport, packet, Instant::now());
        });
    }

    fn on_state(&self, state: TransportState) {
        let previous = self.state.replace(state);
        if state == TransportState::Connected && !self.ever_connected.replace(true) {
            // What went to the consumers before their client could first hear it (a keyframe
            // requested when they were created, say) never arrived. Only the first time: a
            // connection that comes back from `disconnected` lost nothing its decoder needs
            // restarting for. A room busy right now is one creating this transport, which has
            // no consumers yet.
            if let Some(room) = self.room.upgrade()
                && let Ok(mut r) = room.try_borrow_mut()
            {
                r.forwarder
                    .transport_connected(self.transport, Instant::now());
            }
        }
        if state == TransportState::Failed && previous != TransportState::Failed {
            let stage = self.failure_stage.take().unwrap_or("unknown");
            crate::metrics::transport_failed(&self.kind, stage);
        }
        if !self.announced.get() {
            self.pending_state.set(Some(state));
            return;
        }
        self.shared.events.emit(Event::TransportStateChanged {
            router: self.router,
            transport: self.transport,
            state,
        });
    }

    fn on_failure(&self, stage: &'static str) {
        self.failure_stage.set(Some(stage));
    }
}
