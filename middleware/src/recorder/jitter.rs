//! A reordering buffer for one RTP stream: packets go in as they arrive and come out in
//! sequence order, with gaps declared lost once the packet after them has waited long enough.

use rtc_rtp::Packet;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the buffer hands on, in sequence order.
#[derive(Debug)]
pub enum Popped {
    /// The next packet, with the instant it arrived.
    Packet(Packet, Instant),
    /// This many packets before the next one never came in time.
    Lost(u64),
}

/// Reorders one stream's packets by (extended) sequence number.
#[derive(Debug)]
pub struct JitterBuffer {
    latency: Duration,
    max_packets: usize,
    /// Extended sequence number of the next packet to hand on.
    next: Option<u64>,
    /// Highest extended sequence number seen: the reference for unwrapping.
    highest: Option<u64>,
    packets: BTreeMap<u64, (Instant, Packet)>,
    /// Packets declared lost.
    pub lost: u64,
    /// Packets that arrived after their place was passed (or declared lost).
    pub late: u64,
    /// Packets received twice.
    pub duplicates: u64,
}

/// Start extended numbers well above zero so a stream's first packets may arrive out of order.
const EXT_BASE: u64 = 1 << 32;

impl JitterBuffer {
    /// A buffer that waits at most `latency` for a missing packet, and holds at most
    /// `max_packets` before giving up on the oldest gap.
    pub fn new(latency: Duration, max_packets: usize) -> Self {
        Self {
            latency,
            max_packets: max_packets.max(1),
            next: None,
            highest: None,
            packets: BTreeMap::new(),
            lost: 0,
            late: 0,
            duplicates: 0,
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Forgets the stream (a new SSRC starts its own numbering). Call [`JitterBuffer::flush`]
    /// first to keep what is held.
    pub fn reset(&mut self) {
        self.next = None;
        self.highest = None;
        self.packets.clear();
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            None => EXT_BASE + u64::from(seq),
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                (h as i64 + delta) as u64
            }
        }
    }

    /// Takes a packet that arrived at `now`.
    pub fn push(&mut self, packet: Packet, now: Instant) {
        let ext = self.extend(packet.header.sequence_number);
        if let Some(next) = self.next
            && ext < next
        {
            self.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.duplicates += 1;
            return;
        }
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        self.packets.insert(ext, (now, packet));
    }

    /// The next packet or gap that is ready at `now`, if any.
    pub fn pop(&mut self, now: Instant) -> Option<Popped> {
        self.pop_inner(Some(now))
    }

    /// The next packet or gap, not waiting for anything missing (end of stream).
    pub fn flush(&mut self) -> Option<Popped> {
        self.pop_inner(None)
    }

    fn pop_inner(&mut self, now: Option<Instant>) -> Option<Popped> {
        let (&first, &(arrived, _)) = self.packets.iter().next()?;
        let waited_enough = match now {
            None => true,
            Some(now) => now.saturating_duration_since(arrived) >= self.latency,
        };
        // A stream's first packet waits out the latency too, so that packets sent before it
        // but overtaken by it are not "late".
        if self.next.is_none() && !waited_enough && self.packets.len() <= self.max_packets {
            return None;
        }
        let next = *self.next.get_or_insert(first);
        if first == next {
            let (_, (at, packet)) = self.packets.pop_first()?;
            self.next = Some(next + 1);
            return Some(Popped::Packet(packet, at));
        }
        // A gap before `first`: give up on it once `first` has waited long enough, or the
        // buffer is full.
        if waited_enough || self.packets.len() > self.max_packets {
            let gap = first - next;
            self.lost += gap;
            self.next = Some(first);
            return Some(Popped::Lost(gap));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.payload = bytes::Bytes::from(vec![seq as u8]);
        p
    }

    fn drain(jb: &mut JitterBuffer, now: Instant) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(p) = jb.pop(now) {
            out.push(match p {
                Popped::Packet(p, _) => i64::from(p.header.sequence_number),
                Popped::Lost(n) => -(n as i64),
            });
        }
        out
    }

    #[test]
    fn reorders_within_latency() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(Duration::from_millis(100), 100);
        jb.push(pkt(10), t0);
        assert_eq!(
            drain(&mut jb, t0),
            Vec::<i64>::new(),
            "the first packet waits"
        );
        jb.push(pkt(9), t0 + Duration::from_millis(10));
        assert_eq!(drain(&mut jb, t0 + Duration::from_millis(110)), vec![9, 10]);
        jb.push(pkt(12), t0);
        jb.push(pkt(13), t0);
        // 11 is missing but the wait is not over: nothing comes out.
        assert_eq!(
            drain(&mut jb, t0 + Duration::from_millis(50)),
            Vec::<i64>::new()
        );
        jb.push(pkt(11), t0 + Duration::from_millis(60));
        assert_eq!(
            drain(&mut jb, t0 + Duration::from_millis(60)),
            vec![11, 12, 13]
        );
        assert_eq!(jb.lost, 0);
    }

    #[test]
    fn declares_loss_after_latency_and_counts_late_arrivals() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(Duration::from_millis(100), 100);
        jb.push(pkt(1), t0);
        assert_eq!(drain(&mut jb, t0 + Duration::from_millis(100)), vec![1]);
        jb.push(pkt(4), t0 + Duration::from_millis(100));
        assert_eq!(
            drain(&mut jb, t0 + Duration::from_millis(199)),
            Vec::<i64>::new()
        );
        assert_eq!(drain(&mut jb, t0 + Duration::from_millis(200)), vec![-2, 4]);
        assert_eq!(jb.lost, 2);
        jb.push(pkt(2), t0 + Duration::from_millis(250));
        assert_eq!(jb.late, 1);
        jb.push(pkt(4), t0 + Duration::from_millis(250));
        assert_eq!(
            jb.late, 2,
            "an already delivered packet is late, not buffered again"
        );
        assert!(jb.is_empty());
    }

    #[test]
    fn gives_up_when_full() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(Duration::from_secs(10), 3);
        jb.push(pkt(0), t0);
        assert_eq!(drain(&mut jb, t0 + Duration::from_secs(10)), vec![0]);
        for s in 2..=5 {
            jb.push(pkt(s), t0);
        }
        assert_eq!(drain(&mut jb, t0), vec![-1, 2, 3, 4, 5]);
    }

    #[test]
    fn unwraps_sequence_numbers_across_zero() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(Duration::from_millis(100), 100);
        jb.push(pkt(65535), t0);
        jb.push(pkt(0), t0);
        jb.push(pkt(65534), t0);
        jb.push(pkt(1), t0);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(drain(&mut jb, later), vec![65534, 65535, 0, 1]);
        assert_eq!(jb.lost, 0);
        assert_eq!(jb.late, 0);
    }

    #[test]
    fn flush_hands_on_everything_and_reset_starts_over() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(Duration::from_secs(1), 100);
        jb.push(pkt(5), t0);
        assert_eq!(drain(&mut jb, t0 + Duration::from_secs(1)), vec![5]);
        jb.push(pkt(7), t0 + Duration::from_secs(1));
        let mut out = Vec::new();
        while let Some(p) = jb.flush() {
            out.push(matches!(p, Popped::Packet(..)));
        }
        assert_eq!(out, vec![false, true]);
        jb.reset();
        // A new stream numbering from far away is not "late".
        jb.push(pkt(30000), t0);
        assert_eq!(drain(&mut jb, t0 + Duration::from_secs(1)), vec![30000]);
        assert_eq!(jb.late, 0);
    }
}
