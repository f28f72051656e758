//! The Transport actor: owns one plugin transport, creates its producers and consumers.

use crate::api::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, TransportRequestResult,
};
use crate::consumer::ConsumerActor;
use crate::producer::ProducerActor;
use crate::room::{ConsumerNode, PluginRef, ProducerNode, RoomRef, Stop, close_plugin};
use crate::supervision::{CrashGuard, contain};
use actix::{Actor, ActorContext, Context, Handler, Message};
use serde_json::{Value, json};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::forward::{
    ConsumerSetup, KeyframeCodec, KeyframeRequestKind, MidMatch, ProducerCodec, ProducerSetup,
};
use switchboard_core::negotiation::{self, MatchMode, RtpMapping, codecs_match};
use switchboard_core::rtp_parameters::{MediaKind, RtpParameters, extension_uri};
use switchboard_core::{ConsumerId, Error, ProducerId, Result, RouterId, TransportId};

/// Lifecycle of one transport: it owns the plugin instance, which does the I/O.
pub struct TransportActor {
    pub(crate) id: TransportId,
    pub(crate) router: RouterId,
    pub(crate) kind: String,
    pub(crate) room: RoomRef,
    pub(crate) plugin: PluginRef,
    pub(crate) guard: CrashGuard,
}

impl TransportActor {
    pub(crate) fn new(
        id: TransportId,
        router: RouterId,
        kind: String,
        room: RoomRef,
        plugin: PluginRef,
    ) -> Self {
        let weak = Rc::downgrade(&room);
        Self {
            id,
            router,
            kind,
            room,
            plugin,
            guard: CrashGuard::new(move |message| {
                if let Some(room) = weak.upgrade()
                    && let Ok(mut r) = room.try_borrow_mut()
                {
                    r.close_transport(id, CloseReason::Crashed { message });
                }
            }),
        }
    }

    /// Runs `f` on the plugin transport; a panic closes the transport as crashed.
    fn with_plugin<T>(
        &mut self,
        f: impl FnOnce(&mut dyn switchboard_core::transport::Transport) -> T,
    ) -> Result<T> {
        let result = {
            let Ok(mut guard) = self.plugin.try_borrow_mut() else {
                return Err(Error::internal("transport plugin is busy"));
            };
            let Some(t) = guard.as_mut() else {
                return Err(Error::closed(format!("transport {}", self.id)));
            };
            contain(|| f(t.as_mut()))
        };
        match result {
            Ok(v) => Ok(v),
            Err(message) => {
                tracing::error!(transport = %self.id, %message, "transport plugin panicked");
                self.room.borrow_mut().close_transport(
                    self.id,
                    CloseReason::Crashed {
                        message: message.clone(),
                    },
                );
                Err(Error::internal(format!("transport crashed: {message}")))
            }
        }
    }
}

impl Actor for TransportActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.guard.disarm();
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

/// Tells the plugin that one of its producers or consumers closed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum ChildClosed {
    Producer(ProducerId),
    Consumer(ConsumerId),
}

