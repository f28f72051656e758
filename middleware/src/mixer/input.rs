//! One speaker's Opus stream on its way into the mix: a reorder buffer, the decoder, and a
//! PCM queue whose depth is kept near a target so that latency neither grows nor starves.
//!
//! The mixer's clock and the sender's clock never agree exactly. A sender that runs fast
//! fills the queue: beyond the high-water mark 10 ms are cut out with a short cross-fade, so
//! the cut does not click. A sender that runs slow (or stalls) empties it: the decoder's packet
//! loss concealment fills the gap while the speaker is active, and silence follows once the
//! speaker has been quiet long enough to be considered gone.

use super::{FRAME, SAMPLE_RATE};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Samples removed in one drift correction (10 ms).
const CUT: usize = 480;
/// Cross-fade length around a cut (2.5 ms).
const FADE: usize = 120;
/// Packets held for reordering at most; more means the stream is far ahead of playout.
const MAX_PACKETS: usize = 50;
/// A sequence-number jump beyond which the stream is taken as restarted.
const RESYNC_DISTANCE: u64 = 500;
/// Largest Opus packet duration (120 ms at 48 kHz), the decoder's output buffer size.
const MAX_DECODED: usize = SAMPLE_RATE as usize * 120 / 1000;

/// Tuning of an input's buffer.
#[derive(Clone, Copy, Debug)]
pub struct InputTuning {
    /// Audio buffered before playout starts, and the depth the buffer is held near.
    pub target: Duration,
    /// Depth beyond the target that triggers a drift correction.
    pub slack: Duration,
    /// Silence after which a speaker counts as gone: no concealment, no contribution.
    pub idle_after: Duration,
}

impl Default for InputTuning {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(40),
            slack: Duration::from_millis(60),
            idle_after: Duration::from_millis(200),
        }
    }
}

/// What happened to one input's packets, for stats and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputCounters {
    /// Packets received.
    pub packets: u64,
    /// Packets decoded.
    pub decoded: u64,
    /// Packets that arrived after their turn, or duplicates.
    pub late: u64,
    /// Packets never received, concealed by the decoder (or recovered from in-band FEC).
    pub lost: u64,
    /// Frames concealed because the buffer ran dry while the speaker was active.
    pub underruns: u64,
    /// 10 ms cuts made because the sender's clock ran ahead of the mixer's.
    pub drift_cuts: u64,
    /// Packets the decoder refused.
    pub decode_errors: u64,
}

/// One speaker's stream into the mix.
pub struct Input {
    decoder: opus::Decoder,
    tuning: InputTuning,
    /// Received packets by extended sequence number, waiting for their turn.
    packets: BTreeMap<u64, Bytes>,
    /// The extended sequence number decoded next; `None` until the first packet.
    next_seq: Option<u64>,
    /// Highest extended sequence number seen, for unwrapping.
    highest: Option<u64>,
    /// Decoded audio waiting to be mixed.
    pcm: VecDeque<i16>,
    /// Samples per packet, learnt from the stream; the size of a concealed frame.
    frame_samples: usize,
    /// Whether playout has started (the buffer reached its target once).
    playing: bool,
    last_packet: Option<Instant>,
    scratch: Vec<i16>,
    counters: InputCounters,
}

