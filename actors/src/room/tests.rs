//! The room's bookkeeping on plain state: closing cascades, exactly one event per object,
//! and spanning notices, with a recording host and plugins that log what they are told. No
//! actix runtime runs here.

use super::span::PipedProducer;
use super::*;
use crate::events::EventBus;
use std::cell::RefCell;
use switchboard_core::event::CloseReason;
use switchboard_core::negotiation;
use switchboard_core::rtp_parameters::{
    RtcpFeedback, RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtensionParameters,
    extension_uri,
};
use switchboard_core::transport::{Transport, TransportState};
use tokio::sync::mpsc;

/// What the host was told, in order.
#[derive(Default)]
struct RecordingHost {
    calls: RefCell<Vec<String>>,
}

impl RecordingHost {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.borrow_mut())
    }

    fn log(&self, s: String) {
        self.calls.borrow_mut().push(s);
    }
}

impl RoomHost for RecordingHost {
    fn created(&self, object: Object) {
        self.log(format!("created {}", name(object)));
    }
    fn closed(&self, object: Object) {
        self.log(format!("closed {}", name(object)));
    }
    fn tell_plugin_later(&self, transport: TransportId, child: ChildClosed) {
        let child = match child {
            ChildClosed::Producer(id) => format!("producer {id}"),
            ChildClosed::Consumer(id) => format!("consumer {id}"),
        };
        self.log(format!("later {transport} {child}"));
    }
    fn span(&self, notice: SpanNotice) {
        self.log(match notice {
            SpanNotice::Pipe { to, producer } => format!("pipe {} to {to}", producer.id),
            SpanNotice::Unpipe { to, producer } => format!("unpipe {producer} to {to}"),
            SpanNotice::Unlink { to } => format!("unlink {to}"),
        });
    }
    fn room_closing(&self, reason: &CloseReason) {
        self.log(format!("room closing {reason:?}"));
    }
    fn room_closed(&self, _totals: &MediaTotals, secondary: bool) {
        self.log(format!("room closed secondary={secondary}"));
    }
    fn transport_failed(&self, kind: &str, stage: &'static str) {
        self.log(format!("failed {kind} {stage}"));
    }
    fn middleware_retired(&self, name: &str, _counters: &crate::middleware::Counters) {
        self.log(format!("retired {name}"));
    }
}

fn name(object: Object) -> String {
    match object {
        Object::Transport {
            id,
            internal: false,
        } => format!("transport {id}"),
        Object::Transport { id, internal: true } => format!("pipe {id}"),
        Object::Producer { id, copy: false } => format!("producer {id}"),
        Object::Producer { id, copy: true } => format!("copy {id}"),
        Object::Consumer(id) => format!("consumer {id}"),
    }
}

/// A plugin that logs what its room tells it.
struct LoggingPlugin {
    name: &'static str,
    log: Rc<RefCell<Vec<String>>>,
}

struct NullSink;

impl MediaSink for NullSink {
    fn send_rtp(&self, _packet: &[u8]) {}
    fn send_rtcp(&self, _packet: &[u8]) {}
}

impl Transport for LoggingPlugin {
    fn sink(&self) -> Rc<dyn MediaSink> {
        Rc::new(NullSink)
    }
    fn producer_added(&mut self, id: ProducerId, _: MediaKind, _: &RtpParameters) {
        self.log
            .borrow_mut()
            .push(format!("{} +producer {id}", self.name));
    }
    fn producer_removed(&mut self, id: ProducerId) {
        self.log
            .borrow_mut()
            .push(format!("{} -producer {id}", self.name));
    }
    fn consumer_added(&mut self, id: ConsumerId, _: MediaKind, _: &RtpParameters) {
        self.log
            .borrow_mut()
            .push(format!("{} +consumer {id}", self.name));
    }
    fn consumer_removed(&mut self, id: ConsumerId) {
        self.log
            .borrow_mut()
            .push(format!("{} -consumer {id}", self.name));
    }
    fn close(&mut self) {
        self.log.borrow_mut().push(format!("{} closed", self.name));
    }
}

struct Fixture {
    room: RoomRef,
    host: Rc<RecordingHost>,
    events: mpsc::Receiver<Event>,
    plugins: Rc<RefCell<Vec<String>>>,
}

impl Fixture {
    fn new(secondary: bool) -> Self {
        let host = Rc::new(RecordingHost::default());
        let bus = Arc::new(EventBus::default());
        let events = bus.subscribe(None, 1000);
        let capabilities = negotiation::router_capabilities(&negotiation::default_router_codecs())
            .expect("default codecs");
        let room = Rc::new(RefCell::new(Room::new(RoomSetup {
            id: RouterId::new(),
            worker: WorkerId(0),
            config: Arc::default(),
            events: bus,
            load: Arc::default(),
            host: host.clone(),
            capabilities,
            auto_subscribe: true,
            single_connection: false,
            secondary,
        })));
        Self {
            room,
            host,
            events,
            plugins: Rc::default(),
        }
    }

