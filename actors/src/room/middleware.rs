//! What a room does with its attached middleware: offering them its events and RTCP,
//! announcing producers, detaching them, and honouring the audience of their tracks.

use super::Room;
use crate::middleware::instance::{ControlKind, MIDDLEWARE_KIND, Media};
use bytes::Bytes;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::middleware::{Audience, ProducerInfo, StreamFeedback};
use switchboard_core::{PeerId, ProducerId, TransportId};
use tokio::sync::watch;

impl Room {
    /// A producer as middleware sees it.
    pub(crate) fn producer_info(&self, id: ProducerId) -> Option<ProducerInfo> {
        let p = self.producers.get(&id)?;
        let transport = self.transports.get(&p.transport);
        Some(ProducerInfo {
            id,
            transport: p.transport,
            peer: transport.and_then(|t| t.peer.clone()),
            kind: p.kind,
            rtp_parameters: p.rtp_parameters.clone(),
            paused: p.paused,
            from_middleware: transport.is_some_and(|t| t.kind == MIDDLEWARE_KIND),
        })
    }

    /// Hands an event to every attached instance; a new producer is announced first.
    pub(crate) fn offer_event(&mut self, event: &Event) {
        if self.middleware.is_empty() {
            return;
        }
        match event {
            Event::ProducerCreated { producer, .. } => {
                if let Some(info) = self.producer_info(*producer) {
                    for m in &self.middleware {
                        m.announce(info.clone());
                    }
                }
            }
            Event::ProducerClosed { producer, .. } => {
                self.middleware_audience.remove(producer);
            }
            _ => {}
        }
        for m in &self.middleware {
            m.send_control(ControlKind::Event(Box::new(event.clone())));
        }
    }

    /// Hands a producer's RTCP (a compound with its sender report or SDES) to the instances
    /// that selected the producer.
    pub(crate) fn offer_rtcp(&mut self, transport: TransportId, packet: &Bytes) {
        if self.middleware.is_empty() {
            return;
        }
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut packet.clone()) else {
            return;
        };
        let mut senders = Vec::new();
        for p in &packets {
            let any = p.as_any();
            if let Some(sr) = any.downcast_ref::<rtc_rtcp::sender_report::SenderReport>() {
                senders.push(sr.ssrc);
            } else if let Some(sdes) =
                any.downcast_ref::<rtc_rtcp::source_description::SourceDescription>()
            {
                senders.extend(sdes.chunks.iter().map(|c| c.source));
            }
        }
        if senders.is_empty() {
            return;
        }
        let Room {
            producers,
            forwarder,
            middleware,
            ..
        } = self;
        for (id, p) in producers.iter() {
            if p.transport != transport
                || !forwarder
                    .producer_ssrc(*id)
                    .is_some_and(|s| senders.contains(&s))
            {
                continue;
            }
            for m in middleware.iter_mut() {
                if m.selection.matches(*id, p.kind) {
                    m.push(|| Media::Rtcp(*id, packet.clone()));
                }
            }
        }
    }

    /// Removes an instance (detached, failed or its room closing): tells its thread to
    /// close, moves its counters into the worker's totals, and closes its published tracks.
    pub(crate) fn take_middleware(
        &mut self,
        index: usize,
        reason: CloseReason,
    ) -> watch::Receiver<bool> {
        let m = self.middleware.remove(index);
        self.host.middleware_retired(&m.name, &m.counters);
        let transport = m.transport;
        let done = m.close();
        if let Some(t) = transport {
            self.close_transport(t, reason);
        }
        done
    }
}

/// Feedback about a producer's stream: its consumers' counters summed, and its own count of
/// keyframe requests passed upstream.
pub(crate) fn stream_feedback(room: &Room, producer: ProducerId) -> Option<StreamFeedback> {
    let p = room.forwarder.producer_stats(producer)?;
    let mut f = StreamFeedback {
        keyframe_requests_sent: p.keyframe_requests_sent,
        ..StreamFeedback::default()
    };
    for (id, _) in room
        .consumers
        .iter()
        .filter(|(_, c)| c.producer == producer)
    {
        if let Some(c) = room.forwarder.consumer_stats(*id) {
            f.nacks += c.nacks;
            f.retransmitted += c.retransmitted;
            f.plis += c.plis;
            f.firs += c.firs;
        }
    }
    Some(f)
}

/// Whether automatic subscription gives `peer` this producer: always, unless a middleware
/// published it for someone else or for nobody.
pub(crate) fn audience_allows(room: &Room, producer: ProducerId, peer: &PeerId) -> bool {
    match room.middleware_audience.get(&producer) {
        None | Some(Audience::Everyone) => true,
        Some(Audience::Peer(a)) => a == peer,
        Some(Audience::Nobody) => false,
    }
}
