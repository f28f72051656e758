//! The built-in methods, named `noun.verb`, and their parameter types.
//!
//! Every parameter struct rejects unknown fields, so a misspelt option is an
//! `invalid_params` error naming it rather than a setting silently ignored. The structs are
//! public and serializable so the Rust client builds its requests from the same
//! definitions the server reads them with.
//!
//! To add a method: write `async fn name(ctx: Ctx, p: Params) -> Result<Output, RpcError>`
//! and add one line to [`register`]. Document it in `docs/rpc.md`.

use super::dispatch::{Ctx, MethodTable};
use serde_json::Value;
use switchboard_actors::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, RouterInfo, RouterOptions,
    TransportInfo,
};
/// The parameter and result types, defined in the client crate so that the client builds its
/// requests from the same definitions the server reads them with.
pub use switchboard_client::protocol::*;
use switchboard_core::PeerId;
use switchboard_core::negotiation;
use switchboard_core::report;
use switchboard_core::rtp_parameters::RtpCapabilities;

impl MethodTable {
    /// The built-in methods ([`register`]).
    pub fn builtin() -> Self {
        let mut table = Self::new();
        register(&mut table);
        table
    }
}

/// Registers every built-in method.
pub fn register(t: &mut MethodTable) {
    t.add("auth", auth)
        .add("server.info", server_info)
        .add("server.stats", server_stats)
        .add("server.drain", server_drain)
        .add("worker.list", worker_list)
        .add("router.create", router_create)
        .add("router.close", router_close)
        .add("router.list", router_list)
        .add("router.dump", router_dump)
        .add("router.stats", router_stats)
        .add("router.capabilities", router_capabilities)
        .add("peer.join", peer_join)
        .add("peer.leave", peer_leave)
        .add("transport.create", transport_create)
        .add("transport.connect", transport_connect)
        .add("transport.close", transport_close)
        .add("transport.dump", transport_dump)
        .add("transport.stats", transport_stats)
        .add("transport.request", transport_request)
        .add("webrtc.publish", webrtc_publish)
        .add("webrtc.subscribe", webrtc_subscribe)
        .add("webrtc.answer", webrtc_answer)
        .add("webrtc.restart_ice", webrtc_restart_ice)
        .add("producer.create", producer_create)
        .add("producer.pause", producer_pause)
        .add("producer.resume", producer_resume)
        .add("producer.close", producer_close)
        .add("producer.stats", producer_stats)
        .add("producer.dump", producer_dump)
        .add("producer.request_keyframe", producer_request_keyframe)
        .add("consumer.create", consumer_create)
        .add("consumer.pause", consumer_pause)
        .add("consumer.resume", consumer_resume)
        .add("consumer.close", consumer_close)
        .add("consumer.stats", consumer_stats)
        .add("consumer.dump", consumer_dump)
        .add("consumer.request_keyframe", consumer_request_keyframe)
        .add("middleware.attach", middleware_attach)
        .add("middleware.detach", middleware_detach)
        .add("events.subscribe", events_subscribe)
        .add("events.unsubscribe", events_unsubscribe)
        .add("cluster.nodes", cluster_nodes)
        .add("cluster.locate", cluster_locate)
        .add("cluster.forward", cluster_forward)
        .add("cluster.pipe", cluster_pipe)
        .add("cluster.pipe_peer", cluster_pipe_peer)
        .add("cluster.span", cluster_span)
        .add("cluster.feeds", cluster_feeds)
        .add("cluster.adopt", cluster_adopt);
}

/// Tells the node that holds one end of a pipe (`cluster.pipe`) which node holds the other,
/// so that it closes its end when that node is lost. Nodes call it (through
/// `cluster.forward`).
async fn cluster_pipe_peer(ctx: Ctx, p: ClusterPipePeerParams) -> Result<(), RpcError> {
    let cluster = cluster(&ctx)?;
    if !ctx.server().holds("transport", &p.transport.to_string()) {
        return Err(switchboard_core::Error::not_found("transport", p.transport).into());
    }
    cluster.record_pipe(p.transport, p.peer);
    if let Some(producer) = p.producer {
        cluster.record_feed(p.transport, producer);
    }
    Ok(())
}

