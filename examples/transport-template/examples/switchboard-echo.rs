//! The Switchboard server with the `echo` transport plugin registered next to the built-ins.
//! Same command line, configuration and signals as the stock `switchboard` binary:
//!
//! ```sh
//! cargo run -p switchboard-transport-template --example switchboard-echo -- \
//!     --config switchboard.toml
//! ```
//!
//! Its settings go in `[transports.echo]` (for example `queue_capacity = 512`); then create
//! transports of kind `echo` with `transport.create`.

use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    switchboard::entry::main_with(switchboard::Plugins {
        transports: vec![Arc::new(switchboard_transport_template::EchoPlugin)],
        ..Default::default()
    })
}
