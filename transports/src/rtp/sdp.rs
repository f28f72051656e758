//! The SDP a plain RTP receiver (ffmpeg, GStreamer's `sdpdemux`, VLC) opens to receive what a
//! transport's consumers send.
//!
//! It is a description of a stream session, not an offer: `c=` and each `m=` port are where
//! the receiver listens (the transport's remote address), which is how such tools know what
//! to bind. ffmpeg binds every `m=` line's port itself, so one stream per transport is what
//! it can open; the description still lists every consumer for receivers that demultiplex
//! by SSRC.

use super::srtp::SrtpParameters;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use switchboard_core::rtp_parameters::{MediaKind, RtpParameters};

/// What the description is made from.
pub struct Description<'a> {
    /// The server's (announced) address, for the origin line.
    pub origin: IpAddr,
    /// Session id of the origin line: stable for one transport.
    pub session_id: u64,
    /// Version of the origin line: grows when the consumers change.
    pub version: u64,
    /// Where RTP goes: the receiver's address and port.
    pub remote_rtp: SocketAddr,
    /// Where RTCP goes.
    pub remote_rtcp: SocketAddr,
    /// Whether RTP and RTCP share the port.
    pub rtcp_mux: bool,
    /// The key the server encrypts with, when the transport uses SRTP.
    pub srtp: Option<&'a SrtpParameters>,
    /// The CNAME the streams are grouped under.
    pub cname: &'a str,
    /// The consumers, in the order they were added.
    pub media: Vec<(MediaKind, &'a RtpParameters)>,
}

fn ip_family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IP4" } else { "IP6" }
}

/// Writes the description. Lines end with CRLF, as RFC 8866 requires.
pub fn write(d: &Description<'_>) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail, so the results of `write!` are ignored below.
    let _ = write!(
        s,
        "v=0\r\no=- {} {} IN {} {}\r\ns=Switchboard\r\nc=IN {} {}\r\nt=0 0\r\n",
        d.session_id,
        d.version,
        ip_family(d.origin),
        d.origin,
        ip_family(d.remote_rtp.ip()),
        d.remote_rtp.ip()
    );
    let profile = if d.srtp.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    for (kind, params) in &d.media {
        let pts: Vec<String> = params
            .codecs
            .iter()
            .map(|c| c.payload_type.to_string())
            .collect();
        let _ = write!(
            s,
            "m={kind} {} {profile} {}\r\n",
            d.remote_rtp.port(),
            pts.join(" ")
        );
        for codec in &params.codecs {
            let name = codec
                .mime_type
                .split_once('/')
                .map_or(codec.mime_type.as_str(), |(_, n)| n);
            let _ = write!(
                s,
                "a=rtpmap:{} {name}/{}",
                codec.payload_type, codec.clock_rate
            );
            if let Some(channels) = codec.channels.filter(|_| *kind == MediaKind::Audio) {
                let _ = write!(s, "/{channels}");
            }
            s.push_str("\r\n");
            if !codec.parameters.is_empty() {
                let fmtp: Vec<String> = codec
                    .parameters
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_text()))
                    .collect();
                let _ = write!(s, "a=fmtp:{} {}\r\n", codec.payload_type, fmtp.join(";"));
            }
            for fb in &codec.rtcp_feedback {
                let _ = write!(s, "a=rtcp-fb:{} {}", codec.payload_type, fb.kind);
                if !fb.parameter.is_empty() {
                    let _ = write!(s, " {}", fb.parameter);
                }
                s.push_str("\r\n");
            }
        }
        if d.rtcp_mux {
            s.push_str("a=rtcp-mux\r\n");
        } else {
            let _ = write!(
                s,
                "a=rtcp:{} IN {} {}\r\n",
                d.remote_rtcp.port(),
                ip_family(d.remote_rtcp.ip()),
                d.remote_rtcp.ip()
            );
        }
        if let Some(srtp) = d.srtp {
            let _ = write!(
                s,
                "a=crypto:1 {} inline:{}\r\n",
                srtp.crypto_suite, srtp.key_base64
            );
        }
        for encoding in &params.encodings {
            let Some(ssrc) = encoding.ssrc else { continue };
            if let Some(rtx) = &encoding.rtx {
                let _ = write!(s, "a=ssrc-group:FID {ssrc} {}\r\n", rtx.ssrc);
                let _ = write!(s, "a=ssrc:{} cname:{}\r\n", rtx.ssrc, d.cname);
            }
            let _ = write!(s, "a=ssrc:{ssrc} cname:{}\r\n", d.cname);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::rtp_parameters::{
        RtcpFeedback, RtpCodecParameters, RtpEncodingParameters,
    };

    fn params(mime: &str, pt: u8, clock: u32, channels: Option<u8>, ssrc: u32) -> RtpParameters {
        RtpParameters {
            codecs: vec![RtpCodecParameters {
                mime_type: mime.into(),
                payload_type: pt,
                clock_rate: clock,
                channels,
                parameters: [("packetization-mode".to_owned(), 1u32.into())]
                    .into_iter()
                    .filter(|_| mime.ends_with("H264"))
                    .collect(),
                rtcp_feedback: vec![RtcpFeedback::new("nack", "pli")],
            }],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn describes_each_consumer_at_the_remote_address() {
        let video = params("video/H264", 102, 90_000, None, 11);
        let audio = params("audio/opus", 100, 48_000, Some(2), 22);
        let srtp = SrtpParameters {
            crypto_suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_base64: "a2V5".into(),
        };
        let text = write(&Description {
            origin: "192.0.2.1".parse().unwrap(),
            session_id: 7,
            version: 2,
            remote_rtp: "127.0.0.1:5004".parse().unwrap(),
            remote_rtcp: "127.0.0.1:5005".parse().unwrap(),
            rtcp_mux: false,
            srtp: Some(&srtp),
            cname: "sb",
            media: vec![(MediaKind::Video, &video), (MediaKind::Audio, &audio)],
        });
        let expected = "v=0\r\no=- 7 2 IN IP4 192.0.2.1\r\ns=Switchboard\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
            m=video 5004 RTP/SAVP 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n\
            a=rtcp-fb:102 nack pli\r\na=rtcp:5005 IN IP4 127.0.0.1\r\n\
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:a2V5\r\na=ssrc:11 cname:sb\r\n\
            m=audio 5004 RTP/SAVP 100\r\na=rtpmap:100 opus/48000/2\r\na=rtcp-fb:100 nack pli\r\n\
            a=rtcp:5005 IN IP4 127.0.0.1\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:a2V5\r\n\
            a=ssrc:22 cname:sb\r\n";
        assert_eq!(text, expected);
        // It parses as SDP.
        switchboard_sdp::parse(&text).unwrap();
    }

    #[test]
    fn muxed_plain_rtp_over_ipv6() {
        let video = params("video/VP8", 96, 90_000, None, 5);
        let text = write(&Description {
            origin: "::1".parse().unwrap(),
            session_id: 1,
            version: 1,
            remote_rtp: "[::1]:6000".parse().unwrap(),
            remote_rtcp: "[::1]:6000".parse().unwrap(),
            rtcp_mux: true,
            srtp: None,
            cname: "sb",
            media: vec![(MediaKind::Video, &video)],
        });
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("m=video 6000 RTP/AVP 96\r\n"), "{text}");
        assert!(text.contains("a=rtcp-mux\r\n"), "{text}");
        assert!(!text.contains("a=crypto"), "{text}");
    }
}
