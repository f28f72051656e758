//! The Router actor: one room on one worker.

use crate::room::budget::{TransportBudget, TransportSlot};
use crate::room::renegotiation::flush_renegotiations;
use crate::room::tracks;
use crate::room::{Room, RoomHost, RoomIo, RoomRef, RoomSetup, TransportNode};
use crate::shared::Shared;
use crate::supervision::{CrashGuard, contain, crash_guard};
use crate::transport::TransportActor;
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard_core::api::TransportInfo;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::report;
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::transport::{TransportContext, TransportFactory};
use switchboard_core::{Error, ErrorCode, PeerId, Result, RouterId, TransportId, WorkerId};

/// How often the forwarder's timers (keyframe-request windows, sender reports) run.
const TICK: Duration = Duration::from_millis(20);

/// The transport plugins started on one worker, which its routers create transports with.
pub(crate) type Factories = Rc<RefCell<HashMap<&'static str, Box<dyn TransportFactory>>>>;

/// What a router needs of the actor layer above it, beyond what its room asks.
pub(crate) trait RouterHost: RoomHost {
    /// Gives the host its room, once the room exists.
    fn bind(&self, room: Weak<RefCell<Room>>);
    /// A transport's actor started: make it reachable.
    fn transport_started(&self, id: TransportId, actor: Addr<TransportActor>);
    /// A pipe to the room's router on `worker` is up.
    fn add_link(&self, worker: WorkerId, router: Addr<RouterActor>);
    /// The peer's transports gave up on their own and `webrtc.peer_timeout_ms` passed: the
    /// peer leaves with `reason` unless it has a transport again.
    fn peer_gave_up(&self, peer: PeerId, reason: CloseReason);
}

/// What a room's routers are spawned with, home and secondaries alike.
#[derive(Clone)]
pub(crate) struct RoomSpec {
    pub id: RouterId,
    pub capabilities: RtpCapabilities,
    pub auto_subscribe: bool,
    pub single_connection: bool,
    /// Transports the backend sees in all the room's routers, for the per-room limit.
    pub budget: Arc<TransportBudget>,
}

/// Spawns one router of a room on a worker.
#[derive(Message)]
#[rtype(result = "Result<Addr<RouterActor>>")]
pub(crate) struct SpawnRouter {
    pub room: RoomSpec,
    pub secondary: bool,
}

/// Lifecycle of one room: creates transports, attaches middleware, runs the forwarder's
/// timers, and closes everything when it closes or crashes.
pub struct RouterActor {
    pub(crate) id: RouterId,
    pub(crate) room: RoomRef,
    /// The room's span: entered while handling its messages, so every log line about the
    /// room (and, through child spans, its peers and transports) carries its id.
    pub(crate) log_span: tracing::Span,
    /// What the room asks of the actor layer; also reaches the room's other routers.
    pub(crate) host: Rc<dyn RouterHost>,
    pub(crate) shared: Arc<Shared>,
    /// The room's transport limit, shared with its other routers.
    pub(crate) budget: Arc<TransportBudget>,
    factories: Factories,
    guard: CrashGuard,
}

impl RouterActor {
    pub(crate) fn new(
        spawn: SpawnRouter,
        worker: WorkerId,
        shared: Arc<Shared>,
        factories: Factories,
        host: Rc<dyn RouterHost>,
    ) -> Self {
        let SpawnRouter {
            room: spec,
            secondary,
        } = spawn;
        let id = spec.id;
        let span = tracing::info_span!("room", room = %id);
        let room = Rc::new(RefCell::new(Room::new(RoomSetup {
            id,
            worker,
            config: shared.config.clone(),
            events: shared.events.clone(),
            load: shared.load(worker).clone(),
            host: host.clone(),
            capabilities: spec.capabilities,
            auto_subscribe: spec.auto_subscribe,
            single_connection: spec.single_connection,
            secondary,
        })));
        host.bind(Rc::downgrade(&room));
        crate::metrics::room_opened(id, Rc::downgrade(&room));
        Self {
            id,
            guard: crash_guard(&room, |r, reason| {
                r.close(reason);
            }),
            room,
            log_span: span,
            host,
            shared,
            budget: spec.budget,
            factories,
        }
    }

