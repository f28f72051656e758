//! Writing the server's session descriptions (its offers and its answers) for the native
//! engine, m-line by m-line, from what the connection carries.
//!
//! A connection's m-lines ([`Track`]) keep their order and mid for the connection's life
//! (JSEP): the server's offers and answers both describe them in that order. Each m-line is
//! the data channel, a stream the server sends (a consumer, in the numbering the consumer was
//! given), a stream the client sends (in the client's numbering), idle, or stopped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use switchboard_core::ConsumerId;
use switchboard_core::rtp_parameters::{
    CodecParameters, MediaKind, RtpCodecParameters, RtpParameters, extension_uri,
};

/// One m-line of a connection.
#[derive(Clone, Debug)]
pub struct Track {
    /// `a=mid`.
    pub mid: String,
    /// Audio or video; `None` for the data channel (and any other non-RTP m-line).
    pub kind: Option<MediaKind>,
    /// The `m=` line's media and protocol as first written (kept for stopped m-lines).
    pub media: String,
    /// The `m=` line's protocol.
    pub protocol: String,
    /// What the server sends on it, if anything.
    pub sending: Option<Sending>,
    /// What the client sends on it, if anything.
    pub receiving: Option<Receiving>,
    /// The codecs it last carried (set when a consumer leaves it, or from the client's offer),
    /// written while it is idle so that its payload types keep meaning what they meant
    /// (BUNDLE'd m-lines must not disagree on a payload type).
    pub last_codecs: Vec<RtpCodecParameters>,
    /// Stopped (port 0) for good.
    pub stopped: bool,
    /// Opened by the server for a consumer: when idle, the next consumer of its kind takes it.
    pub server_line: bool,
}

impl Track {
    /// A new m-line of `kind` that the server opens.
    pub fn server(mid: String, kind: MediaKind) -> Self {
        Self {
            mid,
            kind: Some(kind),
            media: media_of(kind).to_owned(),
            protocol: RTP_PROTOCOL.to_owned(),
            sending: None,
            receiving: None,
            last_codecs: Vec::new(),
            stopped: false,
            server_line: true,
        }
    }

    /// The data-channel m-line the server opens.
    pub fn application(mid: String) -> Self {
        Self {
            mid,
            kind: None,
            media: "application".to_owned(),
            protocol: SCTP_PROTOCOL.to_owned(),
            sending: None,
            receiving: None,
            last_codecs: Vec::new(),
            stopped: false,
            server_line: true,
        }
    }
}

/// A consumer's stream on an m-line.
#[derive(Clone, Debug)]
pub struct Sending {
    /// The consumer.
    pub consumer: ConsumerId,
    /// Its RTP parameters.
    pub params: RtpParameters,
}

/// What the client sends on an m-line, as the server accepted it (the client's numbering).
/// Serialisable: a connection moving to another server takes it along
/// ([`super::native::ResumedLine`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiving {
    /// Accepted codecs, media then RTX.
    pub codecs: Vec<RtpCodecParameters>,
    /// Accepted header extensions (id, URI).
    pub extensions: Vec<(u8, String)>,
    /// The SSRCs the client declared for it: media SSRC and its RTX SSRC.
    #[serde(default)]
    pub ssrcs: Vec<(u32, Option<u32>)>,
}

/// The protocol of RTP m-lines.
pub const RTP_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";
/// The protocol of the data-channel m-line.
pub const SCTP_PROTOCOL: &str = "UDP/DTLS/SCTP";

fn media_of(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// What the server's description says about its side of the connection.
pub struct LocalDescription<'a> {
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version, one more for every description.
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

/// How one m-line is described.
pub enum Line<'a> {
    /// Stopped: port 0.
    Stopped {
        /// The m-line.
        track: &'a Track,
    },
    /// The data channel.
    Application {
        /// The m-line.
        track: &'a Track,
    },
    /// The server sends a consumer's stream (`sendonly`), with its SSRCs.
    Send {
        /// The m-line.
        track: &'a Track,
        /// The stream.
        sending: &'a Sending,
        /// The payload types to describe (a subset of the consumer's, when answering an
        /// offer that lists fewer).
        codecs: Vec<&'a RtpCodecParameters>,
    },
    /// The server receives what the client sends (`recvonly`).
    Receive {
        /// The m-line.
        track: &'a Track,
        /// What the server takes.
        receiving: &'a Receiving,
    },
    /// Nothing flows (`inactive`).
    Inactive {
        /// The m-line.
        track: &'a Track,
    },
}

impl Line<'_> {
    fn track(&self) -> &Track {
        match self {
            Line::Stopped { track }
            | Line::Application { track }
            | Line::Send { track, .. }
            | Line::Receive { track, .. }
            | Line::Inactive { track } => track,
        }
    }
}

