//! The SFU-native engine for receive connections: the server's own ICE-lite
//! ([`super::ice_lite`]), DTLS-SRTP ([`super::dtls`]) and SDP, without a general-purpose peer
//! connection.
//!
//! A receive connection only sends what the router forwarded and only takes feedback back,
//! and the server writes every offer, so it needs none of a peer connection's machinery: the
//! router's consumer already rewrote each packet for this leg (SSRC, sequence number,
//! timestamp), with the router's payload types and extension ids, which the server's offer
//! declares and the client's answer must keep (RFC 8829 §5.3.1). Sending is therefore one copy
//! into the worker's send batch, SRTP protection in place there, and one `sendmmsg` for the
//! whole fan-out: no parse, no second rewrite, no queue, no task per connection.
//!
//! A publishing connection is the mirror image: the client offers, the server answers
//! ([`super::answer`]) in the client's numbering, decrypts what arrives, and hands the packets
//! to the router once parsed; the feedback the publisher needs (NACK, receiver reports,
//! transport-wide congestion feedback) comes from [`super::ingress`].
//!
//! Selected with `webrtc.engine = "native"` for connections made for one direction (the
//! session flow's two connections per peer, or `transport.create` with `{"direction":
//! "recv"}` or `{"direction": "send"}`). A connection that carries both directions keeps the
//! peer-connection engine for now.

use super::answer::{answer_setup, tracks_after_offer, write_answer};
use super::dtls::{Certificate, Dtls, DtlsEvent, Role, SrtpContexts};
use super::ice_lite::IceLite;
use super::ingress::FeedbackCounts;
use super::ingress::{Ingress, Section};
use super::net::{MAX_ADDRESSES_PER_CONNECTION, Net, NetConnection};
use super::offer::{LocalDescription, Sending, Track, write_offer};
use super::srtp_egress::Rollover;
use bytes::BytesMut;
use rtc_crypto::RTCCryptoProvider;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::event::CloseReason;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::transport::{
    AnswerOutcome, MediaSink, OfferOutcome, TransportIo, TransportState,
};
use switchboard_core::{ConsumerId, Error, ErrorCode, ProducerId, Result};

mod resume;
mod session;
mod stats;

pub use super::description::Receiving;
pub use resume::{Resume, ResumedLine};
pub use session::Direction;
pub use stats::ConnectionStats;

/// One outgoing stream.
struct OutStream {
    /// Its m-line.
    track: usize,
    /// The SRTP rollover counter of its sequence numbers.
    rollover: Rollover,
    /// For an RTX stream: what it repairs.
    repairs: Option<Repairs>,
}

/// The media stream an RTX stream repairs, and whether the client's answer took RTX.
#[derive(Clone, Copy)]
struct Repairs {
    media_ssrc: u32,
    media_pt: u8,
    rtx_pt: u8,
    /// The answer kept the RTX payload type: retransmissions go out as RTX. Otherwise (a
    /// client without RTX) they go out as the original packets, on the media SSRC.
    negotiated: bool,
}

/// Counters of one native connection.
#[derive(Default)]
struct Counters {
    rtp_out: Cell<u64>,
    rtp_out_not_connected: Cell<u64>,
    rtp_out_unknown_ssrc: Cell<u64>,
    rtcp_out: Cell<u64>,
    rtcp_in: Cell<u64>,
    /// RTP from the client on a receive-only connection (nothing negotiated it).
    rtp_in_ignored: Cell<u64>,
    /// RTP from the publisher, decrypted and handed to the router.
    rtp_in: Cell<u64>,
    /// Decrypted RTP that belongs to no accepted m-line, or does not parse.
    rtp_in_unroutable: Cell<u64>,
    /// SRTP or SRTCP from SSRCs beyond the connection's budget, dropped before decryption.
    ssrc_limit_drops: Cell<u64>,
    srtp_failures: Cell<u64>,
    stun_refused: Cell<u64>,
    dtls_errors: Cell<u64>,
    early_checks: Cell<u64>,
    encrypt_failures: Cell<u64>,
}

/// Offer/answer state: one server offer in flight at a time.
#[derive(Default)]
struct Negotiation {
    offered: bool,
    awaiting_answer: bool,
    pending: bool,
    version: u64,
}

