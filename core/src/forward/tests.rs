//! Forwarding tests: the per-packet functions driven directly, without a runtime.

use super::*;
use crate::id::{ConsumerId, ProducerId, TransportId};
use crate::transport::MediaSink;
use bytes::Bytes;
use rtc_rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::transport_feedbacks::transport_layer_nack::{
    NackPair, TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, Unmarshal};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recorded {
    rtp: Vec<Packet>,
    rtcp: Vec<Bytes>,
}

#[derive(Clone, Default)]
struct Sink(Rc<RefCell<Recorded>>);

impl MediaSink for Sink {
    fn send_rtp(&self, packet: &[u8]) {
        let mut b = Bytes::copy_from_slice(packet);
        let p = Packet::unmarshal(&mut b).expect("forwarded packet parses");
        self.0.borrow_mut().rtp.push(p);
    }
    fn send_rtcp(&self, packet: &[u8]) {
        self.0
            .borrow_mut()
            .rtcp
            .push(Bytes::copy_from_slice(packet));
    }
}

impl Sink {
    fn rtp(&self) -> Vec<Packet> {
        std::mem::take(&mut self.0.borrow_mut().rtp)
    }
    fn plis(&self) -> usize {
        let mut n = 0;
        for raw in std::mem::take(&mut self.0.borrow_mut().rtcp) {
            let mut b = raw.clone();
            for p in rtc_rtcp::packet::unmarshal(&mut b).unwrap() {
                if p.as_any().downcast_ref::<PictureLossIndication>().is_some() {
                    n += 1;
                }
            }
        }
        n
    }
    fn rtcp(&self) -> Vec<Bytes> {
        std::mem::take(&mut self.0.borrow_mut().rtcp)
    }
}

const VP8_PT: u8 = 96;
const RTX_PT: u8 = 97;
const SSRC: u32 = 0x1111;
const RTX_SSRC: u32 = 0x2222;
const MID_EXT: u8 = 4;

struct Room {
    f: Forwarder<Sink>,
    t0: Instant,
    pub_transport: TransportId,
    pub_sink: Sink,
    producer: ProducerId,
}

fn vp8_setup(id: ProducerId, transport: TransportId) -> ProducerSetup {
    ProducerSetup {
        id,
        transport,
        ssrc: Some(SSRC),
        rtx_ssrc: Some(RTX_SSRC),
        codecs: vec![ProducerCodec {
            payload_type: VP8_PT,
            clock_rate: 90_000,
            keyframes: KeyframeCodec::Vp8,
        }],
        rtx_payload_types: vec![(RTX_PT, VP8_PT)],
        mid: None,
        keyframe_request: KeyframeRequestKind::Pli,
        paused: false,
    }
}

fn room() -> Room {
    room_with(ForwarderConfig::default())
}

fn room_with(config: ForwarderConfig) -> Room {
    let mut f = Forwarder::new(config);
    let pub_transport = TransportId::new();
    let pub_sink = Sink::default();
    let producer = ProducerId::new();
    f.add_producer(vp8_setup(producer, pub_transport), pub_sink.clone())
        .unwrap();
    Room {
        f,
        t0: Instant::now(),
        pub_transport,
        pub_sink,
        producer,
    }
}

struct Sub {
    id: ConsumerId,
    transport: TransportId,
    sink: Sink,
    ssrc: u32,
}

impl Room {
    fn consume(&mut self, i: u32, rtx: bool) -> Sub {
        self.consume_at(i, rtx, Duration::ZERO)
    }

    fn consume_at(&mut self, i: u32, rtx: bool, at: Duration) -> Sub {
        let sub = Sub {
            id: ConsumerId::new(),
            transport: TransportId::new(),
            sink: Sink::default(),
            ssrc: 0x5000 + i,
        };
        self.f
            .add_consumer(
                ConsumerSetup {
                    id: sub.id,
                    producer: self.producer,
                    transport: sub.transport,
                    ssrc: sub.ssrc,
                    rtx: rtx.then_some((0x9000 + i, 101)),
                    // Each subscriber has its own payload type and extension id.
                    payload_types: vec![(VP8_PT, 100 + (i % 20) as u8)],
                    extensions: vec![(MID_EXT, 1 + (i % 14) as u8)],
                    paused: false,
                },
                sub.sink.clone(),
                self.t0 + at,
            )
            .unwrap();
        sub
    }

