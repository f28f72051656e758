//! Building a peer connection's codec table, interceptor chain and ICE/DTLS settings from a
//! router's capabilities.

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{
    Attribute, Interceptor, NackGeneratorBuilder, Packet, ReceiverReportBuilder, Registry, Slot,
    StreamInfo, TaggedPacket, TwccReceiverBuilder,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::time::Instant;
use switchboard_core::rtp_parameters::{
    CodecParameters, MediaKind, RtpCapabilities, RtpCodecCapability,
};
use switchboard_core::{Error, ErrorCode, Result};

/// The rtc crate's kind for ours.
pub fn codec_kind(kind: MediaKind) -> RtpCodecKind {
    match kind {
        MediaKind::Audio => RtpCodecKind::Audio,
        MediaKind::Video => RtpCodecKind::Video,
    }
}

/// `a=fmtp` text for codec parameters, in the deterministic order they are stored in.
pub fn fmtp_line(parameters: &CodecParameters) -> String {
    parameters
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_text()))
        .collect::<Vec<_>>()
        .join(";")
}

fn rtc_codec(c: &RtpCodecCapability) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: c.mime_type.clone(),
        clock_rate: c.clock_rate,
        channels: c.channels.map(u16::from).unwrap_or(0),
        sdp_fmtp_line: fmtp_line(&c.parameters),
        rtcp_feedback: c
            .rtcp_feedback
            .iter()
            .map(|f| RTCPFeedback {
                typ: f.kind.clone(),
                parameter: f.parameter.clone(),
            })
            .collect(),
    }
}

fn rtc_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, e.to_string())
}

/// A media engine offering exactly the router's codecs with the router's payload types, and
/// its header extensions, so that what the connection negotiates is what the router routes.
pub fn media_engine(caps: &RtpCapabilities) -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    for c in &caps.codecs {
        let Some(payload_type) = c.preferred_payload_type else {
            continue;
        };
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: rtc_codec(c),
                    payload_type,
                },
                codec_kind(c.kind),
            )
            .map_err(rtc_error)?;
    }
    for e in &caps.header_extensions {
        engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: e.uri.clone() },
                codec_kind(e.kind),
                None,
            )
            .map_err(rtc_error)?;
    }
    Ok(engine)
}

/// The interceptor chain of a server-side connection.
///
/// Kept: NACK generation towards publishers, receiver reports, transport-wide congestion
/// feedback (browsers' bandwidth estimation needs it). Left out on purpose: the NACK responder
/// and sender reports, because the router answers NACKs from one shared per-producer buffer
/// and translates the publisher's sender reports for each consumer. Feedback that the router
/// acts on (NACK, PLI, FIR, sender reports) is marked for delivery to the application.
///
/// Every one of these works on what the connection receives; on the send side each only passes
/// packets through. They are wrapped in [`ReceiveSide`] so that outgoing RTP, the per-consumer
/// hot path, skips their queues instead of being moved through each of them.
pub fn interceptors() -> Registry {
    let receive_side = Registry::new()
        .with(Slot::from(14_000), DeliverFeedback::default())
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .build();
    Registry::new().with(Slot::from(14_000), ReceiveSide::new(receive_side))
}

/// ICE-lite, and always the DTLS server role: an answering server that is the DTLS client
/// would wait a timer tick (about 200 ms) before its ClientHello. ICE credentials are left to
/// the stack so that every ICE restart gets fresh ones.
///
/// AEAD AES-GCM SRTP profiles come first: they cost a fraction of AES-CM with HMAC-SHA1 per
/// packet (`../shared/DESIGN.md`), and the forwarding path pays that cost once per consumer.
pub fn settings() -> SettingEngineBuilder {
    SettingEngineBuilder::new()
        .with_lite(true)
        .with_answering_dtls_role(RTCDtlsRole::Server)
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
        ])
}

