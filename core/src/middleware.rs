//! Middleware: code that sees a room's media and events (logging, recording, mixing, yours).
//!
//! A [`MiddlewareFactory`] is registered once by name in a [`MiddlewareRegistry`]; a router
//! creates a [`Middleware`] instance from it when the middleware is attached to the room (over
//! RPC, or for every room from the configuration).
//!
//! Each instance runs on a thread of its own, fed through a queue: media goes through a bounded
//! queue that drops (and counts) when the middleware falls behind, so a slow middleware never
//! stalls forwarding; events and producer announcements are never dropped. A panicking
//! middleware is detached and counted; the room carries on.
//!
//! The instance reaches back into its room through [`RoomAccess`]: it can ask a producer for a
//! keyframe, publish tracks of its own as producers of the room (a mixer's output), and tell the
//! backend things with [`RoomAccess::notify`].

use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::id::{PeerId, ProducerId, RouterId, TransportId, WorkerId};
use crate::rtp_parameters::{MediaKind, RtpParameters};
use bytes::Bytes;
use rtc_rtp::Packet;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The crates that appear in this API's signatures (packets, payloads, options), re-exported so
/// that a middleware crate can depend on `switchboard-core` alone, at the versions the server
/// was built with.
pub mod deps {
    pub use bytes;
    pub use rtc_rtp;
    /// `rtc_shared::marshal::{Marshal, Unmarshal}` turn packets into bytes and back.
    pub use rtc_shared;
    pub use serde_json;
}

/// What a middleware instance is told about the room it joins.
#[derive(Clone)]
pub struct MiddlewareContext {
    /// The room.
    pub router: RouterId,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// The way back into the room. Usable from any thread.
    pub room: Arc<dyn RoomAccess>,
    /// Which producers' packets this instance receives; the router consults it per packet,
    /// so it works without a round trip through the instance's queue.
    pub selection: Arc<Selection>,
}

impl std::fmt::Debug for MiddlewareContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiddlewareContext")
            .field("router", &self.router)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// A producer of the room, as a middleware sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProducerInfo {
    /// The producer.
    pub id: ProducerId,
    /// The transport it arrives on.
    pub transport: TransportId,
    /// The peer publishing it, if it belongs to one.
    pub peer: Option<PeerId>,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its codecs (payload types, clock rates, fmtp), header extensions and encodings, as
    /// received: the payload types in packets handed to [`Middleware::on_rtp`] are these.
    pub rtp_parameters: RtpParameters,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether a middleware published it (a mixer's output): lets a mixer leave its own output
    /// out of its mix.
    pub from_middleware: bool,
}

/// One attached middleware instance. It lives on its own thread: every method may take its
/// time without holding up the room (packets that arrive meanwhile queue, and beyond the
/// queue's capacity are dropped and counted).
pub trait Middleware: Send {
    /// A producer exists: called once for every producer present when the middleware is
    /// attached, then for every new one, always before its first packet. Its closure arrives
    /// as [`Event::ProducerClosed`].
    fn on_producer(&mut self, _producer: &ProducerInfo) {}
    /// A room event (peer joined, producer closed, ...).
    fn on_event(&mut self, _event: &Event) {}
    /// An RTP packet of a selected producer, as received (before any rewriting).
    fn on_rtp(&mut self, _producer: ProducerId, _packet: &Packet) {}
    /// An RTCP compound packet a selected producer's sender sent (sender reports, SDES).
    fn on_rtcp(&mut self, _producer: ProducerId, _packet: &Bytes) {}
    /// How often [`Middleware::on_tick`] runs; `None` (the default) for never. Read once, when
    /// the instance starts.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
    /// A periodic call for clocked work: a mixer's frame clock, a logger's summaries.
    fn on_tick(&mut self, _now: Instant) {}
    /// Statistics for `router.stats`. Refreshed after every tick and once a second.
    fn stats(&self) -> Value {
        Value::Null
    }
    /// The instance's own metrics for `/metrics`, refreshed like [`Middleware::stats`]. Each is
    /// exported as `switchboard_middleware_<middleware>_<name>` with a `router` label.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
    /// Detached, or the room closed, or the server is shutting down: finish files and release
    /// resources here. Everything queued before the close has been delivered.
    fn close(&mut self) {}
}

/// One sample of a middleware's own metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Name within the middleware, e.g. `frames_written_total`. Lower-case, digits and `_`.
    pub name: &'static str,
    /// One line of help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Extra labels beyond `router`, e.g. `[("producer", id)]`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// The Prometheus type of a [`Metric`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Which producers' packets a middleware instance receives. Shared between the instance and
