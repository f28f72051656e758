//! # switchboard-core
//!
//! The pure heart of Switchboard: plain data and synchronous functions, no actors, no sockets.
//!
//! - [`id`]: typed identifiers.
//! - [`rtp_parameters`]: codecs, header extensions, encodings; capabilities and parameters.
//! - [`negotiation`] and [`h264`]: matching a router's capabilities with a peer's.
//! - [`api`]: the control API's plain types, options and descriptions of the objects.
//! - [`forward`]: the per-packet path, that is RTP rewriting per consumer, the retransmission
//!   buffer, keyframe detection and request throttling, and the router's forwarding table.
//! - [`transport`]: the [`transport::TransportPlugin`] trait and its registry.
//! - [`middleware`]: the [`middleware::Middleware`] trait and its registry.
//! - [`event`] and [`error`]: what the server reports and how it fails.
//! - [`config`]: the typed, validated configuration.
//!
//! The SDP bridge is the `switchboard-sdp` crate (`core/sdp/`), which only transports and the
//! actors' SDP sessions need.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod error;
pub mod event;
pub mod forward;
pub mod h264;
pub mod id;
pub mod middleware;
pub mod negotiation;
pub mod report;
pub mod rtp_parameters;
pub mod transport;

#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod panics;

pub use error::{Error, ErrorCode, Result};
pub use id::{ConsumerId, PeerId, ProducerId, RouterId, TransportId, WorkerId};
