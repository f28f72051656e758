//! The template registered in a real server: a direct-transport publisher sends Opus with
//! audio levels, and the backend hears who is talking.

use std::sync::Arc;
use std::time::Duration;
use switchboard::App;
use switchboard::rpc::MethodTable;
use switchboard::settings::Settings;
use switchboard_actors::{ProduceOptions, RouterOptions};
use switchboard_core::event::Event;
use switchboard_core::middleware::deps::bytes::Bytes;
use switchboard_core::middleware::deps::rtc_rtp::Packet;
use switchboard_core::middleware::deps::rtc_rtp::header::{Extension, Header};
use switchboard_core::middleware::deps::serde_json::json;
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtensionParameters,
    RtpParameters, extension_uri,
};

fn packet(seq: u16, level: u8) -> Bytes {
    use switchboard_core::middleware::deps::rtc_shared::marshal::Marshal as _;
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: 5,
            extension: true,
            extension_profile: 0xBEDE,
            extensions: vec![Extension {
                id: 1,
                payload: Bytes::from(vec![level]),
            }],
            ..Default::default()
        },
        payload: Bytes::from_static(b"opus"),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_hears_who_starts_and_stops_talking() {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.middleware.attach = vec![switchboard_middleware_template::NAME.to_owned()];
    let app = App::start_with_middleware(
        Arc::new(config),
        MethodTable::builtin(),
        vec![Arc::new(switchboard_middleware_template::TalkingNow)],
    )
    .await
    .expect("server starts");
    let server = &app.server;
    let mut events = server.subscribe();
    let room = server
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    let t = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect("transport");
    let producer = server
        .produce(
            t.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: RtpParameters {
                    mid: None,
                    codecs: vec![RtpCodecParameters {
                        mime_type: "audio/opus".into(),
                        payload_type: 111,
                        clock_rate: 48_000,
                        channels: Some(2),
                        parameters: Default::default(),
                        rtcp_feedback: vec![],
                    }],
                    header_extensions: vec![RtpHeaderExtensionParameters {
                        uri: extension_uri::AUDIO_LEVEL.into(),
                        id: 1,
                        encrypt: false,
                    }],
                    encodings: vec![RtpEncodingParameters {
                        ssrc: Some(5),
                        ..Default::default()
                    }],
                    rtcp: Default::default(),
                },
                paused: false,
            },
        )
        .await
        .expect("producer");
    let input = app.transports.direct.endpoint(t.id).expect("endpoint");
    // Half a second of speech, then a second of silence (media time, sent at once).
    for seq in 0..75u16 {
        let level = if seq < 25 { 20 } else { 127 };
        input.send_rtp(packet(seq, level)).expect("sent");
    }
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a talking event in time")
            .expect("events open");
        if let Event::Middleware {
            middleware, data, ..
        } = event
        {
            assert_eq!(middleware, "talking_now");
            assert_eq!(data["producer"], json!(producer.id));
            heard.push(data["talking"].as_bool().expect("a flag"));
        }
    }
    assert_eq!(heard, [true, false]);
    app.shutdown(Duration::from_secs(5))
        .await
        .expect("shuts down");
}
