//! # switchboard-sdp
//!
//! The SDP bridge: native session descriptions in, Switchboard's RTP object model out. It is
//! a crate of its own so that middleware and backends, which never see SDP, do not build it;
//! the WebRTC and plain-RTP transports and the actors' SDP sessions use it.
//!
//! WebRTC clients speak SDP (RFC 8866, JSEP RFC 8829). The server's WebRTC transport lets
//! webrtc-rs write its answers and offers; this crate reads what the *clients* write and
//! turns it into our terms:
//!
//! - [`parse`] checks a description line by line, so that a malformed one is rejected with
//!   an [`ErrorCode::InvalidSdp`] error naming the offending line, and then parses it with
//!   `rtc-sdp`.
//! - [`media_sections`] describes each m-line as a [`MediaSection`]: mid, kind, direction,
//!   codecs as [`RtpCodecParameters`], header extensions, SSRCs, rids, msid, ICE and DTLS
//!   attributes.
//! - [`producer_parameters`] turns a publisher's sending m-line, together with the server's
//!   answer for it, into the [`RtpParameters`] of the Producer that m-line feeds.
//! - [`accepted_mids`] says which m-lines of a server offer a subscriber's answer accepted.
//!
//! Real stacks differ in many small ways (see `SDP-NOTES.md`): header-extension ids and
//! payload types are chosen per stack, Firefox puts the direction and fingerprint at session
//! level and leaves `a=rtcp-fb` lines for payload types it removed, webrtcbin marks bundled
//! m-lines with port 0 and `a=bundle-only`, msid appears in three spellings. Nothing here
//! assumes one stack's choices; every id and payload type is read from the text.

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Cursor;
use std::str::FromStr;

use rtc_sdp::description::common::Attribute;
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::description::session::SessionDescription;

use switchboard_core::error::{Error, ErrorCode, Result};
use switchboard_core::rtp_parameters::{
    CodecParameters, ExtensionDirection, MediaKind, ParamValue, RtcpFeedback, RtcpParameters,
    RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtensionParameters, RtpParameters,
    RtxParameters, mime, mime_eq,
};

/// The fmtp parameter kept as text even when it looks like a number: it is hexadecimal
/// (`420029` is a valid, all-digit H.264 profile-level-id), and reading it as decimal would
/// change its meaning.
const PROFILE_LEVEL_ID: &str = "profile-level-id";

/// How much of an offending line an error message quotes.
const QUOTE_LIMIT: usize = 120;

/// A parsed session description.
///
/// Made by [`parse`], which has checked every line; the accessors and [`media_sections`]
/// therefore never fail.
#[derive(Clone, Debug)]
pub struct Sdp {
    description: SessionDescription,
    /// The 1-based line number of each `m=` line, in order, so later steps can point at
    /// the text the client wrote.
    media_lines: Vec<usize>,
}

impl Sdp {
    /// The description as `rtc-sdp` parsed it, for anything this module does not interpret.
    pub fn description(&self) -> &SessionDescription {
        &self.description
    }

    /// The mids of the first `a=group:BUNDLE` group, in the order written; empty without one.
    ///
    /// JSEP writes at most one BUNDLE group, and under max-bundle every m-line is in it.
    pub fn bundle_mids(&self) -> Vec<String> {
        values(&self.description.attributes, "group")
            .find_map(|group| {
                let mut tokens = group.split_whitespace();
                (tokens.next() == Some("BUNDLE")).then(|| tokens.map(str::to_owned).collect())
            })
            .unwrap_or_default()
    }

    /// Whether the describing endpoint is an ICE-lite implementation (`a=ice-lite`).
    pub fn ice_lite(&self) -> bool {
        has(&self.description.attributes, "ice-lite")
    }

    /// The number of m-lines.
    pub fn media_count(&self) -> usize {
        self.description.media_descriptions.len()
    }
}

/// Parses a session description, accepting `\r\n` and `\n` line endings.
///
/// Every line must be `<letter>=<value>`, starting with `v=0`. The fields Switchboard reads
/// later are checked here so a mistake is reported with its line: the `m=` line's media,
/// port, protocol and payload types; the numbers in `a=rtpmap`, `a=fmtp`, `a=rtcp-fb`,
/// `a=extmap`, `a=ssrc` and `a=ssrc-group`; `a=rid` and `a=setup` values; candidates'
/// numeric fields; duplicate mids. What remains (line order, `o=`, `c=`, `t=`) is left to
/// `rtc-sdp`, whose errors are given with the line it stopped at.
///
/// # Errors
///
/// [`ErrorCode::InvalidSdp`], with a message such as
/// `line 7: "m=video x UDP/TLS/RTP/SAVPF 96": invalid port "x"`.
pub fn parse(sdp: &str) -> Result<Sdp> {
    if sdp.trim().is_empty() {
        return Err(Error::new(ErrorCode::InvalidSdp, "the SDP is empty"));
    }
    let media_lines = check_lines(sdp)?;
    let mut reader = Cursor::new(sdp.as_bytes());
    match SessionDescription::unmarshal(&mut reader) {
        Ok(description) => Ok(Sdp {
            description,
            media_lines,
        }),
        Err(e) => {
            // The parser reads one line at a time, so the byte before its stopping point
            // belongs to the line it failed on.
            let position = usize::try_from(reader.position()).unwrap_or(sdp.len());
            Err(parser_error(sdp, position, &e.to_string()))
        }
    }
}

/// Which way media flows on an m-line, from the describing endpoint's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sends and receives (the default when no direction is written).
    #[default]
    SendRecv,
    /// Only sends.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name, e.g. `sendonly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the endpoint sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the endpoint receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_attribute(key: &str) -> Option<Self> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The DTLS role an endpoint asks for (`a=setup`, RFC 4145/5763).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setup {
    /// It will connect (DTLS client).
    Active,
    /// It will accept (DTLS server).
    Passive,
    /// Either; the answerer chooses.
    ActPass,
    /// Not now.
    HoldConn,
}

impl Setup {
    fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            "actpass" => Some(Setup::ActPass),
            "holdconn" => Some(Setup::HoldConn),
            _ => None,
        }
    }
}

/// A DTLS certificate fingerprint (`a=fingerprint`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash function, e.g. `sha-256`.
    pub algorithm: String,
    /// The colon-separated hex digest, as written.
    pub value: String,
}

/// One RTP stream an m-line declares by SSRC, with the RTX stream repairing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SsrcStream {
    /// The media stream's SSRC.
    pub ssrc: u32,
    /// The RTX stream's SSRC (`a=ssrc-group:FID <ssrc> <rtx>`), when there is one.
    pub rtx_ssrc: Option<u32>,
}

/// One m-line, in Switchboard's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSection {
    /// Its position among the m-lines, from 0. Offer and answer m-lines correspond by it.
    pub index: usize,
    /// The 1-based line number of its `m=` line.
    pub line: usize,
    /// The media as written: `audio`, `video`, `application`, ...
    pub media: String,
    /// The port on the `m=` line. Meaningless for addressing (take addresses from
    /// [`candidates`](Self::candidates)); 0 marks a rejected or bundle-only m-line.
    pub port: u16,
    /// The transport protocol, e.g. `UDP/TLS/RTP/SAVPF`.
    pub protocol: String,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Audio or video; `None` for data channels and other media.
    pub kind: Option<MediaKind>,
    /// Rejected or stopped: port 0 without `a=bundle-only`.
    pub rejected: bool,
    /// `a=bundle-only`: port 0 here means "use the bundle's transport", not rejection.
    pub bundle_only: bool,
    /// The direction, the session-level one when the m-line has none (Firefox), else
    /// `sendrecv`.
    pub direction: Direction,
    /// Codecs in the order of the `m=` line, from `a=rtpmap`, `a=fmtp` and `a=rtcp-fb`
    /// (`a=rtcp-fb:*` applies to every codec). Payload types without `a=rtpmap` are
    /// included only when they are static ones.
    pub codecs: Vec<RtpCodecParameters>,
    /// Header extensions (`a=extmap`, plus session-level ones for ids not redefined here).
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    /// The direction suffix of each extension that has one (`a=extmap:2/recvonly ...`);
    /// see [`extension_direction`](Self::extension_direction).
    pub extension_directions: BTreeMap<u8, ExtensionDirection>,
    /// The first declared stream's SSRC (the first `FID` group's, else the first `a=ssrc`).
    pub ssrc: Option<u32>,
    /// The RTX SSRC repairing [`ssrc`](Self::ssrc).
    pub rtx_ssrc: Option<u32>,
    /// Every declared stream: several for Firefox simulcast, which writes one `FID` group
    /// per layer. RTX and FEC SSRCs appear only as repairers, never as streams.
    pub ssrcs: Vec<SsrcStream>,
    /// Simulcast stream ids the endpoint sends (`a=rid:<id> send`), in the order written.
    pub rids: Vec<String>,
    /// Simulcast stream ids the endpoint receives (`a=rid:<id> recv`), as an answer to a
    /// simulcast offer writes them.
    pub recv_rids: Vec<String>,
    /// (stream id, track id) from `a=msid`, else the legacy `a=ssrc:<ssrc> msid:`. Firefox's
    /// braces are removed; a missing track id is empty.
    pub msid: Option<(String, String)>,
    /// The RTCP CNAME of the first stream (`a=ssrc:<ssrc> cname:`).
    pub cname: Option<String>,
    /// `a=ice-ufrag`, from this m-line or the session.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`, from this m-line or the session.
    pub ice_pwd: Option<String>,
    /// `a=fingerprint` lines of this m-line, else of the session (aiortc writes three).
    pub fingerprints: Vec<Fingerprint>,
    /// `a=setup`, from this m-line or the session.
    pub setup: Option<Setup>,
    /// ICE candidates as written, each starting with `candidate:` like the
    /// `RTCIceCandidateInit.candidate` string browsers trickle.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates`, here or at session level.
    pub end_of_candidates: bool,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// `a=rtcp-rsize` (reduced-size RTCP, RFC 5506).
    pub rtcp_rsize: bool,
}

impl MediaSection {
    /// A short name for messages: `m-line 1 (mid 1, video)`.
    pub fn label(&self) -> String {
        match &self.mid {
            Some(mid) => format!("m-line {} (mid {mid}, {})", self.index, self.media),
            None => format!("m-line {} ({})", self.index, self.media),
        }
    }

    /// The direction of the extension with this id: its suffix, or `sendrecv` without one.
    pub fn extension_direction(&self, id: u8) -> ExtensionDirection {
        self.extension_directions
            .get(&id)
            .copied()
            .unwrap_or_default()
    }
}

/// Describes every m-line of a parsed description, in order.
pub fn media_sections(sdp: &Sdp) -> Vec<MediaSection> {
    let session = &sdp.description.attributes;
    sdp.description
        .media_descriptions
        .iter()
        .enumerate()
        .map(|(index, media)| {
            let line = sdp.media_lines.get(index).copied().unwrap_or(0);
            media_section(index, line, media, session)
        })
        .collect()
}

/// Bounds on SDP from the backend, checked before it is parsed ([`check_limits`]).
#[derive(Clone, Copy, Debug)]
pub struct SdpLimits {
    /// Bytes in the whole description.
    pub max_bytes: usize,
    /// m-lines.
    pub max_media_sections: usize,
    /// `a=ssrc` lines in one m-line.
    pub max_ssrc_lines: usize,
}

