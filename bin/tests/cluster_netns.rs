//! Three nodes, each a `switchboard` process in a network namespace of its own with its own
//! address on a bridge this test makes, one `redis-server` (on a Unix socket the namespaces
//! share). The backend talks to node B only. One room: a plain RTP publisher in it sends to
//! node A; subscribers of the same room joined on B and C get every packet with its exact
//! payload, piped over real UDP between the namespaces; a keyframe request on B reaches the
//! publisher as a PLI. Then node C is SIGKILLed (A closes its end of the pipe to C with
//! `node_lost`, and B's backend hears it; A and B keep forwarding), and Redis is stopped for
//! ten seconds (more than six TTLs) and restarted (media keeps flowing throughout, cluster requests fail with
//! `cluster_unavailable`, and the cluster heals, its directory rebuilt). Needs root for
//! `ip netns`, as the test machines give.

mod common;

use common::{Redis, Running, eventually, is_pli};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::client::{Client, Notification};
use switchboard_core::ErrorCode;
use switchboard_core::event::{CloseReason, Event};

const DEADLINE: Duration = Duration::from_secs(20);
const TOKEN: &str = "cluster-netns-test-token";
const TTL_MS: u64 = 1_500;
const SSRC: u32 = 0x5EED_0A0A;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge in this namespace with an address, and `n` namespaces on it, each with its own
/// address. Removed when dropped.
struct Lan {
    bridge: String,
    namespaces: Vec<String>,
    host: Ipv4Addr,
    nodes: Vec<Ipv4Addr>,
}

