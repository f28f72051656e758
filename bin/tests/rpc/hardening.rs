//! Hostile or broken clients of the control socket, each named after what it tries: deep
//! nesting, floods of invalid values, idle and trickling connections, HTTP, oversized
//! frames before auth, short tokens, and an event listener that falls behind.
//!
//! Limits that end in a deadline are set short here, so tests wait for the server's own
//! close (an event) instead of sleeping.

use crate::support::*;
use rmpv::Value as Msgpack;
use serde_json::{Value, json};
use std::sync::Arc;
use switchboard::App;
use switchboard::client::Client;
use switchboard::rpc::RpcServer;
use switchboard::settings::RpcConfig;
use switchboard_actors::RouterOptions;
use switchboard_core::ErrorCode;
use switchboard_core::PeerId;

const TOKEN: &str = "a-token-of-at-least-16-bytes";

fn msgpack(value: &Msgpack) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// `[0, msgid, method, params]`.
fn request(msgid: u32, method: &str, params: Msgpack) -> Vec<u8> {
    msgpack(&Msgpack::Array(vec![
        0.into(),
        msgid.into(),
        method.into(),
        params,
    ]))
}

/// A `router.list` request whose arrays and maps nest `depth` levels deep in all, the
/// request's own array being the first.
fn nested_request(msgid: u32, depth: usize) -> Vec<u8> {
    let mut inner = Msgpack::from(1);
    for _ in 0..depth - 3 {
        inner = Msgpack::Array(vec![inner]);
    }
    // [0, id, "router.list", [{"deep": inner}]]: the params array and map are two levels.
    let params = Msgpack::Array(vec![Msgpack::Map(vec![("deep".into(), inner)])]);
    request(msgid, "router.list", params)
}

