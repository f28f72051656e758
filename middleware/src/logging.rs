//! The `logging` middleware: structured `tracing` records of a room's lifecycle, and periodic
//! summaries of each incoming stream.
//!
//! Every room event (peers joining and leaving, transports, producers, consumers, pauses,
//! closures with their reasons) becomes one `info` record with target
//! `switchboard::middleware::logging`, carrying the room, the event name and the event's
//! fields as JSON (SDP bodies left out). Every `interval_ms` each producer that sent
//! something gets a `stream summary` record: bitrate, packets, loss, jitter, late packets and
//! sender reports over the interval.
//!
//! What it measures, it measures from the producer's packets as they reach it: loss from
//! sequence-number gaps, jitter per RFC 3550 from RTP timestamps against arrival at the
//! middleware (which includes queueing delay when the middleware falls behind), late packets
//! (below the highest sequence number seen: reordered, or repaired by a retransmission the
//! room asked for). The NACKs, PLIs and FIRs that subscribers send never reach middleware as
//! packets (the forwarder answers them itself); each summary asks the room for its counts
//! ([`RoomAccess::feedback`](switchboard_core::middleware::RoomAccess::feedback)) and reports
//! what changed over the interval.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use switchboard_core::event::Event;
use switchboard_core::middleware::{
    Metric, MetricKind, Middleware, MiddlewareContext, MiddlewareFactory, ProducerInfo,
    StreamFeedback, parse_options,
};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::{ProducerId, Result, RouterId};

/// The registered name.
pub const NAME: &str = "logging";

/// The tracing target of every record.
pub const TARGET: &str = "switchboard::middleware::logging";

/// Options (`[middleware.options.logging]` or `middleware.attach` options).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingOptions {
    /// Interval between stream summaries, in milliseconds; 0 turns summaries off.
    pub interval_ms: u64,
    /// Whether to look at media at all (summaries need it). Off, only lifecycle is logged
    /// and no packet is queued for the logger.
    pub media: bool,
}

impl Default for LoggingOptions {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
            media: true,
        }
    }
}

/// The factory.
#[derive(Default)]
pub struct Logging;

impl MiddlewareFactory for Logging {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        let room = ctx.room.clone();
        let options: LoggingOptions = parse_options(NAME, options)?;
        if options.media {
            ctx.selection.select_all(None);
        }
        Ok(Box::new(Logger {
            room,
            router: ctx.router,
            interval: (options.interval_ms > 0 && options.media)
                .then(|| Duration::from_millis(options.interval_ms)),
            streams: HashMap::new(),
            events: BTreeMap::new(),
            summaries: 0,
            started: Instant::now(),
        }))
    }
}

/// One room's logger.
struct Logger {
    room: std::sync::Arc<dyn switchboard_core::middleware::RoomAccess>,
    router: RouterId,
    interval: Option<Duration>,
    streams: HashMap<ProducerId, StreamState>,
    events: BTreeMap<&'static str, u64>,
    summaries: u64,
    started: Instant,
}

/// What the logger knows of one producer's stream.
#[derive(Debug)]
struct StreamState {
    kind: MediaKind,
    mime: String,
    clock_rate: u32,
    peer: Option<String>,
    total: Counts,
    window: Counts,
    window_started: Instant,
    /// Highest extended sequence number seen, and where the window began.
    highest: Option<u64>,
    window_base: Option<u64>,
    first: Option<u64>,
    /// RFC 3550 interarrival jitter, in RTP timestamp units.
    jitter: f64,
    /// Subscriber feedback as of the last summary.
    feedback: StreamFeedback,
    origin: Instant,
    last_transit: Option<f64>,
}

/// Counters over a stream's life or one summary window.
#[derive(Clone, Debug, Default)]
struct Counts {
    packets: u64,
    bytes: u64,
    late: u64,
    sender_reports: u64,
}