impl From<&switchboard_core::config::LimitsConfig> for SdpLimits {
    fn from(l: &switchboard_core::config::LimitsConfig) -> Self {
        Self {
            max_bytes: l.max_sdp_bytes,
            max_media_sections: l.max_sdp_media_sections,
            max_ssrc_lines: l.max_sdp_ssrc_lines,
        }
    }
}

/// Refuses a description larger than `limits` allow, in one pass over its lines and before
/// anything parses it: parsing, negotiation and the publish diff all run on the room's
/// worker thread, so their cost must be bounded by configuration, not by the sender.
///
/// # Errors
///
/// [`ErrorCode::LimitExceeded`] naming the limit and, for per-m-line limits, the line.
pub fn check_limits(sdp: &str, limits: SdpLimits) -> Result<()> {
    if sdp.len() > limits.max_bytes {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "the SDP is {} bytes, more than {} (limits.max_sdp_bytes)",
                sdp.len(),
                limits.max_bytes
            ),
        ));
    }
    let mut media = 0usize;
    let mut ssrc_lines = 0usize;
    for (n, line) in sdp.lines().enumerate() {
        if line.starts_with("m=") {
            media += 1;
            ssrc_lines = 0;
            if media > limits.max_media_sections {
                return Err(Error::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "line {}: more than {} m-lines (limits.max_sdp_media_sections)",
                        n + 1,
                        limits.max_media_sections
                    ),
                ));
            }
        } else if line.starts_with("a=ssrc:") {
            ssrc_lines += 1;
            if ssrc_lines > limits.max_ssrc_lines {
                return Err(Error::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "line {}: more than {} a=ssrc lines in one m-line (limits.max_sdp_ssrc_lines)",
                        n + 1,
                        limits.max_ssrc_lines
                    ),
                ));
            }
        }
    }
    Ok(())
}

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

fn extension_sends(direction: ExtensionDirection) -> bool {
    matches!(
        direction,
        ExtensionDirection::SendRecv | ExtensionDirection::SendOnly
    )
}

fn extension_receives(direction: ExtensionDirection) -> bool {
    matches!(
        direction,
        ExtensionDirection::SendRecv | ExtensionDirection::RecvOnly
    )
}

// ---- the line-level check ------------------------------------------------------------

/// What the check remembers about the m-line it is in.
struct MediaContext {
    /// Whether its formats are RTP payload types (so rtpmap and friends apply).
    rtp: bool,
    /// Whether it is audio (rtpmap's third field is then a channel count).
    audio: bool,
}

/// Checks every line, returning the line numbers of the `m=` lines.
fn check_lines(sdp: &str) -> Result<Vec<usize>> {
    let mut media_lines = Vec::new();
    let mut media: Option<MediaContext> = None;
    let mut mids: HashMap<&str, usize> = HashMap::new();
    let mut first = true;

    for (i, raw) in sdp.split('\n').enumerate() {
        let number = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        // Empty lines (a trailing newline, a blank separator) carry nothing; the parser
        // skips them too.
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=' {
            return Err(line_error(
                number,
                line,
                "expected <type>=<value> with a lowercase letter as type",
            ));
        }
        let kind = bytes[0];
        // The first two bytes are ASCII, so this slice is on a character boundary.
        let value = &line[2..];
        if first {
            first = false;
            if kind != b'v' {
                return Err(line_error(number, line, "an SDP must start with \"v=0\""));
            }
        }
        let checked = match kind {
            b'v' if value != "0" => Err("only SDP version 0 exists".to_owned()),
            b'm' => check_media_line(value).map(|context| {
                media_lines.push(number);
                media = Some(context);
            }),
            b'a' => {
                let (key, attr) = value.split_once(':').unwrap_or((value, ""));
                if key == "mid" {
                    let mid = attr.trim();
                    match mids.insert(mid, number) {
                        _ if mid.is_empty() => Err("empty mid".to_owned()),
                        Some(earlier) => {
                            Err(format!("duplicate mid {mid:?} (already on line {earlier})"))
                        }
                        None => Ok(()),
                    }
                } else {
                    check_attribute(key, attr, media.as_ref())
                }
            }
            _ => Ok(()),
        };
        checked.map_err(|reason| line_error(number, line, reason))?;
    }
    Ok(media_lines)
}

/// Checks `<media> <port>[/<count>] <proto> <fmt> ...`.
fn check_media_line(value: &str) -> std::result::Result<MediaContext, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [media, port, proto, formats @ ..] = fields.as_slice() else {
        return Err("expected \"m=<media> <port> <proto> <fmt> ...\"".to_owned());
    };
    if formats.is_empty() {
        return Err("no formats".to_owned());
    }
    if !matches!(
        *media,
        "audio" | "video" | "text" | "application" | "message" | "image"
    ) {
        return Err(format!("unknown media {media:?}"));
    }
    let (port_number, count) = match port.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (*port, None),
    };
    if number::<u16>(port_number).is_none() {
        return Err(format!("invalid port {port:?}"));
    }
    if count.is_some_and(|c| number::<u16>(c).is_none()) {
        return Err(format!("invalid port count in {port:?}"));
    }
    if proto.split('/').any(str::is_empty) {
        return Err(format!("invalid protocol {proto:?}"));
    }
    let rtp = proto.split('/').any(|p| p == "RTP");
    if rtp && let Some(bad) = formats.iter().find(|f| payload_type(f).is_none()) {
        return Err(format!("invalid payload type {bad:?}"));
    }
    Ok(MediaContext {
        rtp,
        audio: *media == "audio",
    })
}

/// Checks the attributes whose fields Switchboard reads. `media` is the m-line the
/// attribute is in, `None` at session level.
fn check_attribute(
    key: &str,
    value: &str,
    media: Option<&MediaContext>,
) -> std::result::Result<(), String> {
    let rtp = media.is_some_and(|m| m.rtp);
    match key {
        "rtpmap" if rtp => {
            let (pt, encoding) = split_pt(value)?;
            let mut parts = encoding.split('/');
            let name = parts.next().unwrap_or_default();
            if name.is_empty() {
                return Err(format!("payload type {pt}: missing encoding name"));
            }
            let clock = parts.next().unwrap_or_default();
            if number::<u32>(clock).is_none_or(|c| c == 0) {
                return Err(format!("payload type {pt}: invalid clock rate {clock:?}"));
            }
            let params = parts.next();
            if media.is_some_and(|m| m.audio)
                && let Some(channels) = params
                && number::<u8>(channels).is_none_or(|c| c == 0)
            {
                return Err(format!(
                    "payload type {pt}: invalid channel count {channels:?}"
                ));
            }
            Ok(())
        }
        "fmtp" if rtp => {
            let token = value.split_whitespace().next().unwrap_or_default();
            payload_type(token)
                .map(|_| ())
                .ok_or_else(|| format!("invalid payload type {token:?}"))
        }
        "rtcp-fb" if rtp => {
            let mut tokens = value.split_whitespace();
            let pt = tokens.next().unwrap_or_default();
            if pt != "*" && payload_type(pt).is_none() {
                return Err(format!("invalid payload type {pt:?}"));
            }
            if tokens.next().is_none() {
                return Err("missing feedback type".to_owned());
            }
            Ok(())
        }
        "extmap" => parse_extmap(value).map(|_| ()),
        "ssrc" => {
            let token = value.split_whitespace().next().unwrap_or_default();
            number::<u32>(token)
                .map(|_| ())
                .ok_or_else(|| format!("invalid SSRC {token:?}"))
        }
        "ssrc-group" => {
            let mut tokens = value.split_whitespace();
            let semantics = tokens.next().unwrap_or_default();
            let ssrcs: Vec<&str> = tokens.collect();
            if semantics.is_empty() || ssrcs.is_empty() {
                return Err("expected \"a=ssrc-group:<semantics> <ssrc> ...\"".to_owned());
            }
            if let Some(bad) = ssrcs.iter().find(|s| number::<u32>(s).is_none()) {
                return Err(format!("invalid SSRC {bad:?}"));
            }
            if semantics == "FID" && ssrcs.len() != 2 {
                return Err("an FID group pairs exactly two SSRCs".to_owned());
            }
            Ok(())
        }
        "rid" => {
            let mut tokens = value.split_whitespace();
            let id = tokens.next().unwrap_or_default();
            match tokens.next() {
                _ if id.is_empty() => Err("missing rid".to_owned()),
                Some("send" | "recv") => Ok(()),
                other => Err(format!(
                    "rid {id:?}: direction must be send or recv, not {:?}",
                    other.unwrap_or_default()
                )),
            }
        }
        "setup" => Setup::parse(value)
            .map(|_| ())
            .ok_or_else(|| format!("unknown setup role {:?}", value.trim())),
        "candidate" => check_candidate(value),
        _ => Ok(()),
    }
}

/// Checks `<foundation> <component> <transport> <priority> <address> <port> typ <type> ...`.
fn check_candidate(value: &str) -> std::result::Result<(), String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [_, component, _, priority, _, port, typ, _, ..] = fields.as_slice() else {
        return Err("malformed candidate: too few fields".to_owned());
    };
    if number::<u16>(component).is_none() {
        return Err(format!(
            "malformed candidate: invalid component {component:?}"
        ));
    }
    if number::<u32>(priority).is_none() {
        return Err(format!(
            "malformed candidate: invalid priority {priority:?}"
        ));
    }
    if number::<u16>(port).is_none() {
        return Err(format!("malformed candidate: invalid port {port:?}"));
    }
    if *typ != "typ" {
        return Err(format!(
            "malformed candidate: expected \"typ\", found {typ:?}"
        ));
    }
    Ok(())
}

/// An error naming line `number` and quoting (the start of) its text. The reason is cut
/// too, since it may quote a field of the line.
fn line_error(number: usize, text: &str, reason: impl fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidSdp,
        format!(
            "line {number}: {:?}: {}",
            clip(text),
            clip(&reason.to_string())
        ),
    )
}

/// The first [`QUOTE_LIMIT`] characters of `text`, marked when cut.
fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Turns an `rtc-sdp` error into one naming the line the parser stopped on.
fn parser_error(sdp: &str, position: usize, message: &str) -> Error {
    let position = position.min(sdp.len());
    let at_end = sdp
        .get(position..)
        .is_none_or(|rest| rest.trim().is_empty());
    // The last byte consumed belongs to the failing line (the parser may have stopped
    // inside it, after `x=`); blank lines carry no error, so step back to the nearest line
    // with text.
    let before_last = sdp.get(..position.saturating_sub(1)).unwrap_or(sdp);
    let last = before_last.matches('\n').count() + 1;
    let line = sdp
        .split('\n')
        .take(last)
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.strip_suffix('\r').unwrap_or(raw)))
        .filter(|(_, text)| !text.is_empty())
        .last();
    match line {
        Some((number, text)) if at_end => line_error(
            number,
            text,
            format!("the SDP ends after this line ({message})"),
        ),
        Some((number, text)) => line_error(number, text, format!("not valid here ({message})")),
        None => Error::new(ErrorCode::InvalidSdp, format!("line 1: {message}")),
    }
}

/// A number written in plain decimal digits: no sign, no spaces (Rust's `parse` takes `+1`).
fn number<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An RTP payload type: 0 to 127.
fn payload_type(text: &str) -> Option<u8> {
    number::<u8>(text).filter(|pt| *pt <= 127)
}

