//! A publisher's stream checked against its router, mapped onto the router's numbering, and
//! described as what consumers start from.

use super::*;

/// How one producer payload type maps onto the router's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecMapping {
    /// The payload type the publisher sends.
    pub producer_pt: u8,
    /// The router's payload type for the same codec.
    pub router_pt: u8,
}

/// How one producer encoding maps onto the router's SSRC space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingMapping {
    /// The publisher's SSRC for this encoding, when signalled.
    pub ssrc: Option<u32>,
    /// The publisher's rid for this encoding, when simulcasting by rid.
    pub rid: Option<String>,
    /// The SSRC the router uses for this encoding internally and towards pipes.
    pub mapped_ssrc: u32,
}

/// How a producer's stream is renumbered inside the router: the forwarding path rewrites
/// incoming packets with this table before any consumer sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpMapping {
    /// One entry per producer codec, media codecs first, then RTX.
    pub codecs: Vec<CodecMapping>,
    /// One entry per producer encoding, in the producer's order.
    pub encodings: Vec<EncodingMapping>,
}

/// A random SSRC not in `taken`. Zero is avoided because some stacks treat it as "unset".
pub fn fresh_ssrc(taken: &[u32]) -> u32 {
    loop {
        let b = uuid::Uuid::new_v4().into_bytes();
        // Bytes 12..16 of a v4 UUID are fully random (the version and variant bits live
        // in bytes 6 and 8).
        let ssrc = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        if ssrc != 0 && !taken.contains(&ssrc) {
            return ssrc;
        }
    }
}

/// Checks that payload types are unique and the stream has a media codec.
fn validate_codecs(owner: &str, rtp: &RtpParameters) -> Result<()> {
    let mut seen = BTreeSet::new();
    for codec in &rtp.codecs {
        if !seen.insert(codec.payload_type) {
            return Err(Error::invalid(format!(
                "{owner} uses payload type {} twice",
                codec.payload_type
            )));
        }
    }
    if rtp.media_codec().is_none() {
        return Err(Error::invalid(format!("{owner} has no media codec")));
    }
    Ok(())
}

/// Checks that the incoming streams can be told apart.
fn validate_encodings(encodings: &[RtpEncodingParameters]) -> Result<()> {
    if encodings.is_empty() {
        return Err(Error::invalid("producer has no encodings"));
    }
    // A lone encoding may be identified by mid alone (Chromium without a=ssrc); several
    // need an ssrc or a rid each, or the router cannot tell which packet is which layer.
    if encodings.len() > 1
        && encodings
            .iter()
            .any(|e| e.ssrc.is_none() && e.rid.is_none())
    {
        return Err(Error::invalid(
            "producer has several encodings but not every one has an ssrc or a rid",
        ));
    }
    let mut ssrcs = BTreeSet::new();
    let mut rids = BTreeSet::new();
    for e in encodings {
        if let Some(ssrc) = e.ssrc.filter(|s| !ssrcs.insert(*s)) {
            return Err(Error::invalid(format!("producer uses ssrc {ssrc} twice")));
        }
        if let Some(rid) = e.rid.as_deref().filter(|r| !rids.insert(*r)) {
            return Err(Error::invalid(format!("producer uses rid {rid:?} twice")));
        }
    }
    Ok(())
}

/// Maps a producer's parameters onto the router's capabilities.
///
/// Every media codec must match a router codec strictly, or the result is an
/// `unsupported_codec` error naming it and its payload type. Each RTX codec maps, through
/// its `apt`, to the router RTX codec repairing the router payload type its media codec
/// mapped to. Encodings must be non-empty and distinguishable; each gets a fresh random
/// router SSRC.
pub fn producer_mapping(router: &RtpCapabilities, producer: &RtpParameters) -> Result<RtpMapping> {
    validate_codecs("producer", producer)?;
    validate_encodings(&producer.encodings)?;

    let mut codecs = Vec::with_capacity(producer.codecs.len());
    for codec in producer.codecs.iter().filter(|c| !c.is_rtx()) {
        let router_codec = router
            .codecs
            .iter()
            .filter(|rc| !is_rtx_mime(&rc.mime_type))
            .find(|rc| codecs_match(codec, *rc, MatchMode::Strict))
            .ok_or_else(|| {
                Error::unsupported_codec(format!(
                    "producer codec {} (payload type {}) matches no router codec",
                    describe(codec),
                    codec.payload_type
                ))
            })?;
        let router_pt = router_codec.preferred_payload_type.ok_or_else(|| {
            Error::invalid(format!(
                "router codec {} has no payload type",
                describe(router_codec)
            ))
        })?;
        codecs.push(CodecMapping {
            producer_pt: codec.payload_type,
            router_pt,
        });
    }

    let media_count = codecs.len();
    for rtx in producer.codecs.iter().filter(|c| c.is_rtx()) {
        let apt = rtx.apt().ok_or_else(|| {
            Error::invalid(format!(
                "producer RTX codec (payload type {}) has no valid apt",
                rtx.payload_type
            ))
        })?;
        let media = codecs[..media_count]
            .iter()
            .find(|m| m.producer_pt == apt)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "producer RTX codec (payload type {}) repairs payload type {apt}, which is \
                     not one of its media codecs",
                    rtx.payload_type
                ))
            })?;
        let router_rtx = router
            .codecs
            .iter()
            .filter(|rc| {
                is_rtx_mime(&rc.mime_type) && apt_of(&rc.parameters) == Some(media.router_pt)
            })
            .find_map(|rc| rc.preferred_payload_type)
            .ok_or_else(|| {
                Error::unsupported_codec(format!(
                    "router has no RTX codec for payload type {} (producer RTX payload type {})",
                    media.router_pt, rtx.payload_type
                ))
            })?;
        codecs.push(CodecMapping {
            producer_pt: rtx.payload_type,
            router_pt: router_rtx,
        });
    }

    let mut taken = Vec::with_capacity(producer.encodings.len());
    let encodings = producer
        .encodings
        .iter()
        .map(|e| {
            let mapped_ssrc = fresh_ssrc(&taken);
            taken.push(mapped_ssrc);
            EncodingMapping {
                ssrc: e.ssrc,
                rid: e.rid.clone(),
                mapped_ssrc,
            }
        })
        .collect();

    Ok(RtpMapping { codecs, encodings })
}

