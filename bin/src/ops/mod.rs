//! Operations: the Prometheus `/metrics` endpoint and what it reports.
//!
//! - [`metrics`]: what a scrape gathers (workers, transports, media quality, the control
//!   socket, the process) and how it is written;
//! - [`exposition`]: the Prometheus text format;
//! - [`process`]: CPU, memory and file descriptors from `/proc`;
//! - [`http`]: the HTTP listener serving `/metrics`, on the control runtime, never on a
//!   media thread.
//!
//! `docs/operations.md` lists every metric with its meaning.

pub mod exposition;
pub mod http;
pub mod metrics;
pub mod process;

pub use http::MetricsServer;
pub use metrics::{RpcMetrics, Snapshot};