/// its router; changes apply to the next packet.
#[derive(Debug, Default)]
pub struct Selection {
    all: std::sync::atomic::AtomicU8,
    producers: dashmap::DashSet<ProducerId>,
}

const ALL_AUDIO: u8 = 1;
const ALL_VIDEO: u8 = 2;

impl Selection {
    /// Selects every producer of `kind`, present and future (`None`: every producer).
    pub fn select_all(&self, kind: Option<MediaKind>) {
        let bits = match kind {
            Some(MediaKind::Audio) => ALL_AUDIO,
            Some(MediaKind::Video) => ALL_VIDEO,
            None => ALL_AUDIO | ALL_VIDEO,
        };
        self.all
            .fetch_or(bits, std::sync::atomic::Ordering::Relaxed);
    }

    /// Selects one producer.
    pub fn select(&self, producer: ProducerId) {
        self.producers.insert(producer);
    }

    /// Stops selecting one producer (unless its kind is selected as a whole).
    pub fn deselect(&self, producer: ProducerId) {
        self.producers.remove(&producer);
    }

    /// Whether packets of this producer go to the instance.
    pub fn matches(&self, producer: ProducerId, kind: MediaKind) -> bool {
        let all = self.all.load(std::sync::atomic::Ordering::Relaxed);
        let bit = match kind {
            MediaKind::Audio => ALL_AUDIO,
            MediaKind::Video => ALL_VIDEO,
        };
        all & bit != 0 || (!self.producers.is_empty() && self.producers.contains(&producer))
    }
}

/// What a middleware asks of its room. Implemented by the server; callable from the
/// middleware's thread. Calls that need the room's answer block until it comes (bounded by the
/// server's request timeout), so call them from the middleware's own methods, never from a
/// worker thread.
pub trait RoomAccess: Send + Sync {
    /// Asks a producer's sender for a keyframe (a PLI or FIR on its transport, throttled like
    /// any other keyframe request).
    fn request_keyframe(&self, producer: ProducerId);
    /// Publishes a track of the middleware's own as a producer of the room. Subscribers get it
    /// like any other producer (automatic subscription included, limited to
    /// [`PublishOptions::audience`]).
    fn publish(&self, options: PublishOptions) -> Result<Box<dyn PublishedTrack>>;
    /// Sends the backend a `middleware` event for this room: `name` says what happened
    /// (`recording_finished`, `recording_failed`, ...), `data` carries the details.
    fn notify(&self, name: &str, data: Value);
    /// What the room's subscribers asked of one producer's stream so far (NACKs, PLIs, FIRs,
    /// retransmissions, keyframe requests passed on to its sender), summed over its consumers
    /// open now. The forwarder answers that feedback itself, so a middleware never sees it as
    /// packets. `None` when the producer is gone or the room did not answer in time. Blocks
    /// like [`RoomAccess::publish`].
    fn feedback(&self, _producer: ProducerId) -> Option<StreamFeedback> {
        None
    }
}

/// Subscriber feedback about one producer's stream, as counted by the forwarder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamFeedback {
    /// NACK messages its subscribers sent.
    pub nacks: u64,
    /// Packets retransmitted in answer.
    pub retransmitted: u64,
    /// PLIs its subscribers sent.
    pub plis: u64,
    /// FIRs its subscribers sent.
    pub firs: u64,
    /// Keyframe requests sent on to the producer's sender (after throttling).
    pub keyframe_requests_sent: u64,
}

impl StreamFeedback {
    /// What was counted since `earlier`. A consumer that closed takes its counts out of the
    /// sum, so a count may have gone down: that reads as zero.
    pub fn since(&self, earlier: &StreamFeedback) -> StreamFeedback {
        StreamFeedback {
            nacks: self.nacks.saturating_sub(earlier.nacks),
            retransmitted: self.retransmitted.saturating_sub(earlier.retransmitted),
            plis: self.plis.saturating_sub(earlier.plis),
            firs: self.firs.saturating_sub(earlier.firs),
            keyframe_requests_sent: self
                .keyframe_requests_sent
                .saturating_sub(earlier.keyframe_requests_sent),
        }
    }
}

/// A track a middleware publishes into its room.
#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// Audio or video.
    pub kind: MediaKind,
    /// What the packets will carry: one media codec with its payload type, an SSRC in the
    /// single encoding.
    pub rtp_parameters: RtpParameters,
    /// Who is subscribed to it automatically (in rooms with automatic subscription). The
    /// backend can consume it explicitly either way.
    pub audience: Audience,
    /// A label shown in dumps and events, e.g. `mix` or `mix-minus alice`.
    pub label: String,
}

