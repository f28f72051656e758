//! The server's configuration model: one typed tree, defaults embedded, validated once at start.
//!
//! Sources are layered by the binary: the defaults, then an optional TOML file
//! ([`Config::from_toml_str`]), then `SWITCHBOARD_*` environment variables
//! ([`Config::apply_env`]), then command-line flags. This module owns the shape, the defaults,
//! the parsing of each textual source and [`Config::validate`]. It does no I/O: the binary reads
//! the file and the environment and hands their text in, which keeps every rule testable here.
//!
//! Every step reports *all* the problems it finds, each as a [`ConfigError`] that names the
//! field (`limits.max_rooms`, `media.codecs[1].clock_rate`) or the environment variable it
//! concerns, so an operator fixes a config in one round instead of one error per restart.
//!
//! ```
//! use switchboard_core::config::Config;
//!
//! let mut config = Config::from_toml_str("[server]\nworkers = 2\n").unwrap();
//! config
//!     .apply_env([("SWITCHBOARD_LOG__FORMAT".to_owned(), "json".to_owned())])
//!     .unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.server.workers, 2);
//! ```

mod cluster;
mod layering;
mod media;
mod middleware;
mod placement;
mod problems;
mod process;
mod server;
#[cfg(test)]
mod tests;
mod transports;

pub use cluster::ClusterConfig;
pub use media::{MAX_RETRANSMISSION_BUFFER_PACKETS, MediaConfig};
pub use middleware::{MAX_MIDDLEWARE_QUEUE_CAPACITY, MiddlewareConfig};
pub use placement::{PlacementConfig, PlacementPolicy};
pub use process::{LogConfig, LogFormat, MIN_RPC_TOKEN_BYTES, MetricsConfig, RpcConfig};
pub use server::{LimitsConfig, MAX_WORKERS, ServerConfig};
pub use transports::{RtpConfig, WebRtcConfig};

use layering::{document_error, env_path, line_and_column, one_field_documents, set_in_table};
use problems::Problems;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;
use toml::de::DeTable;

/// Prefix of every environment variable that sets a configuration field.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Separates the levels of a field path in an environment variable name, so that
/// `SWITCHBOARD_RPC__LISTEN` sets `rpc.listen`. It is doubled because field names contain
/// single underscores (`SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS`).
pub const ENV_SEPARATOR: &str = "__";

