//! Middleware attached to a room: each instance on its own thread, fed in the room's order,
//! never holding up forwarding; publishing tracks, notifying the backend, failing and
//! closing cleanly on every path.

use bytes::Bytes;
use rtc_shared::marshal::Marshal;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions, Server, ServerHandle};
use switchboard_core::event::Event;
use switchboard_core::middleware::{
    Audience, Metric, MetricKind, Middleware, MiddlewareContext, MiddlewareFactory,
    MiddlewareRegistry, ProducerInfo, PublishOptions, PublishedTrack, RoomAccess,
};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::transport::{TransportPlugin, TransportRegistry};
use switchboard_core::{ErrorCode, PeerId, ProducerId, Result, RouterId, TransportId};
use switchboard_tests::*;
use switchboard_transports::{DirectEndpoint, DirectPlugin};

/// What test instances did, in order: `producer:<id>`, `rtp:<id>:<seq>`, `rtcp:<id>`,
/// `event:<name>`, `published:<id>`, `close`.
#[derive(Default)]
struct Journal {
    lines: Mutex<Vec<String>>,
    closed: AtomicUsize,
}

impl Journal {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
    fn position(&self, line: &str) -> Option<usize> {
        self.lines().iter().position(|l| l == line)
    }
}

/// A scriptable test middleware. Options: `sleep_ms` (per RTP packet), `panic_on_rtp`,
/// `publish` (an SSRC: publish an Opus track on the first tick, then send one packet per
/// tick), `audience` (a peer), `marker` (a file written in `close`, after `close_delay_ms`).
struct Scripted {
    name: &'static str,
    journal: Arc<Journal>,
}

struct Instance {
    journal: Arc<Journal>,
    room: Arc<dyn RoomAccess>,
    options: Value,
    track: Option<Box<dyn PublishedTrack>>,
    sent: u16,
}

impl MiddlewareFactory for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }
    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        ctx.selection.select_all(Some(MediaKind::Audio));
        Ok(Box::new(Instance {
            journal: self.journal.clone(),
            room: ctx.room,
            options: options.clone(),
            track: None,
            sent: 0,
        }))
    }
}

impl Middleware for Instance {
    fn on_producer(&mut self, producer: &ProducerInfo) {
        self.journal.push(format!("producer:{}", producer.id));
    }
    fn on_event(&mut self, event: &Event) {
        let line = match event {
            Event::ProducerClosed { producer, .. } => format!("event:producer_closed:{producer}"),
            e => format!("event:{}", e.name()),
        };
        self.journal.push(line);
    }
    fn on_rtp(&mut self, producer: ProducerId, packet: &rtc_rtp::Packet) {
        if self.options["panic_on_rtp"] == json!(true) {
            panic!("deliberate middleware panic");
        }
        if let Some(ms) = self.options["sleep_ms"].as_u64() {
            std::thread::sleep(Duration::from_millis(ms));
        }
        self.journal
            .push(format!("rtp:{producer}:{}", packet.header.sequence_number));
    }
    fn on_rtcp(&mut self, producer: ProducerId, _packet: &Bytes) {
        self.journal.push(format!("rtcp:{producer}"));
    }
    fn tick_interval(&self) -> Option<Duration> {
        self.options["publish"]
            .as_u64()
            .map(|_| Duration::from_millis(10))
    }
    fn on_tick(&mut self, _now: Instant) {
        let Some(ssrc) = self.options["publish"].as_u64() else {
            return;
        };
        match &self.track {
            None => {
                let audience = match self.options["audience"].as_str() {
                    None => Audience::Everyone,
                    Some("nobody") => Audience::Nobody,
                    Some(p) => Audience::Peer(PeerId(p.to_owned())),
                };
                let track = self
                    .room
                    .publish(PublishOptions {
                        kind: MediaKind::Audio,
                        rtp_parameters: opus_producer(ssrc as u32),
                        audience,
                        label: "test mix".into(),
                    })
                    .expect("publish");
                self.journal.push(format!("published:{}", track.id()));
                self.room
                    .notify("published", json!({ "producer": track.id() }));
                self.track = Some(track);
            }
            Some(track) => {
                let seq = self.sent;
                self.sent += 1;
                let packet =
                    opus_packet(ssrc as u32, seq, u32::from(seq) * 960, b"from-middleware");
                let _ = track.send_rtp(packet);
            }
        }
    }
    fn stats(&self) -> Value {
        json!({ "lines": self.journal.lines.lock().unwrap().len() })
    }
    fn metrics(&self) -> Vec<Metric> {
        vec![Metric {
            name: "rtp_seen_total",
            help: "RTP packets the test middleware saw.",
            kind: MetricKind::Counter,
            labels: vec![],
            value: self.journal.count("rtp:") as f64,
        }]
    }
    fn close(&mut self) {
        if let Some(path) = self.options["marker"].as_str() {
            // Slow on purpose: shutdown must wait for it.
            std::thread::sleep(Duration::from_millis(
                self.options["close_delay_ms"].as_u64().unwrap_or(0),
            ));
            let rtp = self.journal.count("rtp:");
            std::fs::write(path, format!("closed after {rtp} packets")).expect("marker");
        }
        self.journal.push("close".into());
        self.journal.closed.fetch_add(1, Ordering::SeqCst);
    }
}

