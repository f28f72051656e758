//! Spanning benchmark: one WebRTC publisher (VP8 at about 1 Mbit/s plus Opus at 50 packets/s)
//! to N webrtc-rs subscribers on loopback, through a server with two workers, with the room
//! either pinned to one worker or allowed to span both.
//!
//! `cargo run --release -p switchboard-tests --bin span_fanout_bench -- pinned 40 80`
//! `cargo run --release -p switchboard-tests --bin span_fanout_bench -- span 40 80`
//!
//! `pinned`: the room is created on worker 0 and `placement.span_rooms` is off, so all
//! forwarding runs on one worker thread. `span`: spanning is on with a threshold any traffic
//! exceeds (`placement.max_worker_packets_per_second = 1`), so once the room's worker carries
//! media, subscribers' receive connections alternate between the workers by measured load.
//!
//! The publisher sends from before the first subscriber joins (so placement sees load), and
//! subscribers join eight at a time. For each N it reports what the publisher sent, what all
//! subscribers received, the loss (1 − received / (N × sent)) over the measured window, how
//! the subscribers were split between the workers, and the CPU time of the worker threads and
//! of everything else (the clients run in this process, on the same two cores).

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::settings::Settings;
use switchboard_actors::RouterOptions;
use switchboard_core::transport::TransportPlugin;
use switchboard_core::{PeerId, WorkerId};
use switchboard_tests::start_with;
use switchboard_tests::webrtc_client::{Client, Publisher, publish_vp8_and_opus};
use switchboard_transports::{PipePlugin, WebRtcPlugin, WebRtcSettings};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

/// CPU seconds (user + system) of this process's threads, split into those whose name
/// contains `needle` and the rest.
fn cpu_seconds(needle: &str) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let (mut matched, mut rest) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let Some(after) = stat.rsplit(')').next() else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let secs = (utime + stime) / ticks;
        if name.contains(needle) {
            matched += secs;
        } else {
            rest += secs;
        }
    }
    (matched, rest)
}

