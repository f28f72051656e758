//! What a room counts about media, summed over its producers and consumers (closed ones
//! included), and over a worker's rooms.

use super::{ConsumerStats, ForwarderStats, ProducerStats};
use serde::Serialize;

/// Counters summed over producers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProducerTotals {
    /// RTP packets received (media and repaired).
    pub packets: u64,
    /// RTP payload bytes received.
    pub bytes: u64,
    /// Packets recovered from RTX.
    pub rtx_packets: u64,
    /// RTX packets that repaired nothing.
    pub duplicates: u64,
    /// Packets dropped because their producer was paused.
    pub dropped_paused: u64,
    /// Packets with an undeclared payload type.
    pub dropped_unknown_payload_type: u64,
    /// Keyframe requests asked for (by consumers' PLI/FIR, joins, resumes, the backend).
    pub keyframe_requests: u64,
    /// Keyframe requests sent to senders after throttling.
    pub keyframe_requests_sent: u64,
    /// Keyframes received.
    pub keyframes: u64,
    /// Sender reports received.
    pub sender_reports: u64,
}

impl ProducerTotals {
    /// Adds one producer's counters.
    pub fn add(&mut self, s: &ProducerStats) {
        self.packets += s.packets;
        self.bytes += s.bytes;
        self.rtx_packets += s.rtx_packets;
        self.duplicates += s.duplicates;
        self.dropped_paused += s.dropped_paused;
        self.dropped_unknown_payload_type += s.dropped_unknown_payload_type;
        self.keyframe_requests += s.keyframe_requests;
        self.keyframe_requests_sent += s.keyframe_requests_sent;
        self.keyframes += s.keyframes;
        self.sender_reports += s.sender_reports;
    }

    fn merge(&mut self, o: &ProducerTotals) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.rtx_packets += o.rtx_packets;
        self.duplicates += o.duplicates;
        self.dropped_paused += o.dropped_paused;
        self.dropped_unknown_payload_type += o.dropped_unknown_payload_type;
        self.keyframe_requests += o.keyframe_requests;
        self.keyframe_requests_sent += o.keyframe_requests_sent;
        self.keyframes += o.keyframes;
        self.sender_reports += o.sender_reports;
    }
}

/// Counters summed over consumers (the receiver-reported gauges are not summable and are
/// left out; their distribution is in [`ForwarderStats::quality`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConsumerTotals {
    /// RTP packets sent, retransmissions not included.
    pub packets: u64,
    /// RTP payload bytes sent.
    pub bytes: u64,
    /// Packets retransmitted in answer to NACKs.
    pub retransmitted: u64,
    /// NACKed packets no longer held.
    pub retransmission_misses: u64,
    /// NACK messages received.
    pub nacks: u64,
    /// NACKed sequence numbers listed twice in one NACK.
    pub nack_duplicates: u64,
    /// NACKed packets resent within the last round trip already.
    pub nack_recently_resent: u64,
    /// NACKed packets beyond `media.nack_max_resends_per_nack`.
    pub nack_over_limit: u64,
    /// NACKed packets beyond `media.nack_max_resends_per_second`.
    pub nack_rate_limited: u64,
    /// PLIs received.
    pub plis: u64,
    /// FIRs received.
    pub firs: u64,
    /// Packets skipped while waiting for a keyframe.
    pub dropped_waiting_keyframe: u64,
    /// Packets whose payload type the receiver did not negotiate.
    pub dropped_unmapped: u64,
    /// Sender reports sent.
    pub sender_reports: u64,
}

impl ConsumerTotals {
    /// Adds one consumer's counters.
    pub fn add(&mut self, s: &ConsumerStats) {
        self.packets += s.packets;
        self.bytes += s.bytes;
        self.retransmitted += s.retransmitted;
        self.retransmission_misses += s.retransmission_misses;
        self.nacks += s.nacks;
        self.nack_duplicates += s.nack_duplicates;
        self.nack_recently_resent += s.nack_recently_resent;
        self.nack_over_limit += s.nack_over_limit;
        self.nack_rate_limited += s.nack_rate_limited;
        self.plis += s.plis;
        self.firs += s.firs;
        self.dropped_waiting_keyframe += s.dropped_waiting_keyframe;
        self.dropped_unmapped += s.dropped_unmapped;
        self.sender_reports += s.sender_reports;
    }

    fn merge(&mut self, o: &ConsumerTotals) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.retransmitted += o.retransmitted;
        self.retransmission_misses += o.retransmission_misses;
        self.nacks += o.nacks;
        self.nack_duplicates += o.nack_duplicates;
        self.nack_recently_resent += o.nack_recently_resent;
        self.nack_over_limit += o.nack_over_limit;
        self.nack_rate_limited += o.nack_rate_limited;
        self.plis += o.plis;
        self.firs += o.firs;
        self.dropped_waiting_keyframe += o.dropped_waiting_keyframe;
        self.dropped_unmapped += o.dropped_unmapped;
        self.sender_reports += o.sender_reports;
    }
}

/// Everything counted about media in one room, or summed over a worker's rooms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MediaTotals {
    /// Router-wide counters: packets in and out, drops, receiver-reported quality.
    pub router: ForwarderStats,
    /// Summed over producers, closed ones included.
    pub producers: ProducerTotals,
    /// Summed over consumers, closed ones included.
    pub consumers: ConsumerTotals,
    /// Packets a transport delivered while its room was busy sending (a plugin bug), dropped.
    pub reentrant_drops: u64,
}

impl MediaTotals {
    /// Adds another room's (or worker's) totals.
    pub fn merge(&mut self, o: &MediaTotals) {
        add_forwarder(&mut self.router, &o.router);
        self.producers.merge(&o.producers);
        self.consumers.merge(&o.consumers);
        self.reentrant_drops += o.reentrant_drops;
    }
}

fn add_forwarder(a: &mut ForwarderStats, b: &ForwarderStats) {
    a.rtp_in += b.rtp_in;
    a.rtp_out += b.rtp_out;
    a.malformed_rtp += b.malformed_rtp;
    a.unknown_ssrc += b.unknown_ssrc;
    a.malformed_rtcp += b.malformed_rtcp;
    a.unmatched_rtcp += b.unmatched_rtcp;
    a.nack_refused += b.nack_refused;
    a.quality.merge(&b.quality);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_field_by_field() {
        let mut a = MediaTotals::default();
        let mut b = MediaTotals::default();
        b.router.rtp_in = 3;
        b.router.quality.loss_ratio.observe(0.5);
        b.consumers.add(&ConsumerStats {
            nacks: 2,
            ..Default::default()
        });
        b.producers.add(&ProducerStats {
            keyframes: 1,
            ..Default::default()
        });
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.router.rtp_in, 6);
        assert_eq!(a.router.quality.loss_ratio.count(), 2);
        assert_eq!(a.consumers.nacks, 4);
        assert_eq!(a.producers.keyframes, 2);
    }
}
