//! The `recorder` middleware: records a room's producers (or chosen ones) to files that
//! ordinary players open — WebM/Matroska for VP8, VP9, H.264 and Opus, Ogg for a lone Opus
//! track.
//!
//! Per producer, packets go through a [`jitter::JitterBuffer`] (reordering, loss), a
//! [`codec::FrameAssembler`] (depacketizing with `rtc_rtp`'s depacketizers; video is held
//! back until a keyframe, which is requested when recording starts and after loss) and a
//! [`timeline::Timeline`] (RTP time to recording time, synchronised through sender reports).
//! Frames then go to their file's [`recording::Recording`], which interleaves them in time
//! order and writes them with [`mkv::MkvWriter`] or [`ogg_opus::OggOpusWriter`].
//!
//! Files are grouped per peer by default (its audio and video in one file) or per producer.
//! A file is finalized when all its producers close, when the recorder is detached, when the
//! room closes and on graceful shutdown. The backend hears `recording_started`,
//! `recording_finished` and `recording_failed` middleware events.

pub mod codec;
pub mod jitter;
pub mod mkv;
pub mod ogg_opus;
pub mod options;
pub mod recording;
pub mod timeline;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtp::Packet;
use serde_json::{Value, json};
use switchboard_core::event::Event;
use switchboard_core::middleware::{
    Metric, MetricKind, Middleware, MiddlewareContext, MiddlewareFactory, ProducerInfo, RoomAccess,
};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::{ProducerId, Result, RouterId};

use codec::{Codec, Frame, FrameAssembler};
use jitter::{JitterBuffer, Popped};
use options::{Grouping, RecorderOptions};
use recording::{Notice, Opener, Recording, State, Timing};
use timeline::Timeline;

/// Registers as `recorder`.
#[derive(Debug, Default)]
pub struct RecorderFactory;

impl MiddlewareFactory for RecorderFactory {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn merge_options(
        &self,
        configured: &serde_json::Map<String, Value>,
        requested: &Value,
    ) -> Result<Value> {
        options::merge(configured, requested)
    }

    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        let options = RecorderOptions::from_value(options)?;
        if options.producers.is_empty() {
            ctx.selection.select_all(None);
        } else {
            for p in &options.producers {
                ctx.selection.select(*p);
            }
        }
        Ok(Box::new(Recorder::new(
            ctx.router,
            ctx.room,
            options,
            Instant::now(),
        )))
    }
}

/// One producer being recorded.
struct Track {
    codec: Codec,
    payload_type: u8,
    video: bool,
    jitter: JitterBuffer,
    assembler: FrameAssembler,
    timeline: Timeline,
    recording: u64,
    slot: usize,
    ssrc: Option<u32>,
    waiting_keyframe: bool,
    last_request: Option<Instant>,
    frames: Vec<Frame>,
}

/// Counters across the recorder's life.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    packets: u64,
    packets_ignored: u64,
    frames_dropped_waiting_keyframe: u64,
    keyframe_requests: u64,
    finished: u64,
    failed: u64,
    lost: u64,
    late: u64,
    malformed: u64,
}

/// The recorder instance of one room. All methods are synchronous and take the current
/// instant, so tests drive it without a runtime.
pub struct Recorder {
    router: RouterId,
    room: Arc<dyn RoomAccess>,
    options: RecorderOptions,
    epoch: Instant,
    started_unix_ms: u128,
    opener: Opener,
    tracks: HashMap<ProducerId, Track>,
    recordings: HashMap<u64, Recording>,
    next_recording: u64,
    /// The open (still accepting tracks) recording of each group.
    groups: HashMap<String, u64>,
    counters: Counters,
    /// Frames and bytes of recordings no longer held.
    done_frames: u64,
    done_bytes: u64,
    done_dropped: u64,
    recent: Vec<Value>,
    closed: bool,
}

const RECENT_KEPT: usize = 32;

