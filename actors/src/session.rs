//! SDP sessions: a peer's sending and receiving connections, driven by native offer/answer.
//!
//! A peer publishes by sending an offer on its *send* connection: every sending m-line becomes
//! a producer. It subscribes through its *receive* connection, for which the server writes the
//! offers: one m-line per consumer. With automatic subscription (the default), a newcomer's
//! receive connection gets consumers for every track already in the room, and everyone else's
//! gets the newcomer's; each affected receive connection then gets a new offer, announced with
//! a `renegotiation_needed` event. Offers are serialised per connection: while one is waiting
//! for its answer, changes accumulate into the next.

use crate::room::renegotiation::{
    announce_offer, auto_receivers, flush_renegotiations, offer_now, others_producers,
    peer_connection, receive_connection, subscribe_to,
};
use crate::room::tracks;
use crate::router::{CreateTransport, RouterActor};
use actix::{Context, Handler, Message};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::api::{ProducerInfo, TransportInfo};
use switchboard_core::event::Connection;
use switchboard_core::{Error, PeerId, ProducerId, Result, TransportId};
use switchboard_sdp as sdp;

/// The transport kind SDP sessions use.
pub const SESSION_KIND: &str = "webrtc";

/// The result of a publish.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PublishResult {
    /// The peer's send connection.
    pub transport: TransportId,
    /// The server's SDP answer.
    pub sdp: String,
    /// Producers created by this offer, with their m-line description (mid, msid).
    pub producers: Vec<(ProducerInfo, Value)>,
    /// Producers closed because their m-lines stopped sending.
    pub closed_producers: Vec<ProducerId>,
}

pub use switchboard_core::api::{ResumedTrack, SubscribeResult};

/// Applies a peer's offer on its send connection (created on first use).
#[derive(Message)]
#[rtype(result = "Result<PublishResult>")]
pub struct Publish {
    /// The peer.
    pub peer: PeerId,
    /// Its SDP offer.
    pub sdp: String,
}

/// Returns an offer for a peer's receive connection (created on first use).
#[derive(Message)]
#[rtype(result = "Result<SubscribeResult>")]
pub struct Subscribe {
    /// The peer.
    pub peer: PeerId,
}

/// Applies a peer's answer to the last offer of one of its connections.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Answer {
    /// The peer.
    pub peer: PeerId,
    /// Which connection the offer was for: the receive connection, or a send connection
    /// moved here from another node (see [`ResumeSender`]).
    pub connection: Connection,
    /// Its SDP answer.
    pub sdp: String,
}

/// Restarts ICE on a peer's receive connection: returns the server's new offer, with new
/// credentials. (A client restarts its send connection by publishing a new offer.)
#[derive(Message)]
#[rtype(result = "Result<SubscribeResult>")]
pub struct RestartIce {
    /// The peer.
    pub peer: PeerId,
}

impl Handler<RestartIce> for RouterActor {
    type Result = Result<SubscribeResult>;
    fn handle(&mut self, msg: RestartIce, _: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        let transport = receive_connection(&self.room, &msg.peer)?;
        let sdp = tracks::with_sdp_session(&self.room, transport, |s| s.restart_ice())?;
        self.room.borrow_mut().renegotiate.remove(&transport);
        Ok(SubscribeResult { transport, sdp })
    }
}

fn ensure_connection(
    router: &mut RouterActor,
    ctx: &mut Context<RouterActor>,
    peer: &PeerId,
    send: bool,
) -> Result<(TransportId, bool)> {
    let (existing, single) = {
        let r = router.room.borrow();
        let p = r.peer(peer).ok_or_else(|| Error::not_found("peer", peer))?;
        let existing = if r.single_connection {
            p.send.or(p.recv)
        } else if send {
            p.send
        } else {
            p.recv
        };
        (existing, r.single_connection)
    };
    if let Some(t) = existing {
        return Ok((t, false));
    }
    let TransportInfo { id, .. } = router.create_transport(
        CreateTransport {
            kind: SESSION_KIND.to_owned(),
            peer: Some(peer.clone()),
            // A connection of one direction may run on the native engine.
            options: if single {
                json!({})
            } else if send {
                json!({ "direction": "send" })
            } else {
                json!({ "direction": "recv" })
            },
        },
        ctx,
    )?;
    let mut r = router.room.borrow_mut();
    if let Some(p) = r.peer_mut(peer) {
        if send || single {
            p.send = Some(id);
        }
        if !send || single {
            p.recv = Some(id);
        }
    }
    Ok((id, true))
}

