//! A cluster of nodes on a real Redis (`redis-server`, started by each test on a Unix socket
//! of its own): nodes register and see each other, any node says which node owns a room or a
//! producer, a SIGKILLed node is swept after its TTL, and a Redis outage leaves local work
//! running, makes cluster requests fail fast with `cluster_unavailable`, and heals when Redis
//! returns (the directory rewritten from the nodes' own state).

mod common;

use common::{Redis, eventually, is_pli};

use nix::sys::signal::Signal;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::App;
use switchboard::client::protocol::ClusterLocateParams;
use switchboard::client::{Client, ClientError};
use switchboard::settings::Settings;
use switchboard_actors::RouterOptions;
use switchboard_core::{ErrorCode, RouterId};
use switchboard_transports::{DirectEndpoint, DirectPacket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(15);
const HEARTBEAT_MS: u64 = 100;
const TTL_MS: u64 = 800;

fn config(redis: &Redis, node: &str) -> Settings {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = "127.0.0.1:0".to_owned();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    config.cluster.redis_url = redis.url();
    config.cluster.node_id = node.to_owned();
    config.cluster.heartbeat_ms = HEARTBEAT_MS;
    config.cluster.node_ttl_ms = TTL_MS;
    config.cluster.redis_timeout_ms = 200;
    config.cluster.key_prefix = "sbtest".to_owned();
    // Rooms stay where they are asked for, except in the placement test: which idle node is
    // "least loaded" would otherwise depend on the machine's noise.
    config.cluster.place_rooms = false;
    // Likewise peers join the room's first node unless a test asks otherwise.
    config.cluster.span_rooms = false;
    config
}

async fn node(redis: &Redis, id: &str) -> (App, Client) {
    node_with(config(redis, id)).await
}

async fn node_with(config: Settings) -> (App, Client) {
    let app = App::start(Arc::new(config)).await.expect("node starts");
    let addr = app.rpc_tcp_addr().expect("rpc on TCP").to_string();
    let client = Client::connect(&addr, None).await.expect("connects");
    (app, client)
}

async fn node_ids(client: &Client) -> Option<Vec<String>> {
    let nodes = client.cluster_nodes().await.ok()?;
    Some(nodes.nodes.into_iter().map(|n| n.id).collect())
}

/// The cluster's node ids once `count` nodes are registered, as `client`'s node sees them.
async fn registered(client: &Client, count: usize) -> Vec<String> {
    eventually(&format!("{count} nodes registered"), DEADLINE, || async {
        node_ids(client).await.filter(|ids| ids.len() == count)
    })
    .await
}

async fn owner(client: &Client, router: RouterId) -> Result<String, ClientError> {
    let params = ClusterLocateParams {
        router: Some(router),
        producer: None,
    };
    client.cluster_locate(&params).await.map(|l| l.node)
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

/// One HTTP GET; returns the status code.
async fn http_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    http_get(addr, path).await.0
}

/// One HTTP GET; returns the status code and the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reads");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, response)
}

