//! Collecting validation problems, every one of them.

use super::ConfigError;
use std::net::SocketAddr;

/// Collects validation problems.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigError>);

impl Problems {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(field, message));
    }

    pub(super) fn at_least(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.push(field, format!("must be at least {min}, got {value}"));
        }
    }

    /// Parses a listen address; empty means "disabled" and is fine.
    pub(super) fn socket_addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
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

    pub(super) fn finish(self) -> Result<(), Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}
