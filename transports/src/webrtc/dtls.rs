//! DTLS-SRTP (RFC 5763, RFC 5764) for one connection: the handshake that authenticates the
//! client by the certificate fingerprint in its description, and the two SRTP contexts keyed
//! from the handshake's exporter.
//!
//! A thin, synchronous layer over `rtc-dtls`'s sans-IO endpoint. The endpoint keys its
//! associations by remote address; a connection has exactly one, and the address it arrives
//! from may change under ICE (nomination, NAT rebinding), so the association lives under one
//! fixed key and the connection sends to whatever address ICE selected.

use bytes::BytesMut;
use rtc_crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use switchboard_core::{Error, ErrorCode, Result};

/// The key the endpoint knows the one association by.
const ASSOCIATION: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9);

/// SRTP packets accepted out of order before a repeat counts as a replay.
const REPLAY_WINDOW: usize = 256;

/// The SRTP profiles offered, most preferred first: AES-GCM authenticates and encrypts in one
/// pass and has a shorter tag; the HMAC-SHA1 profiles are there for stacks without GCM.
const PROFILES: [SrtpProtectionProfile; 4] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
];

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::TransportFailed, format!("{what}: {e}"))
}

/// The server's DTLS certificate and its SHA-256 fingerprint. One per worker: generating one
/// costs milliseconds, and the fingerprint in every description authenticates the server
/// whichever certificate it is.
#[derive(Clone)]
pub struct Certificate {
    inner: rtc_dtls::crypto::Certificate,
    fingerprint: String,
}

impl Certificate {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate(crypto: &Arc<dyn RTCCryptoProvider>) -> Result<Self> {
        let inner = rtc_dtls::crypto::Certificate::generate_self_signed(
            vec!["switchboard".to_owned()],
            crypto.crypto(),
        )
        .map_err(|e| failed("DTLS certificate", e))?;
        let der = inner
            .certificate
            .first()
            .ok_or_else(|| Error::internal("a generated certificate has no DER"))?;
        let fingerprint = sha256_fingerprint(crypto, der.as_ref())?;
        Ok(Self { inner, fingerprint })
    }

    /// The fingerprint as SDP writes it after `sha-256 `: upper-case hex pairs joined by `:`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn sha256_fingerprint(crypto: &Arc<dyn RTCCryptoProvider>, der: &[u8]) -> Result<String> {
    let digest = crypto
        .crypto()
        .hash(HashAlgorithm::Sha256, der)
        .map_err(|e| failed("certificate fingerprint", e))?;
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Which side of the handshake this connection takes (`a=setup`: the client of an `active`
/// peer is the server, and the other way round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Waits for the client's ClientHello.
    Server,
    /// Sends the ClientHello once ICE has selected an address.
    Client,
}

/// The SRTP contexts of a connection: one encrypts what it sends, one decrypts (with replay
/// protection) what it receives.
pub struct SrtpContexts {
    /// Encrypts RTP and RTCP to the client.
    pub outbound: Context,
    /// Decrypts and authenticates RTP and RTCP from the client.
    pub inbound: Context,
    /// The negotiated profile.
    pub profile: ProtectionProfile,
    /// In-place protection of outgoing RTP, for AEAD_AES_128_GCM ([`super::srtp_egress`]);
    /// `None` for the other profiles, which `outbound` serves.
    pub egress: Option<super::srtp_egress::GcmEgress>,
}

/// What a datagram did to the handshake.
pub enum DtlsEvent {
    /// The handshake completed and the peer's certificate matched its fingerprint.
    Connected(Box<SrtpContexts>),
    /// The peer closed the association (close_notify).
    Closed,
}

/// The DTLS side of one connection.
pub struct Dtls {
    endpoint: Endpoint,
    role: Role,
    /// The client role's configuration until it connects.
    client_config: Option<Arc<HandshakeConfig>>,
    connected: bool,
    crypto: Arc<dyn RTCCryptoProvider>,
}

impl Dtls {
    /// A handshake in `role` that accepts only a peer whose certificate has this SHA-256
    /// `remote_fingerprint` (hex pairs, any case, as the peer's description has it).
    pub fn new(
        certificate: &Certificate,
        role: Role,
        remote_fingerprint: &str,
        crypto: Arc<dyn RTCCryptoProvider>,
    ) -> Result<Self> {
        let expected = remote_fingerprint.trim().to_ascii_uppercase();
        let verify_crypto = crypto.clone();
        let verify: VerifyPeerCertificateFn = Arc::new(move |certs, _chains| {
            let der = certs
                .first()
                .ok_or(rtc_shared::error::Error::ErrNonCertificate)?;
            match sha256_fingerprint(&verify_crypto, der) {
                Ok(actual) if actual == expected => Ok(()),
                _ => Err(rtc_shared::error::Error::ErrNoMatchingCertificateFingerprint),
            }
        });
        let config = Arc::new(
            ConfigBuilder::default()
                .with_crypto_provider(crypto.clone())
                .with_certificates(vec![certificate.inner.clone()])
                .with_srtp_protection_profiles(PROFILES.to_vec())
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                // Self-signed certificates have no chain to verify: the fingerprint from the
                // signalled description is what authenticates the peer.
                .with_insecure_skip_verify(true)
                .with_verify_peer_certificate(Some(verify))
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .build(role == Role::Client, None)
                .map_err(|e| failed("DTLS configuration", e))?,
        );
        let (server_config, client_config) = match role {
            Role::Server => (Some(config), None),
            Role::Client => (None, Some(config)),
        };
        Ok(Self {
            endpoint: Endpoint::new(ASSOCIATION, TransportProtocol::UDP, server_config),
            role,
            client_config,
            connected: false,
            crypto,
        })
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake completed.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Starts the handshake if this side is the client (once: ICE selected an address). The
    /// server side waits for the client.
    pub fn start(&mut self, now: Instant) -> Result<()> {
        if let Some(config) = self.client_config.take() {
            self.endpoint
                .connect(now, ASSOCIATION, config, None)
                .map_err(|e| failed("DTLS connect", e))?;
        }
        Ok(())
    }

    /// A DTLS record from the client. Errors are the peer's: a bad record, a fatal alert, a
    /// certificate that does not match; the caller fails the connection on them.
    pub fn on_datagram(&mut self, data: BytesMut, now: Instant) -> Result<Option<DtlsEvent>> {
        let events = self
            .endpoint
            .read(now, ASSOCIATION, None, data)
            .map_err(|e| failed("DTLS", e))?;
        let mut out = None;
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete if !self.connected => {
                    self.connected = true;
                    out = Some(DtlsEvent::Connected(Box::new(self.srtp_contexts()?)));
                }
                EndpointEvent::PeerClosed => return Ok(Some(DtlsEvent::Closed)),
                // Application data (SCTP) is not negotiated by this transport.
                _ => {}
            }
        }
        Ok(out)
    }

