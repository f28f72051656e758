//! `switchboard`: the SFU server binary.
//!
//! It builds one validated [`Config`] from the embedded
//! defaults, an optional TOML file, `SWITCHBOARD_*` environment variables and flags, sets up
//! `tracing`, starts the actor server and its control socket, and shuts them down gracefully
//! on SIGINT or SIGTERM. `switchboard ctl` talks to a running server through that socket.
//!
//! Exit codes: 0 after a clean run or a valid `check-config`; 2 for an invalid configuration
//! or command line (nothing has been started or bound by then); 1 when the server fails to
//! start or to shut down in time, or when a `ctl` command fails.

use clap::Parser;
use std::process::ExitCode;
use switchboard::cli::{CheckConfigArgs, Cli, Command, ConfigArgs};
use switchboard::load::{self, Invalid, Loaded};
use switchboard::{ctl, logging, run};
use switchboard_core::config::Config;
use tracing::{Level, debug, error, info};

/// Exit code for an unusable configuration, the same clap uses for a bad command line.
const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Ctl(args)) => ctl::main(&args),
    }
}

fn run(args: &ConfigArgs) -> ExitCode {
    let loaded = match load::load(args, &load::process_env()) {
        Ok(loaded) => loaded,
        Err(invalid) => return report_invalid(&invalid),
    };
    logging::init(&loaded.log_filter, loaded.config.log.format);
    log_sources(&loaded);
    match run::run(loaded.config) {
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
fn redacted(config: &Config) -> Config {
    let mut shown = config.clone();
    if !shown.rpc.token.is_empty() {
        shown.rpc.token = "<redacted>".to_owned();
    }
    shown
}
