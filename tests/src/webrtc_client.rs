//! A WebRTC client for tests, on webrtc-rs's async API: what a native app would be.

use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use crate::DEADLINE;

/// VP8 as the test clients send it.
pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: String::new(),
            },
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: "pli".to_owned(),
            },
        ],
    }
}

/// Opus as the test clients send it.
pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// One client peer connection, bound to loopback.
pub struct Client {
    /// The peer connection.
    pub pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

impl Client {
    /// A client that can send and receive VP8 (PT `vp8_pt`) and Opus (PT `opus_pt`).
    pub async fn new(vp8_pt: u8, opus_pt: u8) -> Self {
        let mut engine = MediaEngine::default();
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: vp8(),
                    payload_type: vp8_pt,
                },
                RtpCodecKind::Video,
            )
            .expect("register VP8");
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: opus_pt,
                },
                RtpCodecKind::Audio,
            )
            .expect("register Opus");
        let registry =
            register_default_interceptors(Registry::new(), &mut engine).expect("interceptors");
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (tracks_tx, tracks) = mpsc::unbounded_channel();
        // No SRTP replay protection: a test that NACKs a packet it did receive must see the
        // retransmission, which a real receiver (which only NACKs what it lost) would too.
        let settings = SettingEngineBuilder::new()
            .with_srtp_replay_protection_window(0)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler {
                state: state_tx,
                gathering: gathering_tx,
                tracks: tracks_tx,
            }))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("client peer connection");
        Self {
            pc: Arc::new(pc),
            state,
            gathering,
            tracks,
        }
    }

    /// Adds a sending track with this SSRC and codec.
    pub async fn add_track(
        &self,
        kind: RtpCodecKind,
        codec: RTCRtpCodec,
        ssrc: u32,
        stream: &str,
    ) -> Arc<TrackLocalStaticRTP> {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream.to_owned(),
            format!("{stream}-{kind}"),
            format!("{stream}-{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        self.pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
        track
    }

    async fn gathered_local_sdp(&mut self) -> String {
        let wait = self
            .gathering
            .wait_for(|s| *s == RTCIceGatheringState::Complete);
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("ICE gathering completes")
            .expect("gathering state");
        self.pc
            .local_description()
            .await
            .expect("local description")
            .sdp
    }

    /// Creates an offer with all candidates in it.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local offer");
        self.gathered_local_sdp().await
    }

    /// Applies the server's answer.
    pub async fn accept_answer(&self, sdp: &str) {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).expect("answer SDP");
        self.pc
            .set_remote_description(answer)
            .await
            .expect("set remote answer");
    }

    /// Answers the server's offer.
    pub async fn answer(&mut self, offer: &str) -> String {
        let offer = RTCSessionDescription::offer(offer.to_owned()).expect("offer SDP");
        self.pc
            .set_remote_description(offer)
            .await
            .expect("set remote offer");
        let answer = self.pc.create_answer(None).await.expect("create answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("set local answer");
        self.gathered_local_sdp().await
    }

    /// Waits until the connection is connected.
    pub async fn connected(&mut self) {
        let wait = self
            .state
            .wait_for(|s| *s == RTCPeerConnectionState::Connected);
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("connection reaches connected")
            .expect("state");
    }

    /// The next remote track.
    pub async fn next_track(&mut self) -> Arc<dyn TrackRemote> {
        tokio::time::timeout(DEADLINE, self.tracks.recv())
            .await
            .expect("a remote track within the deadline")
            .expect("track stream open")
    }
}

/// A peer `publisher` joined to `room`, publishing VP8 (SSRC 0x1000) and Opus (SSRC 0x2000)
/// through `webrtc.publish`, connected: the sending side of the fan-out benchmarks.
pub struct Publisher {
    /// The connected client, kept alive while it sends.
    pub client: Client,
    /// Its VP8 track.
    pub video: Arc<TrackLocalStaticRTP>,
    /// Its Opus track.
    pub audio: Arc<TrackLocalStaticRTP>,
    /// The server's id of its publishing connection.
    pub transport: switchboard_core::TransportId,
}

