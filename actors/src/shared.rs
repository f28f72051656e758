//! What every actor of one server may need, whatever its thread: configuration, the
//! registries, the event bus and the workers' load. It names no actor: the addresses of
//! live objects are in [`crate::index`].

use crate::events::EventBus;
pub use crate::load::{WorkerInfo, WorkerLoad};
use std::sync::Arc;
use switchboard_core::WorkerId;
use switchboard_core::config::Config;
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::transport::TransportRegistry;

/// Everything every actor of the server may need.
pub struct Shared {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Registered transport plugins.
    pub transports: TransportRegistry,
    /// Registered middleware.
    pub middleware: MiddlewareRegistry,
    /// Event delivery.
    pub events: Arc<EventBus>,
    /// Per-worker load, indexed by worker number; each router holds its worker's.
    pub loads: Vec<Arc<WorkerLoad>>,
    /// Running middleware threads, joined on shutdown.
    pub middleware_threads: crate::middleware::instance::Threads,
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
            events: Arc::default(),
            loads: (0..workers).map(|_| Arc::default()).collect(),
            middleware_threads: Default::default(),
        })
    }

    /// The load counters of a worker.
    pub fn load(&self, worker: WorkerId) -> &Arc<WorkerLoad> {
        &self.loads[worker.0 as usize % self.loads.len()]
    }
}