    fn send(&mut self, seq: u16, ts: u32, keyframe: bool, at: Duration) -> RtpOutcome {
        let raw = vp8_packet(SSRC, VP8_PT, seq, ts, keyframe);
        self.f.on_rtp(self.pub_transport, raw, self.t0 + at)
    }
}

fn vp8_payload(seq: u16, keyframe: bool) -> Vec<u8> {
    // VP8 descriptor (S=1, PID=0), then the frame header whose bit 0 is the inverse key flag.
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"frame-data");
    p
}

fn vp8_packet(ssrc: u32, pt: u8, seq: u16, ts: u32, keyframe: bool) -> Bytes {
    let mut header = Header {
        version: 2,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        marker: true,
        ..Header::default()
    };
    header
        .set_extension(MID_EXT, Bytes::from_static(b"v0"))
        .unwrap();
    header
        .set_extension(3, Bytes::from_static(&[0, 7]))
        .unwrap();
    Packet {
        header,
        payload: Bytes::from(vp8_payload(seq, keyframe)),
    }
    .marshal()
    .unwrap()
    .freeze()
}

fn rtcp(packet: impl Marshal) -> Bytes {
    packet.marshal().unwrap().freeze()
}

#[test]
fn fans_out_to_fifty_consumers_with_rewritten_headers_and_exact_payloads() {
    let mut r = room();
    let subs: Vec<Sub> = (0..50).map(|i| r.consume(i, false)).collect();
    assert_eq!(
        r.send(1000, 90_000, true, Duration::ZERO),
        RtpOutcome::Forwarded {
            producer: r.producer,
            consumers: 50
        }
    );
    for seq in 1001..1010u16 {
        r.send(
            seq,
            90_000 + u32::from(seq - 1000) * 3000,
            false,
            Duration::ZERO,
        );
    }
    for (i, s) in subs.iter().enumerate() {
        let got = s.sink.rtp();
        assert_eq!(got.len(), 10, "consumer {i}");
        for (k, p) in got.iter().enumerate() {
            let seq = 1000 + k as u16;
            assert_eq!(p.header.ssrc, s.ssrc);
            assert_eq!(p.header.payload_type, 100 + (i % 20) as u8);
            assert_eq!(p.header.sequence_number, seq);
            assert_eq!(p.header.timestamp, 90_000 + k as u32 * 3000);
            assert!(p.header.marker);
            assert_eq!(p.payload.as_ref(), vp8_payload(seq, k == 0).as_slice());
            let mid_id = 1 + (i % 14) as u8;
            assert_eq!(p.header.get_extension(mid_id).unwrap().as_ref(), b"v0");
            // transport-cc was not negotiated by the consumer: dropped.
            assert_eq!(p.header.extensions.len(), 1);
        }
    }
    assert_eq!(r.f.stats().rtp_out, 500);
}

#[test]
fn video_consumers_wait_for_a_keyframe_and_one_is_requested() {
    let mut r = room();
    let s = r.consume(0, false);
    assert_eq!(r.pub_sink.plis(), 1, "joining requests a keyframe");
    r.send(1, 0, false, Duration::ZERO);
    r.send(2, 0, false, Duration::ZERO);
    assert!(s.sink.rtp().is_empty());
    r.send(3, 3000, true, Duration::ZERO);
    r.send(4, 6000, false, Duration::ZERO);
    let got = s.sink.rtp();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header.sequence_number, 3);
    assert_eq!(
        r.f.consumer_stats(s.id).unwrap().dropped_waiting_keyframe,
        2
    );
}

