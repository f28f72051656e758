//! The Transport actor: owns one plugin transport, creates its producers and consumers.

use crate::room::renegotiation::{auto_receivers, flush_renegotiations, subscribe_to};
use crate::room::{ChildClosed, PluginRef, RoomRef, close_plugin, tracks};
use crate::supervision::{CrashGuard, Stop, crash_guard};
use actix::{
    Actor, ActorContext, ActorFutureExt, Context, Handler, Message, Recipient, WrapFuture,
};
use serde_json::Value;
use switchboard_core::api::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, TransportRequestResult,
};
use switchboard_core::event::CloseReason;
use switchboard_core::report;
use switchboard_core::{Result, RouterId, TransportId};

/// Lifecycle of one transport: it owns the plugin instance, which does the I/O.
pub struct TransportActor {
    pub(crate) id: TransportId,
    pub(crate) router: RouterId,
    pub(crate) kind: String,
    pub(crate) room: RoomRef,
    pub(crate) plugin: PluginRef,
    /// Its router, for [`Barrier`].
    router_barrier: Recipient<Barrier>,
    pub(crate) guard: CrashGuard,
    /// The transport's span (a child of its room's, or its peer's), entered while handling
    /// its messages.
    pub(crate) log_span: tracing::Span,
}

impl TransportActor {
    pub(crate) fn new(
        id: TransportId,
        router: RouterId,
        kind: String,
        room: RoomRef,
        plugin: PluginRef,
        router_barrier: Recipient<Barrier>,
        span: tracing::Span,
    ) -> Self {
        Self {
            id,
            router,
            kind,
            guard: crash_guard(&room, move |r, reason| {
                r.close_transport(id, reason);
            }),
            room,
            plugin,
            router_barrier,
            log_span: span,
        }
    }

    /// Runs `f` on the plugin transport; a panic closes the transport as crashed.
    fn with_plugin<T>(
        &mut self,
        f: impl FnOnce(&mut dyn switchboard_core::transport::Transport) -> T,
    ) -> Result<T> {
        tracks::with_plugin(&self.room, self.id, f)
    }
}

impl Actor for TransportActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.guard.stopped_cleanly();
        close_plugin(self.id, &self.plugin);
    }
}

impl Handler<Stop> for TransportActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.guard.disarm();
        close_plugin(self.id, &self.plugin);
        ctx.stop();
    }
}

/// Tells the plugin that one of its producers or consumers closed (it was busy when the
/// room closed them).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PluginChildClosed(pub ChildClosed);

impl Handler<PluginChildClosed> for TransportActor {
    type Result = ();
    fn handle(&mut self, msg: PluginChildClosed, _: &mut Self::Context) {
        if self.plugin.borrow().is_none() {
            return;
        }
        let _ = self.with_plugin(|t| match msg.0 {
            ChildClosed::Producer(id) => t.producer_removed(id),
            ChildClosed::Consumer(id) => t.consumer_removed(id),
        });
    }
}

/// Applies the remote side's parameters.
#[derive(Message)]
#[rtype(result = "Result<Value>")]
pub struct ConnectTransport(pub Value);

impl Handler<ConnectTransport> for TransportActor {
    type Result = Result<Value>;
    fn handle(&mut self, msg: ConnectTransport, _: &mut Self::Context) -> Result<Value> {
        let _span = self.log_span.clone().entered();
        self.with_plugin(|t| t.connect(&msg.0))?
    }
}

/// What a transport asks of its router: answered in order with the router's other
/// messages, so once it is answered, every producer piped to the router before it was sent
/// has its copy there.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Barrier;

/// Closes the transport, its producers and consumers.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseTransport(pub CloseReason);

impl Handler<CloseTransport> for TransportActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: CloseTransport, _: &mut Self::Context) -> Result<()> {
        let _span = self.log_span.clone().entered();
        self.room.borrow_mut().close_transport(self.id, msg.0);
        Ok(())
    }
}

/// Transport statistics.
#[derive(Message)]
#[rtype(result = "Result<report::TransportStats>")]
pub struct TransportStatsRequest;

impl Handler<TransportStatsRequest> for TransportActor {
    type Result = Result<report::TransportStats>;
    fn handle(&mut self, _: TransportStatsRequest, _: &mut Self::Context) -> Self::Result {
        let plugin = self.with_plugin(|t| t.stats())?;
        let r = self.room.borrow();
        let node = r.transports.get(&self.id);
        let producers = r
            .producers
            .values()
            .filter(|p| p.transport == self.id)
            .count();
        let consumers = r
            .consumers
            .values()
            .filter(|c| c.transport == self.id)
            .count();
        Ok(report::TransportStats {
            object: report::ObjectType::Transport,
            id: self.id,
            router: self.router,
            kind: self.kind.clone(),
            peer: node.and_then(|n| n.peer.clone()),
            state: node.map(|n| n.io.state.get()),
            producers,
            consumers,
            reentrant_drops: node.map(|n| n.io.reentrant_drops.get()),
            plugin,
        })
    }
}

