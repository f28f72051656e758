//! What an offer must carry for WebRTC, which m-lines an answer accepted, and a published
//! m-line as producer parameters.

use super::*;

/// Checks what a WebRTC offer needs before a stack applies it, so that a broken offer is
/// refused with the line at fault and never half-applied: every m-line has a mid, every
/// payload type on an RTP m-line is described (`a=rtpmap`), and every m-line that is not
/// rejected or bundle-only has ICE credentials and a DTLS fingerprint (at media or session
/// level), the same on every m-line of the BUNDLE group, which shares one transport (RFC 8843
/// §7.1.3). A re-offer is held to the same rules as a first offer (RFC 8842, RFC 8839).
///
/// # Errors
///
/// [`ErrorCode::InvalidSdp`] naming the m-line and what it lacks.
pub fn check_webrtc_offer(sdp: &Sdp) -> Result<()> {
    let sections = media_sections(sdp);
    let bundle = sdp.bundle_mids();
    let mut bundle_transport: Option<&MediaSection> = None;
    for (m, media) in sections.iter().zip(&sdp.description.media_descriptions) {
        let at = |what: String| {
            Err(Error::new(
                ErrorCode::InvalidSdp,
                format!("line {}: {}: {what}", m.line, m.label()),
            ))
        };
        if m.mid.as_deref().is_none_or(str::is_empty) {
            return at("no a=mid (every m-line of a WebRTC offer needs one)".into());
        }
        if m.kind.is_some() {
            let described = media.codecs();
            for format in &media.media_name.formats {
                match format.parse::<u8>() {
                    Ok(0) => {}
                    Ok(pt) if described.contains_key(&pt) => {}
                    Ok(pt) => return at(format!("payload type {pt} has no a=rtpmap")),
                    Err(_) => return at(format!("{format:?} is not a payload type")),
                }
            }
        }
        if m.rejected || m.bundle_only {
            continue;
        }
        if m.ice_ufrag.as_deref().is_none_or(str::is_empty) {
            return at("no a=ice-ufrag".into());
        }
        if m.ice_pwd.as_deref().is_none_or(str::is_empty) {
            return at("no a=ice-pwd".into());
        }
        if m.fingerprints.is_empty() {
            return at("no a=fingerprint (DTLS-SRTP needs one, at session or media level)".into());
        }
        if m.mid.as_ref().is_some_and(|mid| bundle.contains(mid)) {
            match bundle_transport {
                None => bundle_transport = Some(m),
                Some(first) if first.ice_ufrag != m.ice_ufrag || first.ice_pwd != m.ice_pwd => {
                    return at(format!(
                        "its ICE credentials differ from those of {} in the same BUNDLE group",
                        first.label()
                    ));
                }
                Some(first) if first.fingerprints != m.fingerprints => {
                    return at(format!(
                        "its a=fingerprint differs from that of {} in the same BUNDLE group",
                        first.label()
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// For each m-line of a subscriber's answer that has a mid: the mid, and whether the
/// subscriber accepted it (it is not rejected; a bundle-only port 0 counts as accepted).
///
/// The direction the subscriber chose is in [`media_sections`] for callers that care.
pub fn accepted_mids(answer: &Sdp) -> Vec<(String, bool)> {
    media_sections(answer)
        .into_iter()
        .filter_map(|section| {
            let accepted = !section.rejected;
            section.mid.map(|mid| (mid, accepted))
        })
        .collect()
}

/// The parameters of the Producer fed by a publisher's sending m-line.
///
/// `offer` is the publisher's m-line, `answer` the server's answer to it (same index).
/// The result describes what the publisher will send:
///
/// - codecs: the answer's, because the answer lists what the server accepted, with the
///   offer's payload types (RFC 3264 requires the answer to reuse them) and the answer's
///   RTCP feedback; media codecs first, then RTX codecs whose `apt` survived;
/// - header extensions: the answer's, minus those the offer does not declare with the same
///   id and those a direction suffix rules out (the publisher does not send them, or the
///   server does not receive them);
/// - encodings: one per offered `a=rid ... send` that the answer accepts with
///   `a=rid ... recv`, without SSRCs (simulcast streams are recognised by their rid header
///   extension); otherwise one encoding with the offer's first SSRC, and its RTX SSRC when
///   the answer kept an RTX codec;
/// - mid and CNAME from the offer; reduced-size RTCP when both sides wrote `a=rtcp-rsize`.
///
/// # Errors
///
/// - [`ErrorCode::UnsupportedCodec`] when the answer rejected the m-line, does not receive
///   on it, or accepted no media codec; the message names the m-line, e.g.
///   `m-line 1 (mid 1, video)`.
/// - [`ErrorCode::InvalidParams`] when the offer's m-line is not audio or video, is stopped,
///   or does not send.
/// - [`ErrorCode::InvalidSdp`] when the two m-lines do not correspond or the answer uses a
///   payload type the offer did not offer.
pub fn producer_parameters(offer: &MediaSection, answer: &MediaSection) -> Result<RtpParameters> {
    let label = offer.label();
    if offer.kind.is_none() {
        return Err(Error::invalid(format!(
            "{label} is not an audio or video m-line"
        )));
    }
    if answer.index != offer.index || answer.mid != offer.mid || answer.media != offer.media {
        return Err(Error::new(
            ErrorCode::InvalidSdp,
            format!(
                "{label}: the answer's {} does not correspond to it",
                answer.label()
            ),
        ));
    }
    if offer.rejected {
        return Err(Error::invalid(format!(
            "{label} is stopped (port 0) in the offer"
        )));
    }
    if !offer.direction.sends() {
        return Err(Error::invalid(format!(
            "{label} is {} in the offer: the publisher sends nothing on it",
            offer.direction
        )));
    }
    if answer.rejected {
        return Err(Error::unsupported_codec(format!(
            "{label} was rejected in the answer"
        )));
    }
    if !answer.direction.receives() {
        return Err(Error::unsupported_codec(format!(
            "{label} is {} in the answer: the server receives nothing on it",
            answer.direction
        )));
    }

    for codec in &answer.codecs {
        let offered = offer.codecs.iter().any(|o| {
            o.payload_type == codec.payload_type
                && mime_eq(&o.mime_type, &codec.mime_type)
                && o.clock_rate == codec.clock_rate
        });
        if !offered {
            return Err(Error::new(
                ErrorCode::InvalidSdp,
                format!(
                    "{label}: the answer's payload type {} ({}/{}) was not offered",
                    codec.payload_type, codec.mime_type, codec.clock_rate
                ),
            ));
        }
    }
    let media: Vec<&RtpCodecParameters> = answer.codecs.iter().filter(|c| !c.is_rtx()).collect();
    if media.is_empty() {
        return Err(Error::unsupported_codec(format!(
            "{label}: the answer accepted no media codec"
        )));
    }
    // An RTX codec is only useful while the codec it repairs is kept.
    let rtx: Vec<&RtpCodecParameters> = answer
        .codecs
        .iter()
        .filter(|c| c.is_rtx())
        .filter(|c| {
            c.apt()
                .is_some_and(|apt| media.iter().any(|m| m.payload_type == apt))
        })
        .collect();
    let has_rtx = !rtx.is_empty();
    let codecs = media.into_iter().chain(rtx).cloned().collect();

    let header_extensions = answer
        .header_extensions
        .iter()
        .filter(|e| {
            offer
                .header_extensions
                .iter()
                .any(|o| o.id == e.id && o.uri == e.uri)
                && extension_sends(offer.extension_direction(e.id))
                && extension_receives(answer.extension_direction(e.id))
        })
        .cloned()
        .collect();

    let rids: Vec<&String> = offer
        .rids
        .iter()
        .filter(|rid| answer.recv_rids.contains(rid))
        .collect();
    let encodings = if rids.is_empty() {
        // No simulcast was agreed: the publisher sends a single stream, which is the first
        // it declared (for Firefox, the first FID pair; Chromium declares no SSRC then, and
        // the stream is recognised by its mid).
        vec![RtpEncodingParameters {
            ssrc: offer.ssrc,
            rid: None,
            rtx: offer
                .rtx_ssrc
                .filter(|_| has_rtx)
                .map(|ssrc| RtxParameters { ssrc }),
            max_bitrate: None,
        }]
    } else {
        rids.into_iter()
            .map(|rid| RtpEncodingParameters {
                rid: Some(rid.clone()),
                ..RtpEncodingParameters::default()
            })
            .collect()
    };

    Ok(RtpParameters {
        mid: offer.mid.clone(),
        codecs,
        header_extensions,
        encodings,
        rtcp: RtcpParameters {
            cname: offer.cname.clone(),
            reduced_size: offer.rtcp_rsize && answer.rtcp_rsize,
        },
    })
}

pub(crate) fn extension_sends(direction: ExtensionDirection) -> bool {
    matches!(
        direction,
        ExtensionDirection::SendRecv | ExtensionDirection::SendOnly
    )
}

pub(crate) fn extension_receives(direction: ExtensionDirection) -> bool {
    matches!(
        direction,
        ExtensionDirection::SendRecv | ExtensionDirection::RecvOnly
    )
}
