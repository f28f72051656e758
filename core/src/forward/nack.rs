//! The NACK policy: what a receiver's NACK may make the forwarder resend.
//!
//! A NACK costs its sender a few bytes per sequence number, and each resend costs the worker a
//! rewrite, an encryption and a send. Without limits one 1.2 KB NACK repeating
//! `PID + BLP=0xFFFF` makes thousands of resends. So, for each NACK received from a consumer:
//!
//! 1. a sequence number listed twice in one NACK is looked at once ([`NackSeen`]);
//! 2. a packet already resent to this consumer within about one round trip is not resent again
//!    (the receiver could not have seen the first resend yet): the consumer's measured RTT when
//!    known, else `media.nack_default_rtt_ms`;
//! 3. at most `media.nack_max_resends_per_nack` packets are resent per NACK;
//! 4. at most `media.nack_max_resends_per_second` per consumer, as a token bucket holding one
//!    second's worth.
//!
//! Every sequence number refused is counted in the consumer's stats under its reason. The
//! per-consumer state is a token bucket and, from the consumer's first NACK on, a ring of
//! "last resent at" stamps as large as the producer's retransmission buffer (8 bytes a slot):
//! nothing is allocated per packet.

use std::time::{Duration, Instant};

/// One "resent at" stamp: which packet (by the producer's sequence number) and when, in
/// milliseconds since the limiter was made (wrapping after 49 days, harmlessly: at worst one
/// packet is judged recently resent once).
#[derive(Clone, Copy, Default)]
struct Stamp {
    seq: u16,
    used: bool,
    at_ms: u32,
}

/// Why a NACKed packet was not resent (besides not being held any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackRefusal {
    /// Already resent to this consumer within about one round trip.
    RecentlyResent,
    /// The NACK already made `nack_max_resends_per_nack` resends.
    OverPerNackLimit,
    /// The consumer's token bucket (`nack_max_resends_per_second`) is empty.
    RateLimited,
}

/// Per-consumer resend limits: a token bucket and the recently-resent ring.
pub struct ResendLimiter {
    epoch: Instant,
    /// Tokens, in thousandths of a resend, so refills need no floating point.
    tokens_milli: u64,
    capacity_milli: u64,
    per_second: u64,
    refilled: Instant,
    slots: usize,
    stamps: Option<Box<[Stamp]>>,
    resent_this_nack: usize,
}

impl ResendLimiter {
    /// A limiter allowing `per_second` resends a second (and a burst of as many), remembering
    /// resends in a ring of `slots` entries (rounded up to a power of two; the producer's
    /// retransmission buffer capacity is the natural size).
    pub fn new(per_second: u32, slots: usize, now: Instant) -> Self {
        let per_second = u64::from(per_second.max(1));
        Self {
            epoch: now,
            tokens_milli: per_second * 1000,
            capacity_milli: per_second * 1000,
            per_second,
            refilled: now,
            slots: slots.clamp(1, 1 << 15).next_power_of_two(),
            stamps: None,
            resent_this_nack: 0,
        }
    }

    /// Starts one NACK: refills the bucket for the time elapsed.
    pub fn begin(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let gained = micros.saturating_mul(self.per_second) / 1000;
        if gained > 0 {
            self.tokens_milli = (self.tokens_milli + gained).min(self.capacity_milli);
            self.refilled = now;
        }
        self.resent_this_nack = 0;
    }

