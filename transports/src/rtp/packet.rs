//! Structural checks of datagrams before they reach a router.
//!
//! The router parses every RTP packet itself; these checks exist so that a plain RTP port,
//! which anyone on the network can reach, rejects what is not RTP or RTCP at its edge and
//! says why in its own counters. They read only lengths and the fixed header fields, so they
//! cost next to nothing and cannot panic on any input.

/// What a datagram on an RTP port claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An RTP packet.
    Rtp,
    /// An RTCP (compound) packet.
    Rtcp,
}

/// Tells RTP from RTCP on a port that may carry both (RFC 5761 §4): RTCP packet types are
/// 192–223 in the second byte, a range RTP payload types 64–95 (with or without the marker
/// bit) would collide with, which is why those payload types are never used. `None` when the
/// datagram is too short for either or not version 2 (STUN, DTLS or noise).
pub fn classify(data: &[u8]) -> Option<Kind> {
    if data.len() < 4 || data[0] >> 6 != 2 {
        return None;
    }
    if (192..=223).contains(&data[1]) {
        Some(Kind::Rtcp)
    } else {
        Some(Kind::Rtp)
    }
}

/// The fixed-header facts the transport needs from an RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Bytes before the payload: the fixed header, CSRCs and the extension block.
    pub header_len: usize,
}

/// Checks that the fixed header, the CSRC list and the extension block fit in `data` and
/// returns the SSRC. Padding is checked separately ([`padding_fits`]) because in SRTP it is
/// encrypted with the payload and only readable after decryption.
pub fn rtp_header(data: &[u8]) -> Option<RtpHeader> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(data[0] & 0x0F);
    let mut header_len = 12 + 4 * csrc_count;
    if data[0] & 0x10 != 0 {
        let ext = data.get(header_len..header_len + 4)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        header_len += 4 + 4 * words;
    }
    if header_len > data.len() {
        return None;
    }
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    Some(RtpHeader { ssrc, header_len })
}

/// Whether the padding an RTP packet announces fits after its header: the last byte counts
/// the padding bytes, itself included, so it may be neither 0 nor run into the header.
pub fn padding_fits(data: &[u8], header_len: usize) -> bool {
    if data.first().is_none_or(|b| b & 0x20 == 0) {
        return true;
    }
    match data.last() {
        Some(&pad) => pad != 0 && header_len + usize::from(pad) <= data.len(),
        None => false,
    }
}

/// Whether `data` is a well-formed compound RTCP packet: every part is version 2, has an RTCP
/// packet type, and its length field ends it exactly where the next part (or the datagram)
/// begins. The router then parses the parts it understands.
pub fn rtcp_compound_fits(data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    let mut at = 0;
    while at < data.len() {
        let Some(head) = data.get(at..at + 4) else {
            return false;
        };
        if head[0] >> 6 != 2 || !(192..=223).contains(&head[1]) {
            return false;
        }
        let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
        at += 4 * (words + 1);
    }
    at == data.len()
}

