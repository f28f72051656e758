//! Creating producers and consumers, and running plugin requests. They are plain functions
//! on the shared room, so an actor can chain them (publish, then subscribe everyone else) in
//! one handler, without awaiting other actors.

use super::span::PipedProducer;
use super::{ConsumerNode, Object, ProducerNode, RoomRef, SpanNotice};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_core::api::{ConsumerInfo, ProducerInfo, TransportRequestResult};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::forward::{
    ConsumerSetup, KeyframeCodec, KeyframeRequestKind, MidMatch, ProducerCodec, ProducerSetup,
};
use switchboard_core::negotiation::{self, MatchMode, RtpMapping, codecs_match};
use switchboard_core::panics::contain;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters, extension_uri};
use switchboard_core::transport::{ProducerRequest, SdpSession, Transport};
use switchboard_core::{ConsumerId, Error, ProducerId, Result, TransportId, WorkerId};

/// Runs `f` on a transport's plugin instance, with the room released. A panic closes the
/// transport as crashed.
pub(crate) fn with_plugin<T>(
    room: &RoomRef,
    transport: TransportId,
    f: impl FnOnce(&mut dyn Transport) -> T,
) -> Result<T> {
    let plugin = room
        .borrow()
        .transports
        .get(&transport)
        .map(|t| t.plugin.clone())
        .ok_or_else(|| Error::not_found("transport", transport))?;
    let result = {
        let Ok(mut guard) = plugin.try_borrow_mut() else {
            return Err(Error::internal("transport plugin is busy"));
        };
        let Some(t) = guard.as_mut() else {
            return Err(Error::closed(format!("transport {transport}")));
        };
        contain(|| f(t.as_mut()))
    };
    result.map_err(|message| {
        tracing::error!(%transport, %message, "transport plugin panicked");
        room.borrow_mut().close_transport(
            transport,
            CloseReason::Crashed {
                message: message.clone(),
            },
        );
        Error::internal(format!("transport crashed: {message}"))
    })
}

/// Creates a producer on `transport`: forwarder, index, event, then the plugin is told; then
/// it is piped to the room's other routers, if it has any.
pub(crate) fn create_producer(
    room: &RoomRef,
    transport: TransportId,
    kind: MediaKind,
    rtp_parameters: &RtpParameters,
    paused: bool,
) -> Result<ProducerInfo> {
    let info = create_producer_with(room, transport, kind, rtp_parameters, paused, None)?;
    producer_created(room, info.id);
    Ok(info)
}

/// A producer was created in `room` (not a copy): pipe it to every other router of the room.
pub(crate) fn producer_created(room: &RoomRef, id: ProducerId) {
    let links: Vec<WorkerId> = room.borrow().span.links.keys().copied().collect();
    for to in links {
        pipe_producer(room, to, id);
    }
}

/// Feeds a producer of this router into the pipe to `to`: a pipe consumer here, and the
/// notice that makes its copy there.
pub(crate) fn pipe_producer(room: &RoomRef, to: WorkerId, id: ProducerId) {
    let (link, capabilities, worker, origin_peer, paused) = {
        let r = room.borrow();
        let (Some(link), Some(p)) = (r.span.links.get(&to), r.producers.get(&id)) else {
            return;
        };
        let peer = r.transports.get(&p.transport).and_then(|t| t.peer.clone());
        (*link, r.capabilities.clone(), r.worker, peer, p.paused)
    };
    match create_consumer_with(room, link, id, &capabilities, false, true) {
        Ok(c) => {
            let host = room.borrow().host.clone();
            host.span(SpanNotice::Pipe {
                to,
                producer: PipedProducer {
                    from: worker,
                    id,
                    kind: c.kind,
                    rtp_parameters: c.rtp_parameters,
                    paused,
                    origin_peer,
                },
            });
        }
        Err(e) => tracing::warn!(producer = %id, error = %e, "cannot pipe producer"),
    }
}

