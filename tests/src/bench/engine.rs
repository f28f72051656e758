//! Many WebRTC clients on one thread: webrtc-rs's sans-IO `rtc` peer connection per client,
//! one UDP socket per client (servers tell connections apart by remote address), one `mio`
//! poll loop, one timer heap. Plain RTP clients (no peer connection: the same streams sent and
//! counted in the clear, for Switchboard's `rtp` plugin) run on the same loop, so the two
//! kinds of fan-out are measured by the same generator. No task or thread per client, so a client costs what its
//! packets cost (SRTP and the stack's bookkeeping), which keeps the generator off the
//! critical path of the measurement.
//!
//! Control code on other threads reaches the loop with [`Engine::call`]: a closure that runs on
//! the loop's thread with the loop's [`State`], its result sent back.

use super::payload::{self, Mark};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Video packets per second per publisher (1200-byte payloads: about 1 Mbit/s).
pub const VIDEO_PPS: u32 = 100;
/// Video payload bytes.
pub const VIDEO_BYTES: usize = 1200;
/// Opus packets per second per publisher (20 ms frames).
pub const AUDIO_PPS: u32 = 50;
/// Opus payload bytes (about 40 kbit/s).
pub const AUDIO_BYTES: usize = 100;
/// Every this many video packets is a keyframe.
const KEYFRAME_EVERY: u32 = 50;
/// The payload type of the publishers' VP8.
pub const VIDEO_PT: u8 = 96;
/// The payload type of the publishers' Opus.
pub const AUDIO_PT: u8 = 111;
const WAKER: Token = Token(usize::MAX);

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// Handle to the generator's event loop.
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    waker: Arc<Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Index of a client in the engine.
pub type ClientId = usize;

impl Engine {
    /// Starts the loop on its own thread; clients offer the stack's default SRTP profiles.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(Vec::new())
    }

    /// Starts the loop with clients that offer only `srtp` profiles (all the stack's when
    /// empty), in that order of preference.
    pub fn start_with(srtp: Vec<SrtpProtectionProfile>) -> std::io::Result<Self> {
        Self::start_sampling(srtp, 1)
    }

    /// Like [`Engine::start_with`], with only every `decrypt_every`-th subscriber
    /// authenticating and decrypting its media (1: all of them). The others count the RTP
    /// packets they receive from the (unencrypted) header and hand them to no stack: a
    /// subscriber's stack costs the generator about what forwarding to it costs the server,
    /// which made the generator, not the server, the limit. The sampled subscribers still
    /// measure latency and check every payload.
    pub fn start_sampling(
        srtp: Vec<SrtpProtectionProfile>,
        decrypt_every: usize,
    ) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("bench-engine".into())
            .spawn(move || {
                let mut state = State::new(poll);
                state.srtp_profiles = srtp;
                state.decrypt_every = decrypt_every.max(1);
                state.run(rx)
            })?;
        Ok(Self {
            jobs,
            waker,
            thread: Some(thread),
        })
    }

    /// Runs `f` on the loop's thread and returns its result.
    pub fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut State) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        self.jobs.send(job).expect("the engine loop is running");
        let _ = self.waker.wake();
        rx.recv().expect("the engine loop answers")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.jobs.send(Box::new(|s: &mut State| s.stop = true));
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Publisher {
    /// The peer connection's video and audio senders; `None` for a plain RTP client.
    senders: Option<(RTCRtpSenderId, RTCRtpSenderId)>,
    video_ssrc: u32,
    audio_ssrc: u32,
    /// Payload types as negotiated (resolved when sending starts).
    video_pt: u8,
    audio_pt: u8,
    video_stream: u32,
    audio_stream: u32,
    vseq: u16,
    aseq: u16,
    /// Offset within the 10 ms tick, so publishers do not all send at once.
    phase: Duration,
    next_video: Instant,
    next_audio: Instant,
    vcount: u32,
    acount: u32,
    video_key: Vec<u8>,
    video_delta: Vec<u8>,
    audio_body: Vec<u8>,
}

