//! The `webrtc` transport: ICE-lite, DTLS-SRTP and RTCP for browsers and native WebRTC stacks,
//! speaking plain SDP offer/answer.
//!
//! Each worker binds one UDP socket (from the configured port range) that all its connections
//! share ([`net`]). A connection is the server's own sans-IO state ([`native`]): an ICE-lite
//! responder ([`ice_lite`]), a DTLS endpoint keying the SRTP contexts ([`dtls`]), the
//! connection's m-lines and the descriptions written from them ([`description`], [`offer`],
//! [`answer`]), the receive side with the feedback it owes publishers ([`ingress`]), and
//! egress protected in place in the worker's send batch ([`srtp_egress`]) and sent with one
//! `sendmmsg` per fan-out. There is no general-purpose peer connection, no task and no queue
//! per connection. The server is always ICE-lite and writes its one candidate into the SDP,
//! so clients need no trickle from it.
//!
//! What flows depends on who offers:
//! - *publishing*: the client offers; [`SdpSession::apply_offer`] answers, and each sending
//!   m-line becomes a producer (new m-lines in a later offer add producers, removed ones close
//!   them);
//! - *subscribing*: consumers added to the transport become sending m-lines;
//!   [`SdpSession::create_offer`] writes the server's offer and [`SdpSession::apply_answer`]
//!   applies the client's answer. m-lines of closed consumers are reused by the next track of
//!   their kind.
//!
//! One connection may do both (one connection per peer). The same operations are open to
//! backends as `transport.request` methods (`offer`, `create_offer`, `answer`, `restart_ice`,
//! `add_candidate`).

pub mod answer;
pub mod description;
pub mod dtls;
pub mod ice_lite;
pub mod ingress;
pub mod native;
pub mod net;
pub mod offer;
mod sendmmsg;
pub mod srtp_egress;

use net::Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use switchboard_core::report::plugin_value;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::transport::{
    AnswerOutcome, MediaSink, OfferOutcome, ProducerRequest, RequestOutcome, SdpSession, Transport,
    TransportContext, TransportFactory, TransportPlugin,
};
use switchboard_core::{ConsumerId, Error, ErrorCode, ProducerId, Result, WorkerId};

/// The plugin kind.
pub const KIND: &str = "webrtc";

/// The `webrtc` plugin's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebRtcSettings {
    /// Where the worker sockets listen (one port of the range per worker) and what they
    /// announce.
    pub listen: crate::settings::ListenSettings,
    /// How long a connection may hear nothing from its client before it gives up on it
    /// (`ice_timeout`).
    pub consent_timeout: std::time::Duration,
    /// How long a peer whose connections all gave up stays in its room before it leaves
    /// with their reason; `None` keeps it until the backend removes it.
    pub peer_timeout: Option<std::time::Duration>,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        Self {
            listen: Default::default(),
            consent_timeout: std::time::Duration::from_secs(30),
            peer_timeout: Some(std::time::Duration::from_secs(10)),
        }
    }
}

impl WebRtcSettings {
    /// The settings of a validated `[webrtc]` configuration section.
    pub fn from_config(config: &crate::config::WebRtcConfig) -> Result<Self> {
        Ok(Self {
            listen: crate::settings::ListenSettings::from_config(
                "webrtc",
                &config.listen_ip,
                &config.announced_ip,
                config.port_min,
                config.port_max,
            )?,
            consent_timeout: std::time::Duration::from_millis(config.consent_timeout_ms),
            peer_timeout: (config.peer_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(config.peer_timeout_ms)),
        })
    }
}

/// The `webrtc` plugin.
pub struct WebRtcPlugin {
    settings: WebRtcSettings,
}

impl WebRtcPlugin {
    /// A plugin with these settings.
    pub fn new(settings: WebRtcSettings) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { settings })
    }
}

