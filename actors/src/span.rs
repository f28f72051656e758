//! A router's side of a room that spans workers: the messages its links carry.
//!
//! The room-wide side (adding routers, ordering closures across them) is
//! [`crate::group`]. A room is a logical object: one *home* router on the worker placement chose for it, and,
//! once that worker is loaded, *secondary* routers of the same room on other workers. Every
//! router of a room carries the room's id, so whatever it emits is about the room, and the
//! backend cannot tell which worker did it.
//!
//! The routers of a room are linked pairwise by `pipe` transports. Every producer is piped
//! from the router where it was created (its *origin*) to each other router of the room, once:
//! a consumer on the origin's pipe transport feeds a copy of the producer on the far pipe
//! transport, with the same producer id, so `consume` works with the id the backend knows on
//! whichever router the consuming transport is. Fan-out then continues on each worker.
//!
//! What the backend never sees: pipe transports, the consumers feeding them and the copies
//! are *internal*; their events are not emitted. A secondary router emits no `router_*` or
//! `peer_*` events: a peer whose transports live there is mirrored into it silently.
//!
//! Ordering: when the backend closes a producer, a peer or the room, the copies and secondary
//! routers close first (awaited), then the origin or home, so children's events come before
//! their parents'. Closures that start inside a router (a transport closing its producers, a
//! crash) reach the other routers by message, just after.

use crate::room::renegotiation::{auto_receivers, flush_renegotiations, subscribe_to};
use crate::room::span::{PipedProducer, close_secondary};
use crate::room::tracks::pipe_producer;
use crate::room::{PeerState, tracks};
use crate::router::{CreateTransport, RouterActor};
use crate::transport::{Barrier, TransportActor};
use actix::{ActorContext, Addr, Context, Handler, Message};
use serde_json::Value;
use std::time::Instant;
use switchboard_core::api::TransportInfo;
use switchboard_core::event::CloseReason;
use switchboard_core::forward::ForwarderStats;
use switchboard_core::report;
use switchboard_core::{Error, PeerId, ProducerId, Result, TransportId, WorkerId};

/// The transport kind that links a room's routers.
pub const PIPE_KIND: &str = "pipe";

/// One end of a link: its transport, and the address the other end connects to.
pub(crate) struct LinkEnd {
    pub id: TransportId,
    pub address: String,
}

/// Creates an internal pipe transport in this router.
#[derive(Message)]
#[rtype(result = "Result<LinkEnd>")]
pub(crate) struct CreateLink;

impl Handler<CreateLink> for RouterActor {
    type Result = Result<LinkEnd>;
    fn handle(&mut self, _: CreateLink, ctx: &mut Context<Self>) -> Self::Result {
        let msg = CreateTransport {
            kind: PIPE_KIND.to_owned(),
            peer: None,
            options: Value::Null,
        };
        let TransportInfo { id, .. } = self.create_transport_as(msg, ctx, true)?;
        let address = tracks::with_plugin(&self.room, id, |t| {
            t.pipe_endpoint().map(|p| p.pipe_address()).ok_or_else(|| {
                Error::internal(format!(
                    "the {PIPE_KIND:?} plugin's transports are not pipe endpoints"
                ))
            })
        })
        .and_then(|r| r);
        match address {
            Ok(address) => Ok(LinkEnd { id, address }),
            Err(e) => {
                self.room.borrow_mut().close_transport(
                    id,
                    CloseReason::Crashed {
                        message: e.message.clone(),
                    },
                );
                Err(e)
            }
        }
    }
}

/// A connected pipe to another router of the room: pipe this router's producers into it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AttachLink {
    pub worker: WorkerId,
    pub remote: Addr<RouterActor>,
    pub transport: TransportId,
}

impl Handler<AttachLink> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: AttachLink, _: &mut Context<Self>) {
        self.host.add_link(msg.worker, msg.remote);
        let originals: Vec<ProducerId> = {
            let mut r = self.room.borrow_mut();
            r.span.links.insert(msg.worker, msg.transport);
            r.producers
                .keys()
                .filter(|id| !r.span.copies.contains_key(id))
                .copied()
                .collect()
        };
        for id in originals {
            pipe_producer(&self.room, msg.worker, id);
        }
    }
}

