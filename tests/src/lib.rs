//! Helpers shared by Switchboard's end-to-end tests: starting a server, building RTP, and
//! awaiting events and packets (with a deadline that fails the test, never a sleep).

use bytes::Bytes;
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, Unmarshal};
use std::sync::Arc;
use std::time::Duration;
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ProduceOptions, Server, ServerHandle};
use switchboard_core::event::Event;
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::rtp_parameters::{
    MediaKind, RtcpFeedback, RtpCapabilities, RtpCodecCapability, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtensionCapability, RtpHeaderExtensionParameters,
    RtpParameters, RtxParameters, extension_uri,
};
use switchboard_core::transport::{TransportPlugin, TransportRegistry};
use switchboard_transports::{DirectEndpoint, DirectPacket, DirectPlugin};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A running server with the direct plugin.
pub struct TestServer {
    /// The server.
    pub server: ServerHandle,
    /// The direct plugin, to reach endpoints.
    pub direct: Arc<DirectPlugin>,
}

impl TestServer {
    /// A new room with the default options.
    pub async fn room(&self) -> switchboard_core::RouterId {
        self.server
            .create_router(switchboard_actors::RouterOptions::default())
            .await
            .expect("room")
            .id
    }
}

/// The server's media address from the first `a=candidate` line of its SDP.
pub fn server_candidate(sdp: &str) -> std::net::SocketAddr {
    let line = sdp
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("a candidate in the server's SDP");
    let f: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}", f[4], f[5])
        .parse()
        .expect("an address in the candidate")
}

/// Starts a server with `workers` workers, the direct plugin and any extra plugins.
pub fn start(workers: usize, extra: Vec<Arc<dyn TransportPlugin>>) -> TestServer {
    let mut config = Settings::default();
    config.server.workers = workers;
    start_with(config, extra)
}

/// Starts a server with `workers` workers and both the direct and the WebRTC plugin, the
/// latter on loopback with OS-chosen ports.
pub fn start_webrtc(workers: usize) -> TestServer {
    start_webrtc_with(webrtc_config(workers))
}

/// A configuration for WebRTC tests: `workers` workers, each WebRTC socket on a port the OS
/// chooses (tests run side by side).
pub fn webrtc_config(workers: usize) -> Settings {
    let mut config = Settings::default();
    config.server.workers = workers;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config
}

/// Starts a server whose `webrtc` plugin is set up from the settings' `[webrtc]`, as the
/// binary sets it up.
pub fn start_webrtc_with(config: Settings) -> TestServer {
    let settings = switchboard_transports::WebRtcSettings::from_config(&config.webrtc)
        .expect("webrtc settings");
    start_with(
        config,
        vec![switchboard_transports::WebRtcPlugin::new(settings) as Arc<dyn TransportPlugin>],
    )
}

/// Starts a server with this configuration.
pub fn start_with(config: Settings, extra: Vec<Arc<dyn TransportPlugin>>) -> TestServer {
    let mut transports = TransportRegistry::new();
    let direct = DirectPlugin::new();
    transports
        .register(direct.clone())
        .expect("register direct");
    for p in extra {
        transports.register(p).expect("register plugin");
    }
    let server = Server::start(
        Arc::new(config.config()),
        transports,
        MiddlewareRegistry::new(),
    )
    .expect("server starts");
    TestServer { server, direct }
}

/// VP8 producer parameters as a browser would send them: PT 96, RTX 97, mid extension 4.
pub fn vp8_producer(ssrc: u32, rtx_ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: Some("0".into()),
        codecs: vec![
            RtpCodecParameters {
                mime_type: "video/VP8".into(),
                payload_type: 96,
                clock_rate: 90_000,
                channels: None,
                parameters: Default::default(),
                rtcp_feedback: vec![
                    RtcpFeedback::new("nack", ""),
                    RtcpFeedback::new("nack", "pli"),
                ],
            },
            RtpCodecParameters {
                mime_type: "video/rtx".into(),
                payload_type: 97,
                clock_rate: 90_000,
                channels: None,
                parameters: [("apt".to_owned(), 96u32.into())].into_iter().collect(),
                rtcp_feedback: vec![],
            },
        ],
        header_extensions: vec![RtpHeaderExtensionParameters {
            uri: extension_uri::MID.into(),
            id: 4,
            encrypt: false,
        }],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            rtx: Some(RtxParameters { ssrc: rtx_ssrc }),
            ..Default::default()
        }],
        rtcp: Default::default(),
    }
}