/// A connection of the native engine.
pub struct NativeConnection {
    key: Cell<u64>,
    net: Weak<Net>,
    io: Rc<dyn TransportIo>,
    certificate: Rc<Certificate>,
    crypto: Arc<dyn RTCCryptoProvider>,
    session_id: u64,
    direction: Direction,
    /// The router's capabilities: what a publisher's offer is answered with.
    capabilities: RtpCapabilities,
    ice: RefCell<IceLite>,
    ingress: RefCell<Ingress>,
    /// The producers of a publishing connection, by the mid of their m-line.
    producers_by_mid: RefCell<HashMap<String, ProducerId>>,
    dtls: RefCell<Option<Dtls>>,
    srtp: RefCell<Option<SrtpContexts>>,
    tracks: RefCell<Vec<Track>>,
    /// Outgoing SSRC (the consumer's) to its stream state.
    by_ssrc: RefCell<HashMap<u32, OutStream>>,
    negotiation: RefCell<Negotiation>,
    state: Cell<TransportState>,
    addresses: RefCell<VecDeque<SocketAddr>>,
    /// Where media goes: the nominated address, else the last one that checked.
    destination: Cell<Option<SocketAddr>>,
    consent_timeout: Duration,
    last_heard: Cell<Instant>,
    /// When the client's first connectivity check came, while DTLS is not up yet.
    checked_since: Cell<Option<Instant>>,
    scheduled: Cell<Option<Instant>>,
    done: Cell<bool>,
    counters: Counters,
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, e.to_string())
}

impl NativeConnection {
    /// A connection on `net`'s socket that authenticates with `certificate`.
    pub fn new(
        net: &Rc<Net>,
        io: Rc<dyn TransportIo>,
        certificate: Rc<Certificate>,
        consent_timeout: Duration,
        direction: Direction,
        capabilities: RtpCapabilities,
        resume: Option<&Resume>,
    ) -> Result<Rc<Self>> {
        let crypto = rtc_crypto::default_provider().map_err(failed)?;
        let (ufrag, pwd) = IceLite::credentials(crypto.as_ref());
        let mut id = [0u8; 8];
        crypto.random().fill(&mut id).map_err(failed)?;
        let tracks = match resume {
            Some(r) => {
                r.check()?;
                r.tracks()
            }
            None if direction == Direction::Receive => {
                vec![Track::application(super::offer::APPLICATION_MID.to_owned())]
            }
            None => Vec::new(),
        };
        let negotiation = Negotiation {
            version: resume.map_or(0, |r| r.version),
            ..Negotiation::default()
        };
        // A resumed connection's client goes on sending what it sent to the old server.
        let mut ingress = Ingress::default();
        let (receiving, extensions) = session::ingress_sections(&tracks);
        if !receiving.is_empty() {
            ingress.negotiated(receiving, extensions);
        }
        let conn = Rc::new(Self {
            key: Cell::new(0),
            net: Rc::downgrade(net),
            io,
            certificate,
            session_id: resume.map_or(u64::from_be_bytes(id) >> 2, |r| r.session_id),
            direction,
            capabilities,
            ice: RefCell::new(IceLite::new(ufrag.clone(), pwd, crypto.clone())),
            ingress: RefCell::new(ingress),
            producers_by_mid: RefCell::default(),
            crypto,
            dtls: RefCell::default(),
            srtp: RefCell::default(),
            tracks: RefCell::new(tracks),
            by_ssrc: RefCell::default(),
            negotiation: RefCell::new(negotiation),
            state: Cell::new(TransportState::New),
            addresses: RefCell::default(),
            destination: Cell::new(None),
            consent_timeout,
            last_heard: Cell::new(Instant::now()),
            checked_since: Cell::new(None),
            scheduled: Cell::new(None),
            done: Cell::new(false),
            counters: Counters::default(),
        });
        let weak: Weak<dyn NetConnection> = Rc::downgrade(&conn) as _;
        conn.key.set(net.register(weak.clone()));
        net.rename("", &ufrag, weak);
        conn.reschedule();
        Ok(conn)
    }

