//! RTP parameters and capabilities: what a codec, a header extension and a stream look like.
//!
//! *Capabilities* say what an endpoint can do (a router's configured codecs, a peer's
//! receive abilities). *Parameters* say what one particular stream uses: concrete payload
//! types, header-extension ids and SSRCs. The model follows RFC 3550/3551/8285 and the way
//! SDP expresses them, so the SDP bridge can translate both ways without loss.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// A codec-specific parameter value, as written in an SDP `a=fmtp` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A number, such as `packetization-mode=1` or `apt=96`.
    Number(u32),
    /// Text, such as `profile-level-id=42e01f`.
    Text(String),
}

impl ParamValue {
    /// The value as a number, if it is one (or is text that parses as one).
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            ParamValue::Number(n) => Some(*n),
            ParamValue::Text(t) => t.parse().ok(),
        }
    }

    /// The value as text.
    pub fn as_text(&self) -> String {
        match self {
            ParamValue::Number(n) => n.to_string(),
            ParamValue::Text(t) => t.clone(),
        }
    }
}

impl From<u32> for ParamValue {
    fn from(n: u32) -> Self {
        ParamValue::Number(n)
    }
}

impl From<&str> for ParamValue {
    fn from(s: &str) -> Self {
        ParamValue::Text(s.to_owned())
    }
}

/// Codec parameters (`a=fmtp`), ordered so that output is deterministic.
pub type CodecParameters = BTreeMap<String, ParamValue>;

/// One RTCP feedback mechanism a codec supports (`a=rtcp-fb`), e.g. `nack pli`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RtcpFeedback {
    /// The feedback type: `nack`, `ccm`, `goog-remb`, `transport-cc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter: `pli` for `nack pli`, `fir` for `ccm fir`, empty for none.
    #[serde(default)]
    pub parameter: String,
}

impl RtcpFeedback {
    /// A feedback entry.
    pub fn new(kind: &str, parameter: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            parameter: parameter.to_owned(),
        }
    }
}

/// A codec an endpoint supports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCodecCapability {
    /// Audio or video.
    pub kind: MediaKind,
    /// `audio/opus`, `video/VP8`, `video/H264`, `video/rtx`, ...
    pub mime_type: String,
    /// The payload type this endpoint would like to use for it.
    #[serde(default)]
    pub preferred_payload_type: Option<u8>,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels (2 for Opus, as SDP writes it).
    #[serde(default)]
    pub channels: Option<u8>,
    /// Codec parameters (`a=fmtp`).
    #[serde(default)]
    pub parameters: CodecParameters,
    /// Supported RTCP feedback.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

/// Direction in which an endpoint supports a header extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionDirection {
    /// Both ways.
    #[default]
    SendRecv,
    /// Only when sending.
    SendOnly,
    /// Only when receiving.
    RecvOnly,
    /// Not at all.
    Inactive,
}

/// A header extension an endpoint supports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpHeaderExtensionCapability {
    /// Audio or video.
    pub kind: MediaKind,
    /// The extension's URI.
    pub uri: String,
    /// The id this endpoint would like to use.
    pub preferred_id: u8,
    /// Whether it is encrypted (RFC 6904).
    #[serde(default)]
    pub preferred_encrypt: bool,
    /// Direction supported.
    #[serde(default)]
    pub direction: ExtensionDirection,
}

/// Everything an endpoint can send or receive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCapabilities {
    /// Codecs, in order of preference.
    #[serde(default)]
    pub codecs: Vec<RtpCodecCapability>,
    /// Header extensions.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionCapability>,
}

/// A codec as one stream uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCodecParameters {
    /// `audio/opus`, `video/VP8`, `video/rtx`, ...
    pub mime_type: String,
    /// The payload type on this stream.
    pub payload_type: u8,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels.
    #[serde(default)]
    pub channels: Option<u8>,
    /// Codec parameters (`a=fmtp`). An RTX codec carries `apt` here.
    #[serde(default)]
    pub parameters: CodecParameters,
    /// RTCP feedback in use.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

impl RtpCodecParameters {
    /// Whether this is an RTX (retransmission) codec.
    pub fn is_rtx(&self) -> bool {
        mime_eq(&self.mime_type, mime::RTX)
    }

    /// For an RTX codec, the payload type it repairs (`apt`).
    pub fn apt(&self) -> Option<u8> {
        self.parameters
            .get("apt")
            .and_then(ParamValue::as_u32)
            .and_then(|v| u8::try_from(v).ok())
    }

