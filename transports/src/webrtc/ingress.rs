//! What a publishing connection of the native engine does with the media it receives, and
//! the feedback it owes the publisher for it.
//!
//! Plain and synchronous: the connection hands it decrypted packets and clock ticks, and
//! takes back the packets for the router and the RTCP to protect and send. The feedback comes
//! from webrtc-rs's receive-side interceptors, driven directly: NACKs for gaps, receiver
//! reports every second, and transport-wide congestion feedback, which browsers' send-side
//! bandwidth estimation needs to ramp up.
//!
//! Streams are bound on their first packet, by the SSRCs the offer declared or, for senders
//! that declare none (Chromium with simulcast), by the mid extension or the payload type. A
//! retransmission on an RTX stream is also shown to the NACK generator as the packet it
//! repairs, so that a repaired gap is not asked for again.

use bytes::Bytes;
use rtc_interceptor::{
    Interceptor, NackGeneratorBuilder, Packet, RTCPFeedback, RTPHeaderExtension,
    ReceiverReportBuilder, Registry, Slot, StreamInfo, TaggedPacket, TwccReceiverBuilder,
};
use rtc_shared::TransportContext;
use sansio::Protocol;
use std::collections::HashMap;
use std::time::Instant;
use switchboard_core::rtp_parameters::{RtpCodecParameters, extension_uri};

/// SSRCs one publishing connection may receive from: every track's media and RTX streams,
/// simulcast layers and the client's own RTCP SSRCs, with room to spare. The SRTP layer keeps
/// state per SSRC before it authenticates a packet, so packets from SSRCs beyond the budget
/// are dropped before decryption.
pub const MAX_REMOTE_SSRCS: usize = 64;

/// What the answer accepted on one m-line, in the publisher's numbering.
#[derive(Clone, Debug)]
pub struct Section {
    /// `a=mid`.
    pub mid: String,
    /// Accepted codecs (media and RTX).
    pub codecs: Vec<RtpCodecParameters>,
    /// SSRCs the offer declared: media SSRC and its RTX SSRC.
    pub ssrcs: Vec<(u32, Option<u32>)>,
}

/// What a received SSRC is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Media,
    /// Retransmissions of the media stream with this SSRC, when known.
    Rtx(Option<u32>),
}

/// How much feedback of each kind went to the publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedbackCounts {
    /// NACK packets (generic NACK, RFC 4585).
    pub nack: u64,
    /// Receiver reports.
    pub receiver_report: u64,
    /// Transport-wide congestion control feedback.
    pub transport_cc: u64,
}

/// The receive side of a publishing connection.
pub struct Ingress {
    sections: Vec<Section>,
    /// The accepted header extensions (id, URI), the same on every m-line of the bundle.
    extensions: Vec<(u8, String)>,
    mid_extension: Option<u8>,
    streams: HashMap<u32, Stream>,
    /// SSRCs admitted before decryption, bound or not.
    admitted: Vec<u32>,
    /// The feedback generators, made when something to receive is first negotiated: most
    /// connections only send, and the chain's state is most of an ingress' memory.
    chain: Option<Box<dyn Interceptor>>,
    feedback: Vec<Bytes>,
    counts: FeedbackCounts,
}

impl Default for Ingress {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingress {
    /// An ingress with nothing negotiated.
    pub fn new() -> Self {
        Self {
            sections: Vec::new(),
            extensions: Vec::new(),
            mid_extension: None,
            streams: HashMap::new(),
            admitted: Vec::new(),
            chain: None,
            feedback: Vec::new(),
            counts: FeedbackCounts::default(),
        }
    }

    /// Takes what an applied offer/answer accepted. Streams already bound stay bound; SSRCs
    /// of m-lines that are gone are forgotten.
    pub fn negotiated(&mut self, sections: Vec<Section>, extensions: Vec<(u8, String)>) {
        self.mid_extension = extensions
            .iter()
            .find(|(_, uri)| uri == extension_uri::MID)
            .map(|(id, _)| *id);
        self.extensions = extensions;
        self.sections = sections;
        if self.chain.is_none() && !self.sections.is_empty() {
            let chain = Registry::new()
                .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
                .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
                .build();
            self.chain = Some(Box::new(chain));
        }
        let declared: Vec<u32> = self
            .sections
            .iter()
            .flat_map(|s| s.ssrcs.iter().flat_map(|(m, r)| [Some(*m), *r]))
            .flatten()
            .collect();
        // Declared SSRCs come first so that a client spraying SSRCs cannot crowd them out.
        for ssrc in &declared {
            if !self.admitted.contains(ssrc) {
                self.admitted.insert(0, *ssrc);
            }
        }
        self.admitted.truncate(MAX_REMOTE_SSRCS.max(declared.len()));
    }