/// One client: a peer connection, or a plain RTP endpoint.
pub struct Client {
    /// `None` for a plain RTP client.
    pc: Option<RTCPeerConnection>,
    /// Where a plain RTP publisher sends.
    remote: Option<SocketAddr>,
    /// `None` once the client is gone ([`State::remove_client`]): its port is closed.
    socket: Option<UdpSocket>,
    local: SocketAddr,
    /// When the client was created.
    pub created: Instant,
    /// When its connection reached `connected`.
    pub connected: Option<Instant>,
    /// Whether its connection failed.
    pub failed: bool,
    /// When its first marked media packet arrived.
    pub first_media: Option<Instant>,
    /// Marked media packets received.
    pub received: u64,
    publisher: Option<Publisher>,
    timeout: Option<Instant>,
    /// Negotiated SRTP profile, once known.
    pub srtp: Option<String>,
    /// A subscriber that counts its media from the RTP header instead of decrypting it (see
    /// [`Engine::start_sampling`]).
    pub light: bool,
}

/// Per-stream sequence window of one measurement.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// First sequence number of each stream in the window.
    pub start: Vec<u32>,
    /// One past the last sequence number of each stream in the window (set at the end).
    pub end: Option<Vec<u32>>,
    /// Packets received inside the window, per stream (summed over subscribers).
    pub received: Vec<u64>,
    /// Forwarding latency of the packets inside the window, in microseconds.
    pub latency_us: Option<Histogram<u64>>,
    /// RTP packets the light subscribers received between the window's start and end (they
    /// cannot read the publishers' sequence numbers, which are in the encrypted payload, so
    /// they count by arrival time: off by the packets in flight at either edge, a few out of
    /// a window's thousands).
    pub light_received: u64,
    /// Whether [`State::end_window`] was called (light subscribers stop counting).
    pub ended: bool,
}

/// The loop's state; closures given to [`Engine::call`] act on it.
pub struct State {
    poll: Poll,
    /// Every client, by id.
    pub clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, ClientId)>>,
    epoch: Instant,
    /// Next sequence number of each stream (how many packets it sent).
    pub stream_seq: Vec<u32>,
    /// The measurement in progress, if any.
    pub window: Option<Window>,
    /// Datagrams the generator could not send (socket buffer full) or the stack refused.
    pub send_errors: u64,
    /// Datagrams the client stacks refused.
    pub read_errors: u64,
    /// Every this-many-th subscriber decrypts its media; the others are light.
    decrypt_every: usize,
    /// Subscribers created so far.
    subscribers: usize,
    /// Packets received that carry no mark (not the generator's).
    pub unmarked: u64,
    stop: bool,
    buf: Vec<u8>,
    inbox: Vec<(ClientId, SocketAddr, Instant, BytesMut)>,
    srtp_profiles: Vec<SrtpProtectionProfile>,
}

fn media_engine() -> MediaEngine {
    let mut m = MediaEngine::default();
    let feedback = vec![
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RTCPFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        },
    ];
    let _ = m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8(feedback),
            payload_type: VIDEO_PT,
        },
        RtpCodecKind::Video,
    );
    let _ = m.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus(),
            payload_type: AUDIO_PT,
        },
        RtpCodecKind::Audio,
    );
    m
}