/// CPU seconds of one thread of this process.
fn thread_seconds(tid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let Some(after) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (utime + stime) / 100.0
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

async fn run(span: bool, subscribers: usize, seconds: u64) {
    let mut config = Settings::default();
    config.server.workers = 2;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.placement.span_rooms = span;
    config.placement.max_worker_packets_per_second = 1;
    config.placement.sample_interval_ms = 100;
    config.limits.max_peers_per_room = 5_000;
    config.limits.max_transports_per_room = 5_000;
    let t = start_with(
        config,
        vec![
            WebRtcPlugin::new(WebRtcSettings::default()) as Arc<dyn TransportPlugin>,
            PipePlugin::new(),
        ],
    );
    let room = t
        .server
        .create_router(RouterOptions {
            worker: Some(WorkerId(0)),
            ..Default::default()
        })
        .await
        .expect("room")
        .id;
    let Publisher {
        client: _pub_client,
        video,
        audio,
        ..
    } = publish_vp8_and_opus(&t.server, room).await;

    // Send from the start: VP8 1200-byte packets every 10 ms (~1 Mbit/s), a keyframe every
    // second, Opus 100 bytes every 20 ms.
    let sending = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (sending, sent) = (sending.clone(), sent.clone());
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
                sent.fetch_add(1, Ordering::Relaxed);
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
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let received = Arc::new(AtomicU64::new(0));
    let per_sub: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let joined = Arc::new(tokio::sync::Semaphore::new(8));
    let mut joins = Vec::new();
    for i in 0..subscribers {
        let (server, received, joined) = (t.server.clone(), received.clone(), joined.clone());
        let per_sub = per_sub.clone();
        joins.push(tokio::spawn(async move {
            let _permit = joined.acquire().await.expect("semaphore");
            let peer = PeerId::parse(&format!("sub{i}")).expect("peer id");
            server.join_peer(room, peer.clone()).await.expect("join");
            let offer = server
                .subscribe_peer(room, peer.clone())
                .await
                .expect("subscribe");
            let mut client = Client::new(96, 111).await;
            let answer = client.answer(&offer.sdp).await;
            server.answer(room, peer, answer).await.expect("answer");
            client.connected().await;
            drop(_permit);
            for _ in 0..2 {
                let track = client.next_track().await;
                let received = received.clone();
                let per_sub = per_sub.clone();
                tokio::spawn(async move {
                    while let Some(e) = track.poll().await {
                        if matches!(e, TrackRemoteEvent::OnRtpPacket(_)) {
                            received.fetch_add(1, Ordering::Relaxed);
                            per_sub[i].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            client
        }));
    }
    // A subscriber that fails to connect (the client helper panics after its deadline) is
    // counted, and everything it should have received counts as lost.
    let mut clients = Vec::new();
    let mut failed = 0;
    for j in joins {
        match j.await {
            Ok(c) => clients.push(c),
            Err(_) => failed += 1,
        }
    }

    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up: keyframes, tracks open
    let forwarded = |v: serde_json::Value| -> u64 {
        v["routers"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        // What went into pipes is not delivered to a subscriber.
                        let piped: u64 = r["pipes"].as_array().map_or(0, |p| {
                            p.iter()
                                .map(|p| p["packets_out"].as_u64().unwrap_or(0))
                                .sum()
                        });
                        r["counters"]["rtp_out"]
                            .as_u64()
                            .unwrap_or(0)
                            .saturating_sub(piped)
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    let out0 =
        forwarded(switchboard_tests::as_json(t.server.router_stats(room).await).expect("stats"));
    let rx0 = received.load(Ordering::Relaxed);
    let sub0: Vec<u64> = per_sub.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let tx0 = sent.load(Ordering::Relaxed);
    let tids: Vec<u32> = t
        .server
        .metrics(false, Duration::from_secs(1))
        .await
        .workers
        .iter()
        .filter_map(|w| w.thread_id)
        .collect();
    let per_worker0: Vec<f64> = tids.iter().map(|t| thread_seconds(*t)).collect();
    let (w0, o0) = cpu_seconds("actix-rt");
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = wall0.elapsed().as_secs_f64();
    let (w1, o1) = cpu_seconds("actix-rt");
    let per_worker: Vec<String> = tids
        .iter()
        .zip(&per_worker0)
        .map(|(t, c0)| format!("{:.0}%", (thread_seconds(*t) - c0) / wall * 100.0))
        .collect();
    let rx = received.load(Ordering::Relaxed) - rx0;
    let sub1: Vec<u64> = per_sub.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let tx = sent.load(Ordering::Relaxed) - tx0;
    let out =
        forwarded(switchboard_tests::as_json(t.server.router_stats(room).await).expect("stats"))
            - out0;
    sending.store(false, Ordering::Relaxed);
    let _ = sender.await;

    let stats = switchboard_tests::as_json(t.server.router_stats(room).await).expect("stats");
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let dump = switchboard_tests::as_json(t.server.dump_router(room).await).expect("dump");
        let mut by_worker: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
        for e in dump["transports"].as_array().into_iter().flatten() {
            let Some(i) = e["peer"]
                .as_str()
                .and_then(|p| p.strip_prefix("sub"))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let got = sub1[i] - sub0[i];
            let w = by_worker.entry(e["worker"].to_string()).or_default();
            w.0 += 1;
            w.1 += got;
            if got * 100 < (tx * 99) {
                w.2 += 1;
            }
        }
        eprintln!("per worker (subs, received, subs with loss): {by_worker:?}");
        for r in stats["routers"].as_array().into_iter().flatten() {
            eprintln!(
                "{} {} {}",
                r["worker"], r["counters"]["rtp_in"], r["counters"]["rtp_out"]
            );
            eprintln!("{}", r["pipes"]);
        }
        eprintln!("{}", stats["totals"]);
    }
    let split: Vec<String> = stats["routers"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "w{}:{}",
                        r["worker"],
                        r["consumers"].as_u64().unwrap_or(0) / 2
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected = tx as f64 * subscribers as f64;
    let loss = if expected > 0.0 {
        (1.0 - rx as f64 / expected).max(0.0) * 100.0
    } else {
        f64::NAN
    };
    println!(
        "| {} | {subscribers} | {failed} | {:.0} | {:.0} | {:.0} | {loss:.2}% | {} | {} | {:.0}% | {:.0}% |",
        if span { "span" } else { "pinned" },
        tx as f64 / wall,
        out as f64 / wall,
        rx as f64 / wall,
        split.join(" "),
        per_worker.join(" / "),
        (w1 - w0) / wall * 100.0,
        (o1 - o0) / wall * 100.0,
    );
    drop(clients);
    let _ = t.server.shutdown().await;
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let span = match args.peek().map(String::as_str) {
        Some("span") => true,
        Some("pinned") => false,
        _ => {
            eprintln!("usage: span_fanout_bench pinned|span N...");
            std::process::exit(2);
        }
    };
    let counts: Vec<usize> = args.skip(1).filter_map(|a| a.parse().ok()).collect();
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
        "| room | subscribers | failed to connect | sent pkt/s | server sent pkt/s | received pkt/s | loss | subscribers per worker | CPU per worker (0 / 1) | worker threads CPU | other threads CPU |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |");
    for n in counts {
        runtime.block_on(run(span, n, seconds));
    }
}