impl RouterActor {
    /// A connection of `peer` resuming another server's SDP session (see [`ResumeReceiver`]
    /// and [`ResumeSender`]); the peer must have none of that kind here yet.
    fn resume_connection(
        &mut self,
        ctx: &mut Context<RouterActor>,
        peer: &PeerId,
        connection: Connection,
        resume: Value,
    ) -> Result<TransportId> {
        let (direction, what) = match connection {
            Connection::Recv => ("recv", "receive"),
            Connection::Send => ("send", "send"),
        };
        {
            let r = self.room.borrow();
            if r.single_connection {
                return Err(Error::invalid(
                    "a single_connection room's connections cannot be resumed",
                ));
            }
            let p = r.peer(peer).ok_or_else(|| Error::not_found("peer", peer))?;
            let existing = match connection {
                Connection::Recv => p.recv,
                Connection::Send => p.send,
            };
            if existing.is_some() {
                return Err(Error::invalid(format!(
                    "the peer already has a {what} connection here: only a newcomer's can be resumed"
                )));
            }
        }
        let TransportInfo { id, .. } = self.create_transport(
            CreateTransport {
                kind: SESSION_KIND.to_owned(),
                peer: Some(peer.clone()),
                options: json!({ "direction": direction, "resume": resume }),
            },
            ctx,
        )?;
        if let Some(p) = self.room.borrow_mut().peer_mut(peer) {
            match connection {
                Connection::Recv => {
                    p.recv = Some(id);
                    p.subscribed = true;
                }
                Connection::Send => p.send = Some(id),
            }
        }
        Ok(id)
    }

    /// The configured bounds on SDP from the backend.
    fn sdp_limits(&self) -> sdp::SdpLimits {
        sdp::SdpLimits::from(&self.room.borrow().config.limits)
    }
}

impl Handler<Publish> for RouterActor {
    type Result = Result<PublishResult>;
    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        sdp::check_limits(&msg.sdp, self.sdp_limits())?;
        let (transport, _) = ensure_connection(self, ctx, &msg.peer, true)?;
        let producer_slots = {
            let r = self.room.borrow();
            let own = r
                .producers
                .values()
                .filter(|p| p.transport == transport)
                .count();
            r.config
                .limits
                .max_producers_per_transport
                .saturating_sub(own)
        };
        let result = tracks::apply_offer(&self.room, transport, &msg.sdp, Some(producer_slots))?;
        if !result.producers.is_empty() {
            let new: Vec<ProducerId> = result.producers.iter().map(|(p, _)| p.id).collect();
            for t in auto_receivers(&self.room, Some(&msg.peer)) {
                subscribe_to(&self.room, t, &new);
            }
        }
        flush_renegotiations(&self.room);
        Ok(PublishResult {
            transport,
            sdp: result.answer,
            producers: result.producers,
            closed_producers: result.closed_producers,
        })
    }
}

impl Handler<Subscribe> for RouterActor {
    type Result = Result<SubscribeResult>;
    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        let (transport, _) = ensure_connection(self, ctx, &msg.peer, false)?;
        // The first subscribe takes everything already in the room; later ones (a client
        // starting over) get a fresh offer of what the connection already carries.
        let first = {
            let mut r = self.room.borrow_mut();
            let first = r.peer(&msg.peer).is_some_and(|p| !p.subscribed);
            if let Some(p) = r.peer_mut(&msg.peer) {
                p.subscribed = true;
            }
            first
        };
        if first && self.room.borrow().auto_subscribe {
            let producers = others_producers(&self.room, &msg.peer);
            subscribe_to(&self.room, transport, &producers);
        }
        let sdp = offer_now(&self.room, transport)?;
        Ok(SubscribeResult { transport, sdp })
    }
}

impl Handler<Answer> for RouterActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: Answer, _: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        let transport = peer_connection(&self.room, &msg.peer, msg.connection)?;
        sdp::check_limits(&msg.sdp, self.sdp_limits())?;
        if tracks::apply_answer(&self.room, transport, &msg.sdp)? {
            self.room.borrow_mut().renegotiate.insert(transport);
        }
        flush_renegotiations(&self.room);
        Ok(())
    }
}

