//! `/metrics` during a live session: scraped over HTTP, parsed with a Prometheus text-format
//! parser, linted with `promtool`, and compared with what the RPC statistics say.

use bytes::Bytes;
use prometheus_parse::{Sample, Scrape, Value as Prom};
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, Unmarshal};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use switchboard::App;
use switchboard::client::Client;
use switchboard::settings::Settings;
use switchboard_actors::RouterOptions;
use switchboard_core::RouterId;
use switchboard_transports::{DirectEndpoint, DirectPacket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);
const SSRC: u32 = 0x4D45_5452;
const PACKETS: u16 = 20;
const TOKEN: &str = "metrics-test-token";

async fn start(per_room_labels: bool) -> App {
    let mut config = Settings::default();
    config.server.workers = 2;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.rpc.token = TOKEN.to_owned();
    config.metrics.listen = "127.0.0.1:0".to_owned();
    config.metrics.per_room_labels = per_room_labels;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    App::start(Arc::new(config)).await.expect("server starts")
}

async fn client(app: &App) -> Client {
    let addr = app.rpc_tcp_addr().expect("rpc on TCP").to_string();
    Client::connect(&addr, Some(TOKEN)).await.expect("connects")
}

/// One HTTP/1.1 exchange; returns the status code and the body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("reads");
        response
    };
    let response = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an HTTP response in time");
    let text = String::from_utf8(response).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Scrapes `/metrics`, requiring the text format's content type.
async fn scrape_text(app: &App) -> String {
    let addr = app.metrics_addr().expect("metrics enabled");
    let request = "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let (status, body) = http(addr, request).await;
    assert_eq!(status, 200, "{body}");
    body
}

struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    async fn scrape(app: &App) -> Self {
        let text = scrape_text(app).await;
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
        Self { text, scrape }
    }

    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape.samples.iter().filter(move |s| s.metric == name)
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples(name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} matches {} samples",
            matching.len()
        );
        matching.first().map(|s| scalar(&s.value))
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// The sum of every sample of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| scalar(&s.value))
            .sum()
    }

    /// Every counter sample, keyed by name and sorted labels.
    fn counters(&self) -> HashMap<String, f64> {
        self.scrape
            .samples
            .iter()
            .filter_map(|s| match s.value {
                Prom::Counter(v) => {
                    let mut labels: Vec<String> = ["worker", "kind", "reason", "stage", "name"]
                        .iter()
                        .chain(["method", "result", "room"].iter())
                        .filter_map(|k| Some(format!("{k}={}", s.labels.get(k)?)))
                        .collect();
                    labels.sort();
                    Some((format!("{}{{{}}}", s.metric, labels.join(",")), v))
                }
                _ => None,
            })
            .collect()
    }
}

