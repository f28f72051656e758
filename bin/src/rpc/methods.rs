//! The built-in methods, named `noun.verb`, and their parameter types.
//!
//! Every parameter struct rejects unknown fields, so a misspelt option is an
//! `invalid_params` error naming it rather than a setting silently ignored. The structs are
//! public and serializable so the Rust client builds its requests from the same
//! definitions the server reads them with.
//!
//! To add a method: write `async fn name(ctx: Ctx, p: Params) -> Result<Output, RpcError>`
//! and add one line to [`register`]. Document it in `docs/rpc.md`.

use super::connection::Subscriptions;
use super::dispatch::{Ctx, MethodTable};
use super::{RpcError, RpcStats};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_actors::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, RouterInfo, RouterOptions,
    TransportInfo,
};
use switchboard_core::config::LimitsConfig;
use switchboard_core::negotiation;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};

/// Registers every built-in method.
pub fn register(t: &mut MethodTable) {
    t.add("auth", auth)
        .add("server.info", server_info)
        .add("server.stats", server_stats)
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
        .add("events.unsubscribe", events_unsubscribe);
}

fn empty_map() -> Value {
    json!({})
}

/// No parameters: an empty map (or nil, or an empty array).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `auth`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// The shared secret, `rpc.token`.
    pub token: String,
}

/// A method that names a router.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterParams {
    /// The router (room).
    pub router: RouterId,
}

/// `peer.join`, `peer.leave`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerParams {
    /// The room.
    pub router: RouterId,
    /// The backend's id for the participant: 1 to 128 bytes, no control characters.
    pub peer: String,
}

/// `transport.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportCreateParams {
    /// The room.
    pub router: RouterId,
    /// The transport plugin, such as `direct`.
    pub kind: String,
    /// The peer it belongs to (closed when the peer leaves); the peer must have joined.
    #[serde(default)]
    pub peer: Option<String>,
    /// Plugin-specific options.
    #[serde(default = "empty_map")]
    pub options: Value,
}

/// `transport.connect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConnectParams {
    /// The transport.
    pub transport: TransportId,
    /// The remote side's plugin-specific parameters (addresses, DTLS fingerprints, ...).
    #[serde(default = "empty_map")]
    pub remote: Value,
}

/// A method that names a transport.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportParams {
    /// The transport.
    pub transport: TransportId,
}

/// `producer.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerCreateParams {
    /// The transport the media arrives on.
    pub transport: TransportId,
    /// `audio` or `video`.
    pub kind: MediaKind,
    /// What the sender sends: payload types, header-extension ids, SSRCs.
    pub rtp_parameters: RtpParameters,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A method that names a producer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerParams {
    /// The producer.
    pub producer: ProducerId,
}

/// `consumer.create`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerCreateParams {
    /// The transport the media leaves on.
    pub transport: TransportId,
    /// The producer to consume.
    pub producer: ProducerId,
    /// What the receiver can receive.
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
}

/// A method that names a consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerParams {
    /// The consumer.
    pub consumer: ConsumerId,
}

/// `middleware.attach`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareAttachParams {
    /// The room.
    pub router: RouterId,
    /// The registered middleware name.
    pub name: String,
    /// Middleware-specific options.
    #[serde(default = "empty_map")]
    pub options: Value,
}

/// `middleware.detach`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareDetachParams {
    /// The room.
    pub router: RouterId,
    /// The attached middleware's name.
    pub name: String,
}

/// `events.subscribe`, `events.unsubscribe`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// One room; without it, everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterId>,
}

/// `server.info`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    /// Always `switchboard`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Worker threads.
    pub workers: usize,
    /// Registered transport plugin kinds.
    pub transports: Vec<String>,
    /// Registered middleware names.
    pub middleware: Vec<String>,
    /// Every RPC method, sorted.
    pub methods: Vec<String>,
    /// Every codec and header extension the server can route.
    pub rtp_capabilities: RtpCapabilities,
    /// The configured object limits.
    pub limits: LimitsConfig,
    /// The control socket's own limits.
    pub rpc: RpcLimits,
}

/// The control socket's limits, as `server.info` reports them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RpcLimits {
    /// Largest accepted message, in bytes.
    pub max_frame_bytes: usize,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Time a request may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// Whether `auth` must come first.
    pub auth_required: bool,
    /// Time a new connection has to make its first valid request, in milliseconds.
    #[serde(default)]
    pub auth_timeout_ms: u64,
    /// Time an established connection may send nothing, in milliseconds; 0 is no limit.
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// Values one message may hold.
    #[serde(default)]
    pub max_message_values: usize,
}

/// `server.stats`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServerStats {
    /// Rooms open.
    pub rooms: usize,
    /// Each worker's load.
    pub workers: Vec<WorkerSummary>,
    /// Events the server's bus dropped because a subscriber fell behind (all subscribers,
    /// including ones inside the process).
    pub events_dropped: u64,
    /// Control-socket counters.
    pub rpc: RpcStats,
}

