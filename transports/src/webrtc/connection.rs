//! One WebRTC connection: a sans-IO `rtc` peer connection fed from the worker socket.

use super::engine;
use super::net::Net;
use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext as NetContext, TransportProtocol};
use rtc_shared::marshal::Unmarshal;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};
use switchboard_core::rtp_parameters::{MediaKind, RtpParameters};
use switchboard_core::transport::{MediaSink, TransportIo, TransportState};
use switchboard_core::{ConsumerId, Error, ErrorCode, ProducerId, Result};

/// What the connection knows about one consumer it sends.
struct Outgoing {
    sender: RTCRtpSenderId,
    /// The consumer's extension ids (the router's) mapped to the ids negotiated on this leg.
    router_ext_ids: Vec<(String, u8)>,
    ext_map: [u8; 256],
    /// The router's id of the SDES MID extension, whose value must name the m-line this
    /// track has on this connection (the publisher's mid means nothing here, and a receiver
    /// routes packets to m-lines by it).
    mid_router_id: Option<u8>,
    /// This track's mid on this connection, once negotiated.
    mid: Option<Bytes>,
    /// The consumer's codecs (router payload types) by MIME type and clock rate.
    router_codecs: Vec<(u8, String, u32)>,
    /// Router payload type to the one negotiated on this leg (0: same). A reused m-line, or
    /// one the client offered (one connection per peer), may carry the client's numbering.
    pt_map: [u8; 128],
}

/// Counters of one connection.
#[derive(Default)]
pub struct ConnCounters {
    rtp_in: Cell<u64>,
    rtcp_in: Cell<u64>,
    rtp_out: Cell<u64>,
    rtp_out_rejected: Cell<u64>,
    /// Packets for a connection whose ICE and DTLS are not up yet.
    rtp_out_not_connected: Cell<u64>,
    rtcp_out: Cell<u64>,
    busy_drops: Cell<u64>,
    /// Connectivity checks that arrived before the remote description (dropped; the client
    /// repeats them).
    early_checks: Cell<u64>,
    /// RTCP for a connection whose ICE and DTLS are not up yet (no SRTCP keys).
    rtcp_out_not_connected: Cell<u64>,
    /// SRTP and SRTCP dropped because they came from a new SSRC when the connection already
    /// had [`MAX_REMOTE_SSRCS`].
    ssrc_limit_drops: Cell<u64>,
    /// Datagrams the connection's stack refused (bad STUN integrity, stray DTLS, SRTP that
    /// fails authentication).
    rejected: Cell<u64>,
}

impl super::net::NetConnection for Connection {
    fn key(&self) -> u64 {
        self.key.get()
    }
    fn ufrag(&self) -> String {
        self.ufrag.borrow().clone()
    }
    fn pwd(&self) -> String {
        self.pwd.borrow().clone()
    }
    fn on_datagram(&self, data: BytesMut, from: SocketAddr, now: Instant) {
        Connection::on_datagram(self, data, from, now)
    }
    fn on_timer(&self, now: Instant) {
        Connection::on_timer(self, now)
    }
    fn learn_address(&self, from: SocketAddr, max: usize) -> Option<SocketAddr> {
        Connection::learn_address(self, from, max)
    }
    fn crashed(&self, message: String) {
        Connection::crashed(self, message)
    }
}

/// A WebRTC connection on a worker's shared socket.
pub struct Connection {
    key: Cell<u64>,
    /// The local ICE credentials of the current session (empty until the first local
    /// description; new after every ICE restart).
    pub(crate) ufrag: RefCell<String>,
    pub(crate) pwd: RefCell<String>,
    pc: RefCell<RTCPeerConnection>,
    /// Builds a fresh peer connection, with the worker's host candidate, for a connection
    /// whose first offer failed midway.
    rebuild: Box<dyn Fn() -> Result<RTCPeerConnection>>,
    io: Rc<dyn TransportIo>,
    net: Weak<Net>,
    scheduled: Cell<Option<Instant>>,
    state: Cell<TransportState>,
    /// Whether ICE itself reported failure, to tell ICE failures from DTLS ones.
    ice_failed: Cell<bool>,
    /// Producers by the mid of the m-line they arrive on.
    pub(crate) producers_by_mid: RefCell<HashMap<String, ProducerId>>,
    consumers: RefCell<HashMap<ConsumerId, u32>>,
    outgoing: RefCell<HashMap<u32, Outgoing>>,
    /// SSRCs the remote side has sent SRTP or SRTCP from.
    remote_ssrcs: RefCell<SsrcBudget>,
    /// The remote addresses the worker socket routes here, oldest first.
    addresses: RefCell<std::collections::VecDeque<SocketAddr>>,
    /// Offer/answer bookkeeping of server-made offers: one offer in flight at a time.
    offered: Cell<bool>,
    awaiting_answer: Cell<bool>,
    offer_pending: Cell<bool>,
    counters: ConnCounters,
    /// How long the client may be silent before the connection gives up on it.
    consent_timeout: Duration,
    /// When the stack last accepted a datagram from the client.
    last_heard: Cell<Instant>,
    /// Whether the connection gave up on its client or is being closed: it reports nothing
    /// more.
    done: Cell<bool>,
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, e.to_string())
}