fn vp8(rtcp_feedback: Vec<RTCPFeedback>) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback,
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn track(kind: RtpCodecKind, ssrc: u32, name: &str, codec: RTCRtpCodec) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("{name}-stream"),
        format!("{name}-{kind}"),
        format!("{name}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl State {
    fn new(poll: Poll) -> Self {
        Self {
            poll,
            clients: Vec::new(),
            timers: BinaryHeap::new(),
            epoch: Instant::now(),
            stream_seq: Vec::new(),
            window: None,
            send_errors: 0,
            read_errors: 0,
            unmarked: 0,
            stop: false,
            buf: vec![0u8; 2048],
            inbox: Vec::new(),
            srtp_profiles: Vec::new(),
            decrypt_every: 1,
            subscribers: 0,
        }
    }

    /// Creates a client with a socket on `ip` (port chosen by the OS). A publisher gets a VP8
    /// and an Opus track and starts sending once connected; returns the client's id.
    ///
    /// No interceptors: the generator neither asks for retransmissions nor sends reports, so
    /// what it counts as lost is what the server did not deliver, and its own cost stays low.
    pub fn add_client(&mut self, ip: IpAddr, publish: bool) -> Result<ClientId, String> {
        let id = self.clients.len();
        let (socket, local) = self.bind(ip, id)?;
        let mut settings = SettingEngineBuilder::new();
        if !self.srtp_profiles.is_empty() {
            settings = settings.with_srtp_protection_profiles(self.srtp_profiles.clone());
        }
        let settings = settings
            // As the answerer of a server's offer, be the DTLS client: its hello goes out at
            // once instead of on the next timer tick.
            .with_answering_dtls_role(RTCDtlsRole::Client)
            // Connectivity checks every 20 ms (the stack's default is 200 ms, which would make
            // the join latency mostly the generator's own pacing) and host candidates accepted
            // at once, as browsers do on a fast local path.
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), Some(50))
            .with_host_acceptance_min_wait(Some(Duration::ZERO))
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media_engine())
            .with_interceptor_registry(Registry::new())
            .build(Instant::now())
            .map_err(err)?;
        let publisher = if publish {
            let name = format!("gen{id}");
            let (video_ssrc, audio_ssrc) = publisher_ssrcs(id);
            let video = pc
                .add_track(track(RtpCodecKind::Video, video_ssrc, &name, vp8(vec![])))
                .map_err(err)?;
            let audio = pc
                .add_track(track(RtpCodecKind::Audio, audio_ssrc, &name, opus()))
                .map_err(err)?;
            Some(self.new_publisher(id, Some((video, audio))))
        } else {
            None
        };
        let light = publisher.is_none() && {
            self.subscribers += 1;
            !self.subscribers.is_multiple_of(self.decrypt_every)
        };
        self.clients
            .push(Client::new(Some(pc), socket, local, publisher, light));
        Ok(id)
    }

    /// Creates a plain RTP client with a socket on `ip`: a publisher sends the same VP8 and
    /// Opus streams as a WebRTC one (unencrypted, to the address [`State::connect_plain`]
    /// gives it), a subscriber counts and checks what arrives in the clear.
    pub fn add_plain_client(&mut self, ip: IpAddr, publish: bool) -> Result<ClientId, String> {
        let id = self.clients.len();
        let (socket, local) = self.bind(ip, id)?;
        let publisher = publish.then(|| self.new_publisher(id, None));
        self.clients
            .push(Client::new(None, socket, local, publisher, false));
        Ok(id)
    }

    /// A plain RTP client is ready: a publisher starts sending to `remote`. Plain RTP has no
    /// handshake, so the client counts as connected from now.
    pub fn connect_plain(
        &mut self,
        id: ClientId,
        remote: Option<SocketAddr>,
    ) -> Result<(), String> {
        let c = self.clients.get_mut(id).ok_or("no such client")?;
        if c.pc.is_some() {
            return Err("not a plain RTP client".into());
        }
        let now = Instant::now();
        c.remote = remote;
        c.connected.get_or_insert(now);
        if let Some(p) = &mut c.publisher {
            p.next_video = now + p.phase;
            p.next_audio = p.next_video;
        }
        Ok(())
    }

    /// The address a client's socket is bound to.
    pub fn local_addr(&self, id: ClientId) -> Option<SocketAddr> {
        self.clients.get(id).map(|c| c.local)
    }

    /// A nonblocking UDP socket on `ip`, registered for client `id`.
    fn bind(&mut self, ip: IpAddr, id: ClientId) -> Result<(UdpSocket, SocketAddr), String> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(err)?;
        std_socket.set_nonblocking(true).map_err(err)?;
        let local = std_socket.local_addr().map_err(err)?;
        let mut socket = UdpSocket::from_std(std_socket);
        self.poll
            .registry()
            .register(&mut socket, Token(id), Interest::READABLE)
            .map_err(err)?;
        Ok((socket, local))
    }

    /// A publisher's streams: two new stream numbers, counted from 0 in the current window.
    fn new_publisher(
        &mut self,
        id: ClientId,
        senders: Option<(RTCRtpSenderId, RTCRtpSenderId)>,
    ) -> Publisher {
        let (video_ssrc, audio_ssrc) = publisher_ssrcs(id);
        let video_stream = self.stream_seq.len() as u32;
        self.stream_seq.push(0);
        let audio_stream = self.stream_seq.len() as u32;
        self.stream_seq.push(0);
        if let Some(w) = &mut self.window {
            w.start.extend([0, 0]);
            w.received.extend([0, 0]);
        }
        // Spread publishers over the 10 ms tick so they do not all send at once.
        let phase = Duration::from_micros((id as u64 * 1_337) % 10_000);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Publisher {
            senders,
            video_ssrc,
            audio_ssrc,
            video_pt: VIDEO_PT,
            audio_pt: AUDIO_PT,
            video_stream,
            audio_stream,
            vseq: 0,
            aseq: 0,
            phase,
            next_video: far,
            next_audio: far,
            vcount: 0,
            acount: 0,
            video_key: payload::video(VIDEO_BYTES, true),
            video_delta: payload::video(VIDEO_BYTES, false),
            audio_body: payload::audio(AUDIO_BYTES),
        }
    }

    fn candidate(&mut self, id: ClientId) -> Result<(), String> {
        let c = &mut self.clients[id];
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: c.local.ip().to_string(),
                port: c.local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .and_then(|h| RTCIceCandidate::from(&h).to_json())
        .map_err(err)?;
        c.pc.as_mut()
            .ok_or(PLAIN)?
            .add_local_candidate(candidate)
            .map_err(err)
    }

    /// The client's offer (publishers), with its host candidate in it.
    pub fn create_offer(&mut self, id: ClientId) -> Result<String, String> {
        let pc = self.pc(id)?;
        let offer = pc.create_offer(None).map_err(err)?;
        pc.set_local_description(Instant::now(), offer)
            .map_err(err)?;
        self.candidate(id)?;
        let sdp = self
            .pc(id)?
            .local_description()
            .ok_or("no local description")?
            .sdp;
        self.pump(id);
        Ok(sdp)
    }

    /// Applies the server's answer to the client's offer.
    pub fn set_answer(&mut self, id: ClientId, sdp: String) -> Result<(), String> {
        let answer = RTCSessionDescription::answer(sdp).map_err(err)?;
        self.pc(id)?
            .set_remote_description(Instant::now(), answer)
            .map_err(err)?;
        self.pump(id);
        Ok(())
    }

    /// Answers the server's offer (subscribers); the answer carries the host candidate.
    pub fn answer_offer(&mut self, id: ClientId, sdp: String) -> Result<String, String> {
        let offer = RTCSessionDescription::offer(sdp).map_err(err)?;
        let pc = self.pc(id)?;
        pc.set_remote_description(Instant::now(), offer)
            .map_err(err)?;
        if pc
            .local_description()
            .is_none_or(|d| !d.sdp.contains("a=candidate"))
        {
            self.candidate(id)?;
        }
        let pc = self.pc(id)?;
        let answer = pc.create_answer(None).map_err(err)?;
        pc.set_local_description(Instant::now(), answer)
            .map_err(err)?;
        let sdp = pc.local_description().ok_or("no local description")?.sdp;
        self.pump(id);
        Ok(sdp)
    }

    /// The peer connection of a WebRTC client.
    fn pc(&mut self, id: ClientId) -> Result<&mut RTCPeerConnection, String> {
        let c = self.clients.get_mut(id).ok_or("no such client")?;
        c.pc.as_mut().ok_or_else(|| PLAIN.to_owned())
    }

    /// Starts a measurement window now.
    pub fn start_window(&mut self) {
        let n = self.stream_seq.len();
        self.window = Some(Window {
            start: self.stream_seq.clone(),
            end: None,
            received: vec![0; n],
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            light_received: 0,
            ended: false,
        });
    }

    /// Closes the window's range of sequence numbers; packets of the range still in flight
    /// keep counting until [`State::take_window`].
    pub fn end_window(&mut self) {
        let seq = self.stream_seq.clone();
        if let Some(w) = &mut self.window {
            w.end = Some(seq);
            w.ended = true;
        }
    }

    /// Ends the measurement and returns it.
    pub fn take_window(&mut self) -> Option<Window> {
        self.window.take()
    }

    /// Microseconds since the generator started.
    fn now_us(&self, now: Instant) -> u64 {
        now.duration_since(self.epoch).as_micros() as u64
    }

    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let mut events = Events::with_capacity(1024);
        while !self.stop {
            while let Ok(job) = jobs.try_recv() {
                job(&mut self);
            }
            if self.stop {
                break;
            }
            let now = Instant::now();
            self.send_due(now);
            self.fire_timers(now);
            let now = Instant::now();
            let mut next = now + Duration::from_millis(50);
            if let Some(Reverse((t, _))) = self.timers.peek() {
                next = next.min(*t);
            }
            for c in &self.clients {
                if let Some(p) = &c.publisher {
                    next = next.min(p.next_video).min(p.next_audio);
                }
            }
            let wait = next.saturating_duration_since(now);
            if self.poll.poll(&mut events, Some(wait)).is_err() {
                continue;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                self.recv_client(ev.token().0);
            }
            self.process_inbox();
        }
    }

    /// Takes every datagram waiting on the client's socket, stamped with the moment it was
    /// read. All readable sockets are emptied before any datagram is decrypted, so that a
    /// packet fanned out to many subscribers is stamped when it arrived, not after the
    /// generator decrypted the copies of the subscribers read before it.
    fn recv_client(&mut self, id: ClientId) {
        let Some(socket) = self.clients.get_mut(id).and_then(|c| c.socket.as_mut()) else {
            return;
        };
        loop {
            match socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.inbox
                        .push((id, from, Instant::now(), BytesMut::from(&self.buf[..n])))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }

    fn process_inbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        for (id, from, now, data) in inbox.drain(..) {
            let c = &mut self.clients[id];
            if c.socket.is_none() {
                continue;
            }
            // RTP (not RTCP, RFC 5761) to a light subscriber: counted from its header.
            let rtp = data.first().is_some_and(|b| (128..=191).contains(b))
                && data.get(1).is_some_and(|b| !(192..=223).contains(b));
            let Some(pc) = c.pc.as_mut() else {
                // Plain RTP arrives in the clear: read and checked like a decrypted packet.
                // (RTCP from the server, its sender reports, is not the generator's concern.)
                if rtp && let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut data.freeze()) {
                    if let Some(mark) = payload::read(&packet.payload) {
                        c.first_media.get_or_insert(now);
                        c.received += 1;
                        count_mark(&mut self.window, self.epoch, now, mark);
                    } else {
                        self.unmarked += 1;
                    }
                }
                continue;
            };
            if c.light && c.connected.is_some() && rtp {
                c.first_media.get_or_insert(now);
                c.received += 1;
                if let Some(w) = &mut self.window
                    && !w.ended
                {
                    w.light_received += 1;
                }
                continue;
            }
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: c.local,
                    peer_addr: from,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: data,
            };
            if pc.handle_read(msg).is_err() {
                self.read_errors += 1;
            }
            // Media is taken out right away: the stack's read queue would otherwise grow
            // with every datagram of a busy socket.
            self.pump(id);
        }
        self.inbox = inbox;
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let c = &mut self.clients[id];
            if c.timeout != Some(t) {
                continue; // superseded
            }
            c.timeout = None;
            let (Some(pc), Some(_)) = (c.pc.as_mut(), &c.socket) else {
                continue;
            };
            let _ = pc.handle_timeout(now);
            self.pump(id);
        }
    }

    /// Sends what the client's stack queued, takes its events and media, re-arms its timer.
    fn pump(&mut self, id: ClientId) {
        let epoch = self.epoch;
        let c = &mut self.clients[id];
        let (Some(pc), Some(socket)) = (c.pc.as_mut(), &c.socket) else {
            return;
        };
        loop {
            let mut progressed = false;
            while let Some(w) = pc.poll_write() {
                progressed = true;
                if socket.send_to(&w.message, w.transport.peer_addr).is_err() {
                    self.send_errors += 1;
                }
            }
            while let Some(e) = pc.poll_event() {
                progressed = true;
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = e {
                    match s {
                        RTCPeerConnectionState::Connected => {
                            c.connected.get_or_insert_with(Instant::now);
                            let stats = pc.get_stats(Instant::now(), StatsSelector::None);
                            c.srtp = stats.transport().map(|t| t.srtp_cipher.clone());
                            if let Some(p) = &mut c.publisher {
                                p.next_video = Instant::now() + p.phase;
                                p.next_audio = p.next_video;
                            }
                        }
                        RTCPeerConnectionState::Failed => c.failed = true,
                        _ => {}
                    }
                }
            }
            while let Some(TaggedRTCMessage { message, now }) = pc.poll_read() {
                progressed = true;
                if let RTCMessage::RtpPacket(_, packet) = message {
                    // `now`: when the datagram was read from the socket.
                    let (first_media, received) = (&mut c.first_media, &mut c.received);
                    if let Some(mark) = payload::read(&packet.payload) {
                        first_media.get_or_insert(now);
                        *received += 1;
                        count_mark(&mut self.window, epoch, now, mark);
                    } else {
                        self.unmarked += 1;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        let next = pc.poll_timeout();
        if next != c.timeout {
            c.timeout = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, id)));
            }
        }
    }

    fn send_due(&mut self, now: Instant) {
        for id in 0..self.clients.len() {
            let due = self.clients[id]
                .publisher
                .as_ref()
                .is_some_and(|p| p.next_video <= now || p.next_audio <= now);
            if due {
                self.send_publisher(id, now);
            }
        }
    }

    fn send_publisher(&mut self, id: ClientId, now: Instant) {
        let now_us = self.now_us(now);
        let c = &mut self.clients[id];
        let Some(p) = &mut c.publisher else {
            return;
        };
        if c.connected.is_none() {
            return;
        }
        if p.vcount == 0
            && p.acount == 0
            && let (Some(pc), Some((video, audio))) = (c.pc.as_mut(), p.senders)
        {
            // Payload types as this leg negotiated them (an answerer may renumber).
            if let Some(pt) = pc.rtp_sender(video).and_then(|mut s| {
                s.get_parameters()
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type)
            }) {
                p.video_pt = pt;
            }
            if let Some(pt) = pc.rtp_sender(audio).and_then(|mut s| {
                s.get_parameters()
                    .rtp_parameters
                    .codecs
                    .first()
                    .map(|c| c.payload_type)
            }) {
                p.audio_pt = pt;
            }
        }
        let video_period = Duration::from_micros(1_000_000 / u64::from(VIDEO_PPS));
        let audio_period = Duration::from_micros(1_000_000 / u64::from(AUDIO_PPS));
        let mut sent = 0u32;
        // Catch up at most a few packets if the loop was late, never a burst of seconds.
        while p.next_video <= now && sent < 4 {
            let keyframe = p.vcount % KEYFRAME_EVERY == 0;
            let body = if keyframe {
                &mut p.video_key
            } else {
                &mut p.video_delta
            };
            let stream = p.video_stream as usize;
            let seq = self.stream_seq[stream];
            payload::write(
                body,
                Mark {
                    stream: p.video_stream,
                    seq,
                    sent_us: now_us,
                },
            );
            self.stream_seq[stream] += 1;
            let packet = rtp_packet(
                p.video_ssrc,
                p.video_pt,
                p.vseq,
                p.vcount.wrapping_mul(900),
                Bytes::copy_from_slice(body),
            );
            p.vseq = p.vseq.wrapping_add(1);
            p.vcount += 1;
            p.next_video += video_period;
            if !send_rtp(
                &mut c.pc,
                p.senders.map(|s| s.0),
                c.remote,
                &c.socket,
                packet,
            ) {
                self.send_errors += 1;
            }
            sent += 1;
        }
        if p.next_video + video_period * 4 < now {
            p.next_video = now + video_period;
        }
        sent = 0;
        while p.next_audio <= now && sent < 4 {
            let stream = p.audio_stream as usize;
            let seq = self.stream_seq[stream];
            payload::write(
                &mut p.audio_body,
                Mark {
                    stream: p.audio_stream,
                    seq,
                    sent_us: now_us,
                },
            );
            self.stream_seq[stream] += 1;
            let packet = rtp_packet(
                p.audio_ssrc,
                p.audio_pt,
                p.aseq,
                p.acount.wrapping_mul(960),
                Bytes::copy_from_slice(&p.audio_body),
            );
            p.aseq = p.aseq.wrapping_add(1);
            p.acount += 1;
            p.next_audio += audio_period;
            if !send_rtp(
                &mut c.pc,
                p.senders.map(|s| s.1),
                c.remote,
                &c.socket,
                packet,
            ) {
                self.send_errors += 1;
            }
            sent += 1;
        }
        if p.next_audio + audio_period * 4 < now {
            p.next_audio = now + audio_period;
        }
        self.pump(id);
    }

    /// Ends a client. `graceful`: as a browser closing its connection (the stack sends what
    /// closing sends, DTLS close_notify included); otherwise it vanishes as a killed process
    /// does, and the server hears nothing more from its port. Either way its socket is closed
    /// and it sends and receives nothing after this.
    pub fn remove_client(&mut self, id: ClientId, graceful: bool) -> Result<(), String> {
        let c = self.clients.get_mut(id).ok_or("no such client")?;
        c.publisher = None;
        if graceful && let Some(pc) = c.pc.as_mut() {
            pc.close().map_err(err)?;
            self.pump(id);
        }
        let c = &mut self.clients[id];
        c.timeout = None;
        if let Some(mut socket) = c.socket.take() {
            let _ = self.poll.registry().deregister(&mut socket);
        }
        Ok(())
    }

    /// Clients not removed.
    pub fn live_clients(&self) -> usize {
        self.clients.iter().filter(|c| c.socket.is_some()).count()
    }

    /// How many clients are connected, and how many failed.
    pub fn connection_counts(&self) -> (usize, usize) {
        let connected = self
            .clients
            .iter()
            .filter(|c| c.connected.is_some())
            .count();
        let failed = self.clients.iter().filter(|c| c.failed).count();
        (connected, failed)
    }
}

