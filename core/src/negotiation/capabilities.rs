//! What the server can route, and the capabilities of a router built from configured codecs.

use super::*;

pub(super) fn params(entries: &[(&str, ParamValue)]) -> CodecParameters {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The feedback every routed video codec supports: NACK for retransmission, PLI and FIR so
/// subscribers can ask for keyframes, REMB and transport-cc for bandwidth estimation.
pub(super) fn video_feedback() -> Vec<RtcpFeedback> {
    vec![
        RtcpFeedback::new("nack", ""),
        RtcpFeedback::new("nack", "pli"),
        RtcpFeedback::new("ccm", "fir"),
        RtcpFeedback::new("goog-remb", ""),
        RtcpFeedback::new("transport-cc", ""),
    ]
}

pub(super) fn opus() -> RtpCodecCapability {
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

pub(super) fn extension(
    kind: MediaKind,
    uri: &str,
    preferred_id: u8,
) -> RtpHeaderExtensionCapability {
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
pub(super) struct PayloadTypes {
    used: BTreeSet<u8>,
}

impl PayloadTypes {
    /// Marks `pt` as used; false if it already was.
    pub(super) fn claim(&mut self, pt: u8) -> bool {
        self.used.insert(pt)
    }

    pub(super) fn next_free(&mut self) -> Result<u8> {
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

pub(super) fn is_dynamic_pt(pt: u8) -> bool {
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
