//! Building the effective configuration: defaults < file < environment < flags, then
//! validation.
//!
//! Every layer is tried even after an earlier one failed, so one run lists the problems of
//! all of them. Validation runs only on a cleanly layered config: checking a mix of defaults
//! and half-applied settings would report problems the operator did not write.

use crate::cli::ConfigArgs;
use crate::settings::{ENV_PREFIX, Settings};
use std::fmt;
use std::path::PathBuf;
use switchboard_core::config::ConfigError;
use tracing_subscriber::EnvFilter;

/// The variable that overrides `log.level`, as tracing-subscriber's convention has it.
pub const RUST_LOG: &str = "RUST_LOG";

/// A configuration that passed every check, with what it was built from.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Settings,
    /// The config file, if one was read.
    pub file: Option<PathBuf>,
    /// The `SWITCHBOARD_*` variables that were applied, by name.
    pub env_vars: Vec<String>,
    /// The log filter to install: `RUST_LOG` when set, else `log.level`.
    pub log_filter: String,
}

/// Why a configuration was rejected: every problem found, each a line for the operator.
#[derive(Debug)]
pub struct Invalid(pub Vec<String>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        let plural = if count == 1 { "" } else { "s" };
        writeln!(f, "invalid configuration ({count} problem{plural}):")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// The process environment as (name, value) pairs. Names that are not Unicode cannot be
/// ours; values that are not are passed on lossily so a bad one is reported, not skipped.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            Some((name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Layers the configuration sources and validates the result.
pub fn load(args: &ConfigArgs, env: &[(String, String)]) -> Result<Loaded, Invalid> {
    let mut problems = Vec::new();

    let mut config = match &args.config {
        None => Settings::default(),
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                problems.push(format!("cannot read config file {}: {e}", path.display()));
                Settings::default()
            }
            Ok(text) => Settings::from_toml_str(&text).unwrap_or_else(|errors| {
                problems.extend(in_file(path, errors));
                Settings::default()
            }),
        },
    };

    let ours: Vec<(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .cloned()
        .collect();
    if let Err(errors) = config.apply_env(ours.iter().cloned()) {
        problems.extend(errors.iter().map(ToString::to_string));
    }

    apply_flags(&mut config, args, &mut problems);

    if !problems.is_empty() {
        return Err(Invalid(problems));
    }

    if let Err(errors) = config.validate() {
        problems.extend(errors.iter().map(ToString::to_string));
    }
    // Core only checks that the level is non-empty; the filter syntax is tracing-subscriber's.
    if !config.log.level.trim().is_empty() {
        problems.extend(filter_problem("log.level", &config.log.level));
    }
    let rust_log = env
        .iter()
        .find(|(name, value)| name == RUST_LOG && !value.trim().is_empty())
        .map(|(_, value)| value.clone());
    if let Some(filter) = &rust_log {
        problems.extend(filter_problem(RUST_LOG, filter));
    }
    if !problems.is_empty() {
        return Err(Invalid(problems));
    }

    let log_filter = rust_log.unwrap_or_else(|| config.log.level.clone());
    Ok(Loaded {
        config,
        file: args.config.clone(),
        env_vars: ours.into_iter().map(|(name, _)| name).collect(),
        log_filter,
    })
}

fn filter_problem(origin: &str, filter: &str) -> Option<String> {
    EnvFilter::try_new(filter).err().map(|e| {
        ConfigError::new(origin, format!("{filter:?} is not a valid filter: {e}")).to_string()
    })
}

fn in_file(path: &std::path::Path, errors: Vec<ConfigError>) -> impl Iterator<Item = String> {
    let path = path.display().to_string();
    errors.into_iter().map(move |e| format!("{path}: {e}"))
}

fn apply_flags(config: &mut Settings, args: &ConfigArgs, problems: &mut Vec<String>) {
    if let Some(workers) = args.workers {
        config.server.workers = workers;
    }
    if let Some(listen) = &args.rpc_listen {
        config.rpc.listen.clone_from(listen);
    }
    if let Some(listen) = &args.metrics_listen {
        config.metrics.listen.clone_from(listen);
    }
    if let Some(level) = &args.log_level {
        config.log.level.clone_from(level);
    }
    if let Some(format) = args.log_format {
        config.log.format = format.into();
    }
    for (field, value) in &args.set {
        if let Err(message) = config.set(field, value) {
            problems.push(format!("--set {field}={value}: {message}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::settings::LogFormat;
    use clap::Parser;

    fn args(argv: &[&str]) -> ConfigArgs {
        let mut full = vec!["switchboard"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().run
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("switchboard-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_need_nothing() {
        let loaded = load(&args(&[]), &[]).unwrap();
        assert_eq!(loaded.config, Settings::default());
        assert_eq!(loaded.log_filter, "info");
    }

    #[test]
    fn layers_override_in_order() {
        let file = temp_file(
            "layers.toml",
            "[server]\nworkers = 1\nshutdown_timeout_ms = 100\n[limits]\nmax_rooms = 5\n",
        );
        let path = file.to_str().unwrap();
        let loaded = load(
            &args(&["-c", path, "--workers", "3", "--set", "limits.max_rooms=9"]),
            &env(&[
                ("SWITCHBOARD_SERVER__WORKERS", "2"),
                ("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS", "200"),
                ("SWITCHBOARD_LOG__FORMAT", "json"),
                ("RUST_LOG", "debug"),
            ]),
        )
        .unwrap();
        std::fs::remove_file(&file).unwrap();
        let config = loaded.config;
        assert_eq!(config.server.workers, 3, "flag beats env beats file");
        assert_eq!(config.server.shutdown_timeout_ms, 200, "env beats file");
        assert_eq!(config.limits.max_rooms, 9, "--set beats file");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(loaded.log_filter, "debug", "RUST_LOG beats log.level");
        assert_eq!(loaded.env_vars.len(), 3);
    }

    #[test]
    fn problems_of_every_layer_are_reported_together() {
        let file = temp_file("bad.toml", "[limits]\nmax_rooms = \"x\"\n");
        let path = file.to_str().unwrap();
        let Invalid(problems) = load(
            &args(&["-c", path, "--set", "server.nope=1"]),
            &env(&[("SWITCHBOARD_SERVER__WORKERZ", "2")]),
        )
        .unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with(&format!("{path}: limits.max_rooms:")));
        assert!(problems[1].starts_with("SWITCHBOARD_SERVER__WORKERZ:"));
        assert!(problems[2].starts_with("--set server.nope=1:"));
    }

    #[test]
    fn validation_covers_flags_and_log_filters() {
        let Invalid(problems) = load(
            &args(&["--rpc-listen", "0.0.0.0:7700", "--log-level", "a=b=c"]),
            &env(&[("RUST_LOG", "x=y=z")]),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("rpc.token:"));
        assert!(problems[1].starts_with("log.level:"));
        assert!(problems[2].starts_with("RUST_LOG:"));
    }

    #[test]
    fn missing_file_is_a_problem() {
        let Invalid(problems) =
            load(&args(&["-c", "/nonexistent/switchboard.toml"]), &[]).unwrap_err();
        assert!(problems[0].starts_with("cannot read config file /nonexistent/switchboard.toml"));
    }
}
