//! Keeping SDP sessions in step with the room: automatic subscription, and a new offer for
//! every receive connection whose consumers changed.

use super::{RoomRef, tracks};
use switchboard_core::event::{Connection, Event};
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::{Error, PeerId, ProducerId, Result, TransportId};

/// A peer's connection: its receive connection (an error saying to subscribe first if it
/// has none), or its send connection.
pub(crate) fn peer_connection(
    room: &RoomRef,
    peer: &PeerId,
    connection: Connection,
) -> Result<TransportId> {
    match connection {
        Connection::Recv => receive_connection(room, peer),
        Connection::Send => {
            let r = room.borrow();
            let p = r.peer(peer).ok_or_else(|| Error::not_found("peer", peer))?;
            p.send
                .ok_or_else(|| Error::invalid(format!("peer {:?} has no send connection", peer.0)))
        }
    }
}

/// A peer's receive connection, or an error saying to subscribe first.
pub(crate) fn receive_connection(room: &RoomRef, peer: &PeerId) -> Result<TransportId> {
    let r = room.borrow();
    let p = r.peer(peer).ok_or_else(|| Error::not_found("peer", peer))?;
    p.recv.ok_or_else(|| {
        Error::invalid(format!(
            "peer {:?} has no receive connection: subscribe first",
            peer.0
        ))
    })
}

/// Consumers on `transport` for `producers`; a producer the receiver cannot take is skipped
/// (and logged), not fatal.
pub(crate) fn subscribe_to(room: &RoomRef, transport: TransportId, producers: &[ProducerId]) {
    for p in producers {
        if let Err(e) =
            tracks::create_consumer(room, transport, *p, &RtpCapabilities::default(), false)
        {
            tracing::warn!(%transport, producer = %p, error = %e, "automatic subscription skipped");
        }
    }
}

/// Producers in the room that do not belong to `peer` (here, or, for piped copies, on the
/// router where they were published), nor were published by a middleware for someone else.
pub(crate) fn others_producers(room: &RoomRef, peer: &PeerId) -> Vec<ProducerId> {
    let r = room.borrow();
    r.producers
        .iter()
        .filter(|(id, _)| super::middleware::audience_allows(&r, **id, peer))
        .filter(|(id, p)| {
            let own_copy = r
                .span
                .copies
                .get(id)
                .is_some_and(|origin| origin.as_ref() == Some(peer));
            !own_copy
                && r.transports
                    .get(&p.transport)
                    .is_none_or(|t| t.peer.as_ref() != Some(peer))
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The receive connections a new track of the room goes to by itself: every subscribed
/// peer's but `except`'s (the peer whose track it is), none without `auto_subscribe`.
pub(crate) fn auto_receivers(room: &RoomRef, except: Option<&PeerId>) -> Vec<TransportId> {
    let r = room.borrow();
    if !r.auto_subscribe {
        return Vec::new();
    }
    r.peers
        .iter()
        .filter(|p| p.subscribed && Some(&p.id) != except)
        .filter_map(|p| p.recv)
        .collect()
}

/// Writes a new offer for every connection whose consumers changed, and announces each.
pub(crate) fn flush_renegotiations(room: &RoomRef) {
    let pending: Vec<TransportId> = {
        let Ok(mut r) = room.try_borrow_mut() else {
            return;
        };
        std::mem::take(&mut r.renegotiate).into_iter().collect()
    };
    for transport in pending {
        // Transports not negotiated with SDP (direct, rtp) have nothing to renegotiate, and
        // a connection whose last offer is unanswered offers after the answer.
        let offer = tracks::with_sdp_session(room, transport, |s| s.create_offer(false))
            .ok()
            .flatten();
        let Some(sdp) = offer else {
            continue;
        };
        announce_offer(room, transport, sdp);
    }
}

/// The server's offer for a connection's tracks now, even while an earlier one is unanswered
/// (the client starts over from it); the changes it carries are no longer pending.
pub(crate) fn offer_now(room: &RoomRef, transport: TransportId) -> Result<String> {
    let sdp = tracks::with_sdp_session(room, transport, |s| s.create_offer(true))?
        .ok_or_else(|| Error::internal("the connection wrote no offer"))?;
    room.borrow_mut().renegotiate.remove(&transport);
    Ok(sdp)
}

/// Tells the backend of a new server offer for a connection (`renegotiation_needed`).
pub(crate) fn announce_offer(room: &RoomRef, transport: TransportId, sdp: String) {
    let mut r = room.borrow_mut();
    let peer = r.transports.get(&transport).and_then(|t| t.peer.clone());
    let sends_only = peer
        .as_ref()
        .and_then(|p| r.peer(p))
        .is_some_and(|p| p.send == Some(transport) && p.recv != Some(transport));
    let connection = if sends_only {
        Connection::Send
    } else {
        Connection::Recv
    };
    let router = r.id;
    r.emit(Event::RenegotiationNeeded {
        router,
        peer,
        transport,
        connection,
        sdp,
    });
}