impl Lan {
    fn create(n: u8) -> Self {
        let pid = std::process::id();
        let subnet = (pid % 250) as u8 + 1;
        let bridge = format!("sbbr{pid}");
        let host = Ipv4Addr::new(10, 97, subnet, 1);
        let mut lan = Self {
            bridge: bridge.clone(),
            namespaces: Vec::new(),
            host,
            nodes: Vec::new(),
        };
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{host}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..n {
            let ns = format!("sbc{pid}{i}");
            let outside = format!("sbv{pid}{i}");
            let inside = format!("sbp{pid}{i}");
            let addr = Ipv4Addr::new(10, 97, subnet, 2 + i);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = Command::new("ip").args(["link", "del", &outside]).output();
            ip(&["netns", "add", &ns]);
            lan.namespaces.push(ns.clone());
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inside,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            lan.nodes.push(addr);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn start_node(lan: &Lan, redis: &Redis, i: usize, name: &str) -> Running {
    let addr = lan.nodes[i];
    let rpc = format!("{addr}:7700");
    let sets = [
        format!("rpc.token={TOKEN}"),
        format!("rtp.listen_ip={addr}"),
        "rtp.port_min=0".to_owned(),
        "rtp.port_max=0".to_owned(),
        "webrtc.port_min=0".to_owned(),
        "webrtc.port_max=0".to_owned(),
        format!("cluster.redis_url={}", redis.url()),
        format!("cluster.node_id={name}"),
        "cluster.heartbeat_ms=200".to_owned(),
        format!("cluster.node_ttl_ms={TTL_MS}"),
        "cluster.key_prefix=netns".to_owned(),
    ];
    let mut args = vec![
        "--rpc-listen",
        &rpc,
        "--metrics-listen",
        "",
        "--workers",
        "1",
    ];
    for s in &sets {
        args.push("--set");
        args.push(s);
    }
    let mut node = Running::start_in(&lan.namespaces[i], &args);
    node.wait_for("registered in the cluster", DEADLINE);
    node
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn vp8(seq: u16) -> Vec<u8> {
    common::vp8_packet(SSRC, seq, seq.is_multiple_of(50), b"netns-frame")
}

/// Reads RTP from `socket` until the packet carrying `seq`'s payload arrives (earlier ones
/// may come first), failing after the deadline.
fn receive(socket: &UdpSocket, seq: u16) {
    use rtc_shared::marshal::Unmarshal;
    let want = &vp8(seq)[12..];
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "packet {seq} did not arrive");
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        // RTCP (sender reports) shares the port.
        if (200..=206).contains(&buf[1]) {
            continue;
        }
        let Ok(p) = rtc_rtp::Packet::unmarshal(&mut &buf[..n]) else {
            continue;
        };
        if p.payload.as_ref() == want {
            return;
        }
    }
}

fn socket(host: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((host, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_namespaces_share_a_room_and_survive_a_lost_node_and_redis() {
    let lan = Lan::create(3);
    let mut redis = Redis::start("netns");
    let _a = start_node(&lan, &redis, 0, "node-a");
    let _b = start_node(&lan, &redis, 1, "node-b");
    let mut c = start_node(&lan, &redis, 2, "node-c");
    let backend = Client::connect(&format!("{}:7700", lan.nodes[1]), Some(TOKEN))
        .await
        .expect("the backend reaches node B");
    let nodes = eventually("three nodes", DEADLINE, || async {
        let n = backend.cluster_nodes().await.ok()?;
        (n.nodes.len() == 3).then_some(n)
    })
    .await;
    let rpcs: Vec<&str> = nodes.nodes.iter().map(|n| n.rpc.as_str()).collect();
    assert_eq!(
        rpcs,
        lan.nodes
            .iter()
            .map(|a| format!("{a}:7700"))
            .collect::<Vec<_>>(),
        "each node on its own address"
    );
    let mut notifications = backend.notifications().expect("notifications");
    backend
        .call_value("events.subscribe", json!({}))
        .await
        .expect("all events");

    let call = |method: &'static str, params: Value| {
        let backend = &backend;
        async move {
            backend
                .call_value(method, params)
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"))
        }
    };
    let feedback = json!([{"type": "nack"}, {"type": "nack", "parameter": "pli"}]);
    // One room, made on A.
    let room = id_of(&call("router.create", json!({"node": "node-a"})).await);

    // The publisher, alice: plain RTP from this namespace to her rtp transport on A.
    call("peer.join", json!({"router": room, "peer": "alice"})).await;
    let publisher = socket(lan.host);
    let input = call(
        "transport.create",
        json!({"router": room, "kind": "rtp", "peer": "alice"}),
    )
    .await;
    assert_eq!(input["local"]["ip"], lan.nodes[0].to_string());
    let input_addr = format!(
        "{}:{}",
        input["local"]["ip"].as_str().unwrap(),
        input["local"]["port"]
    );
    call(
        "transport.connect",
        json!({"transport": id_of(&input), "remote": {
            "ip": lan.host.to_string(), "port": publisher.local_addr().unwrap().port()}}),
    )
    .await;
    let producer = id_of(
        &call(
            "producer.create",
            json!({"transport": id_of(&input), "kind": "video", "rtp_parameters": {
                "codecs": [{"mime_type": "video/VP8", "payload_type": 96, "clock_rate": 90000,
                            "rtcp_feedback": feedback}],
                "encodings": [{"ssrc": SSRC}]}}),
        )
        .await,
    );

    // Subscribers join the same room on B and C: each node opens its router of the room
    // with alice's track piped in, and each subscriber receives plain RTP here.
    let mut subscribers = Vec::new();
    for (i, (peer, node)) in [("bob", "node-b"), ("carol", "node-c")]
        .into_iter()
        .enumerate()
    {
        call(
            "peer.join",
            json!({"router": room, "peer": peer, "node": node}),
        )
        .await;
        let sub = socket(lan.host);
        let out = call(
            "transport.create",
            json!({"router": room, "kind": "rtp", "peer": peer}),
        )
        .await;
        assert_eq!(
            out["local"]["ip"],
            lan.nodes[i + 1].to_string(),
            "{peer}'s transport on {node}"
        );
        call(
            "transport.connect",
            json!({"transport": id_of(&out), "remote": {
                "ip": lan.host.to_string(), "port": sub.local_addr().unwrap().port()}}),
        )
        .await;
        let consumer = call(
            "consumer.create",
            json!({"transport": id_of(&out), "producer": producer, "rtp_capabilities": {
                "codecs": [{"kind": "video", "mime_type": "video/VP8",
                            "preferred_payload_type": 100, "clock_rate": 90000,
                            "rtcp_feedback": feedback}]}}),
        )
        .await;
        let out_addr = format!(
            "{}:{}",
            out["local"]["ip"].as_str().unwrap(),
            out["local"]["port"]
        );
        subscribers.push((sub, consumer, out_addr));
    }

    let mut seq = 0u16;
    let mut send = |n: u16| {
        for _ in 0..n {
            publisher.send_to(&vp8(seq), &input_addr).expect("send");
            seq += 1;
        }
        seq - 1
    };
    let last = send(20);
    for (sub, _, _) in &subscribers {
        receive(sub, last);
    }

    // A PLI from B's subscriber reaches the publisher.
    let (sub_b, consumer_b, out_b) = &subscribers[0];
    let media_ssrc = consumer_b["rtp_parameters"]["encodings"][0]["ssrc"]
        .as_u64()
        .unwrap() as u32;
    let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1];
    pli.extend_from_slice(&media_ssrc.to_be_bytes());
    publisher
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 1500];
    'pli: loop {
        assert!(Instant::now() < deadline, "no PLI reached the publisher");
        sub_b.send_to(&pli, out_b).expect("PLI");
        while let Ok(n) = publisher.recv(&mut buf) {
            if is_pli(&buf[..n]) {
                break 'pli;
            }
        }
    }

    // Node C is killed: A closes its end of the pipe to C with node_lost, B's backend hears
    // it, and A and B keep forwarding.
    c.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let _ = c.child.wait();
    // A's end of the pipe that fed C's router of the room.
    loop {
        match tokio::time::timeout(DEADLINE, notifications.recv()).await {
            Ok(Some(Notification::Event(Event::TransportClosed {
                router,
                reason: CloseReason::NodeLost,
                ..
            }))) if router.to_string() == room => break,
            Ok(Some(_)) => {}
            _ => panic!("no node_lost closure of the pipe to C"),
        }
    }
    assert!(
        killed.elapsed() < Duration::from_millis(TTL_MS) + Duration::from_secs(2),
        "node_lost after {:?}",
        killed.elapsed()
    );
    let ids: Vec<String> = backend
        .cluster_nodes()
        .await
        .expect("nodes")
        .nodes
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    let last = send(10);
    receive(sub_b, last);

    // Redis stops: media keeps flowing, cluster requests fail fast, and it all heals.
    redis.stop();
    let err = eventually("cluster requests refused", DEADLINE, || async {
        backend.cluster_nodes().await.err()
    })
    .await;
    assert_eq!(err.code(), Some(ErrorCode::ClusterUnavailable), "{err}");
    // Ten seconds, well past the nodes' TTL: nothing on the media path notices.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        let last = send(5);
        receive(sub_b, last);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    redis.restart();
    eventually("the cluster back", DEADLINE, || async {
        let n = backend.cluster_nodes().await.ok()?;
        (n.nodes.len() == 2).then_some(())
    })
    .await;
    // The directory was rebuilt from the nodes: A's room is found through B again.
    let located = eventually("A's room in the directory again", DEADLINE, || async {
        backend
            .call_value("cluster.locate", json!({"router": room}))
            .await
            .ok()
    })
    .await;
    assert_eq!(located["node"], "node-a");
    let last = send(10);
    receive(sub_b, last);

    // B drains: bob, who only receives plain RTP, is handed over to A and keeps receiving,
    // now from A's address. The publisher sends steadily meanwhile; the longest silence at
    // bob's socket is the gap the move cost.
    let first_seq = send(0) + 1;
    let publishing = std::thread::spawn({
        let publisher = publisher.try_clone().expect("socket");
        let input_addr = input_addr.clone();
        move || {
            for i in 0..600u16 {
                let _ = publisher.send_to(&vp8(first_seq.wrapping_add(i)), &input_addr);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    call("server.drain", json!({})).await;
    let (from_a, gap) = {
        use rtc_shared::marshal::Unmarshal;
        let mut buf = [0u8; 2048];
        let mut from_a = 0;
        let mut gap = Duration::ZERO;
        let mut last = Instant::now();
        let deadline = Instant::now() + DEADLINE;
        while from_a < 50 {
            assert!(Instant::now() < deadline, "bob got nothing from A");
            let Ok((n, source)) = sub_b.recv_from(&mut buf) else {
                continue;
            };
            if (200..=206).contains(&buf[1]) {
                continue;
            }
            let Ok(p) = rtc_rtp::Packet::unmarshal(&mut &buf[..n]) else {
                continue;
            };
            gap = gap.max(last.elapsed());
            last = Instant::now();
            if source.ip() == std::net::IpAddr::V4(lan.nodes[0]) {
                assert!(p.payload.ends_with(b"netns-frame"), "{:?}", p.payload);
                from_a += 1;
            }
        }
        (from_a, gap)
    };
    loop {
        match tokio::time::timeout(DEADLINE, notifications.recv()).await {
            Ok(Some(Notification::Event(Event::PeerLeft { peer, reason, .. })))
                if peer.0 == "bob" =>
            {
                assert_eq!(reason, CloseReason::Moved);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("B did not let bob go: {other:?}"),
        }
    }
    println!("drain: bob received {from_a} packets from A; longest silence {gap:?}");
    publishing.join().expect("publisher");
}