/// Takes over a peer a draining node hands over (see `Cluster::hand_over_peers`).
async fn cluster_adopt(ctx: Ctx, p: ClusterAdoptParams) -> Result<ClusterAdopted, RpcError> {
    let peer = peer_id(&p.peer)?;
    let cluster = cluster(&ctx)?;
    if p.resume.is_none() && p.send.is_none() {
        return Ok(ClusterAdopted {
            transports: cluster.adopt_plain(p.router, peer, p.rtp).await?,
            ..ClusterAdopted::default()
        });
    }
    let recv = p.resume.map(|resume| (resume, p.producers));
    let send = p.send.map(|s| (s.resume, s.tracks));
    let (sent, received) = cluster.adopt(p.router, peer, send, recv).await?;
    Ok(ClusterAdopted {
        transport: received.as_ref().map(|r| r.transport),
        sdp: received.map(|r| r.sdp),
        send: sent.as_ref().map(|s| s.transport),
        producers: sent
            .map(|s| s.producers.iter().map(|(p, _)| p.id).collect())
            .unwrap_or_default(),
        transports: Vec::new(),
    })
}

/// What this node can feed of a track, for another node building a room's fan-out tree.
async fn cluster_feeds(ctx: Ctx, p: ClusterFeedsParams) -> Result<ClusterFeeds, RpcError> {
    let (has, feeds) = cluster(&ctx)?.feeds(p.producer);
    Ok(ClusterFeeds { has, feeds })
}

/// Pipes a producer into a router, wherever each is in the cluster (see
/// [`crate::cluster::Cluster::pipe`]).
async fn cluster_pipe(ctx: Ctx, p: ClusterPipeParams) -> Result<ClusterPipeResult, RpcError> {
    let ends = crate::cluster::Ends {
        source: None,
        destination: p.router_node.as_deref(),
    };
    cluster(&ctx)?.pipe(p.producer, p.router, ends).await
}

/// Opens a router of a room on this node (or the one `node` names), with the room's id and
/// settings, its other nodes' published tracks piped in: how a room comes to span nodes.
async fn cluster_span(ctx: Ctx, p: ClusterSpanParams) -> Result<ClusterSpanResult, RpcError> {
    let (node, opened) = cluster(&ctx)?
        .span_room(p.router, p.node.as_deref())
        .await?;
    Ok(ClusterSpanResult {
        router: p.router,
        node,
        opened,
    })
}

/// A request another node forwarded here because this node owns its object: run here, never
/// forwarded again, answered unchanged.
async fn cluster_forward(ctx: Ctx, p: ClusterForwardParams) -> Result<Value, RpcError> {
    cluster(&ctx)?;
    if p.method == "auth"
        || (p.method.starts_with("cluster.")
            && p.method != "cluster.pipe_peer"
            && p.method != "cluster.span"
            && p.method != "cluster.feeds"
            && p.method != "cluster.adopt")
        || p.method.starts_with("events.")
    {
        return Err(RpcError::invalid_param(
            "method",
            format!("{:?} cannot be forwarded", p.method),
        ));
    }
    ctx.rpc.methods.call_here(&ctx, &p.method, p.params).await
}

/// The membership, or `cluster_unavailable` for a node that runs alone.
fn cluster(ctx: &Ctx) -> Result<&crate::cluster::Cluster, RpcError> {
    ctx.cluster().ok_or_else(|| {
        RpcError::new(
            switchboard_core::ErrorCode::ClusterUnavailable,
            "this node is not part of a cluster (no [cluster] redis_url)",
        )
    })
}

async fn cluster_nodes(ctx: Ctx, _: NoParams) -> Result<ClusterNodes, RpcError> {
    let cluster = cluster(&ctx)?;
    Ok(ClusterNodes {
        node: cluster.node_id().to_owned(),
        nodes: cluster.nodes().await?,
    })
}

async fn cluster_locate(ctx: Ctx, p: ClusterLocateParams) -> Result<Located, RpcError> {
    Ok(cluster(&ctx)?.locate(p.router, p.producer).await?)
}

fn peer_id(text: &str) -> Result<PeerId, RpcError> {
    PeerId::parse(text).ok_or_else(|| {
        RpcError::invalid_param(
            "peer",
            format!(
                "must be 1 to {} bytes without control characters",
                PeerId::MAX_LEN
            ),
        )
    })
}

