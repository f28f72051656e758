//! # A template for your own Switchboard middleware
//!
//! Copy this crate, rename it, and replace [`TalkingNow`] with what your team needs. It shows
//! the whole shape of a middleware in one file:
//!
//! - a [`MiddlewareFactory`] registered once by name (`talking_now`), creating one instance
//!   per room from JSON options;
//! - the instance choosing which producers' packets it wants ([`Selection`]: here every
//!   audio producer) and learning each producer's parameters before its first packet
//!   ([`Middleware::on_producer`]);
//! - per-packet work on its own thread ([`Middleware::on_rtp`]), never holding up the room;
//! - telling the backend something with [`RoomAccess::notify`] (a `middleware` event);
//! - statistics for `router.stats` and metrics for `/metrics`.
//!
//! The detector reads the audio-level header extension (RFC 6464) that browsers send with
//! Opus: a level in -dBov (0 is loudest, 127 silence). A producer is *talking* once its level
//! stayed at or above `threshold_dbov` (numerically at or below) for `start_ms` of media, and
//! stops after `stop_ms` below it. Time is taken from RTP timestamps, so the decision does
//! not depend on when packets reach the middleware. Each change is one event:
//!
//! ```json
//! { "event": "middleware", "middleware": "talking_now", "name": "talking",
//!   "data": { "producer": "…", "peer": "alice", "talking": true } }
//! ```
//!
//! `examples/switchboard-talking.rs` is a server binary with it registered next to the
//! built-ins; `docs/middleware.md` walks through all of it.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use switchboard_core::middleware::deps::rtc_rtp::Packet;
use switchboard_core::middleware::deps::serde_json::{Value, json};
use switchboard_core::middleware::{
    Metric, MetricKind, Middleware, MiddlewareContext, MiddlewareFactory, ProducerInfo, RoomAccess,
    Selection,
};
use switchboard_core::rtp_parameters::{MediaKind, extension_uri};
use switchboard_core::{Error, PeerId, ProducerId, Result};

/// The name the backend attaches it by (`middleware.attach`, `middleware.attach = [...]`).
pub const NAME: &str = "talking_now";

/// Options, all optional.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The loudest level that still counts as silence, in -dBov (0–127); lower is louder.
    pub threshold_dbov: u8,
    /// Media time above the threshold before a producer counts as talking.
    pub start_ms: u32,
    /// Media time below the threshold before it stops.
    pub stop_ms: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            threshold_dbov: 50,
            start_ms: 200,
            stop_ms: 800,
        }
    }
}

impl Options {
    /// Reads options from JSON (`null` for the defaults); unknown keys are errors.
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut o = Self::default();
        let Some(map) = v.as_object() else {
            return if v.is_null() {
                Ok(o)
            } else {
                Err(Error::invalid("talking_now options must be an object"))
            };
        };
        for (key, value) in map {
            let n = value
                .as_u64()
                .ok_or_else(|| Error::invalid(format!("talking_now: {key} must be a number")))?;
            match key.as_str() {
                "threshold_dbov" if n <= 127 => o.threshold_dbov = n as u8,
                "start_ms" => o.start_ms = n.min(u64::from(u32::MAX)) as u32,
                "stop_ms" => o.stop_ms = n.min(u64::from(u32::MAX)) as u32,
                "threshold_dbov" => {
                    return Err(Error::invalid("talking_now: threshold_dbov is 0 to 127"));
                }
                other => {
                    return Err(Error::invalid(format!(
                        "talking_now: unknown option {other:?}"
                    )));
                }
            }
        }
        Ok(o)
    }
}

/// The factory: register it with `Arc::new(TalkingNow)`.
#[derive(Default)]
pub struct TalkingNow;

impl MiddlewareFactory for TalkingNow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        let options = Options::from_json(options)?;
        Ok(Box::new(Detector::new(ctx.room, &ctx.selection, options)))
    }
}

/// One room's detector.
pub struct Detector {
    room: Arc<dyn RoomAccess>,
    options: Options,
    producers: HashMap<ProducerId, Track>,
    transitions: u64,
}

