//! The Rust API of a running server: [`Server::start`] and the [`ServerHandle`] it returns.
//!
//! A thin facade: each call finds the object in the [`Index`] and sends its actor one
//! message; what concerns a room across its routers is [`RouterGroup`]'s.

use crate::consumer::{
    CloseConsumer, ConsumerStatsRequest, DumpConsumer, RequestConsumerKeyframe, SetConsumerPaused,
};
use crate::group::RouterGroup;
use crate::index::Index;
use crate::metrics::ServerMetrics;
use crate::middleware::AttachMiddleware;
use crate::producer::{
    CloseProducer, DumpProducer, ProducerStatsRequest, RequestProducerKeyframe, SetProducerPaused,
};
use crate::router::{
    CreateTransport, DetachMiddleware, DumpRouter, GetCapabilities, JoinPeer, RouterActor,
    RouterStatsRequest,
};
#[cfg(feature = "fault-injection")]
use crate::server::InjectWorkerPanic;
use crate::server::{Arbiters, CreateRouterRequest, ServerActor, Shutdown, boot};
use crate::session::{Answer, Publish, PublishResult, RestartIce, Subscribe, SubscribeResult};
use crate::shared::{Shared, WorkerInfo};
use crate::span::TransportProducers;
use crate::supervision::install_panic_hook;
use crate::supervision::mailbox;
use crate::transport::{
    CloseTransport, ConnectTransport, Consume, DumpTransport, Produce, TransportRequest,
    TransportStatsRequest,
};
use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use switchboard_core::api::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, RouterInfo, RouterOptions,
    TransportInfo, TransportRequestResult,
};
use switchboard_core::config::Config;
use switchboard_core::event::{CloseReason, Connection, Event};
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::report;
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::transport::TransportRegistry;
use switchboard_core::{
    ConsumerId, Error, ErrorCode, PeerId, ProducerId, Result, RouterId, TransportId, WorkerId,
};
use tokio::sync::{mpsc, oneshot};

/// Starts a server.
pub struct Server;

impl Server {
    /// Starts the actor system on its own threads: one Worker (an actix Arbiter) per
    /// configured worker, each with every registered transport plugin started on it.
    /// Returns once every worker is ready, or the first plugin start-up error.
    pub fn start(
        config: Arc<Config>,
        transports: TransportRegistry,
        middleware: MiddlewareRegistry,
    ) -> Result<ServerHandle> {
        install_panic_hook();
        if let Some(name) = config
            .middleware
            .attach
            .iter()
            .find(|n| middleware.get(n).is_none())
        {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "middleware.attach names {name:?}, which is not registered; registered: {}",
                    middleware.names().join(", ")
                ),
            ));
        }
        if let Some(kind) = config
            .transports
            .keys()
            .find(|k| transports.get(k).is_none())
        {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "[transports.{kind}] configures a transport plugin that is not registered; registered: {}",
                    transports.kinds().join(", ")
                ),
            ));
        }
        let workers = config.server.worker_count();
        let shared = Shared::new(config, transports, middleware, workers);
        let index = Arc::new(Index::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Addr<ServerActor>>>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (thread_shared, thread_index) = (shared.clone(), index.clone());
        std::thread::Builder::new()
            .name("switchboard-server".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let booted = system.block_on(boot(thread_shared, thread_index, workers));
                let ok = booted.is_ok();
                let _ = ready_tx.send(booted);
                if ok {
                    let _ = system.run();
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::internal(format!("cannot start server thread: {e}")))?;
        let server = ready_rx
            .recv()
            .map_err(|_| Error::internal("server thread died during start-up"))??;
        Ok(ServerHandle {
            shared,
            index,
            server,
            done: Arc::new(Mutex::new(Some(done_rx))),
        })
    }
}