/// Writes a description of `lines` with DTLS role `setup` (`actpass` in offers, `active` or
/// `passive` in answers). `rtcp_rsize`: whether to write `a=rtcp-rsize` (always in offers;
/// in answers, where the offer had it).
pub fn write_description(
    local: &LocalDescription<'_>,
    setup: &str,
    lines: &[Line<'_>],
    rtcp_rsize: impl Fn(&Track) -> bool,
) -> String {
    let mut s = String::with_capacity(1024 + lines.len() * 1024);
    let ip = local.address.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let port = local.address.port();
    let _ = write!(
        s,
        "v=0\r\no=- {} {} IN {family} {ip}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        local.session_id, local.version
    );
    let bundle: Vec<&str> = lines
        .iter()
        .filter(|l| !matches!(l, Line::Stopped { .. }))
        .map(|l| l.track().mid.as_str())
        .collect();
    if !bundle.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundle.join(" "));
    }
    s.push_str("a=msid-semantic: WMS *\r\n");
    let transport = |s: &mut String, mid: &str| {
        let _ = write!(
            s,
            "c=IN {family} {ip}\r\na=mid:{mid}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            local.ufrag, local.pwd, local.fingerprint
        );
    };
    let candidate =
        format!("a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n");
    for line in lines {
        let track = line.track();
        let mid = track.mid.as_str();
        let rtp_header = |s: &mut String, codecs: &[&RtpCodecParameters], direction: &str| {
            let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
            let _ = write!(
                s,
                "m={} {port} {} {}\r\n",
                track.media,
                track.protocol,
                pts.join(" ")
            );
            transport(s, mid);
            let _ = write!(s, "a={direction}\r\na=rtcp-mux\r\n");
            if rtcp_rsize(track) {
                s.push_str("a=rtcp-rsize\r\n");
            }
        };
        match line {
            Line::Stopped { track } => {
                let format = if track.kind.is_some() {
                    track
                        .last_codecs
                        .first()
                        .map(|c| c.payload_type.to_string())
                        .unwrap_or_else(|| "0".to_owned())
                } else {
                    "webrtc-datachannel".to_owned()
                };
                let _ = write!(
                    s,
                    "m={} 0 {} {format}\r\nc=IN {family} {ip}\r\na=mid:{mid}\r\na=inactive\r\n",
                    track.media, track.protocol
                );
            }
            Line::Application { track } => {
                let _ = write!(
                    s,
                    "m=application {port} {} webrtc-datachannel\r\n",
                    track.protocol
                );
                transport(&mut s, mid);
                s.push_str("a=sctp-port:5000\r\na=max-message-size:262144\r\n");
                s.push_str(&candidate);
            }
            Line::Send {
                sending, codecs, ..
            } => {
                rtp_header(&mut s, codecs, "sendonly");
                for e in &sending.params.header_extensions {
                    // The forwarded packets carry the publisher's mid, which names nothing on
                    // this leg; the SSRCs written here are what the client demultiplexes by.
                    if e.uri != extension_uri::MID {
                        let _ = write!(s, "a=extmap:{} {}\r\n", e.id, e.uri);
                    }
                }
                for c in codecs {
                    write_codec(&mut s, c);
                }
                write_ssrcs(&mut s, sending);
                s.push_str(&candidate);
            }
            Line::Receive { receiving, .. } => {
                let codecs: Vec<&RtpCodecParameters> = receiving.codecs.iter().collect();
                rtp_header(&mut s, &codecs, "recvonly");
                for (id, uri) in &receiving.extensions {
                    let _ = write!(s, "a=extmap:{id} {uri}\r\n");
                }
                for c in codecs {
                    write_codec(&mut s, c);
                }
                s.push_str(&candidate);
            }
            Line::Inactive { track } => {
                let idle;
                let codecs: Vec<&RtpCodecParameters> = if track.last_codecs.is_empty() {
                    idle = idle_codec(track.kind.unwrap_or(MediaKind::Video));
                    vec![&idle]
                } else {
                    track.last_codecs.iter().collect()
                };
                rtp_header(&mut s, &codecs, "inactive");
                for c in codecs {
                    write_codec(&mut s, c);
                }
                s.push_str(&candidate);
            }
        }
    }
    s
}

fn write_ssrcs(s: &mut String, sending: &Sending) {
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

/// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` of one codec.
pub fn write_codec(s: &mut String, c: &RtpCodecParameters) {
    let (_, name) = c.mime_type.split_once('/').unwrap_or(("", &c.mime_type));
    let _ = write!(s, "a=rtpmap:{} {name}/{}", c.payload_type, c.clock_rate);
    if let Some(ch) = c.channels.filter(|ch| *ch > 1) {
        let _ = write!(s, "/{ch}");
    }
    s.push_str("\r\n");
    let fmtp = fmtp_line(&c.parameters);
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

/// `a=fmtp` text for codec parameters, in the deterministic order they are stored in.
pub fn fmtp_line(parameters: &CodecParameters) -> String {
    parameters
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_text()))
        .collect::<Vec<_>>()
        .join(";")
}

/// A codec for an m-line that never carried one (an m-line must list a payload type).
fn idle_codec(kind: MediaKind) -> RtpCodecParameters {
    let (mime_type, payload_type, clock_rate, channels) = match kind {
        MediaKind::Audio => ("audio/opus", 111, 48_000, Some(2)),
        MediaKind::Video => ("video/VP8", 96, 90_000, None),
    };
    RtpCodecParameters {
        mime_type: mime_type.to_owned(),
        payload_type,
        clock_rate,
        channels,
        parameters: Default::default(),
        rtcp_feedback: Vec::new(),
    }
}
