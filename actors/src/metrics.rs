//! What a worker has counted, gathered on request for `/metrics` and the RPC stats.
//!
//! Counters of the packet path live where the packets are handled: in each room's
//! forwarder, per producer and consumer, on the worker thread, without locks. Reading them
//! means asking the worker thread, which [`crate::ServerHandle::metrics`] does once per scrape
//! for the whole worker (not once per object). Objects close between scrapes, and their
//! counts must not vanish with them, or Prometheus would see counters go backwards: a closed
//! producer's or consumer's counts move into its room's `closed` totals, and a closed room's
//! into its worker's `retired` totals, both on the same thread and in the same step as the
//! closure, so no scrape ever sees an object counted twice or not at all.

use crate::load::WorkerInfo;
use crate::room::Room;
use crate::shared::Shared;
use actix::ArbiterHandle;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Weak;
use std::sync::atomic::Ordering;
pub use switchboard_core::forward::{ConsumerTotals, MediaTotals, ProducerTotals};
use switchboard_core::middleware::{Metric, MetricKind};
use switchboard_core::transport::TransportState;
use switchboard_core::{RouterId, WorkerId};
use tokio::sync::oneshot;

/// One open room, for per-room metrics.
#[derive(Clone, Debug, Serialize)]
pub struct RoomMetrics {
    /// The room.
    pub id: RouterId,
    /// Peers in it.
    pub peers: usize,
    /// Its transports.
    pub transports: usize,
    /// Its producers.
    pub producers: usize,
    /// Its consumers.
    pub consumers: usize,
    /// Its media counters since it opened.
    pub media: MediaTotals,
}

/// What a worker thread reports when asked.
#[derive(Clone, Debug, Default)]
pub struct WorkerMedia {
    /// Media counters of every room the worker has run, closed ones included.
    pub media: MediaTotals,
    /// Open transports by plugin kind and state.
    pub transport_states: BTreeMap<(String, TransportState), u64>,
    /// Transport failures by plugin kind and stage (`ice`, `dtls`, `unknown`).
    pub transport_failures: BTreeMap<(String, &'static str), u64>,
    /// Attached middleware instances by name.
    pub middleware_attached: BTreeMap<String, u64>,
    /// Middleware detached because they panicked, by name.
    pub middleware_failures: BTreeMap<String, u64>,
    /// Packets queued for, delivered to and dropped for middleware, by name, detached
    /// instances included.
    pub middleware_packets: BTreeMap<String, MiddlewarePackets>,
    /// The attached instances' own metrics ([`switchboard_core::middleware::Middleware::metrics`]),
    /// each with its middleware's name and room.
    pub middleware_metrics: Vec<(String, RouterId, Metric)>,
    /// The counters among the own metrics of instances detached since the server started,
    /// summed by middleware name, metric and labels, so sums per name never go backwards.
    pub middleware_retired_metrics: Vec<(String, Metric)>,
    /// Open rooms, when asked for per-room detail.
    pub rooms: Vec<RoomMetrics>,
}

/// What middleware instances of one name did with packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MiddlewarePackets {
    /// Put into an instance's media queue.
    pub queued: u64,
    /// Handed to the instance.
    pub delivered: u64,
    /// Dropped because the instance's queue was full.
    pub dropped: u64,
}

impl MiddlewarePackets {
    fn add(&mut self, c: &crate::middleware::instance::Counters) {
        self.queued += c.queued.load(Ordering::Relaxed);
        self.delivered += c.delivered.load(Ordering::Relaxed);
        self.dropped += c.dropped.load(Ordering::Relaxed);
    }
}

/// Retired counters among middleware's own metrics, keyed by middleware, name and labels.
type RetiredMetrics = BTreeMap<(String, &'static str, Vec<(&'static str, String)>), Metric>;

