//! The WebRTC transport with real WebRTC clients (webrtc-rs's async API) on loopback.

use bytes::Bytes;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::time::Duration;
use switchboard_actors::{ConsumeOptions, RouterOptions};
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities};
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

/// The router's capabilities as a WebRTC subscriber receives them: retransmissions come on
/// the media SSRC, so no RTX.
async fn webrtc_receive_caps(t: &TestServer, room: switchboard_core::RouterId) -> RtpCapabilities {
    let mut caps = t.server.router_capabilities(room).await.unwrap();
    caps.codecs
        .retain(|c| !c.mime_type.eq_ignore_ascii_case("video/rtx"));
    caps
}

fn rtp(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: Vec<u8>) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: pt,
            ssrc,
            sequence_number: seq,
            timestamp: ts,
            marker: true,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_publisher_reaches_a_direct_subscriber_byte_for_byte() {
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
    assert_eq!(pub_t.local["ice"]["lite"], true);

    let mut client = Client::new(96, 111).await;
    let video = client
        .add_track(RtpCodecKind::Video, vp8(), 0x0101_0101, "alice")
        .await;
    let _audio = client
        .add_track(RtpCodecKind::Audio, opus(), 0x0202_0202, "alice")
        .await;
    let offer = client.offer().await;
    let result = t
        .server
        .transport_request(pub_t.id, "offer", json!({ "sdp": offer }))
        .await
        .unwrap();
    assert_eq!(result.producers.len(), 2, "one producer per sending m-line");
    let kinds: Vec<MediaKind> = result.producers.iter().map(|(p, _)| p.kind).collect();
    assert!(kinds.contains(&MediaKind::Video) && kinds.contains(&MediaKind::Audio));
    let (video_producer, app) = result
        .producers
        .iter()
        .find(|(p, _)| p.kind == MediaKind::Video)
        .unwrap();
    assert_eq!(app["stream_id"], "alice", "msid is kept");
    let answer = result.response["sdp"].as_str().unwrap().to_owned();
    assert!(answer.contains("a=ice-lite"));
    client.accept_answer(&answer).await;
    client.connected().await;

    let sub_t = t
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let sub = t.direct.endpoint(sub_t.id).unwrap();
    let consumer = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer: video_producer.id,
                rtp_capabilities: subscriber_caps(100, 4, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let ssrc = consumer.rtp_parameters.encodings[0].ssrc.unwrap();

    // Keyframes until the first one arrives (the DTLS/SRTP context may still be settling on
    // the server for the first few), then a run of packets that must all arrive intact.
    let mut seq = 1u16;
    let first = loop {
        video
            .write_rtp(rtp(
                0x0101_0101,
                96,
                seq,
                u32::from(seq) * 3000,
                vp8_payload(seq, true),
            ))
            .await
            .unwrap();
        seq += 1;
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(100), next_rtp(&sub)).await {
            break p;
        }
        if seq >= 50 {
            let router = switchboard_tests::as_json(t.server.router_stats(room.id).await).unwrap();
            let transport =
                switchboard_tests::as_json(t.server.transport_stats(pub_t.id).await).unwrap();
            let producer =
                switchboard_tests::as_json(t.server.producer_stats(video_producer.id).await)
                    .unwrap();
            panic!("no media reached the subscriber: {router} {transport} {producer}");
        }
    };
    assert_eq!(first.header.ssrc, ssrc);
    assert_eq!(first.header.payload_type, 100);
    for k in 0..30u16 {
        let s = seq + k;
        video
            .write_rtp(rtp(
                0x0101_0101,
                96,
                s,
                u32::from(s) * 3000,
                vp8_payload(s, false),
            ))
            .await
            .unwrap();
        let p = next_rtp(&sub).await;
        assert_eq!(p.payload.as_ref(), vp8_payload(s, false).as_slice());
        assert_eq!(p.header.ssrc, ssrc);
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_publisher_reaches_a_webrtc_subscriber_through_a_server_offer() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let publisher = t.direct.endpoint(pub_t.id).unwrap();
    let producer = t
        .server
        .produce(
            pub_t.id,
            switchboard_actors::ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(0x0303_0303),
                paused: false,
            },
        )
        .await
        .unwrap();
    let sub_t = t
        .server
        .create_transport(room.id, "webrtc", json!({}))
        .await
        .unwrap();
    let caps = webrtc_receive_caps(&t, room.id).await;
    let consumer = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer: producer.id,
                rtp_capabilities: caps,
                paused: false,
            },
        )
        .await
        .unwrap();
    let offer = t
        .server
        .transport_request(sub_t.id, "create_offer", json!({ "force": true }))
        .await
        .unwrap();
    let offer = offer.response["sdp"].as_str().unwrap().to_owned();
    assert!(offer.contains("m=audio"), "{offer}");
    let mut client = Client::new(96, 111).await;
    let answer = client.answer(&offer).await;
    t.server
        .transport_request(sub_t.id, "answer", json!({ "sdp": answer }))
        .await
        .unwrap();
    client.connected().await;

    let ssrc = consumer.rtp_parameters.encodings[0].ssrc.unwrap();
    let mut seq = 1u16;
    let track = loop {
        publisher
            .send_rtp(opus_packet(
                0x0303_0303,
                seq,
                u32::from(seq) * 960,
                b"first",
            ))
            .unwrap();
        seq += 1;
        if let Ok(track) =
            tokio::time::timeout(Duration::from_millis(100), client.next_track()).await
        {
            break track;
        }
        assert!(seq < 50, "no track reached the subscriber");
    };
    assert_eq!(track.ssrcs().await, vec![ssrc]);
    for k in 0..20u16 {
        let payload = format!("opus-{k}");
        publisher
            .send_rtp(opus_packet(0x0303_0303, seq + k, 0, payload.as_bytes()))
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        match tokio::time::timeout(DEADLINE, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => {
                if p.payload.starts_with(b"opus-") {
                    got.push(String::from_utf8_lossy(&p.payload).into_owned());
                }
            }
            Ok(Some(_)) => {}
            other => panic!("track ended or timed out: {other:?}"),
        }
    }
    let expected: Vec<String> = (0..20).map(|k| format!("opus-{k}")).collect();
    assert_eq!(got, expected);
    t.server.shutdown().await.unwrap();
}
