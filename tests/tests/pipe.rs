//! Rooms that span workers: producers piped between two workers' routers of one room.
//!
//! The load threshold is set so low that any traffic loads a worker; the tests then wait
//! (through the measured load the server reports, never a sleep) until the room's worker is
//! loaded before asking for the transports that must go elsewhere.

use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_shared::marshal::Marshal;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterInfo, RouterOptions};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::{TransportId, WorkerId};
use switchboard_tests::*;
use switchboard_transports::{DirectEndpoint, PipePlugin};

const SSRC: u32 = 0x5A5A_0001;

/// Two workers, the pipe plugin, and a threshold any traffic exceeds.
fn start_spanning() -> TestServer {
    let mut config = Settings::default();
    config.server.workers = 2;
    config.placement.max_worker_packets_per_second = 1;
    config.placement.sample_interval_ms = 20;
    // Every keyframe request goes out at once, so one can be traced through the pipe.
    config.media.keyframe_request_interval_ms = 1;
    start_with(config, vec![PipePlugin::new()])
}

async fn direct_transport(t: &TestServer, room: &RouterInfo) -> (TransportId, DirectEndpoint) {
    let tr = t
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    (tr.id, t.direct.endpoint(tr.id).unwrap())
}

/// A VP8 publisher (SSRC [`SSRC`], RTX on the next) on a direct transport of the room.
async fn vp8_publisher(
    t: &TestServer,
    room: &RouterInfo,
) -> (
    TransportId,
    DirectEndpoint,
    switchboard_actors::ProducerInfo,
) {
    let (transport, ep) = direct_transport(t, room).await;
    let producer = t
        .server
        .produce(
            transport,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_producer(SSRC, SSRC + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    (transport, ep, producer)
}

/// Sends packets from the publisher until the room's worker reports itself loaded.
async fn load_worker(
    t: &TestServer,
    worker: WorkerId,
    publisher: &DirectEndpoint,
    seq: &Arc<AtomicU16>,
) -> KeepLoaded {
    eventually(|| {
        let s = seq.fetch_add(1, Ordering::Relaxed);
        let _ = publisher.send_rtp(vp8_packet(SSRC, s, u32::from(s) * 3000, false));
        let loaded = t.server.workers()[worker.0 as usize].load_percent >= 100;
        async move { loaded }
    })
    .await;
    // The load is sampled every 20 ms: a busy machine can take longer than that between
    // seeing it and the next placement, so the publisher goes on until the test has placed
    // what it needed to.
    let (publisher, seq) = (publisher.clone(), seq.clone());
    KeepLoaded(tokio::spawn(async move {
        loop {
            let s = seq.fetch_add(1, Ordering::Relaxed);
            let _ = publisher.send_rtp(vp8_packet(SSRC, s, u32::from(s) * 3000, false));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }))
}

/// Keeps a worker loaded until dropped.
struct KeepLoaded(tokio::task::JoinHandle<()>);

impl Drop for KeepLoaded {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The worker each transport of the room's dump runs on.
async fn transport_workers(t: &TestServer, room: &RouterInfo) -> Vec<(TransportId, u32)> {
    let dump = switchboard_tests::as_json(t.server.dump_router(room.id).await).unwrap();
    dump["transports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                serde_json::from_value(e["id"].clone()).unwrap(),
                e["worker"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

/// Reads RTP from `ep` until the packet carrying `first_seq`'s payload, then checks the next
/// `count - 1` follow it exactly; returns the SSRC they came with.
async fn expect_run(ep: &DirectEndpoint, first_seq: u16, count: u16) -> u32 {
    let first = vp8_payload(first_seq, true);
    let mut p = next_rtp(ep).await;
    while p.payload.as_ref() != first.as_slice() {
        p = next_rtp(ep).await;
    }
    let ssrc = p.header.ssrc;
    let out_seq = p.header.sequence_number;
    for k in 1..count {
        let p = next_rtp(ep).await;
        assert_eq!(p.header.ssrc, ssrc);
        assert_eq!(p.header.sequence_number, out_seq.wrapping_add(k));
        assert_eq!(
            p.payload.as_ref(),
            vp8_payload(first_seq.wrapping_add(k), false).as_slice()
        );
    }
    ssrc
}

fn send_run(publisher: &DirectEndpoint, first_seq: u16, count: u16) {
    for k in 0..count {
        let s = first_seq.wrapping_add(k);
        publisher
            .send_rtp(vp8_packet(SSRC, s, u32::from(s) * 3000, k == 0))
            .unwrap();
    }
}

/// Waits for a PLI about `media_ssrc` on a publisher's endpoint.
async fn wait_pli(ep: &DirectEndpoint, media_ssrc: u32) {
    loop {
        let packets = next_rtcp(ep).await;
        let found = packets.iter().any(|p| {
            p.as_any()
                .downcast_ref::<PictureLossIndication>()
                .is_some_and(|pli| pli.media_ssrc == media_ssrc)
        });
        if found {
            return;
        }
    }
}

fn drain(ep: &DirectEndpoint) {
    while ep.try_recv().is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_on_one_worker_is_consumed_on_the_other_through_a_pipe() {
    let t = start_spanning();
    let mut events = t.server.subscribe();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let (pub_t, pub_ep, producer) = vp8_publisher(&t, &room).await;
    let seq = Arc::new(AtomicU16::new(1));
    let loaded = load_worker(&t, room.worker, &pub_ep, &seq).await;

    // The room's worker is loaded: the subscriber's transport goes to the other one.
    let (sub_t, sub_ep) = direct_transport(&t, &room).await;
    drop(loaded);
    let placed = transport_workers(&t, &room).await;
    assert!(placed.contains(&(pub_t, room.worker.0)));
    assert!(
        placed.contains(&(sub_t, 1 - room.worker.0)),
        "placed on the other worker: {placed:?}"
    );
    let consumer = t
        .server
        .consume(
            sub_t,
            ConsumeOptions {
                producer: producer.id,
                rtp_capabilities: subscriber_caps(110, 5, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let ssrc = consumer.rtp_parameters.encodings[0].ssrc.unwrap();

    // Every packet crosses with its payload unchanged, rewritten for this subscriber.
    send_run(&pub_ep, 20_000, 30);
    assert_eq!(expect_run(&sub_ep, 20_000, 30).await, ssrc);
    let stats = switchboard_tests::as_json(t.server.consumer_stats(consumer.id).await).unwrap();
    assert!(stats["counters"]["packets"].as_u64().unwrap() >= 30);

    // A keyframe request from the far subscriber reaches the publisher through the pipe.
    drain(&pub_ep);
    let pli = PictureLossIndication {
        sender_ssrc: 0x0BAD_F00D,
        media_ssrc: ssrc,
    };
    sub_ep.send_rtcp(pli.marshal().unwrap().freeze()).unwrap();
    wait_pli(&pub_ep, SSRC).await;

    // The backend saw its own objects, all in its room, and nothing of the pipe.
    let stats = switchboard_tests::as_json(t.server.router_stats(room.id).await).unwrap();
    let routers = stats["routers"].as_array().unwrap();
    assert_eq!(routers.len(), 2);
    assert_eq!(routers[0]["role"], "home");
    assert_eq!(routers[1]["pipes"][0]["producers_in"], 1);
    t.server.close_router(room.id).await.unwrap();
    let (_, seen) = wait_event(&mut events, |e| matches!(e, Event::RouterClosed { .. })).await;
    let known: HashSet<TransportId> = [pub_t, sub_t].into();
    for e in &seen {
        if let Some(r) = e.router() {
            assert_eq!(r, room.id, "every event carries the room's id: {e:?}");
        }
        if let Some(tr) = transport_of(e) {
            assert!(
                known.contains(&tr),
                "event about an internal transport: {e:?}"
            );
        }
    }
    let created = seen
        .iter()
        .filter(|e| matches!(e, Event::TransportCreated { .. }))
        .count();
    let closed = seen
        .iter()
        .filter(|e| matches!(e, Event::TransportClosed { .. }))
        .count();
    assert_eq!((created, closed), (2, 2));
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, Event::RouterCreated { .. }))
            .count(),
        1,
        "one room, one router_created"
    );
    assert!(t.server.routers().is_empty());
    t.server.shutdown().await.unwrap();
}

fn transport_of(e: &Event) -> Option<TransportId> {
    match e {
        Event::TransportCreated { transport, .. }
        | Event::TransportStateChanged { transport, .. }
        | Event::TransportClosed { transport, .. }
        | Event::ProducerCreated { transport, .. }
        | Event::ProducerClosed { transport, .. }
        | Event::ConsumerCreated { transport, .. }
        | Event::ConsumerClosed { transport, .. }
        | Event::RenegotiationNeeded { transport, .. } => Some(*transport),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_producer_closes_its_piped_copies_and_their_consumers() {
    let t = start_spanning();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let mut events = t.server.subscribe_room(room.id);
    let (pub_t, pub_ep, producer) = vp8_publisher(&t, &room).await;
    // One subscriber at home, before the worker is loaded, and two on the other worker.
    let (near_t, _near_ep) = direct_transport(&t, &room).await;
    let seq = Arc::new(AtomicU16::new(1));
    let loaded = load_worker(&t, room.worker, &pub_ep, &seq).await;
    let (far1_t, _e1) = direct_transport(&t, &room).await;
    let (far2_t, _e2) = direct_transport(&t, &room).await;
    drop(loaded);
    let placed = transport_workers(&t, &room).await;
    assert!(placed.contains(&(near_t, room.worker.0)));
    assert!(placed.contains(&(far1_t, 1 - room.worker.0)));
    let mut consumers = HashSet::new();
    for tr in [near_t, far1_t, far2_t] {
        let c = t
            .server
            .consume(
                tr,
                ConsumeOptions {
                    producer: producer.id,
                    rtp_capabilities: subscriber_caps(110, 5, false),
                    paused: false,
                },
            )
            .await
            .unwrap();
        consumers.insert(c.id);
    }
    let stats = switchboard_tests::as_json(t.server.router_stats(room.id).await).unwrap();
    let far = &stats["routers"][1];
    assert_eq!(far["consumers"], 2);
    assert_eq!(far["pipes"][0]["producers_in"], 1, "one piped copy");

    let (_, before) = wait_event(
        &mut events,
        |e| matches!(e, Event::ConsumerCreated { transport, .. } if *transport == far2_t),
    )
    .await;
    drop(before);
    t.server.close_producer(producer.id).await.unwrap();
    let (closed, on_the_way) =
        wait_event(&mut events, |e| matches!(e, Event::ProducerClosed { .. })).await;
    assert_eq!(
        closed,
        Event::ProducerClosed {
            router: room.id,
            transport: pub_t,
            producer: producer.id,
            reason: CloseReason::Requested,
        }
    );
    // Each consumer, on either worker, closed once and before its producer, and nothing
    // about the pipe was announced.
    let mut closed_consumers = HashSet::new();
    for e in &on_the_way {
        match e {
            Event::ConsumerClosed {
                router,
                consumer,
                producer: p,
                reason,
                ..
            } => {
                assert_eq!(*router, room.id);
                assert_eq!(*p, producer.id);
                assert_eq!(*reason, CloseReason::ProducerClosed);
                assert!(closed_consumers.insert(*consumer), "closed twice: {e:?}");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(closed_consumers, consumers);

    // The copy is gone from the other worker, and the producer from everywhere.
    eventually(|| {
        let server = t.server.clone();
        async move {
            let stats = switchboard_tests::as_json(server.router_stats(room.id).await).unwrap();
            stats["routers"][1]["pipes"][0]["producers_in"] == 0
                && stats["routers"][0]["pipes"][0]["producers_out"] == 0
        }
    })
    .await;
    let err = t
        .server
        .consume(
            far1_t,
            ConsumeOptions {
                producer: producer.id,
                rtp_capabilities: subscriber_caps(110, 5, false),
                paused: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, switchboard_core::ErrorCode::NotFound);
    let dump = switchboard_tests::as_json(t.server.dump_router(room.id).await).unwrap();
    assert_eq!(dump["producers"], json!([]));
    assert_eq!(dump["consumers"], json!([]));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_forty_subscribers_spans_both_workers_and_everyone_receives_everything() {
    let t = start_spanning();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let (_, pub_ep, producer) = vp8_publisher(&t, &room).await;
    // The publisher sends all along (a keyframe now and then, so the far side starts
    // forwarding too), and load is measured while subscribers arrive.
    let sending = Arc::new(AtomicBool::new(true));
    let seq = Arc::new(AtomicU16::new(1));
    let background = {
        let (sending, seq, ep) = (sending.clone(), seq.clone(), pub_ep.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
            while sending.load(Ordering::Relaxed) {
                tick.tick().await;
                let s = seq.fetch_add(1, Ordering::Relaxed);
                let _ = ep.send_rtp(vp8_packet(SSRC, s, u32::from(s) * 3000, s % 10 == 0));
            }
        })
    };
    // The background sender keeps it loaded from here.
    drop(load_worker(&t, room.worker, &pub_ep, &seq).await);
    let home = room.worker.0 as usize;
    let mut subs = Vec::new();
    for i in 0..40u8 {
        if i == 20 {
            // The first half went to the idle worker; once forwarding to them makes it the
            // busier one, the rest go to the room's own worker, the least loaded again.
            eventually(|| {
                let w = t.server.workers();
                let ready = w[1 - home].load_percent > w[home].load_percent;
                async move { ready }
            })
            .await;
        }
        let (tr, ep) = direct_transport(&t, &room).await;
        let c = t
            .server
            .consume(
                tr,
                ConsumeOptions {
                    producer: producer.id,
                    rtp_capabilities: subscriber_caps(100 + (i % 20), 1 + (i % 14), false),
                    paused: false,
                },
            )
            .await
            .unwrap();
        subs.push((tr, ep, c.rtp_parameters.encodings[0].ssrc.unwrap()));
    }
    sending.store(false, Ordering::Relaxed);
    background.await.unwrap();

    let placed = transport_workers(&t, &room).await;
    let sub_ids: HashSet<TransportId> = subs.iter().map(|s| s.0).collect();
    let workers: HashSet<u32> = placed
        .iter()
        .filter(|(id, _)| sub_ids.contains(id))
        .map(|(_, w)| *w)
        .collect();
    assert_eq!(workers.len(), 2, "subscribers on both workers: {placed:?}");
    let stats = switchboard_tests::as_json(t.server.router_stats(room.id).await).unwrap();
    let per_router: Vec<u64> = stats["routers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["consumers"].as_u64().unwrap())
        .collect();
    assert_eq!(per_router.iter().sum::<u64>(), 40, "{per_router:?}");

    // A keyframe and 50 packets after it: every subscriber gets all of them, in order,
    // with their exact payloads.
    let first = seq.load(Ordering::Relaxed).wrapping_add(100);
    send_run(&pub_ep, first, 50);
    for (_, ep, ssrc) in &subs {
        assert_eq!(expect_run(ep, first, 50).await, *ssrc);
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_placed_on_the_other_worker_is_piped_back_to_the_room_s_worker() {
    let t = start_spanning();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let mut events = t.server.subscribe_room(room.id);
    // A subscriber at home, then a publisher whose traffic loads the room's worker.
    let (home_sub_t, home_sub_ep) = direct_transport(&t, &room).await;
    let (loader_t, loader_ep) = direct_transport(&t, &room).await;
    t.server
        .produce(
            loader_t,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_producer(SSRC, SSRC + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    let loaded = load_worker(&t, room.worker, &loader_ep, &Arc::new(AtomicU16::new(1))).await;

    // The next publisher lands on the other worker; its producer is consumed at home.
    let (far_pub_t, far_pub_ep) = direct_transport(&t, &room).await;
    drop(loaded);
    assert!(
        transport_workers(&t, &room)
            .await
            .contains(&(far_pub_t, 1 - room.worker.0))
    );
    const FAR: u32 = 0x0FA2_0001;
    let far_producer = t
        .server
        .produce(
            far_pub_t,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_producer(FAR, FAR + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    let consumer = t
        .server
        .consume(
            home_sub_t,
            ConsumeOptions {
                producer: far_producer.id,
                rtp_capabilities: subscriber_caps(111, 6, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    for k in 0..20u16 {
        far_pub_ep
            .send_rtp(vp8_packet(FAR, 300 + k, u32::from(k) * 3000, k == 0))
            .unwrap();
    }
    assert_eq!(
        expect_run(&home_sub_ep, 300, 20).await,
        consumer.rtp_parameters.encodings[0].ssrc.unwrap()
    );

    // Closing the far transport closes the home consumer first, then the producer, then the
    // transport.
    let (_, _) = wait_event(
        &mut events,
        |e| matches!(e, Event::ConsumerCreated { consumer: c, .. } if *c == consumer.id),
    )
    .await;
    t.server.close_transport(far_pub_t).await.unwrap();
    let (_, before) = wait_event(
        &mut events,
        |e| matches!(e, Event::TransportClosed { transport, .. } if *transport == far_pub_t),
    )
    .await;
    let names: Vec<&str> = before.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["consumer_closed", "producer_closed"]);
    assert!(matches!(
        &before[0],
        Event::ConsumerClosed { consumer: c, reason: CloseReason::ProducerClosed, .. } if *c == consumer.id
    ));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_room_transport_limit_counts_every_router_of_a_spanning_room() {
    let mut config = Settings::default();
    config.server.workers = 2;
    config.placement.max_worker_packets_per_second = 1;
    config.placement.sample_interval_ms = 20;
    config.limits.max_transports_per_room = 4;
    let t = start_with(config, vec![PipePlugin::new()]);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let (_, pub_ep, _) = vp8_publisher(&t, &room).await;
    let seq = Arc::new(AtomicU16::new(1));
    let loaded = load_worker(&t, room.worker, &pub_ep, &seq).await;
    // Three more: with the room's worker loaded they go to the other worker's router, whose
    // own count (and the pipes linking the two) must not hide the room's.
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(direct_transport(&t, &room).await.0);
    }
    drop(loaded);
    let placed = transport_workers(&t, &room).await;
    assert!(
        placed.iter().any(|(_, w)| *w != room.worker.0),
        "the room spans: {placed:?}"
    );
    let err = t
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .expect_err("a fifth transport in a room limited to four");
    assert_eq!(
        err.code,
        switchboard_core::ErrorCode::LimitExceeded,
        "{err}"
    );
    // A closed transport gives its slot back, wherever it was.
    t.server.close_transport(created[2]).await.unwrap();
    direct_transport(&t, &room).await;
    t.server.shutdown().await.unwrap();
}
