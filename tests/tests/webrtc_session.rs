//! Rooms of WebRTC peers driven by native SDP: publish, subscribe, automatic subscription,
//! renegotiation, m-line reuse, NACK and PLI. Clients are webrtc-rs peer connections.

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::RouterOptions;
use switchboard_core::event::{CloseReason, Connection, Event};
use switchboard_core::{PeerId, RouterId};
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// The first entry of a router dump's `list` (`transports`, `producers`, `consumers`) that
/// matches.
fn dump_entry<'a>(
    dump: &'a serde_json::Value,
    list: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    dump[list]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| matches(e)))
        .unwrap_or_else(|| panic!("no matching entry in {list}: {dump}"))
}

/// A dump entry's id, parsed.
fn entry_id<T: std::str::FromStr>(entry: &serde_json::Value) -> T
where
    T::Err: std::fmt::Debug,
{
    entry["id"]
        .as_str()
        .expect("an id")
        .parse()
        .expect("a valid id")
}

fn m_lines(sdp: &str) -> Vec<String> {
    let mut mids = Vec::new();
    let mut in_media = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_media = true;
        } else if in_media && let Some(mid) = line.strip_prefix("a=mid:") {
            mids.push(mid.trim().to_owned());
        }
    }
    mids
}

struct Publisher {
    /// The publishing connection (kept open; with one connection per peer it also receives).
    client: Client,
    video: Arc<TrackLocalStaticRTP>,
    video_ssrc: u32,
    audio: Arc<TrackLocalStaticRTP>,
    audio_ssrc: u32,
}

/// A peer that joins and publishes VP8 + Opus with its own payload types (100, 109).
async fn publish(t: &TestServer, room: RouterId, peer: &PeerId, base_ssrc: u32) -> Publisher {
    t.server.join_peer(room, peer.clone()).await.unwrap();
    let mut client = Client::new(100, 109).await;
    let video = client
        .add_track(RtpCodecKind::Video, vp8(), base_ssrc, &peer.0)
        .await;
    let audio = client
        .add_track(RtpCodecKind::Audio, opus(), base_ssrc + 1, &peer.0)
        .await;
    let offer = client.offer().await;
    let result = t.server.publish(room, peer.clone(), offer).await.unwrap();
    assert_eq!(result.producers.len(), 2);
    client.accept_answer(&result.sdp).await;
    client.connected().await;
    Publisher {
        client,
        video,
        video_ssrc: base_ssrc,
        audio,
        audio_ssrc: base_ssrc + 1,
    }
}

struct Subscriber {
    peer: PeerId,
    client: Client,
    mids: Vec<String>,
    /// Remote tracks by SSRC.
    tracks: HashMap<u32, Arc<dyn TrackRemote>>,
}

async fn subscribe(t: &TestServer, room: RouterId, name: &str) -> Subscriber {
    let peer = PeerId::parse(name).unwrap();
    t.server.join_peer(room, peer.clone()).await.unwrap();
    let offer = t.server.subscribe_peer(room, peer.clone()).await.unwrap();
    let mut client = Client::new(96, 111).await;
    let answer = client.answer(&offer.sdp).await;
    t.server.answer(room, peer.clone(), answer).await.unwrap();
    client.connected().await;
    Subscriber {
        peer,
        client,
        mids: m_lines(&offer.sdp),
        tracks: HashMap::new(),
    }
}

impl Subscriber {
    /// Applies a renegotiation offer from the event stream and answers it.
    async fn renegotiate(&mut self, t: &TestServer, room: RouterId, sdp: &str) {
        self.mids = m_lines(sdp);
        let answer = self.client.answer(sdp).await;
        t.server
            .answer(room, self.peer.clone(), answer)
            .await
            .unwrap();
    }
}

/// A VP8 payload (descriptor and frame header first, so keyframes are recognised) carrying
/// `tag`; audio payloads are the tag alone.
fn video(tag: &[u8], keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    p.extend_from_slice(tag);
    p
}

/// The next RTP packet on a remote track whose payload carries `tag` (after the VP8 header
/// for video).
async fn next_payload(track: &Arc<dyn TrackRemote>, tag: &[u8]) -> rtc::rtp::Packet {
    loop {
        match tokio::time::timeout(DEADLINE, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p)))
                if p.payload.starts_with(tag)
                    || p.payload.get(2..).is_some_and(|b| b.starts_with(tag)) =>
            {
                return p;
            }
            Ok(Some(_)) => {}
            other => panic!("track ended or timed out: {other:?}"),
        }
    }
}

