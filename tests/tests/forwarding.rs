//! The actor tree forwarding real RTP through direct transports.

use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc_shared::marshal::Marshal;
use serde_json::json;
use std::collections::HashSet;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions};
use switchboard_core::WorkerId;
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_tests::*;

const SSRC: u32 = 0x0A0A_0001;

struct Sub {
    ssrc: u32,
    pt: u8,
    mid_id: u8,
    ep: switchboard_transports::DirectEndpoint,
    consumer: switchboard_core::ConsumerId,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_are_placed_on_the_least_loaded_worker() {
    let t = start(2, vec![]);
    let a = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let b = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    assert_ne!(
        a.worker, b.worker,
        "the second room goes to the idle worker"
    );
    let c = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    // Load a's worker with a transport: the fourth room goes to the other worker.
    t.server
        .create_transport(c.id, "direct", json!({}))
        .await
        .unwrap();
    let d = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    assert_ne!(d.worker, c.worker);
    let workers = t.server.workers();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers.iter().map(|w| w.routers).sum::<usize>(), 4);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_fifty_consumers_with_rewritten_headers_and_exact_payloads() {
    let t = start(2, vec![]);
    let router = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let pub_ep = t.direct.endpoint(pub_t.id).unwrap();
    let producer = t
        .server
        .produce(
            pub_t.id,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_producer(SSRC, SSRC + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    let mut subs = Vec::new();
    for i in 0..50u8 {
        let tr = t
            .server
            .create_transport(router.id, "direct", json!({}))
            .await
            .unwrap();
        let pt = 100 + (i % 20);
        let mid_id = 1 + (i % 14);
        let c = t
            .server
            .consume(
                tr.id,
                ConsumeOptions {
                    producer: producer.id,
                    rtp_capabilities: subscriber_caps(pt, mid_id, false),
                    paused: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(c.rtp_parameters.codecs[0].payload_type, pt);
        subs.push(Sub {
            ssrc: c.rtp_parameters.encodings[0].ssrc.unwrap(),
            pt,
            mid_id,
            ep: t.direct.endpoint(tr.id).unwrap(),
            consumer: c.id,
        });
    }
    let ssrcs: HashSet<u32> = subs.iter().map(|s| s.ssrc).collect();
    assert_eq!(ssrcs.len(), 50, "every consumer has its own SSRC");
    assert!(!ssrcs.contains(&SSRC));

    // Datagrams that do not parse as RTP reach no consumer and are counted by the router
    // (the direct transport delivers in order, so they are judged before the media below).
    pub_ep
        .send_rtp(bytes::Bytes::from_static(b"\x80\x60"))
        .unwrap();
    pub_ep
        .send_rtp(bytes::Bytes::from_static(&[0u8; 40]))
        .unwrap();
    // Consumers wait for a keyframe: the first packet is one.
    for k in 0..20u16 {
        pub_ep
            .send_rtp(vp8_packet(
                SSRC,
                5000 + k,
                1000 + u32::from(k) * 3000,
                k == 0,
            ))
            .unwrap();
    }
    for s in &subs {
        let mut first_seq = None;
        for k in 0..20u16 {
            let p = next_rtp(&s.ep).await;
            assert_eq!(p.header.ssrc, s.ssrc);
            assert_eq!(p.header.payload_type, s.pt);
            let first = *first_seq.get_or_insert(p.header.sequence_number);
            assert_eq!(p.header.sequence_number, first.wrapping_add(k));
            assert_eq!(p.header.timestamp, 1000 + u32::from(k) * 3000);
            assert_eq!(p.payload.as_ref(), vp8_payload(5000 + k, k == 0).as_slice());
            assert_eq!(p.header.get_extension(s.mid_id).unwrap().as_ref(), b"0");
        }
        let stats = switchboard_tests::as_json(t.server.consumer_stats(s.consumer).await).unwrap();
        assert_eq!(stats["counters"]["packets"], 20);
    }
    let stats = switchboard_tests::as_json(t.server.producer_stats(producer.id).await).unwrap();
    assert_eq!(stats["counters"]["packets"], 20);
    let stats = switchboard_tests::as_json(t.server.router_stats(router.id).await).unwrap();
    assert_eq!(stats["counters"]["malformed_rtp"], 2, "{stats}");
    assert_eq!(stats["counters"]["rtp_in"], 22, "{stats}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_nack_and_pli_through_the_actor_tree() {
    // A window long enough that a slow machine still sends everything below inside it.
    let mut config = switchboard::settings::Settings::default();
    config.server.workers = 1;
    config.media.keyframe_request_interval_ms = 2_000;
    let t = start_with(config, vec![]);
    let router = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let pub_ep = t.direct.endpoint(pub_t.id).unwrap();
    let producer = t
        .server
        .produce(
            pub_t.id,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: vp8_producer(SSRC, SSRC + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    let sub_t = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let sub_ep = t.direct.endpoint(sub_t.id).unwrap();
    let c = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer: producer.id,
                rtp_capabilities: subscriber_caps(120, 3, true),
                paused: false,
            },
        )
        .await
        .unwrap();
    let ssrc = c.rtp_parameters.encodings[0].ssrc.unwrap();
    let rtx_ssrc = c.rtp_parameters.encodings[0].rtx.unwrap().ssrc;

    // Joining asked the publisher for a keyframe, naming its SSRC.
    let rtcp = next_rtcp(&pub_ep).await;
    let pli = rtcp[0]
        .as_any()
        .downcast_ref::<PictureLossIndication>()
        .unwrap();
    assert_eq!(pli.media_ssrc, SSRC);

    pub_ep.send_rtp(vp8_packet(SSRC, 10, 0, true)).unwrap();
    pub_ep.send_rtp(vp8_packet(SSRC, 11, 3000, false)).unwrap();
    let a = next_rtp(&sub_ep).await.header.sequence_number;
    let b = next_rtp(&sub_ep).await.header.sequence_number;
    assert_eq!(b, a.wrapping_add(1));

    // Pause the consumer while the publisher moves on, then resume.
    t.server.set_consumer_paused(c.id, true).await.unwrap();
    for seq in 12..40 {
        pub_ep
            .send_rtp(vp8_packet(SSRC, seq, u32::from(seq) * 3000, false))
            .unwrap();
    }
    t.server.set_consumer_paused(c.id, false).await.unwrap();
    pub_ep
        .send_rtp(vp8_packet(SSRC, 40, 120_000, false))
        .unwrap(); // held: not a keyframe
    pub_ep
        .send_rtp(vp8_packet(SSRC, 41, 123_000, true))
        .unwrap();
    let p = next_rtp(&sub_ep).await;
    assert_eq!(
        p.header.sequence_number,
        b.wrapping_add(1),
        "no gap after resume"
    );
    assert_eq!(p.payload.as_ref(), vp8_payload(41, true).as_slice());

    // The subscriber NACKs its packet b: it comes back as RTX with b as the OSN.
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: ssrc,
        nacks: nack_pairs_from_sequence_numbers(&[b]),
    };
    sub_ep.send_rtcp(nack.marshal().unwrap().freeze()).unwrap();
    let rtx = next_rtp(&sub_ep).await;
    assert_eq!(rtx.header.ssrc, rtx_ssrc);
    assert_eq!(rtx.header.payload_type, 121);
    assert_eq!(&rtx.payload[..2], &b.to_be_bytes());
    assert_eq!(&rtx.payload[2..], vp8_payload(11, false).as_slice());

    // The resume and many PLIs inside the join's throttle window reach the publisher once,
    // when that window ends.
    for _ in 0..10 {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: ssrc,
        };
        sub_ep.send_rtcp(pli.marshal().unwrap().freeze()).unwrap();
    }
    let rtcp = next_rtcp(&pub_ep).await;
    assert!(rtcp[0].as_any().is::<PictureLossIndication>());
    let stats = switchboard_tests::as_json(t.server.producer_stats(producer.id).await).unwrap();
    assert_eq!(stats["counters"]["keyframe_requests_sent"], 2);
    assert_eq!(stats["counters"]["keyframe_requests"], 12);
    assert!(pub_ep.try_recv().is_none(), "no further PLI");
    let cstats = switchboard_tests::as_json(t.server.consumer_stats(c.id).await).unwrap();
    assert_eq!(cstats["counters"]["plis"], 10);
    assert_eq!(cstats["counters"]["retransmitted"], 1);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_of_one_publisher_reach_a_subscriber_on_one_transport() {
    let t = start(1, vec![]);
    let router = t
        .server
        .create_router(RouterOptions {
            worker: Some(WorkerId(0)),
            ..Default::default()
        })
        .await
        .unwrap();
    let pub_t = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let pub_ep = t.direct.endpoint(pub_t.id).unwrap();
    let audio = t
        .server
        .produce(
            pub_t.id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: opus_producer(0x00AD_0010),
                paused: false,
            },
        )
        .await
        .unwrap();
    let sub_t = t
        .server
        .create_transport(router.id, "direct", json!({}))
        .await
        .unwrap();
    let sub_ep = t.direct.endpoint(sub_t.id).unwrap();
    let c = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer: audio.id,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(c.rtp_parameters.codecs[0].payload_type, 100);
    // Audio needs no keyframe: the first packet goes through.
    pub_ep
        .send_rtp(opus_packet(0x00AD_0010, 1, 960, b"opus-frame-1"))
        .unwrap();
    let p = next_rtp(&sub_ep).await;
    assert_eq!(p.header.payload_type, 100);
    assert_eq!(p.payload.as_ref(), b"opus-frame-1");
    t.server.shutdown().await.unwrap();
}
