//! Collecting validation problems, every one of them.

use super::ConfigError;
use std::net::SocketAddr;

/// Collects validation problems, so that a section's `validate` reports every one of them
/// (sections outside this crate, such as the binary's, use it too).
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// A problem with `field`.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(field, message));
    }

    /// A problem with `field` unless `value` is at least `min`.
    pub fn at_least(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.push(field, format!("must be at least {min}, got {value}"));
        }
    }

    /// Parses a listen address; empty means "disabled" and is fine.
    pub fn socket_addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        if value.is_empty() {
            return None;
        }
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.push(
                    field,
                    format!(
                        "{value:?} is not a socket address: expected IP:port such as \
                         127.0.0.1:7700 or [::1]:7700, or empty to disable"
                    ),
                );
                None
            }
        }
    }

    /// How many problems were found so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none was found so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every problem found, or `Ok(())`.
    pub fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}