/// Waits for each peer's renegotiation offer.
async fn offers_for(
    events: &mut mpsc::Receiver<Event>,
    peers: &[PeerId],
) -> HashMap<PeerId, String> {
    let mut offers = HashMap::new();
    while offers.len() < peers.len() {
        let (e, _) = wait_event(events, |e| matches!(e, Event::RenegotiationNeeded { .. })).await;
        if let Event::RenegotiationNeeded {
            peer: Some(peer),
            sdp,
            ..
        } = e
            && peers.contains(&peer)
        {
            offers.insert(peer, sdp);
        }
    }
    offers
}

/// Sends keyframes on a publisher's video until the subscriber's track for the consumer
/// shows one; returns the subscriber's track and the consumer SSRC.
async fn first_video(p: &Publisher, s: &mut Subscriber, tag: &[u8]) -> (Arc<dyn TrackRemote>, u32) {
    let mut seq = 1u16;
    let payload = video(tag, true);
    let track = loop {
        p.video
            .write_rtp(client_rtp(p.video_ssrc, 100, seq, payload.clone()))
            .await
            .unwrap();
        seq += 1;
        if let Ok(track) =
            tokio::time::timeout(Duration::from_millis(100), s.client.next_track()).await
        {
            break track;
        }
        assert!(seq < 100, "no video track reached {}", s.peer);
    };
    let ssrc = track.ssrcs().await[0];
    s.tracks.insert(ssrc, track.clone());
    (track, ssrc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_webrtc_peers_publishes_subscribes_and_renegotiates() {
    let t = start_webrtc(1);
    let router = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let room = router.id;
    let router_pt = |mime: &str| {
        router
            .rtp_capabilities
            .codecs
            .iter()
            .find(|c| c.mime_type.eq_ignore_ascii_case(mime))
            .and_then(|c| c.preferred_payload_type)
            .unwrap()
    };
    let (vp8_pt, opus_pt) = (router_pt("video/VP8"), router_pt("audio/opus"));
    assert_ne!(
        vp8_pt, 100,
        "the test wants the publisher's payload type to differ"
    );
    let mut events = t.server.subscribe_room(room);

    // Alice publishes video and audio.
    let alice = PeerId::parse("alice").unwrap();
    let a = publish(&t, room, &alice, 0x0A00_0000).await;

    // Three subscribers join: each is offered alice's two tracks.
    let mut subs = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let s = subscribe(&t, room, name).await;
        assert_eq!(s.mids.len(), 3, "the data channel, alice's audio and video");
        subs.push(s);
    }

    // Every subscriber gets alice's video byte for byte, on its own SSRC.
    let mut ssrcs = Vec::new();
    let mut video_tracks = Vec::new();
    for s in subs.iter_mut() {
        let (track, ssrc) = first_video(&a, s, b"A").await;
        assert_ne!(ssrc, a.video_ssrc);
        ssrcs.push(ssrc);
        video_tracks.push(track);
    }
    ssrcs.sort();
    ssrcs.dedup();
    assert_eq!(ssrcs.len(), 3, "each subscriber has its own SSRC");
    for k in 0..10u16 {
        let mut tag = b"A-frame-".to_vec();
        tag.extend(k.to_be_bytes());
        let payload = video(&tag, false);
        a.video
            .write_rtp(client_rtp(a.video_ssrc, 100, 1000 + k, payload))
            .await
            .unwrap();
    }
    for track in &video_tracks {
        for k in 0..10u16 {
            let p = next_payload(track, b"A-frame-").await;
            assert_eq!(&p.payload[10..], &k.to_be_bytes());
            // Subscribers receive the router's payload type, not alice's 100.
            assert_eq!(p.header.payload_type, vp8_pt);
        }
    }
    // Audio too.
    a.audio
        .write_rtp(client_rtp(a.audio_ssrc, 109, 1, b"A-audio".to_vec()))
        .await
        .unwrap();
    for s in subs.iter_mut() {
        let track = loop {
            let track = s.client.next_track().await;
            let ssrc = track.ssrcs().await[0];
            s.tracks.insert(ssrc, track.clone());
            if track.kind().await == RtpCodecKind::Audio {
                break track;
            }
        };
        let p = next_payload(&track, b"A-audio").await;
        assert_eq!(p.header.payload_type, opus_pt);
    }

    // Dave joins mid-call and publishes: every subscriber is renegotiated with his tracks.
    let dave = PeerId::parse("dave").unwrap();
    let d = publish(&t, room, &dave, 0x0D00_0000).await;
    let peers: Vec<PeerId> = subs.iter().map(|s| s.peer.clone()).collect();
    let offers = offers_for(&mut events, &peers).await;
    for s in subs.iter_mut() {
        let offer = &offers[&s.peer];
        assert_eq!(
            m_lines(offer).len(),
            5,
            "the data channel, alice's two and dave's two m-lines"
        );
        let old: Vec<String> = s.mids.clone();
        assert_eq!(
            &m_lines(offer)[..3],
            old.as_slice(),
            "existing mids keep their order"
        );
        s.renegotiate(&t, room, offer).await;
    }
    let (d_track, d_ssrc) = first_video(&d, &mut subs[0], b"D").await;

    // Dave's video producer, and s1's consumer of it.
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let dave_send = dump_entry(&dump, "transports", |tr| tr["peer"] == "dave")["id"].clone();
    let s1_recv = dump_entry(&dump, "transports", |tr| tr["peer"] == "s1")["id"].clone();
    let dave_video = dump_entry(&dump, "producers", |p| {
        p["transport"] == dave_send && p["kind"] == "video"
    });
    let dave_producer: switchboard_core::ProducerId = entry_id(dave_video);
    let s1_consumer: switchboard_core::ConsumerId = entry_id(dump_entry(&dump, "consumers", |c| {
        c["transport"] == s1_recv && c["producer"] == dave_video["id"]
    }));

    // A NACK from a subscriber is answered from the router's buffer on its connection. (The
    // receiving stack drops a second copy of a sequence number it already holds, so the answer
    // is observed where it leaves the server; tests/tests/forwarding.rs checks retransmitted
    // payloads byte for byte.)
    let retransmitted = |v: serde_json::Value| v["counters"]["retransmitted"].as_u64().unwrap();
    d.video
        .write_rtp(client_rtp(
            d.video_ssrc,
            100,
            5000,
            video(b"D-nack-me", false),
        ))
        .await
        .unwrap();
    let original = next_payload(&d_track, b"D-nack-me").await;
    let before = retransmitted(
        switchboard_tests::as_json(t.server.consumer_stats(s1_consumer).await).unwrap(),
    );
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: d_ssrc,
        nacks: nack_pairs_from_sequence_numbers(&[original.header.sequence_number]),
    };
    d_track.write_rtcp(vec![Box::new(nack)]).await.unwrap();
    eventually(|| async {
        retransmitted(
            switchboard_tests::as_json(t.server.consumer_stats(s1_consumer).await).unwrap(),
        ) > before
    })
    .await;

    // A PLI from a subscriber reaches dave's producer as a keyframe request.
    let requests = |v: serde_json::Value| v["counters"]["keyframe_requests"].as_u64().unwrap();
    let before =
        requests(switchboard_tests::as_json(t.server.producer_stats(dave_producer).await).unwrap());
    let pli = PictureLossIndication {
        sender_ssrc: 1,
        media_ssrc: d_ssrc,
    };
    d_track.write_rtcp(vec![Box::new(pli)]).await.unwrap();
    eventually(|| async {
        requests(switchboard_tests::as_json(t.server.producer_stats(dave_producer).await).unwrap())
            > before
    })
    .await;

    // Alice leaves: her m-lines go inactive, and the next newcomer's tracks reuse them.
    t.server.leave_peer(room, alice.clone()).await.unwrap();
    drop(a);
    let offers = offers_for(&mut events, &peers).await;
    for s in subs.iter_mut() {
        let offer = offers[&s.peer].clone();
        assert_eq!(m_lines(&offer).len(), 5, "closed m-lines stay, inactive");
        s.renegotiate(&t, room, &offer).await;
    }
    let erin = PeerId::parse("erin").unwrap();
    let _e = publish(&t, room, &erin, 0x0E00_0000).await;
    let offers = offers_for(&mut events, &peers).await;
    for s in subs.iter_mut() {
        let offer = offers[&s.peer].clone();
        let mids = m_lines(&offer);
        assert_eq!(
            mids.len(),
            5,
            "erin's tracks reuse alice's m-lines: the SDP does not grow"
        );
        assert_eq!(mids, s.mids, "mids and their order are stable");
        s.renegotiate(&t, room, &offer).await;
    }
    t.server.shutdown().await.unwrap();
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_gets_fresh_credentials_and_media_keeps_flowing() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let alice = PeerId::parse("alice").unwrap();
    let a = publish(&t, room, &alice, 0x0A10_0000).await;
    let mut s = subscribe(&t, room, "viewer").await;
    let (track, _) = first_video(&a, &mut s, b"before").await;
    let first_ufrag = {
        let offer = t.server.restart_ice(room, s.peer.clone()).await.unwrap();
        let new_ufrag = ufrag(&offer.sdp);
        assert!(!new_ufrag.is_empty());
        s.renegotiate(&t, room, &offer.sdp).await;
        new_ufrag
    };
    // A second restart changes them again: every restart is a new ICE session.
    let offer = t.server.restart_ice(room, s.peer.clone()).await.unwrap();
    assert_ne!(ufrag(&offer.sdp), first_ufrag);
    s.renegotiate(&t, room, &offer.sdp).await;
    // Media still flows after the restarts.
    let mut seq = 500u16;
    let got = loop {
        a.video
            .write_rtp(client_rtp(a.video_ssrc, 100, seq, video(b"after", true)))
            .await
            .unwrap();
        seq += 1;
        match tokio::time::timeout(Duration::from_millis(200), next_payload(&track, b"after")).await
        {
            Ok(p) => break p,
            Err(_) => assert!(seq < 530, "no media after the ICE restart"),
        }
    };
    assert!(got.payload.ends_with(b"after"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_packet_is_nacked_and_retransmitted_with_its_original_payload() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let alice = PeerId::parse("alice").unwrap();
    let a = publish(&t, room, &alice, 0x0A20_0000).await;

    // The viewer reaches the server through a relay that will lose one video packet.
    let viewer =
        switchboard_tests::webrtc_client::subscribe_through_relay(&t.server, room, "viewer").await;
    let relay = viewer.relay;
    let mut s = Subscriber {
        peer: PeerId::parse("viewer").unwrap(),
        client: viewer.client,
        mids: m_lines(&viewer.offer),
        tracks: HashMap::new(),
    };
    let (track, _) = first_video(&a, &mut s, b"start").await;

    // Lose the next video packet on the way to the viewer, among ten tagged ones.
    let mut expected = Vec::new();
    for k in 0..10u16 {
        let seq = 2000 + k;
        let mut tag = format!("lossy-{k:02}-").into_bytes();
        tag.resize(600, b'.'); // video-sized, so the relay picks a video packet
        expected.push(tag.clone());
        if k == 4 {
            relay.drop_next_large_rtp();
        }
        a.video
            .write_rtp(client_rtp(a.video_ssrc, 100, seq, video(&tag, false)))
            .await
            .unwrap();
    }
    // Every payload arrives, the lost one through a NACK and a retransmission.
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let p = next_payload(&track, b"lossy-").await;
        let body = p.payload[2..].to_vec();
        if !got.contains(&body) {
            got.push(body);
        }
    }
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(relay.dropped(), 1, "the relay lost exactly one packet");
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let consumer: switchboard_core::ConsumerId =
        entry_id(dump_entry(&dump, "consumers", |c| c["kind"] == "video"));
    let stats = switchboard_tests::as_json(t.server.consumer_stats(consumer).await).unwrap();
    assert!(
        stats["counters"]["retransmitted"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_an_empty_room_receives_whoever_publishes_later() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let mut events = t.server.subscribe_room(room);
    // The first offer carries only the connection's data channel: it connects at once.
    let mut s = subscribe(&t, room, "early").await;
    assert_eq!(s.mids.len(), 1, "the data channel's m-line");
    let alice = PeerId::parse("alice").unwrap();
    let a = publish(&t, room, &alice, 0x0A30_0000).await;
    let offers = offers_for(&mut events, std::slice::from_ref(&s.peer)).await;
    s.renegotiate(&t, room, &offers[&s.peer]).await;
    assert_eq!(s.mids.len(), 3, "the data channel and alice's two tracks");
    let (_track, ssrc) = first_video(&a, &mut s, b"late").await;
    assert_ne!(ssrc, a.video_ssrc);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_connection_per_peer_both_directions_share_it() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions {
            single_connection: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    // Alice and Bob each publish on their one connection...
    let alice = PeerId::parse("alice").unwrap();
    let mut a = publish(&t, room, &alice, 0x0A40_0000).await;
    let bob = PeerId::parse("bob").unwrap();
    let b = publish(&t, room, &bob, 0x0B40_0000).await;
    // ...then receive on it too: the server's offer goes to the same client connection.
    let offer = t.server.subscribe_peer(room, bob.clone()).await.unwrap();
    let mut bob_client = b.client;
    let answer = bob_client.answer(&offer.sdp).await;
    t.server.answer(room, bob.clone(), answer).await.unwrap();
    let mut bob_view = Subscriber {
        peer: bob.clone(),
        client: bob_client,
        mids: m_lines(&offer.sdp),
        tracks: HashMap::new(),
    };
    let (_track, ssrc) = first_video(&a, &mut bob_view, b"to-bob").await;
    assert_ne!(ssrc, a.video_ssrc);

    // A second offer from the client while the server's is unanswered is refused: no glare.
    let _pending = t.server.subscribe_peer(room, alice.clone()).await.unwrap();
    let own_offer = a.client.offer().await;
    let err = t
        .server
        .publish(room, alice.clone(), own_offer)
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        switchboard_core::ErrorCode::InvalidParams,
        "{err}"
    );
    let _ = offer;

    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    assert_eq!(
        dump["transports"].as_array().unwrap().len(),
        2,
        "one connection per peer"
    );
    for p in dump["peers"].as_array().unwrap() {
        assert_eq!(p["send"], p["recv"], "{p}");
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_automatic_subscription_the_backend_chooses_the_tracks() {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions {
            auto_subscribe: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let mut events = t.server.subscribe_room(room);
    let alice = PeerId::parse("alice").unwrap();
    let a = publish(&t, room, &alice, 0x0A50_0000).await;
    let mut s = subscribe(&t, room, "picky").await;
    assert_eq!(
        s.mids.len(),
        1,
        "nothing but the data channel until the backend asks"
    );

    // The backend subscribes the viewer to alice's video only, with the connection's own
    // receive capabilities (empty capabilities: the transport decides).
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let video = entry_id(dump_entry(&dump, "producers", |p| p["kind"] == "video"));
    let recv: switchboard_core::TransportId =
        entry_id(dump_entry(&dump, "transports", |tr| tr["peer"] == "picky"));
    t.server
        .consume(
            recv,
            switchboard_actors::ConsumeOptions {
                producer: video,
                rtp_capabilities: Default::default(),
                paused: false,
            },
        )
        .await
        .unwrap();
    let offers = offers_for(&mut events, std::slice::from_ref(&s.peer)).await;
    s.renegotiate(&t, room, &offers[&s.peer]).await;
    assert_eq!(s.mids.len(), 2, "the data channel and the chosen video");
    let (_track, ssrc) = first_video(&a, &mut s, b"chosen").await;
    assert_ne!(ssrc, a.video_ssrc);
    t.server.shutdown().await.unwrap();
}

/// The answer with its video m-line's port set to 0: a stack that cannot take the track.
fn reject_video(answer: &str) -> String {
    answer
        .split_inclusive('\n')
        .map(|line| match line.strip_prefix("m=video ") {
            Some(rest) => {
                let after_port = rest.split_once(' ').map_or("", |(_, r)| r);
                format!("m=video 0 {after_port}")
            }
            None => line.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_the_subscriber_rejects_closes_its_consumer_alone() {
    let t = start_webrtc(1);
    let room = t.room().await;
    let alice = PeerId::parse("alice").unwrap();
    let _a = publish(&t, room, &alice, 0x0A40_0000).await;
    let mut events = t.server.subscribe_room(room);
    let bob = PeerId::parse("bob").unwrap();
    t.server.join_peer(room, bob.clone()).await.unwrap();
    let offer = t.server.subscribe_peer(room, bob.clone()).await.unwrap();
    let mut client = Client::new(96, 111).await;
    let answer = reject_video(&client.answer(&offer.sdp).await);
    assert!(answer.contains("m=video 0 "), "{answer}");
    t.server.answer(room, bob, answer).await.unwrap();

    let (closed, _) = wait_event(&mut events, |e| matches!(e, Event::ConsumerClosed { .. })).await;
    let Event::ConsumerClosed {
        consumer, reason, ..
    } = closed
    else {
        unreachable!()
    };
    assert_eq!(reason, CloseReason::Rejected);
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    let kinds: Vec<&str> = dump["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["audio"], "only the rejected video consumer closed");
    assert!(
        dump["consumers"][0]["id"] != serde_json::json!(consumer.to_string()),
        "the closed consumer is gone"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_made_by_request_reaches_the_receive_connections() {
    // A plain ingest (here a `direct` transport of no peer; a stream piped from another node
    // is the same) is a track of the room like a WebRTC peer's.
    let t = start_webrtc(1);
    let room = t.room().await;
    let mut events = t.server.subscribe_room(room);
    let mut s = subscribe(&t, room, "viewer").await;
    assert_eq!(s.mids.len(), 1, "the data channel only, in an empty room");
    let ingest = t
        .server
        .create_transport(room, "direct", serde_json::Value::Null)
        .await
        .unwrap();
    let ssrc = 0x1A6E_0000;
    t.server
        .produce(
            ingest.id,
            switchboard_actors::ProduceOptions {
                kind: switchboard_core::rtp_parameters::MediaKind::Video,
                rtp_parameters: vp8_producer(ssrc, ssrc + 1),
                paused: false,
            },
        )
        .await
        .unwrap();
    let offers = offers_for(&mut events, std::slice::from_ref(&s.peer)).await;
    assert!(offers[&s.peer].contains("m=video"), "{}", offers[&s.peer]);
    s.renegotiate(&t, room, &offers[&s.peer]).await;
    assert_eq!(s.mids.len(), 2, "the data channel and the ingested video");
    let input = t.direct.endpoint(ingest.id).unwrap();
    let mut seq = 1u16;
    let track = loop {
        input
            .send_rtp(vp8_packet(ssrc, seq, u32::from(seq) * 3000, true))
            .unwrap();
        seq += 1;
        if let Ok(track) =
            tokio::time::timeout(Duration::from_millis(100), s.client.next_track()).await
        {
            break track;
        }
        assert!(seq < 100, "the ingested video never reached the viewer");
    };
    let p = loop {
        input
            .send_rtp(vp8_packet(ssrc, seq, u32::from(seq) * 3000, true))
            .unwrap();
        seq += 1;
        match tokio::time::timeout(DEADLINE, track.poll()).await {
            Ok(Some(TrackRemoteEvent::OnRtpPacket(p))) => break p,
            Ok(Some(_)) => {}
            other => panic!("track ended or timed out: {other:?}"),
        }
    };
    let sent = p.header.sequence_number;
    assert!(p.payload.len() >= 2, "{p:?}");
    // The payload is the ingested one (it encodes its own sequence number on the way in).
    assert!(
        (1..seq).any(|n| vp8_payload(n, true) == p.payload.as_ref()),
        "unexpected payload {:?} (seq {sent})",
        p.payload
    );
    t.server.shutdown().await.unwrap();
}

/// A publishing connection moves to another server, as a draining cluster node hands a
/// publisher over: the old server exports the connection's SDP state (`resume_state`: the
/// client's lines with their SSRCs), the new one resumes it with the producers made again
/// (`resume_sender`) and offers it (`recvonly` lines, announced for the send connection);
/// the peer's receive connection resumes beside it.
/// The client here is webrtc-rs, which applies the offer and restarts ICE towards the new
/// server but keeps its old DTLS session instead of starting a new handshake for the new
/// fingerprint (Chromium starts one: `tests/tests/cluster_browser.rs` moves a publishing
/// browser end to end). The new server does not leave that connection `connecting` for as
/// long as the client's checks come: it closes it with `dtls_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_publishing_connection_without_a_new_dtls_handshake_times_out() {
    let old = start_webrtc(1);
    // A third of the consent timeout for the DTLS handshake: one second.
    let mut config = webrtc_config(1);
    config.webrtc.consent_timeout_ms = 3_000;
    let new = start_webrtc_with(config);
    let alice = PeerId::parse("alice").unwrap();
    let old_room = old.room().await;
    let mut a = publish(&old, old_room, &alice, 0x0B10_0000).await;
    // Alice receives too: both her connections move.
    let receiving = old
        .server
        .subscribe_peer(old_room, alice.clone())
        .await
        .unwrap();
    let receive_state = old
        .server
        .transport_request(receiving.transport, "resume_state", serde_json::Value::Null)
        .await
        .unwrap()
        .response;
    let dump = serde_json::to_value(old.server.dump_router(old_room).await.unwrap()).unwrap();
    let send: switchboard_core::TransportId =
        dump_entry(&dump, "peers", |p| p["id"] == "alice")["send"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let state = old
        .server
        .transport_request(send, "resume_state", serde_json::Value::Null)
        .await
        .unwrap()
        .response;
    let mut tracks = Vec::new();
    let mut ssrcs = Vec::new();
    for line in state["lines"].as_array().unwrap() {
        if line["receiving"].is_null() {
            continue;
        }
        ssrcs.push(line["receiving"]["ssrcs"][0][0].as_u64().unwrap());
        let producer = line["producer"].as_str().unwrap().parse().unwrap();
        let d = old.server.dump_producer(producer).await.unwrap();
        tracks.push(switchboard_core::api::ResumedTrack {
            mid: line["mid"].as_str().unwrap().to_owned(),
            kind: d.kind,
            rtp_parameters: d.rtp_parameters,
            paused: d.paused,
        });
    }
    ssrcs.sort_unstable();
    assert_eq!(
        ssrcs,
        [u64::from(a.video_ssrc), u64::from(a.audio_ssrc)],
        "the client's SSRCs go along: {state}"
    );

    let new_room = new.room().await;
    let mut events = new.server.subscribe_room(new_room);
    new.server.join_peer(new_room, alice.clone()).await.unwrap();
    let resumed = new
        .server
        .resume_sender(new_room, alice.clone(), state, tracks)
        .await
        .unwrap();
    assert_eq!(resumed.producers.len(), 2);
    assert_eq!(
        resumed.sdp.matches("a=recvonly").count(),
        2,
        "the client's lines are offered recvonly: {}",
        resumed.sdp
    );
    // The offer is announced for the send connection.
    let (announced, _) = wait_event(&mut events, |e| {
        matches!(
            e,
            Event::RenegotiationNeeded {
                connection: Connection::Send,
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(announced, Event::RenegotiationNeeded { transport, .. } if transport == resumed.transport)
    );
    // Her receive connection resumes beside it, its offer announced for it.
    let received = new
        .server
        .resume_receiver(new_room, alice.clone(), receive_state, Vec::new())
        .await
        .unwrap();
    assert_ne!(received.transport, resumed.transport);
    let (announced, _) = wait_event(&mut events, |e| {
        matches!(
            e,
            Event::RenegotiationNeeded {
                connection: Connection::Recv,
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(announced, Event::RenegotiationNeeded { transport, .. } if transport == received.transport)
    );
    let answer = a.client.answer(&resumed.sdp).await;
    new.server
        .answer_on(new_room, alice.clone(), Connection::Send, answer)
        .await
        .unwrap();
    // The client's checks reach the new server; no handshake follows.
    let (closed, _) = wait_event(&mut events, |e| {
        matches!(e, Event::TransportClosed { transport, .. } if *transport == resumed.transport)
    })
    .await;
    assert!(
        matches!(
            closed,
            Event::TransportClosed {
                reason: CloseReason::DtlsTimeout,
                ..
            }
        ),
        "{closed:?}"
    );
    // Its producers went with it.
    let dump = serde_json::to_value(new.server.dump_router(new_room).await.unwrap()).unwrap();
    assert_eq!(
        dump["producers"].as_array().map(Vec::len),
        Some(0),
        "{dump}"
    );
    old.server.shutdown().await.unwrap();
    new.server.shutdown().await.unwrap();
}
