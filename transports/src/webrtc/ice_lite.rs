//! The server's side of ICE (RFC 8445 §2.5): a lite agent answers the client's connectivity
//! checks and never sends any of its own. It learns where the client can be reached from the
//! checks that authenticate, takes the address of the last one that nominated its pair
//! (USE-CANDIDATE), and keeps the time of the last authenticated check as consent (RFC 7675):
//! a client that stops checking has withdrawn it.
//!
//! Plain synchronous state, driven by the connection with the datagrams the worker socket
//! routes to it.

use rtc_stun::attributes::{ATTR_ICE_CONTROLLED, ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc_stun::error_code::{CODE_ROLE_CONFLICT, ErrorCodeAttribute};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Message, Setter};
use rtc_stun::xoraddr::XorMappedAddress;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Why a STUN message was not answered. Each is counted by the caller; none gets a response,
/// so that a forged check learns nothing and costs one parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckRefused {
    /// Not a STUN message, or not a binding request (responses, indications).
    NotABindingRequest,
    /// No USERNAME, or one that names another session (an old ufrag after an ICE restart).
    WrongUsername,
    /// No MESSAGE-INTEGRITY, or one that does not verify with the local password.
    BadIntegrity,
    /// A FINGERPRINT that does not match the message.
    BadFingerprint,
    /// The response could not be written (a STUN encoding error).
    Encoding,
}

/// What a binding request that authenticated asks of the connection.
#[derive(Debug)]
pub struct CheckAnswer {
    /// The datagram to send back to the checking address.
    pub response: Vec<u8>,
    /// Whether the check nominated its pair: `from` is now the selected address.
    pub nominated: bool,
    /// Whether the client claimed the controlled role too: the response is a 487 Role
    /// Conflict, so that it takes the controlling role a lite peer leaves it (RFC 8445
    /// §7.3.1.1), and nothing was learned from the check.
    pub role_conflict: bool,
}

/// The ICE-lite state of one connection.
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    /// The client's ufrag, once its description is known: checks naming another are refused.
    remote_ufrag: Option<String>,
    selected: Option<SocketAddr>,
    /// When the last authenticated check arrived.
    last_consent: Option<Instant>,
    crypto: Arc<dyn rtc_crypto::RTCCryptoProvider>,
}

impl IceLite {
    /// A session with these local credentials (those written into the server's description).
    pub fn new(
        local_ufrag: String,
        local_pwd: String,
        crypto: Arc<dyn rtc_crypto::RTCCryptoProvider>,
    ) -> Self {
        Self {
            local_ufrag,
            local_pwd,
            remote_ufrag: None,
            selected: None,
            last_consent: None,
            crypto,
        }
    }

    /// A session with these credentials and the default crypto provider (for the fuzzer and
    /// tools; connections share their worker's provider through [`IceLite::new`]).
    pub fn with_default_crypto(
        local_ufrag: &str,
        local_pwd: &str,
    ) -> switchboard_core::Result<Self> {
        let crypto = rtc_crypto::default_provider().map_err(|e| {
            switchboard_core::Error::new(
                switchboard_core::ErrorCode::TransportFailed,
                e.to_string(),
            )
        })?;
        Ok(Self::new(
            local_ufrag.to_owned(),
            local_pwd.to_owned(),
            crypto,
        ))
    }

