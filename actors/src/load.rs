//! What each worker is doing, counted where it happens and read by placement and stats
//! without asking the worker.

use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use switchboard_core::WorkerId;

/// What one worker is doing, read by placement and by stats without asking the worker.
#[derive(Default)]
pub struct WorkerLoad {
    /// Routers on the worker.
    pub routers: AtomicUsize,
    /// Transports on the worker.
    pub transports: AtomicUsize,
    /// Producers on the worker.
    pub producers: AtomicUsize,
    /// Consumers on the worker.
    pub consumers: AtomicUsize,
    /// RTP packets received.
    pub packets_in: AtomicU64,
    /// RTP packets sent to consumers.
    pub packets_out: AtomicU64,
    /// RTP payload bytes received.
    pub bytes_in: AtomicU64,
    /// RTP payload bytes sent to consumers.
    pub bytes_out: AtomicU64,
    /// The worker thread's Linux thread id (0 until it started), so its CPU time can be read
    /// from `/proc` by another thread, even while the worker is too busy to answer.
    pub thread_id: AtomicU32,
    /// Measured load, updated by the placement sampler: RTP packets handled per second
    /// (received plus forwarded) over the last sample.
    pub packets_per_second: AtomicU64,
    /// Measured load: CPU time of the worker thread over the last sample, in thousandths of
    /// one core.
    pub cpu_permille: AtomicU64,
}

/// A snapshot of a worker's load.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker.
    pub id: WorkerId,
    /// Routers on it.
    pub routers: usize,
    /// Transports on it.
    pub transports: usize,
    /// Producers on it.
    pub producers: usize,
    /// Consumers on it.
    pub consumers: usize,
    /// RTP packets received so far.
    pub packets_in: u64,
    /// RTP packets forwarded so far.
    pub packets_out: u64,
    /// RTP payload bytes received so far.
    pub bytes_in: u64,
    /// RTP payload bytes forwarded so far.
    pub bytes_out: u64,
    /// The placement score: lower is less loaded.
    pub score: usize,
    /// RTP packets handled per second (received plus forwarded), as last sampled.
    pub packets_per_second: u64,
    /// CPU time of the worker thread as last sampled, in percent of one core.
    pub cpu_percent: u64,
    /// The worker's load relative to the configured thresholds (`[placement]`), in percent;
    /// 100 or more means loaded.
    pub load_percent: u64,
}

impl WorkerLoad {
    /// A snapshot.
    pub fn info(&self, id: WorkerId) -> WorkerInfo {
        WorkerInfo {
            id,
            routers: self.routers.load(Ordering::Relaxed),
            transports: self.transports.load(Ordering::Relaxed),
            producers: self.producers.load(Ordering::Relaxed),
            consumers: self.consumers.load(Ordering::Relaxed),
            packets_in: self.packets_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            score: self.score(),
            packets_per_second: self.packets_per_second.load(Ordering::Relaxed),
            cpu_percent: self.cpu_permille.load(Ordering::Relaxed) / 10,
            load_percent: 0,
        }
    }

    /// The placement score: lower is less loaded. Objects stand in for cost until the
    /// forwarding rate is measured per worker.
    pub fn score(&self) -> usize {
        self.routers.load(Ordering::Relaxed)
            + self.transports.load(Ordering::Relaxed)
            + self.producers.load(Ordering::Relaxed)
            + self.consumers.load(Ordering::Relaxed)
    }
}

/// The calling thread's Linux thread id, from `/proc/thread-self` (a link to
/// `<pid>/task/<tid>`); `None` elsewhere.
pub(crate) fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_id_is_one_of_this_process_tasks() {
        let tid = current_thread_id().expect("Linux has /proc/thread-self");
        assert!(std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
        let other = std::thread::spawn(current_thread_id).join().unwrap();
        assert_ne!(other, Some(tid));
    }
}
