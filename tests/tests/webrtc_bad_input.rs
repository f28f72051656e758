//! Bad input on the WebRTC transport is rejected and counted, and a running call goes on.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use switchboard_actors::{ConsumeOptions, RouterOptions};
use switchboard_core::ErrorCode;
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;
use webrtc::media_stream::track_local::TrackLocal;

/// The server's media address from a transport's candidate line.
fn media_addr(local: &Value) -> SocketAddr {
    let candidate = local["candidates"][0].as_str().unwrap();
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    format!("{}:{}", fields[4], fields[5]).parse().unwrap()
}

/// A STUN binding request with this USERNAME and a MESSAGE-INTEGRITY that is not valid.
fn stun_request(username: &str) -> Vec<u8> {
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0xAB; 20]);
    let mut msg = vec![0x00, 0x01];
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    msg.extend_from_slice(&[9; 12]);
    msg.extend_from_slice(&attrs);
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_stray_udp_and_forged_stun_do_not_disturb_a_call() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(room.id, "webrtc", json!({}))
        .await
        .unwrap();
    let mut client = Client::new(96, 111).await;
    let video = client
        .add_track(RtpCodecKind::Video, vp8(), 0x0B0B_0001, "bob")
        .await;
    let offer = client.offer().await;

    // Garbage SDP is refused with the line it fails on, and changes nothing.
    let err = t
        .server
        .transport_request(
            pub_t.id,
            "offer",
            json!({ "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video x UDP/TLS/RTP/SAVPF 96\r\n" }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSdp);
    assert!(err.message.contains("line 3"), "{err}");
    let err = t
        .server
        .transport_request(pub_t.id, "offer", json!({ "sdp": "\u{0}\u{ff}binary" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidSdp);

    // The real offer still works on the same transport.
    let result = t
        .server
        .transport_request(pub_t.id, "offer", json!({ "sdp": offer }))
        .await
        .unwrap();
    let answer = result.response["sdp"].as_str().unwrap().to_owned();
    client.accept_answer(&answer).await;
    client.connected().await;
    let producer = result.producers[0].0.id;
    let sub_t = t
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let sub = t.direct.endpoint(sub_t.id).unwrap();
    t.server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: subscriber_caps(100, 4, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let mut seq = 1u16;
    loop {
        video
            .write_rtp(client_rtp(0x0B0B_0001, 96, seq, vp8_payload(seq, true)))
            .await
            .unwrap();
        seq += 1;
        if tokio::time::timeout(Duration::from_millis(100), next_rtp(&sub))
            .await
            .is_ok()
        {
            break;
        }
        assert!(seq < 50, "the call never started");
    }

    // Stray traffic at the media port from other addresses.
    let server = media_addr(&pub_t.local);
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..50u8 {
        stranger.send_to(&[i; 64], server).unwrap(); // random bytes
    }
    stranger
        .send_to(&[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], server)
        .unwrap(); // DTLS
    stranger.send_to(&stun_request("nobody:x"), server).unwrap(); // unknown ufrag
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim();
    stranger
        .send_to(&stun_request(&format!("{ufrag}:evil")), server)
        .unwrap(); // right ufrag, forged integrity

    let stats = || async {
        switchboard_tests::as_json(t.server.transport_stats(pub_t.id).await).unwrap()["plugin"]
            .clone()
    };
    eventually(|| async {
        let s = stats().await;
        s["socket"]["unmatched_datagrams"].as_u64().unwrap() >= 51
            && s["socket"]["unknown_ufrag"].as_u64().unwrap() >= 1
            && s["socket"]["stun_auth_failures"].as_u64().unwrap() >= 1
    })
    .await;
    assert_eq!(stats().await["state"], "connected");

    // The call goes on, every packet intact.
    for k in 0..20u16 {
        let s = seq + k;
        video
            .write_rtp(client_rtp(0x0B0B_0001, 96, s, vp8_payload(s, false)))
            .await
            .unwrap();
        let p = next_rtp(&sub).await;
        assert_eq!(p.payload.as_ref(), vp8_payload(s, false).as_slice());
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_codec_is_rejected_in_the_answer_not_accepted_and_dropped() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(room.id, "webrtc", json!({}))
        .await
        .unwrap();
    let mut client = Client::new(96, 111).await;
    let _video = client
        .add_track(RtpCodecKind::Video, vp8(), 0x0C0C_0001, "carol")
        .await;
    let _audio = client
        .add_track(RtpCodecKind::Audio, opus(), 0x0C0C_0002, "carol")
        .await;
    // The same offer, but the video codec renamed to one the server cannot route.
    let offer = client.offer().await.replace("VP8/90000", "XVID/90000");
    let result = t
        .server
        .transport_request(pub_t.id, "offer", json!({ "sdp": offer }))
        .await
        .unwrap();
    let answer = result.response["sdp"].as_str().unwrap();
    let video_line = answer.lines().find(|l| l.starts_with("m=video")).unwrap();
    assert!(
        video_line.starts_with("m=video 0 "),
        "rejected with port 0: {video_line}"
    );
    let kinds: Vec<MediaKind> = result.producers.iter().map(|(p, _)| p.kind).collect();
    assert_eq!(
        kinds,
        vec![MediaKind::Audio],
        "only the audio m-line became a producer"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_of_thousands_of_m_lines_is_refused_before_it_is_parsed() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let peer = switchboard_core::PeerId::parse("mallory").unwrap();
    t.server.join_peer(room, peer.clone()).await.unwrap();
    let mut client = Client::new(96, 111).await;
    client
        .add_track(RtpCodecKind::Video, vp8(), 0x0F00_0000, "mallory")
        .await;
    let offer = client.offer().await;
    let video = offer.find("m=video").unwrap();
    let section = &offer[video..];
    let huge = format!("{}{}", &offer[..video], section.repeat(5_000));
    let err = t
        .server
        .publish(room, peer.clone(), huge)
        .await
        .expect_err("5,000 m-lines");
    assert_eq!(err.code, ErrorCode::LimitExceeded, "{err}");
    assert!(err.message.contains("limits.max_sdp"), "{err}");
    // Nothing was applied: the same peer's real offer goes through.
    let published = t.server.publish(room, peer, offer).await.unwrap();
    assert_eq!(published.producers.len(), 1);
    t.server.shutdown().await.unwrap();
}