/// Creates a producer, or with `copy_of` the piped copy of another router's producer: same
/// id, not indexed (the original is), not limited by the per-transport limit (a pipe carries
/// a whole room).
pub(crate) fn create_producer_with(
    room: &RoomRef,
    transport: TransportId,
    kind: MediaKind,
    rtp_parameters: &RtpParameters,
    paused: bool,
    copy_of: Option<ProducerId>,
) -> Result<ProducerInfo> {
    let id = copy_of.unwrap_or_default();
    let info = {
        let mut r = room.borrow_mut();
        let max = r.config.limits.max_producers_per_transport;
        if copy_of.is_none()
            && r.producers
                .values()
                .filter(|p| p.transport == transport)
                .count()
                >= max
        {
            return Err(Error::limit("producers per transport", max));
        }
        if r.producers.contains_key(&id) {
            return Err(Error::new(
                switchboard_core::ErrorCode::AlreadyExists,
                format!("producer {id} exists"),
            ));
        }
        let mapping = negotiation::producer_mapping(&r.capabilities, rtp_parameters)?;
        let consumable =
            negotiation::consumable_parameters(rtp_parameters, &r.capabilities, &mapping);
        let setup = producer_setup(id, transport, kind, rtp_parameters, paused)?;
        let sink = r
            .transports
            .get(&transport)
            .map(|t| t.sink.clone())
            .ok_or_else(|| Error::closed(format!("transport {transport}")))?;
        r.forwarder.add_producer(setup, sink)?;
        r.host.created(Object::Producer {
            id,
            copy: copy_of.is_some(),
        });
        r.load.producers.fetch_add(1, Ordering::Relaxed);
        r.producers.insert(
            id,
            ProducerNode {
                transport,
                kind,
                rtp_parameters: rtp_parameters.clone(),
                consumable: consumable.clone(),
                mapping,
                paused,
            },
        );
        let router = r.id;
        r.emit(Event::ProducerCreated {
            router,
            transport,
            producer: id,
            kind,
        });
        ProducerInfo {
            id,
            kind,
            consumable_rtp_parameters: consumable,
        }
    };
    with_plugin(room, transport, |t| {
        t.producer_added(id, kind, rtp_parameters)
    })?;
    Ok(info)
}

/// Creates a consumer of `producer` on `transport` for a receiver with `capabilities`.
pub(crate) fn create_consumer(
    room: &RoomRef,
    transport: TransportId,
    producer: ProducerId,
    capabilities: &RtpCapabilities,
    paused: bool,
) -> Result<ConsumerInfo> {
    create_consumer_with(room, transport, producer, capabilities, paused, false)
}

/// Creates a consumer; a `pipe` consumer (feeding another router of the room) keeps the
/// router's payload types, extension ids and SSRC, so the far side's copy of the producer
/// takes them as they are.
pub(crate) fn create_consumer_with(
    room: &RoomRef,
    transport: TransportId,
    producer: ProducerId,
    capabilities: &RtpCapabilities,
    paused: bool,
    pipe: bool,
) -> Result<ConsumerInfo> {
    let id = ConsumerId::new();
    // Without stated capabilities, the transport knows what its kind of receiver takes.
    let capabilities = if capabilities.codecs.is_empty() {
        let router_caps = room.borrow().capabilities.clone();
        with_plugin(room, transport, |t| t.receive_capabilities(&router_caps))?
    } else {
        capabilities.clone()
    };
    let capabilities = &capabilities;
    let (kind, params) = {
        let mut r = room.borrow_mut();
        let max = r.config.limits.max_consumers_per_transport;
        if !pipe
            && r.consumers
                .values()
                .filter(|c| c.transport == transport)
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
        let params = negotiation::consumer_parameters(&p.consumable, capabilities, pipe)?;
        let setup = consumer_setup(id, transport, producer, &p, &params, paused)?;
        let sink = r
            .transports
            .get(&transport)
            .map(|t| t.sink.clone())
            .ok_or_else(|| Error::closed(format!("transport {transport}")))?;
        r.forwarder.add_consumer(setup, sink, Instant::now())?;
        r.host.created(Object::Consumer(id));
        r.load.consumers.fetch_add(1, Ordering::Relaxed);
        r.consumers.insert(
            id,
            ConsumerNode {
                transport,
                producer,
                kind: p.kind,
                rtp_parameters: params.clone(),
                paused,
            },
        );
        if !pipe {
            r.renegotiate.insert(transport);
        }
        let router = r.id;
        r.emit(Event::ConsumerCreated {
            router,
            transport,
            consumer: id,
            producer,
            kind: p.kind,
        });
        (p.kind, params)
    };
    with_plugin(room, transport, |t| t.consumer_added(id, kind, &params))?;
    Ok(ConsumerInfo {
        id,
        producer,
        kind,
        rtp_parameters: params,
        paused,
    })
}

