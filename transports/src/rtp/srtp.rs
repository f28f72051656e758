//! SRTP for plain RTP transports, keyed over the control socket instead of DTLS.
//!
//! Each side sends with its own master key: the transport makes one when it is created and
//! reports it in its local parameters; the remote side's key arrives with `connect`. Keys
//! travel as SDES does it (RFC 4568): a crypto-suite name and `base64(master key || master
//! salt)`, which is also what ffmpeg's `-srtp_out_params` and an SDP `a=crypto` line take.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use serde::{Deserialize, Serialize};
use switchboard_core::{Error, ErrorCode, Result};

/// The suite used when a transport asks for SRTP without naming one: the one every SRTP
/// implementation has, ffmpeg's included.
pub const DEFAULT_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

/// Crypto-suite names (RFC 4568, RFC 6188, RFC 7714) and the profiles they stand for.
const SUITES: [(&str, ProtectionProfile); 6] = [
    (
        "AES_CM_128_HMAC_SHA1_80",
        ProtectionProfile::Aes128CmHmacSha1_80,
    ),
    (
        "AES_CM_128_HMAC_SHA1_32",
        ProtectionProfile::Aes128CmHmacSha1_32,
    ),
    (
        "AES_256_CM_HMAC_SHA1_80",
        ProtectionProfile::Aes256CmHmacSha1_80,
    ),
    (
        "AES_256_CM_HMAC_SHA1_32",
        ProtectionProfile::Aes256CmHmacSha1_32,
    ),
    ("AEAD_AES_128_GCM", ProtectionProfile::AeadAes128Gcm),
    ("AEAD_AES_256_GCM", ProtectionProfile::AeadAes256Gcm),
];

/// Packets accepted out of order before a repeat counts as a replay. Wide enough for the
/// reordering a real network does, and a replayed packet older than it fails authentication
/// of its index anyway.
const REPLAY_WINDOW: usize = 256;

/// One side's SRTP keying: what `local_parameters` reports and `connect` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtpParameters {
    /// The crypto suite, such as `AES_CM_128_HMAC_SHA1_80`.
    pub crypto_suite: String,
    /// `base64(master key || master salt)`.
    pub key_base64: String,
}

/// The names of the supported suites, for error messages and documentation.
pub fn suite_names() -> Vec<&'static str> {
    SUITES.iter().map(|(name, _)| *name).collect()
}

/// The profile of a suite name; case-insensitive, like the names in SDP.
pub fn profile(suite: &str) -> Result<ProtectionProfile> {
    SUITES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(suite))
        .map(|(_, p)| *p)
        .ok_or_else(|| {
            Error::invalid(format!(
                "unsupported SRTP crypto suite {suite:?}; supported: {}",
                suite_names().join(", ")
            ))
        })
}

/// A fresh random master key and salt for `suite`, and the context that encrypts with it.
pub fn generate(suite: &str) -> Result<(SrtpParameters, Context)> {
    let profile = profile(suite)?;
    let provider = rtc_srtp::crypto::default_provider().map_err(crypto_error)?;
    let mut material = vec![0u8; profile.key_len() + profile.salt_len()];
    provider
        .random()
        .fill(&mut material)
        .map_err(crypto_error)?;
    let params = SrtpParameters {
        crypto_suite: canonical(suite).to_owned(),
        key_base64: BASE64.encode(&material),
    };
    let context = context(&params, false)?;
    Ok((params, context))
}

/// The context for `params`: one that decrypts (with replay protection) when `inbound`,
/// otherwise one that encrypts. Fails with `invalid_params` naming what is wrong with them.
pub fn context(params: &SrtpParameters, inbound: bool) -> Result<Context> {
    let profile = profile(&params.crypto_suite)?;
    let material = BASE64
        .decode(params.key_base64.trim())
        .map_err(|e| Error::invalid(format!("srtp.key_base64: not base64: {e}")))?;
    let (key_len, salt_len) = (profile.key_len(), profile.salt_len());
    if material.len() != key_len + salt_len {
        return Err(Error::invalid(format!(
            "srtp.key_base64: {} needs {} bytes of key and salt, got {}",
            canonical(&params.crypto_suite),
            key_len + salt_len,
            material.len()
        )));
    }
    let provider = rtc_srtp::crypto::default_provider().map_err(crypto_error)?;
    let (srtp_replay, srtcp_replay) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        &material[..key_len],
        &material[key_len..],
        profile,
        srtp_replay,
        srtcp_replay,
        provider.crypto(),
    )
    .map_err(|e| Error::new(ErrorCode::TransportFailed, format!("SRTP context: {e}")))
}

/// The suite's name as this module spells it.
fn canonical(suite: &str) -> &'static str {
    SUITES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(suite))
        .map(|(name, _)| *name)
        .unwrap_or(DEFAULT_SUITE)
}

fn crypto_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, format!("SRTP keying: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(b"media payload");
        p
    }

    #[test]
    fn a_generated_key_decrypts_what_it_encrypted() {
        for suite in suite_names() {
            let (params, mut out) = generate(suite).unwrap();
            assert_eq!(params.crypto_suite, suite);
            let mut inbound = context(&params, true).unwrap();
            let encrypted = out.encrypt_rtp(&rtp(1)).unwrap();
            assert_ne!(
                &encrypted[12..],
                &rtp(1)[12..],
                "{suite}: payload is encrypted"
            );
            assert_eq!(&inbound.decrypt_rtp(&encrypted).unwrap()[..], &rtp(1)[..]);
            // A replay of the same packet is refused by the receiving side.
            assert!(inbound.decrypt_rtp(&encrypted).is_err(), "{suite}");
        }
    }

    #[test]
    fn keys_differ_and_bad_parameters_are_named() {
        let (a, _) = generate("aes_cm_128_hmac_sha1_80").unwrap();
        let (b, _) = generate(DEFAULT_SUITE).unwrap();
        assert_eq!(a.crypto_suite, DEFAULT_SUITE);
        assert_ne!(a.key_base64, b.key_base64);
        assert_eq!(BASE64.decode(&a.key_base64).unwrap().len(), 30);

        let err = generate("NULL_CIPHER").err().unwrap();
        assert_eq!(err.code, ErrorCode::InvalidParams);
        assert!(err.message.contains("AEAD_AES_128_GCM"), "{}", err.message);
        let short = SrtpParameters {
            crypto_suite: DEFAULT_SUITE.into(),
            key_base64: BASE64.encode([1u8; 16]),
        };
        let err = context(&short, true).err().unwrap();
        assert!(err.message.contains("needs 30 bytes"), "{}", err.message);
        let garbage = SrtpParameters {
            crypto_suite: DEFAULT_SUITE.into(),
            key_base64: "not base64!".into(),
        };
        assert!(context(&garbage, true).is_err());
    }

    #[test]
    fn a_wrong_key_fails_authentication() {
        let (_, mut out) = generate(DEFAULT_SUITE).unwrap();
        let (other, _) = generate(DEFAULT_SUITE).unwrap();
        let mut inbound = context(&other, true).unwrap();
        let encrypted = out.encrypt_rtp(&rtp(5)).unwrap();
        assert!(inbound.decrypt_rtp(&encrypted).is_err());
    }
}
