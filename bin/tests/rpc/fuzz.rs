//! Property tests through the socket: arbitrary bytes, and well-formed requests with wrong
//! methods and parameters, never panic the server, never leave a request unanswered, and
//! never take the server down for the next client.

use crate::support::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard::rpc::wire;

/// Codes a request may legitimately be answered with. `internal` is not among them: it
/// means a handler failed unexpectedly, which is what this test hunts for.
const REQUEST_CODES: &[&str] = &[
    "not_found",
    "already_exists",
    "invalid_params",
    "unsupported_codec",
    "limit_exceeded",
    "closed",
    "unknown_plugin",
    "transport_failed",
    "middleware_failed",
    "invalid_request",
    "method_not_found",
    "unauthorized",
];

/// Counts panics anywhere in the process, except the one test that panics on purpose.
fn count_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let deliberate = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| *m == "a handler bug");
        if !deliberate {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    count
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Checks one message from the server is a response or notification of the spec's shape.
fn well_formed(message: &Value) -> Result<(), TestCaseError> {
    match message[0].as_u64() {
        Some(1) => {
            prop_assert!(message[1].is_u64(), "{}", message);
            let error = &message[2];
            if !error.is_null() {
                prop_assert!(error["code"].is_string(), "{}", message);
                prop_assert!(error["message"].is_string(), "{}", message);
            }
        }
        Some(2) => {
            prop_assert!(message[1].is_string(), "{}", message);
            prop_assert!(message[2].is_array(), "{}", message);
        }
        _ => prop_assert!(false, "not a response or notification: {}", message),
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_get_answers_or_a_clean_close() {
    let panics = count_panics();
    let rt = runtime();
    let app = rt.block_on(start(|c| c.rpc.max_frame_bytes = 4096));
    let addr = app.rpc_tcp_addr().unwrap();
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        // Mostly valid prefixes: a request header followed by noise.
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|tail| [
            vec![0x94, 0x00, 0x01],
            tail
        ]
        .concat()),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|tail| [
            vec![0x94, 0x00, 0x01, 0xab],
            b"router.list".to_vec(),
            tail
        ]
        .concat()),
    ];
    runner(128)
        .run(&bytes, |bytes| {
            rt.block_on(async {
                let mut raw = Raw::connect(addr).await;
                raw.send(&bytes).await;
                raw.finish_sending().await;
                // Whatever was sent, the server answers what it can and then closes.
                while let Some(message) = raw.next().await {
                    well_formed(&message)?;
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(async {
        client(&app).await.server_info().await.unwrap();
        stop(app).await;
    });
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
}

/// Any JSON value, ids of live objects among the strings.
fn any_json(ids: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("")),
        Just(Value::from("line\nbreak")),
        prop::sample::select(ids).prop_map(Value::from),
        prop::sample::select(vec!["direct", "audio", "video", "alice", "audio/opus"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid parameters for each method, built around live objects. Closing methods get ids
/// that do not exist, so that later cases still find the objects.
fn templates(ids: &Ids) -> Vec<(&'static str, Value)> {
    let gone = switchboard_core::RouterId::new().to_string();
    let (r, t, p, c) = (&ids.router, &ids.transport, &ids.producer, &ids.consumer);
    vec![
        ("server.info", json!({})),
        ("server.stats", json!({})),
        ("worker.list", json!({})),
        ("router.list", json!({})),
        ("router.create", json!({ "worker": 0 })),
        ("router.close", json!({ "router": gone })),
        ("router.dump", json!({ "router": r })),
        ("router.stats", json!({ "router": r })),
        ("router.capabilities", json!({ "router": r })),
        ("peer.join", json!({ "router": r, "peer": "bob" })),
        ("peer.leave", json!({ "router": r, "peer": "bob" })),
        (
            "transport.create",
            json!({ "router": r, "kind": "direct", "peer": "alice", "options": {} }),
        ),
        ("transport.connect", json!({ "transport": t, "remote": {} })),
        ("transport.close", json!({ "transport": gone })),
        ("transport.dump", json!({ "transport": t })),
        ("transport.stats", json!({ "transport": t })),
        ("producer.create", opus_producer(t, 0x0F0F_0F10)),
        ("producer.pause", json!({ "producer": p })),
        ("producer.resume", json!({ "producer": p })),
        ("producer.close", json!({ "producer": gone })),
        ("producer.stats", json!({ "producer": p })),
        ("producer.dump", json!({ "producer": p })),
        ("producer.request_keyframe", json!({ "producer": p })),
        (
            "consumer.create",
            json!({ "transport": t, "producer": p, "rtp_capabilities": opus_caps() }),
        ),
        ("consumer.pause", json!({ "consumer": c })),
        ("consumer.resume", json!({ "consumer": c })),
        ("consumer.close", json!({ "consumer": gone })),
        ("consumer.stats", json!({ "consumer": c })),
        ("consumer.dump", json!({ "consumer": c })),
        ("consumer.request_keyframe", json!({ "consumer": c })),
        (
            "middleware.attach",
            json!({ "router": r, "name": "x", "options": {} }),
        ),
        ("middleware.detach", json!({ "router": r, "name": "x" })),
        ("events.subscribe", json!({ "router": r })),
        ("events.unsubscribe", json!({ "router": r })),
    ]
}

/// One change to a parameter map.
#[derive(Clone, Debug)]
enum Mutation {
    /// Drop the n-th field (counting modulo the number of fields).
    Remove(usize),
    /// Replace the n-th field's value, at any depth `depth` steps down.
    Replace(usize, usize, Value),
    /// Add a field.
    Add(String, Value),
}

fn mutate(value: &mut Value, mutation: &Mutation) {
    let Value::Object(map) = value else { return };
    let nth = |map: &serde_json::Map<String, Value>, n: usize| {
        map.keys().nth(n % map.len().max(1)).cloned()
    };
    match mutation {
        Mutation::Remove(n) => {
            if let Some(key) = nth(map, *n) {
                map.remove(&key);
            }
        }
        Mutation::Replace(n, depth, new) => {
            if let Some(key) = nth(map, *n)
                && let Some(slot) = map.get_mut(&key)
            {
                replace_at(slot, *n, *depth, new);
            }
        }
        Mutation::Add(key, new) => {
            map.insert(key.clone(), new.clone());
        }
    }
}

/// Replaces the value `depth` steps down from `slot` (or shallower, where it ends), so
/// deep fields get wrong values too.
fn replace_at(slot: &mut Value, n: usize, depth: usize, new: &Value) {
    if depth > 0 {
        match slot {
            Value::Object(inner) if !inner.is_empty() => {
                let key = inner
                    .keys()
                    .nth(n % inner.len())
                    .cloned()
                    .unwrap_or_default();
                if let Some(next) = inner.get_mut(&key) {
                    return replace_at(next, n + 1, depth - 1, new);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let len = items.len();
                return replace_at(&mut items[n % len], n + 1, depth - 1, new);
            }
            _ => {}
        }
    }
    *slot = new.clone();
}

/// Ids of the live objects the templates use.
struct Ids {
    router: String,
    transport: String,
    producer: String,
    consumer: String,
}

#[test]
fn wrong_requests_are_answered_with_documented_codes() {
    let panics = count_panics();
    let rt = runtime();
    let app = rt.block_on(start(|_| {}));
    let addr = app.rpc_tcp_addr().unwrap();

    // Live objects, so that requests reach the server's objects, not only the parser.
    let ids = rt.block_on(async {
        let client = client(&app).await;
        let room = client.call_value("router.create", json!({})).await.unwrap();
        let router = room["id"].as_str().unwrap().to_owned();
        client
            .call_value("peer.join", json!({ "router": router, "peer": "alice" }))
            .await
            .unwrap();
        let t = client
            .call_value("transport.create", json!({ "router": router, "kind": "direct" }))
            .await
            .unwrap();
        let transport = t["id"].as_str().unwrap().to_owned();
        let p = client
            .call_value("producer.create", opus_producer(&transport, 0x0F0F_0F0F))
            .await
            .unwrap();
        let c = client
            .call_value(
                "consumer.create",
                json!({ "transport": transport, "producer": p["id"], "rtp_capabilities": opus_caps() }),
            )
            .await
            .unwrap();
        Ids {
            router,
            transport,
            producer: p["id"].as_str().unwrap().to_owned(),
            consumer: c["id"].as_str().unwrap().to_owned(),
        }
    });
    let pool = vec![
        ids.router.clone(),
        ids.transport.clone(),
        ids.producer.clone(),
        ids.consumer.clone(),
        "not-an-id".to_owned(),
        "00000000-0000-0000-0000-000000000000".to_owned(),
    ];
    let templates = templates(&ids);
    // Strings that are the right type and the wrong content: where parsing ends and the
    // server's own checks begin.
    let bad_text = prop_oneof![
        Just(String::new()),
        Just("line\nbreak".to_owned()),
        Just("x".repeat(200)),
        Just("not-an-id".to_owned()),
        prop::sample::select(pool.clone()),
        ".{0,12}",
    ];
    let mutation = prop_oneof![
        1 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), 0usize..4, any_json(pool.clone()))
            .prop_map(|(n, depth, v)| Mutation::Replace(n, depth, v)),
        3 => (any::<usize>(), 0usize..4, bad_text)
            .prop_map(|(n, depth, text)| Mutation::Replace(n, depth, Value::from(text))),
        1 => (
            prop::sample::select(vec!["router", "peer", "bogus", "paused", "kind"]),
            any_json(pool.clone())
        )
            .prop_map(|(k, v)| Mutation::Add(k.to_owned(), v)),
    ];
    let near_miss = (
        prop::sample::select(templates),
        proptest::collection::vec(mutation, 0..3),
    )
        .prop_map(|((method, mut params), mutations)| {
            for m in &mutations {
                mutate(&mut params, m);
            }
            (method.to_owned(), params)
        });
    // Some requests are nonsense from the method name on.
    let nonsense = (
        // A failed `auth` closes the connection by design; keep the stream to one.
        "[a-z._]{0,16}".prop_filter("not auth", |m| m != "auth"),
        any_json(pool),
    );
    let request = prop_oneof![8 => near_miss, 1 => nonsense];

    // A lock rather than a RefCell: the connection is used across awaits inside block_on.
    let raw = tokio::sync::Mutex::new(rt.block_on(Raw::connect(addr)));
    let msgid = RefCell::new(0u32);
    runner(2048)
        .run(&(request, any::<bool>()), |((method, params), wrapped)| {
            let id = {
                let mut next = msgid.borrow_mut();
                *next += 1;
                *next
            };
            rt.block_on(async {
                let mut raw = raw.lock().await;
                // Both spellings of the params convention: [ {..} ] and the bare value.
                let frame = if wrapped {
                    wire::encode_request(id, &method, &params)
                } else {
                    rmp_serde::to_vec(&(0, id, &method, &params)).unwrap()
                };
                raw.send(&frame).await;
                // events.subscribe may have been called: events can come in between.
                let (error, _) = raw.answer(id).await;
                if !error.is_null() {
                    let code = error["code"].as_str().unwrap_or_default();
                    prop_assert!(
                        REQUEST_CODES.contains(&code),
                        "{} {} answered {}",
                        method,
                        params,
                        error
                    );
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(async {
        let mut raw = raw.lock().await;
        raw.request(0, "server.info", json!({})).await;
        assert!(raw.answer(0).await.0.is_null());
    });
    drop(raw);
    rt.block_on(stop(app));
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
}
