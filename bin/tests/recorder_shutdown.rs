//! The stop drills: the server binary stopped mid-recording.
//!
//! The `switchboard` binary runs as a child process; ffmpeg publishes VP8 and Opus to it over
//! plain RTP; the recorder is attached over RPC; the signal arrives while ffmpeg still sends.
//! - SIGTERM: the file must then be complete: a known Segment size (finalized, not cut off),
//!   both streams, and every frame decodes.
//! - SIGKILL: nothing can be finalized, but what was written stays readable: ffmpeg decodes
//!   the file without errors up to the last cluster on disk, and that is most of what was
//!   recorded.

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Running, rpc_address};
use switchboard::client::{Client, Notification};
use switchboard_actors::{ProduceOptions, RouterOptions};
use switchboard_core::event::Event;
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const VIDEO_SSRC: u32 = 0x1111_0001;
const AUDIO_SSRC: u32 = 0x2222_0002;

/// The binary with plain RTP on OS-chosen ports and a shutdown timeout long enough for the
/// recorder to finish.
/// The server binary, recording under `dir` (the recorder's configured directory: attach
/// requests may only name places inside it).
fn start_server(dir: &std::path::Path) -> Running {
    let recordings = format!("middleware.options.recorder.directory={}", dir.display());
    Running::start(&[
        "run",
        "--set",
        &recordings,
        "--workers",
        "1",
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--set",
        "server.shutdown_timeout_ms=10000",
        "--set",
        "rtp.port_min=0",
        "--set",
        "rtp.port_max=0",
    ])
}

