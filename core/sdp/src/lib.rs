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

mod limits;
mod media;
mod offer;

pub use limits::{SdpLimits, check_limits};
pub use offer::{accepted_mids, check_webrtc_offer, producer_parameters};

// The parts share their helpers with each other through this module.
use limits::*;
use media::*;

#[cfg(test)]
mod tests;
