//! The server process's settings: the media server's [`Config`] sections, the built-in
//! transports' (`[webrtc]`, `[rtp]`, from their crate) and the process's own (control
//! socket, metrics endpoint, logging, cluster), and the layering of their sources.
//!
//! Sources are layered in order: the defaults, then an optional TOML file
//! ([`Settings::from_toml_str`]), then `SWITCHBOARD_*` environment variables
//! ([`Settings::apply_env`]), then command-line flags. This module owns the file's shape, the
//! parsing of each textual source and [`Settings::validate`]; it does no I/O ([`crate::load`]
//! reads the file and the environment and hands their text in), which keeps every rule
//! testable here.
//!
//! Every step reports *all* the problems it finds, each as a [`ConfigError`] that names the
//! field or the environment variable it concerns.
//!
//! ```
//! use switchboard::settings::Settings;
//!
//! let mut settings = Settings::from_toml_str("[server]\nworkers = 2\n").unwrap();
//! settings
//!     .apply_env([("SWITCHBOARD_LOG__FORMAT".to_owned(), "json".to_owned())])
//!     .unwrap();
//! settings.validate().unwrap();
//! assert_eq!(settings.config().server.workers, 2);
//! ```

mod cluster;
mod layering;
mod process;
#[cfg(test)]
mod tests;

pub use cluster::ClusterConfig;
pub use process::{LogConfig, LogFormat, MIN_RPC_TOKEN_BYTES, MetricsConfig, RpcConfig};

use layering::{document_error, env_path, line_and_column, one_field_documents, set_in_table};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use switchboard_core::config::{
    Config, ConfigError, LimitsConfig, MediaConfig, MiddlewareConfig, PlacementConfig, Problems,
    ServerConfig, TransportOptions,
};
use switchboard_transports::config::{RtpConfig, WebRtcConfig};
use toml::Spanned;
use toml::de::DeTable;

/// Prefix of every environment variable that sets a field.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Separates the levels of a field path in an environment variable name, so that
/// `SWITCHBOARD_RPC__LISTEN` sets `rpc.listen`. It is doubled because field names contain
/// single underscores (`SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS`).
pub const ENV_SEPARATOR: &str = "__";

/// `SWITCHBOARD_*` variables that are not fields. The binary reads them itself
/// (`SWITCHBOARD_CONFIG` is the path of the config file), so [`Settings::apply_env`] skips
/// them instead of rejecting them as typos.
pub const RESERVED_ENV_VARS: &[&str] = &["SWITCHBOARD_CONFIG"];

/// Everything the configuration file, the environment and the flags can set.
///
/// The media server's sections are [`Config`]'s, under the same names; [`Settings::config`]
/// hands them to the actor tree. Listing them here, rather than flattening a `Config` in,
/// keeps unknown keys errors: serde cannot refuse unknown fields through a flattened struct.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
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
    /// Default options of each transport plugin kind (`[transports.<kind>]`).
    pub transports: TransportOptions,
}

impl Settings {
    /// The media server's configuration: the sections the actor tree, the transports and the
    /// middleware read.
    pub fn config(&self) -> Config {
        Config {
            server: self.server.clone(),
            limits: self.limits.clone(),
            media: self.media.clone(),
            middleware: self.middleware.clone(),
            placement: self.placement.clone(),
            transports: self.transports.clone(),
        }
    }

    /// Checks every rule: the media server's ([`Config::validate`]), the built-in
    /// transports', the process sections' (addresses, the token rule), and those between
    /// them. Returns every violation.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = self.config().validate().err().unwrap_or_default();
        let mut p = Problems::default();
        self.webrtc.validate(&mut p, &self.server);
        self.rtp.validate(&mut p, &self.webrtc);
        let rpc_addr = self.rpc.validate(&mut p);
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
        self.cluster.validate(&mut p);
        self.log.validate(&mut p);
        errors.extend(p.finish().err().unwrap_or_default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Parses a TOML document. Missing sections and fields keep their defaults; an unknown
    /// key, a value of the wrong type or a TOML syntax error is an error that names the field
    /// and its line. Every bad field is reported, not only the first.
    ///
    /// This checks the shape only; call [`Settings::validate`] for the rules between values.
    pub fn from_toml_str(text: &str) -> Result<Self, Vec<ConfigError>> {
        let root = DeTable::parse(text).map_err(|e| {
            let mut message = format!("invalid TOML: {}", e.message().trim_end());
            if let Some(span) = e.span() {
                message.push_str(&line_and_column(text, span.start));
            }
            vec![ConfigError::new("", message)]
        })?;
        let first = match Self::deserialize_document(root.clone()) {
            Ok(settings) => return Ok(settings),
            Err(e) => e,
        };
        // serde stops at the first error, so deserialize each field on its own to find the
        // others. Sections all default, which makes a one-field document a complete one.
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

    /// The settings as a TOML document, in the form [`Settings::from_toml_str`] reads.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Sets one field, named by its dotted path (`rpc.listen`, `server.workers`), from text,
    /// as an environment variable or a `--set` flag would. Strings are taken verbatim; other
    /// types are parsed as TOML values of the field's type (`4`, `true`, `[...]`).
    ///
    /// On error the settings are left unchanged.
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
    /// [`Settings::set`] does. Every bad variable is reported, by name; on error the settings
    /// are left unchanged.
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

    fn deserialize_document(
        doc: Spanned<DeTable<'_>>,
    ) -> Result<Self, serde_path_to_error::Error<toml::de::Error>> {
        serde_path_to_error::deserialize(toml::de::Deserializer::from(doc))
    }

    fn to_table(&self) -> Result<toml::Table, String> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => Ok(table),
            Ok(other) => Err(format!(
                "the settings serialized to a {} instead of a table",
                other.type_str()
            )),
            Err(e) => Err(format!("the settings cannot be written as TOML: {e}")),
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
