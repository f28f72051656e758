//! Closing: every closure of a room's object goes through one function here, which removes
//! the object everywhere, closes its dependants first, and emits exactly one event.

use super::span;
use super::{ChildClosed, Object, PluginRef, Room, RoomHost, TransportNode};
use std::sync::atomic::Ordering;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::panics::contain;
use switchboard_core::{ConsumerId, PeerId, ProducerId, TransportId};

/// The reason children get when their parent closes for `reason`.
pub(crate) fn cascade(reason: &CloseReason) -> CloseReason {
    match reason {
        CloseReason::Shutdown => CloseReason::Shutdown,
        _ => CloseReason::ParentClosed,
    }
}

/// Tells a transport's plugin that a producer or consumer of it closed: at once, so that
/// whatever the room does next (a renegotiation offer) already reflects it; through the
/// host only when the plugin is busy right now.
fn tell_plugin(host: &dyn RoomHost, id: TransportId, t: &TransportNode, child: ChildClosed) {
    let Ok(mut plugin) = t.plugin.try_borrow_mut() else {
        host.tell_plugin_later(id, child);
        return;
    };
    let Some(p) = plugin.as_mut() else {
        return;
    };
    let result = contain(|| match child {
        ChildClosed::Producer(id) => p.producer_removed(id),
        ChildClosed::Consumer(id) => p.consumer_removed(id),
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

impl Room {
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
        self.load.consumers.fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.transports.get(&node.transport) {
            tell_plugin(&*self.host, node.transport, t, ChildClosed::Consumer(id));
        }
        self.host.closed(Object::Consumer(id));
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
        let copy = span::producer_closed(self, id);
        self.load.producers.fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = self.transports.get(&node.transport) {
            tell_plugin(&*self.host, node.transport, t, ChildClosed::Producer(id));
        }
        self.host.closed(Object::Producer { id, copy });
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
        let internal = self.span.internal.contains(&id);
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
        self.load.transports.fetch_sub(1, Ordering::Relaxed);
        // Release sockets and ports before announcing the closure.
        close_plugin(id, &node.plugin);
        self.host.closed(Object::Transport { id, internal });
        self.emit(Event::TransportClosed {
            router: self.id,
            transport: id,
            reason,
        });
        self.span.internal.remove(&id);
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
            return span::close_secondary(self, reason);
        }
        if self.closed {
            return false;
        }
        self.closed = true;
        self.host.room_closing(&reason);
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
        self.load.routers.fetch_sub(1, Ordering::Relaxed);
        self.host.room_closed(&self.totals(), false);
        self.events.emit(Event::RouterClosed {
            router: self.id,
            reason,
        });
        true
    }
}
