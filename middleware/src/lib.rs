//! # switchboard-middleware
//!
//! Built-in middleware for Switchboard rooms. Each implements
//! [`switchboard_core::middleware::MiddlewareFactory`] and is registered at start-up.
//!
//! - [`mixer`]: decodes a room's Opus speakers, mixes them (optionally a mix-minus per
//!   participant), and publishes the mix back into the room.
//! - [`recorder`]: records a room's or chosen producers' media to WebM/Matroska or Ogg files.

#![warn(missing_docs)]

pub mod mixer;
pub mod recorder;

use switchboard_core::Result;
use switchboard_core::middleware::MiddlewareRegistry;

/// Registers every built-in middleware.
pub fn register_builtin(registry: &mut MiddlewareRegistry) -> Result<()> {
    registry.register(mixer::factory())?;
    registry.register(std::sync::Arc::new(recorder::RecorderFactory))?;
    Ok(())
}