impl Connection {
    pub(crate) fn new(
        pc: RTCPeerConnection,
        rebuild: Box<dyn Fn() -> Result<RTCPeerConnection>>,
        io: Rc<dyn TransportIo>,
        net: &Rc<Net>,
        consent_timeout: Duration,
    ) -> Rc<Self> {
        let conn = Rc::new(Self {
            key: Cell::new(0),
            ufrag: RefCell::default(),
            pwd: RefCell::default(),
            pc: RefCell::new(pc),
            rebuild,
            io,
            net: Rc::downgrade(net),
            scheduled: Cell::new(None),
            state: Cell::new(TransportState::New),
            ice_failed: Cell::new(false),
            producers_by_mid: RefCell::default(),
            consumers: RefCell::default(),
            outgoing: RefCell::default(),
            remote_ssrcs: RefCell::default(),
            addresses: RefCell::default(),
            offered: Cell::new(false),
            awaiting_answer: Cell::new(false),
            offer_pending: Cell::new(false),
            counters: ConnCounters::default(),
            consent_timeout,
            last_heard: Cell::new(Instant::now()),
            done: Cell::new(false),
        });
        let weak: Weak<dyn super::net::NetConnection> = Rc::downgrade(&conn) as _;
        conn.key.set(net.register(weak));
        conn.reschedule();
        conn
    }

    /// The key the worker's timer heap knows this connection by.
    pub fn key(&self) -> u64 {
        self.key.get()
    }

    /// A datagram from `from` for this connection.
    pub fn on_datagram(&self, data: BytesMut, from: SocketAddr, now: Instant) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        let result = match self.pc.try_borrow_mut() {
            Ok(pc) if data.first().is_some_and(|b| *b < 4) && pc.remote_description().is_none() => {
                // A connectivity check that overtook the backend's `webrtc.answer`: the client
                // answered our offer and started checking before its answer reached us. The
                // stack cannot verify it without the remote credentials; the client repeats
                // the check, so drop and count it rather than have the stack log an error.
                drop(pc);
                self.counters
                    .early_checks
                    .set(self.counters.early_checks.get() + 1);
                return;
            }
            Ok(_) if srtp_ssrc(&data).is_some_and(|ssrc| !self.admit_ssrc(ssrc)) => {
                self.counters
                    .ssrc_limit_drops
                    .set(self.counters.ssrc_limit_drops.get() + 1);
                return;
            }
            Ok(mut pc) => pc.handle_read(TaggedBytesMut {
                now,
                transport: NetContext {
                    local_addr: net.announced,
                    peer_addr: from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: data,
            }),
            Err(_) => {
                self.counters
                    .busy_drops
                    .set(self.counters.busy_drops.get() + 1);
                return;
            }
        };
        match result {
            Ok(()) => self.last_heard.set(now),
            Err(e) => {
                self.counters.rejected.set(self.counters.rejected.get() + 1);
                tracing::trace!(ufrag = %self.ufrag.borrow(), error = %e, "datagram rejected");
            }
        }
        self.drain(true);
    }

    /// The worker's timer fired for this connection.
    pub fn on_timer(&self, now: Instant) {
        self.scheduled.set(None);
        if let Ok(mut pc) = self.pc.try_borrow_mut() {
            let _ = pc.handle_timeout(now);
        }
        if now >= self.consent_deadline() {
            // RFC 7675: without consent the server must stop sending; the client is gone,
            // and nobody else will tell the backend.
            self.give_up(
                switchboard_core::event::CloseReason::IceTimeout,
                "ice_timeout",
            );
        }
        self.drain(true);
    }

    fn consent_deadline(&self) -> Instant {
        self.last_heard.get() + self.consent_timeout
    }

    /// Fails the connection and asks its router to close it with `reason`, once.
    fn give_up(&self, reason: switchboard_core::event::CloseReason, stage: &'static str) {
        if self.done.replace(true) {
            return;
        }
        tracing::info!(ufrag = %self.ufrag.borrow(), %stage, "webrtc connection gave up on its client");
        if self.state.replace(TransportState::Failed) != TransportState::Failed {
            self.io.on_failure(stage);
            self.io.on_state(TransportState::Failed);
        }
        self.io.on_gave_up(reason);
    }