    /// Whether the packet with the producer's sequence number `seq` may be resent now, given
    /// the round-trip `window` and the per-NACK cap. On `Ok`, the resend is charged: call it
    /// only for a packet that is held and will be sent.
    pub fn admit(
        &mut self,
        seq: u16,
        now: Instant,
        window: Duration,
        per_nack: usize,
    ) -> Result<(), NackRefusal> {
        let now_ms = self.ms(now);
        let mask = self.slots - 1;
        let slots = self.slots;
        let stamps = self
            .stamps
            .get_or_insert_with(|| vec![Stamp::default(); slots].into_boxed_slice());
        let stamp = &mut stamps[usize::from(seq) & mask];
        let window_ms = u32::try_from(window.as_millis()).unwrap_or(u32::MAX);
        if stamp.used && stamp.seq == seq && now_ms.wrapping_sub(stamp.at_ms) < window_ms {
            return Err(NackRefusal::RecentlyResent);
        }
        if self.resent_this_nack >= per_nack {
            return Err(NackRefusal::OverPerNackLimit);
        }
        if self.tokens_milli < 1000 {
            return Err(NackRefusal::RateLimited);
        }
        self.tokens_milli -= 1000;
        self.resent_this_nack += 1;
        *stamp = Stamp {
            seq,
            used: true,
            at_ms: now_ms,
        };
        Ok(())
    }

    fn ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }
}

/// The sequence numbers already seen in the NACK being handled: a 65,536-bit set owned by the
/// forwarder, reused for every NACK, cleared by walking the same NACK again.
pub struct NackSeen {
    bits: Box<[u64]>,
}

impl Default for NackSeen {
    fn default() -> Self {
        Self {
            bits: vec![0u64; 1 << 10].into_boxed_slice(),
        }
    }
}

impl NackSeen {
    /// Marks `seq`; returns false when it was already marked.
    pub fn insert(&mut self, seq: u16) -> bool {
        let (word, bit) = (usize::from(seq >> 6), 1u64 << (seq & 63));
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }

    /// Unmarks `seq`.
    pub fn remove(&mut self, seq: u16) {
        self.bits[usize::from(seq >> 6)] &= !(1u64 << (seq & 63));
    }

    /// Whether nothing is marked (for tests).
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    #[test]
    fn the_bucket_refills_at_its_rate_and_holds_one_second() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new(10, 64, t0);
        l.begin(t0);
        for seq in 0..10 {
            assert_eq!(l.admit(seq, t0, RTT, 100), Ok(()));
        }
        assert_eq!(l.admit(10, t0, RTT, 100), Err(NackRefusal::RateLimited));
        // 250 ms later: two and a half tokens.
        let t1 = t0 + Duration::from_millis(250);
        l.begin(t1);
        assert_eq!(l.admit(11, t1, RTT, 100), Ok(()));
        assert_eq!(l.admit(12, t1, RTT, 100), Ok(()));
        assert_eq!(l.admit(13, t1, RTT, 100), Err(NackRefusal::RateLimited));
        // A long silence refills at most one second's worth.
        let t2 = t0 + Duration::from_secs(60);
        l.begin(t2);
        let admitted = (100..200u16)
            .filter(|s| l.admit(*s, t2, RTT, 1000).is_ok())
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_packet_is_resent_once_per_round_trip_and_the_per_nack_cap_holds() {
        let t0 = Instant::now();
        let mut l = ResendLimiter::new(1000, 64, t0);
        l.begin(t0);
        assert_eq!(l.admit(7, t0, RTT, 2), Ok(()));
        assert_eq!(l.admit(7, t0, RTT, 2), Err(NackRefusal::RecentlyResent));
        assert_eq!(l.admit(8, t0, RTT, 2), Ok(()));
        assert_eq!(l.admit(9, t0, RTT, 2), Err(NackRefusal::OverPerNackLimit));
        let t1 = t0 + Duration::from_millis(99);
        l.begin(t1);
        assert_eq!(l.admit(7, t1, RTT, 2), Err(NackRefusal::RecentlyResent));
        let t2 = t0 + RTT;
        l.begin(t2);
        assert_eq!(l.admit(7, t2, RTT, 2), Ok(()));
        // 7 + 64 shares 7's slot: a different packet, not a recent resend.
        assert_eq!(l.admit(7 + 64, t2, RTT, 2), Ok(()));
    }

    #[test]
    fn seen_marks_and_clears() {
        let mut s = NackSeen::default();
        assert!(s.insert(65535));
        assert!(!s.insert(65535));
        assert!(s.insert(0));
        s.remove(65535);
        s.remove(0);
        assert!(s.is_empty());
    }
}