struct Setup {
    server: ServerHandle,
    direct: Arc<DirectPlugin>,
    journal: Arc<Journal>,
}

fn setup(config: Settings, extra: Vec<Arc<dyn TransportPlugin>>) -> Setup {
    let journal = Arc::new(Journal::default());
    let mut middleware = MiddlewareRegistry::new();
    for name in ["probe", "probe2", "probe3"] {
        middleware
            .register(Arc::new(Scripted {
                name,
                journal: journal.clone(),
            }))
            .unwrap();
    }
    switchboard_middleware::register_builtin(&mut middleware).unwrap();
    let mut transports = TransportRegistry::new();
    let direct = DirectPlugin::new();
    transports.register(direct.clone()).unwrap();
    for p in extra {
        transports.register(p).unwrap();
    }
    let server = Server::start(Arc::new(config.config()), transports, middleware).unwrap();
    Setup {
        server,
        direct,
        journal,
    }
}

fn one_worker() -> Settings {
    let mut config = Settings::default();
    config.server.workers = 1;
    config
}

/// A room with a publisher (SSRC 77, Opus) and a direct subscriber consuming it.
struct Room {
    id: RouterId,
    publisher: DirectEndpoint,
    publisher_transport: TransportId,
    subscriber: DirectEndpoint,
    subscriber_transport: TransportId,
    producer: ProducerId,
}

async fn room_with_publisher(s: &Setup) -> Room {
    let server = &s.server;
    let room = server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pair = opus_pair(server, &s.direct, room.id, 77).await;
    Room {
        id: room.id,
        publisher: pair.publisher,
        publisher_transport: pair.publisher_transport,
        subscriber: pair.subscriber,
        subscriber_transport: pair.subscriber_transport,
        producer: pair.producer,
    }
}

async fn produce(server: &ServerHandle, transport: TransportId, ssrc: u32) -> ProducerId {
    server
        .produce(
            transport,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(ssrc),
                paused: false,
            },
        )
        .await
        .unwrap()
        .id
}