/// Runs a plugin-specific request; creates the producers it asks for and closes the
/// producers and consumers it drops.
pub(crate) fn transport_request(
    room: &RoomRef,
    transport: TransportId,
    method: &str,
    params: &Value,
) -> Result<TransportRequestResult> {
    let outcome = with_plugin(room, transport, |t| t.request(method, params))??;
    close_rejected(room, &outcome.closed_consumers);
    narrow_extensions(room, &outcome.consumer_extensions);
    let producers = apply_producer_changes(
        room,
        transport,
        outcome.new_producers,
        &outcome.closed_producers,
    )?;
    Ok(TransportRequestResult {
        response: outcome.response,
        producers,
        closed_producers: outcome.closed_producers,
    })
}

/// Runs `f` on the transport as an SDP session; fails for transports not negotiated with SDP.
pub(crate) fn with_sdp_session<T>(
    room: &RoomRef,
    transport: TransportId,
    f: impl FnOnce(&mut dyn SdpSession) -> Result<T>,
) -> Result<T> {
    with_plugin(room, transport, |t| match t.sdp_session() {
        Some(session) => f(session),
        None => Err(Error::invalid(format!(
            "transport {transport} is not negotiated with SDP"
        ))),
    })?
}

/// A client's offer applied: the answer, the producers it created (with their m-line
/// description) and those it closed.
pub(crate) struct AppliedOffer {
    pub answer: String,
    pub producers: Vec<(ProducerInfo, Value)>,
    pub closed_producers: Vec<ProducerId>,
}

/// Applies a client's offer to an SDP session and creates and closes its producers.
pub(crate) fn apply_offer(
    room: &RoomRef,
    transport: TransportId,
    sdp: &str,
    producer_slots: Option<usize>,
) -> Result<AppliedOffer> {
    let outcome = with_sdp_session(room, transport, |s| s.apply_offer(sdp, producer_slots))?;
    let producers = apply_producer_changes(
        room,
        transport,
        outcome.new_producers,
        &outcome.closed_producers,
    )?;
    Ok(AppliedOffer {
        answer: outcome.answer,
        producers,
        closed_producers: outcome.closed_producers,
    })
}

/// Applies a client's answer to an SDP session and closes the consumers it rejected; true
/// when another offer is due.
pub(crate) fn apply_answer(room: &RoomRef, transport: TransportId, sdp: &str) -> Result<bool> {
    let outcome = with_sdp_session(room, transport, |s| s.apply_answer(sdp))?;
    close_rejected(room, &outcome.rejected_consumers);
    narrow_extensions(room, &outcome.consumer_extensions);
    apply_producer_changes(room, transport, Vec::new(), &outcome.closed_producers)?;
    Ok(outcome.renegotiate)
}

fn narrow_extensions(room: &RoomRef, consumers: &[(ConsumerId, Vec<u8>)]) {
    let mut r = room.borrow_mut();
    for (id, keep) in consumers {
        r.forwarder.keep_consumer_extensions(*id, keep);
    }
}

fn close_rejected(room: &RoomRef, consumers: &[ConsumerId]) {
    let mut r = room.borrow_mut();
    for id in consumers {
        r.close_consumer(*id, CloseReason::Rejected);
    }
}

/// Closes `closed` and creates `new`, all of `new` or none: on a failure the caller gets an
/// error, not the answer, so producers it never heard of must not stay behind.
fn apply_producer_changes(
    room: &RoomRef,
    transport: TransportId,
    new: Vec<ProducerRequest>,
    closed: &[ProducerId],
) -> Result<Vec<(ProducerInfo, Value)>> {
    for id in closed {
        room.borrow_mut()
            .close_producer(*id, CloseReason::Requested);
    }
    let mut producers = Vec::with_capacity(new.len());
    for request in new {
        match create_producer(
            room,
            transport,
            request.kind,
            &request.rtp_parameters,
            false,
        ) {
            Ok(info) => producers.push((info, request.app_data)),
            Err(e) => {
                let mut r = room.borrow_mut();
                for (info, _) in &producers {
                    r.close_producer(info.id, CloseReason::Requested);
                }
                return Err(e);
            }
        }
    }
    Ok(producers)
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
    let rtx = params.rtx();
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