fn workers(ctx: &Ctx) -> Vec<WorkerSummary> {
    ctx.server()
        .workers()
        .into_iter()
        .map(|w| WorkerSummary {
            id: w.id,
            routers: w.routers,
            transports: w.transports,
            producers: w.producers,
            consumers: w.consumers,
            packets_in: w.packets_in,
            packets_out: w.packets_out,
            bytes_in: w.bytes_in,
            bytes_out: w.bytes_out,
            load_score: w.score,
            packets_per_second: w.packets_per_second,
            cpu_percent: w.cpu_percent,
            load_percent: w.load_percent,
        })
        .collect()
}

async fn auth(ctx: Ctx, p: AuthParams) -> Result<(), RpcError> {
    // Connections run `auth` before dispatching (see the connection module); this entry
    // gives it a place in the table and the same check for callers of the table.
    let params = rmpv::Value::Map(vec![("token".into(), p.token.into())]);
    super::auth::check_token(&ctx.config().token, params)
}

async fn server_info(ctx: Ctx, _: NoParams) -> Result<ServerInfo, RpcError> {
    let server = ctx.server();
    let config = ctx.config();
    Ok(ServerInfo {
        name: "switchboard".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        workers: server.workers().len(),
        transports: server
            .transport_kinds()
            .into_iter()
            .map(Into::into)
            .collect(),
        middleware: server
            .middleware_names()
            .into_iter()
            .map(Into::into)
            .collect(),
        methods: ctx.method_names().into_iter().map(Into::into).collect(),
        rtp_capabilities: negotiation::supported_capabilities(),
        limits: server.config().limits.clone(),
        rpc: RpcLimits {
            max_frame_bytes: config.max_frame_bytes,
            max_connections: config.max_connections,
            request_timeout_ms: config.request_timeout_ms,
            auth_required: !config.token.is_empty(),
            auth_timeout_ms: config.auth_timeout_ms,
            idle_timeout_ms: config.idle_timeout_ms,
            max_message_values: config.max_message_values,
        },
    })
}

async fn server_drain(ctx: Ctx, _: NoParams) -> Result<DrainStatus, RpcError> {
    let was = ctx
        .rpc
        .draining
        .swap(true, std::sync::atomic::Ordering::Relaxed);
    if !was {
        tracing::info!("draining: no new rooms on this node");
        if let Some(cluster) = ctx.cluster() {
            cluster.hand_over_peers();
        }
    }
    Ok(DrainStatus {
        draining: true,
        rooms: ctx.server().routers().len(),
    })
}

async fn server_stats(ctx: Ctx, _: NoParams) -> Result<ServerStats, RpcError> {
    Ok(ServerStats {
        rooms: ctx.server().routers().len(),
        workers: workers(&ctx),
        events_dropped: ctx.server().dropped_events(),
        rpc: ctx.rpc_stats(),
    })
}

async fn worker_list(ctx: Ctx, _: NoParams) -> Result<WorkerList, RpcError> {
    Ok(WorkerList {
        workers: workers(&ctx),
    })
}

async fn router_create(ctx: Ctx, p: RouterOptions) -> Result<RouterInfo, RpcError> {
    let info = ctx.server().create_router(p).await?;
    if let Some(cluster) = ctx.cluster() {
        cluster.record_router_now(info.id).await;
    }
    Ok(info)
}

async fn router_close(ctx: Ctx, p: RouterParams) -> Result<(), RpcError> {
    Ok(ctx.server().close_router(p.router).await?)
}

async fn router_list(ctx: Ctx, _: NoParams) -> Result<RouterList, RpcError> {
    let mut routers: Vec<RouterSummary> = ctx
        .server()
        .routers()
        .into_iter()
        .map(|(id, worker)| RouterSummary { id, worker })
        .collect();
    routers.sort_by_key(|r| r.id);
    Ok(RouterList { routers })
}

async fn router_dump(ctx: Ctx, p: RouterParams) -> Result<report::RouterDump, RpcError> {
    Ok(ctx.server().dump_router(p.router).await?)
}

