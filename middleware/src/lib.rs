//! # switchboard-middleware
//!
//! Built-in middleware for Switchboard rooms. Each implements
//! [`switchboard_core::middleware::MiddlewareFactory`] and is registered at start-up by
//! [`register_builtin`]; `docs/middleware.md` describes their options and events.
//!
//! - [`logging`]: structured records of a room's lifecycle and periodic stream summaries.
//! - [`recorder`]: records a room's or chosen producers' media to WebM/Matroska or Ogg files.
//! - [`mixer`]: decodes a room's Opus speakers, mixes them (optionally a mix-minus per
//!   participant), and publishes the mix back into the room.

#![warn(missing_docs)]

pub mod logging;
pub mod mixer;
pub mod recorder;

use std::sync::Arc;
use switchboard_core::Result;
use switchboard_core::middleware::MiddlewareRegistry;

/// Registers every built-in middleware.
pub fn register_builtin(registry: &mut MiddlewareRegistry) -> Result<()> {
    registry.register(Arc::new(logging::Logging))?;
    registry.register(Arc::new(recorder::RecorderFactory))?;
    registry.register(mixer::factory())?;
    Ok(())
}
