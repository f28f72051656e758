//! The server's SDP offer for a receive connection of the native engine: written from the
//! connection's m-lines and the consumers on them, in the router's numbering.

use std::fmt::Write as _;
use std::net::SocketAddr;
use switchboard_core::ConsumerId;
use switchboard_core::rtp_parameters::{MediaKind, RtpParameters, extension_uri};

/// One m-line of the connection, in order. An m-line is never removed (its position is its
/// identity for the client); a closed consumer's m-line goes inactive and is reused by the
/// next track of its kind.
#[derive(Clone, Debug)]
pub struct Track {
    /// `a=mid`.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// What is sent on it now, if anything.
    pub sending: Option<Sending>,
}

/// A consumer's stream on an m-line.
#[derive(Clone, Debug)]
pub struct Sending {
    /// The consumer.
    pub consumer: ConsumerId,
    /// Its RTP parameters, in the router's payload types and extension ids.
    pub params: RtpParameters,
}

/// What the server's description says about its side of the connection.
pub struct LocalDescription<'a> {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version, one more for every offer.
    pub version: u64,
    /// ICE credentials.
    pub ufrag: &'a str,
    /// ICE password.
    pub pwd: &'a str,
    /// SHA-256 fingerprint of the DTLS certificate.
    pub fingerprint: &'a str,
    /// The worker socket's announced address: the one host candidate.
    pub address: SocketAddr,
}

/// The mid of the data-channel m-line every offer starts with.
pub const APPLICATION_MID: &str = "0";

/// Writes the server's offer for these m-lines.
///
/// Every offer starts with a data-channel m-line, as the peer-connection engine's do: an
/// empty room's first offer then has an m-line that every stack answers and connects for
/// (webrtc-rs starts no transport for an offer of only inactive media), so ICE and DTLS are
/// up before the first track. Nothing on the server answers SCTP on it: no channel opens,
/// and the clients' association attempts are a few small datagrams that are dropped. The
/// tracks' m-lines follow. Extensions are offered with the router's ids except the MID extension: the
/// forwarded packets carry the publisher's mid, which names nothing on this leg, and the
/// SSRCs written here are what the client demultiplexes by.
pub fn write_offer(local: &LocalDescription<'_>, tracks: &[Track]) -> String {
    let mut s = String::with_capacity(1024 + tracks.len() * 1024);
    let ip = local.address.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        s,
        "v=0\r\no=- {} {} IN {family} {ip}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        local.session_id, local.version
    );
    let mids: Vec<&str> = std::iter::once(APPLICATION_MID)
        .chain(tracks.iter().map(|t| t.mid.as_str()))
        .collect();
    let _ = write!(
        s,
        "a=group:BUNDLE {}\r\na=msid-semantic: WMS *\r\n",
        mids.join(" ")
    );
    let _ = write!(
        s,
        "m=application {port} UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN {family} {ip}\r\na=mid:{APPLICATION_MID}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\na=sctp-port:5000\r\na=max-message-size:262144\r\na=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n",
        local.ufrag,
        local.pwd,
        local.fingerprint,
        port = local.address.port()
    );
    for t in tracks {
        let codecs: Vec<&switchboard_core::rtp_parameters::RtpCodecParameters> = match &t.sending {
            Some(sending) => sending.params.codecs.iter().collect(),
            None => Vec::new(),
        };
        let media = match t.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        let pts: Vec<String> = if codecs.is_empty() {
            // An idle m-line still lists a codec: a payload-type-less m-line is invalid.
            vec![idle_payload_type(t.kind).to_string()]
        } else {
            codecs.iter().map(|c| c.payload_type.to_string()).collect()
        };
        let _ = write!(
            s,
            "m={media} {} UDP/TLS/RTP/SAVPF {}\r\nc=IN {family} {ip}\r\n",
            local.address.port(),
            pts.join(" ")
        );
        let _ = write!(
            s,
            "a=mid:{}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            t.mid, local.ufrag, local.pwd, local.fingerprint
        );
        match &t.sending {
            None => {
                let _ = write!(s, "a=inactive\r\n{}", idle_codec_lines(t.kind));
            }
            Some(sending) => {
                s.push_str("a=sendonly\r\n");
                for c in &codecs {
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
                for e in &sending.params.header_extensions {
                    if e.uri != extension_uri::MID {
                        let _ = write!(s, "a=extmap:{} {}\r\n", e.id, e.uri);
                    }
                }
                let ssrc = sending.params.ssrc();
                let stream = sending
                    .params
                    .rtcp
                    .cname
                    .clone()
                    .unwrap_or_else(|| sending.consumer.to_string());
                let track = sending.consumer.to_string();
                let _ = write!(s, "a=msid:{stream} {track}\r\n");
                let rtx = sending.params.rtx_ssrc();
                if let (Some(ssrc), Some(rtx)) = (ssrc, rtx) {
                    let _ = write!(s, "a=ssrc-group:FID {ssrc} {rtx}\r\n");
                }
                for ssrc in [ssrc, rtx].into_iter().flatten() {
                    let _ = write!(
                        s,
                        "a=ssrc:{ssrc} cname:{stream}\r\na=ssrc:{ssrc} msid:{stream} {track}\r\n"
                    );
                }
            }
        }
        let _ = write!(
            s,
            "a=candidate:1 1 udp 2130706431 {ip} {} typ host\r\na=end-of-candidates\r\n",
            local.address.port()
        );
    }
    s
}

fn idle_payload_type(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => 111,
        MediaKind::Video => 96,
    }
}

fn idle_codec_lines(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "a=rtpmap:111 opus/48000/2\r\n",
        MediaKind::Video => "a=rtpmap:96 VP8/90000\r\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let tracks = vec![
            Track {
                mid: "1".into(),
                kind: MediaKind::Audio,
                sending: None,
            },
            Track {
                mid: "2".into(),
                kind: MediaKind::Video,
                sending: Some(Sending {
                    consumer,
                    params: vp8_params(0x1234_5678),
                }),
            },
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