/// The value of one series in a `/metrics` scrape, named as the exposition writes it (with
/// its labels, if any).
async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_see_each_other_and_locate_each_others_objects() {
    let redis = Redis::start("locate");
    let (a, a_client) = node(&redis, "node-a").await;
    let (b, b_client) = node(&redis, "node-b").await;

    let ids = registered(&b_client, 2).await;
    assert_eq!(ids, ["node-a", "node-b"]);
    let listed = b_client.cluster_nodes().await.expect("nodes");
    assert_eq!(listed.node, "node-b", "the answering node says who it is");
    let a_entry = &listed.nodes[0];
    assert_eq!(a_entry.rpc, a.rpc_tcp_addr().unwrap().to_string());
    assert_eq!(a_entry.workers, 1);

    // A room and a producer on node A, located through node B.
    let room = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("room on A");
    let transport = a_client
        .call_value(
            "transport.create",
            json!({"router": room.id.to_string(), "kind": "direct"}),
        )
        .await
        .expect("transport");
    let producer = a_client
        .call_value(
            "producer.create",
            json!({"transport": transport["id"], "kind": "audio", "rtp_parameters": {
                "codecs": [{"mime_type": "audio/opus", "payload_type": 111,
                            "clock_rate": 48000, "channels": 2}],
                "encodings": [{"ssrc": 1234}]}}),
        )
        .await
        .expect("producer");
    let producer_id = producer["id"]
        .as_str()
        .expect("producer id")
        .parse()
        .unwrap();
    let located = eventually("the room in the directory", DEADLINE, || async {
        owner(&b_client, room.id).await.ok()
    })
    .await;
    assert_eq!(located, "node-a");
    let by_producer = eventually("the producer in the directory", DEADLINE, || async {
        b_client
            .cluster_locate(&ClusterLocateParams {
                router: None,
                producer: Some(producer_id),
            })
            .await
            .ok()
    })
    .await;
    assert_eq!(by_producer.node, "node-a");
    assert_eq!(
        by_producer.rpc.as_deref(),
        Some(a.rpc_tcp_addr().unwrap().to_string().as_str())
    );
    let err = b_client
        .cluster_locate(&ClusterLocateParams::default())
        .await
        .expect_err("neither router nor producer");
    assert_eq!(code(&err), Some(ErrorCode::InvalidParams));

    // Closing the room removes it from the directory.
    a_client.close_router(room.id).await.expect("close");
    let err = eventually(
        "the closed room gone from the directory",
        DEADLINE,
        || async { owner(&b_client, room.id).await.err() },
    )
    .await;
    assert_eq!(code(&err), Some(ErrorCode::NotFound), "{err}");

    // Room (its owner and that A holds it) written by `router.create` before it answered
    // and again from its event, transport and producer written, then all four removed (the
    // transport and the producer closed with their room).
    let ops = eventually("ten directory operations on A", DEADLINE, || async {
        let ops = a.cluster.as_ref().unwrap().stats().directory_operations;
        (ops >= 10).then_some(ops)
    })
    .await;
    assert_eq!(ops, 10);

    // A node that shuts down leaves at once, without waiting for its TTL.
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
    let ids = node_ids(&b_client).await.expect("nodes");
    assert_eq!(ids, ["node-b"]);
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_swept_after_its_ttl() {
    let redis = Redis::start("kill");
    let (b, b_client) = node(&redis, "node-b").await;
    let socket = std::env::temp_dir().join(format!("sb-cluster-c-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let url = redis.url();
    let socket_setting = format!("rpc.unix_socket={}", socket.display());
    let mut c = common::Running::start(&[
        "--rpc-listen",
        "",
        "--metrics-listen",
        "",
        "--workers",
        "1",
        "--set",
        &socket_setting,
        "--set",
        &format!("cluster.redis_url={url}"),
        "--set",
        "cluster.node_id=node-c",
        "--set",
        &format!("cluster.heartbeat_ms={HEARTBEAT_MS}"),
        "--set",
        &format!("cluster.node_ttl_ms={TTL_MS}"),
        "--set",
        "cluster.key_prefix=sbtest",
        "--set",
        "webrtc.port_min=0",
        "--set",
        "webrtc.port_max=0",
    ]);
    c.wait_for("registered in the cluster", DEADLINE);
    let c_client = Client::connect(&format!("unix:{}", socket.display()), None)
        .await
        .expect("connects to C");
    let room = c_client
        .create_router(RouterOptions::default())
        .await
        .expect("room on C");
    eventually("C's room in the directory", DEADLINE, || async {
        owner(&b_client, room.id)
            .await
            .ok()
            .filter(|n| n == "node-c")
    })
    .await;

    c.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let _ = c.child.wait();
    eventually("C gone from the cluster", DEADLINE, || async {
        node_ids(&b_client).await.filter(|ids| ids == &["node-b"])
    })
    .await;
    let err = eventually("C's room gone from the directory", DEADLINE, || async {
        owner(&b_client, room.id).await.err()
    })
    .await;
    assert_eq!(code(&err), Some(ErrorCode::NotFound), "{err}");
    // Within the TTL plus a few heartbeats (generous for a loaded CI machine).
    assert!(
        killed.elapsed() < Duration::from_millis(TTL_MS) + Duration::from_secs(5),
        "swept after {:?}",
        killed.elapsed()
    );
    assert_eq!(b.cluster.as_ref().unwrap().stats().nodes_lost, 1);
    let _ = std::fs::remove_file(&socket);
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_local_work_and_heals() {
    let mut redis = Redis::start("outage");
    let (a, a_client) = node(&redis, "node-a").await;
    let metrics = a.metrics_addr().expect("metrics");
    eventually("A registered", DEADLINE, || async {
        node_ids(&a_client).await.filter(|ids| ids.len() == 1)
    })
    .await;
    assert_eq!(http_status(metrics, "/ready").await, 200);
    let before = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    eventually("the room in the directory", DEADLINE, || async {
        owner(&a_client, before.id).await.ok()
    })
    .await;

    redis.stop();
    // Requests that need the cluster fail fast with their own code ...
    let started = Instant::now();
    let err = eventually("cluster requests refused", DEADLINE, || async {
        a_client.cluster_nodes().await.err()
    })
    .await;
    assert_eq!(code(&err), Some(ErrorCode::ClusterUnavailable), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // ... local work goes on, the node stays alive and says it is not ready.
    let during = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("a local room while Redis is down");
    assert_eq!(http_status(metrics, "/health").await, 200);
    eventually("not ready without Redis", DEADLINE, || async {
        (http_status(metrics, "/ready").await == 503).then_some(())
    })
    .await;
    assert!(!a.cluster.as_ref().unwrap().stats().redis_up);
    assert_eq!(
        metric(metrics, "switchboard_cluster_redis_up").await,
        Some(0.0)
    );
    assert!(metric(metrics, "switchboard_cluster_redis_errors_total").await >= Some(1.0));

    // Redis comes back empty: the node registers again and rewrites its directory entries,
    // the room made during the outage included.
    redis.restart();
    eventually("A registered again", DEADLINE, || async {
        node_ids(&a_client).await.filter(|ids| ids == &["node-a"])
    })
    .await;
    for room in [before.id, during.id] {
        let node = eventually("the directory repaired", DEADLINE, || async {
            owner(&a_client, room).await.ok()
        })
        .await;
        assert_eq!(node, "node-a");
    }
    assert_eq!(http_status(metrics, "/ready").await, 200);
    assert_eq!(
        metric(metrics, "switchboard_cluster_redis_up").await,
        Some(1.0)
    );
    assert_eq!(
        metric(metrics, "switchboard_cluster_nodes").await,
        Some(1.0)
    );
    let stats = a.cluster.as_ref().unwrap().stats();
    assert!(stats.redis_up && stats.redis_errors > 0, "{stats:?}");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

fn opus_packet(seq: u16) -> bytes::Bytes {
    use rtc_shared::marshal::Marshal;
    rtc_rtp::Packet {
        header: rtc_rtp::header::Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: 0x0C1A_57E4,
            ..Default::default()
        },
        payload: bytes::Bytes::from(vec![seq as u8; 80]),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

async fn next_rtp(endpoint: &DirectEndpoint) -> rtc_rtp::Packet {
    use rtc_shared::marshal::Unmarshal;
    loop {
        match tokio::time::timeout(DEADLINE, endpoint.recv()).await {
            Ok(Some(DirectPacket::Rtp(mut bytes))) => {
                return rtc_rtp::Packet::unmarshal(&mut bytes).expect("valid RTP");
            }
            Ok(Some(DirectPacket::Rtcp(_))) => continue,
            Ok(None) => panic!("endpoint closed"),
            Err(_) => panic!("no RTP in time"),
        }
    }
}

fn id_of(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_on_one_node_drives_objects_on_another() {
    let redis = Redis::start("forward");
    let (a, _a_client) = node(&redis, "node-a").await;
    let (b, backend) = node(&redis, "node-b").await;
    registered(&backend, 2).await;

    eventually(
        "B subscribed to the other nodes' events",
        DEADLINE,
        || async {
            b.cluster
                .as_ref()
                .unwrap()
                .stats()
                .receiving_events
                .then_some(())
        },
    )
    .await;
    let mut notifications = backend.notifications().expect("notifications");

    // Everything below goes to node B only; the room is made on node A.
    let room = backend
        .call_value("router.create", json!({"node": "node-a"}))
        .await
        .expect("a room on A through B");
    let room_id = id_of(&room);
    // Events are subscribed on B; the room's events, raised on A, reach B's connection.
    backend
        .call_value("events.subscribe", json!({"router": room_id}))
        .await
        .expect("subscribe on B");
    assert!(a.server.holds("router", &room_id), "the room is on A");
    assert!(!b.server.holds("router", &room_id));
    let publisher = backend
        .call_value(
            "transport.create",
            json!({"router": room_id, "kind": "direct"}),
        )
        .await
        .expect("transport through B");
    let producer = backend
        .call_value(
            "producer.create",
            json!({"transport": id_of(&publisher), "kind": "audio", "rtp_parameters": {
                "codecs": [{"mime_type": "audio/opus", "payload_type": 111,
                            "clock_rate": 48000, "channels": 2}],
                "encodings": [{"ssrc": 0x0C1A_57E4u32}]}}),
        )
        .await
        .expect("producer through B");
    let subscriber = backend
        .call_value(
            "transport.create",
            json!({"router": room_id, "kind": "direct"}),
        )
        .await
        .expect("second transport through B");
    let caps = json!({"codecs": [{"kind": "audio", "mime_type": "audio/opus",
        "preferred_payload_type": 100, "clock_rate": 48000, "channels": 2}]});
    let consumer = backend
        .call_value(
            "consumer.create",
            json!({"transport": id_of(&subscriber), "producer": id_of(&producer),
                   "rtp_capabilities": caps}),
        )
        .await
        .expect("consumer through B");
    for (kind, v) in [
        ("transport", &publisher),
        ("producer", &producer),
        ("consumer", &consumer),
    ] {
        assert!(a.server.holds(kind, &id_of(v)), "the {kind} is on A");
    }

    // Media through the objects made that way, with exact payloads.
    let input = a
        .transports
        .direct
        .endpoint(id_of(&publisher).parse().unwrap())
        .expect("endpoint");
    let output = a
        .transports
        .direct
        .endpoint(id_of(&subscriber).parse().unwrap())
        .expect("endpoint");
    for seq in 0..5u16 {
        input.send_rtp(opus_packet(seq)).expect("inject");
    }
    for seq in 0..5u16 {
        let p = next_rtp(&output).await;
        assert_eq!(p.header.payload_type, 100, "the consumer's payload type");
        assert_eq!(p.payload.as_ref(), vec![seq as u8; 80].as_slice());
    }
    // Answers, errors included, come back as the owner gave them.
    let stats = eventually("the producer's counters through B", DEADLINE, || async {
        let stats = backend
            .call_value("producer.stats", json!({"producer": id_of(&producer)}))
            .await
            .ok()?;
        (stats["counters"]["packets"] == 5).then_some(stats)
    })
    .await;
    assert_eq!(stats["id"], producer["id"]);
    let err = backend
        .call_value(
            "consumer.create",
            json!({"transport": id_of(&subscriber), "producer": id_of(&producer),
                   "rtp_capabilities": {"codecs": [{"kind": "audio", "mime_type": "audio/PCMU",
                       "clock_rate": 8000}]}}),
        )
        .await
        .expect_err("no codec in common");
    assert_eq!(code(&err), Some(ErrorCode::UnsupportedCodec), "{err}");
    let err = backend
        .call_value("router.create", json!({"node": "node-nowhere"}))
        .await
        .expect_err("no such node");
    assert_eq!(code(&err), Some(ErrorCode::NotFound), "{err}");
    let err = backend
        .call_value(
            "cluster.forward",
            json!({"method": "cluster.nodes", "params": {}}),
        )
        .await
        .expect_err("cluster methods are not forwarded");
    assert_eq!(code(&err), Some(ErrorCode::InvalidParams), "{err}");
    assert!(b.cluster.as_ref().unwrap().stats().forwarded_requests >= 7);

    // Closing through B closes on A.
    backend
        .call_value("router.close", json!({"router": room_id}))
        .await
        .expect("close through B");
    assert!(!a.server.holds("router", &room_id));

    // B's connection got A's events for the room, in order, ending with its closure.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &switchboard_core::event::Event| e.name() == "router_closed")
    {
        match tokio::time::timeout(DEADLINE, notifications.recv()).await {
            Ok(Some(switchboard::client::Notification::Event(e))) => seen.push(e),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no router_closed from A; saw {seen:?}"),
        }
    }
    let names: Vec<&str> = seen.iter().map(|e| e.name()).collect();
    let created = |name: &str| names.iter().position(|n| *n == name);
    assert!(
        created("transport_created") < created("producer_created")
            && created("producer_created") < created("consumer_created")
            && created("consumer_created") < created("router_closed"),
        "{names:?}"
    );
    assert!(created("transport_created").is_some(), "{names:?}");
    assert!(
        seen.iter()
            .all(|e| e.router().map(|r| r.to_string()) == Some(room_id.clone())),
        "only the subscribed room's events: {names:?}"
    );
    assert!(b.cluster.as_ref().unwrap().stats().events_received >= names.len() as u64);
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_is_piped_between_nodes_with_keyframe_requests_back() {
    let redis = Redis::start("pipe");
    let (a, _a_client) = node(&redis, "node-a").await;
    let (b, backend) = node(&redis, "node-b").await;
    registered(&backend, 2).await;
    let feedback = json!([{"type": "nack"}, {"type": "nack", "parameter": "pli"}]);

    // A publisher in a room on A; a room on B; the backend talks to B only.
    let room_a = id_of(
        &backend
            .call_value("router.create", json!({"node": "node-a"}))
            .await
            .expect("room on A"),
    );
    let room_b = id_of(
        &backend
            .call_value("router.create", json!({}))
            .await
            .expect("room on B"),
    );
    let publisher = id_of(
        &backend
            .call_value(
                "transport.create",
                json!({"router": room_a, "kind": "direct"}),
            )
            .await
            .expect("publisher transport"),
    );
    let producer = id_of(
        &backend
            .call_value(
                "producer.create",
                json!({"transport": publisher, "kind": "video", "rtp_parameters": {
                    "codecs": [{"mime_type": "video/VP8", "payload_type": 96,
                                "clock_rate": 90000, "rtcp_feedback": feedback}],
                    "encodings": [{"ssrc": 0x0B1D_E0E0u32}]}}),
            )
            .await
            .expect("producer on A"),
    );

    let pipe = backend
        .call_value(
            "cluster.pipe",
            json!({"producer": producer, "router": room_b}),
        )
        .await
        .expect("piped into B");
    let piped = pipe["producer"]
        .as_str()
        .expect("piped producer")
        .to_owned();
    assert!(
        b.server.holds("producer", &piped),
        "the piped producer is on B"
    );
    assert!(
        a.server
            .holds("consumer", pipe["source_consumer"].as_str().unwrap())
    );

    let subscriber = id_of(
        &backend
            .call_value(
                "transport.create",
                json!({"router": room_b, "kind": "direct"}),
            )
            .await
            .expect("subscriber transport on B"),
    );
    let consumer = backend
        .call_value(
            "consumer.create",
            json!({"transport": subscriber, "producer": piped, "rtp_capabilities": {
                "codecs": [{"kind": "video", "mime_type": "video/VP8",
                            "preferred_payload_type": 101, "clock_rate": 90000,
                            "rtcp_feedback": feedback}]}}),
        )
        .await
        .expect("consumer of the piped producer");
    let consumer_ssrc = consumer["rtp_parameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .expect("consumer ssrc") as u32;

    let input = a
        .transports
        .direct
        .endpoint(publisher.parse().unwrap())
        .expect("endpoint");
    let output = b
        .transports
        .direct
        .endpoint(subscriber.parse().unwrap())
        .expect("endpoint");
    // Node A to node B over UDP and SRTP, then out on B with B's consumer's numbering.
    for seq in 0..10u16 {
        input
            .send_rtp(common::vp8_packet(0x0B1D_E0E0, seq, seq == 0, b"piped-frame").into())
            .expect("inject");
    }
    for seq in 0..10u16 {
        let p = next_rtp(&output).await;
        assert_eq!(p.header.payload_type, 101);
        assert_eq!(p.header.ssrc, consumer_ssrc);
        let expected = common::vp8_payload(seq, seq == 0, b"piped-frame");
        assert_eq!(p.payload.as_ref(), expected.as_slice(), "packet {seq}");
    }
    let stats = backend
        .call_value("transport.stats", json!({"transport": pipe["transport"]}))
        .await
        .expect("pipe transport stats");
    assert!(
        stats["plugin"]["rtp_received"].as_u64() >= Some(10),
        "{stats}"
    );
    assert_eq!(stats["plugin"]["srtp_failures"], 0, "{stats}");

    // Both nodes count the traffic between them in /metrics, by the node at the other end.
    let pipe_packets = |node: &str, direction: &str| {
        format!(
            "switchboard_cluster_pipe_packets_total{{node=\"{node}\",direction=\"{direction}\"}}"
        )
    };
    let b_metrics = b.metrics_addr().expect("B's metrics");
    let a_metrics = a.metrics_addr().expect("A's metrics");
    let received_on_b = metric(b_metrics, &pipe_packets("node-a", "in"))
        .await
        .expect("B counts what came from A");
    assert!(received_on_b >= 10.0, "{received_on_b}");
    let sent_by_a = metric(a_metrics, &pipe_packets("node-b", "out"))
        .await
        .expect("A counts what it sent to B");
    assert!(sent_by_a >= 10.0, "{sent_by_a}");

    // A keyframe request on B travels back to the publisher on A.
    let source_consumer = pipe["source_consumer"].clone();
    let plis_before = backend
        .call_value("consumer.stats", json!({"consumer": source_consumer}))
        .await
        .expect("source consumer stats")["counters"]["plis"]
        .as_u64()
        .unwrap_or(0);
    backend
        .call_value(
            "consumer.request_keyframe",
            json!({"consumer": consumer["id"]}),
        )
        .await
        .expect("keyframe request on B");
    eventually(
        "the PLI reached the source consumer on A",
        DEADLINE,
        || async {
            let stats = backend
                .call_value("consumer.stats", json!({"consumer": source_consumer}))
                .await
                .ok()?;
            (stats["counters"]["plis"].as_u64()? > plis_before).then_some(())
        },
    )
    .await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, input.recv()).await {
            Ok(Some(DirectPacket::Rtcp(rtcp))) if is_pli(&rtcp) => break,
            Ok(Some(_)) => continue,
            _ => panic!("no PLI reached the publisher on A"),
        }
    }

    // Node A goes away: B closes its end of the pipe with `node_lost`, and the piped producer
    // and its consumer with it, and the backend hears of each.
    let mut notifications = backend.notifications().expect("notifications");
    backend
        .call_value("events.subscribe", json!({"router": room_b}))
        .await
        .expect("subscribe to B's room");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
    let mut seen = Vec::new();
    let closed =
        |seen: &[switchboard_core::event::Event], name: &str| seen.iter().any(|e| e.name() == name);
    while !(closed(&seen, "transport_closed")
        && closed(&seen, "producer_closed")
        && closed(&seen, "consumer_closed"))
    {
        match tokio::time::timeout(DEADLINE, notifications.recv()).await {
            Ok(Some(switchboard::client::Notification::Event(e))) => seen.push(e),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("the pipe was not closed; saw {seen:?}"),
        }
    }
    use switchboard_core::event::{CloseReason, Event};
    let pipe_transport: switchboard_core::TransportId =
        pipe["transport"].as_str().unwrap().parse().unwrap();
    assert!(
        seen.iter().any(|e| matches!(e,
            Event::TransportClosed { transport, reason: CloseReason::NodeLost, .. }
                if *transport == pipe_transport)),
        "{seen:?}"
    );
    assert!(!b.server.holds("producer", &piped));
    // The closed pipe's traffic stays counted.
    assert!(
        metric(b_metrics, &pipe_packets("node-a", "in")).await >= Some(received_on_b),
        "the counter went backwards when the pipe closed"
    );
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_room_goes_to_the_least_loaded_node() {
    let redis = Redis::start("place");
    let placing = |id: &str| {
        let mut c = config(&redis, id);
        c.cluster.place_rooms = true;
        c
    };
    let (a, a_client) = node_with(placing("node-a")).await;
    let (b, _b_client) = node_with(placing("node-b")).await;
    registered(&a_client, 2).await;
    // Equally loaded: the node asked keeps the room.
    let here = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    assert!(a.server.holds("router", &here.id.to_string()));
    // A has more rooms once its entry says so: the next room asked of A goes to B.
    eventually("A's entry counting its room", DEADLINE, || async {
        let nodes = a_client.cluster_nodes().await.ok()?;
        (nodes.nodes[0].rooms == 1).then_some(())
    })
    .await;
    let placed = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    assert!(
        b.server.holds("router", &placed.id.to_string()),
        "the room went to the emptier node"
    );
    // A room asked for on a worker stays on the node asked.
    let pinned = a_client
        .call_value("router.create", json!({"worker": 0}))
        .await
        .expect("room on a worker");
    assert!(a.server.holds("router", pinned["id"].as_str().unwrap()));
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_places_new_rooms_elsewhere_or_refuses_them() {
    let redis = Redis::start("drain");
    let (a, a_client) = node(&redis, "node-a").await;
    let (b, _b_client) = node(&redis, "node-b").await;
    let metrics = a.metrics_addr().expect("metrics");
    registered(&a_client, 2).await;
    let kept = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("a room before the drain");

    let status = a_client
        .call_value("server.drain", json!({}))
        .await
        .expect("drain");
    assert_eq!(status, json!({"draining": true, "rooms": 1}));
    assert_eq!(http_status(metrics, "/ready").await, 503);
    assert_eq!(http_status(metrics, "/health").await, 200);
    eventually("A listed as draining", DEADLINE, || async {
        let nodes = a_client.cluster_nodes().await.ok()?;
        (nodes.nodes[0].state == switchboard::cluster::NodeState::Draining).then_some(())
    })
    .await;
    // /metrics shows the cluster as A's heartbeat read it: A draining, B serving.
    eventually(
        "A's /metrics shows both nodes' states",
        DEADLINE,
        || async {
            let draining = r#"switchboard_cluster_node_state{node="node-a",state="draining"}"#;
            let serving = r#"switchboard_cluster_node_state{node="node-b",state="serving"}"#;
            (metric(metrics, draining).await == Some(1.0)
                && metric(metrics, serving).await == Some(1.0))
            .then_some(())
        },
    )
    .await;
    let (_, body) = http_get(metrics, "/metrics").await;
    assert!(
        !body.contains(r#"switchboard_cluster_node_state{node="node-a",state="serving"}"#),
        "one state per node"
    );
    assert!(body.contains(r#"switchboard_cluster_node_load_percent{node="node-b"}"#));
    // New rooms asked of A go to B; A's existing room goes on.
    let placed = a_client
        .create_router(RouterOptions::default())
        .await
        .expect("a room, placed elsewhere");
    assert!(b.server.holds("router", &placed.id.to_string()));
    assert!(a.server.holds("router", &kept.id.to_string()));
    a_client
        .call_value(
            "transport.create",
            json!({"router": kept.id.to_string(), "kind": "direct"}),
        )
        .await
        .expect("the draining node's rooms still take transports");
    // Nor does a draining node open a router of another node's room.
    let err = a_client
        .call_value("cluster.span", json!({"router": placed.id.to_string()}))
        .await
        .expect_err("a draining node opens no room");
    assert_eq!(code(&err), Some(ErrorCode::Closed), "{err}");

    // With no other node to take it, a new room is refused.
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    let err = a_client
        .create_router(RouterOptions::default())
        .await
        .expect_err("no node takes new rooms");
    assert_eq!(code(&err), Some(ErrorCode::Closed), "{err}");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_drain_waits_for_the_rooms_to_close() {
    let socket = std::env::temp_dir().join(format!("sb-drain-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let socket_setting = format!("rpc.unix_socket={}", socket.display());
    let mut server = common::Running::start(&[
        "--rpc-listen",
        "",
        "--metrics-listen",
        "",
        "--workers",
        "1",
        "--set",
        &socket_setting,
        "--set",
        "cluster.drain_on_sigterm=true",
        "--set",
        "webrtc.port_min=0",
        "--set",
        "webrtc.port_max=0",
    ]);
    server.wait_for("switchboard ready", DEADLINE);
    let client = Client::connect(&format!("unix:{}", socket.display()), None)
        .await
        .expect("connects");
    let room = client
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    server.signal(Signal::SIGTERM);
    server.wait_for("draining", DEADLINE);
    // Still serving the open room, refusing new ones.
    let err = eventually("new rooms refused", DEADLINE, || async {
        client.create_router(RouterOptions::default()).await.err()
    })
    .await;
    assert_eq!(code(&err), Some(ErrorCode::Closed), "{err}");
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    // The last room closes: the server shuts down by itself, cleanly.
    client.close_router(room.id).await.expect("close");
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status:?}");
    assert!(
        server.seen.iter().any(|l| l.contains("drained")),
        "{}",
        server.seen.join("\n")
    );
    let _ = std::fs::remove_file(&socket);
}

/// The SSRC a consumer sends on (from `consumer.create`'s answer).
fn ssrc_of(consumer: &serde_json::Value) -> u32 {
    consumer["rtp_parameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .expect("consumer ssrc") as u32
}

/// A VP8 producer on `transport`, sending on `ssrc`; its id.
async fn publish_vp8(backend: &Client, transport: &str, ssrc: u32) -> String {
    id_of(
        &backend
            .call_value(
                "producer.create",
                json!({"transport": transport, "kind": "video", "rtp_parameters": vp8_track(ssrc)}),
            )
            .await
            .expect("a VP8 producer"),
    )
}

/// The RTP parameters of a VP8 track sending on `ssrc`.
fn vp8_track(ssrc: u32) -> serde_json::Value {
    json!({
        "codecs": [{"mime_type": "video/VP8", "payload_type": 96, "clock_rate": 90000,
                    "rtcp_feedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]}],
        "encodings": [{"ssrc": ssrc}]
    })
}

fn vp8_receiver() -> serde_json::Value {
    json!({"codecs": [{"kind": "video", "mime_type": "video/VP8",
                       "preferred_payload_type": 101, "clock_rate": 90000}]})
}

/// Sends ten VP8 packets (numbered from `first`, a keyframe first) into `input` and checks
/// that `output` gets each with its payload, on `ssrc` (other streams on `output` are
/// skipped, as are packets sent before these).
async fn vp8_flows(
    input: &DirectEndpoint,
    (from_ssrc, first): (u32, u16),
    output: &DirectEndpoint,
    ssrc: u32,
    tag: &[u8],
) {
    let seqs = || (0..10u16).map(|i| (i, first.wrapping_add(i)));
    for (i, seq) in seqs() {
        input
            .send_rtp(common::vp8_packet(from_ssrc, seq, i == 0, tag).into())
            .expect("inject");
    }
    let expected: Vec<Vec<u8>> = seqs()
        .map(|(i, seq)| common::vp8_payload(seq, i == 0, tag))
        .collect();
    let mut got = 0;
    while got < expected.len() {
        let p = next_rtp(output).await;
        // Before the first of these, anything on the stream was sent earlier.
        if p.header.ssrc != ssrc || (got == 0 && p.payload.as_ref() != expected[0].as_slice()) {
            continue;
        }
        assert_eq!(p.payload.as_ref(), expected[got].as_slice(), "packet {got}");
        got += 1;
    }
}

/// A consumer of `producer` on `transport`, once the producer's track has reached the
/// transport's node.
async fn consume_when_piped(
    backend: &Client,
    transport: &str,
    producer: &str,
) -> serde_json::Value {
    eventually(
        "the track piped to the consumer's node",
        DEADLINE,
        || async {
            backend
                .call_value(
                    "consumer.create",
                    json!({"transport": transport, "producer": producer,
                       "rtp_capabilities": vp8_receiver()}),
                )
                .await
                .ok()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_nodes_with_tracks_piped_both_ways() {
    let redis = Redis::start("span");
    let (a, _a_client) = node(&redis, "node-a").await;
    let (b, backend) = node(&redis, "node-b").await;
    registered(&backend, 2).await;
    let room = id_of(
        &backend
            .call_value("router.create", json!({"node": "node-a"}))
            .await
            .expect("room on A"),
    );
    let mut notifications = backend.notifications().expect("notifications");
    backend
        .call_value("events.subscribe", json!({"router": room}))
        .await
        .expect("subscribe to the room");

    // Alice joins on A and publishes.
    backend
        .call_value("peer.join", json!({"router": room, "peer": "alice"}))
        .await
        .expect("alice joins");
    let alice_t = id_of(
        &backend
            .call_value(
                "transport.create",
                json!({"router": room, "kind": "direct", "peer": "alice"}),
            )
            .await
            .expect("alice's transport"),
    );
    assert!(a.server.holds("transport", &alice_t));
    let video = publish_vp8(&backend, &alice_t, 0xA11C_E000).await;

    // Bob joins the same room on B: B opens its router of the room, with alice's track
    // piped in before bob is in, and bob's requests reach B whichever node gets them.
    backend
        .call_value(
            "peer.join",
            json!({"router": room, "peer": "bob", "node": "node-b"}),
        )
        .await
        .expect("bob joins on B");
    assert!(
        b.server.holds("router", &room),
        "B has a router of the room"
    );
    assert!(a.server.holds("router", &room));
    let taken = backend
        .call_value("router.create", json!({"id": room, "node": "node-b"}))
        .await
        .expect_err("a room id is taken once per node");
    assert_eq!(code(&taken), Some(ErrorCode::AlreadyExists), "{taken}");
    let twice = backend
        .call_value(
            "peer.join",
            json!({"router": room, "peer": "alice", "node": "node-b"}),
        )
        .await
        .expect_err("alice is in the room on A already");
    assert_eq!(code(&twice), Some(ErrorCode::AlreadyExists), "{twice}");
    // The room is still A's in the directory: B's router of it is a copy.
    assert_eq!(
        owner(&backend, room.parse().unwrap()).await.unwrap(),
        "node-a"
    );
    let bob_t = id_of(
        &_a_client
            .call_value(
                "transport.create",
                json!({"router": room, "kind": "direct", "peer": "bob"}),
            )
            .await
            .expect("bob's transport, asked of A"),
    );
    assert!(
        b.server.holds("transport", &bob_t),
        "bob's transport is on B"
    );
    let bob_video = backend
        .call_value(
            "consumer.create",
            json!({"transport": bob_t, "producer": video, "rtp_capabilities": vp8_receiver()}),
        )
        .await
        .expect("bob consumes alice's video by its id");
    assert!(
        b.server
            .holds("consumer", bob_video["id"].as_str().unwrap())
    );
    let alice_in = a
        .transports
        .direct
        .endpoint(alice_t.parse().unwrap())
        .expect("alice's endpoint");
    let bob_in = b
        .transports
        .direct
        .endpoint(bob_t.parse().unwrap())
        .expect("bob's endpoint");
    let bob_video_ssrc = ssrc_of(&bob_video);
    vp8_flows(
        &alice_in,
        (0xA11C_E000, 0),
        &bob_in,
        bob_video_ssrc,
        b"a-to-b",
    )
    .await;

    // A track alice publishes once the room spans reaches B as well; one bob publishes on B
    // reaches alice on A.
    let screen = publish_vp8(&backend, &alice_t, 0xA11C_E001).await;
    let bob_screen = consume_when_piped(&backend, &bob_t, &screen).await;
    let bob_screen_ssrc = ssrc_of(&bob_screen);
    vp8_flows(
        &alice_in,
        (0xA11C_E001, 0),
        &bob_in,
        bob_screen_ssrc,
        b"later",
    )
    .await;
    let bobs = publish_vp8(&backend, &bob_t, 0x0B0B_0000).await;
    let alice_gets = consume_when_piped(&backend, &alice_t, &bobs).await;
    assert!(
        a.server
            .holds("consumer", alice_gets["id"].as_str().unwrap())
    );
    let alice_ssrc = ssrc_of(&alice_gets);
    vp8_flows(&bob_in, (0x0B0B_0000, 0), &alice_in, alice_ssrc, b"b-to-a").await;

    // The backend hears the room's events from both nodes on its one connection.
    use switchboard_core::event::Event;
    let mut joined = Vec::new();
    while joined.len() < 2 {
        match tokio::time::timeout(DEADLINE, notifications.recv()).await {
            Ok(Some(switchboard::client::Notification::Event(Event::PeerJoined {
                peer, ..
            }))) => joined.push(peer.0),
            Ok(Some(_)) => {}
            _ => panic!("peer_joined events missing; saw {joined:?}"),
        }
    }
    joined.sort();
    assert_eq!(joined, ["alice", "bob"]);

    // Alice's first track closing closes its copy on B and bob's consumer of it.
    backend
        .call_value("producer.close", json!({"producer": video}))
        .await
        .expect("close alice's video");
    let bob_video_id = bob_video["id"].as_str().unwrap().to_owned();
    eventually(
        "bob's consumer closed with the original",
        DEADLINE,
        || async { (!b.server.holds("consumer", &bob_video_id)).then_some(()) },
    )
    .await;
    assert!(
        b.server
            .holds("consumer", bob_screen["id"].as_str().unwrap())
    );

    // Bob leaving, asked of A, closes his transport on B; the room closing closes B's router.
    _a_client
        .call_value("peer.leave", json!({"router": room, "peer": "bob"}))
        .await
        .expect("bob leaves");
    assert!(!b.server.holds("transport", &bob_t));
    backend
        .call_value("router.close", json!({"router": room}))
        .await
        .expect("close the room, asked of B");
    // The room closes where it began, and B's router of it follows.
    assert!(!a.server.holds("router", &room), "A's router closed");
    eventually("B's router of the room closed", DEADLINE, || async {
        (!b.server.holds("router", &room)).then_some(())
    })
    .await;
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_room_takes_new_peers_on_another_node() {
    let redis = Redis::start("spill");
    // A counts itself full at 20 packets per second; B is idle.
    let mut a_config = config(&redis, "node-a");
    a_config.cluster.span_rooms = true;
    a_config.placement.max_worker_packets_per_second = 20;
    let mut b_config = config(&redis, "node-b");
    b_config.cluster.span_rooms = true;
    let (a, backend) = node_with(a_config).await;
    let (b, _b_client) = node_with(b_config).await;
    registered(&backend, 2).await;
    let room = id_of(
        &backend
            .call_value("router.create", json!({}))
            .await
            .expect("room on A"),
    );
    // While A has headroom, peers join it.
    backend
        .call_value("peer.join", json!({"router": room, "peer": "alice"}))
        .await
        .expect("alice joins");
    assert!(!b.server.holds("router", &room), "no reason to span yet");
    let alice_t = id_of(
        &backend
            .call_value(
                "transport.create",
                json!({"router": room, "kind": "direct", "peer": "alice"}),
            )
            .await
            .expect("alice's transport"),
    );
    let video = publish_vp8(&backend, &alice_t, 0xA11C_E000).await;
    // Alice sends until A's entry says it is over the threshold.
    let alice_in = a
        .transports
        .direct
        .endpoint(alice_t.parse().unwrap())
        .expect("alice's endpoint");
    let next_seq = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let sending = tokio::spawn({
        let alice_in = alice_in.clone();
        let next_seq = next_seq.clone();
        async move {
            loop {
                let seq = next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ =
                    alice_in.send_rtp(common::vp8_packet(0xA11C_E000, seq, false, b"load").into());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    eventually("A's entry showing it loaded", DEADLINE, || async {
        let nodes = backend.cluster_nodes().await.ok()?;
        let a = nodes.nodes.iter().find(|n| n.id == "node-a")?;
        (a.load_percent >= 100).then_some(())
    })
    .await;
    // The next peer joins the room on B, which opens it with alice's track piped in.
    backend
        .call_value("peer.join", json!({"router": room, "peer": "bob"}))
        .await
        .expect("bob joins");
    assert!(b.server.holds("router", &room), "the room spans to B");
    let bob_t = id_of(
        &backend
            .call_value(
                "transport.create",
                json!({"router": room, "kind": "direct", "peer": "bob"}),
            )
            .await
            .expect("bob's transport"),
    );
    assert!(b.server.holds("transport", &bob_t));
    let consumer = backend
        .call_value(
            "consumer.create",
            json!({"transport": bob_t, "producer": video, "rtp_capabilities": vp8_receiver()}),
        )
        .await
        .expect("bob consumes alice's video");
    sending.abort();
    let bob_in = b
        .transports
        .direct
        .endpoint(bob_t.parse().unwrap())
        .expect("bob's endpoint");
    let ssrc = ssrc_of(&consumer);
    let _ = sending.await;
    let first = next_seq.load(std::sync::atomic::Ordering::Relaxed);
    vp8_flows(&alice_in, (0xA11C_E000, first), &bob_in, ssrc, b"spilled").await;
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_fans_out_as_a_tree_and_heals_around_a_lost_relay() {
    let redis = Redis::start("tree");
    // Each node feeds a track to one other node at most: A → B → C.
    let tree = |id: &str| {
        let mut c = config(&redis, id);
        c.cluster.fanout = 1;
        c
    };
    let (a, backend) = node_with(tree("node-a")).await;
    let (b, _b_client) = node_with(tree("node-b")).await;
    let (c, _c_client) = node_with(tree("node-c")).await;
    registered(&backend, 3).await;
    let room = id_of(
        &backend
            .call_value("router.create", json!({}))
            .await
            .expect("room on A"),
    );
    let join = |peer: &'static str, node: &'static str| {
        let backend = &backend;
        let room = room.clone();
        async move {
            backend
                .call_value(
                    "peer.join",
                    json!({"router": room, "peer": peer, "node": node}),
                )
                .await
                .expect("joins");
            id_of(
                &backend
                    .call_value(
                        "transport.create",
                        json!({"router": room, "kind": "direct", "peer": peer}),
                    )
                    .await
                    .expect("transport"),
            )
        }
    };
    let alice_t = join("alice", "node-a").await;
    let video = publish_vp8(&backend, &alice_t, 0x7EE0_0000).await;
    let _bob_t = join("bob", "node-b").await;
    let carol_t = join("carol", "node-c").await;
    assert!(c.server.holds("transport", &carol_t));
    let consumer = consume_when_piped(&backend, &carol_t, &video).await;
    let alice_in = a
        .transports
        .direct
        .endpoint(alice_t.parse().unwrap())
        .expect("alice's endpoint");
    let carol_in = c
        .transports
        .direct
        .endpoint(carol_t.parse().unwrap())
        .expect("carol's endpoint");
    vp8_flows(
        &alice_in,
        (0x7EE0_0000, 0),
        &carol_in,
        ssrc_of(&consumer),
        b"tree",
    )
    .await;
    // C's copy came through B, not from A: A feeds B only.
    let a_cluster = a.cluster.as_ref().unwrap();
    let c_cluster = c.cluster.as_ref().unwrap();
    let a_pipes: Vec<String> = a_cluster.pipe_traffic().await.into_keys().collect();
    let c_pipes: Vec<String> = c_cluster.pipe_traffic().await.into_keys().collect();
    assert_eq!(a_pipes, ["node-b"], "A feeds B only");
    assert_eq!(c_pipes, ["node-b"], "C is fed by B");
    let a_metrics = a.metrics_addr().expect("A's metrics");
    let b_metrics = b.metrics_addr().expect("B's metrics");
    let c_metrics = c.metrics_addr().expect("C's metrics");
    assert_eq!(
        metric(a_metrics, "switchboard_cluster_span_tracks_out").await,
        Some(1.0)
    );
    assert_eq!(
        metric(b_metrics, "switchboard_cluster_span_tracks_out").await,
        Some(1.0)
    );
    assert_eq!(
        metric(c_metrics, "switchboard_cluster_span_tracks_in").await,
        Some(1.0)
    );
    assert_eq!(
        metric(c_metrics, "switchboard_cluster_room_copies").await,
        Some(1.0)
    );
    assert_eq!(
        metric(a_metrics, "switchboard_cluster_room_copies").await,
        Some(0.0),
        "A holds the room's first router"
    );

    // The relay goes away: C's copy closes with its pipe, C pipes the track again from A,
    // and carol's new consumer receives it.
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
    let old = consumer["id"].as_str().unwrap().to_owned();
    eventually("carol's consumer through B closed", DEADLINE, || async {
        (!c.server.holds("consumer", &old)).then_some(())
    })
    .await;
    let again = consume_when_piped(&backend, &carol_t, &video).await;
    vp8_flows(
        &alice_in,
        (0x7EE0_0000, 10),
        &carol_in,
        ssrc_of(&again),
        b"healed",
    )
    .await;
    let c_pipes: Vec<String> = c_cluster.pipe_traffic().await.into_keys().collect();
    assert!(c_pipes.contains(&"node-a".to_owned()), "{c_pipes:?}");
    c.shutdown(Duration::from_secs(5)).await.expect("C stops");
    a.shutdown(Duration::from_secs(5)).await.expect("A stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_outlives_its_first_node() {
    let redis = Redis::start("orphan");
    // A, the room's first node, is a process, so that it can be SIGKILLed.
    let mut a = common::Running::start(&[
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--workers",
        "1",
        "--set",
        &format!("cluster.redis_url={}", redis.url()),
        "--set",
        "cluster.node_id=node-a",
        "--set",
        &format!("cluster.heartbeat_ms={HEARTBEAT_MS}"),
        "--set",
        &format!("cluster.node_ttl_ms={TTL_MS}"),
        "--set",
        "cluster.key_prefix=sbtest",
        "--set",
        "cluster.place_rooms=false",
        "--set",
        "cluster.span_rooms=false",
        "--set",
        "webrtc.port_min=0",
        "--set",
        "webrtc.port_max=0",
        "--set",
        "rtp.port_min=0",
        "--set",
        "rtp.port_max=0",
    ]);
    a.wait_for("registered in the cluster", DEADLINE);
    let (b, backend) = node(&redis, "node-b").await;
    let (c, c_client) = node(&redis, "node-c").await;
    registered(&backend, 3).await;
    let room = id_of(
        &backend
            .call_value("router.create", json!({"node": "node-a"}))
            .await
            .expect("room on A"),
    );
    for (peer, node) in [("bob", "node-b"), ("carol", "node-c")] {
        backend
            .call_value(
                "peer.join",
                json!({"router": room, "peer": peer, "node": node}),
            )
            .await
            .expect("joins");
    }
    assert!(b.server.holds("router", &room) && c.server.holds("router", &room));

    // A dies. The room's remaining node with the lowest id, B, takes the room over: the
    // directory names it, the room takes new peers, and closing it (asked of C) closes it
    // on both.
    a.signal(Signal::SIGKILL);
    let _ = a.child.wait();
    let room_id: RouterId = room.parse().unwrap();
    eventually("B named the room's node", DEADLINE, || async {
        owner(&c_client, room_id)
            .await
            .ok()
            .filter(|n| n == "node-b")
    })
    .await;
    assert!(!b.cluster.as_ref().unwrap().is_copy(room_id));
    assert!(c.cluster.as_ref().unwrap().is_copy(room_id));
    backend
        .call_value("peer.join", json!({"router": room, "peer": "dave"}))
        .await
        .expect("a newcomer joins the room after its first node died");
    c_client
        .call_value("router.close", json!({"router": room}))
        .await
        .expect("close the room, asked of C");
    assert!(!b.server.holds("router", &room));
    eventually("C's router of the room closed", DEADLINE, || async {
        (!c.server.holds("router", &room)).then_some(())
    })
    .await;
    c.shutdown(Duration::from_secs(5)).await.expect("C stops");
    b.shutdown(Duration::from_secs(5)).await.expect("B stops");
}