    /// Whether SRTP from `ssrc` may be decrypted: a known SSRC, or a new one while the
    /// budget has room.
    pub fn admit(&mut self, ssrc: u32) -> bool {
        if self.admitted.contains(&ssrc) {
            return true;
        }
        if self.admitted.len() >= MAX_REMOTE_SSRCS {
            return false;
        }
        self.admitted.push(ssrc);
        true
    }

    /// One decrypted RTP packet: returned for the router, or `None` when it belongs to no
    /// accepted m-line.
    pub fn on_rtp(&mut self, packet: rtc_rtp::Packet, now: Instant) -> Option<rtc_rtp::Packet> {
        let ssrc = packet.header.ssrc;
        let stream = match self.streams.get(&ssrc) {
            Some(s) => *s,
            None => {
                let (stream, info) = self.classify(&packet)?;
                self.chain.as_mut()?.bind_remote_stream(&info);
                self.streams.insert(ssrc, stream);
                stream
            }
        };
        let chain = self.chain.as_mut()?;
        if let Stream::Rtx(Some(media)) = stream
            && let Some(osn) = packet.payload.get(..2)
        {
            // The repaired packet, as far as the NACK generator and reports care.
            let repaired = rtc_rtp::Packet {
                header: rtc_rtp::header::Header {
                    version: 2,
                    ssrc: media,
                    sequence_number: u16::from_be_bytes([osn[0], osn[1]]),
                    timestamp: packet.header.timestamp,
                    payload_type: packet.header.payload_type,
                    ..Default::default()
                },
                payload: Bytes::new(),
            };
            let _ = chain.handle_read(tagged(now, Packet::Rtp(repaired)));
            while chain.poll_read().is_some() {}
        }
        let _ = chain.handle_read(tagged(now, Packet::Rtp(packet)));
        let mut out = None;
        while let Some(msg) = chain.poll_read() {
            if let Packet::Rtp(p) = msg.message.packet {
                out = Some(p);
            }
        }
        self.collect();
        out
    }

    /// One decrypted RTCP compound packet from the publisher (its sender reports date the
    /// receiver reports).
    pub fn on_rtcp(&mut self, packet: &Bytes, now: Instant) {
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut packet.clone()) else {
            return;
        };
        let _ = chain.handle_read(tagged(now, Packet::Rtcp(packets)));
        while chain.poll_read().is_some() {}
        self.collect();
    }

    /// When the feedback wants the next tick.
    pub fn timeout(&mut self) -> Option<Instant> {
        self.chain.as_mut()?.poll_timeout()
    }