impl Handler<ChildClosed> for TransportActor {
    type Result = ();
    fn handle(&mut self, msg: ChildClosed, _: &mut Self::Context) {
        if self.plugin.borrow().is_none() {
            return;
        }
        let _ = self.with_plugin(|t| match msg {
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
        self.with_plugin(|t| t.connect(&msg.0))?
    }
}

/// Closes the transport, its producers and consumers.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseTransport;

impl Handler<CloseTransport> for TransportActor {
    type Result = Result<()>;
    fn handle(&mut self, _: CloseTransport, _: &mut Self::Context) -> Result<()> {
        self.room
            .borrow_mut()
            .close_transport(self.id, CloseReason::Requested);
        Ok(())
    }
}

/// Transport statistics.
#[derive(Message)]
#[rtype(result = "Result<Value>")]
pub struct TransportStatsRequest;

impl Handler<TransportStatsRequest> for TransportActor {
    type Result = Result<Value>;
    fn handle(&mut self, _: TransportStatsRequest, _: &mut Self::Context) -> Result<Value> {
        let plugin = self.with_plugin(|t| t.stats())?;
        Ok(json!({ "type": "transport", "id": self.id, "kind": self.kind, "plugin": plugin }))
    }
}

/// The transport's full state.
#[derive(Message)]
#[rtype(result = "Result<Value>")]
pub struct DumpTransport;

impl Handler<DumpTransport> for TransportActor {
    type Result = Result<Value>;
    fn handle(&mut self, _: DumpTransport, _: &mut Self::Context) -> Result<Value> {
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
        Ok(json!({
            "id": self.id,
            "router": self.router,
            "kind": self.kind,
            "producers": producers,
            "consumers": consumers,
            "plugin": plugin,
        }))
    }
}

/// Creates a producer on this transport.
#[derive(Message)]
#[rtype(result = "Result<ProducerInfo>")]
pub struct Produce(pub ProduceOptions);

impl Handler<Produce> for TransportActor {
    type Result = Result<ProducerInfo>;
    fn handle(&mut self, msg: Produce, _: &mut Self::Context) -> Result<ProducerInfo> {
        let info = self.create_producer(msg.0.kind, &msg.0.rtp_parameters, msg.0.paused)?;
        let params = msg.0.rtp_parameters;
        self.with_plugin(|t| t.producer_added(info.id, info.kind, &params))?;
        Ok(info)
    }
}

impl TransportActor {
    /// Registers a producer with the room (forwarder, index, events); the caller tells the
    /// plugin.
    fn create_producer(
        &mut self,
        kind: MediaKind,
        rtp_parameters: &RtpParameters,
        paused: bool,
    ) -> Result<ProducerInfo> {
        let id = ProducerId::new();
        let room = self.room.clone();
        let mut r = room.borrow_mut();
        let max = r.shared.config.limits.max_producers_per_transport;
        if r.producers
            .values()
            .filter(|p| p.transport == self.id)
            .count()
            >= max
        {
            return Err(Error::limit("producers per transport", max));
        }
        let mapping = negotiation::producer_mapping(&r.capabilities, rtp_parameters)?;
        let consumable =
            negotiation::consumable_parameters(rtp_parameters, &r.capabilities, &mapping);
        let setup = producer_setup(id, self.id, kind, rtp_parameters, paused)?;
        let sink = r
            .transports
            .get(&self.id)
            .map(|t| t.sink.clone())
            .ok_or_else(|| Error::closed(format!("transport {}", self.id)))?;
        r.forwarder.add_producer(setup, sink)?;
        let addr = ProducerActor::new(id, room.clone()).start();
        r.shared.index.producers.insert(id, (r.id, addr.clone()));
        r.shared
            .load(r.worker)
            .producers
            .fetch_add(1, Ordering::Relaxed);
        r.producers.insert(
            id,
            ProducerNode {
                transport: self.id,
                kind,
                rtp_parameters: rtp_parameters.clone(),
                consumable: consumable.clone(),
                mapping,
                paused,
                addr,
            },
        );
        let router = r.id;
        r.emit(Event::ProducerCreated {
            router,
            transport: self.id,
            producer: id,
            kind,
        });
        Ok(ProducerInfo {
            id,
            kind,
            consumable_rtp_parameters: consumable,
        })
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
        let outcome = self.with_plugin(|t| t.request(&msg.method, &msg.params))??;
        for id in &outcome.closed_producers {
            self.room
                .borrow_mut()
                .close_producer(*id, CloseReason::Requested);
        }
        let mut producers = Vec::with_capacity(outcome.new_producers.len());
        for request in outcome.new_producers {
            let info = self.create_producer(request.kind, &request.rtp_parameters, false)?;
            let params = request.rtp_parameters;
            self.with_plugin(|t| t.producer_added(info.id, info.kind, &params))?;
            producers.push((info, request.app_data));
        }
        Ok(TransportRequestResult {
            response: outcome.response,
            producers,
            closed_producers: outcome.closed_producers,
        })
    }
}

/// Creates a consumer on this transport.
#[derive(Message)]
#[rtype(result = "Result<ConsumerInfo>")]
pub struct Consume(pub ConsumeOptions);

impl Handler<Consume> for TransportActor {
    type Result = Result<ConsumerInfo>;
    fn handle(&mut self, msg: Consume, _: &mut Self::Context) -> Result<ConsumerInfo> {
        let ConsumeOptions {
            producer,
            rtp_capabilities,
            paused,
        } = msg.0;
        let id = ConsumerId::new();
        let room = self.room.clone();
        let mut r = room.borrow_mut();
        let max = r.shared.config.limits.max_consumers_per_transport;
        if r.consumers
            .values()
            .filter(|c| c.transport == self.id)
            .count()
            >= max
        {
            return Err(Error::limit("consumers per transport", max));
        }
        let p = r
            .producers
            .get(&producer)
            .ok_or_else(|| Error::not_found("producer", producer))?
            .clone();
        let params = negotiation::consumer_parameters(&p.consumable, &rtp_capabilities, false)?;
        let setup = consumer_setup(id, self.id, producer, &p, &params, paused)?;
        let sink = r
            .transports
            .get(&self.id)
            .map(|t| t.sink.clone())
            .ok_or_else(|| Error::closed(format!("transport {}", self.id)))?;
        r.forwarder.add_consumer(setup, sink, Instant::now())?;
        let addr = ConsumerActor::new(id, room.clone()).start();
        r.shared.index.consumers.insert(id, (r.id, addr.clone()));
        r.shared
            .load(r.worker)
            .consumers
            .fetch_add(1, Ordering::Relaxed);
        r.consumers.insert(
            id,
            ConsumerNode {
                transport: self.id,
                producer,
                kind: p.kind,
                rtp_parameters: params.clone(),
                paused,
                addr,
            },
        );
        let router = r.id;
        r.emit(Event::ConsumerCreated {
            router,
            transport: self.id,
            consumer: id,
            producer,
            kind: p.kind,
        });
        drop(r);
        self.with_plugin(|t| t.consumer_added(id, p.kind, &params))?;
        Ok(ConsumerInfo {
            id,
            producer,
            kind: p.kind,
            rtp_parameters: params,
            paused,
        })
    }
}

/// What the forwarder needs to accept a producer with these parameters.
fn producer_setup(
    id: ProducerId,
    transport: TransportId,
    kind: MediaKind,
    params: &RtpParameters,
    paused: bool,
) -> Result<ProducerSetup> {
    let encoding = params
        .encodings
        .first()
        .ok_or_else(|| Error::invalid("rtp_parameters.encodings must not be empty"))?;
    let codecs: Vec<ProducerCodec> = params
        .codecs
        .iter()
        .filter(|c| !c.is_rtx())
        .map(|c| ProducerCodec {
            payload_type: c.payload_type,
            clock_rate: c.clock_rate,
            keyframes: KeyframeCodec::from_mime(&c.mime_type),
        })
        .collect();
    let rtx_payload_types = params
        .codecs
        .iter()
        .filter_map(|c| Some((c.payload_type, c.apt()?)).filter(|_| c.is_rtx()))
        .collect();
    let mid = params.mid.as_ref().and_then(|mid| {
        Some(MidMatch {
            extension_id: params.extension_id(extension_uri::MID)?,
            mid: mid.clone(),
        })
    });
    if encoding.ssrc.is_none() && mid.is_none() {
        return Err(Error::invalid(
            "a producer needs an SSRC in rtp_parameters.encodings[0] or a mid with the mid header extension",
        ));
    }
    let keyframe_request = match (kind, params.media_codec()) {
        (MediaKind::Audio, _) => KeyframeRequestKind::None,
        (MediaKind::Video, Some(c))
            if !c.has_feedback("nack", "pli") && c.has_feedback("ccm", "fir") =>
        {
            KeyframeRequestKind::Fir
        }
        (MediaKind::Video, _) => KeyframeRequestKind::Pli,
    };
    Ok(ProducerSetup {
        id,
        transport,
        ssrc: encoding.ssrc,
        rtx_ssrc: encoding.rtx.map(|r| r.ssrc),
        codecs,
        rtx_payload_types,
        mid,
        keyframe_request,
        paused,
    })
}

/// What the forwarder needs to feed a consumer: the producer's payload types and extension
/// ids mapped onto the consumer's, through the router's numbering.
fn consumer_setup(
    id: ConsumerId,
    transport: TransportId,
    producer: ProducerId,
    p: &ProducerNode,
    params: &RtpParameters,
    paused: bool,
) -> Result<ConsumerSetup> {
    let encoding = params
        .encodings
        .first()
        .ok_or_else(|| Error::internal("consumer parameters without an encoding"))?;
    let ssrc = encoding
        .ssrc
        .ok_or_else(|| Error::internal("consumer parameters without an SSRC"))?;
    let payload_types = map_payload_types(&p.mapping, &p.consumable, params);
    if payload_types.is_empty() {
        return Err(Error::unsupported_codec(
            "no codec of the producer can be sent to this consumer",
        ));
    }
    let rtx = encoding.rtx.and_then(|rtx| {
        let media_pt = params.media_codec()?.payload_type;
        Some((rtx.ssrc, params.rtx_codec_for(media_pt)?.payload_type))
    });
    let extensions = p
        .rtp_parameters
        .header_extensions
        .iter()
        .filter_map(|e| Some((e.id, params.extension_id(&e.uri)?)))
        .collect();
    Ok(ConsumerSetup {
        id,
        producer,
        transport,
        ssrc,
        rtx,
        payload_types,
        extensions,
        paused,
    })
}

/// `(producer payload type, consumer payload type)` for every media codec both sides share.
fn map_payload_types(
    mapping: &RtpMapping,
    consumable: &RtpParameters,
    consumer: &RtpParameters,
) -> Vec<(u8, u8)> {
    mapping
        .codecs
        .iter()
        .filter_map(|m| {
            let router_codec = consumable
                .codecs
                .iter()
                .find(|c| c.payload_type == m.router_pt && !c.is_rtx())?;
            let consumer_codec = consumer
                .codecs
                .iter()
                .find(|c| !c.is_rtx() && codecs_match(*c, router_codec, MatchMode::Strict))?;
            Some((m.producer_pt, consumer_codec.payload_type))
        })
        .collect()
}