    fn crash(&mut self, message: String, ctx: &mut Context<Self>) {
        tracing::error!(router = %self.id, %message, "router crashed");
        if let Ok(mut r) = self.room.try_borrow_mut() {
            r.close(CloseReason::Crashed { message });
        }
        self.guard.disarm();
        ctx.stop();
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| {
            let room = act.room.clone();
            let result = contain(|| {
                if let Ok(mut r) = room.try_borrow_mut() {
                    r.forwarder.tick(Instant::now());
                }
                flush_renegotiations(&room);
            });
            if let Err(message) = result {
                act.crash(message, ctx);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // After a panic in a handler the guard closes the room as crashed when dropped.
        if self.guard.stopped_cleanly()
            && let Ok(mut r) = self.room.try_borrow_mut()
        {
            r.close(CloseReason::Requested);
        }
    }
}

/// A panic on this router's forwarding path: close the room as crashed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RouterCrashed(pub String);

impl Handler<RouterCrashed> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: RouterCrashed, ctx: &mut Self::Context) {
        self.crash(msg.0, ctx);
    }
}

/// Closes the router and everything in it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseRouter(pub CloseReason);

impl Handler<CloseRouter> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: CloseRouter, ctx: &mut Self::Context) {
        let _span = self.log_span.clone().entered();
        self.room.borrow_mut().close(msg.0);
        self.guard.disarm();
        ctx.stop();
    }
}

/// Creates a transport of a registered plugin kind.
#[derive(Message)]
#[rtype(result = "Result<TransportInfo>")]
pub struct CreateTransport {
    /// Plugin kind, e.g. `direct`.
    pub kind: String,
    /// The peer it belongs to; closed when the peer leaves.
    pub peer: Option<PeerId>,
    /// Plugin-specific options.
    pub options: Value,
}

impl Handler<CreateTransport> for RouterActor {
    type Result = Result<TransportInfo>;
    fn handle(&mut self, msg: CreateTransport, ctx: &mut Self::Context) -> Result<TransportInfo> {
        let _span = self.log_span.clone().entered();
        self.create_transport(msg, ctx)
    }
}

impl RouterActor {
    /// Creates a transport of a plugin kind, owned by a peer or not.
    pub(crate) fn create_transport(
        &mut self,
        msg: CreateTransport,
        ctx: &mut Context<Self>,
    ) -> Result<TransportInfo> {
        self.create_transport_as(msg, ctx, false)
    }

    /// Creates a transport; an `internal` one (a pipe between this room's routers) is never
    /// announced to the backend.
    pub(crate) fn create_transport_as(
        &mut self,
        msg: CreateTransport,
        ctx: &mut Context<Self>,
        internal: bool,
    ) -> Result<TransportInfo> {
        let shared = self.shared.clone();
        shared.transports.require(&msg.kind)?;
        let (worker, capabilities) = {
            let r = self.room.borrow();
            if let Some(peer) = &msg.peer
                && r.peer(peer).is_none()
            {
                return Err(Error::not_found("peer", peer));
            }
            (r.worker, r.capabilities.clone())
        };
        // The limit is the room's, across every router it spans; the pipes that link them
        // are not the backend's transports and do not count.
        let slot = if internal {
            TransportSlot::uncounted()
        } else {
            self.budget
                .take(shared.config.limits.max_transports_per_room)?
        };
        let id = TransportId::new();
        // Created in whatever span the caller entered (the room's, or a peer's inside it).
        let span = tracing::info_span!(
            "transport",
            transport = %id,
            kind = %msg.kind,
            peer = msg.peer.as_ref().map(|p| p.0.as_str()),
        );
        let router_addr = ctx.address();
        let gave_up = ctx.address();
        let io = Rc::new(RoomIo::new(
            id,
            &self.room,
            &self.room.borrow(),
            &msg.kind,
            switchboard_core::transport::TransportState::New,
            Box::new(move |message| router_addr.do_send(RouterCrashed(message))),
            Box::new(move |reason| {
                gave_up.do_send(TransportGaveUp {
                    transport: id,
                    reason,
                })
            }),
        ));
        let announce = io.clone();
        let node_io = io.clone();
        let tctx = TransportContext {
            id,
            router: self.id,
            worker,
            capabilities,
            io,
        };
        let created = {
            let mut factories = self.factories.borrow_mut();
            let factory = factories.get_mut(msg.kind.as_str()).ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownPlugin,
                    format!("transport plugin {:?} is not running on {worker}", msg.kind),
                )
            })?;
            let options = shared.config.transport_options(&msg.kind, &msg.options);
            contain(|| factory.create(tctx, &options)).map_err(|m| {
                Error::new(ErrorCode::TransportFailed, format!("plugin panicked: {m}"))
            })??
        };
        let local = contain(|| created.local_parameters()).unwrap_or(Value::Null);
        let sink = created.sink();
        let plugin = Rc::new(RefCell::new(Some(created)));
        let addr = TransportActor::new(
            id,
            self.id,
            msg.kind.clone(),
            self.room.clone(),
            plugin.clone(),
            ctx.address().recipient(),
            span,
        )
        .start();
        self.host.transport_started(id, addr);
        slot.keep();
        self.room.borrow_mut().add_transport(
            id,
            TransportNode {
                io: node_io,
                peer: msg.peer.clone(),
                kind: msg.kind.clone(),
                sink,
                plugin,
            },
            internal,
        );
        if !internal {
            announce.announce();
        }
        Ok(TransportInfo {
            id,
            router: self.id,
            peer: msg.peer,
            kind: msg.kind,
            local,
        })
    }
}

