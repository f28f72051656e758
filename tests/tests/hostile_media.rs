//! Hostile media on the plain `rtp` transport, over real UDP on loopback: strangers who spray
//! SRTCP with random SSRCs, and strangers who try to be learned as a comedia remote.
//!
//! Strangers send from 127.0.0.2, the real remote from 127.0.0.1 (Linux routes all of
//! 127.0.0.0/8 to the loopback interface), so that "another host" is what it is on a network.
//! Nothing here waits a fixed time: where no packet or event announces a step, the test polls
//! the transport's counters until the datagrams it sent have been judged.

use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_shared::marshal::Marshal;
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};
use switchboard_core::transport::TransportPlugin;
use switchboard_core::{RouterId, TransportId};
use switchboard_tests::*;
use switchboard_transports::rtp::srtp;
use switchboard_transports::{RtpPlugin, RtpSettings};

const SSRC: u32 = 0x1111_0001;
/// The SSRC the real remote's receiver reports come from: declared by no producer.
const REMOTE_RECEIVER_SSRC: u32 = 0x5151_5151;

fn start_server() -> TestServer {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    start_with(
        config,
        vec![RtpPlugin::new(RtpSettings::default()) as std::sync::Arc<dyn TransportPlugin>],
    )
}

async fn room(t: &TestServer) -> RouterId {
    t.server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id
}

