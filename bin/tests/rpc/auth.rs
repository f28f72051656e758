//! The token: required first, compared whole, failures counted and the connection closed;
//! connection limits; no unauthenticated socket on a public address.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use switchboard::App;
use switchboard::client::Client;
use switchboard::rpc::RpcServer;
use switchboard::settings::{RpcConfig, Settings};
use switchboard_core::ErrorCode;

const TOKEN: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_must_come_first_and_be_right() {
    let app = start(|c| c.rpc.token = TOKEN.to_owned()).await;
    let addr = app.rpc_tcp_addr().unwrap();

    // Any request before auth: unauthorized, then closed. The request is not carried out.
    let mut raw = Raw::connect(addr).await;
    raw.request(1, "router.create", json!({})).await;
    assert_eq!(raw.error_code(1).await, "unauthorized");
    raw.expect_closed().await;
    assert!(app.server.routers().is_empty());

    // A wrong token: unauthorized, then closed, even with more requests queued behind it.
    let mut raw = Raw::connect(addr).await;
    raw.request(
        1,
        "auth",
        json!({ "token": "correct horse battery stapler" }),
    )
    .await;
    raw.request(2, "router.create", json!({})).await;
    assert_eq!(raw.error_code(1).await, "unauthorized");
    raw.expect_closed().await;
    assert!(app.server.routers().is_empty());

    // A notification before auth gets an error notification, then the close.
    let mut raw = Raw::connect(addr).await;
    raw.send(&switchboard::rpc::wire::encode_notification(
        "router.create",
        &json!({}),
    ))
    .await;
    assert_eq!(raw.error_notification().await["code"], "unauthorized");
    raw.expect_closed().await;

    // auth with the wrong shape is refused too.
    let mut raw = Raw::connect(addr).await;
    raw.request(1, "auth", json!({ "secret": TOKEN })).await;
    assert_eq!(raw.error_code(1).await, "invalid_params");
    raw.expect_closed().await;

    // The right token, then requests run; requests pipelined behind auth run after it.
    let mut raw = Raw::connect(addr).await;
    raw.request(1, "auth", json!({ "token": TOKEN })).await;
    raw.request(2, "router.list", json!({})).await;
    let (error, result) = raw.response(1).await;
    assert!(error.is_null() && result.is_null(), "{error} {result}");
    let (error, result) = raw.response(2).await;
    assert!(error.is_null(), "{error}");
    assert_eq!(result["routers"], json!([]));

    // The typed client authenticates as it connects.
    let wrong = Client::connect(&addr.to_string(), Some("nope")).await;
    let Err(err) = wrong else {
        panic!("a wrong token was accepted")
    };
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    let client = Client::connect(&addr.to_string(), Some(TOKEN))
        .await
        .unwrap();
    let stats = client.server_stats().await.unwrap();
    assert_eq!(stats.rpc.auth_failures, 5);
    assert!(client.server_info().await.unwrap().rpc.auth_required);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_told_and_closed() {
    let app = start(|c| c.rpc.max_connections = 2).await;
    let addr = app.rpc_tcp_addr().unwrap();
    let first = client(&app).await;
    let second = client(&app).await;
    // Answers prove both were admitted before the third arrives.
    first.server_info().await.unwrap();
    second.server_info().await.unwrap();

    let mut third = Raw::connect(addr).await;
    let error = third.error_notification().await;
    assert_eq!(error["code"], "limit_exceeded", "{error}");
    third.expect_closed().await;
    assert_eq!(app.rpc.stats().connections_rejected, 1);

    // A freed slot is taken by the next connection.
    drop(first);
    eventually("the closed connection's slot is freed", || {
        app.rpc.stats().connections_open == 1
    })
    .await;
    let fourth = client(&app).await;
    fourth.server_info().await.unwrap();
    second.server_info().await.unwrap();
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unauthenticated_socket_on_a_public_address() {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.rpc.listen = "0.0.0.0:0".to_owned();
    let Err(err) = App::start(Arc::new(config)).await else {
        panic!("started on 0.0.0.0 without a token");
    };
    assert!(err.to_string().contains("rpc.token"), "{err}");

    // The socket refuses on its own too, for callers that never validated the config.
    let app = start(|_| {}).await;
    let rpc = RpcConfig {
        listen: "0.0.0.0:0".to_owned(),
        ..RpcConfig::default()
    };
    let Err(err) = RpcServer::start(app.server.clone(), &rpc).await else {
        panic!("listened on 0.0.0.0 without a token");
    };
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(err.message.contains("rpc.token"), "{err}");
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_serves_the_same_methods() {
    let path = std::env::temp_dir().join(format!("switchboard-rpc-{}.sock", std::process::id()));
    let socket = path.to_str().unwrap().to_owned();
    // A stale file from a crashed run must not stop the server from starting.
    std::fs::write(&path, b"stale").unwrap();
    let app = start(|c| {
        c.rpc.listen = String::new();
        c.rpc.unix_socket = socket.clone();
    })
    .await;
    assert_eq!(app.rpc_tcp_addr(), None);
    assert_eq!(app.rpc_addrs()[0].to_string(), format!("unix:{socket}"));
    let client = Client::connect(&format!("unix:{socket}"), None)
        .await
        .unwrap();
    assert!(client.routers().await.unwrap().is_empty());
    stop(app).await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
}