impl Recorder {
    /// A recorder for `router`, started at `now`.
    pub fn new(
        router: RouterId,
        room: Arc<dyn RoomAccess>,
        options: RecorderOptions,
        now: Instant,
    ) -> Self {
        Self {
            router,
            room,
            options,
            epoch: now,
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            opener: recording::open_file,
            tracks: HashMap::new(),
            recordings: HashMap::new(),
            next_recording: 0,
            groups: HashMap::new(),
            counters: Counters::default(),
            done_frames: 0,
            done_bytes: 0,
            done_dropped: 0,
            recent: Vec::new(),
            closed: false,
        }
    }

    /// Replaces how files are opened (tests simulate a full disk with it).
    pub fn with_opener(mut self, opener: Opener) -> Self {
        self.opener = opener;
        self
    }

    fn ns(&self, now: Instant) -> i64 {
        now.saturating_duration_since(self.epoch).as_nanos() as i64
    }

    fn group_key(&self, p: &ProducerInfo) -> String {
        let raw = match (self.options.group, &p.peer) {
            (Grouping::Peer, Some(peer)) => format!("peer-{peer}"),
            (Grouping::Peer, None) => format!("transport-{}", p.transport),
            (Grouping::Producer, _) => format!("producer-{}", p.id),
        };
        // The key becomes a file name: keep it to safe characters.
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    fn recording_for(&mut self, key: String) -> u64 {
        if let Some(&i) = self.groups.get(&key)
            && self
                .recordings
                .get(&i)
                .is_some_and(Recording::accepts_tracks)
        {
            return i;
        }
        let n = self.next_recording;
        self.next_recording += 1;
        let path: PathBuf = self
            .options
            .directory
            .join(self.router.to_string())
            .join(format!("{key}-{}-{n}", self.started_unix_ms));
        let timing = Timing {
            mux_delay_ns: self.options.mux_delay_ms as i64 * 1_000_000,
            start_timeout_ns: self.options.start_timeout_ms as i64 * 1_000_000,
            max_buffered_bytes: self.options.max_buffered_bytes,
        };
        self.recordings.insert(
            n,
            Recording::new(path, self.options.format, timing, self.opener),
        );
        self.groups.insert(key, n);
        n
    }

    /// A producer of the room (present at attach time, or new).
    pub fn add_producer(&mut self, p: &ProducerInfo, now: Instant) {
        if self.closed || self.tracks.contains_key(&p.id) {
            return;
        }
        if !self.options.producers.is_empty() && !self.options.producers.contains(&p.id) {
            return;
        }
        let Some(codec_params) = p.rtp_parameters.media_codec() else {
            return;
        };
        let Some(codec) = Codec::from_mime(&codec_params.mime_type) else {
            tracing::info!(producer = %p.id, mime = %codec_params.mime_type, "recorder: codec not recordable, skipped");
            return;
        };
        let key = self.group_key(p);
        let rec = self.recording_for(key);
        let channels = codec_params
            .channels
            .unwrap_or(if codec.is_video() { 0 } else { 2 });
        let Some(recording) = self.recordings.get_mut(&rec) else {
            return;
        };
        let slot = recording.add_track(p.id, codec, channels);
        let mut track = Track {
            codec,
            payload_type: codec_params.payload_type,
            video: p.kind == MediaKind::Video,
            jitter: JitterBuffer::new(self.options.jitter(), self.options.max_jitter_packets),
            assembler: FrameAssembler::new(codec),
            timeline: Timeline::new(codec_params.clock_rate),
            recording: rec,
            slot,
            ssrc: None,
            waiting_keyframe: codec.is_video(),
            last_request: None,
            frames: Vec::new(),
        };
        if track.waiting_keyframe {
            self.request_keyframe(p.id, &mut track, now);
        }
        self.tracks.insert(p.id, track);
    }

    fn request_keyframe(&mut self, id: ProducerId, track: &mut Track, now: Instant) {
        let retry = Duration::from_millis(self.options.keyframe_retry_ms);
        if track
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < retry)
        {
            return;
        }
        track.last_request = Some(now);
        self.counters.keyframe_requests += 1;
        self.room.request_keyframe(id);
    }