async fn router_stats(ctx: Ctx, p: RouterParams) -> Result<report::RouterStats, RpcError> {
    Ok(ctx.server().router_stats(p.router).await?)
}

async fn router_capabilities(ctx: Ctx, p: RouterParams) -> Result<RtpCapabilities, RpcError> {
    Ok(ctx.server().router_capabilities(p.router).await?)
}

async fn peer_join(ctx: Ctx, p: PeerParams) -> Result<(), RpcError> {
    let peer = peer_id(&p.peer)?;
    ctx.server().join_peer(p.router, peer.clone()).await?;
    if let Some(cluster) = ctx.cluster() {
        cluster.record_peer_now(p.router, &peer).await;
    }
    Ok(())
}

async fn peer_leave(ctx: Ctx, p: PeerParams) -> Result<(), RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().leave_peer(p.router, peer).await?)
}

async fn transport_create(ctx: Ctx, p: TransportCreateParams) -> Result<TransportInfo, RpcError> {
    let peer = p.peer.as_deref().map(peer_id).transpose()?;
    Ok(ctx
        .server()
        .create_peer_transport(p.router, peer, &p.kind, p.options)
        .await?)
}

async fn transport_connect(ctx: Ctx, p: TransportConnectParams) -> Result<Value, RpcError> {
    Ok(ctx
        .server()
        .connect_transport(p.transport, p.remote)
        .await?)
}

async fn transport_close(ctx: Ctx, p: TransportParams) -> Result<(), RpcError> {
    Ok(ctx.server().close_transport(p.transport).await?)
}

async fn transport_dump(ctx: Ctx, p: TransportParams) -> Result<report::TransportDump, RpcError> {
    Ok(ctx.server().dump_transport(p.transport).await?)
}

async fn transport_stats(ctx: Ctx, p: TransportParams) -> Result<report::TransportStats, RpcError> {
    Ok(ctx.server().transport_stats(p.transport).await?)
}

async fn producer_create(ctx: Ctx, p: ProducerCreateParams) -> Result<ProducerInfo, RpcError> {
    let options = ProduceOptions {
        kind: p.kind,
        rtp_parameters: p.rtp_parameters,
        paused: p.paused,
    };
    Ok(ctx.server().produce(p.transport, options).await?)
}

async fn producer_pause(ctx: Ctx, p: ProducerParams) -> Result<(), RpcError> {
    Ok(ctx.server().set_producer_paused(p.producer, true).await?)
}

async fn producer_resume(ctx: Ctx, p: ProducerParams) -> Result<(), RpcError> {
    Ok(ctx.server().set_producer_paused(p.producer, false).await?)
}

async fn producer_close(ctx: Ctx, p: ProducerParams) -> Result<(), RpcError> {
    Ok(ctx.server().close_producer(p.producer).await?)
}

async fn producer_stats(ctx: Ctx, p: ProducerParams) -> Result<report::ProducerStats, RpcError> {
    Ok(ctx.server().producer_stats(p.producer).await?)
}

async fn producer_dump(ctx: Ctx, p: ProducerParams) -> Result<report::ProducerDump, RpcError> {
    Ok(ctx
        .server()
        .dump_producer(here_or_copy(&ctx, p.producer))
        .await?)
}

/// The producer itself when this node holds it, else its copy here in a room spanning nodes
/// (what consuming or describing it here means), else the id as given.
fn here_or_copy(ctx: &Ctx, producer: switchboard_core::ProducerId) -> switchboard_core::ProducerId {
    ctx.cluster()
        .filter(|_| !ctx.server().holds("producer", &producer.to_string()))
        .and_then(|c| c.local_copy(producer))
        .unwrap_or(producer)
}

async fn producer_request_keyframe(ctx: Ctx, p: ProducerParams) -> Result<(), RpcError> {
    Ok(ctx.server().request_producer_keyframe(p.producer).await?)
}

async fn consumer_create(ctx: Ctx, p: ConsumerCreateParams) -> Result<ConsumerInfo, RpcError> {
    // In a room spanning nodes, another node's track is consumed from its copy here.
    let producer = here_or_copy(&ctx, p.producer);
    let options = ConsumeOptions {
        producer,
        rtp_capabilities: p.rtp_capabilities,
        paused: p.paused,
    };
    Ok(ctx.server().consume(p.transport, options).await?)
}

