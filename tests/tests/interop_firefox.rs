//! Firefox ESR and Chromium in one room: each page publishes its fake camera and subscribes
//! from a second connection, so Chromium → Firefox, Firefox → Chromium, Firefox → Firefox
//! and Chromium → Chromium must all decode. Chromium → Firefox is the most common mixed call,
//! and the one that decoded nothing while the server wrote header extensions a leg had not
//! negotiated.
//!
//! Firefox gathers no loopback candidates and nothing without a default route, so it runs in
//! a network namespace the test makes (a veth pair), and the server's WebRTC socket listens on
//! the pair's host end, which Chromium, outside the namespace, reaches too.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::PeerId;
use switchboard_core::config::Config;
use switchboard_core::transport::TransportPlugin;
use switchboard_tests::netns::Namespace;
use switchboard_tests::peer_process::PeerProcess;
use switchboard_tests::start_with;
use switchboard_transports::settings::ListenSettings;
use switchboard_transports::{WebRtcPlugin, WebRtcSettings};

/// Frames each received video track must have decoded.
const FRAMES: u64 = 20;
/// How long the tracks get to decode them, once everyone is connected.
const DECODE_DEADLINE: Duration = Duration::from_secs(30);

fn video_tracks(stats: &Value) -> Vec<u64> {
    stats["videoTracks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["framesDecoded"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_each_decode_the_other() {
    let ns = Namespace::create();
    let mut config = Config::default();
    config.server.workers = 1;
    let settings = WebRtcSettings {
        listen: ListenSettings {
            listen_ip: ns.host.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let t = start_with(
        config,
        vec![WebRtcPlugin::new(settings) as Arc<dyn TransportPlugin>],
    );
    let room = t.room().await;
    let mut chromium = PeerProcess::chromium();
    let mut firefox = PeerProcess::firefox(&ns);
    let browsers = [("chromium", &mut chromium), ("firefox", &mut firefox)];

    // Both cameras first, then both viewers, so each viewer's first offer has both cameras.
    let mut peers = Vec::new();
    for (name, browser) in browsers {
        let camera = PeerId::parse(&format!("{name}-camera")).unwrap();
        t.server.join_peer(room, camera.clone()).await.unwrap();
        let offer = browser.expect_sdp("offer").await;
        let published = t
            .server
            .publish(room, camera, offer)
            .await
            .unwrap_or_else(|e| panic!("{name}'s offer is refused: {e}"));
        browser.send(json!({ "answer": published.sdp })).await;
        peers.push((name, browser));
    }
    for (name, browser) in &mut peers {
        let viewer = PeerId::parse(&format!("{name}-viewer")).unwrap();
        t.server.join_peer(room, viewer.clone()).await.unwrap();
        let offer = t.server.subscribe_peer(room, viewer.clone()).await.unwrap();
        browser.send(json!({ "subscribe": offer.sdp })).await;
        let answer = browser.expect_sdp("answer").await;
        t.server
            .answer(room, viewer, answer)
            .await
            .unwrap_or_else(|e| panic!("{name}'s answer is refused: {e}"));
    }
    for (_, browser) in &mut peers {
        browser.expect("flowing").await;
    }

    let deadline = tokio::time::Instant::now() + DECODE_DEADLINE;
    loop {
        let mut all = true;
        let mut seen = Vec::new();
        for (name, browser) in &mut peers {
            let stats = browser.stats().await;
            let tracks = video_tracks(&stats);
            all &= tracks.len() == 2 && tracks.iter().all(|&n| n >= FRAMES);
            seen.push(format!("{name} viewer {tracks:?}: {stats}"));
        }
        if all {
            eprintln!("interop (firefox): video frames decoded per track: {seen:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every viewer decoded both cameras within {DECODE_DEADLINE:?}:\n{}\nthe room: {}",
            seen.join("\n"),
            t.server.dump_router(room).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The Chromium → Firefox leg needed no retransmission it could not serve.
    let dump = t.server.dump_router(room).await.unwrap();
    for c in dump["consumers"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap().parse().unwrap();
        let stats = t.server.consumer_stats(id).await.unwrap();
        assert_eq!(
            stats["counters"]["retransmission_misses"], 0,
            "consumer {c}: {stats}"
        );
    }
    drop(peers);
    chromium.finish().await;
    // The bridge closes the page, then kills Firefox's process group.
    firefox.finish().await;
    t.server.shutdown().await.unwrap();
}
