//! What one subscriber receives of a producer, in its own numbering.

use super::*;

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
