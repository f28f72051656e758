//! A client that vanishes without a word (its network gone, its process killed) is noticed
//! by the server itself: its connections close with `ice_timeout` once consent expires, its
//! producers and the consumers of them go, the peer leaves after `webrtc.peer_timeout_ms`,
//! and the rest of the room carries on.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use switchboard_core::PeerId;
use switchboard_core::event::{CloseReason, Event};
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;

// Above webrtc-rs clients' 2 s keepalive interval, with room for a loaded machine.
const CONSENT_TIMEOUT_MS: u64 = 5_000;

fn start() -> TestServer {
    let mut config = webrtc_config(1);
    config.webrtc.consent_timeout_ms = CONSENT_TIMEOUT_MS;
    config.webrtc.peer_timeout_ms = 300;
    start_webrtc_with(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_publisher_is_closed_with_ice_timeout_and_the_room_carries_on() {
    let t = start();
    let room = t.room().await;
    let mut events = t.server.subscribe_room(room);

    // Alice publishes through a relay that will disappear, as her network would.
    let alice = PeerId::parse("alice").unwrap();
    t.server.join_peer(room, alice.clone()).await.unwrap();
    let mut alice_client = Client::new(96, 111).await;
    alice_client
        .add_track(RtpCodecKind::Video, vp8(), 0x0A00_0001, "alice")
        .await;
    alice_client
        .add_track(RtpCodecKind::Audio, opus(), 0x0A00_0002, "alice")
        .await;
    let offer = alice_client.offer().await;
    let published = t.server.publish(room, alice.clone(), offer).await.unwrap();
    let server_addr = server_candidate(&published.sdp);
    let relay = switchboard_tests::relay::Relay::start(server_addr).await;
    alice_client
        .accept_answer(&relay.rewrite_sdp(&published.sdp, server_addr))
        .await;
    alice_client.connected().await;

    // "publisher" (Carol) publishes directly and Bob watches the room.
    let carol_pub = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let (mut bob_client, _) = webrtc_client::subscribe(&t.server, room, "bob").await;

    // Alice's network goes.
    drop(relay);
    let alice_transport = published.transport;
    wait_ice_timeout(&mut events, alice_transport).await;
    let (left, _) = wait_event(
        &mut events,
        |e| matches!(e, Event::PeerLeft { peer, .. } if *peer == alice),
    )
    .await;
    assert!(
        matches!(
            left,
            Event::PeerLeft {
                reason: CloseReason::IceTimeout,
                ..
            }
        ),
        "{left:?}"
    );
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let producers = dump["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 2, "only Carol's producers remain: {dump}");
    assert!(
        dump["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != "alice"),
        "{dump}"
    );

    // Bob keeps receiving Carol (a renegotiation may have moved his m-lines).
    webrtc_client::receives_video(&carol_pub, &mut bob_client, b"carol").await;
    t.server.shutdown().await.unwrap();
}

/// Waits up to `limit` for an event matching `pred` (a consent timeout takes longer than the
/// suite's usual deadline).
async fn wait_within(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    limit: std::time::Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(limit, async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("the event stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no matching event within {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_killed_mid_call_is_cleaned_up_by_the_server_and_the_room_carries_on() {
    let t = start();
    let room = t.room().await;
    let mut events = t.server.subscribe_room(room);

    // Carol publishes and Bob watches, both in this process.
    let carol_pub = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let (mut bob_client, _) = webrtc_client::subscribe(&t.server, room, "bob").await;
    let before = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();

    // A real Chromium joins as two peers: one publishes its camera, one receives the room.
    let mut browser = switchboard_tests::peer_process::PeerProcess::chromium();
    let camera = PeerId::parse("camera").unwrap();
    t.server.join_peer(room, camera.clone()).await.unwrap();
    let offer = browser.expect_sdp("offer").await;
    let published = t.server.publish(room, camera.clone(), offer).await.unwrap();
    browser
        .send(serde_json::json!({ "answer": published.sdp }))
        .await;
    let viewer = PeerId::parse("viewer").unwrap();
    t.server.join_peer(room, viewer.clone()).await.unwrap();
    let subscribed = t.server.subscribe_peer(room, viewer.clone()).await.unwrap();
    browser
        .send(serde_json::json!({ "subscribe": subscribed.sdp }))
        .await;
    let answer = browser.expect_sdp("answer").await;
    t.server.answer(room, viewer.clone(), answer).await.unwrap();
    browser.expect("flowing").await;

    // SIGKILL to the browser and all its processes: no DTLS close, no BYE, nothing.
    browser.kill().await;
    let limit = std::time::Duration::from_millis(CONSENT_TIMEOUT_MS * 3);
    let mut closed = Vec::new();
    let mut left = Vec::new();
    while closed.len() < 2 || left.len() < 2 {
        match wait_within(&mut events, limit, |e| {
            matches!(e, Event::TransportClosed { .. } | Event::PeerLeft { .. })
        })
        .await
        {
            Event::TransportClosed {
                transport, reason, ..
            } => {
                assert_eq!(reason, CloseReason::IceTimeout, "transport {transport}");
                closed.push(transport);
            }
            Event::PeerLeft { peer, reason, .. } => {
                assert_eq!(reason, CloseReason::IceTimeout, "peer {peer}");
                left.push(peer);
            }
            _ => unreachable!(),
        }
    }
    closed.sort();
    let mut browser_transports = vec![published.transport, subscribed.transport];
    browser_transports.sort();
    assert_eq!(
        closed, browser_transports,
        "exactly the browser's connections"
    );
    left.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(left, [camera, viewer]);

    // The room is as it was before the browser came: Carol's producers, Bob's consumers of
    // them, their two connections.
    let after = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    for list in ["transports", "producers", "consumers", "peers"] {
        let ids = |d: &serde_json::Value| {
            let mut v: Vec<String> = d[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(&after), ids(&before), "{list}: {after}");
    }

    // And Bob still receives Carol.
    webrtc_client::receives_video(&carol_pub, &mut bob_client, b"carol").await;
    t.server.shutdown().await.unwrap();
}