/// Splits `<pt> <rest>`, checking the payload type.
fn split_pt(value: &str) -> std::result::Result<(u8, &str), String> {
    let value = value.trim();
    let (pt, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let pt = payload_type(pt).ok_or_else(|| format!("invalid payload type {pt:?}"))?;
    Ok((pt, rest.trim()))
}

/// A parsed `a=extmap`.
struct ExtMap {
    params: RtpHeaderExtensionParameters,
    direction: Option<ExtensionDirection>,
}

/// Parses `<id>[/<direction>] <uri> [<attributes>]`; an RFC 6904 encrypted extension
/// (`urn:ietf:params:rtp-hdrext:encrypt <uri>`) gives the inner URI with `encrypt` set.
fn parse_extmap(value: &str) -> std::result::Result<ExtMap, String> {
    const ENCRYPT: &str = "urn:ietf:params:rtp-hdrext:encrypt";
    let mut tokens = value.split_whitespace();
    let head = tokens.next().unwrap_or_default();
    let (id, direction) = match head.split_once('/') {
        Some((id, direction)) => (id, Some(direction)),
        None => (head, None),
    };
    // One-byte headers use ids 1-14, two-byte headers 1-255 (RFC 8285); 0 is padding.
    let id = number::<u8>(id)
        .filter(|id| *id != 0)
        .ok_or_else(|| format!("invalid extension id {id:?} (must be 1-255)"))?;
    let direction = match direction {
        None => None,
        Some("sendrecv") => Some(ExtensionDirection::SendRecv),
        Some("sendonly") => Some(ExtensionDirection::SendOnly),
        Some("recvonly") => Some(ExtensionDirection::RecvOnly),
        Some("inactive") => Some(ExtensionDirection::Inactive),
        Some(other) => return Err(format!("unknown extension direction {other:?}")),
    };
    let mut uri = tokens
        .next()
        .ok_or_else(|| format!("extension {id}: missing URI"))?;
    let encrypt = uri == ENCRYPT;
    if encrypt {
        uri = tokens
            .next()
            .ok_or_else(|| format!("extension {id}: encrypted extension without its URI"))?;
    }
    Ok(ExtMap {
        params: RtpHeaderExtensionParameters {
            uri: uri.to_owned(),
            id,
            encrypt,
        },
        direction,
    })
}

// ---- building a MediaSection ---------------------------------------------------------

/// Values of the attributes named `key`.
fn values<'a>(attributes: &'a [Attribute], key: &'a str) -> impl Iterator<Item = &'a str> {
    attributes
        .iter()
        .filter(move |a| a.key == key)
        .map(|a| a.value.as_deref().unwrap_or_default())
}

/// Whether an attribute named `key` is present.
fn has(attributes: &[Attribute], key: &str) -> bool {
    attributes.iter().any(|a| a.key == key)
}

/// The first trimmed value of `key`, here or else at session level.
fn first_value(attributes: &[Attribute], session: &[Attribute], key: &str) -> Option<String> {
    values(attributes, key)
        .chain(values(session, key))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

fn media_section(
    index: usize,
    line: usize,
    media: &MediaDescription,
    session: &[Attribute],
) -> MediaSection {
    let attrs = &media.attributes;
    let name = &media.media_name;
    let kind = match name.media.as_str() {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    };
    let port = u16::try_from(name.port.value).unwrap_or(0);
    let bundle_only = has(attrs, "bundle-only");
    let direction = direction_of(attrs)
        .or_else(|| direction_of(session))
        .unwrap_or_default();
    let (header_extensions, extension_directions) = extensions(attrs, session);
    let streams = ssrc_streams(attrs);
    let primary = streams.streams.first().copied();

    let mut rids = Vec::new();
    let mut recv_rids = Vec::new();
    for value in values(attrs, "rid") {
        let mut tokens = value.split_whitespace();
        match (tokens.next(), tokens.next()) {
            (Some(id), Some("send")) => rids.push(id.to_owned()),
            (Some(id), Some("recv")) => recv_rids.push(id.to_owned()),
            _ => {}
        }
    }

    let msid = values(attrs, "msid")
        .find_map(parse_msid)
        .or_else(|| primary.and_then(|s| streams.msids.get(&s.ssrc).cloned()))
        .or_else(|| streams.msids.values().next().cloned());
    let cname = primary
        .and_then(|s| streams.cnames.get(&s.ssrc).cloned())
        .or_else(|| streams.first_cname.clone());

    let fingerprints = {
        let here = fingerprints_of(attrs);
        if here.is_empty() {
            fingerprints_of(session)
        } else {
            here
        }
    };

    MediaSection {
        index,
        line,
        media: name.media.clone(),
        port,
        protocol: name.protos.join("/"),
        mid: first_value(attrs, &[], "mid"),
        kind,
        rejected: port == 0 && !bundle_only,
        bundle_only,
        direction,
        codecs: kind.map(|k| codecs(k, media)).unwrap_or_default(),
        header_extensions,
        extension_directions,
        ssrc: primary.map(|s| s.ssrc),
        rtx_ssrc: primary.and_then(|s| s.rtx_ssrc),
        ssrcs: streams.streams,
        rids,
        recv_rids,
        msid,
        cname,
        ice_ufrag: first_value(attrs, session, "ice-ufrag"),
        ice_pwd: first_value(attrs, session, "ice-pwd"),
        fingerprints,
        setup: values(attrs, "setup")
            .chain(values(session, "setup"))
            .find_map(Setup::parse),
        candidates: values(attrs, "candidate")
            .map(|c| format!("candidate:{}", c.trim()))
            .collect(),
        end_of_candidates: has(attrs, "end-of-candidates") || has(session, "end-of-candidates"),
        rtcp_mux: has(attrs, "rtcp-mux"),
        rtcp_rsize: has(attrs, "rtcp-rsize"),
    }
}

fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.key))
}

fn fingerprints_of(attributes: &[Attribute]) -> Vec<Fingerprint> {
    values(attributes, "fingerprint")
        .filter_map(|v| {
            let (algorithm, value) = v.trim().split_once(char::is_whitespace)?;
            Some(Fingerprint {
                algorithm: algorithm.to_owned(),
                value: value.trim().to_owned(),
            })
        })
        .collect()
}

/// `<stream> [<track>]`, with Firefox's `{uuid}` braces removed.
fn parse_msid(value: &str) -> Option<(String, String)> {
    let mut tokens = value.split_whitespace();
    let stream = tokens.next()?;
    let track = tokens.next().unwrap_or_default();
    Some((strip_braces(stream), strip_braces(track)))
}

fn strip_braces(id: &str) -> String {
    id.strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or(id)
        .to_owned()
}

/// Header extensions of an m-line, then session-level ones whose id it does not use.
fn extensions(
    attrs: &[Attribute],
    session: &[Attribute],
) -> (
    Vec<RtpHeaderExtensionParameters>,
    BTreeMap<u8, ExtensionDirection>,
) {
    let mut list: Vec<RtpHeaderExtensionParameters> = Vec::new();
    let mut directions = BTreeMap::new();
    for value in values(attrs, "extmap").chain(values(session, "extmap")) {
        let Ok(ext) = parse_extmap(value) else {
            continue;
        };
        if list.iter().any(|e| e.id == ext.params.id) {
            continue;
        }
        if let Some(direction) = ext.direction {
            directions.insert(ext.params.id, direction);
        }
        list.push(ext.params);
    }
    (list, directions)
}

/// What an m-line's `a=ssrc` and `a=ssrc-group` lines declare.
#[derive(Default)]
struct SsrcInfo {
    streams: Vec<SsrcStream>,
    cnames: HashMap<u32, String>,
    first_cname: Option<String>,
    msids: HashMap<u32, (String, String)>,
}

fn ssrc_streams(attrs: &[Attribute]) -> SsrcInfo {
    let mut info = SsrcInfo::default();
    let mut declared = Vec::new();
    for value in values(attrs, "ssrc") {
        let value = value.trim();
        let (ssrc, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        let Some(ssrc) = number::<u32>(ssrc) else {
            continue;
        };
        if !declared.contains(&ssrc) {
            declared.push(ssrc);
        }
        let (name, attr) = rest.trim().split_once(':').unwrap_or((rest.trim(), ""));
        match name {
            "cname" if !attr.trim().is_empty() => {
                let cname = attr.trim().to_owned();
                info.first_cname.get_or_insert_with(|| cname.clone());
                info.cnames.entry(ssrc).or_insert(cname);
            }
            "msid" => {
                if let Some(msid) = parse_msid(attr) {
                    info.msids.entry(ssrc).or_insert(msid);
                }
            }
            _ => {}
        }
    }

    let mut ordered: Vec<u32> = Vec::new();
    let mut repairers = HashSet::new();
    let mut rtx_of: HashMap<u32, u32> = HashMap::new();
    let mut simulcast: Vec<u32> = Vec::new();
    for value in values(attrs, "ssrc-group") {
        let mut tokens = value.split_whitespace();
        let semantics = tokens.next().unwrap_or_default();
        let ssrcs: Vec<u32> = tokens.filter_map(number::<u32>).collect();
        match (semantics, ssrcs.as_slice()) {
            ("FID", [primary, rtx, ..]) => {
                rtx_of.entry(*primary).or_insert(*rtx);
                repairers.insert(*rtx);
                ordered.push(*primary);
            }
            ("FEC" | "FEC-FR", [_, fec, ..]) => {
                repairers.insert(*fec);
            }
            ("SIM", layers) => simulcast.extend_from_slice(layers),
            _ => {}
        }
    }
    // Streams in the most meaningful order available: a SIM group lists layers in order,
    // FID groups name the primaries, and lone SSRCs follow in the order declared.
    let mut seen = HashSet::new();
    for ssrc in simulcast.into_iter().chain(ordered).chain(declared) {
        if repairers.contains(&ssrc) || !seen.insert(ssrc) {
            continue;
        }
        info.streams.push(SsrcStream {
            ssrc,
            rtx_ssrc: rtx_of.get(&ssrc).copied(),
        });
    }
    info
}

/// RFC 3551 static payload types a stack may list without `a=rtpmap`.
fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        3 => Some(("GSM", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        13 => Some(("CN", 8000)),
        18 => Some(("G729", 8000)),
        _ => None,
    }
}

/// `<kind>/<name>`, spelled like the [`mime`] constants when it is one of them, so that
/// webrtcbin's `OPUS` and Chromium's `opus` come out the same.
fn mime_type(kind: MediaKind, name: &str) -> String {
    let known: &[&str] = match kind {
        MediaKind::Audio => &[mime::OPUS],
        MediaKind::Video => &[mime::VP8, mime::VP9, mime::H264, mime::AV1],
    };
    let canonical = known.iter().find(|m| {
        m.split_once('/')
            .is_some_and(|(_, sub)| sub.eq_ignore_ascii_case(name))
    });
    match canonical {
        Some(m) => (*m).to_owned(),
        None if name.eq_ignore_ascii_case("rtx") => format!("{kind}/rtx"),
        None => format!("{kind}/{name}"),
    }
}

/// `a=fmtp` parameters: `key=value` pairs separated by `;`. Values are numbers when they
/// are plain decimal (written without leading zeros, so the text survives a round trip),
/// except `profile-level-id`. A token without `=` (telephone-event's `0-15`, RED's
/// `111/111`) is kept as a key with empty text.
fn fmtp_parameters(text: &str, into: &mut CodecParameters) {
    for token in text.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value) = token.split_once('=').unwrap_or((token, ""));
        let (key, value) = (key.trim(), value.trim());
        let number = number::<u32>(value).filter(|n| n.to_string() == value);
        let value = match number {
            Some(n) if key != PROFILE_LEVEL_ID => ParamValue::Number(n),
            _ => ParamValue::Text(value.to_owned()),
        };
        into.insert(key.to_owned(), value);
    }
}

