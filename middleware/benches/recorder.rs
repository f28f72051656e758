//! Recording throughput: one peer's VP8 (≈1.1 Mbit/s, 30 fps, 4 packets a frame) and Opus
//! (50 packets/s) through the recorder's whole path — jitter buffer, depacketizing, timestamp
//! mapping, interleaving and Matroska writing to a real file — finalized at the end.
//!
//! `cargo bench -p switchboard-middleware --bench recorder`. One iteration records 10 s of
//! media (1700 packets, ≈1.4 MB) as fast as the recorder takes it; "elements/s" reads as RTP
//! packets per second, "bytes/s" as RTP payload bytes per second, on one core.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtc_rtp::Packet;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::middleware::{ProducerInfo, PublishOptions, PublishedTrack, RoomAccess};
use switchboard_core::rtp_parameters::{MediaKind, RtpCodecParameters, RtpParameters};
use switchboard_core::{Error, ErrorCode, PeerId, ProducerId, Result, RouterId, TransportId};
use switchboard_middleware::recorder::Recorder;
use switchboard_middleware::recorder::options::RecorderOptions;

struct NoRoom;

impl RoomAccess for NoRoom {
    fn request_keyframe(&self, _producer: ProducerId) {}
    fn publish(&self, _options: PublishOptions) -> Result<Box<dyn PublishedTrack>> {
        Err(Error::new(ErrorCode::Internal, "bench"))
    }
    fn notify(&self, _name: &str, _data: Value) {}
}

fn producer(
    kind: MediaKind,
    mime: &str,
    pt: u8,
    clock: u32,
    transport: TransportId,
) -> ProducerInfo {
    ProducerInfo {
        id: ProducerId::new(),
        transport,
        peer: PeerId::parse("bench"),
        kind,
        rtp_parameters: RtpParameters {
            codecs: vec![RtpCodecParameters {
                mime_type: mime.into(),
                payload_type: pt,
                clock_rate: clock,
                channels: (kind == MediaKind::Audio).then_some(2),
                parameters: Default::default(),
                rtcp_feedback: Vec::new(),
            }],
            ..Default::default()
        },
        paused: false,
        from_middleware: false,
    }
}

fn rtp(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: Bytes) -> Packet {
    let mut p = Packet::default();
    p.header.version = 2;
    p.header.payload_type = pt;
    p.header.ssrc = ssrc;
    p.header.sequence_number = seq;
    p.header.timestamp = ts;
    p.header.marker = marker;
    p.payload = payload;
    p
}

/// (arrival ms, is video, packet) for 10 s of one peer's media.
fn session() -> (Vec<(u64, bool, Packet)>, u64) {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut seq = 0u16;
    for f in 0..300u32 {
        let key = f % 60 == 0;
        for k in 0..4u8 {
            // VP8 payload descriptor (S bit on the first packet), then frame bytes; a
            // keyframe's first byte has the P bit clear.
            let mut payload = vec![if k == 0 { 0x10 } else { 0x00 }];
            payload.push(if k == 0 && key { 0x00 } else { 0x01 });
            payload.resize(1100, 0xAB);
            bytes += payload.len() as u64;
            out.push((
                u64::from(f) * 1000 / 30,
                true,
                rtp(96, 1, seq, f * 3000, k == 3, Bytes::from(payload)),
            ));
            seq = seq.wrapping_add(1);
        }
    }
    for a in 0..500u32 {
        let mut payload = vec![0x78];
        payload.resize(80, 0x55);
        bytes += payload.len() as u64;
        out.push((
            u64::from(a) * 20,
            false,
            rtp(111, 2, a as u16, a * 960, false, Bytes::from(payload)),
        ));
    }
    out.sort_by_key(|e| e.0);
    (out, bytes)
}

fn record(c: &mut Criterion) {
    let dir =
        std::env::temp_dir().join(format!("switchboard-recorder-bench-{}", std::process::id()));
    let (packets, bytes) = session();
    let transport = TransportId::new();
    let video = producer(MediaKind::Video, "video/VP8", 96, 90_000, transport);
    let audio = producer(MediaKind::Audio, "audio/opus", 111, 48_000, transport);
    let mut group = c.benchmark_group("recorder");
    group.sample_size(20);
    for (name, throughput) in [
        ("packets", Throughput::Elements(packets.len() as u64)),
        ("bytes", Throughput::Bytes(bytes)),
    ] {
        group.throughput(throughput);
        group.bench_function(format!("10s_vp8_opus_to_webm/{name}"), |b| {
            b.iter(|| {
                let t0 = Instant::now();
                let options = RecorderOptions {
                    directory: dir.clone(),
                    ..Default::default()
                };
                let mut rec = Recorder::new(RouterId::new(), Arc::new(NoRoom), options, t0);
                rec.add_producer(&video, t0);
                rec.add_producer(&audio, t0);
                let mut next_tick = 0;
                for (at, is_video, p) in &packets {
                    while next_tick <= *at {
                        rec.tick(t0 + Duration::from_millis(next_tick));
                        next_tick += 50;
                    }
                    let id = if *is_video { video.id } else { audio.id };
                    rec.rtp(id, p, t0 + Duration::from_millis(*at));
                }
                rec.stop(t0 + Duration::from_secs(11));
            });
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, record);
criterion_main!(benches);