    /// Fresh credentials from the crypto provider's random source: a 4-character ufrag's
    /// worth of entropy is what RFC 8445 asks as a minimum; these have 16 and 32 characters
    /// (96 and 192 bits), as browsers use.
    pub fn credentials(crypto: &dyn rtc_crypto::RTCCryptoProvider) -> (String, String) {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bytes = [0u8; 48];
        if crypto.random().fill(&mut bytes).is_err() {
            // The provider's random source failing is not recoverable by retrying; fall back
            // to the OS generator through the standard library's hasher keys.
            use std::hash::{BuildHasher, RandomState};
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = RandomState::new().hash_one(i) as u8;
            }
        }
        let text: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b & 63)] as char)
            .collect();
        (text[..16].to_owned(), text[16..].to_owned())
    }

    /// The local ufrag.
    pub fn ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// The local password.
    pub fn pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The client's ufrag, once its description said it.
    pub fn remote_ufrag(&self) -> Option<&str> {
        self.remote_ufrag.as_deref()
    }

    /// Sets the client's ufrag from its description.
    pub fn set_remote_ufrag(&mut self, ufrag: &str) {
        self.remote_ufrag = Some(ufrag.to_owned());
    }

    /// Starts a new ICE session (an ICE restart): new local credentials, the client's to be
    /// learned again. The selected address stays until a check of the new session nominates
    /// another, so media keeps flowing through the restart.
    pub fn restart(&mut self, local_ufrag: String, local_pwd: String) {
        self.local_ufrag = local_ufrag;
        self.local_pwd = local_pwd;
        self.remote_ufrag = None;
    }

    /// The address the client nominated, if any.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// When the client last checked with the right credentials.
    pub fn last_consent(&self) -> Option<Instant> {
        self.last_consent
    }

    /// Answers a STUN binding request from `from`.
    pub fn on_request(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<CheckAnswer, CheckRefused> {
        let mut msg = Message::new();
        msg.unmarshal_binary(data)
            .map_err(|_| CheckRefused::NotABindingRequest)?;
        if msg.typ != BINDING_REQUEST {
            return Err(CheckRefused::NotABindingRequest);
        }
        let username = msg
            .get(ATTR_USERNAME)
            .map_err(|_| CheckRefused::WrongUsername)?;
        let username = std::str::from_utf8(&username).map_err(|_| CheckRefused::WrongUsername)?;
        let (server, client) = username
            .split_once(':')
            .ok_or(CheckRefused::WrongUsername)?;
        if server != self.local_ufrag
            || self
                .remote_ufrag
                .as_deref()
                .is_some_and(|remote| remote != client)
        {
            return Err(CheckRefused::WrongUsername);
        }
        // The fingerprint is checked before the integrity (RFC 8445 §7.3), on the message
        // as received; the integrity check rewrites the length field while it verifies.
        if msg.contains(rtc_stun::attributes::ATTR_FINGERPRINT) {
            FINGERPRINT
                .check(&msg)
                .map_err(|_| CheckRefused::BadFingerprint)?;
        }
        MessageIntegrity::check(&mut msg, self.local_pwd.as_bytes(), self.crypto.crypto())
            .map_err(|_| CheckRefused::BadIntegrity)?;

        let role_conflict = msg.contains(ATTR_ICE_CONTROLLED);
        let nominated = !role_conflict && msg.contains(ATTR_USE_CANDIDATE);
        let integrity = MessageIntegrity::new_short_term_integrity_with_provider(
            self.local_pwd.clone(),
            self.crypto.crypto(),
        );
        let mut out = Message::new();
        let built = if role_conflict {
            out.build(&[
                Box::new(msg.clone()) as Box<dyn Setter>,
                Box::new(BINDING_ERROR),
                Box::new(ErrorCodeAttribute {
                    code: CODE_ROLE_CONFLICT,
                    reason: b"Role Conflict".to_vec(),
                }),
                Box::new(integrity),
                Box::new(FINGERPRINT),
            ])
        } else {
            out.build(&[
                Box::new(msg.clone()) as Box<dyn Setter>,
                Box::new(BINDING_SUCCESS),
                Box::new(XorMappedAddress {
                    ip: from.ip(),
                    port: from.port(),
                }),
                Box::new(integrity),
                Box::new(FINGERPRINT),
            ])
        };
        built.map_err(|_| CheckRefused::Encoding)?;
        if !role_conflict {
            self.last_consent = Some(now);
            if nominated {
                self.selected = Some(from);
            }
        }
        Ok(CheckAnswer {
            response: out.raw,
            nominated,
            role_conflict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_stun::attributes::ATTR_ICE_CONTROLLING;
    use rtc_stun::error_code::ErrorCodeAttribute;
    use rtc_stun::message::Getter;
    use rtc_stun::textattrs::TextAttribute;

    fn crypto() -> Arc<dyn rtc_crypto::RTCCryptoProvider> {
        rtc_crypto::default_provider().expect("crypto provider")
    }

    /// A check as a controlling full agent (a browser) sends it.
    fn check(username: &str, pwd: &str, attrs: &[rtc_stun::attributes::AttrType]) -> Vec<u8> {
        let crypto = crypto();
        let mut m = Message::new();
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(rtc_stun::message::TransactionId::new()),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
        ];
        for a in attrs {
            setters.push(Box::new(Flag(*a)));
        }
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(
                pwd.to_owned(),
                crypto.crypto(),
            ),
        ));
        setters.push(Box::new(FINGERPRINT));
        m.build(&setters).unwrap();
        m.raw
    }

    /// An attribute carried for its presence (USE-CANDIDATE) or with a tie-breaker.
    struct Flag(rtc_stun::attributes::AttrType);
    impl Setter for Flag {
        fn add_to(&self, m: &mut Message) -> rtc_shared::error::Result<()> {
            if self.0 == ATTR_USE_CANDIDATE {
                m.add(self.0, &[]);
            } else {
                m.add(self.0, &7u64.to_be_bytes());
            }
            Ok(())
        }
    }

    fn lite() -> IceLite {
        IceLite::new(
            "srvufrag".into(),
            "server-password-0123456789".into(),
            crypto(),
        )
    }

    #[test]
    fn an_authentic_check_is_answered_and_its_nomination_selects_the_address() {
        let mut ice = lite();
        ice.set_remote_ufrag("cli");
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let now = Instant::now();
        let plain = check(
            "srvufrag:cli",
            "server-password-0123456789",
            &[ATTR_ICE_CONTROLLING],
        );
        let a = ice.on_request(&plain, from, now).unwrap();
        assert!(!a.nominated && !a.role_conflict);
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.last_consent(), Some(now));

        // The response is what the client's agent checks: same transaction, the client's
        // address, integrity with the server password, and a fingerprint.
        let mut resp = Message::new();
        resp.unmarshal_binary(&a.response).unwrap();
        assert_eq!(resp.typ, BINDING_SUCCESS);
        let mut req = Message::new();
        req.unmarshal_binary(&plain).unwrap();
        assert_eq!(resp.transaction_id, req.transaction_id);
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&resp).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
        FINGERPRINT.check(&resp).unwrap();
        MessageIntegrity::check(&mut resp, b"server-password-0123456789", crypto().crypto())
            .unwrap();

        let nominating = check(
            "srvufrag:cli",
            "server-password-0123456789",
            &[ATTR_ICE_CONTROLLING, ATTR_USE_CANDIDATE],
        );
        let a = ice.on_request(&nominating, from, now).unwrap();
        assert!(a.nominated);
        assert_eq!(ice.selected(), Some(from));
    }

    #[test]
    fn forged_and_stale_checks_are_refused_without_an_answer() {
        let mut ice = lite();
        ice.set_remote_ufrag("cli");
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let now = Instant::now();
        let wrong_pwd = check("srvufrag:cli", "guessed-password", &[ATTR_USE_CANDIDATE]);
        assert_eq!(
            ice.on_request(&wrong_pwd, from, now).unwrap_err(),
            CheckRefused::BadIntegrity
        );
        let other_client = check(
            "srvufrag:intruder",
            "server-password-0123456789",
            &[ATTR_USE_CANDIDATE],
        );
        assert_eq!(
            ice.on_request(&other_client, from, now).unwrap_err(),
            CheckRefused::WrongUsername
        );
        let mut corrupted = check("srvufrag:cli", "server-password-0123456789", &[]);
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0xff;
        assert_eq!(
            ice.on_request(&corrupted, from, now).unwrap_err(),
            CheckRefused::BadFingerprint
        );
        assert_eq!(
            ice.on_request(b"\x16\xfe\xfd not stun", from, now)
                .unwrap_err(),
            CheckRefused::NotABindingRequest
        );
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.last_consent(), None, "no refused check gives consent");

        // After a restart the old ufrag is refused and the new one answered.
        ice.restart("newufrag".into(), "new-password-0123456789012".into());
        let old = check("srvufrag:cli", "server-password-0123456789", &[]);
        assert_eq!(
            ice.on_request(&old, from, now).unwrap_err(),
            CheckRefused::WrongUsername
        );
        let new = check("newufrag:cli2", "new-password-0123456789012", &[]);
        assert!(ice.on_request(&new, from, now).is_ok());
    }

    #[test]
    fn a_client_claiming_the_controlled_role_gets_a_role_conflict() {
        let mut ice = lite();
        let from: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let req = check(
            "srvufrag:cli",
            "server-password-0123456789",
            &[ATTR_ICE_CONTROLLED, ATTR_USE_CANDIDATE],
        );
        let a = ice.on_request(&req, from, Instant::now()).unwrap();
        assert!(a.role_conflict && !a.nominated);
        let mut resp = Message::new();
        resp.unmarshal_binary(&a.response).unwrap();
        assert_eq!(resp.typ, BINDING_ERROR);
        let mut code = ErrorCodeAttribute::default();
        code.get_from(&resp).unwrap();
        assert!(code.code == CODE_ROLE_CONFLICT);
        assert_eq!(ice.selected(), None);
    }

    #[test]
    fn credentials_are_long_random_and_distinct() {
        let c = crypto();
        let (u1, p1) = IceLite::credentials(c.as_ref());
        let (u2, p2) = IceLite::credentials(c.as_ref());
        assert_eq!((u1.len(), p1.len()), (16, 32));
        assert_ne!(u1, u2);
        assert_ne!(p1, p2);
        assert!(!u1.contains(':'));
    }
}
