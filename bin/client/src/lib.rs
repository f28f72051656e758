//! # switchboard-client
//!
//! What a backend needs to drive a Switchboard server over its MessagePack-RPC control
//! socket, without building the server:
//!
//! - [`Client`]: a typed async client (TCP or Unix socket, token auth, concurrent calls
//!   matched by msgid, notifications as a stream);
//! - [`protocol`]: every method's parameters and results, [`RpcError`], [`Subscriptions`];
//! - [`wire`]: the framing and value conversions, shared with the server so both ends agree
//!   on every byte.
//!
//! The protocol itself is described in `docs/rpc.md`.

#![warn(missing_docs)]

mod client;
pub mod protocol;
pub mod wire;

pub use client::*;
pub use protocol::{RpcError, Subscriptions};