/// What the detector knows about one audio producer.
struct Track {
    peer: Option<PeerId>,
    /// The audio-level extension's id on this producer, if it sends one.
    extension: Option<u8>,
    clock_rate: u32,
    talking: bool,
    /// RTP timestamp where the current run of loud (or quiet) packets began.
    run_start: Option<u32>,
}

impl Detector {
    /// A detector for one room; selects every audio producer.
    pub fn new(room: Arc<dyn RoomAccess>, selection: &Selection, options: Options) -> Self {
        selection.select_all(Some(MediaKind::Audio));
        Self {
            room,
            options,
            producers: HashMap::new(),
            transitions: 0,
        }
    }
}

/// The level in an RFC 6464 one-byte element: the low 7 bits, in -dBov.
fn level(packet: &Packet, id: u8) -> Option<u8> {
    let value = packet.header.get_extension(id)?;
    value.first().map(|b| b & 0x7f)
}

impl Middleware for Detector {
    fn on_producer(&mut self, producer: &ProducerInfo) {
        if producer.kind != MediaKind::Audio || producer.from_middleware {
            return;
        }
        let params = &producer.rtp_parameters;
        self.producers.insert(
            producer.id,
            Track {
                peer: producer.peer.clone(),
                extension: params.extension_id(extension_uri::AUDIO_LEVEL),
                clock_rate: params.media_codec().map_or(48_000, |c| c.clock_rate).max(1),
                talking: false,
                run_start: None,
            },
        );
    }

    fn on_event(&mut self, event: &switchboard_core::event::Event) {
        if let switchboard_core::event::Event::ProducerClosed { producer, .. } = event
            && let Some(track) = self.producers.remove(producer)
            && track.talking
        {
            self.room.notify(
                "talking",
                json!({ "producer": producer, "peer": track.peer, "talking": false }),
            );
        }
    }

    fn on_rtp(&mut self, producer: ProducerId, packet: &Packet) {
        let Some(track) = self.producers.get_mut(&producer) else {
            return;
        };
        let Some(level) = track.extension.and_then(|id| level(packet, id)) else {
            return;
        };
        let loud = level <= self.options.threshold_dbov;
        let ts = packet.header.timestamp;
        if loud == track.talking {
            // Nothing to change: any run towards a change is broken.
            track.run_start = None;
            return;
        }
        let start = *track.run_start.get_or_insert(ts);
        let ms = u64::from(ts.wrapping_sub(start)) * 1000 / u64::from(track.clock_rate);
        let needed = if loud {
            self.options.start_ms
        } else {
            self.options.stop_ms
        };
        if ms >= u64::from(needed) {
            track.talking = loud;
            track.run_start = None;
            self.transitions += 1;
            self.room.notify(
                "talking",
                json!({ "producer": producer, "peer": track.peer, "talking": loud }),
            );
        }
    }