impl Handler<Barrier> for RouterActor {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

/// Connects one of this router's link transports to the far end's address.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct ConnectLink {
    pub transport: TransportId,
    pub remote: String,
}

impl Handler<ConnectLink> for RouterActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: ConnectLink, _: &mut Context<Self>) -> Result<()> {
        let id = msg.transport;
        tracks::with_plugin(&self.room, id, |t| match t.pipe_endpoint() {
            Some(pipe) => pipe.connect_pipe(&msg.remote),
            None => Err(Error::invalid(format!(
                "transport {id} is not a pipe endpoint"
            ))),
        })?
    }
}

/// The room's router on this worker closed: close the pipe to it, and the copies it fed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DetachLink(pub WorkerId);

impl Handler<DetachLink> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: DetachLink, _: &mut Context<Self>) {
        let Ok(mut r) = self.room.try_borrow_mut() else {
            return;
        };
        if r.closed {
            return;
        }
        if let Some(link) = r.span.links.remove(&msg.0) {
            r.close_transport(link, CloseReason::ParentClosed);
        }
    }
}

/// The producers of a peer's transports on this router.
#[derive(Message)]
#[rtype(result = "Vec<ProducerId>")]
pub(crate) struct PeerProducers(pub PeerId);

impl Handler<PeerProducers> for RouterActor {
    type Result = actix::MessageResult<PeerProducers>;
    fn handle(&mut self, msg: PeerProducers, _: &mut Context<Self>) -> Self::Result {
        let r = self.room.borrow();
        actix::MessageResult(
            r.producers
                .iter()
                .filter(|(_, p)| {
                    r.transports
                        .get(&p.transport)
                        .is_some_and(|t| t.peer.as_ref() == Some(&msg.0))
                })
                .map(|(id, _)| *id)
                .collect(),
        )
    }
}

/// The producers of this transport.
#[derive(Message)]
#[rtype(result = "Vec<ProducerId>")]
pub(crate) struct TransportProducers;

impl Handler<TransportProducers> for TransportActor {
    type Result = actix::MessageResult<TransportProducers>;
    fn handle(&mut self, _: TransportProducers, _: &mut Context<Self>) -> Self::Result {
        let r = self.room.borrow();
        actix::MessageResult(
            r.producers
                .iter()
                .filter(|(_, p)| p.transport == self.id)
                .map(|(id, _)| *id)
                .collect(),
        )
    }
}

/// A producer of another router of the room, arriving through the pipe from its worker.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Piped(pub PipedProducer);

impl Handler<Piped> for RouterActor {
    type Result = ();
    fn handle(&mut self, Piped(msg): Piped, _: &mut Context<Self>) {
        let Some(link) = self.room.borrow().span.links.get(&msg.from).copied() else {
            tracing::warn!(producer = %msg.id, from = %msg.from, "piped producer without a link");
            return;
        };
        if let Err(e) = tracks::create_producer_with(
            &self.room,
            link,
            msg.kind,
            &msg.rtp_parameters,
            msg.paused,
            Some(msg.id),
        ) {
            tracing::warn!(producer = %msg.id, error = %e, "cannot create piped producer");
            return;
        }
        {
            let mut r = self.room.borrow_mut();
            r.span.copies.insert(msg.id, msg.origin_peer.clone());
            if !r.auto_subscribe {
                return;
            }
        }
        for t in auto_receivers(&self.room, msg.origin_peer.as_ref()) {
            subscribe_to(&self.room, t, &[msg.id]);
        }
        flush_renegotiations(&self.room);
    }
}

/// Closes the copy of a producer whose original closed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClosePiped(pub ProducerId);

impl Handler<ClosePiped> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: ClosePiped, _: &mut Context<Self>) {
        let mut r = self.room.borrow_mut();
        if r.span.copies.contains_key(&msg.0) {
            r.close_producer(msg.0, CloseReason::Requested);
        }
    }
}

/// Pauses or resumes the copy of a producer with its original.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PausePiped(pub ProducerId, pub bool);

impl Handler<PausePiped> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: PausePiped, _: &mut Context<Self>) {
        let mut r = self.room.borrow_mut();
        if !r.span.copies.contains_key(&msg.0) {
            return;
        }
        if r.forwarder
            .set_producer_paused(msg.0, msg.1, Instant::now())
            .is_ok()
            && let Some(p) = r.producers.get_mut(&msg.0)
        {
            p.paused = msg.1;
        }
    }
}

