//! The command line, as clap sees it.

use crate::settings::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use switchboard_core::RouterId;

/// Switchboard, an SFU media server.
///
/// Without a subcommand it runs the server, like `switchboard run`. Settings come from the
/// embedded defaults, then the config file, then `SWITCHBOARD_<SECTION>__<FIELD>` environment
/// variables, then these flags; each layer overrides the ones before it.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; running the server when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for the server when no subcommand is given.
    #[command(flatten)]
    pub run: ConfigArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM (the default).
    Run(ConfigArgs),
    /// Load and validate the configuration, print the effective one as TOML, and exit.
    ///
    /// Exits with 0 when the configuration is valid and 2 when it is not, listing every
    /// problem on standard error.
    CheckConfig(CheckConfigArgs),
    /// Talk to a running server through its control socket: list, inspect and close rooms.
    ///
    /// Exits with 0 on success, 1 when the server cannot be reached or answers with an
    /// error (printed on standard error with its code), 2 for a bad command line.
    Ctl(CtlArgs),
}

/// Arguments of `ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control socket: IP:PORT, HOST:PORT or unix:PATH. Without it: SWITCHBOARD_RPC__LISTEN,
    /// else unix:$SWITCHBOARD_RPC__UNIX_SOCKET, else 127.0.0.1:7700.
    #[arg(long, value_name = "ADDR")]
    pub rpc: Option<String>,

    /// The server's rpc.token, when it has one.
    #[arg(long, env = "SWITCHBOARD_RPC__TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// How long to wait for each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,

    /// Print results as JSON instead of tables and trees.
    #[arg(long)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Version, workers, plugins, limits.
    Info,
    /// Each worker's load.
    Workers,
    /// The cluster's live nodes (a node in a cluster only).
    Nodes,
    /// Open rooms with their peer, transport, producer and consumer counts.
    Rooms,
    /// A room's tree: peers, transports, producers, consumers, middleware.
    Dump {
        /// The room (router id).
        room: RouterId,
    },
    /// A room's counters: objects, forwarding, drops, feedback, receiver-reported quality.
    Stats {
        /// The room (router id).
        room: RouterId,
    },
    /// A transport's statistics (state, packets, the plugin's counters) or full state.
    Transport {
        /// `stats` or `dump`.
        view: CtlView,
        /// The transport id.
        id: switchboard_core::TransportId,
    },
    /// A producer's statistics (packets, keyframes, requests) or full state (parameters).
    Producer {
        /// `stats` or `dump`.
        view: CtlView,
        /// The producer id.
        id: switchboard_core::ProducerId,
    },
    /// A consumer's statistics (packets, NACKs, PLIs, what its receiver reports) or full
    /// state (parameters).
    Consumer {
        /// `stats` or `dump`.
        view: CtlView,
        /// The consumer id.
        id: switchboard_core::ConsumerId,
    },
    /// Close a room and everything in it.
    Close {
        /// The room (router id).
        room: RouterId,
    },
    /// Print events as JSON lines until interrupted (or until --count have arrived).
    Events {
        /// Only this room's events.
        #[arg(long)]
        room: Option<RouterId>,
        /// Stop after this many.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// Call any method; PARAMS is a JSON object. Prints the result as JSON.
    Call {
        /// Method name, such as router.list.
        method: String,
        /// Parameters as a JSON object.
        #[arg(default_value = "{}")]
        params: String,
    },
}

/// What `ctl transport|producer|consumer` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CtlView {
    /// Counters, as WebRTC's getStats would show them.
    Stats,
    /// The full state.
    Dump,
}

/// Where the configuration comes from, and the flags that override it.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML config file; without one the embedded defaults apply.
    #[arg(short, long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Worker threads that carry media; 0 means one per CPU core [server.workers].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Control socket TCP address, such as 127.0.0.1:7700; empty disables it [rpc.listen].
    #[arg(long, value_name = "IP:PORT")]
    pub rpc_listen: Option<String>,

    /// Prometheus /metrics address; empty disables it [metrics.listen].
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_listen: Option<String>,

    /// Log filter such as `info` or `warn,switchboard=debug`; RUST_LOG overrides it
    /// [log.level].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format [log.format].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// Set any field by its dotted path, such as `--set limits.max_rooms=50`. Repeatable;
    /// applied after the other flags.
    #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, String)>,
}

/// Arguments of `check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration to check.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Print rpc.token as it is; by default it is redacted, since the output tends to end up
    /// in terminals, tickets and CI logs.
    #[arg(long)]
    pub show_secrets: bool,
}

/// `--log-format` values. A separate enum keeps clap out of `switchboard-core`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((field, value)) if !field.trim().is_empty() => {
            Ok((field.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "expected FIELD=VALUE such as limits.max_rooms=50, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_takes_the_run_flags() {
        let cli = Cli::try_parse_from(["switchboard", "--workers", "2", "-c", "x.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.workers, Some(2));
        assert_eq!(cli.run.config, Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn set_flags_split_at_the_first_equals_sign() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "check-config",
            "--set",
            "rpc.token=a=b",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Some(Command::CheckConfig(args)) = cli.command else {
            panic!("expected check-config");
        };
        assert_eq!(
            args.config.set,
            [("rpc.token".to_owned(), "a=b".to_owned())]
        );
        assert_eq!(args.config.log_format, Some(LogFormatArg::Json));
        assert!(Cli::try_parse_from(["switchboard", "run", "--set", "novalue"]).is_err());
    }

    #[test]
    fn ctl_takes_its_own_flags_and_a_room_id() {
        let room = RouterId::new();
        let cli = Cli::try_parse_from([
            "switchboard",
            "ctl",
            "--rpc",
            "unix:/tmp/s.sock",
            "--token",
            "t",
            "dump",
            &room.to_string(),
        ])
        .unwrap();
        let Some(Command::Ctl(args)) = cli.command else {
            panic!("expected ctl");
        };
        assert_eq!(args.rpc.as_deref(), Some("unix:/tmp/s.sock"));
        assert_eq!(args.token.as_deref(), Some("t"));
        assert!(matches!(args.command, CtlCommand::Dump { room: r } if r == room));
        assert!(Cli::try_parse_from(["switchboard", "ctl", "dump", "not-a-room"]).is_err());
    }
}
