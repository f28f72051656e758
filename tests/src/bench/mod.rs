//! The load generator behind `switchboard_bench`: real WebRTC clients (ICE, DTLS-SRTP) on
//! webrtc-rs's sans-IO core, driven from one thread, against Switchboard or Janus.
//!
//! - [`engine`] is the client loop (sockets, peer connections, pacing, loss and latency);
//! - [`payload`] is the mark each packet carries (stream, sequence number, send time);
//! - [`sfu`] signals the servers under test;
//! - [`scenario`] holds S1–S4;
//! - [`churn`] is the churn soak;
//! - [`procfs`] reads CPU time and memory from `/proc`;
//! - [`report`] writes Markdown tables and the PNG chart.

pub mod churn;
pub mod engine;
pub mod payload;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod sfu;