/// Opus producer parameters: PT 111.
pub fn opus_producer(ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: Some("1".into()),
        codecs: vec![RtpCodecParameters {
            mime_type: "audio/opus".into(),
            payload_type: 111,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: Default::default(),
    }
}

/// Receive capabilities of a subscriber that uses its own ids: VP8 on `vp8_pt` with RTX on
/// `vp8_pt + 1` when `rtx`, Opus on 100, and the mid extension on `mid_id`.
pub fn subscriber_caps(vp8_pt: u8, mid_id: u8, rtx: bool) -> RtpCapabilities {
    let mut codecs = vec![
        RtpCodecCapability {
            kind: MediaKind::Video,
            mime_type: "video/VP8".into(),
            preferred_payload_type: Some(vp8_pt),
            clock_rate: 90_000,
            channels: None,
            parameters: Default::default(),
            rtcp_feedback: vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli"),
            ],
        },
        RtpCodecCapability {
            kind: MediaKind::Audio,
            mime_type: "audio/opus".into(),
            preferred_payload_type: Some(100),
            clock_rate: 48_000,
            channels: Some(2),
            parameters: Default::default(),
            rtcp_feedback: vec![],
        },
    ];
    if rtx {
        codecs.push(RtpCodecCapability {
            kind: MediaKind::Video,
            mime_type: "video/rtx".into(),
            preferred_payload_type: Some(vp8_pt + 1),
            clock_rate: 90_000,
            channels: None,
            parameters: [("apt".to_owned(), u32::from(vp8_pt).into())]
                .into_iter()
                .collect(),
            rtcp_feedback: vec![],
        });
    }
    RtpCapabilities {
        codecs,
        header_extensions: [MediaKind::Video, MediaKind::Audio]
            .into_iter()
            .map(|kind| RtpHeaderExtensionCapability {
                kind,
                uri: extension_uri::MID.into(),
                preferred_id: mid_id,
                preferred_encrypt: false,
                direction: Default::default(),
            })
            .collect(),
    }
}

