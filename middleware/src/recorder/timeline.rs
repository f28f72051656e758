//! Maps one track's RTP timestamps to recording time (nanoseconds since the recorder
//! started), so that the tracks of a file share one timeline.
//!
//! RTP timestamps are unwrapped to 64 bits and anchored: at first to the arrival time of the
//! stream's first packet, and, once the sender sends RTCP sender reports, to the sender's
//! NTP clock (shared by a participant's audio and video, which is what lip sync needs). A new
//! SSRC, or RTP time that has drifted away from arrival time by more than
//! [`RESYNC_THRESHOLD_NS`] (a sender that restarted its clock, or paused without advancing it),
//! re-anchors on arrival, so gaps in the recording match gaps in reality.

/// How far RTP-derived time may drift from arrival time before the track is re-anchored.
pub const RESYNC_THRESHOLD_NS: i64 = 2_000_000_000;

/// Converts a sender report's 64-bit NTP time to nanoseconds.
pub fn ntp_to_ns(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64;
    let frac = ((ntp & 0xFFFF_FFFF) * 1_000_000_000) >> 32;
    secs * 1_000_000_000 + frac as i64
}

/// The relation between the sender's NTP clock and recording time, shared by the tracks of
/// one file: set by the first sender report any of them receives.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedClock {
    /// Sender NTP time (ns) minus recording time (ns) at the first sender report.
    ntp_offset: Option<i64>,
}

/// One track's timestamp mapping.
#[derive(Debug)]
pub struct Timeline {
    clock_rate: i64,
    ssrc: Option<u32>,
    last_ts: u32,
    last_ext: i64,
    /// (extended RTP timestamp, recording time ns) that anchor the mapping.
    anchor: Option<(i64, i64)>,
    /// Whether the anchor comes from a sender report.
    from_report: bool,
    /// Last time handed out, to keep the track strictly increasing.
    last_out: Option<i64>,
    /// How often the mapping was re-anchored on arrival (SSRC change, clock jump).
    pub resyncs: u64,
}