    /// A clock tick.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Some(chain) = self.chain.as_mut() {
            let _ = chain.handle_timeout(now);
            self.collect();
        }
    }

    /// The RTCP compound packets due to the publisher, in plaintext.
    pub fn take_feedback(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.feedback)
    }

    /// Whether the last negotiation accepted anything for the client to send.
    pub fn receives(&self) -> bool {
        !self.sections.is_empty()
    }

    /// Streams bound so far.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Feedback written so far, by kind.
    pub fn feedback_counts(&self) -> FeedbackCounts {
        self.counts
    }

    fn collect(&mut self) {
        use rtc_rtcp::receiver_report::ReceiverReport;
        use rtc_rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
        use rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        while let Some(msg) = chain.poll_write() {
            let Packet::Rtcp(packets) = msg.message.packet else {
                continue;
            };
            if packets.is_empty() {
                continue;
            }
            let Ok(bytes) = rtc_rtcp::packet::marshal(&packets) else {
                continue;
            };
            for p in &packets {
                let p = p.as_any();
                if p.is::<TransportLayerNack>() {
                    self.counts.nack += 1;
                } else if p.is::<ReceiverReport>() {
                    self.counts.receiver_report += 1;
                } else if p.is::<TransportLayerCc>() {
                    self.counts.transport_cc += 1;
                }
            }
            self.feedback.push(bytes.freeze());
        }
    }

    /// What a new SSRC is, and how the interceptors should see it.
    fn classify(&self, packet: &rtc_rtp::Packet) -> Option<(Stream, StreamInfo)> {
        let ssrc = packet.header.ssrc;
        let pt = packet.header.payload_type;
        let declared = self.sections.iter().find_map(|s| {
            s.ssrcs.iter().find_map(|(media, rtx)| {
                if *media == ssrc {
                    Some((s, Stream::Media))
                } else if *rtx == Some(ssrc) {
                    Some((s, Stream::Rtx(Some(*media))))
                } else {
                    None
                }
            })
        });
        let (section, stream) = match declared {
            Some(found) => found,
            None => {
                let by_mid = self.mid_extension.and_then(|id| {
                    let mid = packet.header.get_extension(id)?;
                    self.sections
                        .iter()
                        .find(|s| s.mid.as_bytes() == mid.as_ref())
                });
                let section = by_mid.or_else(|| {
                    let mut with_pt = self
                        .sections
                        .iter()
                        .filter(|s| s.codecs.iter().any(|c| c.payload_type == pt));
                    let only = with_pt.next();
                    with_pt.next().is_none().then_some(only).flatten()
                })?;
                let codec = section.codecs.iter().find(|c| c.payload_type == pt)?;
                let stream = if codec.is_rtx() {
                    Stream::Rtx(None)
                } else {
                    Stream::Media
                };
                (section, stream)
            }
        };
        let codec = section
            .codecs
            .iter()
            .find(|c| c.payload_type == pt)
            .or_else(|| section.codecs.first())?;
        let media_codec = match stream {
            Stream::Media => codec,
            Stream::Rtx(_) => codec
                .apt()
                .and_then(|apt| section.codecs.iter().find(|c| c.payload_type == apt))
                .unwrap_or(codec),
        };
        let rtcp_feedback = match stream {
            // Only media streams are NACKed; an RTX stream is reported and counted for
            // congestion feedback.
            Stream::Media => media_codec
                .rtcp_feedback
                .iter()
                .map(|f| RTCPFeedback {
                    typ: f.kind.clone(),
                    parameter: f.parameter.clone(),
                })
                .collect(),
            Stream::Rtx(_) => Vec::new(),
        };
        let info = StreamInfo {
            ssrc,
            payload_type: pt,
            clock_rate: media_codec.clock_rate,
            mime_type: media_codec.mime_type.clone(),
            channels: media_codec.channels.map(u16::from).unwrap_or(0),
            rtcp_feedback,
            rtp_header_extensions: self
                .extensions
                .iter()
                .map(|(id, uri)| RTPHeaderExtension {
                    uri: uri.clone(),
                    id: u16::from(*id),
                })
                .collect(),
            ..Default::default()
        };
        Some((stream, info))
    }
}

fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
    TaggedPacket {
        now,
        transport: TransportContext::default(),
        message: packet.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_rtcp::receiver_report::ReceiverReport;
    use rtc_rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
    use rtc_rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    use std::time::Duration;
    use switchboard_core::rtp_parameters::{CodecParameters, ParamValue, RtcpFeedback};

    const TWCC_ID: u8 = 3;

    fn vp8_section() -> Section {
        let mut rtx_params = CodecParameters::new();
        rtx_params.insert("apt".into(), ParamValue::from(96u32));
        Section {
            mid: "0".into(),
            codecs: vec![
                RtpCodecParameters {
                    mime_type: "video/VP8".into(),
                    payload_type: 96,
                    clock_rate: 90_000,
                    channels: None,
                    parameters: CodecParameters::new(),
                    rtcp_feedback: vec![
                        RtcpFeedback::new("nack", ""),
                        RtcpFeedback::new("transport-cc", ""),
                    ],
                },
                RtpCodecParameters {
                    mime_type: "video/rtx".into(),
                    payload_type: 97,
                    clock_rate: 90_000,
                    channels: None,
                    parameters: rtx_params,
                    rtcp_feedback: vec![],
                },
            ],
            ssrcs: vec![(0x1111, Some(0x2222))],
        }
    }

    fn rtp(ssrc: u32, pt: u8, seq: u16, twcc: u16, payload: &[u8]) -> rtc_rtp::Packet {
        let mut header = rtc_rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ssrc,
            ..Default::default()
        };
        header
            .set_extension(TWCC_ID, Bytes::copy_from_slice(&twcc.to_be_bytes()))
            .expect("extension");
        rtc_rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn ingress() -> Ingress {
        let mut ingress = Ingress::new();
        ingress.negotiated(
            vec![vp8_section()],
            vec![(TWCC_ID, extension_uri::TRANSPORT_WIDE_CC.to_owned())],
        );
        ingress
    }

    fn feedback<T: Clone + 'static>(ingress: &mut Ingress) -> Vec<T> {
        ingress
            .take_feedback()
            .into_iter()
            .flat_map(|b| rtc_rtcp::packet::unmarshal(&mut b.clone()).unwrap_or_default())
            .filter_map(|p| p.as_any().downcast_ref::<T>().cloned())
            .collect()
    }

    fn tick_until<T: Clone + 'static>(ingress: &mut Ingress, from: Instant) -> Vec<T> {
        let mut found = Vec::new();
        let mut now = from;
        for _ in 0..50 {
            now = ingress.timeout().unwrap_or(now).max(now) + Duration::from_millis(1);
            ingress.on_timeout(now);
            found.extend(feedback::<T>(ingress));
            if !found.is_empty() {
                break;
            }
        }
        found
    }

    #[test]
    fn a_gap_is_nacked_and_packets_reach_the_router_unchanged() {
        let mut ingress = ingress();
        let t0 = Instant::now();
        for (i, seq) in [10u16, 11, 12, 14, 15].into_iter().enumerate() {
            let out = ingress
                .on_rtp(rtp(0x1111, 96, seq, i as u16, b"frame"), t0)
                .expect("forwarded");
            assert_eq!(out.header.sequence_number, seq);
            assert_eq!(&out.payload[..], b"frame");
        }
        let nacks: Vec<TransportLayerNack> = tick_until(&mut ingress, t0);
        assert!(
            nacks
                .iter()
                .any(|n| n.media_ssrc == 0x1111
                    && n.nacks.iter().any(|p| p.packet_list().contains(&13))),
            "no NACK for the missing packet 13: {nacks:?}"
        );
    }

    #[test]
    fn a_gap_repaired_over_rtx_is_not_nacked() {
        let mut ingress = ingress();
        let t0 = Instant::now();
        for (i, seq) in [10u16, 11, 12, 14, 15].into_iter().enumerate() {
            ingress.on_rtp(rtp(0x1111, 96, seq, i as u16, b"frame"), t0);
        }
        let mut repair = 13u16.to_be_bytes().to_vec();
        repair.extend_from_slice(b"frame");
        let out = ingress
            .on_rtp(rtp(0x2222, 97, 500, 5, &repair), t0)
            .expect("the retransmission goes to the router");
        assert_eq!(out.header.ssrc, 0x2222);
        let mut now = t0;
        for _ in 0..5 {
            now += Duration::from_millis(200);
            ingress.on_timeout(now);
        }
        let nacks: Vec<TransportLayerNack> = feedback(&mut ingress);
        assert!(
            nacks
                .iter()
                .all(|n| n.nacks.iter().all(|p| !p.packet_list().contains(&13))),
            "the repaired packet was NACKed: {nacks:?}"
        );
    }

    #[test]
    fn congestion_feedback_and_receiver_reports_are_written() {
        let mut ingress = ingress();
        let t0 = Instant::now();
        for seq in 0..20u16 {
            ingress.on_rtp(
                rtp(0x1111, 96, seq, seq, b"x"),
                t0 + Duration::from_millis(u64::from(seq) * 5),
            );
        }
        let twcc: Vec<TransportLayerCc> = tick_until(&mut ingress, t0);
        assert!(
            twcc.iter()
                .any(|f| f.media_ssrc == 0x1111 || f.packet_status_count > 0),
            "no transport-wide feedback: {twcc:?}"
        );
        let reports: Vec<ReceiverReport> =
            tick_until(&mut ingress, t0 + Duration::from_millis(100));
        assert!(
            reports
                .iter()
                .any(|r| r.reports.iter().any(|r| r.ssrc == 0x1111)),
            "no receiver report for the stream"
        );
    }

    #[test]
    fn streams_without_declared_ssrcs_are_bound_by_mid_and_the_budget_holds() {
        let mut ingress = Ingress::new();
        let mut section = vp8_section();
        section.ssrcs.clear();
        ingress.negotiated(vec![section], vec![(4, extension_uri::MID.to_owned())]);
        let mut p = rtp(0x3333, 96, 1, 1, b"x");
        p.header
            .set_extension(4, Bytes::from_static(b"0"))
            .expect("mid");
        assert!(ingress.on_rtp(p, Instant::now()).is_some());
        // A packet of a payload type nobody accepted belongs to nothing.
        assert!(
            ingress
                .on_rtp(rtp(0x4444, 100, 1, 2, b"x"), Instant::now())
                .is_none()
        );
        assert_eq!(ingress.stream_count(), 1);
        for ssrc in 0..MAX_REMOTE_SSRCS as u32 {
            ingress.admit(ssrc + 10);
        }
        assert!(!ingress.admit(0xdead_beef), "the budget is spent");
        assert!(ingress.admit(10), "admitted SSRCs stay admitted");
    }
}
