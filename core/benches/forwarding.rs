//! Forwarding micro-benchmark: one producer's packet fanned out to N consumers.
//!
//! `cargo bench -p switchboard-core --bench forwarding`. Throughput is reported in forwarded
//! packets (one per consumer), so "elements/s" reads as forwarded packets per second on one
//! core. The sink only counts, so this measures the forwarding path itself: parse once,
//! rewrite and serialise per consumer.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::Marshal;
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;
use switchboard_core::forward::{
    ConsumerSetup, Forwarder, ForwarderConfig, KeyframeCodec, KeyframeRequestKind, ProducerCodec,
    ProducerSetup,
};
use switchboard_core::transport::MediaSink;
use switchboard_core::{ConsumerId, ProducerId, TransportId};

struct CountingSink(Cell<u64>);

impl MediaSink for CountingSink {
    fn send_rtp(&self, packet: &[u8]) {
        self.0.set(self.0.get() + packet.len() as u64);
    }
    fn send_rtcp(&self, _packet: &[u8]) {}
}

fn packet(seq: u16) -> Bytes {
    let mut header = Header {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc: 1,
        ..Header::default()
    };
    let _ = header.set_extension(4, Bytes::from_static(b"0"));
    let _ = header.set_extension(3, Bytes::from_static(&[0, 1]));
    let mut payload = vec![0x10, 0x00];
    payload.resize(1100, 0xAB);
    Packet {
        header,
        payload: Bytes::from(payload),
    }
    .marshal()
    .map(|b| b.freeze())
    .unwrap_or_default()
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward_1100B_vp8");
    for consumers in [1usize, 10, 100] {
        let mut f: Forwarder<Rc<CountingSink>> = Forwarder::new(ForwarderConfig::default());
        let transport = TransportId::new();
        let producer = ProducerId::new();
        let sink = Rc::new(CountingSink(Cell::new(0)));
        let setup = ProducerSetup {
            id: producer,
            transport,
            ssrc: Some(1),
            rtx_ssrc: None,
            codecs: vec![ProducerCodec {
                payload_type: 96,
                clock_rate: 90_000,
                keyframes: KeyframeCodec::Vp8,
            }],
            rtx_payload_types: vec![],
            mid: None,
            keyframe_request: KeyframeRequestKind::Pli,
            paused: false,
        };
        if f.add_producer(setup, sink.clone()).is_err() {
            return;
        }
        let now = Instant::now();
        for i in 0..consumers {
            let setup = ConsumerSetup {
                id: ConsumerId::new(),
                producer,
                transport: TransportId::new(),
                ssrc: 1000 + i as u32,
                rtx: None,
                payload_types: vec![(96, 100)],
                extensions: vec![(4, 1), (3, 5)],
                paused: false,
            };
            let _ = f.add_consumer(setup, sink.clone(), now);
        }
        // Prime the consumers past their keyframe wait.
        let _ = f.on_rtp(transport, packet(0), now);
        let packets: Vec<Bytes> = (1..=4096u16).map(packet).collect();
        let mut i = 0usize;
        group.throughput(Throughput::Elements(consumers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(consumers),
            &consumers,
            |b, _| {
                b.iter(|| {
                    let p = packets[i % packets.len()].clone();
                    i += 1;
                    black_box(f.on_rtp(transport, p, now))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