    /// Sends what the connection has queued, handles its events, and (when `deliver`) hands
    /// received media to the router. Reads are collected first and delivered after the
    /// connection is released, because forwarding may write into this same connection.
    fn drain(&self, deliver: bool) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        let mut reads = Vec::new();
        let mut events = Vec::new();
        {
            let Ok(mut pc) = self.pc.try_borrow_mut() else {
                return;
            };
            loop {
                let mut progressed = false;
                while let Some(w) = pc.poll_write() {
                    net.send(&w.message, w.transport.peer_addr);
                    progressed = true;
                }
                while let Some(e) = pc.poll_event() {
                    events.push(e);
                    progressed = true;
                }
                if deliver {
                    while let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() {
                        reads.push(message);
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
        }
        for e in events {
            self.on_event(e);
        }
        for m in reads {
            match m {
                RTCMessage::RtpPacket(_, packet) => {
                    self.counters.rtp_in.set(self.counters.rtp_in.get() + 1);
                    self.io.on_rtp_packet(packet);
                }
                RTCMessage::RtcpPacket(_, packets) => {
                    self.counters.rtcp_in.set(self.counters.rtcp_in.get() + 1);
                    if let Ok(bytes) = rtc_rtcp::packet::marshal(&packets) {
                        self.io.on_rtcp(bytes.freeze());
                    }
                }
                _ => {}
            }
        }
        self.reschedule();
    }

    fn reschedule(&self) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        if self.done.get() {
            return;
        }
        let stack = self
            .pc
            .try_borrow_mut()
            .ok()
            .and_then(|mut pc| pc.poll_timeout());
        let consent = self.consent_deadline();
        let next = stack.map_or(consent, |t| t.min(consent));
        if self.scheduled.get().is_none_or(|t| next < t) {
            self.scheduled.set(Some(next));
            net.schedule(self.key(), next);
        }
    }

    fn on_event(&self, event: RTCPeerConnectionEvent) {
        if let RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(s) = &event {
            self.ice_failed
                .set(*s == rtc::peer_connection::state::RTCIceConnectionState::Failed);
        }
        if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = event {
            let state = match s {
                RTCPeerConnectionState::New => TransportState::New,
                RTCPeerConnectionState::Connecting => TransportState::Connecting,
                RTCPeerConnectionState::Connected => TransportState::Connected,
                RTCPeerConnectionState::Disconnected => TransportState::Disconnected,
                RTCPeerConnectionState::Failed => TransportState::Failed,
                RTCPeerConnectionState::Closed => TransportState::Closed,
                _ => return,
            };
            if self.done.get() {
                return;
            }
            if state == TransportState::Closed {
                // Not closed by us (that sets `done` first): the client ended DTLS.
                self.give_up(
                    switchboard_core::event::CloseReason::DtlsClosed,
                    "dtls_closed",
                );
                return;
            }
            if self.state.replace(state) != state {
                if state == TransportState::Failed {
                    // The peer connection fails when either ICE or DTLS does; ICE reports its
                    // own failure first, so anything else is the handshake or its keys.
                    self.io
                        .on_failure(if self.ice_failed.get() { "ice" } else { "dtls" });
                }
                self.io.on_state(state);
            }
        }
    }

    /// Adopts the ICE credentials of a new local description, so the worker socket routes
    /// the next session's checks here (they change on every ICE restart).
    fn sync_credentials(self: &Rc<Self>, local_sdp: &str) {
        let Ok(parsed) = switchboard_sdp::parse(local_sdp) else {
            return;
        };
        let Some((ufrag, pwd)) = switchboard_sdp::media_sections(&parsed)
            .into_iter()
            .find_map(|m| Some((m.ice_ufrag?, m.ice_pwd?)))
        else {
            return;
        };
        if *self.ufrag.borrow() == ufrag {
            return;
        }
        if let Some(net) = self.net.upgrade() {
            let weak: Weak<dyn super::net::NetConnection> = Rc::downgrade(self) as _;
            net.rename(&self.ufrag.borrow(), &ufrag, weak);
        }
        *self.ufrag.borrow_mut() = ufrag;
        *self.pwd.borrow_mut() = pwd;
    }

    /// Whether SRTP or SRTCP from `ssrc` may reach the stack (see [`SsrcBudget`]).
    fn admit_ssrc(&self, ssrc: u32) -> bool {
        self.remote_ssrcs.borrow_mut().admit(ssrc)
    }

    /// Records a remote address the socket now routes here; returns the oldest one to forget
    /// when there are more than `max`.
    pub(crate) fn learn_address(&self, from: SocketAddr, max: usize) -> Option<SocketAddr> {
        let mut addresses = self.addresses.borrow_mut();
        if !addresses.contains(&from) {
            addresses.push_back(from);
        }
        (addresses.len() > max)
            .then(|| addresses.pop_front())
            .flatten()
    }

    /// Marks the connection failed after a panic inside it, and has it closed as crashed:
    /// its state is unknown and it no longer receives, so an ICE restart could not save it.
    /// The client connects again with a new offer.
    pub(crate) fn crashed(&self, message: String) {
        if self.state.replace(TransportState::Failed) != TransportState::Failed {
            self.io.on_failure("crashed");
            self.io.on_state(TransportState::Failed);
            self.io
                .on_gave_up(switchboard_core::event::CloseReason::Crashed { message });
        }
    }

    /// Current connection state.
    pub fn state(&self) -> TransportState {
        self.state.get()
    }

    /// Applies a remote offer and returns the local answer's SDP with what `check` made of it.
    ///
    /// `check` sees the answer before it is applied. If the stack refuses the offer, cannot
    /// answer it, or `check` fails, the offer is rolled back (RFC 9429, section 5.7): the
    /// connection is left exactly as it was, so the client can correct itself and offer again.
    pub fn apply_offer<T>(
        self: &Rc<Self>,
        sdp: &str,
        check: impl FnOnce(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        if self.awaiting_answer.get() {
            // Both sides offering at once (one connection per peer): the client must answer
            // the server's pending offer first.
            return Err(Error::invalid(
                "an offer from the server is waiting for its answer on this connection: answer it, then offer again",
            ));
        }
        let (answer, checked) = {
            let mut pc = self.pc.borrow_mut();
            // Nothing negotiated yet and nothing of ours on it: a failed offer is undone by
            // starting over, since the stack starts its transports while applying a first
            // offer and a rollback does not stop them.
            let pristine = !self.offered.get()
                && pc.current_remote_description().is_none()
                && self.outgoing.borrow().is_empty();
            let result = self.answer_offer(&mut pc, sdp, check);
            if result.is_err() {
                if pristine {
                    match (self.rebuild)() {
                        Ok(fresh) => {
                            let _ = pc.close();
                            *pc = fresh;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start over after a rejected offer");
                        }
                    }
                } else if pc.pending_remote_description().is_some() {
                    let rolled_back = RTCSessionDescription::rollback(None)
                        .and_then(|rollback| pc.set_remote_description(Instant::now(), rollback));
                    if let Err(e) = rolled_back {
                        tracing::warn!(error = %e, "a rejected offer could not be rolled back");
                    }
                }
            }
            result?
        };
        self.sync_credentials(&answer);
        self.after_negotiation();
        Ok((answer, checked))
    }

    fn answer_offer<T>(
        &self,
        pc: &mut RTCPeerConnection,
        sdp: &str,
        check: impl FnOnce(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(invalid_sdp)?;
        pc.set_remote_description(Instant::now(), offer)
            .map_err(invalid_sdp)?;
        self.no_trackless_senders(pc);
        let answer = pc.create_answer(None).map_err(invalid_sdp)?;
        let checked = check(&answer.sdp)?;
        pc.set_local_description(Instant::now(), answer)
            .map_err(failed)?;
        let answer = pc
            .local_description()
            .map(|d| without_rtcp_candidates(&d.sdp))
            .ok_or_else(|| Error::internal("no local description after answering"))?;
        Ok((answer, checked))
    }

    /// A receive-only m-line that the client offers on a connection where the server has no
    /// track for it gets `inactive` in the answer, not a `sendonly` that promises media
    /// which never comes.
    fn no_trackless_senders(&self, pc: &mut RTCPeerConnection) {
        use rtc::rtp_transceiver::RTCRtpTransceiverDirection as Dir;
        let ours: Vec<RTCRtpSenderId> = self.outgoing.borrow().values().map(|o| o.sender).collect();
        for t in pc.get_transceivers().collect::<Vec<_>>() {
            if let Some(mut tr) = pc.rtp_transceiver(t)
                && tr.direction() == Dir::Sendonly
                && tr.sender().is_none_or(|s| !ours.contains(&s))
            {
                tr.set_direction(Dir::Inactive);
            }
        }
    }

    /// Creates a local offer describing the current senders.
    ///
    /// A renegotiation offer (not `force`) is only written once the connection has offered
    /// before and its last offer was answered; otherwise the change is remembered and offered
    /// after the answer arrives (`None` now).
    pub fn create_offer(self: &Rc<Self>, force: bool) -> Result<Option<String>> {
        if !force && (!self.offered.get() || self.awaiting_answer.get()) {
            if self.offered.get() {
                self.offer_pending.set(true);
            }
            return Ok(None);
        }
        let mut pc = self.pc.borrow_mut();
        if !self.offered.get() {
            // A receive connection always carries one data channel: its first offer then has
            // an m-line (and ICE parameters) even in an empty room, which every stack can
            // answer, and the connection is up before the first track arrives.
            pc.create_data_channel("switchboard", None)
                .map_err(failed)?;
        }
        let offer = pc.create_offer(None).map_err(failed)?;
        pc.set_local_description(Instant::now(), offer)
            .map_err(failed)?;
        let sdp = pc
            .local_description()
            .map(|d| candidates_in_every_section(&without_rtcp_candidates(&d.sdp)))
            .ok_or_else(|| Error::internal("no local description after offering"))?;
        drop(pc);
        self.sync_credentials(&sdp);
        self.offered.set(true);
        self.awaiting_answer.set(true);
        self.offer_pending.set(false);
        self.drain(false);
        Ok(Some(sdp))
    }

    /// Applies the remote answer to our offer. Returns whether another offer is due (changes
    /// arrived while this one was in flight) and the consumers whose m-lines were rejected.
    pub fn apply_answer(
        &self,
        sdp: &str,
        answer: &switchboard_sdp::Sdp,
    ) -> Result<(bool, Vec<ConsumerId>)> {
        if !self.awaiting_answer.get() {
            return Err(Error::invalid(
                "no offer is waiting for an answer on this connection",
            ));
        }
        // An answer without m-lines has no ICE parameters, which the stack refuses; there is
        // nothing in it to apply. (Receive connections always offer their data channel, so
        // this is a client that rejected everything.)
        if !switchboard_sdp::media_sections(answer).is_empty() {
            let mut pc = self.pc.borrow_mut();
            let answer = RTCSessionDescription::answer(sdp.to_owned()).map_err(invalid_sdp)?;
            pc.set_remote_description(Instant::now(), answer)
                .map_err(invalid_sdp)?;
        }
        self.awaiting_answer.set(false);
        let rejected_mids: Vec<String> = switchboard_sdp::accepted_mids(answer)
            .into_iter()
            .filter(|(_, accepted)| !accepted)
            .map(|(mid, _)| mid)
            .collect();
        let rejected = self.consumers_on_mids(&rejected_mids);
        self.after_negotiation();
        Ok((self.offer_pending.replace(false), rejected))
    }

    /// Consumers whose tracks are sent on these mids.
    fn consumers_on_mids(&self, mids: &[String]) -> Vec<ConsumerId> {
        if mids.is_empty() {
            return Vec::new();
        }
        let mut pc = self.pc.borrow_mut();
        let mut senders = Vec::new();
        for t in pc.get_transceivers().collect::<Vec<_>>() {
            if let Some(tr) = pc.rtp_transceiver(t)
                && let Some(mid) = tr.mid().clone()
                && mids.contains(&mid)
                && let Some(sender) = tr.sender()
            {
                senders.push(sender);
            }
        }
        drop(pc);
        let outgoing = self.outgoing.borrow();
        self.consumers
            .borrow()
            .iter()
            .filter(|(_, ssrc)| {
                outgoing
                    .get(ssrc)
                    .is_some_and(|o| senders.contains(&o.sender))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Restarts ICE: the next offer carries new credentials.
    pub fn restart_ice(&self) {
        self.pc.borrow_mut().restart_ice();
    }

    /// Accepts a trickled remote candidate (never required: the server is ICE-lite and learns
    /// addresses from connectivity checks).
    pub fn add_remote_candidate(&self, candidate: &str) -> Result<()> {
        let init = rtc::peer_connection::transport::RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            ..Default::default()
        };
        self.pc
            .borrow_mut()
            .add_remote_candidate(init)
            .map_err(|e| Error::invalid(format!("candidate: {e}")))
    }

    /// Learns, after negotiation, which extension ids each sender uses on this leg.
    fn after_negotiation(&self) {
        {
            let mut pc = self.pc.borrow_mut();
            for out in self.outgoing.borrow_mut().values_mut() {
                let Some(mut sender) = pc.rtp_sender(out.sender) else {
                    continue;
                };
                let negotiated: Vec<(String, u8)> = sender
                    .get_parameters()
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .filter_map(|e| Some((e.uri.clone(), u8::try_from(e.id).ok()?)))
                    .collect();
                out.ext_map = [0; 256];
                for (uri, router_id) in &out.router_ext_ids {
                    if let Some((_, id)) = negotiated.iter().find(|(u, _)| u == uri) {
                        out.ext_map[usize::from(*router_id)] = *id;
                    }
                }
                let codecs: Vec<(u8, String, u32)> = sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .map(|c| {
                        (
                            c.payload_type,
                            c.rtp_codec.mime_type.clone(),
                            c.rtp_codec.clock_rate,
                        )
                    })
                    .collect();
                out.pt_map = [0; 128];
                for (router_pt, mime, clock) in &out.router_codecs {
                    let leg = codecs
                        .iter()
                        .find(|(_, m, c)| m.eq_ignore_ascii_case(mime) && c == clock);
                    if let Some((pt, _, _)) = leg
                        && usize::from(*router_pt) < 128
                    {
                        out.pt_map[usize::from(*router_pt)] = *pt;
                    }
                }
            }
            let transceivers: Vec<_> = pc.get_transceivers().collect();
            let mut mids = Vec::new();
            for t in transceivers {
                if let Some(tr) = pc.rtp_transceiver(t)
                    && let (Some(sender), Some(mid)) = (tr.sender(), tr.mid().clone())
                {
                    mids.push((sender, mid));
                }
            }
            for out in self.outgoing.borrow_mut().values_mut() {
                out.mid = mids
                    .iter()
                    .find(|(s, _)| *s == out.sender)
                    .map(|(_, mid)| Bytes::from(mid.clone().into_bytes()));
            }
        }
        self.drain(true);
    }

    /// Adds a sending track for a consumer.
    pub fn add_consumer(
        &self,
        id: ConsumerId,
        kind: MediaKind,
        params: &RtpParameters,
    ) -> Result<()> {
        let ssrc = params
            .ssrc()
            .ok_or_else(|| Error::internal("consumer without an SSRC"))?;
        let codec = params
            .media_codec()
            .ok_or_else(|| Error::internal("consumer without a codec"))?;
        let stream_id = params.rtcp.cname.clone().unwrap_or_else(|| id.to_string());
        let track = MediaStreamTrack::new(
            stream_id,
            id.to_string(),
            id.to_string(),
            engine::codec_kind(kind),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec: RTCRtpCodec {
                    mime_type: codec.mime_type.clone(),
                    clock_rate: codec.clock_rate,
                    channels: codec.channels.map(u16::from).unwrap_or(0),
                    sdp_fmtp_line: engine::fmtp_line(&codec.parameters),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        let sender = self.pc.borrow_mut().add_track(track).map_err(failed)?;
        self.consumers.borrow_mut().insert(id, ssrc);
        self.outgoing.borrow_mut().insert(
            ssrc,
            Outgoing {
                sender,
                router_ext_ids: params
                    .header_extensions
                    .iter()
                    .map(|e| (e.uri.clone(), e.id))
                    .collect(),
                ext_map: [0; 256],
                mid_router_id: params
                    .extension_id(switchboard_core::rtp_parameters::extension_uri::MID),
                mid: None,
                router_codecs: params
                    .codecs
                    .iter()
                    .map(|c| (c.payload_type, c.mime_type.clone(), c.clock_rate))
                    .collect(),
                pt_map: [0; 128],
            },
        );
        Ok(())
    }

    /// Removes a consumer's track; its m-line becomes free for the next track of its kind.
    pub fn remove_consumer(&self, id: ConsumerId) {
        let Some(ssrc) = self.consumers.borrow_mut().remove(&id) else {
            return;
        };
        if let Some(out) = self.outgoing.borrow_mut().remove(&ssrc)
            && let Ok(mut pc) = self.pc.try_borrow_mut()
        {
            let _ = pc.remove_track(out.sender);
        }
    }

    fn send_rtp(&self, data: &[u8]) {
        if matches!(
            self.state.get(),
            TransportState::New | TransportState::Connecting
        ) {
            // No SRTP keys yet: the packet could not be protected, and handing it to the
            // peer connection would only log a warning per packet on the forwarding path.
            self.counters
                .rtp_out_not_connected
                .set(self.counters.rtp_out_not_connected.get() + 1);
            return;
        }
        let Ok(mut packet) = rtc_rtp::Packet::unmarshal(&mut Bytes::copy_from_slice(data)) else {
            return;
        };
        let sender = {
            let outgoing = self.outgoing.borrow();
            let Some(out) = outgoing.get(&packet.header.ssrc) else {
                self.counters
                    .rtp_out_rejected
                    .set(self.counters.rtp_out_rejected.get() + 1);
                return;
            };
            // Extension ids on this leg were negotiated by the connection, not the router.
            packet.header.extensions.retain_mut(|e| {
                if Some(e.id) == out.mid_router_id
                    && let Some(mid) = &out.mid
                {
                    e.payload = mid.clone();
                }
                let id = out.ext_map[usize::from(e.id)];
                e.id = id;
                id != 0
            });
            packet.header.extension = !packet.header.extensions.is_empty();
            // The padding the parser recorded belongs to the publisher's extension block;
            // kept, it makes the stack size the packet for extensions that are gone, and it
            // refuses every packet whose size then disagrees (one leg negotiating fewer
            // extensions than the publisher sends).
            packet.header.extensions_padding = 0;
            packet.header.extension_profile = extension_profile(&packet.header.extensions);
            if let Some(&pt) = out.pt_map.get(usize::from(packet.header.payload_type))
                && pt != 0
            {
                packet.header.payload_type = pt;
            }
            out.sender
        };
        let Some(net) = self.net.upgrade() else {
            return;
        };
        let written = match self.pc.try_borrow_mut() {
            Ok(mut pc) => {
                let written = match pc.rtp_sender(sender) {
                    Some(mut s) => s.write_rtp(Instant::now(), packet).is_ok(),
                    None => false,
                };
                // Only the datagrams, not a full `drain`: writing RTP raises no event, queues
                // nothing to read and moves no timer, and each extra sweep of the stack's
                // handlers (events, timeouts) cost more than the router's whole forwarding.
                while let Some(w) = pc.poll_write() {
                    net.send(&w.message, w.transport.peer_addr);
                }
                written
            }
            Err(_) => {
                self.counters
                    .busy_drops
                    .set(self.counters.busy_drops.get() + 1);
                return;
            }
        };
        if written {
            self.counters.rtp_out.set(self.counters.rtp_out.get() + 1);
        } else {
            self.counters
                .rtp_out_rejected
                .set(self.counters.rtp_out_rejected.get() + 1);
        }
    }

    fn send_rtcp(&self, data: &[u8]) {
        if matches!(
            self.state.get(),
            TransportState::New | TransportState::Connecting
        ) {
            // Sender reports and feedback for a leg that has no keys yet: the stack could
            // only refuse them, with a warning each.
            self.counters
                .rtcp_out_not_connected
                .set(self.counters.rtcp_out_not_connected.get() + 1);
            return;
        }
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut Bytes::copy_from_slice(data)) else {
            return;
        };
        let Some(first) = packets.first() else {
            return;
        };
        // Sender reports belong to one of our senders; feedback (PLI/FIR) goes out through any
        // receiver, as RTCP is multiplexed on the one transport.
        let sr_ssrc = first
            .as_any()
            .downcast_ref::<rtc_rtcp::sender_report::SenderReport>()
            .map(|sr| sr.ssrc);
        let sender = sr_ssrc.and_then(|ssrc| self.outgoing.borrow().get(&ssrc).map(|o| o.sender));
        let ok = match self.pc.try_borrow_mut() {
            Ok(mut pc) => {
                if let Some(sender) = sender {
                    pc.rtp_sender(sender)
                        .is_some_and(|mut s| s.write_rtcp(Instant::now(), packets).is_ok())
                } else if sr_ssrc.is_some() {
                    false
                } else {
                    let receiver = pc.get_receivers().next();
                    match receiver.and_then(|r| pc.rtp_receiver(r)) {
                        Some(mut r) => r.write_rtcp(Instant::now(), packets).is_ok(),
                        None => false,
                    }
                }
            }
            Err(_) => false,
        };
        if ok {
            self.counters.rtcp_out.set(self.counters.rtcp_out.get() + 1);
        }
        self.drain(false);
    }

    /// Counters and state as JSON.
    pub fn stats(&self) -> Value {
        let c = &self.counters;
        json!({
            "state": self.state.get(),
            "rtp_packets_received": c.rtp_in.get(),
            "rtcp_packets_received": c.rtcp_in.get(),
            "rtp_packets_sent": c.rtp_out.get(),
            "rtp_packets_rejected": c.rtp_out_rejected.get(),
            "rtp_packets_not_connected": c.rtp_out_not_connected.get(),
            "rtcp_packets_sent": c.rtcp_out.get(),
            "rtcp_packets_not_connected": c.rtcp_out_not_connected.get(),
            "early_connectivity_checks": c.early_checks.get(),
            "ssrc_limit_drops": c.ssrc_limit_drops.get(),
            "busy_drops": c.busy_drops.get(),
            "datagrams_rejected": c.rejected.get(),
            "socket": self.net.upgrade().map(|n| n.stats()),
            "consumers": self.consumers.borrow().len(),
            "producers": self.producers_by_mid.borrow().len(),
        })
    }

    /// Closes the peer connection and leaves the worker's tables.
    pub fn close(&self) {
        self.done.set(true);
        if let Ok(mut pc) = self.pc.try_borrow_mut() {
            let _ = pc.close();
        }
        self.drain(false);
        if let Some(net) = self.net.upgrade() {
            net.unregister(self.key(), &self.ufrag.borrow());
        }
    }
}

/// SSRCs one connection's remote side may send from: every track's media, RTX and FEC
/// streams, simulcast layers and the receivers' own RTCP SSRCs, with room to spare.
pub const MAX_REMOTE_SSRCS: usize = 64;

/// The SSRCs a connection's remote side has sent SRTP or SRTCP from, up to
/// [`MAX_REMOTE_SSRCS`]. The SRTP layer allocates per-SSRC state (a replay window) before it
/// authenticates a packet and never frees it, so a remote that rotates SSRCs would otherwise
/// grow the connection without bound; packets from SSRCs beyond the budget never reach it.
#[derive(Default)]
struct SsrcBudget(Vec<u32>);

impl SsrcBudget {
    /// Whether packets from `ssrc` may pass: a known SSRC, or a new one while there is room.
    fn admit(&mut self, ssrc: u32) -> bool {
        if self.0.contains(&ssrc) {
            return true;
        }
        if self.0.len() >= MAX_REMOTE_SSRCS {
            return false;
        }
        self.0.push(ssrc);
        true
    }
}

/// The SSRC of an SRTP packet (bytes 8..12) or the sender SSRC of an SRTCP one (4..8), read
/// from the unencrypted header; `None` for anything else (STUN, DTLS).
fn srtp_ssrc(data: &[u8]) -> Option<u32> {
    // RFC 7983: 128..=191 is RTP or RTCP; RFC 5761: RTCP packet types 192..=223.
    if !(128..=191).contains(data.first()?) {
        return None;
    }
    let at = if (192..=223).contains(data.get(1)?) {
        4
    } else {
        8
    };
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The description without component-2 (RTCP) candidates, which the stack copies from the
/// host candidate: every m-line is `rtcp-mux`, so they only invite checks for a component
/// that does not exist. Candidates are not part of what the stack compares when the
/// description is applied, so the text may differ there.
fn without_rtcp_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|line| {
            let mut fields = line.split_ascii_whitespace();
            !(fields.next().is_some_and(|f| f.starts_with("a=candidate:"))
                && fields.next() == Some("2"))
        })
        .collect()
}

/// The offer with the first m-line's candidates in every m-line that has none (rejected ones
/// aside). The stack writes them into the first m-line only, which is enough for an answerer
/// that accepts BUNDLE as the first m-line's transport; aiortc 1.16 takes the remote
/// candidates of some m-lines from another m-line (the last one under max-bundle, a later one
/// of the same kind otherwise) and, finding none there, never starts its checks. Every
/// m-line shares the same ICE credentials and fingerprint, so the lines describe the one
/// transport the server has.
fn candidates_in_every_section(sdp: &str) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let candidates: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("m="))
        .skip(1)
        .take_while(|l| !l.starts_with("m="))
        .filter(|l| l.starts_with("a=candidate:") || l.starts_with("a=end-of-candidates"))
        .copied()
        .collect();
    if candidates.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 80 * 4);
    let mut section_has = true;
    let mut section_rejected = false;
    let close = |out: &mut String, has: bool, rejected: bool| {
        if !has && !rejected {
            for c in &candidates {
                out.push_str(c);
            }
        }
    };
    for line in &lines {
        if line.starts_with("m=") {
            close(&mut out, section_has, section_rejected);
            section_has = false;
            section_rejected = line.split_ascii_whitespace().nth(1) == Some("0");
        } else if line.starts_with("a=candidate:") {
            section_has = true;
        }
        out.push_str(line);
    }
    close(&mut out, section_has, section_rejected);
    out
}

/// The RFC 8285 form these extensions need: one-byte ids where every id and length fits,
/// two-byte otherwise.
fn extension_profile(extensions: &[rtc_rtp::header::Extension]) -> u16 {
    let one_byte = extensions
        .iter()
        .all(|e| (1..=14).contains(&e.id) && (1..=16).contains(&e.payload.len()));
    if one_byte {
        rtc_rtp::header::EXTENSION_PROFILE_ONE_BYTE
    } else {
        rtc_rtp::header::EXTENSION_PROFILE_TWO_BYTE
    }
}

fn invalid_sdp(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidSdp, format!("SDP rejected: {e}"))
}

/// The sink the router writes a connection's outgoing packets to.
pub struct ConnectionSink(pub Weak<Connection>);

impl MediaSink for ConnectionSink {
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

impl Connection {
    /// Adds the host candidate the worker announces.
    pub fn add_local_candidate(
        &self,
        candidate: rtc::peer_connection::transport::RTCIceCandidateInit,
    ) -> Result<()> {
        self.pc
            .borrow_mut()
            .add_local_candidate(candidate)
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_m_line_carries_the_candidates_but_rejected_ones() {
        let sdp = "v=0\r\ns=-\r\nm=video 9 X 96\r\na=mid:0\r\na=candidate:1 1 udp 5 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\nm=audio 9 X 111\r\na=mid:1\r\nm=video 0 X 96\r\na=mid:2\r\nm=application 9 X webrtc-datachannel\r\na=mid:3\r\n";
        let out = candidates_in_every_section(sdp);
        let sections: Vec<&str> = out.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 4);
        for (i, s) in sections.iter().enumerate() {
            let has = s.contains(
                "a=candidate:1 1 udp 5 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\n",
            );
            assert_eq!(has, i != 2, "section {i}: {s}");
        }
        assert_eq!(out.matches("a=candidate:").count(), 3);
        let none = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\n";
        assert_eq!(candidates_in_every_section(none), none);
    }

