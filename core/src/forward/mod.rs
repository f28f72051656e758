//! The per-packet path: plain synchronous code that tests call directly.
//!
//! - [`forwarder`]: the router's table of producers and consumers, and `on_rtp`/`on_rtcp`.
//! - [`rewriter`]: per-consumer SSRC, payload-type, sequence, timestamp and extension-id
//!   rewriting into one reusable buffer.
//! - [`retransmission`]: the per-producer buffer answering NACKs.
//! - [`nack`]: the NACK policy (de-duplication, per-RTT suppression, per-NACK and per-second
//!   caps) that bounds what a receiver's NACKs can make the forwarder resend.
//! - [`keyframe`]: keyframe detection per codec and keyframe-request throttling.
//! - [`quality`]: receiver-reported RTT, loss and jitter as fixed-bucket histograms.

pub mod forwarder;
pub mod keyframe;
pub mod nack;
pub mod quality;
pub mod retransmission;
pub mod rewriter;
pub mod totals;

pub use forwarder::{
    ConsumerSetup, ConsumerStats, DropReason, Forwarder, ForwarderConfig, ForwarderStats,
    KeyframeRequestKind, MidMatch, ProducerCodec, ProducerSetup, ProducerStats, RtpOutcome,
};
pub use keyframe::{KeyframeCodec, KeyframeThrottle};
pub use nack::{NackRefusal, NackSeen, ResendLimiter};
pub use quality::{Histogram, QualityHistograms};
pub use retransmission::RetransmissionBuffer;
pub use rewriter::{IdMap, PacketWriter, Rewrite, SeqRewriter};
pub use totals::{ConsumerTotals, MediaTotals, ProducerTotals};

#[cfg(test)]
mod tests;