async fn middleware_stats(server: &ServerHandle, room: RouterId) -> Value {
    switchboard_tests::as_json(server.router_stats(room).await).unwrap()["middleware"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_middleware_drops_and_counts_while_forwarding_goes_on() {
    let mut config = one_worker();
    config.middleware.queue_capacity = 8;
    let s = setup(config, vec![]);
    let room = room_with_publisher(&s).await;
    s.server
        .attach_middleware(room.id, "probe", json!({ "sleep_ms": 20 }))
        .await
        .unwrap();
    const N: u16 = 200;
    for seq in 0..N {
        room.publisher
            .send_rtp(opus_packet(77, seq, u32::from(seq) * 960, b"audio"))
            .unwrap();
        let got = next_rtp(&room.subscriber).await;
        assert_eq!(
            got.header.sequence_number, seq,
            "the subscriber gets every packet"
        );
        assert_eq!(got.payload.as_ref(), b"audio");
    }
    let stats = middleware_stats(&s.server, room.id).await;
    let (queued, dropped) = (
        stats[0]["queued"].as_u64().unwrap(),
        stats[0]["dropped"].as_u64().unwrap(),
    );
    assert_eq!(queued + dropped, u64::from(N), "{stats}");
    assert!(
        dropped > 0,
        "a 20 ms-per-packet middleware cannot keep up: {stats}"
    );
    assert!(queued >= 8, "{stats}");

    // The worker's counters say the same.
    let metrics = s.server.metrics(false, DEADLINE).await;
    let media = metrics.workers[0].media.as_ref().unwrap();
    assert_eq!(media.middleware_packets["probe"].dropped, dropped);

    // Detach delivers what was queued, in order, then closes.
    s.server.detach_middleware(room.id, "probe").await.unwrap();
    let delivered: Vec<u16> = s
        .journal
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("rtp:{}:", room.producer)))
        .map(|seq| seq.parse().unwrap())
        .collect();
    assert_eq!(delivered.len() as u64, queued);
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "{delivered:?}");
    assert_eq!(s.journal.lines().last().map(String::as_str), Some("close"));
    let metrics = s.server.metrics(false, DEADLINE).await;
    let totals = &metrics.workers[0]
        .media
        .as_ref()
        .unwrap()
        .middleware_packets["probe"];
    assert_eq!(
        (totals.queued, totals.dropped),
        (queued, dropped),
        "kept after detach"
    );
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_are_announced_before_their_packets_and_closed_after_them() {
    let s = setup(one_worker(), vec![]);
    let room = room_with_publisher(&s).await;
    s.server
        .attach_middleware(room.id, "probe", json!({}))
        .await
        .unwrap();
    // A producer present before the attach, and one created after it.
    let early = room.producer;
    let late = produce(&s.server, room.publisher_transport, 88).await;
    for seq in 0..5u16 {
        room.publisher
            .send_rtp(opus_packet(77, seq, 0, b"a"))
            .unwrap();
        room.publisher
            .send_rtp(opus_packet(88, seq, 0, b"b"))
            .unwrap();
    }
    let sr = rtc_rtcp::sender_report::SenderReport {
        ssrc: 88,
        ntp_time: 1 << 32,
        rtp_time: 4800,
        packet_count: 5,
        octet_count: 5,
        ..Default::default()
    };
    room.publisher
        .send_rtcp(sr.marshal().unwrap().freeze())
        .unwrap();
    eventually(|| async { s.journal.count("rtcp:") == 1 }).await;
    s.server.close_producer(late).await.unwrap();
    s.server.detach_middleware(room.id, "probe").await.unwrap();

    let j = &s.journal;
    for p in [early, late] {
        let announced = j.position(&format!("producer:{p}")).expect("announced");
        let first = j
            .position(&format!("rtp:{p}:0"))
            .expect("packets delivered");
        assert!(announced < first, "{:?}", j.lines());
    }
    assert_eq!(j.lines().first(), Some(&format!("producer:{early}")));
    let last_late = j.position(&format!("rtp:{late}:4")).unwrap();
    let closed = j
        .position(&format!("event:producer_closed:{late}"))
        .expect("closure seen");
    assert!(last_late < closed, "closure after the last packet");
    assert!(
        j.position(&format!("rtcp:{late}")).is_some(),
        "the sender report reached on_rtcp"
    );
    assert_eq!(j.count("rtp:"), 10);
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_track_reaches_a_subscriber_and_notify_reaches_the_backend() {
    let s = setup(one_worker(), vec![]);
    let mut events = s.server.subscribe();
    let room = room_with_publisher(&s).await;
    s.server
        .attach_middleware(room.id, "probe", json!({ "publish": 0xABCD }))
        .await
        .unwrap();
    let (event, _) = wait_event(&mut events, |e| matches!(e, Event::Middleware { .. })).await;
    let Event::Middleware {
        router,
        middleware,
        name,
        data,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(
        (router, middleware.as_str(), name.as_str()),
        (room.id, "probe", "published")
    );
    let published: ProducerId = serde_json::from_value(data["producer"].clone()).unwrap();
    let dump = switchboard_tests::as_json(s.server.dump_router(room.id).await).unwrap();
    let internal = dump["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "middleware")
        .expect("an internal transport")["id"]
        .clone();
    let consumer = s
        .server
        .consume(
            room.subscriber_transport,
            ConsumeOptions {
                producer: published,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let ssrc = consumer.rtp_parameters.encodings[0].ssrc.unwrap();
    let got = loop {
        let p = next_rtp(&room.subscriber).await;
        if p.header.ssrc == ssrc {
            break p;
        }
    };
    assert_eq!(got.payload.as_ref(), b"from-middleware");
    assert_eq!(
        got.header.payload_type, 100,
        "the subscriber's Opus payload type"
    );

    // Detaching closes the track and its transport, with the usual events.
    s.server.detach_middleware(room.id, "probe").await.unwrap();
    wait_event(
        &mut events,
        |e| matches!(e, Event::ProducerClosed { producer, .. } if *producer == published),
    )
    .await;
    wait_event(
        &mut events,
        |e| matches!(e, Event::TransportClosed { transport, .. } if json!(transport) == internal),
    )
    .await;
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_subscription_honours_the_audience_of_a_published_track() {
    let mut config = one_worker();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    let webrtc = switchboard_transports::WebRtcPlugin::new(Default::default());
    let s = setup(config, vec![webrtc as Arc<dyn TransportPlugin>]);
    let server = &s.server;
    let room = server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let mut recv = std::collections::HashMap::new();
    for peer in ["alice", "bob"] {
        server
            .join_peer(room.id, PeerId(peer.to_owned()))
            .await
            .unwrap();
        let sub = server
            .subscribe_peer(room.id, PeerId(peer.to_owned()))
            .await
            .unwrap();
        recv.insert(sub.transport, peer);
    }
    // One track for alice only, one for everyone, one for nobody.
    server
        .attach_middleware(
            room.id,
            "probe",
            json!({ "publish": 1, "audience": "alice" }),
        )
        .await
        .unwrap();
    server
        .attach_middleware(room.id, "probe2", json!({ "publish": 2 }))
        .await
        .unwrap();
    server
        .attach_middleware(
            room.id,
            "probe3",
            json!({ "publish": 3, "audience": "nobody" }),
        )
        .await
        .unwrap();
    eventually(|| async { s.journal.count("published:") == 3 }).await;
    server
        .join_peer(room.id, PeerId("carol".to_owned()))
        .await
        .unwrap();
    let carol = server
        .subscribe_peer(room.id, PeerId("carol".to_owned()))
        .await
        .unwrap();
    recv.insert(carol.transport, "carol");

    let lines = s.journal.lines();
    let published: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("published:"))
        .collect();
    let dump = switchboard_tests::as_json(server.dump_router(room.id).await).unwrap();
    let producers: Vec<Value> = dump["producers"].as_array().unwrap().clone();
    let ssrc_of = |id: &str| {
        producers
            .iter()
            .any(|p| p["id"] == id)
            .then_some(id.to_owned())
    };
    let mut audiences: Vec<(String, Vec<&str>)> = Vec::new();
    for id in published.iter().filter_map(|id| ssrc_of(id)) {
        let mut peers: Vec<&str> = dump["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["producer"] == id.as_str())
            .filter_map(|c| {
                let t: TransportId = serde_json::from_value(c["transport"].clone()).ok()?;
                recv.get(&t).copied()
            })
            .collect();
        peers.sort();
        audiences.push((id, peers));
    }
    audiences.sort_by_key(|(_, peers)| peers.len());
    assert_eq!(audiences.len(), 3, "{dump}");
    assert!(audiences[0].1.is_empty(), "the track for nobody: {dump}");
    assert_eq!(audiences[1].1, ["alice"], "the restricted track: {dump}");
    assert_eq!(
        audiences[2].1,
        ["alice", "bob", "carol"],
        "the open one: {dump}"
    );
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_middleware_is_detached_counted_and_still_closed() {
    let s = setup(one_worker(), vec![]);
    let room = room_with_publisher(&s).await;
    let err = s
        .server
        .attach_middleware(room.id, "nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPlugin);
    s.server
        .attach_middleware(room.id, "probe", json!({ "panic_on_rtp": true }))
        .await
        .unwrap();
    let err = s
        .server
        .attach_middleware(room.id, "probe", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
    for seq in 0..5u16 {
        room.publisher
            .send_rtp(opus_packet(77, seq, 0, b"audio"))
            .unwrap();
        let got = next_rtp(&room.subscriber).await;
        assert_eq!(got.payload.as_ref(), b"audio");
    }
    eventually(|| async { middleware_stats(&s.server, room.id).await == json!([]) }).await;
    let metrics = s.server.metrics(false, DEADLINE).await;
    let media = metrics.workers[0].media.as_ref().unwrap();
    assert_eq!(media.middleware_failures.get("probe"), Some(&1));
    assert_eq!(
        s.journal.closed.load(Ordering::SeqCst),
        1,
        "close still ran"
    );
    // The room goes on, and the name can be attached again.
    s.server
        .attach_middleware(room.id, "probe", json!({}))
        .await
        .unwrap();
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_close_delivers_the_queue_then_closes() {
    let s = setup(one_worker(), vec![]);
    let room = room_with_publisher(&s).await;
    s.server
        .attach_middleware(room.id, "probe", json!({ "sleep_ms": 5 }))
        .await
        .unwrap();
    for seq in 0..20u16 {
        room.publisher
            .send_rtp(opus_packet(77, seq, 0, b"audio"))
            .unwrap();
        next_rtp(&room.subscriber).await;
    }
    s.server.close_router(room.id).await.unwrap();
    eventually(|| async { s.journal.closed.load(Ordering::SeqCst) == 1 }).await;
    assert_eq!(s.journal.count("rtp:"), 20, "nothing queued was lost");
    assert_eq!(s.journal.lines().last().map(String::as_str), Some("close"));
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_close() {
    let dir = std::env::temp_dir().join(format!("switchboard-mw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("closed.txt");
    let _ = std::fs::remove_file(&marker);
    let s = setup(one_worker(), vec![]);
    let room = room_with_publisher(&s).await;
    s.server
        .attach_middleware(
            room.id,
            "probe",
            json!({ "sleep_ms": 5, "marker": marker, "close_delay_ms": 300 }),
        )
        .await
        .unwrap();
    for seq in 0..20u16 {
        room.publisher
            .send_rtp(opus_packet(77, seq, 0, b"audio"))
            .unwrap();
        next_rtp(&room.subscriber).await;
    }
    s.server.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&marker).expect("close ran before shutdown returned");
    assert_eq!(text, "closed after 20 packets");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_logging_records_the_room_and_summarises_streams() {
    let mut config = one_worker();
    config.middleware.attach = vec!["logging".into()];
    config.middleware.options.insert(
        "logging".into(),
        json!({ "interval_ms": 50 }).as_object().unwrap().clone(),
    );
    let s = setup(config, vec![]);
    let room = room_with_publisher(&s).await;
    let mut consumer_ssrc = 0;
    for seq in (0..30u16).filter(|s| *s != 10) {
        room.publisher
            .send_rtp(opus_packet(77, seq, u32::from(seq) * 960, b"audio"))
            .unwrap();
        consumer_ssrc = next_rtp(&room.subscriber).await.header.ssrc;
    }
    // Feedback the forwarder answers itself still reaches the summaries.
    let pli = rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: consumer_ssrc,
    };
    room.subscriber
        .send_rtcp(
            rtc_shared::marshal::Marshal::marshal(&pli)
                .unwrap()
                .freeze(),
        )
        .unwrap();
    // A packet after it, so the next window has something to summarise.
    room.publisher
        .send_rtp(opus_packet(77, 30, 30 * 960, b"audio"))
        .unwrap();
    next_rtp(&room.subscriber).await;
    let id = room.producer.to_string();
    eventually(|| async {
        let stats = middleware_stats(&s.server, room.id).await;
        let l = &stats[0]["stats"];
        stats[0]["name"] == "logging"
            && l["events"]["producer_created"] == 1
            && l["events"]["consumer_created"] == 1
            && l["events"]["transport_created"] == 2
            && l["streams"][&id]["packets"] == 30
            && l["streams"][&id]["feedback"]["plis"] == 1
            && l["summaries"].as_u64() >= Some(1)
    })
    .await;
    let stats = middleware_stats(&s.server, room.id).await;
    assert_eq!(stats[0]["stats"]["streams"][&id]["lost"], 1, "{stats}");
    s.server.shutdown().await.unwrap();
}

#[test]
fn an_unregistered_configured_middleware_stops_the_start() {
    let mut config = one_worker();
    config.middleware.attach = vec!["nope".into()];
    let err = Server::start(
        Arc::new(config.config()),
        TransportRegistry::new(),
        MiddlewareRegistry::new(),
    )
    .err()
    .expect("refused");
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(err.message.contains("nope"), "{}", err.message);
}
