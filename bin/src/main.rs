//! `switchboard`: the SFU server binary.
//!
//! It builds one validated configuration from the embedded
//! defaults, an optional TOML file, `SWITCHBOARD_*` environment variables and flags, sets up
//! `tracing`, starts the actor server and its control socket, and shuts them down gracefully
//! on SIGINT or SIGTERM. `switchboard ctl` talks to a running server through that socket.
//!
//! Everything happens in [`switchboard::entry::main`], which custom binaries call with their
//! own middleware (exit codes are described there).

fn main() -> std::process::ExitCode {
    switchboard::entry::main(Vec::new())
}
