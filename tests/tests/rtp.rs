//! The `rtp` transport with ffmpeg as the remote side: real encoders, real UDP on loopback,
//! and ffmpeg decoding what came out.

use bytes::Bytes;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc_rtp::codec::vp8::Vp8Payloader;
use rtc_rtp::packetizer::Payloader;
use rtc_shared::marshal::Unmarshal;
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use switchboard::settings::Settings;
use switchboard_actors::{ConsumeOptions, ConsumerInfo, ProduceOptions, RouterOptions};
use switchboard_core::event::Event;
use switchboard_core::rtp_parameters::{
    MediaKind, RtpCapabilities, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};
use switchboard_core::transport::{TransportPlugin, TransportState};
use switchboard_core::{ErrorCode, ProducerId, RouterId, TransportId};
use switchboard_tests::ffmpeg::{self, Scratch, Vp8Assembler};
use switchboard_tests::webrtc_client::{Client, vp8};
use switchboard_tests::*;
use switchboard_transports::rtp::srtp::{self, SrtpParameters};
use switchboard_transports::{RtpPlugin, RtpSettings, WebRtcPlugin, WebRtcSettings};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

// ffmpeg's `-ssrc` is a signed 32-bit option, so these stay below 2^31.
const VIDEO_SSRC: u32 = 0x1111_0001;
const AUDIO_SSRC: u32 = 0x2222_0002;

/// A server with the direct, webrtc and rtp plugins, all on loopback with OS-chosen ports.
fn start_server() -> TestServer {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.rtp.port_min = 0;
    config.rtp.port_max = 0;
    start_with(
        config,
        vec![
            WebRtcPlugin::new(WebRtcSettings::default()) as std::sync::Arc<dyn TransportPlugin>,
            RtpPlugin::new(RtpSettings::default()),
        ],
    )
}

