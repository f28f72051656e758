//! Every class of bad input gets its documented code, while another connection keeps
//! working and media keeps flowing.

use crate::support::*;
use serde_json::json;
use switchboard::rpc::wire::encode_request;
use switchboard_core::RouterId;

/// `max_frame_bytes` for these tests: small, so oversized frames are cheap to send.
const MAX_FRAME: usize = 16 * 1024;

fn msgpack(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

fn request(msgid: u32, method: &str, params: rmpv::Value) -> Vec<u8> {
    msgpack(&rmpv::Value::Array(vec![
        0.into(),
        msgid.into(),
        method.into(),
        params,
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_codes_and_the_connection_goes_on() {
    let app = start(|c| c.rpc.max_frame_bytes = MAX_FRAME).await;
    let good = client(&app).await;
    let mut media = Forwarding::set_up(&app, &good).await;
    let room = good.routers().await.unwrap()[0].id;
    let mut raw = Raw::connect(app.rpc_tcp_addr().unwrap()).await;

    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        (
            "unknown method",
            encode_request(1, "router.explode", &json!({})),
            "method_not_found",
            None,
        ),
        (
            "wrong type",
            encode_request(2, "router.close", &json!({ "router": 5 })),
            "invalid_params",
            Some("router"),
        ),
        (
            "missing field",
            encode_request(3, "peer.join", &json!({ "router": room })),
            "invalid_params",
            Some("peer"),
        ),
        (
            "unknown field",
            encode_request(4, "router.list", &json!({ "verbose": true })),
            "invalid_params",
            Some("verbose"),
        ),
        (
            "nested wrong type",
            encode_request(
                5,
                "producer.create",
                &json!({
                    "transport": RouterId::new(),
                    "kind": "audio",
                    "rtp_parameters": { "codecs": [{ "mime_type": "audio/opus", "payload_type": 300, "clock_rate": 48000 }] },
                }),
            ),
            "invalid_params",
            Some("rtp_parameters.codecs[0].payload_type"),
        ),
        (
            "malformed id",
            encode_request(6, "router.dump", &json!({ "router": "room-1" })),
            "invalid_params",
            Some("router"),
        ),
        (
            "unknown id",
            encode_request(7, "router.dump", &json!({ "router": RouterId::new() })),
            "not_found",
            None,
        ),
        (
            "params not a map",
            request(
                8,
                "router.list",
                rmpv::Value::Array(vec![1.into(), 2.into()]),
            ),
            "invalid_params",
            None,
        ),
        (
            "binary that is not text",
            request(
                9,
                "router.dump",
                rmpv::Value::Map(vec![("router".into(), rmpv::Value::Binary(vec![0xff, 0]))]),
            ),
            "invalid_params",
            Some("router"),
        ),
        (
            "method not a string",
            msgpack(&rmpv::Value::Array(vec![
                0.into(),
                10.into(),
                7.into(),
                rmpv::Value::Nil,
            ])),
            "invalid_request",
            None,
        ),
    ];
    for (what, bytes, code, field) in cases {
        raw.send(&bytes).await;
        let message = raw.next().await.expect("an answer");
        assert_eq!(message[0], 1, "{what}: {message}");
        let error = &message[2];
        assert_eq!(error["code"], code, "{what}: {message}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert_eq!(error["data"]["field"], field, "{what}: {message}");
        }
        media.check().await;
    }

    // Values that are not requests and have no msgid to answer: an error notification.
    let not_requests = [
        msgpack(&rmpv::Value::from(42)),
        msgpack(&rmpv::Value::Array(vec![])),
        msgpack(&rmpv::Value::Array(vec![
            1.into(),
            1.into(),
            rmpv::Value::Nil,
            rmpv::Value::Nil,
        ])),
        msgpack(&rmpv::Value::Array(vec![
            0.into(),
            "one".into(),
            "router.list".into(),
            rmpv::Value::Nil,
        ])),
        // Nested far deeper than any request, yet well-formed.
        [vec![0x91; 200], vec![0xc0]].concat(),
    ];
    for bytes in not_requests {
        raw.send(&bytes).await;
        let error = raw.error_notification().await;
        assert_eq!(error["code"], "invalid_request", "{error}");
    }

    // The stream is still in step: a good request on the same connection works.
    raw.send(&request(11, "router.list", rmpv::Value::Array(vec![])))
        .await;
    let (error, result) = raw.response(11).await;
    assert!(error.is_null(), "{error}");
    assert_eq!(result["routers"].as_array().map(Vec::len), Some(1));
    assert!(app.rpc.stats().protocol_errors >= 6);
    good.server_info().await.unwrap();
    media.check().await;
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecoverable_streams_are_told_why_and_closed() {
    let app = start(|c| c.rpc.max_frame_bytes = MAX_FRAME).await;
    let addr = app.rpc_tcp_addr().unwrap();
    let good = client(&app).await;
    let mut media = Forwarding::set_up(&app, &good).await;

    // Not MessagePack at all.
    let mut raw = Raw::connect(addr).await;
    raw.send(&[0x93, 0x00, 0xc1, 0x01]).await;
    assert_eq!(raw.error_notification().await["code"], "parse_error");
    raw.expect_closed().await;
    media.check().await;

    // A header announcing more than the limit is refused from the header.
    let mut raw = Raw::connect(addr).await;
    raw.send(&[0x94, 0x00, 0x01, 0xdb, 0x7f, 0xff, 0xff, 0xff])
        .await;
    assert_eq!(raw.error_notification().await["code"], "frame_too_large");
    raw.expect_closed().await;

    // A well-formed request that is simply too big, sent whole.
    let mut raw = Raw::connect(addr).await;
    let padding = "x".repeat(MAX_FRAME);
    raw.request(1, "router.create", json!({ "padding": padding }))
        .await;
    assert_eq!(raw.error_notification().await["code"], "frame_too_large");
    raw.expect_closed().await;
    media.check().await;

    // A value that never ends grows the buffer to the limit.
    let mut raw = Raw::connect(addr).await;
    raw.send(&vec![0x91; MAX_FRAME + 1]).await;
    assert_eq!(raw.error_notification().await["code"], "frame_too_large");
    raw.expect_closed().await;

    // The stream ends in the middle of a message.
    let mut raw = Raw::connect(addr).await;
    let whole = encode_request(1, "router.list", &json!({}));
    raw.send(&whole[..whole.len() - 1]).await;
    raw.finish_sending().await;
    assert_eq!(raw.error_notification().await["code"], "parse_error");
    raw.expect_closed().await;

    assert!(app.server.routers().len() == 1, "nothing was created");
    good.server_info().await.unwrap();
    media.check().await;
    stop(app).await;
}