    /// The local ICE username fragment.
    pub fn local_ufrag(&self) -> String {
        self.ice.borrow().ufrag().to_owned()
    }

    /// The connection's one ICE candidate (the worker socket's announced address), as an
    /// `a=candidate` value.
    pub fn candidate(&self) -> Option<String> {
        let address = self.net.upgrade()?.announced;
        Some(format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            address.ip(),
            address.port()
        ))
    }

    /// Current connection state.
    pub fn state(&self) -> TransportState {
        self.state.get()
    }

    fn set_state(&self, state: TransportState) {
        if self.done.get() {
            return;
        }
        if self.state.replace(state) != state {
            self.io.on_state(state);
        }
    }

    /// Fails the connection and asks its router to close it with `reason`, once.
    fn give_up(&self, reason: CloseReason, stage: &'static str) {
        if self.done.replace(true) {
            return;
        }
        tracing::info!(ufrag = %self.local_ufrag(), %stage, "webrtc connection gave up on its client");
        if self.state.replace(TransportState::Failed) != TransportState::Failed {
            self.io.on_failure(stage);
            self.io.on_state(TransportState::Failed);
        }
        self.io.on_gave_up(reason);
    }

    fn flush_dtls(&self, net: &Net, to: SocketAddr) {
        let mut dtls = self.dtls.borrow_mut();
        if let Some(d) = dtls.as_mut() {
            while let Some(datagram) = d.poll_transmit() {
                net.send(&datagram, to);
            }
        }
    }

    fn on_stun(&self, net: &Net, data: &[u8], from: SocketAddr, now: Instant) {
        let answer = self.ice.borrow_mut().on_request(data, from, now);
        let answer = match answer {
            Ok(a) => a,
            Err(_) => {
                self.counters
                    .stun_refused
                    .set(self.counters.stun_refused.get() + 1);
                return;
            }
        };
        net.send(&answer.response, from);
        if answer.role_conflict {
            return;
        }
        self.last_heard.set(now);
        if self.srtp.borrow().is_none() && self.checked_since.get().is_none() {
            self.checked_since.set(Some(now));
        }
        if answer.nominated || self.destination.get().is_none() {
            self.destination.set(Some(from));
        }
        if self.state.get() == TransportState::New {
            self.set_state(TransportState::Connecting);
        } else if self.state.get() == TransportState::Disconnected {
            self.set_state(TransportState::Connected);
        }
        if answer.nominated {
            let started = self.dtls.borrow_mut().as_mut().map(|d| d.start(now));
            if let Some(Err(e)) = started {
                tracing::debug!(error = %e, "DTLS client start failed");
            }
            self.flush_dtls(net, from);
        }
    }

    fn on_dtls(&self, net: &Net, data: BytesMut, from: SocketAddr, now: Instant) {
        let event = match self.dtls.borrow_mut().as_mut() {
            Some(d) => d.on_datagram(data, now),
            None => {
                // The client's answer has not arrived yet; it repeats its flight.
                self.counters
                    .early_checks
                    .set(self.counters.early_checks.get() + 1);
                return;
            }
        };
        self.flush_dtls(net, from);
        match event {
            Ok(Some(DtlsEvent::Connected(contexts))) => {
                *self.srtp.borrow_mut() = Some(*contexts);
                self.set_state(TransportState::Connected);
            }
            Ok(Some(DtlsEvent::Closed)) => self.give_up(CloseReason::DtlsClosed, "dtls_closed"),
            Ok(None) => {}
            Err(e) => {
                self.counters
                    .dtls_errors
                    .set(self.counters.dtls_errors.get() + 1);
                tracing::debug!(error = %e, "DTLS record refused");
                let connected = self.dtls.borrow().as_ref().is_some_and(Dtls::is_connected);
                if !connected {
                    // A handshake that fails (wrong certificate, fatal alert) does not recover.
                    self.give_up(CloseReason::DtlsClosed, "dtls");
                }
            }
        }
    }

    /// Whether the client sends anything on this connection (an m-line it sends on): what
    /// the last client offer gave the ingress, so that the per-datagram checks need not walk
    /// the m-lines.
    fn receives(&self) -> bool {
        self.ingress.borrow().receives()
    }

    /// The direction the connection was made for.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Authenticated media from the client shows it is there as well as a check does
    /// (libnice checks consent only every 25 s; receivers report every second or so).
    fn heard(&self, now: Instant) {
        self.last_heard.set(now);
        if self.state.get() == TransportState::Disconnected {
            self.set_state(TransportState::Connected);
        }
    }

    /// Whether SRTP or SRTCP from the SSRC in the clear header may be decrypted (see
    /// [`Ingress::admit`]); counted when not.
    fn admit(&self, ssrc: Option<u32>) -> bool {
        let admitted = ssrc.is_some_and(|ssrc| self.ingress.borrow_mut().admit(ssrc));
        if !admitted {
            self.counters
                .ssrc_limit_drops
                .set(self.counters.ssrc_limit_drops.get() + 1);
        }
        admitted
    }

    /// SRTP from a publisher: decrypted, parsed once, shown to the feedback generators and
    /// handed to the router.
    fn on_srtp(&self, net: &Net, data: &[u8], now: Instant) {
        if !self.admit(read_u32(data, 8)) {
            return;
        }
        let Some(plain) = self.decrypt(|inbound| inbound.decrypt_rtp(data)) else {
            return;
        };
        self.heard(now);
        let routed = match switchboard_core::transport::parse_rtp(plain.freeze()) {
            Some(packet) => self.ingress.borrow_mut().on_rtp(packet, now),
            None => {
                self.io.on_malformed_rtp();
                None
            }
        };
        match routed {
            Some(packet) => {
                self.counters.rtp_in.set(self.counters.rtp_in.get() + 1);
                self.io.on_rtp(packet);
            }
            None => self
                .counters
                .rtp_in_unroutable
                .set(self.counters.rtp_in_unroutable.get() + 1),
        }
        self.send_feedback(net);
    }

    /// Decrypts with the inbound SRTP context; `None`, counted, before the keys exist or when
    /// the packet fails authentication.
    fn decrypt<E>(
        &self,
        f: impl FnOnce(&mut rtc_srtp::context::Context) -> std::result::Result<BytesMut, E>,
    ) -> Option<BytesMut> {
        let plain = self
            .srtp
            .borrow_mut()
            .as_mut()
            .and_then(|srtp| f(&mut srtp.inbound).ok());
        if plain.is_none() {
            self.counters
                .srtp_failures
                .set(self.counters.srtp_failures.get() + 1);
        }
        plain
    }

    /// Sends the feedback the ingress has due (NACK, reports, congestion feedback).
    fn send_feedback(&self, net: &Net) {
        let due = self.ingress.borrow_mut().take_feedback();
        if due.is_empty() {
            return;
        }
        let Some(to) = self.destination.get() else {
            return;
        };
        for plain in due {
            let encrypted = match self.srtp.borrow_mut().as_mut() {
                Some(srtp) => srtp.outbound.encrypt_rtcp(&plain),
                None => return,
            };
            if let Ok(packet) = encrypted {
                net.send(&packet, to);
                self.counters.rtcp_out.set(self.counters.rtcp_out.get() + 1);
            }
        }
    }

    fn on_srtcp(&self, data: &[u8], now: Instant) {
        if !self.admit(read_u32(data, 4)) {
            return;
        }
        let Some(plain) = self.decrypt(|inbound| inbound.decrypt_rtcp(data)) else {
            return;
        };
        self.heard(now);
        self.counters.rtcp_in.set(self.counters.rtcp_in.get() + 1);
        let plain = plain.freeze();
        if self.receives() {
            self.ingress.borrow_mut().on_rtcp(&plain, now);
        }
        self.io.on_rtcp(plain);
    }

    fn consent_deadline(&self) -> Instant {
        self.last_heard.get() + self.consent_timeout
    }

    /// When a client whose connectivity checks arrive but that completes no DTLS handshake is
    /// given up on: a third of the consent timeout after its first check. Without it, such a
    /// connection (a client that keeps its old DTLS session after its connection was moved
    /// to another server, as webrtc-rs does; a broken client) would stay `connecting` for as
    /// long as its checks keep consent alive.
    fn handshake_deadline(&self) -> Option<Instant> {
        if self.srtp.borrow().is_some() {
            return None;
        }
        Some(self.checked_since.get()? + self.consent_timeout / 3)
    }

    /// When a connected client that has been silent this long is reported `disconnected`: a
    /// third of the consent timeout (10 s by default), well above browsers' 5 s between
    /// checks and receivers' reports every second or so.
    fn disconnect_deadline(&self) -> Instant {
        self.last_heard.get() + self.consent_timeout / 3
    }

    fn reschedule(&self) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        if self.done.get() {
            return;
        }
        let dtls = self.dtls.borrow().as_ref().and_then(Dtls::timeout);
        let mut next = self.consent_deadline();
        if self.receives()
            && self.srtp.borrow().is_some()
            && let Some(feedback) = self.ingress.borrow_mut().timeout()
        {
            next = next.min(feedback);
        }
        if self.state.get() == TransportState::Connected {
            next = next.min(self.disconnect_deadline());
        }
        if let Some(handshake) = self.handshake_deadline() {
            next = next.min(handshake);
        }
        let next = dtls.map_or(next, |t| t.min(next));
        if self.scheduled.get().is_none_or(|t| next < t) {
            self.scheduled.set(Some(next));
            net.schedule(self.key.get(), next);
        }
    }

    /// Queues one forwarded packet, already rewritten by the router for this leg: the SSRC
    /// is checked, the packet copied once into the worker's send batch and protected there.
    fn send_rtp(&self, data: &[u8]) {
        if !matches!(
            self.state.get(),
            TransportState::Connected | TransportState::Disconnected
        ) {
            self.counters
                .rtp_out_not_connected
                .set(self.counters.rtp_out_not_connected.get() + 1);
            return;
        }
        let (Some(ssrc), Some(seq)) = (
            data.get(8..12)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            data.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])),
        ) else {
            return;
        };
        let (roc, unwrap) = {
            let mut streams = self.by_ssrc.borrow_mut();
            let Some(stream) = streams.get_mut(&ssrc) else {
                self.counters
                    .rtp_out_unknown_ssrc
                    .set(self.counters.rtp_out_unknown_ssrc.get() + 1);
                return;
            };
            match stream.repairs.filter(|r| !r.negotiated) {
                None => (stream.rollover.index(seq), None),
                Some(repairs) => {
                    // A retransmission for a client without RTX: sent as the original.
                    let Some(osn) = super::srtp_egress::header_len(data)
                        .and_then(|h| data.get(h..h + 2))
                        .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    else {
                        return;
                    };
                    let Some(media) = streams.get_mut(&repairs.media_ssrc) else {
                        return;
                    };
                    (media.rollover.index(osn), Some((repairs, osn)))
                }
            }
        };
        let (Some(net), Some(to)) = (self.net.upgrade(), self.destination.get()) else {
            return;
        };
        let mut srtp = self.srtp.borrow_mut();
        let Some(srtp) = srtp.as_mut() else {
            return;
        };
        let queued = match &mut srtp.egress {
            Some(gcm) => net.queue_with(to, |buf| {
                let start = buf.len();
                write_packet(buf, data, unwrap);
                gcm.protect(buf, start, roc)
            }),
            None => match srtp.outbound.encrypt_rtp(&{
                let mut plain = Vec::new();
                write_packet(&mut plain, data, unwrap);
                plain
            }) {
                Ok(packet) => net.queue_with(to, |buf| {
                    buf.extend_from_slice(&packet);
                    true
                }),
                Err(_) => false,
            },
        };
        if queued {
            self.counters.rtp_out.set(self.counters.rtp_out.get() + 1);
        } else {
            self.counters
                .encrypt_failures
                .set(self.counters.encrypt_failures.get() + 1);
        }
    }

    fn send_rtcp(&self, data: &[u8]) {
        if !matches!(
            self.state.get(),
            TransportState::Connected | TransportState::Disconnected
        ) {
            return;
        }
        let (Some(net), Some(to)) = (self.net.upgrade(), self.destination.get()) else {
            return;
        };
        let encrypted = match self.srtp.borrow_mut().as_mut() {
            Some(srtp) => srtp.outbound.encrypt_rtcp(data),
            None => return,
        };
        if let Ok(packet) = encrypted {
            net.send(&packet, to);
            self.counters.rtcp_out.set(self.counters.rtcp_out.get() + 1);
        }
    }

    /// Counters and state as JSON (docs/rpc.md, `transport.stats`).
    pub fn stats(&self) -> ConnectionStats {
        let c = &self.counters;
        ConnectionStats {
            state: self.state.get(),
            rtp_packets_sent: c.rtp_out.get(),
            rtp_packets_not_connected: c.rtp_out_not_connected.get(),
            rtp_packets_rejected: c.rtp_out_unknown_ssrc.get(),
            rtcp_packets_sent: c.rtcp_out.get(),
            rtcp_packets_received: c.rtcp_in.get(),
            direction: self.direction.as_str(),
            rtp_packets_received: c.rtp_in.get(),
            rtp_packets_unroutable: c.rtp_in_unroutable.get(),
            rtp_packets_ignored: c.rtp_in_ignored.get(),
            ssrc_limit_drops: c.ssrc_limit_drops.get(),
            remote_streams: self.ingress.borrow().stream_count(),
            feedback_sent: self.ingress.borrow().feedback_counts(),
            producers: self.producers_by_mid.borrow().len(),
            srtp_failures: c.srtp_failures.get(),
            stun_refused: c.stun_refused.get(),
            dtls_errors: c.dtls_errors.get(),
            early_connectivity_checks: c.early_checks.get(),
            encrypt_failures: c.encrypt_failures.get(),
            srtp_profile: self
                .srtp
                .borrow()
                .as_ref()
                .map(|s| format!("{:?}", s.profile)),
            selected_address: self.destination.get().map(|a| a.to_string()),
            socket: self.net.upgrade().map(|n| n.stats()),
        }
    }

    /// Closes the connection: close_notify to the client, and the socket forgets it.
    pub fn close(&self) {
        if self.done.replace(true) && self.state.get() == TransportState::Closed {
            return;
        }
        let now = Instant::now();
        if let (Some(net), Some(to)) = (self.net.upgrade(), self.destination.get()) {
            if let Some(d) = self.dtls.borrow_mut().as_mut() {
                d.close(now);
            }
            self.flush_dtls(&net, to);
        }
        if let Some(net) = self.net.upgrade() {
            net.unregister(self.key.get(), &self.local_ufrag());
        }
        self.state.set(TransportState::Closed);
    }
}

