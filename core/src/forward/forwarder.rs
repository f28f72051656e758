//! The router's forwarding table: producers, their consumers, and the per-packet functions.
//!
//! Everything here is synchronous code on plain data. The router actor owns one
//! [`Forwarder`], hands it each packet its transports receive, and the forwarder writes the
//! rewritten copies straight into the consumers' sinks: fan-out to N consumers is a loop over
//! a vector, with one reusable output buffer.

use super::keyframe::{KeyframeCodec, KeyframeThrottle};
use super::nack::{NackRefusal, NackSeen, ResendLimiter};
use super::quality::QualityHistograms;
use super::retransmission::RetransmissionBuffer;
use super::rewriter::{IdMap, PacketWriter, Rewrite, SeqRewriter};
use crate::error::{Error, ErrorCode, Result};
use crate::id::{ConsumerId, ProducerId, TransportId};
use crate::transport::MediaSink;
use bytes::Bytes;
use rtc_rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc_rtp::Packet;
use rtc_shared::marshal::Marshal;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod feedback;
mod setup;
mod stats;

pub use setup::{
    ConsumerSetup, ForwarderConfig, KeyframeRequestKind, MidMatch, ProducerCodec, ProducerSetup,
};
pub use stats::{ConsumerStats, DropReason, ForwarderStats, ProducerStats, RtpOutcome};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Media,
    Rtx,
}

struct ConsumerEntry<S> {
    id: ConsumerId,
    transport: TransportId,
    ssrc: u32,
    rtx: Option<(u32, u8)>,
    rtx_seq: u16,
    map: IdMap,
    rewriter: SeqRewriter,
    paused: bool,
    waiting_keyframe: bool,
    sink: S,
    stats: ConsumerStats,
    resend: ResendLimiter,
    last_sr: Option<(u32, Instant)>,
    last_sr_at: Option<Instant>,
    /// Since when it has waited for a keyframe (while `waiting_keyframe`).
    waiting_since: Instant,
}

struct SenderReportInfo {
    ntp: u64,
    rtp: u32,
    received: Instant,
}

struct ProducerEntry<S> {
    setup: ProducerSetup,
    codecs: HashMap<u8, ProducerCodec>,
    buffer: RetransmissionBuffer,
    throttle: KeyframeThrottle,
    fir_seq: u8,
    sink: S,
    consumers: Vec<ConsumerEntry<S>>,
    last_sr: Option<SenderReportInfo>,
    clock_rate: u32,
    stats: ProducerStats,
}

/// The forwarding table of one router.
///
/// `S` is the sink type of transports: `Rc<dyn MediaSink>` in the server, anything
/// implementing [`MediaSink`] in tests.
pub struct Forwarder<S> {
    config: ForwarderConfig,
    producers: HashMap<ProducerId, ProducerEntry<S>>,
    by_ssrc: HashMap<(TransportId, u32), (ProducerId, Stream)>,
    consumers: HashMap<ConsumerId, ProducerId>,
    consumers_by_ssrc: HashMap<(TransportId, u32), ConsumerId>,
    writer: PacketWriter,
    nack_seen: NackSeen,
    stats: ForwarderStats,
}

impl<S: MediaSink> Forwarder<S> {
    /// An empty table.
    pub fn new(config: ForwarderConfig) -> Self {
        Self {
            config,
            producers: HashMap::new(),
            by_ssrc: HashMap::new(),
            consumers: HashMap::new(),
            consumers_by_ssrc: HashMap::new(),
            writer: PacketWriter::new(),
            nack_seen: NackSeen::default(),
            stats: ForwarderStats::default(),
        }
    }

