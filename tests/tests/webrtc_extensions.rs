//! Each WebRTC subscriber's leg carries exactly the header extensions it negotiated, whatever
//! the publisher sends: the case of every mixed-stack call (aiortc negotiates no
//! transport-cc, Firefox no video-orientation, a webrtcbin answer no extension at all).
//!
//! The publisher is a `direct` transport, so the test controls the extensions on every
//! packet; the subscriber is a webrtc-rs client whose answer loses `a=extmap` lines on the way
//! to the server, as a stack that supports fewer extensions would answer.

use bytes::Bytes;
use rtc::rtp::header::Header;
use rtc_shared::marshal::Marshal;
use serde_json::json;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::rtp_parameters::{
    MediaKind, RtpHeaderExtensionParameters, RtpParameters, extension_uri,
};
use switchboard_tests::webrtc_client::Client;
use switchboard_tests::*;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// The answer with every `a=extmap` line dropped except those whose URI is in `keep`.
fn keep_extmaps(sdp: &str, keep: &[&str]) -> String {
    sdp.split_inclusive('\n')
        .filter(|line| !line.starts_with("a=extmap:") || keep.iter().any(|uri| line.contains(uri)))
        .collect()
}

/// A packet as a browser sends it: mid plus transport-cc (5 bytes of extensions, so 3 of
/// padding), and anything else in `extra`.
fn packet_with_extensions(
    ssrc: u32,
    pt: u8,
    seq: u16,
    payload: &[u8],
    extra: &[(u8, &'static [u8])],
) -> Bytes {
    let mut header = Header {
        version: 2,
        payload_type: pt,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc,
        marker: true,
        ..Header::default()
    };
    header
        .set_extension(4, Bytes::from_static(b"0"))
        .expect("mid");
    header
        .set_extension(3, Bytes::copy_from_slice(&seq.to_be_bytes()))
        .expect("transport-cc");
    for (id, value) in extra {
        header
            .set_extension(*id, Bytes::from_static(value))
            .expect("extension");
    }
    rtc::rtp::Packet {
        header,
        payload: Bytes::copy_from_slice(payload),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

fn with_extensions(mut params: RtpParameters, extensions: &[(&str, u8)]) -> RtpParameters {
    params.header_extensions = extensions
        .iter()
        .map(|(uri, id)| RtpHeaderExtensionParameters {
            uri: (*uri).into(),
            id: *id,
            encrypt: false,
        })
        .collect();
    params
}

/// The next packet on `track` whose payload starts with `prefix` (after `skip` bytes).
async fn next_tagged(track: &dyn TrackRemote, skip: usize, prefix: &[u8]) -> rtc::rtp::Packet {
    loop {
        match tokio::time::timeout(DEADLINE, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p)))
                if p.payload.get(skip..).is_some_and(|b| b.starts_with(prefix)) =>
            {
                return p;
            }
            Ok(Some(_)) => {}
            other => panic!("track ended or timed out: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_with_fewer_extensions_than_the_publisher_gets_every_packet_and_retransmission() {
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
    let video_ssrc = 0x0505_0505;
    let audio_ssrc = 0x0606_0606;
    let video = t
        .server
        .produce(
            pub_t.id,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: with_extensions(
                    vp8_producer(video_ssrc, 0x0505_0506),
                    &[
                        (extension_uri::MID, 4),
                        (extension_uri::TRANSPORT_WIDE_CC, 3),
                    ],
                ),
                paused: false,
            },
        )
        .await
        .unwrap();
    let audio = t
        .server
        .produce(
            pub_t.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: with_extensions(
                    opus_producer(audio_ssrc),
                    &[
                        (extension_uri::MID, 4),
                        (extension_uri::TRANSPORT_WIDE_CC, 3),
                        (extension_uri::AUDIO_LEVEL, 1),
                    ],
                ),
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
    let mut caps = t.server.router_capabilities(room.id).await.unwrap();
    caps.codecs
        .retain(|c| !c.mime_type.eq_ignore_ascii_case("video/rtx"));
    for producer in [&video, &audio] {
        t.server
            .consume(
                sub_t.id,
                ConsumeOptions {
                    producer: producer.id,
                    rtp_capabilities: caps.clone(),
                    paused: false,
                },
            )
            .await
            .unwrap();
    }
    let offer = t
        .server
        .transport_request(sub_t.id, "create_offer", json!({ "force": true }))
        .await
        .unwrap();
    let offer = offer.response["sdp"].as_str().unwrap().to_owned();
    assert!(
        offer.contains(extension_uri::TRANSPORT_WIDE_CC),
        "the server offers transport-cc: {offer}"
    );

    // The viewer is behind a relay that loses one video packet, so the retransmission takes
    // the same per-leg path.
    let server_addr = server_candidate(&offer);
    let relay = switchboard_tests::relay::Relay::start(server_addr).await;
    let mut client = Client::new(96, 111).await;
    let answer = client.answer(&relay.rewrite_sdp(&offer, server_addr)).await;
    // Video keeps only mid; audio negotiates nothing at all.
    let mut kept = String::new();
    let mut in_audio = false;
    for line in answer.split_inclusive('\n') {
        if line.starts_with("m=") {
            in_audio = line.starts_with("m=audio");
        }
        let keep = if in_audio {
            !line.starts_with("a=extmap:")
        } else {
            !keep_extmaps(line, &[extension_uri::MID]).is_empty()
        };
        if keep {
            kept.push_str(line);
        }
    }
    // (The native engine offers no MID extension on a receive leg: the SSRCs name the
    // streams there.)
    assert!(
        kept.contains(extension_uri::MID) == offer.contains(extension_uri::MID)
            && !kept.contains(extension_uri::TRANSPORT_WIDE_CC),
        "the munged answer keeps mid alone: {kept}"
    );
    t.server
        .transport_request(sub_t.id, "answer", json!({ "sdp": kept }))
        .await
        .unwrap();
    client.connected().await;

    // Tracks appear with their first packets.
    let mut seq = 1u16;
    let mut tracks = Vec::new();
    while tracks.len() < 2 {
        publisher
            .send_rtp(packet_with_extensions(
                video_ssrc,
                96,
                seq,
                &vp8_payload(seq, true),
                &[],
            ))
            .unwrap();
        publisher
            .send_rtp(packet_with_extensions(
                audio_ssrc,
                111,
                seq,
                b"hello",
                &[(1, &[0x85])],
            ))
            .unwrap();
        seq += 1;
        if let Ok(track) =
            tokio::time::timeout(std::time::Duration::from_millis(100), client.next_track()).await
        {
            tracks.push(track);
        }
        assert!(seq < 100, "no tracks reached the subscriber");
    }
    let first_is_video =
        tracks[0].kind().await == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video;
    let (video_track, audio_track) = if first_is_video {
        (tracks[0].clone(), tracks[1].clone())
    } else {
        (tracks[1].clone(), tracks[0].clone())
    };

    let mut expected = Vec::new();
    for k in 0..10u16 {
        let mut body = format!("video-{k:02}-").into_bytes();
        body.resize(600, b'.');
        let mut payload = vec![0x10, 0x01];
        payload.extend_from_slice(&body);
        expected.push(body);
        if k == 4 {
            relay.drop_next_large_rtp();
        }
        publisher
            .send_rtp(packet_with_extensions(
                video_ssrc,
                96,
                seq + k,
                &payload,
                &[],
            ))
            .unwrap();
        publisher
            .send_rtp(packet_with_extensions(
                audio_ssrc,
                111,
                seq + k,
                format!("audio-{k:02}").as_bytes(),
                &[(1, &[0x85])],
            ))
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let p = next_tagged(video_track.as_ref(), 2, b"video-").await;
        assert!(
            p.header.get_extension(3).is_none(),
            "no transport-cc on a leg that did not negotiate it"
        );
        let body = p.payload[2..].to_vec();
        if !got.contains(&body) {
            got.push(body);
        }
    }
    got.sort();
    assert_eq!(
        got, expected,
        "every video payload, the lost one retransmitted"
    );
    assert_eq!(relay.dropped(), 1);
    for k in 0..10u16 {
        let p = next_tagged(audio_track.as_ref(), 0, b"audio-").await;
        assert_eq!(p.payload.as_ref(), format!("audio-{k:02}").as_bytes());
        assert!(
            !p.header.extension,
            "no extensions on a leg that negotiated none"
        );
    }
    let stats = switchboard_tests::as_json(t.server.transport_stats(sub_t.id).await).unwrap();
    assert_eq!(
        stats["plugin"]["rtp_packets_rejected"], 0,
        "the stack refused none of the rewritten packets: {stats}"
    );
    t.server.shutdown().await.unwrap();
}
