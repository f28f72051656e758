//! The server's SDP offer: the connection's m-lines in their order, with the consumers on
//! them (see [`super::description`]).

use super::description::{Line, write_description};
pub use super::description::{LocalDescription, Receiving, Sending, Track};

/// The mid of the data-channel m-line that a connection the server offers first starts with.
///
/// Every such connection's first offer starts with a data-channel m-line, as the
/// peer-connection engine's do: an empty room's first offer then has an m-line that every
/// stack answers and connects for (webrtc-rs starts no transport for an offer of only
/// inactive media), so ICE and DTLS are up before the first track. Nothing on the server
/// answers SCTP on it: no channel opens, and the clients' association attempts are a few
/// small datagrams that are dropped.
pub const APPLICATION_MID: &str = "0";

/// Writes the server's offer for these m-lines: consumers' streams `sendonly` with their
/// SSRCs and RTX group, what the client sends `recvonly`, the rest `inactive` or stopped.
pub fn write_offer(local: &LocalDescription<'_>, tracks: &[Track]) -> String {
    let lines: Vec<Line<'_>> = tracks.iter().map(line).collect();
    write_description(local, "actpass", &lines, |_| true)
}

fn line(track: &Track) -> Line<'_> {
    if track.stopped {
        return Line::Stopped { track };
    }
    if track.kind.is_none() {
        return Line::Application { track };
    }
    if let Some(sending) = &track.sending {
        return Line::Send {
            track,
            sending,
            codecs: sending.params.codecs.iter().collect(),
        };
    }
    if let Some(receiving) = &track.receiving {
        return Line::Receive { track, receiving };
    }
    Line::Inactive { track }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ConsumerId;
    use switchboard_core::rtp_parameters::{MediaKind, RtpParameters, extension_uri};
    use switchboard_core::rtp_parameters::{
        RtcpFeedback, RtcpParameters, RtpCodecParameters, RtpEncodingParameters,
        RtpHeaderExtensionParameters,
    };

    fn vp8_params(ssrc: u32) -> RtpParameters {
        RtpParameters {
            mid: Some("publisher-mid".into()),
            codecs: vec![
                RtpCodecParameters {
                    mime_type: "video/VP8".into(),
                    payload_type: 101,
                    clock_rate: 90_000,
                    channels: None,
                    parameters: Default::default(),
                    rtcp_feedback: vec![
                        RtcpFeedback::new("nack", ""),
                        RtcpFeedback::new("nack", "pli"),
                    ],
                },
                RtpCodecParameters {
                    mime_type: "video/rtx".into(),
                    payload_type: 102,
                    clock_rate: 90_000,
                    channels: None,
                    parameters: [(
                        "apt".to_owned(),
                        switchboard_core::rtp_parameters::ParamValue::Number(101),
                    )]
                    .into_iter()
                    .collect(),
                    rtcp_feedback: vec![],
                },
            ],
            header_extensions: vec![
                RtpHeaderExtensionParameters {
                    uri: extension_uri::MID.into(),
                    id: 4,
                    encrypt: false,
                },
                RtpHeaderExtensionParameters {
                    uri: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time".into(),
                    id: 3,
                    encrypt: false,
                },
            ],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ssrc),
                rtx: Some(switchboard_core::rtp_parameters::RtxParameters { ssrc: ssrc + 1 }),
                ..Default::default()
            }],
            rtcp: RtcpParameters {
                cname: Some("alice".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_offer_declares_router_numbering_and_parses_back() {
        let consumer = ConsumerId::new();
        let mut video = Track::server("2".into(), MediaKind::Video);
        video.sending = Some(Sending {
            consumer,
            params: vp8_params(0x1234_5678),
        });
        let tracks = vec![
            Track::application(APPLICATION_MID.into()),
            Track::server("1".into(), MediaKind::Audio),
            video,
        ];
        let local = LocalDescription {
            session_id: 42,
            version: 2,
            ufrag: "ufragufragufrag1",
            pwd: "passwordpasswordpasswordpassword",
            fingerprint: "AB:CD",
            address: "127.0.0.1:40000".parse().unwrap(),
        };
        let sdp = write_offer(&local, &tracks);
        let parsed = switchboard_sdp::parse(&sdp).expect("our own offer parses");
        let sections = switchboard_sdp::media_sections(&parsed);
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].media, "application");
        assert_eq!(sections[0].mid.as_deref(), Some(APPLICATION_MID));
        assert_eq!(sections[1].direction, switchboard_sdp::Direction::Inactive);
        let video = &sections[2];
        assert_eq!(video.direction, switchboard_sdp::Direction::SendOnly);
        assert_eq!(video.codecs[0].payload_type, 101);
        assert!(video.codecs[0].has_feedback("nack", "pli"));
        assert_eq!(video.ssrc, Some(0x1234_5678));
        assert_eq!(video.rtx_ssrc, Some(0x1234_5679), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:102 rtx/90000\r\na=fmtp:102 apt=101\r\n"),
            "{sdp}"
        );
        assert_eq!(video.header_extensions.len(), 1, "no MID extension: {sdp}");
        assert_eq!(video.header_extensions[0].id, 3);
        assert_eq!(video.ice_ufrag.as_deref(), Some("ufragufragufrag1"));
        assert_eq!(video.candidates.len(), 1);
        assert!(sdp.contains("a=ice-lite\r\n"));
        assert!(sdp.contains("a=group:BUNDLE 0 1 2\r\n"));
        assert!(sdp.contains("a=setup:actpass"));
    }
}
