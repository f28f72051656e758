//! Calls across WebRTC stacks the project did not write, driven only through the server's
//! API as a backend would drive it: Chromium (headless, fake camera) and aiortc (Python) in
//! one room, each publishing and subscribing. Every subscriber must decode the video of every
//! publisher of the other stack (and its own): Chromium → aiortc, aiortc → Chromium,
//! aiortc → aiortc, Chromium → Chromium. aiortc negotiates no transport-cc, which browsers put
//! on every packet, so each leg must carry exactly the extensions it negotiated.
//!
//! docs/interop.md has the whole matrix, with the stacks that need a network namespace
//! (Firefox) or their own setup (GStreamer).

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_core::PeerId;
use switchboard_tests::peer_process::PeerProcess;
use switchboard_tests::start_webrtc;

/// Frames each received video track must have decoded.
const FRAMES: u64 = 20;
/// How long the tracks get to decode them, once everyone is connected.
const DECODE_DEADLINE: Duration = Duration::from_secs(30);

fn frames(stats: &Value, key: &str, field: &str) -> Vec<u64> {
    stats[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    if field.is_empty() {
                        v.as_u64().unwrap_or(0)
                    } else {
                        v[field].as_u64().unwrap_or(0)
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_aiortc_publish_and_each_decodes_the_other() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let join = async |name: &str| {
        let peer = PeerId::parse(name).unwrap();
        t.server.join_peer(room, peer.clone()).await.unwrap();
        peer
    };

    // Publishers first, so that each subscriber's first offer carries every track.
    let mut chromium = PeerProcess::chromium();
    let camera = join("chromium-camera").await;
    let offer = chromium.expect_sdp("offer").await;
    let published = t
        .server
        .publish(room, camera, offer)
        .await
        .expect("Chromium's offer is accepted");
    chromium.send(json!({ "answer": published.sdp })).await;

    let mut aiortc_pub = PeerProcess::aiortc("publish");
    let aiortc_camera = join("aiortc-camera").await;
    let offer = aiortc_pub.expect_sdp("offer").await;
    let published = t
        .server
        .publish(room, aiortc_camera, offer)
        .await
        .expect("aiortc's offer is accepted");
    assert_eq!(published.producers.len(), 2, "aiortc's video and audio");
    aiortc_pub.send(json!({ "answer": published.sdp })).await;

    // Subscribers: each receives both publishers' tracks but its own peer's.
    let mut aiortc_sub = PeerProcess::aiortc("subscribe");
    let aiortc_viewer = join("aiortc-viewer").await;
    let offer = t
        .server
        .subscribe_peer(room, aiortc_viewer.clone())
        .await
        .unwrap();
    aiortc_sub.send(json!({ "subscribe": offer.sdp })).await;
    let answer = aiortc_sub.expect_sdp("answer").await;
    t.server
        .answer(room, aiortc_viewer, answer)
        .await
        .expect("aiortc's answer is accepted");

    let chromium_viewer = join("chromium-viewer").await;
    let offer = t
        .server
        .subscribe_peer(room, chromium_viewer.clone())
        .await
        .unwrap();
    chromium.send(json!({ "subscribe": offer.sdp })).await;
    let answer = chromium.expect_sdp("answer").await;
    t.server
        .answer(room, chromium_viewer, answer)
        .await
        .expect("Chromium's answer is accepted");
    chromium.expect("flowing").await;

    // Both viewers decode both cameras.
    let deadline = tokio::time::Instant::now() + DECODE_DEADLINE;
    let (chromium_tracks, aiortc_tracks) = loop {
        let c = chromium.stats().await;
        let a = aiortc_sub.stats().await;
        let chromium_tracks = frames(&c, "videoTracks", "framesDecoded");
        let aiortc_tracks = frames(&a, "video", "");
        let done = |v: &[u64]| v.len() == 2 && v.iter().all(|&n| n >= FRAMES);
        if done(&chromium_tracks) && done(&aiortc_tracks) {
            break (chromium_tracks, aiortc_tracks);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every track decoded {FRAMES} frames: Chromium {c}, aiortc {a}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("interop: Chromium decoded {chromium_tracks:?}, aiortc decoded {aiortc_tracks:?}");

    // And aiortc's audio (Chromium's page publishes video only) reached the other aiortc.
    let a = aiortc_sub.stats().await;
    let audio = frames(&a, "audio", "");
    assert_eq!(audio.len(), 1, "{a}");
    assert!(audio[0] > 0, "{a}");

    chromium.finish().await;
    aiortc_sub.finish().await;
    aiortc_pub.finish().await;
    t.server.shutdown().await.unwrap();
}
