//! The error type shared by every layer, with stable machine-readable codes.
//!
//! The RPC socket sends [`Error::code`] to the backend, so codes never change meaning once
//! published; messages are for humans and may improve over time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable error codes, as the backend sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A referenced object does not exist (or no longer exists).
    NotFound,
    /// An object with that id or name already exists.
    AlreadyExists,
    /// Parameters are missing, of the wrong type, or out of range.
    InvalidParams,
    /// No codec in common, or a codec the server does not support.
    UnsupportedCodec,
    /// A configured limit (rooms, peers, transports, tracks, frame size) was reached.
    LimitExceeded,
    /// The object is closing or closed.
    Closed,
    /// No transport plugin or middleware is registered under that name.
    UnknownPlugin,
    /// A transport failed (bind, connect, ICE, DTLS).
    TransportFailed,
    /// A middleware failed.
    MiddlewareFailed,
    /// The operation did not finish in time.
    Timeout,
    /// The configuration is invalid.
    InvalidConfig,
    /// A bug or an unexpected failure inside the server (an actor died mid-request).
    Internal,
    /// A session description (SDP) is malformed or does not fit the negotiation.
    InvalidSdp,
    /// The control socket received bytes that are not MessagePack; the connection is closed
    /// because the stream cannot be resynchronised.
    ParseError,
    /// A well-formed MessagePack value that is not a valid MessagePack-RPC request.
    InvalidRequest,
    /// No RPC method has that name.
    MethodNotFound,
    /// Missing or wrong authentication token.
    Unauthorized,
    /// A control-socket frame is larger than `rpc.max_frame_bytes`.
    FrameTooLarge,
    /// The request needs the cluster's shared view (its Redis), which cannot be reached now,
    /// or the node is not part of a cluster. Requests for this node's own objects still work.
    ClusterUnavailable,
}

impl ErrorCode {
    /// The code as the wire writes it, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::UnsupportedCodec => "unsupported_codec",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Closed => "closed",
            ErrorCode::UnknownPlugin => "unknown_plugin",
            ErrorCode::TransportFailed => "transport_failed",
            ErrorCode::MiddlewareFailed => "middleware_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::ParseError => "parse_error",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// What exactly went wrong, for people.
    pub message: String,
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `what` with id `id` does not exist.
    pub fn not_found(what: &str, id: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {id} not found"))
    }

    /// Invalid parameters.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }

    /// Unsupported or unmatched codec.
    pub fn unsupported_codec(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedCodec, message)
    }

    /// A limit named `what` (with its configured maximum) was reached.
    pub fn limit(what: &str, max: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::LimitExceeded,
            format!("{what} limit of {max} reached"),
        )
    }

    /// `what` is closed.
    pub fn closed(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Closed, format!("{what} is closed"))
    }

    /// An internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::InvalidParams,
            ErrorCode::UnsupportedCodec,
            ErrorCode::LimitExceeded,
            ErrorCode::Closed,
            ErrorCode::UnknownPlugin,
            ErrorCode::TransportFailed,
            ErrorCode::MiddlewareFailed,
            ErrorCode::Timeout,
            ErrorCode::InvalidConfig,
            ErrorCode::Internal,
            ErrorCode::InvalidSdp,
            ErrorCode::ParseError,
            ErrorCode::InvalidRequest,
            ErrorCode::MethodNotFound,
            ErrorCode::Unauthorized,
            ErrorCode::FrameTooLarge,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn display_carries_code_and_message() {
        let e = Error::not_found("producer", "p1");
        assert_eq!(e.to_string(), "not_found: producer p1 not found");
    }
}