/// The Rust API of a running server. Cheap to clone, usable from any thread and any async
/// runtime: every call is a message to the actor that owns the object.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: Arc<Index>,
    pub(crate) server: Addr<ServerActor>,
    /// Resolves when the actor system has exited.
    pub(crate) done: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl ServerHandle {
    async fn ask<A, M, T>(addr: Addr<A>, msg: M, what: &'static str) -> Result<T>
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message<Result = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        addr.send(msg).await.map_err(mailbox(what))?
    }

    fn router(&self, id: RouterId) -> Result<Addr<RouterActor>> {
        self.index.router(id)
    }

    fn group(&self, id: RouterId) -> Result<Arc<RouterGroup>> {
        self.index.group(id)
    }

    /// Subscribes to every event. Slow readers lose events rather than stall the server.
    pub fn subscribe(&self) -> mpsc::Receiver<Event> {
        self.shared.events.subscribe(None, 4096)
    }

    /// Subscribes to one room's events.
    pub fn subscribe_room(&self, router: RouterId) -> mpsc::Receiver<Event> {
        self.shared.events.subscribe(Some(router), 4096)
    }

    /// Events dropped because a subscriber did not keep up.
    pub fn dropped_events(&self) -> u64 {
        self.shared.events.dropped()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Registered transport plugin kinds.
    pub fn transport_kinds(&self) -> Vec<&'static str> {
        self.shared.transports.kinds()
    }

    /// Registered middleware names.
    pub fn middleware_names(&self) -> Vec<&'static str> {
        self.shared.middleware.names()
    }

    /// Test-only (`fault-injection`): makes worker `worker`'s actor panic in a handler, as
    /// a bug in it would. The server restarts it (`worker_died`, `worker_restarted`).
    #[cfg(feature = "fault-injection")]
    pub async fn inject_worker_panic(&self, worker: WorkerId) -> Result<()> {
        self.server
            .send(InjectWorkerPanic(worker))
            .await
            .map_err(|e| Error::internal(format!("server mailbox: {e}")))?
    }

    /// Every worker's load.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        (0..self.shared.loads.len())
            .map(|i| crate::placement::worker_info(&self.shared, WorkerId(i as u32)))
            .collect()
    }

    /// Gathers every worker's counters: the shared load counters at once, and the media
    /// counters by asking each worker thread (once per worker, in parallel). A worker that
    /// does not answer within `timeout` is reported without media counters rather than
    /// holding up the others. With `per_room`, each open room's counters come too.
    ///
    /// Needs a Tokio runtime (for the timeout).
    pub async fn metrics(&self, per_room: bool, timeout: std::time::Duration) -> ServerMetrics {
        let arbiters = self.server.send(Arbiters).await.unwrap_or_default();
        crate::metrics::gather(arbiters, &self.shared, per_room, timeout).await
    }

    /// Live routers and their workers.
    pub fn routers(&self) -> Vec<(RouterId, WorkerId)> {
        self.index
            .routers
            .iter()
            .map(|e| (*e.key(), e.value().0))
            .collect()
    }

    /// Whether this server holds the router, transport, producer or consumer named by
    /// `kind` (`router`, `transport`, `producer`, `consumer`, as the RPC parameters name
    /// them) and `id`. A malformed id or an unknown kind is not held.
    pub fn holds(&self, kind: &str, id: &str) -> bool {
        let index = &self.index;
        match kind {
            "router" => id.parse().is_ok_and(|id| index.routers.contains_key(&id)),
            "transport" => id
                .parse()
                .is_ok_and(|id| index.transports.contains_key(&id)),
            "producer" => id.parse().is_ok_and(|id| index.producers.contains_key(&id)),
            "consumer" => id.parse().is_ok_and(|id| index.consumers.contains_key(&id)),
            _ => false,
        }
    }

    /// Creates a router (a room) on the least-loaded worker, or the one asked for.
    pub async fn create_router(&self, options: RouterOptions) -> Result<RouterInfo> {
        let (info, _) = self
            .server
            .send(CreateRouterRequest(options))
            .await
            .map_err(mailbox("server"))??;
        Ok(info)
    }

    /// Closes a router and everything in it (on every worker the room spans).
    pub async fn close_router(&self, id: RouterId) -> Result<()> {
        let home = self.router(id)?;
        match self.group(id) {
            Ok(group) => group.close(CloseReason::Requested).await,
            Err(_) => home
                .send(crate::router::CloseRouter(CloseReason::Requested))
                .await
                .map_err(mailbox("router")),
        }
    }

    /// A router's RTP capabilities.
    pub async fn router_capabilities(&self, id: RouterId) -> Result<RtpCapabilities> {
        self.router(id)?
            .send(GetCapabilities)
            .await
            .map_err(mailbox("router"))
    }

    /// A router's tree of transports, producers and consumers. For a room that spans
    /// workers, the lists hold the objects of all its routers (each with its `worker`), and
    /// `routers` lists the routers with their pipes.
    pub async fn dump_router(&self, id: RouterId) -> Result<report::RouterDump> {
        let dump = Self::ask(self.router(id)?, DumpRouter, "router").await?;
        match self.group(id) {
            Ok(group) => Ok(group.merge_dump(dump).await),
            Err(_) => Ok(dump),
        }
    }

    /// A router's forwarding counters. `routers` holds each router of the room (one per
    /// worker it spans) with its own counts and counters.
    pub async fn router_stats(&self, id: RouterId) -> Result<report::RouterStats> {
        let stats = Self::ask(self.router(id)?, RouterStatsRequest, "router").await?;
        match self.group(id) {
            Ok(group) => Ok(group.merge_stats(stats).await),
            Err(_) => Ok(stats),
        }
    }

    /// Attaches a registered middleware to a room.
    pub async fn attach_middleware(
        &self,
        router: RouterId,
        name: &str,
        options: Value,
    ) -> Result<()> {
        let msg = AttachMiddleware {
            name: name.to_owned(),
            options,
        };
        Self::ask(self.router(router)?, msg, "router").await
    }

    /// Detaches a middleware from a room.
    pub async fn detach_middleware(&self, router: RouterId, name: &str) -> Result<()> {
        Self::ask(
            self.router(router)?,
            DetachMiddleware(name.to_owned()),
            "router",
        )
        .await
    }

    /// Creates a transport of a registered plugin kind in a router.
    pub async fn create_transport(
        &self,
        router: RouterId,
        kind: &str,
        options: Value,
    ) -> Result<TransportInfo> {
        self.create_peer_transport(router, None, kind, options)
            .await
    }

    /// Creates a transport belonging to a peer (closed when the peer leaves).
    ///
    /// When the room's worker is over its load threshold, the transport goes to a router of
    /// the same room on another worker (see `[placement]`); nothing else changes for the
    /// caller.
    pub async fn create_peer_transport(
        &self,
        router: RouterId,
        peer: Option<PeerId>,
        kind: &str,
        options: Value,
    ) -> Result<TransportInfo> {
        let home = self.router(router)?;
        let msg = CreateTransport {
            kind: kind.to_owned(),
            peer: peer.clone(),
            options,
        };
        let Ok(group) = self.group(router) else {
            return Self::ask(home, msg, "router").await;
        };
        let (_, addr) = group.place(&self.shared, kind, peer.as_ref()).await?;
        Self::ask(addr, msg, "router").await
    }

    /// Applies a peer's SDP offer on its send connection (created on first use): each sending
    /// m-line becomes a producer, and with automatic subscription everyone else's receive
    /// connection gets it (announced by `renegotiation_needed`).
    pub async fn publish(
        &self,
        router: RouterId,
        peer: PeerId,
        sdp: String,
    ) -> Result<PublishResult> {
        Self::ask(self.router(router)?, Publish { peer, sdp }, "router").await
    }

    /// The server's SDP offer for a peer's receive connection (created on first use, with
    /// consumers for everything already in the room when subscription is automatic).
    ///
    /// The receive connection is created where [`ServerHandle::create_peer_transport`] would
    /// put a transport: on another worker's router of the room when the room's worker is
    /// loaded.
    pub async fn subscribe_peer(&self, router: RouterId, peer: PeerId) -> Result<SubscribeResult> {
        let addr = match self.group(router) {
            Ok(group) => group.receive_connection_router(&self.shared, &peer).await?,
            Err(_) => self.router(router)?,
        };
        Self::ask(addr, Subscribe { peer }, "router").await
    }

    /// Takes a peer's receive connection over from another server (see
    /// [`crate::session::ResumeReceiver`]): the peer must have joined here, with no
    /// connection yet. The offer is also announced with `renegotiation_needed`.
    pub async fn resume_receiver(
        &self,
        router: RouterId,
        peer: PeerId,
        resume: Value,
        producers: Vec<ProducerId>,
    ) -> Result<SubscribeResult> {
        let addr = match self.group(router) {
            Ok(group) => group.receive_connection_router(&self.shared, &peer).await?,
            Err(_) => self.router(router)?,
        };
        Self::ask(
            addr,
            crate::session::ResumeReceiver {
                peer,
                resume,
                producers,
            },
            "router",
        )
        .await
    }

    /// The router of a room that holds a peer's receive connection.
    fn receiving_router(&self, router: RouterId, peer: &PeerId) -> Result<Addr<RouterActor>> {
        let home = self.router(router)?;
        Ok(self
            .group(router)
            .map(|g| g.receiving_router(peer))
            .unwrap_or(home))
    }

    /// Applies a peer's SDP answer on its receive connection.
    pub async fn answer(&self, router: RouterId, peer: PeerId, sdp: String) -> Result<()> {
        self.answer_on(router, peer, Connection::Recv, sdp).await
    }

    /// Applies a peer's SDP answer to the last offer of one of its connections: the receive
    /// connection, or a send connection moved here (see [`ServerHandle::resume_sender`]).
    pub async fn answer_on(
        &self,
        router: RouterId,
        peer: PeerId,
        connection: Connection,
        sdp: String,
    ) -> Result<()> {
        let addr = match connection {
            Connection::Recv => self.receiving_router(router, &peer)?,
            // Send connections are on the room's home router, as publish makes them.
            Connection::Send => self.router(router)?,
        };
        Self::ask(
            addr,
            Answer {
                peer,
                connection,
                sdp,
            },
            "router",
        )
        .await
    }

    /// Takes a peer's send connection over from another server (see
    /// [`crate::session::ResumeSender`]): the peer must have joined here, with no send
    /// connection yet. The offer is also announced with `renegotiation_needed`.
    pub async fn resume_sender(
        &self,
        router: RouterId,
        peer: PeerId,
        resume: Value,
        tracks: Vec<crate::session::ResumedTrack>,
    ) -> Result<PublishResult> {
        Self::ask(
            self.router(router)?,
            crate::session::ResumeSender {
                peer,
                resume,
                tracks,
            },
            "router",
        )
        .await
    }

    /// Restarts ICE on a peer's receive connection; returns the new offer.
    pub async fn restart_ice(&self, router: RouterId, peer: PeerId) -> Result<SubscribeResult> {
        let addr = self.receiving_router(router, &peer)?;
        Self::ask(addr, RestartIce { peer }, "router").await
    }

    /// Adds a peer to a room.
    pub async fn join_peer(&self, router: RouterId, peer: PeerId) -> Result<()> {
        Self::ask(self.router(router)?, JoinPeer(peer.clone()), "router").await?;
        if let Ok(group) = self.group(router) {
            group.state().peers.insert(peer);
        }
        Ok(())
    }

    /// Whether the room `router` has the peer `peer` on this server (answered from the
    /// room's own record, without asking its router).
    pub fn holds_peer(&self, router: RouterId, peer: &PeerId) -> bool {
        self.group(router)
            .is_ok_and(|g| g.state().peers.contains(peer))
    }

    /// Removes a peer from a room, closing its transports (on every worker the room spans).
    pub async fn leave_peer(&self, router: RouterId, peer: PeerId) -> Result<()> {
        self.leave_peer_for(router, peer, CloseReason::Requested)
            .await
    }

    /// Removes a peer from a room with `reason` (a peer handed over to another node leaves
    /// with [`CloseReason::Moved`]).
    pub async fn leave_peer_because(
        &self,
        router: RouterId,
        peer: PeerId,
        reason: CloseReason,
    ) -> Result<()> {
        self.leave_peer_for(router, peer, reason).await
    }

    async fn leave_peer_for(
        &self,
        router: RouterId,
        peer: PeerId,
        reason: CloseReason,
    ) -> Result<()> {
        let home = self.router(router)?;
        match self.group(router) {
            Ok(group) => group.leave_peer(peer, reason).await,
            Err(_) => Self::ask(home, crate::router::LeavePeer(peer, reason), "router").await,
        }
    }

    /// A plugin-specific transport operation, such as applying a WebRTC offer. Producers the
    /// plugin asks for are created before this returns.
    pub async fn transport_request(
        &self,
        id: TransportId,
        method: &str,
        params: Value,
    ) -> Result<TransportRequestResult> {
        let msg = TransportRequest {
            method: method.to_owned(),
            params,
        };
        Self::ask(self.index.transport(id)?, msg, "transport").await
    }

    /// Gives a transport the remote side's parameters.
    pub async fn connect_transport(&self, id: TransportId, params: Value) -> Result<Value> {
        Self::ask(
            self.index.transport(id)?,
            ConnectTransport(params),
            "transport",
        )
        .await
    }

    /// Closes a transport with its producers and consumers (their copies on the other
    /// workers of a spanning room first).
    pub async fn close_transport(&self, id: TransportId) -> Result<()> {
        self.close_transport_because(id, CloseReason::Requested)
            .await
    }

    /// Closes a transport as [`ServerHandle::close_transport`] does, saying why in its
    /// closure event (its producers' and consumers' say `parent_closed`).
    pub async fn close_transport_because(
        &self,
        id: TransportId,
        reason: CloseReason,
    ) -> Result<()> {
        let transport = self.index.transport(id)?;
        let producers = transport.send(TransportProducers).await.unwrap_or_default();
        if let Some(group) = producers
            .first()
            .and_then(|p| self.index.producer_group(*p))
        {
            group.unpipe(&producers).await;
        }
        Self::ask(transport, CloseTransport(reason), "transport").await
    }

    /// A transport's full state.
    pub async fn dump_transport(&self, id: TransportId) -> Result<report::TransportDump> {
        Self::ask(self.index.transport(id)?, DumpTransport, "transport").await
    }

    /// A transport's statistics.
    pub async fn transport_stats(&self, id: TransportId) -> Result<report::TransportStats> {
        Self::ask(
            self.index.transport(id)?,
            TransportStatsRequest,
            "transport",
        )
        .await
    }

    /// Creates a producer on a transport.
    pub async fn produce(
        &self,
        transport: TransportId,
        options: ProduceOptions,
    ) -> Result<ProducerInfo> {
        Self::ask(
            self.index.transport(transport)?,
            Produce(options),
            "transport",
        )
        .await
    }

    /// Creates a consumer on a transport.
    pub async fn consume(
        &self,
        transport: TransportId,
        options: ConsumeOptions,
    ) -> Result<ConsumerInfo> {
        Self::ask(
            self.index.transport(transport)?,
            Consume(options),
            "transport",
        )
        .await
    }

    /// Pauses or resumes a producer (and its copies on the other workers of its room).
    pub async fn set_producer_paused(&self, id: ProducerId, paused: bool) -> Result<()> {
        Self::ask(
            self.index.producer(id)?,
            SetProducerPaused(paused),
            "producer",
        )
        .await?;
        if let Some(group) = self.index.producer_group(id) {
            group.pause_piped(id, paused);
        }
        Ok(())
    }

    /// Closes a producer and its consumers: first its copies on the other workers of its
    /// room, with their consumers, then the producer itself.
    pub async fn close_producer(&self, id: ProducerId) -> Result<()> {
        let producer = self.index.producer(id)?;
        if let Some(group) = self.index.producer_group(id) {
            group.unpipe(&[id]).await;
        }
        Self::ask(producer, CloseProducer, "producer").await
    }

    /// Asks a producer's sender for a keyframe.
    pub async fn request_producer_keyframe(&self, id: ProducerId) -> Result<()> {
        Self::ask(
            self.index.producer(id)?,
            RequestProducerKeyframe,
            "producer",
        )
        .await
    }

    /// A producer's statistics.
    pub async fn producer_stats(&self, id: ProducerId) -> Result<report::ProducerStats> {
        Self::ask(self.index.producer(id)?, ProducerStatsRequest, "producer").await
    }

    /// A producer's full state.
    pub async fn dump_producer(&self, id: ProducerId) -> Result<report::ProducerDump> {
        Self::ask(self.index.producer(id)?, DumpProducer, "producer").await
    }

    /// Pauses or resumes a consumer.
    pub async fn set_consumer_paused(&self, id: ConsumerId, paused: bool) -> Result<()> {
        Self::ask(
            self.index.consumer(id)?,
            SetConsumerPaused(paused),
            "consumer",
        )
        .await
    }

    /// Closes a consumer.
    pub async fn close_consumer(&self, id: ConsumerId) -> Result<()> {
        Self::ask(self.index.consumer(id)?, CloseConsumer, "consumer").await
    }

    /// Asks the consumer's producer for a keyframe.
    pub async fn request_consumer_keyframe(&self, id: ConsumerId) -> Result<()> {
        Self::ask(
            self.index.consumer(id)?,
            RequestConsumerKeyframe,
            "consumer",
        )
        .await
    }

    /// A consumer's statistics.
    pub async fn consumer_stats(&self, id: ConsumerId) -> Result<report::ConsumerStats> {
        Self::ask(self.index.consumer(id)?, ConsumerStatsRequest, "consumer").await
    }

    /// A consumer's full state.
    pub async fn dump_consumer(&self, id: ConsumerId) -> Result<report::ConsumerDump> {
        Self::ask(self.index.consumer(id)?, DumpConsumer, "consumer").await
    }

    /// Closes every room (each emitting its events with reason `shutdown`), stops the
    /// workers, and waits for the actor system to exit.
    pub fn shutdown(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let done = self.done.lock().ok().and_then(|mut d| d.take());
            // The server stops the actor system as it finishes, which may drop its answer:
            // a closed mailbox means it is done.
            if self.server.connected() {
                match self.server.send(Shutdown).await {
                    Ok(()) | Err(actix::MailboxError::Closed) => {}
                    Err(e) => return Err(mailbox("server")(e)),
                }
            }
            if let Some(done) = done {
                let _ = done.await;
            }
            Ok(())
        })
    }
}