/// Who receives a middleware's published track automatically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every peer, like a peer's own track.
    Everyone,
    /// Only this peer (a mix-minus made for that peer).
    Peer(PeerId),
    /// Nobody: the backend consumes it where it wants it (a mix for a SIP gateway).
    Nobody,
}

/// The middleware's handle on a track it published. Dropping it closes the producer.
pub trait PublishedTrack: Send {
    /// The producer's id.
    fn id(&self) -> ProducerId;
    /// Sends one RTP packet, as if the producer's transport had received it. Never blocks: a
    /// full queue drops the packet and says so.
    fn send_rtp(&self, packet: Bytes) -> Result<()>;
}

/// Reads a middleware's options: `null` gives `T`'s defaults; anything else must deserialize
/// into `T`, or the attach fails with an `invalid_params` error naming the middleware.
pub fn parse_options<T: serde::de::DeserializeOwned + Default>(
    middleware: &str,
    options: &Value,
) -> Result<T> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(options.clone())
        .map_err(|e| Error::invalid(format!("{middleware} options: {e}")))
}

/// Creates middleware instances; registered once per server.
pub trait MiddlewareFactory: Send + Sync + 'static {
    /// The name the backend attaches it by, e.g. `recorder`.
    fn name(&self) -> &'static str;
    /// Creates an instance for a room from middleware-specific options (the configuration's
    /// `[middleware.options.<name>]` table, overlaid with the options of the attach request).
    /// It runs on the router's worker thread: open files and start codecs here, but do not
    /// call [`RoomAccess`] methods that block (queue such work for [`Middleware::on_producer`]
    /// or the first tick).
    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>>;

    /// The options an instance gets from the configuration's `[middleware.options.<name>]`
    /// table and an attach request's options. The default overlays the request on the
    /// configuration key by key ([`overlay_options`]). A middleware whose options name host
    /// resources (directories, devices) overrides this to keep a request inside what the
    /// configuration allows: the backend's requests are input, the configuration is policy.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::InvalidParams`](crate::ErrorCode::InvalidParams) for a request the
    /// configuration does not allow.
    fn merge_options(
        &self,
        configured: &serde_json::Map<String, Value>,
        requested: &Value,
    ) -> Result<Value> {
        Ok(overlay_options(configured, requested))
    }
}

/// `configured` overlaid, top-level key by key, with `requested` (an object, or null for
/// none). Anything else is returned as it is, for the factory to refuse with its own error.
pub fn overlay_options(configured: &serde_json::Map<String, Value>, requested: &Value) -> Value {
    let mut merged = configured.clone();
    match requested {
        Value::Object(extra) => {
            for (k, v) in extra {
                merged.insert(k.clone(), v.clone());
            }
        }
        Value::Null => {}
        other => return other.clone(),
    }
    Value::Object(merged)
}

/// The middleware available to this server, in registration order.
#[derive(Clone, Default)]
pub struct MiddlewareRegistry {
    factories: Vec<Arc<dyn MiddlewareFactory>>,
}

impl MiddlewareRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a factory. Names are unique.
    pub fn register(&mut self, factory: Arc<dyn MiddlewareFactory>) -> Result<()> {
        if self.get(factory.name()).is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("middleware {:?} is already registered", factory.name()),
            ));
        }
        self.factories.push(factory);
        Ok(())
    }

    /// The factory with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn MiddlewareFactory>> {
        self.factories.iter().find(|f| f.name() == name)
    }

    /// The factory with this name, or an `unknown_plugin` error listing the known ones.
    pub fn require(&self, name: &str) -> Result<&Arc<dyn MiddlewareFactory>> {
        self.get(name).ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownPlugin,
                format!(
                    "no middleware {name:?}; registered: {}",
                    self.names().join(", ")
                ),
            )
        })
    }

    /// Registered names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter;
    impl MiddlewareFactory for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }
        fn create(&self, _ctx: MiddlewareContext, _options: &Value) -> Result<Box<dyn Middleware>> {
            struct Instance;
            impl Middleware for Instance {}
            Ok(Box::new(Instance))
        }
    }

    #[test]
    fn registry_finds_by_name_and_rejects_duplicates() {
        let mut r = MiddlewareRegistry::new();
        r.register(Arc::new(Counter)).unwrap();
        assert_eq!(
            r.register(Arc::new(Counter)).unwrap_err().code,
            ErrorCode::AlreadyExists
        );
        assert!(r.get("counter").is_some());
        assert_eq!(
            r.require("nope").err().unwrap().code,
            ErrorCode::UnknownPlugin
        );
    }
}
