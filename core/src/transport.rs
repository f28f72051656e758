//! Transport plugins: how media gets in and out of a router.
//!
//! A plugin (`direct`, `webrtc`, `rtp`, `pipe`, or a team's own) is registered once at start-up
//! in a [`TransportRegistry`]. Each worker thread then asks it for a [`TransportFactory`],
//! which holds per-worker state such as a shared UDP socket, and creates [`Transport`]s.
//!
//! Everything below [`TransportPlugin`] lives on one worker thread and need not be `Send`.
//! That thread runs a Tokio current-thread runtime inside a `LocalSet`, so a plugin may use
//! `tokio::task::spawn_local` and Tokio sockets.
//!
//! What a transport can do beyond carrying media is reached through typed capabilities, not
//! its kind: a transport negotiated with SDP offer/answer returns itself from
//! [`Transport::sdp_session`], one end of a pipe between routers from
//! [`Transport::pipe_endpoint`]. The router's SDP sessions and room spanning use those, so a
//! team's own plugin takes part in either by implementing the trait.
//!
//! The contract on the packet path:
//! - a transport hands every RTP/RTCP packet it receives (decrypted) to [`TransportIo`];
//! - the router sends through the [`MediaSink`] the transport returns from
//!   [`Transport::sink`], synchronously, once per consumer and packet. A sink must not block
//!   and must not call back into the router.

use crate::error::{Error, ErrorCode, Result};
pub use crate::event::TransportState;
use crate::id::{ConsumerId, ProducerId, RouterId, TransportId, WorkerId};
use crate::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use bytes::Bytes;
use serde_json::Value;
use std::rc::Rc;
use std::sync::Arc;

/// Where a router's outgoing packets for one transport go.
pub trait MediaSink {
    /// Sends one RTP packet (already rewritten for its consumer).
    fn send_rtp(&self, packet: &[u8]);
    /// Sends one RTCP packet (feedback to a producer's sender, or reports to a receiver).
    fn send_rtcp(&self, packet: &[u8]);
}

impl<T: MediaSink + ?Sized> MediaSink for Rc<T> {
    fn send_rtp(&self, packet: &[u8]) {
        (**self).send_rtp(packet)
    }
    fn send_rtcp(&self, packet: &[u8]) {
        (**self).send_rtcp(packet)
    }
}

