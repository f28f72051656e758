//! Bounds on SDP from the backend, and the line-by-line check that runs before a
//! description is parsed, so a hostile one is refused with the line at fault.

use super::*;

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

// ---- the line-level check ------------------------------------------------------------

/// What the check remembers about the m-line it is in.
pub(crate) struct MediaContext {
    /// Whether its formats are RTP payload types (so rtpmap and friends apply).
    pub(crate) rtp: bool,
    /// Whether it is audio (rtpmap's third field is then a channel count).
    pub(crate) audio: bool,
}

/// Checks every line, returning the line numbers of the `m=` lines.
pub(crate) fn check_lines(sdp: &str) -> Result<Vec<usize>> {
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
pub(crate) fn check_media_line(value: &str) -> std::result::Result<MediaContext, String> {
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
pub(crate) fn check_attribute(
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
pub(crate) fn check_candidate(value: &str) -> std::result::Result<(), String> {
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
pub(crate) fn line_error(number: usize, text: &str, reason: impl fmt::Display) -> Error {
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
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Turns an `rtc-sdp` error into one naming the line the parser stopped on.
pub(crate) fn parser_error(sdp: &str, position: usize, message: &str) -> Error {
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
