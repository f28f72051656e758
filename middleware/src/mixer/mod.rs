//! The `mixer` middleware: decodes a room's Opus speakers with libopus, mixes them on its own
//! 20 ms clock, and publishes the mix back into the room as a producer, so that one stream can
//! go to a WebRTC peer, a SIP gateway or a phone line. With `mix_minus`, every participant
//! also gets a mix of everyone but themselves.
//!
//! The mixer's clock is the wall clock: each tick emits the frames that are due, so the output
//! stays at exactly 50 packets/s whatever the inputs do. Each speaker goes through an
//! [`input::Input`] that reorders, conceals loss, and keeps its buffer near a fixed depth
//! against clock drift.

pub mod input;
pub mod mix;
pub mod output;

use bytes::Bytes;
use input::{Input, InputCounters, InputTuning};
use output::Output;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::event::Event;
use switchboard_core::middleware::{
    Audience, Metric, MetricKind, Middleware, MiddlewareContext, MiddlewareFactory, ProducerInfo,
    PublishOptions, parse_options,
};
use switchboard_core::rtp_parameters::{MediaKind, mime};
use switchboard_core::{Error, ErrorCode, PeerId, ProducerId, Result};

/// The registered name.
pub const NAME: &str = "mixer";
/// The mixing rate: Opus's native 48 kHz, mono.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame.
pub const FRAME: usize = SAMPLE_RATE as usize / 50;
const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Frames emitted at once after a stall before the clock is reset instead.
const MAX_CATCH_UP: u64 = 5;

/// Who gets the full mix automatically.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum MixAudience {
    /// Nobody: the backend consumes it (e.g. onto a plain-RTP transport to a gateway).
    #[default]
    Nobody,
    /// Every peer.
    Everyone,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Publish the mix of all speakers.
    mix: bool,
    /// Who is subscribed to the full mix automatically.
    mix_audience: MixAudience,
    /// Publish, for every participant with an audio track, a mix of everyone else, subscribed
    /// automatically by that participant only.
    mix_minus: bool,
    /// Opus bitrate of each mixed stream, bits/s.
    bitrate: i32,
    /// Depth each speaker's buffer is held at, ms.
    jitter_ms: u64,
    /// Depth beyond the target at which drift is corrected, ms.
    drift_slack_ms: u64,
    /// Silence after which a speaker stops being concealed and drops out of the mix, ms.
    idle_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        let t = InputTuning::default();
        Self {
            mix: true,
            mix_audience: MixAudience::Nobody,
            mix_minus: false,
            bitrate: 48_000,
            jitter_ms: t.target.as_millis() as u64,
            drift_slack_ms: t.slack.as_millis() as u64,
            idle_ms: t.idle_after.as_millis() as u64,
        }
    }
}

impl Options {
    fn parse(options: &Value) -> Result<Self> {
        let o: Options = parse_options(NAME, options)?;
        if !(6_000..=510_000).contains(&o.bitrate) {
            return Err(Error::new(
                ErrorCode::InvalidParams,
                "mixer options: bitrate must be within 6000..=510000",
            ));
        }
        if o.jitter_ms > 1000 || o.drift_slack_ms < 20 || o.drift_slack_ms > 1000 {
            return Err(Error::new(
                ErrorCode::InvalidParams,
                "mixer options: jitter_ms must be at most 1000, drift_slack_ms within 20..=1000",
            ));
        }
        Ok(o)
    }

    fn tuning(&self) -> InputTuning {
        InputTuning {
            target: Duration::from_millis(self.jitter_ms),
            slack: Duration::from_millis(self.drift_slack_ms),
            idle_after: Duration::from_millis(self.idle_ms.max(self.jitter_ms + 20)),
        }
    }
}

/// Registers as `mixer`.
pub struct MixerFactory;

impl MiddlewareFactory for MixerFactory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        let options = Options::parse(options)?;
        ctx.selection.select_all(Some(MediaKind::Audio));
        Ok(Box::new(Mixer::new(ctx, options)))
    }
}

struct Speaker {
    input: Input,
    payload_type: u8,
    peer: Option<PeerId>,
    frame: Vec<i16>,
    contributing: bool,
}

/// One room's mixer.
struct Mixer {
    ctx: MiddlewareContext,
    options: Options,
    speakers: HashMap<ProducerId, Speaker>,
    /// Counters of speakers that left, so totals never go backwards.
    departed: InputCounters,
    mix: Option<Output>,
    mix_minus: HashMap<PeerId, Output>,
    /// Set once the full mix was published or failed to be, so it is tried once.
    mix_attempted: bool,
    /// The clock: when frame 0 was due, and frames emitted since.
    clock: Option<(Instant, u64)>,
    acc: Vec<i32>,
    minus: Vec<i32>,
    pcm: Vec<i16>,
    frames: u64,
    clock_resets: u64,
    publish_failures: u64,
    busy: Duration,
}

