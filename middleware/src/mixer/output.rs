//! One mixed stream leaving the mixer: the Opus encoder and the RTP packetizer behind one
//! published track.

use super::{FRAME, SAMPLE_RATE};
use bytes::{Bytes, BytesMut};
use rtc_rtp::header::Header;
use rtc_rtp::packet::Packet;
use rtc_shared::marshal::Marshal;
use switchboard_core::middleware::PublishedTrack;
use switchboard_core::rtp_parameters::{
    CodecParameters, ParamValue, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
};

/// The payload type the mixer's tracks are published with; the router maps it to each
/// subscriber's own.
pub const PAYLOAD_TYPE: u8 = 111;

/// The RTP parameters of a mixed track with this SSRC.
pub fn parameters(ssrc: u32) -> RtpParameters {
    let mut fmtp = CodecParameters::new();
    fmtp.insert("minptime".into(), ParamValue::Number(10));
    fmtp.insert("useinbandfec".into(), ParamValue::Number(1));
    RtpParameters {
        mid: None,
        codecs: vec![RtpCodecParameters {
            mime_type: "audio/opus".into(),
            payload_type: PAYLOAD_TYPE,
            clock_rate: SAMPLE_RATE,
            channels: Some(2),
            parameters: fmtp,
            rtcp_feedback: Vec::new(),
        }],
        header_extensions: Vec::new(),
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: Default::default(),
    }
}

/// Encodes frames and sends them as RTP on a published track.
pub struct Output {
    encoder: opus::Encoder,
    track: Box<dyn PublishedTrack>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    encoded: Vec<u8>,
    /// Frames sent.
    pub frames: u64,
    /// Frames the encoder or the track refused.
    pub errors: u64,
}

impl Output {
    /// An output sending on `track` with `ssrc`, encoding at `bitrate` bits/s.
    pub fn new(
        track: Box<dyn PublishedTrack>,
        ssrc: u32,
        bitrate: i32,
    ) -> Result<Self, opus::Error> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        encoder.set_inband_fec(true)?;
        Ok(Self {
            encoder,
            track,
            ssrc,
            // Random starting points, as RFC 3550 asks, from the SSRC's own randomness.
            seq: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            encoded: vec![0; 1500],
            frames: 0,
            errors: 0,
        })
    }

    /// The published producer's id.
    pub fn producer(&self) -> switchboard_core::ProducerId {
        self.track.id()
    }

    /// Encodes one frame (`FRAME` samples) and sends it.
    pub fn send(&mut self, pcm: &[i16]) {
        debug_assert_eq!(pcm.len(), FRAME);
        let sent = self
            .encode_packet(pcm)
            .and_then(|p| self.track.send_rtp(p).ok());
        if sent.is_some() {
            self.frames += 1;
        } else {
            self.errors += 1;
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }

    fn encode_packet(&mut self, pcm: &[i16]) -> Option<Bytes> {
        let n = self.encoder.encode(pcm, &mut self.encoded).ok()?;
        let packet = Packet {
            header: Header {
                version: 2,
                payload_type: PAYLOAD_TYPE,
                sequence_number: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Header::default()
            },
            payload: Bytes::copy_from_slice(&self.encoded[..n]),
        };
        packet.marshal().ok().map(BytesMut::freeze)
    }
}