#[test]
fn a_publisher_that_connects_after_its_consumers_is_asked_for_a_keyframe_at_once() {
    let mut r = room();
    let s = r.consume(0, false);
    assert_eq!(r.pub_sink.plis(), 1, "joining requests a keyframe, unheard");
    // The publisher's connection comes up 300 ms later, well inside the throttle window.
    r.f.transport_connected(r.pub_transport, r.t0 + Duration::from_millis(300));
    assert_eq!(r.pub_sink.plis(), 1, "asked again as it connects");
    r.send(1, 3000, true, Duration::from_millis(350));
    assert_eq!(s.sink.rtp().len(), 1);
    // Connected again later, with nobody waiting: nothing to ask.
    r.f.transport_connected(r.pub_transport, r.t0 + Duration::from_secs(3));
    assert_eq!(r.pub_sink.plis(), 0);
}

#[test]
fn a_consumer_left_waiting_for_a_keyframe_asks_again_after_two_windows() {
    let mut r = room();
    let s = r.consume(0, false);
    assert_eq!(r.pub_sink.plis(), 1, "joining requests a keyframe");
    // That request went unheard: media flows without a keyframe. Nothing more is asked for
    // two windows (two seconds here), then once per window.
    let mut asked = Vec::new();
    for (i, at) in [500u64, 1_500, 1_999, 2_000, 2_500, 3_000]
        .into_iter()
        .enumerate()
    {
        let seq = 1 + i as u16;
        r.send(seq, u32::from(seq) * 3000, false, Duration::from_millis(at));
        asked.push(r.pub_sink.plis());
    }
    assert_eq!(asked, [0, 0, 0, 1, 0, 1]);
    r.send(7, 21_000, true, Duration::from_millis(3_100));
    r.send(8, 24_000, false, Duration::from_millis(5_000));
    assert_eq!(s.sink.rtp().len(), 2);
    r.f.tick(r.t0 + Duration::from_secs(10));
    assert_eq!(r.pub_sink.plis(), 0, "none once the keyframe came");
}

#[test]
fn a_consumer_whose_transport_connects_starts_over_at_a_requested_keyframe() {
    let mut r = room();
    let s = r.consume(0, false);
    let other = r.consume(1, false);
    // The keyframe asked for on join goes out before the client can hear it.
    r.send(1, 0, true, Duration::ZERO);
    r.send(2, 3000, false, Duration::ZERO);
    assert_eq!(s.sink.rtp().len(), 2);
    r.f.transport_connected(s.transport, r.t0 + Duration::from_secs(5));
    assert_eq!(r.pub_sink.plis(), 2, "one on join, one on connecting");
    r.send(3, 6000, false, Duration::from_secs(5));
    r.send(4, 9000, true, Duration::from_secs(5));
    let after: Vec<u16> = s
        .sink
        .rtp()
        .iter()
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(
        after,
        [3],
        "the delta before the new keyframe is held back; the keyframe follows on, numbered"
    );
    assert_eq!(
        r.f.consumer_stats(s.id).unwrap().dropped_waiting_keyframe,
        1
    );
    assert_eq!(
        other.sink.rtp().len(),
        4,
        "consumers on other transports carry on"
    );
}

#[test]
fn consumer_pause_and_resume_keep_sequence_numbers_continuous() {
    let mut r = room();
    let s = r.consume(0, false);
    r.send(100, 0, true, Duration::ZERO);
    r.send(101, 3000, false, Duration::ZERO);
    r.f.set_consumer_paused(s.id, true, r.t0).unwrap();
    for seq in 102..150 {
        r.send(seq, u32::from(seq) * 3000, false, Duration::ZERO);
    }
    r.f.set_consumer_paused(s.id, false, r.t0 + Duration::from_secs(5))
        .unwrap();
    // Not a keyframe: held back. Then a keyframe resumes the stream.
    r.send(150, 450_000, false, Duration::from_secs(5));
    r.send(151, 453_000, true, Duration::from_secs(5));
    r.send(152, 456_000, false, Duration::from_secs(5));
    let seqs: Vec<u16> = s
        .sink
        .rtp()
        .iter()
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(seqs, vec![100, 101, 102, 103]);
    assert_eq!(
        r.pub_sink.plis(),
        2,
        "one on join, one on resume (throttle window passed)"
    );
}