    fn join(&self, peer: &str) -> PeerId {
        let id = PeerId(peer.to_owned());
        self.room.borrow_mut().peers.push(PeerState {
            id: id.clone(),
            send: None,
            recv: None,
            subscribed: true,
        });
        id
    }

    fn transport(&self, name: &'static str, peer: Option<&PeerId>, internal: bool) -> TransportId {
        let id = TransportId::new();
        let plugin: Box<dyn Transport> = Box::new(LoggingPlugin {
            name,
            log: self.plugins.clone(),
        });
        let sink = plugin.sink();
        let node = {
            let r = self.room.borrow();
            let io = RoomIo::new(
                id,
                &self.room,
                &r,
                "test",
                TransportState::Connected,
                Box::new(|_| {}),
                Box::new(|_| {}),
            );
            TransportNode {
                io: Rc::new(io),
                peer: peer.cloned(),
                kind: "test".into(),
                sink,
                plugin: Rc::new(RefCell::new(Some(plugin))),
            }
        };
        self.room.borrow_mut().add_transport(id, node, internal);
        id
    }

    fn produce(&self, transport: TransportId, ssrc: u32) -> ProducerId {
        tracks::create_producer(&self.room, transport, MediaKind::Video, &vp8(ssrc), false)
            .expect("producer")
            .id
    }

    fn consume(&self, transport: TransportId, producer: ProducerId) -> ConsumerId {
        let caps = self.room.borrow().capabilities.clone();
        tracks::create_consumer(&self.room, transport, producer, &caps, false)
            .expect("consumer")
            .id
    }

    /// Events since the last call, as `name object reason`.
    fn events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(describe(&e));
        }
        out
    }

    fn clear(&mut self) {
        self.events();
        self.host.take();
        self.plugins.borrow_mut().clear();
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::ConsumerClosed {
            consumer, reason, ..
        } => format!("consumer_closed {consumer} {reason:?}"),
        Event::ProducerClosed {
            producer, reason, ..
        } => format!("producer_closed {producer} {reason:?}"),
        Event::TransportClosed {
            transport, reason, ..
        } => format!("transport_closed {transport} {reason:?}"),
        Event::PeerLeft { peer, reason, .. } => format!("peer_left {} {reason:?}", peer.0),
        Event::RouterClosed { reason, .. } => format!("router_closed {reason:?}"),
        other => other.name().to_owned(),
    }
}

fn vp8(ssrc: u32) -> RtpParameters {
    RtpParameters {
        mid: Some("0".into()),
        codecs: vec![RtpCodecParameters {
            mime_type: "video/VP8".into(),
            payload_type: 96,
            clock_rate: 90_000,
            channels: None,
            parameters: Default::default(),
            rtcp_feedback: vec![RtcpFeedback::new("nack", "pli")],
        }],
        header_extensions: vec![RtpHeaderExtensionParameters {
            uri: extension_uri::MID.into(),
            id: 4,
            encrypt: false,
        }],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: Default::default(),
    }
}

#[test]
fn closing_a_transport_closes_consumers_then_producers_and_each_once() {
    let mut f = Fixture::new(false);
    let alice = f.join("alice");
    let bob = f.join("bob");
    let send = f.transport("a-send", Some(&alice), false);
    let recv = f.transport("b-recv", Some(&bob), false);
    let p = f.produce(send, 1111);
    let c = f.consume(recv, p);
    f.clear();

    assert!(
        f.room
            .borrow_mut()
            .close_transport(send, CloseReason::Requested)
    );

    // Bob's consumer of Alice's producer goes first, then the producer, then the transport.
    assert_eq!(
        f.events(),
        [
            format!("consumer_closed {c} ProducerClosed"),
            format!("producer_closed {p} ParentClosed"),
            format!("transport_closed {send} Requested"),
        ]
    );
    assert_eq!(
        f.host.take(),
        [
            format!("closed consumer {c}"),
            format!("closed producer {p}"),
            format!("closed transport {send}"),
        ]
    );
    // Each plugin heard about its own children, and the closed one was closed.
    assert_eq!(
        *f.plugins.borrow(),
        [
            format!("b-recv -consumer {c}"),
            format!("a-send -producer {p}"),
            "a-send closed".to_owned(),
        ]
    );
    let r = f.room.borrow();
    assert!(r.producers.is_empty() && r.consumers.is_empty());
    assert_eq!(r.forwarder.producer_count(), 0);
    assert_eq!(r.forwarder.consumer_count(), 0);
    // Bob's connection lost a track: it needs a new offer.
    assert!(r.renegotiate.contains(&recv));
    drop(r);

    // A second close finds nothing and says nothing.
    assert!(
        !f.room
            .borrow_mut()
            .close_transport(send, CloseReason::Requested)
    );
    assert!(f.events().is_empty());
    assert!(f.host.take().is_empty());
}

