//! What the forwarder counts, and what it did with a packet.

use super::*;

/// Counters of one producer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProducerStats {
    /// RTP packets received (media and repaired).
    pub packets: u64,
    /// RTP payload bytes received.
    pub bytes: u64,
    /// Packets recovered from RTX.
    pub rtx_packets: u64,
    /// RTX packets that repaired nothing (already held).
    pub duplicates: u64,
    /// Packets dropped because the producer was paused.
    pub dropped_paused: u64,
    /// Packets with a payload type the producer did not declare.
    pub dropped_unknown_payload_type: u64,
    /// Keyframe requests asked for by consumers or the backend.
    pub keyframe_requests: u64,
    /// Keyframe requests actually sent upstream (after throttling).
    pub keyframe_requests_sent: u64,
    /// Keyframes seen.
    pub keyframes: u64,
    /// Sender reports received.
    pub sender_reports: u64,
}

/// Counters of one consumer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStats {
    /// RTP packets sent (not counting retransmissions).
    pub packets: u64,
    /// RTP payload bytes sent.
    pub bytes: u64,
    /// Packets retransmitted in answer to NACKs.
    pub retransmitted: u64,
    /// NACKed packets no longer held.
    pub retransmission_misses: u64,
    /// NACK messages received.
    pub nacks: u64,
    /// NACKed sequence numbers listed more than once in one NACK (looked at once).
    pub nack_duplicates: u64,
    /// NACKed packets not resent because they were resent within the last round trip.
    pub nack_recently_resent: u64,
    /// NACKed packets not resent because their NACK had already made
    /// `media.nack_max_resends_per_nack` resends.
    pub nack_over_limit: u64,
    /// NACKed packets not resent because the consumer had used its
    /// `media.nack_max_resends_per_second`.
    pub nack_rate_limited: u64,
    /// PLIs received.
    pub plis: u64,
    /// FIRs received.
    pub firs: u64,
    /// Packets skipped while waiting for a keyframe.
    pub dropped_waiting_keyframe: u64,
    /// Packets whose payload type this consumer did not negotiate.
    pub dropped_unmapped: u64,
    /// Sender reports sent.
    pub sender_reports: u64,
    /// Receiver-reported fraction lost (0–255, as RTCP writes it).
    pub fraction_lost: u8,
    /// Receiver-reported cumulative loss. Signed, as RTCP defines it: duplicates can outnumber
    /// losses, and a receiver then reports a negative count.
    pub packets_lost: i32,
    /// Receiver-reported jitter, in RTP timestamp units.
    pub jitter: u32,
    /// Round-trip time from the last receiver report, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// Router-wide drop counters: every packet that is not forwarded is counted somewhere.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForwarderStats {
    /// RTP packets received in all.
    pub rtp_in: u64,
    /// Copies sent to consumers.
    pub rtp_out: u64,
    /// RTP that failed to parse.
    pub malformed_rtp: u64,
    /// RTP whose SSRC matched no producer.
    pub unknown_ssrc: u64,
    /// RTCP that failed to parse.
    pub malformed_rtcp: u64,
    /// RTCP packets that concerned no known stream.
    pub unmatched_rtcp: u64,
    /// NACKed packets refused by the NACK policy, all consumers and reasons together (the
    /// sum of the consumers' `nack_duplicates`, `nack_recently_resent`, `nack_over_limit` and
    /// `nack_rate_limited`, closed consumers included).
    pub nack_refused: u64,
    /// What receivers reported about the streams sent to them.
    pub quality: QualityHistograms,
}

/// What happened to one incoming RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpOutcome {
    /// Forwarded to this many consumers.
    Forwarded {
        /// The producer it belongs to.
        producer: ProducerId,
        /// Copies sent.
        consumers: usize,
    },
    /// Not forwarded; the reason is counted in the stats.
    Dropped(DropReason),
}

/// Why an incoming packet was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not valid RTP.
    Malformed,
    /// No producer has its SSRC (or mid).
    UnknownSsrc,
    /// The producer is paused.
    ProducerPaused,
    /// A payload type the producer did not declare.
    UnknownPayloadType,
    /// An RTX packet for something already held, or padding.
    Duplicate,
}
