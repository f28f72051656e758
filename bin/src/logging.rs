//! Log output through `tracing`: a filter, a format, standard error.

use std::io::IsTerminal;
use switchboard_core::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` has already been checked while loading the
/// configuration, so a parse failure here would be a bug.
///
/// Logs go to standard error so that standard output stays free for data such as
/// `check-config`'s TOML.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).expect("log filter was validated while loading");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
