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

fn params(entries: &[(&str, ParamValue)]) -> CodecParameters {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The feedback every routed video codec supports: NACK for retransmission, PLI and FIR so
/// subscribers can ask for keyframes, REMB and transport-cc for bandwidth estimation.
fn video_feedback() -> Vec<RtcpFeedback> {
    vec![
        RtcpFeedback::new("nack", ""),
        RtcpFeedback::new("nack", "pli"),
        RtcpFeedback::new("ccm", "fir"),
        RtcpFeedback::new("goog-remb", ""),
        RtcpFeedback::new("transport-cc", ""),
    ]
}

fn opus() -> RtpCodecCapability {
    RtpCodecCapability {
        kind: MediaKind::Audio,
        mime_type: mime::OPUS.to_owned(),
        preferred_payload_type: None,
        clock_rate: 48_000,
        channels: Some(2),
        // minptime=10 and in-band FEC are what Chromium sends; FEC is what keeps audio
        // intelligible through the loss an SFU cannot repair for audio (no NACK).
        parameters: params(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
        rtcp_feedback: vec![RtcpFeedback::new("transport-cc", "")],
    }
}

fn video(mime_type: &str, parameters: CodecParameters) -> RtpCodecCapability {
    RtpCodecCapability {
        kind: MediaKind::Video,
        mime_type: mime_type.to_owned(),
        preferred_payload_type: None,
        clock_rate: 90_000,
        channels: None,
        parameters,
        rtcp_feedback: video_feedback(),
    }
}

fn vp9(profile_id: u32) -> RtpCodecCapability {
    video(mime::VP9, params(&[(VP9_PROFILE_ID, profile_id.into())]))
}

fn h264_pm1(profile_level_id: &str) -> RtpCodecCapability {
    video(
        mime::H264,
        params(&[
            // Lets each direction keep its own level: the SFU never decodes, so it need
            // not force publishers and subscribers down to a common level.
            (h264::LEVEL_ASYMMETRY_ALLOWED, 1.into()),
            (h264::PACKETIZATION_MODE, 1.into()),
            (h264::PROFILE_LEVEL_ID, profile_level_id.into()),
        ]),
    )
}

fn extension(kind: MediaKind, uri: &str, preferred_id: u8) -> RtpHeaderExtensionCapability {
    RtpHeaderExtensionCapability {
        kind,
        uri: uri.to_owned(),
        preferred_id,
        preferred_encrypt: false,
        direction: ExtensionDirection::SendRecv,
    }
}

/// Everything the server can route, without payload types.
///
/// Matching is by profile (see [`h264::is_same_profile`]), so H.264 needs one entry per
/// profile, not per spelling: `42e01f` also admits `42001f`. Only packetization mode 1 is
/// routed, as every browser sends it; mode 0 limits frames to one NAL unit per packet and
/// nobody needs it when mode 1 is available. RTX is not listed: [`router_capabilities`]
/// adds one per video codec. Header-extension ids are Chromium's, so that Chromium
/// publishers need no id rewriting.
pub fn supported_capabilities() -> RtpCapabilities {
    use MediaKind::{Audio, Video};
    RtpCapabilities {
        codecs: vec![
            opus(),
            video(mime::VP8, CodecParameters::new()),
            vp9(0),
            vp9(2),
            h264_pm1("42e01f"), // Constrained Baseline (and Baseline)
            h264_pm1("4d001f"), // Main
            h264_pm1("640c1f"), // Constrained High (Safari)
            h264_pm1("640032"), // High
            video(mime::AV1, CodecParameters::new()),
        ],
        header_extensions: vec![
            extension(Audio, extension_uri::AUDIO_LEVEL, 1),
            extension(Audio, extension_uri::ABS_SEND_TIME, 2),
            extension(Video, extension_uri::ABS_SEND_TIME, 2),
            extension(Audio, extension_uri::TRANSPORT_WIDE_CC, 3),
            extension(Video, extension_uri::TRANSPORT_WIDE_CC, 3),
            extension(Audio, extension_uri::MID, 4),
            extension(Video, extension_uri::MID, 4),
            extension(Video, extension_uri::RID, 10),
            extension(Video, extension_uri::REPAIRED_RID, 11),
            extension(Video, extension_uri::VIDEO_ORIENTATION, 13),
        ],
    }
}

/// The codecs a router gets when its configuration names none: Opus, VP8, VP9 profile 0,
/// H.264 Constrained Baseline and Main (packetization mode 1), and AV1, without payload
/// types. VP8 is the first video codec because every browser can both send and receive it.
pub fn default_router_codecs() -> Vec<RtpCodecCapability> {
    vec![
        opus(),
        video(mime::VP8, CodecParameters::new()),
        vp9(0),
        h264_pm1("42e01f"),
        h264_pm1("4d001f"),
        av1(),
    ]
}

fn av1() -> RtpCodecCapability {
    video(mime::AV1, CodecParameters::new())
}

/// Hands out dynamic payload types, lowest free first.
#[derive(Default)]
struct PayloadTypes {
    used: BTreeSet<u8>,
}

impl PayloadTypes {
    /// Marks `pt` as used; false if it already was.
    fn claim(&mut self, pt: u8) -> bool {
        self.used.insert(pt)
    }

    fn next_free(&mut self) -> Result<u8> {
        let pt = (FIRST_DYNAMIC_PT..=LAST_DYNAMIC_PT)
            .find(|pt| !self.used.contains(pt))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "all dynamic payload types ({FIRST_DYNAMIC_PT}-{LAST_DYNAMIC_PT}) are in \
                     use; configure fewer codecs (each video codec also needs one for RTX)"
                ))
            })?;
        self.used.insert(pt);
        Ok(pt)
    }
}

fn is_dynamic_pt(pt: u8) -> bool {
    (FIRST_DYNAMIC_PT..=LAST_DYNAMIC_PT).contains(&pt)
}

/// An RTX capability repairing `apt`.
fn rtx_capability(apt: u8, pt: u8) -> RtpCodecCapability {
    RtpCodecCapability {
        kind: MediaKind::Video,
        mime_type: mime::RTX.to_owned(),
        preferred_payload_type: Some(pt),
        clock_rate: 90_000,
        channels: None,
        parameters: params(&[(APT, u32::from(apt).into())]),
        rtcp_feedback: Vec::new(),
    }
}

/// Checks one configured codec against the supported ones and completes it from the
/// supported entry it matches.
fn resolve_configured_codec(
    codec: &RtpCodecCapability,
    supported: &[RtpCodecCapability],
) -> Result<RtpCodecCapability> {
    if is_rtx_mime(&codec.mime_type) {
        return Err(Error::invalid(format!(
            "{} cannot be configured: an RTX codec is added after each video codec",
            codec.mime_type
        )));
    }
    if kind_of_mime(&codec.mime_type) != Some(codec.kind) {
        return Err(Error::invalid(format!(
            "codec {} is declared as {} but its MIME type says otherwise",
            codec.mime_type, codec.kind
        )));
    }
    let mut family_known = false;
    for entry in supported {
        // A configuration may leave the channel count out; it then means the supported
        // one rather than RFC 4566's one channel, since nobody configures mono Opus by
        // omission.
        let mut probe = codec.clone();
        probe.channels = codec.channels.or(entry.channels);
        family_known |= mime_eq(&codec.mime_type, &entry.mime_type);
        if !codecs_match(&probe, entry, MatchMode::Strict) {
            continue;
        }
        return Ok(RtpCodecCapability {
            kind: entry.kind,
            // The supported spelling, so that SDP shows `VP8` even if the config said `vp8`.
            mime_type: entry.mime_type.clone(),
            preferred_payload_type: codec.preferred_payload_type,
            clock_rate: entry.clock_rate,
            channels: entry.channels,
            parameters: if codec.parameters.is_empty() {
                entry.parameters.clone()
            } else {
                codec.parameters.clone()
            },
            rtcp_feedback: if codec.rtcp_feedback.is_empty() {
                entry.rtcp_feedback.clone()
            } else {
                codec.rtcp_feedback.clone()
            },
        });
    }
    Err(Error::unsupported_codec(if family_known {
        format!(
            "codec {} is not supported with this clock rate, channel count or parameters",
            describe(codec)
        )
    } else {
        format!("codec {} is not supported", describe(codec))
    }))
}

