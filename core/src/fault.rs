//! Test-only fault injection (cargo feature `fault-injection`, never on in a build that serves
//! users): inputs that make chosen places of the server panic, so that the crash drills can
//! prove each panic stays contained. Without the feature none of this exists and the places
//! carry no check.

/// A datagram that starts with these bytes, arriving from a WebRTC connection's address,
/// panics inside that connection's datagram handling (the worker socket's receive task).
pub const RECEIVE_PANIC: &[u8] = b"switchboard-fault:receive";

/// An RTP packet whose payload ends with these bytes panics on its router's forwarding path.
pub const FORWARD_PANIC: &[u8] = b"switchboard-fault:forward";