#[test]
fn producer_pause_and_resume_keep_consumer_sequence_numbers_continuous() {
    let mut r = room();
    let s = r.consume(0, false);
    r.send(10, 0, true, Duration::ZERO);
    r.f.set_producer_paused(r.producer, true, r.t0).unwrap();
    assert_eq!(
        r.send(11, 3000, false, Duration::ZERO),
        RtpOutcome::Dropped(DropReason::ProducerPaused)
    );
    r.f.set_producer_paused(r.producer, false, r.t0 + Duration::from_secs(2))
        .unwrap();
    r.send(500, 9000, true, Duration::from_secs(2));
    let seqs: Vec<u16> = s
        .sink
        .rtp()
        .iter()
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(seqs, vec![10, 11]);
}

#[test]
fn nack_is_answered_from_the_buffer_with_the_consumers_numbering() {
    let mut r = room();
    let plain = r.consume(0, false);
    let with_rtx = r.consume(1, true);
    r.send(200, 0, true, Duration::ZERO);
    r.f.set_consumer_paused(plain.id, true, r.t0).unwrap();
    r.send(201, 0, false, Duration::ZERO);
    r.f.set_consumer_paused(plain.id, false, r.t0).unwrap();
    r.send(202, 3000, true, Duration::ZERO);
    r.send(203, 6000, false, Duration::ZERO);
    plain.sink.rtp();
    with_rtx.sink.rtp();
    // `plain` saw 200, then 202→201, 203→202 in its own numbering. It NACKs its 202.
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: plain.ssrc,
        nacks: nack_pairs_from_sequence_numbers(&[202, 999]),
    };
    r.f.on_rtcp(plain.transport, rtcp(nack), r.t0);
    let resent = plain.sink.rtp();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].header.sequence_number, 202);
    assert_eq!(
        resent[0].payload.as_ref(),
        vp8_payload(203, false).as_slice()
    );
    let st = r.f.consumer_stats(plain.id).unwrap();
    assert_eq!((st.retransmitted, st.retransmission_misses), (1, 1));

    // The RTX consumer gets an RFC 4588 packet: its RTX SSRC and PT, OSN first.
    let nack = TransportLayerNack {
        sender_ssrc: 1,
        media_ssrc: with_rtx.ssrc,
        nacks: nack_pairs_from_sequence_numbers(&[201]),
    };
    r.f.on_rtcp(with_rtx.transport, rtcp(nack), r.t0);
    let resent = with_rtx.sink.rtp();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].header.ssrc, 0x9001);
    assert_eq!(resent[0].header.payload_type, 101);
    assert_eq!(&resent[0].payload[..2], &201u16.to_be_bytes());
    assert_eq!(&resent[0].payload[2..], vp8_payload(201, false).as_slice());
}

#[test]
fn pli_reaches_the_producer_once_per_throttle_window() {
    let mut r = room();
    let subs: Vec<Sub> = (0..5).map(|i| r.consume(i, false)).collect();
    assert_eq!(
        r.pub_sink.plis(),
        1,
        "five joins inside one window: one PLI"
    );
    r.send(1, 0, true, Duration::ZERO);
    for s in &subs {
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: s.ssrc,
        };
        r.f.on_rtcp(s.transport, rtcp(pli), r.t0 + Duration::from_millis(100));
    }
    assert_eq!(r.pub_sink.plis(), 0, "still inside the window");
    r.f.tick(r.t0 + Duration::from_millis(999));
    assert_eq!(r.pub_sink.plis(), 0);
    r.f.tick(r.t0 + Duration::from_millis(1000));
    assert_eq!(
        r.pub_sink.plis(),
        1,
        "the deferred request goes out when the window ends"
    );
    r.f.tick(r.t0 + Duration::from_millis(3000));
    assert_eq!(r.pub_sink.plis(), 0, "and only once");
    // The PLI names the producer's SSRC.
    let s = &subs[0];
    r.f.on_rtcp(
        s.transport,
        rtcp(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: s.ssrc,
        }),
        r.t0 + Duration::from_secs(10),
    );
    let raw = r.pub_sink.rtcp();
    let mut b = raw[0].clone();
    let pkts = rtc_rtcp::packet::unmarshal(&mut b).unwrap();
    let pli = pkts[0]
        .as_any()
        .downcast_ref::<PictureLossIndication>()
        .unwrap();
    assert_eq!(pli.media_ssrc, SSRC);
}