/// Adds a peer to the room.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct JoinPeer(pub PeerId);

impl Handler<JoinPeer> for RouterActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: JoinPeer, _: &mut Self::Context) -> Result<()> {
        let _span = self.log_span.clone().entered();
        let mut r = self.room.borrow_mut();
        if r.peer(&msg.0).is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("peer {:?} is already in the room", msg.0.0),
            ));
        }
        let max = r.config.limits.max_peers_per_room;
        if r.peers.len() >= max {
            return Err(Error::limit("peers per room", max));
        }
        r.peers.push(crate::room::PeerState {
            id: msg.0.clone(),
            send: None,
            recv: None,
            subscribed: false,
        });
        let router = r.id;
        r.emit(Event::PeerJoined {
            router,
            peer: msg.0,
        });
        Ok(())
    }
}

/// Removes a peer from the room, closing its transports.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct LeavePeer(pub PeerId, pub CloseReason);

impl Handler<LeavePeer> for RouterActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: LeavePeer, _: &mut Self::Context) -> Result<()> {
        let _span = tracing::info_span!(parent: &self.log_span, "peer", peer = %msg.0).entered();
        if self.room.borrow_mut().close_peer(&msg.0, msg.1) {
            Ok(())
        } else {
            Err(Error::not_found("peer", &msg.0))
        }
    }
}

/// A transport gave up on its remote on its own (a vanished client): it closes with the
/// reason, and its peer leaves after the transport's `peer_timeout` (for WebRTC,
/// `webrtc.peer_timeout_ms`) unless it has a transport again by then.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TransportGaveUp {
    pub transport: TransportId,
    pub reason: CloseReason,
}

impl Handler<TransportGaveUp> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: TransportGaveUp, ctx: &mut Self::Context) {
        let _span = self.log_span.clone().entered();
        let timeout = tracks::with_plugin(&self.room, msg.transport, |t| t.peer_timeout())
            .ok()
            .flatten();
        let peer = {
            let mut r = self.room.borrow_mut();
            let peer = r
                .transports
                .get(&msg.transport)
                .and_then(|t| t.peer.clone());
            if !r.close_transport(msg.transport, msg.reason.clone()) {
                return;
            }
            peer
        };
        flush_renegotiations(&self.room);
        let (Some(peer), Some(timeout)) = (peer, timeout) else {
            return;
        };
        ctx.run_later(timeout, move |act, _| {
            act.host.peer_gave_up(peer, msg.reason);
        });
    }
}

/// How many of a peer's transports this router has.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct PeerTransportCount(pub PeerId);

