//! # switchboard
//!
//! The Switchboard server as a library: what the `switchboard` binary runs, available to
//! tests and to programs that embed the server.
//!
//! - [`run::App`] starts the actor server, the built-in plugins and the control socket
//!   together, and shuts them down in order;
//! - [`rpc`] is the MessagePack-RPC control socket (protocol reference: `docs/rpc.md`);
//! - [`client`] is a typed async client for it, which `switchboard ctl` and the tests use
//!   (the `switchboard-client` crate, which a backend can depend on alone);
//! - [`ops`] serves Prometheus `/metrics`, `/health` and `/ready`;
//! - [`cluster`] is the node's membership in a cluster on Redis (`[cluster]`);
//! - [`cli`], [`load`], [`logging`] and [`ctl`] are the command line, configuration
//!   layering, log setup and operator commands of the binary;
//! - [`entry`] is the binary's `main`, callable by custom binaries that add middleware.

#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod ctl;
pub mod entry;
pub mod load;
pub mod logging;
pub mod ops;
pub mod rpc;
pub mod run;
pub mod settings;

pub use run::{App, Plugins};
pub use switchboard_client as client;
