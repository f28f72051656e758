//! A rejected offer leaves the connection exactly as it was (JSEP rollback, RFC 9429 5.7):
//! the peer can offer again, on a first publish, on a re-offer, and with one connection per
//! peer. Before rollback, every later offer failed with "invalid proposed signaling state
//! transition" until the peer left and joined again.

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use switchboard_actors::RouterOptions;
use switchboard_core::{ErrorCode, PeerId, RouterId};
use switchboard_tests::webrtc_client::{Client, opus, vp8};
use switchboard_tests::*;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

/// Ways a client's offer goes wrong that only the WebRTC stack notices, after it has started
/// to apply the offer, plus the one the server checks itself.
fn broken_offers(offer: &str) -> Vec<(&'static str, String)> {
    let without = |prefix: &str| -> String {
        offer
            .split_inclusive('\n')
            .filter(|l| !l.starts_with(prefix))
            .collect()
    };
    // Cut inside the video m-line, after its m= line and before its rtpmap: the stack then
    // finds a payload type without a codec.
    let video = offer.find("m=video").expect("a video m-line");
    let cut = video + offer[video..].find('\n').expect("end of the m= line") + 1;
    vec![
        ("truncated", offer[..cut].to_owned()),
        ("no ice-ufrag", without("a=ice-ufrag:")),
        ("no ice-pwd", without("a=ice-pwd:")),
        ("no fingerprint", without("a=fingerprint:")),
        // Well-formed for the server's own checks, refused by the stack midway through
        // applying it (after its signaling state moved on): the rollback cases.
        ("conflicting ice-ufrag", {
            let mut seen = false;
            offer
                .split_inclusive('\n')
                .map(|l| {
                    if l.starts_with("a=ice-ufrag:") {
                        if seen {
                            return "a=ice-ufrag:conflicting\r\n".to_owned();
                        }
                        seen = true;
                    }
                    l.to_owned()
                })
                .collect()
        }),
        (
            "garbled candidate",
            offer
                .split_inclusive('\n')
                .map(|l| {
                    if l.starts_with("a=candidate:") {
                        "a=candidate:1 1 udp 2130706431 127.0.0.1 notaport typ host\r\n"
                    } else {
                        l
                    }
                })
                .collect(),
        ),
    ]
}

async fn client_with_tracks(
    ssrc: u32,
    name: &str,
) -> (Client, std::sync::Arc<TrackLocalStaticRTP>) {
    let client = Client::new(100, 109).await;
    let video = client
        .add_track(RtpCodecKind::Video, vp8(), ssrc, name)
        .await;
    client
        .add_track(RtpCodecKind::Audio, opus(), ssrc + 1, name)
        .await;
    (client, video)
}

/// Each broken offer is refused with `invalid_sdp`, and the transport's state is unchanged.
async fn refuse_all(t: &TestServer, room: RouterId, peer: &PeerId, offer: &str) {
    for (what, broken) in broken_offers(offer) {
        let err = t
            .server
            .publish(room, peer.clone(), broken)
            .await
            .expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidSdp, "{what}: {err}");
        assert!(
            !err.message.contains("signaling state"),
            "{what}: the previous rejection left the connection mid-negotiation: {err}"
        );
    }
}

/// Media written on `video` now reaches `producer`: its packet count grows.
async fn media_arrives(
    t: &TestServer,
    video: &TrackLocalStaticRTP,
    ssrc: u32,
    producer: switchboard_core::ProducerId,
) {
    let packets = || async {
        let stats = switchboard_tests::as_json(t.server.producer_stats(producer).await).unwrap();
        stats["counters"]["packets"]
            .as_u64()
            .expect("a packet count")
    };
    let before = packets().await;
    let mut seq = 0u16;
    eventually(|| {
        seq += 1;
        let packet = client_rtp(ssrc, 100, seq, vec![0x10, 0x00, 1, 2, 3]);
        async move {
            video.write_rtp(packet).await.unwrap();
            packets().await > before
        }
    })
    .await;
}