/// The transport's full state.
#[derive(Message)]
#[rtype(result = "Result<report::TransportDump>")]
pub struct DumpTransport;

impl Handler<DumpTransport> for TransportActor {
    type Result = Result<report::TransportDump>;
    fn handle(&mut self, _: DumpTransport, _: &mut Self::Context) -> Self::Result {
        let plugin = self.with_plugin(|t| t.dump())?;
        let r = self.room.borrow();
        let producers: Vec<_> = r
            .producers
            .iter()
            .filter(|(_, p)| p.transport == self.id)
            .map(|(id, _)| *id)
            .collect();
        let consumers: Vec<_> = r
            .consumers
            .iter()
            .filter(|(_, c)| c.transport == self.id)
            .map(|(id, _)| *id)
            .collect();
        Ok(report::TransportDump {
            id: self.id,
            router: self.router,
            kind: self.kind.clone(),
            producers,
            consumers,
            plugin,
        })
    }
}

/// Creates a producer on this transport.
#[derive(Message)]
#[rtype(result = "Result<ProducerInfo>")]
pub struct Produce(pub ProduceOptions);

impl Handler<Produce> for TransportActor {
    type Result = Result<ProducerInfo>;
    fn handle(&mut self, msg: Produce, _: &mut Self::Context) -> Result<ProducerInfo> {
        let _span = self.log_span.clone().entered();
        let o = msg.0;
        let info =
            tracks::create_producer(&self.room, self.id, o.kind, &o.rtp_parameters, o.paused)?;
        // A track that enters the room by request (a plain RTP ingest, a stream piped from
        // another node) reaches the receive connections as a WebRTC peer's would.
        let owner = self
            .room
            .borrow()
            .transports
            .get(&self.id)
            .and_then(|t| t.peer.clone());
        let receivers = auto_receivers(&self.room, owner.as_ref());
        if !receivers.is_empty() {
            for t in receivers {
                subscribe_to(&self.room, t, &[info.id]);
            }
            flush_renegotiations(&self.room);
        }
        Ok(info)
    }
}

/// A plugin-specific operation (for example applying a WebRTC offer). Producers the plugin
/// asks for are created, and those it drops are closed, before the answer returns.
#[derive(Message)]
#[rtype(result = "Result<TransportRequestResult>")]
pub struct TransportRequest {
    /// Operation name, plugin-specific.
    pub method: String,
    /// Its parameters.
    pub params: Value,
}

impl Handler<TransportRequest> for TransportActor {
    type Result = Result<TransportRequestResult>;
    fn handle(&mut self, msg: TransportRequest, _: &mut Self::Context) -> Self::Result {
        let _span = self.log_span.clone().entered();
        tracks::transport_request(&self.room, self.id, &msg.method, &msg.params)
    }
}

impl Handler<Consume> for TransportActor {
    type Result = actix::ResponseActFuture<Self, Result<ConsumerInfo>>;
    fn handle(&mut self, msg: Consume, _: &mut Self::Context) -> Self::Result {
        let _span = self.log_span.clone().entered();
        let o = msg.0;
        // A producer created on another router of a spanning room an instant ago may still
        // have its copy on the way here: wait until the router has handled what was sent to
        // it before this request, then try again (once: after that, unknown is unknown).
        let barrier = {
            let r = self.room.borrow();
            (!r.producers.contains_key(&o.producer) && !r.span.links.is_empty())
                .then(|| self.router_barrier.clone())
        };
        let Some(router) = barrier else {
            let result = tracks::create_consumer(
                &self.room,
                self.id,
                o.producer,
                &o.rtp_capabilities,
                o.paused,
            );
            return Box::pin(actix::fut::ready(result));
        };
        Box::pin(
            async move {
                let _ = router.send(Barrier).await;
            }
            .into_actor(self)
            .map(move |_, act, _| {
                let _span = act.log_span.clone().entered();
                tracks::create_consumer(
                    &act.room,
                    act.id,
                    o.producer,
                    &o.rtp_capabilities,
                    o.paused,
                )
            }),
        )
    }
}

/// Creates a consumer on this transport.
#[derive(Message)]
#[rtype(result = "Result<ConsumerInfo>")]
pub struct Consume(pub ConsumeOptions);