    fn stats(&self) -> Value {
        let talking: Vec<String> = self
            .producers
            .iter()
            .filter(|(_, t)| t.talking)
            .map(|(id, _)| id.to_string())
            .collect();
        json!({ "producers": self.producers.len(), "talking": talking, "transitions": self.transitions })
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric {
                name: "talking",
                help: "Producers talking now.",
                kind: MetricKind::Gauge,
                labels: vec![],
                value: self.producers.values().filter(|t| t.talking).count() as f64,
            },
            Metric {
                name: "transitions_total",
                help: "Times a producer started or stopped talking.",
                kind: MetricKind::Counter,
                labels: vec![],
                value: self.transitions as f64,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use switchboard_core::TransportId;
    use switchboard_core::middleware::deps::bytes::Bytes;
    use switchboard_core::middleware::deps::rtc_rtp::header::{Extension, Header};
    use switchboard_core::middleware::{PublishOptions, PublishedTrack};
    use switchboard_core::rtp_parameters::{
        RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtensionParameters, RtpParameters,
    };

    /// A room that only records notifications.
    #[derive(Default)]
    struct Room(Mutex<Vec<(String, Value)>>);

    impl RoomAccess for Room {
        fn request_keyframe(&self, _: ProducerId) {}
        fn publish(&self, _: PublishOptions) -> Result<Box<dyn PublishedTrack>> {
            Err(Error::invalid("not in this test"))
        }
        fn notify(&self, name: &str, data: Value) {
            self.0.lock().unwrap().push((name.to_owned(), data));
        }
    }

    fn producer() -> ProducerInfo {
        ProducerInfo {
            id: ProducerId::new(),
            transport: TransportId::new(),
            peer: Some(PeerId("alice".into())),
            kind: MediaKind::Audio,
            rtp_parameters: RtpParameters {
                mid: None,
                codecs: vec![RtpCodecParameters {
                    mime_type: "audio/opus".into(),
                    payload_type: 111,
                    clock_rate: 48_000,
                    channels: Some(2),
                    parameters: Default::default(),
                    rtcp_feedback: vec![],
                }],
                header_extensions: vec![RtpHeaderExtensionParameters {
                    uri: extension_uri::AUDIO_LEVEL.into(),
                    id: 1,
                    encrypt: false,
                }],
                encodings: vec![RtpEncodingParameters {
                    ssrc: Some(1),
                    ..Default::default()
                }],
                rtcp: Default::default(),
            },
            paused: false,
            from_middleware: false,
        }
    }

    /// One 20 ms Opus packet with an audio level.
    fn packet(seq: u16, level: u8) -> Packet {
        Packet {
            header: Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                timestamp: u32::from(seq) * 960,
                ssrc: 1,
                extension: true,
                extension_profile: 0xBEDE,
                extensions: vec![Extension {
                    id: 1,
                    payload: Bytes::from(vec![level]),
                }],
                ..Default::default()
            },
            payload: Bytes::from_static(b"opus"),
        }
    }

    #[test]
    fn talking_starts_and_stops_with_hysteresis_and_is_notified_once_each() {
        let room = Arc::new(Room::default());
        let selection = Selection::default();
        let mut d = Detector::new(room.clone(), &selection, Options::default());
        assert!(selection.matches(ProducerId::new(), MediaKind::Audio));
        assert!(!selection.matches(ProducerId::new(), MediaKind::Video));
        let p = producer();
        d.on_producer(&p);
        let mut seq = 0;
        let mut send = |d: &mut Detector, n: u16, level: u8| {
            for _ in 0..n {
                d.on_rtp(p.id, &packet(seq, level));
                seq += 1;
            }
        };
        send(&mut d, 50, 127); // a second of silence
        send(&mut d, 5, 20); // a 100 ms blip: too short
        send(&mut d, 5, 127);
        assert!(room.0.lock().unwrap().is_empty());
        send(&mut d, 20, 30); // 400 ms of speech: talking after 200 ms
        send(&mut d, 20, 120); // 400 ms pause: still talking
        send(&mut d, 10, 30);
        send(&mut d, 60, 120); // 1.2 s of quiet: stopped after 800 ms
        let notes = room.0.lock().unwrap().clone();
        let talking: Vec<bool> = notes
            .iter()
            .map(|(name, data)| {
                assert_eq!(name, "talking");
                assert_eq!(data["peer"], "alice");
                data["talking"].as_bool().unwrap()
            })
            .collect();
        assert_eq!(talking, [true, false]);
        assert_eq!(d.stats()["transitions"], 2);
        assert_eq!(d.metrics()[1].value, 2.0);
    }

    #[test]
    fn bad_options_are_refused() {
        assert_eq!(
            Options::from_json(&json!({ "start_ms": 100 }))
                .unwrap()
                .start_ms,
            100
        );
        assert!(Options::from_json(&json!({ "threshold_dbov": 200 })).is_err());
        assert!(Options::from_json(&json!({ "nope": 1 })).is_err());
        assert!(Options::from_json(&json!("loud")).is_err());
    }
}