impl NetConnection for NativeConnection {
    fn key(&self) -> u64 {
        self.key.get()
    }
    fn ufrag(&self) -> String {
        self.local_ufrag()
    }
    fn pwd(&self) -> String {
        self.ice.borrow().pwd().to_owned()
    }

    fn on_datagram(&self, data: BytesMut, from: SocketAddr, now: Instant) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        if self.done.get() {
            return;
        }
        // RFC 7983: the first byte tells STUN, DTLS and SRTP/SRTCP apart.
        match data.first().copied() {
            Some(0..=3) => {
                if self.dtls.borrow().is_none() && self.negotiation.borrow().awaiting_answer {
                    // A check that overtook the backend's `webrtc.answer`: the client repeats it.
                    self.counters
                        .early_checks
                        .set(self.counters.early_checks.get() + 1);
                    return;
                }
                self.on_stun(&net, &data, from, now);
            }
            Some(20..=63) => self.on_dtls(&net, data, from, now),
            Some(128..=191) => {
                let rtcp = data.get(1).is_some_and(|pt| (192..=223).contains(pt));
                if rtcp {
                    self.on_srtcp(&data, now);
                } else if self.receives() {
                    self.on_srtp(&net, &data, now);
                } else {
                    self.counters
                        .rtp_in_ignored
                        .set(self.counters.rtp_in_ignored.get() + 1);
                }
            }
            _ => {}
        }
        self.reschedule();
    }

    fn on_timer(&self, now: Instant) {
        self.scheduled.set(None);
        if self.done.get() {
            return;
        }
        let retransmit = self.dtls.borrow_mut().as_mut().map(|d| d.on_timeout(now));
        if let Some(Err(e)) = retransmit {
            tracing::debug!(error = %e, "DTLS handshake gave up");
            self.give_up(CloseReason::DtlsClosed, "dtls");
            return;
        }
        if let (Some(net), Some(to)) = (self.net.upgrade(), self.destination.get()) {
            self.flush_dtls(&net, to);
            if self.receives() && self.srtp.borrow().is_some() {
                self.ingress.borrow_mut().on_timeout(now);
                self.send_feedback(&net);
            }
        }
        if now >= self.consent_deadline() {
            // RFC 7675: without consent the server must stop sending.
            self.give_up(CloseReason::IceTimeout, "ice_timeout");
            return;
        }
        if self.handshake_deadline().is_some_and(|t| now >= t) {
            self.give_up(CloseReason::DtlsTimeout, "dtls_timeout");
            return;
        }
        if self.state.get() == TransportState::Connected && now >= self.disconnect_deadline() {
            // Still sending (consent has not expired), but the backend learns early.
            self.set_state(TransportState::Disconnected);
        }
        self.reschedule();
    }

    fn learn_address(&self, from: SocketAddr, max: usize) -> Option<SocketAddr> {
        let mut addresses = self.addresses.borrow_mut();
        if !addresses.contains(&from) {
            addresses.push_back(from);
        }
        (addresses.len() > max.min(MAX_ADDRESSES_PER_CONNECTION))
            .then(|| addresses.pop_front())
            .flatten()
    }

    fn crashed(&self, message: String) {
        if self.state.replace(TransportState::Failed) != TransportState::Failed {
            self.done.set(true);
            self.io.on_failure("crashed");
            self.io.on_state(TransportState::Failed);
            self.io.on_gave_up(CloseReason::Crashed { message });
        }
    }
}

