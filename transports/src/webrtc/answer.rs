//! The server's SDP answer to a publisher's offer on the native engine.
//!
//! Written from the offer's m-lines and the router's capabilities, in the publisher's own
//! numbering: RFC 3264 §6.1 has the answer reuse the offer's payload types, and an extension id
//! names one URI across a BUNDLE group (RFC 8285 §6), so every id and payload type here is the
//! offer's. The router maps them onto its own when the producer is created.
//!
//! What the server takes:
//! - every offered media codec that matches a router codec strictly (same H.264 profile and
//!   packetization mode, same VP9 and AV1 profile), in the offer's order, and the RTX codecs
//!   repairing one of them;
//! - of each codec's feedback, what the router routes and this engine generates or answers:
//!   NACK, PLI, FIR, and transport-cc while the transport-wide sequence number extension is
//!   taken; REMB is left out because the engine writes transport-wide feedback, not REMB;
//! - the offered header extensions the router supports for the m-line's kind.
//!
//! Sending m-lines are answered `recvonly`, anything else `inactive`; m-lines without a
//! common codec, and m-lines the offer stopped, are rejected (port 0). A data-channel m-line
//! is answered like the server's own offers write it (see [`super::offer::write_offer`]): the
//! BUNDLE group's transport stays up whatever the publisher put first, and no channel opens.
//! Simulcast is not answered yet, so a simulcast offer falls back to one stream, which the
//! router recognises by its mid.

use super::description::{Line, LocalDescription, Receiving, Track, write_description};
use switchboard_core::negotiation::{MatchMode, codecs_match};
use switchboard_core::rtp_parameters::{RtpCapabilities, RtpCodecParameters, extension_uri};
use switchboard_core::{ConsumerId, Error, ErrorCode, Result};
use switchboard_sdp::{MediaSection, Setup};

/// The DTLS role the offer leaves the server, as the answer's `a=setup` says it.
pub fn answer_setup(offer: Option<Setup>) -> Setup {
    match offer {
        // The publisher wants to accept: the server connects.
        Some(Setup::Passive) => Setup::Active,
        // `actpass` (every browser), `active`, or nothing said: the server accepts, so the
        // handshake starts as soon as the client's checks succeed.
        _ => Setup::Passive,
    }
}

/// The codecs the server takes on an offered m-line: media codecs the router routes, then
/// RTX codecs repairing one of them, with the feedback the engine supports.
pub fn accepted_codecs(offer: &MediaSection, router: &RtpCapabilities) -> Vec<RtpCodecParameters> {
    let Some(kind) = offer.kind else {
        return Vec::new();
    };
    let twcc = accepted_extensions(offer, router)
        .iter()
        .any(|(_, uri)| *uri == extension_uri::TRANSPORT_WIDE_CC);
    let mut media: Vec<RtpCodecParameters> = Vec::new();
    for c in offer.codecs.iter().filter(|c| !c.is_rtx()) {
        let Some(cap) = router
            .codecs
            .iter()
            .find(|cap| cap.kind == kind && codecs_match(c, *cap, MatchMode::Strict))
        else {
            continue;
        };
        let mut codec = c.clone();
        codec.rtcp_feedback.retain(|f| {
            let supported = cap
                .rtcp_feedback
                .iter()
                .any(|s| s.kind == f.kind && s.parameter == f.parameter);
            let generated = match f.kind.as_str() {
                "goog-remb" => false,
                "transport-cc" => twcc,
                _ => true,
            };
            supported && generated
        });
        media.push(codec);
    }
    let router_has_rtx = router
        .codecs
        .iter()
        .any(|c| c.mime_type.eq_ignore_ascii_case("video/rtx"));
    let rtx: Vec<RtpCodecParameters> = offer
        .codecs
        .iter()
        .filter(|c| c.is_rtx() && router_has_rtx)
        .filter(|c| {
            c.apt()
                .is_some_and(|apt| media.iter().any(|m| m.payload_type == apt))
        })
        .map(|c| RtpCodecParameters {
            rtcp_feedback: Vec::new(),
            ..c.clone()
        })
        .collect();
    media.into_iter().chain(rtx).collect()
}

/// The offered header extensions (id, URI) the router supports for the m-line's kind.
pub fn accepted_extensions<'a>(
    offer: &'a MediaSection,
    router: &RtpCapabilities,
) -> Vec<(u8, &'a str)> {
    let Some(kind) = offer.kind else {
        return Vec::new();
    };
    offer
        .header_extensions
        .iter()
        .filter(|e| {
            router
                .header_extensions
                .iter()
                .any(|s| s.kind == kind && s.uri == e.uri)
        })
        .map(|e| (e.id, e.uri.as_str()))
        .collect()
}

