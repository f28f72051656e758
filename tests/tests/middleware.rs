//! Middleware attached to a room sees its events and media; a panicking one is detached and
//! the room keeps forwarding.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions, Server};
use switchboard_core::config::Config;
use switchboard_core::event::Event;
use switchboard_core::middleware::{
    Middleware, MiddlewareContext, MiddlewareFactory, MiddlewareRegistry,
};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::transport::TransportRegistry;
use switchboard_core::{ErrorCode, ProducerId, Result};
use switchboard_tests::*;
use switchboard_transports::DirectPlugin;

#[derive(Default)]
struct Seen {
    producers_created: AtomicUsize,
    rtp: AtomicUsize,
    closed: AtomicUsize,
}

struct Probe {
    seen: Arc<Seen>,
}

struct ProbeInstance {
    seen: Arc<Seen>,
    panic_on_rtp: bool,
}

impl Middleware for ProbeInstance {
    fn on_event(&mut self, event: &Event) {
        if matches!(event, Event::ProducerCreated { .. }) {
            self.seen.producers_created.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_rtp(&mut self, _producer: ProducerId, packet: &rtc_rtp::Packet) {
        if self.panic_on_rtp {
            panic!("deliberate middleware panic");
        }
        assert_eq!(packet.header.payload_type, 111);
        self.seen.rtp.fetch_add(1, Ordering::SeqCst);
    }
    fn close(&mut self) {
        self.seen.closed.fetch_add(1, Ordering::SeqCst);
    }
}

impl MiddlewareFactory for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn create(&self, ctx: MiddlewareContext, options: &Value) -> Result<Box<dyn Middleware>> {
        ctx.selection.select_all(None);
        Ok(Box::new(ProbeInstance {
            seen: self.seen.clone(),
            panic_on_rtp: options["panic_on_rtp"].as_bool().unwrap_or(false),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_sees_events_and_media_and_a_panicking_one_is_detached() {
    let seen = Arc::new(Seen::default());
    let mut middleware = MiddlewareRegistry::new();
    middleware
        .register(Arc::new(Probe { seen: seen.clone() }))
        .unwrap();
    let mut transports = TransportRegistry::new();
    let direct = DirectPlugin::new();
    transports.register(direct.clone()).unwrap();
    let mut config = Config::default();
    config.server.workers = 1;
    let server = Server::start(Arc::new(config), transports, middleware).unwrap();

    let room = server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    server
        .attach_middleware(room.id, "probe", json!({}))
        .await
        .unwrap();
    let err = server
        .attach_middleware(room.id, "probe", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists);
    let err = server
        .attach_middleware(room.id, "nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownPlugin);

    let pt = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let st = server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let publisher = direct.endpoint(pt.id).unwrap();
    let subscriber = direct.endpoint(st.id).unwrap();
    let p = server
        .produce(
            pt.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(77),
                paused: false,
            },
        )
        .await
        .unwrap();
    server
        .consume(
            st.id,
            ConsumeOptions {
                producer: p.id,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    for seq in 0..5u16 {
        publisher
            .send_rtp(opus_packet(77, seq, 0, b"audio"))
            .unwrap();
        next_rtp(&subscriber).await;
    }
    eventually(|| async { seen.rtp.load(Ordering::SeqCst) == 5 }).await;
    assert_eq!(seen.producers_created.load(Ordering::SeqCst), 1);

    // Replace it with one that panics on media: it is detached, media still flows.
    server.detach_middleware(room.id, "probe").await.unwrap();
    assert_eq!(seen.closed.load(Ordering::SeqCst), 1);
    server
        .attach_middleware(room.id, "probe", json!({ "panic_on_rtp": true }))
        .await
        .unwrap();
    for seq in 5..10u16 {
        publisher
            .send_rtp(opus_packet(77, seq, 0, b"audio"))
            .unwrap();
        let got = next_rtp(&subscriber).await;
        assert_eq!(got.payload.as_ref(), b"audio");
    }
    eventually(|| async {
        let stats = server.router_stats(room.id).await.unwrap();
        stats["middleware"] == json!([])
    })
    .await;
    server.shutdown().await.unwrap();
}