#[test]
fn rtx_from_the_producer_repairs_loss_and_duplicates_are_dropped() {
    let mut r = room();
    let s = r.consume(0, false);
    r.send(10, 0, true, Duration::ZERO);
    r.send(12, 0, false, Duration::ZERO);
    // RTX for 11: payload = OSN + original payload.
    let mut payload = 11u16.to_be_bytes().to_vec();
    payload.extend(vp8_payload(11, false));
    let rtx = Packet {
        header: Header {
            version: 2,
            payload_type: RTX_PT,
            sequence_number: 5,
            ssrc: RTX_SSRC,
            ..Header::default()
        },
        payload: Bytes::from(payload.clone()),
    };
    let raw = rtx.marshal().unwrap().freeze();
    assert!(matches!(
        r.f.on_rtp(r.pub_transport, raw.clone(), r.t0),
        RtpOutcome::Forwarded { consumers: 1, .. }
    ));
    assert_eq!(
        r.f.on_rtp(r.pub_transport, raw, r.t0),
        RtpOutcome::Dropped(DropReason::Duplicate)
    );
    let got = s.sink.rtp();
    let seqs: Vec<u16> = got.iter().map(|p| p.header.sequence_number).collect();
    assert_eq!(seqs, vec![10, 12, 11]);
    assert_eq!(got[2].payload.as_ref(), vp8_payload(11, false).as_slice());
    assert_eq!(got[2].header.ssrc, s.ssrc);
    assert_eq!(r.f.producer_stats(r.producer).unwrap().rtx_packets, 1);
}

#[test]
fn bad_input_is_counted_not_forwarded() {
    let mut r = room();
    let _s = r.consume(0, false);
    let t = r.pub_transport;
    assert_eq!(
        r.f.on_rtp(t, Bytes::from_static(b"\x80\x60"), r.t0),
        RtpOutcome::Dropped(DropReason::Malformed)
    );
    assert_eq!(
        r.f.on_rtp(
            t,
            Bytes::from_static(b"garbage that is long enough to parse?"),
            r.t0
        ),
        RtpOutcome::Dropped(DropReason::Malformed)
    );
    assert_eq!(
        r.f.on_rtp(t, vp8_packet(0xDEAD, VP8_PT, 1, 0, true), r.t0),
        RtpOutcome::Dropped(DropReason::UnknownSsrc)
    );
    // The right SSRC on another transport is someone else's stream.
    assert_eq!(
        r.f.on_rtp(
            TransportId::new(),
            vp8_packet(SSRC, VP8_PT, 1, 0, true),
            r.t0
        ),
        RtpOutcome::Dropped(DropReason::UnknownSsrc)
    );
    assert_eq!(
        r.f.on_rtp(t, vp8_packet(SSRC, 55, 1, 0, true), r.t0),
        RtpOutcome::Dropped(DropReason::UnknownPayloadType)
    );
    r.f.on_rtcp(t, Bytes::from_static(b"\x81\xc9\x00"), r.t0);
    let st = r.f.stats();
    assert_eq!(
        (st.malformed_rtp, st.unknown_ssrc, st.malformed_rtcp),
        (2, 2, 1)
    );
    assert_eq!(st.rtp_out, 0);
}

