//! What the forwarder is told: its tunables, and how to accept a producer or a consumer.

use super::*;

/// Tunables of the forwarding path.
#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    /// Packets kept per producer for retransmission.
    pub retransmission_packets: usize,
    /// Oldest packet resent.
    pub retransmission_max_age: Duration,
    /// Minimum interval between keyframe requests to one producer.
    pub keyframe_interval: Duration,
    /// Interval between sender reports to each consumer.
    pub sender_report_interval: Duration,
    /// Most packets resent in answer to one NACK (see [`super::nack`]).
    pub nack_max_resends_per_nack: usize,
    /// Most packets resent to one consumer per second, with a burst of as many.
    pub nack_max_resends_per_second: u32,
    /// A packet resent to a consumer is not resent again within its RTT; this one while the
    /// RTT is not measured yet.
    pub nack_default_rtt: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            retransmission_packets: 1024,
            retransmission_max_age: Duration::from_secs(2),
            keyframe_interval: Duration::from_secs(1),
            sender_report_interval: Duration::from_secs(1),
            nack_max_resends_per_nack: 128,
            nack_max_resends_per_second: 250,
            nack_default_rtt: Duration::from_millis(100),
        }
    }
}

impl From<&crate::config::MediaConfig> for ForwarderConfig {
    fn from(m: &crate::config::MediaConfig) -> Self {
        Self {
            retransmission_packets: m.retransmission_buffer_packets,
            retransmission_max_age: Duration::from_millis(m.retransmission_max_age_ms),
            keyframe_interval: Duration::from_millis(m.keyframe_request_interval_ms),
            sender_report_interval: Duration::from_millis(m.sender_report_interval_ms),
            nack_max_resends_per_nack: m.nack_max_resends_per_nack,
            nack_max_resends_per_second: m.nack_max_resends_per_second,
            nack_default_rtt: Duration::from_millis(m.nack_default_rtt_ms),
        }
    }
}

/// How to ask a producer's sender for a keyframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyframeRequestKind {
    /// RTCP PLI (RFC 4585).
    Pli,
    /// RTCP FIR (RFC 5104).
    Fir,
    /// The sender supports neither (audio).
    None,
}

/// A payload type a producer sends, with what the forwarder needs to know about it.
#[derive(Clone, Copy, Debug)]
pub struct ProducerCodec {
    /// The producer's payload type.
    pub payload_type: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// How keyframes are recognised.
    pub keyframes: KeyframeCodec,
}

/// Matching incoming packets by the SDES `mid` header extension, for senders (like Chromium
/// with simulcast) that do not announce their SSRCs.
#[derive(Clone, Debug)]
pub struct MidMatch {
    /// The transport's extension id for `mid`.
    pub extension_id: u8,
    /// The mid of the producer's m-line.
    pub mid: String,
}

/// Everything the forwarder needs to accept a producer.
#[derive(Clone, Debug)]
pub struct ProducerSetup {
    /// Its id.
    pub id: ProducerId,
    /// The transport it arrives on.
    pub transport: TransportId,
    /// Its media SSRC, when announced.
    pub ssrc: Option<u32>,
    /// Its RTX SSRC, when announced.
    pub rtx_ssrc: Option<u32>,
    /// The payload types it sends.
    pub codecs: Vec<ProducerCodec>,
    /// RTX payload types and the payload type each repairs (`apt`).
    pub rtx_payload_types: Vec<(u8, u8)>,
    /// Matching by mid, when SSRCs are not announced.
    pub mid: Option<MidMatch>,
    /// How to request keyframes.
    pub keyframe_request: KeyframeRequestKind,
    /// Starts paused.
    pub paused: bool,
}

/// Everything the forwarder needs to feed a consumer.
#[derive(Clone, Debug)]
pub struct ConsumerSetup {
    /// Its id.
    pub id: ConsumerId,
    /// The producer feeding it.
    pub producer: ProducerId,
    /// The transport it sends on.
    pub transport: TransportId,
    /// Its SSRC.
    pub ssrc: u32,
    /// Its RTX `(ssrc, payload type)`, when the receiver negotiated RTX.
    pub rtx: Option<(u32, u8)>,
    /// `(producer payload type, consumer payload type)` pairs.
    pub payload_types: Vec<(u8, u8)>,
    /// `(producer extension id, consumer extension id)` pairs.
    pub extensions: Vec<(u8, u8)>,
    /// Starts paused.
    pub paused: bool,
}
