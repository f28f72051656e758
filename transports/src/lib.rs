//! # switchboard-transports
//!
//! Transport plugins for Switchboard. Each implements
//! [`switchboard_core::transport::TransportPlugin`] and is registered at start-up.
//!
//! - [`direct`]: in-process RTP/RTCP for Rust code and tests.

pub mod direct;

use std::sync::Arc;
use switchboard_core::Result;
use switchboard_core::transport::TransportRegistry;

pub use direct::{DirectEndpoint, DirectPacket, DirectPlugin};

/// The built-in plugins, registered in order (`direct` first).
pub struct Builtin {
    /// The direct plugin, to reach its endpoints.
    pub direct: Arc<DirectPlugin>,
}

/// Registers every built-in plugin.
pub fn register_builtin(registry: &mut TransportRegistry) -> Result<Builtin> {
    let direct = DirectPlugin::new();
    registry.register(direct.clone())?;
    Ok(Builtin { direct })
}