impl Timeline {
    /// A mapping for a stream with this RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: i64::from(clock_rate.max(1)),
            ssrc: None,
            last_ts: 0,
            last_ext: 0,
            anchor: None,
            from_report: false,
            last_out: None,
            resyncs: 0,
        }
    }

    fn unwrap(&mut self, ts: u32) -> i64 {
        let delta = i64::from(ts.wrapping_sub(self.last_ts) as i32);
        self.last_ext += delta;
        self.last_ts = ts;
        self.last_ext
    }

    fn ticks_to_ns(&self, ticks: i64) -> i64 {
        ticks.saturating_mul(1_000_000_000) / self.clock_rate
    }

    /// Whether this SSRC differs from the stream's current one.
    pub fn is_new_ssrc(&self, ssrc: u32) -> bool {
        self.ssrc != Some(ssrc)
    }

    /// Recording time (ns) of a frame with this SSRC and RTP timestamp whose first packet
    /// arrived at `arrival_ns`. Strictly increasing per track (by at least `min_step_ns`).
    pub fn map(&mut self, ssrc: u32, ts: u32, arrival_ns: i64, min_step_ns: i64) -> i64 {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.last_ts = ts;
            self.last_ext = 0;
            self.anchor = Some((0, arrival_ns));
            self.from_report = false;
            if self.last_out.is_some() {
                self.resyncs += 1;
            }
        }
        let ext = self.unwrap(ts);
        let (anchor_ext, anchor_ns) = *self.anchor.get_or_insert((ext, arrival_ns));
        let mut t = anchor_ns + self.ticks_to_ns(ext - anchor_ext);
        if (t - arrival_ns).abs() > RESYNC_THRESHOLD_NS {
            self.anchor = Some((ext, arrival_ns));
            self.from_report = false;
            self.resyncs += 1;
            t = arrival_ns;
        }
        let t = match self.last_out {
            Some(last) => t.max(last + min_step_ns),
            None => t.max(0),
        };
        self.last_out = Some(t);
        t
    }

    /// A sender report for `ssrc` (NTP time, RTP time) that arrived at `arrival_ns`:
    /// re-anchors the track on the sender's clock, shared through `clock` with the other
    /// tracks of its file.
    pub fn on_sender_report(
        &mut self,
        ssrc: u32,
        ntp: u64,
        rtp_ts: u32,
        arrival_ns: i64,
        clock: &mut SharedClock,
    ) {
        if self.ssrc != Some(ssrc) {
            // Reports for a stream we have no packets of yet say nothing about our timeline.
            return;
        }
        let ntp_ns = ntp_to_ns(ntp);
        let offset = *clock.ntp_offset.get_or_insert(ntp_ns - arrival_ns);
        let ext = self.last_ext + i64::from(rtp_ts.wrapping_sub(self.last_ts) as i32);
        self.anchor = Some((ext, ntp_ns - offset));
        self.from_report = true;
    }

    /// Whether the mapping follows the sender's reports (rather than arrival times).
    pub fn synced_by_reports(&self) -> bool {
        self.from_report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn follows_rtp_time_not_arrival_jitter() {
        let mut t = Timeline::new(90_000);
        assert_eq!(t.map(1, 1000, 500 * MS, 0), 500 * MS);
        // 3000 ticks = 33.3 ms later, though it arrived 50 ms later.
        assert_eq!(t.map(1, 4000, 550 * MS, 0), 500 * MS + 33_333_333);
    }

    #[test]
    fn unwraps_the_32_bit_timestamp() {
        let mut t = Timeline::new(48_000);
        let a = t.map(7, u32::MAX - 479, 1000 * MS, 0);
        let b = t.map(7, 480, 1020 * MS, 0); // 960 ticks later, across the wrap
        assert_eq!(b - a, 20 * MS);
    }

    #[test]
    fn continues_across_an_ssrc_change_from_arrival_time() {
        let mut t = Timeline::new(48_000);
        let a = t.map(1, 123_456, 100 * MS, MS);
        let b = t.map(1, 123_456 + 960, 120 * MS, MS);
        assert_eq!(b - a, 20 * MS);
        // The sender restarted: new SSRC, unrelated timestamp, 2 s of silence.
        let c = t.map(2, 9, 2120 * MS, MS);
        assert_eq!(c, 2120 * MS);
        let d = t.map(2, 9 + 960, 2140 * MS, MS);
        assert_eq!(d - c, 20 * MS);
        assert_eq!(t.resyncs, 1);
    }

    #[test]
    fn stays_increasing_when_the_new_stream_starts_early() {
        let mut t = Timeline::new(90_000);
        let a = t.map(1, 0, 1000 * MS, MS);
        let b = t.map(2, 0, 990 * MS, MS);
        assert_eq!(b, a + MS);
    }

    #[test]
    fn re_anchors_when_rtp_time_stops_matching_arrival() {
        let mut t = Timeline::new(48_000);
        t.map(1, 0, 0, 0);
        // A pause of 10 s during which the sender's RTP clock did not advance.
        let x = t.map(1, 960, 10_000 * MS, 0);
        assert_eq!(x, 10_000 * MS);
        assert_eq!(t.map(1, 1920, 10_020 * MS, 0), 10_020 * MS);
    }

    #[test]
    fn sender_reports_put_audio_and_video_on_one_clock() {
        let mut clock = SharedClock::default();
        let mut audio = Timeline::new(48_000);
        let mut video = Timeline::new(90_000);
        // Video's first packet arrives 80 ms late relative to audio (a slow network path).
        audio.map(10, 0, 1000 * MS, 0);
        video.map(20, 0, 1080 * MS, 0);
        // Both were captured at NTP second 50 (RTP 0).
        let ntp = 50u64 << 32;
        audio.on_sender_report(10, ntp, 0, 1000 * MS, &mut clock);
        video.on_sender_report(20, ntp, 0, 1080 * MS, &mut clock);
        assert!(audio.synced_by_reports() && video.synced_by_reports());
        let a = audio.map(10, 48_000, 2000 * MS, 0); // 1 s after capture start
        let v = video.map(20, 90_000, 2080 * MS, 0);
        assert_eq!(a, v, "same capture instant, same recording time");
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_to_ns((3u64 << 32) | (1u64 << 31)), 3_500_000_000);
    }
}
