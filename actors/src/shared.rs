//! State shared by all threads of one server: the object index, the event bus, worker load.

use crate::consumer::ConsumerActor;
use crate::events::EventBus;
use crate::producer::ProducerActor;
use crate::router::RouterActor;
use crate::transport::TransportActor;
use actix::Addr;
use dashmap::DashMap;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use switchboard_core::config::Config;
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::transport::TransportRegistry;
use switchboard_core::{ConsumerId, ProducerId, RouterId, TransportId, WorkerId};

/// Where a live object is, so a request from any thread reaches its actor directly.
pub struct Index {
    /// Routers.
    pub routers: DashMap<RouterId, (WorkerId, Addr<RouterActor>)>,
    /// Transports and their routers.
    pub transports: DashMap<TransportId, (RouterId, Addr<TransportActor>)>,
    /// Producers and their routers.
    pub producers: DashMap<ProducerId, (RouterId, Addr<ProducerActor>)>,
    /// Consumers and their routers.
    pub consumers: DashMap<ConsumerId, (RouterId, Addr<ConsumerActor>)>,
}

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

/// Everything every actor of the server may need.
pub struct Shared {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Registered transport plugins.
    pub transports: TransportRegistry,
    /// Registered middleware.
    pub middleware: MiddlewareRegistry,
    /// Live objects.
    pub index: Index,
    /// Event delivery.
    pub events: EventBus,
    /// Per-worker load, indexed by worker number.
    pub loads: Vec<WorkerLoad>,
    /// Running middleware threads, joined on shutdown.
    pub middleware_threads: crate::middleware::Threads,
    /// Every open room and the routers it has on the workers.
    pub(crate) rooms: DashMap<RouterId, Arc<crate::span::RoomGroup>>,
    /// The server actor, once started: what actors need to act on the whole server (a peer
    /// leaving every router of its room).
    pub(crate) server: std::sync::OnceLock<actix::Addr<crate::server::ServerActor>>,
}

impl Shared {
    pub(crate) fn new(
        config: Arc<Config>,
        transports: TransportRegistry,
        middleware: MiddlewareRegistry,
        workers: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            transports,
            middleware,
            index: Index {
                routers: DashMap::new(),
                transports: DashMap::new(),
                producers: DashMap::new(),
                consumers: DashMap::new(),
            },
            events: EventBus::default(),
            loads: (0..workers).map(|_| WorkerLoad::default()).collect(),
            server: std::sync::OnceLock::new(),
            middleware_threads: Default::default(),
            rooms: DashMap::new(),
        })
    }

    /// The load counters of a worker.
    pub fn load(&self, worker: WorkerId) -> &WorkerLoad {
        &self.loads[worker.0 as usize % self.loads.len()]
    }
}
