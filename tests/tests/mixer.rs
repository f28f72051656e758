//! The mixer middleware end to end: two peers send Opus sine tones at different frequencies
//! into a room, the mixer publishes its mix as a producer, and a subscriber decodes what it
//! receives and looks for each tone in its spectrum.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ProduceOptions, RouterOptions, Server, ServerHandle};
use switchboard_core::event::Event;
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::transport::TransportRegistry;
use switchboard_core::{PeerId, ProducerId, RouterId, TransportId};
use switchboard_tests::*;
use switchboard_transports::{DirectEndpoint, DirectPlugin, PipePlugin};
use tokio::sync::{mpsc, watch};

const RATE: u32 = 48_000;
const FRAME: usize = 960;
/// Alice's and Bob's tones, Hz.
const ALICE: f32 = 600.0;
const BOB: f32 = 1_500.0;

struct Room {
    server: ServerHandle,
    direct: Arc<DirectPlugin>,
    id: RouterId,
    events: mpsc::Receiver<Event>,
    stop: watch::Sender<bool>,
}

/// A one-worker server with the built-in middleware, a room with the mixer attached, and
/// Alice and Bob each sending a tone from their own transport at the real-time pace.
async fn room_with_tones(options: Value) -> Room {
    let mut config = Settings::default();
    config.server.workers = 1;
    room_with_tones_on(config, options).await
}

async fn room_with_tones_on(config: Settings, options: Value) -> Room {
    let mut middleware = MiddlewareRegistry::new();
    switchboard_middleware::register_builtin(&mut middleware).unwrap();
    let mut transports = TransportRegistry::new();
    let direct = DirectPlugin::new();
    transports.register(direct.clone()).unwrap();
    transports.register(PipePlugin::new()).unwrap();
    let server = Server::start(Arc::new(config.config()), transports, middleware).unwrap();
    let room = server
        .create_router(RouterOptions::default())
        .await
        .unwrap();
    let events = server.subscribe_room(room.id);
    server
        .attach_middleware(room.id, "mixer", options)
        .await
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    for (name, freq, ssrc) in [("alice", ALICE, 1111), ("bob", BOB, 2222)] {
        let peer = PeerId::parse(name).unwrap();
        server.join_peer(room.id, peer.clone()).await.unwrap();
        let t = server
            .create_peer_transport(room.id, Some(peer), "direct", json!({}))
            .await
            .unwrap();
        server
            .produce(
                t.id,
                ProduceOptions {
                    kind: MediaKind::Audio,
                    rtp_parameters: opus_producer(ssrc),
                    paused: false,
                },
            )
            .await
            .unwrap();
        tokio::spawn(send_tone(
            direct.endpoint(t.id).unwrap(),
            ssrc,
            freq,
            stopped.clone(),
        ));
    }
    Room {
        server,
        direct,
        id: room.id,
        events,
        stop,
    }
}

/// Sends a sine tone as 20 ms Opus packets, paced like a real sender, until told to stop.
async fn send_tone(ep: DirectEndpoint, ssrc: u32, freq: f32, mut stop: watch::Receiver<bool>) {
    let mut encoder =
        opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let pcm: Vec<i16> = (0..FRAME)
            .map(|i| {
                let t = (n * FRAME + i) as f32 / RATE as f32;
                (8000.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
            })
            .collect();
        let payload = encoder.encode_vec(&pcm, 1500).unwrap();
        let seq = n as u16;
        let ts = (n * FRAME) as u32;
        if ep.send_rtp(opus_packet(ssrc, seq, ts, &payload)).is_err() {
            return;
        }
        n += 1;
    }
}

/// Waits for the mixer's `mix_published` notification for this peer (`None`: the full mix).
async fn mix_producer(events: &mut mpsc::Receiver<Event>, peer: Option<&str>) -> ProducerId {
    let (event, _) = wait_event(events, |e| match e {
        Event::Middleware { name, data, .. } => {
            name == "mix_published" && data["peer"].as_str() == peer
        }
        _ => false,
    })
    .await;
    let Event::Middleware { data, .. } = event else {
        unreachable!()
    };
    serde_json::from_value(data["producer"].clone()).unwrap()
}

/// Consumes a producer on a fresh direct transport and decodes `seconds` of its audio, after
/// discarding the first half second (the mixer's and decoder's start-up).
async fn decode_track(room: &Room, producer: ProducerId, seconds: f32) -> Vec<f32> {
    let t = room
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    decode_on(room, t.id, producer, seconds).await
}