/// The SSRC of the first part of an RTCP packet (its sender's): bytes 4 to 8, which SRTCP
/// leaves in the clear. `None` when the datagram is shorter.
pub fn rtcp_sender_ssrc(data: &[u8]) -> Option<u32> {
    data.get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether a compound RTCP packet (already checked with [`rtcp_compound_fits`]) names one of
/// a transport's streams: a part sent from a `sender` SSRC (sender and receiver reports,
/// source descriptions, feedback), or a report block or feedback about a `media` SSRC. Plain
/// RTP has nothing else to tell a sender's first RTCP from a stranger's.
pub fn rtcp_names_stream(
    data: &[u8],
    sender: impl Fn(u32) -> bool,
    media: impl Fn(u32) -> bool,
) -> bool {
    let mut at = 0;
    while let Some(head) = data.get(at..at + 4) {
        let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let part = data.get(at..at + 4 * (words + 1)).unwrap_or(&[]);
        let word = |i: usize| {
            part.get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let count = usize::from(head[0] & 0x1F);
        let named = match head[1] {
            // SR: 20 bytes of sender info before the report blocks; RR: none.
            200 | 201 => {
                let first = if head[1] == 200 { 28 } else { 8 };
                word(4).is_some_and(&sender)
                    || (0..count).any(|k| word(first + 24 * k).is_some_and(&media))
            }
            // SDES: the first chunk's SSRC.
            202 => word(4).is_some_and(&sender),
            // Transport and payload-specific feedback: sender, media source, and for FIR
            // (format 4) the SSRC of each entry.
            205 | 206 => {
                word(4).is_some_and(&sender)
                    || word(8).is_some_and(&media)
                    || (head[1] == 206
                        && count == 4
                        && (12..part.len())
                            .step_by(8)
                            .any(|i| word(i).is_some_and(&media)))
            }
            _ => false,
        };
        if named {
            return true;
        }
        at += 4 * (words + 1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(csrcs: u8, extension: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs, 96, 0, 1, 0, 0, 0, 9, 0xAA, 0xBB, 0xCC, 0xDD];
        for _ in 0..csrcs {
            p.extend_from_slice(&[1, 2, 3, 4]);
        }
        if let Some(words) = extension {
            p[0] |= 0x10;
            p.extend_from_slice(&[0xBE, 0xDE]);
            p.extend_from_slice(&words.to_be_bytes());
            p.extend(std::iter::repeat_n(0, usize::from(words) * 4));
        }
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn classifies_by_the_rtcp_packet_type_range() {
        assert_eq!(classify(&rtp(0, None, b"x")), Some(Kind::Rtp));
        // Marker bit set on payload type 96 is 224: still RTP.
        assert_eq!(classify(&[0x80, 224, 0, 0]), Some(Kind::Rtp));
        assert_eq!(classify(&[0x80, 200, 0, 6]), Some(Kind::Rtcp));
        assert_eq!(classify(&[0x80, 206, 0, 2]), Some(Kind::Rtcp));
        // STUN starts with two zero bits; short datagrams are nothing.
        assert_eq!(classify(&[0x00, 0x01, 0x00, 0x00, 0x21, 0x12]), None);
        assert_eq!(classify(&[0x80, 96]), None);
    }

    #[test]
    fn rtp_header_reads_ssrc_and_rejects_what_does_not_fit() {
        let p = rtp(2, Some(1), b"payload");
        assert_eq!(
            rtp_header(&p),
            Some(RtpHeader {
                ssrc: 0xAABB_CCDD,
                header_len: 12 + 8 + 8
            })
        );
        // Truncated inside the CSRC list, the extension header, the extension body.
        assert_eq!(rtp_header(&rtp(2, None, b"")[..18]), None);
        assert_eq!(rtp_header(&rtp(0, Some(2), b"")[..14]), None);
        assert_eq!(rtp_header(&rtp(0, Some(2), b"")[..20]), None);
        assert_eq!(rtp_header(&[0x80; 11]), None);
        let mut v1 = rtp(0, None, b"x");
        v1[0] = 0x40;
        assert_eq!(rtp_header(&v1), None);
    }

    #[test]
    fn padding_must_fit_after_the_header() {
        let mut p = rtp(0, None, &[1, 2, 3, 4]);
        assert!(padding_fits(&p, 12));
        p[0] |= 0x20;
        assert!(
            padding_fits(&p, 12),
            "4 bytes of padding after a 12-byte header"
        );
        *p.last_mut().unwrap() = 5;
        assert!(!padding_fits(&p, 12));
        *p.last_mut().unwrap() = 0;
        assert!(!padding_fits(&p, 12));
    }

    #[test]
    fn rtcp_compound_lengths_must_add_up() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut compound = rr.to_vec();
        compound.extend_from_slice(&pli);
        assert!(rtcp_compound_fits(&compound));
        assert!(!rtcp_compound_fits(&compound[..compound.len() - 1]));
        assert!(!rtcp_compound_fits(&[0x80, 201, 0, 5, 0, 0, 0, 1]));
        let mut trailing = compound.clone();
        trailing.extend_from_slice(&[0x80, 96]);
        assert!(!rtcp_compound_fits(&trailing));
        assert!(!rtcp_compound_fits(b""));
        assert!(!rtcp_compound_fits(&[0x80, 96, 0, 0]));
    }

    #[test]
    fn rtcp_names_stream_reads_senders_report_blocks_and_feedback() {
        let sender = |ssrc: u32| ssrc == 7;
        let media = |ssrc: u32| ssrc == 9;
        // An empty receiver report from a stranger's SSRC names nothing.
        let stranger_rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(!rtcp_names_stream(&stranger_rr, sender, media));
        // A sender report from the producer's SSRC.
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 7];
        sr.extend_from_slice(&[0; 20]);
        assert!(rtcp_names_stream(&sr, sender, media));
        // A receiver report whose block is about the consumer's SSRC.
        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9];
        rr.extend_from_slice(&[0; 20]);
        assert!(rtcp_names_stream(&rr, sender, media));
        // A PLI about the consumer, after a stranger's report in the same compound.
        let mut compound = stranger_rr.to_vec();
        compound.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9]);
        assert!(rtcp_names_stream(&compound, sender, media));
        // A FIR naming the consumer only in its entry.
        let fir = [
            0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0,
        ];
        assert!(rtcp_names_stream(&fir, sender, media));
        assert_eq!(rtcp_sender_ssrc(&sr), Some(7));
        assert_eq!(rtcp_sender_ssrc(&sr[..7]), None);
    }
}