fn scalar(v: &Prom) -> f64 {
    match v {
        Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Runs `promtool check metrics` on a scrape. promtool comes from Debian's `prometheus`
/// package, which `./scripts/test` installs (scripts/apt-packages).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run promtool ({e}): install Debian's `prometheus` package, \
             as ./scripts/test does (it is listed in scripts/apt-packages)"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writes to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- scraped text ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn opus_packet(seq: u16) -> Bytes {
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: SSRC,
            ..Header::default()
        },
        payload: Bytes::from(vec![0xAB; 100]),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

async fn next_rtp(endpoint: &DirectEndpoint) -> Packet {
    loop {
        match tokio::time::timeout(DEADLINE, endpoint.recv()).await {
            Ok(Some(DirectPacket::Rtp(mut bytes))) => {
                return Packet::unmarshal(&mut bytes).expect("valid RTP");
            }
            Ok(Some(DirectPacket::Rtcp(_))) => continue,
            Ok(None) => panic!("endpoint closed"),
            Err(_) => panic!("no RTP in time"),
        }
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// A room with Alice publishing Opus and Bob receiving it, over direct transports, and
/// some media with feedback: NACK (answered), PLI, a receiver report with loss and jitter.
struct Session {
    router: RouterId,
    producer: String,
    consumer: String,
    transports: [String; 2],
}

impl Session {
    async fn run(app: &App, client: &Client) -> Self {
        let room = client
            .create_router(RouterOptions::default())
            .await
            .expect("room");
        client.join_peer(room.id, "alice").await.expect("alice");
        client.join_peer(room.id, "bob").await.expect("bob");
        let alice = client
            .create_transport(room.id, "direct", Some("alice"), json!({}))
            .await
            .expect("transport");
        let bob = client
            .create_transport(room.id, "direct", Some("bob"), json!({}))
            .await
            .expect("transport");
        let producer = client
            .call_value(
                "producer.create",
                json!({
                    "transport": alice.id,
                    "kind": "audio",
                    "rtp_parameters": {
                        "mid": "0",
                        "codecs": [{ "mime_type": "audio/opus", "payload_type": 111, "clock_rate": 48000, "channels": 2 }],
                        "encodings": [{ "ssrc": SSRC }],
                    },
                }),
            )
            .await
            .expect("producer");
        let consumer = client
            .call_value(
                "consumer.create",
                json!({
                    "transport": bob.id,
                    "producer": producer["id"],
                    "rtp_capabilities": { "codecs": [{
                        "kind": "audio", "mime_type": "audio/opus",
                        "preferred_payload_type": 100, "clock_rate": 48000, "channels": 2,
                    }] },
                }),
            )
            .await
            .expect("consumer");
        let consumer_ssrc = consumer["rtp_parameters"]["encodings"][0]["ssrc"]
            .as_u64()
            .expect("consumer ssrc") as u32;
        let input = app.transports.direct.endpoint(alice.id).expect("endpoint");
        let output = app.transports.direct.endpoint(bob.id).expect("endpoint");

        let mut out_seqs = Vec::new();
        for seq in 1..=PACKETS {
            input.send_rtp(opus_packet(seq)).expect("inject");
            out_seqs.push(next_rtp(&output).await.header.sequence_number);
        }

        // Feedback from Bob. The direct transport delivers in order on one queue, so once the
        // retransmission the NACK asks for arrives, the PLI and the report were handled too.
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: consumer_ssrc,
        };
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc: consumer_ssrc,
                fraction_lost: 64,
                total_lost: 3,
                jitter: 480,
                ..Default::default()
            }],
            ..Default::default()
        };
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: consumer_ssrc,
            nacks: vec![NackPair {
                packet_id: out_seqs[5],
                lost_packets: 0,
            }],
        };
        output
            .send_rtcp(pli.marshal().expect("pli").freeze())
            .expect("pli");
        output
            .send_rtcp(rr.marshal().expect("rr").freeze())
            .expect("rr");
        output
            .send_rtcp(nack.marshal().expect("nack").freeze())
            .expect("nack");
        let resent = next_rtp(&output).await;
        assert_eq!(resent.header.sequence_number, out_seqs[5]);

        Self {
            router: room.id,
            producer: id(&producer),
            consumer: id(&consumer),
            transports: [alice.id.to_string(), bob.id.to_string()],
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_live_session_and_gauges_return_to_zero() {
    let app = start(false).await;
    let before = Metrics::scrape(&app).await;
    promtool_check(&before.text);

    let client = client(&app).await;
    let session = Session::run(&app, &client).await;
    let live = Metrics::scrape(&app).await;
    promtool_check(&live.text);

    // The room went to worker 0 (least loaded, lowest number on a tie).
    let w0 = [("worker", "0")];
    assert_eq!(live.value("switchboard_worker_rooms", &w0), 1.0);
    assert_eq!(live.value("switchboard_worker_transports", &w0), 2.0);
    assert_eq!(live.value("switchboard_worker_producers", &w0), 1.0);
    assert_eq!(live.value("switchboard_worker_consumers", &w0), 1.0);
    assert_eq!(live.value("switchboard_worker_load_score", &w0), 5.0);
    assert_eq!(
        live.value("switchboard_worker_rooms", &[("worker", "1")]),
        0.0
    );
    let packets = f64::from(PACKETS);
    assert_eq!(
        live.value("switchboard_worker_received_packets_total", &w0),
        packets
    );
    assert_eq!(
        live.value("switchboard_worker_forwarded_packets_total", &w0),
        packets
    );
    assert_eq!(
        live.value("switchboard_worker_forwarded_bytes_total", &w0),
        packets * 100.0
    );
    for worker in ["0", "1"] {
        let labels = [("worker", worker)];
        assert_eq!(live.value("switchboard_worker_responsive", &labels), 1.0);
        let cpu = live.value("switchboard_worker_cpu_seconds_total", &labels);
        assert!(cpu >= 0.0 && cpu.is_finite(), "{cpu}");
    }
    assert_eq!(live.value("switchboard_nacks_received_total", &w0), 1.0);
    assert_eq!(
        live.value("switchboard_retransmitted_packets_total", &w0),
        1.0
    );
    assert_eq!(live.value("switchboard_plis_received_total", &w0), 1.0);
    assert!(live.value("switchboard_keyframe_requests_total", &w0) >= 1.0);
    assert_eq!(
        live.value("switchboard_receiver_loss_ratio_count", &w0),
        1.0
    );
    assert_eq!(live.value("switchboard_receiver_loss_ratio_sum", &w0), 0.25);
    // 480 ticks at 48 kHz.
    assert_eq!(
        live.value("switchboard_receiver_jitter_seconds_sum", &w0),
        0.01
    );
    assert_eq!(
        live.sum(
            "switchboard_transports",
            &[("worker", "0"), ("kind", "direct")]
        ),
        2.0
    );
    assert_eq!(
        live.value(
            "switchboard_transports",
            &[("worker", "0"), ("kind", "direct"), ("state", "connected")]
        ),
        2.0
    );
    assert_eq!(
        live.value(
            "switchboard_rpc_requests_total",
            &[("method", "peer.join"), ("result", "ok")]
        ),
        2.0
    );
    assert!(
        live.samples("switchboard_rpc_request_duration_seconds")
            .any(|s| s.labels.get("method") == Some("consumer.create")
                && matches!(&s.value, Prom::Histogram(b) if b.last().is_some_and(|b| b.count == 1.0))),
        "{}",
        live.text
    );
    assert_eq!(live.value("switchboard_rpc_connections", &[]), 1.0);
    assert!(live.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(live.value("process_open_fds", &[]) > 0.0);

    // Everyone leaves; the room closes.
    client
        .leave_peer(session.router, "alice")
        .await
        .expect("leaves");
    client
        .leave_peer(session.router, "bob")
        .await
        .expect("leaves");
    client.close_router(session.router).await.expect("closes");
    drop(client);
    // Nothing announces that the server noticed the closed connection: poll, with a deadline.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let after = loop {
        let m = Metrics::scrape(&app).await;
        if m.value("switchboard_rpc_connections", &[]) == 0.0 {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", m.text);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    promtool_check(&after.text);

    for worker in ["0", "1"] {
        let labels = [("worker", worker)];
        for gauge in [
            "switchboard_worker_rooms",
            "switchboard_worker_transports",
            "switchboard_worker_producers",
            "switchboard_worker_consumers",
            "switchboard_worker_load_score",
        ] {
            assert_eq!(after.value(gauge, &labels), 0.0, "{gauge}{labels:?}");
        }
        assert_eq!(after.sum("switchboard_transports", &labels), 0.0);
    }
    // Counters keep what closed objects counted: none went backwards, and the session's are
    // all still there.
    let live_counters = live.counters();
    let after_counters = after.counters();
    for (key, value) in &live_counters {
        let now = after_counters
            .get(key)
            .unwrap_or_else(|| panic!("{key} vanished after the room closed"));
        assert!(now >= value, "{key} went from {value} to {now}");
    }
    assert_eq!(after.value("switchboard_nacks_received_total", &w0), 1.0);
    assert_eq!(after.value("switchboard_plis_received_total", &w0), 1.0);
    assert_eq!(
        after.value("switchboard_receiver_loss_ratio_count", &w0),
        1.0
    );
    let _ = (session.producer, session.consumer, session.transports);
    app.shutdown(DEADLINE).await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_stats_and_metrics_report_the_same_numbers() {
    let app = start(true).await;
    // One connection with a wrong token, so the auth-failure counter has something to show.
    let addr = app.rpc_tcp_addr().expect("rpc").to_string();
    assert!(Client::connect(&addr, Some("wrong")).await.is_err());

    let client = client(&app).await;
    let session = Session::run(&app, &client).await;
    let room_stats = client.router_stats(session.router).await.expect("stats");
    let producer = client
        .producer_stats(session.producer.parse().expect("id"))
        .await
        .expect("stats");
    let consumer = client
        .consumer_stats(session.consumer.parse().expect("id"))
        .await
        .expect("stats");
    for t in &session.transports {
        let stats = client
            .transport_stats(t.parse().expect("id"))
            .await
            .expect("stats");
        assert_eq!(stats["state"], "connected", "{stats}");
    }
    let server = client.server_stats().await.expect("stats");
    // The last request: the scrape follows with nothing in between.
    let m = Metrics::scrape(&app).await;
    promtool_check(&m.text);

    // Every family the server exports is documented for operators.
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operations.md"
    ))
    .expect("docs/operations.md");
    for line in m.text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_whitespace().next())
        {
            assert!(
                docs.contains(&format!("`{name}`")),
                "{name} is not described in docs/operations.md"
            );
        }
    }

    let room = session.router.to_string();
    let r = [("room", room.as_str())];
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as f64;
    assert_eq!(
        m.value("switchboard_room_peers", &r),
        n(&room_stats["peers"])
    );
    assert_eq!(
        m.value("switchboard_room_transports", &r),
        n(&room_stats["transports"])
    );
    assert_eq!(
        m.value("switchboard_room_consumers", &r),
        n(&room_stats["consumers"])
    );
    assert_eq!(
        m.value("switchboard_room_received_packets_total", &r),
        n(&room_stats["counters"]["rtp_in"])
    );
    assert_eq!(
        m.value("switchboard_room_forwarded_packets_total", &r),
        n(&room_stats["counters"]["rtp_out"])
    );
    let c = &consumer["counters"];
    assert_eq!(
        m.value("switchboard_room_forwarded_bytes_total", &r),
        n(&c["bytes"])
    );
    assert_eq!(
        m.value("switchboard_room_nacks_received_total", &r),
        n(&c["nacks"])
    );
    assert_eq!(
        m.value("switchboard_room_retransmitted_packets_total", &r),
        n(&c["retransmitted"])
    );
    assert_eq!(
        m.value("switchboard_room_plis_received_total", &r),
        n(&c["plis"])
    );
    assert_eq!(
        m.value("switchboard_room_keyframe_requests_total", &r),
        n(&producer["counters"]["keyframe_requests"])
    );
    // The room's quality histograms are the ones router.stats shows.
    let loss = &room_stats["counters"]["quality"]["loss_ratio"];
    assert_eq!(
        m.value("switchboard_receiver_loss_ratio_count", &[("worker", "0")]),
        n(&loss["count"])
    );
    assert_eq!(
        consumer["remote"]["fraction_lost"].as_f64(),
        Some(0.25),
        "{consumer}"
    );

    // Workers: the same counters server.stats reads.
    for w in &server.workers {
        let id = w.id.0.to_string();
        let l = [("worker", id.as_str())];
        assert_eq!(m.value("switchboard_worker_rooms", &l), w.routers as f64);
        assert_eq!(
            m.value("switchboard_worker_transports", &l),
            w.transports as f64
        );
        assert_eq!(
            m.value("switchboard_worker_producers", &l),
            w.producers as f64
        );
        assert_eq!(
            m.value("switchboard_worker_consumers", &l),
            w.consumers as f64
        );
        assert_eq!(
            m.value("switchboard_worker_received_packets_total", &l),
            w.packets_in as f64
        );
        assert_eq!(
            m.value("switchboard_worker_forwarded_packets_total", &l),
            w.packets_out as f64
        );
    }

    // The control socket.
    let rpc = &server.rpc;
    assert_eq!(rpc.auth_failures, 1);
    assert_eq!(
        m.value("switchboard_rpc_auth_failures_total", &[]),
        rpc.auth_failures as f64
    );
    assert_eq!(
        m.value("switchboard_rpc_connections", &[]),
        rpc.connections_open as f64
    );
    assert_eq!(
        m.value("switchboard_rpc_connections_accepted_total", &[]),
        rpc.connections_accepted as f64
    );
    assert_eq!(
        m.sum("switchboard_rpc_requests_total", &[]),
        rpc.requests as f64,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("switchboard_rpc_requests_total", &[("result", "ok")]),
        (rpc.requests - rpc.request_errors) as f64
    );

    // A closed room's series go; its worker's counters keep what it counted.
    let forwarded = m.value(
        "switchboard_retransmitted_packets_total",
        &[("worker", "0")],
    );
    client.close_router(session.router).await.expect("closes");
    let after = Metrics::scrape(&app).await;
    assert_eq!(after.get("switchboard_room_peers", &r), None);
    assert_eq!(
        after.value(
            "switchboard_retransmitted_packets_total",
            &[("worker", "0")]
        ),
        forwarded
    );
    app.shutdown(DEADLINE).await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_only_metrics_and_survives_bad_requests() {
    let app = start(false).await;
    let addr = app.metrics_addr().expect("metrics");
    let (status, _) = http(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    let (status, body) = http(addr, "GARBAGE\r\n\r\n").await;
    assert_eq!(status, 400, "{body}");
    // A client that connects and says nothing does not hold up the others.
    let _silent = TcpStream::connect(addr).await.expect("connects");
    let m = Metrics::scrape(&app).await;
    assert_eq!(
        m.value(
            "switchboard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    app.shutdown(DEADLINE).await.expect("clean shutdown");

    let mut config = Settings::default();
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    config.server.workers = 1;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    let app = App::start(Arc::new(config)).await.expect("starts");
    assert_eq!(app.metrics_addr(), None);
    app.shutdown(DEADLINE).await.expect("clean shutdown");
}

/// A transport plugin whose connections fail when told to connect: at the DTLS stage when
/// the parameters say so, at an unstated stage otherwise.
mod flaky {
    use serde_json::Value;
    use std::rc::Rc;
    use switchboard_core::transport::{
        MediaSink, Transport, TransportContext, TransportFactory, TransportIo, TransportPlugin,
        TransportState,
    };
    use switchboard_core::{Result, WorkerId};

    pub struct Plugin;
    struct Factory;
    struct Flaky(Rc<dyn TransportIo>);
    struct Nowhere;

    impl MediaSink for Nowhere {
        fn send_rtp(&self, _: &[u8]) {}
        fn send_rtcp(&self, _: &[u8]) {}
    }

    impl TransportPlugin for Plugin {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn start_worker(&self, _: WorkerId) -> Result<Box<dyn TransportFactory>> {
            Ok(Box::new(Factory))
        }
    }

    impl TransportFactory for Factory {
        fn create(&mut self, ctx: TransportContext, _: &Value) -> Result<Box<dyn Transport>> {
            Ok(Box::new(Flaky(ctx.io)))
        }
    }

    impl Transport for Flaky {
        fn sink(&self) -> Rc<dyn MediaSink> {
            Rc::new(Nowhere)
        }
        fn connect(&mut self, params: &Value) -> Result<Value> {
            self.0.on_state(TransportState::Connecting);
            if params["stage"] == "dtls" {
                self.0.on_failure("dtls");
            }
            self.0.on_state(TransportState::Failed);
            // Reported twice, counted once.
            self.0.on_state(TransportState::Failed);
            Ok(Value::Null)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_counted_by_kind_and_stage() {
    use switchboard_core::middleware::MiddlewareRegistry;
    use switchboard_core::transport::TransportRegistry;

    let mut config = switchboard_core::config::Config::default();
    config.server.workers = 1;
    let mut registry = TransportRegistry::new();
    registry
        .register(Arc::new(flaky::Plugin))
        .expect("registers");
    let server =
        switchboard_actors::Server::start(Arc::new(config), registry, MiddlewareRegistry::new())
            .expect("starts");
    let metrics = switchboard::ops::MetricsServer::start(
        &switchboard::settings::MetricsConfig {
            listen: "127.0.0.1:0".to_owned(),
            ..Default::default()
        },
        server.clone(),
        None,
    )
    .await
    .expect("listens");
    let room = server
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    for stage in ["dtls", "dtls", "unknown"] {
        let t = server
            .create_transport(room.id, "flaky", json!({}))
            .await
            .expect("transport");
        server
            .connect_transport(t.id, json!({ "stage": stage }))
            .await
            .expect("connect");
    }

    let request = "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let (status, text) = http(metrics.local_addr(), request).await;
    assert_eq!(status, 200);
    promtool_check(&text);
    let m = Metrics {
        scrape: Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses"),
        text,
    };
    let failures = |stage| {
        m.value(
            "switchboard_transport_failures_total",
            &[("worker", "0"), ("kind", "flaky"), ("stage", stage)],
        )
    };
    assert_eq!(failures("dtls"), 2.0);
    assert_eq!(failures("unknown"), 1.0);
    assert_eq!(
        m.value(
            "switchboard_transports",
            &[("kind", "flaky"), ("state", "failed")]
        ),
        3.0
    );
    // Without a control socket there are no RPC families.
    assert_eq!(m.get("switchboard_rpc_connections", &[]), None);
    metrics.shutdown().await;
    server.shutdown().await.expect("stops");
}

/// A middleware that cannot keep up (50 ms per packet), counts what it sees as its own
/// metric, and tells the backend when it sees a producer.
struct Slowpoke;

struct SlowpokeInstance {
    room: std::sync::Arc<dyn switchboard_core::middleware::RoomAccess>,
    seen: u64,
}

impl switchboard_core::middleware::MiddlewareFactory for Slowpoke {
    fn name(&self) -> &'static str {
        "slowpoke"
    }
    fn create(
        &self,
        ctx: switchboard_core::middleware::MiddlewareContext,
        _options: &Value,
    ) -> switchboard_core::Result<Box<dyn switchboard_core::middleware::Middleware>> {
        ctx.selection.select_all(None);
        Ok(Box::new(SlowpokeInstance {
            room: ctx.room,
            seen: 0,
        }))
    }
}

impl switchboard_core::middleware::Middleware for SlowpokeInstance {
    fn on_producer(&mut self, producer: &switchboard_core::middleware::ProducerInfo) {
        self.room
            .notify("saw_producer", json!({ "producer": producer.id }));
    }
    fn on_rtp(&mut self, _: switchboard_core::ProducerId, _: &Packet) {
        std::thread::sleep(Duration::from_millis(50));
        self.seen += 1;
    }
    fn metrics(&self) -> Vec<switchboard_core::middleware::Metric> {
        vec![switchboard_core::middleware::Metric {
            name: "rtp_seen_total",
            help: "Packets the slow test middleware got through.",
            kind: switchboard_core::middleware::MetricKind::Counter,
            labels: vec![],
            value: self.seen as f64,
        }]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_drops_and_own_metrics_are_exported_and_notify_reaches_the_backend() {
    for per_room in [false, true] {
        let mut config = Settings::default();
        config.server.workers = 2;
        config.rpc.listen = "127.0.0.1:0".to_owned();
        config.rpc.token = TOKEN.to_owned();
        config.metrics.listen = "127.0.0.1:0".to_owned();
        config.metrics.per_room_labels = per_room;
        config.webrtc.port_min = 0;
        config.webrtc.port_max = 0;
        config.middleware.queue_capacity = 4;
        config.middleware.attach = vec!["slowpoke".to_owned()];
        let app = App::start_with_middleware(
            Arc::new(config),
            switchboard::rpc::MethodTable::builtin(),
            vec![Arc::new(Slowpoke)],
        )
        .await
        .expect("server starts");
        let client = client(&app).await;
        let mut notifications = client.notifications().expect("notifications");
        client.subscribe(None).await.expect("subscribed");
        let session = Session::run(&app, &client).await;

        // The notification arrives over RPC as a `middleware` event.
        let data = tokio::time::timeout(DEADLINE, async {
            loop {
                match notifications.recv().await.expect("connection open") {
                    switchboard::client::Notification::Event(
                        switchboard_core::event::Event::Middleware {
                            router,
                            middleware,
                            name,
                            data,
                        },
                    ) if name == "saw_producer" => {
                        assert_eq!((router, middleware.as_str()), (session.router, "slowpoke"));
                        break data;
                    }
                    _ => continue,
                }
            }
        })
        .await
        .expect("a middleware event in time");
        assert_eq!(data["producer"], session.producer.as_str());

        let name = [("name", "slowpoke")];
        let router = session.router.to_string();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let m = loop {
            let m = Metrics::scrape(&app).await;
            let queued = m.sum("switchboard_middleware_queued_packets_total", &name);
            let delivered = m.sum("switchboard_middleware_delivered_packets_total", &name);
            let own = if per_room {
                m.get(
                    "switchboard_middleware_slowpoke_rtp_seen_total",
                    &[("router", &router)],
                )
            } else {
                m.get("switchboard_middleware_slowpoke_rtp_seen_total", &[])
            };
            if queued > 0.0 && delivered == queued && own == Some(delivered) {
                break m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "middleware counters did not settle:\n{}",
                m.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        promtool_check(&m.text);
        let queued = m.sum("switchboard_middleware_queued_packets_total", &name);
        let dropped = m.sum("switchboard_middleware_dropped_packets_total", &name);
        assert_eq!(queued + dropped, f64::from(PACKETS), "{}", m.text);
        assert!(dropped > 0.0, "{}", m.text);
        // The RPC stats show the same numbers.
        let stats = client
            .call_value("router.stats", json!({ "router": session.router }))
            .await
            .expect("stats");
        assert_eq!(stats["middleware"][0]["dropped"].as_f64(), Some(dropped));
        app.shutdown(DEADLINE).await.expect("shuts down");
    }
}
