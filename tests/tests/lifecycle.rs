//! Closing cascades with exactly one event per object, and failures stay contained.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::transport::{
    MediaSink, Transport, TransportContext, TransportFactory, TransportPlugin,
};
use switchboard_core::{ErrorCode, Result, WorkerId};
use switchboard_tests::*;

const SSRC: u32 = 0x0B0B_0001;

/// Collects events until `last` matches, and returns them in order.
async fn events_until(
    rx: &mut tokio::sync::mpsc::Receiver<Event>,
    last: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let (e, mut before) = wait_event(rx, last).await;
    before.push(e);
    before
}

/// Counts closing events per object id: every object must close exactly once.
fn closures(events: &[Event]) -> HashMap<String, (usize, CloseReason)> {
    let mut map: HashMap<String, (usize, CloseReason)> = HashMap::new();
    for e in events {
        let (id, reason) = match e {
            Event::ConsumerClosed {
                consumer, reason, ..
            } => (consumer.to_string(), reason),
            Event::ProducerClosed {
                producer, reason, ..
            } => (producer.to_string(), reason),
            Event::TransportClosed {
                transport, reason, ..
            } => (transport.to_string(), reason),
            Event::RouterClosed { router, reason } => (router.to_string(), reason),
            _ => continue,
        };
        let entry = map.entry(id).or_insert((0, reason.clone()));
        entry.0 += 1;
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_cascades_with_one_event_per_object() {
    let t = start(1, vec![]);
    let mut events = t.server.subscribe();
    let router = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let t1 = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let t2 = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let produce = || ProduceOptions {
        kind: MediaKind::Video,
        rtp_parameters: vp8_producer(SSRC, SSRC + 1),
        paused: false,
    };
    let consume = |producer| ConsumeOptions {
        producer,
        rtp_capabilities: subscriber_caps(96, 4, true),
        paused: false,
    };

    // Producer close takes its consumer first.
    let p = t.server.produce(t1.id, produce()).await.unwrap();
    let c = t.server.consume(t2.id, consume(p.id)).await.unwrap();
    t.server.close_producer(p.id).await.unwrap();
    let got = events_until(&mut events, |e| matches!(e, Event::ProducerClosed { .. })).await;
    let order: Vec<&str> = got
        .iter()
        .filter(|e| e.name().ends_with("_closed"))
        .map(|e| e.name())
        .collect();
    assert_eq!(order, ["consumer_closed", "producer_closed"]);
    let closed = closures(&got);
    assert_eq!(closed[&c.id.to_string()], (1, CloseReason::ProducerClosed));
    assert_eq!(closed[&p.id.to_string()], (1, CloseReason::Requested));
    let err = t.server.close_consumer(c.id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);

    // Router close takes everything, children first, each exactly once.
    let p2 = t.server.produce(t1.id, produce()).await.unwrap();
    let c2 = t.server.consume(t2.id, consume(p2.id)).await.unwrap();
    t.server.close_router(router.id).await.unwrap();
    let got = events_until(&mut events, |e| matches!(e, Event::RouterClosed { .. })).await;
    let closed = closures(&got);
    assert_eq!(closed.len(), 5, "{got:?}");
    assert_eq!(closed[&c2.id.to_string()].0, 1);
    assert_eq!(closed[&p2.id.to_string()], (1, CloseReason::ParentClosed));
    assert_eq!(closed[&t1.id.to_string()], (1, CloseReason::ParentClosed));
    assert_eq!(closed[&t2.id.to_string()], (1, CloseReason::ParentClosed));
    assert_eq!(closed[&router.id.to_string()], (1, CloseReason::Requested));
    assert_eq!(got.last().unwrap().name(), "router_closed");
    assert!(t.server.routers().is_empty());
    assert_eq!(
        t.server.close_transport(t1.id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert!(
        t.direct.endpoint(t1.id).is_none(),
        "the plugin released the transport"
    );
    assert_eq!(t.server.workers()[0].transports, 0);
    assert_eq!(t.server.workers()[0].consumers, 0);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_room_with_reason_shutdown() {
    let t = start(2, vec![]);
    let mut events = t.server.subscribe();
    let a = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let b = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let ta = t
        .server
        .create_transport(a.id, "direct", json!({}))
        .await
        .unwrap();
    t.server.shutdown().await.unwrap();
    let mut closed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::RouterClosed { router, reason } = &e {
            assert_eq!(*reason, CloseReason::Shutdown);
            closed.push(*router);
        }
        if let Event::TransportClosed {
            transport, reason, ..
        } = &e
        {
            assert_eq!(*transport, ta.id);
            assert_eq!(*reason, CloseReason::Shutdown);
        }
    }
    closed.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(closed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_with_their_error_code() {
    let mut config = switchboard::settings::Settings::default();
    config.server.workers = 1;
    config.limits.max_rooms = 1;
    config.limits.max_transports_per_room = 1;
    let t = start_with(config, vec![]);
    let r = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let err = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    t.server
        .create_transport(r.id, "direct", json!({}))
        .await
        .unwrap();
    let err = t
        .server
        .create_transport(r.id, "direct", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    let err = t
        .server
        .create_transport(r.id, "carrier-pigeon", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPlugin);
    // Closing frees the room slot.
    t.server.close_router(r.id).await.unwrap();
    t.server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    t.server.shutdown().await.unwrap();
}

/// A transport plugin with deliberate bugs: `connect` panics, and with `panic_on_send` its
/// sink panics on the router's forwarding path.
struct Faulty;

struct FaultyFactory;

struct FaultyTransport {
    sink: Rc<FaultySink>,
}

struct FaultySink {
    panic_on_send: bool,
}

impl MediaSink for FaultySink {
    fn send_rtp(&self, _packet: &[u8]) {
        if self.panic_on_send {
            panic!("deliberate sink panic");
        }
    }
    fn send_rtcp(&self, _packet: &[u8]) {}
}

impl Transport for FaultyTransport {
    fn connect(&mut self, _params: &Value) -> Result<Value> {
        panic!("deliberate connect panic");
    }
    fn sink(&self) -> Rc<dyn MediaSink> {
        self.sink.clone()
    }
}

impl TransportFactory for FaultyFactory {
    fn create(&mut self, _ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        Ok(Box::new(FaultyTransport {
            sink: Rc::new(FaultySink {
                panic_on_send: options["panic_on_send"].as_bool().unwrap_or(false),
            }),
        }))
    }
}

impl TransportPlugin for Faulty {
    fn kind(&self) -> &'static str {
        "faulty"
    }
    fn start_worker(&self, _worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        Ok(Box::new(FaultyFactory))
    }
}

/// A room with a direct publisher and a direct subscriber; returns their endpoints.
async fn forwarding_room(
    t: &TestServer,
    ssrc: u32,
) -> (
    switchboard_core::RouterId,
    switchboard_transports::DirectEndpoint,
    switchboard_transports::DirectEndpoint,
    switchboard_core::ProducerId,
) {
    let r = t
        .server
        .create_router(RouterOptions {
            worker: Some(WorkerId(0)),
            ..Default::default()
        })
        .await
        .unwrap();
    let pt = t
        .server
        .create_transport(r.id, "direct", json!({}))
        .await
        .unwrap();
    let st = t
        .server
        .create_transport(r.id, "direct", json!({}))
        .await
        .unwrap();
    let p = t
        .server
        .produce(
            pt.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(ssrc),
                paused: false,
            },
        )
        .await
        .unwrap();
    t.server
        .consume(
            st.id,
            ConsumeOptions {
                producer: p.id,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    (
        r.id,
        t.direct.endpoint(pt.id).unwrap(),
        t.direct.endpoint(st.id).unwrap(),
        p.id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_transport_is_closed_as_crashed_and_its_siblings_keep_forwarding() {
    let t = start(1, vec![Arc::new(Faulty)]);
    let mut events = t.server.subscribe();
    let (router, publisher, subscriber, _) = forwarding_room(&t, SSRC).await;
    let faulty = t
        .server
        .create_transport(router, "faulty", json!({}))
        .await
        .unwrap();
    assert_forwards(&publisher, &subscriber, SSRC, 1).await;

    let err = t
        .server
        .connect_transport(faulty.id, json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.message.contains("deliberate connect panic"), "{err}");
    let (e, _) = wait_event(
        &mut events,
        |e| matches!(e, Event::TransportClosed { transport, .. } if *transport == faulty.id),
    )
    .await;
    match e {
        Event::TransportClosed {
            reason: CloseReason::Crashed { message },
            ..
        } => {
            assert!(message.contains("deliberate connect panic"), "{message}")
        }
        other => panic!("expected a crash closure, got {other:?}"),
    }
    assert_forwards(&publisher, &subscriber, SSRC, 2).await;
    assert_eq!(
        t.server
            .connect_transport(faulty.id, json!({}))
            .await
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_router_does_not_stop_another_room_on_the_same_worker() {
    let t = start(1, vec![Arc::new(Faulty)]);
    let mut events = t.server.subscribe();
    let (room_a, pub_a, _sub_a, producer_a) = forwarding_room(&t, SSRC).await;
    let (room_b, pub_b, sub_b, _) = forwarding_room(&t, SSRC + 10).await;
    let bad = t
        .server
        .create_transport(room_a, "faulty", json!({ "panic_on_send": true }))
        .await
        .unwrap();
    t.server
        .consume(
            bad.id,
            ConsumeOptions {
                producer: producer_a,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    assert_forwards(&pub_b, &sub_b, SSRC + 10, 1).await;

    // Forwarding in room A now panics inside the faulty sink.
    pub_a.send_rtp(opus_packet(SSRC, 1, 960, b"boom")).unwrap();
    let got = events_until(
        &mut events,
        |e| matches!(e, Event::RouterClosed { router, .. } if *router == room_a),
    )
    .await;
    let closed = closures(&got);
    match &closed[&room_a.to_string()] {
        (1, CloseReason::Crashed { message }) => {
            assert!(message.contains("deliberate sink panic"), "{message}")
        }
        other => panic!("room A should close once as crashed, got {other:?}"),
    }
    assert_eq!(closed[&bad.id.to_string()], (1, CloseReason::ParentClosed));
    assert!(!closed.contains_key(&room_b.to_string()));

    // Room B, on the same worker thread, keeps forwarding; the worker still makes rooms.
    for seq in 2..10 {
        assert_forwards(&pub_b, &sub_b, SSRC + 10, seq).await;
    }
    let (_, pub_c, sub_c, _) = forwarding_room(&t, SSRC + 20).await;
    assert_forwards(&pub_c, &sub_c, SSRC + 20, 1).await;
    assert_eq!(t.server.routers().len(), 2);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_peer_takes_its_transports_and_tracks_with_it() {
    use switchboard_core::PeerId;
    let mut config = switchboard::settings::Settings::default();
    config.server.workers = 1;
    config.limits.max_peers_per_room = 2;
    let t = start_with(config, vec![]);
    let mut events = t.server.subscribe();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let alice = PeerId::parse("alice").unwrap();
    let bob = PeerId::parse("bob").unwrap();
    t.server.join_peer(room.id, alice.clone()).await.unwrap();
    t.server.join_peer(room.id, bob.clone()).await.unwrap();
    assert_eq!(
        t.server
            .join_peer(room.id, bob.clone())
            .await
            .unwrap_err()
            .code,
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        t.server
            .join_peer(room.id, PeerId::parse("carol").unwrap())
            .await
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    let err = t
        .server
        .create_peer_transport(
            room.id,
            Some(PeerId::parse("dave").unwrap()),
            "direct",
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);

    let send = t
        .server
        .create_peer_transport(room.id, Some(alice.clone()), "direct", json!({}))
        .await
        .unwrap();
    assert_eq!(send.peer, Some(alice.clone()));
    let recv = t
        .server
        .create_peer_transport(room.id, Some(bob.clone()), "direct", json!({}))
        .await
        .unwrap();
    let p = t
        .server
        .produce(
            send.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(SSRC),
                paused: false,
            },
        )
        .await
        .unwrap();
    let c = t
        .server
        .consume(
            recv.id,
            ConsumeOptions {
                producer: p.id,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();

    t.server.leave_peer(room.id, alice.clone()).await.unwrap();
    let got = events_until(&mut events, |e| matches!(e, Event::PeerLeft { .. })).await;
    let closed = closures(&got);
    assert_eq!(closed[&c.id.to_string()], (1, CloseReason::ProducerClosed));
    assert_eq!(closed[&p.id.to_string()], (1, CloseReason::ParentClosed));
    assert_eq!(closed[&send.id.to_string()], (1, CloseReason::ParentClosed));
    assert!(
        !closed.contains_key(&recv.id.to_string()),
        "bob's transport stays"
    );
    match got.last().unwrap() {
        Event::PeerLeft { peer, reason, .. } => {
            assert_eq!(*peer, alice);
            assert_eq!(*reason, CloseReason::Requested);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.server.leave_peer(room.id, alice).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let dump = switchboard_tests::as_json(t.server.dump_router(room.id).await).unwrap();
    assert_eq!(
        dump["peers"],
        json!([{ "id": "bob", "send": null, "recv": null }])
    );
    t.server.shutdown().await.unwrap();
}
