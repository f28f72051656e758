//! Per-consumer RTP rewriting: what each receiver must see differently from the sender.
//!
//! A consumer has its own SSRC, payload types and header-extension ids, and its sequence
//! numbers must stay gap-free across pauses and source switches, or the receiver would NACK
//! packets that were never sent and its jitter buffer would stall.

use rtc_rtp::Packet;
use rtc_rtp::header::{EXTENSION_PROFILE_ONE_BYTE, EXTENSION_PROFILE_TWO_BYTE, Extension, Header};
use rtc_shared::marshal::{Marshal, MarshalSize};
use std::time::Instant;

/// Payload type not mapped for this consumer: the packet is not forwarded to it.
pub const UNMAPPED: u8 = 0xFF;

/// Maps a producer's payload types and extension ids to a consumer's.
#[derive(Clone)]
pub struct IdMap {
    pt: [u8; 128],
    ext: [u8; 256],
}

impl IdMap {
    /// A map from `(producer payload type, consumer payload type)` pairs and
    /// `(producer extension id, consumer extension id)` pairs. Anything absent is dropped.
    pub fn new(payload_types: &[(u8, u8)], extensions: &[(u8, u8)]) -> Self {
        let mut map = Self {
            pt: [UNMAPPED; 128],
            ext: [0; 256],
        };
        for &(from, to) in payload_types {
            if from < 128 && to < 128 {
                map.pt[usize::from(from)] = to;
            }
        }
        for &(from, to) in extensions {
            map.ext[usize::from(from)] = to;
        }
        map
    }

    /// The consumer's payload type for a producer's, if mapped.
    pub fn payload_type(&self, pt: u8) -> Option<u8> {
        self.pt
            .get(usize::from(pt))
            .copied()
            .filter(|&p| p != UNMAPPED)
    }

    /// The consumer's extension id for a producer's, if mapped.
    pub fn extension(&self, id: u8) -> Option<u8> {
        Some(self.ext[usize::from(id)]).filter(|&e| e != 0)
    }

    /// Stops writing every consumer extension id not in `keep`.
    pub fn keep_extensions(&mut self, keep: &[u8]) {
        for e in self.ext.iter_mut() {
            if !keep.contains(e) {
                *e = 0;
            }
        }
    }
}

const SEGMENT_WINDOW: u16 = 0x4000;

/// `a` is newer than `b` in RTP sequence-number space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Sequence-number and timestamp continuity for one consumer.
///
/// The producer's numbering is shifted by an offset that is recomputed whenever the consumer
/// re-synchronises (start, resume, new source SSRC), so the consumer's numbering continues
/// from the last packet it actually sent.
#[derive(Debug, Clone)]
pub struct SeqRewriter {
    clock_rate: u32,
    seq_offset: u16,
    ts_offset: u32,
    started: bool,
    sync_pending: bool,
    segment_in_start: u16,
    segment_out_start: u16,
    max_out_seq: u16,
    max_out_ts: u32,
    last_out_at: Option<Instant>,
    in_ssrc: Option<u32>,
    /// The segment before the last resync, `(first out seq, last out seq, offset)`, so a
    /// NACK for a packet lost just before a pause can still be answered.
    previous: Option<(u16, u16, u16)>,
}