#[test]
fn ssrc_is_learned_from_the_mid_extension() {
    let mut f: Forwarder<Sink> = Forwarder::new(ForwarderConfig::default());
    let t = TransportId::new();
    let pid = ProducerId::new();
    let mut setup = vp8_setup(pid, t);
    setup.ssrc = None;
    setup.rtx_ssrc = None;
    setup.mid = Some(MidMatch {
        extension_id: MID_EXT,
        mid: "v0".into(),
    });
    f.add_producer(setup, Sink::default()).unwrap();
    let now = Instant::now();
    assert!(matches!(
        f.on_rtp(t, vp8_packet(0x7777, VP8_PT, 1, 0, true), now),
        RtpOutcome::Forwarded { .. }
    ));
    assert_eq!(f.producer_ssrc(pid), Some(0x7777));
}

#[test]
fn sender_reports_are_translated_for_consumers_and_rtt_is_measured() {
    let mut r = room();
    let s = r.consume(0, false);
    r.send(1, 10_000, true, Duration::ZERO);
    s.sink.rtp();
    let sr = SenderReport {
        ssrc: SSRC,
        ntp_time: 5 << 32,
        rtp_time: 10_000,
        ..Default::default()
    };
    r.f.on_rtcp(r.pub_transport, rtcp(sr), r.t0);
    r.f.tick(r.t0 + Duration::from_millis(500));
    let raw = s.sink.rtcp();
    assert_eq!(raw.len(), 1);
    let mut b = raw[0].clone();
    let pkts = rtc_rtcp::packet::unmarshal(&mut b).unwrap();
    let out = pkts[0].as_any().downcast_ref::<SenderReport>().unwrap();
    assert_eq!(out.ssrc, s.ssrc);
    assert_eq!(out.ntp_time, (5 << 32) + (1 << 31));
    assert_eq!(out.rtp_time, 10_000 + 45_000);
    assert_eq!(out.packet_count, 1);
    // The receiver answers 40 ms later, having held the report for 10 ms.
    let rr = ReceiverReport {
        ssrc: 1,
        reports: vec![ReceptionReport {
            ssrc: s.ssrc,
            fraction_lost: 12,
            total_lost: 3,
            last_sender_report: (out.ntp_time >> 16) as u32,
            delay: 655, // 10 ms in 1/65536 s
            ..Default::default()
        }],
        ..Default::default()
    };
    r.f.on_rtcp(s.transport, rtcp(rr), r.t0 + Duration::from_millis(540));
    let st = r.f.consumer_stats(s.id).unwrap();
    assert_eq!((st.fraction_lost, st.packets_lost), (12, 3));
    let rtt = st.rtt_ms.unwrap();
    assert!((29.0..31.0).contains(&rtt), "rtt {rtt}");
}

#[test]
fn cumulative_loss_is_a_signed_24_bit_count() {
    use super::forwarder::cumulative_loss;
    assert_eq!(cumulative_loss(3), 3);
    assert_eq!(cumulative_loss(0xFF_FFFF), -1);
    assert_eq!(cumulative_loss(0x80_0000), -(1 << 23));
    assert_eq!(cumulative_loss(0x7F_FFFF), (1 << 23) - 1);
}

#[test]
fn removing_a_producer_removes_its_consumers() {
    let mut r = room();
    let a = r.consume(0, false);
    let b = r.consume(1, true);
    let mut removed = r.f.remove_producer(r.producer);
    removed.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(r.f.consumer_count(), 0);
    assert!(!r.f.remove_consumer(a.id));
    assert_eq!(
        r.send(1, 0, true, Duration::ZERO),
        RtpOutcome::Dropped(DropReason::UnknownSsrc)
    );
}

// --- hostile receivers: the NACK policy and the keyframe throttle ---

/// A room whose consumer has received packets `first..=last` (held for a minute, so that
/// the tests below are about the NACK policy, not the buffer's age limit).
fn room_with_history(first: u16, last: u16) -> (Room, Sub) {
    let mut r = room_with(ForwarderConfig {
        retransmission_max_age: Duration::from_secs(60),
        ..ForwarderConfig::default()
    });
    let s = r.consume(0, false);
    for seq in first..=last {
        r.send(seq, u32::from(seq) * 3000, seq == first, Duration::ZERO);
    }
    assert_eq!(s.sink.rtp().len(), usize::from(last - first) + 1);
    (r, s)
}

