//! The server's own WebRTC connections (ICE-lite, DTLS-SRTP, its own SDP; no
//! general-purpose peer connection) carry the room from and to a real WebRTC stack
//! (webrtc-rs here; the browsers in `interop`, `loss_drill` and `webrtc_lifecycle`).

use switchboard_core::event::Event;
use switchboard_tests::*;
use webrtc::media_stream::track_local::TrackLocal;

// Above webrtc-rs clients' 2 s keepalive interval, with room for a loaded machine.
const CONSENT_TIMEOUT_MS: u64 = 5_000;

fn start() -> TestServer {
    let mut config = webrtc_config(1);
    config.webrtc.consent_timeout_ms = CONSENT_TIMEOUT_MS;
    start_webrtc_with(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_connection_delivers_the_rooms_video_and_audio() {
    let t = start();
    let room = t.room().await;
    let carol = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let (mut bob, bob_transport) = webrtc_client::subscribe(&t.server, room, "bob").await;

    webrtc_client::receives_video(&carol, &mut bob, b"native-1").await;

    let stats = switchboard_tests::as_json(t.server.transport_stats(bob_transport).await).unwrap();
    assert_eq!(stats["plugin"]["direction"], "recv", "{stats}");
    assert_eq!(stats["plugin"]["state"], "connected", "{stats}");
    assert!(
        stats["plugin"]["rtp_packets_sent"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    assert_eq!(stats["plugin"]["srtp_profile"], "AeadAes128Gcm", "{stats}");

    // The publishing leg answered carol's offer and decrypts her media.
    let stats =
        switchboard_tests::as_json(t.server.transport_stats(carol.transport).await).unwrap();
    assert_eq!(stats["plugin"]["direction"], "send", "{stats}");
    assert_eq!(stats["plugin"]["producers"], 2, "{stats}");
    assert!(
        stats["plugin"]["rtp_packets_received"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{stats}"
    );
    t.server.shutdown().await.unwrap();
}

/// What the server's feedback to `publisher` counts so far, by kind.
async fn feedback(t: &TestServer, publisher: switchboard_core::TransportId, kind: &str) -> u64 {
    let stats = switchboard_tests::as_json(t.server.transport_stats(publisher).await).unwrap();
    stats["plugin"]["feedback_sent"][kind].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_connection_nacks_gaps_and_reports_to_its_publisher() {
    let t = start();
    let room = t.room().await;
    let carol = webrtc_client::publish_vp8_and_opus(&t.server, room).await;

    // A gap in carol's video: the server asks her for the missing packet, and reports on
    // what it receives.
    for seq in (100..120u16).filter(|s| *s != 110) {
        carol
            .video
            .write_rtp(client_rtp(0x1000, 96, seq, vec![0x10, 0, seq as u8]))
            .await
            .unwrap();
    }
    eventually(|| async { feedback(&t, carol.transport, "nack").await > 0 }).await;
    eventually(|| async { feedback(&t, carol.transport, "receiver_report").await > 0 }).await;
    let stats =
        switchboard_tests::as_json(t.server.transport_stats(carol.transport).await).unwrap();
    assert_eq!(stats["plugin"]["rtp_packets_received"], 19, "{stats}");
    assert_eq!(stats["plugin"]["srtp_failures"], 0, "{stats}");
    assert_eq!(stats["plugin"]["ssrc_limit_drops"], 0, "{stats}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_subscriber_is_closed_with_ice_timeout_and_loses_its_consumers() {
    let t = start();
    let room = t.room().await;
    let mut events = t.server.subscribe_room(room);
    let carol = webrtc_client::publish_vp8_and_opus(&t.server, room).await;

    // Bob receives through a relay that will disappear, as his network would.
    let mut bob = webrtc_client::subscribe_through_relay(&t.server, room, "bob").await;
    webrtc_client::receives_video(&carol, &mut bob.client, b"before").await;

    drop(bob.relay);
    let bob_transport = bob.transport;
    let before = wait_ice_timeout(&mut events, bob_transport).await;
    // Reported disconnected first (a third of the consent timeout in), closed at its end.
    assert!(
        before.iter().any(|e| matches!(
            e,
            Event::TransportStateChanged {
                transport,
                state: switchboard_core::transport::TransportState::Disconnected,
                ..
            } if *transport == bob_transport
        )),
        "no disconnected before the close: {before:?}"
    );
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let on_it = dump["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["transport"] == bob_transport.to_string())
        .count();
    assert_eq!(
        on_it, 0,
        "no consumer left on the closed connection: {dump}"
    );
    t.server.shutdown().await.unwrap();
}