fn codecs(kind: MediaKind, media: &MediaDescription) -> Vec<RtpCodecParameters> {
    let attrs = &media.attributes;
    let mut rtpmaps: HashMap<u8, (String, u32, Option<String>)> = HashMap::new();
    for value in values(attrs, "rtpmap") {
        let Ok((pt, encoding)) = split_pt(value) else {
            continue;
        };
        let mut parts = encoding.split('/');
        let name = parts.next().unwrap_or_default();
        let Some(clock) = parts.next().and_then(number::<u32>) else {
            continue;
        };
        let params = parts.next().map(str::to_owned);
        rtpmaps
            .entry(pt)
            .or_insert_with(|| (name.to_owned(), clock, params));
    }
    let mut fmtps: HashMap<u8, CodecParameters> = HashMap::new();
    for value in values(attrs, "fmtp") {
        if let Ok((pt, text)) = split_pt(value) {
            fmtp_parameters(text, fmtps.entry(pt).or_default());
        }
    }
    let mut feedback: HashMap<u8, Vec<RtcpFeedback>> = HashMap::new();
    let mut wildcard: Vec<RtcpFeedback> = Vec::new();
    for value in values(attrs, "rtcp-fb") {
        let mut tokens = value.split_whitespace();
        let (Some(pt), Some(kind)) = (tokens.next(), tokens.next()) else {
            continue;
        };
        let parameter = tokens.collect::<Vec<_>>().join(" ");
        let fb = RtcpFeedback::new(kind, &parameter);
        if pt == "*" {
            wildcard.push(fb);
        } else if let Some(pt) = payload_type(pt) {
            // Lines for payload types not on the m= line are kept here and never looked
            // up: Firefox leaves them behind after setCodecPreferences.
            feedback.entry(pt).or_default().push(fb);
        }
    }

    let mut out: Vec<RtpCodecParameters> = Vec::new();
    for pt in media
        .media_name
        .formats
        .iter()
        .filter_map(|f| payload_type(f))
    {
        if out.iter().any(|c| c.payload_type == pt) {
            continue;
        }
        let (name, clock_rate, params) = match rtpmaps.get(&pt) {
            Some((name, clock, params)) => (name.as_str(), *clock, params.as_deref()),
            None => match (kind, static_payload_type(pt)) {
                (MediaKind::Audio, Some((name, clock))) => (name, clock, None),
                _ => continue,
            },
        };
        let mut rtcp_feedback: Vec<RtcpFeedback> = Vec::new();
        for fb in feedback.get(&pt).into_iter().flatten().chain(&wildcard) {
            if !rtcp_feedback.contains(fb) {
                rtcp_feedback.push(fb.clone());
            }
        }
        out.push(RtpCodecParameters {
            mime_type: mime_type(kind, name),
            payload_type: pt,
            clock_rate,
            channels: match kind {
                MediaKind::Audio => params.and_then(number::<u8>),
                MediaKind::Video => None,
            },
            parameters: fmtps.get(&pt).cloned().unwrap_or_default(),
            rtcp_feedback,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::rtp_parameters::extension_uri;

    const CHROMIUM_OFFER: &str = include_str!("../tests/sdp/chromium_offer.sdp");
    const CHROMIUM_ANSWER: &str = include_str!("../tests/sdp/chromium_answer.sdp");
    const CHROMIUM_SIMULCAST_OFFER: &str =
        include_str!("../tests/sdp/chromium_simulcast_offer.sdp");
    const CHROMIUM_SIMULCAST_ANSWER: &str =
        include_str!("../tests/sdp/chromium_simulcast_answer.sdp");
    const FIREFOX_OFFER: &str = include_str!("../tests/sdp/firefox_offer.sdp");
    const FIREFOX_ANSWER: &str = include_str!("../tests/sdp/firefox_answer.sdp");
    const WEBRTCBIN_OFFER: &str = include_str!("../tests/sdp/webrtcbin_offer.sdp");
    const WEBRTCBIN_ANSWER: &str = include_str!("../tests/sdp/webrtcbin_answer.sdp");
    const AIORTC_OFFER: &str = include_str!("../tests/sdp/aiortc_offer.sdp");
    const AIORTC_ANSWER: &str = include_str!("../tests/sdp/aiortc_answer.sdp");

    const ALL: [&str; 10] = [
        CHROMIUM_OFFER,
        CHROMIUM_ANSWER,
        CHROMIUM_SIMULCAST_OFFER,
        CHROMIUM_SIMULCAST_ANSWER,
        FIREFOX_OFFER,
        FIREFOX_ANSWER,
        WEBRTCBIN_OFFER,
        WEBRTCBIN_ANSWER,
        AIORTC_OFFER,
        AIORTC_ANSWER,
    ];

    const CHROMIUM_CNAME: &str = "q7Lv2yXb0nT4Hs1e";
    const CHROMIUM_STREAM: &str = "3f6c1b2e-8d4a-4c1e-9a7b-5e2d0c9f1a44";
    const FIREFOX_CNAME: &str = "{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}";
    const WEBRTCBIN_USER: &str = "user1850124877@host-6a1f0c3e";

    // ---- helpers -------------------------------------------------------------------

    fn sections(text: &str) -> Vec<MediaSection> {
        media_sections(&parse(text).expect("fixture parses"))
    }

    /// The publisher's m-line `index` with the server's answer to it.
    fn produce(offer: &str, answer: &str, index: usize) -> Result<RtpParameters> {
        let offer = sections(offer);
        let answer = sections(answer);
        producer_parameters(&offer[index], &answer[index])
    }

    fn codec(section: &MediaSection, pt: u8) -> &RtpCodecParameters {
        section
            .codecs
            .iter()
            .find(|c| c.payload_type == pt)
            .unwrap_or_else(|| panic!("{} has no payload type {pt}", section.label()))
    }

    fn pts(codecs: &[RtpCodecParameters]) -> Vec<u8> {
        codecs.iter().map(|c| c.payload_type).collect()
    }

    fn params(entries: &[(&str, ParamValue)]) -> CodecParameters {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn fb(entries: &[(&str, &str)]) -> Vec<RtcpFeedback> {
        entries
            .iter()
            .map(|(kind, parameter)| RtcpFeedback::new(kind, parameter))
            .collect()
    }

    fn ext_ids(list: &[RtpHeaderExtensionParameters]) -> Vec<(u8, &str)> {
        list.iter().map(|e| (e.id, e.uri.as_str())).collect()
    }

    fn ext(id: u8, uri: &str) -> RtpHeaderExtensionParameters {
        RtpHeaderExtensionParameters {
            uri: uri.to_owned(),
            id,
            encrypt: false,
        }
    }

    fn h264(plid: &str, mode: Option<u32>) -> CodecParameters {
        let mut p = params(&[
            ("level-asymmetry-allowed", 1.into()),
            ("profile-level-id", plid.into()),
        ]);
        if let Some(mode) = mode {
            p.insert("packetization-mode".to_owned(), mode.into());
        }
        p
    }

    fn apt(pt: u32) -> CodecParameters {
        params(&[("apt", pt.into())])
    }

    /// Drops every line starting with `prefix`.
    fn without_lines(text: &str, prefix: &str) -> String {
        text.split_inclusive('\n')
            .filter(|l| !l.starts_with(prefix))
            .collect()
    }

    // ---- Chromium --------------------------------------------------------------------

    #[test]
    fn chromium_offer_sections() {
        let sdp = parse(CHROMIUM_OFFER).expect("parses");
        assert_eq!(sdp.bundle_mids(), ["0", "1"]);
        assert!(!sdp.ice_lite());
        assert_eq!(sdp.media_count(), 2);
        let s = media_sections(&sdp);
        let (audio, video) = (&s[0], &s[1]);

        assert_eq!((audio.index, audio.line), (0, 8));
        assert_eq!(audio.mid.as_deref(), Some("0"));
        assert_eq!(audio.kind, Some(MediaKind::Audio));
        assert_eq!(audio.protocol, "UDP/TLS/RTP/SAVPF");
        assert_eq!(audio.port, 51820);
        assert!(!audio.rejected && !audio.bundle_only);
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(pts(&audio.codecs), [111, 63, 9, 0, 8, 13, 110, 126]);
        assert_eq!(
            codec(audio, 111),
            &RtpCodecParameters {
                mime_type: mime::OPUS.to_owned(),
                payload_type: 111,
                clock_rate: 48_000,
                channels: Some(2),
                parameters: params(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
                rtcp_feedback: fb(&[("transport-cc", "")]),
            }
        );
        // RED's parameter is a bare payload-type list, kept as a key.
        assert_eq!(codec(audio, 63).mime_type, "audio/red");
        assert_eq!(
            codec(audio, 63).parameters,
            params(&[("111/111", "".into())])
        );
        assert_eq!(codec(audio, 9).mime_type, "audio/G722");
        assert_eq!(codec(audio, 9).channels, None);
        assert_eq!(codec(audio, 126).clock_rate, 8_000);
        assert_eq!(
            ext_ids(&audio.header_extensions),
            [
                (1, extension_uri::AUDIO_LEVEL),
                (2, extension_uri::ABS_SEND_TIME),
                (3, extension_uri::TRANSPORT_WIDE_CC),
                (4, extension_uri::MID),
            ]
        );
        assert!(audio.extension_directions.is_empty());
        assert_eq!((audio.ssrc, audio.rtx_ssrc), (Some(1_870_473_418), None));
        assert_eq!(
            audio.msid,
            Some((
                CHROMIUM_STREAM.to_owned(),
                "b7d1e0c2-6a3f-4f8e-a1c9-2d4b6e8f0a13".to_owned()
            ))
        );
        assert_eq!(audio.cname.as_deref(), Some(CHROMIUM_CNAME));
        assert_eq!(audio.ice_ufrag.as_deref(), Some("Xk3v"));
        assert_eq!(audio.ice_pwd.as_deref(), Some("Zq1bH0Lr8aUe6sPk3mQ9wYt2"));
        assert_eq!(audio.setup, Some(Setup::ActPass));
        assert_eq!(audio.fingerprints.len(), 1);
        assert_eq!(audio.fingerprints[0].algorithm, "sha-256");
        assert!(audio.fingerprints[0].value.starts_with("A5:4D:CA:18"));
        assert_eq!(audio.candidates.len(), 3);
        assert_eq!(
            audio.candidates[0],
            "candidate:1467250027 1 udp 2122260223 192.168.1.23 51820 typ host generation 0 \
             network-id 1 network-cost 10"
        );
        assert!(!audio.end_of_candidates);
        assert!(audio.rtcp_mux && audio.rtcp_rsize);

        assert_eq!(video.mid.as_deref(), Some("1"));
        assert_eq!(video.kind, Some(MediaKind::Video));
        assert_eq!(
            pts(&video.codecs),
            [
                96, 97, 103, 104, 107, 108, 109, 114, 115, 116, 117, 118, 39, 40, 98, 99, 100, 101,
                45, 46, 123, 124, 125
            ]
        );
        let vp8 = codec(video, 96);
        assert_eq!(
            (vp8.mime_type.as_str(), vp8.clock_rate),
            (mime::VP8, 90_000)
        );
        assert_eq!(vp8.channels, None);
        assert!(vp8.parameters.is_empty());
        assert_eq!(
            vp8.rtcp_feedback,
            fb(&[
                ("goog-remb", ""),
                ("transport-cc", ""),
                ("ccm", "fir"),
                ("nack", ""),
                ("nack", "pli")
            ])
        );
        let rtx = codec(video, 97);
        assert!(rtx.is_rtx());
        assert_eq!(rtx.mime_type, mime::RTX);
        assert_eq!(rtx.apt(), Some(96));
        assert_eq!(rtx.parameters, apt(96));
        assert_eq!(codec(video, 103).parameters, h264("42001f", Some(1)));
        assert_eq!(codec(video, 107).parameters, h264("42001f", Some(0)));
        assert_eq!(codec(video, 109).parameters, h264("42e01f", Some(1)));
        assert_eq!(codec(video, 115).parameters, h264("42e01f", Some(0)));
        assert_eq!(codec(video, 117).parameters, h264("4d001f", Some(1)));
        assert_eq!(codec(video, 39).parameters, h264("4d001f", Some(0)));
        assert_eq!(codec(video, 39).mime_type, mime::H264);
        assert_eq!(codec(video, 40).apt(), Some(39));
        assert_eq!(codec(video, 98).mime_type, mime::VP9);
        assert_eq!(
            codec(video, 98).parameters,
            params(&[("profile-id", 0.into())])
        );
        assert_eq!(
            codec(video, 100).parameters,
            params(&[("profile-id", 2.into())])
        );
        assert_eq!(codec(video, 45).mime_type, mime::AV1);
        assert_eq!(codec(video, 125).mime_type, "video/ulpfec");
        let ids = ext_ids(&video.header_extensions);
        assert!(ids.contains(&(4, extension_uri::MID)));
        assert!(ids.contains(&(3, extension_uri::TRANSPORT_WIDE_CC)));
        assert!(ids.contains(&(10, extension_uri::RID)));
        assert!(ids.contains(&(11, extension_uri::REPAIRED_RID)));
        assert!(ids.contains(&(13, extension_uri::VIDEO_ORIENTATION)));
        assert_eq!(ids.len(), 11);
        assert_eq!(video.ssrc, Some(2_231_067_811));
        assert_eq!(video.rtx_ssrc, Some(3_460_128_871));
        assert_eq!(
            video.ssrcs,
            [SsrcStream {
                ssrc: 2_231_067_811,
                rtx_ssrc: Some(3_460_128_871)
            }]
        );
        assert!(video.rids.is_empty());
        assert_eq!(
            video.msid.as_ref().map(|(_, track)| track.as_str()),
            Some("9a0e5c7d-1b3f-4d2e-8c6a-0f7e9d1b3a5c")
        );
    }

    #[test]
    fn legacy_ssrc_msid_is_used_without_a_msid() {
        let text = without_lines(CHROMIUM_OFFER, "a=msid:");
        let s = sections(&text);
        assert_eq!(
            s[1].msid,
            Some((
                CHROMIUM_STREAM.to_owned(),
                "9a0e5c7d-1b3f-4d2e-8c6a-0f7e9d1b3a5c".to_owned()
            ))
        );
    }

    #[test]
    fn chromium_audio_producer() {
        let rtp = produce(CHROMIUM_OFFER, CHROMIUM_ANSWER, 0).expect("accepted");
        assert_eq!(
            rtp,
            RtpParameters {
                mid: Some("0".to_owned()),
                codecs: vec![RtpCodecParameters {
                    mime_type: mime::OPUS.to_owned(),
                    payload_type: 111,
                    clock_rate: 48_000,
                    channels: Some(2),
                    parameters: params(&[("minptime", 10.into()), ("useinbandfec", 1.into())]),
                    rtcp_feedback: fb(&[("transport-cc", "")]),
                }],
                header_extensions: vec![
                    ext(1, extension_uri::AUDIO_LEVEL),
                    ext(3, extension_uri::TRANSPORT_WIDE_CC),
                    ext(4, extension_uri::MID),
                ],
                encodings: vec![RtpEncodingParameters {
                    ssrc: Some(1_870_473_418),
                    ..RtpEncodingParameters::default()
                }],
                rtcp: RtcpParameters {
                    cname: Some(CHROMIUM_CNAME.to_owned()),
                    reduced_size: true,
                },
            }
        );
        assert!(rtp.media_codec().is_some_and(|c| c.payload_type == 111));
    }

    #[test]
    fn chromium_video_producer() {
        let rtp = produce(CHROMIUM_OFFER, CHROMIUM_ANSWER, 1).expect("accepted");
        assert_eq!(rtp.mid.as_deref(), Some("1"));
        // Media codecs first, each RTX after them.
        assert_eq!(pts(&rtp.codecs), [96, 109, 97, 114]);
        assert_eq!(rtp.media_codec().map(|c| c.payload_type), Some(96));
        assert_eq!(rtp.rtx_codec_for(109).map(|c| c.payload_type), Some(114));
        // Feedback and parameters come from the answer.
        assert_eq!(
            rtp.codecs[0].rtcp_feedback,
            fb(&[
                ("goog-remb", ""),
                ("ccm", "fir"),
                ("nack", ""),
                ("nack", "pli"),
                ("transport-cc", "")
            ])
        );
        assert_eq!(rtp.codecs[1].parameters, h264("42e01f", Some(1)));
        assert_eq!(
            ext_ids(&rtp.header_extensions),
            [
                (3, extension_uri::TRANSPORT_WIDE_CC),
                (4, extension_uri::MID),
                (10, extension_uri::RID),
                (11, extension_uri::REPAIRED_RID),
            ]
        );
        assert_eq!(rtp.extension_id(extension_uri::MID), Some(4));
        assert_eq!(
            rtp.encodings,
            [RtpEncodingParameters {
                ssrc: Some(2_231_067_811),
                rtx: Some(RtxParameters {
                    ssrc: 3_460_128_871
                }),
                ..RtpEncodingParameters::default()
            }]
        );
        assert_eq!(rtp.rtcp.cname.as_deref(), Some(CHROMIUM_CNAME));
    }

    #[test]
    fn answer_without_rtx_gives_no_rtx_ssrc() {
        let answer = CHROMIUM_ANSWER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 109",
        );
        let rtp = produce(CHROMIUM_OFFER, &answer, 1).expect("accepted");
        assert_eq!(pts(&rtp.codecs), [96, 109]);
        assert_eq!(rtp.encodings[0].ssrc, Some(2_231_067_811));
        assert_eq!(rtp.encodings[0].rtx, None);
    }

    #[test]
    fn rtx_whose_codec_was_dropped_is_dropped() {
        let answer = CHROMIUM_ANSWER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 109 97",
        );
        let rtp = produce(CHROMIUM_OFFER, &answer, 1).expect("accepted");
        assert_eq!(pts(&rtp.codecs), [109]);
        assert_eq!(rtp.encodings[0].rtx, None);
    }

    #[test]
    fn rejected_video_is_an_unsupported_codec_naming_the_m_line() {
        let answer = CHROMIUM_ANSWER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
            "m=video 0 UDP/TLS/RTP/SAVPF 96 97 109 114",
        );
        let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("rejected");
        assert_eq!(e.code, ErrorCode::UnsupportedCodec);
        assert!(e.message.contains("m-line 1 (mid 1, video)"), "{e}");
        assert!(e.message.contains("rejected"), "{e}");
    }

    #[test]
    fn answer_with_only_rtx_is_an_unsupported_codec() {
        let answer = CHROMIUM_ANSWER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 109 114",
            "m=video 9 UDP/TLS/RTP/SAVPF 97",
        );
        let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("no media codec");
        assert_eq!(e.code, ErrorCode::UnsupportedCodec);
        assert_eq!(
            e.message,
            "m-line 1 (mid 1, video): the answer accepted no media codec"
        );
    }

    #[test]
    fn inactive_answer_is_an_unsupported_codec() {
        let answer = CHROMIUM_ANSWER.replace("a=recvonly", "a=inactive");
        let e = produce(CHROMIUM_OFFER, &answer, 0).expect_err("inactive");
        assert_eq!(e.code, ErrorCode::UnsupportedCodec);
        assert!(
            e.message.starts_with("m-line 0 (mid 0, audio) is inactive"),
            "{e}"
        );
    }

    #[test]
    fn answer_payload_type_not_offered_is_invalid_sdp() {
        let answer = CHROMIUM_ANSWER.replace("a=rtpmap:109 H264/90000", "a=rtpmap:109 VP9/90000");
        let e = produce(CHROMIUM_OFFER, &answer, 1).expect_err("not offered");
        assert_eq!(e.code, ErrorCode::InvalidSdp);
        assert!(
            e.message
                .contains("payload type 109 (video/VP9/90000) was not offered"),
            "{e}"
        );
    }

    #[test]
    fn mismatched_m_lines_are_refused() {
        let offer = sections(CHROMIUM_OFFER);
        let answer = sections(CHROMIUM_ANSWER);
        let e = producer_parameters(&offer[1], &answer[0]).expect_err("different m-lines");
        assert_eq!(e.code, ErrorCode::InvalidSdp);
        assert!(e.message.contains("m-line 0 (mid 0, audio)"), "{e}");
    }

    #[test]
    fn chromium_simulcast_trickle_offer() {
        let s = sections(CHROMIUM_SIMULCAST_OFFER);
        let video = &s[0];
        // Trickle: sent before gathering, so port 9 and no candidates.
        assert_eq!(video.port, 9);
        assert!(!video.rejected);
        assert!(video.candidates.is_empty());
        assert!(!video.end_of_candidates);
        // Chromium writes no SSRCs for simulcast.
        assert_eq!(video.ssrc, None);
        assert!(video.ssrcs.is_empty());
        assert_eq!(video.rids, ["q", "h", "f"]);
        assert!(video.recv_rids.is_empty());

        let rtp = produce(CHROMIUM_SIMULCAST_OFFER, CHROMIUM_SIMULCAST_ANSWER, 0).expect("ok");
        let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
        assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
        assert!(
            rtp.encodings
                .iter()
                .all(|e| e.ssrc.is_none() && e.rtx.is_none())
        );
        assert_eq!(rtp.extension_id(extension_uri::RID), Some(10));
        assert_eq!(pts(&rtp.codecs), [96, 97]);
    }

    #[test]
    fn simulcast_declined_by_the_answer_gives_one_encoding() {
        let answer = without_lines(CHROMIUM_SIMULCAST_ANSWER, "a=rid:");
        let rtp = produce(CHROMIUM_SIMULCAST_OFFER, &answer, 0).expect("ok");
        assert_eq!(rtp.encodings, [RtpEncodingParameters::default()]);

        // Only the layers the answer accepts are produced.
        let answer = without_lines(CHROMIUM_SIMULCAST_ANSWER, "a=rid:h");
        let rtp = produce(CHROMIUM_SIMULCAST_OFFER, &answer, 0).expect("ok");
        let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
        assert_eq!(rids, [Some("q"), Some("f")]);
    }

    // ---- Firefox ---------------------------------------------------------------------

    #[test]
    fn firefox_offer_sections() {
        let sdp = parse(FIREFOX_OFFER).expect("parses");
        assert_eq!(sdp.bundle_mids(), ["0", "1", "2"]);
        let s = media_sections(&sdp);
        let (audio, video, recv) = (&s[0], &s[1], &s[2]);

        // Direction and fingerprint are written once, at session level.
        assert_eq!(audio.direction, Direction::SendOnly);
        assert_eq!(video.direction, Direction::SendOnly);
        assert_eq!(recv.direction, Direction::RecvOnly);
        assert!(audio.fingerprints[0].value.starts_with("34:60:BE:31"));
        assert_eq!(recv.fingerprints, audio.fingerprints);
        assert_eq!(audio.ice_ufrag.as_deref(), Some("3b9e1f2a"));
        assert_eq!(
            audio.ice_pwd.as_deref(),
            Some("6a1f0c3e9b2d4a8e7f5c1b0d3e2a9f84")
        );

        // fmtp written before rtpmap.
        assert_eq!(pts(&audio.codecs), [109, 9, 0, 8, 101]);
        let opus = codec(audio, 109);
        assert_eq!(
            (opus.mime_type.as_str(), opus.channels),
            (mime::OPUS, Some(2))
        );
        assert_eq!(
            opus.parameters,
            params(&[
                ("maxplaybackrate", 48_000.into()),
                ("stereo", 1.into()),
                ("useinbandfec", 1.into())
            ])
        );
        assert_eq!(codec(audio, 9).channels, Some(1));
        assert_eq!(codec(audio, 101).mime_type, "audio/telephone-event");
        assert_eq!(codec(audio, 101).parameters, params(&[("0-15", "".into())]));

        assert_eq!(
            ext_ids(&audio.header_extensions),
            [
                (1, extension_uri::AUDIO_LEVEL),
                (2, "urn:ietf:params:rtp-hdrext:csrc-audio-level"),
                (3, extension_uri::MID),
            ]
        );
        assert_eq!(audio.extension_direction(2), ExtensionDirection::RecvOnly);
        assert_eq!(audio.extension_direction(3), ExtensionDirection::SendRecv);
        assert_eq!(video.extension_direction(6), ExtensionDirection::RecvOnly);
        assert_eq!(
            video.header_extensions[4].uri,
            extension_uri::TRANSPORT_WIDE_CC
        );
        assert_eq!(video.header_extensions[4].id, 7);

        // Braces removed from msid; the CNAME keeps them, since RTCP carries it verbatim.
        assert_eq!(
            audio.msid,
            Some((
                "5a8c3e1f-2b4d-4e6a-9c7b-1d3f5e7a9b2c".to_owned(),
                "e1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b".to_owned()
            ))
        );
        assert_eq!(audio.cname.as_deref(), Some(FIREFOX_CNAME));

        // Component-2 candidates are kept as written.
        assert_eq!(audio.candidates.len(), 4);
        assert!(audio.candidates[2].starts_with("candidate:0 2 UDP 2122252542"));
        assert!(audio.end_of_candidates);

        // rtcp-fb lines for 121 and 103 are left over from removed codecs and ignored.
        assert_eq!(pts(&video.codecs), [120, 124, 126, 127, 97, 98, 105, 106]);
        assert_eq!(
            codec(video, 120).parameters,
            params(&[("max-fs", 12_288.into()), ("max-fr", 60.into())])
        );
        assert_eq!(codec(video, 126).parameters, h264("42e01f", Some(1)));
        // Firefox's mode-0 entry has no packetization-mode at all.
        assert_eq!(codec(video, 97).parameters, h264("42e01f", None));
        assert_eq!(codec(video, 105).parameters, h264("42001f", Some(1)));
        assert_eq!(codec(video, 126).rtcp_feedback.len(), 5);
        assert_eq!(codec(video, 98).apt(), Some(97));

        // The FID group follows the ssrc lines; its first SSRC is still the primary.
        assert_eq!(video.ssrc, Some(3_735_928_559));
        assert_eq!(video.rtx_ssrc, Some(305_419_896));
        assert_eq!(video.ssrcs.len(), 1);

        // Firefox declares an SSRC even on a recvonly m-line.
        assert_eq!(recv.ssrc, Some(1_122_334_455));
        assert_eq!(recv.msid, None);
    }

    #[test]
    fn firefox_producers() {
        let audio = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 0).expect("audio accepted");
        assert_eq!(pts(&audio.codecs), [109]);
        // The csrc-audio-level extension is recvonly for Firefox: it never sends it.
        assert_eq!(
            ext_ids(&audio.header_extensions),
            [(1, extension_uri::AUDIO_LEVEL), (3, extension_uri::MID)]
        );
        assert_eq!(audio.encodings[0].ssrc, Some(2_957_318_864));
        assert_eq!(audio.rtcp.cname.as_deref(), Some(FIREFOX_CNAME));
        // Firefox writes no rtcp-rsize on audio.
        assert!(!audio.rtcp.reduced_size);

        let video = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 1).expect("video accepted");
        assert_eq!(pts(&video.codecs), [120, 126, 124, 127]);
        assert_eq!(
            ext_ids(&video.header_extensions),
            [
                (3, extension_uri::MID),
                (7, extension_uri::TRANSPORT_WIDE_CC)
            ]
        );
        assert_eq!(
            video.encodings,
            [RtpEncodingParameters {
                ssrc: Some(3_735_928_559),
                rtx: Some(RtxParameters { ssrc: 305_419_896 }),
                ..RtpEncodingParameters::default()
            }]
        );

        // The third m-line only receives: nothing to produce.
        let e = produce(FIREFOX_OFFER, FIREFOX_ANSWER, 2).expect_err("recvonly");
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(
            e.message.starts_with("m-line 2 (mid 2, video) is recvonly"),
            "{e}"
        );

        let answer = parse(FIREFOX_ANSWER).expect("parses");
        assert!(answer.ice_lite());
        assert_eq!(
            accepted_mids(&answer),
            [
                ("0".to_owned(), true),
                ("1".to_owned(), true),
                ("2".to_owned(), false)
            ]
        );
    }

    /// Firefox simulcast: three rids and three FID pairs, no SIM group.
    const FIREFOX_SIMULCAST: &str = "v=0\r\n\
        o=mozilla...THIS_IS_SDPARTA-153.0.1 8423145396847321544 0 IN IP4 0.0.0.0\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=sendonly\r\n\
        a=group:BUNDLE 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 120 124\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=extmap:8 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
        a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
        a=fmtp:124 apt=120\r\n\
        a=mid:0\r\n\
        a=msid:{5a8c3e1f-2b4d-4e6a-9c7b-1d3f5e7a9b2c} {0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e}\r\n\
        a=rid:q send\r\n\
        a=rid:h send\r\n\
        a=rid:f send\r\n\
        a=rtcp-mux\r\n\
        a=rtpmap:120 VP8/90000\r\n\
        a=rtpmap:124 rtx/90000\r\n\
        a=setup:actpass\r\n\
        a=simulcast:send q;h;f\r\n\
        a=ssrc:1001 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc:1002 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc:1003 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc:2001 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc:2002 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc:2003 cname:{0f4e7a2b-8c1d-4e3f-a5b6-7c8d9e0f1a2b}\r\n\
        a=ssrc-group:FID 1001 2001\r\n\
        a=ssrc-group:FID 1002 2002\r\n\
        a=ssrc-group:FID 1003 2003\r\n";

    #[test]
    fn firefox_simulcast_ssrcs() {
        let s = sections(FIREFOX_SIMULCAST);
        let video = &s[0];
        assert_eq!((video.ssrc, video.rtx_ssrc), (Some(1001), Some(2001)));
        assert_eq!(
            video.ssrcs,
            [
                SsrcStream {
                    ssrc: 1001,
                    rtx_ssrc: Some(2001)
                },
                SsrcStream {
                    ssrc: 1002,
                    rtx_ssrc: Some(2002)
                },
                SsrcStream {
                    ssrc: 1003,
                    rtx_ssrc: Some(2003)
                },
            ]
        );
        assert_eq!(video.rids, ["q", "h", "f"]);

        let answer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 120 124\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
            a=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=120\r\n\
            a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            a=extmap:8 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
            a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n\
            a=recvonly\r\n";
        let rtp = producer_parameters(&s[0], &sections(answer)[0]).expect("ok");
        let rids: Vec<_> = rtp.encodings.iter().map(|e| e.rid.as_deref()).collect();
        assert_eq!(rids, [Some("q"), Some("h"), Some("f")]);
        assert!(rtp.encodings.iter().all(|e| e.ssrc.is_none()));
        assert_eq!(
            ext_ids(&rtp.header_extensions),
            [(3, extension_uri::MID), (8, extension_uri::RID)]
        );
    }

    // ---- webrtcbin -------------------------------------------------------------------

    #[test]
    fn webrtcbin_offer_sections() {
        let sdp = parse(WEBRTCBIN_OFFER).expect("parses");
        assert_eq!(sdp.bundle_mids(), ["video0", "audio1"]);
        let s = media_sections(&sdp);
        let (video, audio) = (&s[0], &s[1]);

        assert_eq!(video.mid.as_deref(), Some("video0"));
        assert_eq!(video.kind, Some(MediaKind::Video));
        assert_eq!(audio.mid.as_deref(), Some("audio1"));
        assert_eq!(audio.kind, Some(MediaKind::Audio));

        // Port 9 despite candidates; take addresses from the candidates.
        assert_eq!(video.port, 9);
        assert_eq!(video.candidates.len(), 5);
        assert!(video.candidates[3].contains("fe80::3c1e:7aff:fe2b:9d41"));
        assert!(video.candidates[4].ends_with("tcptype passive"));
        // max-bundle: port 0 plus bundle-only is not a rejection.
        assert_eq!(audio.port, 0);
        assert!(audio.bundle_only);
        assert!(!audio.rejected);
        assert!(audio.candidates.is_empty());

        let ufrag = "Hq9+Zt3/Lp0aXw7Rb2+Vc5/Nd8Ke1Gm4";
        assert_eq!(video.ice_ufrag.as_deref(), Some(ufrag));
        assert_eq!(audio.ice_ufrag.as_deref(), Some(ufrag));
        assert_eq!(ufrag.len(), 32);

        assert!(video.header_extensions.is_empty());
        assert_eq!(pts(&video.codecs), [96, 97]);
        // msid only as a legacy ssrc attribute.
        assert_eq!(
            video.msid,
            Some((WEBRTCBIN_USER.to_owned(), "webrtctransceiver0".to_owned()))
        );
        assert_eq!(
            audio.msid,
            Some((WEBRTCBIN_USER.to_owned(), "webrtctransceiver1".to_owned()))
        );
        assert_eq!(video.cname.as_deref(), Some(WEBRTCBIN_USER));
        assert_eq!(
            (video.ssrc, video.rtx_ssrc),
            (Some(1_509_887_211), Some(2_712_905_433))
        );

        // GStreamer writes OPUS in capitals; the MIME type is the canonical spelling.
        let opus = codec(audio, 111);
        assert_eq!(opus.mime_type, mime::OPUS);
        assert_eq!(opus.channels, Some(2));
        assert_eq!(
            opus.parameters,
            params(&[
                ("sprop-maxcapturerate", 48_000.into()),
                ("sprop-stereo", 0.into())
            ])
        );
    }

    #[test]
    fn webrtcbin_producers() {
        let video = produce(WEBRTCBIN_OFFER, WEBRTCBIN_ANSWER, 0).expect("video accepted");
        assert_eq!(video.mid.as_deref(), Some("video0"));
        assert_eq!(pts(&video.codecs), [96, 97]);
        assert!(video.header_extensions.is_empty());
        assert_eq!(
            video.encodings,
            [RtpEncodingParameters {
                ssrc: Some(1_509_887_211),
                rtx: Some(RtxParameters {
                    ssrc: 2_712_905_433
                }),
                ..RtpEncodingParameters::default()
            }]
        );
        assert_eq!(video.rtcp.cname.as_deref(), Some(WEBRTCBIN_USER));

        // The bundle-only m-line produces like any other.
        let audio = produce(WEBRTCBIN_OFFER, WEBRTCBIN_ANSWER, 1).expect("audio accepted");
        assert_eq!(audio.mid.as_deref(), Some("audio1"));
        assert_eq!(pts(&audio.codecs), [111]);
        assert_eq!(audio.encodings[0].ssrc, Some(3_094_017_365));
        assert_eq!(audio.encodings[0].rtx, None);
    }

    #[test]
    fn webrtcbin_subscriber_answer() {
        // webrtcbin answering a server offer: no extmaps, the second bundled m-line at port
        // 0 with bundle-only (accepted), the third refused with a bare port 0.
        let answer = "v=0\r\n\
            o=- 3116493740587244510 0 IN IP4 0.0.0.0\r\n\
            s=-\r\n\
            t=0 0\r\n\
            a=ice-options:trickle\r\n\
            a=group:BUNDLE 0 1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            c=IN IP4 0.0.0.0\r\n\
            a=setup:active\r\n\
            a=ice-ufrag:Pz4/Wq8+Rt1eYu5iOp9aSd2fGh6jKl3z\r\n\
            a=ice-pwd:Xc7+Vb0nM4qWe8/rTy2uIo6pAs1dFg5h\r\n\
            a=rtcp-mux\r\n\
            a=rtcp-rsize\r\n\
            a=recvonly\r\n\
            a=rtpmap:96 VP8/90000\r\n\
            a=rtcp-fb:96 nack pli\r\n\
            a=mid:0\r\n\
            m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n\
            c=IN IP4 0.0.0.0\r\n\
            a=bundle-only\r\n\
            a=recvonly\r\n\
            a=rtpmap:111 OPUS/48000/2\r\n\
            a=mid:1\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\n\
            c=IN IP4 0.0.0.0\r\n\
            a=inactive\r\n\
            a=mid:2\r\n";
        let sdp = parse(answer).expect("parses");
        assert_eq!(
            accepted_mids(&sdp),
            [
                ("0".to_owned(), true),
                ("1".to_owned(), true),
                ("2".to_owned(), false)
            ]
        );
        let s = media_sections(&sdp);
        assert!(s.iter().all(|m| m.header_extensions.is_empty()));
        assert_eq!(s[0].setup, Some(Setup::Active));
        assert_eq!(s[0].direction, Direction::RecvOnly);
    }

    // ---- aiortc ----------------------------------------------------------------------

    #[test]
    fn aiortc_offer_sections() {
        let s = sections(AIORTC_OFFER);
        let (audio, video) = (&s[0], &s[1]);
        assert_eq!(audio.direction, Direction::SendRecv);
        assert_eq!(pts(&audio.codecs), [96, 0, 8]);
        let opus = codec(audio, 96);
        assert_eq!(
            (opus.mime_type.as_str(), opus.clock_rate, opus.channels),
            (mime::OPUS, 48_000, Some(2))
        );
        assert!(opus.parameters.is_empty());
        assert!(opus.rtcp_feedback.is_empty());
        assert_eq!(codec(audio, 0).mime_type, "audio/PCMU");
        assert_eq!(audio.extension_id_of(extension_uri::MID), Some(1));
        assert_eq!(video.extension_id_of(extension_uri::MID), Some(1));
        assert_eq!(
            audio.extension_id_of(extension_uri::TRANSPORT_WIDE_CC),
            None
        );
        assert_eq!(
            video.extension_id_of(extension_uri::TRANSPORT_WIDE_CC),
            None
        );
        let algorithms: Vec<_> = audio
            .fingerprints
            .iter()
            .map(|f| f.algorithm.as_str())
            .collect();
        assert_eq!(algorithms, ["sha-256", "sha-384", "sha-512"]);
        assert_eq!(audio.ice_ufrag.as_deref(), Some("oQ3n"));
        assert_eq!(audio.ice_pwd.as_ref().map(String::len), Some(22));
        assert!(audio.end_of_candidates);
        assert_eq!(audio.candidates.len(), 2);
        assert_eq!(audio.ssrc, Some(2_403_915_126));
        assert_eq!(
            audio.msid.as_ref().map(|(stream, _)| stream.as_str()),
            Some("8e0a3c1d-5b7f-4e2a-9d6c-0f1e2d3c4b5a")
        );

        assert_eq!(pts(&video.codecs), [97, 98, 99, 100, 101, 102]);
        assert_eq!(codec(video, 99).parameters, h264("42001f", Some(1)));
        assert_eq!(codec(video, 101).parameters, h264("42e01f", Some(1)));
        assert_eq!(
            codec(video, 97).rtcp_feedback,
            fb(&[("nack", ""), ("nack", "pli"), ("goog-remb", "")])
        );
        assert_eq!(
            (video.ssrc, video.rtx_ssrc),
            (Some(1_096_452_871), Some(3_581_766_203))
        );
    }

    #[test]
    fn aiortc_producers() {
        let audio = produce(AIORTC_OFFER, AIORTC_ANSWER, 0).expect("audio accepted");
        assert_eq!(pts(&audio.codecs), [96]);
        assert_eq!(
            ext_ids(&audio.header_extensions),
            [(1, extension_uri::MID), (2, extension_uri::AUDIO_LEVEL)]
        );
        assert_eq!(audio.extension_id(extension_uri::TRANSPORT_WIDE_CC), None);

        let video = produce(AIORTC_OFFER, AIORTC_ANSWER, 1).expect("video accepted");
        assert_eq!(pts(&video.codecs), [101, 102]);
        assert_eq!(video.codecs[0].parameters, h264("42e01f", Some(1)));
        assert_eq!(
            video.encodings[0].rtx,
            Some(RtxParameters {
                ssrc: 3_581_766_203
            })
        );
        assert_eq!(
            video.rtcp.cname.as_deref(),
            Some("7d1e5a3c-9f0b-4c2d-8e6a-1b3c5d7e9f0a")
        );
    }

    // ---- details ---------------------------------------------------------------------

    impl MediaSection {
        fn extension_id_of(&self, uri: &str) -> Option<u8> {
            self.header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .map(|e| e.id)
        }
    }

    #[test]
    fn line_endings_do_not_matter() {
        for text in ALL {
            let lf = text.replace("\r\n", "\n");
            assert_ne!(lf, text);
            assert_eq!(sections(&lf), sections(text));
        }
    }

    #[test]
    fn fmtp_values() {
        let mut p = CodecParameters::new();
        fmtp_parameters(
            "packetization-mode=1; profile-level-id=420029 ;sprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==;x=007;;flag",
            &mut p,
        );
        assert_eq!(
            p,
            params(&[
                ("packetization-mode", 1.into()),
                // Hexadecimal even when it has only digits.
                ("profile-level-id", "420029".into()),
                // Base64 keeps its '=' padding.
                ("sprop-parameter-sets", "Z0IAH5WoFAFuQA==,aM48gA==".into()),
                // Leading zeros would be lost as a number.
                ("x", "007".into()),
                ("flag", "".into()),
            ])
        );
    }

    #[test]
    fn static_payload_types_session_extmaps_and_wildcard_feedback() {
        let text = "v=0\r\n\
            o=- 1 1 IN IP4 0.0.0.0\r\n\
            s=-\r\n\
            t=0 0\r\n\
            a=extmap:5 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
            m=audio 5004 RTP/AVPF 0 8 97\r\n\
            c=IN IP4 198.51.100.7\r\n\
            a=extmap:1 urn:ietf:params:rtp-hdrext:encrypt urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
            a=rtcp-fb:* nack\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
            c=IN IP4 0.0.0.0\r\n\
            a=mid:data\r\n\
            a=sctp-port:5000\r\n\
            a=max-message-size:262144\r\n";
        let s = sections(text);
        let audio = &s[0];
        // 97 has no rtpmap and is not static: it is left out.
        assert_eq!(pts(&audio.codecs), [0, 8]);
        assert_eq!(
            (
                codec(audio, 0).mime_type.as_str(),
                codec(audio, 0).clock_rate
            ),
            ("audio/PCMU", 8_000)
        );
        assert_eq!(codec(audio, 8).rtcp_feedback, fb(&[("nack", "")]));
        assert_eq!(
            audio.header_extensions,
            [
                RtpHeaderExtensionParameters {
                    uri: extension_uri::AUDIO_LEVEL.to_owned(),
                    id: 1,
                    encrypt: true
                },
                ext(5, extension_uri::MID),
            ]
        );
        assert_eq!(audio.mid, None);
        assert_eq!(audio.label(), "m-line 0 (audio)");
        assert_eq!(audio.direction, Direction::SendRecv);

        let data = &s[1];
        assert_eq!(data.kind, None);
        assert!(data.codecs.is_empty());
        assert_eq!(data.mid.as_deref(), Some("data"));
        let e = producer_parameters(data, data).expect_err("not media");
        assert_eq!(e.code, ErrorCode::InvalidParams);
    }

    #[test]
    fn direction_helpers() {
        assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
        assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
        assert_eq!(Direction::RecvOnly.to_string(), "recvonly");
    }

    // ---- errors ----------------------------------------------------------------------

    const BASE: [&str; 16] = [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=ice-options:trickle",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtcp-fb:96 nack pli",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=ssrc-group:FID 1 2",
        "a=ssrc:1 cname:x",
    ];

    /// BASE with line `number` (from 1) replaced.
    fn with_line(number: usize, text: &str) -> String {
        let mut lines = BASE.to_vec();
        lines[number - 1] = text;
        lines.join("\r\n") + "\r\n"
    }

    fn parse_error(text: &str) -> Error {
        let e = parse(text).expect_err("must be rejected");
        assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
        e
    }

    /// Replacing line `number` with `text` fails naming that line and `reason`.
    fn assert_line_error(number: usize, text: &str, reason: &str) {
        let e = parse_error(&with_line(number, text));
        let prefix = format!("line {number}: {text:?}: ");
        assert!(e.message.starts_with(&prefix), "{e}");
        assert!(e.message.contains(reason), "{e}");
    }

    #[test]
    fn base_is_valid() {
        let s = sections(&with_line(1, "v=0"));
        assert_eq!(s[0].ssrc, Some(1));
    }

    #[test]
    fn bad_port_names_its_line() {
        let e = parse_error(&with_line(7, "m=video x UDP/TLS/RTP/SAVPF 96 97"));
        assert_eq!(
            e.message,
            "line 7: \"m=video x UDP/TLS/RTP/SAVPF 96 97\": invalid port \"x\""
        );
        assert_eq!(e.to_string(), format!("invalid_sdp: {}", e.message));
    }

    #[test]
    fn line_level_mistakes_name_their_line() {
        let cases: &[(usize, &str, &str)] = &[
            (1, "v=1", "version 0"),
            (2, "hello world", "expected <type>=<value>"),
            (2, "O=- 1 1 IN IP4 0.0.0.0", "expected <type>=<value>"),
            (6, " a=ice-options:trickle", "expected <type>=<value>"),
            (
                7,
                "m=video 9 UDP/TLS/RTP/SAVPF 96 abc",
                "invalid payload type \"abc\"",
            ),
            (
                7,
                "m=video 9 UDP/TLS/RTP/SAVPF 96 128",
                "invalid payload type \"128\"",
            ),
            (7, "m=video 9", "expected \"m=<media>"),
            (7, "m=video 70000 UDP/TLS/RTP/SAVPF 96 97", "invalid port"),
            (
                7,
                "m=video 9/x UDP/TLS/RTP/SAVPF 96 97",
                "invalid port count",
            ),
            (
                7,
                "m=telepathy 9 UDP/TLS/RTP/SAVPF 96 97",
                "unknown media \"telepathy\"",
            ),
            (7, "m=video 9 UDP//SAVPF 96 97", "invalid protocol"),
            (9, "a=mid:", "empty mid"),
            (
                10,
                "a=rtpmap:96 VP8/ninety",
                "invalid clock rate \"ninety\"",
            ),
            (10, "a=rtpmap:96 VP8", "invalid clock rate"),
            (10, "a=rtpmap:300 VP8/90000", "invalid payload type \"300\""),
            (10, "a=rtpmap:96 /90000", "missing encoding name"),
            (12, "a=fmtp:x apt=96", "invalid payload type \"x\""),
            (13, "a=rtcp-fb:9x nack", "invalid payload type \"9x\""),
            (13, "a=rtcp-fb:96", "missing feedback type"),
            (
                14,
                "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid",
                "invalid extension id",
            ),
            (
                14,
                "a=extmap:256 urn:ietf:params:rtp-hdrext:sdes:mid",
                "invalid extension id",
            ),
            (
                14,
                "a=extmap:4/sideways urn:ietf:params:rtp-hdrext:sdes:mid",
                "unknown extension direction",
            ),
            (14, "a=extmap:4", "missing URI"),
            (15, "a=ssrc-group:FID 1", "exactly two"),
            (15, "a=ssrc-group:FID 1 two", "invalid SSRC \"two\""),
            (16, "a=ssrc:-1 cname:x", "invalid SSRC \"-1\""),
            (16, "a=ssrc:4294967296 cname:x", "invalid SSRC"),
            (16, "a=rid:q sideways", "direction must be send or recv"),
            (16, "a=setup:sometimes", "unknown setup role"),
            (
                16,
                "a=candidate:1 1 udp 2130706431 192.0.2.1 port typ host",
                "invalid port",
            ),
            (16, "a=candidate:1 1 udp", "too few fields"),
            (5, "a=extmap:15/bogus urn:x", "unknown extension direction"),
        ];
        for (number, text, reason) in cases {
            assert_line_error(*number, text, reason);
        }
    }

    #[test]
    fn audio_channel_count_is_checked() {
        let mut lines = BASE.to_vec();
        lines[6] = "m=audio 9 UDP/TLS/RTP/SAVPF 96 97";
        lines[9] = "a=rtpmap:96 opus/48000/two";
        let e = parse_error(&lines.join("\n"));
        assert!(
            e.message.starts_with(
                "line 10: \"a=rtpmap:96 opus/48000/two\": payload type 96: invalid channel count"
            ),
            "{e}"
        );
    }

    #[test]
    fn duplicate_mid_names_both_lines() {
        let text = with_line(16, "a=mid:0");
        let e = parse_error(&text);
        assert_eq!(
            e.message,
            "line 16: \"a=mid:0\": duplicate mid \"0\" (already on line 9)"
        );
    }

    #[test]
    fn parser_errors_name_their_line() {
        // These pass the line check and are refused by rtc-sdp; the line it stopped on
        // is named.
        let e = parse_error(&with_line(8, "c=IN IP9 0.0.0.0"));
        assert!(
            e.message.starts_with("line 8: \"c=IN IP9 0.0.0.0\": "),
            "{e}"
        );
        let e = parse_error(&with_line(8, "x=unknown"));
        assert!(e.message.starts_with("line 8: \"x=unknown\": "), "{e}");
        let e = parse_error(&with_line(2, "o=- one 1 IN IP4 0.0.0.0"));
        assert!(e.message.starts_with("line 2: "), "{e}");
        // Without t=, the first attribute is out of place.
        let e = parse_error(&with_line(4, "b=AS:30"));
        assert!(
            e.message.starts_with("line 5: \"a=group:BUNDLE 0\": "),
            "{e}"
        );
        // The same with \n endings.
        let e = parse_error(&with_line(8, "x=unknown").replace("\r\n", "\n"));
        assert!(e.message.starts_with("line 8: \"x=unknown\": "), "{e}");
    }

    #[test]
    fn truncated_sdp_names_its_last_line() {
        let e = parse_error("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n\r\n");
        assert!(
            e.message
                .starts_with("line 3: \"s=-\": the SDP ends after this line"),
            "{e}"
        );
    }

    #[test]
    fn non_sdp_input_is_invalid_sdp() {
        for text in [
            "",
            "   \r\n\n",
            "hello world",
            "{\"type\":\"offer\",\"sdp\":\"v=0\"}",
            "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n",
            "v=0",
            "\u{0}\u{1}\u{ff}binary\u{7f}",
        ] {
            let e = parse_error(text);
            assert!(!e.message.is_empty());
        }
        assert_eq!(parse_error("").message, "the SDP is empty");
        assert!(
            parse_error("hello")
                .message
                .starts_with("line 1: \"hello\"")
        );
    }

    #[test]
    fn long_lines_are_quoted_briefly() {
        let long = format!("a=rtpmap:96 VP8/{}", "9".repeat(500));
        let e = parse_error(&with_line(10, &long));
        assert!(
            e.message.starts_with("line 10: \"a=rtpmap:96 VP8/999"),
            "{e}"
        );
        assert!(e.message.contains('…'), "{e}");
        assert!(e.message.len() < 300, "{e}");
    }

    // ---- robustness ------------------------------------------------------------------

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }
    }

    /// Makes a plausible mistake in `text`.
    #[test]
    fn oversized_offers_are_refused_before_parsing() {
        let limits = SdpLimits {
            max_bytes: 64 * 1024,
            max_media_sections: 4,
            max_ssrc_lines: 8,
        };
        assert!(check_limits(CHROMIUM_OFFER, limits).is_ok());
        assert!(check_limits(FIREFOX_OFFER, limits).is_ok());
        let big = format!("{CHROMIUM_OFFER}{}", "a=x\r\n".repeat(20_000));
        let err = check_limits(&big, limits).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert!(err.message.contains("limits.max_sdp_bytes"), "{err}");
        let many_m = format!(
            "{CHROMIUM_OFFER}{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(5)
        );
        let err = check_limits(&many_m, limits).unwrap_err();
        assert!(
            err.message.contains("limits.max_sdp_media_sections"),
            "{err}"
        );
        let many_ssrc = format!("{CHROMIUM_OFFER}{}", "a=ssrc:1 cname:x\r\n".repeat(9));
        let err = check_limits(&many_ssrc, limits).unwrap_err();
        assert!(err.message.contains("limits.max_sdp_ssrc_lines"), "{err}");
        assert!(err.message.starts_with("line "), "{err}");
    }

    #[test]
    fn real_stacks_offers_pass_the_webrtc_offer_check() {
        for (stack, offer) in [
            ("chromium", CHROMIUM_OFFER),
            ("chromium simulcast", CHROMIUM_SIMULCAST_OFFER),
            ("firefox", FIREFOX_OFFER),
            ("webrtcbin", WEBRTCBIN_OFFER),
            ("aiortc", AIORTC_OFFER),
        ] {
            let sdp = parse(offer).unwrap();
            assert!(
                check_webrtc_offer(&sdp).is_ok(),
                "{stack}: {:?}",
                check_webrtc_offer(&sdp)
            );
        }
    }

    #[test]
    fn broken_offers_are_refused_naming_the_m_line() {
        let without = |prefix: &str| -> String {
            CHROMIUM_OFFER
                .split_inclusive('\n')
                .filter(|l| !l.starts_with(prefix))
                .collect()
        };
        for (broken, expected) in [
            (without("a=rtpmap:"), "has no a=rtpmap"),
            (without("a=ice-ufrag:"), "no a=ice-ufrag"),
            (without("a=ice-pwd:"), "no a=ice-pwd"),
            (without("a=fingerprint:"), "no a=fingerprint"),
            (without("a=mid:"), "no a=mid"),
        ] {
            let err = check_webrtc_offer(&parse(&broken).unwrap()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidSdp);
            assert!(err.message.contains(expected), "{err}");
            assert!(err.message.starts_with("line "), "{err}");
        }
    }

    #[test]
    fn bundled_m_lines_with_different_ice_credentials_are_refused() {
        // The second m-line's credentials differ from the first's in the same BUNDLE group.
        let mut seen = 0;
        let conflicting: String = CHROMIUM_OFFER
            .split_inclusive('\n')
            .map(|l| {
                if l.starts_with("a=ice-ufrag:") {
                    seen += 1;
                    if seen == 2 {
                        return "a=ice-ufrag:other\r\n".to_owned();
                    }
                }
                l.to_owned()
            })
            .collect();
        assert_eq!(seen, 2, "the fixture has an ice-ufrag per m-line");
        let err = check_webrtc_offer(&parse(&conflicting).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidSdp);
        assert!(err.message.contains("ICE credentials differ"), "{err}");
    }

    fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
        const BYTES: &[u8] = b"0123456789 :=/-*;{}\r\n\t\0\xffam";
        let mut out = text.to_vec();
        match rng.below(7) {
            0 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = BYTES[rng.below(BYTES.len())];
            }
            1 => out.truncate(rng.below(out.len() + 1)),
            2..=4 => {
                let mut lines: Vec<Vec<u8>> =
                    out.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                match rng.below(3) {
                    0 => {
                        lines.remove(a);
                    }
                    1 => {
                        let copy = lines[a].clone();
                        lines.insert(b, copy);
                    }
                    _ => lines.swap(a, b),
                }
                out = lines.join(&b'\n');
            }
            5 => {
                let at = rng.below(out.len() + 1);
                let junk: Vec<u8> = (0..rng.below(8) + 1)
                    .map(|_| BYTES[rng.below(BYTES.len())])
                    .collect();
                out.splice(at..at, junk);
            }
            _ => {
                // Grow a number past its type's range.
                if let Some(at) = out.iter().position(|b| b.is_ascii_digit()) {
                    let skip = rng.below(out.len() - at);
                    let at = at + skip;
                    out.splice(at..at, b"99999999999".iter().copied());
                }
            }
        }
        out
    }

    /// Runs everything on `text`; returns whether it parsed.
    fn exercise(text: &str) -> bool {
        match parse(text) {
            Ok(sdp) => {
                let s = media_sections(&sdp);
                for offer in &s {
                    for answer in &s {
                        let _ = producer_parameters(offer, answer);
                    }
                }
                let _ = accepted_mids(&sdp);
                let _ = (sdp.bundle_mids(), sdp.ice_lite());
                true
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidSdp, "{e}");
                assert!(
                    e.message.starts_with("line ") || e.message == "the SDP is empty",
                    "{e}"
                );
                false
            }
        }
    }

    #[test]
    fn mutated_and_random_input_never_panics() {
        let mut rng = Rng(0x5eed_cafe_f00d_1234);
        let (mut parsed, mut refused) = (0, 0);
        for fixture in ALL.iter().chain([&FIREFOX_SIMULCAST]) {
            for _ in 0..300 {
                let mut bytes = fixture.as_bytes().to_vec();
                for _ in 0..=rng.below(3) {
                    bytes = mutate(&mut rng, &bytes);
                }
                if exercise(&String::from_utf8_lossy(&bytes)) {
                    parsed += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both paths must be exercised for the loop to mean anything.
        assert!(
            parsed > 300 && refused > 300,
            "{parsed} parsed, {refused} refused"
        );
        for _ in 0..500 {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
            exercise(&String::from_utf8_lossy(&bytes));
            // Random text that at least looks like SDP lines.
            let lines: Vec<String> = (0..rng.below(12))
                .map(|_| {
                    let kind = b"vostcmab"[rng.below(8)] as char;
                    let value: String = (0..rng.below(20))
                        .map(|_| b"0123456789 :/=abcxRTPSAVF"[rng.below(25)] as char)
                        .collect();
                    format!("{kind}={value}")
                })
                .collect();
            exercise(&format!("v=0\r\n{}", lines.join("\r\n")));
        }
    }
}