/// A router's capabilities for the configured `media_codecs` (see
/// [`default_router_codecs`] for a sensible list).
///
/// Each codec must match a [`supported_capabilities`] entry strictly (see
/// [`MatchMode::Strict`]); a configured codec with no parameters or no feedback takes the
/// supported entry's. Two codecs that match each other strictly are a duplicate, e.g.
/// H.264 `42e01f` and `42001f`. Payload types: a preferred type in 96–127 is kept when no
/// earlier codec claimed it (claims are settled before anything is assigned, so a codec
/// without a preference never takes a later codec's); everything else, including each
/// video codec's RTX, gets the lowest free dynamic type. The result lists the codecs in the
/// given order, each video codec followed by its `video/rtx`, and all supported header
/// extensions.
pub fn router_capabilities(media_codecs: &[RtpCodecCapability]) -> Result<RtpCapabilities> {
    let supported = supported_capabilities();
    let mut chosen: Vec<RtpCodecCapability> = Vec::with_capacity(media_codecs.len());
    for codec in media_codecs {
        let resolved = resolve_configured_codec(codec, &supported.codecs)?;
        if let Some(earlier) = chosen
            .iter()
            .find(|c| codecs_match(*c, &resolved, MatchMode::Strict))
        {
            return Err(Error::invalid(format!(
                "codec {} is configured twice (it is the same codec as {})",
                describe(codec),
                describe(earlier)
            )));
        }
        chosen.push(resolved);
    }

    let mut pts = PayloadTypes::default();
    let kept: Vec<Option<u8>> = chosen
        .iter()
        .map(|c| match c.preferred_payload_type {
            Some(pt) if is_dynamic_pt(pt) && pts.claim(pt) => Some(pt),
            _ => None,
        })
        .collect();

    let mut codecs = Vec::with_capacity(chosen.len() * 2);
    for (mut codec, kept) in chosen.into_iter().zip(kept) {
        let pt = match kept {
            Some(pt) => pt,
            None => pts.next_free()?,
        };
        codec.preferred_payload_type = Some(pt);
        let is_video = codec.kind == MediaKind::Video;
        codecs.push(codec);
        if is_video {
            let rtx_pt = pts.next_free()?;
            codecs.push(rtx_capability(pt, rtx_pt));
        }
    }
    Ok(RtpCapabilities {
        codecs,
        header_extensions: supported.header_extensions,
    })
}

/// How one producer payload type maps onto the router's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecMapping {
    /// The payload type the publisher sends.
    pub producer_pt: u8,
    /// The router's payload type for the same codec.
    pub router_pt: u8,
}

/// How one producer encoding maps onto the router's SSRC space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingMapping {
    /// The publisher's SSRC for this encoding, when signalled.
    pub ssrc: Option<u32>,
    /// The publisher's rid for this encoding, when simulcasting by rid.
    pub rid: Option<String>,
    /// The SSRC the router uses for this encoding internally and towards pipes.
    pub mapped_ssrc: u32,
}

/// How a producer's stream is renumbered inside the router: the forwarding path rewrites
/// incoming packets with this table before any consumer sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpMapping {
    /// One entry per producer codec, media codecs first, then RTX.
    pub codecs: Vec<CodecMapping>,
    /// One entry per producer encoding, in the producer's order.
    pub encodings: Vec<EncodingMapping>,
}

/// A random SSRC not in `taken`. Zero is avoided because some stacks treat it as "unset".
pub fn fresh_ssrc(taken: &[u32]) -> u32 {
    loop {
        let b = uuid::Uuid::new_v4().into_bytes();
        // Bytes 12..16 of a v4 UUID are fully random (the version and variant bits live
        // in bytes 6 and 8).
        let ssrc = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        if ssrc != 0 && !taken.contains(&ssrc) {
            return ssrc;
        }
    }
}

/// Checks that payload types are unique and the stream has a media codec.
fn validate_codecs(owner: &str, rtp: &RtpParameters) -> Result<()> {
    let mut seen = BTreeSet::new();
    for codec in &rtp.codecs {
        if !seen.insert(codec.payload_type) {
            return Err(Error::invalid(format!(
                "{owner} uses payload type {} twice",
                codec.payload_type
            )));
        }
    }
    if rtp.media_codec().is_none() {
        return Err(Error::invalid(format!("{owner} has no media codec")));
    }
    Ok(())
}

/// Checks that the incoming streams can be told apart.
fn validate_encodings(encodings: &[RtpEncodingParameters]) -> Result<()> {
    if encodings.is_empty() {
        return Err(Error::invalid("producer has no encodings"));
    }
    // A lone encoding may be identified by mid alone (Chromium without a=ssrc); several
    // need an ssrc or a rid each, or the router cannot tell which packet is which layer.
    if encodings.len() > 1
        && encodings
            .iter()
            .any(|e| e.ssrc.is_none() && e.rid.is_none())
    {
        return Err(Error::invalid(
            "producer has several encodings but not every one has an ssrc or a rid",
        ));
    }
    let mut ssrcs = BTreeSet::new();
    let mut rids = BTreeSet::new();
    for e in encodings {
        if let Some(ssrc) = e.ssrc.filter(|s| !ssrcs.insert(*s)) {
            return Err(Error::invalid(format!("producer uses ssrc {ssrc} twice")));
        }
        if let Some(rid) = e.rid.as_deref().filter(|r| !rids.insert(*r)) {
            return Err(Error::invalid(format!("producer uses rid {rid:?} twice")));
        }
    }
    Ok(())
}

/// Maps a producer's parameters onto the router's capabilities.
///
/// Every media codec must match a router codec strictly, or the result is an
/// `unsupported_codec` error naming it and its payload type. Each RTX codec maps, through
/// its `apt`, to the router RTX codec repairing the router payload type its media codec
/// mapped to. Encodings must be non-empty and distinguishable; each gets a fresh random
/// router SSRC.
pub fn producer_mapping(router: &RtpCapabilities, producer: &RtpParameters) -> Result<RtpMapping> {
    validate_codecs("producer", producer)?;
    validate_encodings(&producer.encodings)?;

    let mut codecs = Vec::with_capacity(producer.codecs.len());
    for codec in producer.codecs.iter().filter(|c| !c.is_rtx()) {
        let router_codec = router
            .codecs
            .iter()
            .filter(|rc| !is_rtx_mime(&rc.mime_type))
            .find(|rc| codecs_match(codec, *rc, MatchMode::Strict))
            .ok_or_else(|| {
                Error::unsupported_codec(format!(
                    "producer codec {} (payload type {}) matches no router codec",
                    describe(codec),
                    codec.payload_type
                ))
            })?;
        let router_pt = router_codec.preferred_payload_type.ok_or_else(|| {
            Error::invalid(format!(
                "router codec {} has no payload type",
                describe(router_codec)
            ))
        })?;
        codecs.push(CodecMapping {
            producer_pt: codec.payload_type,
            router_pt,
        });
    }

    let media_count = codecs.len();
    for rtx in producer.codecs.iter().filter(|c| c.is_rtx()) {
        let apt = rtx.apt().ok_or_else(|| {
            Error::invalid(format!(
                "producer RTX codec (payload type {}) has no valid apt",
                rtx.payload_type
            ))
        })?;
        let media = codecs[..media_count]
            .iter()
            .find(|m| m.producer_pt == apt)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "producer RTX codec (payload type {}) repairs payload type {apt}, which is \
                     not one of its media codecs",
                    rtx.payload_type
                ))
            })?;
        let router_rtx = router
            .codecs
            .iter()
            .filter(|rc| {
                is_rtx_mime(&rc.mime_type) && apt_of(&rc.parameters) == Some(media.router_pt)
            })
            .find_map(|rc| rc.preferred_payload_type)
            .ok_or_else(|| {
                Error::unsupported_codec(format!(
                    "router has no RTX codec for payload type {} (producer RTX payload type {})",
                    media.router_pt, rtx.payload_type
                ))
            })?;
        codecs.push(CodecMapping {
            producer_pt: rtx.payload_type,
            router_pt: router_rtx,
        });
    }

    let mut taken = Vec::with_capacity(producer.encodings.len());
    let encodings = producer
        .encodings
        .iter()
        .map(|e| {
            let mapped_ssrc = fresh_ssrc(&taken);
            taken.push(mapped_ssrc);
            EncodingMapping {
                ssrc: e.ssrc,
                rid: e.rid.clone(),
                mapped_ssrc,
            }
        })
        .collect();

    Ok(RtpMapping { codecs, encodings })
}