impl Mixer {
    fn new(ctx: MiddlewareContext, options: Options) -> Self {
        Self {
            ctx,
            options,
            speakers: HashMap::new(),
            departed: InputCounters::default(),
            mix: None,
            mix_minus: HashMap::new(),
            mix_attempted: false,
            clock: None,
            acc: vec![0; FRAME],
            minus: vec![0; FRAME],
            pcm: vec![0; FRAME],
            frames: 0,
            clock_resets: 0,
            publish_failures: 0,
            busy: Duration::ZERO,
        }
    }

    fn publish(&mut self, audience: Audience, label: String) -> Option<Output> {
        let ssrc = switchboard_core::negotiation::fresh_ssrc(&[]);
        let published = self.ctx.room.publish(PublishOptions {
            kind: MediaKind::Audio,
            rtp_parameters: output::parameters(ssrc),
            audience: audience.clone(),
            label: label.clone(),
        });
        let output = published.and_then(|track| {
            Output::new(track, ssrc, self.options.bitrate)
                .map_err(|e| Error::new(ErrorCode::MiddlewareFailed, format!("opus encoder: {e}")))
        });
        match output {
            Ok(output) => {
                let peer = match &audience {
                    Audience::Peer(p) => Some(p.to_string()),
                    _ => None,
                };
                self.ctx.room.notify(
                    "mix_published",
                    json!({ "producer": output.producer(), "label": label, "peer": peer }),
                );
                Some(output)
            }
            Err(e) => {
                self.publish_failures += 1;
                tracing::warn!(router = %self.ctx.router, %label, error = %e, "mixer could not publish");
                self.ctx.room.notify(
                    "mix_failed",
                    json!({ "label": label, "message": e.to_string() }),
                );
                None
            }
        }
    }

    fn ensure_mix_minus(&mut self, peer: &PeerId) {
        if self.options.mix_minus && !self.mix_minus.contains_key(peer) {
            let label = format!("mix-minus {peer}");
            if let Some(output) = self.publish(Audience::Peer(peer.clone()), label) {
                self.mix_minus.insert(peer.clone(), output);
            }
        }
    }

    fn drop_mix_minus_if_silent(&mut self, peer: &PeerId) {
        if !self
            .speakers
            .values()
            .any(|s| s.peer.as_ref() == Some(peer))
        {
            // Dropping the output closes its producer.
            self.mix_minus.remove(peer);
        }
    }

    fn remove_speaker(&mut self, id: ProducerId) {
        if let Some(s) = self.speakers.remove(&id) {
            add_counters(&mut self.departed, s.input.counters());
            if let Some(peer) = s.peer {
                self.drop_mix_minus_if_silent(&peer);
            }
        }
    }

    /// Mixes and sends one frame.
    fn mix_frame(&mut self, now: Instant) {
        self.acc.fill(0);
        for s in self.speakers.values_mut() {
            s.contributing = s.input.pull(&mut s.frame, now);
            if s.contributing {
                mix::accumulate(&mut self.acc, &s.frame);
            }
        }
        if let Some(out) = &mut self.mix {
            mix::limit(&self.acc, &mut self.pcm);
            out.send(&self.pcm);
        }
        for (peer, out) in &mut self.mix_minus {
            self.minus.copy_from_slice(&self.acc);
            for s in self.speakers.values() {
                if s.contributing && s.peer.as_ref() == Some(peer) {
                    mix::subtract(&mut self.minus, &s.frame);
                }
            }
            mix::limit(&self.minus, &mut self.pcm);
            out.send(&self.pcm);
        }
        self.frames += 1;
    }

    fn totals(&self) -> InputCounters {
        let mut t = self.departed;
        for s in self.speakers.values() {
            add_counters(&mut t, s.input.counters());
        }
        t
    }
}

