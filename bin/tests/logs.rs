//! Logs carry the worker, room, peer and transport they are about, so that one room's story
//! can be filtered out of a busy server's log.

use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::App;
use switchboard::logging;
use switchboard::settings::{LogFormat, Settings};
use switchboard_actors::{ProduceOptions, RouterOptions};
use switchboard_core::PeerId;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_worker_room_peer_and_transport() {
    let captured = Captured::default();
    let writer = captured.clone();
    logging::init_with_writer(
        "warn,switchboard_actors=debug",
        LogFormat::Json,
        false,
        move || writer.clone(),
    );

    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = String::new();
    config.metrics.listen = String::new();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    let app = App::start(Arc::new(config)).await.expect("starts");
    let server = &app.server;
    let room = server
        .create_router(RouterOptions::default())
        .await
        .expect("room");
    let alice = PeerId("alice".to_owned());
    server
        .join_peer(room.id, alice.clone())
        .await
        .expect("joins");
    let transport = server
        .create_peer_transport(room.id, Some(alice.clone()), "direct", json!({}))
        .await
        .expect("transport");
    let options: ProduceOptions = serde_json::from_value(json!({
        "kind": "audio",
        "rtp_parameters": {
            "codecs": [{ "mime_type": "audio/opus", "payload_type": 111, "clock_rate": 48000, "channels": 2 }],
            "encodings": [{ "ssrc": 1234 }],
        },
    }))
    .expect("options");
    let producer = server
        .produce(transport.id, options)
        .await
        .expect("producer");
    app.shutdown(Duration::from_secs(10)).await.expect("stops");

    let lines = captured.lines();
    let span = |line: &Value, name: &str| -> Option<Value> {
        line["spans"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    };
    // The producer's creation, logged while its transport handled the request.
    let created = lines
        .iter()
        .find(|l| {
            l["message"] == "room event"
                && l["event"]
                    .as_str()
                    .is_some_and(|e| e.contains(&producer.id.to_string()))
        })
        .unwrap_or_else(|| panic!("no log of the producer's creation in {lines:#?}"));
    let worker = span(created, "worker").expect("worker span");
    assert_eq!(worker["worker"], 0, "{created}");
    let room_span = span(created, "room").expect("room span");
    assert_eq!(room_span["room"], room.id.to_string(), "{created}");
    let transport_span = span(created, "transport").expect("transport span");
    assert_eq!(
        transport_span["transport"],
        transport.id.to_string(),
        "{created}"
    );
    assert_eq!(transport_span["peer"], "alice", "{created}");
    assert_eq!(transport_span["kind"], "direct", "{created}");

    // Every line logged about this room says so, whatever span it came from.
    let about_room: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "room event")
        .collect();
    assert!(about_room.len() >= 4, "{about_room:#?}");
    for line in about_room {
        let room_field = span(line, "room").map(|s| s["room"].clone());
        assert_eq!(
            room_field,
            Some(Value::String(room.id.to_string())),
            "{line}"
        );
    }
}