/// The media kind of a stream, from its media codec.
fn kind_of(rtp: &RtpParameters) -> Option<MediaKind> {
    rtp.media_codec().and_then(|c| kind_of_mime(&c.mime_type))
}

/// The producer's stream as the router forwards it: what every consumer starts from.
///
/// Media codecs are renumbered to the router's payload types and carry the router's RTCP
/// feedback, but keep the producer's fmtp parameters, because those describe the actual
/// bitstream (its H.264 profile, say). Each is followed by the router's RTX codec for it,
/// whether or not the publisher sends RTX: the router answers consumers' NACKs from its own
/// buffer. Header extensions keep only those the router supports for this kind and can send,
/// with the router's ids. Encodings carry the mapped SSRCs and no rid or RTX, since
/// consumers identify streams by SSRC and get their own RTX SSRCs. The CNAME is kept so
/// subscribers can still synchronise a participant's audio and video; `mid` is per m-line
/// and left to each consumer.
pub fn consumable_parameters(
    producer: &RtpParameters,
    router: &RtpCapabilities,
    mapping: &RtpMapping,
) -> RtpParameters {
    let mut codecs: Vec<RtpCodecParameters> = Vec::new();
    for m in &mapping.codecs {
        let Some(codec) = producer
            .codecs
            .iter()
            .find(|c| c.payload_type == m.producer_pt)
        else {
            continue;
        };
        // The router's RTX follows its media codec below; a publisher's RTX is only
        // relevant to the incoming leg.
        if codec.is_rtx() || codecs.iter().any(|c| c.payload_type == m.router_pt) {
            continue;
        }
        let Some(router_codec) = router
            .codecs
            .iter()
            .find(|rc| rc.preferred_payload_type == Some(m.router_pt))
        else {
            continue;
        };
        codecs.push(RtpCodecParameters {
            mime_type: router_codec.mime_type.clone(),
            payload_type: m.router_pt,
            clock_rate: router_codec.clock_rate,
            channels: router_codec.channels,
            parameters: codec.parameters.clone(),
            rtcp_feedback: router_codec.rtcp_feedback.clone(),
        });
        let router_rtx = router.codecs.iter().find_map(|rc| {
            let repairs_it =
                is_rtx_mime(&rc.mime_type) && apt_of(&rc.parameters) == Some(m.router_pt);
            repairs_it.then_some(rc).zip(rc.preferred_payload_type)
        });
        if let Some((rtx, rtx_pt)) = router_rtx {
            codecs.push(RtpCodecParameters {
                mime_type: rtx.mime_type.clone(),
                payload_type: rtx_pt,
                clock_rate: rtx.clock_rate,
                channels: None,
                parameters: rtx.parameters.clone(),
                rtcp_feedback: Vec::new(),
            });
        }
    }

    let mut header_extensions: Vec<RtpHeaderExtensionParameters> = Vec::new();
    if let Some(kind) = kind_of(producer) {
        for ext in &producer.header_extensions {
            let router_ext = router.header_extensions.iter().find(|re| {
                re.kind == kind
                    && re.uri == ext.uri
                    && matches!(
                        re.direction,
                        ExtensionDirection::SendRecv | ExtensionDirection::SendOnly
                    )
            });
            let router_ext =
                router_ext.filter(|re| !header_extensions.iter().any(|e| e.id == re.preferred_id));
            if let Some(re) = router_ext {
                header_extensions.push(RtpHeaderExtensionParameters {
                    uri: re.uri.clone(),
                    id: re.preferred_id,
                    encrypt: re.preferred_encrypt,
                });
            }
        }
    }

    let encodings = mapping
        .encodings
        .iter()
        .zip(&producer.encodings)
        .map(|(m, e)| RtpEncodingParameters {
            ssrc: Some(m.mapped_ssrc),
            rid: None,
            rtx: None,
            max_bitrate: e.max_bitrate,
        })
        .collect();

    RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings,
        rtcp: RtcpParameters {
            cname: producer.rtcp.cname.clone(),
            reduced_size: true,
        },
    }
}

/// The remote codec a consumable codec should be sent as, if the remote supports it.
///
/// An exact H.264 profile is preferred over a merely compatible one, so a stream labelled
/// Constrained Baseline goes out as the remote's `42e01f` entry rather than its `42001f`
/// one when the remote lists both (Chromium lists `42001f` first).
fn remote_match<'r>(
    codec: &RtpCodecParameters,
    remote: &'r RtpCapabilities,
) -> Option<&'r RtpCodecCapability> {
    let mut candidates = remote
        .codecs
        .iter()
        .filter(|rc| !is_rtx_mime(&rc.mime_type))
        .filter(|rc| codecs_match(codec, *rc, MatchMode::Strict));
    let first = candidates.next()?;
    if !mime_eq(&codec.mime_type, mime::H264) {
        return Some(first);
    }
    let exact = |rc: &&RtpCodecCapability| {
        h264::profile_level_id_of(&rc.parameters).map(|p| p.profile)
            == h264::profile_level_id_of(&codec.parameters).map(|p| p.profile)
    };
    Some(
        std::iter::once(first)
            .chain(candidates)
            .find(exact)
            .unwrap_or(first),
    )
}

/// Whether a remote with these capabilities can receive the consumable stream: some media
/// codec of it matches a remote codec strictly.
pub fn can_consume(consumable: &RtpParameters, remote: &RtpCapabilities) -> bool {
    consumable
        .codecs
        .iter()
        .filter(|c| !c.is_rtx())
        .any(|c| remote_match(c, remote).is_some())
}

/// Whether the remote accepts an extension it receives in the given direction.
fn remote_receives(direction: ExtensionDirection) -> bool {
    matches!(
        direction,
        ExtensionDirection::SendRecv | ExtensionDirection::RecvOnly
    )
}

/// The header extensions of `consumable` the remote supports for `kind`, with the remote's
/// ids. With `drop_stream_ids`, rid and repaired-rid are left out: a consumer receives one
/// plain stream identified by SSRC, and forwarding a publisher's rids to it would only
/// invite the receiver to demultiplex by them.
fn consumer_extensions(
    consumable: &RtpParameters,
    remote: &RtpCapabilities,
    kind: Option<MediaKind>,
    drop_stream_ids: bool,
) -> Vec<RtpHeaderExtensionParameters> {
    let Some(kind) = kind else {
        return Vec::new();
    };
    let mut out: Vec<RtpHeaderExtensionParameters> = Vec::new();
    for ext in &consumable.header_extensions {
        if drop_stream_ids
            && (ext.uri == extension_uri::RID || ext.uri == extension_uri::REPAIRED_RID)
        {
            continue;
        }
        let remote_ext = remote
            .header_extensions
            .iter()
            .find(|re| re.kind == kind && re.uri == ext.uri && remote_receives(re.direction));
        let remote_ext = remote_ext.filter(|re| !out.iter().any(|e| e.id == re.preferred_id));
        if let Some(re) = remote_ext {
            out.push(RtpHeaderExtensionParameters {
                uri: ext.uri.clone(),
                id: re.preferred_id,
                encrypt: ext.encrypt,
            });
        }
    }
    out
}

/// Rewrites an H.264 `profile-level-id` to the remote's spelling of a compatible profile.
///
/// Baseline and Constrained Baseline match each other (see [`h264::is_same_profile`]), but
/// a stack that only listed one may reject an m-line labelled with the other. The level is
/// the stream's own: the SFU forwards the publisher's bitstream unchanged.
fn relabel_h264_profile(params: &mut CodecParameters, remote: &CodecParameters) {
    let (Some(ours), Some(theirs)) = (
        h264::profile_level_id_of(params),
        h264::profile_level_id_of(remote),
    ) else {
        return;
    };
    if ours.profile != theirs.profile {
        let relabelled = h264::ProfileLevelId {
            profile: theirs.profile,
            level: ours.level,
        };
        params.insert(
            h264::PROFILE_LEVEL_ID.to_owned(),
            ParamValue::Text(relabelled.to_hex()),
        );
    }
}

