//! Placement: which worker gets a new room, and, for a room whose worker is loaded, which
//! worker gets its next transport.
//!
//! Load is what a worker thread actually does, sampled every `placement.sample_interval_ms`
//! without asking the worker: the RTP packets it handled per second (received plus
//! forwarded, from its shared counters) and its thread's CPU time (from `/proc`). Each is
//! divided by its threshold (`placement.max_worker_packets_per_second`,
//! `placement.max_worker_cpu`) and the larger ratio is the worker's *load*; at 1 or more the
//! worker is loaded. Object counts only break ties between equally loaded workers.

use crate::shared::{Shared, WorkerInfo, WorkerLoad};
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_core::WorkerId;
use switchboard_core::config::{PlacementConfig, PlacementPolicy};

/// A worker's load relative to the thresholds: 1.0 means at the threshold.
pub(crate) fn load(config: &PlacementConfig, l: &WorkerLoad) -> f64 {
    let pps = l.packets_per_second.load(Ordering::Relaxed) as f64;
    let cpu = l.cpu_permille.load(Ordering::Relaxed) as f64 / 1000.0;
    let by_packets = pps / config.max_worker_packets_per_second.max(1) as f64;
    let by_cpu = cpu / config.max_worker_cpu;
    by_packets.max(by_cpu)
}

/// [`load`] in whole percent, for reports.
pub(crate) fn load_percent(shared: &Shared, worker: WorkerId) -> u64 {
    (load(&shared.config.placement, shared.load(worker)) * 100.0).round() as u64
}

/// A worker's load as `worker.list` reports it: the shared counters and the placement load.
pub(crate) fn worker_info(shared: &Shared, worker: WorkerId) -> WorkerInfo {
    let mut info = shared.load(worker).info(worker);
    info.load_percent = load_percent(shared, worker);
    info
}

fn ranked(shared: &Shared) -> Vec<(WorkerId, f64, usize)> {
    shared
        .loads
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                WorkerId(i as u32),
                load(&shared.config.placement, l),
                l.score(),
            )
        })
        .collect()
}

/// Picks by policy among `candidates` (worker, load, object score): `spread` the least
/// loaded, `pack` the busiest still under the threshold. Ties go to fewer objects (spread)
/// or more (pack), then to the lower worker number.
fn pick(policy: PlacementPolicy, candidates: &[(WorkerId, f64, usize)]) -> Option<WorkerId> {
    let under: Vec<_> = candidates.iter().filter(|c| c.1 < 1.0).collect();
    match policy {
        PlacementPolicy::Pack if !under.is_empty() => under.into_iter().max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(a.2.cmp(&b.2))
                .then(b.0.0.cmp(&a.0.0))
        }),
        // Spread, or nothing has headroom: the least loaded of all.
        _ => candidates.iter().min_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(a.2.cmp(&b.2))
                .then(a.0.0.cmp(&b.0.0))
        }),
    }
    .map(|c| c.0)
}

/// The worker for a new room.
pub(crate) fn room_worker(shared: &Shared) -> WorkerId {
    pick(shared.config.placement.policy, &ranked(shared)).unwrap_or(WorkerId(0))
}

/// The worker for a new transport of a room whose routers' home is `home`: `home` while it
/// has headroom, else another worker chosen by policy (`home` again if it is the least
/// loaded of all).
pub(crate) fn transport_worker(shared: &Shared, home: WorkerId) -> WorkerId {
    let all = ranked(shared);
    if all.iter().any(|c| c.0 == home && c.1 < 1.0) {
        return home;
    }
    let others: Vec<_> = all.iter().copied().filter(|c| c.0 != home).collect();
    match pick(shared.config.placement.policy, &others) {
        Some(w) if others.iter().any(|c| c.0 == w && c.1 < 1.0) => w,
        // Nothing else has headroom either: the least loaded of all, home included.
        _ => pick(PlacementPolicy::Spread, &all).unwrap_or(home),
    }
}

/// CPU time of one thread of this process, in nanoseconds: `/proc/.../schedstat` when the
/// kernel keeps it, else `stat` in clock ticks (assumed 100 per second, Linux's USER_HZ).
fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let base = format!("/proc/self/task/{tid}");
    if let Ok(s) = std::fs::read_to_string(format!("{base}/schedstat"))
        && let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok())
    {
        return Some(ns);
    }
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; the first after the name is field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// Turns counter readings into rates, one sample at a time.
pub(crate) struct Sampler {
    last: Vec<Option<(Instant, u64, u64)>>,
}

impl Sampler {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            last: vec![None; workers],
        }
    }

    /// Reads every worker's counters and stores its rates in its [`WorkerLoad`].
    pub(crate) fn sample(&mut self, shared: &Shared) {
        let now = Instant::now();
        for (i, l) in shared.loads.iter().enumerate() {
            let packets =
                l.packets_in.load(Ordering::Relaxed) + l.packets_out.load(Ordering::Relaxed);
            let tid = l.thread_id.load(Ordering::Relaxed);
            let cpu = if tid == 0 { None } else { thread_cpu_ns(tid) };
            let Some(slot) = self.last.get_mut(i) else {
                continue;
            };
            if let (Some((then, p0, c0)), Some(c1)) = (*slot, cpu) {
                let secs = now.duration_since(then).as_secs_f64();
                if secs > 0.0 {
                    let pps = packets.saturating_sub(p0) as f64 / secs;
                    let permille = c1.saturating_sub(c0) as f64 / 1e6 / secs;
                    l.packets_per_second
                        .store(pps.round() as u64, Ordering::Relaxed);
                    l.cpu_permille
                        .store(permille.round() as u64, Ordering::Relaxed);
                }
            }
            *slot = cpu.map(|c| (now, packets, c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(i: u32, load: f64, score: usize) -> (WorkerId, f64, usize) {
        (WorkerId(i), load, score)
    }

    #[test]
    fn spread_takes_the_least_loaded_and_pack_the_busiest_with_headroom() {
        let c = [w(0, 0.5, 3), w(1, 0.2, 9), w(2, 0.9, 1), w(3, 1.2, 0)];
        assert_eq!(pick(PlacementPolicy::Spread, &c), Some(WorkerId(1)));
        assert_eq!(pick(PlacementPolicy::Pack, &c), Some(WorkerId(2)));
        // Nothing with headroom: both take the least loaded.
        let full = [w(0, 1.5, 0), w(1, 1.1, 0)];
        assert_eq!(pick(PlacementPolicy::Pack, &full), Some(WorkerId(1)));
        // Equal load: spread takes fewer objects, pack more, then the lower number.
        let idle = [w(0, 0.0, 2), w(1, 0.0, 1), w(2, 0.0, 1)];
        assert_eq!(pick(PlacementPolicy::Spread, &idle), Some(WorkerId(1)));
        assert_eq!(pick(PlacementPolicy::Pack, &idle), Some(WorkerId(0)));
    }

    #[test]
    fn this_thread_has_cpu_time() {
        let tid = crate::load::current_thread_id().expect("Linux");
        let before = thread_cpu_ns(tid).expect("readable");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns(tid).expect("readable") > before);
    }
}
