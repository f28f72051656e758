//! A room's whole life driven over the socket, with media flowing through direct
//! transports and every event arriving in order.

use crate::support::*;
use serde_json::{Value, json};
use switchboard::client::{ClientError, Notification};
use switchboard_actors::RouterOptions;
use switchboard_core::ErrorCode;
use switchboard_core::event::{CloseReason, Event};

const SSRC: u32 = 0x0A0D_1001;

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lives_and_dies_over_rpc() {
    let app = start(|_| {}).await;
    let client = client(&app).await;
    let mut notes = client.notifications().expect("notifications");
    let subscribed = client.subscribe(None).await.unwrap();
    assert!(subscribed.all);

    let info = client.server_info().await.unwrap();
    assert_eq!(info.workers, 1);
    assert!(info.transports.contains(&"direct".to_owned()));
    assert!(
        info.methods
            .contains(&"consumer.request_keyframe".to_owned())
    );
    assert!(!info.rpc.auth_required);

    // Room, peers, transports.
    let room = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    assert_eq!(client.routers().await.unwrap().len(), 1);
    let caps = client.router_capabilities(room.id).await.unwrap();
    assert!(caps.codecs.iter().any(|c| c.mime_type == "audio/opus"));
    client.join_peer(room.id, "alice").await.unwrap();
    client.join_peer(room.id, "bob").await.unwrap();
    let t_alice = client
        .create_transport(room.id, "direct", Some("alice"), json!({}))
        .await
        .unwrap();
    let t_bob = client
        .create_transport(room.id, "direct", Some("bob"), json!({}))
        .await
        .unwrap();
    assert_eq!(t_alice.peer.as_ref().map(|p| p.0.as_str()), Some("alice"));
    client
        .connect_transport(t_alice.id, json!({}))
        .await
        .unwrap();

    // Alice produces, Bob consumes.
    let producer = client
        .call_value(
            "producer.create",
            opus_producer(&t_alice.id.to_string(), SSRC),
        )
        .await
        .unwrap();
    let consumer = client
        .call_value(
            "consumer.create",
            json!({
                "transport": t_bob.id,
                "producer": producer["id"],
                "rtp_capabilities": opus_caps(),
            }),
        )
        .await
        .unwrap();
    let producer_id = id(&producer).parse().unwrap();
    let consumer_id = id(&consumer).parse().unwrap();
    assert_eq!(consumer["rtp_parameters"]["codecs"][0]["payload_type"], 100);
    let consumer_ssrc = consumer["rtp_parameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .expect("consumer ssrc");

    // Media goes in on Alice's transport and comes out on Bob's, rewritten for Bob.
    let input = app.transports.direct.endpoint(t_alice.id).unwrap();
    let output = app.transports.direct.endpoint(t_bob.id).unwrap();
    input.send_rtp(opus_packet(SSRC, 1, b"hello bob")).unwrap();
    let packet = next_rtp(&output).await;
    assert_eq!(packet.payload.as_ref(), b"hello bob");
    assert_eq!(packet.header.payload_type, 100);
    assert_eq!(u64::from(packet.header.ssrc), consumer_ssrc);

    // Paused, nothing is forwarded; resumed, the next packet is.
    client.pause_consumer(consumer_id).await.unwrap();
    input.send_rtp(opus_packet(SSRC, 2, b"dropped")).unwrap();
    client.resume_consumer(consumer_id).await.unwrap();
    client.pause_producer(producer_id).await.unwrap();
    client.resume_producer(producer_id).await.unwrap();
    input
        .send_rtp(opus_packet(SSRC, 3, b"after resume"))
        .unwrap();
    assert_eq!(next_rtp(&output).await.payload.as_ref(), b"after resume");

    client.request_producer_keyframe(producer_id).await.unwrap();
    client.request_consumer_keyframe(consumer_id).await.unwrap();

    // Stats and dumps of every object.
    let stats = client.router_stats(room.id).await.unwrap();
    assert_eq!(stats["peers"], 2);
    assert_eq!(stats["consumers"], 1);
    assert_eq!(
        client.dump_producer(producer_id).await.unwrap()["id"],
        producer["id"]
    );
    assert_eq!(
        client.dump_consumer(consumer_id).await.unwrap()["id"],
        consumer["id"]
    );
    assert!(
        client
            .producer_stats(producer_id)
            .await
            .unwrap()
            .is_object()
    );
    assert!(
        client
            .consumer_stats(consumer_id)
            .await
            .unwrap()
            .is_object()
    );
    assert!(client.dump_transport(t_bob.id).await.unwrap().is_object());
    let t_stats = client.transport_stats(t_alice.id).await.unwrap();
    assert!(t_stats.is_object(), "{t_stats}");
    let dump = client.dump_router(room.id).await.unwrap();
    let peers: Vec<&Value> = dump["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(peers, [&json!("alice"), &json!("bob")]);
    assert_eq!(dump["producers"][0]["id"], producer["id"]);
    assert_eq!(dump["consumers"][0]["id"], consumer["id"]);
    let workers = client.workers().await.unwrap();
    assert_eq!(workers[0].routers, 1);
    assert!(workers[0].packets_out >= 2, "{workers:?}");

    client.close_router(room.id).await.unwrap();
    assert!(client.routers().await.unwrap().is_empty());
    let gone = client.transport_stats(t_alice.id).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::NotFound), "{gone}");

    // Every event, in the order things happened; closures children first.
    let (_, before) = wait_for(&mut notes, |n| {
        matches!(n, Notification::Event(Event::RouterClosed { .. }))
    })
    .await;
    let before: Vec<&Notification> = before
        .iter()
        .filter(|n| !matches!(n, Notification::Event(Event::TransportStateChanged { .. })))
        .collect();
    let names: Vec<&str> = before
        .iter()
        .map(|n| match n {
            Notification::Event(e) => e.name(),
            other => panic!("unexpected notification {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "router_created",
            "peer_joined",
            "peer_joined",
            "transport_created",
            "transport_created",
            "producer_created",
            "consumer_created",
            "consumer_paused",
            "consumer_paused",
            "producer_paused",
            "producer_paused",
            "consumer_closed",
            "producer_closed",
            "transport_closed",
            "peer_left",
            "transport_closed",
            "peer_left",
        ]
    );
    let Notification::Event(Event::ConsumerPaused { paused, .. }) = before[7] else {
        unreachable!()
    };
    assert!(*paused);
    let Notification::Event(Event::PeerLeft { peer, reason, .. }) = before[14] else {
        unreachable!()
    };
    assert_eq!(
        (peer.0.as_str(), reason),
        ("alice", &CloseReason::ParentClosed)
    );

    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_room_subscriptions_see_only_their_room_and_end_with_it() {
    let app = start(|_| {}).await;
    let client = client(&app).await;
    let mut notes = client.notifications().unwrap();
    let a = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let b = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let subs = client.subscribe(Some(a.id)).await.unwrap();
    assert!(!subs.all);
    assert_eq!(subs.routers.iter().copied().collect::<Vec<_>>(), [a.id]);

    client.join_peer(b.id, "in-b").await.unwrap();
    client.join_peer(a.id, "in-a").await.unwrap();
    let (first, skipped) = wait_for(&mut notes, |_| true).await;
    assert!(skipped.is_empty());
    assert!(
        matches!(&first, Notification::Event(Event::PeerJoined { router, peer }) if *router == a.id && peer.0 == "in-a"),
        "{first:?}"
    );

    // The room's closure is its last event: the subscription then ends by itself.
    client.close_router(a.id).await.unwrap();
    wait_for(
        &mut notes,
        |n| matches!(n, Notification::Event(Event::RouterClosed { router, .. }) if *router == a.id),
    )
    .await;
    let subs = client.unsubscribe(None).await.unwrap();
    assert!(subs.routers.is_empty() && !subs.all);

    // Subscribing to a room that does not exist is an error, not a silent no-op.
    let err = client.subscribe(Some(a.id)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_limits_report_their_codes() {
    let app = start(|c| {
        c.limits.max_rooms = 1;
        c.limits.max_peers_per_room = 1;
    })
    .await;
    let client = client(&app).await;
    let room = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let code = |e: ClientError| e.code();
    assert_eq!(
        code(
            client
                .create_router(RouterOptions::default())
                .await
                .unwrap_err()
        ),
        Some(ErrorCode::LimitExceeded)
    );
    client.join_peer(room.id, "p1").await.unwrap();
    assert_eq!(
        code(client.join_peer(room.id, "p1").await.unwrap_err()),
        Some(ErrorCode::AlreadyExists)
    );
    assert_eq!(
        code(client.join_peer(room.id, "p2").await.unwrap_err()),
        Some(ErrorCode::LimitExceeded)
    );
    let bad_peer = client.join_peer(room.id, "a\nb").await.unwrap_err();
    assert_eq!(code(bad_peer), Some(ErrorCode::InvalidParams));
    assert_eq!(
        code(
            client
                .create_transport(room.id, "pigeon", None, json!({}))
                .await
                .unwrap_err()
        ),
        Some(ErrorCode::UnknownPlugin)
    );
    assert_eq!(
        code(
            client
                .create_transport(room.id, "direct", Some("nobody"), json!({}))
                .await
                .unwrap_err()
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(
            client
                .attach_middleware(room.id, "nope", json!({}))
                .await
                .unwrap_err()
        ),
        Some(ErrorCode::UnknownPlugin)
    );
    assert_eq!(
        code(client.detach_middleware(room.id, "nope").await.unwrap_err()),
        Some(ErrorCode::NotFound)
    );
    client.leave_peer(room.id, "p1").await.unwrap();
    assert_eq!(
        code(client.leave_peer(room.id, "p1").await.unwrap_err()),
        Some(ErrorCode::NotFound)
    );
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_subscribers_then_closes_connections_and_listeners() {
    let app = start(|_| {}).await;
    let addr = addr(&app);
    let client = client(&app).await;
    let mut notes = client.notifications().unwrap();
    client.subscribe(None).await.unwrap();
    let room = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    stop(app).await;

    // The closure caused by the shutdown reaches the backend before its connection closes.
    let (closed, _) = wait_for(&mut notes, |n| {
        matches!(n, Notification::Event(Event::RouterClosed { .. }))
    })
    .await;
    assert_eq!(
        closed,
        Notification::Event(Event::RouterClosed {
            router: room.id,
            reason: CloseReason::Shutdown,
        })
    );
    let end = tokio::time::timeout(DEADLINE, notes.recv()).await.unwrap();
    assert_eq!(end, None, "the connection closed after the last event");
    let err = client.routers().await.unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err}");
    assert!(
        switchboard::client::Client::connect(&addr, None)
            .await
            .is_err()
    );
}
