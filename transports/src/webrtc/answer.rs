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

use super::offer::LocalDescription;
use std::fmt::Write as _;
use switchboard_core::negotiation::{MatchMode, codecs_match};
use switchboard_core::rtp_parameters::{RtpCapabilities, RtpCodecParameters, extension_uri};
use switchboard_sdp::{Direction, MediaSection, Sdp, Setup};

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

/// Writes the server's answer to `offer` (whose m-lines are `sections`), taking the DTLS
/// role `setup` (`active` or `passive`; see [`answer_setup`]; a re-offer keeps the role the
/// first answer took, RFC 5763 §5).
pub fn write_answer(
    local: &LocalDescription<'_>,
    offer: &Sdp,
    sections: &[MediaSection],
    router: &RtpCapabilities,
    setup: Setup,
) -> String {
    let mut s = String::with_capacity(1024 + sections.len() * 1024);
    let ip = local.address.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let port = local.address.port();
    let _ = write!(
        s,
        "v=0\r\no=- {} {} IN {family} {ip}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        local.session_id, local.version
    );
    let answers: Vec<Answered> = sections.iter().map(|m| answer_section(m, router)).collect();
    let bundle: Vec<&str> = offer
        .bundle_mids()
        .iter()
        .filter_map(|mid| {
            sections
                .iter()
                .zip(&answers)
                .find(|(m, a)| m.mid.as_deref() == Some(mid) && !matches!(a, Answered::Rejected))
                .and_then(|(m, _)| m.mid.as_deref())
        })
        .collect();
    if !bundle.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundle.join(" "));
    }
    s.push_str("a=msid-semantic: WMS\r\n");
    let setup = match setup {
        Setup::Active => "active",
        _ => "passive",
    };
    let transport = |s: &mut String, mid: &str| {
        let _ = write!(
            s,
            "c=IN {family} {ip}\r\na=mid:{mid}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            local.ufrag, local.pwd, local.fingerprint
        );
    };
    let candidate =
        format!("a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n");
    let descriptions = &offer.description().media_descriptions;
    for ((m, answered), media) in sections.iter().zip(&answers).zip(descriptions) {
        let mid = m.mid.as_deref().unwrap_or_default();
        match answered {
            Answered::Rejected => {
                let format = media
                    .media_name
                    .formats
                    .first()
                    .map(String::as_str)
                    .unwrap_or("0");
                let _ = write!(
                    s,
                    "m={} 0 {} {format}\r\nc=IN {family} {ip}\r\n",
                    m.media, m.protocol
                );
                if !mid.is_empty() {
                    let _ = write!(s, "a=mid:{mid}\r\n");
                }
                s.push_str("a=inactive\r\n");
            }
            Answered::Application => {
                let _ = write!(
                    s,
                    "m=application {port} {} webrtc-datachannel\r\n",
                    m.protocol
                );
                transport(&mut s, mid);
                s.push_str("a=sctp-port:5000\r\na=max-message-size:262144\r\n");
                s.push_str(&candidate);
            }
            Answered::Media { codecs, direction } => {
                let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
                let _ = write!(
                    s,
                    "m={} {port} {} {}\r\n",
                    m.media,
                    m.protocol,
                    pts.join(" ")
                );
                transport(&mut s, mid);
                let _ = write!(s, "a={direction}\r\na=rtcp-mux\r\n");
                if m.rtcp_rsize {
                    s.push_str("a=rtcp-rsize\r\n");
                }
                for (id, uri) in accepted_extensions(m, router) {
                    let _ = write!(s, "a=extmap:{id} {uri}\r\n");
                }
                for c in codecs {
                    write_codec(&mut s, c);
                }
                s.push_str(&candidate);
            }
        }
    }
    s
}

/// How one m-line is answered.
enum Answered {
    Rejected,
    Application,
    Media {
        codecs: Vec<RtpCodecParameters>,
        direction: Direction,
    },
}

fn answer_section(m: &MediaSection, router: &RtpCapabilities) -> Answered {
    if m.rejected {
        return Answered::Rejected;
    }
    if m.kind.is_none() {
        return if m.media == "application" && m.protocol.contains("SCTP") {
            Answered::Application
        } else {
            Answered::Rejected
        };
    }
    let codecs = accepted_codecs(m, router);
    if !codecs.iter().any(|c| !c.is_rtx()) {
        return Answered::Rejected;
    }
    let direction = if m.direction.sends() {
        Direction::RecvOnly
    } else {
        Direction::Inactive
    };
    Answered::Media { codecs, direction }
}

fn write_codec(s: &mut String, c: &RtpCodecParameters) {
    let (_, name) = c.mime_type.split_once('/').unwrap_or(("", &c.mime_type));
    let _ = write!(s, "a=rtpmap:{} {name}/{}", c.payload_type, c.clock_rate);
    if let Some(ch) = c.channels.filter(|ch| *ch > 1) {
        let _ = write!(s, "/{ch}");
    }
    s.push_str("\r\n");
    let fmtp = super::engine::fmtp_line(&c.parameters);
    if !fmtp.is_empty() {
        let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", c.payload_type);
    }
    for fb in &c.rtcp_feedback {
        let _ = write!(s, "a=rtcp-fb:{} {}", c.payload_type, fb.kind);
        if !fb.parameter.is_empty() {
            let _ = write!(s, " {}", fb.parameter);
        }
        s.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use switchboard_core::negotiation::{default_router_codecs, router_capabilities};
    use switchboard_core::rtp_parameters::MediaKind;

    fn offer(name: &str) -> String {
        let path = format!("{}/../fuzz/corpus/sdp/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn answer(offer_text: &str) -> (Sdp, Sdp, String) {
        let router = router_capabilities(&default_router_codecs()).expect("router capabilities");
        let offer = switchboard_sdp::parse(offer_text).expect("offer parses");
        let sections = switchboard_sdp::media_sections(&offer);
        let text = write_answer(
            &LocalDescription {
                session_id: 7,
                version: 1,
                ufrag: "srvufrag",
                pwd: "serverpasswordserverpassword",
                fingerprint: "AB:CD",
                address: "127.0.0.1:40000".parse().expect("address"),
            },
            &offer,
            &sections,
            &router,
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
        assert!(matches!(
            answer_section(&sections[1], &router),
            Answered::Rejected
        ));
    }
}