/// Producer parameters as a plain RTP sender declares them: one codec, one SSRC.
fn plain(mime: &str, pt: u8, clock: u32, channels: Option<u8>, ssrc: u32) -> RtpParameters {
    let mut codec = RtpCodecParameters {
        mime_type: mime.into(),
        payload_type: pt,
        clock_rate: clock,
        channels,
        parameters: Default::default(),
        rtcp_feedback: vec![],
    };
    if mime.eq_ignore_ascii_case("video/H264") {
        codec.parameters = [
            ("packetization-mode".to_owned(), 1u32.into()),
            ("profile-level-id".to_owned(), "42e01f".into()),
        ]
        .into_iter()
        .collect();
    }
    RtpParameters {
        codecs: vec![codec],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn produce(
    t: &TestServer,
    transport: TransportId,
    kind: MediaKind,
    p: RtpParameters,
) -> ProducerId {
    t.server
        .produce(
            transport,
            ProduceOptions {
                kind,
                rtp_parameters: p,
                paused: false,
            },
        )
        .await
        .unwrap()
        .id
}

fn port(local: &Value, field: &str) -> u16 {
    local[field]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap()
}

/// A WebRTC subscriber consuming `producers` through a server offer, connected.
async fn webrtc_subscriber(
    t: &TestServer,
    room: RouterId,
    producers: &[ProducerId],
) -> (Client, Vec<ConsumerInfo>) {
    let sub_t = t
        .server
        .create_transport(room, "webrtc", json!({}))
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for p in producers {
        consumers.push(
            t.server
                .consume(
                    sub_t.id,
                    ConsumeOptions {
                        producer: *p,
                        rtp_capabilities: RtpCapabilities::default(),
                        paused: false,
                    },
                )
                .await
                .unwrap(),
        );
    }
    let offer = t
        .server
        .transport_request(sub_t.id, "create_offer", json!({ "force": true }))
        .await
        .unwrap();
    let mut client = Client::new(96, 111).await;
    let answer = client.answer(offer.response["sdp"].as_str().unwrap()).await;
    t.server
        .transport_request(sub_t.id, "answer", json!({ "sdp": answer }))
        .await
        .unwrap();
    client.connected().await;
    (client, consumers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_sends_vp8_and_opus_and_a_webrtc_subscriber_decodes_them() {
    ffmpeg::require();
    let scratch = Scratch::new("rtp-ffmpeg-in");
    let t = start_server();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;

    // Video: plain RTP, RTCP on its own port (ffmpeg sends RTCP to the RTP port + 1 unless
    // told otherwise). Audio: SRTP with rtcp-mux. Both learn ffmpeg's address (comedia).
    let video_t = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "rtcp_mux": false }))
        .await
        .unwrap();
    let video_port = port(&video_t.local, "port");
    assert_eq!(port(&video_t.local, "rtcp_port"), video_port + 1);
    let audio_t = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "srtp": true }))
        .await
        .unwrap();
    let audio_port = port(&audio_t.local, "port");
    assert_eq!(port(&audio_t.local, "rtcp_port"), audio_port);
    assert_eq!(
        audio_t.local["srtp"]["crypto_suite"],
        "AES_CM_128_HMAC_SHA1_80"
    );
    // ffmpeg's key for what it sends travels to the transport over the control API.
    let (ffmpeg_key, _) = srtp::generate(srtp::DEFAULT_SUITE).unwrap();
    t.server
        .connect_transport(audio_t.id, json!({ "srtp": ffmpeg_key }))
        .await
        .unwrap();

    let video = produce(
        &t,
        video_t.id,
        MediaKind::Video,
        plain("video/VP8", 96, 90_000, None, VIDEO_SSRC),
    )
    .await;
    let audio = produce(
        &t,
        audio_t.id,
        MediaKind::Audio,
        plain("audio/opus", 111, 48_000, Some(2), AUDIO_SSRC),
    )
    .await;
    let (mut client, consumers) = webrtc_subscriber(&t, room, &[video, audio]).await;
    let video_ssrc = consumers[0].rtp_parameters.encodings[0].ssrc.unwrap();
    let audio_ssrc = consumers[1].rtp_parameters.encodings[0].ssrc.unwrap();

    // ffmpeg encodes once and writes each stream twice (the tee muxer): as RTP to the
    // server, and to a file the test compares what the subscriber received with.
    let reference_vp8 = scratch.file("sent.ivf");
    let reference_opus = scratch.file("sent.ogg");
    let video_out = format!(
        "[f=rtp:ssrc={VIDEO_SSRC}:payload_type=96]rtp://127.0.0.1:{video_port}?pkt_size=1200\
         |[f=ivf]{}",
        reference_vp8.display()
    );
    let audio_out = format!(
        "[f=rtp:ssrc={AUDIO_SSRC}:payload_type=111:srtp_out_suite={}:srtp_out_params={}]\
         srtp://127.0.0.1:{audio_port}?rtcpport={audio_port}&pkt_size=1200|[f=ogg]{}",
        ffmpeg_key.crypto_suite,
        ffmpeg_key.key_base64,
        reference_opus.display()
    );
    let mut sender_args = ffmpeg::args(
        "-re -t 3 -f lavfi -i testsrc=size=320x240:rate=30 \
         -re -t 3 -f lavfi -i sine=frequency=440:sample_rate=48000 \
         -map 0:v -c:v libvpx -deadline realtime -g 10 -b:v 400k -f tee",
        &[],
    );
    sender_args.push(video_out);
    sender_args.extend(ffmpeg::args("-map 1:a -c:a libopus -ac 2 -f tee", &[]));
    sender_args.push(audio_out);
    let sender = tokio::spawn(ffmpeg::run(sender_args, Duration::from_secs(15)));

    // Tracks appear as their first packets arrive; read both into one queue.
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..2 {
        let track = client.next_track().await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event
                    && tx.send(p).is_err()
                {
                    return;
                }
            }
        });
    }
    let mut assembler = Vp8Assembler::default();
    let mut frames = Vec::new();
    let mut opus = Vec::new();
    let collect = async {
        while frames.len() < 45 || opus.len() < 75 {
            let p = rx.recv().await.expect("tracks stay open");
            if p.header.ssrc == video_ssrc {
                if let Some(frame) = assembler.push(
                    p.header.sequence_number,
                    p.header.timestamp,
                    p.header.marker,
                    &p.payload,
                ) {
                    frames.push(frame);
                }
            } else if p.header.ssrc == audio_ssrc {
                opus.push((p.header.timestamp, p.payload.to_vec()));
            }
        }
    };
    let collected = tokio::time::timeout(Duration::from_secs(10), collect).await;
    let sent = sender.await.unwrap();
    let sender_errors = String::from_utf8_lossy(&sent.stderr).into_owned();
    assert!(
        collected.is_ok(),
        "received {} VP8 frames and {} Opus packets; ffmpeg said: {sender_errors}\nvideo: {}\naudio: {}",
        frames.len(),
        opus.len(),
        switchboard_tests::as_json(t.server.transport_stats(video_t.id).await).unwrap(),
        switchboard_tests::as_json(t.server.transport_stats(audio_t.id).await).unwrap(),
    );
    assert!(sent.status.success(), "ffmpeg failed: {sender_errors}");
    assert_eq!(sender_errors, "", "ffmpeg sent without complaint");

    // The subscriber got exactly what ffmpeg encoded, one unbroken run of it each, starting
    // at a keyframe for video...
    assert_eq!(assembler.discarded, 0, "no frame lost on loopback");
    let sent_vp8: Vec<Vec<u8>> = ffmpeg::read_ivf(&std::fs::read(&reference_vp8).unwrap())
        .into_iter()
        .map(|f| f.data.to_vec())
        .collect();
    let got_vp8: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    assert!(
        ffmpeg::find_run(&sent_vp8, &got_vp8).is_some(),
        "the {} received VP8 frames are not a run of the {} sent",
        got_vp8.len(),
        sent_vp8.len()
    );
    let sent_opus: Vec<Vec<u8>> =
        ffmpeg::read_ogg_packets(&std::fs::read(&reference_opus).unwrap())
            .into_iter()
            .skip(2) // OpusHead, OpusTags
            .collect();
    let got_opus: Vec<Vec<u8>> = opus.iter().map(|(_, p)| p.clone()).collect();
    assert!(
        ffmpeg::find_run(&sent_opus, &got_opus).is_some(),
        "the {} received Opus packets are not a run of the {} sent",
        got_opus.len(),
        sent_opus.len()
    );
    // ... and it decodes, frame for frame.
    assert_eq!(ffmpeg::vp8_dimensions(&frames[0].1), Some((320, 240)));
    let ivf = scratch.file("received.ivf");
    std::fs::write(&ivf, ffmpeg::write_ivf(320, 240, &frames)).unwrap();
    assert_eq!(ffmpeg::decode_errors(&ivf).await, "", "VP8 decodes cleanly");
    assert_eq!(ffmpeg::count_frames(&ivf, "v").await, frames.len() as u64);
    let ogg = scratch.file("received.opus");
    std::fs::write(&ogg, ffmpeg::write_ogg_opus(&opus)).unwrap();
    assert_eq!(
        ffmpeg::decode_errors(&ogg).await,
        "",
        "Opus decodes cleanly"
    );
    assert_eq!(ffmpeg::count_frames(&ogg, "a").await, opus.len() as u64);

    // The transports learned ffmpeg's addresses and refused nothing.
    for (id, what) in [(video_t.id, "video"), (audio_t.id, "audio")] {
        let stats = switchboard_tests::as_json(t.server.transport_stats(id).await).unwrap();
        let plugin = &stats["plugin"];
        assert_eq!(plugin["state"], "connected", "{what}: {stats}");
        assert!(plugin["remote_rtp"].is_string(), "{what}: {stats}");
        assert!(
            plugin["rtp_received"].as_u64().unwrap() > 0,
            "{what}: {stats}"
        );
        // ffmpeg sends a sender report before its first packet, on the RTCP port.
        assert!(
            plugin["rtcp_received"].as_u64().unwrap() > 0,
            "{what}: {stats}"
        );
        for refused in [
            "unexpected_source",
            "malformed_rtp",
            "malformed_rtcp",
            "unknown_ssrc",
            "srtp_failures",
        ] {
            assert_eq!(plugin[refused], 0, "{what} {refused}: {stats}");
        }
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_publisher_is_consumed_by_ffmpeg_through_the_generated_sdp() {
    ffmpeg::require();
    let scratch = Scratch::new("rtp-ffmpeg-out");
    // Real VP8 to publish: ffmpeg encodes a test pattern into IVF first.
    let source = scratch.file("source.ivf");
    let made = ffmpeg::run(
        ffmpeg::args(
            "-f lavfi -i testsrc=size=320x240:rate=30 -t 2 -c:v libvpx -deadline realtime \
             -g 10 -b:v 400k -y",
            &[&source],
        ),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let frames = ffmpeg::read_ivf(&std::fs::read(&source).unwrap());
    assert!(frames.len() >= 30 && ffmpeg::vp8_is_keyframe(&frames[0].data));

    let t = start_server();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let pub_t = t
        .server
        .create_transport(room, "webrtc", json!({}))
        .await
        .unwrap();
    let mut client = Client::new(96, 111).await;
    let track = client
        .add_track(RtpCodecKind::Video, vp8(), 0x0707_0707, "carol")
        .await;
    let offer = client.offer().await;
    let published = t
        .server
        .transport_request(pub_t.id, "offer", json!({ "sdp": offer }))
        .await
        .unwrap();
    client
        .accept_answer(published.response["sdp"].as_str().unwrap())
        .await;
    client.connected().await;
    let producer = published.producers[0].0.id;

    // ffmpeg will listen on a port pair of its own; the transport sends there.
    let ffmpeg_port = ffmpeg::free_port_pair();
    let out_t = t
        .server
        .create_transport(room, "rtp", json!({ "rtcp_mux": false, "srtp": true }))
        .await
        .unwrap();
    // ffmpeg sends nothing back that the server needs, so its key is any valid one.
    let (ffmpeg_key, _) = srtp::generate(srtp::DEFAULT_SUITE).unwrap();
    t.server
        .connect_transport(
            out_t.id,
            json!({ "ip": "127.0.0.1", "port": ffmpeg_port, "srtp": ffmpeg_key }),
        )
        .await
        .unwrap();
    let consumer = t
        .server
        .consume(
            out_t.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: RtpCapabilities::default(),
                paused: false,
            },
        )
        .await
        .unwrap();
    assert!(
        consumer.rtp_parameters.header_extensions.is_empty(),
        "plain receivers get no header extensions unless asked"
    );
    let feedback = &consumer.rtp_parameters.codecs[0].rtcp_feedback;
    assert!(
        feedback
            .iter()
            .all(|fb| fb.kind != "transport-cc" && fb.kind != "goog-remb"),
        "no feedback that needs a header extension: {feedback:?}"
    );
    assert_eq!(consumer.rtp_parameters.codecs.len(), 1, "no RTX");
    let described = t
        .server
        .transport_request(out_t.id, "sdp", json!({}))
        .await
        .unwrap();
    let sdp = described.response["sdp"].as_str().unwrap().to_owned();
    assert!(
        sdp.contains(&format!("m=video {ffmpeg_port} RTP/SAVP ")),
        "{sdp}"
    );
    let key = out_t.local["srtp"]["key_base64"].as_str().unwrap();
    assert!(
        sdp.contains(&format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}")),
        "{sdp}"
    );
    assert!(
        sdp.contains(&format!("a=rtcp:{} IN IP4 127.0.0.1", ffmpeg_port + 1)),
        "{sdp}"
    );
    let sdp_file = scratch.file("consumer.sdp");
    std::fs::write(&sdp_file, &sdp).unwrap();

    let output = scratch.file("received.webm");
    let mut receiver_args = ffmpeg::args("-protocol_whitelist file,udp,rtp -i", &[&sdp_file]);
    receiver_args.extend(ffmpeg::args("-frames:v 45 -c copy -y", &[&output]));
    let receiver = tokio::spawn(ffmpeg::run(receiver_args, Duration::from_secs(10)));

    // Publish the file, looping, three times faster than real time, until ffmpeg has what
    // it asked for. The pace is the source's, not a wait for anything.
    let mut payloader = Vp8Payloader::default();
    payloader.enable_picture_id = true;
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let mut receiver = receiver;
    let (mut seq, mut ts) = (1u16, 0u32);
    let mut sent_frames = 0usize;
    let result = loop {
        tokio::select! {
            done = &mut receiver => break done.unwrap(),
            _ = pace.tick() => {
                let frame = &frames[sent_frames % frames.len()];
                let payloads = payloader.payload(1200, &frame.data).unwrap();
                let last = payloads.len() - 1;
                for (i, payload) in payloads.into_iter().enumerate() {
                    let mut p = client_rtp(0x0707_0707, 96, seq, payload.to_vec());
                    p.header.timestamp = ts;
                    p.header.marker = i == last;
                    track.write_rtp(p).await.unwrap();
                    seq = seq.wrapping_add(1);
                }
                ts = ts.wrapping_add(3000);
                sent_frames += 1;
                assert!(sent_frames < 1500, "ffmpeg never finished");
            }
        }
    };
    let stats = switchboard_tests::as_json(t.server.transport_stats(out_t.id).await).unwrap();
    assert!(
        result.status.success(),
        "ffmpeg failed: {}\n{stats}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&result.stderr),
        "",
        "ffmpeg received without complaint"
    );
    assert_eq!(
        ffmpeg::decode_errors(&output).await,
        "",
        "the recording decodes cleanly"
    );
    assert_eq!(ffmpeg::count_frames(&output, "v").await, 45);
    // Frame for frame what was published: one unbroken run of the looped source.
    let extracted = scratch.file("received.ivf");
    let mut copy_args = ffmpeg::args("-i", &[&output]);
    copy_args.extend(ffmpeg::args("-c copy -y", &[&extracted]));
    let copied = ffmpeg::run(copy_args, Duration::from_secs(20)).await;
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let got: Vec<Bytes> = ffmpeg::read_ivf(&std::fs::read(&extracted).unwrap())
        .into_iter()
        .map(|f| f.data)
        .collect();
    let source: Vec<Bytes> = frames.iter().map(|f| f.data.clone()).collect();
    assert_eq!(got.len(), 45);
    assert!(
        ffmpeg::find_run(&source, &got).is_some(),
        "ffmpeg's recording is not a run of the published frames"
    );
    let plugin = &stats["plugin"];
    assert!(plugin["rtp_sent"].as_u64().unwrap() > 45, "{stats}");
    assert_eq!(plugin["send_errors"], 0, "{stats}");
    assert_eq!(plugin["state"], "connected", "{stats}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_sends_h264_over_rtcp_mux_and_a_plain_receiver_gets_it() {
    ffmpeg::require();
    let t = start_server();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let in_t = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true }))
        .await
        .unwrap();
    let in_port = port(&in_t.local, "port");
    let producer = produce(
        &t,
        in_t.id,
        MediaKind::Video,
        plain("video/H264", 102, 90_000, None, VIDEO_SSRC),
    )
    .await;
    let sub_t = t
        .server
        .create_transport(room, "direct", json!({}))
        .await
        .unwrap();
    let sub = t.direct.endpoint(sub_t.id).unwrap();
    let consumer = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: RtpCapabilities::default(),
                paused: false,
            },
        )
        .await
        .unwrap();
    let mut sender_args = ffmpeg::args(
        &format!(
            "-re -t 2 -f lavfi -i testsrc=size=320x240:rate=30 -c:v libx264 -profile:v baseline \
             -tune zerolatency -pix_fmt yuv420p -g 10 -ssrc {VIDEO_SSRC} -payload_type 102 -f rtp"
        ),
        &[],
    );
    sender_args.push(format!(
        "rtp://127.0.0.1:{in_port}?rtcpport={in_port}&pkt_size=1200"
    ));
    let sender = tokio::spawn(ffmpeg::run(sender_args, Duration::from_secs(15)));

    // The consumer starts at a keyframe: its first packet carries the parameter sets or an
    // IDR slice (alone, aggregated or as the first fragment).
    let first = next_rtp(&sub).await;
    assert_eq!(
        first.header.ssrc,
        consumer.rtp_parameters.encodings[0].ssrc.unwrap()
    );
    assert_eq!(
        first.header.payload_type,
        consumer.rtp_parameters.codecs[0].payload_type
    );
    let nal = first.payload[0] & 0x1F;
    let starts_keyframe = match nal {
        5 | 7 | 8 | 24 => true,
        28 => first
            .payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && h & 0x1F == 5),
        _ => false,
    };
    assert!(starts_keyframe, "first NAL type {nal}");
    for _ in 0..30 {
        next_rtp(&sub).await;
    }

    // The same track out through a plain RTP transport to a socket of the test's own.
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    let out_t = t
        .server
        .create_transport(room, "rtp", json!({}))
        .await
        .unwrap();
    t.server
        .connect_transport(
            out_t.id,
            json!({ "ip": "127.0.0.1", "port": receiver_addr.port() }),
        )
        .await
        .unwrap();
    let out = t
        .server
        .consume(
            out_t.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: RtpCapabilities::default(),
                paused: false,
            },
        )
        .await
        .unwrap();
    let sdp = t
        .server
        .transport_request(out_t.id, "sdp", json!({}))
        .await
        .unwrap()
        .response["sdp"]
        .as_str()
        .unwrap()
        .to_owned();
    let pt = out.rtp_parameters.codecs[0].payload_type;
    assert!(sdp.contains(&format!("a=rtpmap:{pt} H264/90000")), "{sdp}");
    assert!(sdp.contains("packetization-mode=1"), "{sdp}");
    assert!(sdp.contains("a=rtcp-mux"), "{sdp}");
    let server_addr: SocketAddr = format!("127.0.0.1:{}", port(&out_t.local, "port"))
        .parse()
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let mut rtp_seen = 0;
    while rtp_seen < 10 {
        let (n, from) = tokio::time::timeout(DEADLINE, receiver.recv_from(&mut buf))
            .await
            .expect("plain RTP arrives")
            .unwrap();
        assert_eq!(from, server_addr, "sent from the transport's own port");
        if (192..=223).contains(&buf[1]) {
            continue; // RTCP (sender reports) on the same port
        }
        let p = rtc_rtp::Packet::unmarshal(&mut &buf[..n]).unwrap();
        assert_eq!(p.header.ssrc, out.rtp_parameters.encodings[0].ssrc.unwrap());
        assert_eq!(p.header.payload_type, pt);
        rtp_seen += 1;
    }
    let sent = sender.await.unwrap();
    let errors = String::from_utf8_lossy(&sent.stderr);
    assert!(sent.status.success(), "{errors}");
    let stats = switchboard_tests::as_json(t.server.transport_stats(in_t.id).await).unwrap();
    assert_eq!(stats["plugin"]["malformed_rtp"], 0, "{stats}");
    assert_eq!(stats["plugin"]["unknown_ssrc"], 0, "{stats}");
    assert_eq!(errors, "");
    t.server.shutdown().await.unwrap();
}