/// `SWITCHBOARD_*` variables that are not configuration fields. The binary reads them itself
/// (`SWITCHBOARD_CONFIG` is the path of the config file), so [`Config::apply_env`] skips them
/// instead of rejecting them as typos.
pub const RESERVED_ENV_VARS: &[&str] = &["SWITCHBOARD_CONFIG"];

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
    /// The MessagePack-RPC control socket.
    pub rpc: RpcConfig,
    /// The WebRTC transport: where its worker sockets listen and what they announce.
    pub webrtc: WebRtcConfig,
    /// The plain RTP transport: where its transports bind and what they announce.
    pub rtp: RtpConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Middleware: queues, close timeout, what every room gets, default options.
    pub middleware: MiddlewareConfig,
    /// Where rooms and their transports go, and when a room spans workers.
    pub placement: PlacementConfig,
    /// Membership in a cluster of nodes sharing a Redis; without it the node runs alone.
    pub cluster: ClusterConfig,
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
    /// Parses a TOML document. Missing sections and fields keep their defaults; an unknown
    /// key, a value of the wrong type or a TOML syntax error is an error that names the field
    /// and its line. Every bad field is reported, not only the first.
    ///
    /// This checks the shape only; call [`Config::validate`] for the rules between values.
    pub fn from_toml_str(text: &str) -> Result<Self, Vec<ConfigError>> {
        let root = DeTable::parse(text).map_err(|e| {
            let mut message = format!("invalid TOML: {}", e.message().trim_end());
            if let Some(span) = e.span() {
                message.push_str(&line_and_column(text, span.start));
            }
            vec![ConfigError::new("", message)]
        })?;
        let first = match Self::deserialize_document(root.clone()) {
            Ok(config) => return Ok(config),
            Err(e) => e,
        };
        // serde stops at the first error, so deserialize each field on its own to find the
        // others. Sections all default, which makes a one-field document a complete config.
        let mut located: Vec<(usize, ConfigError)> = one_field_documents(root)
            .into_iter()
            .filter_map(|doc| Self::deserialize_document(doc).err())
            .map(|e| document_error(text, &e))
            .collect();
        if located.is_empty() {
            located.push(document_error(text, &first));
        }
        located.sort_by_key(|(offset, _)| *offset);
        let mut errors: Vec<ConfigError> = located.into_iter().map(|(_, e)| e).collect();
        errors.dedup();
        Err(errors)
    }

    /// The configuration as a TOML document, in the form [`Config::from_toml_str`] reads.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Sets one field, named by its dotted path (`rpc.listen`, `server.workers`), from text,
    /// as an environment variable or a `--set` flag would. Strings are taken verbatim; other
    /// types are parsed as TOML values of the field's type (`4`, `true`, `[...]`).
    ///
    /// On error the configuration is left unchanged.
    pub fn set(&mut self, path: &str, raw: &str) -> Result<(), String> {
        let segments: Vec<&str> = path.split('.').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("{path:?} is not a field path such as rpc.listen"));
        }
        let mut table = self.to_table()?;
        set_in_table(&mut table, &segments, raw)?;
        *self = Self::from_table(table)?;
        Ok(())
    }

    /// Applies `SWITCHBOARD_<SECTION>__<FIELD>` variables, for example
    /// `SWITCHBOARD_RPC__LISTEN=0.0.0.0:7700` or `SWITCHBOARD_LOG__FORMAT=json`.
    ///
    /// Pass the whole environment: variables without the [`ENV_PREFIX`] and those in
    /// [`RESERVED_ENV_VARS`] are skipped. Any other `SWITCHBOARD_` variable must name a field,
    /// so a typo is an error rather than a silently ignored setting. Values are parsed as
    /// [`Config::set`] does. Every bad variable is reported, by name; on error the
    /// configuration is left unchanged.
    pub fn apply_env<I>(&mut self, vars: I) -> Result<(), Vec<ConfigError>>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table = self
            .to_table()
            .map_err(|message| vec![ConfigError::new("", message)])?;
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(ENV_PREFIX) && !RESERVED_ENV_VARS.contains(&name.as_str())
            })
            .collect();
        // The environment has no order; sorting keeps the error list stable between runs.
        vars.sort();
        let mut errors = Vec::new();
        for (name, raw) in vars {
            let Some(path) = env_path(&name) else {
                errors.push(ConfigError::new(
                    name,
                    format!(
                        "is not a configuration variable: expected \
                         {ENV_PREFIX}<SECTION>{ENV_SEPARATOR}<FIELD>, \
                         such as SWITCHBOARD_RPC__LISTEN"
                    ),
                ));
                continue;
            };
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let mut candidate = table.clone();
            if let Err(message) = set_in_table(&mut candidate, &segments, &raw) {
                let message = format!("{message} (setting {})", path.join("."));
                errors.push(ConfigError::new(name, message));
                continue;
            }
            // Deserialization errors already name the field they are about.
            match Self::from_table(candidate.clone()) {
                Ok(_) => table = candidate,
                Err(message) => errors.push(ConfigError::new(name, message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *self = Self::from_table(table).map_err(|message| vec![ConfigError::new("", message)])?;
        Ok(())
    }

    /// The environment variable that sets the field at a dotted path:
    /// `rpc.listen` becomes `SWITCHBOARD_RPC__LISTEN`.
    pub fn env_var_name(path: &str) -> String {
        format!(
            "{ENV_PREFIX}{}",
            path.split('.')
                .collect::<Vec<_>>()
                .join(ENV_SEPARATOR)
                .to_ascii_uppercase()
        )
    }

    /// Checks the rules a well-typed configuration must also follow (ranges, addresses, the
    /// token rule, codec entries) and returns every violation, or `Ok(())`. Each section
    /// checks its own fields; the rules between sections are here.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut p = Problems::default();
        self.server.validate(&mut p);
        self.limits.validate(&mut p);
        self.media.validate(&mut p);
        let rpc_addr = self.rpc.validate(&mut p);
        self.webrtc.validate(&mut p, &self.server);
        self.rtp.validate(&mut p, &self.webrtc);
        let metrics_addr = p.socket_addr("metrics.listen", &self.metrics.listen);
        let collision = rpc_addr
            .zip(metrics_addr)
            .filter(|(rpc, metrics)| addresses_collide(*rpc, *metrics));
        if let Some((rpc, metrics)) = collision {
            p.push(
                "metrics.listen",
                format!("{metrics} uses the same port as rpc.listen ({rpc})"),
            );
        }

        self.middleware.validate(&mut p);
        self.placement.validate(&mut p);
        self.cluster.validate(&mut p);
        self.log.validate(&mut p);
        p.finish()
    }

    fn deserialize_document(
        doc: Spanned<DeTable<'_>>,
    ) -> Result<Self, serde_path_to_error::Error<toml::de::Error>> {
        serde_path_to_error::deserialize(toml::de::Deserializer::from(doc))
    }

    fn to_table(&self) -> Result<toml::Table, String> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => Ok(table),
            Ok(other) => Err(format!(
                "the configuration serialized to a {} instead of a table",
                other.type_str()
            )),
            Err(e) => Err(format!("the configuration cannot be written as TOML: {e}")),
        }
    }

    fn from_table(table: toml::Table) -> Result<Self, String> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let message = e.inner().message().trim_end().to_owned();
            match e.path().to_string().as_str() {
                "." => message,
                path => format!("{path}: {message}"),
            }
        })
    }
}

/// Whether two listeners would fight over one port. Port 0 asks the OS for a free port, so it
/// never collides; an unspecified IP (`0.0.0.0`, `[::]`) overlaps every address.
fn addresses_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
