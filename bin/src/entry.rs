//! The server binary's entry point as a library function, so that a custom binary (a team's
//! own middleware registered next to the built-ins) is the stock binary plus a few lines:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // switchboard::entry::main(vec![std::sync::Arc::new(MyMiddleware)])
//!     switchboard::entry::main(Vec::new())
//! }
//! ```
//!
//! Exit codes: 0 after a clean run or a valid `check-config`; 2 for an invalid configuration
//! or command line (nothing has been started or bound by then); 1 when the server fails to
//! start or to shut down in time, or when a `ctl` command fails.

use crate::cli::{CheckConfigArgs, Cli, Command, ConfigArgs};
use crate::load::{self, Invalid, Loaded};
use crate::run::Plugins;
use crate::settings::Settings;
use crate::{ctl, logging, run};
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use switchboard_core::middleware::MiddlewareFactory;
use tracing::{Level, debug, error, info};

/// Exit code for an unusable configuration, the same clap uses for a bad command line.
const EXIT_INVALID_CONFIG: u8 = 2;

/// Parses the command line and runs what it asks for, with `middleware` registered next to
/// the built-ins when it runs the server.
pub fn main(middleware: Vec<Arc<dyn MiddlewareFactory>>) -> ExitCode {
    main_with(Plugins {
        middleware,
        ..Plugins::default()
    })
}

/// Like [`main`], with the embedder's own transport plugins and middleware registered next
/// to the built-ins.
pub fn main_with(plugins: Plugins) -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(&cli.run, plugins),
        Some(Command::Run(args)) => run(&args, plugins),
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Ctl(args)) => ctl::main(&args),
    }
}

fn run(args: &ConfigArgs, plugins: Plugins) -> ExitCode {
    let loaded = match load::load(args, &load::process_env()) {
        Ok(loaded) => loaded,
        Err(invalid) => return report_invalid(&invalid),
    };
    logging::init(&loaded.log_filter, loaded.config.log.format);
    log_sources(&loaded);
    match run::run_with_plugins(loaded.config, plugins) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A filter such as `switchboard_actors=debug` silences this crate; the reason for
            // a failed exit must reach the operator all the same.
            if tracing::enabled!(Level::ERROR) {
                error!("{e}");
            } else {
                eprintln!("switchboard: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn check_config(args: &CheckConfigArgs) -> ExitCode {
    let loaded = match load::load(&args.config, &load::process_env()) {
        Ok(loaded) => loaded,
        Err(invalid) => return report_invalid(&invalid),
    };
    let shown = if args.show_secrets {
        loaded.config.clone()
    } else {
        redacted(&loaded.config)
    };
    match shown.to_toml_string() {
        Ok(toml) => {
            println!("# Effective configuration ({}).", describe_sources(&loaded));
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard: cannot print the configuration as TOML: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report_invalid(invalid: &Invalid) -> ExitCode {
    eprint!("switchboard: {invalid}");
    ExitCode::from(EXIT_INVALID_CONFIG)
}

fn describe_sources(loaded: &Loaded) -> String {
    let mut sources = vec!["defaults".to_owned()];
    if let Some(file) = &loaded.file {
        sources.push(format!("file {}", file.display()));
    }
    if !loaded.env_vars.is_empty() {
        sources.push(format!("environment {}", loaded.env_vars.join(", ")));
    }
    sources.push("flags".to_owned());
    sources.join(" < ")
}

fn log_sources(loaded: &Loaded) {
    info!(sources = %describe_sources(loaded), "configuration loaded");
    debug!(config = ?redacted(&loaded.config), "effective configuration");
}

/// The configuration with secrets replaced, for output that may be shared.
fn redacted(config: &Settings) -> Settings {
    let mut shown = config.clone();
    if !shown.rpc.token.is_empty() {
        shown.rpc.token = "<redacted>".to_owned();
    }
    shown
}