/// The connection's m-lines after a client's offer, and the consumers whose m-lines the
/// client stopped: m-lines it already has keep their place (JSEP never reorders or drops
/// them), new ones are appended; what the client sends is taken as [`accepted_codecs`] allows.
///
/// # Errors
///
/// [`ErrorCode::InvalidSdp`] when the offer drops or reorders m-lines of the connection.
pub fn tracks_after_offer(
    tracks: &[Track],
    sections: &[MediaSection],
    router: &RtpCapabilities,
) -> Result<(Vec<Track>, Vec<ConsumerId>)> {
    if sections.len() < tracks.len() {
        return Err(Error::new(
            ErrorCode::InvalidSdp,
            format!(
                "the offer has {} m-lines; the connection already has {} (m-lines are never removed)",
                sections.len(),
                tracks.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(sections.len());
    let mut stopped_consumers = Vec::new();
    for (i, m) in sections.iter().enumerate() {
        let mid = m.mid.clone().unwrap_or_default();
        let mut track = match tracks.get(i) {
            Some(t) if t.mid != mid => {
                return Err(Error::new(
                    ErrorCode::InvalidSdp,
                    format!(
                        "line {}: {}: the connection's m-line at this place has mid {:?}",
                        m.line,
                        m.label(),
                        t.mid
                    ),
                ));
            }
            Some(t) => t.clone(),
            None => Track {
                mid,
                kind: m.kind,
                media: m.media.clone(),
                protocol: m.protocol.clone(),
                sending: None,
                receiving: None,
                last_codecs: Vec::new(),
                stopped: false,
                server_line: false,
            },
        };
        let new = i >= tracks.len();
        let unsupported =
            m.kind.is_none() && !(m.media == "application" && m.protocol.contains("SCTP"));
        if m.rejected || track.stopped || unsupported {
            if let Some(sending) = track.sending.take() {
                stopped_consumers.push(sending.consumer);
            }
            track.receiving = None;
            track.stopped = true;
            out.push(track);
            continue;
        }
        track.receiving = None;
        if m.kind.is_some() && m.direction.sends() {
            let codecs = accepted_codecs(m, router);
            if codecs.iter().any(|c| !c.is_rtx()) {
                track.last_codecs = codecs.clone();
                track.receiving = Some(Receiving {
                    codecs,
                    extensions: accepted_extensions(m, router)
                        .into_iter()
                        .map(|(id, uri)| (id, uri.to_owned()))
                        .collect(),
                    ssrcs: m.ssrcs.iter().map(|s| (s.ssrc, s.rtx_ssrc)).collect(),
                });
            } else if new {
                // Nothing the router routes: rejected, and stopped for good.
                track.stopped = true;
            }
        } else if new && m.kind.is_some() {
            // A new m-line the client only wants to receive on: nothing is sent on it until
            // the server offers a stream there, which it never does on a client's m-line.
            track.last_codecs = accepted_codecs(m, router);
            if track.last_codecs.is_empty() {
                track.stopped = true;
            }
        }
        out.push(track);
    }
    Ok((out, stopped_consumers))
}

/// Writes the server's answer to an offer whose m-lines are `sections`, for the m-lines
/// [`tracks_after_offer`] made of it, taking the DTLS role `setup` (`active` or `passive`; see
/// [`answer_setup`]; a re-offer keeps the role the first negotiation settled, RFC 5763 §5).
pub fn write_answer(
    local: &LocalDescription<'_>,
    sections: &[MediaSection],
    tracks: &[Track],
    setup: Setup,
) -> String {
    let lines: Vec<Line<'_>> = tracks
        .iter()
        .zip(sections)
        .map(|(track, m)| {
            if track.stopped {
                return Line::Stopped { track };
            }
            if track.kind.is_none() {
                return Line::Application { track };
            }
            match (&track.sending, &track.receiving) {
                (_, Some(receiving)) => Line::Receive { track, receiving },
                (Some(sending), None) if m.direction.receives() => {
                    let codecs: Vec<_> = sending
                        .params
                        .codecs
                        .iter()
                        .filter(|c| m.codecs.iter().any(|o| o.payload_type == c.payload_type))
                        .collect();
                    if codecs.iter().any(|c| !c.is_rtx()) {
                        Line::Send {
                            track,
                            sending,
                            codecs,
                        }
                    } else {
                        Line::Inactive { track }
                    }
                }
                _ => Line::Inactive { track },
            }
        })
        .collect();
    let setup = match setup {
        Setup::Active => "active",
        _ => "passive",
    };
    write_description(local, setup, &lines, |track| {
        sections
            .iter()
            .find(|m| m.mid.as_deref() == Some(track.mid.as_str()))
            .is_some_and(|m| m.rtcp_rsize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use switchboard_core::negotiation::{default_router_codecs, router_capabilities};
    use switchboard_core::rtp_parameters::MediaKind;
    use switchboard_sdp::{Direction, Sdp};

    fn offer(name: &str) -> String {
        let path = format!("{}/../fuzz/corpus/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn answer(offer_text: &str) -> (Sdp, Sdp, String) {
        let router = router_capabilities(&default_router_codecs()).expect("router capabilities");
        let offer = switchboard_sdp::parse(offer_text).expect("offer parses");
        let sections = switchboard_sdp::media_sections(&offer);
        let (tracks, _) = tracks_after_offer(&[], &sections, &router).expect("tracks");
        let text = write_answer(
            &LocalDescription {
                session_id: 7,
                version: 1,
                ufrag: "srvufrag",
                pwd: "serverpasswordserverpassword",
                fingerprint: "AB:CD",
                address: "127.0.0.1:40000".parse().expect("address"),
            },
            &sections,
            &tracks,
            answer_setup(sections.first().and_then(|m| m.setup)),
        );
        let parsed = switchboard_sdp::parse(&text)
            .unwrap_or_else(|e| panic!("the answer does not parse: {e}\n{text}"));
        (offer, parsed, text)
    }

    #[test]
    fn every_stacks_offer_is_answered_with_a_producer_per_sending_track() {
        for (name, audio, video) in [
            ("chromium_offer.sdp", "audio/opus", "video/VP8"),
            ("firefox_offer.sdp", "audio/opus", "video/VP8"),
            ("aiortc_offer.sdp", "audio/opus", "video/VP8"),
            ("webrtcbin_offer.sdp", "audio/opus", "video/VP8"),
        ] {
            let (offer, answer, text) = answer(&offer(name));
            assert!(answer.ice_lite(), "{name}: not ice-lite");
            assert!(text.contains("a=setup:passive"), "{name}: {text}");
            assert!(!text.contains("goog-remb"), "{name}: REMB is not generated");
            let (new, closed) =
                super::super::publish_diff(&offer, &answer, &HashMap::new()).expect("diff");
            assert!(closed.is_empty());
            let kinds: Vec<(MediaKind, String)> = new
                .iter()
                .map(|p| {
                    let codec = p.rtp_parameters.media_codec().expect("a media codec");
                    (p.kind, codec.mime_type.clone())
                })
                .collect();
            assert!(
                kinds
                    .iter()
                    .any(|(k, m)| *k == MediaKind::Audio && m.eq_ignore_ascii_case(audio)),
                "{name}: no {audio} producer in {kinds:?}"
            );
            assert!(
                kinds
                    .iter()
                    .any(|(k, m)| *k == MediaKind::Video && m.eq_ignore_ascii_case(video)),
                "{name}: no {video} producer in {kinds:?}\n{text}"
            );
            let offered = switchboard_sdp::media_sections(&offer);
            for (o, a) in offered.iter().zip(switchboard_sdp::media_sections(&answer)) {
                if a.kind.is_some() && !a.rejected {
                    let expected = if o.direction.sends() {
                        Direction::RecvOnly
                    } else {
                        Direction::Inactive
                    };
                    assert_eq!(a.direction, expected, "{name}: {text}");
                }
            }
        }
    }

    #[test]
    fn codecs_the_router_does_not_route_are_left_out_and_rtx_follows_its_codec() {
        let (_, answer, text) = answer(&offer("chromium_offer.sdp"));
        let sections = switchboard_sdp::media_sections(&answer);
        let audio = &sections[0];
        assert!(
            audio
                .codecs
                .iter()
                .all(|c| c.mime_type.eq_ignore_ascii_case("audio/opus"))
        );
        let video = &sections[1];
        for c in video.codecs.iter().filter(|c| c.is_rtx()) {
            let apt = c.apt().expect("apt");
            assert!(
                video
                    .codecs
                    .iter()
                    .any(|m| m.payload_type == apt && !m.is_rtx()),
                "RTX {} repairs {apt}, which was not taken\n{text}",
                c.payload_type
            );
        }
        assert!(
            !text.contains("ulpfec") && !text.contains(" red/"),
            "{text}"
        );
        // The offer's extension ids, only those the router supports.
        assert!(text.contains(
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        ));
        assert!(!text.contains("playout-delay"), "{text}");
    }

    #[test]
    fn a_passive_offerer_makes_the_server_the_dtls_client_and_unknown_media_is_rejected() {
        assert_eq!(answer_setup(Some(Setup::Passive)), Setup::Active);
        assert_eq!(answer_setup(Some(Setup::ActPass)), Setup::Passive);
        let text = offer("chromium_offer.sdp").replace("m=video 51820", "m=text 51820");
        let Ok(parsed) = switchboard_sdp::parse(&text) else {
            return;
        };
        let sections = switchboard_sdp::media_sections(&parsed);
        let router = router_capabilities(&default_router_codecs()).expect("router capabilities");
        let (tracks, _) = tracks_after_offer(&[], &sections, &router).expect("tracks");
        assert!(!tracks[0].stopped);
        assert!(tracks[1].stopped, "an m-line of unknown media is rejected");
        // A re-offer must keep the connection's m-lines in place.
        let (first, _) = tracks_after_offer(&[], &sections[..1], &router).expect("tracks");
        let mut reordered = sections.clone();
        reordered.swap(0, 1);
        assert!(tracks_after_offer(&first, &reordered, &router).is_err());
        assert!(tracks_after_offer(&tracks, &sections[..1], &router).is_err());
    }
}