impl Handler<PeerTransportCount> for RouterActor {
    type Result = usize;
    fn handle(&mut self, msg: PeerTransportCount, _: &mut Self::Context) -> usize {
        self.room
            .borrow()
            .transports
            .values()
            .filter(|t| t.peer.as_ref() == Some(&msg.0))
            .count()
    }
}

/// The router's RTP capabilities.
#[derive(Message)]
#[rtype(result = "RtpCapabilities")]
pub struct GetCapabilities;

impl Handler<GetCapabilities> for RouterActor {
    type Result = actix::MessageResult<GetCapabilities>;
    fn handle(&mut self, _: GetCapabilities, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.room.borrow().capabilities.clone())
    }
}

/// Detaches a middleware from this room. Answers once the instance has been given
/// everything queued for it and its `close` has returned (or `middleware.close_timeout_ms`
/// passed).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DetachMiddleware(pub String);

impl Handler<DetachMiddleware> for RouterActor {
    type Result = actix::ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: DetachMiddleware, _: &mut Self::Context) -> Self::Result {
        let _span = self.log_span.clone().entered();
        let mut r = self.room.borrow_mut();
        let Some(i) = r.middleware.iter().position(|m| m.name == msg.0) else {
            let e = Error::not_found("attached middleware", &msg.0);
            return Box::pin(async move { Err(e) });
        };
        let timeout = Duration::from_millis(r.config.middleware.close_timeout_ms);
        let done = r.take_middleware(i, CloseReason::Requested);
        drop(r);
        flush_renegotiations(&self.room);
        let name = msg.0;
        Box::pin(async move {
            if crate::middleware::instance::wait_closed(done, timeout).await {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "middleware {name:?} did not close within middleware.close_timeout_ms ({} ms); it was detached and finishes in the background",
                        timeout.as_millis()
                    ),
                ))
            }
        })
    }
}

/// The router's full state: its tree of transports, producers and consumers.
#[derive(Message)]
#[rtype(result = "Result<report::RouterDump>")]
pub struct DumpRouter;

impl Handler<DumpRouter> for RouterActor {
    type Result = Result<report::RouterDump>;
    fn handle(&mut self, _: DumpRouter, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        // The home router's own dump lists everything it holds, pipes included; the
        // server replaces the lists with what every router shows the backend.
        let entries = r.entries(true, None);
        Ok(report::RouterDump {
            id: r.id,
            worker: r.worker,
            rtp_capabilities: r.capabilities.clone(),
            auto_subscribe: r.auto_subscribe,
            single_connection: r.single_connection,
            peers: r
                .peers
                .iter()
                .map(|p| report::PeerDump {
                    id: p.id.clone(),
                    send: p.send,
                    recv: p.recv,
                })
                .collect(),
            transports: entries.transports,
            producers: entries.producers,
            consumers: entries.consumers,
            middleware: r.middleware.iter().map(|m| m.name.clone()).collect(),
            routers: None,
        })
    }
}

/// Router statistics: the forwarder's counters.
#[derive(Message)]
#[rtype(result = "Result<report::RouterStats>")]
pub struct RouterStatsRequest;

impl Handler<RouterStatsRequest> for RouterActor {
    type Result = Result<report::RouterStats>;
    fn handle(&mut self, _: RouterStatsRequest, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        let middleware = r
            .middleware
            .iter()
            .map(|m| {
                let c = &m.counters;
                report::MiddlewareStats {
                    name: m.name.clone(),
                    queued: c.queued.load(Ordering::Relaxed),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    // As the instance's thread last took it (after ticks, at least every second).
                    stats: c.snapshot().stats,
                }
            })
            .collect();
        Ok(report::RouterStats {
            object: report::ObjectType::Router,
            id: r.id,
            worker: r.worker,
            peers: r.peers.len(),
            transports: r.transports.len(),
            producers: r.forwarder.producer_count(),
            consumers: r.forwarder.consumer_count(),
            counters: r.forwarder.stats().clone(),
            // Everything the room counted, closed producers and consumers included: the
            // numbers `/metrics` reports for this room.
            totals: r.totals(),
            middleware,
            routers: None,
        })
    }
}