async fn rejected_offers_then_a_good_one(single_connection: bool) {
    let t = start_webrtc(1);
    let room = t
        .server
        .create_router(RouterOptions {
            single_connection,
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let alice = PeerId::parse("alice").unwrap();
    t.server.join_peer(room, alice.clone()).await.unwrap();
    let (mut client, video) = client_with_tracks(0x0C00_0000, "alice").await;
    let offer = client.offer().await;

    // A first offer, refused in every way, then the good one.
    refuse_all(&t, room, &alice, &offer).await;
    let published = t
        .server
        .publish(room, alice.clone(), offer.clone())
        .await
        .expect("the good first offer after rejected ones");
    assert_eq!(published.producers.len(), 2, "{}", published.sdp);
    client.accept_answer(&published.sdp).await;
    client.connected().await;
    let video_producer = published
        .producers
        .iter()
        .find(|(p, _)| p.kind == switchboard_core::rtp_parameters::MediaKind::Video)
        .map(|(p, _)| p.id)
        .unwrap();
    media_arrives(&t, &video, 0x0C00_0000, video_producer).await;

    // A re-offer that adds a track, refused in every way, then the good one: the connection
    // kept its producers and media throughout.
    let extra = client
        .add_track(RtpCodecKind::Video, vp8(), 0x0C00_0010, "alice")
        .await;
    let reoffer = client.offer().await;
    refuse_all(&t, room, &alice, &reoffer).await;
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    assert_eq!(
        dump["producers"].as_array().unwrap().len(),
        2,
        "rejected re-offers create and close nothing: {dump}"
    );
    media_arrives(&t, &video, 0x0C00_0000, video_producer).await;
    let republished = t
        .server
        .publish(room, alice.clone(), reoffer)
        .await
        .expect("the good re-offer after rejected ones");
    assert_eq!(republished.producers.len(), 1, "the added track");
    assert!(republished.closed_producers.is_empty());
    client.accept_answer(&republished.sdp).await;
    media_arrives(&t, &extra, 0x0C00_0010, republished.producers[0].0.id).await;
    media_arrives(&t, &video, 0x0C00_0000, video_producer).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_offer_is_rolled_back_and_the_peer_can_offer_again() {
    rejected_offers_then_a_good_one(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_offer_is_rolled_back_with_one_connection_per_peer() {
    rejected_offers_then_a_good_one(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_over_the_producer_limit_creates_nothing_and_is_rolled_back() {
    let mut config = switchboard::settings::Settings::default();
    config.server.workers = 1;
    config.limits.max_producers_per_transport = 1;
    let t = start_with(
        config,
        vec![switchboard_transports::WebRtcPlugin::new(
            switchboard_transports::WebRtcSettings::default(),
        )
            as std::sync::Arc<
                dyn switchboard_core::transport::TransportPlugin,
            >],
    );
    let room = t.room().await;
    let alice = PeerId::parse("alice").unwrap();
    t.server.join_peer(room, alice.clone()).await.unwrap();
    let (mut both, _) = client_with_tracks(0x0E00_0000, "alice").await;
    let err = t
        .server
        .publish(room, alice.clone(), both.offer().await)
        .await
        .expect_err("two tracks on a transport limited to one producer");
    assert_eq!(err.code, ErrorCode::LimitExceeded, "{err}");
    let dump = switchboard_tests::as_json(t.server.dump_router(room).await).unwrap();
    assert_eq!(
        dump["producers"].as_array().unwrap().len(),
        0,
        "no producer is left from the refused offer: {dump}"
    );

    // The connection was left as it was: an offer within the limit goes through.
    let mut one = Client::new(100, 109).await;
    let video = one
        .add_track(RtpCodecKind::Video, vp8(), 0x0E00_0010, "alice")
        .await;
    let published = t
        .server
        .publish(room, alice.clone(), one.offer().await)
        .await
        .expect("an offer within the limit after a refused one");
    assert_eq!(published.producers.len(), 1);
    one.accept_answer(&published.sdp).await;
    one.connected().await;
    media_arrives(&t, &video, 0x0E00_0010, published.producers[0].0.id).await;
    t.server.shutdown().await.unwrap();
}