impl StreamState {
    fn new(info: &ProducerInfo, now: Instant) -> Self {
        let codec = info.rtp_parameters.media_codec();
        Self {
            kind: info.kind,
            mime: codec.map(|c| c.mime_type.clone()).unwrap_or_default(),
            clock_rate: codec.map_or(90_000, |c| c.clock_rate).max(1),
            peer: info.peer.as_ref().map(|p| p.0.clone()),
            total: Counts::default(),
            window: Counts::default(),
            window_started: now,
            highest: None,
            window_base: None,
            first: None,
            jitter: 0.0,
            origin: now,
            last_transit: None,
            feedback: StreamFeedback::default(),
        }
    }

    fn on_packet(&mut self, seq: u16, timestamp: u32, bytes: usize, arrival: Instant) {
        self.total.packets += 1;
        self.total.bytes += bytes as u64;
        self.window.packets += 1;
        self.window.bytes += bytes as u64;
        let extended = match self.highest {
            None => u64::from(seq) + (1 << 16),
            Some(h) => {
                // The candidate nearest the highest, in this 16-bit cycle or a neighbour.
                let cycle = h & !0xFFFF;
                [cycle.wrapping_sub(1 << 16), cycle, cycle + (1 << 16)]
                    .into_iter()
                    .map(|c| c | u64::from(seq))
                    .min_by_key(|c| c.abs_diff(h))
                    .unwrap_or(h)
            }
        };
        match self.highest {
            Some(h) if extended <= h => {
                self.total.late += 1;
                self.window.late += 1;
            }
            _ => self.highest = Some(extended),
        }
        self.first.get_or_insert(extended);
        if self.window_base.is_none() {
            self.window_base = Some(extended.saturating_sub(1));
        }
        // Arrival from a fixed origin per stream; only differences between transits matter.
        let arrival_units = arrival.saturating_duration_since(self.origin).as_secs_f64()
            * f64::from(self.clock_rate);
        let transit = arrival_units - f64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // A jump of more than a minute is a timestamp reset, not jitter.
            if d < 60.0 * f64::from(self.clock_rate) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Packets expected in the window from the sequence numbers, and lost ones.
    fn window_loss(&self) -> (u64, u64) {
        let (Some(h), Some(base)) = (self.highest, self.window_base) else {
            return (0, 0);
        };
        let expected = h.saturating_sub(base);
        // Duplicates and late packets of an earlier window make this an underestimate, never
        // a negative.
        (expected, expected.saturating_sub(self.window.packets))
    }

    fn summary(&self, now: Instant) -> Value {
        let secs = now
            .saturating_duration_since(self.window_started)
            .as_secs_f64()
            .max(0.001);
        let (expected, lost) = self.window_loss();
        json!({
            "kind": self.kind,
            "mime_type": self.mime,
            "peer": self.peer,
            "bitrate_bps": (self.window.bytes as f64 * 8.0 / secs).round(),
            "packets": self.window.packets,
            "lost": lost,
            "loss_ratio": if expected > 0 { lost as f64 / expected as f64 } else { 0.0 },
            "jitter_ms": self.jitter / f64::from(self.clock_rate) * 1000.0,
            "late": self.window.late,
            "sender_reports": self.window.sender_reports,
        })
    }

    fn totals(&self) -> Value {
        let (expected, received) = match (self.first, self.highest) {
            (Some(f), Some(h)) => (h - f + 1, self.total.packets),
            _ => (0, 0),
        };
        json!({
            "kind": self.kind,
            "mime_type": self.mime,
            "peer": self.peer,
            "packets": self.total.packets,
            "bytes": self.total.bytes,
            "lost": expected.saturating_sub(received),
            "late": self.total.late,
            "jitter_ms": self.jitter / f64::from(self.clock_rate) * 1000.0,
            "sender_reports": self.total.sender_reports,
            "feedback": self.feedback,
        })
    }

    fn next_window(&mut self, now: Instant) {
        self.window = Counts::default();
        self.window_started = now;
        self.window_base = self.highest;
    }
}

/// An event's fields for a log record: the event as JSON, without SDP bodies.
fn event_fields(event: &Event) -> String {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("sdp");
    }
    v.to_string()
}

