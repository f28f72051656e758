//! The crash drill: panics injected (cargo feature `fault-injection`, on for this crate's
//! tests only) into the three places a bug can hit: a worker socket's receive path, a router's
//! forwarding path, and a Worker actor. Each time exactly the affected objects close with
//! reason `crashed` (or the worker is restarted), everything else keeps forwarding, and the
//! process carries on. (`lifecycle.rs` adds a plugin whose own code panics.)

use switchboard_core::event::{CloseReason, Event};
use switchboard_core::{PeerId, WorkerId, fault};
use switchboard_tests::relay::Relay;
use switchboard_tests::webrtc_client::{Client, opus};
use switchboard_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_connections_receive_path_closes_it_as_crashed_and_the_worker_carries_on() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let mut events = t.server.subscribe_room(room);

    // Alice publishes through a relay, which can speak for her address.
    let alice = PeerId::parse("alice").unwrap();
    t.server.join_peer(room, alice.clone()).await.unwrap();
    let mut alice_client = Client::new(96, 111).await;
    alice_client
        .add_track(
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
            opus(),
            0x0C00_0001,
            "alice",
        )
        .await;
    let offer = alice_client.offer().await;
    let published = t.server.publish(room, alice, offer).await.unwrap();
    let server_addr = server_candidate(&published.sdp);
    let relay = Relay::start(server_addr).await;
    alice_client
        .accept_answer(&relay.rewrite_sdp(&published.sdp, server_addr))
        .await;
    alice_client.connected().await;

    // Carol publishes and Bob receives, on the same worker socket.
    let carol = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let (mut bob_client, bob_transport) = webrtc_client::subscribe(&t.server, room, "bob").await;

    // A datagram from Alice's address that makes her connection's handling panic.
    relay.send_to_server(fault::RECEIVE_PANIC).await;
    let (closed, _) = wait_event(&mut events, |e| {
        matches!(e, Event::TransportClosed { transport, .. } if *transport == published.transport)
    })
    .await;
    match closed {
        Event::TransportClosed {
            reason: CloseReason::Crashed { message },
            ..
        } => assert!(message.contains("injected fault"), "{message}"),
        other => panic!("Alice's connection should close as crashed: {other:?}"),
    }

    // Bob still receives Carol, through the same socket and receive task.
    webrtc_client::receives_video(&carol, &mut bob_client, b"ok").await;
    let stats = switchboard_tests::as_json(t.server.transport_stats(bob_transport).await).unwrap();
    assert_eq!(stats["plugin"]["socket"]["panics"], 1, "{stats}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_a_routers_forwarding_path_closes_that_room_alone() {
    let t = start(1, vec![]);
    let mut events = t.server.subscribe();
    let room_a = t.room().await;
    let room_b = t.room().await;
    let a = opus_pair(&t.server, &t.direct, room_a, 0x0D00_0001).await;
    let b = opus_pair(&t.server, &t.direct, room_b, 0x0D00_0002).await;
    assert_forwards(&a.publisher, &a.subscriber, 0x0D00_0001, 1).await;
    assert_forwards(&b.publisher, &b.subscriber, 0x0D00_0002, 1).await;

    let mut payload = b"boom:".to_vec();
    payload.extend_from_slice(fault::FORWARD_PANIC);
    a.publisher
        .send_rtp(opus_packet(0x0D00_0001, 2, 1920, &payload))
        .unwrap();
    let (closed, _) = wait_event(
        &mut events,
        |e| matches!(e, Event::RouterClosed { router, .. } if *router == room_a),
    )
    .await;
    match closed {
        Event::RouterClosed {
            reason: CloseReason::Crashed { message },
            ..
        } => assert!(message.contains("injected fault"), "{message}"),
        other => panic!("room A should close as crashed: {other:?}"),
    }
    // Room B, on the same worker thread, carries on; the worker still makes rooms.
    for seq in 2..6 {
        assert_forwards(&b.publisher, &b.subscriber, 0x0D00_0002, seq).await;
    }
    let room_c = t.room().await;
    let c = opus_pair(&t.server, &t.direct, room_c, 0x0D00_0003).await;
    assert_forwards(&c.publisher, &c.subscriber, 0x0D00_0003, 1).await;
    assert_eq!(t.server.routers().len(), 2);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_actor_is_restarted_and_its_rooms_keep_forwarding() {
    let t = start(1, vec![]);
    let mut events = t.server.subscribe();
    let room = t.room().await;
    let pair = opus_pair(&t.server, &t.direct, room, 0x0E00_0001).await;
    assert_forwards(&pair.publisher, &pair.subscriber, 0x0E00_0001, 1).await;

    t.server.inject_worker_panic(WorkerId(0)).await.unwrap();
    let (died, _) = wait_event(&mut events, |e| matches!(e, Event::WorkerDied { .. })).await;
    match died {
        Event::WorkerDied { worker, message } => {
            assert_eq!(worker, WorkerId(0));
            assert!(message.contains("injected fault"), "{message}");
        }
        _ => unreachable!(),
    }
    let (restarted, skipped) =
        wait_event(&mut events, |e| matches!(e, Event::WorkerRestarted { .. })).await;
    assert_eq!(
        restarted,
        Event::WorkerRestarted {
            worker: WorkerId(0)
        }
    );
    assert!(
        !skipped.iter().any(|e| matches!(
            e,
            Event::RouterClosed { .. } | Event::TransportClosed { .. }
        )),
        "nothing closed with the worker actor: {skipped:?}"
    );

    // The room on that worker thread keeps forwarding, and the restarted worker makes rooms.
    for seq in 2..6 {
        assert_forwards(&pair.publisher, &pair.subscriber, 0x0E00_0001, seq).await;
    }
    let other = t.room().await;
    let second = opus_pair(&t.server, &t.direct, other, 0x0E00_0002).await;
    assert_forwards(&second.publisher, &second.subscriber, 0x0E00_0002, 1).await;
    assert_eq!(t.server.routers().len(), 2);
    t.server.shutdown().await.unwrap();
}
