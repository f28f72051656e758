//! # switchboard-transports
//!
//! Transport plugins for Switchboard. Each implements
//! [`switchboard_core::transport::TransportPlugin`] and is registered at start-up.
//!
//! - [`direct`]: in-process RTP/RTCP for Rust code and tests.
//! - [`webrtc`]: ICE-lite, DTLS-SRTP and SDP offer/answer for browsers and native apps.
//! - [`rtp`]: plain RTP/RTCP over UDP (optionally SRTP) for ffmpeg, GStreamer and gateways.
//! - [`pipe`]: router to router, so one room can span workers.

#![warn(missing_docs)]

pub mod config;
pub mod direct;
pub mod pipe;
pub mod rtp;
pub mod settings;
pub mod webrtc;

use std::sync::Arc;
use switchboard_core::Result;
use switchboard_core::transport::TransportRegistry;

pub use direct::{DirectEndpoint, DirectPacket, DirectPlugin};
pub use pipe::PipePlugin;
pub use rtp::{RtpPlugin, RtpSettings};
pub use webrtc::{WebRtcPlugin, WebRtcSettings};

/// The built-in plugins, registered in order (`direct` first).
pub struct Builtin {
    /// The direct plugin, to reach its endpoints.
    pub direct: Arc<DirectPlugin>,
}

/// Registers the built-in plugins that need no settings (`direct`, then `pipe`, which rooms
/// spanning workers need).
pub fn register_builtin(registry: &mut TransportRegistry) -> Result<Builtin> {
    let direct = DirectPlugin::new();
    registry.register(direct.clone())?;
    registry.register(PipePlugin::new())?;
    Ok(Builtin { direct })
}

/// Registers the `webrtc` plugin with the configured network settings.
pub fn register_webrtc(
    registry: &mut TransportRegistry,
    config: &crate::config::WebRtcConfig,
) -> Result<()> {
    registry.register(WebRtcPlugin::new(WebRtcSettings::from_config(config)?))
}

/// Registers the `rtp` plugin with the configured network settings and limits.
pub fn register_rtp(
    registry: &mut TransportRegistry,
    config: &crate::config::RtpConfig,
) -> Result<()> {
    registry.register(RtpPlugin::new(RtpSettings::from_config(config)?))
}
