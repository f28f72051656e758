//! The built-in transports' configuration sections, `[webrtc]` and `[rtp]`, as the binary's
//! settings file spells them: owned here, with their rules, so that the core's
//! configuration knows no plugin.

use serde::{Deserialize, Serialize};
use switchboard_core::config::{MAX_WORKERS, Problems, ServerConfig};

/// The WebRTC transport's network settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebRtcConfig {
    /// IP address each worker's UDP socket binds to. The default reaches only this machine;
    /// set the machine's address (or `0.0.0.0` with `announced_ip`) to serve others.
    pub listen_ip: String,
    /// IP address written into ICE candidates when it differs from `listen_ip` (a 1:1 NAT or
    /// a wildcard bind). Empty means `listen_ip`.
    pub announced_ip: String,
    /// First UDP port of the range the workers bind in, one port per worker. 0 lets the OS
    /// choose a free port for each worker.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// How long a connection may hear nothing from its client (connectivity checks, media,
    /// RTCP, DTLS) before it is closed with reason `ice_timeout`, in milliseconds. Browsers
    /// check consent every 5 s (RFC 7675), so a live client is never this quiet.
    pub consent_timeout_ms: u64,
    /// How long a peer whose WebRTC connections all closed on their own (`ice_timeout`,
    /// `dtls_closed`) stays in the room before it leaves with the same reason, in
    /// milliseconds; 0 keeps it until the backend removes it.
    pub peer_timeout_ms: u64,
    /// Which engine runs WebRTC connections. Only `native` remains (the server's own
    /// ICE-lite, DTLS and SRTP); the setting is kept so that configurations that name it
    /// still load, and `pc` (the general-purpose peer connection, removed) is refused.
    pub engine: String,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self {
            listen_ip: "127.0.0.1".to_owned(),
            announced_ip: String::new(),
            port_min: 40_000,
            port_max: 40_099,
            consent_timeout_ms: 30_000,
            peer_timeout_ms: 10_000,
            engine: "native".to_owned(),
        }
    }
}

impl WebRtcConfig {
    /// Checks this section's rules (each worker needs a port of the range), adding each
    /// violation to `p`.
    pub fn validate(&self, p: &mut Problems, server: &ServerConfig) {
        let webrtc = self;
        let range_ok = check_listen(
            p,
            "webrtc",
            (&webrtc.listen_ip, &webrtc.announced_ip),
            (webrtc.port_min, webrtc.port_max),
            ("clients", "candidates need a real address"),
        );
        if range_ok && webrtc.port_min != 0 && server.workers <= MAX_WORKERS {
            let ports = usize::from(webrtc.port_max - webrtc.port_min) + 1;
            let workers = server.worker_count();
            if ports < workers {
                p.push(
                    "webrtc.port_max",
                    format!(
                        "the range {}-{} has {ports} ports for {workers} workers; each worker needs one",
                        webrtc.port_min, webrtc.port_max
                    ),
                );
            }
        }
        p.at_least("webrtc.consent_timeout_ms", webrtc.consent_timeout_ms, 100);
        if webrtc.engine != "native" {
            p.push(
                "webrtc.engine",
                format!(
                    "must be \"native\" (the peer-connection engine \"pc\" was removed; the setting can be left out), got {:?}",
                    webrtc.engine
                ),
            );
        }
    }
}

/// The plain RTP transport's network settings: the defaults of every `rtp` transport, which
/// its creator may override per transport.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpConfig {
    /// IP address each transport's sockets bind to.
    pub listen_ip: String,
    /// IP address reported to the transport's creator when it differs from `listen_ip` (a 1:1
    /// NAT or a wildcard bind). Empty means `listen_ip`.
    pub announced_ip: String,
    /// First UDP port of the range transports bind in. Each transport takes one port, two
    /// when RTCP has a port of its own. 0 lets the OS choose.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// SSRCs that no producer of a transport declared, per direction (RTP, RTCP), that the
    /// transport's inbound SRTP context may keep state for (half of them before a comedia
    /// transport knows its remote). Packets of further SSRCs are dropped before decryption.
    pub srtp_max_ssrcs: usize,
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            listen_ip: "127.0.0.1".to_owned(),
            announced_ip: String::new(),
            port_min: 41_000,
            port_max: 41_999,
            srtp_max_ssrcs: 32,
        }
    }
}

impl RtpConfig {
    /// The `[rtp]` rules: addresses like `[webrtc]`'s, a well-formed port range, and no
    /// overlap with the WebRTC range, whose workers must each find their port free.
    pub fn validate(&self, p: &mut Problems, webrtc: &WebRtcConfig) {
        let rtp = self;
        let range_ok = check_listen(
            p,
            "rtp",
            (&rtp.listen_ip, &rtp.announced_ip),
            (rtp.port_min, rtp.port_max),
            ("remote senders", "creators need a real address to send to"),
        );
        if range_ok
            && rtp.port_min != 0
            && webrtc.port_min != 0
            && rtp.port_min <= webrtc.port_max
            && webrtc.port_min <= rtp.port_max
        {
            p.push(
                "rtp.port_min",
                format!(
                    "the range {}-{} overlaps the webrtc range {}-{}",
                    rtp.port_min, rtp.port_max, webrtc.port_min, webrtc.port_max
                ),
            );
        }
        p.at_least("rtp.srtp_max_ssrcs", rtp.srtp_max_ssrcs as u64, 1);
    }
}

/// The rules a UDP plugin's section shares: IP addresses, an announced address that is not a
/// wildcard (and required when the listen address is one), a well-formed port range. Whether
/// the range is well-formed, for the rules that build on it.
fn check_listen(
    p: &mut Problems,
    section: &str,
    (listen_ip, announced_ip): (&str, &str),
    (port_min, port_max): (u16, u16),
    (who, why): (&str, &str),
) -> bool {
    let listen = listen_ip.parse::<std::net::IpAddr>();
    if listen.is_err() {
        p.push(
            format!("{section}.listen_ip"),
            format!("{listen_ip:?} is not an IP address"),
        );
    }
    match announced_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => p.push(
            format!("{section}.announced_ip"),
            format!("must be an address {who} can reach, not a wildcard"),
        ),
        Err(_) if !announced_ip.is_empty() => p.push(
            format!("{section}.announced_ip"),
            format!("{announced_ip:?} is not an IP address"),
        ),
        _ => {}
    }
    if announced_ip.is_empty() && listen.is_ok_and(|ip| ip.is_unspecified()) {
        p.push(
            format!("{section}.announced_ip"),
            format!("is required when {section}.listen_ip is a wildcard: {why}"),
        );
    }
    if port_min == 0 && port_max != 0 {
        p.push(
            format!("{section}.port_min"),
            format!("must be set when {section}.port_max is"),
        );
        false
    } else if port_min > port_max {
        p.push(
            format!("{section}.port_max"),
            format!("must be at least {section}.port_min ({port_min}), got {port_max}"),
        );
        false
    } else {
        true
    }
}