impl TransportPlugin for WebRtcPlugin {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start_worker(&self, worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        let s = &self.settings.listen;
        let socket = bind(s, worker)?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()))?;
        let announced = SocketAddr::new(s.announced_ip.unwrap_or(local.ip()), local.port());
        let net = Net::new(socket, announced);
        tokio::task::spawn_local(net.clone().run_receiver());
        tokio::task::spawn_local(net.clone().run_timers());
        tokio::task::spawn_local(net.clone().run_flusher());
        tracing::info!(%worker, %local, %announced, "webrtc listening");
        // One certificate per worker: generating one costs milliseconds, and a connection
        // is authenticated by the fingerprint its SDP carries, not by the certificate's
        // uniqueness.
        let crypto = rtc_crypto::default_provider()
            .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()))?;
        let certificate = Rc::new(dtls::Certificate::generate(&crypto)?);
        Ok(Box::new(Factory {
            net,
            consent_timeout: self.settings.consent_timeout,
            peer_timeout: self.settings.peer_timeout,
            certificate,
        }))
    }
}

/// Binds the worker's socket: the worker's own port of the range when it has one, otherwise
/// the first free port of the range.
fn bind(s: &crate::settings::ListenSettings, worker: WorkerId) -> Result<tokio::net::UdpSocket> {
    let ports: Vec<u16> = if s.port_min == 0 {
        vec![0]
    } else {
        let own = s.port_min.saturating_add(worker.0 as u16);
        std::iter::once(own)
            .chain(s.port_min..=s.port_max)
            .filter(|p| (s.port_min..=s.port_max).contains(p))
            .collect()
    };
    let mut last_error = None;
    for port in ports {
        match std::net::UdpSocket::bind(SocketAddr::new(s.listen_ip, port)) {
            Ok(sock) => {
                sock.set_nonblocking(true)
                    .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()))?;
                return tokio::net::UdpSocket::from_std(sock)
                    .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(Error::new(
        ErrorCode::TransportFailed,
        format!(
            "no free UDP port for {worker} on {} in {}-{}: {}",
            s.listen_ip,
            s.port_min,
            s.port_max,
            last_error.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

struct Factory {
    net: Rc<Net>,
    consent_timeout: std::time::Duration,
    peer_timeout: Option<std::time::Duration>,
    /// The worker's DTLS certificate.
    certificate: Rc<dtls::Certificate>,
}

/// A `webrtc` transport's options.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CreateOptions {
    /// `"recv"`: made for the server to offer (its first offer opens with a data-channel
    /// m-line so that it connects before the first track); `"send"`: made for the client to
    /// offer; `"sendrecv"` or absent: both. Every connection can do both either way.
    direction: Option<String>,
    /// A connection taking over another server's (a node draining in a cluster): what
    /// `transport.request` `resume_state` exported there. `"recv"` unless `direction` says
    /// otherwise.
    resume: Option<native::Resume>,
}

impl TransportFactory for Factory {
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        let options: CreateOptions = if options.is_null() {
            CreateOptions::default()
        } else {
            params("webrtc transport options", options)?
        };
        let direction = match options.direction.as_deref() {
            None if options.resume.is_some() => native::Direction::Receive,
            None | Some("sendrecv") => native::Direction::Both,
            Some("recv") => native::Direction::Receive,
            Some("send") => native::Direction::Publish,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "webrtc transport options: direction {other:?} is not \"recv\", \"send\" or \"sendrecv\""
                )));
            }
        };
        let conn = native::NativeConnection::new(
            &self.net,
            ctx.io.clone(),
            self.certificate.clone(),
            self.consent_timeout,
            direction,
            ctx.capabilities.clone(),
            options.resume.as_ref(),
        )?;
        Ok(Box::new(WebRtcTransport {
            conn,
            peer_timeout: self.peer_timeout,
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SdpParams {
    sdp: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientOfferParams {
    sdp: String,
    /// How many producers this transport may still gain (the room's per-transport limit less
    /// those it has): an offer that would add more is refused before it is applied, rather
    /// than half turned into producers.
    #[serde(default)]
    producer_slots: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct OfferParams {
    /// Offer now even if an earlier offer is unanswered (a client starting over).
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateParams {
    candidate: String,
}

fn params<T: for<'de> Deserialize<'de>>(method: &str, v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| Error::invalid(format!("{method}: {e}")))
}

/// The SDP operations as `transport.request` methods, for backends that drive a connection
/// themselves: `offer`, `create_offer`, `answer`, `restart_ice`. `None` for any other method.
fn sdp_request(
    session: &mut dyn SdpSession,
    method: &str,
    p: &Value,
) -> Option<Result<RequestOutcome>> {
    let outcome = match method {
        "offer" => params(method, p).and_then(
            |ClientOfferParams {
                 sdp,
                 producer_slots,
             }| {
                let outcome = session.apply_offer(&sdp, producer_slots)?;
                Ok(RequestOutcome {
                    response: json!({ "type": "answer", "sdp": outcome.answer }),
                    new_producers: outcome.new_producers,
                    closed_producers: outcome.closed_producers,
                    ..Default::default()
                })
            },
        ),
        "create_offer" => params(method, p).and_then(|OfferParams { force }| {
            Ok(RequestOutcome {
                response: json!({ "type": "offer", "sdp": session.create_offer(force)? }),
                ..Default::default()
            })
        }),
        "answer" => params(method, p).and_then(|SdpParams { sdp }| {
            let outcome = session.apply_answer(&sdp)?;
            Ok(RequestOutcome {
                response: json!({ "renegotiate": outcome.renegotiate }),
                closed_consumers: outcome.rejected_consumers,
                consumer_extensions: outcome.consumer_extensions,
                closed_producers: outcome.closed_producers,
                ..Default::default()
            })
        }),
        "restart_ice" => session.restart_ice().map(|sdp| RequestOutcome {
            response: json!({ "type": "offer", "sdp": sdp }),
            ..Default::default()
        }),
        _ => return None,
    };
    Some(outcome)
}

/// A `webrtc` transport: a connection ([`native`]).
struct WebRtcTransport {
    conn: Rc<native::NativeConnection>,
    peer_timeout: Option<std::time::Duration>,
}

impl SdpSession for WebRtcTransport {
    fn apply_offer(&mut self, sdp: &str, producer_slots: Option<usize>) -> Result<OfferOutcome> {
        self.conn.apply_offer(sdp, producer_slots)
    }

    fn create_offer(&mut self, force: bool) -> Result<Option<String>> {
        self.conn.create_offer(force)
    }

    fn apply_answer(&mut self, sdp: &str) -> Result<AnswerOutcome> {
        let parsed = switchboard_sdp::parse(sdp)?;
        self.conn.apply_answer(&parsed)
    }

    fn restart_ice(&mut self) -> Result<String> {
        self.conn.restart_ice();
        self.conn
            .create_offer(true)?
            .ok_or_else(|| Error::internal("the connection wrote no offer"))
    }
}

/// A WebRTC transport's state (`transport.dump` → `plugin`).
#[derive(Serialize)]
struct WebRtcDump {
    kind: &'static str,
    local: Value,
    stats: native::ConnectionStats,
}

impl Transport for WebRtcTransport {
    fn peer_timeout(&self) -> Option<std::time::Duration> {
        self.peer_timeout
    }

    fn receive_capabilities(&self, router: &RtpCapabilities) -> RtpCapabilities {
        self.conn.receive_capabilities(router)
    }

    fn local_parameters(&self) -> Value {
        json!({
            "ice": { "lite": true, "ufrag": self.conn.local_ufrag() },
            "candidates": self.conn.candidate().into_iter().collect::<Vec<_>>(),
            "direction": self.conn.direction().as_str(),
        })
    }

    fn sdp_session(&mut self) -> Option<&mut dyn SdpSession> {
        Some(self)
    }

    fn request(&mut self, method: &str, p: &Value) -> Result<RequestOutcome> {
        match method {
            // Trickled candidates are not needed: the server is ICE-lite and learns addresses
            // from the checks.
            "add_candidate" => {
                let CandidateParams { candidate } = params(method, p)?;
                tracing::trace!(%candidate, "trickled candidate not needed: addresses are learned from the checks");
                Ok(RequestOutcome::default())
            }
            // What another server needs to take this receive connection over.
            "resume_state" => Ok(RequestOutcome {
                response: serde_json::to_value(self.conn.export_resume()?)
                    .map_err(|e| Error::internal(e.to_string()))?,
                ..Default::default()
            }),
            method if let Some(outcome) = sdp_request(self, method, p) => outcome,
            other => Err(Error::invalid(format!(
                "webrtc transports have no operation {other:?} (offer, create_offer, answer, restart_ice, add_candidate, resume_state)"
            ))),
        }
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        Rc::new(native::NativeSink(Rc::downgrade(&self.conn)))
    }

    fn producer_added(&mut self, id: ProducerId, _kind: MediaKind, params: &RtpParameters) {
        if let Some(mid) = &params.mid {
            self.conn.producer_added(id, mid);
        }
    }

    fn producer_removed(&mut self, id: ProducerId) {
        self.conn.producer_removed(id);
    }

    fn consumer_added(&mut self, id: ConsumerId, kind: MediaKind, params: &RtpParameters) {
        if let Err(e) = self.conn.add_consumer(id, kind, params) {
            tracing::error!(consumer = %id, error = %e, "cannot add a track for the consumer");
        }
    }

    fn consumer_removed(&mut self, id: ConsumerId) {
        self.conn.remove_consumer(id);
    }

    fn stats(&self) -> Value {
        plugin_value(&self.conn.stats())
    }

    fn dump(&self) -> Value {
        plugin_value(&WebRtcDump {
            kind: KIND,
            local: self.local_parameters(),
            stats: self.conn.stats(),
        })
    }

    fn close(&mut self) {
        self.conn.close();
    }
}

/// Which producers an applied offer adds and which it ends: every accepted sending m-line
/// with a mid not seen before becomes a producer; a known mid that no longer sends (removed,
/// rejected, recvonly or inactive) closes its producer. Public for the fuzzer (`fuzz/`).
pub fn publish_diff(
    offer: &switchboard_sdp::Sdp,
    answer: &switchboard_sdp::Sdp,
    known: &HashMap<String, ProducerId>,
) -> Result<(Vec<ProducerRequest>, Vec<ProducerId>)> {
    use switchboard_sdp::{self as sdp, Direction};
    let offered = sdp::media_sections(offer);
    let answered = sdp::media_sections(answer);
    let mut new = Vec::new();
    let mut sending = Vec::new();
    for o in &offered {
        let (Some(mid), Some(kind)) = (&o.mid, o.kind) else {
            continue;
        };
        let Some(a) = answered.iter().find(|a| a.mid.as_ref() == Some(mid)) else {
            continue;
        };
        let sends = matches!(o.direction, Direction::SendRecv | Direction::SendOnly);
        if !sends || o.rejected || a.rejected {
            continue;
        }
        sending.push(mid.clone());
        if known.contains_key(mid) {
            continue;
        }
        let rtp_parameters = sdp::producer_parameters(o, a)?;
        new.push(ProducerRequest {
            kind,
            rtp_parameters,
            app_data: json!({
                "mid": mid,
                "stream_id": o.msid.as_ref().map(|m| m.0.clone()),
                "track_id": o.msid.as_ref().map(|m| m.1.clone()),
            }),
        });
    }
    let closed = known
        .iter()
        .filter(|(mid, _)| !sending.contains(mid))
        .map(|(_, id)| *id)
        .collect();
    Ok((new, closed))
}