impl SeqRewriter {
    /// A rewriter for a stream with this RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            seq_offset: 0,
            ts_offset: 0,
            started: false,
            sync_pending: true,
            segment_in_start: 0,
            segment_out_start: 0,
            max_out_seq: 0,
            max_out_ts: 0,
            last_out_at: None,
            in_ssrc: None,
            previous: None,
        }
    }

    /// Makes the next forwarded packet continue the sequence from the last one sent.
    pub fn resync(&mut self) {
        self.sync_pending = true;
    }

    /// Maps an incoming packet to the consumer's `(sequence number, timestamp)`, or `None` when
    /// it belongs before the current synchronisation point and must not be sent.
    pub fn map(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) -> Option<(u16, u32)> {
        if self.in_ssrc.is_some_and(|s| s != ssrc) {
            self.sync_pending = true;
        }
        if self.sync_pending {
            self.sync(ssrc, seq, ts, now);
        } else if seq != self.segment_in_start && !seq_newer(seq, self.segment_in_start) {
            // Reordered from before the resync: its slot in our numbering is already taken.
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if seq_newer(out_seq, self.max_out_seq) || out_seq == self.segment_out_start {
            self.max_out_seq = out_seq;
            self.max_out_ts = out_ts;
            self.last_out_at = Some(now);
            // Keep the segment window short so sequence comparisons never wrap inside it;
            // nobody NACKs a packet 16k packets old.
            let span = self.max_out_seq.wrapping_sub(self.segment_out_start);
            if span > SEGMENT_WINDOW {
                let advance = span - SEGMENT_WINDOW;
                self.segment_out_start = self.segment_out_start.wrapping_add(advance);
                self.segment_in_start = self.segment_in_start.wrapping_add(advance);
            }
        }
        Some((out_seq, out_ts))
    }

    /// The producer's sequence number for one this consumer sent, if it is from the current
    /// segment (so a NACK can be answered from the producer's buffer).
    pub fn unmap(&self, out_seq: u16) -> Option<u16> {
        if !self.started {
            return None;
        }
        let within = |start: u16, end: u16| {
            (out_seq == start || seq_newer(out_seq, start)) && !seq_newer(out_seq, end)
        };
        if within(self.segment_out_start, self.max_out_seq) {
            return Some(out_seq.wrapping_sub(self.seq_offset));
        }
        // A previous segment from another source SSRC cannot be answered: the buffer holds
        // the new source's packets under those numbers.
        let (start, end, offset) = self.previous?;
        within(start, end).then(|| out_seq.wrapping_sub(offset))
    }

    /// The timestamp offset currently applied (for translating sender reports).
    pub fn ts_offset(&self) -> u32 {
        self.ts_offset
    }

    /// The highest sequence number sent so far.
    pub fn max_out_seq(&self) -> u16 {
        self.max_out_seq
    }

    fn sync(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) {
        if self.started {
            self.previous = (self.in_ssrc == Some(ssrc)).then_some((
                self.segment_out_start,
                self.max_out_seq,
                self.seq_offset,
            ));
            let out_seq = self.max_out_seq.wrapping_add(1);
            self.seq_offset = out_seq.wrapping_sub(seq);
            if self.in_ssrc != Some(ssrc) {
                // A new source has an unrelated timestamp base: continue ours by the wall
                // time that passed, so the receiver's playout clock does not jump.
                let elapsed = self
                    .last_out_at
                    .map_or(0, |t| now.saturating_duration_since(t).as_micros());
                let ticks = (elapsed * u128::from(self.clock_rate) / 1_000_000).max(1);
                let out_ts = self.max_out_ts.wrapping_add(ticks as u32);
                self.ts_offset = out_ts.wrapping_sub(ts);
            }
        } else {
            self.started = true;
            self.max_out_seq = seq.wrapping_add(self.seq_offset).wrapping_sub(1);
        }
        self.in_ssrc = Some(ssrc);
        self.segment_in_start = seq;
        self.segment_out_start = seq.wrapping_add(self.seq_offset);
        self.sync_pending = false;
    }
}

/// What a rewritten packet carries instead of the producer's values.
#[derive(Clone, Copy, Debug)]
pub struct Rewrite {
    /// Consumer SSRC.
    pub ssrc: u32,
    /// Consumer payload type.
    pub payload_type: u8,
    /// Consumer sequence number.
    pub sequence_number: u16,
    /// Consumer timestamp.
    pub timestamp: u32,
}

/// Serialises rewritten packets into one reusable buffer, so forwarding to N consumers
/// allocates nothing once the buffer has grown to the largest packet seen.
pub struct PacketWriter {
    header: Header,
    buf: Vec<u8>,
}

