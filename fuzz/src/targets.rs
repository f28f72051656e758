//! The fuzz targets' bodies: plain functions of the input bytes, so that the same code runs
//! under libFuzzer (`fuzz/fuzz_targets/`, nightly) and, over the seed corpus, in the normal
//! test suite (`tests/tests/fuzz_corpus.rs` includes this file), where any panic fails it.
//!
//! Each target drives code that reads bytes from the network or the control socket before
//! anything has authenticated or validated them.

use bytes::Bytes;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use switchboard_core::forward::{
    ConsumerSetup, Forwarder, ForwarderConfig, KeyframeCodec, KeyframeRequestKind, ProducerCodec,
    ProducerSetup,
};
use switchboard_core::id::{ConsumerId, ProducerId, TransportId};
use switchboard_core::transport::MediaSink;

/// The RPC frame scanner and decoder, as a connection feeds them: the bytes arrive in
/// pieces, every complete frame is decoded and, when it is a request, its parameters turned
/// into JSON.
pub fn rpc_frame(data: &[u8]) {
    use switchboard_client::wire;
    let _ = wire::sniff_http(data);
    let mut scanner = wire::FrameScanner::new(64 * 1024);
    let mut rest = data;
    // Split where the first byte says, so frames straddle reads as they do on a socket.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut buf = Vec::new();
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            match scanner.scan(&buf) {
                wire::Scan::Complete(len) => {
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    scanner.reset();
                    let _ = wire::peek_msgid(&frame);
                    if let Ok(value) = wire::decode_frame_with(&frame, 10_000)
                        && let Ok(wire::Incoming::Request { params, .. }) =
                            wire::parse_message(value)
                    {
                        let _ = wire::params_map(params);
                    }
                }
                wire::Scan::Incomplete => break,
                _ => return,
            }
        }
    }
}

/// The SDP bridge: limits, parsing, the WebRTC offer checks, and what publishing derives
/// from an offer (its m-lines, producer parameters, the publish diff against itself as the
/// answer, the server's own answer and the diff against it).
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = switchboard_sdp::SdpLimits {
        max_bytes: 64 * 1024,
        max_media_sections: 64,
        max_ssrc_lines: 64,
    };
    if switchboard_sdp::check_limits(text, limits).is_err() {
        return;
    }
    let Ok(parsed) = switchboard_sdp::parse(text) else {
        return;
    };
    let _ = switchboard_sdp::check_webrtc_offer(&parsed);
    let sections = switchboard_sdp::media_sections(&parsed);
    for s in &sections {
        let _ = switchboard_sdp::producer_parameters(s, s);
    }
    let _ = switchboard_sdp::accepted_mids(&parsed);
    let _ = switchboard_transports::webrtc::publish_diff(&parsed, &parsed, &HashMap::new());
    // The server's own answer to it, as a publishing connection writes it.
    use switchboard_transports::webrtc::{answer, description::LocalDescription};
    if let (Ok(router), true) = (
        switchboard_core::negotiation::router_capabilities(
            &switchboard_core::negotiation::default_router_codecs(),
        ),
        switchboard_sdp::check_webrtc_offer(&parsed).is_ok(),
    ) && let Ok((tracks, _)) = answer::tracks_after_offer(&[], &sections, &router)
    {
        let text = answer::write_answer(
            &LocalDescription {
                session_id: 1,
                version: 1,
                ufrag: "fuzzufrag",
                pwd: "fuzzpasswordfuzzpassword",
                fingerprint: "AB:CD",
                address: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
            },
            &sections,
            &tracks,
            answer::answer_setup(sections.first().and_then(|m| m.setup)),
        );
        if let Ok(answer) = switchboard_sdp::parse(&text) {
            let _ = switchboard_transports::webrtc::publish_diff(&parsed, &answer, &HashMap::new());
        }
    }
}

#[derive(Clone, Default)]
struct CountingSink(Rc<Cell<u64>>);

impl MediaSink for CountingSink {
    fn send_rtp(&self, _: &[u8]) {
        self.0.set(self.0.get() + 1);
    }
    fn send_rtcp(&self, _: &[u8]) {
        self.0.set(self.0.get() + 1);
    }
}

