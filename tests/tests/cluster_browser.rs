//! A room spanning two nodes with a real browser: Debian's Chromium (headless, fake camera)
//! publishes into a room on node A and receives the room on node B, where its receive
//! connection joined; the backend talks to node B only, with the WebRTC methods and nothing
//! else. The camera's tracks reach B through the cluster's pipe (SRTP over UDP), B offers
//! them to the browser like any track of the room, and the browser decodes the video: the
//! keyframe it needs is asked of the camera across the pipe. Then B drains: it hands the
//! viewer over to A, the browser takes A's offer (an ICE restart with A's candidate and
//! fingerprint) from the `renegotiation_needed` event, and keeps decoding; the test reports
//! the longest stall of the video around the move. The second test moves a browser that
//! publishes (see [`a_publishing_browser_moves_when_its_node_drains`]).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::App;
use switchboard::client::Client;
use switchboard::client::Notification;
use switchboard::settings::Settings;
use switchboard_core::event::{CloseReason, Connection, Event};
use switchboard_tests::peer_process::PeerProcess;
use switchboard_tests::redis::Redis;

fn node(redis: &Redis, id: &str) -> Settings {
    let mut config = switchboard_tests::webrtc_config(1);
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = "127.0.0.1:0".to_owned();
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    config.cluster.redis_url = redis.url();
    config.cluster.node_id = id.to_owned();
    config.cluster.heartbeat_ms = 100;
    config.cluster.node_ttl_ms = 800;
    config.cluster.key_prefix = "sbbrowser".to_owned();
    config.cluster.place_rooms = false;
    config.cluster.span_rooms = false;
    config
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_owned()
}

/// Nodes A and B on one Redis, and a backend connected to B once both are registered, with
/// a room made on A whose events it follows.
struct TwoNodes {
    a: App,
    b: App,
    backend: Client,
    room: String,
    // Last: the nodes stop before their Redis does.
    _redis: Redis,
}

impl TwoNodes {
    async fn start(
        name: &str,
        tune_b: impl FnOnce(&mut Settings),
    ) -> (Self, tokio::sync::mpsc::Receiver<Notification>) {
        let redis = Redis::start(name);
        let a = App::start(Arc::new(node(&redis, "node-a")))
            .await
            .expect("node A starts");
        let mut b_config = node(&redis, "node-b");
        tune_b(&mut b_config);
        let b = App::start(Arc::new(b_config)).await.expect("node B starts");
        let backend = Client::connect(&b.rpc_tcp_addr().expect("B's socket").to_string(), None)
            .await
            .expect("the backend reaches B");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while backend
            .cluster_nodes()
            .await
            .map_or(true, |n| n.nodes.len() < 2)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the nodes did not register"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let notifications = backend.notifications().expect("notifications");
        let mut nodes = Self {
            a,
            b,
            backend,
            room: String::new(),
            _redis: redis,
        };
        nodes.room = text(
            &nodes.call("router.create", json!({"node": "node-a"})).await,
            "id",
        );
        nodes
            .call("events.subscribe", json!({ "router": nodes.room }))
            .await;
        (nodes, notifications)
    }