/// The media kind of a stream, from its media codec.
pub(super) fn kind_of(rtp: &RtpParameters) -> Option<MediaKind> {
    rtp.media_codec().and_then(|c| kind_of_mime(&c.mime_type))
}

/// The producer's stream as the router forwards it: what every consumer starts from.
///
/// Media codecs are renumbered to the router's payload types and carry the router's RTCP
/// feedback, but keep the producer's fmtp parameters, because those describe the actual
/// bitstream (its H.264 profile, say). Each is followed by the router's RTX codec for it,
/// whether or not the publisher sends RTX: the router answers consumers' NACKs from its own
/// buffer. Header extensions keep only those the router supports for this kind and can send,
/// with the router's ids. Encodings carry the mapped SSRCs and no rid or RTX, since
/// consumers identify streams by SSRC and get their own RTX SSRCs. The CNAME is kept so
/// subscribers can still synchronise a participant's audio and video; `mid` is per m-line
/// and left to each consumer.
pub fn consumable_parameters(
    producer: &RtpParameters,
    router: &RtpCapabilities,
    mapping: &RtpMapping,
) -> RtpParameters {
    let mut codecs: Vec<RtpCodecParameters> = Vec::new();
    for m in &mapping.codecs {
        let Some(codec) = producer
            .codecs
            .iter()
            .find(|c| c.payload_type == m.producer_pt)
        else {
            continue;
        };
        // The router's RTX follows its media codec below; a publisher's RTX is only
        // relevant to the incoming leg.
        if codec.is_rtx() || codecs.iter().any(|c| c.payload_type == m.router_pt) {
            continue;
        }
        let Some(router_codec) = router
            .codecs
            .iter()
            .find(|rc| rc.preferred_payload_type == Some(m.router_pt))
        else {
            continue;
        };
        codecs.push(RtpCodecParameters {
            mime_type: router_codec.mime_type.clone(),
            payload_type: m.router_pt,
            clock_rate: router_codec.clock_rate,
            channels: router_codec.channels,
            parameters: codec.parameters.clone(),
            rtcp_feedback: router_codec.rtcp_feedback.clone(),
        });
        let router_rtx = router.codecs.iter().find_map(|rc| {
            let repairs_it =
                is_rtx_mime(&rc.mime_type) && apt_of(&rc.parameters) == Some(m.router_pt);
            repairs_it.then_some(rc).zip(rc.preferred_payload_type)
        });
        if let Some((rtx, rtx_pt)) = router_rtx {
            codecs.push(RtpCodecParameters {
                mime_type: rtx.mime_type.clone(),
                payload_type: rtx_pt,
                clock_rate: rtx.clock_rate,
                channels: None,
                parameters: rtx.parameters.clone(),
                rtcp_feedback: Vec::new(),
            });
        }
    }

    let mut header_extensions: Vec<RtpHeaderExtensionParameters> = Vec::new();
    if let Some(kind) = kind_of(producer) {
        for ext in &producer.header_extensions {
            let router_ext = router.header_extensions.iter().find(|re| {
                re.kind == kind
                    && re.uri == ext.uri
                    && matches!(
                        re.direction,
                        ExtensionDirection::SendRecv | ExtensionDirection::SendOnly
                    )
            });
            let router_ext =
                router_ext.filter(|re| !header_extensions.iter().any(|e| e.id == re.preferred_id));
            if let Some(re) = router_ext {
                header_extensions.push(RtpHeaderExtensionParameters {
                    uri: re.uri.clone(),
                    id: re.preferred_id,
                    encrypt: re.preferred_encrypt,
                });
            }
        }
    }

    let encodings = mapping
        .encodings
        .iter()
        .zip(&producer.encodings)
        .map(|(m, e)| RtpEncodingParameters {
            ssrc: Some(m.mapped_ssrc),
            rid: None,
            rtx: None,
            max_bitrate: e.max_bitrate,
        })
        .collect();

    RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings,
        rtcp: RtcpParameters {
            cname: producer.rtcp.cname.clone(),
            reduced_size: true,
        },
    }
}