impl Client {
    fn new(
        pc: Option<RTCPeerConnection>,
        socket: UdpSocket,
        local: SocketAddr,
        publisher: Option<Publisher>,
        light: bool,
    ) -> Self {
        Self {
            pc,
            remote: None,
            socket: Some(socket),
            local,
            created: Instant::now(),
            connected: None,
            failed: false,
            first_media: None,
            received: 0,
            publisher,
            timeout: None,
            srtp: None,
            light,
        }
    }
}

const PLAIN: &str = "a plain RTP client has no peer connection";

/// The SSRCs of client `id`'s video and audio when it publishes.
pub fn publisher_ssrcs(id: ClientId) -> (u32, u32) {
    let video = 0x1000_0000 + (id as u32) * 2;
    (video, video + 1)
}

/// Sends one of a publisher's packets: through its peer connection's sender, or for a plain
/// RTP client straight to its remote. `false` when it could not.
fn send_rtp(
    pc: &mut Option<RTCPeerConnection>,
    sender: Option<RTCRtpSenderId>,
    remote: Option<SocketAddr>,
    socket: &Option<UdpSocket>,
    packet: rtc::rtp::Packet,
) -> bool {
    match (pc.as_mut(), sender) {
        (Some(pc), Some(sender)) => pc
            .rtp_sender(sender)
            .is_some_and(|mut s| s.write_rtp(Instant::now(), packet).is_ok()),
        (None, _) => {
            let (Some(remote), Some(socket)) = (remote, socket) else {
                return false;
            };
            packet
                .marshal()
                .is_ok_and(|b| socket.send_to(&b, remote).is_ok())
        }
        (Some(_), None) => false,
    }
}

/// Counts a marked packet that a subscriber received at `now` in the current window, and its
/// latency.
fn count_mark(window: &mut Option<Window>, epoch: Instant, now: Instant, mark: Mark) {
    let Some(w) = window else {
        return;
    };
    let s = mark.stream as usize;
    let in_range = w.start.get(s).is_some_and(|&a| mark.seq >= a)
        && w.end
            .as_ref()
            .is_none_or(|e| e.get(s).is_some_and(|&b| mark.seq < b));
    if in_range {
        if let Some(r) = w.received.get_mut(s) {
            *r += 1;
        }
        let now_us = now.duration_since(epoch).as_micros() as u64;
        if let Some(h) = &mut w.latency_us {
            let _ = h.record(now_us.saturating_sub(mark.sent_us).max(1));
        }
    }
}

fn rtp_packet(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: Bytes) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: pt,
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            marker: true,
            ..Default::default()
        },
        payload,
    }
}