/// A generic NACK written by hand, as an attacker would: the library's writer refuses more
/// than 253 pairs, its reader (like the wire) does not.
fn nack_of(s: &Sub, nacks: Vec<NackPair>) -> Bytes {
    let words = 2 + nacks.len();
    let mut b = vec![0x81, 205];
    b.extend_from_slice(&u16::try_from(words).unwrap().to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&s.ssrc.to_be_bytes());
    for n in &nacks {
        b.extend_from_slice(&n.packet_id.to_be_bytes());
        b.extend_from_slice(&n.lost_packets.to_be_bytes());
    }
    Bytes::from(b)
}

fn refusals(st: &ConsumerStats) -> u64 {
    st.nack_duplicates + st.nack_recently_resent + st.nack_over_limit + st.nack_rate_limited
}

#[test]
fn nack_amplification_is_bounded() {
    let (mut r, s) = room_with_history(1, 1000);
    // One 1.2 KB NACK repeating PID + BLP=0xFFFF 290 times names 4,930 packets, 17 of them
    // distinct: those 17 are resent, once each.
    let hostile = vec![
        NackPair {
            packet_id: 100,
            lost_packets: 0xFFFF,
        };
        290
    ];
    let raw = nack_of(&s, hostile);
    assert!(raw.len() <= 1200, "{} bytes", raw.len());
    r.f.on_rtcp(s.transport, raw, r.t0);
    let resent: Vec<u16> = s
        .sink
        .rtp()
        .iter()
        .map(|p| p.header.sequence_number)
        .collect();
    assert_eq!(resent, (100..=116).collect::<Vec<u16>>());
    let st = r.f.consumer_stats(s.id).unwrap().clone();
    assert_eq!(st.retransmitted, 17);
    assert_eq!(st.nack_duplicates, 290 * 17 - 17);

    // 50 pairs naming 850 distinct held packets: the per-NACK cap holds.
    let wide: Vec<NackPair> = (0..50)
        .map(|k| NackPair {
            packet_id: 120 + 17 * k,
            lost_packets: 0xFFFF,
        })
        .collect();
    let at = r.t0 + Duration::from_secs(1);
    r.f.on_rtcp(s.transport, nack_of(&s, wide.clone()), at);
    let per_nack = ForwarderConfig::default().nack_max_resends_per_nack;
    assert_eq!(s.sink.rtp().len(), per_nack);
    let st = r.f.consumer_stats(s.id).unwrap().clone();
    assert_eq!(st.nack_over_limit as usize, 850 - per_nack);

    // The same NACK 100 times a second for two seconds: at most the bucket's burst plus its
    // rate, whatever the receiver asks.
    let before = r.f.consumer_stats(s.id).unwrap().clone();
    let mut listed = 0u64;
    for k in 1..=200u64 {
        let at = r.t0 + Duration::from_secs(1) + Duration::from_millis(10 * k);
        r.f.on_rtcp(s.transport, nack_of(&s, wide.clone()), at);
        listed += 850;
    }
    let resent = s.sink.rtp().len() as u64;
    let per_second = u64::from(ForwarderConfig::default().nack_max_resends_per_second);
    assert!(resent <= 2 * per_second + per_second, "{resent} resends");
    assert!(resent > 0, "legitimate-looking NACKs are still answered");
    let st = r.f.consumer_stats(s.id).unwrap().clone();
    assert!(st.nack_rate_limited > 0, "{st:?}");
    // Everything listed is accounted for: resent, refused under a reason, or not held.
    let refused = refusals(&st) - refusals(&before);
    let misses = st.retransmission_misses - before.retransmission_misses;
    assert_eq!(resent + refused + misses, listed);
    assert_eq!(r.f.stats().nack_refused, refusals(&st));
}

