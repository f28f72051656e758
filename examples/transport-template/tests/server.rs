//! The template registered in a real server: a publisher's track is consumed on an `echo`
//! transport, produced again from it, and a subscriber receives the same payloads.

use std::sync::Arc;
use std::time::Duration;
use switchboard::rpc::MethodTable;
use switchboard::settings::Settings;
use switchboard::{App, Plugins};
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::middleware::deps::bytes::Bytes;
use switchboard_core::middleware::deps::rtc_rtp::Packet;
use switchboard_core::middleware::deps::rtc_rtp::header::Header;
use switchboard_core::middleware::deps::rtc_shared::marshal::{Marshal, Unmarshal};
use switchboard_core::middleware::deps::serde_json::json;
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};
use switchboard_transport_template::{EchoPlugin, KIND};
use switchboard_transports::DirectPacket;

fn config() -> Settings {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config
}

fn opus(ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: None,
        codecs: vec![RtpCodecParameters {
            mime_type: "audio/opus".into(),
            payload_type: 111,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: Default::default(),
    }
}

fn packet(seq: u16) -> Bytes {
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: 5,
            ..Default::default()
        },
        payload: Bytes::from(format!("echo {seq}")),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_goes_through_the_echo_transport_and_reaches_a_subscriber_unchanged() {
    let mut config = config();
    // The plugin's settings come from its own table, not from a core section.
    config.transports.insert(
        KIND.to_owned(),
        json!({ "queue_capacity": 64 })
            .as_object()
            .cloned()
            .expect("an object"),
    );
    let plugins = Plugins {
        transports: vec![Arc::new(EchoPlugin)],
        ..Plugins::default()
    };
    let app = App::start_with_plugins(Arc::new(config), MethodTable::builtin(), plugins)
        .await
        .expect("server starts");
    let server = &app.server;
    let room = server
        .create_router(RouterOptions::default())
        .await
        .expect("room");

    let publisher = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect("publisher transport");
    let source = server
        .produce(
            publisher.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus(5),
                paused: false,
            },
        )
        .await
        .expect("producer");

    let echo = server
        .create_transport(room.id, KIND, json!({}))
        .await
        .expect("echo transport");
    let into_echo = server
        .consume(
            echo.id,
            ConsumeOptions {
                producer: source.id,
                rtp_capabilities: RtpCapabilities::default(),
                paused: false,
            },
        )
        .await
        .expect("consumer on the echo transport");
    // What the echo transport sends back is exactly what its consumer writes.
    let echoed = server
        .produce(
            echo.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: into_echo.rtp_parameters.clone(),
                paused: false,
            },
        )
        .await
        .expect("producer on the echo transport");

    let subscriber = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect("subscriber transport");
    let out = server
        .consume(
            subscriber.id,
            ConsumeOptions {
                producer: echoed.id,
                rtp_capabilities: RtpCapabilities::default(),
                paused: false,
            },
        )
        .await
        .expect("subscriber's consumer");
    let out_ssrc = out.rtp_parameters.encodings[0].ssrc.expect("an SSRC");

    let input = app
        .transports
        .direct
        .endpoint(publisher.id)
        .expect("endpoint");
    let output = app
        .transports
        .direct
        .endpoint(subscriber.id)
        .expect("endpoint");
    for seq in 0..20u16 {
        input.send_rtp(packet(seq)).expect("sent");
    }
    let mut payloads = Vec::new();
    while payloads.len() < 20 {
        let received = tokio::time::timeout(Duration::from_secs(5), output.recv())
            .await
            .expect("echoed media in time")
            .expect("endpoint open");
        if let DirectPacket::Rtp(bytes) = received {
            let p = Packet::unmarshal(&mut bytes.clone()).expect("RTP");
            assert_eq!(p.header.ssrc, out_ssrc);
            payloads.push(String::from_utf8(p.payload.to_vec()).expect("text"));
        }
    }
    let expected: Vec<String> = (0..20).map(|seq| format!("echo {seq}")).collect();
    assert_eq!(payloads, expected);

    let stats = switchboard_core::middleware::deps::serde_json::to_value(
        server.transport_stats(echo.id).await.expect("stats"),
    )
    .expect("json");
    assert_eq!(stats["kind"], KIND);
    assert_eq!(stats["plugin"]["packets_echoed"], 20, "{stats}");
    assert_eq!(stats["plugin"]["packets_dropped"], 0, "{stats}");
    app.shutdown(Duration::from_secs(5))
        .await
        .expect("shuts down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_for_a_kind_nobody_registered_stop_the_start() {
    let mut config = config();
    config
        .transports
        .insert("nothing".to_owned(), Default::default());
    let plugins = Plugins {
        transports: vec![Arc::new(EchoPlugin)],
        ..Plugins::default()
    };
    let error = App::start_with_plugins(Arc::new(config), MethodTable::builtin(), plugins)
        .await
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("[transports.nothing]"), "{message}");
    assert!(message.contains("echo"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_when_the_transport_is_created() {
    let plugins = Plugins {
        transports: vec![Arc::new(EchoPlugin)],
        ..Plugins::default()
    };
    let app = App::start_with_plugins(Arc::new(config()), MethodTable::builtin(), plugins)
        .await
        .expect("server starts");
    let room = app
        .server
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    let error = app
        .server
        .create_transport(room.id, KIND, json!({ "queue_capacity": "lots" }))
        .await
        .expect_err("refused");
    assert!(error.message.contains("echo transport options"), "{error}");
    assert!(error.message.contains("expected usize"), "{error}");
    app.shutdown(Duration::from_secs(5))
        .await
        .expect("shuts down");
}
