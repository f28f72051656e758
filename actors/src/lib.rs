//! # switchboard-actors
//!
//! The supervised actor tree of a Switchboard server, on actix:
//!
//! ```text
//! Server ── Worker (one per core, each its own Arbiter thread)
//!             └── Router (a room)
//!                   ├── Transport (a plugin instance: direct, webrtc, rtp, pipe, ...)
//!                   │     ├── Producer
//!                   │     └── Consumer
//!                   └── middleware
//! ```
//!
//! Actors carry lifecycle, control and supervision. Packets do not travel as messages: a
//! router's actors share one [`switchboard_core::forward::Forwarder`] on their worker thread,
//! and a transport hands each received packet straight to it. Start a server with
//! [`Server::start`] and drive it through the [`ServerHandle`].

#![warn(missing_docs)]

pub mod consumer;
pub mod events;
mod group;
mod handle;
mod host;
mod index;
pub mod load;
pub mod metrics;
pub mod middleware;
mod placement;
pub mod producer;
mod room;
pub mod router;
pub mod server;
pub mod session;
pub mod shared;
mod span;
pub mod supervision;
pub mod transport;
pub mod worker;

pub use handle::{Server, ServerHandle};
pub use metrics::{ServerMetrics, WorkerMetrics};
pub use shared::WorkerInfo;
pub use switchboard_core::api::*;