impl Default for PacketWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketWriter {
    /// A writer with room for a typical MTU-sized packet.
    pub fn new() -> Self {
        Self {
            header: Header {
                version: 2,
                extensions: Vec::with_capacity(16),
                csrc: Vec::with_capacity(15),
                ..Header::default()
            },
            buf: Vec::with_capacity(1500),
        }
    }

    /// Writes `src` as the consumer must see it: new SSRC, payload type, sequence number and
    /// timestamp, extension ids mapped (unmapped ones dropped), padding removed. With
    /// `rtx_osn`, writes an RFC 4588 retransmission packet whose payload starts with the
    /// original sequence number.
    pub fn write(
        &mut self,
        src: &Packet,
        rewrite: Rewrite,
        map: &IdMap,
        rtx_osn: Option<u16>,
    ) -> Option<&[u8]> {
        let h = &mut self.header;
        h.marker = src.header.marker;
        h.padding = false;
        h.payload_type = rewrite.payload_type;
        h.sequence_number = rewrite.sequence_number;
        h.timestamp = rewrite.timestamp;
        h.ssrc = rewrite.ssrc;
        h.csrc.clear();
        h.csrc.extend_from_slice(&src.header.csrc);
        h.extensions.clear();
        h.extensions_padding = 0;
        let mut one_byte = true;
        if src.header.extension {
            for e in &src.header.extensions {
                if let Some(id) = map.extension(e.id) {
                    one_byte &= id <= 14 && (1..=16).contains(&e.payload.len());
                    h.extensions.push(Extension {
                        id,
                        payload: e.payload.clone(),
                    });
                }
            }
        }
        h.extension = !h.extensions.is_empty();
        h.extension_profile = if one_byte {
            EXTENSION_PROFILE_ONE_BYTE
        } else {
            EXTENSION_PROFILE_TWO_BYTE
        };
        let header_len = h.marshal_size();
        let osn_len = if rtx_osn.is_some() { 2 } else { 0 };
        let total = header_len + osn_len + src.payload.len();
        self.buf.resize(total, 0);
        let n = h.marshal_to(&mut self.buf[..header_len]).ok()?;
        let mut at = n;
        if let Some(osn) = rtx_osn {
            self.buf[at..at + 2].copy_from_slice(&osn.to_be_bytes());
            at += 2;
        }
        self.buf[at..at + src.payload.len()].copy_from_slice(&src.payload);
        Some(&self.buf[..at + src.payload.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc_shared::marshal::Unmarshal;
    use std::time::Duration;

    #[test]
    fn sequence_continues_across_a_resync() {
        let t = Instant::now();
        let mut r = SeqRewriter::new(90_000);
        assert_eq!(r.map(1, 100, 1000, t), Some((100, 1000)));
        assert_eq!(r.map(1, 101, 1000, t), Some((101, 1000)));
        // Pause: the producer moves on; resume at 200.
        r.resync();
        assert_eq!(r.map(1, 200, 9000, t), Some((102, 9000)));
        assert_eq!(r.map(1, 201, 9000, t), Some((103, 9000)));
        // A straggler from before the resync is not sent: 102 is already used.
        assert_eq!(r.map(1, 150, 5000, t), None);
        // Loss inside a segment is preserved so the receiver can NACK it.
        assert_eq!(r.map(1, 203, 9100, t), Some((105, 9100)));
        // Reordering inside a segment keeps its place.
        assert_eq!(r.map(1, 202, 9100, t), Some((104, 9100)));
        assert_eq!(r.unmap(104), Some(202));
        assert_eq!(r.unmap(102), Some(200));
        assert_eq!(r.unmap(101), Some(101), "from the previous segment");
        assert_eq!(r.unmap(99), None, "never sent");
        assert_eq!(r.unmap(106), None, "not sent yet");
    }

    #[test]
    fn long_segments_keep_forwarding() {
        let t = Instant::now();
        let mut r = SeqRewriter::new(90_000);
        for i in 0..100_000u32 {
            let seq = (i % 65536) as u16;
            assert_eq!(r.map(1, seq, i, t), Some((seq, i)), "packet {i}");
        }
        assert_eq!(
            r.unmap(((100_000 - 5) % 65536) as u16),
            Some(((100_000 - 5) % 65536) as u16)
        );
    }

    #[test]
    fn sequence_wraps() {
        let t = Instant::now();
        let mut r = SeqRewriter::new(48_000);
        assert_eq!(r.map(1, 65535, 0, t), Some((65535, 0)));
        assert_eq!(r.map(1, 0, 960, t), Some((0, 960)));
        r.resync();
        assert_eq!(r.map(1, 500, 1920, t), Some((1, 1920)));
    }

    #[test]
    fn new_source_continues_the_timestamp_by_elapsed_time() {
        let t = Instant::now();
        let mut r = SeqRewriter::new(90_000);
        assert_eq!(r.map(1, 10, 5_000, t), Some((10, 5_000)));
        let (seq, ts) = r
            .map(2, 7_000, 123_456, t + Duration::from_millis(100))
            .unwrap();
        assert_eq!(seq, 11);
        assert_eq!(ts, 5_000 + 9_000);
        assert_eq!(r.map(2, 7_001, 123_456 + 3000, t), Some((12, 17_000)));
    }

    fn sample_packet() -> Packet {
        let mut h = Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: 7,
            timestamp: 1234,
            ssrc: 0xAAAA,
            ..Header::default()
        };
        h.set_extension(4, Bytes::from_static(b"0")).unwrap(); // mid
        h.set_extension(3, Bytes::from_static(&[0, 1])).unwrap(); // transport-cc
        Packet {
            header: h,
            payload: Bytes::from_static(b"payload"),
        }
    }

    #[test]
    fn writer_rewrites_ids_and_drops_unmapped_extensions() {
        let src = sample_packet();
        let map = IdMap::new(&[(96, 100)], &[(4, 9)]);
        let mut w = PacketWriter::new();
        let rw = Rewrite {
            ssrc: 0xBBBB,
            payload_type: map.payload_type(96).unwrap(),
            sequence_number: 42,
            timestamp: 99,
        };
        let bytes = Bytes::copy_from_slice(w.write(&src, rw, &map, None).unwrap());
        let out = Packet::unmarshal(&mut bytes.clone()).unwrap();
        assert_eq!(out.header.ssrc, 0xBBBB);
        assert_eq!(out.header.payload_type, 100);
        assert_eq!(out.header.sequence_number, 42);
        assert_eq!(out.header.timestamp, 99);
        assert!(out.header.marker);
        assert_eq!(out.header.get_extension(9).unwrap().as_ref(), b"0");
        assert!(out.header.get_extension(3).is_none());
        assert!(out.header.get_extension(4).is_none());
        assert_eq!(out.payload.as_ref(), b"payload");
    }

    #[test]
    fn writer_builds_rtx_and_two_byte_extensions_when_needed() {
        let src = sample_packet();
        let map = IdMap::new(&[(96, 100)], &[(4, 20)]);
        let mut w = PacketWriter::new();
        let rw = Rewrite {
            ssrc: 0xCCCC,
            payload_type: 101,
            sequence_number: 1,
            timestamp: 99,
        };
        let bytes = Bytes::copy_from_slice(w.write(&src, rw, &map, Some(42)).unwrap());
        let out = Packet::unmarshal(&mut bytes.clone()).unwrap();
        assert_eq!(out.header.extension_profile, EXTENSION_PROFILE_TWO_BYTE);
        assert_eq!(out.header.get_extension(20).unwrap().as_ref(), b"0");
        assert_eq!(&out.payload[..2], &42u16.to_be_bytes());
        assert_eq!(&out.payload[2..], b"payload");
    }

    #[test]
    fn id_map_ignores_out_of_range_payload_types() {
        let map = IdMap::new(&[(200, 1), (96, 97)], &[]);
        assert_eq!(map.payload_type(96), Some(97));
        assert_eq!(map.payload_type(200), None);
        assert_eq!(map.payload_type(5), None);
        assert_eq!(map.extension(1), None);
    }
}