    /// An RTP packet of a recorded producer, arrived at `now`.
    pub fn rtp(&mut self, producer: ProducerId, packet: &Packet, now: Instant) {
        let Some(mut track) = self.tracks.remove(&producer) else {
            return;
        };
        if packet.header.payload_type != track.payload_type {
            // RTX or an unnegotiated payload type.
            self.counters.packets_ignored += 1;
            self.tracks.insert(producer, track);
            return;
        }
        self.counters.packets += 1;
        let ssrc = packet.header.ssrc;
        if track.ssrc.is_some_and(|s| s != ssrc) {
            // A new stream (the sender restarted): finish what the old one left, start over.
            while let Some(p) = track.jitter.flush() {
                self.feed(producer, &mut track, p, now);
            }
            track.frames.extend(track.assembler.flush());
            track.jitter.reset();
            track.assembler = FrameAssembler::new(track.codec);
            if track.video {
                track.waiting_keyframe = true;
                self.request_keyframe(producer, &mut track, now);
            }
        }
        track.ssrc = Some(ssrc);
        track.jitter.push(packet.clone(), now);
        while let Some(p) = track.jitter.pop(now) {
            self.feed(producer, &mut track, p, now);
        }
        self.deliver(producer, &mut track, now);
        self.tracks.insert(producer, track);
    }

    fn feed(&mut self, producer: ProducerId, track: &mut Track, popped: Popped, now: Instant) {
        match popped {
            Popped::Packet(p, arrived) => {
                let arrival_ns = self.ns(arrived);
                track.assembler.push(
                    p.header.ssrc,
                    p.header.timestamp,
                    p.header.marker,
                    &p.payload,
                    arrival_ns,
                    &mut track.frames,
                );
            }
            Popped::Lost(_) => {
                track.assembler.on_loss();
                if track.video {
                    // The next frames reference what was lost: wait for a keyframe.
                    track.waiting_keyframe = true;
                    self.request_keyframe(producer, track, now);
                }
            }
        }
    }

