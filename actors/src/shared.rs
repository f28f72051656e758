//! State shared by all threads of one server: the object index, the event bus, worker load.

use crate::consumer::ConsumerActor;
use crate::events::EventBus;
pub use crate::load::{WorkerInfo, WorkerLoad};
use crate::producer::ProducerActor;
use crate::router::RouterActor;
use crate::transport::TransportActor;
use actix::Addr;
use dashmap::DashMap;
use std::sync::Arc;
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
    pub events: Arc<EventBus>,
    /// Per-worker load, indexed by worker number; each router holds its worker's.
    pub loads: Vec<Arc<WorkerLoad>>,
    /// Running middleware threads, joined on shutdown.
    pub middleware_threads: crate::middleware::Threads,
    /// Every open room and the routers it has on the workers.
    pub(crate) rooms: DashMap<RouterId, Arc<crate::span::RouterGroup>>,
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
            events: Arc::default(),
            loads: (0..workers).map(|_| Arc::default()).collect(),
            server: std::sync::OnceLock::new(),
            middleware_threads: Default::default(),
            rooms: DashMap::new(),
        })
    }

    /// The load counters of a worker.
    pub fn load(&self, worker: WorkerId) -> &Arc<WorkerLoad> {
        &self.loads[worker.0 as usize % self.loads.len()]
    }
}