/// `server.stats`'s control-socket counters, as JSON.
async fn rpc_stats(client: &Client) -> Value {
    client
        .call_value("server.stats", json!({}))
        .await
        .expect("server.stats")["rpc"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_answered_on_its_msgid() {
    let app = start(|_| {}).await;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
    raw.request(1, "router.list", json!({})).await;
    assert!(raw.response(1).await.0.is_null());

    // Up to the documented 64 levels, the request is read and its parameters judged: the
    // unknown field `deep` is the only thing wrong with it.
    for (msgid, depth) in [(32, 32), (33, 33), (64, 64)] {
        raw.send(&nested_request(msgid, depth)).await;
        let (error, _) = raw.response(msgid).await;
        assert_eq!(error["code"], "invalid_params", "depth {depth}: {error}");
    }
    // One level more is refused, on the request's msgid, so a client waiting on it does not
    // hang; the message gives the limit.
    for (msgid, depth) in [(65, 65), (200, 200)] {
        raw.send(&nested_request(msgid, depth)).await;
        let (error, result) = raw.response(msgid).await;
        assert!(result.is_null());
        assert_eq!(error["code"], "invalid_request", "depth {depth}: {error}");
        assert_eq!(
            error["message"],
            "arrays and maps nested deeper than 64 levels"
        );
    }
    // Without a readable msgid, an error notification is all there is to send.
    raw.send(&[vec![0x91; 100], vec![0xc0]].concat()).await;
    assert_eq!(raw.error_notification().await["code"], "invalid_request");
    // The stream is still in step.
    raw.request(2, "router.list", json!({})).await;
    assert!(raw.response(2).await.0.is_null());
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_flood_gets_one_final_error_and_close() {
    let app = start(|_| {}).await;
    let good = client(&app).await;
    let max = RpcConfig::default().max_protocol_errors as usize;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
    raw.request(1, "router.list", json!({})).await;
    assert!(raw.response(1).await.0.is_null());

    // 64 KiB of small values that are not requests (each byte is a positive fixint).
    raw.send_until_refused(&[0x2a; 64 * 1024]).await;
    let mut answers = Vec::new();
    while let Some(message) = raw.next().await {
        answers.push(message);
    }
    // One answer per invalid value up to the limit, then one final error, then the close.
    assert_eq!(answers.len(), max + 1, "{answers:?}");
    for answer in &answers[..max] {
        assert_eq!(answer[2][0]["code"], "invalid_request", "{answer}");
    }
    let last = &answers[max][2][0];
    assert_eq!(last["code"], "invalid_request", "{last}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("rpc.max_protocol_errors")),
        "{last}"
    );
    assert_eq!(last["data"]["protocol_errors"], max);
    let stats = rpc_stats(&good).await;
    assert_eq!(stats["protocol_error_closes"], 1, "{stats}");
    good.server_info().await.unwrap();
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_preauth_connections_do_not_lock_out_the_backend() {
    let app = start(|c| {
        c.rpc.token = TOKEN.to_owned();
        c.rpc.max_connections = 4;
        c.rpc.max_preauth_connections = 4;
    })
    .await;
    let addr = app.rpc_tcp_addr().unwrap();

    // 64 connections that never authenticate, some idle, some trickling the start of an
    // auth request.
    let mut idle = Vec::new();
    for i in 0..64 {
        let mut raw = Raw::connect(addr).await;
        if i % 2 == 1 {
            raw.send(&[0x94, 0x00]).await;
        }
        idle.push(raw);
    }
    // The backend still gets in, and works.
    let backend = Client::connect(&addr.to_string(), Some(TOKEN))
        .await
        .expect("the backend connects");
    backend.server_info().await.expect("and is served");
    let stats = rpc_stats(&backend).await;
    assert_eq!(stats["connections_open"], 1, "{stats}");
    assert!(
        stats["connections_preauth"].as_u64().unwrap() <= 4,
        "{stats}"
    );
    assert!(stats["preauth_evicted"].as_u64().unwrap() >= 61, "{stats}");

    // Those that made room were told why and closed (the first ones with time to read the
    // explanation, later ones maybe reset: rpc.max_refusals_in_flight bounds the lingering).
    let mut evicted = idle.drain(..60).collect::<Vec<_>>();
    let error = evicted[0].error_notification().await;
    assert_eq!(error["code"], "limit_exceeded", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("max_preauth_connections")
    );
    evicted[0].expect_closed().await;
    for raw in &mut evicted[1..] {
        raw.closed_or_reset().await;
    }
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_past_the_limit_costs_no_task_each() {
    let app = start(|c| {
        c.rpc.max_connections = 1;
        c.rpc.max_refusals_in_flight = 2;
    })
    .await;
    let addr = app.rpc_tcp_addr().unwrap();
    let backend = client(&app).await;
    backend.server_info().await.unwrap();

    // 40 connections past the limit: two are told why (and given time to read it), the
    // rest are closed at once, and none of them holds a task meanwhile.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(Raw::connect(addr).await);
    }
    let error = flood[0].error_notification().await;
    assert_eq!(error["code"], "limit_exceeded", "{error}");
    for raw in &mut flood {
        raw.closed_or_reset().await;
    }
    let stats = rpc_stats(&backend).await;
    assert_eq!(stats["connections_rejected"], 40, "{stats}");
    assert!(
        stats["refusals_unexplained"].as_u64().unwrap() >= 30,
        "{stats}"
    );
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_stalled_connections_are_closed_at_their_deadlines() {
    let app = start(|c| {
        c.rpc.token = TOKEN.to_owned();
        c.rpc.auth_timeout_ms = 1000;
        c.rpc.read_timeout_ms = 300;
    })
    .await;
    let addr = app.rpc_tcp_addr().unwrap();
    // An authenticated backend that only listens to events.
    let listener = Client::connect(&addr.to_string(), Some(TOKEN))
        .await
        .unwrap();
    let mut notes = listener.notifications().unwrap();
    listener.subscribe(None).await.unwrap();

    // Connected, never authenticated: closed at the auth deadline.
    let mut silent = Raw::connect(addr).await;
    let error = silent.error_notification().await;
    assert_eq!(error["code"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rpc.auth_timeout_ms")
    );
    silent.expect_closed().await;

    // Authenticated, then half a message and nothing more: closed at the read deadline.
    let mut stalled = Raw::connect(addr).await;
    stalled.request(1, "auth", json!({ "token": TOKEN })).await;
    assert!(stalled.response(1).await.0.is_null());
    stalled.send(&[0x94, 0x00, 0x02]).await;
    let error = stalled.error_notification().await;
    assert_eq!(error["code"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rpc.read_timeout_ms")
    );
    stalled.expect_closed().await;

    // The listener outlived both deadlines without sending anything, and still gets events.
    let other = Client::connect(&addr.to_string(), Some(TOKEN))
        .await
        .unwrap();
    let room = other.create_router(RouterOptions::default()).await.unwrap();
    wait_for(&mut notes, |n| {
        format!("{n:?}").contains(&room.id.to_string())
    })
    .await;
    let stats = rpc_stats(&other).await;
    assert_eq!(stats["auth_timeouts"], 1, "{stats}");
    assert_eq!(stats["read_timeouts"], 1, "{stats}");
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_only_when_an_idle_timeout_is_set() {
    let app = start(|c| c.rpc.idle_timeout_ms = 300).await;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
    raw.request(1, "router.list", json!({})).await;
    assert!(raw.response(1).await.0.is_null());
    let error = raw.error_notification().await;
    assert_eq!(error["code"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rpc.idle_timeout_ms")
    );
    raw.expect_closed().await;
    let stats = rpc_stats(&client(&app).await).await;
    assert_eq!(stats["idle_timeouts"], 1, "{stats}");
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_to_rpc_socket_is_refused_and_closed() {
    // No token: what a local SSRF or a browser would find.
    let app = start(|_| {}).await;
    let addr = app.rpc_tcp_addr().unwrap();
    let body = request(1, "router.create", Msgpack::Array(vec![]));
    let mut post = format!(
        "POST /rpc HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);

    let mut raw = Raw::connect(addr).await;
    raw.send(&post).await;
    let answer = raw.bytes_to_end().await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("MessagePack-RPC"), "{text}");
    assert!(
        app.server.routers().is_empty(),
        "the request in the body did not run"
    );

    // Any other value that is not a request, first on a connection: one error, then closed.
    let mut raw = Raw::connect(addr).await;
    raw.send(&[0x2a, 0x2a, 0x2a]).await;
    raw.send(&body).await;
    let error = raw.error_notification().await;
    assert_eq!(error["code"], "invalid_request", "{error}");
    let last = raw.error_notification().await;
    assert!(
        last["message"].as_str().unwrap().contains("not a request"),
        "{last}"
    );
    raw.expect_closed().await;
    assert!(app.server.routers().is_empty());

    let stats = rpc_stats(&client(&app).await).await;
    assert_eq!(stats["http_refused"], 1, "{stats}");
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preauth_frame_of_nils_is_bounded() {
    let app = start(|c| c.rpc.token = TOKEN.to_owned()).await;
    let addr = app.rpc_tcp_addr().unwrap();
    // [0, 1, "auth", [nil; n]]: within rpc.max_frame_bytes (1 MiB), a frame that would
    // decode to tens of megabytes of values.
    let nils = (1 << 20) - 64;
    let mut frame = vec![0x94, 0x00, 0x01, 0xa4];
    frame.extend_from_slice(b"auth");
    frame.push(0xdd);
    frame.extend_from_slice(&(nils as u32).to_be_bytes());
    frame.resize(frame.len() + nils, 0xc0);

    // Before auth: refused as soon as the buffered bytes pass the pre-auth limit.
    let mut raw = Raw::connect(addr).await;
    raw.send_until_refused(&frame).await;
    let error = raw.error_notification().await;
    assert_eq!(error["code"], "frame_too_large", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rpc.max_preauth_frame_bytes"),
        "{error}"
    );
    raw.expect_closed().await;

    // After auth, the frame fits rpc.max_frame_bytes but holds more values than
    // rpc.max_message_values: refused on its msgid before decoding, and the connection
    // goes on.
    let mut raw = Raw::connect(addr).await;
    raw.request(1, "auth", json!({ "token": TOKEN })).await;
    assert!(raw.response(1).await.0.is_null());
    let mut frame = vec![0x94, 0x00, 0x02, 0xab];
    frame.extend_from_slice(b"router.list");
    let values = 100_000u32;
    frame.push(0xdd);
    frame.extend_from_slice(&values.to_be_bytes());
    frame.resize(frame.len() + values as usize, 0xc0);
    raw.send(&frame).await;
    let (error, _) = raw.response(2).await;
    assert_eq!(error["code"], "invalid_request", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("rpc.max_message_values"),
        "{error}"
    );
    raw.request(3, "router.list", json!({})).await;
    assert!(raw.response(3).await.0.is_null());
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_token_is_rejected_at_startup() {
    let short = "fifteen-bytes!!";
    assert_eq!(short.len(), 15);
    let Err(err) = App::start(Arc::new({
        let mut config = switchboard::settings::Settings::default();
        config.server.workers = 1;
        config.metrics.listen = String::new();
        config.rpc.listen = "127.0.0.1:0".to_owned();
        config.rpc.token = short.to_owned();
        config
    }))
    .await
    else {
        panic!("started with a 15-byte token");
    };
    let message = err.to_string();
    assert!(message.contains("rpc.token"), "{message}");
    assert!(message.contains("at least 16 bytes"), "{message}");

    // The socket refuses on its own too, for callers that never validated the config.
    let app = start(|_| {}).await;
    let rpc = RpcConfig {
        listen: "127.0.0.1:0".to_owned(),
        token: short.to_owned(),
        ..RpcConfig::default()
    };
    let Err(err) = RpcServer::start(app.server.clone(), &rpc).await else {
        panic!("listened with a 15-byte token");
    };
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    stop(app).await;
}

/// Events emitted while this connection's event pump cannot run: one more than the bus
/// queues for a subscriber (4096), in join/leave pairs.
const BURST_PEERS: usize = 2100;

#[test]
fn lagging_event_listener_gets_events_lagged() {
    // One thread runs the server's control socket and this test; blocking it below keeps
    // the connection's event pump from running while another thread makes events.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = start(|_| {}).await;
        let room = app
            .server
            .create_router(RouterOptions::default())
            .await
            .unwrap()
            .id;
        let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
        raw.request(1, "events.subscribe", json!({})).await;
        let (error, _) = raw.response(1).await;
        assert!(error.is_null(), "{error}");

        let server = app.server.clone();
        let burst = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for i in 0..BURST_PEERS {
                    let peer = PeerId(format!("p{i}"));
                    server.join_peer(room, peer.clone()).await.unwrap();
                    server.leave_peer(room, peer).await.unwrap();
                }
            });
        });
        // Blocks this runtime until the burst is over: the awaited event is its end.
        burst.join().expect("the burst ran");
        assert!(app.server.dropped_events() > 0, "the bus queue overflowed");

        let emitted = 2 * BURST_PEERS as u64;
        let (mut received, mut lost, mut notices) = (0u64, 0u64, 0);
        while received + lost < emitted {
            let message = raw.next().await.expect("the rest of the events");
            match message[1].as_str() {
                Some("event") => received += 1,
                Some("events.lagged") => {
                    notices += 1;
                    lost += message[2][0]["dropped"].as_u64().expect("dropped");
                }
                _ => panic!("unexpected {message}"),
            }
        }
        assert!(notices >= 1 && lost > 0, "told of the gap");
        // The only subscriber that fell behind was this one, so the count is exact.
        assert_eq!(received + lost, emitted);
        // Nothing more is owed: the next thing is the answer to a new request.
        raw.request(2, "router.list", json!({})).await;
        assert!(raw.response(2).await.0.is_null());
        stop(app).await;
    });
}