/// Makes a peer of the room known to this secondary router, silently.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MirrorPeer(pub PeerId);

impl Handler<MirrorPeer> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: MirrorPeer, _: &mut Context<Self>) {
        let mut r = self.room.borrow_mut();
        if r.peer(&msg.0).is_none() {
            r.peers.push(PeerState {
                id: msg.0,
                send: None,
                recv: None,
                subscribed: false,
            });
        }
    }
}

/// A peer left the room: close its transports on this secondary router and forget it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DropMirrorPeer(pub PeerId);

impl Handler<DropMirrorPeer> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: DropMirrorPeer, _: &mut Context<Self>) {
        let mut r = self.room.borrow_mut();
        if !r.span.secondary {
            return;
        }
        r.peers.retain(|p| p.id != msg.0);
        let transports: Vec<TransportId> = r
            .transports
            .iter()
            .filter(|(_, t)| t.peer.as_ref() == Some(&msg.0))
            .map(|(id, _)| *id)
            .collect();
        for t in transports {
            r.close_transport(t, CloseReason::ParentClosed);
        }
    }
}

/// Whether a peer is in the room (asked of the home router), and its receive connection.
#[derive(Message)]
#[rtype(result = "Result<Option<TransportId>>")]
pub(crate) struct PeerConnection(pub PeerId);

impl Handler<PeerConnection> for RouterActor {
    type Result = Result<Option<TransportId>>;
    fn handle(&mut self, msg: PeerConnection, _: &mut Context<Self>) -> Self::Result {
        let r = self.room.borrow();
        let p = r
            .peer(&msg.0)
            .ok_or_else(|| Error::not_found("peer", &msg.0))?;
        Ok(p.recv)
    }
}

/// Closes a secondary router and stops it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseSecondary(pub CloseReason);

impl Handler<CloseSecondary> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: CloseSecondary, ctx: &mut Context<Self>) {
        if let Ok(mut r) = self.room.try_borrow_mut() {
            close_secondary(&mut r, msg.0);
        }
        ctx.stop();
    }
}

/// This router's part of the room, as the backend may see it: its worker, its visible
/// transports, producers and consumers, its pipes, and its forwarding counters.
#[derive(Message)]
#[rtype(result = "RouterPart")]
pub(crate) struct DescribeRouter;

/// One router's answer to [`DescribeRouter`].
pub(crate) struct RouterPart {
    pub worker: WorkerId,
    pub role: report::RouterRole,
    pub transports: Vec<report::TransportEntry>,
    pub producers: Vec<report::ProducerEntry>,
    pub consumers: Vec<report::ConsumerEntry>,
    pub pipes: Vec<report::PipeStats>,
    pub counters: ForwarderStats,
}

impl Handler<DescribeRouter> for RouterActor {
    type Result = actix::MessageResult<DescribeRouter>;
    fn handle(&mut self, _: DescribeRouter, _: &mut Context<Self>) -> Self::Result {
        let r = self.room.borrow();
        let entries = r.entries(false, Some(r.worker));
        let pipes = r
            .span
            .links
            .iter()
            .map(|(w, l)| {
                let feeding: Vec<_> = r
                    .consumers
                    .iter()
                    .filter(|(_, c)| c.transport == *l)
                    .map(|(id, _)| *id)
                    .collect();
                report::PipeStats {
                    transport: *l,
                    remote_worker: *w,
                    producers_out: feeding.len(),
                    producers_in: r.producers.values().filter(|p| p.transport == *l).count(),
                    packets_out: feeding
                        .iter()
                        .filter_map(|id| r.forwarder.consumer_stats(*id))
                        .map(|s| s.packets)
                        .sum(),
                }
            })
            .collect();
        actix::MessageResult(RouterPart {
            worker: r.worker,
            role: if r.span.secondary {
                report::RouterRole::Secondary
            } else {
                report::RouterRole::Home
            },
            transports: entries.transports,
            producers: entries.producers,
            consumers: entries.consumers,
            pipes,
            counters: r.forwarder.stats().clone(),
        })
    }
}
