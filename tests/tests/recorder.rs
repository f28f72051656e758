//! The `recorder` middleware end to end: ffmpeg publishes real VP8 and Opus over the `rtp`
//! plugin, the recorder writes a file, and ffprobe/ffmpeg judge it. Also: an unwritable
//! directory gives a `recording_failed` event while forwarding carries on.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard::settings::Settings;
use switchboard_actors::{ProduceOptions, RouterOptions, Server};
use switchboard_core::event::Event;
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};
use switchboard_core::transport::{TransportPlugin, TransportRegistry};
use switchboard_core::{PeerId, ProducerId, RouterId};
use switchboard_tests::ffmpeg::{self, Scratch};
use switchboard_tests::*;
use switchboard_transports::{DirectPlugin, RtpPlugin, RtpSettings};
use tokio::sync::mpsc;

// ffmpeg's `-ssrc` is a signed 32-bit option, so these stay below 2^31.
const VIDEO_SSRC: u32 = 0x1111_0001;
const AUDIO_SSRC: u32 = 0x2222_0002;

/// A server with the rtp plugin and the built-in middleware, recording under `recordings`
/// (the recorder's configured directory: attach requests may only name places inside it).
fn start_server(recordings: &std::path::Path) -> TestServer {
    let mut config = Settings::default();
    config.middleware.options.insert(
        "recorder".to_owned(),
        serde_json::from_value(json!({ "directory": recordings })).unwrap(),
    );
    config.server.workers = 1;
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    let mut transports = TransportRegistry::new();
    let direct = DirectPlugin::new();
    transports.register(direct.clone()).unwrap();
    transports
        .register(RtpPlugin::new(RtpSettings::default()) as Arc<dyn TransportPlugin>)
        .unwrap();
    let mut middleware = MiddlewareRegistry::new();
    switchboard_middleware::register_builtin(&mut middleware).unwrap();
    let server = Server::start(Arc::new(config.config()), transports, middleware).unwrap();
    TestServer { server, direct }
}