/// A VP8 RTP packet whose payload encodes its sequence number; `keyframe` sets the VP8 key flag.
pub fn vp8_packet(ssrc: u32, seq: u16, ts: u32, keyframe: bool) -> Bytes {
    let mut header = Header {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        marker: true,
        ..Header::default()
    };
    let _ = header.set_extension(4, Bytes::from_static(b"0"));
    Packet {
        header,
        payload: Bytes::from(vp8_payload(seq, keyframe)),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

/// The payload [`vp8_packet`] puts in a packet.
pub fn vp8_payload(seq: u16, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"switchboard-test-frame");
    p
}

/// An Opus RTP packet carrying `payload`.
pub fn opus_packet(ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Bytes {
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Header::default()
        },
        payload: Bytes::copy_from_slice(payload),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

/// Waits for the next RTP packet on an endpoint (skipping RTCP), failing after [`DEADLINE`].
pub async fn next_rtp(ep: &DirectEndpoint) -> Packet {
    loop {
        match tokio::time::timeout(DEADLINE, ep.recv()).await {
            Ok(Some(DirectPacket::Rtp(mut b))) => {
                return Packet::unmarshal(&mut b).expect("valid RTP");
            }
            Ok(Some(DirectPacket::Rtcp(_))) => continue,
            Ok(None) => panic!("endpoint closed while waiting for RTP"),
            Err(_) => panic!("no RTP within {DEADLINE:?}"),
        }
    }
}

/// Waits for the next RTCP compound packet on an endpoint (skipping RTP).
pub async fn next_rtcp(ep: &DirectEndpoint) -> Vec<Box<dyn rtc_rtcp::packet::Packet>> {
    loop {
        match tokio::time::timeout(DEADLINE, ep.recv()).await {
            Ok(Some(DirectPacket::Rtcp(mut b))) => {
                return rtc_rtcp::packet::unmarshal(&mut b).expect("valid RTCP");
            }
            Ok(Some(DirectPacket::Rtp(_))) => continue,
            Ok(None) => panic!("endpoint closed while waiting for RTCP"),
            Err(_) => panic!("no RTCP within {DEADLINE:?}"),
        }
    }
}

/// An Opus publisher on a direct transport and a direct subscriber consuming it, in one room.
pub struct OpusPair {
    /// The publisher's transport.
    pub publisher_transport: switchboard_core::TransportId,
    /// Where the publisher's packets go in.
    pub publisher: DirectEndpoint,
    /// The producer.
    pub producer: switchboard_core::ProducerId,
    /// The subscriber's transport.
    pub subscriber_transport: switchboard_core::TransportId,
    /// Where the subscriber's packets come out (Opus on payload type 100).
    pub subscriber: DirectEndpoint,
}

/// Creates an [`OpusPair`] in `room`: a producer with SSRC `ssrc` (PT 111) and a consumer of
/// it with [`subscriber_caps`].
pub async fn opus_pair(
    server: &ServerHandle,
    direct: &DirectPlugin,
    room: switchboard_core::RouterId,
    ssrc: u32,
) -> OpusPair {
    let pt = server
        .create_transport(room, "direct", serde_json::json!({}))
        .await
        .expect("publisher transport");
    let st = server
        .create_transport(room, "direct", serde_json::json!({}))
        .await
        .expect("subscriber transport");
    let producer = server
        .produce(
            pt.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(ssrc),
                paused: false,
            },
        )
        .await
        .expect("produce")
        .id;
    server
        .consume(
            st.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .expect("consume");
    OpusPair {
        publisher_transport: pt.id,
        publisher: direct.endpoint(pt.id).expect("publisher endpoint"),
        producer,
        subscriber_transport: st.id,
        subscriber: direct.endpoint(st.id).expect("subscriber endpoint"),
    }
}

/// Sends an Opus packet tagged with `seq` from `publisher` and waits for exactly that
/// payload at `subscriber`.
pub async fn assert_forwards(
    publisher: &DirectEndpoint,
    subscriber: &DirectEndpoint,
    ssrc: u32,
    seq: u16,
) {
    let payload = format!("frame-{seq}");
    publisher
        .send_rtp(opus_packet(
            ssrc,
            seq,
            u32::from(seq) * 960,
            payload.as_bytes(),
        ))
        .expect("send");
    let p = next_rtp(subscriber).await;
    assert_eq!(p.payload.as_ref(), payload.as_bytes());
}

/// Waits for an event matching `pred`, returning it and the events skipped on the way.
pub async fn wait_event(
    rx: &mut mpsc::Receiver<Event>,
    mut pred: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return (e, skipped),
            Ok(Some(e)) => skipped.push(e),
            Ok(None) => panic!("event stream ended; skipped {skipped:?}"),
            Err(_) => panic!("no matching event within {DEADLINE:?}; skipped {skipped:?}"),
        }
    }
}

/// Waits for `transport`'s `transport_closed` event and checks that the server closed it on
/// its own for lack of consent (`ice_timeout`); returns the events before it.
pub async fn wait_ice_timeout(
    rx: &mut mpsc::Receiver<Event>,
    transport: switchboard_core::TransportId,
) -> Vec<Event> {
    use switchboard_core::event::CloseReason;
    let (closed, before) = wait_event(
        rx,
        |e| matches!(e, Event::TransportClosed { transport: t, .. } if *t == transport),
    )
    .await;
    assert!(
        matches!(
            closed,
            Event::TransportClosed {
                reason: CloseReason::IceTimeout,
                ..
            }
        ),
        "{closed:?}"
    );
    before
}

pub mod bench;
pub mod ffmpeg;
pub mod netns;
pub mod peer_process;
pub mod redis;
pub mod relay;
pub mod webrtc_client;

/// An RTP packet as a test client's track writes it: `timestamp` is `seq * 3000` (30 fps
/// video), the marker set.
pub fn client_rtp(ssrc: u32, pt: u8, seq: u16, payload: Vec<u8>) -> Packet {
    Packet {
        header: Header {
            version: 2,
            payload_type: pt,
            ssrc,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

/// Polls a condition that no event announces (a counter on the server) until it holds,
/// failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stats or dump result as the RPC sends it (JSON), for tests that check the shape a
/// backend sees rather than the Rust type.
pub fn as_json<T: serde::Serialize>(
    result: switchboard_core::Result<T>,
) -> switchboard_core::Result<serde_json::Value> {
    result.and_then(|v| {
        serde_json::to_value(v).map_err(|e| switchboard_core::Error::internal(e.to_string()))
    })
}
