//! WebRTC fan-out benchmark: one publisher (VP8 at about 1 Mbit/s plus Opus at 50 packets/s)
//! to N webrtc-rs subscribers, all on loopback, through one server worker.
//!
//! `cargo run --release -p switchboard-tests --bin webrtc_fanout_bench -- 1 5 10 20`
//!
//! For each N it reports the packets the router forwarded per second, the CPU time of the
//! server's worker thread (from /proc, CPU not wall time), the CPU time per forwarded packet
//! and what that means in forwarded packets per second per core. The clients run in the same
//! process on other threads; their CPU is not counted, but on a 2-core machine they compete
//! with the worker, so the per-packet cost is the number to compare.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_actors::RouterOptions;
use switchboard_core::PeerId;
use switchboard_tests::start_webrtc;
use switchboard_tests::webrtc_client::{Client, Publisher, publish_vp8_and_opus};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

/// CPU seconds (user + system) of the process's threads whose name contains `needle`.
fn thread_cpu_seconds(needle: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3; utime 14, stime 15.
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    total
}

fn packet(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: Bytes) -> rtc::rtp::Packet {
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
        payload,
    }
}

async fn run(subscribers: usize, seconds: u64) {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .expect("room")
        .id;
    let Publisher {
        client: _pub_client,
        video,
        audio,
        ..
    } = publish_vp8_and_opus(&t.server, room).await;

    let received = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let mut connect_ms = Vec::new();
    for i in 0..subscribers {
        let peer = PeerId::parse(&format!("sub{i}")).expect("peer id");
        let started = Instant::now();
        t.server.join_peer(room, peer.clone()).await.expect("join");
        let offer = t
            .server
            .subscribe_peer(room, peer.clone())
            .await
            .expect("subscribe");
        let mut client = Client::new(96, 111).await;
        let answer = client.answer(&offer.sdp).await;
        t.server.answer(room, peer, answer).await.expect("answer");
        client.connected().await;
        connect_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        clients.push(client);
    }

    // Send: VP8 1200-byte packets every 10 ms (~1 Mbit/s), Opus 100 bytes every 20 ms.
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sender = {
        let sending = sending.clone();
        tokio::spawn(async move {
            let mut vp8_payload = vec![0u8; 1200];
            vp8_payload[0] = 0x10;
            let key = Bytes::from(vp8_payload.clone());
            vp8_payload[1] = 0x01;
            let delta = Bytes::from(vp8_payload);
            let opus_payload = Bytes::from(vec![0xFCu8; 100]);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let (mut vseq, mut aseq) = (0u16, 0u16);
            while sending.load(Ordering::Relaxed) {
                tick.tick().await;
                vseq = vseq.wrapping_add(1);
                let payload = if vseq % 100 == 1 {
                    key.clone()
                } else {
                    delta.clone()
                };
                let _ = video
                    .write_rtp(packet(0x1000, 96, vseq, u32::from(vseq) * 900, payload))
                    .await;
                if vseq % 2 == 0 {
                    aseq = aseq.wrapping_add(1);
                    let _ = audio
                        .write_rtp(packet(
                            0x2000,
                            111,
                            aseq,
                            u32::from(aseq) * 960,
                            opus_payload.clone(),
                        ))
                        .await;
                }
            }
        })
    };
    // Receive: count every packet every subscriber gets.
    for mut client in clients {
        let received = received.clone();
        tokio::spawn(async move {
            for _ in 0..2 {
                let track = client.next_track().await;
                let received = received.clone();
                tokio::spawn(async move {
                    while let Some(e) = track.poll().await {
                        if matches!(e, TrackRemoteEvent::OnRtpPacket(_)) {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            // Keep the connection open for the run.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(client);
        });
    }

    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up: keyframes, tracks open
    let forwarded = |v: serde_json::Value| v["counters"]["rtp_out"].as_u64().unwrap_or(0);
    let out0 =
        forwarded(switchboard_tests::as_json(t.server.router_stats(room).await).expect("stats"));
    let rx0 = received.load(Ordering::Relaxed);
    let cpu0 = thread_cpu_seconds("actix-rt");
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds("actix-rt") - cpu0;
    let out =
        forwarded(switchboard_tests::as_json(t.server.router_stats(room).await).expect("stats"))
            - out0;
    let rx = received.load(Ordering::Relaxed) - rx0;
    sending.store(false, Ordering::Relaxed);
    let _ = sender.await;

    let pps = out as f64 / wall;
    let us_per_packet = if out > 0 {
        cpu * 1e6 / out as f64
    } else {
        f64::NAN
    };
    let per_core = if cpu > 0.0 {
        out as f64 / cpu
    } else {
        f64::NAN
    };
    connect_ms.sort_by(f64::total_cmp);
    let median_connect = connect_ms
        .get(connect_ms.len() / 2)
        .copied()
        .unwrap_or(f64::NAN);
    println!(
        "| {subscribers} | {pps:.0} | {:.0} | {:.1}% | {us_per_packet:.1} | {per_core:.0} | {median_connect:.0} |",
        rx as f64 / wall,
        cpu / wall * 100.0
    );
    let _ = t.server.shutdown().await;
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 5, 10, 20]
    } else {
        counts
    };
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| subscribers | forwarded pkt/s | received pkt/s | worker CPU | CPU µs per forwarded pkt | forwarded pkt/s per core | join → connected, median ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in counts {
        runtime.block_on(run(n, seconds));
    }
}