/// Marks inbound RTCP for the application, so NACK/PLI/FIR and sender reports reach the router.
#[derive(Default)]
pub struct DeliverFeedback {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if matches!(msg.message.packet, Packet::Rtcp(_)) {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> std::result::Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

impl Interceptor for DeliverFeedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// The receive-side interceptors as one stage whose outgoing RTP bypasses them.
///
/// Safe because none of the wrapped interceptors looks at outgoing RTP (their `handle_write`
/// only queues the packet for their `poll_write`); everything else — reads, timers, stream
/// binding and outgoing RTCP — goes through them unchanged, and what they generate (NACKs,
/// receiver reports, congestion feedback) is polled from them as before.
pub struct ReceiveSide {
    inner: Box<dyn Interceptor>,
    rtp_out: VecDeque<TaggedPacket>,
    /// Whether the wrapped chain may have something to write: it only produces output in
    /// response to a call through this wrapper, so it need not be swept on every poll.
    inner_pending: bool,
}

impl ReceiveSide {
    /// Wraps a chain of interceptors that only pass outgoing RTP through.
    pub fn new(inner: impl Interceptor + 'static) -> Self {
        Self {
            inner: Box::new(inner),
            rtp_out: VecDeque::new(),
            inner_pending: true,
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ReceiveSide {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.inner_pending = true;
        self.inner.handle_read(msg)
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.inner.poll_read()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if matches!(msg.message.packet, Packet::Rtp(_)) {
            self.rtp_out.push_back(msg);
            Ok(())
        } else {
            self.inner_pending = true;
            self.inner.handle_write(msg)
        }
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        if let Some(msg) = self.rtp_out.pop_front() {
            return Some(msg);
        }
        if !self.inner_pending {
            return None;
        }
        let msg = self.inner.poll_write();
        self.inner_pending = msg.is_some();
        msg
    }

    fn handle_event(&mut self, evt: ()) -> std::result::Result<(), Self::Error> {
        self.inner_pending = true;
        self.inner.handle_event(evt)
    }

    fn poll_event(&mut self) -> Option<()> {
        self.inner.poll_event()
    }

    fn handle_timeout(&mut self, now: Instant) -> std::result::Result<(), Self::Error> {
        self.inner_pending = true;
        self.inner.handle_timeout(now)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn close(&mut self) -> std::result::Result<(), Self::Error> {
        self.inner_pending = true;
        self.inner.close()
    }
}

impl Interceptor for ReceiveSide {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.inner_pending = true;
        self.inner.bind_local_stream(info);
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.inner_pending = true;
        self.inner.unbind_local_stream(info);
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner_pending = true;
        self.inner.bind_remote_stream(info);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.inner_pending = true;
        self.inner.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::shared::TransportContext;
    use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
    use rtc_rtcp::receiver_report::ReceiverReport;
    use std::time::Duration;

    fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: packet.into(),
        }
    }

    fn rtp(ssrc: u32, seq: u16) -> Packet {
        Packet::Rtp(rtc_rtp::Packet {
            header: rtc_rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc,
                ..Default::default()
            },
            payload: Bytes::from(vec![seq as u8; 100]),
        })
    }

    #[test]
    fn outgoing_rtp_passes_unchanged_and_receive_side_reports_still_go_out() {
        let mut chain = interceptors().build();
        let t0 = Instant::now();
        chain.bind_remote_stream(&StreamInfo {
            ssrc: 0x1111,
            payload_type: 96,
            clock_rate: 90_000,
            ..Default::default()
        });
        chain.handle_read(tagged(t0, rtp(0x1111, 7))).unwrap();
        assert!(matches!(
            chain.poll_read().map(|p| p.message.packet),
            Some(Packet::Rtp(p)) if p.header.sequence_number == 7
        ));

        for seq in 0..3 {
            chain.handle_write(tagged(t0, rtp(0x2222, seq))).unwrap();
        }
        for seq in 0..3 {
            let Some(Packet::Rtp(p)) = chain.poll_write().map(|p| p.message.packet) else {
                panic!("outgoing RTP {seq} missing");
            };
            assert_eq!((p.header.ssrc, p.header.sequence_number), (0x2222, seq));
            assert_eq!(p.payload, Bytes::from(vec![seq as u8; 100]));
        }
        assert!(chain.poll_write().is_none());

        // The receiver report the wrapped interceptor generates on its timer is still written.
        let due = chain.poll_timeout().expect("the report timer is armed");
        assert!(due <= t0 + Duration::from_secs(1));
        chain.handle_timeout(t0 + Duration::from_secs(2)).unwrap();
        let mut reported = false;
        while let Some(p) = chain.poll_write() {
            if let Packet::Rtcp(packets) = p.message.packet {
                reported |= packets.iter().any(|p| {
                    p.as_any()
                        .downcast_ref::<ReceiverReport>()
                        .is_some_and(|rr| rr.reports.iter().any(|r| r.ssrc == 0x1111))
                });
            }
        }
        assert!(reported, "no receiver report for the received stream");
    }

    #[test]
    fn inbound_feedback_is_delivered_to_the_application() {
        let mut chain = interceptors().build();
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 0x2222,
        };
        chain
            .handle_read(tagged(Instant::now(), Packet::Rtcp(vec![Box::new(pli)])))
            .unwrap();
        let read = chain.poll_read().expect("the PLI reaches the application");
        assert!(read.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(packets) = read.message.packet else {
            panic!("not RTCP");
        };
        assert!(
            packets[0]
                .as_any()
                .downcast_ref::<PictureLossIndication>()
                .is_some_and(|p| p.media_ssrc == 0x2222)
        );
    }
}
