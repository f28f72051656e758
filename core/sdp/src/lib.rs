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
mod tests;