impl Middleware for Logger {
    fn on_producer(&mut self, producer: &ProducerInfo) {
        tracing::info!(
            target: TARGET,
            room = %self.router,
            producer = %producer.id,
            transport = %producer.transport,
            peer = producer.peer.as_ref().map(|p| p.0.as_str()),
            kind = ?producer.kind,
            mime_type = producer.rtp_parameters.media_codec().map(|c| c.mime_type.as_str()),
            from_middleware = producer.from_middleware,
            "producer"
        );
        self.streams
            .insert(producer.id, StreamState::new(producer, Instant::now()));
    }

    fn on_event(&mut self, event: &Event) {
        *self.events.entry(event.name()).or_default() += 1;
        tracing::info!(
            target: TARGET,
            room = %self.router,
            event = event.name(),
            fields = %event_fields(event),
            "room event"
        );
        if let Event::ProducerClosed { producer, .. } = event
            && let Some(stream) = self.streams.remove(producer)
        {
            tracing::info!(
                target: TARGET,
                room = %self.router,
                producer = %producer,
                totals = %stream.totals(),
                "stream ended"
            );
        }
    }

    fn on_rtp(&mut self, producer: ProducerId, packet: &rtc_rtp::Packet) {
        if let Some(s) = self.streams.get_mut(&producer) {
            s.on_packet(
                packet.header.sequence_number,
                packet.header.timestamp,
                packet.payload.len(),
                Instant::now(),
            );
        }
    }

