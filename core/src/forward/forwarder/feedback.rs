//! RTCP from the receivers: NACKs answered from the retransmission buffer, keyframe requests
//! passed upstream (throttled), sender reports kept for the consumers' own, reception
//! reports measured.

use super::*;

impl<S: MediaSink> Forwarder<S> {
    /// Answers a NACK under the NACK policy ([`super::nack`]): each listed sequence number
    /// once, nothing resent twice within a round trip, at most
    /// `nack_max_resends_per_nack` resends per NACK and `nack_max_resends_per_second` per
    /// consumer. Every refusal is counted.
    pub(super) fn on_nack(
        &mut self,
        transport: TransportId,
        nack: &TransportLayerNack,
        now: Instant,
    ) {
        let Some((pid, i)) = self.consumer_index(transport, nack.media_ssrc) else {
            self.stats.unmatched_rtcp += 1;
            return;
        };
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let ProducerEntry {
            buffer, consumers, ..
        } = p;
        let c = &mut consumers[i];
        c.stats.nacks += 1;
        let window = c
            .stats
            .rtt_ms
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
            .filter(|rtt| !rtt.is_zero())
            .unwrap_or(self.config.nack_default_rtt);
        let per_nack = self.config.nack_max_resends_per_nack;
        c.resend.begin(now);
        let mut refused = 0u64;
        for pair in &nack.nacks {
            for out_seq in *pair {
                if !self.nack_seen.insert(out_seq) {
                    c.stats.nack_duplicates += 1;
                    refused += 1;
                    continue;
                }
                let original = c
                    .rewriter
                    .unmap(out_seq)
                    .and_then(|seq| buffer.get(seq, now));
                let Some(original) = original else {
                    c.stats.retransmission_misses += 1;
                    continue;
                };
                let Some(pt) = c.map.payload_type(original.header.payload_type) else {
                    c.stats.retransmission_misses += 1;
                    continue;
                };
                match c
                    .resend
                    .admit(original.header.sequence_number, now, window, per_nack)
                {
                    Ok(()) => {}
                    Err(why) => {
                        match why {
                            NackRefusal::RecentlyResent => c.stats.nack_recently_resent += 1,
                            NackRefusal::OverPerNackLimit => c.stats.nack_over_limit += 1,
                            NackRefusal::RateLimited => c.stats.nack_rate_limited += 1,
                        }
                        refused += 1;
                        continue;
                    }
                }
                let ts = original
                    .header
                    .timestamp
                    .wrapping_add(c.rewriter.ts_offset());
                let (rewrite, osn) = match c.rtx {
                    Some((rtx_ssrc, rtx_pt)) => {
                        c.rtx_seq = c.rtx_seq.wrapping_add(1);
                        let rw = Rewrite {
                            ssrc: rtx_ssrc,
                            payload_type: rtx_pt,
                            sequence_number: c.rtx_seq,
                            timestamp: ts,
                        };
                        (rw, Some(out_seq))
                    }
                    None => {
                        let rw = Rewrite {
                            ssrc: c.ssrc,
                            payload_type: pt,
                            sequence_number: out_seq,
                            timestamp: ts,
                        };
                        (rw, None)
                    }
                };
                if let Some(bytes) = self.writer.write(original, rewrite, &c.map, osn) {
                    c.sink.send_rtp(bytes);
                    c.stats.retransmitted += 1;
                }
            }
        }
        // Clear the seen-set by walking the same NACK again: no allocation, no 8 KB wipe.
        for pair in &nack.nacks {
            for out_seq in *pair {
                self.nack_seen.remove(out_seq);
            }
        }
        self.stats.nack_refused += refused;
    }

    pub(super) fn on_keyframe_feedback(
        &mut self,
        transport: TransportId,
        ssrc: u32,
        fir: bool,
        now: Instant,
    ) {
        let Some((p, i)) = self.consumer_mut(transport, ssrc) else {
            self.stats.unmatched_rtcp += 1;
            return;
        };
        let c = &mut p.consumers[i];
        if fir {
            c.stats.firs += 1;
        } else {
            c.stats.plis += 1;
        }
        if !c.paused && !p.setup.paused {
            Self::request_keyframe_of(p, now);
        }
    }

    pub(super) fn on_sender_report(
        &mut self,
        transport: TransportId,
        sr: &SenderReport,
        now: Instant,
    ) {
        let Some(&(pid, Stream::Media)) = self.by_ssrc.get(&(transport, sr.ssrc)) else {
            self.stats.unmatched_rtcp += 1;
            return;
        };
        if let Some(p) = self.producers.get_mut(&pid) {
            p.stats.sender_reports += 1;
            p.last_sr = Some(SenderReportInfo {
                ntp: sr.ntp_time,
                rtp: sr.rtp_time,
                received: now,
            });
        }
    }

    pub(super) fn on_reception_reports(
        &mut self,
        transport: TransportId,
        reports: &[rtc_rtcp::reception_report::ReceptionReport],
        now: Instant,
    ) {
        for r in reports {
            let Some((pid, i)) = self.consumer_index(transport, r.ssrc) else {
                continue;
            };
            let Some(p) = self.producers.get_mut(&pid) else {
                continue;
            };
            let quality = &mut self.stats.quality;
            let clock_rate = p.clock_rate;
            let c = &mut p.consumers[i];
            c.stats.fraction_lost = r.fraction_lost;
            c.stats.packets_lost = cumulative_loss(r.total_lost);
            c.stats.jitter = r.jitter;
            quality
                .loss_ratio
                .observe(f64::from(r.fraction_lost) / 256.0);
            if clock_rate > 0 {
                quality
                    .jitter_seconds
                    .observe(f64::from(r.jitter) / f64::from(clock_rate));
            }
            if let Some((lsr, sent_at)) = c.last_sr
                && r.last_sender_report == lsr
                && lsr != 0
            {
                let since = now.saturating_duration_since(sent_at).as_secs_f64();
                let delay = f64::from(r.delay) / 65536.0;
                let rtt = (since - delay).max(0.0);
                c.stats.rtt_ms = Some(rtt * 1000.0);
                quality.rtt_seconds.observe(rtt);
            }
        }
    }

    pub(super) fn request_keyframe_of(p: &mut ProducerEntry<S>, now: Instant) {
        p.stats.keyframe_requests += 1;
        if p.setup.keyframe_request != KeyframeRequestKind::None && p.throttle.request(now) {
            Self::send_keyframe_request(p);
        }
    }

    pub(super) fn send_keyframe_request(p: &mut ProducerEntry<S>) {
        let media_ssrc = p.setup.ssrc.unwrap_or_default();
        let bytes = match p.setup.keyframe_request {
            KeyframeRequestKind::Pli => PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            }
            .marshal(),
            KeyframeRequestKind::Fir => {
                p.fir_seq = p.fir_seq.wrapping_add(1);
                FullIntraRequest {
                    sender_ssrc: 0,
                    media_ssrc,
                    fir: vec![FirEntry {
                        ssrc: media_ssrc,
                        sequence_number: p.fir_seq,
                    }],
                }
                .marshal()
            }
            KeyframeRequestKind::None => return,
        };
        if let Ok(bytes) = bytes {
            p.sink.send_rtcp(&bytes);
            p.stats.keyframe_requests_sent += 1;
        }
    }
}