async fn consumer_pause(ctx: Ctx, p: ConsumerParams) -> Result<(), RpcError> {
    Ok(ctx.server().set_consumer_paused(p.consumer, true).await?)
}

async fn consumer_resume(ctx: Ctx, p: ConsumerParams) -> Result<(), RpcError> {
    Ok(ctx.server().set_consumer_paused(p.consumer, false).await?)
}

async fn consumer_close(ctx: Ctx, p: ConsumerParams) -> Result<(), RpcError> {
    Ok(ctx.server().close_consumer(p.consumer).await?)
}

async fn consumer_stats(ctx: Ctx, p: ConsumerParams) -> Result<report::ConsumerStats, RpcError> {
    Ok(ctx.server().consumer_stats(p.consumer).await?)
}

async fn consumer_dump(ctx: Ctx, p: ConsumerParams) -> Result<report::ConsumerDump, RpcError> {
    Ok(ctx.server().dump_consumer(p.consumer).await?)
}

async fn consumer_request_keyframe(ctx: Ctx, p: ConsumerParams) -> Result<(), RpcError> {
    Ok(ctx.server().request_consumer_keyframe(p.consumer).await?)
}

async fn middleware_attach(ctx: Ctx, p: MiddlewareAttachParams) -> Result<(), RpcError> {
    Ok(ctx
        .server()
        .attach_middleware(p.router, &p.name, p.options)
        .await?)
}

async fn middleware_detach(ctx: Ctx, p: MiddlewareDetachParams) -> Result<(), RpcError> {
    Ok(ctx.server().detach_middleware(p.router, &p.name).await?)
}

async fn events_subscribe(ctx: Ctx, p: EventsParams) -> Result<Subscriptions, RpcError> {
    if let Some(router) = p.router
        && !ctx.server().holds("router", &router.to_string())
    {
        // In a cluster, a room on another node: its events arrive through Redis.
        let elsewhere = match ctx.cluster() {
            Some(c) => c
                .owner_elsewhere(&serde_json::json!({ "router": router }))
                .await?
                .is_some(),
            None => false,
        };
        if !elsewhere {
            return Err(switchboard_core::Error::not_found("router", router).into());
        }
    }
    ctx.conn.subscribe(&ctx, p.router)
}

async fn events_unsubscribe(ctx: Ctx, p: EventsParams) -> Result<Subscriptions, RpcError> {
    Ok(ctx.conn.unsubscribe(p.router))
}

async fn transport_request(
    ctx: Ctx,
    p: TransportRequestParams,
) -> Result<switchboard_actors::TransportRequestResult, RpcError> {
    Ok(ctx
        .server()
        .transport_request(p.transport, &p.method, p.params)
        .await?)
}

async fn webrtc_publish(ctx: Ctx, p: WebRtcOfferParams) -> Result<WebRtcPublishResult, RpcError> {
    let peer = peer_id(&p.peer)?;
    let r = ctx.server().publish(p.router, peer, p.sdp).await?;
    let text = |v: &Value, k: &str| v[k].as_str().map(str::to_owned);
    Ok(WebRtcPublishResult {
        transport: r.transport,
        sdp: r.sdp,
        producers: r
            .producers
            .iter()
            .map(|(info, app)| PublishedTrack {
                id: info.id,
                kind: info.kind,
                mid: text(app, "mid"),
                stream_id: text(app, "stream_id"),
                track_id: text(app, "track_id"),
            })
            .collect(),
        closed_producers: r.closed_producers,
    })
}

async fn webrtc_subscribe(
    ctx: Ctx,
    p: PeerParams,
) -> Result<switchboard_actors::session::SubscribeResult, RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().subscribe_peer(p.router, peer).await?)
}

async fn webrtc_answer(ctx: Ctx, p: WebRtcAnswerParams) -> Result<(), RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx
        .server()
        .answer_on(p.router, peer, p.connection, p.sdp)
        .await?)
}

async fn webrtc_restart_ice(
    ctx: Ctx,
    p: PeerParams,
) -> Result<switchboard_actors::session::SubscribeResult, RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().restart_ice(p.router, peer).await?)
}
