//! The forwarding path allocates nothing per consumer: fanning one packet out to 100
//! consumers costs the same number of heap allocations as fanning it out to one.

use bytes::Bytes;
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::Marshal;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use switchboard_core::forward::{
    ConsumerSetup, Forwarder, ForwarderConfig, KeyframeCodec, KeyframeRequestKind, ProducerCodec,
    ProducerSetup, RtpOutcome,
};
use switchboard_core::transport::MediaSink;
use switchboard_core::{ConsumerId, ProducerId, TransportId};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Sink(Cell<usize>);

impl MediaSink for Sink {
    fn send_rtp(&self, packet: &[u8]) {
        self.0.set(self.0.get() + packet.len());
    }
    fn send_rtcp(&self, _packet: &[u8]) {}
}

fn packet(seq: u16) -> Bytes {
    let mut header = Header {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        ssrc: 1,
        ..Header::default()
    };
    header.set_extension(4, Bytes::from_static(b"0")).unwrap();
    let mut payload = vec![0x10, 0x00];
    payload.resize(1000, 7);
    Packet {
        header,
        payload: Bytes::from(payload),
    }
    .marshal()
    .unwrap()
    .freeze()
}

/// Allocations made while forwarding 100 packets to `consumers` consumers (after warm-up).
fn allocations_for(consumers: usize) -> usize {
    let mut f: Forwarder<Rc<Sink>> = Forwarder::new(ForwarderConfig::default());
    let transport = TransportId::new();
    let producer = ProducerId::new();
    let sink = Rc::new(Sink(Cell::new(0)));
    f.add_producer(
        ProducerSetup {
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
        },
        sink.clone(),
    )
    .unwrap();
    let now = Instant::now();
    for i in 0..consumers {
        f.add_consumer(
            ConsumerSetup {
                id: ConsumerId::new(),
                producer,
                transport: TransportId::new(),
                ssrc: 100 + i as u32,
                rtx: None,
                payload_types: vec![(96, 100)],
                extensions: vec![(4, 1)],
                paused: false,
            },
            sink.clone(),
            now,
        )
        .unwrap();
    }
    let packets: Vec<Bytes> = (0..2200u16).map(packet).collect();
    // Warm up: fill the retransmission ring and grow the output buffer.
    for p in &packets[..2100] {
        f.on_rtp(transport, p.clone(), now);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for p in &packets[2100..] {
        let outcome = f.on_rtp(transport, p.clone(), now);
        assert!(matches!(outcome, RtpOutcome::Forwarded { consumers: n, .. } if n == consumers));
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn fan_out_allocates_nothing_per_consumer() {
    let one = allocations_for(1);
    let hundred = allocations_for(100);
    assert_eq!(
        one, hundred,
        "100 consumers allocated {hundred} times per 100 packets, 1 consumer {one}"
    );
}