#[test]
fn repeated_nack_within_rtt_is_not_resent() {
    let (mut r, s) = room_with_history(1, 100);
    let one = |seq: u16| nack_pairs_from_sequence_numbers(&[seq]);
    let resent_at = |r: &mut Room, ms: u64| {
        r.f.on_rtcp(
            s.transport,
            nack_of(&s, one(50)),
            r.t0 + Duration::from_millis(ms),
        );
        s.sink.rtp().len()
    };
    // No RTT measured yet: the default (100 ms) applies.
    assert_eq!(resent_at(&mut r, 1000), 1);
    assert_eq!(resent_at(&mut r, 1050), 0);
    assert_eq!(resent_at(&mut r, 1099), 0);
    assert_eq!(resent_at(&mut r, 1100), 1);
    let st = r.f.consumer_stats(s.id).unwrap();
    assert_eq!((st.retransmitted, st.nack_recently_resent), (2, 2));

    // Measure a 30 ms RTT (sender report out, receiver report back 40 ms later having held
    // it 10 ms): from then on the window is 30 ms.
    let sr = SenderReport {
        ssrc: SSRC,
        ntp_time: 5 << 32,
        rtp_time: 0,
        ..Default::default()
    };
    r.f.on_rtcp(r.pub_transport, rtcp(sr), r.t0);
    r.f.tick(r.t0 + Duration::from_millis(2000));
    let raw = s.sink.rtcp();
    let mut b = raw[0].clone();
    let pkts = rtc_rtcp::packet::unmarshal(&mut b).unwrap();
    let out = pkts[0].as_any().downcast_ref::<SenderReport>().unwrap();
    let rr = ReceiverReport {
        ssrc: 1,
        reports: vec![ReceptionReport {
            ssrc: s.ssrc,
            last_sender_report: (out.ntp_time >> 16) as u32,
            delay: 655,
            ..Default::default()
        }],
        ..Default::default()
    };
    r.f.on_rtcp(s.transport, rtcp(rr), r.t0 + Duration::from_millis(2040));
    let rtt = r.f.consumer_stats(s.id).unwrap().rtt_ms.unwrap();
    assert!((29.0..31.0).contains(&rtt), "rtt {rtt}");
    assert_eq!(resent_at(&mut r, 3000), 1);
    assert_eq!(resent_at(&mut r, 3020), 0);
    assert_eq!(resent_at(&mut r, 3031), 1);
}

#[test]
fn pli_and_fir_storm_from_a_subscriber_is_throttled() {
    let mut r = room();
    let s = r.consume(0, false);
    assert_eq!(r.pub_sink.plis(), 1, "the join's request");
    r.send(1, 0, true, Duration::ZERO);
    // Ten seconds of a PLI and a 100-entry FIR every 10 ms, the router ticking as usual.
    let fir = FullIntraRequest {
        sender_ssrc: 1,
        media_ssrc: s.ssrc,
        fir: (0..100)
            .map(|n| FirEntry {
                ssrc: s.ssrc,
                sequence_number: n,
            })
            .collect(),
    };
    let mut plis = 0;
    for k in 1..=1000u64 {
        let at = r.t0 + Duration::from_millis(10 * k);
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: s.ssrc,
        };
        r.f.on_rtcp(s.transport, rtcp(pli), at);
        r.f.on_rtcp(s.transport, rtcp(fir.clone()), at);
        r.f.tick(at);
        plis += r.pub_sink.plis();
    }
    // One per keyframe_request_interval (1 s) at most: ten windows, the first one spent by
    // the join.
    assert!(plis <= 10, "{plis} PLIs reached the publisher");
    assert!(plis >= 9, "requests are deferred, not lost: {plis}");
    let st = r.f.consumer_stats(s.id).unwrap();
    assert_eq!((st.plis, st.firs), (1000, 100_000));
    let p = r.f.producer_stats(r.producer).unwrap();
    assert_eq!(p.keyframe_requests_sent as usize, plis + 1);
}
