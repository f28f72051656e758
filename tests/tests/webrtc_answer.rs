//! What the server's answers say about themselves: an m-line the client only wants to
//! receive, on a connection where the server has nothing to send, is `inactive` (not a
//! `sendonly` that promises media that never comes); and no candidate is offered for an
//! RTCP component that rtcp-mux does away with.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use switchboard_core::PeerId;
use switchboard_sdp::{self as sdp, Direction};
use switchboard_tests::webrtc_client::{Client, vp8};
use switchboard_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recvonly_m_line_on_a_send_connection_is_answered_inactive_with_rtcp_muxed_candidates() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let alice = PeerId::parse("alice").unwrap();
    t.server.join_peer(room, alice.clone()).await.unwrap();
    let mut client = Client::new(100, 109).await;
    client
        .add_track(RtpCodecKind::Video, vp8(), 0x0D00_0000, "alice")
        .await;
    client
        .pc
        .add_transceiver_from_kind(
            RtpCodecKind::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("a receive-only audio transceiver");
    let offer = client.offer().await;
    let published = t.server.publish(room, alice, offer).await.unwrap();
    assert_eq!(published.producers.len(), 1, "the video track alone");

    let answer = sdp::parse(&published.sdp).unwrap();
    let sections = sdp::media_sections(&answer);
    let audio = sections
        .iter()
        .find(|m| m.media == "audio")
        .expect("an audio m-line in the answer");
    assert_eq!(
        audio.direction,
        Direction::Inactive,
        "nothing to send on it: {}",
        published.sdp
    );
    let video = sections.iter().find(|m| m.media == "video").unwrap();
    assert_eq!(video.direction, Direction::RecvOnly);
    let candidates: Vec<&str> = published
        .sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(!candidates.is_empty(), "{}", published.sdp);
    for c in candidates {
        assert_eq!(
            c.split_whitespace().nth(1),
            Some("1"),
            "only RTP-component candidates with rtcp-mux: {c}"
        );
    }
    // The client takes the answer and connects.
    client.accept_answer(&published.sdp).await;
    client.connected().await;
    t.server.shutdown().await.unwrap();
}