impl Middleware for Mixer {
    fn on_producer(&mut self, p: &ProducerInfo) {
        if p.kind != MediaKind::Audio || p.from_middleware {
            return;
        }
        let Some(codec) = p.rtp_parameters.media_codec() else {
            return;
        };
        if !codec.mime_type.eq_ignore_ascii_case(mime::OPUS) {
            tracing::debug!(producer = %p.id, mime = %codec.mime_type, "mixer skips a non-Opus track");
            return;
        }
        match Input::new(self.options.tuning()) {
            Ok(input) => {
                self.speakers.insert(
                    p.id,
                    Speaker {
                        input,
                        payload_type: codec.payload_type,
                        peer: p.peer.clone(),
                        frame: vec![0; FRAME],
                        contributing: false,
                    },
                );
            }
            Err(e) => {
                tracing::error!(producer = %p.id, error = %e, "mixer could not create an Opus decoder");
                return;
            }
        }
        if let Some(peer) = &p.peer {
            self.ensure_mix_minus(peer);
        }
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::ProducerClosed { producer, .. } => self.remove_speaker(*producer),
            Event::PeerLeft { peer, .. } => {
                let gone: Vec<ProducerId> = self
                    .speakers
                    .iter()
                    .filter(|(_, s)| s.peer.as_ref() == Some(peer))
                    .map(|(id, _)| *id)
                    .collect();
                for id in gone {
                    self.remove_speaker(id);
                }
                self.mix_minus.remove(peer);
            }
            _ => {}
        }
    }

    fn on_rtp(&mut self, producer: ProducerId, packet: &rtc_rtp::packet::Packet) {
        if let Some(s) = self.speakers.get_mut(&producer) {
            // Other payload types on the stream (RED, comfort noise) are not Opus.
            if packet.header.payload_type == s.payload_type {
                s.input.push(
                    packet.header.sequence_number,
                    Bytes::clone(&packet.payload),
                    Instant::now(),
                );
            }
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        // Half a frame, so a frame is never more than 10 ms late.
        Some(FRAME_DURATION / 2)
    }

    fn on_tick(&mut self, now: Instant) {
        if !self.mix_attempted {
            self.mix_attempted = true;
            if self.options.mix {
                let audience = match self.options.mix_audience {
                    MixAudience::Nobody => Audience::Nobody,
                    MixAudience::Everyone => Audience::Everyone,
                };
                self.mix = self.publish(audience, "mix".into());
            }
        }
        let (start, emitted) = *self.clock.get_or_insert((now, 0));
        let due = (now.saturating_duration_since(start).as_micros() / FRAME_DURATION.as_micros())
            as u64
            + 1;
        let mut pending = due.saturating_sub(emitted);
        if pending > MAX_CATCH_UP {
            // The thread was held up for long: rather than a burst, pick the clock up from now.
            self.clock_resets += 1;
            self.clock = Some((now, 0));
            pending = 1;
        }
        let started = Instant::now();
        for _ in 0..pending {
            self.mix_frame(now);
        }
        self.busy += started.elapsed();
        if let Some((_, e)) = &mut self.clock {
            *e += pending;
        }
    }

    fn stats(&self) -> Value {
        let speakers: Vec<Value> = self
            .speakers
            .iter()
            .map(|(id, s)| {
                let c = s.input.counters();
                json!({
                    "producer": id,
                    "peer": s.peer,
                    "packets": c.packets,
                    "decoded": c.decoded,
                    "lost": c.lost,
                    "late": c.late,
                    "underruns": c.underruns,
                    "drift_cuts": c.drift_cuts,
                    "decode_errors": c.decode_errors,
                })
            })
            .collect();
        json!({
            "frames": self.frames,
            "mix": self.mix.as_ref().map(|o| json!({ "producer": o.producer(), "frames": o.frames, "errors": o.errors })),
            "mix_minus": self.mix_minus.iter().map(|(peer, o)| json!({ "peer": peer, "producer": o.producer(), "frames": o.frames })).collect::<Vec<_>>(),
            "speakers": speakers,
            "clock_resets": self.clock_resets,
            "publish_failures": self.publish_failures,
            "busy_us_per_frame": (self.busy.as_micros() as u64).checked_div(self.frames).unwrap_or(0),
        })
    }

    fn metrics(&self) -> Vec<Metric> {
        let t = self.totals();
        let counter = |name, help, value: u64| Metric {
            name,
            help,
            kind: MetricKind::Counter,
            labels: Vec::new(),
            value: value as f64,
        };
        vec![
            counter("frames_total", "Frames mixed (20 ms each).", self.frames),
            Metric {
                name: "speakers",
                help: "Opus tracks being mixed.",
                kind: MetricKind::Gauge,
                labels: Vec::new(),
                value: self.speakers.len() as f64,
            },
            Metric {
                name: "busy_seconds_total",
                help: "Time spent decoding, mixing and encoding.",
                kind: MetricKind::Counter,
                labels: Vec::new(),
                value: self.busy.as_secs_f64(),
            },
            counter(
                "packets_lost_total",
                "Speaker packets concealed as lost.",
                t.lost,
            ),
            counter(
                "packets_late_total",
                "Speaker packets that came too late or twice.",
                t.late,
            ),
            counter(
                "underruns_total",
                "Frames concealed because a speaker's buffer ran dry.",
                t.underruns,
            ),
            counter(
                "drift_cuts_total",
                "10 ms cuts against a speaker's fast clock.",
                t.drift_cuts,
            ),
        ]
    }

    fn close(&mut self) {
        // Dropping the outputs closes their producers.
        self.mix = None;
        self.mix_minus.clear();
    }
}

fn add_counters(total: &mut InputCounters, c: InputCounters) {
    total.packets += c.packets;
    total.decoded += c.decoded;
    total.late += c.late;
    total.lost += c.lost;
    total.underruns += c.underruns;
    total.drift_cuts += c.drift_cuts;
    total.decode_errors += c.decode_errors;
}

/// The factory, for registration.
pub fn factory() -> Arc<dyn MiddlewareFactory> {
    Arc::new(MixerFactory)
}
