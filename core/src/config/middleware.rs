//! Middleware: queues, close timeout, what every room gets, and per-name options.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// Upper bound for `middleware.queue_capacity`: a queue this long already holds minutes of a
/// video stream; beyond it a slow middleware would only hoard memory.
pub const MAX_MIDDLEWARE_QUEUE_CAPACITY: usize = 1 << 20;

/// Middleware: how instances are fed and closed, which are attached to every new room, and
/// the options each gets by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiddlewareConfig {
    /// Packets (RTP and RTCP) queued for one instance before further ones are dropped and
    /// counted. Events and producer announcements are never dropped.
    pub queue_capacity: usize,
    /// How long closing one instance (detach, room close, shutdown) may take, delivering what
    /// was queued and running its `close`, in milliseconds. Shutdown waits for all instances
    /// together, within `server.shutdown_timeout_ms`.
    pub close_timeout_ms: u64,
    /// How long an instance waits for its room to answer a request (publishing a track,
    /// reading a producer's feedback), in milliseconds.
    pub request_timeout_ms: u64,
    /// Middleware attached to every new room, by registered name, in order.
    pub attach: Vec<String>,
    /// Default options per middleware name (`[middleware.options.recorder]`), overlaid key by
    /// key with the options of an attach request.
    pub options: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl Default for MiddlewareConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            close_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
            attach: Vec::new(),
            options: Default::default(),
        }
    }
}

impl MiddlewareConfig {
    /// The options an instance of `name` gets: the configured defaults overlaid, top-level key
    /// by key, with `requested` (an object, or null for none).
    pub fn options_for(&self, name: &str, requested: &serde_json::Value) -> serde_json::Value {
        crate::middleware::overlay_options(&self.configured_options(name), requested)
    }

    /// The configured options of `name` (`[middleware.options.<name>]`), empty if none.
    pub fn configured_options(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        self.options.get(name).cloned().unwrap_or_default()
    }

    /// Checks this section's rules, adding each violation to `p`.
    pub(super) fn validate(&self, p: &mut Problems) {
        let middleware = self;
        p.at_least(
            "middleware.queue_capacity",
            middleware.queue_capacity as u64,
            1,
        );
        if middleware.queue_capacity > MAX_MIDDLEWARE_QUEUE_CAPACITY {
            p.push(
                "middleware.queue_capacity",
                format!(
                    "must be at most {MAX_MIDDLEWARE_QUEUE_CAPACITY}, got {}",
                    middleware.queue_capacity
                ),
            );
        }
        p.at_least(
            "middleware.close_timeout_ms",
            middleware.close_timeout_ms,
            1,
        );
        p.at_least(
            "middleware.request_timeout_ms",
            middleware.request_timeout_ms,
            1,
        );
        for (i, name) in middleware.attach.iter().enumerate() {
            if name.trim().is_empty() {
                p.push(format!("middleware.attach[{i}]"), "must not be empty");
            } else if middleware.attach[..i].contains(name) {
                p.push(
                    format!("middleware.attach[{i}]"),
                    format!("{name:?} is listed twice; a room has each middleware once"),
                );
            }
        }
    }
}