    /// A request of the backend, which must succeed.
    async fn call(&self, method: &str, params: Value) -> Value {
        self.backend
            .call_value(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// The browser's camera joins the room on `node` and publishes; returns
    /// `webrtc.publish`'s result, whose answer the browser has applied.
    async fn publish_camera(&self, browser: &mut PeerProcess, node: &str) -> Value {
        self.call(
            "peer.join",
            json!({"router": self.room, "peer": "camera", "node": node}),
        )
        .await;
        let offer = browser.expect_sdp("offer").await;
        let published = self
            .call(
                "webrtc.publish",
                json!({"router": self.room, "peer": "camera", "sdp": offer}),
            )
            .await;
        browser
            .send(json!({ "answer": text(&published, "sdp") }))
            .await;
        published
    }

    /// The browser's viewer joins the room on `node`, subscribes and answers; returns
    /// `webrtc.subscribe`'s result and the browser's stats once it decodes video.
    async fn subscribe_viewer(&self, browser: &mut PeerProcess, node: &str) -> (Value, Value) {
        self.call(
            "peer.join",
            json!({"router": self.room, "peer": "viewer", "node": node}),
        )
        .await;
        let subscribed = self
            .call(
                "webrtc.subscribe",
                json!({"router": self.room, "peer": "viewer"}),
            )
            .await;
        browser
            .send(json!({ "subscribe": text(&subscribed, "sdp") }))
            .await;
        let answer = browser.expect_sdp("answer").await;
        self.call(
            "webrtc.answer",
            json!({"router": self.room, "peer": "viewer", "sdp": answer}),
        )
        .await;
        (subscribed, browser.expect("flowing").await)
    }

    async fn stop(self) {
        self.b
            .shutdown(Duration::from_secs(5))
            .await
            .expect("B stops");
        self.a
            .shutdown(Duration::from_secs(5))
            .await
            .expect("A stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_receives_a_room_whose_publisher_is_on_another_node() {
    let (nodes, mut notifications) = TwoNodes::start("browser", |_| {}).await;
    let (a, b, room) = (&nodes.a, &nodes.b, nodes.room.clone());

    // The camera joins on A.
    let mut browser = PeerProcess::chromium();
    let published = nodes.publish_camera(&mut browser, "node-a").await;
    assert!(
        a.server.holds("transport", &text(&published, "transport")),
        "the camera's connection is on A"
    );
    // The viewer joins the same room on B: B opens its router of the room with the camera's
    // tracks piped in, and offers them. More than 30 frames decoded: media crossed the nodes
    // and a keyframe came back.
    let (subscribed, flowing) = nodes.subscribe_viewer(&mut browser, "node-b").await;
    assert!(
        b.server.holds("transport", &text(&subscribed, "transport")),
        "the viewer's connection is on B"
    );
    let offer = text(&subscribed, "sdp");
    assert!(
        offer.contains("m=video") && offer.contains("m=audio"),
        "{offer}"
    );
    assert!(
        flowing["subscriber"]["framesDecoded"].as_u64() > Some(30),
        "{flowing}"
    );
    assert!(
        flowing["audioTracks"][0]["packetsReceived"].as_u64() > Some(0),
        "the camera's audio crossed too: {flowing}"
    );

    // B drains: the viewer, who only receives, is handed over to A, the room's other node.
    let started = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    nodes.call("server.drain", json!({})).await;
    let offer = loop {
        match tokio::time::timeout(Duration::from_secs(20), notifications.recv()).await {
            Ok(Some(Notification::Event(Event::RenegotiationNeeded {
                peer: Some(peer),
                sdp,
                transport,
                ..
            }))) if peer.0 == "viewer" => {
                assert!(
                    a.server.holds("transport", &transport.to_string()),
                    "the viewer's new connection is on A"
                );
                break sdp;
            }
            Ok(Some(_)) => {}
            other => panic!("no offer for the viewer from A: {other:?}"),
        }
    };
    browser.send(json!({ "renegotiate": offer })).await;
    let answer = browser.expect_sdp("answer").await;
    nodes
        .call(
            "webrtc.answer",
            json!({"router": room, "peer": "viewer", "sdp": answer}),
        )
        .await;
    loop {
        browser.send(json!({ "mark": true })).await;
        let stats = browser.expect("stats").await;
        samples.push((
            started.elapsed(),
            stats["subscriber"]["framesDecoded"].as_u64().unwrap_or(0),
        ));
        match tokio::time::timeout(Duration::from_millis(50), notifications.recv()).await {
            Ok(Some(Notification::Event(Event::PeerLeft { peer, reason, .. })))
                if peer.0 == "viewer" =>
            {
                assert_eq!(reason, CloseReason::Moved);
                break;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the backend's connection closed"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B did not let the viewer go"
        );
    }
    // With nobody left in it, B's router of the room closes, so that the drain can end.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.server.holds("router", &room) {
        assert!(
            Instant::now() < deadline,
            "B kept its empty router of the room"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.server.holds("router", &room), "the room goes on on A");
    // The video goes on from A: sample until 60 more frames are decoded.
    let moved_at = samples.last().map_or(0, |s| s.1);
    loop {
        browser.send(json!({ "mark": true })).await;
        let stats = browser.expect("stats").await;
        let decoded = stats["subscriber"]["framesDecoded"].as_u64().unwrap_or(0);
        samples.push((started.elapsed(), decoded));
        if decoded > moved_at + 60 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "the video stopped after the move: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The longest time without a newly decoded frame, around the move.
    println!(
        "handover: longest video stall {:?} over {} samples",
        longest_stall(&samples),
        samples.len()
    );
    browser.finish().await;
    nodes.stop().await;
}

/// Frames decoded so far over every received video track, counting each track's progress
/// only: a track that ends (its stats gone) takes nothing back.
#[derive(Default)]
struct Decoded {
    by_ssrc: std::collections::HashMap<u64, u64>,
    total: u64,
}

impl Decoded {
    fn update(&mut self, stats: &Value) -> u64 {
        for t in stats["videoTracks"].as_array().into_iter().flatten() {
            let (Some(ssrc), Some(frames)) = (t["ssrc"].as_u64(), t["framesDecoded"].as_u64())
            else {
                continue;
            };
            let last = self.by_ssrc.entry(ssrc).or_insert(0);
            self.total += frames.saturating_sub(*last);
            *last = (*last).max(frames);
        }
        self.total
    }
}

/// The longest time between two samples where the count grew.
fn longest_stall(samples: &[(Duration, u64)]) -> Duration {
    let mut stall = Duration::ZERO;
    let mut last_change = samples.first().map_or(Duration::ZERO, |s| s.0);
    for pair in samples.windows(2) {
        if pair[1].1 > pair[0].1 {
            stall = stall.max(pair[1].0 - last_change);
            last_change = pair[1].0;
        }
    }
    stall
}

/// A browser that publishes moves too: Chromium's camera publishes into a room on node B and
/// its viewer receives the room on node A. B drains: it hands the camera's send connection
/// over to A, whose offer (`renegotiation_needed`, `connection: "send"`) the browser applies
/// to its publishing `RTCPeerConnection` (an ICE and DTLS restart towards A); A made the
/// camera's producers again, so the viewer gets the camera's tracks from A, then the old ones
/// end when B lets the camera go. The test reports the viewer's longest video stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_browser_moves_when_its_node_drains() {
    let (nodes, mut notifications) = TwoNodes::start("browser-publisher", |_| {}).await;
    let (a, b, room) = (&nodes.a, &nodes.b, nodes.room.clone());

    // The camera joins on B, the viewer on A.
    let mut browser = PeerProcess::chromium();
    let published = nodes.publish_camera(&mut browser, "node-b").await;
    assert!(
        b.server.holds("transport", &text(&published, "transport")),
        "the camera's connection is on B"
    );
    let old_producers: Vec<String> = published["producers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| text(p, "id"))
        .collect();
    assert_eq!(old_producers.len(), 2, "{published}");
    // A pulls the camera's tracks when B announces them; the viewer's first offer has them
    // once they are there.
    let room_id: switchboard_core::RouterId = room.parse().expect("room id");
    let deadline = Instant::now() + Duration::from_secs(15);
    while a
        .server
        .dump_router(room_id)
        .await
        .map_or(0, |d| d.producers.len())
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "A did not pull the camera's tracks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (subscribed, flowing) = nodes.subscribe_viewer(&mut browser, "node-a").await;
    assert!(
        a.server.holds("transport", &text(&subscribed, "transport")),
        "the viewer's connection is on A"
    );
    let first_ssrc = flowing["videoTracks"][0]["ssrc"].as_u64();
    assert!(first_ssrc.is_some(), "{flowing}");

    // B drains. Both offers are answered as they come: the camera's send connection from A,
    // and the viewer's receive connection (the camera's tracks made again on A, then the old
    // ones gone).
    let started = Instant::now();
    let mut decoded = Decoded::default();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut moved_send = None;
    nodes.call("server.drain", json!({})).await;
    loop {
        browser.send(json!({ "mark": true })).await;
        let stats = browser.expect("stats").await;
        samples.push((started.elapsed(), decoded.update(&stats)));
        match tokio::time::timeout(Duration::from_millis(50), notifications.recv()).await {
            Ok(Some(Notification::Event(Event::RenegotiationNeeded {
                peer: Some(peer),
                sdp,
                transport,
                connection,
                ..
            }))) => {
                let key = match connection {
                    Connection::Send => {
                        assert_eq!(peer.0, "camera");
                        assert!(
                            a.server.holds("transport", &transport.to_string()),
                            "the camera's new send connection is on A"
                        );
                        moved_send = Some(transport);
                        "republish"
                    }
                    Connection::Recv => "renegotiate",
                };
                browser.send(json!({ key: sdp })).await;
                let answer = browser.expect_sdp("answer").await;
                nodes.call(
                    "webrtc.answer",
                    json!({"router": room, "peer": peer.0, "sdp": answer, "connection": connection}),
                )
                .await;
            }
            Ok(Some(Notification::Event(Event::PeerLeft { peer, reason, .. })))
                if peer.0 == "camera" =>
            {
                assert_eq!(reason, CloseReason::Moved);
                break;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the backend's connection closed"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B did not let the camera go"
        );
    }
    let moved_send = moved_send.expect("the camera got an offer for its send connection");
    // With nobody left in it, B's router of the room closes, so that the drain can end.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.server.holds("router", &room) {
        assert!(
            Instant::now() < deadline,
            "B kept its empty router of the room"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for old in &old_producers {
        assert!(
            !b.server.holds("producer", old),
            "B's producer {old} closed"
        );
    }
    // The viewer goes on decoding the camera from A: a new video track (the producer made
    // again on A), answering the offers that take the old one away.
    let moved_at = samples.last().map_or(0, |s| s.1);
    let last = loop {
        browser.send(json!({ "mark": true })).await;
        let stats = browser.expect("stats").await;
        let total = decoded.update(&stats);
        samples.push((started.elapsed(), total));
        if total > moved_at + 60 {
            break stats;
        }
        if let Ok(Some(Notification::Event(Event::RenegotiationNeeded {
            peer: Some(peer),
            sdp,
            connection: Connection::Recv,
            ..
        }))) = tokio::time::timeout(Duration::from_millis(50), notifications.recv()).await
        {
            browser.send(json!({ "renegotiate": sdp })).await;
            let answer = browser.expect_sdp("answer").await;
            nodes
                .call(
                    "webrtc.answer",
                    json!({"router": room, "peer": peer.0, "sdp": answer}),
                )
                .await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "the video stopped after the move: {stats}"
        );
    };
    let new_ssrcs: Vec<u64> = last["videoTracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["ssrc"].as_u64())
        .filter(|s| Some(*s) != first_ssrc)
        .collect();
    assert!(
        !new_ssrcs.is_empty(),
        "the viewer decodes a track made on A: {last}"
    );
    assert_eq!(
        last["connections"][0], "connected",
        "the camera's connection is up, to A: {last}"
    );
    let on_a =
        serde_json::to_value(a.server.dump_router(room_id).await.expect("A's dump")).expect("dump");
    let camera_producers: Vec<&Value> = on_a["producers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["transport"] == moved_send.to_string())
        .collect();
    assert_eq!(
        camera_producers.len(),
        2,
        "the camera's audio and video are produced on A: {on_a}"
    );
    println!(
        "publisher handover: longest video stall at the viewer {:?} over {} samples",
        longest_stall(&samples),
        samples.len()
    );
    browser.finish().await;
    nodes.stop().await;
}

/// A move the client never takes is undone: B drains, but the backend does not pass A's
/// offer on to the viewer's browser. When no new connection has come up on A within
/// `cluster.handover_timeout_ms` and the viewer is still connected to B, the viewer stays on
/// B (A lets it go), goes on decoding, and its requests, asked of any node, reach B again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_the_client_does_not_take_is_undone() {
    let (nodes, mut notifications) =
        TwoNodes::start("browser-undo", |b| b.cluster.handover_timeout_ms = 2_000).await;
    let (a, b, room) = (&nodes.a, &nodes.b, nodes.room.clone());
    let mut browser = PeerProcess::chromium();
    nodes.publish_camera(&mut browser, "node-a").await;
    let (subscribed, _) = nodes.subscribe_viewer(&mut browser, "node-b").await;
    let viewer_connection = text(&subscribed, "transport");

    // B drains; A's offer for the viewer is not passed on.
    nodes.call("server.drain", json!({})).await;
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), notifications.recv()).await {
            Ok(Some(Notification::Event(Event::PeerLeft { peer, reason, .. })))
                if peer.0 == "viewer" =>
            {
                assert_eq!(
                    reason,
                    CloseReason::Requested,
                    "A lets the viewer go; B keeps it"
                );
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("the move was not undone: {other:?}"),
        }
    }
    println!("move undone after {:?}", started.elapsed());
    assert!(
        b.server.holds("transport", &viewer_connection),
        "the viewer's connection stays on B"
    );
    let before = browser.stats().await["subscriber"]["framesDecoded"]
        .as_u64()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = browser.stats().await["subscriber"]["framesDecoded"]
            .as_u64()
            .unwrap_or(0);
        if now > before + 30 {
            break;
        }
        assert!(Instant::now() < deadline, "the viewer stopped decoding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The directory names B for the viewer again: asked of A, its request reaches B.
    let on_a = Client::connect(&a.rpc_tcp_addr().expect("A's socket").to_string(), None)
        .await
        .expect("a backend reaches A");
    let again = on_a
        .call_value(
            "webrtc.subscribe",
            json!({"router": room, "peer": "viewer"}),
        )
        .await
        .expect("the viewer's request, asked of A");
    assert_eq!(text(&again, "transport"), viewer_connection);
    browser.finish().await;
    nodes.stop().await;
}