    #[test]
    fn srtp_ssrcs_are_read_from_the_clear_header() {
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 9, 0xAA, 0xBB, 0xCC, 0xDD, 1, 2];
        assert_eq!(srtp_ssrc(&rtp), Some(0xAABB_CCDD));
        rtp[1] = 0x80 | 96; // marker set: still RTP
        assert_eq!(srtp_ssrc(&rtp), Some(0xAABB_CCDD));
        let rtcp = [0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0];
        assert_eq!(srtp_ssrc(&rtcp), Some(0x1122_3344));
        assert_eq!(srtp_ssrc(&[0x00, 0x01, 0, 0]), None, "STUN");
        assert_eq!(srtp_ssrc(&[0x16, 0xFE, 0xFD]), None, "DTLS");
        assert_eq!(srtp_ssrc(&[0x80, 96, 0]), None, "truncated");
    }

    #[test]
    fn random_ssrc_srtp_does_not_grow_state_past_the_budget() {
        let mut budget = SsrcBudget::default();
        let mut admitted = 0;
        for ssrc in 0..10_000u32 {
            if budget.admit(ssrc.wrapping_mul(2_654_435_761)) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, MAX_REMOTE_SSRCS);
        assert_eq!(budget.0.len(), MAX_REMOTE_SSRCS);
        assert!(budget.admit(0), "a known SSRC keeps passing");
    }
}
