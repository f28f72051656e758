//! Where a UDP-based plugin listens and what address it announces: the same four settings for
//! `webrtc` and `rtp`, each from its own configuration section; and the `rtp` plugin's limits
//! on what strangers may make it keep.

use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};
use switchboard_core::{Error, ErrorCode, Result};

/// Listening address, announced address (NAT 1:1) and port range of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenSettings {
    /// IP address sockets bind to.
    pub listen_ip: IpAddr,
    /// IP address given to the remote side (candidates, SDP, `local` parameters) when it
    /// differs from `listen_ip`; `None` gives `listen_ip`.
    pub announced_ip: Option<IpAddr>,
    /// First port of the range sockets bind in. 0 lets the OS pick each port.
    pub port_min: u16,
    /// Last port of the range.
    pub port_max: u16,
}

impl Default for ListenSettings {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_ip: None,
            port_min: 0,
            port_max: 0,
        }
    }
}

impl ListenSettings {
    /// Settings from a validated configuration section named `section` (for messages).
    pub fn from_config(
        section: &str,
        listen_ip: &str,
        announced_ip: &str,
        port_min: u16,
        port_max: u16,
    ) -> Result<Self> {
        let ip = |field: &str, v: &str| {
            v.parse::<IpAddr>().map_err(|_| {
                Error::new(
                    ErrorCode::InvalidConfig,
                    format!("{section}.{field}: {v:?} is not an IP address"),
                )
            })
        };
        Ok(Self {
            listen_ip: ip("listen_ip", listen_ip)?,
            announced_ip: if announced_ip.is_empty() {
                None
            } else {
                Some(ip("announced_ip", announced_ip)?)
            },
            port_min,
            port_max,
        })
    }
}

/// Default of `rtp.srtp_max_ssrcs`: far more than a real remote uses (one or two SSRCs of its
/// own for reports and feedback, plus undeclared producers' streams), few enough that the
/// state rtc-srtp keeps for them (a map entry and a replay window each) stays a few KB.
pub const DEFAULT_SRTP_MAX_SSRCS: usize = 32;

/// The `rtp` plugin's settings: where transports listen, and its limits on hostile input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpSettings {
    /// Addresses and port range.
    pub listen: ListenSettings,
    /// SSRCs that no producer of the transport declared, per direction (RTP, RTCP), that a
    /// transport's inbound SRTP context may hold state for; half of them before a comedia
    /// transport knows its remote.
    pub srtp_max_ssrcs: usize,
}

impl Default for RtpSettings {
    fn default() -> Self {
        Self {
            listen: ListenSettings::default(),
            srtp_max_ssrcs: DEFAULT_SRTP_MAX_SSRCS,
        }
    }
}

impl RtpSettings {
    /// Settings from the validated `[rtp]` section.
    pub fn from_config(config: &crate::config::RtpConfig) -> Result<Self> {
        if config.srtp_max_ssrcs == 0 {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                "rtp.srtp_max_ssrcs: must be at least 1, got 0",
            ));
        }
        Ok(Self {
            listen: ListenSettings::from_config(
                "rtp",
                &config.listen_ip,
                &config.announced_ip,
                config.port_min,
                config.port_max,
            )?,
            srtp_max_ssrcs: config.srtp_max_ssrcs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_names_the_bad_field() {
        let s = ListenSettings::from_config("rtp", "10.0.0.1", "", 5000, 5010).unwrap();
        assert_eq!(s.listen_ip.to_string(), "10.0.0.1");
        assert_eq!(s.announced_ip, None);
        let s = ListenSettings::from_config("rtp", "0.0.0.0", "203.0.113.9", 0, 0).unwrap();
        assert_eq!(
            s.announced_ip.map(|i| i.to_string()).as_deref(),
            Some("203.0.113.9")
        );
        let e = ListenSettings::from_config("webrtc", "x", "", 0, 0).unwrap_err();
        assert!(e.message.starts_with("webrtc.listen_ip"), "{e}");
    }

    #[test]
    fn rtp_settings_take_the_limits_from_the_rtp_section() {
        let mut config = crate::config::RtpConfig::default();
        let s = RtpSettings::from_config(&config).unwrap();
        assert_eq!(s.srtp_max_ssrcs, DEFAULT_SRTP_MAX_SSRCS);
        assert_eq!(s.listen.port_min, config.port_min);
        config.srtp_max_ssrcs = 4;
        assert_eq!(RtpSettings::from_config(&config).unwrap().srtp_max_ssrcs, 4);
        config.srtp_max_ssrcs = 0;
        let e = RtpSettings::from_config(&config).unwrap_err();
        assert!(e.message.starts_with("rtp.srtp_max_ssrcs"), "{e}");
    }
}