#[test]
fn a_peer_leaving_closes_its_transports_before_it_leaves() {
    let mut f = Fixture::new(false);
    let alice = f.join("alice");
    let send = f.transport("a-send", Some(&alice), false);
    let recv = f.transport("a-recv", Some(&alice), false);
    f.room.borrow_mut().peer_mut(&alice).expect("joined").send = Some(send);
    let p = f.produce(send, 2222);
    f.clear();

    assert!(
        f.room
            .borrow_mut()
            .close_peer(&alice, CloseReason::Requested)
    );
    let events = f.events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[3], "peer_left alice Requested");
    assert!(events.contains(&format!("producer_closed {p} ParentClosed")));
    assert!(events.contains(&format!("transport_closed {send} ParentClosed")));
    assert!(events.contains(&format!("transport_closed {recv} ParentClosed")));
    // The producer closes before its transport.
    let pos = |s: &str| events.iter().position(|e| e == s);
    assert!(
        pos(&format!("producer_closed {p} ParentClosed"))
            < pos(&format!("transport_closed {send} ParentClosed"))
    );
    assert!(f.room.borrow().peers.is_empty());
    assert!(
        !f.room
            .borrow_mut()
            .close_peer(&alice, CloseReason::Requested)
    );
}

#[test]
fn closing_the_room_closes_everything_and_announces_the_room_last_once() {
    let mut f = Fixture::new(false);
    let alice = f.join("alice");
    let send = f.transport("a-send", Some(&alice), false);
    let loose = f.transport("loose", None, false);
    let p = f.produce(send, 3333);
    let c = f.consume(loose, p);
    f.clear();

    assert!(f.room.borrow_mut().close(CloseReason::Shutdown));
    let events = f.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("router_closed Shutdown")
    );
    // Shutdown is passed down as it is, not as parent_closed.
    assert!(events.contains(&format!("consumer_closed {c} ProducerClosed")));
    assert!(events.contains(&format!("producer_closed {p} Shutdown")));
    assert!(events.contains(&"peer_left alice Shutdown".to_owned()));
    assert!(events.contains(&format!("transport_closed {loose} Shutdown")));
    assert_eq!(events.len(), 6, "{events:?}");
    let calls = f.host.take();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("room closing Shutdown")
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("room closed secondary=false")
    );

    assert!(!f.room.borrow_mut().close(CloseReason::Requested));
    assert!(f.events().is_empty());
    assert!(f.host.take().is_empty());
}

#[test]
fn a_closing_producer_takes_its_consumers_and_only_them() {
    let mut f = Fixture::new(false);
    let send = f.transport("send", None, false);
    let recv = f.transport("recv", None, false);
    let p1 = f.produce(send, 4444);
    let p2 = f.produce(send, 5555);
    let c1 = f.consume(recv, p1);
    let c2 = f.consume(recv, p2);
    f.clear();

    assert!(
        f.room
            .borrow_mut()
            .close_producer(p1, CloseReason::Requested)
    );
    assert_eq!(
        f.events(),
        [
            format!("consumer_closed {c1} ProducerClosed"),
            format!("producer_closed {p1} Requested"),
        ]
    );
    let r = f.room.borrow();
    assert!(r.consumers.contains_key(&c2) && r.producers.contains_key(&p2));
}

#[test]
fn a_busy_plugin_hears_of_its_closed_child_through_the_host() {
    let mut f = Fixture::new(false);
    let send = f.transport("send", None, false);
    let p = f.produce(send, 6666);
    f.clear();

    let plugin = f.room.borrow().transports[&send].plugin.clone();
    let busy = plugin.borrow_mut();
    assert!(
        f.room
            .borrow_mut()
            .close_producer(p, CloseReason::Requested)
    );
    drop(busy);
    assert_eq!(
        f.host.take(),
        [
            format!("later {send} producer {p}"),
            format!("closed producer {p}"),
        ]
    );
    assert!(f.plugins.borrow().is_empty());
}