/// ffmpeg, killed when dropped.
struct Sender(Child);

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_in(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A server recording ffmpeg's VP8 and Opus under `dir`, once the recorder has written at
/// least `frames` frames (audio and video); the sender keeps sending until dropped. Also the
/// recorder's `bytes_written` then: what it has handed to the OS.
fn recording(dir: &Path, frames: u64) -> (Running, Sender, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let mut server = start_server(dir);
    server.wait_for("switchboard ready", STARTUP_TIMEOUT);
    let addr = rpc_address(&server);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sender = runtime.block_on(async {
        let client = Client::connect(&addr, None).await.unwrap();
        let mut notifications = client.notifications().unwrap();
        let room = client
            .create_router(RouterOptions::default())
            .await
            .unwrap()
            .id;
        client.subscribe(Some(room)).await.unwrap();
        client.join_peer(room, "ingest").await.unwrap();
        let mut ports = Vec::new();
        let mut transports = Vec::new();
        for _ in 0..2 {
            let t = client
                .create_transport(
                    room,
                    "rtp",
                    Some("ingest"),
                    json!({ "comedia": true, "rtcp_mux": false }),
                )
                .await
                .unwrap();
            ports.push(t.local["port"].as_u64().unwrap());
            transports.push(t.id);
        }
        for (transport, kind, params) in [
            (
                transports[0],
                MediaKind::Video,
                plain("video/VP8", 96, 90_000, None, VIDEO_SSRC),
            ),
            (
                transports[1],
                MediaKind::Audio,
                plain("audio/opus", 111, 48_000, Some(2), AUDIO_SSRC),
            ),
        ] {
            client
                .produce(
                    transport,
                    ProduceOptions {
                        kind,
                        rtp_parameters: params,
                        paused: false,
                    },
                )
                .await
                .unwrap();
        }
        client
            .attach_middleware(room, "recorder", json!({}))
            .await
            .unwrap();
        // 30 s of media: far longer than the test lets it run.
        let sender = Sender(
            Command::new("ffmpeg")
                .args([
                    "-nostdin", "-v", "error", "-re", "-t", "30", "-f", "lavfi", "-i",
                ])
                .arg("testsrc=size=320x240:rate=30")
                .args([
                    "-re",
                    "-t",
                    "30",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                ])
                .args([
                    "-map",
                    "0:v",
                    "-c:v",
                    "libvpx",
                    "-deadline",
                    "realtime",
                    "-g",
                    "30",
                    "-b:v",
                    "400k",
                ])
                .args([
                    "-f",
                    "rtp",
                    "-ssrc",
                    &VIDEO_SSRC.to_string(),
                    "-payload_type",
                    "96",
                ])
                .arg(format!("rtp://127.0.0.1:{}?pkt_size=1200", ports[0]))
                .args(["-map", "1:a", "-c:a", "libopus", "-ac", "2"])
                .args([
                    "-f",
                    "rtp",
                    "-ssrc",
                    &AUDIO_SSRC.to_string(),
                    "-payload_type",
                    "111",
                ])
                .arg(format!("rtp://127.0.0.1:{}?pkt_size=1200", ports[1]))
                .stdin(Stdio::null())
                .spawn()
                .expect("ffmpeg runs"),
        );
        // The file exists once both tracks started; then let about 3 s of media in.
        let wait = async {
            loop {
                match notifications.recv().await {
                    Some(Notification::Event(Event::Middleware { name, .. }))
                        if name == "recording_started" =>
                    {
                        return;
                    }
                    Some(_) => {}
                    None => panic!("connection closed"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .expect("recording_started");
        let deadline = Instant::now() + Duration::from_secs(20);
        let counter = |text: &str, key: &str| {
            text.split(&format!("\"{key}\":"))
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        loop {
            let stats: Value = client.router_stats(room).await.unwrap();
            let text = stats.to_string();
            let written = counter(&text, "frames_written");
            if written >= frames {
                break (sender, counter(&text, "bytes_written"));
            }
            assert!(
                Instant::now() < deadline,
                "recorder wrote {written} frames: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (sender, bytes) = sender;
    (server, sender, bytes)
}

#[test]
fn sigterm_mid_recording_leaves_a_finalized_file() {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-recorder-sigterm-{}",
        std::process::id()
    ));
    let (mut server, _sender, _) = recording(&dir, 200);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    let log = server.seen.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("recording_finished"), "log:\n{log}");

    let files = files_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(file.extension().unwrap(), "webm");
    let bytes = std::fs::read(file).unwrap();
    // Finalized: the Segment's size is known (not the "unknown" all-ones value) and covers
    // the whole file.
    let seg = bytes
        .windows(4)
        .position(|w| w == [0x18, 0x53, 0x80, 0x67])
        .unwrap();
    let size = u64::from_be_bytes(bytes[seg + 4..seg + 12].try_into().unwrap()) & ((1 << 56) - 1);
    assert_ne!(size, (1 << 56) - 1, "segment size still unknown");
    assert_eq!(seg as u64 + 12 + size, bytes.len() as u64);
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .unwrap();
    let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert!(
        codecs.contains(&"vp8") && codecs.contains(&"opus"),
        "{probe}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration >= 2.0, "{duration} s: {probe}");
    let decode = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    assert_eq!(String::from_utf8_lossy(&decode.stderr), "");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_mid_recording_leaves_a_file_ffmpeg_reads_to_its_last_cluster() {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-recorder-sigkill-{}",
        std::process::id()
    ));
    // About 7.5 s: 600 frames of 30 fps video and 50 Opus packets a second.
    let (mut server, _sender, on_disk) = recording(&dir, 600);
    server.signal(Signal::SIGKILL);
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "killed: {status}");

    let files = files_in(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(file.extension().unwrap(), "webm");
    // Everything the recorder reported written is in the file: complete clusters go to the
    // OS as they close (a keyframe, 5 s or 4 MiB), so SIGKILL loses at most the one being
    // built.
    let size = std::fs::metadata(file).unwrap().len();
    assert!(
        size >= on_disk,
        "{size} bytes on disk, {on_disk} reported written"
    );
    // Not finalized, yet ffmpeg reads it start to end without an error, both streams.
    for stream in ["0:v", "0:a"] {
        let decode = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(file)
            .args(["-map", stream, "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{stream}: {}",
            String::from_utf8_lossy(&decode.stderr)
        );
    }
    let frames = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    let frames: u64 = String::from_utf8_lossy(&frames.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    // About 225 video frames were written; the cluster in memory holds at most one GOP (30).
    assert!(frames >= 180, "{frames} video frames readable");
    let _ = std::fs::remove_dir_all(&dir);
}