    fn deliver(&mut self, producer: ProducerId, track: &mut Track, now: Instant) {
        if track.frames.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut track.frames);
        let Some(rec) = self.recordings.get_mut(&track.recording) else {
            return;
        };
        let mut want_keyframe = false;
        for frame in frames {
            if track.video {
                if track.waiting_keyframe && !frame.keyframe {
                    self.counters.frames_dropped_waiting_keyframe += 1;
                    want_keyframe = true;
                    continue;
                }
                if frame.keyframe {
                    track.waiting_keyframe = false;
                    let info = track.assembler.keyframe_info(&frame);
                    rec.set_keyframe_info(track.slot, info.size, info.avcc);
                }
            }
            let min_step = if track.video { 1_000_000 } else { 0 };
            let t = track
                .timeline
                .map(frame.ssrc, frame.rtp_ts, frame.arrival_ns, min_step);
            rec.push(track.slot, t, frame.arrival_ns, frame.data, frame.keyframe);
        }
        if want_keyframe {
            self.request_keyframe(producer, track, now);
        }
    }

    /// An RTCP compound packet from a recorded producer's sender.
    pub fn rtcp(&mut self, producer: ProducerId, data: &Bytes, now: Instant) {
        let arrival_ns = self.ns(now);
        let Some(track) = self.tracks.get_mut(&producer) else {
            return;
        };
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut data.clone()) else {
            return;
        };
        let Some(rec) = self.recordings.get_mut(&track.recording) else {
            return;
        };
        for p in &packets {
            let reports: Vec<&SenderReport> =
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                    vec![sr]
                } else if let Some(c) = p
                    .as_any()
                    .downcast_ref::<rtc_rtcp::compound_packet::CompoundPacket>()
                {
                    c.0.iter()
                        .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                        .collect()
                } else {
                    Vec::new()
                };
            for sr in reports {
                track.timeline.on_sender_report(
                    sr.ssrc,
                    sr.ntp_time,
                    sr.rtp_time,
                    arrival_ns,
                    &mut rec.clock,
                );
            }
        }
    }

    /// Periodic work: packets whose wait is over, keyframe retries, writing due frames.
    pub fn tick(&mut self, now: Instant) {
        let ids: Vec<ProducerId> = self.tracks.keys().copied().collect();
        for id in ids {
            let Some(mut track) = self.tracks.remove(&id) else {
                continue;
            };
            while let Some(p) = track.jitter.pop(now) {
                self.feed(id, &mut track, p, now);
            }
            self.deliver(id, &mut track, now);
            if track.waiting_keyframe {
                self.request_keyframe(id, &mut track, now);
            }
            self.tracks.insert(id, track);
        }
        let now_ns = self.ns(now);
        let mut notices = Vec::new();
        for rec in self.recordings.values_mut() {
            rec.pump(now_ns, &mut notices);
        }
        self.publish(notices);
        self.collect_done();
    }

    /// A producer closed: its track ends; a file whose tracks all ended is finalized.
    pub fn producer_closed(&mut self, producer: ProducerId, now: Instant) {
        let Some(mut track) = self.tracks.remove(&producer) else {
            return;
        };
        while let Some(p) = track.jitter.flush() {
            self.feed(producer, &mut track, p, now);
        }
        track.frames.extend(track.assembler.flush());
        self.deliver(producer, &mut track, now);
        self.counters.lost += track.jitter.lost;
        self.counters.late += track.jitter.late;
        self.counters.malformed += track.assembler.malformed;
        let mut notices = Vec::new();
        if let Some(rec) = self.recordings.get_mut(&track.recording) {
            if let Some(slot) = rec.slots.get_mut(track.slot) {
                slot.ended = true;
            }
            if rec.slots.iter().all(|s| s.ended) {
                rec.finish(&mut notices);
            }
        }
        self.publish(notices);
        self.collect_done();
    }

    /// Stops recording: every file is finalized. Later calls do nothing.
    pub fn stop(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let ids: Vec<ProducerId> = self.tracks.keys().copied().collect();
        for id in ids {
            self.producer_closed(id, now);
        }
        let mut notices = Vec::new();
        for rec in self.recordings.values_mut() {
            rec.finish(&mut notices);
        }
        self.publish(notices);
        self.collect_done();
        self.closed = true;
    }

    fn publish(&mut self, notices: Vec<Notice>) {
        for (name, data) in notices {
            match name {
                "recording_finished" => self.counters.finished += 1,
                "recording_failed" => self.counters.failed += 1,
                _ => {}
            }
            tracing::info!(router = %self.router, event = name, %data, "recorder");
            self.room.notify(name, data);
        }
    }

    /// Drops finished and failed files no track refers to any more (their totals stay).
    fn collect_done(&mut self) {
        let referenced: std::collections::HashSet<u64> =
            self.tracks.values().map(|t| t.recording).collect();
        let done: Vec<u64> = self
            .recordings
            .iter()
            .filter(|(id, r)| {
                matches!(r.state(), State::Finished | State::Failed) && !referenced.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(rec) = self.recordings.remove(&id) {
                self.done_frames += rec.frames;
                self.done_bytes += rec.bytes();
                self.done_dropped += rec.dropped;
                if !rec.slots.is_empty() {
                    self.recent.push(rec.stats());
                    if self.recent.len() > RECENT_KEPT {
                        self.recent.remove(0);
                    }
                }
            }
        }
    }

    fn totals(&self) -> (u64, u64, u64, u64, u64) {
        let mut frames = self.done_frames;
        let mut bytes = self.done_bytes;
        let mut dropped = self.done_dropped;
        for r in self.recordings.values() {
            frames += r.frames;
            bytes += r.bytes();
            dropped += r.dropped;
        }
        let lost = self.counters.lost + self.tracks.values().map(|t| t.jitter.lost).sum::<u64>();
        let late = self.counters.late + self.tracks.values().map(|t| t.jitter.late).sum::<u64>();
        (frames, bytes, dropped, lost, late)
    }

    /// Statistics for `router.stats`.
    pub fn stats_value(&self) -> Value {
        let (frames, bytes, dropped, lost, late) = self.totals();
        let active: Vec<Value> = self
            .recordings
            .values()
            .filter(|r| matches!(r.state(), State::Pending | State::Writing))
            .map(Recording::stats)
            .collect();
        json!({
            "directory": self.options.directory,
            "recordings": active,
            "finished": self.recent,
            "frames_written": frames,
            "bytes_written": bytes,
            "frames_dropped": dropped + self.counters.frames_dropped_waiting_keyframe,
            "keyframe_requests": self.counters.keyframe_requests,
            "packets": self.counters.packets,
            "packets_ignored": self.counters.packets_ignored,
            "packets_lost": lost,
            "packets_late": late,
            "packets_malformed": self.counters.malformed
                + self.tracks.values().map(|t| t.assembler.malformed).sum::<u64>(),
            "recordings_finished": self.counters.finished,
            "recordings_failed": self.counters.failed,
        })
    }

    fn metrics_list(&self) -> Vec<Metric> {
        let (frames, bytes, dropped, lost, late) = self.totals();
        let active = self
            .recordings
            .values()
            .filter(|r| r.state() == State::Writing)
            .count();
        let c = |name, help, value: u64| Metric {
            name,
            help,
            kind: MetricKind::Counter,
            labels: Vec::new(),
            value: value as f64,
        };
        vec![
            c(
                "frames_written_total",
                "Frames written to recordings.",
                frames,
            ),
            c("bytes_written_total", "Bytes written to recordings.", bytes),
            c(
                "frames_dropped_total",
                "Frames not recorded (waiting for a keyframe, failed file, memory limit).",
                dropped + self.counters.frames_dropped_waiting_keyframe,
            ),
            c(
                "keyframe_requests_total",
                "Keyframe requests sent by the recorder.",
                self.counters.keyframe_requests,
            ),
            c(
                "packets_lost_total",
                "RTP packets that never arrived in time.",
                lost,
            ),
            c(
                "packets_late_total",
                "RTP packets that arrived too late to be used.",
                late,
            ),
            c(
                "recordings_finished_total",
                "Recordings finalized.",
                self.counters.finished,
            ),
            c(
                "recordings_failed_total",
                "Recordings that failed (unwritable directory, disk full).",
                self.counters.failed,
            ),
            Metric {
                name: "recordings_active",
                help: "Files being written.",
                kind: MetricKind::Gauge,
                labels: Vec::new(),
                value: active as f64,
            },
        ]
    }
}

