//! The loss drill: a real Chromium publishes its fake camera, and the same browser subscribes
//! through a user-space relay that loses 5% of the server's datagrams at random and, once,
//! everything for 50 ms (the kernel here has no netem). Video must keep decoding: the
//! subscriber decodes at least 95% of the frames the publisher sent in the window, because
//! the server answers the browser's NACKs from its retransmission buffer, and the loss does
//! not turn into a storm of keyframe requests.
//!
//! The browser half is `tests/browser/pair.mjs` (playwright-core); this test does the
//! signalling through the server's own API, as the backend would through the RPC.

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_core::PeerId;
use switchboard_tests::peer_process::{PeerProcess, count, grew};
use switchboard_tests::relay::Relay;
use switchboard_tests::{server_candidate, start_webrtc};

/// Random loss on the subscriber's leg while the drill runs.
const LOSS: f64 = 0.05;
/// The burst: everything from the server lost for this long, halfway through.
const BURST: Duration = Duration::from_millis(50);
/// Each half of the lossy window (before and after the burst).
const HALF: Duration = Duration::from_secs(6);
/// After the loss stops, time for the last retransmissions and frames to arrive before the
/// counters are read.
const TAIL: Duration = Duration::from_secs(2);
/// More keyframe requests than this in the window is a storm: with NACK answered, a few
/// seconds of 5% loss and one 50 ms gap need none or a couple.
const MAX_KEYFRAME_REQUESTS: u64 = 6;

fn counter(stats: &Value, key: &str) -> u64 {
    stats["counters"][key].as_u64().unwrap_or(0)
}

/// Retransmissions go out on the RTX stream the server's offer declares: the browser must
/// take them as repairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_and_a_burst_keep_video_decoding_without_a_keyframe_storm() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let mut browser = PeerProcess::chromium();

    let publisher = PeerId::parse("camera").expect("peer id");
    t.server
        .join_peer(room, publisher.clone())
        .await
        .expect("join");
    let offer = browser.expect_sdp("offer").await;
    let published = t
        .server
        .publish(room, publisher, offer)
        .await
        .expect("the browser's offer is accepted");
    browser.send(json!({ "answer": published.sdp })).await;

    let viewer = PeerId::parse("viewer").expect("peer id");
    t.server
        .join_peer(room, viewer.clone())
        .await
        .expect("join");
    let subscribed = t
        .server
        .subscribe_peer(room, viewer.clone())
        .await
        .expect("subscribe");
    let server = server_candidate(&subscribed.sdp);
    let relay = Relay::start(server).await;
    browser
        .send(json!({ "subscribe": relay.rewrite_sdp(&subscribed.sdp, server) }))
        .await;
    let answer = browser.expect_sdp("answer").await;
    t.server
        .answer(room, viewer, answer)
        .await
        .expect("the browser's answer is accepted");
    browser.expect("flowing").await;

    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).expect("dump");
    let video_consumer = dump["consumers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["kind"] == "video"))
        .and_then(|c| c["id"].as_str())
        .and_then(|id| id.parse().ok())
        .expect("a video consumer in the room");
    let server_before =
        switchboard_tests::as_json(t.server.consumer_stats(video_consumer).await).expect("stats");
    let before = browser.stats().await;

    // The drill itself: these waits are its length, not a synchronisation.
    relay.set_loss(LOSS);
    tokio::time::sleep(HALF).await;
    relay.blackout(BURST);
    tokio::time::sleep(HALF).await;
    relay.set_loss(0.0);
    let lost = relay.lost();
    tokio::time::sleep(TAIL).await;

    let after = browser.stats().await;
    let server_after =
        switchboard_tests::as_json(t.server.consumer_stats(video_consumer).await).expect("stats");
    browser.finish().await;

    let sent = grew(&before, &after, "publisher", "framesSent");
    let decoded = grew(&before, &after, "subscriber", "framesDecoded");
    let nacks = grew(&before, &after, "subscriber", "nackCount");
    let keyframe_requests = grew(&before, &after, "subscriber", "pliCount")
        + grew(&before, &after, "subscriber", "firCount");
    let resent = counter(&server_after, "retransmitted") - counter(&server_before, "retransmitted");
    let misses = counter(&server_after, "retransmission_misses")
        - counter(&server_before, "retransmission_misses");
    let refused: serde_json::Map<String, Value> = [
        "nack_duplicates",
        "nack_recently_resent",
        "nack_over_limit",
        "nack_rate_limited",
    ]
    .into_iter()
    .map(|k| {
        let n = counter(&server_after, k) - counter(&server_before, k);
        (k.to_owned(), json!(n))
    })
    .collect();
    let summary = json!({
        "lost_datagrams": lost,
        "frames_sent": sent,
        "frames_decoded": decoded,
        "decoded_share": decoded as f64 / sent.max(1) as f64,
        "freezes": grew(&before, &after, "subscriber", "freezeCount"),
        "subscriber_packets_lost": grew(&before, &after, "subscriber", "packetsLost"),
        "subscriber_nacks": nacks,
        "server_retransmitted": resent,
        "server_retransmission_misses": misses,
        "server_nacks_received": counter(&server_after, "nacks") - counter(&server_before, "nacks"),
        "server_nack_refused": refused,
        "keyframe_requests": keyframe_requests,
        "publisher_plis": grew(&before, &after, "publisher", "pliCount"),
    });
    // One line for docs/security.md's drill results.
    eprintln!("loss drill: {summary}");

    // Before the drill: the subscriber's start. Its first keyframe is requested once its
    // connection is up, so nothing it gets first is undecodable (it was 13-14 frames dropped
    // and 4 PLIs when the only request was the one made at the consumer's creation, whose
    // keyframe went out before DTLS finished).
    let start_dropped = count(&before, "subscriber", "framesDropped");
    let start_requests =
        count(&before, "subscriber", "pliCount") + count(&before, "subscriber", "firCount");
    assert!(
        start_dropped <= 2 && start_requests <= 1,
        "the subscriber's start dropped {start_dropped} frames and asked for {start_requests} keyframes: {before}"
    );

    assert!(lost > 0, "the relay lost nothing: {summary}");
    assert!(sent > 0, "the publisher sent no frames: {summary}");
    assert!(
        decoded * 100 >= sent * 95,
        "the subscriber decoded fewer than 95% of the frames sent: {summary}"
    );
    assert!(nacks > 0, "the browser asked for nothing: {summary}");
    assert!(
        resent > 0,
        "the server answered no NACK with a retransmission: {summary}"
    );
    // The repairs went out on the RTX stream the offer declared, so the browser counts the
    // media stream's lost packets even though it decoded every frame (repairs sent on the
    // media SSRC would fill the gaps).
    let video =
        switchboard_tests::as_json(t.server.dump_consumer(video_consumer).await).expect("dump");
    assert!(
        video["rtp_parameters"]["encodings"][0]["rtx"]["ssrc"].is_u64(),
        "the viewer's video consumer has an RTX stream: {video}"
    );
    assert!(
        grew(&before, &after, "subscriber", "packetsLost") > 0,
        "repairs arrived on the media SSRC, not on RTX: {summary}"
    );
    assert!(
        keyframe_requests <= MAX_KEYFRAME_REQUESTS,
        "a keyframe-request storm: {summary}"
    );
}
