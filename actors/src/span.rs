//! Rooms that span workers.
//!
//! A room is a logical object: one *home* router on the worker placement chose for it, and,
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

use crate::room::renegotiation::{flush_renegotiations, subscribe_to};
use crate::room::span::{PipedProducer, close_secondary};
use crate::room::tracks::pipe_producer;
use crate::room::{PeerState, tracks};
use crate::router::{CreateTransport, RouterActor};
use crate::server::{ServerActor, WorkerAddr};
use crate::shared::Shared;
use crate::worker::SpawnRouter;
use actix::{ActorContext, Addr, Context, Handler, MailboxError, Message};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use switchboard_core::api::TransportInfo;
use switchboard_core::event::CloseReason;
use switchboard_core::forward::ForwarderStats;
use switchboard_core::report;
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::{Error, PeerId, ProducerId, Result, RouterId, TransportId, WorkerId};

/// The transport kind that links a room's routers.
pub const PIPE_KIND: &str = "pipe";

/// One room across the workers, shared by all threads.
pub(crate) struct RouterGroup {
    pub id: RouterId,
    pub home: WorkerId,
    pub home_addr: Addr<RouterActor>,
    pub capabilities: RtpCapabilities,
    pub auto_subscribe: bool,
    pub single_connection: bool,
    /// Serialises adding routers to the room.
    pub setup: tokio::sync::Mutex<()>,
    pub state: Mutex<GroupState>,
    /// Transports the backend sees in all the room's routers, for the per-room limit (each
    /// router only knows its own).
    pub transports: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
pub(crate) struct GroupState {
    /// Secondary routers by worker.
    pub secondaries: BTreeMap<WorkerId, Addr<RouterActor>>,
    /// Peers whose receive connection is on a secondary router.
    pub recv_on: HashMap<PeerId, WorkerId>,
    pub closed: bool,
}

impl RouterGroup {
    pub fn new(
        id: RouterId,
        home: WorkerId,
        home_addr: Addr<RouterActor>,
        capabilities: RtpCapabilities,
        auto_subscribe: bool,
        single_connection: bool,
    ) -> Self {
        Self {
            id,
            home,
            home_addr,
            capabilities,
            auto_subscribe,
            single_connection,
            setup: tokio::sync::Mutex::new(()),
            state: Mutex::new(GroupState::default()),
            transports: Default::default(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The secondary routers.
    pub fn secondaries(&self) -> Vec<(WorkerId, Addr<RouterActor>)> {
        self.state()
            .secondaries
            .iter()
            .map(|(w, a)| (*w, a.clone()))
            .collect()
    }

    /// Every router of the room, home first.
    pub fn routers(&self) -> Vec<(WorkerId, Addr<RouterActor>)> {
        let mut all = vec![(self.home, self.home_addr.clone())];
        all.extend(self.secondaries());
        all
    }

    /// The router on `worker`, if the room has one there.
    pub fn router_on(&self, worker: WorkerId) -> Option<Addr<RouterActor>> {
        if worker == self.home {
            return Some(self.home_addr.clone());
        }
        self.state().secondaries.get(&worker).cloned()
    }

    /// The router holding a peer's receive connection (home unless it was placed elsewhere).
    pub fn receiving_router(&self, peer: &PeerId) -> Addr<RouterActor> {
        let w = self.state().recv_on.get(peer).copied();
        w.and_then(|w| self.router_on(w))
            .unwrap_or_else(|| self.home_addr.clone())
    }
}

/// A room-wide transport slot, taken before a transport is created and given back if its
/// creation fails (or, once kept, when it closes: [`release_transport_slot`]).
pub(crate) struct TransportSlot(Option<Arc<RouterGroup>>);

impl TransportSlot {
    /// Takes a slot in `group` if fewer than `max` are taken.
    pub fn take(group: Option<Arc<RouterGroup>>, max: usize) -> Result<Self> {
        if let Some(g) = &group {
            let taken = g.transports.fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| (n < max).then_some(n + 1),
            );
            if taken.is_err() {
                return Err(Error::limit("transports per room", max));
            }
        }
        Ok(Self(group))
    }

    /// The transport exists: the slot stays taken until it closes.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TransportSlot {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            g.transports
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

fn mailbox(e: MailboxError) -> Error {
    match e {
        MailboxError::Closed => Error::closed("router"),
        MailboxError::Timeout => Error::internal("router did not answer"),
    }
}

/// The room's router on `worker`, created (and linked to every other router of the room,
/// with every producer piped) if the room has none there yet.
pub(crate) async fn ensure_router(
    shared: &Shared,
    server: &Addr<ServerActor>,
    group: &Arc<RouterGroup>,
    worker: WorkerId,
) -> Result<Addr<RouterActor>> {
    if let Some(addr) = group.router_on(worker) {
        return Ok(addr);
    }
    let _setup = group.setup.lock().await;
    {
        let st = group.state();
        if st.closed {
            return Err(Error::closed(format!("router {}", group.id)));
        }
        if let Some(addr) = st.secondaries.get(&worker) {
            return Ok(addr.clone());
        }
    }
    let worker_addr = server.send(WorkerAddr(worker)).await.map_err(mailbox)??;
    let addr = worker_addr
        .send(SpawnRouter {
            id: group.id,
            capabilities: group.capabilities.clone(),
            auto_subscribe: group.auto_subscribe,
            single_connection: group.single_connection,
            secondary: true,
        })
        .await
        .map_err(mailbox)??;
    for (w, other) in group.routers() {
        if let Err(e) = link(shared, (w, &other), (worker, &addr)).await {
            addr.do_send(CloseSecondary(CloseReason::Crashed {
                message: e.message.clone(),
            }));
            return Err(e);
        }
    }
    let closed = {
        let mut st = group.state();
        st.secondaries.insert(worker, addr.clone());
        st.closed
    };
    if closed {
        addr.do_send(CloseSecondary(CloseReason::Requested));
        return Err(Error::closed(format!("router {}", group.id)));
    }
    tracing::info!(room = %group.id, %worker, "room spans another worker");
    Ok(addr)
}

/// Links two routers of a room with a pair of pipe transports, then lets each pipe its
/// producers to the other.
async fn link(
    shared: &Shared,
    (a_worker, a): (WorkerId, &Addr<RouterActor>),
    (b_worker, b): (WorkerId, &Addr<RouterActor>),
) -> Result<()> {
    let ta = a.send(CreateLink).await.map_err(mailbox)??;
    let tb = b.send(CreateLink).await.map_err(mailbox)??;
    connect(shared, ta.id, &tb.address).await?;
    connect(shared, tb.id, &ta.address).await?;
    b.send(AttachLink {
        worker: a_worker,
        remote: a.clone(),
        transport: tb.id,
    })
    .await
    .map_err(mailbox)?;
    a.send(AttachLink {
        worker: b_worker,
        remote: b.clone(),
        transport: ta.id,
    })
    .await
    .map_err(mailbox)?;
    Ok(())
}

async fn connect(shared: &Shared, transport: TransportId, remote: &str) -> Result<()> {
    let addr = shared
        .index
        .transports
        .get(&transport)
        .map(|e| e.value().1.clone())
        .ok_or_else(|| Error::not_found("transport", transport))?;
    addr.send(crate::transport::ConnectPipe(remote.to_owned()))
        .await
        .map_err(mailbox)??;
    Ok(())
}

/// One end of a link: its transport, and the address the other end connects to.
pub(crate) struct LinkEnd {
    id: TransportId,
    address: String,
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

/// Handled in order with the router's other messages: once it is answered, every producer
/// piped to this router before it was sent has its copy here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Barrier;

impl Handler<Barrier> for RouterActor {
    type Result = ();
    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

/// The router of room `id` on `worker`, when the room is open.
pub(crate) fn router_on(
    shared: &Shared,
    id: RouterId,
    worker: WorkerId,
) -> Option<Addr<RouterActor>> {
    shared.rooms.get(&id)?.router_on(worker)
}

/// Whether `producer` belongs to room `id` (on whichever router), so a copy of it may still
/// be on its way to a router of the room that does not have it yet.
pub(crate) fn piped_in_flight(shared: &Shared, id: RouterId, producer: ProducerId) -> bool {
    shared
        .index
        .producers
        .get(&producer)
        .is_some_and(|e| e.value().0 == id)
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

impl Handler<TransportProducers> for crate::transport::TransportActor {
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
        let receivers: Vec<TransportId> = {
            let mut r = self.room.borrow_mut();
            r.span.copies.insert(msg.id, msg.origin_peer.clone());
            if !r.auto_subscribe {
                return;
            }
            r.peers
                .iter()
                .filter(|p| p.subscribed && Some(&p.id) != msg.origin_peer.as_ref())
                .filter_map(|p| p.recv)
                .collect()
        };
        for t in receivers {
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
