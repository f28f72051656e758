//! SRTP protection of outgoing RTP in place, for the AEAD_AES_128_GCM profile (RFC 7714) that
//! every current browser negotiates first.
//!
//! `rtc-srtp` encrypts into a new buffer and parses the RTP header again for every packet; on
//! a fan-out that is one allocation and one parse per receiver. Here the packet is already in
//! the worker's send batch: its header is measured (not parsed), the payload sealed in place
//! with the header as associated data, and the tag appended. Keys come from the same master
//! key and salt, through the SRTP key derivation (RFC 3711 §4.3, with `index DIV kdr` = 0 as
//! DTLS-SRTP sets it), and the tests check every packet against `rtc-srtp` itself. Other
//! profiles, and RTCP, stay with `rtc-srtp`.

use rtc_crypto::{AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, RTCCrypto};
use switchboard_core::{Error, ErrorCode, Result};

/// Bytes of the GCM tag appended to each packet.
pub const TAG_LEN: usize = 16;

const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_SALT: u8 = 0x02;

/// The rollover counter of one outgoing stream (RFC 3711 §3.3.1): how many times its 16-bit
/// sequence number has wrapped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rollover {
    last_seq: Option<u16>,
    roc: u32,
}

impl Rollover {
    /// The ROC of a packet with `seq`, advancing the stream's state when the packet is the
    /// newest; a retransmission from before a wrap gets the previous ROC.
    pub fn index(&mut self, seq: u16) -> u32 {
        let Some(last) = self.last_seq else {
            self.last_seq = Some(seq);
            return self.roc;
        };
        let ahead = seq.wrapping_sub(last);
        if ahead == 0 {
            self.roc
        } else if ahead < 0x8000 {
            if seq < last {
                self.roc = self.roc.wrapping_add(1);
            }
            self.last_seq = Some(seq);
            self.roc
        } else if seq > last {
            // Older than the newest and from before the newest wrapped.
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

/// The sending side of an AEAD_AES_128_GCM SRTP session.
pub struct GcmEgress {
    aead: Box<dyn AeadCipher>,
    salt: [u8; 12],
}

fn crypto_failed(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, format!("SRTP: {e}"))
}

/// The AES-CM PRF of the SRTP key derivation for a 128-bit master key.
fn derive(
    crypto: &dyn RTCCrypto,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<()> {
    for (counter, chunk) in (0u16..).zip(out.chunks_mut(16)) {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..].copy_from_slice(&counter.to_be_bytes());
        crypto
            .block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)
            .map_err(crypto_failed)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}

impl GcmEgress {
    /// The session for this master key (16 bytes) and master salt (12 bytes).
    pub fn new(crypto: &dyn RTCCrypto, master_key: &[u8], master_salt: &[u8]) -> Result<Self> {
        if master_key.len() != 16 || master_salt.len() != 12 {
            return Err(Error::internal(
                "AEAD_AES_128_GCM needs a 16-byte master key and a 12-byte master salt",
            ));
        }
        let mut key = [0u8; 16];
        derive(
            crypto,
            master_key,
            master_salt,
            LABEL_SRTP_ENCRYPTION,
            &mut key,
        )?;
        let mut salt = [0u8; 12];
        derive(crypto, master_key, master_salt, LABEL_SRTP_SALT, &mut salt)?;
        let aead = crypto
            .new_aead(AeadAlgorithm::Aes128Gcm, &key)
            .map_err(crypto_failed)?;
        Ok(Self { aead, salt })
    }

    /// Protects the RTP packet that ends `buf` (it starts at `start`): encrypts its payload in
    /// place and appends the tag. Returns `false`, leaving `buf` as it was, for bytes that are
    /// not an RTP packet. `roc` comes from the stream's [`Rollover`].
    pub fn protect(&mut self, buf: &mut Vec<u8>, start: usize, roc: u32) -> bool {
        let Some(packet) = buf.get_mut(start..) else {
            return false;
        };
        let Some(header_len) = header_len(packet) else {
            return false;
        };
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&packet[8..12]);
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.salt) {
            *v ^= s;
        }
        let (aad, payload) = packet.split_at_mut(header_len);
        let mut tag = [0u8; TAG_LEN];
        if self
            .aead
            .seal_in_place(&iv, aad, payload, &mut tag)
            .is_err()
        {
            return false;
        }
        buf.extend_from_slice(&tag);
        true
    }
}