    /// Whether this codec supports the given feedback.
    pub fn has_feedback(&self, kind: &str, parameter: &str) -> bool {
        self.rtcp_feedback
            .iter()
            .any(|fb| fb.kind == kind && fb.parameter == parameter)
    }
}

/// A header extension as one stream uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpHeaderExtensionParameters {
    /// The extension's URI.
    pub uri: String,
    /// Its id on this stream (1–14 one-byte, 1–255 two-byte).
    pub id: u8,
    /// Whether it is encrypted.
    #[serde(default)]
    pub encrypt: bool,
}

/// The RTX stream that repairs an encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtxParameters {
    /// The RTX stream's SSRC.
    pub ssrc: u32,
}

/// One encoding (one RTP stream) of a producer or consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpEncodingParameters {
    /// Its SSRC, when known in advance.
    #[serde(default)]
    pub ssrc: Option<u32>,
    /// Its RTP stream id (simulcast `a=rid`), when it has one.
    #[serde(default)]
    pub rid: Option<String>,
    /// Its RTX stream, when RTX is negotiated.
    #[serde(default)]
    pub rtx: Option<RtxParameters>,
    /// Maximum bitrate in bits per second, when limited.
    #[serde(default)]
    pub max_bitrate: Option<u32>,
}

/// RTCP settings of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcpParameters {
    /// The CNAME (SDES), shared by a participant's tracks so receivers can synchronise them.
    #[serde(default)]
    pub cname: Option<String>,
    /// Reduced-size RTCP (RFC 5506).
    #[serde(default = "yes")]
    pub reduced_size: bool,
}

fn yes() -> bool {
    true
}

/// Everything one stream uses: codecs with payload types, extension ids, SSRCs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpParameters {
    /// The SDP `mid` of the m-line carrying the stream, when it has one.
    #[serde(default)]
    pub mid: Option<String>,
    /// The media codec first, then RTX and other auxiliary codecs.
    pub codecs: Vec<RtpCodecParameters>,
    /// Header extensions in use.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    /// The encodings (one, or several for simulcast).
    #[serde(default)]
    pub encodings: Vec<RtpEncodingParameters>,
    /// RTCP settings.
    #[serde(default)]
    pub rtcp: RtcpParameters,
}

impl RtpParameters {
    /// The first non-RTX codec: the one the stream carries.
    pub fn media_codec(&self) -> Option<&RtpCodecParameters> {
        self.codecs.iter().find(|c| !c.is_rtx())
    }

    /// The RTX codec repairing `payload_type`, if any.
    pub fn rtx_codec_for(&self, payload_type: u8) -> Option<&RtpCodecParameters> {
        self.codecs
            .iter()
            .find(|c| c.is_rtx() && c.apt() == Some(payload_type))
    }

    /// The SSRC of the first encoding: a consumer's stream.
    pub fn ssrc(&self) -> Option<u32> {
        self.encodings.first().and_then(|e| e.ssrc)
    }

    /// The SSRC of the first encoding's RTX stream, if it has one.
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.encodings
            .first()
            .and_then(|e| e.rtx.as_ref())
            .map(|r| r.ssrc)
    }

    /// The first encoding's RTX stream as it is sent: its SSRC and the RTX payload type that
    /// repairs the media codec. `None` without an RTX SSRC or without that codec.
    pub fn rtx(&self) -> Option<(u32, u8)> {
        let media_pt = self.media_codec()?.payload_type;
        Some((self.rtx_ssrc()?, self.rtx_codec_for(media_pt)?.payload_type))
    }

    /// The id of the header extension with this URI, if negotiated.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.header_extensions
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.id)
    }
}

/// Case-insensitive MIME type comparison, as RFC 6838 requires.
pub fn mime_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// MIME types of the supported codecs.
pub mod mime {
    /// Opus.
    pub const OPUS: &str = "audio/opus";
    /// VP8.
    pub const VP8: &str = "video/VP8";
    /// VP9.
    pub const VP9: &str = "video/VP9";
    /// H.264.
    pub const H264: &str = "video/H264";
    /// AV1.
    pub const AV1: &str = "video/AV1";
    /// RTX retransmission (RFC 4588).
    pub const RTX: &str = "video/rtx";
}

/// URIs of the supported header extensions.
pub mod extension_uri {
    /// SDES MID (RFC 8843).
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// SDES RtpStreamId (RFC 8852).
    pub const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// SDES RepairedRtpStreamId (RFC 8852).
    pub const REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// Absolute send time (Google).
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// Transport-wide congestion control sequence number.
    pub const TRANSPORT_WIDE_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// Client-to-mixer audio level (RFC 6464).
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// Coordination of video orientation (3GPP TS 26.114).
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
}