impl Input {
    /// A new input decoding to 48 kHz mono.
    pub fn new(tuning: InputTuning) -> Result<Self, opus::Error> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            tuning,
            packets: BTreeMap::new(),
            next_seq: None,
            highest: None,
            pcm: VecDeque::with_capacity(SAMPLE_RATE as usize / 4),
            frame_samples: FRAME,
            playing: false,
            last_packet: None,
            scratch: vec![0; MAX_DECODED],
            counters: InputCounters::default(),
        })
    }

    /// The counters so far.
    pub fn counters(&self) -> InputCounters {
        self.counters
    }

    /// Whether the speaker sent anything recently enough to be part of the mix.
    pub fn active(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < self.tuning.idle_after)
    }

    /// Takes one received packet (its payload; empty payloads are padding and ignored).
    pub fn push(&mut self, seq: u16, payload: Bytes, now: Instant) {
        self.counters.packets += 1;
        if payload.is_empty() {
            return;
        }
        let ext = self.extend(seq);
        let far = self
            .next_seq
            .is_some_and(|next| ext.abs_diff(next) > RESYNC_DISTANCE);
        if !self.active(now) || far {
            // A speaker coming back after silence starts a new talk spurt, and a jump in
            // sequence numbers means a restarted sender: buffer afresh from this packet instead
            // of concealing the gap or discarding everything as late.
            self.playing = false;
            self.next_seq = None;
            self.packets.clear();
            if far {
                self.highest = Some(ext);
            }
        }
        if self.next_seq.is_some_and(|next| ext < next) || self.packets.contains_key(&ext) {
            self.counters.late += 1;
            return;
        }
        self.last_packet = Some(now);
        if self.next_seq.is_none_or(|next| ext < next) {
            self.next_seq = Some(ext);
        }
        self.packets.insert(ext, payload);
        while self.packets.len() > MAX_PACKETS {
            // Far ahead of playout (a burst after a stall): the oldest go.
            if let Some((seq, _)) = self.packets.pop_first() {
                self.counters.late += 1;
                self.next_seq = Some(seq + 1);
            }
        }
    }

    fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => (1 << 16) | u64::from(seq),
            Some(h) => {
                let base = h & !0xffff;
                let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
                candidates
                    .into_iter()
                    .map(|b| b | u64::from(seq))
                    .min_by_key(|c| c.abs_diff(h))
                    .unwrap_or(base | u64::from(seq))
            }
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    fn buffered_samples(&self) -> usize {
        self.pcm.len() + self.packets.len() * self.frame_samples
    }

    /// Produces the next frame of this speaker into `out` (`FRAME` samples). Returns false
    /// when the speaker is silent or gone and contributes nothing.
    pub fn pull(&mut self, out: &mut [i16], now: Instant) -> bool {
        let target = samples(self.tuning.target);
        if !self.playing {
            if !self.active(now) || self.buffered_samples() < target {
                return false;
            }
            self.playing = true;
        }
        let high = target + samples(self.tuning.slack);
        while self.pcm.len() < out.len() {
            if !self.decode_next() {
                break;
            }
        }
        if self.pcm.len() < out.len() {
            if !self.active(now) {
                // Gone quiet: play out what is left, then stop contributing.
                self.playing = false;
                if self.pcm.is_empty() {
                    return false;
                }
                let n = self.pcm.len();
                for (o, s) in out.iter_mut().zip(self.pcm.drain(..)) {
                    *o = s;
                }
                out[n..].fill(0);
                return true;
            }
            // Active but dry: the sender is late or slow. Conceal rather than click.
            self.counters.underruns += 1;
            while self.pcm.len() < out.len() {
                self.conceal(None);
            }
        }
        if self.buffered_samples() > high {
            // Decode ahead so the cut has both sides of its cross-fade in hand.
            while self.pcm.len() < out.len() + CUT + FADE && self.decode_next() {}
            if self.pcm.len() >= out.len() + CUT + FADE {
                self.cut(out.len());
            }
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(self.pcm.drain(..n)) {
            *o = s;
        }
        true
    }

    /// Decodes the next packet in order, concealing a missing one when the packets after it
    /// show it will not come. Returns false when nothing is ready.
    fn decode_next(&mut self) -> bool {
        let Some(next) = self.next_seq else {
            return false;
        };
        if let Some(payload) = self.packets.remove(&next) {
            self.next_seq = Some(next + 1);
            self.decode(&payload);
            return true;
        }
        let Some((&first, _)) = self.packets.first_key_value() else {
            return false;
        };
        // A hole. The missing packet may be merely reordered: wait for it until playout needs
        // the audio.
        if self.pcm.len() >= FRAME {
            return false;
        }
        self.counters.lost += 1;
        let fec = if first == next + 1 {
            self.packets.get(&first).cloned()
        } else {
            None
        };
        self.conceal(fec.as_ref());
        self.next_seq = Some(next + 1);
        true
    }

    fn decode(&mut self, payload: &[u8]) {
        match self.decoder.decode(payload, &mut self.scratch, false) {
            Ok(n) => {
                self.counters.decoded += 1;
                if n > 0 {
                    self.frame_samples = n;
                }
                self.pcm.extend(&self.scratch[..n]);
            }
            Err(_) => {
                self.counters.decode_errors += 1;
                self.conceal(None);
            }
        }
    }

    /// One frame of concealment: from the next packet's in-band FEC when it is at hand,
    /// otherwise the decoder's own loss concealment.
    fn conceal(&mut self, fec_from: Option<&Bytes>) {
        let n = self.frame_samples.min(self.scratch.len());
        let result = match fec_from {
            Some(next) => self.decoder.decode(next, &mut self.scratch[..n], true),
            None => self.decoder.decode(&[], &mut self.scratch[..n], false),
        };
        let produced = result.unwrap_or(0);
        if produced == 0 {
            self.pcm.extend(std::iter::repeat_n(0, n));
        } else {
            self.pcm.extend(&self.scratch[..produced]);
        }
    }

    /// Removes `CUT` samples after the first `keep`, cross-fading across the seam.
    fn cut(&mut self, keep: usize) {
        self.counters.drift_cuts += 1;
        let start = keep.saturating_sub(FADE);
        for i in 0..FADE {
            let a = f32::from(self.pcm[start + i]);
            let b = f32::from(self.pcm[start + i + CUT]);
            let w = (i as f32 + 0.5) / FADE as f32;
            self.pcm[start + CUT + i] = (a * (1.0 - w) + b * w) as i16;
        }
        self.pcm.drain(start..start + CUT);
    }
}