    fn on_rtcp(&mut self, producer: ProducerId, _packet: &bytes::Bytes) {
        if let Some(s) = self.streams.get_mut(&producer) {
            s.total.sender_reports += 1;
            s.window.sender_reports += 1;
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.interval
    }

    fn on_tick(&mut self, now: Instant) {
        let mut ids: Vec<&ProducerId> = self.streams.keys().collect();
        ids.sort();
        let ids: Vec<ProducerId> = ids.into_iter().copied().collect();
        for id in ids {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            if s.window.packets > 0 || s.window.sender_reports > 0 {
                let feedback = self.room.feedback(id).unwrap_or(s.feedback);
                let delta = feedback.since(&s.feedback);
                s.feedback = feedback;
                let mut summary = s.summary(now);
                summary["nacks"] = json!(delta.nacks);
                summary["retransmitted"] = json!(delta.retransmitted);
                summary["plis"] = json!(delta.plis);
                summary["firs"] = json!(delta.firs);
                summary["keyframe_requests_sent"] = json!(delta.keyframe_requests_sent);
                self.summaries += 1;
                tracing::info!(
                    target: TARGET,
                    room = %self.router,
                    producer = %id,
                    bitrate_bps = summary["bitrate_bps"].as_f64(),
                    packets = summary["packets"].as_u64(),
                    lost = summary["lost"].as_u64(),
                    loss_ratio = summary["loss_ratio"].as_f64(),
                    jitter_ms = summary["jitter_ms"].as_f64(),
                    late = summary["late"].as_u64(),
                    sender_reports = summary["sender_reports"].as_u64(),
                    nacks = delta.nacks,
                    retransmitted = delta.retransmitted,
                    plis = delta.plis,
                    firs = delta.firs,
                    keyframe_requests_sent = delta.keyframe_requests_sent,
                    "stream summary"
                );
            }
            s.next_window(now);
        }
    }

    fn stats(&self) -> Value {
        let streams: serde_json::Map<String, Value> = self
            .streams
            .iter()
            .map(|(id, s)| (id.to_string(), s.totals()))
            .collect();
        json!({
            "events": self.events,
            "streams": streams,
            "summaries": self.summaries,
            "uptime_s": self.started.elapsed().as_secs(),
        })
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out: Vec<Metric> = self
            .events
            .iter()
            .map(|(name, n)| Metric {
                name: "events_total",
                help: "Room events the logging middleware recorded, by event.",
                kind: MetricKind::Counter,
                labels: vec![("event", (*name).to_owned())],
                value: *n as f64,
            })
            .collect();
        out.push(Metric {
            name: "summaries_total",
            help: "Stream summaries the logging middleware wrote.",
            kind: MetricKind::Counter,
            labels: Vec::new(),
            value: self.summaries as f64,
        });
        out.push(Metric {
            name: "streams",
            help: "Producers the logging middleware is following.",
            kind: MetricKind::Gauge,
            labels: Vec::new(),
            value: self.streams.len() as f64,
        });
        out
    }

    fn close(&mut self) {
        tracing::info!(
            target: TARGET,
            room = %self.router,
            streams = self.streams.len(),
            summaries = self.summaries,
            "logging detached"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::id::TransportId;
    use switchboard_core::rtp_parameters::{RtpCodecParameters, RtpParameters};

    fn info() -> ProducerInfo {
        ProducerInfo {
            id: ProducerId::new(),
            transport: TransportId::new(),
            peer: None,
            kind: MediaKind::Audio,
            rtp_parameters: RtpParameters {
                codecs: vec![RtpCodecParameters {
                    mime_type: "audio/opus".into(),
                    payload_type: 111,
                    clock_rate: 48_000,
                    channels: Some(2),
                    parameters: Default::default(),
                    rtcp_feedback: Vec::new(),
                }],
                ..Default::default()
            },
            paused: false,
            from_middleware: false,
        }
    }

    #[test]
    fn loss_and_late_packets_come_from_sequence_numbers_across_the_wrap() {
        let t0 = Instant::now();
        let mut s = StreamState::new(&info(), t0);
        // 65530..=65535, then 0..=9 with 3 and 4 missing and 2 arriving late.
        let mut seqs: Vec<u16> = (65530..=65535).collect();
        seqs.extend([0, 1, 5, 6, 2, 7, 8, 9]);
        for (i, seq) in seqs.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            s.on_packet(*seq, 960 * i as u32, 100, at);
        }
        let (expected, lost) = s.window_loss();
        assert_eq!(expected, 16, "65530..=9 is 16 sequence numbers");
        assert_eq!(lost, 2, "3 and 4 never came");
        assert_eq!(s.window.late, 1);
        assert_eq!(s.totals()["lost"], json!(2));
    }

    #[test]
    fn a_steady_stream_has_no_jitter_and_a_bursty_one_has_some() {
        let t0 = Instant::now();
        let mut steady = StreamState::new(&info(), t0);
        let mut bursty = StreamState::new(&info(), t0);
        for i in 0..50u32 {
            steady.on_packet(
                i as u16,
                i * 960,
                100,
                t0 + Duration::from_millis(20 * u64::from(i)),
            );
            // Pairs arrive together every 40 ms.
            let at = t0 + Duration::from_millis(40 * u64::from(i / 2));
            bursty.on_packet(i as u16, i * 960, 100, at);
        }
        let steady_ms = steady.summary(t0 + Duration::from_secs(1))["jitter_ms"]
            .as_f64()
            .unwrap();
        let bursty_ms = bursty.summary(t0 + Duration::from_secs(1))["jitter_ms"]
            .as_f64()
            .unwrap();
        assert!(steady_ms < 0.1, "{steady_ms}");
        assert!(bursty_ms > 5.0, "{bursty_ms}");
        let summary = steady.summary(t0 + Duration::from_secs(1));
        assert_eq!(summary["packets"], json!(50));
        assert_eq!(summary["bitrate_bps"], json!(40_000.0));
    }
}