/// The forwarding path: a VP8 producer with RTX and two consumers; the input is a sequence
/// of datagrams (two length bytes each), each fed as RTP from the publisher, as RTCP from the
/// publisher, or as RTCP from a subscriber (NACK, PLI, FIR, receiver reports, compound).
pub fn forwarder(data: &[u8]) {
    let mut f = Forwarder::new(ForwarderConfig::default());
    let publisher = TransportId::new();
    let producer = ProducerId::new();
    let sink = CountingSink::default();
    let setup = ProducerSetup {
        id: producer,
        transport: publisher,
        ssrc: Some(0x1111),
        rtx_ssrc: Some(0x2222),
        codecs: vec![ProducerCodec {
            payload_type: 96,
            clock_rate: 90_000,
            keyframes: KeyframeCodec::Vp8,
        }],
        rtx_payload_types: vec![(97, 96)],
        mid: None,
        keyframe_request: KeyframeRequestKind::Pli,
        paused: false,
    };
    if f.add_producer(setup, sink.clone()).is_err() {
        return;
    }
    let t0 = Instant::now();
    let subscribers: Vec<TransportId> = (0..2u32)
        .map(|i| {
            let transport = TransportId::new();
            let _ = f.add_consumer(
                ConsumerSetup {
                    id: ConsumerId::new(),
                    producer,
                    transport,
                    ssrc: 0x5000 + i,
                    rtx: (i == 0).then_some((0x9000, 101)),
                    payload_types: vec![(96, 100)],
                    extensions: vec![(4, 1)],
                    paused: false,
                },
                sink.clone(),
                t0,
            );
            transport
        })
        .collect();
    let mut rest = data;
    let mut n = 0u64;
    while rest.len() >= 3 {
        let route = rest[0];
        let len = usize::from(rest[1]) | (usize::from(rest[2] & 0x07) << 8);
        rest = &rest[3..];
        let (datagram, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        n += 1;
        let now = t0 + Duration::from_millis(n * 7);
        let bytes = Bytes::copy_from_slice(datagram);
        match route % 4 {
            0 | 1 => {
                let _ = f.on_rtp(publisher, bytes, now);
            }
            2 => f.on_rtcp(publisher, bytes, now),
            _ => f.on_rtcp(subscribers[usize::from(route >> 7)], bytes, now),
        }
        if n.is_multiple_of(16) {
            f.tick(now);
        }
    }
}

/// The WebRTC socket's demultiplexing of datagrams from addresses it does not know yet: the
/// server ufrag from a STUN binding request, and the MESSAGE-INTEGRITY check.
pub fn stun_demux(data: &[u8]) {
    use switchboard_transports::webrtc::{ice_lite::IceLite, srtp_egress};
    let _ = switchboard_transports::webrtc::net::stun_server_ufrag(data);
    let _ = switchboard_transports::webrtc::net::stun_authentic(data, "fuzzpasswordfuzzpassword");
    // The native engine's ICE-lite responder reads the same datagrams, and its egress
    // measures RTP headers.
    if let Ok(mut ice) = IceLite::with_default_crypto("fuzzufrag", "fuzzpasswordfuzzpassword") {
        let from = std::net::SocketAddr::from(([127, 0, 0, 1], 5000));
        let _ = ice.on_request(data, from, std::time::Instant::now());
    }
    let _ = srtp_egress::header_len(data);
}

/// The recorder's depacketizers and frame parsers: the input is a codec choice and a
/// sequence of RTP payloads (two length bytes each, then the marker bit), assembled into
/// frames whose keyframe information is read as the recorder reads it.
pub fn depacketizers(data: &[u8]) {
    use switchboard_middleware::recorder::codec::{self, Codec, FrameAssembler};
    let Some((&choice, mut rest)) = data.split_first() else {
        return;
    };
    let c = match choice % 4 {
        0 => Codec::Vp8,
        1 => Codec::Vp9,
        2 => Codec::H264,
        _ => Codec::Opus,
    };
    let mut assembler = FrameAssembler::new(c);
    let mut frames = Vec::new();
    let mut payloads = Vec::new();
    let mut ts = 0u32;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]) & 0x07FF);
        let marker = rest[2] & 1 == 1;
        if rest[2] & 2 == 2 {
            ts = ts.wrapping_add(3000);
        }
        rest = &rest[3..];
        let (payload, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        payloads.push(payload);
        assembler.push(
            0x1234,
            ts,
            marker,
            &Bytes::copy_from_slice(payload),
            0,
            &mut frames,
        );
    }
    frames.extend(assembler.flush());
    for frame in &frames {
        let _ = assembler.keyframe_info(frame);
        let _ = codec::vp8_size(&frame.data);
        let _ = codec::vp9_size(&frame.data);
        let _ = codec::opus_samples(&frame.data);
        for unit in codec::avc_units(&frame.data) {
            // Every unit as if it were an SPS's payload, header byte and all or not.
            let _ = codec::h264_sps_size(unit);
            let _ = codec::h264_sps_size(unit.get(1..).unwrap_or_default());
        }
    }
    // And the payloads themselves as SPS bodies: the parser must hold whatever reaches it.
    for payload in payloads {
        let _ = codec::h264_sps_size(payload.get(1..).unwrap_or_default());
    }
}
