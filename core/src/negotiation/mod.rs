//! Codec negotiation: what the server can route, what a router offers, and how a producer's
//! stream is renumbered on its way to each consumer.
//!
//! The flow, in the order the server runs it:
//!
//! 1. [`router_capabilities`] turns a room's configured codecs into the router's
//!    capabilities, checked against [`supported_capabilities`], with payload types assigned
//!    and an RTX codec after each video codec.
//! 2. [`producer_mapping`] checks a publisher's [`RtpParameters`] against the router and
//!    records how its payload types and SSRCs map onto the router's.
//! 3. [`consumable_parameters`] describes that stream in the router's own numbering: what
//!    every consumer of the producer starts from.
//! 4. [`consumer_parameters`] picks, for one subscriber, the codec, payload types,
//!    header-extension ids and SSRCs it will receive, in the subscriber's own numbering;
//!    [`can_consume`] answers the yes/no question first.
//!
//! Payload types and extension ids are per leg: publisher, router and each subscriber may
//! all use different numbers for the same codec or extension (SDP-NOTES), so nothing here
//! assumes they agree. Everything is a pure function; only SSRC generation is random.

use crate::error::{Error, Result};
use crate::h264;
use crate::rtp_parameters::{
    CodecParameters, ExtensionDirection, MediaKind, ParamValue, RtcpFeedback, RtcpParameters,
    RtpCapabilities, RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters,
    RtpHeaderExtensionCapability, RtpHeaderExtensionParameters, RtpParameters, RtxParameters,
    extension_uri, mime, mime_eq,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// First dynamic payload type (RFC 3551 §3); the range 96–127 is what every stack uses.
const FIRST_DYNAMIC_PT: u8 = 96;
/// Last dynamic payload type. Types above would collide with RTCP packet types under
/// rtcp-mux (RFC 5761 §4).
const LAST_DYNAMIC_PT: u8 = 127;

/// The fmtp key of VP9's profile (0: 8-bit 4:2:0, 2: 10/12-bit 4:2:0).
const VP9_PROFILE_ID: &str = "profile-id";
/// The fmtp key of AV1's profile (0: Main).
const AV1_PROFILE: &str = "profile";
/// The fmtp key linking an RTX codec to the payload type it repairs (RFC 4588 §8.6).
const APT: &str = "apt";

/// A codec description that can be compared with another, whichever type holds it.
///
/// Implemented for [`RtpCodecCapability`] (what an endpoint can do) and
/// [`RtpCodecParameters`] (what a stream uses), so a stream can be checked against
/// capabilities and capabilities against each other with one set of rules.
pub trait CodecMatch {
    /// The MIME type, e.g. `video/H264`.
    fn mime_type(&self) -> &str;
    /// The RTP clock rate in Hz.
    fn clock_rate(&self) -> u32;
    /// The audio channel count, if stated.
    fn channels(&self) -> Option<u8>;
    /// The fmtp parameters.
    fn parameters(&self) -> &CodecParameters;
}

impl CodecMatch for RtpCodecCapability {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &CodecParameters {
        &self.parameters
    }
}

impl CodecMatch for RtpCodecParameters {
    fn mime_type(&self) -> &str {
        &self.mime_type
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    fn channels(&self) -> Option<u8> {
        self.channels
    }
    fn parameters(&self) -> &CodecParameters {
        &self.parameters
    }
}

/// How closely [`codecs_match`] compares two codecs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMode {
    /// Same codec family: MIME type (case-insensitive), clock rate and audio channels.
    Loose,
    /// Interchangeable on the wire: [`Loose`](MatchMode::Loose), plus for H.264 the same
    /// profile ([`h264::is_same_profile`]) and packetization mode, for VP9 the same
    /// `profile-id` and for AV1 the same `profile` (absent meaning 0 for both).
    Strict,
}

/// Whether two codecs match under `mode`.
///
/// Audio without a channel count means one channel (RFC 4566 §6); video channel counts are
/// ignored because they mean nothing. RTX codecs compare like any other codec here; which
/// payload type they repair is for the caller to check.
pub fn codecs_match<A, B>(a: &A, b: &B, mode: MatchMode) -> bool
where
    A: CodecMatch + ?Sized,
    B: CodecMatch + ?Sized,
{
    if !mime_eq(a.mime_type(), b.mime_type()) || a.clock_rate() != b.clock_rate() {
        return false;
    }
    if kind_of_mime(a.mime_type()) == Some(MediaKind::Audio)
        && a.channels().unwrap_or(1) != b.channels().unwrap_or(1)
    {
        return false;
    }
    if mode == MatchMode::Loose {
        return true;
    }
    let (pa, pb) = (a.parameters(), b.parameters());
    let mime_type = a.mime_type();
    if mime_eq(mime_type, mime::H264) {
        // Mode 0 and mode 1 are different payload formats: a receiver of one cannot
        // depacketize the other, so a mismatch is never acceptable.
        let same_mode = matches!(
            (h264::packetization_mode(pa), h264::packetization_mode(pb)),
            (Some(x), Some(y)) if x == y
        );
        same_mode && h264::is_same_profile(pa, pb)
    } else if mime_eq(mime_type, mime::VP9) {
        same_numeric_param(pa, pb, VP9_PROFILE_ID, 0)
    } else if mime_eq(mime_type, mime::AV1) {
        same_numeric_param(pa, pb, AV1_PROFILE, 0)
    } else {
        true
    }
}

/// Whether a numeric fmtp parameter is equal on both sides, absent meaning `default`.
/// Unreadable values match nothing, so a typo cannot pass for the default.
fn same_numeric_param(a: &CodecParameters, b: &CodecParameters, key: &str, default: u32) -> bool {
    let read = |p: &CodecParameters| p.get(key).map_or(Some(default), ParamValue::as_u32);
    matches!((read(a), read(b)), (Some(x), Some(y)) if x == y)
}

/// The media kind a MIME type's top-level type names, if audio or video.
fn kind_of_mime(mime_type: &str) -> Option<MediaKind> {
    let top = mime_type.split('/').next()?;
    if top.eq_ignore_ascii_case("audio") {
        Some(MediaKind::Audio)
    } else if top.eq_ignore_ascii_case("video") {
        Some(MediaKind::Video)
    } else {
        None
    }
}

/// The payload type an RTX codec's parameters say it repairs.
fn apt_of(params: &CodecParameters) -> Option<u8> {
    params
        .get(APT)
        .and_then(ParamValue::as_u32)
        .and_then(|v| u8::try_from(v).ok())
}

/// Whether this MIME type is RTX, of whichever kind (`video/rtx` in practice).
fn is_rtx_mime(mime_type: &str) -> bool {
    mime_type
        .split_once('/')
        .is_some_and(|(_, sub)| sub.eq_ignore_ascii_case("rtx"))
}

/// A short human description for error messages, e.g. `video/H264/90000
/// (packetization-mode=1;profile-level-id=42e01f)`.
fn describe<C: CodecMatch + ?Sized>(codec: &C) -> String {
    let mut out = format!("{}/{}", codec.mime_type(), codec.clock_rate());
    if let Some(channels) = codec.channels() {
        out.push_str(&format!("/{channels}"));
    }
    if !codec.parameters().is_empty() {
        let params: Vec<String> = codec
            .parameters()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_text()))
            .collect();
        out.push_str(&format!(" ({})", params.join(";")));
    }
    out
}

mod capabilities;
mod consumer;
mod producer;

use capabilities::{PayloadTypes, params};
use producer::kind_of;

pub use capabilities::{default_router_codecs, router_capabilities, supported_capabilities};
pub use consumer::{can_consume, consumer_parameters};
pub use producer::{
    CodecMapping, EncodingMapping, RtpMapping, consumable_parameters, fresh_ssrc, producer_mapping,
};

#[cfg(test)]
mod tests;
