//! A WebRTC room spanning two workers: a subscriber's receive connection placed on the other
//! worker gets the publisher's media through a pipe, is offered a later publisher's tracks by
//! renegotiation, and leaves with the right events.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::time::Duration;
use switchboard::settings::Settings;
use switchboard_actors::RouterOptions;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::transport::TransportPlugin;
use switchboard_core::{PeerId, TransportId};
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;
use switchboard_transports::{PipePlugin, WebRtcPlugin, WebRtcSettings};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

fn video(tag: &[u8], keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    p.extend_from_slice(tag);
    p
}

async fn publish(
    t: &TestServer,
    room: switchboard_core::RouterId,
    name: &str,
    ssrc: u32,
) -> (Client, Arc<TrackLocalStaticRTP>) {
    let peer = PeerId::parse(name).unwrap();
    t.server.join_peer(room, peer.clone()).await.unwrap();
    let mut client = Client::new(100, 109).await;
    let track = client
        .add_track(RtpCodecKind::Video, vp8(), ssrc, name)
        .await;
    let _audio = client
        .add_track(RtpCodecKind::Audio, opus(), ssrc + 1, name)
        .await;
    let offer = client.offer().await;
    let result = t.server.publish(room, peer, offer).await.unwrap();
    client.accept_answer(&result.sdp).await;
    client.connected().await;
    (client, track)
}

/// Writes keyframes tagged `tag` until the client opens a track, then returns it once a
/// packet with the tag arrived on it.
async fn receive_video(
    track_out: &TrackLocalStaticRTP,
    ssrc: u32,
    client: &mut Client,
    tag: &[u8],
    seq: &mut u16,
) -> Arc<dyn TrackRemote> {
    let start = *seq;
    loop {
        // Sequence numbers only go forward: SRTP refuses replays.
        track_out
            .write_rtp(client_rtp(ssrc, 100, *seq, video(tag, true)))
            .await
            .unwrap();
        *seq += 1;
        if let Ok(track) =
            tokio::time::timeout(Duration::from_millis(100), client.next_track()).await
            && track.kind().await == RtpCodecKind::Video
        {
            loop {
                match tokio::time::timeout(DEADLINE, track.poll()).await {
                    Ok(Some(TrackRemoteEvent::OnRtpPacket(p)))
                        if p.payload.get(2..).is_some_and(|b| b.starts_with(tag)) =>
                    {
                        return track;
                    }
                    Ok(Some(_)) => {}
                    other => panic!("no tagged video: {other:?}"),
                }
            }
        }
        assert!(*seq - start < 100, "no video track opened");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_connection_on_the_other_worker_gets_media_and_renegotiates() {
    let mut config = Settings::default();
    config.server.workers = 2;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.placement.max_worker_packets_per_second = 1;
    config.placement.sample_interval_ms = 20;
    let t = start_with(
        config,
        vec![
            WebRtcPlugin::new(WebRtcSettings::default()) as Arc<dyn TransportPlugin>,
            PipePlugin::new(),
        ],
    );
    let router = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let room = router.id;
    let home = router.worker.0 as usize;
    let mut events = t.server.subscribe_room(room);

    let (_alice, alice_video) = publish(&t, room, "alice", 0x0A00_0000).await;
    // Alice's media loads the room's worker.
    let mut seq = 1u16;
    eventually(|| {
        seq += 1;
        let write = alice_video.write_rtp(client_rtp(0x0A00_0000, 100, seq, video(b"load", false)));
        let loaded = t.server.workers()[home].load_percent >= 100;
        async move {
            let _ = write.await;
            loaded
        }
    })
    .await;

    // Bob's receive connection goes to the other worker, and alice's video reaches him. Alice
    // keeps the worker loaded until it is placed: the load is sampled every 20 ms, and a
    // busy machine can take longer than that between the check above and the placement.
    let loading = Arc::new(std::sync::atomic::AtomicU16::new(seq));
    let keep_loaded = {
        let (track, loading) = (alice_video.clone(), loading.clone());
        tokio::spawn(async move {
            loop {
                let seq = loading.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let _ = track
                    .write_rtp(client_rtp(0x0A00_0000, 100, seq, video(b"load", false)))
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    let bob = PeerId::parse("bob").unwrap();
    t.server.join_peer(room, bob.clone()).await.unwrap();
    let offer = t.server.subscribe_peer(room, bob.clone()).await.unwrap();
    keep_loaded.abort();
    let _ = keep_loaded.await;
    seq = loading.load(std::sync::atomic::Ordering::Relaxed);
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let recv = dump["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == serde_json::json!(offer.transport))
        .unwrap_or_else(|| panic!("bob's connection is in the room's dump: {dump}"));
    assert_eq!(
        recv["worker"],
        1 - home as u64,
        "placed on the other worker"
    );
    assert_eq!(recv["peer"], "bob");
    let mut bob_client = Client::new(96, 111).await;
    let answer = bob_client.answer(&offer.sdp).await;
    t.server.answer(room, bob.clone(), answer).await.unwrap();
    bob_client.connected().await;
    seq += 1;
    receive_video(
        &alice_video,
        0x0A00_0000,
        &mut bob_client,
        b"alice",
        &mut seq,
    )
    .await;

    // Carol publishes later: bob (on the other worker) is offered her tracks, answers, and
    // receives her video.
    let (_carol, carol_video) = publish(&t, room, "carol", 0x0C00_0000).await;
    let (e, _) = wait_event(
        &mut events,
        |e| matches!(e, Event::RenegotiationNeeded { peer: Some(p), .. } if *p == bob),
    )
    .await;
    let Event::RenegotiationNeeded {
        router: r,
        transport,
        sdp,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!((r, transport), (room, offer.transport));
    let answer = bob_client.answer(&sdp).await;
    t.server.answer(room, bob.clone(), answer).await.unwrap();
    receive_video(&carol_video, 0x0C00_0000, &mut bob_client, b"carol", &mut 1).await;

    // Bob leaves: his connection on the other worker closes before he leaves the room.
    t.server.leave_peer(room, bob.clone()).await.unwrap();
    let (left, before) = wait_event(&mut events, |e| matches!(e, Event::PeerLeft { .. })).await;
    assert_eq!(
        left,
        Event::PeerLeft {
            router: room,
            peer: bob.clone(),
            reason: CloseReason::Requested
        }
    );
    let closed: Vec<TransportId> = before
        .iter()
        .filter_map(|e| match e {
            Event::TransportClosed { transport, .. } => Some(*transport),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![offer.transport]);
    t.server.shutdown().await.unwrap();
}
