//! The per-producer retransmission buffer that answers consumers' NACKs.
//!
//! One buffer per producer, not per consumer: every consumer of a producer forwards the same
//! packets, so one copy serves them all and memory stays flat as subscribers grow.

use rtc_rtp::Packet;
use std::time::{Duration, Instant};

struct Slot {
    packet: Packet,
    arrived: Instant,
}

/// A ring of recently received packets, indexed by sequence number.
pub struct RetransmissionBuffer {
    slots: Box<[Option<Slot>]>,
    mask: usize,
    max_age: Duration,
}

impl RetransmissionBuffer {
    /// A buffer of at least `capacity` packets (rounded up to a power of two) that refuses to
    /// resend packets older than `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.clamp(1, 1 << 15).next_power_of_two();
        Self {
            slots: (0..capacity).map(|_| None).collect(),
            mask: capacity - 1,
            max_age,
        }
    }

    /// Stores a packet, replacing whatever was in its slot.
    pub fn insert(&mut self, packet: Packet, now: Instant) {
        let i = usize::from(packet.header.sequence_number) & self.mask;
        self.slots[i] = Some(Slot {
            packet,
            arrived: now,
        });
    }

    /// Whether the packet with this sequence number is held.
    pub fn contains(&self, seq: u16) -> bool {
        self.slot(seq).is_some()
    }

    /// The packet with this sequence number, if still held and young enough.
    pub fn get(&self, seq: u16, now: Instant) -> Option<&Packet> {
        self.slot(seq)
            .filter(|s| now.saturating_duration_since(s.arrived) <= self.max_age)
            .map(|s| &s.packet)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, seq: u16) -> Option<&Slot> {
        self.slots[usize::from(seq) & self.mask]
            .as_ref()
            .filter(|s| s.packet.header.sequence_number == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pkt(seq: u16) -> Packet {
        let mut p = Packet::default();
        p.header.version = 2;
        p.header.sequence_number = seq;
        p.payload = Bytes::copy_from_slice(&seq.to_be_bytes());
        p
    }

    #[test]
    fn finds_held_packets_and_forgets_overwritten_ones() {
        let now = Instant::now();
        let mut b = RetransmissionBuffer::new(100, Duration::from_secs(1));
        assert_eq!(b.capacity(), 128);
        for seq in 65500..65535u16 {
            b.insert(pkt(seq), now);
        }
        b.insert(pkt(65535), now);
        b.insert(pkt(0), now); // wraps
        assert_eq!(b.get(0, now).unwrap().payload.as_ref(), &[0, 0]);
        assert_eq!(b.get(65500, now).unwrap().header.sequence_number, 65500);
        assert!(b.get(10, now).is_none());
        // 65500 + 128 wraps onto the same slot and evicts 65500.
        b.insert(pkt(65500u16.wrapping_add(128)), now);
        assert!(b.get(65500, now).is_none());
    }

    #[test]
    fn refuses_packets_older_than_max_age() {
        let now = Instant::now();
        let mut b = RetransmissionBuffer::new(16, Duration::from_millis(500));
        b.insert(pkt(7), now);
        assert!(b.get(7, now + Duration::from_millis(500)).is_some());
        assert!(b.get(7, now + Duration::from_millis(501)).is_none());
        assert!(b.contains(7));
    }
}