#[test]
fn producers_are_piped_to_every_linked_router_and_copies_stay_hidden() {
    let mut f = Fixture::new(false);
    let pipe1 = f.transport("pipe1", None, true);
    let pipe2 = f.transport("pipe2", None, true);
    {
        let mut r = f.room.borrow_mut();
        r.span.links.insert(WorkerId(1), pipe1);
        r.span.links.insert(WorkerId(2), pipe2);
    }
    // The pipes' own creation was internal: nothing reached the backend.
    assert!(f.events().is_empty());
    let send = f.transport("send", None, false);
    f.clear();

    let p = f.produce(send, 7777);
    let calls = f.host.take();
    assert!(
        calls.contains(&format!("pipe {p} to worker-1")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("pipe {p} to worker-2")),
        "{calls:?}"
    );
    // Only the producer's creation is visible; the consumers feeding the pipes are not.
    assert_eq!(f.events(), ["producer_created"]);
    let feeding = f
        .room
        .borrow()
        .consumers
        .values()
        .filter(|c| c.producer == p)
        .count();
    assert_eq!(feeding, 2);

    // A copy arriving from another router: hidden, and not indexed as an original.
    let copy = ProducerId::new();
    tracks::create_producer_with(
        &f.room,
        pipe1,
        MediaKind::Video,
        &vp8(8888),
        false,
        Some(copy),
    )
    .expect("copy");
    f.room.borrow_mut().span.copies.insert(copy, None);
    assert!(f.events().is_empty());
    assert_eq!(f.host.take(), [format!("created copy {copy}")]);

    // The original closing tells the linked routers; the copy closing tells nobody.
    f.room
        .borrow_mut()
        .close_producer(p, CloseReason::Requested);
    let calls = f.host.take();
    assert!(
        calls.contains(&format!("unpipe {p} to worker-1")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("unpipe {p} to worker-2")),
        "{calls:?}"
    );
    f.room
        .borrow_mut()
        .close_producer(copy, CloseReason::Requested);
    assert_eq!(f.host.take(), [format!("closed copy {copy}")]);
    assert!(!f.room.borrow().span.copies.contains_key(&copy));
}

#[test]
fn a_secondary_router_closes_without_room_events_and_unlinks() {
    let mut f = Fixture::new(true);
    let bob = f.join("bob");
    let recv = f.transport("b-recv", Some(&bob), false);
    let pipe = f.transport("pipe", None, true);
    f.room.borrow_mut().span.links.insert(WorkerId(0), pipe);
    f.clear();

    assert!(f.room.borrow_mut().close(CloseReason::Requested));
    // Bob's transport is the backend's and is announced; the pipe and the room are not.
    assert_eq!(
        f.events(),
        [format!("transport_closed {recv} ParentClosed")]
    );
    let calls = f.host.take();
    assert!(calls.contains(&"unlink worker-0".to_owned()), "{calls:?}");
    assert_eq!(
        calls.last().map(String::as_str),
        Some("room closed secondary=true")
    );
    assert!(!calls.iter().any(|c| c.starts_with("room closing")));
    assert!(!f.room.borrow_mut().close(CloseReason::Requested));
}

#[test]
fn a_piped_producer_notice_carries_what_the_copy_needs() {
    let f = Fixture::new(false);
    let pipe = f.transport("pipe", None, true);
    f.room.borrow_mut().span.links.insert(WorkerId(3), pipe);
    let alice = f.join("alice");
    let send = f.transport("send", Some(&alice), false);
    f.host.take();

    // A host that keeps the notice itself.
    struct Keep(RefCell<Option<PipedProducer>>, Rc<RecordingHost>);
    impl RoomHost for Keep {
        fn created(&self, o: Object) {
            self.1.created(o)
        }
        fn closed(&self, o: Object) {
            self.1.closed(o)
        }
        fn tell_plugin_later(&self, t: TransportId, c: ChildClosed) {
            self.1.tell_plugin_later(t, c)
        }
        fn span(&self, notice: SpanNotice) {
            if let SpanNotice::Pipe { producer, .. } = notice {
                *self.0.borrow_mut() = Some(producer);
            }
        }
        fn room_closing(&self, r: &CloseReason) {
            self.1.room_closing(r)
        }
        fn room_closed(&self, t: &MediaTotals, s: bool) {
            self.1.room_closed(t, s)
        }
        fn transport_failed(&self, k: &str, s: &'static str) {
            self.1.transport_failed(k, s)
        }
        fn middleware_retired(&self, n: &str, c: &crate::middleware::Counters) {
            self.1.middleware_retired(n, c)
        }
    }
    let keep = Rc::new(Keep(RefCell::new(None), f.host.clone()));
    f.room.borrow_mut().host = keep.clone();
    let p = f.produce(send, 9999);
    let piped = keep.0.borrow_mut().take().expect("piped");
    assert_eq!(piped.id, p);
    assert_eq!(piped.from, WorkerId(0));
    assert_eq!(piped.origin_peer, Some(alice));
    assert_eq!(piped.kind, MediaKind::Video);
    // The copy gets the router's numbering and the pipe consumer's SSRC.
    let feeding = f
        .room
        .borrow()
        .consumers
        .values()
        .find(|c| c.producer == p)
        .map(|c| c.rtp_parameters.ssrc())
        .expect("pipe consumer");
    assert_eq!(piped.rtp_parameters.ssrc(), feeding);
}