/// The parameters one consumer receives, in the remote's own numbering.
///
/// The first media codec of `consumable` that the remote supports (strictly) is chosen,
/// with the remote's preferred payload type when it states one (subscribers number codecs
/// their own way) or the router's otherwise. If the remote supports `video/rtx` and the
/// consumable has RTX for that codec, RTX is added: the remote's payload type whose `apt`
/// is the chosen media payload type, else the router's (moved if it would collide). RTCP
/// feedback is what both sides support; header extensions are those both support, with the
/// remote's ids. There is one encoding with a fresh random SSRC, plus a fresh RTX SSRC when
/// RTX is in use. `mid` is left for the SDP bridge to assign.
///
/// With `pipe` (router-to-router), the stream is relayed as the consumable describes it:
/// all codecs, payload types and encodings with their SSRCs stay unchanged, because the
/// receiving router maps them again itself; only header extensions are narrowed to the
/// remote's.
///
/// Fails with `unsupported_codec` when no media codec is in common.
pub fn consumer_parameters(
    consumable: &RtpParameters,
    remote: &RtpCapabilities,
    pipe: bool,
) -> Result<RtpParameters> {
    let no_common_codec = || {
        let offered: Vec<String> = consumable
            .codecs
            .iter()
            .filter(|c| !c.is_rtx())
            .map(describe)
            .collect();
        Error::unsupported_codec(format!(
            "the remote supports none of the stream's codecs: {}",
            offered.join(", ")
        ))
    };
    let kind = kind_of(consumable);

    if pipe {
        if !can_consume(consumable, remote) {
            return Err(no_common_codec());
        }
        return Ok(RtpParameters {
            mid: None,
            codecs: consumable.codecs.clone(),
            header_extensions: consumer_extensions(consumable, remote, kind, false),
            encodings: consumable.encodings.clone(),
            rtcp: consumable.rtcp.clone(),
        });
    }

    let (media, remote_media) = consumable
        .codecs
        .iter()
        .filter(|c| !c.is_rtx())
        .find_map(|c| remote_match(c, remote).map(|rc| (c, rc)))
        .ok_or_else(no_common_codec)?;

    let media_pt = remote_media
        .preferred_payload_type
        .unwrap_or(media.payload_type);
    let mut parameters = media.parameters.clone();
    if mime_eq(&media.mime_type, mime::H264) {
        relabel_h264_profile(&mut parameters, &remote_media.parameters);
    }
    let rtcp_feedback = media
        .rtcp_feedback
        .iter()
        .filter(|fb| remote_media.rtcp_feedback.contains(fb))
        .cloned()
        .collect();
    let mut codecs = vec![RtpCodecParameters {
        mime_type: media.mime_type.clone(),
        payload_type: media_pt,
        clock_rate: media.clock_rate,
        channels: media.channels,
        parameters,
        rtcp_feedback,
    }];

    let remote_has_rtx = remote.codecs.iter().any(|c| is_rtx_mime(&c.mime_type));
    let consumable_rtx = consumable
        .rtx_codec_for(media.payload_type)
        .filter(|_| remote_has_rtx);
    if let Some(rtx) = consumable_rtx {
        let remote_rtx_pt = remote_media.preferred_payload_type.and_then(|remote_pt| {
            remote
                .codecs
                .iter()
                .filter(|c| is_rtx_mime(&c.mime_type) && apt_of(&c.parameters) == Some(remote_pt))
                .find_map(|c| c.preferred_payload_type)
        });
        let mut rtx_pt = remote_rtx_pt.unwrap_or(rtx.payload_type);
        if rtx_pt == media_pt {
            // The remote renumbered the media codec onto the router's RTX type without
            // naming an RTX type of its own.
            let mut pts = PayloadTypes::default();
            pts.claim(media_pt);
            rtx_pt = pts.next_free()?;
        }
        codecs.push(RtpCodecParameters {
            mime_type: rtx.mime_type.clone(),
            payload_type: rtx_pt,
            clock_rate: rtx.clock_rate,
            channels: None,
            parameters: params(&[(APT, u32::from(media_pt).into())]),
            rtcp_feedback: Vec::new(),
        });
    }

    let ssrc = fresh_ssrc(&[]);
    let rtx = (codecs.len() > 1).then(|| RtxParameters {
        ssrc: fresh_ssrc(&[ssrc]),
    });
    Ok(RtpParameters {
        mid: None,
        codecs,
        header_extensions: consumer_extensions(consumable, remote, kind, true),
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            rid: None,
            rtx,
            max_bitrate: None,
        }],
        rtcp: consumable.rtcp.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    // ---- helpers -------------------------------------------------------------------

    fn codec(
        mime_type: &str,
        pt: u8,
        clock_rate: u32,
        p: &[(&str, ParamValue)],
    ) -> RtpCodecParameters {
        RtpCodecParameters {
            mime_type: mime_type.to_owned(),
            payload_type: pt,
            clock_rate,
            channels: if mime_type.starts_with("audio/") {
                Some(2)
            } else {
                None
            },
            parameters: params(p),
            rtcp_feedback: video_feedback(),
        }
    }

    fn rtx(pt: u8, apt: u8) -> RtpCodecParameters {
        codec(mime::RTX, pt, 90_000, &[(APT, u32::from(apt).into())])
    }

    fn h264_params(plid: &str, mode: u32) -> Vec<(&str, ParamValue)> {
        vec![
            (h264::LEVEL_ASYMMETRY_ALLOWED, 1.into()),
            (h264::PACKETIZATION_MODE, mode.into()),
            (h264::PROFILE_LEVEL_ID, plid.into()),
        ]
    }

    fn ext(uri: &str, id: u8) -> RtpHeaderExtensionParameters {
        RtpHeaderExtensionParameters {
            uri: uri.to_owned(),
            id,
            encrypt: false,
        }
    }

    fn cap(
        kind: MediaKind,
        mime_type: &str,
        pt: Option<u8>,
        p: &[(&str, ParamValue)],
    ) -> RtpCodecCapability {
        RtpCodecCapability {
            kind,
            mime_type: mime_type.to_owned(),
            preferred_payload_type: pt,
            clock_rate: if kind == MediaKind::Audio {
                48_000
            } else {
                90_000
            },
            channels: (kind == MediaKind::Audio).then_some(2),
            parameters: params(p),
            rtcp_feedback: Vec::new(),
        }
    }

    fn router() -> RtpCapabilities {
        router_capabilities(&default_router_codecs()).expect("defaults are valid")
    }

    fn router_pt(router: &RtpCapabilities, mime_type: &str, p: &[(&str, ParamValue)]) -> u8 {
        let probe = codec(
            mime_type,
            0,
            if mime_type == mime::OPUS {
                48_000
            } else {
                90_000
            },
            p,
        );
        router
            .codecs
            .iter()
            .find(|c| codecs_match(&probe, *c, MatchMode::Strict))
            .and_then(|c| c.preferred_payload_type)
            .expect("router has the codec")
    }

    fn router_rtx_pt(router: &RtpCapabilities, apt: u8) -> u8 {
        router
            .codecs
            .iter()
            .find(|c| is_rtx_mime(&c.mime_type) && apt_of(&c.parameters) == Some(apt))
            .and_then(|c| c.preferred_payload_type)
            .expect("router has an rtx for it")
    }

    /// What Chromium publishes for video: VP8 96 + rtx 97, H264 42e01f pm1 102 + rtx 103,
    /// with its extension ids, one encoding with an RTX SSRC.
    fn chromium_video_producer() -> RtpParameters {
        RtpParameters {
            mid: Some("1".into()),
            codecs: vec![
                codec(mime::VP8, 96, 90_000, &[]),
                rtx(97, 96),
                codec(mime::H264, 102, 90_000, &h264_params("42e01f", 1)),
                rtx(103, 102),
            ],
            header_extensions: vec![
                ext(extension_uri::ABS_SEND_TIME, 2),
                ext(extension_uri::TRANSPORT_WIDE_CC, 3),
                ext(extension_uri::MID, 4),
                ext(extension_uri::RID, 10),
                ext(extension_uri::REPAIRED_RID, 11),
                ext(extension_uri::VIDEO_ORIENTATION, 13),
                // Something the router does not know: must be dropped.
                ext("urn:ietf:params:rtp-hdrext:toffset", 14),
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(1111),
                rid: None,
                rtx: Some(RtxParameters { ssrc: 2222 }),
                max_bitrate: Some(1_500_000),
            }],
            rtcp: RtcpParameters {
                cname: Some("chromium-cname".into()),
                reduced_size: true,
            },
        }
    }

    fn consumable_of(producer: &RtpParameters) -> (RtpCapabilities, RtpMapping, RtpParameters) {
        let router = router();
        let mapping = producer_mapping(&router, producer).expect("producer maps");
        let consumable = consumable_parameters(producer, &router, &mapping);
        (router, mapping, consumable)
    }

    /// A publisher sending H.264 labelled Baseline (aiortc lists 42001f first).
    fn h264_baseline_producer() -> RtpParameters {
        RtpParameters {
            mid: Some("0".into()),
            codecs: vec![
                codec(mime::H264, 99, 90_000, &h264_params("42001f", 1)),
                rtx(100, 99),
            ],
            header_extensions: vec![ext(extension_uri::MID, 1)],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(42),
                ..Default::default()
            }],
            rtcp: RtcpParameters {
                cname: Some("aiortc".into()),
                reduced_size: true,
            },
        }
    }

    /// What Firefox can receive for video: H264 42e01f pm1 at 126 with rtx 127, VP8 120 with
    /// rtx 124, and its own extension ids (mid 3, transport-cc 7).
    fn firefox_video_receiver() -> RtpCapabilities {
        let mut h264 = cap(
            MediaKind::Video,
            "video/H264",
            Some(126),
            &h264_params("42e01f", 1),
        );
        h264.rtcp_feedback = video_feedback();
        let mut vp8 = cap(MediaKind::Video, "video/VP8", Some(120), &[]);
        vp8.rtcp_feedback = video_feedback();
        RtpCapabilities {
            codecs: vec![
                vp8,
                cap(
                    MediaKind::Video,
                    "video/rtx",
                    Some(124),
                    &[(APT, 120.into())],
                ),
                h264,
                cap(
                    MediaKind::Video,
                    "video/rtx",
                    Some(127),
                    &[(APT, 126.into())],
                ),
            ],
            header_extensions: vec![
                extension(MediaKind::Video, extension_uri::MID, 3),
                extension(MediaKind::Video, extension_uri::ABS_SEND_TIME, 4),
                extension(MediaKind::Video, extension_uri::TRANSPORT_WIDE_CC, 7),
                extension(MediaKind::Video, extension_uri::RID, 10),
            ],
        }
    }

    // ---- matching ------------------------------------------------------------------

    #[test]
    fn matching_basics() {
        let opus = codec(mime::OPUS, 111, 48_000, &[]);
        let mut opus_upper = opus.clone();
        opus_upper.mime_type = "AUDIO/OPUS".into();
        assert!(codecs_match(&opus, &opus_upper, MatchMode::Strict));

        let mut mono = opus.clone();
        mono.channels = Some(1);
        assert!(!codecs_match(&opus, &mono, MatchMode::Loose));
        let mut unstated = opus.clone();
        unstated.channels = None;
        assert!(
            codecs_match(&mono, &unstated, MatchMode::Strict),
            "absent = 1 channel"
        );

        let mut other_clock = opus.clone();
        other_clock.clock_rate = 16_000;
        assert!(!codecs_match(&opus, &other_clock, MatchMode::Loose));

        // Works across the two types.
        let capability = super::opus();
        assert!(codecs_match(&opus, &capability, MatchMode::Strict));
        assert!(codecs_match(&capability, &opus, MatchMode::Strict));
    }

    #[test]
    fn strict_matching_checks_h264_profile_and_mode() {
        let cb = codec(mime::H264, 102, 90_000, &h264_params("42e01f", 1));
        let baseline = codec(mime::H264, 104, 90_000, &h264_params("42001f", 1));
        let main = codec(mime::H264, 127, 90_000, &h264_params("4d001f", 1));
        let cb_mode0 = codec(mime::H264, 108, 90_000, &h264_params("42e01f", 0));
        // Firefox writes no packetization-mode for mode 0.
        let cb_firefox_mode0 = codec(
            mime::H264,
            97,
            90_000,
            &[(h264::PROFILE_LEVEL_ID, "42e01f".into())],
        );

        assert!(codecs_match(&cb, &baseline, MatchMode::Strict));
        assert!(!codecs_match(&cb, &main, MatchMode::Strict));
        assert!(codecs_match(&cb, &main, MatchMode::Loose));
        assert!(!codecs_match(&cb, &cb_mode0, MatchMode::Strict));
        assert!(codecs_match(
            &cb_mode0,
            &cb_firefox_mode0,
            MatchMode::Strict
        ));
        let broken_mode = codec(
            mime::H264,
            96,
            90_000,
            &[(h264::PACKETIZATION_MODE, "x".into())],
        );
        assert!(!codecs_match(&broken_mode, &broken_mode, MatchMode::Strict));
    }

    #[test]
    fn strict_matching_checks_vp9_and_av1_profiles() {
        let vp9_absent = codec(mime::VP9, 98, 90_000, &[]);
        let vp9_p0 = codec(mime::VP9, 98, 90_000, &[(VP9_PROFILE_ID, 0.into())]);
        let vp9_p2 = codec(mime::VP9, 100, 90_000, &[(VP9_PROFILE_ID, "2".into())]);
        assert!(codecs_match(&vp9_absent, &vp9_p0, MatchMode::Strict));
        assert!(!codecs_match(&vp9_p0, &vp9_p2, MatchMode::Strict));
        assert!(codecs_match(&vp9_p0, &vp9_p2, MatchMode::Loose));

        let av1_chrome = codec(
            mime::AV1,
            45,
            90_000,
            &[
                ("level-idx", 5.into()),
                (AV1_PROFILE, 0.into()),
                ("tier", 0.into()),
            ],
        );
        let av1_plain = codec(mime::AV1, 41, 90_000, &[]);
        let av1_high = codec(mime::AV1, 41, 90_000, &[(AV1_PROFILE, 1.into())]);
        assert!(codecs_match(&av1_chrome, &av1_plain, MatchMode::Strict));
        assert!(!codecs_match(&av1_plain, &av1_high, MatchMode::Strict));
    }

    // ---- supported and router capabilities -----------------------------------------

    #[test]
    fn supported_capabilities_use_chromium_extension_ids() {
        let caps = supported_capabilities();
        let id = |kind: MediaKind, uri: &str| {
            caps.header_extensions
                .iter()
                .find(|e| e.kind == kind && e.uri == uri)
                .map(|e| e.preferred_id)
        };
        assert_eq!(id(MediaKind::Audio, extension_uri::AUDIO_LEVEL), Some(1));
        assert_eq!(id(MediaKind::Video, extension_uri::AUDIO_LEVEL), None);
        assert_eq!(id(MediaKind::Video, extension_uri::ABS_SEND_TIME), Some(2));
        assert_eq!(
            id(MediaKind::Audio, extension_uri::TRANSPORT_WIDE_CC),
            Some(3)
        );
        assert_eq!(id(MediaKind::Audio, extension_uri::MID), Some(4));
        assert_eq!(id(MediaKind::Video, extension_uri::MID), Some(4));
        assert_eq!(id(MediaKind::Video, extension_uri::RID), Some(10));
        assert_eq!(id(MediaKind::Audio, extension_uri::RID), None);
        assert_eq!(id(MediaKind::Video, extension_uri::REPAIRED_RID), Some(11));
        assert_eq!(
            id(MediaKind::Video, extension_uri::VIDEO_ORIENTATION),
            Some(13)
        );
        // Every default codec is routable.
        for c in default_router_codecs() {
            assert!(
                caps.codecs
                    .iter()
                    .any(|s| codecs_match(&c, s, MatchMode::Strict)),
                "{}",
                describe(&c)
            );
        }
    }

    #[test]
    fn router_caps_from_defaults_have_unique_pts_and_an_rtx_per_video_codec() {
        let caps = router();
        let pts: Vec<u8> = caps
            .codecs
            .iter()
            .map(|c| {
                c.preferred_payload_type
                    .expect("every codec gets a payload type")
            })
            .collect();
        let unique: BTreeSet<u8> = pts.iter().copied().collect();
        assert_eq!(unique.len(), pts.len(), "{pts:?}");
        assert!(pts.iter().all(|pt| is_dynamic_pt(*pt)));

        // Given order, each video codec immediately followed by its RTX.
        let media: Vec<&RtpCodecCapability> = caps
            .codecs
            .iter()
            .filter(|c| !is_rtx_mime(&c.mime_type))
            .collect();
        let expected: Vec<String> = default_router_codecs()
            .iter()
            .map(|c| c.mime_type.clone())
            .collect();
        assert_eq!(
            media
                .iter()
                .map(|c| c.mime_type.clone())
                .collect::<Vec<_>>(),
            expected
        );
        for (i, c) in caps.codecs.iter().enumerate() {
            if c.kind == MediaKind::Video && !is_rtx_mime(&c.mime_type) {
                let next = caps.codecs.get(i + 1).expect("an rtx follows");
                assert_eq!(next.mime_type, mime::RTX);
                assert_eq!(next.clock_rate, 90_000);
                assert_eq!(apt_of(&next.parameters), c.preferred_payload_type);
            }
        }
        assert_eq!(
            caps.codecs
                .iter()
                .filter(|c| is_rtx_mime(&c.mime_type))
                .count(),
            5
        );
        // Audio gets no RTX; video feedback and Opus fmtp come from the supported entries.
        assert_eq!(
            caps.codecs.first().map(|c| c.mime_type.as_str()),
            Some(mime::OPUS)
        );
        assert_ne!(
            caps.codecs.get(1).map(|c| c.mime_type.as_str()),
            Some(mime::RTX)
        );
        assert_eq!(
            caps.codecs[0].parameters.get("useinbandfec"),
            Some(&ParamValue::Number(1))
        );
        assert_eq!(caps.codecs[1].rtcp_feedback, video_feedback());
        assert_eq!(
            caps.header_extensions,
            supported_capabilities().header_extensions
        );
    }

    #[test]
    fn router_keeps_free_preferred_pts_and_fills_the_gaps() {
        let caps = router_capabilities(&[
            // No preference: must not take 96, which a later codec wants.
            cap(MediaKind::Video, "video/vp8", None, &[]),
            cap(MediaKind::Audio, "audio/opus", Some(96), &[]),
            // Taken already by Opus: falls back to the lowest free type.
            cap(MediaKind::Video, "video/VP9", Some(96), &[]),
            // Not dynamic: ignored.
            cap(MediaKind::Video, "video/AV1", Some(35), &[]),
        ])
        .expect("valid");
        let summary: Vec<(String, u8)> = caps
            .codecs
            .iter()
            .map(|c| (c.mime_type.clone(), c.preferred_payload_type.unwrap_or(0)))
            .collect();
        let expected = [
            (mime::VP8, 97),
            (mime::RTX, 98),
            (mime::OPUS, 96),
            (mime::VP9, 99),
            (mime::RTX, 100),
            (mime::AV1, 101),
            (mime::RTX, 102),
        ];
        let expected: Vec<(String, u8)> = expected
            .iter()
            .map(|(m, pt)| ((*m).to_owned(), *pt))
            .collect();
        assert_eq!(summary, expected);
        // The configured spelling is normalised and missing channels inherited.
        assert_eq!(caps.codecs[2].channels, Some(2));
        // VP9 with no parameters takes the supported profile-0 entry's.
        assert_eq!(
            caps.codecs[3].parameters.get(VP9_PROFILE_ID),
            Some(&ParamValue::Number(0))
        );
    }

    #[test]
    fn router_keeps_configured_parameters_and_feedback() {
        let mut h264 = cap(
            MediaKind::Video,
            mime::H264,
            Some(125),
            &h264_params("42001f", 1),
        );
        h264.rtcp_feedback = vec![RtcpFeedback::new("nack", "pli")];
        let caps = router_capabilities(&[h264]).expect("baseline is routable");
        assert_eq!(caps.codecs[0].preferred_payload_type, Some(125));
        assert_eq!(
            caps.codecs[0].parameters.get(h264::PROFILE_LEVEL_ID),
            Some(&ParamValue::Text("42001f".into()))
        );
        assert_eq!(
            caps.codecs[0].rtcp_feedback,
            vec![RtcpFeedback::new("nack", "pli")]
        );
        assert_eq!(apt_of(&caps.codecs[1].parameters), Some(125));
    }

    #[test]
    fn router_rejects_unsupported_codecs() {
        let err = router_capabilities(&[RtpCodecCapability {
            kind: MediaKind::Audio,
            mime_type: "audio/PCMU".into(),
            preferred_payload_type: Some(0),
            clock_rate: 8000,
            channels: Some(1),
            parameters: CodecParameters::new(),
            rtcp_feedback: Vec::new(),
        }])
        .expect_err("PCMU is not routed");
        assert_eq!(err.code, ErrorCode::UnsupportedCodec);
        assert!(err.message.contains("audio/PCMU"), "{}", err.message);

        // Known codec, unknown variant: H.264 mode 0, High 10, VP9 profile 1, Opus mono.
        for bad in [
            cap(
                MediaKind::Video,
                mime::H264,
                None,
                &h264_params("42e01f", 0),
            ),
            cap(
                MediaKind::Video,
                mime::H264,
                None,
                &h264_params("6e001f", 1),
            ),
            cap(
                MediaKind::Video,
                mime::VP9,
                None,
                &[(VP9_PROFILE_ID, 1.into())],
            ),
            RtpCodecCapability {
                channels: Some(1),
                ..cap(MediaKind::Audio, mime::OPUS, None, &[])
            },
        ] {
            let err =
                router_capabilities(std::slice::from_ref(&bad)).expect_err("unsupported variant");
            assert_eq!(err.code, ErrorCode::UnsupportedCodec, "{}", describe(&bad));
            assert!(
                err.message.contains("with this clock rate"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn router_rejects_duplicates_rtx_and_wrong_kinds() {
        let err = router_capabilities(&[
            cap(
                MediaKind::Video,
                mime::H264,
                None,
                &h264_params("42e01f", 1),
            ),
            cap(
                MediaKind::Video,
                mime::H264,
                None,
                &h264_params("42001f", 1),
            ),
        ])
        .expect_err("same profile twice");
        assert_eq!(err.code, ErrorCode::InvalidParams);
        assert!(err.message.contains("twice"), "{}", err.message);

        let err = router_capabilities(&[
            cap(MediaKind::Video, mime::VP8, None, &[]),
            cap(MediaKind::Video, "video/vp8", None, &[]),
        ])
        .expect_err("VP8 twice");
        assert_eq!(err.code, ErrorCode::InvalidParams);

        // Different VP9 profiles are not duplicates.
        assert!(
            router_capabilities(&[
                cap(
                    MediaKind::Video,
                    mime::VP9,
                    None,
                    &[(VP9_PROFILE_ID, 0.into())]
                ),
                cap(
                    MediaKind::Video,
                    mime::VP9,
                    None,
                    &[(VP9_PROFILE_ID, 2.into())]
                ),
            ])
            .is_ok()
        );

        let err =
            router_capabilities(&[cap(MediaKind::Video, mime::RTX, None, &[])]).expect_err("rtx");
        assert_eq!(err.code, ErrorCode::InvalidParams);
        let err =
            router_capabilities(&[cap(MediaKind::Audio, mime::VP8, None, &[])]).expect_err("kind");
        assert_eq!(err.code, ErrorCode::InvalidParams);
    }

    #[test]
    fn payload_types_run_out_with_an_error() {
        let mut pts = PayloadTypes::default();
        for _ in FIRST_DYNAMIC_PT..=LAST_DYNAMIC_PT {
            pts.next_free().expect("32 dynamic types");
        }
        let err = pts.next_free().expect_err("exhausted");
        assert_eq!(err.code, ErrorCode::InvalidParams);
    }

    // ---- producers -----------------------------------------------------------------

    #[test]
    fn chromium_producer_maps_onto_router_pts() {
        let router = router();
        let producer = chromium_video_producer();
        let mapping = producer_mapping(&router, &producer).expect("maps");

        let vp8 = router_pt(&router, mime::VP8, &[]);
        let h264 = router_pt(&router, mime::H264, &h264_params("42e01f", 1));
        let expected = vec![
            CodecMapping {
                producer_pt: 96,
                router_pt: vp8,
            },
            CodecMapping {
                producer_pt: 102,
                router_pt: h264,
            },
            CodecMapping {
                producer_pt: 97,
                router_pt: router_rtx_pt(&router, vp8),
            },
            CodecMapping {
                producer_pt: 103,
                router_pt: router_rtx_pt(&router, h264),
            },
        ];
        assert_eq!(mapping.codecs, expected);
        assert_eq!(mapping.encodings.len(), 1);
        assert_eq!(mapping.encodings[0].ssrc, Some(1111));
        assert_ne!(mapping.encodings[0].mapped_ssrc, 0);

        let audio = RtpParameters {
            codecs: vec![codec(
                mime::OPUS,
                111,
                48_000,
                &[("minptime", 10.into()), ("useinbandfec", 1.into())],
            )],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(5),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mapping = producer_mapping(&router, &audio).expect("opus maps");
        assert_eq!(
            mapping.codecs,
            vec![CodecMapping {
                producer_pt: 111,
                router_pt: router_pt(&router, mime::OPUS, &[])
            }]
        );
    }

    #[test]
    fn simulcast_encodings_get_distinct_mapped_ssrcs() {
        let mut producer = chromium_video_producer();
        producer.encodings = ["q", "h", "f"]
            .iter()
            .map(|rid| RtpEncodingParameters {
                rid: Some((*rid).into()),
                ..Default::default()
            })
            .collect();
        let mapping = producer_mapping(&router(), &producer).expect("maps");
        let rids: Vec<Option<String>> = mapping.encodings.iter().map(|e| e.rid.clone()).collect();
        assert_eq!(
            rids,
            vec![Some("q".into()), Some("h".into()), Some("f".into())]
        );
        let ssrcs: BTreeSet<u32> = mapping.encodings.iter().map(|e| e.mapped_ssrc).collect();
        assert_eq!(ssrcs.len(), 3);
    }

    #[test]
    fn producer_with_an_unrouted_codec_is_refused() {
        let mut producer = chromium_video_producer();
        producer
            .codecs
            .push(codec(mime::H264, 112, 90_000, &h264_params("640032", 1)));
        let err = producer_mapping(&router(), &producer).expect_err("High is not in the defaults");
        assert_eq!(err.code, ErrorCode::UnsupportedCodec);
        assert!(
            err.message.contains("video/H264") && err.message.contains("112"),
            "{}",
            err.message
        );
    }

    #[test]
    fn producer_validation() {
        let router = router();
        let mut no_encodings = chromium_video_producer();
        no_encodings.encodings.clear();
        assert_eq!(
            producer_mapping(&router, &no_encodings).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        let mut orphan_rtx = chromium_video_producer();
        orphan_rtx.codecs.push(rtx(110, 109));
        assert_eq!(
            producer_mapping(&router, &orphan_rtx).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        let mut only_rtx = chromium_video_producer();
        only_rtx.codecs.retain(|c| c.is_rtx());
        assert_eq!(
            producer_mapping(&router, &only_rtx).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        let mut dup_pt = chromium_video_producer();
        dup_pt.codecs.push(codec(mime::VP8, 96, 90_000, &[]));
        assert_eq!(
            producer_mapping(&router, &dup_pt).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        let mut anonymous_layers = chromium_video_producer();
        anonymous_layers.encodings = vec![
            RtpEncodingParameters::default(),
            RtpEncodingParameters::default(),
        ];
        assert_eq!(
            producer_mapping(&router, &anonymous_layers).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        let mut dup_rid = chromium_video_producer();
        dup_rid.encodings = vec![
            RtpEncodingParameters {
                rid: Some("h".into()),
                ..Default::default()
            },
            RtpEncodingParameters {
                rid: Some("h".into()),
                ..Default::default()
            },
        ];
        assert_eq!(
            producer_mapping(&router, &dup_rid).map_err(|e| e.code),
            Err(ErrorCode::InvalidParams)
        );

        // A lone encoding without ssrc or rid is fine (matched by mid).
        let mut by_mid = chromium_video_producer();
        by_mid.encodings = vec![RtpEncodingParameters::default()];
        assert!(producer_mapping(&router, &by_mid).is_ok());
    }

    // ---- consumable ----------------------------------------------------------------

    #[test]
    fn consumable_uses_router_numbering() {
        let producer = chromium_video_producer();
        let (router, mapping, consumable) = consumable_of(&producer);
        let vp8 = router_pt(&router, mime::VP8, &[]);
        let h264 = router_pt(&router, mime::H264, &h264_params("42e01f", 1));

        let pts: Vec<(String, u8)> = consumable
            .codecs
            .iter()
            .map(|c| (c.mime_type.clone(), c.payload_type))
            .collect();
        let expected: Vec<(String, u8)> = vec![
            (mime::VP8.into(), vp8),
            (mime::RTX.into(), router_rtx_pt(&router, vp8)),
            (mime::H264.into(), h264),
            (mime::RTX.into(), router_rtx_pt(&router, h264)),
        ];
        assert_eq!(pts, expected);
        assert_eq!(consumable.codecs[1].apt(), Some(vp8));
        assert_eq!(consumable.codecs[3].apt(), Some(h264));
        // The bitstream's own fmtp survives.
        assert_eq!(
            consumable.codecs[2].parameters,
            params(&h264_params("42e01f", 1))
        );

        let exts: Vec<(&str, u8)> = consumable
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        assert_eq!(
            exts,
            vec![
                (extension_uri::ABS_SEND_TIME, 2),
                (extension_uri::TRANSPORT_WIDE_CC, 3),
                (extension_uri::MID, 4),
                (extension_uri::RID, 10),
                (extension_uri::REPAIRED_RID, 11),
                (extension_uri::VIDEO_ORIENTATION, 13),
            ]
        );

        assert_eq!(
            consumable.encodings,
            vec![RtpEncodingParameters {
                ssrc: Some(mapping.encodings[0].mapped_ssrc),
                rid: None,
                rtx: None,
                max_bitrate: Some(1_500_000),
            }]
        );
        assert_eq!(consumable.rtcp.cname.as_deref(), Some("chromium-cname"));
        assert_eq!(consumable.mid, None);
    }

    #[test]
    fn consumable_re_ids_extensions_and_keeps_only_the_kinds_own() {
        // A Firefox-numbered audio producer, plus a video-only extension.
        let producer = RtpParameters {
            codecs: vec![codec(mime::OPUS, 109, 48_000, &[])],
            header_extensions: vec![
                ext(extension_uri::AUDIO_LEVEL, 1),
                ext(extension_uri::MID, 3),
                ext(extension_uri::TRANSPORT_WIDE_CC, 7),
                ext(extension_uri::VIDEO_ORIENTATION, 9),
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(9),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (router, _, consumable) = consumable_of(&producer);
        let exts: Vec<(&str, u8)> = consumable
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        assert_eq!(
            exts,
            vec![
                (extension_uri::AUDIO_LEVEL, 1),
                (extension_uri::MID, 4),
                (extension_uri::TRANSPORT_WIDE_CC, 3),
            ]
        );
        // Audio gets no RTX; Opus carries the router's feedback (transport-cc only).
        assert_eq!(consumable.codecs.len(), 1);
        assert_eq!(
            consumable.codecs[0].payload_type,
            router_pt(&router, mime::OPUS, &[])
        );
        assert_eq!(
            consumable.codecs[0].rtcp_feedback,
            vec![RtcpFeedback::new("transport-cc", "")]
        );
    }

    // ---- consumers -----------------------------------------------------------------

    #[test]
    fn firefox_constrained_baseline_subscriber_gets_a_baseline_stream() {
        let (_, _, consumable) = consumable_of(&h264_baseline_producer());
        let firefox = firefox_video_receiver();
        assert!(can_consume(&consumable, &firefox));

        let consumer = consumer_parameters(&consumable, &firefox, false).expect("compatible");
        assert_eq!(consumer.codecs.len(), 2);
        let media = &consumer.codecs[0];
        assert_eq!(media.mime_type, mime::H264);
        assert_eq!(media.payload_type, 126, "the subscriber's own payload type");
        // Labelled as the subscriber knows it, at the stream's level.
        assert_eq!(
            media.parameters.get(h264::PROFILE_LEVEL_ID),
            Some(&ParamValue::Text("42e01f".into()))
        );
        assert_eq!(h264::packetization_mode(&media.parameters), Some(1));
        let rtx = &consumer.codecs[1];
        assert_eq!(
            (rtx.mime_type.as_str(), rtx.payload_type, rtx.apt()),
            (mime::RTX, 127, Some(126))
        );

        let exts: Vec<(&str, u8)> = consumer
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        assert_eq!(exts, vec![(extension_uri::MID, 3)]);

        assert_eq!(consumer.encodings.len(), 1);
        let enc = &consumer.encodings[0];
        let (ssrc, rtx_ssrc) = (enc.ssrc.expect("ssrc"), enc.rtx.expect("rtx ssrc").ssrc);
        assert_ne!(ssrc, rtx_ssrc);
        assert_ne!(
            Some(ssrc),
            consumable.encodings[0].ssrc,
            "consumers get their own ssrc"
        );
        assert_eq!(enc.rid, None);
        assert_eq!(consumer.rtcp.cname.as_deref(), Some("aiortc"));
        assert_eq!(consumer.mid, None);
    }

    #[test]
    fn exact_h264_profile_is_preferred_when_the_remote_lists_both() {
        let producer = chromium_video_producer();
        let (_, _, mut consumable) = consumable_of(&producer);
        consumable.codecs.drain(..2); // keep only H264 42e01f + rtx
        // Chromium's order: 42001f at 102 before 42e01f at 106.
        let remote = RtpCapabilities {
            codecs: vec![
                cap(
                    MediaKind::Video,
                    mime::H264,
                    Some(102),
                    &h264_params("42001f", 1),
                ),
                cap(
                    MediaKind::Video,
                    mime::H264,
                    Some(106),
                    &h264_params("42e01f", 1),
                ),
            ],
            header_extensions: Vec::new(),
        };
        let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
        assert_eq!(consumer.codecs[0].payload_type, 106);
        assert_eq!(
            consumer.codecs[0].parameters.get(h264::PROFILE_LEVEL_ID),
            Some(&ParamValue::Text("42e01f".into()))
        );
    }

    #[test]
    fn subscriber_with_its_own_numbering_gets_it() {
        let (router, _, consumable) = consumable_of(&chromium_video_producer());
        let firefox = firefox_video_receiver();
        let consumer = consumer_parameters(&consumable, &firefox, false).expect("compatible");
        // VP8 comes first in the consumable, so it is chosen, at Firefox's 120 and rtx 124.
        let pts: Vec<(String, u8)> = consumer
            .codecs
            .iter()
            .map(|c| (c.mime_type.clone(), c.payload_type))
            .collect();
        assert_eq!(
            pts,
            vec![(mime::VP8.to_owned(), 120), (mime::RTX.to_owned(), 124)]
        );
        assert_eq!(consumer.codecs[1].apt(), Some(120));
        let exts: Vec<(&str, u8)> = consumer
            .header_extensions
            .iter()
            .map(|e| (e.uri.as_str(), e.id))
            .collect();
        // Firefox's ids; rid never reaches a consumer; orientation unsupported by Firefox here.
        assert_eq!(
            exts,
            vec![
                (extension_uri::ABS_SEND_TIME, 4),
                (extension_uri::TRANSPORT_WIDE_CC, 7),
                (extension_uri::MID, 3),
            ]
        );

        // A remote without preferred payload types gets the router's.
        let mut anonymous = firefox.clone();
        for c in &mut anonymous.codecs {
            c.preferred_payload_type = None;
        }
        let consumer = consumer_parameters(&consumable, &anonymous, false).expect("compatible");
        let vp8 = router_pt(&router, mime::VP8, &[]);
        assert_eq!(consumer.codecs[0].payload_type, vp8);
        assert_eq!(consumer.codecs[1].payload_type, router_rtx_pt(&router, vp8));
        assert_eq!(consumer.codecs[1].apt(), Some(vp8));
    }

    #[test]
    fn rtx_payload_type_never_collides_with_the_media_one() {
        let (router, _, consumable) = consumable_of(&chromium_video_producer());
        let vp8 = router_pt(&router, mime::VP8, &[]);
        let router_rtx = router_rtx_pt(&router, vp8);
        // The remote puts VP8 on the router's RTX type and names no RTX type for it.
        let remote = RtpCapabilities {
            codecs: vec![
                cap(MediaKind::Video, mime::VP8, Some(router_rtx), &[]),
                cap(MediaKind::Video, mime::RTX, Some(120), &[(APT, 121.into())]),
            ],
            header_extensions: Vec::new(),
        };
        let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
        assert_eq!(consumer.codecs[0].payload_type, router_rtx);
        assert_ne!(consumer.codecs[1].payload_type, router_rtx);
        assert_eq!(consumer.codecs[1].apt(), Some(router_rtx));
    }

    #[test]
    fn remote_without_rtx_gets_no_rtx() {
        let (_, _, consumable) = consumable_of(&chromium_video_producer());
        let mut remote = firefox_video_receiver();
        remote.codecs.retain(|c| !is_rtx_mime(&c.mime_type));
        let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
        assert_eq!(consumer.codecs.len(), 1);
        assert_eq!(consumer.encodings[0].rtx, None);
    }

    #[test]
    fn rtcp_feedback_is_the_intersection() {
        let (_, _, consumable) = consumable_of(&chromium_video_producer());
        let mut remote = firefox_video_receiver();
        remote.codecs[0].rtcp_feedback = vec![
            RtcpFeedback::new("nack", "pli"),
            RtcpFeedback::new("nack", ""),
            RtcpFeedback::new("goog-lntf", ""),
        ];
        let consumer = consumer_parameters(&consumable, &remote, false).expect("compatible");
        assert_eq!(
            consumer.codecs[0].rtcp_feedback,
            vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli")
            ]
        );
    }

    #[test]
    fn no_common_codec_is_an_error() {
        let (_, _, consumable) = consumable_of(&h264_baseline_producer());
        let vp8_only = RtpCapabilities {
            codecs: vec![cap(MediaKind::Video, mime::VP8, Some(96), &[])],
            header_extensions: Vec::new(),
        };
        assert!(!can_consume(&consumable, &vp8_only));
        let err =
            consumer_parameters(&consumable, &vp8_only, false).expect_err("nothing in common");
        assert_eq!(err.code, ErrorCode::UnsupportedCodec);
        assert!(err.message.contains("video/H264"), "{}", err.message);
        assert_eq!(
            consumer_parameters(&consumable, &vp8_only, true).map_err(|e| e.code),
            Err(ErrorCode::UnsupportedCodec)
        );

        // Same MIME type, other profile: still nothing in common.
        let main_only = RtpCapabilities {
            codecs: vec![cap(
                MediaKind::Video,
                mime::H264,
                Some(96),
                &h264_params("4d001f", 1),
            )],
            header_extensions: Vec::new(),
        };
        assert!(!can_consume(&consumable, &main_only));
    }

    #[test]
    fn pipe_consumers_relay_the_consumable_unchanged() {
        let mut producer = chromium_video_producer();
        producer.encodings = ["q", "h"]
            .iter()
            .map(|rid| RtpEncodingParameters {
                rid: Some((*rid).into()),
                ..Default::default()
            })
            .collect();
        let (router, _, consumable) = consumable_of(&producer);
        let consumer = consumer_parameters(&consumable, &router, true).expect("same router caps");
        assert_eq!(consumer.codecs, consumable.codecs);
        assert_eq!(consumer.encodings, consumable.encodings);
        assert_eq!(consumer.header_extensions, consumable.header_extensions);
        assert_eq!(consumer.rtcp, consumable.rtcp);
    }
}
