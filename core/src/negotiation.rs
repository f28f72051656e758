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
mod tests;