/// Joins a peer named `publisher` to `room` and publishes a VP8 and an Opus track.
pub async fn publish_vp8_and_opus(
    server: &switchboard_actors::ServerHandle,
    room: switchboard_core::RouterId,
) -> Publisher {
    let peer = switchboard_core::PeerId::parse("publisher").expect("peer id");
    server.join_peer(room, peer.clone()).await.expect("join");
    let mut client = Client::new(96, 111).await;
    let video = client
        .add_track(RtpCodecKind::Video, vp8(), 0x1000, "publisher")
        .await;
    let audio = client
        .add_track(RtpCodecKind::Audio, opus(), 0x2000, "publisher")
        .await;
    let offer = client.offer().await;
    let published = server.publish(room, peer, offer).await.expect("publish");
    client.accept_answer(&published.sdp).await;
    client.connected().await;
    Publisher {
        client,
        video,
        audio,
        transport: published.transport,
    }
}

/// Joins a peer named `name` to `room` and connects its receive connection (through
/// `webrtc.subscribe` and `webrtc.answer`): the watching side of a test. Returns the
/// connected client and the server's id of its connection.
pub async fn subscribe(
    server: &switchboard_actors::ServerHandle,
    room: switchboard_core::RouterId,
    name: &str,
) -> (Client, switchboard_core::TransportId) {
    let s = subscribe_via(server, room, name, false).await;
    (s.client, s.transport)
}

/// A subscriber connected through a [`Relay`](crate::relay::Relay) that can lose the
/// server's packets or vanish, as the subscriber's network would.
pub struct RelayedSubscriber {
    /// The connected client.
    pub client: Client,
    /// The server's id of its receive connection.
    pub transport: switchboard_core::TransportId,
    /// Its path to the server.
    pub relay: crate::relay::Relay,
    /// The server's offer it answered.
    pub offer: String,
}

/// Like [`subscribe`], with the client reaching the server through a relay.
pub async fn subscribe_through_relay(
    server: &switchboard_actors::ServerHandle,
    room: switchboard_core::RouterId,
    name: &str,
) -> RelayedSubscriber {
    subscribe_via(server, room, name, true).await
}

async fn subscribe_via(
    server: &switchboard_actors::ServerHandle,
    room: switchboard_core::RouterId,
    name: &str,
    relayed: bool,
) -> RelayedSubscriber {
    let peer = switchboard_core::PeerId::parse(name).expect("peer id");
    server.join_peer(room, peer.clone()).await.expect("join");
    let offer = server
        .subscribe_peer(room, peer.clone())
        .await
        .expect("subscribe");
    let server_addr = crate::server_candidate(&offer.sdp);
    let relay = crate::relay::Relay::start(server_addr).await;
    let mut client = Client::new(96, 111).await;
    let seen = if relayed {
        relay.rewrite_sdp(&offer.sdp, server_addr)
    } else {
        offer.sdp.clone()
    };
    let answer = client.answer(&seen).await;
    server.answer(room, peer, answer).await.expect("answer");
    client.connected().await;
    RelayedSubscriber {
        client,
        transport: offer.transport,
        relay,
        offer: offer.sdp,
    }
}

/// Writes VP8 packets ending in `tag` on `publisher`'s video until `subscriber` receives one
/// on a video track; returns that track. Tracks may appear or move with renegotiations, so
/// it takes the first video track the subscriber has and looks for the tag on it. Fails
/// after a few hundred packets.
pub async fn receives_video(
    publisher: &Publisher,
    subscriber: &mut Client,
    tag: &[u8],
) -> Arc<dyn TrackRemote> {
    use webrtc::media_stream::track_remote::TrackRemoteEvent;
    let mut payload = vec![0x10, 0x00];
    payload.extend_from_slice(tag);
    let mut seq = 1u16;
    let track = loop {
        publisher
            .video
            .write_rtp(crate::client_rtp(0x1000, 96, seq, payload.clone()))
            .await
            .expect("write");
        seq += 1;
        if let Ok(track) =
            tokio::time::timeout(Duration::from_millis(100), subscriber.next_track()).await
            && track.kind().await == RtpCodecKind::Video
        {
            break track;
        }
        assert!(seq < 200, "no video track reached the subscriber");
    };
    loop {
        publisher
            .video
            .write_rtp(crate::client_rtp(0x1000, 96, seq, payload.clone()))
            .await
            .expect("write");
        seq += 1;
        match tokio::time::timeout(Duration::from_millis(200), track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) if p.payload.ends_with(tag) => {
                return track;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the subscriber's track ended"),
        }
        assert!(seq < 400, "the subscriber receives nothing tagged {tag:?}");
    }
}