/// One worker's load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerSummary {
    /// The worker's number.
    pub id: WorkerId,
    /// Routers on it.
    pub routers: usize,
    /// Transports on it.
    pub transports: usize,
    /// Producers on it.
    pub producers: usize,
    /// Consumers on it.
    pub consumers: usize,
    /// RTP packets received so far.
    pub packets_in: u64,
    /// RTP packets forwarded so far.
    pub packets_out: u64,
    /// RTP payload bytes received so far.
    #[serde(default)]
    pub bytes_in: u64,
    /// RTP payload bytes forwarded so far.
    #[serde(default)]
    pub bytes_out: u64,
    /// Rooms + transports + producers + consumers: breaks ties between equally loaded
    /// workers in placement.
    #[serde(default)]
    pub load_score: usize,
    /// RTP packets handled per second (received plus forwarded), as last sampled.
    #[serde(default)]
    pub packets_per_second: u64,
    /// CPU time of the worker's thread as last sampled, in percent of one core.
    #[serde(default)]
    pub cpu_percent: u64,
    /// Load relative to the `[placement]` thresholds, in percent; 100 or more is loaded.
    #[serde(default)]
    pub load_percent: u64,
}

/// `worker.list`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerList {
    /// Every worker, by number.
    pub workers: Vec<WorkerSummary>,
}

/// One room in `router.list`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterSummary {
    /// The router.
    pub id: RouterId,
    /// Its worker.
    pub worker: WorkerId,
}

/// `router.list`'s result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterList {
    /// Every open room, sorted by id.
    pub routers: Vec<RouterSummary>,
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
    super::connection::check_token(&ctx.config().token, params)
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
    Ok(ctx.server().create_router(p).await?)
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

async fn router_dump(ctx: Ctx, p: RouterParams) -> Result<Value, RpcError> {
    Ok(ctx.server().dump_router(p.router).await?)
}

async fn router_stats(ctx: Ctx, p: RouterParams) -> Result<Value, RpcError> {
    Ok(ctx.server().router_stats(p.router).await?)
}

async fn router_capabilities(ctx: Ctx, p: RouterParams) -> Result<RtpCapabilities, RpcError> {
    Ok(ctx.server().router_capabilities(p.router).await?)
}

async fn peer_join(ctx: Ctx, p: PeerParams) -> Result<(), RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().join_peer(p.router, peer).await?)
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

async fn transport_dump(ctx: Ctx, p: TransportParams) -> Result<Value, RpcError> {
    Ok(ctx.server().dump_transport(p.transport).await?)
}

async fn transport_stats(ctx: Ctx, p: TransportParams) -> Result<Value, RpcError> {
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

async fn producer_stats(ctx: Ctx, p: ProducerParams) -> Result<Value, RpcError> {
    Ok(ctx.server().producer_stats(p.producer).await?)
}

async fn producer_dump(ctx: Ctx, p: ProducerParams) -> Result<Value, RpcError> {
    Ok(ctx.server().dump_producer(p.producer).await?)
}

async fn producer_request_keyframe(ctx: Ctx, p: ProducerParams) -> Result<(), RpcError> {
    Ok(ctx.server().request_producer_keyframe(p.producer).await?)
}

async fn consumer_create(ctx: Ctx, p: ConsumerCreateParams) -> Result<ConsumerInfo, RpcError> {
    let options = ConsumeOptions {
        producer: p.producer,
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

async fn consumer_stats(ctx: Ctx, p: ConsumerParams) -> Result<Value, RpcError> {
    Ok(ctx.server().consumer_stats(p.consumer).await?)
}

async fn consumer_dump(ctx: Ctx, p: ConsumerParams) -> Result<Value, RpcError> {
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
        && !ctx.server().routers().iter().any(|(id, _)| *id == router)
    {
        return Err(switchboard_core::Error::not_found("router", router).into());
    }
    ctx.conn.subscribe(&ctx, p.router)
}

async fn events_unsubscribe(ctx: Ctx, p: EventsParams) -> Result<Subscriptions, RpcError> {
    Ok(ctx.conn.unsubscribe(p.router))
}

/// `transport.request`: a plugin-specific operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportRequestParams {
    /// The transport.
    pub transport: TransportId,
    /// The plugin's operation, e.g. `offer` for `webrtc`.
    pub method: String,
    /// Its parameters.
    #[serde(default = "empty_map")]
    pub params: Value,
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

/// `webrtc.publish`: a peer's SDP offer for its send connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcOfferParams {
    /// The room.
    pub router: RouterId,
    /// The peer.
    pub peer: String,
    /// The SDP.
    pub sdp: String,
}

/// One producer created by `webrtc.publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishedTrack {
    /// The producer.
    pub id: ProducerId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The m-line's mid.
    pub mid: Option<String>,
    /// The MediaStream id (msid) the track belongs to.
    pub stream_id: Option<String>,
    /// The track id (msid).
    pub track_id: Option<String>,
}

/// The result of `webrtc.publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebRtcPublishResult {
    /// The peer's send connection.
    pub transport: TransportId,
    /// The server's SDP answer.
    pub sdp: String,
    /// Producers this offer created.
    pub producers: Vec<PublishedTrack>,
    /// Producers closed because their m-lines stopped sending.
    pub closed_producers: Vec<ProducerId>,
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

async fn webrtc_answer(ctx: Ctx, p: WebRtcOfferParams) -> Result<(), RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().answer(p.router, peer, p.sdp).await?)
}

async fn webrtc_restart_ice(
    ctx: Ctx,
    p: PeerParams,
) -> Result<switchboard_actors::session::SubscribeResult, RpcError> {
    let peer = peer_id(&p.peer)?;
    Ok(ctx.server().restart_ice(p.router, peer).await?)
}