impl Middleware for Recorder {
    fn on_producer(&mut self, producer: &ProducerInfo) {
        self.add_producer(producer, Instant::now());
    }

    fn on_event(&mut self, event: &Event) {
        let now = Instant::now();
        match event {
            Event::ProducerClosed { producer, .. } => self.producer_closed(*producer, now),
            Event::ProducerPaused {
                producer,
                paused: false,
                ..
            } => {
                // Resumed: video restarts from a keyframe.
                if let Some(mut track) = self.tracks.remove(producer) {
                    if track.video {
                        track.waiting_keyframe = true;
                        track.last_request = None;
                        self.request_keyframe(*producer, &mut track, now);
                    }
                    self.tracks.insert(*producer, track);
                }
            }
            Event::RouterClosed { .. } => self.stop(now),
            _ => {}
        }
    }

    fn on_rtp(&mut self, producer: ProducerId, packet: &Packet) {
        self.rtp(producer, packet, Instant::now());
    }

    fn on_rtcp(&mut self, producer: ProducerId, packet: &Bytes) {
        self.rtcp(producer, packet, Instant::now());
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(50))
    }

    fn on_tick(&mut self, now: Instant) {
        self.tick(now);
    }

    fn stats(&self) -> Value {
        self.stats_value()
    }

    fn metrics(&self) -> Vec<Metric> {
        self.metrics_list()
    }

    fn close(&mut self) {
        self.stop(Instant::now());
    }
}

#[cfg(test)]
mod tests;