/// Takes a peer's receive connection over from another server (a node draining in a
/// cluster): the connection resumes the old one's SDP session (`resume`, what the old
/// server's `resume_state` exported), the tracks go back on their m-lines in order
/// (`producers`: one per open media line, in the lines' order), anything else in the room
/// follows on new m-lines, and the offer (an ICE restart towards this server, with its
/// fingerprint) is announced with `renegotiation_needed` and returned.
#[derive(Message)]
#[rtype(result = "Result<SubscribeResult>")]
pub struct ResumeReceiver {
    /// The peer, already in the room here, with no receive connection yet.
    pub peer: PeerId,
    /// The old connection's state.
    pub resume: Value,
    /// The producers of its open media lines, in order.
    pub producers: Vec<ProducerId>,
}

impl Handler<ResumeReceiver> for RouterActor {
    type Result = Result<SubscribeResult>;
    fn handle(&mut self, msg: ResumeReceiver, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        let transport = self.resume_connection(ctx, &msg.peer, Connection::Recv, msg.resume)?;
        // One at a time and in order: each takes the first idle m-line of its kind, which is
        // the one it had on the old server.
        for p in &msg.producers {
            subscribe_to(&self.room, transport, std::slice::from_ref(p));
        }
        if self.room.borrow().auto_subscribe {
            let rest: Vec<ProducerId> = others_producers(&self.room, &msg.peer)
                .into_iter()
                .filter(|p| !msg.producers.contains(p))
                .collect();
            subscribe_to(&self.room, transport, &rest);
        }
        let sdp = offer_now(&self.room, transport)?;
        announce_offer(&self.room, transport, sdp.clone());
        Ok(SubscribeResult { transport, sdp })
    }
}

/// Takes a peer's send connection over from another server (a node draining in a cluster):
/// the connection resumes the old one's SDP session (`resume`, what the old server's
/// `resume_state` exported), with the client's sending m-lines offered `recvonly` as they
/// were agreed; a producer is made here for each (`tracks`) and, with automatic
/// subscription, offered to the room's receive connections. The server's offer (an ICE
/// restart towards this server, with its fingerprint) is announced with
/// `renegotiation_needed` (`connection: "send"`) and returned; the client's answer comes back
/// through [`Answer`] with [`Connection::Send`]. The producers carry media once the client
/// has connected here.
#[derive(Message)]
#[rtype(result = "Result<PublishResult>")]
pub struct ResumeSender {
    /// The peer, already in the room here, with no send connection yet.
    pub peer: PeerId,
    /// The old connection's state.
    pub resume: Value,
    /// The producers to make, one per m-line the client sends on.
    pub tracks: Vec<ResumedTrack>,
}

impl Handler<ResumeSender> for RouterActor {
    type Result = Result<PublishResult>;
    fn handle(&mut self, msg: ResumeSender, ctx: &mut Self::Context) -> Self::Result {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.peer).entered();
        let transport = self.resume_connection(ctx, &msg.peer, Connection::Send, msg.resume)?;
        let made = msg
            .tracks
            .iter()
            .map(|t| {
                if t.rtp_parameters.mid.as_deref() != Some(t.mid.as_str()) {
                    return Err(Error::invalid(format!(
                        "track of m-line {:?}: its rtp_parameters name another mid",
                        t.mid
                    )));
                }
                let info = tracks::create_producer(
                    &self.room,
                    transport,
                    t.kind,
                    &t.rtp_parameters,
                    t.paused,
                )?;
                Ok((info, json!({ "mid": t.mid })))
            })
            .collect::<Result<Vec<_>>>();
        let producers = match made {
            Ok(producers) => producers,
            Err(e) => {
                // All or nothing: the producers made so far go with the connection.
                self.room
                    .borrow_mut()
                    .close_transport(transport, switchboard_core::event::CloseReason::Requested);
                return Err(e);
            }
        };
        let new: Vec<ProducerId> = producers.iter().map(|(p, _)| p.id).collect();
        for t in auto_receivers(&self.room, Some(&msg.peer)) {
            subscribe_to(&self.room, t, &new);
        }
        flush_renegotiations(&self.room);
        let sdp = offer_now(&self.room, transport)?;
        announce_offer(&self.room, transport, sdp.clone());
        Ok(PublishResult {
            transport,
            sdp,
            producers,
            closed_producers: Vec::new(),
        })
    }
}