    /// Adds a producer; `sink` reaches its sender (for keyframe requests).
    pub fn add_producer(&mut self, setup: ProducerSetup, sink: S) -> Result<()> {
        if self.producers.contains_key(&setup.id) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("producer {} exists", setup.id),
            ));
        }
        for ssrc in [setup.ssrc, setup.rtx_ssrc].into_iter().flatten() {
            if self.by_ssrc.contains_key(&(setup.transport, ssrc)) {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("ssrc {ssrc} is already produced on this transport"),
                ));
            }
        }
        if setup.codecs.is_empty() {
            return Err(Error::invalid("producer has no codecs"));
        }
        if let Some(ssrc) = setup.ssrc {
            self.by_ssrc
                .insert((setup.transport, ssrc), (setup.id, Stream::Media));
        }
        if let Some(ssrc) = setup.rtx_ssrc {
            self.by_ssrc
                .insert((setup.transport, ssrc), (setup.id, Stream::Rtx));
        }
        let codecs: HashMap<u8, ProducerCodec> =
            setup.codecs.iter().map(|c| (c.payload_type, *c)).collect();
        let clock_rate = setup.codecs[0].clock_rate;
        self.producers.insert(
            setup.id,
            ProducerEntry {
                codecs,
                buffer: RetransmissionBuffer::new(
                    self.config.retransmission_packets,
                    self.config.retransmission_max_age,
                ),
                throttle: KeyframeThrottle::new(self.config.keyframe_interval),
                fir_seq: 0,
                sink,
                consumers: Vec::new(),
                last_sr: None,
                clock_rate,
                stats: ProducerStats::default(),
                setup,
            },
        );
        Ok(())
    }

    /// Removes a producer and all its consumers; returns the consumers removed.
    pub fn remove_producer(&mut self, id: ProducerId) -> Vec<ConsumerId> {
        let Some(p) = self.producers.remove(&id) else {
            return Vec::new();
        };
        self.by_ssrc.retain(|_, (pid, _)| *pid != id);
        let removed: Vec<ConsumerId> = p.consumers.iter().map(|c| c.id).collect();
        for c in &p.consumers {
            self.consumers.remove(&c.id);
            self.consumers_by_ssrc.remove(&(c.transport, c.ssrc));
            if let Some((rtx, _)) = c.rtx {
                self.consumers_by_ssrc.remove(&(c.transport, rtx));
            }
        }
        removed
    }

    /// Adds a consumer; `sink` is its transport's. Video consumers wait for a keyframe, and
    /// one is requested.
    pub fn add_consumer(&mut self, setup: ConsumerSetup, sink: S, now: Instant) -> Result<()> {
        if self.consumers.contains_key(&setup.id) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("consumer {} exists", setup.id),
            ));
        }
        let Some(p) = self.producers.get_mut(&setup.producer) else {
            return Err(Error::not_found("producer", setup.producer));
        };
        let needs_keyframe = p.codecs.values().any(|c| c.keyframes.needs_keyframe());
        self.consumers.insert(setup.id, setup.producer);
        self.consumers_by_ssrc
            .insert((setup.transport, setup.ssrc), setup.id);
        if let Some((rtx, _)) = setup.rtx {
            self.consumers_by_ssrc
                .insert((setup.transport, rtx), setup.id);
        }
        p.consumers.push(ConsumerEntry {
            id: setup.id,
            transport: setup.transport,
            ssrc: setup.ssrc,
            rtx: setup.rtx,
            rtx_seq: 0,
            map: IdMap::new(&setup.payload_types, &setup.extensions),
            rewriter: SeqRewriter::new(p.clock_rate),
            paused: setup.paused,
            waiting_keyframe: needs_keyframe,
            sink,
            stats: ConsumerStats::default(),
            resend: ResendLimiter::new(
                self.config.nack_max_resends_per_second,
                p.buffer.capacity(),
                now,
            ),
            last_sr: None,
            last_sr_at: None,
            waiting_since: now,
        });
        if needs_keyframe && !setup.paused && !p.setup.paused {
            Self::request_keyframe_of(p, now);
        }
        Ok(())
    }

    /// Narrows the header extensions written for a consumer to the ids in `keep`: what its
    /// receiver's answer accepted, when that is less than the consumer was given. Returns
    /// false when the consumer does not exist.
    pub fn keep_consumer_extensions(&mut self, id: ConsumerId, keep: &[u8]) -> bool {
        let Some(pid) = self.consumers.get(&id) else {
            return false;
        };
        let Some(c) = self
            .producers
            .get_mut(pid)
            .and_then(|p| p.consumers.iter_mut().find(|c| c.id == id))
        else {
            return false;
        };
        c.map.keep_extensions(keep);
        true
    }

    /// Removes a consumer. Returns false when it did not exist.
    pub fn remove_consumer(&mut self, id: ConsumerId) -> bool {
        let Some(pid) = self.consumers.remove(&id) else {
            return false;
        };
        if let Some(p) = self.producers.get_mut(&pid)
            && let Some(i) = p.consumers.iter().position(|c| c.id == id)
        {
            let c = p.consumers.swap_remove(i);
            self.consumers_by_ssrc.remove(&(c.transport, c.ssrc));
            if let Some((rtx, _)) = c.rtx {
                self.consumers_by_ssrc.remove(&(c.transport, rtx));
            }
        }
        true
    }

    /// Pauses or resumes a producer. On resume its consumers re-synchronise on a keyframe.
    pub fn set_producer_paused(
        &mut self,
        id: ProducerId,
        paused: bool,
        now: Instant,
    ) -> Result<()> {
        let p = self
            .producers
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("producer", id))?;
        let resumed = p.setup.paused && !paused;
        p.setup.paused = paused;
        if resumed {
            let needs_keyframe = p.codecs.values().any(|c| c.keyframes.needs_keyframe());
            for c in &mut p.consumers {
                c.rewriter.resync();
                c.waiting_keyframe = needs_keyframe;
                c.waiting_since = now;
            }
            if needs_keyframe {
                Self::request_keyframe_of(p, now);
            }
        }
        Ok(())
    }

    /// Pauses or resumes a consumer. On resume it continues its sequence numbers where it
    /// stopped and, for video, waits for a requested keyframe.
    pub fn set_consumer_paused(
        &mut self,
        id: ConsumerId,
        paused: bool,
        now: Instant,
    ) -> Result<()> {
        let pid = *self
            .consumers
            .get(&id)
            .ok_or_else(|| Error::not_found("consumer", id))?;
        let p = self
            .producers
            .get_mut(&pid)
            .ok_or_else(|| Error::not_found("producer", pid))?;
        let needs_keyframe = p.codecs.values().any(|c| c.keyframes.needs_keyframe());
        let Some(c) = p.consumers.iter_mut().find(|c| c.id == id) else {
            return Err(Error::not_found("consumer", id));
        };
        let resumed = c.paused && !paused;
        c.paused = paused;
        if resumed {
            c.rewriter.resync();
            c.waiting_keyframe = needs_keyframe;
            c.waiting_since = now;
            if needs_keyframe && !p.setup.paused {
                Self::request_keyframe_of(p, now);
            }
        }
        Ok(())
    }

    /// The client of `transport` can hear it from now on (a WebRTC connection finished its
    /// DTLS handshake): what its video consumers sent before was lost, the keyframe requested
    /// when they were created included. They start over at a keyframe, which is requested
    /// (subject to the throttle, which defers rather than drops).
    ///
    /// A producer on `transport` whose consumers wait for a keyframe (a publisher's
    /// connection moved here from another server, its tracks already subscribed) had its
    /// request sent where nobody heard it: it is asked at once, whatever the throttle says.
    pub fn transport_connected(&mut self, transport: TransportId, now: Instant) {
        for p in self.producers.values_mut() {
            if !p.codecs.values().any(|c| c.keyframes.needs_keyframe()) {
                continue;
            }
            if p.setup.transport == transport
                && !p.setup.paused
                && p.consumers.iter().any(|c| c.waiting_keyframe && !c.paused)
            {
                p.throttle.forget();
                Self::request_keyframe_of(p, now);
            }
            let mut waiting = false;
            for c in p
                .consumers
                .iter_mut()
                .filter(|c| c.transport == transport && !c.paused)
            {
                c.waiting_keyframe = true;
                c.waiting_since = now;
                waiting = true;
            }
            if waiting && !p.setup.paused {
                Self::request_keyframe_of(p, now);
            }
        }
    }

    /// Asks the producer's sender for a keyframe (subject to the throttle).
    pub fn request_keyframe(&mut self, id: ProducerId, now: Instant) -> Result<()> {
        let p = self
            .producers
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("producer", id))?;
        Self::request_keyframe_of(p, now);
        Ok(())
    }

    /// Forwards one RTP packet received on `transport`.
    pub fn on_rtp(&mut self, transport: TransportId, packet: Bytes, now: Instant) -> RtpOutcome {
        self.on_rtp_with(transport, packet, now, |_, _| {})
    }

    /// Like [`Forwarder::on_rtp`], also showing the packet (as received, before per-consumer
    /// rewriting) to `tap`, which is how middleware sees media.
    pub fn on_rtp_with(
        &mut self,
        transport: TransportId,
        raw: Bytes,
        now: Instant,
        tap: impl FnMut(ProducerId, &Packet),
    ) -> RtpOutcome {
        match crate::transport::parse_rtp(raw) {
            Some(p) => self.on_packet_with(transport, p, now, tap),
            None => self.on_malformed_rtp(),
        }
    }

    /// Counts a datagram that a transport could not parse as RTP.
    pub fn on_malformed_rtp(&mut self) -> RtpOutcome {
        self.stats.rtp_in += 1;
        self.stats.malformed_rtp += 1;
        RtpOutcome::Dropped(DropReason::Malformed)
    }

    /// Like [`Forwarder::on_rtp_with`] for a packet a transport has already parsed (the WebRTC
    /// stack hands over parsed packets after decrypting them).
    pub fn on_packet_with(
        &mut self,
        transport: TransportId,
        mut packet: Packet,
        now: Instant,
        mut tap: impl FnMut(ProducerId, &Packet),
    ) -> RtpOutcome {
        self.stats.rtp_in += 1;
        let Some((pid, stream)) = self.lookup_producer(transport, &packet) else {
            self.stats.unknown_ssrc += 1;
            return RtpOutcome::Dropped(DropReason::UnknownSsrc);
        };
        let Some(p) = self.producers.get_mut(&pid) else {
            self.stats.unknown_ssrc += 1;
            return RtpOutcome::Dropped(DropReason::UnknownSsrc);
        };
        if stream == Stream::Rtx {
            match Self::unwrap_rtx(p, packet) {
                Some(original) => packet = original,
                None => return RtpOutcome::Dropped(DropReason::Duplicate),
            }
        }
        let Some(codec) = p.codecs.get(&packet.header.payload_type).copied() else {
            p.stats.dropped_unknown_payload_type += 1;
            return RtpOutcome::Dropped(DropReason::UnknownPayloadType);
        };
        p.stats.packets += 1;
        p.stats.bytes += packet.payload.len() as u64;
        if p.setup.paused {
            p.stats.dropped_paused += 1;
            return RtpOutcome::Dropped(DropReason::ProducerPaused);
        }
        tap(pid, &packet);
        let is_keyframe =
            codec.keyframes.needs_keyframe() && codec.keyframes.is_keyframe(&packet.payload);
        if is_keyframe {
            p.stats.keyframes += 1;
        }
        let mut sent = 0;
        let mut starving = false;
        let patience = self.config.keyframe_interval * 2;
        for c in &mut p.consumers {
            if c.paused {
                continue;
            }
            let Some(pt) = c.map.payload_type(packet.header.payload_type) else {
                c.stats.dropped_unmapped += 1;
                continue;
            };
            if c.waiting_keyframe {
                if !is_keyframe {
                    c.stats.dropped_waiting_keyframe += 1;
                    starving |= now.saturating_duration_since(c.waiting_since) >= patience;
                    continue;
                }
                c.waiting_keyframe = false;
                c.rewriter.resync();
            }
            let h = &packet.header;
            let Some((seq, ts)) = c.rewriter.map(h.ssrc, h.sequence_number, h.timestamp, now)
            else {
                continue;
            };
            let rewrite = Rewrite {
                ssrc: c.ssrc,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
            };
            if let Some(bytes) = self.writer.write(&packet, rewrite, &c.map, None) {
                c.sink.send_rtp(bytes);
                c.stats.packets += 1;
                c.stats.bytes += packet.payload.len() as u64;
                sent += 1;
            }
        }
        // A consumer has waited two throttle windows for its keyframe while media flows: the
        // request went unheard (sent before the publisher or the consumer's client could hear
        // it, or lost), and nobody else will ask (its client receives nothing to complain
        // about). Asked again, at most once per window. Not sooner: a consumer whose client is
        // still connecting would spend the window its connection's request needs.
        if starving && p.setup.keyframe_request != KeyframeRequestKind::None {
            Self::request_keyframe_of(p, now);
        }
        self.stats.rtp_out += sent as u64;
        p.buffer.insert(packet, now);
        RtpOutcome::Forwarded {
            producer: pid,
            consumers: sent,
        }
    }

    /// Handles an RTCP compound packet received on `transport`: NACK and PLI/FIR from
    /// receivers, sender and receiver reports.
    pub fn on_rtcp(&mut self, transport: TransportId, mut raw: Bytes, now: Instant) {
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut raw) else {
            self.stats.malformed_rtcp += 1;
            return;
        };
        for packet in packets {
            let any = packet.as_any();
            if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                self.on_nack(transport, nack, now);
            } else if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                self.on_keyframe_feedback(transport, pli.media_ssrc, false, now);
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                for entry in &fir.fir {
                    self.on_keyframe_feedback(transport, entry.ssrc, true, now);
                }
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.on_sender_report(transport, sr, now);
                self.on_reception_reports(transport, &sr.reports, now);
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.on_reception_reports(transport, &rr.reports, now);
            }
        }
    }

    /// Periodic work: deferred keyframe requests and sender reports to consumers. Call it every
    /// few tens of milliseconds.
    pub fn tick(&mut self, now: Instant) {
        let sr_interval = self.config.sender_report_interval;
        for p in self.producers.values_mut() {
            if p.throttle.poll(now) {
                Self::send_keyframe_request(p);
            }
            let Some(sr) = &p.last_sr else { continue };
            for c in &mut p.consumers {
                let due = c
                    .last_sr_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= sr_interval);
                if c.paused || c.stats.packets == 0 || !due {
                    continue;
                }
                let elapsed = now.saturating_duration_since(sr.received);
                let ntp = sr.ntp.wrapping_add(duration_to_ntp(elapsed));
                let ticks = elapsed.as_micros() * u128::from(p.clock_rate) / 1_000_000;
                let rtp = sr
                    .rtp
                    .wrapping_add(ticks as u32)
                    .wrapping_add(c.rewriter.ts_offset());
                let report = SenderReport {
                    ssrc: c.ssrc,
                    ntp_time: ntp,
                    rtp_time: rtp,
                    packet_count: c.stats.packets as u32,
                    octet_count: c.stats.bytes as u32,
                    ..Default::default()
                };
                if let Ok(bytes) = report.marshal() {
                    c.sink.send_rtcp(&bytes);
                    c.stats.sender_reports += 1;
                    c.last_sr = Some(((ntp >> 16) as u32, now));
                    c.last_sr_at = Some(now);
                }
            }
        }
    }

    /// Router-wide counters.
    pub fn stats(&self) -> &ForwarderStats {
        &self.stats
    }

    /// A producer's counters.
    pub fn producer_stats(&self, id: ProducerId) -> Option<&ProducerStats> {
        self.producers.get(&id).map(|p| &p.stats)
    }

    /// A consumer's counters.
    pub fn consumer_stats(&self, id: ConsumerId) -> Option<&ConsumerStats> {
        let pid = self.consumers.get(&id)?;
        self.producers
            .get(pid)?
            .consumers
            .iter()
            .find(|c| c.id == id)
            .map(|c| &c.stats)
    }

    /// The SSRC a producer was learned or announced with.
    pub fn producer_ssrc(&self, id: ProducerId) -> Option<u32> {
        self.producers.get(&id).and_then(|p| p.setup.ssrc)
    }

    /// Number of producers.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Number of consumers.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    fn lookup_producer(
        &mut self,
        transport: TransportId,
        packet: &Packet,
    ) -> Option<(ProducerId, Stream)> {
        let ssrc = packet.header.ssrc;
        if let Some(found) = self.by_ssrc.get(&(transport, ssrc)) {
            return Some(*found);
        }
        // Unannounced SSRC: learn it from the mid extension if a producer on this transport
        // is still waiting for its first packet.
        let (pid, stream) = self.producers.values().find_map(|p| {
            let m = p.setup.mid.as_ref()?;
            if p.setup.transport != transport {
                return None;
            }
            let mid = packet.header.get_extension(m.extension_id)?;
            if mid.as_ref() != m.mid.as_bytes() {
                return None;
            }
            let pt = packet.header.payload_type;
            if p.setup.ssrc.is_none() && p.codecs.contains_key(&pt) {
                Some((p.setup.id, Stream::Media))
            } else if p.setup.rtx_ssrc.is_none()
                && p.setup.rtx_payload_types.iter().any(|(rtx, _)| *rtx == pt)
            {
                Some((p.setup.id, Stream::Rtx))
            } else {
                None
            }
        })?;
        let p = self.producers.get_mut(&pid)?;
        match stream {
            Stream::Media => p.setup.ssrc = Some(ssrc),
            Stream::Rtx => p.setup.rtx_ssrc = Some(ssrc),
        }
        self.by_ssrc.insert((transport, ssrc), (pid, stream));
        Some((pid, stream))
    }

    fn unwrap_rtx(p: &mut ProducerEntry<S>, packet: Packet) -> Option<Packet> {
        let apt = p
            .setup
            .rtx_payload_types
            .iter()
            .find(|(rtx, _)| *rtx == packet.header.payload_type)
            .map(|(_, apt)| *apt);
        let (Some(apt), Some(media_ssrc)) = (apt, p.setup.ssrc) else {
            p.stats.duplicates += 1;
            return None;
        };
        if packet.payload.len() < 2 {
            // Padding-only RTX is bandwidth probing; nothing to repair.
            p.stats.duplicates += 1;
            return None;
        }
        let osn = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
        if p.buffer.contains(osn) {
            p.stats.duplicates += 1;
            return None;
        }
        let mut original = packet;
        original.header.ssrc = media_ssrc;
        original.header.payload_type = apt;
        original.header.sequence_number = osn;
        original.header.padding = false;
        original.payload = original.payload.slice(2..);
        p.stats.rtx_packets += 1;
        Some(original)
    }

    fn consumer_index(&self, transport: TransportId, ssrc: u32) -> Option<(ProducerId, usize)> {
        let cid = *self.consumers_by_ssrc.get(&(transport, ssrc))?;
        let pid = *self.consumers.get(&cid)?;
        let i = self
            .producers
            .get(&pid)?
            .consumers
            .iter()
            .position(|c| c.id == cid)?;
        Some((pid, i))
    }

    fn consumer_mut(
        &mut self,
        transport: TransportId,
        ssrc: u32,
    ) -> Option<(&mut ProducerEntry<S>, usize)> {
        let (pid, i) = self.consumer_index(transport, ssrc)?;
        Some((self.producers.get_mut(&pid)?, i))
    }
}

/// Converts a duration to 64-bit NTP fixed point (32.32).
fn duration_to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// The current wall-clock time as 64-bit NTP, for transports that originate sender reports.
pub fn ntp_now() -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    duration_to_ntp(since_unix).wrapping_add(NTP_UNIX_OFFSET << 32)
}

/// Reads a reception report's cumulative loss, a signed 24-bit field that rtc-rtcp hands over
/// as the raw unsigned bits (a receiver that saw one duplicate too many sends 0xFFFFFF, -1).
pub(crate) fn cumulative_loss(raw: u32) -> i32 {
    ((raw << 8) as i32) >> 8
}