/// The big-endian `u32` at `at`, if the datagram is that long.
fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Appends `packet` to `buf`; for a retransmission to a client without RTX (`unwrap`), as
/// the original packet: the RTX payload's first two bytes are the original sequence number
/// (RFC 4588), and the SSRC and payload type go back to the media stream's.
fn write_packet(buf: &mut Vec<u8>, packet: &[u8], unwrap: Option<(Repairs, u16)>) {
    let Some((repairs, osn)) = unwrap else {
        buf.extend_from_slice(packet);
        return;
    };
    let Some(header) = super::srtp_egress::header_len(packet) else {
        return;
    };
    let start = buf.len();
    buf.extend_from_slice(&packet[..header]);
    buf.extend_from_slice(packet.get(header + 2..).unwrap_or_default());
    let out = &mut buf[start..];
    out[1] = (out[1] & 0x80) | (repairs.media_pt & 0x7f);
    out[2..4].copy_from_slice(&osn.to_be_bytes());
    out[8..12].copy_from_slice(&repairs.media_ssrc.to_be_bytes());
}

/// The sink the router writes a native connection's packets into.
pub struct NativeSink(pub Weak<NativeConnection>);

impl MediaSink for NativeSink {
    fn send_rtp(&self, packet: &[u8]) {
        if let Some(c) = self.0.upgrade() {
            c.send_rtp(packet);
        }
    }
    fn send_rtcp(&self, packet: &[u8]) {
        if let Some(c) = self.0.upgrade() {
            c.send_rtcp(packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retransmission_for_a_client_without_rtx_goes_out_as_the_original_packet() {
        let mut rtx = vec![0x80, 97, 0, 9, 0, 0, 0x10, 0, 0xAA, 0xAA, 0xAA, 0xAB];
        rtx.extend_from_slice(&[0x12, 0x34]);
        rtx.extend_from_slice(b"original payload");
        let repairs = Repairs {
            media_ssrc: 0xAAAA_AAAA,
            media_pt: 96,
            rtx_pt: 97,
            negotiated: false,
        };
        let mut buf = b"batch".to_vec();
        write_packet(&mut buf, &rtx, Some((repairs, 0x1234)));
        let mut expected = b"batch".to_vec();
        expected.extend_from_slice(&[0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xAA, 0xAA, 0xAA, 0xAA]);
        expected.extend_from_slice(b"original payload");
        assert_eq!(buf, expected);
        // With RTX negotiated, or for media, the packet goes as it is.
        let mut buf = Vec::new();
        write_packet(&mut buf, &rtx, None);
        assert_eq!(buf, rtx);
    }
}
