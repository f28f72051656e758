//! The per-packet path: plain synchronous code that tests call directly.
//!
//! - [`forwarder`]: the router's table of producers and consumers, and `on_rtp`/`on_rtcp`.
//! - [`rewriter`]: per-consumer SSRC, payload-type, sequence, timestamp and extension-id
//!   rewriting into one reusable buffer.
//! - [`retransmission`]: the per-producer buffer answering NACKs.
//! - [`keyframe`]: keyframe detection per codec and keyframe-request throttling.
//! - [`quality`]: receiver-reported RTT, loss and jitter as fixed-bucket histograms.

pub mod forwarder;
pub mod keyframe;
pub mod quality;
pub mod retransmission;
pub mod rewriter;

pub use forwarder::{
    ConsumerSetup, ConsumerStats, DropReason, Forwarder, ForwarderConfig, ForwarderStats,
    KeyframeRequestKind, MidMatch, ProducerCodec, ProducerSetup, ProducerStats, RtpOutcome,
};
pub use keyframe::{KeyframeCodec, KeyframeThrottle};
pub use quality::{Histogram, QualityHistograms};
pub use retransmission::RetransmissionBuffer;
pub use rewriter::{IdMap, PacketWriter, Rewrite, SeqRewriter};

#[cfg(test)]
mod tests;
