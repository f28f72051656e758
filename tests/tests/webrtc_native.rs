//! The native engine for receive connections (`webrtc.engine = "native"`): the server's own
//! ICE-lite, DTLS-SRTP and SDP carry the room to a real WebRTC stack (webrtc-rs here, and
//! Chromium), with no peer connection on the server's side of the receive leg.

use std::sync::Arc;
use switchboard_core::config::Config;
use switchboard_core::transport::TransportPlugin;
use switchboard_tests::*;
use switchboard_transports::{WebRtcPlugin, WebRtcSettings};

fn start() -> TestServer {
    let mut config = Config::default();
    config.server.workers = 1;
    config.webrtc.engine = "native".into();
    let settings = WebRtcSettings {
        native_receive: true,
        ..Default::default()
    };
    start_with(
        config,
        vec![WebRtcPlugin::new(settings) as Arc<dyn TransportPlugin>],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_receive_connection_delivers_the_rooms_video_and_audio() {
    let t = start();
    let room = t.room().await;
    let carol = webrtc_client::publish_vp8_and_opus(&t.server, room).await;
    let (mut bob, bob_transport) = webrtc_client::subscribe(&t.server, room, "bob").await;

    webrtc_client::receives_video(&carol, &mut bob, b"native-1").await;

    let stats = t.server.transport_stats(bob_transport).await.unwrap();
    assert_eq!(stats["plugin"]["engine"], "native", "{stats}");
    assert_eq!(stats["plugin"]["state"], "connected", "{stats}");
    assert!(
        stats["plugin"]["rtp_packets_sent"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    assert_eq!(stats["plugin"]["srtp_profile"], "AeadAes128Gcm", "{stats}");
    t.server.shutdown().await.unwrap();
}