fn vp8_params(ssrc: u32) -> RtpParameters {
    RtpParameters {
        codecs: vec![RtpCodecParameters {
            mime_type: "video/VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            channels: None,
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A VP8 producer with `ssrc` on `transport`, and a direct subscriber consuming it.
async fn publish(
    t: &TestServer,
    room: RouterId,
    transport: TransportId,
    ssrc: u32,
) -> switchboard_transports::DirectEndpoint {
    let producer = t
        .server
        .produce(
            transport,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_params(ssrc),
                paused: false,
            },
        )
        .await
        .unwrap()
        .id;
    let sub_t = t
        .server
        .create_transport(room, "direct", json!({}))
        .await
        .unwrap();
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
    t.direct.endpoint(sub_t.id).unwrap()
}

fn addr(local: &Value, field: &str) -> SocketAddr {
    let port = local[field].as_u64().unwrap();
    format!("127.0.0.1:{port}").parse().unwrap()
}

async fn plugin_stats(t: &TestServer, id: TransportId) -> Value {
    switchboard_tests::as_json(t.server.transport_stats(id).await).unwrap()["plugin"].clone()
}

/// Waits until the transport has judged `n` datagrams in all.
async fn judged(t: &TestServer, id: TransportId, n: u64) {
    eventually(|| async { plugin_stats(t, id).await["datagrams_received"] == n }).await;
}

fn stranger() -> UdpSocket {
    UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is a loopback address on Linux")
}

fn local() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn sender_report(ssrc: u32) -> Vec<u8> {
    SenderReport {
        ssrc,
        ntp_time: 1 << 32,
        ..Default::default()
    }
    .marshal()
    .unwrap()
    .to_vec()
}

/// xorshift64: reproducible noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// An SRTCP-shaped datagram with a random sender SSRC: an RTCP header, the SSRC, junk, an
/// SRTCP index with the E bit and a junk 80-bit tag. It can never authenticate.
fn junk_srtcp(seed: &mut u64) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&(noise(seed) as u32).to_be_bytes());
    p.extend((0..20 + 4 + 10).map(|_| noise(seed) as u8));
    p[28] |= 0x80;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_ssrc_srtcp_does_not_grow_state() {
    let t = start_server();
    let room = room(&t).await;
    let tr = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "srtp": true }))
        .await
        .unwrap();
    let server = addr(&tr.local, "port");
    let (key, mut encrypt) = srtp::generate(srtp::DEFAULT_SUITE).unwrap();
    t.server
        .connect_transport(tr.id, json!({ "srtp": key }))
        .await
        .unwrap();
    let sub = publish(&t, room, tr.id, SSRC).await;
    let cap = RtpSettings::default().srtp_max_ssrcs as u64;

    // Before the remote is known, anyone may send: 2,000 SRTCP packets with random SSRCs,
    // in batches the socket buffer holds.
    let spray = stranger();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut sent = 0;
    for _ in 0..20 {
        for _ in 0..100 {
            spray.send_to(&junk_srtcp(&mut seed), server).unwrap();
        }
        sent += 100;
        judged(&t, tr.id, sent).await;
    }
    let stats = plugin_stats(&t, tr.id).await;
    // Strangers got half the budget; everything beyond it never reached rtc-srtp.
    assert_eq!(stats["srtp_failures"], cap / 2, "{stats}");
    assert_eq!(stats["srtp_ssrcs"], cap / 2, "{stats}");
    assert_eq!(stats["srtp_ssrc_limit"], sent - cap / 2, "{stats}");
    assert!(stats["remote_rtp"].is_null(), "{stats}");

    // The real remote is not locked out: its RTP and sender report (declared SSRC) pass, and
    // so do the receiver reports of its own (undeclared) SSRC.
    let remote = local();
    remote
        .send_to(
            &encrypt.encrypt_rtp(&vp8_packet(SSRC, 1, 0, true)).unwrap(),
            server,
        )
        .unwrap();
    assert_eq!(
        next_rtp(&sub).await.payload.as_ref(),
        vp8_payload(1, true).as_slice()
    );
    remote
        .send_to(&encrypt.encrypt_rtcp(&sender_report(SSRC)).unwrap(), server)
        .unwrap();
    let rr = ReceiverReport {
        ssrc: REMOTE_RECEIVER_SSRC,
        ..Default::default()
    }
    .marshal()
    .unwrap();
    remote
        .send_to(&encrypt.encrypt_rtcp(&rr).unwrap(), server)
        .unwrap();
    sent += 3;
    judged(&t, tr.id, sent).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(
        stats["remote_rtp"],
        remote.local_addr().unwrap().to_string()
    );
    assert_eq!(
        (&stats["rtp_received"], &stats["rtcp_received"]),
        (&json!(1), &json!(2)),
        "{stats}"
    );

    // Even the remote's own address cannot grow the state past the cap.
    for _ in 0..100 {
        remote.send_to(&junk_srtcp(&mut seed), server).unwrap();
    }
    sent += 100;
    judged(&t, tr.id, sent).await;
    let stats = plugin_stats(&t, tr.id).await;
    // Declared: the producer's SSRC for RTP and for RTCP. Others: `cap`.
    assert_eq!(stats["srtp_ssrcs"], 2 + cap, "{stats}");
    let refused = stats["srtp_ssrc_limit"].as_u64().unwrap();
    let failed = stats["srtp_failures"].as_u64().unwrap();
    assert_eq!(
        refused + failed + 3,
        sent,
        "every datagram counted once: {stats}"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_rtcp_cannot_hijack_comedia() {
    let t = start_server();
    let room = room(&t).await;

    // Plain RTP, RTCP on its own port: a stranger's 8-byte receiver report arrives first.
    let tr = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "rtcp_mux": false }))
        .await
        .unwrap();
    let (rtp_port, rtcp_port) = (addr(&tr.local, "port"), addr(&tr.local, "rtcp_port"));
    let sub = publish(&t, room, tr.id, SSRC).await;
    let spy = stranger();
    spy.send_to(&[0x80, 201, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF], rtcp_port)
        .unwrap();
    judged(&t, tr.id, 1).await;

    // The real sender's RTP is learned and forwarded, then its RTCP from its own RTCP port.
    let (sender_rtp, sender_rtcp) = (local(), local());
    sender_rtp
        .send_to(&vp8_packet(SSRC, 1, 0, true), rtp_port)
        .unwrap();
    assert_eq!(
        next_rtp(&sub).await.payload.as_ref(),
        vp8_payload(1, true).as_slice(),
        "the real sender is not locked out"
    );
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(stats["comedia_refused"], 1, "{stats}");
    assert!(stats["remote_rtcp"].is_null(), "{stats}");
    sender_rtcp
        .send_to(&sender_report(SSRC), rtcp_port)
        .unwrap();
    judged(&t, tr.id, 3).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(
        stats["remote_rtp"],
        sender_rtp.local_addr().unwrap().to_string()
    );
    assert_eq!(
        stats["remote_rtcp"],
        sender_rtcp.local_addr().unwrap().to_string()
    );
    assert_eq!(
        (&stats["rtp_received"], &stats["rtcp_received"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
    assert_eq!(stats["unexpected_source"], 0, "{stats}");

    // A stranger who knows the SSRC and sends a plausible sender report first is learned as
    // the RTCP address for a moment, until the real sender's RTP shows where the sender is;
    // from then on the stranger is refused and keyframe requests go to the real sender.
    let tr = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "rtcp_mux": false }))
        .await
        .unwrap();
    let (rtp_port, rtcp_port) = (addr(&tr.local, "port"), addr(&tr.local, "rtcp_port"));
    let other = SSRC + 1;
    let sub = publish(&t, room, tr.id, other).await;
    spy.send_to(&sender_report(other), rtcp_port).unwrap();
    judged(&t, tr.id, 1).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(stats["remote_rtcp"], spy.local_addr().unwrap().to_string());
    let (sender_rtp, sender_rtcp) = (local(), local());
    sender_rtp
        .send_to(&vp8_packet(other, 1, 0, true), rtp_port)
        .unwrap();
    next_rtp(&sub).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert!(
        stats["remote_rtcp"].is_null(),
        "the stranger's address is forgotten: {stats}"
    );
    sender_rtcp
        .send_to(&sender_report(other), rtcp_port)
        .unwrap();
    spy.send_to(&sender_report(other), rtcp_port).unwrap();
    judged(&t, tr.id, 4).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(
        stats["remote_rtcp"],
        sender_rtcp.local_addr().unwrap().to_string()
    );
    assert_eq!(
        stats["unexpected_source"], 1,
        "the stranger's second report: {stats}"
    );

    // With rtcp-mux the RTCP address is the RTP one, whoever sent RTCP first.
    let tr = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true }))
        .await
        .unwrap();
    let port = addr(&tr.local, "port");
    let third = SSRC + 2;
    let sub = publish(&t, room, tr.id, third).await;
    spy.send_to(&sender_report(third), port).unwrap();
    judged(&t, tr.id, 1).await;
    let sender = local();
    sender
        .send_to(&vp8_packet(third, 1, 0, true), port)
        .unwrap();
    next_rtp(&sub).await;
    let stats = plugin_stats(&t, tr.id).await;
    let sender_addr = sender.local_addr().unwrap().to_string();
    assert_eq!(
        (&stats["remote_rtp"], &stats["remote_rtcp"]),
        (&json!(sender_addr), &json!(sender_addr)),
        "{stats}"
    );
    spy.send_to(&[0x80, 200, 0, 1, 0, 0, 0, 1], port).unwrap();
    spy.send_to(&vp8_packet(third, 2, 3000, true), port)
        .unwrap();
    judged(&t, tr.id, 4).await;
    let stats = plugin_stats(&t, tr.id).await;
    assert_eq!(stats["unexpected_source"], 2, "{stats}");
    t.server.shutdown().await.unwrap();
}
