//! The Switchboard server with the `talking_now` middleware registered next to the built-ins.
//! Same command line, configuration and signals as the stock `switchboard` binary:
//!
//! ```sh
//! cargo run -p switchboard-middleware-template --example switchboard-talking -- \
//!     --config switchboard.toml
//! ```
//!
//! Then attach it per room (`middleware.attach` with `"name": "talking_now"`), or to every
//! room with `[middleware] attach = ["talking_now"]`.

use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    switchboard::entry::main(vec![Arc::new(switchboard_middleware_template::TalkingNow)])
}