async fn decode_on(room: &Room, t: TransportId, producer: ProducerId, seconds: f32) -> Vec<f32> {
    let ep = room.direct.endpoint(t).unwrap();
    room.server
        .consume(
            t,
            ConsumeOptions {
                producer,
                rtp_capabilities: subscriber_caps(96, 1, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    let warm_up = RATE as usize / 2;
    let wanted = warm_up + (seconds * RATE as f32) as usize;
    while pcm.len() < wanted {
        let packet = next_rtp(&ep).await;
        assert_eq!(packet.header.payload_type, 100, "the subscriber's Opus PT");
        let n = decoder.decode(&packet.payload, &mut buf, false).unwrap();
        pcm.extend(buf[..n].iter().map(|&s| f32::from(s)));
    }
    pcm.drain(..warm_up);
    pcm
}

/// Spectral magnitude near `freq` relative to the strongest component of the signal.
fn relative_level(pcm: &[f32], freq: f32) -> f32 {
    let n = pcm.len();
    let mut spectrum: Vec<Complex<f32>> = pcm
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            // A Hann window keeps the tones' energy in their own bins.
            let w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos();
            Complex::new(s * w, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut spectrum);
    let magnitude: Vec<f32> = spectrum[..n / 2].iter().map(|c| c.norm()).collect();
    let peak = magnitude.iter().copied().fold(0.0, f32::max);
    let bin = |f: f32| (f * n as f32 / RATE as f32).round() as usize;
    let around = magnitude[bin(freq) - 3..=bin(freq) + 3]
        .iter()
        .copied()
        .fold(0.0, f32::max);
    around / peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_carries_both_speakers() {
    let mut room = room_with_tones(json!({})).await;
    let mix = mix_producer(&mut room.events, None).await;
    let pcm = decode_track(&room, mix, 1.0).await;
    let alice = relative_level(&pcm, ALICE);
    let bob = relative_level(&pcm, BOB);
    assert!(alice > 0.5, "Alice's tone in the mix: {alice}");
    assert!(bob > 0.5, "Bob's tone in the mix: {bob}");
    assert!(
        relative_level(&pcm, 1_000.0) < 0.05,
        "nothing else is that loud"
    );

    let stats = switchboard_tests::as_json(room.server.router_stats(room.id).await).unwrap();
    let mixer = stats["middleware"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "mixer")
        .expect("mixer stats");
    assert_eq!(mixer["stats"]["speakers"].as_array().unwrap().len(), 2);
    room.stop.send(true).unwrap();
    room.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_minus_leaves_out_the_listener() {
    let mut room = room_with_tones(json!({ "mix": false, "mix_minus": true })).await;
    let for_alice = mix_producer(&mut room.events, Some("alice")).await;
    let for_bob = mix_producer(&mut room.events, Some("bob")).await;
    let (alice_hears, bob_hears) = tokio::join!(
        decode_track(&room, for_alice, 1.0),
        decode_track(&room, for_bob, 1.0)
    );
    assert!(relative_level(&alice_hears, BOB) > 0.5, "Alice hears Bob");
    let own = relative_level(&alice_hears, ALICE);
    assert!(own < 0.02, "Alice does not hear herself: {own}");
    assert!(relative_level(&bob_hears, ALICE) > 0.5, "Bob hears Alice");
    let own = relative_level(&bob_hears, BOB);
    assert!(own < 0.02, "Bob does not hear himself: {own}");

    // Bob leaves: his mix-minus closes, and Alice's goes on (now silence).
    let mut events = room.server.subscribe_room(room.id);
    room.server
        .leave_peer(room.id, PeerId::parse("bob").unwrap())
        .await
        .unwrap();
    wait_event(
        &mut events,
        |e| matches!(e, Event::ProducerClosed { producer, .. } if *producer == for_bob),
    )
    .await;
    room.stop.send(true).unwrap();
    room.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_reaches_a_subscriber_on_the_room_s_other_worker() {
    // Two workers and a load threshold any traffic exceeds: once the tones load the room's
    // worker, a new transport goes to the other one, and the mix is piped there.
    let mut config = Settings::default();
    config.server.workers = 2;
    config.placement.max_worker_packets_per_second = 1;
    config.placement.sample_interval_ms = 20;
    let mut room = room_with_tones_on(config, json!({})).await;
    let mix = mix_producer(&mut room.events, None).await;
    let home = room.server.routers()[0].1;
    eventually(|| {
        let loaded = room.server.workers()[home.0 as usize].load_percent >= 100;
        async move { loaded }
    })
    .await;
    let t = room
        .server
        .create_transport(room.id, "direct", json!({}))
        .await
        .unwrap();
    let dump = switchboard_tests::as_json(room.server.dump_router(room.id).await).unwrap();
    let worker = dump["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == t.id.to_string())
        .and_then(|e| e["worker"].as_u64())
        .unwrap();
    assert_ne!(
        worker,
        u64::from(home.0),
        "placed on the other worker: {dump}"
    );
    let pcm = decode_on(&room, t.id, mix, 1.0).await;
    assert!(relative_level(&pcm, ALICE) > 0.5, "Alice's tone");
    assert!(relative_level(&pcm, BOB) > 0.5, "Bob's tone");
    room.stop.send(true).unwrap();
    room.server.shutdown().await.unwrap();
}