/// The length of an RTP packet's header, CSRCs and extension included; `None` when the bytes
/// are not a whole RTP header.
pub fn header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_srtp::context::Context;
    use rtc_srtp::protection_profile::ProtectionProfile;

    fn rtp(ssrc: u32, seq: u16, extension: bool) -> Vec<u8> {
        let mut p = vec![0x80 | if extension { 0x10 } else { 0 }, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        if extension {
            p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]);
        }
        p.extend_from_slice(format!("payload of {seq}").as_bytes());
        p
    }

    #[test]
    fn what_it_protects_is_byte_for_byte_what_rtc_srtp_writes_and_reads() {
        let provider = rtc_crypto::default_provider().unwrap();
        let crypto = provider.crypto();
        let key: Vec<u8> = (0..16).collect();
        let salt: Vec<u8> = (100..112).collect();
        let mut ours = GcmEgress::new(crypto, &key, &salt).unwrap();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let mut reference = Context::new(&key, &salt, profile, None, None, crypto).unwrap();
        let mut receiver = Context::new(
            &key,
            &salt,
            profile,
            Some(rtc_srtp::option::srtp_replay_protection(256)),
            None,
            crypto,
        )
        .unwrap();
        let mut rollover = Rollover::default();
        // Across a wrap of the sequence number, with and without a header extension, with a
        // prefix already in the buffer (a batch).
        for (i, seq) in (65_530u16..=65_535).chain(0..6).enumerate() {
            let plain = rtp(0xCAFE_0001, seq, i % 2 == 0);
            let mut buf = b"earlier datagram".to_vec();
            let start = buf.len();
            buf.extend_from_slice(&plain);
            let roc = rollover.index(seq);
            assert!(ours.protect(&mut buf, start, roc));
            let expected = reference.encrypt_rtp(&plain).unwrap();
            assert_eq!(&buf[start..], &expected[..], "seq {seq}");
            assert_eq!(&buf[..start], b"earlier datagram");
            let opened = receiver.decrypt_rtp(&buf[start..]).unwrap();
            assert_eq!(&opened[..], &plain[..]);
        }
    }

    #[test]
    fn the_rollover_counter_follows_wraps_and_late_packets() {
        let mut r = Rollover::default();
        assert_eq!(r.index(65_534), 0);
        assert_eq!(r.index(65_535), 0);
        assert_eq!(r.index(1), 1, "wrapped");
        assert_eq!(r.index(65_535), 0, "a retransmission from before the wrap");
        assert_eq!(r.index(2), 1);
        assert_eq!(
            r.index(40_000),
            0,
            "half the space or more ahead reads as before the wrap"
        );
        assert_eq!(r.index(20_000), 1);
        assert_eq!(r.index(40_000), 1);
        assert_eq!(r.index(60_000), 1);
        assert_eq!(r.index(10), 2);
    }

    #[test]
    fn bytes_that_are_not_rtp_are_left_alone() {
        let provider = rtc_crypto::default_provider().unwrap();
        let mut ours = GcmEgress::new(provider.crypto(), &[1; 16], &[2; 12]).unwrap();
        for bad in [
            vec![],
            vec![0x80, 96, 0, 1],
            vec![0x40; 20],
            // An extension that claims more words than there are.
            [
                &[0x90u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 9][..],
                &[0; 8],
            ]
            .concat(),
        ] {
            let mut buf = bad.clone();
            assert!(!ours.protect(&mut buf, 0, 0));
            assert_eq!(buf, bad);
        }
        assert!(GcmEgress::new(provider.crypto(), &[1; 16], &[2; 14]).is_err());
    }
}
