//! Media behaviour: codecs, retransmission, keyframe requests, reports.

use super::problems::Problems;
use crate::rtp_parameters::RtpCodecCapability;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Upper bound for `media.retransmission_buffer_packets`: half the 16-bit sequence-number
/// space. A larger ring would hold two packets that share a sequence number, and a NACK could
/// then be answered with the wrong one.
pub const MAX_RETRANSMISSION_BUFFER_PACKETS: usize = 1 << 15;

/// Media behaviour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The codecs every new router offers, in order of preference. Empty means the built-in
    /// set (Opus, VP8, VP9, H.264 constrained baseline and main, AV1).
    pub codecs: Vec<RtpCodecCapability>,
    /// Packets kept per producer to answer NACKs. Rounded up to a power of two.
    pub retransmission_buffer_packets: usize,
    /// Oldest packet the retransmission buffer will resend, in milliseconds.
    pub retransmission_max_age_ms: u64,
    /// Minimum interval between keyframe requests sent to one producer, in milliseconds.
    pub keyframe_request_interval_ms: u64,
    /// Interval between RTCP sender reports sent to consumers, in milliseconds.
    pub sender_report_interval_ms: u64,
    /// Most packets resent in answer to one NACK message.
    pub nack_max_resends_per_nack: usize,
    /// Most packets resent to one consumer per second (a token bucket holding one second's
    /// worth).
    pub nack_max_resends_per_second: u32,
    /// The round-trip time assumed for a consumer whose RTT is not measured yet, in
    /// milliseconds: a packet resent to a consumer is not resent again within its RTT.
    pub nack_default_rtt_ms: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            codecs: Vec::new(),
            retransmission_buffer_packets: 1024,
            retransmission_max_age_ms: 2_000,
            keyframe_request_interval_ms: 1_000,
            sender_report_interval_ms: 1_000,
            nack_max_resends_per_nack: 128,
            nack_max_resends_per_second: 250,
            nack_default_rtt_ms: 100,
        }
    }
}

impl MediaConfig {
    /// Checks this section's rules, adding each violation to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let media = self;
        validate_codecs(p, &media.codecs);
        p.at_least(
            "media.retransmission_buffer_packets",
            media.retransmission_buffer_packets as u64,
            1,
        );
        if media.retransmission_buffer_packets > MAX_RETRANSMISSION_BUFFER_PACKETS {
            p.push(
                "media.retransmission_buffer_packets",
                format!(
                    "must be at most {MAX_RETRANSMISSION_BUFFER_PACKETS} (half the RTP sequence \
                     number space), got {}",
                    media.retransmission_buffer_packets
                ),
            );
        }
        p.at_least(
            "media.retransmission_max_age_ms",
            media.retransmission_max_age_ms,
            1,
        );
        p.at_least(
            "media.keyframe_request_interval_ms",
            media.keyframe_request_interval_ms,
            1,
        );
        p.at_least(
            "media.sender_report_interval_ms",
            media.sender_report_interval_ms,
            1,
        );
        p.at_least(
            "media.nack_max_resends_per_nack",
            media.nack_max_resends_per_nack as u64,
            1,
        );
        p.at_least(
            "media.nack_max_resends_per_second",
            u64::from(media.nack_max_resends_per_second),
            1,
        );
        p.at_least("media.nack_default_rtt_ms", media.nack_default_rtt_ms, 1);
    }
}

/// Codec entries are checked for shape, then (when well-formed) by the same negotiation a new
/// router runs, so an unsupported codec stops the server at start rather than at the first room.
fn validate_codecs(p: &mut Problems, codecs: &[RtpCodecCapability]) {
    let problems_before = p.len();
    check_codec_shapes(p, codecs);
    if p.len() == problems_before
        && !codecs.is_empty()
        && let Err(e) = crate::negotiation::router_capabilities(codecs)
    {
        p.push("media.codecs", e.message);
    }
}

fn check_codec_shapes(p: &mut Problems, codecs: &[RtpCodecCapability]) {
    let mut payload_types: HashMap<u8, usize> = HashMap::new();
    for (i, codec) in codecs.iter().enumerate() {
        let field = |name: &str| format!("media.codecs[{i}].{name}");
        let mime = &codec.mime_type;
        match mime.split_once('/') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                if !kind.eq_ignore_ascii_case(&codec.kind.to_string()) {
                    p.push(
                        field("kind"),
                        format!("is {} but mime_type {mime:?} is {kind}", codec.kind),
                    );
                }
            }
            _ if mime.is_empty() => p.push(
                field("mime_type"),
                "must not be empty: use a MIME type such as \"audio/opus\"",
            ),
            _ => p.push(
                field("mime_type"),
                format!("{mime:?} is not a MIME type of the form kind/name, such as \"video/VP8\""),
            ),
        }
        if codec.clock_rate == 0 {
            p.push(field("clock_rate"), "must be at least 1 Hz, got 0");
        }
        if codec.channels == Some(0) {
            p.push(field("channels"), "must be at least 1 when set, got 0");
        }
        if let Some(pt) = codec.preferred_payload_type {
            if pt > 127 {
                p.push(
                    field("preferred_payload_type"),
                    format!("must be at most 127 (payload types are 7 bits), got {pt}"),
                );
            } else if let Some(first) = payload_types.get(&pt) {
                p.push(
                    field("preferred_payload_type"),
                    format!("{pt} is already used by media.codecs[{first}]"),
                );
            } else {
                payload_types.insert(pt, i);
            }
        }
    }
}
