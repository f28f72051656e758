//! The generator's mark inside every payload: which stream, which packet, when it was sent.
//!
//! Both servers forward payloads unchanged, so the receiving side reads back what the sending
//! side wrote, with the same clock (one process), and needs no RTP state of its own.

/// Where the mark starts in a payload: after a VP8 payload descriptor and keyframe header.
pub const OFFSET: usize = 16;
/// Bytes of the mark.
pub const LEN: usize = 20;
const MAGIC: u32 = 0x5342_474e; // "SBGN"

/// One decoded mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The generator's stream number (one per published track).
    pub stream: u32,
    /// Packet number within the stream, from 0.
    pub seq: u32,
    /// Send time, microseconds since the generator started.
    pub sent_us: u64,
}

/// Writes `mark` into `payload`, which must hold `OFFSET + LEN` bytes.
pub fn write(payload: &mut [u8], mark: Mark) {
    let out = &mut payload[OFFSET..OFFSET + LEN];
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&mark.stream.to_be_bytes());
    out[8..12].copy_from_slice(&mark.seq.to_be_bytes());
    out[12..20].copy_from_slice(&mark.sent_us.to_be_bytes());
}

/// Reads a mark back; `None` for payloads the generator did not write.
pub fn read(payload: &[u8]) -> Option<Mark> {
    let m = payload.get(OFFSET..OFFSET + LEN)?;
    let word = |i: usize| u32::from_be_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    if word(0) != MAGIC {
        return None;
    }
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&m[12..20]);
    Some(Mark {
        stream: word(4),
        seq: word(8),
        sent_us: u64::from_be_bytes(sent),
    })
}

/// A VP8-like video payload of `size` bytes: a payload descriptor that starts partition 0,
/// and for keyframes the frame tag and start code a VP8 keyframe begins with (servers that
/// wait for a keyframe before forwarding to a new subscriber look at these bytes).
pub fn video(size: usize, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0u8; size.max(OFFSET + LEN)];
    p[0] = 0x10; // S=1, partition 0, no extensions
    // Frame tag: bit 0 clear = keyframe; show_frame set.
    p[1] = if keyframe { 0x10 } else { 0x11 };
    p[2] = 0x02;
    p[3] = 0x00;
    if keyframe {
        p[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        p[7..11].copy_from_slice(&[0x80, 0x02, 0xe0, 0x01]); // 640x480
    }
    p
}

/// An Opus-sized audio payload (the bytes are not decoded by an SFU).
pub fn audio(size: usize) -> Vec<u8> {
    let mut p = vec![0xfcu8; size.max(OFFSET + LEN)];
    p[0] = 0x78; // TOC byte: CELT FB 20 ms, one frame
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut p = video(1200, true);
        let m = Mark {
            stream: 7,
            seq: 123_456,
            sent_us: 9_876_543_210,
        };
        write(&mut p, m);
        assert_eq!(read(&p), Some(m));
        assert_eq!(read(&audio(100)), None);
        assert_eq!(read(&[0u8; 10]), None);
    }
}