fn plain(mime: &str, pt: u8, clock: u32, channels: Option<u8>, ssrc: u32) -> RtpParameters {
    RtpParameters {
        codecs: vec![RtpCodecParameters {
            mime_type: mime.into(),
            payload_type: pt,
            clock_rate: clock,
            channels,
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        ..Default::default()
    }
}

struct Ingest {
    room: RouterId,
    video: ProducerId,
    audio: ProducerId,
    video_port: u16,
    audio_port: u16,
}

/// One peer with two plain-RTP transports (ffmpeg sends each stream to its own port), a VP8
/// producer and an Opus producer.
async fn ingest(t: &TestServer) -> Ingest {
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let peer = PeerId::parse("ingest").unwrap();
    t.server.join_peer(room, peer.clone()).await.unwrap();
    let mut ports = Vec::new();
    let mut transports = Vec::new();
    for _ in 0..2 {
        let tr = t
            .server
            .create_peer_transport(
                room,
                Some(peer.clone()),
                "rtp",
                json!({ "comedia": true, "rtcp_mux": false }),
            )
            .await
            .unwrap();
        ports.push(tr.local["port"].as_u64().unwrap() as u16);
        transports.push(tr.id);
    }
    let produce = async |transport, kind, p| {
        t.server
            .produce(
                transport,
                ProduceOptions {
                    kind,
                    rtp_parameters: p,
                    paused: false,
                },
            )
            .await
            .unwrap()
            .id
    };
    let video = produce(
        transports[0],
        MediaKind::Video,
        plain("video/VP8", 96, 90_000, None, VIDEO_SSRC),
    )
    .await;
    let audio = produce(
        transports[1],
        MediaKind::Audio,
        plain("audio/opus", 111, 48_000, Some(2), AUDIO_SSRC),
    )
    .await;
    Ingest {
        room,
        video,
        audio,
        video_port: ports[0],
        audio_port: ports[1],
    }
}

/// ffmpeg sending `secs` seconds of VP8 and Opus in real time (with RTCP sender reports).
fn send(i: &Ingest, secs: u32) -> tokio::task::JoinHandle<std::process::Output> {
    let args = ffmpeg::args(
        &format!(
            "-re -t {secs} -f lavfi -i testsrc=size=320x240:rate=30 \
             -re -t {secs} -f lavfi -i sine=frequency=440:sample_rate=48000 \
             -map 0:v -c:v libvpx -deadline realtime -g 30 -b:v 400k \
             -f rtp -ssrc {VIDEO_SSRC} -payload_type 96 rtp://127.0.0.1:{}?pkt_size=1200 \
             -map 1:a -c:a libopus -ac 2 \
             -f rtp -ssrc {AUDIO_SSRC} -payload_type 111 rtp://127.0.0.1:{}?pkt_size=1200",
            i.video_port, i.audio_port
        ),
        &[],
    );
    tokio::spawn(ffmpeg::run(args, Duration::from_secs(u64::from(secs) + 15)))
}

/// Waits (up to `limit`) for the recorder's event `name`.
async fn recorder_event(rx: &mut mpsc::Receiver<Event>, name: &str, limit: Duration) -> Value {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(Event::Middleware {
                    middleware,
                    name: n,
                    data,
                    ..
                }) if middleware == "recorder" && n == name => return data,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("no {name} event within {limit:?}"))
}

async fn probe(path: &str) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,duration",
            "-of",
            "json",
            path,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_vp8_and_opus_are_recorded_to_one_webm_of_the_right_length() {
    ffmpeg::require();
    let scratch = Scratch::new("recorder-e2e");
    let t = start_server(&scratch.path);
    let i = ingest(&t).await;
    let mut events = t.server.subscribe_room(i.room);
    t.server
        .attach_middleware(i.room, "recorder", json!({}))
        .await
        .unwrap();
    let sender = send(&i, 10);
    let started = recorder_event(&mut events, "recording_started", Duration::from_secs(10)).await;
    let mut producers: Vec<String> = started["producers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    producers.sort();
    let mut expected = vec![i.video.to_string(), i.audio.to_string()];
    expected.sort();
    assert_eq!(producers, expected, "both tracks in one file");

    let sent = sender.await.unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    t.server
        .detach_middleware(i.room, "recorder")
        .await
        .unwrap();
    let done = recorder_event(&mut events, "recording_finished", Duration::from_secs(10)).await;
    let path = done["path"].as_str().unwrap().to_owned();
    assert!(path.ends_with(".webm"), "{path}");
    assert!(PathBuf::from(&path).starts_with(&scratch.path));
    assert_eq!(
        done["bytes"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );

    let p = probe(&path).await;
    let codecs: Vec<&str> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert_eq!(codecs.len(), 2, "{p}");
    assert!(codecs.contains(&"vp8") && codecs.contains(&"opus"), "{p}");
    let duration: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    // The file starts at the first keyframe ffmpeg sent after the recorder attached, and
    // ends with the last packet: 10 s of media.
    assert!((duration - 10.0).abs() <= 0.5, "duration {duration} s: {p}");
    let duration_ms = done["duration_ms"].as_u64().unwrap();
    assert!((duration_ms as f64 - 10_000.0).abs() <= 500.0, "{done}");
    assert_eq!(ffmpeg::decode_errors(std::path::Path::new(&path)).await, "");
    // The whole 10 s of video is there (300 frames at 30 fps, within 5%).
    let frames = ffmpeg::count_frames(std::path::Path::new(&path), "v").await;
    assert!(frames >= 285, "{frames} video frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_directory_is_reported_and_forwarding_continues() {
    let scratch = Scratch::new("recorder-unwritable");
    // A directory below a regular file cannot be created.
    let blocker = scratch.file("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    // The configured directory is a file, so the one the attach request names inside it
    // cannot be created.
    let t = start_server(&blocker);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let pair = opus_pair(&t.server, &t.direct, room, 77).await;
    let (publisher, subscriber) = (pair.publisher, pair.subscriber);
    let mut events = t.server.subscribe_room(room);
    t.server
        .attach_middleware(room, "recorder", json!({ "directory": "rec" }))
        .await
        .unwrap();

    // Real-time Opus (20 ms packets) until the recorder tries to open its file and fails.
    let mut seq = 0u16;
    let mut failed = None;
    while failed.is_none() {
        assert!(seq < 500, "no recording_failed within 10 s of media");
        publisher
            .send_rtp(opus_packet(77, seq, u32::from(seq) * 960, &[0x78, 1, 2, 3]))
            .unwrap();
        assert_eq!(
            next_rtp(&subscriber).await.payload.as_ref(),
            &[0x78, 1, 2, 3]
        );
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(e) = events.try_recv() {
            if let Event::Middleware {
                middleware,
                name,
                data,
                ..
            } = e
                && middleware == "recorder"
                && name == "recording_failed"
            {
                failed = Some(data);
            }
        }
    }
    let failed = failed.unwrap();
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("directory"),
        "{failed}"
    );
    assert!(
        failed["path"]
            .as_str()
            .unwrap()
            .starts_with(blocker.to_str().unwrap())
    );
    // Forwarding goes on after the failure.
    for k in 0..20u16 {
        let payload = [0x78, 9, 9, k as u8];
        publisher
            .send_rtp(opus_packet(77, seq + k, u32::from(seq + k) * 960, &payload))
            .unwrap();
        assert_eq!(next_rtp(&subscriber).await.payload.as_ref(), &payload);
    }
    let stats = switchboard_tests::as_json(t.server.router_stats(room).await)
        .unwrap()
        .to_string();
    assert!(stats.contains("\"recordings_failed\":1"), "{stats}");
    t.server.shutdown().await.unwrap();
}
