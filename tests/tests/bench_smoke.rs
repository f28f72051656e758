//! Smoke configuration of the load generator (`switchboard_bench`): a few seconds of each
//! scenario against an in-process server, asserting that media flowed and was counted, never
//! a speed (speeds are measured by `scripts/bench` and reported in docs/benchmarks.md).

use std::sync::Arc;
use switchboard::App;
use switchboard::settings::Settings;
use switchboard_tests::bench::engine::Engine;
use switchboard_tests::bench::scenario::Bench;
use switchboard_tests::bench::sfu::Switchboard;

/// Runs `f` against a fresh in-process server with one worker, driven over its RPC socket,
/// with a fresh client loop (a scenario counts every stream its loop sends).
fn with_server(f: impl FnOnce(Arc<Bench>)) {
    with_server_sampling(1, false, f)
}

/// Like [`with_server`], with only every `decrypt_every`-th subscriber decrypting, or with
/// plain RTP clients.
fn with_server_sampling(decrypt_every: usize, plain_rtp: bool, f: impl FnOnce(Arc<Bench>)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    let app = rt
        .block_on(App::start(Arc::new(config)))
        .expect("server starts");
    let rpc = app.rpc_tcp_addr().expect("rpc address").to_string();
    let bench = Arc::new(Bench {
        engine: Arc::new(Engine::start_sampling(Vec::new(), decrypt_every).expect("client loop")),
        sfu: Arc::new(Switchboard::connect(&rpc).expect("rpc connects")),
        server_pid: std::process::id(),
        ip: "127.0.0.1".parse().expect("ip"),
        seconds: 1.5,
        plain_rtp,
    });
    f(bench);
    let _ = rt.block_on(app.shutdown(std::time::Duration::from_secs(5)));
}

#[test]
fn fan_out_counts_every_packet_and_its_latency() {
    with_server(|bench| {
        let r = bench.s1(&[1, 3]).expect("s1 runs");
        assert_eq!(r.samples.len(), 2);
        assert_eq!(r.srtp, vec!["SRTP_AEAD_AES_128_GCM".to_owned()]);
        for s in &r.samples {
            assert_eq!(s.failed_clients, 0);
            // One publisher sends video and audio; every subscriber should get each packet.
            assert!(s.sent > 100, "publisher sent {}", s.sent);
            assert_eq!(s.expected, s.sent * s.load as u64);
            assert!(s.received > 0, "no media reached the subscribers");
            assert!(s.loss < 0.5, "loss {}", s.loss);
            assert!(s.p50_ms > 0.0 && s.p50_ms <= s.p99_ms && s.p99_ms <= s.p999_ms);
            assert!(s.server_pss_kib > 0);
        }
    });
}

#[test]
fn light_subscribers_count_their_packets_from_the_header() {
    with_server_sampling(3, false, |bench| {
        // Six subscribers: two decrypt (latency, payload checks), four count headers.
        let r = bench.s1(&[6]).expect("s1 runs");
        let s = &r.samples[0];
        assert_eq!(s.failed_clients, 0);
        assert!(s.sent > 100, "publisher sent {}", s.sent);
        assert_eq!(s.expected, s.sent * 6);
        // Light subscribers count by arrival time, so the total may be off by the packets in
        // flight at the window's edges, not by whole subscribers' worth.
        let per_subscriber = s.sent as f64;
        assert!(
            (s.received as f64 - s.expected as f64).abs() < per_subscriber * 0.5,
            "received {} of {}",
            s.received,
            s.expected
        );
        assert!(
            s.p50_ms > 0.0,
            "the decrypting subscribers measured latency"
        );
    });
}

#[test]
fn plain_rtp_fan_out_counts_every_packet() {
    with_server_sampling(1, true, |bench| {
        let r = bench.s1(&[2, 4]).expect("s1 runs");
        assert_eq!(r.srtp, vec!["none (plain RTP)".to_owned()]);
        assert_eq!(r.samples.len(), 2);
        for s in &r.samples {
            assert_eq!(s.failed_clients, 0);
            assert!(s.sent > 100, "publisher sent {}", s.sent);
            assert_eq!(s.expected, s.sent * s.load as u64);
            // Every subscriber reads and checks every payload (no light counting here), and
            // loopback loses nothing at this rate: all but the window's edges arrive.
            assert!(
                s.received as f64 >= s.expected as f64 * 0.9,
                "received {} of {}",
                s.received,
                s.expected
            );
            assert!(s.p50_ms > 0.0 && s.p50_ms <= s.p99_ms);
        }
    });
}

#[test]
fn join_burst_measures_every_join() {
    with_server(|bench| {
        let r = bench.s3(4).expect("s3 runs");
        let j = r.join.expect("join result");
        assert_eq!(j.joins, 4);
        assert_eq!(j.completed, 4, "every joiner got media");
        assert!(j.p50_ms > 0.0 && j.p50_ms <= j.max_ms);
    });
}

#[test]
fn paused_consumers_receive_nothing() {
    with_server(|bench| {
        let r = bench.s4(3).expect("s4 runs");
        let p = r.paused.expect("paused result");
        // Three subscribers of one audio+video publisher: six consumers, all paused.
        assert_eq!(p.consumers, 6);
        assert!(r.samples[0].received > 0, "media flowed before pausing");
        assert_eq!(p.received_while_paused, 0, "paused consumers sent nothing");
    });
}
