//! Many requests in flight on one connection, answered by msgid in whatever order they
//! finish; timeouts and failing handlers stay confined to their own request.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard::App;
use switchboard::client::Notification;
use switchboard::rpc::MethodTable;
use switchboard::rpc::RpcError;
use switchboard::rpc::methods::NoParams;
use switchboard::settings::Settings;
use switchboard_actors::RouterOptions;
use switchboard_core::ErrorCode;
use switchboard_core::event::Event;
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pipelined_requests_are_each_answered_by_msgid() {
    let app = start(|_| {}).await;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
    let missing = switchboard_core::RouterId::new();
    // Every request is on the wire before the first answer is read.
    let mut bytes = Vec::new();
    for msgid in 0..50u32 {
        let (method, params) = match msgid % 3 {
            0 => ("router.create", json!({})),
            1 => ("router.dump", json!({ "router": missing })),
            _ => ("worker.list", json!({})),
        };
        bytes.extend(switchboard::rpc::wire::encode_request(
            msgid, method, &params,
        ));
    }
    raw.send(&bytes).await;
    let mut answers: HashMap<u64, (Value, Value)> = HashMap::new();
    while answers.len() < 50 {
        let message = raw.next().await.expect("a response");
        assert_eq!(message[0], 1, "{message}");
        let msgid = message[1].as_u64().expect("msgid");
        let previous = answers.insert(msgid, (message[2].clone(), message[3].clone()));
        assert!(previous.is_none(), "two answers to {msgid}");
    }
    let mut rooms = Vec::new();
    for (msgid, (error, result)) in answers {
        match msgid % 3 {
            0 => {
                assert!(error.is_null(), "{error}");
                rooms.push(result["id"].as_str().expect("id").to_owned());
            }
            1 => assert_eq!(error["code"], "not_found", "{error}"),
            _ => assert_eq!(result["workers"].as_array().map(Vec::len), Some(1)),
        }
    }
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 17, "each router.create made its own room");
    assert_eq!(app.server.routers().len(), 17);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_multiplexes_concurrent_calls() {
    let app = start(|_| {}).await;
    let client = Arc::new(client(&app).await);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.create_router(RouterOptions::default()).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(call.await.unwrap().unwrap().id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(client.routers().await.unwrap().len(), 50);
    stop(app).await;
}

/// A server with three extra methods, added the way any new method is: one entry each.
async fn start_with_test_methods(release: Arc<Notify>, timeout_ms: u64) -> App {
    let mut methods = MethodTable::builtin();
    methods
        .add("test.hang", |_, _: NoParams| {
            std::future::pending::<Result<(), RpcError>>()
        })
        .add("test.wait", move |_, _: NoParams| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok(json!({ "released": true }))
            }
        })
        .add("test.panic", |_, _: NoParams| async {
            if true {
                panic!("a handler bug");
            }
            Ok(())
        });
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.rpc.request_timeout_ms = timeout_ms;
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    App::start_with(Arc::new(config), methods)
        .await
        .expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hung_requests_do_not_hold_up_the_others() {
    let release = Arc::new(Notify::new());
    let app = start_with_test_methods(release.clone(), 300).await;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;

    // A request that waits is overtaken by the one sent after it.
    raw.request(1, "test.wait", json!({})).await;
    raw.request(2, "server.info", json!({})).await;
    let (error, info) = raw.response(2).await;
    assert!(error.is_null() && info["name"] == "switchboard");
    release.notify_one();
    let (error, result) = raw.response(1).await;
    assert!(error.is_null(), "{error}");
    assert_eq!(result["released"], true);

    // A request that never finishes times out on its own.
    raw.request(3, "test.hang", json!({})).await;
    raw.request(4, "router.list", json!({})).await;
    let (error, _) = raw.response(4).await;
    assert!(error.is_null());
    assert_eq!(raw.error_code(3).await, "timeout");

    let stats = app.rpc.stats();
    assert_eq!(stats.request_timeouts, 1);
    assert_eq!(stats.request_errors, 1);
    assert_eq!(stats.requests, 4);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_internal_and_the_connection_goes_on() {
    // The default timeout: printing a panic's backtrace in a debug build can take a while.
    let app = start_with_test_methods(Arc::new(Notify::new()), 10_000).await;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;
    raw.request(1, "test.panic", json!({})).await;
    assert_eq!(raw.error_code(1).await, "internal");
    raw.request(2, "worker.list", json!({})).await;
    assert!(raw.response(2).await.0.is_null());
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_run_without_an_answer_and_report_failures() {
    let app = start(|_| {}).await;
    let client = client(&app).await;
    let mut notes = client.notifications().unwrap();
    let room = client
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    client.subscribe(Some(room.id)).await.unwrap();
    client
        .notify("peer.join", json!({ "router": room.id, "peer": "quiet" }))
        .await
        .unwrap();
    client.notify("router.explode", json!({})).await.unwrap();
    // Calls on one connection run concurrently, so the two outcomes may come in any order.
    let (mut joined, mut failed) = (false, false);
    while !(joined && failed) {
        let (note, _) = wait_for(&mut notes, |_| true).await;
        match note {
            Notification::Event(Event::PeerJoined { peer, .. }) => {
                assert_eq!(peer.0, "quiet");
                joined = true;
            }
            Notification::Error(error) => {
                assert_eq!(error.code, ErrorCode::MethodNotFound);
                assert_eq!(error.data.unwrap()["method"], "router.explode");
                failed = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    stop(app).await;
}