/// Sends `data` from `socket` to `to`.
fn send(socket: &UdpSocket, data: &[u8], to: SocketAddr) {
    socket.send_to(data, to).unwrap();
}

async fn plugin_stats(t: &TestServer, id: TransportId) -> Value {
    switchboard_tests::as_json(t.server.transport_stats(id).await).unwrap()["plugin"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_dropped() {
    let t = start_server();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    let mut events = t.server.subscribe_room(room);

    // An explicitly connected transport accepts only its remote's address.
    let in_t = t
        .server
        .create_transport(room, "rtp", json!({}))
        .await
        .unwrap();
    let server_addr: SocketAddr = format!("127.0.0.1:{}", port(&in_t.local, "port"))
        .parse()
        .unwrap();
    let remote = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let remote_addr = remote.local_addr().unwrap();
    t.server
        .connect_transport(
            in_t.id,
            json!({ "ip": "127.0.0.1", "port": remote_addr.port() }),
        )
        .await
        .unwrap();
    wait_event(&mut events, |e| {
        matches!(e, Event::TransportStateChanged { transport, state: TransportState::Connected, .. } if *transport == in_t.id)
    })
    .await;
    let producer = produce(
        &t,
        in_t.id,
        MediaKind::Video,
        plain("video/VP8", 96, 90_000, None, VIDEO_SSRC),
    )
    .await;
    let sub_t = t
        .server
        .create_transport(room, "direct", json!({}))
        .await
        .unwrap();
    let sub = t.direct.endpoint(sub_t.id).unwrap();
    t.server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: subscriber_caps(100, 4, false),
                paused: false,
            },
        )
        .await
        .unwrap();

    let packet = |seq: u16| vp8_packet(VIDEO_SSRC, seq, u32::from(seq) * 3000, true);
    send(&remote, &packet(1), server_addr);
    assert_eq!(
        next_rtp(&sub).await.payload.as_ref(),
        vp8_payload(1, true).as_slice(),
        "valid RTP passes"
    );

    send(&stranger, &packet(2), server_addr); // unexpected source
    send(&remote, &vp8_packet(0x0BAD_0BAD, 77, 0, true), server_addr); // unknown SSRC
    let mut truncated = packet(3).to_vec();
    truncated[0] |= 0x0F; // claims 15 CSRCs it does not carry
    send(&remote, &truncated[..20], server_addr);
    let mut bad_padding = packet(4).to_vec();
    bad_padding[0] |= 0x20;
    *bad_padding.last_mut().unwrap() = 0xFF; // more padding than the packet holds
    send(&remote, &bad_padding, server_addr);
    send(&remote, b"\x00\x01hello", server_addr); // not RTP at all
    send(&remote, &[0x80, 201, 0, 9, 0, 0, 0, 1], server_addr); // RTCP whose length lies
    send(
        &remote,
        &[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2],
        server_addr,
    ); // a valid PLI
    // Datagrams from one socket arrive in order on loopback, and the stranger's was sent
    // before this one: once this packet comes out, every datagram above has been judged.
    send(&remote, &packet(5), server_addr);
    assert_eq!(
        next_rtp(&sub).await.payload.as_ref(),
        vp8_payload(5, true).as_slice(),
        "the next packet through is the last valid one"
    );
    let stats = plugin_stats(&t, in_t.id).await;
    assert_eq!(stats["rtp_received"], 2, "{stats}");
    assert_eq!(stats["rtcp_received"], 1, "{stats}");
    assert_eq!(stats["unexpected_source"], 1, "{stats}");
    assert_eq!(stats["unknown_ssrc"], 1, "{stats}");
    assert_eq!(stats["malformed_rtp"], 3, "{stats}");
    assert_eq!(stats["malformed_rtcp"], 1, "{stats}");
    assert_eq!(stats["srtp_failures"], 0, "{stats}");

    // A comedia transport with SRTP: a packet under the wrong key teaches it nothing, the
    // first authentic one fixes the remote address, and others are strangers from then on.
    let c_t = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "srtp": true }))
        .await
        .unwrap();
    let c_addr: SocketAddr = format!("127.0.0.1:{}", port(&c_t.local, "port"))
        .parse()
        .unwrap();
    let (key, mut encrypt) = srtp::generate(srtp::DEFAULT_SUITE).unwrap();
    let (_, mut wrong) = srtp::generate(srtp::DEFAULT_SUITE).unwrap();
    t.server
        .connect_transport(c_t.id, json!({ "srtp": key }))
        .await
        .unwrap();
    let c_producer = produce(
        &t,
        c_t.id,
        MediaKind::Video,
        plain("video/VP8", 96, 90_000, None, AUDIO_SSRC),
    )
    .await;
    let c_consumer = t
        .server
        .consume(
            sub_t.id,
            ConsumeOptions {
                producer: c_producer,
                rtp_capabilities: subscriber_caps(100, 4, false),
                paused: false,
            },
        )
        .await
        .unwrap();
    let c_ssrc = c_consumer.rtp_parameters.encodings[0].ssrc.unwrap();
    let packet = |seq: u16| vp8_packet(AUDIO_SSRC, seq, u32::from(seq) * 3000, true);
    send(&stranger, &wrong.encrypt_rtp(&packet(1)).unwrap(), c_addr);
    send(&remote, &encrypt.encrypt_rtp(&packet(2)).unwrap(), c_addr);
    wait_event(&mut events, |e| {
        matches!(e, Event::TransportStateChanged { transport, state: TransportState::Connected, .. } if *transport == c_t.id)
    })
    .await;
    let got = next_rtp(&sub).await;
    assert_eq!(got.header.ssrc, c_ssrc);
    send(&stranger, &encrypt.encrypt_rtp(&packet(3)).unwrap(), c_addr);
    let replay = encrypt.encrypt_rtp(&packet(4)).unwrap();
    send(&remote, &replay, c_addr);
    send(&remote, &replay, c_addr);
    send(&remote, &encrypt.encrypt_rtp(&packet(5)).unwrap(), c_addr);
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let p = next_rtp(&sub).await;
        if p.header.ssrc == c_ssrc {
            seqs.push(p.header.sequence_number);
        }
    }
    let stats = plugin_stats(&t, c_t.id).await;
    assert_eq!(stats["remote_rtp"], remote_addr.to_string(), "{stats}");
    assert_eq!(stats["srtp_failures"], 2, "wrong key, replay: {stats}");
    assert_eq!(stats["unexpected_source"], 1, "{stats}");
    assert_eq!(stats["rtp_received"], 3, "{stats}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_and_connect_parameters_are_checked() {
    let t = start_server();
    let room = t
        .server
        .create_router(RouterOptions::default())
        .await
        .unwrap()
        .id;
    for (options, needle) in [
        (json!({ "rtcp_port": 5000 }), "rtcp_mux = false"),
        (json!({ "comedy": true }), "unknown field `comedy`"),
        (
            json!({ "srtp_crypto_suite": "AES_CM_128_HMAC_SHA1_80" }),
            "needs srtp",
        ),
        (
            json!({ "srtp": true, "srtp_crypto_suite": "ROT13" }),
            "unsupported SRTP crypto suite",
        ),
        (
            json!({ "listen_ip": "0.0.0.0" }),
            "announced_ip is required",
        ),
        (json!({ "listen_ip": "not-an-ip" }), "invalid IP address"),
    ] {
        let err = t
            .server
            .create_transport(room, "rtp", options.clone())
            .await
            .unwrap_err();
        assert!(err.message.contains(needle), "{options}: {err}");
    }

    // A port the creator names is the port it gets, and taking it twice fails cleanly.
    let fixed = ffmpeg::free_port_pair();
    let a = t
        .server
        .create_transport(room, "rtp", json!({ "port": fixed, "rtcp_mux": false }))
        .await
        .unwrap();
    assert_eq!(port(&a.local, "port"), fixed);
    assert_eq!(port(&a.local, "rtcp_port"), fixed + 1);
    let err = t
        .server
        .create_transport(room, "rtp", json!({ "port": fixed }))
        .await
        .unwrap_err();
    assert!(err.message.contains("cannot bind"), "{err}");

    let err = t
        .server
        .connect_transport(a.id, json!({ "ip": "127.0.0.1" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    let err = t
        .server
        .transport_request(a.id, "sdp", json!({}))
        .await
        .unwrap_err();
    assert!(err.message.contains("no remote address"), "{err}");
    t.server
        .connect_transport(a.id, json!({ "ip": "127.0.0.1", "port": 9 }))
        .await
        .unwrap();
    let err = t
        .server
        .connect_transport(a.id, json!({ "ip": "127.0.0.1", "port": 9 }))
        .await
        .unwrap_err();
    assert!(err.message.contains("already connected"), "{err}");
    let err = t
        .server
        .transport_request(a.id, "sdp", json!({}))
        .await
        .unwrap_err();
    assert!(err.message.contains("no consumers"), "{err}");

    let c = t
        .server
        .create_transport(room, "rtp", json!({ "comedia": true, "srtp": true }))
        .await
        .unwrap();
    let err = t
        .server
        .connect_transport(c.id, json!({ "ip": "127.0.0.1", "port": 9 }))
        .await
        .unwrap_err();
    assert!(err.message.contains("comedia"), "{err}");
    let err = t
        .server
        .connect_transport(c.id, json!({}))
        .await
        .unwrap_err();
    assert!(err.message.contains("srtp"), "{err}");
    let short = SrtpParameters {
        crypto_suite: srtp::DEFAULT_SUITE.into(),
        key_base64: "AAAA".into(),
    };
    let err = t
        .server
        .connect_transport(c.id, json!({ "srtp": short }))
        .await
        .unwrap_err();
    assert!(err.message.contains("needs 30 bytes"), "{err}");
    let err = t
        .server
        .transport_request(c.id, "offer", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    t.server.shutdown().await.unwrap();
}
