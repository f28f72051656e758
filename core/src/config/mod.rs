//! The media server's configuration model: one typed tree, defaults embedded, validated once
//! at start.
//!
//! This is what the actor tree and the middleware read: workers, limits, media,
//! middleware, placement, and each transport plugin's options. The built-in transports'
//! own sections (`[webrtc]`, `[rtp]`) are the transports crate's. The process around it
//! (control socket, metrics endpoint, logging, cluster) and
//! the layering of its sources (file, environment, flags) belong to the binary, whose
//! `Settings` hold these sections beside its own.
//!
//! Validation reports *all* the problems it finds, each as a [`ConfigError`] that names the
//! field (`limits.max_rooms`, `media.codecs[1].clock_rate`), so an operator fixes a
//! configuration in one round instead of one error per restart.
//!
//! ```
//! use switchboard_core::config::Config;
//!
//! let mut config = Config::default();
//! config.server.workers = 2;
//! config.validate().unwrap();
//! config.limits.max_rooms = 0;
//! let errors = config.validate().unwrap_err();
//! assert_eq!(errors[0].field, "limits.max_rooms");
//! ```

mod media;
mod middleware;
mod placement;
mod problems;
mod server;

pub use media::{MAX_RETRANSMISSION_BUFFER_PACKETS, MediaConfig};
pub use middleware::{MAX_MIDDLEWARE_QUEUE_CAPACITY, MiddlewareConfig};
pub use placement::{PlacementConfig, PlacementPolicy};
pub use problems::Problems;
pub use server::{LimitsConfig, MAX_WORKERS, ServerConfig};

use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem with a configuration.
///
/// Displayed as `field: message`, for example
/// `limits.max_rooms: must be at least 1, got 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What the problem is about: a dotted field path (`rpc.listen`,
    /// `media.codecs[0].clock_rate`), an environment variable (`SWITCHBOARD_SERVER__WORKERS`),
    /// or empty when it concerns a TOML document as a whole (a syntax error).
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Workers and their threads.
    pub server: ServerConfig,
    /// Limits on objects and requests.
    pub limits: LimitsConfig,
    /// Media defaults: router codecs, retransmission and keyframe behaviour.
    pub media: MediaConfig,
    /// Middleware: queues, close timeout, what every room gets, default options.
    pub middleware: MiddlewareConfig,
    /// Where rooms and their transports go, and when a room spans workers.
    pub placement: PlacementConfig,
    /// Default options of each transport plugin kind (`[transports.<kind>]`), overlaid key by
    /// key with the options of each `transport.create`: how a plugin of a team's own gets
    /// its settings without a section of its own here. The server refuses to start when a
    /// kind names no registered plugin.
    pub transports: TransportOptions,
}

/// Default options per transport plugin kind.
pub type TransportOptions =
    std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>;

impl Config {
    /// The options a new transport of `kind` gets: the configured defaults of the kind
    /// overlaid, top-level key by key, with `requested`; `requested` as it is when the kind
    /// has none configured.
    pub fn transport_options(
        &self,
        kind: &str,
        requested: &serde_json::Value,
    ) -> serde_json::Value {
        match self.transports.get(kind) {
            Some(configured) => crate::middleware::overlay_options(configured, requested),
            None => requested.clone(),
        }
    }
}

impl Config {
    /// Checks the rules a well-typed configuration must also follow (ranges, addresses, codec
    /// entries) and returns every violation, or `Ok(())`. Each section
    /// checks its own fields; the rules between sections are here.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut p = Problems::default();
        self.server.validate(&mut p);
        self.limits.validate(&mut p);
        self.media.validate(&mut p);
        self.middleware.validate(&mut p);
        self.placement.validate(&mut p);
        p.finish()
    }
}
