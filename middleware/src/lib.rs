//! # switchboard-middleware
//!
//! Built-in middleware for Switchboard rooms. Each implements
//! [`switchboard_core::middleware::MiddlewareFactory`] and is registered at start-up.
//!
//! The built-ins (logging, recorder, mixer) arrive with their own issue; until then this
//! crate provides the registration seam the server binary calls.

#![warn(missing_docs)]

use switchboard_core::Result;
use switchboard_core::middleware::MiddlewareRegistry;

pub mod recorder;

/// Registers every built-in middleware (none yet).
pub fn register_builtin(registry: &mut MiddlewareRegistry) -> Result<()> {
    registry.register(std::sync::Arc::new(recorder::RecorderFactory))?;
    Ok(())
}
