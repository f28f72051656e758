//! Memory per consumer and per producer, for sizing (docs/operations.md).
//!
//! One worker, one room. First a VP8 producer on a direct transport receives enough
//! 1100-byte packets to fill its retransmission buffer; then N consumers of it are created on
//! direct transports (250 per transport). The process's resident memory (`VmRSS` in `/proc/self/status`)
//! is read before and after each step; the growth divided by the count is the cost of one.
//! No media flows to the consumers, so the figure is the SFU's own state per consumer
//! (forwarding entry, rewriter, actor, index entries), without socket buffers or a WebRTC
//! stack's per-track state.
//!
//! ```sh
//! cargo run --release -p switchboard-tests --bin consumer_memory_bench -- 5000
//! ```

use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::rtp_parameters::MediaKind;

const CONSUMERS_PER_TRANSPORT: usize = 250;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A VP8 packet as the tests build them, its payload padded to a video-sized 1100 bytes.
fn video_packet(seq: u16) -> bytes::Bytes {
    use rtc_shared::marshal::{Marshal, Unmarshal};
    let mut raw = switchboard_tests::vp8_packet(0x1111, seq, u32::from(seq) * 3000, seq == 0);
    let mut packet = rtc_rtp::Packet::unmarshal(&mut raw).expect("valid RTP");
    let mut payload = packet.payload.to_vec();
    payload.resize(1100, 0);
    packet.payload = payload.into();
    packet.marshal().expect("marshal").freeze()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let consumers: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let t = switchboard_tests::start(1, vec![]);
    let server = &t.server;
    let room = server
        .create_router(RouterOptions::default())
        .await
        .expect("room");

    let input = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect("transport");
    let producer = server
        .produce(
            input.id,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: switchboard_tests::vp8_producer(0x1111, 0x2222),
                paused: false,
            },
        )
        .await
        .expect("producer");
    let endpoint = t.direct.endpoint(input.id).expect("endpoint");

    // The retransmission buffer fills as packets arrive: measure it full.
    let before_packets = resident_bytes();
    let packets = 1200u16;
    for seq in 0..packets {
        let packet = video_packet(seq);
        while endpoint.send_rtp(packet.clone()).is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // The worker has taken them all once the producer's counter says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats =
            switchboard_tests::as_json(server.producer_stats(producer.id).await).expect("stats");
        if stats["counters"]["packets"].as_u64() == Some(u64::from(packets)) {
            break;
        }
        assert!(Instant::now() < deadline, "packets not taken: {stats}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let producer_bytes = resident_bytes().saturating_sub(before_packets);

    // One consumer first, so one-time allocations (maps, the first transport) are not
    // charged to the rest.
    let caps = switchboard_tests::subscriber_caps(96, 4, true);
    let mut transport = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect("transport");
    let consume = |transport| {
        server.consume(
            transport,
            ConsumeOptions {
                producer: producer.id,
                rtp_capabilities: caps.clone(),
                paused: false,
            },
        )
    };
    consume(transport.id).await.expect("consumer");
    let before = resident_bytes();
    for i in 1..=consumers {
        if i % CONSUMERS_PER_TRANSPORT == 0 {
            transport = server
                .create_transport(room.id, "direct", json!({}))
                .await
                .expect("transport");
        }
        consume(transport.id).await.expect("consumer");
    }
    let after = resident_bytes();
    let per_consumer = after.saturating_sub(before) as f64 / consumers as f64;
    println!(
        "retransmission buffer of one video producer after {packets} packets of 1100 bytes: {:.0} KiB",
        producer_bytes as f64 / 1024.0
    );
    println!(
        "{consumers} consumers ({} per direct transport): {:.1} KiB each (resident {} MiB -> {} MiB)",
        CONSUMERS_PER_TRANSPORT,
        per_consumer / 1024.0,
        before / (1 << 20),
        after / (1 << 20)
    );
    let _ = server.shutdown().await;
}
