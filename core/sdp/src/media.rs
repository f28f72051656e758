//! Building a [`MediaSection`] from a parsed m-line: codecs, header extensions, SSRCs,
//! directions, fingerprints, and the small parsers they share.

use super::*;

/// A number written in plain decimal digits: no sign, no spaces (Rust's `parse` takes `+1`).
pub(crate) fn number<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An RTP payload type: 0 to 127.
pub(crate) fn payload_type(text: &str) -> Option<u8> {
    number::<u8>(text).filter(|pt| *pt <= 127)
}

/// Splits `<pt> <rest>`, checking the payload type.
pub(crate) fn split_pt(value: &str) -> std::result::Result<(u8, &str), String> {
    let value = value.trim();
    let (pt, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let pt = payload_type(pt).ok_or_else(|| format!("invalid payload type {pt:?}"))?;
    Ok((pt, rest.trim()))
}

/// A parsed `a=extmap`.
pub(crate) struct ExtMap {
    pub(crate) params: RtpHeaderExtensionParameters,
    pub(crate) direction: Option<ExtensionDirection>,
}

/// Parses `<id>[/<direction>] <uri> [<attributes>]`; an RFC 6904 encrypted extension
/// (`urn:ietf:params:rtp-hdrext:encrypt <uri>`) gives the inner URI with `encrypt` set.
pub(crate) fn parse_extmap(value: &str) -> std::result::Result<ExtMap, String> {
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
pub(crate) fn values<'a>(
    attributes: &'a [Attribute],
    key: &'a str,
) -> impl Iterator<Item = &'a str> {
    attributes
        .iter()
        .filter(move |a| a.key == key)
        .map(|a| a.value.as_deref().unwrap_or_default())
}

/// Whether an attribute named `key` is present.
pub(crate) fn has(attributes: &[Attribute], key: &str) -> bool {
    attributes.iter().any(|a| a.key == key)
}

/// The first trimmed value of `key`, here or else at session level.
pub(crate) fn first_value(
    attributes: &[Attribute],
    session: &[Attribute],
    key: &str,
) -> Option<String> {
    values(attributes, key)
        .chain(values(session, key))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

pub(crate) fn media_section(
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

pub(crate) fn direction_of(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.key))
}

pub(crate) fn fingerprints_of(attributes: &[Attribute]) -> Vec<Fingerprint> {
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
pub(crate) fn parse_msid(value: &str) -> Option<(String, String)> {
    let mut tokens = value.split_whitespace();
    let stream = tokens.next()?;
    let track = tokens.next().unwrap_or_default();
    Some((strip_braces(stream), strip_braces(track)))
}

pub(crate) fn strip_braces(id: &str) -> String {
    id.strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or(id)
        .to_owned()
}

/// Header extensions of an m-line, then session-level ones whose id it does not use.
pub(crate) fn extensions(
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
pub(crate) struct SsrcInfo {
    pub(crate) streams: Vec<SsrcStream>,
    pub(crate) cnames: HashMap<u32, String>,
    pub(crate) first_cname: Option<String>,
    pub(crate) msids: HashMap<u32, (String, String)>,
}

pub(crate) fn ssrc_streams(attrs: &[Attribute]) -> SsrcInfo {
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
pub(crate) fn static_payload_type(pt: u8) -> Option<(&'static str, u32)> {
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
pub(crate) fn mime_type(kind: MediaKind, name: &str) -> String {
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
pub(crate) fn fmtp_parameters(text: &str, into: &mut CodecParameters) {
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

pub(crate) fn codecs(kind: MediaKind, media: &MediaDescription) -> Vec<RtpCodecParameters> {
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
