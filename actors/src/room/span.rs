//! One router's part in a room that spans workers, as plain state: its pipes to the room's
//! other routers, the transports the backend does not see, and the producers piped in.
//! (How the routers find and message each other is the actor layer's `span` module.)

use super::{Room, SpanNotice, cascade};
use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::rtp_parameters::{MediaKind, RtpParameters};
use switchboard_core::{PeerId, ProducerId, TransportId, WorkerId};

/// One router's part in its room's span.
#[derive(Default)]
pub(crate) struct SpanState {
    /// Whether this is a secondary router.
    pub secondary: bool,
    /// The pipe transport to each other router of the room, by that router's worker.
    pub links: BTreeMap<WorkerId, TransportId>,
    /// Transports the backend does not see (the pipes).
    pub internal: HashSet<TransportId>,
    /// Producers piped here from another router, with the peer that publishes them there.
    pub copies: HashMap<ProducerId, Option<PeerId>>,
}

/// A producer arriving through a pipe: what the far router needs to create its copy.
#[derive(Clone, Debug)]
pub(crate) struct PipedProducer {
    /// The worker of the router it comes from.
    pub from: WorkerId,
    pub id: ProducerId,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub paused: bool,
    pub origin_peer: Option<PeerId>,
}

/// Whether an event concerns an internal object (or is a room-level event of a secondary
/// router), and so is not emitted.
pub(crate) fn hidden(room: &Room, event: &Event) -> bool {
    let span = &room.span;
    match event {
        Event::TransportCreated { transport, .. }
        | Event::TransportStateChanged { transport, .. }
        | Event::TransportClosed { transport, .. }
        | Event::ProducerCreated { transport, .. }
        | Event::ProducerClosed { transport, .. }
        | Event::ConsumerCreated { transport, .. }
        | Event::ConsumerClosed { transport, .. }
        | Event::RenegotiationNeeded { transport, .. } => span.internal.contains(transport),
        Event::ProducerPaused { producer, .. } => span.copies.contains_key(producer),
        Event::ConsumerPaused { consumer, .. } => room
            .consumers
            .get(consumer)
            .is_some_and(|c| span.internal.contains(&c.transport)),
        Event::RouterCreated { .. }
        | Event::RouterClosed { .. }
        | Event::PeerJoined { .. }
        | Event::PeerLeft { .. } => span.secondary,
        _ => false,
    }
}

/// A producer closed in `room`: a copy is forgotten; an original's copies elsewhere close.
/// Returns whether it was a copy.
pub(crate) fn producer_closed(room: &mut Room, id: ProducerId) -> bool {
    if room.span.copies.remove(&id).is_some() {
        return true;
    }
    for to in room.span.links.keys() {
        room.host.span(SpanNotice::Unpipe {
            to: *to,
            producer: id,
        });
    }
    false
}

/// Closes a secondary router: its peers' transports, then the others, then its pipes; no
/// room-level events (the home router emits those).
pub(crate) fn close_secondary(room: &mut Room, reason: CloseReason) -> bool {
    if room.closed {
        return false;
    }
    room.closed = true;
    let child = cascade(&reason);
    let peers: Vec<PeerId> = room.peers.drain(..).map(|p| p.id).collect();
    let mut order: Vec<TransportId> = Vec::new();
    for peer in &peers {
        order.extend(
            room.transports
                .iter()
                .filter(|(_, t)| t.peer.as_ref() == Some(peer))
                .map(|(id, _)| *id),
        );
    }
    let rest: Vec<TransportId> = room
        .transports
        .keys()
        .filter(|id| !room.span.internal.contains(id) && !order.contains(id))
        .copied()
        .collect();
    order.extend(rest);
    order.extend(room.span.internal.iter().copied());
    for t in order {
        room.close_transport(t, child.clone());
    }
    // The room's other routers drop their pipes to this one (and the copies they fed).
    for to in std::mem::take(&mut room.span.links).into_keys() {
        room.host.span(SpanNotice::Unlink { to });
    }
    room.host.room_closed(&room.totals(), true);
    true
}