/// The bookkeeping of one worker thread.
#[derive(Default)]
struct Book {
    rooms: HashMap<RouterId, Weak<RefCell<Room>>>,
    retired: MediaTotals,
    transport_failures: BTreeMap<(String, &'static str), u64>,
    middleware_failures: BTreeMap<String, u64>,
    middleware_packets: BTreeMap<String, MiddlewarePackets>,
    middleware_metrics: RetiredMetrics,
}

thread_local! {
    /// Per thread, and each worker is one thread, so this is per worker; like the plugin
    /// state it survives a restart of the Worker actor.
    static BOOK: RefCell<Book> = RefCell::default();
}

/// A room opened on this thread.
pub(crate) fn room_opened(id: RouterId, room: Weak<RefCell<Room>>) {
    BOOK.with(|b| b.borrow_mut().rooms.insert(id, room));
}

/// A room closed on this thread, with everything it ever counted.
pub(crate) fn room_closed(id: RouterId, totals: &MediaTotals) {
    BOOK.with(|b| {
        let mut b = b.borrow_mut();
        b.rooms.remove(&id);
        b.retired.merge(totals);
    });
}

/// A transport of `kind` failed at `stage`.
pub(crate) fn transport_failed(kind: &str, stage: &'static str) {
    BOOK.with(|b| {
        *b.borrow_mut()
            .transport_failures
            .entry((kind.to_owned(), stage))
            .or_default() += 1;
    });
}

/// A middleware panicked and was detached.
pub(crate) fn middleware_failed(name: &str) {
    BOOK.with(|b| {
        *b.borrow_mut()
            .middleware_failures
            .entry(name.to_owned())
            .or_default() += 1;
    });
}

/// A middleware instance left its room: keep what it counted.
pub(crate) fn middleware_retired(name: &str, counters: &crate::middleware::instance::Counters) {
    let snapshot = counters.snapshot();
    BOOK.with(|b| {
        let mut b = b.borrow_mut();
        b.middleware_packets
            .entry(name.to_owned())
            .or_default()
            .add(counters);
        for m in snapshot.metrics {
            if m.kind != MetricKind::Counter {
                continue;
            }
            let key = (name.to_owned(), m.name, m.labels.clone());
            b.middleware_metrics
                .entry(key)
                .and_modify(|r| r.value += m.value)
                .or_insert(m);
        }
    });
}

/// Gathers this worker thread's counters. Runs on the worker thread, between its other
/// work, so every room is in a consistent state.
pub(crate) fn collect_here(per_room: bool) -> WorkerMedia {
    BOOK.with(|b| {
        let b = b.borrow();
        let mut out = WorkerMedia {
            media: b.retired.clone(),
            transport_failures: b.transport_failures.clone(),
            middleware_failures: b.middleware_failures.clone(),
            middleware_packets: b.middleware_packets.clone(),
            middleware_retired_metrics: b
                .middleware_metrics
                .iter()
                .map(|((name, _, _), m)| (name.clone(), m.clone()))
                .collect(),
            ..Default::default()
        };
        for room in b.rooms.values().filter_map(Weak::upgrade) {
            // Never fails here: nothing else runs on this thread while this does.
            let Ok(r) = room.try_borrow() else { continue };
            let media = r.totals();
            out.media.merge(&media);
            for t in r.transports.values() {
                *out.transport_states
                    .entry((t.kind.clone(), t.io.state.get()))
                    .or_default() += 1;
            }
            for m in &r.middleware {
                *out.middleware_attached.entry(m.name.clone()).or_default() += 1;
                out.middleware_packets
                    .entry(m.name.clone())
                    .or_default()
                    .add(&m.counters);
                for metric in m.counters.snapshot().metrics {
                    out.middleware_metrics.push((m.name.clone(), r.id, metric));
                }
            }
            if per_room {
                out.rooms.push(RoomMetrics {
                    id: r.id,
                    peers: r.peers.len(),
                    transports: r.transports.len(),
                    producers: r.producers.len(),
                    consumers: r.consumers.len(),
                    media,
                });
            }
        }
        out.rooms.sort_by_key(|r| r.id);
        out
    })
}

/// What every worker has counted, as [`crate::ServerHandle::metrics`] gathers it.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    /// Each worker, by number.
    pub workers: Vec<WorkerMetrics>,
    /// Events the bus dropped because a subscriber fell behind.
    pub events_dropped: u64,
}

/// One worker's counters.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    /// Its load, read from shared counters without asking the worker: objects, packets and
    /// bytes in and out, the placement score.
    pub load: WorkerInfo,
    /// Its thread's Linux thread id, once known.
    pub thread_id: Option<u32>,
    /// What the worker thread counted, or `None` when it did not answer in time (busy, or
    /// stopped).
    pub media: Option<WorkerMedia>,
}

/// Gathers every worker's counters: the shared load counters at once, and the media counters
/// by running [`collect_here`] on each worker's thread (`arbiters`, by worker number), in
/// parallel. A worker that does not answer by `timeout` is reported without media counters.
pub(crate) async fn gather(
    arbiters: Vec<ArbiterHandle>,
    shared: &Shared,
    per_room: bool,
    timeout: std::time::Duration,
) -> ServerMetrics {
    let pending: Vec<_> = arbiters
        .iter()
        .map(|arbiter| {
            let (tx, rx) = oneshot::channel();
            let spawned = arbiter.spawn_fn(move || {
                let _ = tx.send(collect_here(per_room));
            });
            spawned.then_some(rx)
        })
        .collect();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut workers = Vec::with_capacity(shared.loads.len());
    let mut pending = pending.into_iter();
    for (i, load) in shared.loads.iter().enumerate() {
        let media = match pending.next().flatten() {
            Some(rx) => tokio::time::timeout_at(deadline, rx)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let tid = load.thread_id.load(Ordering::Relaxed);
        workers.push(WorkerMetrics {
            load: crate::placement::worker_info(shared, WorkerId(i as u32)),
            thread_id: (tid != 0).then_some(tid),
            media,
        });
    }
    ServerMetrics {
        workers,
        events_dropped: shared.events.dropped(),
    }
}