fn samples(d: Duration) -> usize {
    (d.as_micros() as usize * SAMPLE_RATE as usize) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, frame: usize) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let t = (frame * FRAME + i) as f32 / SAMPLE_RATE as f32;
                (8000.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    fn encoded(frames: usize) -> Vec<Bytes> {
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)
                .unwrap();
        (0..frames)
            .map(|f| Bytes::from(enc.encode_vec(&tone(440.0, f), 1500).unwrap()))
            .collect()
    }

    const MS20: Duration = Duration::from_millis(20);

    #[test]
    fn plays_after_the_target_is_buffered_and_keeps_steady() {
        let packets = encoded(100);
        let mut input = Input::new(InputTuning::default()).unwrap();
        let t0 = Instant::now();
        let mut out = vec![0i16; FRAME];
        input.push(0, packets[0].clone(), t0);
        assert!(
            !input.pull(&mut out, t0),
            "one packet is below the 40 ms target"
        );
        input.push(1, packets[1].clone(), t0);
        let mut played = 0;
        for (i, p) in packets.iter().enumerate().skip(2) {
            let now = t0 + MS20 * i as u32;
            input.push(i as u16, p.clone(), now);
            if input.pull(&mut out, now) {
                played += 1;
            }
        }
        assert_eq!(played, 98);
        let c = input.counters();
        assert_eq!((c.lost, c.late, c.underruns, c.drift_cuts), (0, 0, 0, 0));
        assert!(
            out.iter().any(|&s| s.unsigned_abs() > 1000),
            "decoded audio"
        );
    }

    #[test]
    fn reorders_and_conceals_a_lost_packet() {
        let packets = encoded(60);
        let mut input = Input::new(InputTuning::default()).unwrap();
        let t0 = Instant::now();
        let mut out = vec![0i16; FRAME];
        // Arrival order: 0 1 2 4 3 5 6 ... with 10 never arriving; sequence numbers wrap.
        let base: u16 = 65_530;
        let mut order: Vec<usize> = (0..60).filter(|&i| i != 10).collect();
        order.swap(3, 4);
        for (tick, &i) in order.iter().enumerate() {
            let now = t0 + MS20 * tick as u32;
            input.push(base.wrapping_add(i as u16), packets[i].clone(), now);
            input.pull(&mut out, now);
        }
        let c = input.counters();
        assert_eq!(c.lost, 1, "{c:?}");
        assert_eq!(c.late, 0, "{c:?}");
        // Everything that arrived is decoded or still waiting its turn in the buffer.
        assert_eq!(c.decoded + input.packets.len() as u64, 59, "{c:?}");
    }

    #[test]
    fn a_fast_sender_is_cut_back_to_the_target_depth() {
        // 5 % fast: 21 packets for every 20 mixer frames.
        let packets = encoded(420);
        let mut input = Input::new(InputTuning::default()).unwrap();
        let t0 = Instant::now();
        let mut out = vec![0i16; FRAME];
        let mut sent = 0;
        for tick in 0..400u32 {
            let now = t0 + MS20 * tick;
            while sent * 20 < (tick as usize + 1) * 21 && sent < packets.len() {
                input.push(sent as u16, packets[sent].clone(), now);
                sent += 1;
            }
            input.pull(&mut out, now);
        }
        let c = input.counters();
        assert!(c.drift_cuts >= 30, "{c:?}");
        let depth_ms = input.buffered_samples() * 1000 / SAMPLE_RATE as usize;
        assert!(depth_ms <= 120, "latency grew to {depth_ms} ms");
    }

    #[test]
    fn a_silent_speaker_stops_contributing_and_restarts_cleanly() {
        let packets = encoded(40);
        let mut input = Input::new(InputTuning::default()).unwrap();
        let t0 = Instant::now();
        let mut out = vec![0i16; FRAME];
        for i in 0..20u32 {
            let now = t0 + MS20 * i;
            input.push(i as u16, packets[i as usize].clone(), now);
            input.pull(&mut out, now);
        }
        // One second of nothing (DTX, mute): concealment only until idle, then silence.
        let mut contributing = 0;
        for i in 20..70u32 {
            if input.pull(&mut out, t0 + MS20 * i) {
                contributing += 1;
            }
        }
        assert!(
            contributing <= 12,
            "kept concealing for {contributing} frames"
        );
        assert!(!input.pull(&mut out, t0 + MS20 * 70));
        // Talk spurt after the pause, with a jump in sequence numbers: no loss counted.
        let before = input.counters().lost;
        for i in 0..20u32 {
            let now = t0 + MS20 * (80 + i);
            input.push(1000 + i as u16, packets[20 + i as usize].clone(), now);
            input.pull(&mut out, now);
        }
        assert_eq!(input.counters().lost, before);
        assert!(input.pull(&mut out, t0 + MS20 * 100));
    }
}