/// What a transport reports back to its router. Implemented by the actor layer.
pub trait TransportIo {
    /// An RTP packet arrived, decrypted if the transport encrypts, and parsed once (with
    /// [`parse_rtp`] where the transport has nothing better): the router reads it as it is
    /// and rewrites it for each consumer without parsing it again.
    fn on_rtp(&self, packet: rtc_rtp::Packet);
    /// A datagram that claimed to be RTP did not parse. The transport counts it in its own
    /// statistics too; this keeps the router's and the worker's `malformed_rtp` complete.
    fn on_malformed_rtp(&self) {}
    /// An RTCP compound packet arrived.
    fn on_rtcp(&self, packet: Bytes);
    /// The connection state changed.
    fn on_state(&self, state: TransportState);
    /// The connection is about to fail at `stage` (`"ice"`, `"dtls"`, ...). Call it right
    /// before reporting [`TransportState::Failed`], so that metrics count failures by stage
    /// and an operator can tell unreachable clients from broken handshakes. A failure
    /// reported without it is counted as `"unknown"`.
    fn on_failure(&self, _stage: &'static str) {}
    /// The transport gave up on its remote on its own (consent expired, DTLS closed): the
    /// router closes it with `reason`, without waiting for the backend, and its peer leaves
    /// after [`Transport::peer_timeout`] unless it has a transport again.
    fn on_gave_up(&self, _reason: crate::event::CloseReason) {}
}

/// Parses one decrypted RTP datagram as the router expects it: a version-2 header whose CSRC
/// list, extensions and padding fit. `None` for anything else, which the caller counts as
/// malformed (and reports with [`TransportIo::on_malformed_rtp`]).
pub fn parse_rtp(mut datagram: Bytes) -> Option<rtc_rtp::Packet> {
    use rtc_shared::marshal::Unmarshal;
    match rtc_rtp::Packet::unmarshal(&mut datagram) {
        Ok(p) if p.header.version == 2 => Some(p),
        _ => None,
    }
}

/// What a new transport is told about its place in the server.
#[derive(Clone)]
pub struct TransportContext {
    /// Its id.
    pub id: TransportId,
    /// Its router.
    pub router: RouterId,
    /// The worker it runs on.
    pub worker: WorkerId,
    /// The router's RTP capabilities: the codecs and extensions it can route, with the
    /// router's payload types and ids.
    pub capabilities: RtpCapabilities,
    /// Where it delivers what it receives.
    pub io: Rc<dyn TransportIo>,
}

/// A producer a transport asks its router to create, because its remote side started sending
/// a track (a WebRTC offer with a new sending m-line, say).
#[derive(Clone, Debug)]
pub struct ProducerRequest {
    /// Audio or video.
    pub kind: MediaKind,
    /// What the remote side sends.
    pub rtp_parameters: RtpParameters,
    /// Plugin-specific description the backend should see (mid, msid, ...).
    pub app_data: Value,
}

/// The outcome of a plugin-specific request.
#[derive(Clone, Debug, Default)]
pub struct RequestOutcome {
    /// What to return to the caller.
    pub response: Value,
    /// Producers to create on this transport, in order.
    pub new_producers: Vec<ProducerRequest>,
    /// Producers of this transport to close (their tracks were removed).
    pub closed_producers: Vec<ProducerId>,
    /// Consumers of this transport to close (the remote side rejected their tracks).
    pub closed_consumers: Vec<ConsumerId>,
    /// Consumers whose receiver accepted fewer header extensions than they were given, with
    /// the extension ids it accepted: the router writes no others for them.
    pub consumer_extensions: Vec<(ConsumerId, Vec<u8>)>,
}

/// What applying a client's offer changed.
#[derive(Clone, Debug, Default)]
pub struct OfferOutcome {
    /// The server's answer.
    pub answer: String,
    /// Producers to create on this transport, in order (new sending m-lines).
    pub new_producers: Vec<ProducerRequest>,
    /// Producers of this transport to close (their m-lines stopped sending).
    pub closed_producers: Vec<ProducerId>,
}

/// What applying a client's answer changed.
#[derive(Clone, Debug, Default)]
pub struct AnswerOutcome {
    /// Consumers changed while the offer was out: another offer is due.
    pub renegotiate: bool,
    /// Consumers whose m-lines the client rejected: they are closed.
    pub rejected_consumers: Vec<ConsumerId>,
    /// Consumers whose receiver accepted fewer header extensions than they were given, with
    /// the extension ids it accepted: the router writes no others for them.
    pub consumer_extensions: Vec<(ConsumerId, Vec<u8>)>,
    /// Producers of m-lines the client sends on whose answer stopped sending (rejected, or
    /// no longer `sendonly`/`sendrecv`): they are closed.
    pub closed_producers: Vec<ProducerId>,
}

/// A transport negotiated with SDP offer/answer, as WebRTC is: the client offers what it
/// sends, and the server offers what the client receives.
pub trait SdpSession {
    /// Applies the client's offer and returns the answer. An offer that would add more than
    /// `producer_slots` producers is refused before it changes anything; so is any offer
    /// that fails, which leaves the session as it was.
    fn apply_offer(&mut self, sdp: &str, producer_slots: Option<usize>) -> Result<OfferOutcome>;
    /// The server's offer for what the transport carries now. Without `force`, `None` while
    /// an earlier offer is unanswered: the change goes into the offer after that answer.
    fn create_offer(&mut self, force: bool) -> Result<Option<String>>;
    /// Applies the client's answer to the server's last offer.
    fn apply_answer(&mut self, sdp: &str) -> Result<AnswerOutcome>;
    /// New ICE credentials, and the offer that carries them.
    fn restart_ice(&mut self) -> Result<String>;
}

/// One end of a pipe that carries a room's media between two of its routers.
pub trait PipeEndpoint {
    /// What the other end connects to (the carrier's address for this end).
    fn pipe_address(&self) -> String;
    /// Connects to the other end, at the address its [`PipeEndpoint::pipe_address`] gave.
    fn connect_pipe(&mut self, remote: &str) -> Result<()>;
}

/// One transport instance, owned by its Transport actor on a worker thread.
pub trait Transport {
    /// This transport as an SDP session, if it is negotiated with offer/answer.
    fn sdp_session(&mut self) -> Option<&mut dyn SdpSession> {
        None
    }
    /// This transport as one end of a pipe between routers, if it is one.
    fn pipe_endpoint(&mut self) -> Option<&mut dyn PipeEndpoint> {
        None
    }
    /// A plugin-specific operation, such as applying a WebRTC offer. Unknown methods fail with
    /// `invalid_params`.
    fn request(&mut self, method: &str, _params: &Value) -> Result<RequestOutcome> {
        Err(Error::invalid(format!(
            "this transport has no operation {method:?}"
        )))
    }
    /// What a consumer on this transport may use, given the router's capabilities, when the
    /// caller does not say what the remote side can receive. The default is everything the
    /// router routes.
    fn receive_capabilities(&self, router: &RtpCapabilities) -> RtpCapabilities {
        router.clone()
    }
    /// What the creator needs to connect to it: addresses, ICE parameters, ports.
    fn local_parameters(&self) -> Value {
        Value::Null
    }
    /// Applies the remote side's parameters (remote address, DTLS role, keys).
    fn connect(&mut self, _params: &Value) -> Result<Value> {
        Ok(Value::Null)
    }
    /// The sink the router sends this transport's outgoing packets to.
    fn sink(&self) -> Rc<dyn MediaSink>;
    /// A producer was created on this transport.
    fn producer_added(&mut self, _id: ProducerId, _kind: MediaKind, _params: &RtpParameters) {}
    /// A producer on this transport closed.
    fn producer_removed(&mut self, _id: ProducerId) {}
    /// A consumer was created on this transport.
    fn consumer_added(&mut self, _id: ConsumerId, _kind: MediaKind, _params: &RtpParameters) {}
    /// A consumer on this transport closed.
    fn consumer_removed(&mut self, _id: ConsumerId) {}
    /// Transport-level statistics (bytes, packets, state).
    fn stats(&self) -> Value {
        Value::Null
    }
    /// Full state for debugging.
    fn dump(&self) -> Value {
        Value::Null
    }
    /// Releases sockets and tasks. Called exactly once, before the transport is dropped.
    fn close(&mut self) {}
    /// After this transport gave up on its remote on its own ([`TransportIo::on_gave_up`]),
    /// how long its peer may stay in the room without transports before it leaves with the
    /// same reason; `None` (the default) keeps the peer until the backend removes it.
    fn peer_timeout(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A plugin's part on one worker thread: creates that worker's transports.
pub trait TransportFactory {
    /// Creates a transport from plugin-specific options (validate them and fail with
    /// `invalid_params` naming the field).
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>>;
}

/// A transport plugin, registered once at start-up.
pub trait TransportPlugin: Send + Sync + 'static {
    /// The name the backend uses to ask for it, e.g. `webrtc`.
    fn kind(&self) -> &'static str;
    /// Called on each worker thread as it starts.
    fn start_worker(&self, worker: WorkerId) -> Result<Box<dyn TransportFactory>>;
}

/// The plugins available to this server, in registration order.
#[derive(Clone, Default)]
pub struct TransportRegistry {
    plugins: Vec<Arc<dyn TransportPlugin>>,
}

impl TransportRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a plugin. Two plugins may not share a kind.
    pub fn register(&mut self, plugin: Arc<dyn TransportPlugin>) -> Result<()> {
        if self.get(plugin.kind()).is_some() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("transport plugin {:?} is already registered", plugin.kind()),
            ));
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// The plugin of this kind.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn TransportPlugin>> {
        self.plugins.iter().find(|p| p.kind() == kind)
    }

    /// The plugin of this kind, or an `unknown_plugin` error listing the known ones.
    pub fn require(&self, kind: &str) -> Result<&Arc<dyn TransportPlugin>> {
        self.get(kind).ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownPlugin,
                format!(
                    "no transport plugin {kind:?}; registered: {}",
                    self.kinds().join(", ")
                ),
            )
        })
    }

    /// Registered kinds, in order.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.kind()).collect()
    }

    /// All plugins, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn TransportPlugin>> {
        self.plugins.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy;
    impl TransportPlugin for Dummy {
        fn kind(&self) -> &'static str {
            "dummy"
        }
        fn start_worker(&self, _worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
            Err(Error::internal("not for use"))
        }
    }

    #[test]
    fn registry_rejects_duplicates_and_names_known_kinds() {
        let mut r = TransportRegistry::new();
        r.register(Arc::new(Dummy)).unwrap();
        let dup = r.register(Arc::new(Dummy)).unwrap_err();
        assert_eq!(dup.code, ErrorCode::AlreadyExists);
        assert_eq!(r.kinds(), vec!["dummy"]);
        let err = r.require("webrtc").err().unwrap();
        assert_eq!(err.code, ErrorCode::UnknownPlugin);
        assert!(err.message.contains("dummy"));
    }

    #[test]
    fn states_display_as_lowercase() {
        assert_eq!(TransportState::Connected.to_string(), "connected");
    }
}