    /// The next datagram to send to the client.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.endpoint.poll_transmit().map(|t| t.message)
    }

    /// When [`Dtls::on_timeout`] is next due (handshake retransmission).
    pub fn timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout(&ASSOCIATION)
    }

    /// Retransmits the handshake flight when due; fails once retransmissions are exhausted.
    pub fn on_timeout(&mut self, now: Instant) -> Result<()> {
        match self.endpoint.handle_timeout(ASSOCIATION, now) {
            Ok(()) => Ok(()),
            // No association yet (a server waiting for its client): nothing to retransmit.
            Err(rtc_shared::error::Error::InvalidRemoteAddress(_)) => Ok(()),
            Err(e) => Err(failed("DTLS handshake", e)),
        }
    }

    /// Sends close_notify (to be collected with [`Dtls::poll_transmit`]), so that the client
    /// learns at once rather than by timeout.
    pub fn close(&mut self, now: Instant) {
        if self.endpoint.close(now).is_err() {
            tracing::debug!("DTLS close on an association that had already ended");
        }
    }

    fn srtp_contexts(&self) -> Result<SrtpContexts> {
        let state = self
            .endpoint
            .get_connection_state(ASSOCIATION)
            .ok_or_else(|| Error::internal("a completed DTLS association has no state"))?;
        let profile = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                ProtectionProfile::Aes128CmHmacSha1_80
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => {
                ProtectionProfile::Aes128CmHmacSha1_32
            }
            other => {
                return Err(Error::new(
                    ErrorCode::TransportFailed,
                    format!("DTLS negotiated no usable SRTP profile ({other:?})"),
                ));
            }
        };
        let mut config = rtc_srtp::config::Config {
            profile,
            ..Default::default()
        };
        let material = state
            .export_keying_material(
                rtc_srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                config.keying_material_len(),
            )
            .map_err(|e| failed("DTLS-SRTP exporter", e))?;
        config
            .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
            .map_err(|e| failed("SRTP keys", e))?;
        let keys = &config.keys;
        let outbound = Context::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            profile,
            None,
            None,
            self.crypto.crypto(),
        )
        .map_err(|e| failed("SRTP context", e))?;
        let inbound = Context::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            self.crypto.crypto(),
        )
        .map_err(|e| failed("SRTP context", e))?;
        let egress = match profile {
            ProtectionProfile::AeadAes128Gcm => Some(super::srtp_egress::GcmEgress::new(
                self.crypto.crypto(),
                &keys.local_master_key,
                &keys.local_master_salt,
            )?),
            _ => None,
        };
        Ok(SrtpContexts {
            outbound,
            inbound,
            profile,
            egress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Arc<dyn RTCCryptoProvider> {
        rtc_crypto::default_provider().expect("crypto provider")
    }

    /// Runs the handshake between two sides until neither has anything to send; returns the
    /// events each side reported.
    fn handshake(a: &mut Dtls, b: &mut Dtls) -> (Vec<DtlsEvent>, Vec<DtlsEvent>, Vec<Error>) {
        let now = Instant::now();
        a.start(now).unwrap();
        b.start(now).unwrap();
        let (mut ea, mut eb, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..50 {
            let mut moved = false;
            while let Some(d) = a.poll_transmit() {
                moved = true;
                match b.on_datagram(d, now) {
                    Ok(Some(e)) => eb.push(e),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            while let Some(d) = b.poll_transmit() {
                moved = true;
                match a.on_datagram(d, now) {
                    Ok(Some(e)) => ea.push(e),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            if !moved {
                break;
            }
        }
        (ea, eb, errors)
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(b"media payload");
        p
    }

    fn contexts(events: Vec<DtlsEvent>) -> SrtpContexts {
        match events.into_iter().next() {
            Some(DtlsEvent::Connected(c)) => *c,
            _ => panic!("not connected"),
        }
    }

    #[test]
    fn the_handshake_keys_matching_srtp_contexts_with_aes_gcm() {
        let c = crypto();
        let server_cert = Certificate::generate(&c).unwrap();
        let client_cert = Certificate::generate(&c).unwrap();
        assert_eq!(server_cert.fingerprint().len(), 32 * 3 - 1);
        assert_ne!(server_cert.fingerprint(), client_cert.fingerprint());
        let mut server = Dtls::new(
            &server_cert,
            Role::Server,
            &client_cert.fingerprint().to_lowercase(),
            c.clone(),
        )
        .unwrap();
        let mut client =
            Dtls::new(&client_cert, Role::Client, server_cert.fingerprint(), c).unwrap();
        let (server_events, client_events, errors) = handshake(&mut server, &mut client);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(server.is_connected() && client.is_connected());
        let mut s = contexts(server_events);
        let mut k = contexts(client_events);
        assert!(matches!(s.profile, ProtectionProfile::AeadAes128Gcm));
        assert!(matches!(k.profile, ProtectionProfile::AeadAes128Gcm));

        // What one side encrypts the other decrypts, in both directions, and only once.
        let sent = s.outbound.encrypt_rtp(&rtp(1)).unwrap();
        assert_ne!(&sent[12..], &rtp(1)[12..]);
        assert_eq!(&k.inbound.decrypt_rtp(&sent).unwrap()[..], &rtp(1)[..]);
        assert!(k.inbound.decrypt_rtp(&sent).is_err(), "a replay is refused");
        let back = k.outbound.encrypt_rtp(&rtp(2)).unwrap();
        assert_eq!(&s.inbound.decrypt_rtp(&back).unwrap()[..], &rtp(2)[..]);
        // The in-place egress is keyed the same way as `outbound`.
        let mut buf = rtp(3);
        assert!(s.egress.as_mut().unwrap().protect(&mut buf, 0, 0));
        assert_eq!(&k.inbound.decrypt_rtp(&buf).unwrap()[..], &rtp(3)[..]);
    }

    #[test]
    fn a_peer_whose_certificate_does_not_match_the_fingerprint_is_refused() {
        let c = crypto();
        let server_cert = Certificate::generate(&c).unwrap();
        let client_cert = Certificate::generate(&c).unwrap();
        let impostor = Certificate::generate(&c).unwrap();
        let mut server = Dtls::new(
            &server_cert,
            Role::Server,
            client_cert.fingerprint(),
            c.clone(),
        )
        .unwrap();
        let mut client = Dtls::new(&impostor, Role::Client, server_cert.fingerprint(), c).unwrap();
        let (server_events, _, errors) = handshake(&mut server, &mut client);
        assert!(!server.is_connected());
        assert!(server_events.is_empty());
        assert!(!errors.is_empty());
    }

    #[test]
    fn close_notify_reaches_the_other_side() {
        let c = crypto();
        let server_cert = Certificate::generate(&c).unwrap();
        let client_cert = Certificate::generate(&c).unwrap();
        // Roles the other way round: the server's connection is the DTLS client.
        let mut ours = Dtls::new(
            &server_cert,
            Role::Client,
            client_cert.fingerprint(),
            c.clone(),
        )
        .unwrap();
        let mut theirs =
            Dtls::new(&client_cert, Role::Server, server_cert.fingerprint(), c).unwrap();
        let (_, _, errors) = handshake(&mut ours, &mut theirs);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(ours.is_connected() && theirs.is_connected());
        theirs.close(Instant::now());
        let mut closed = false;
        while let Some(d) = theirs.poll_transmit() {
            if let Ok(Some(DtlsEvent::Closed)) = ours.on_datagram(d, Instant::now()) {
                closed = true;
            }
        }
        assert!(closed);
    }
}
