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

/// Re-anchoring on a sender report moves the timeline by at most this much at once; a
/// smaller correction is spread over the following frames instead (see [`SLEW_DIVISOR`]).
pub const MAX_SLEW_NS: i64 = 1_000_000_000;
/// A correction being spread changes frame spacing by at most 1/this (10 %): a backward
/// correction never squeezes frames together, which players would see as a timestamp
/// going backwards, and a forward one never leaves a gap.
pub const SLEW_DIVISOR: i64 = 10;

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
    /// Correction (ns) still added to mapped times after a re-anchoring on a sender report;
    /// shrinks towards zero frame by frame.
    slew: i64,
    /// Extended timestamp of the last mapped frame, to know how much media time passed.
    last_mapped_ext: Option<i64>,
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
            slew: 0,
            last_mapped_ext: None,
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
            self.slew = 0;
            self.last_mapped_ext = None;
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
            self.slew = 0;
            t = arrival_ns;
        }
        if self.slew != 0 {
            let elapsed = self
                .last_mapped_ext
                .map_or(0, |last| self.ticks_to_ns(ext - last).max(0));
            let step = (elapsed / SLEW_DIVISOR).min(self.slew.abs());
            self.slew -= step * self.slew.signum();
        }
        self.last_mapped_ext = Some(ext);
        let t = t + self.slew;
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
        let mut offset = *clock.ntp_offset.get_or_insert(ntp_ns - arrival_ns);
        let ext = self.last_ext + i64::from(rtp_ts.wrapping_sub(self.last_ts) as i32);
        let mut new_anchor = (ext, ntp_ns - offset);
        if let Some((old_ext, old_ns)) = self.anchor {
            // Where the current frame lands under each anchor.
            let now_ext = self.last_ext;
            let before = old_ns + self.ticks_to_ns(now_ext - old_ext) + self.slew;
            let after = new_anchor.1 + self.ticks_to_ns(now_ext - new_anchor.0);
            let mut correction = after - before;
            if (-MAX_SLEW_NS..0).contains(&correction) {
                // Moving this track earlier would squeeze its frames together (players see
                // two frames in one frame interval as time going backwards): move the file's
                // clock, and with it the other tracks, later instead. They take the
                // correction at their next report, spread as a forward slew.
                offset += correction;
                clock.ntp_offset = Some(offset);
                new_anchor = (ext, ntp_ns - offset);
                correction = 0;
            }
            self.slew = if correction.abs() <= MAX_SLEW_NS {
                -correction
            } else {
                0
            };
        }
        self.anchor = Some(new_anchor);
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
        // Video belongs 80 ms earlier than arrival put it: the clock moved instead, and audio
        // follows at its next report.
        audio.on_sender_report(10, ntp, 0, 1000 * MS, &mut clock);
        assert!(audio.synced_by_reports() && video.synced_by_reports());
        let a = audio.map(10, 48_000, 2000 * MS, 0); // 1 s after capture start
        let v = video.map(20, 90_000, 2080 * MS, 0);
        assert_eq!(a, v, "same capture instant, same recording time");
    }

    /// One peer's audio (20 ms frames) and video (every other audio frame) on one clock.
    struct Peer {
        clock: SharedClock,
        audio: Timeline,
        video: Timeline,
        a_ts: u32,
        v_ts: u32,
        a_times: Vec<i64>,
        v_times: Vec<i64>,
    }

    impl Peer {
        fn step(&mut self, frames: usize) {
            for _ in 0..frames {
                self.a_ts += 960;
                let t = *self.a_times.last().unwrap();
                let a = self.audio.map(10, self.a_ts, t + 20 * MS, MS);
                self.a_times.push(a);
                if self.a_ts.is_multiple_of(1920) {
                    self.v_ts += 3600;
                    let t = *self.v_times.last().unwrap();
                    let v = self.video.map(20, self.v_ts, t + 40 * MS, MS);
                    self.v_times.push(v);
                }
            }
        }
    }

    /// NTP time `ns` after NTP second 50.
    fn ntp(ns: i64) -> u64 {
        (50u64 << 32) + ((ns as u64) << 32) / 1_000_000_000
    }

    #[test]
    fn a_correction_only_ever_spreads_frames_apart_and_ends_in_sync() {
        let mut audio = Timeline::new(48_000);
        let mut video = Timeline::new(90_000);
        // Both captured from NTP second 50 at RTP 0; video's first packet came 66 ms later
        // than audio's, so arrival anchoring puts video 66 ms late.
        let a0 = audio.map(10, 0, 1000 * MS, MS);
        let v0 = video.map(20, 0, 1066 * MS, MS);
        let mut p = Peer {
            clock: SharedClock::default(),
            audio,
            video,
            a_ts: 0,
            v_ts: 0,
            a_times: vec![a0],
            v_times: vec![v0],
        };
        p.step(50);
        // Audio's report sets the clock; video's says it belongs 66 ms earlier.
        let (a, v) = (p.a_ts, p.v_ts);
        p.audio.on_sender_report(
            10,
            ntp(i64::from(a) * 1_000_000 / 48),
            a,
            2000 * MS,
            &mut p.clock,
        );
        p.video.on_sender_report(
            20,
            ntp(i64::from(v) * 100_000 / 9),
            v,
            2066 * MS,
            &mut p.clock,
        );
        p.step(50);
        // Audio's next report carries the correction to audio, as a forward slew.
        let a = p.a_ts;
        p.audio.on_sender_report(
            10,
            ntp(i64::from(a) * 1_000_000 / 48),
            a,
            3000 * MS,
            &mut p.clock,
        );
        p.step(200);
        for (times, nominal) in [(&p.a_times, 20 * MS), (&p.v_times, 40 * MS)] {
            for w in times.windows(2) {
                let d = w[1] - w[0];
                assert!(
                    d >= nominal - MS / 100 && d <= nominal + nominal / 10 + MS,
                    "{d}"
                );
            }
        }
        // In sync at the end: frames captured at the same instant get the same time.
        let a_end = p.a_times.last().unwrap() + 1000 * MS;
        let v_end = p.v_times.last().unwrap() + 1000 * MS;
        let a = p.audio.map(10, p.a_ts + 48_000, a_end, MS);
        let v = p.video.map(20, p.v_ts + 90_000, v_end, MS);
        let capture_gap = (i64::from(p.a_ts) * 1_000_000 / 48) - (i64::from(p.v_ts) * 100_000 / 9);
        assert!(
            (a - v - capture_gap).abs() < 2 * MS,
            "{a} {v} {capture_gap}"
        );
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_to_ns((3u64 << 32) | (1u64 << 31)), 3_500_000_000);
    }
}
