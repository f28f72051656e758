//! The Server actor (supervises workers, places routers) and [`ServerHandle`], the Rust API.

use crate::router::CloseRouter;
use crate::shared::{Shared, WorkerInfo};
use crate::supervision::install_panic_hook;
use crate::worker::{Ready, SpawnRouter, WorkerActor, WorkerCrashed};
use actix::{Actor, Addr, Arbiter, ArbiterHandle, Context, Handler, MailboxError, Message};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use switchboard_core::api::{RouterInfo, RouterOptions};
use switchboard_core::config::Config;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::middleware::MiddlewareRegistry;
use switchboard_core::negotiation;
use switchboard_core::transport::TransportRegistry;
use switchboard_core::{Error, ErrorCode, Result, RouterId, WorkerId};
use tokio::sync::oneshot;

struct WorkerSlot {
    arbiter: ArbiterHandle,
    addr: Addr<WorkerActor>,
}

/// Supervises the workers and places new routers.
pub struct ServerActor {
    shared: Arc<Shared>,
    workers: Vec<WorkerSlot>,
    sampler: crate::placement::Sampler,
}

impl Actor for ServerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every =
            std::time::Duration::from_millis(self.shared.config.placement.sample_interval_ms);
        actix::AsyncContext::run_interval(ctx, every, |act, _| act.sampler.sample(&act.shared));
    }
}

impl Handler<WorkerCrashed> for ServerActor {
    type Result = ();
    fn handle(&mut self, msg: WorkerCrashed, ctx: &mut Self::Context) {
        tracing::error!(worker = %msg.worker, message = %msg.message, "worker actor died; restarting it");
        self.shared.events.emit(Event::WorkerDied {
            worker: msg.worker,
            message: msg.message,
        });
        let Some(slot) = self.workers.get_mut(msg.worker.0 as usize) else {
            return;
        };
        let shared = self.shared.clone();
        let server = actix::AsyncContext::address(ctx);
        let id = msg.worker;
        slot.addr = WorkerActor::start_in_arbiter(&slot.arbiter, move |_| {
            WorkerActor::boot(id, shared, server)
        });
        self.shared
            .events
            .emit(Event::WorkerRestarted { worker: id });
    }
}

/// Test-only (`fault-injection`): makes a Worker actor panic.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct InjectWorkerPanic(pub WorkerId);

#[cfg(feature = "fault-injection")]
impl Handler<InjectWorkerPanic> for ServerActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: InjectWorkerPanic, _: &mut Self::Context) -> Result<()> {
        let slot = self
            .workers
            .get(msg.0.0 as usize)
            .ok_or_else(|| Error::not_found("worker", msg.0))?;
        slot.addr.do_send(crate::worker::InjectPanic);
        Ok(())
    }
}

pub(crate) struct CreateRouterRequest(pub RouterOptions);

impl Message for CreateRouterRequest {
    type Result = Result<(RouterInfo, Addr<crate::router::RouterActor>)>;
}

impl Handler<CreateRouterRequest> for ServerActor {
    type Result = actix::ResponseFuture<Result<(RouterInfo, Addr<crate::router::RouterActor>)>>;

    fn handle(&mut self, msg: CreateRouterRequest, _: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        let auto_subscribe = msg.0.auto_subscribe;
        let single_connection = msg.0.single_connection;
        let prepared = (|| {
            let codecs = match msg.0.codecs {
                Some(c) => c,
                None if !shared.config.media.codecs.is_empty() => {
                    shared.config.media.codecs.clone()
                }
                None => negotiation::default_router_codecs(),
            };
            let capabilities = negotiation::router_capabilities(&codecs)?;
            let max = shared.config.limits.max_rooms;
            let rooms: usize = shared
                .loads
                .iter()
                .map(|l| l.routers.load(Ordering::Relaxed))
                .sum();
            if rooms >= max {
                return Err(Error::limit("rooms", max));
            }
            let worker = match msg.0.worker {
                Some(w) if (w.0 as usize) < self.workers.len() => w,
                Some(w) => return Err(Error::not_found("worker", w)),
                None => crate::placement::room_worker(&shared),
            };
            // Reserve the slot now so concurrent creations see it before the worker replies.
            shared.load(worker).routers.fetch_add(1, Ordering::Relaxed);
            Ok((capabilities, worker))
        })();
        let addr = prepared
            .as_ref()
            .ok()
            .map(|(_, w)| self.workers[w.0 as usize].addr.clone());
        Box::pin(async move {
            let (capabilities, worker) = prepared?;
            let addr = addr.ok_or_else(|| Error::internal("worker vanished"))?;
            let id = RouterId::new();
            let result = addr
                .send(SpawnRouter {
                    id,
                    capabilities: capabilities.clone(),
                    auto_subscribe,
                    single_connection,
                    secondary: false,
                })
                .await
                .map_err(mailbox("worker"))
                .and_then(|r| r);
            match result {
                Ok(router) => {
                    let group = crate::span::RouterGroup::new(
                        id,
                        worker,
                        router.clone(),
                        capabilities.clone(),
                        auto_subscribe,
                        single_connection,
                    );
                    shared.rooms.insert(id, Arc::new(group));
                    Ok((
                        RouterInfo {
                            id,
                            worker,
                            rtp_capabilities: capabilities,
                        },
                        router,
                    ))
                }
                Err(e) => {
                    shared.load(worker).routers.fetch_sub(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        })
    }
}

pub(crate) struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for ServerActor {
    type Result = actix::ResponseFuture<()>;
    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let routers: Vec<_> = self
            .shared
            .index
            .routers
            .iter()
            .map(|e| e.value().1.clone())
            .collect();
        let arbiters: Vec<ArbiterHandle> = self.workers.iter().map(|w| w.arbiter.clone()).collect();
        let shared = self.shared.clone();
        let secondaries: Vec<_> = self
            .shared
            .rooms
            .iter()
            .flat_map(|g| g.value().secondaries())
            .collect();
        Box::pin(async move {
            // A room's secondary routers first, so their events come before the room's.
            for (_, router) in secondaries {
                let _ = router
                    .send(crate::span::CloseSecondary(CloseReason::Shutdown))
                    .await;
            }
            for router in routers {
                let _ = router.send(CloseRouter(CloseReason::Shutdown)).await;
            }
            // Every middleware gets what was queued for it and finishes its `close` (files
            // finalized) before the workers stop.
            let timeout =
                std::time::Duration::from_millis(shared.config.middleware.close_timeout_ms);
            shared.middleware_threads.join_all(timeout).await;
            for a in arbiters {
                a.stop();
            }
            actix_rt::System::current().stop();
        })
    }
}

pub(crate) fn mailbox(what: &'static str) -> impl Fn(MailboxError) -> Error {
    move |e| match e {
        MailboxError::Closed => Error::closed(what),
        MailboxError::Timeout => Error::new(ErrorCode::Timeout, format!("{what} did not answer")),
    }
}

/// Starts a server.
pub struct Server;

impl Server {
    /// Starts the actor system on its own threads: one Worker (an actix Arbiter) per
    /// configured worker, each with every registered transport plugin started on it.
    /// Returns once every worker is ready, or the first plugin start-up error.
    pub fn start(
        config: Arc<Config>,
        transports: TransportRegistry,
        middleware: MiddlewareRegistry,
    ) -> Result<ServerHandle> {
        install_panic_hook();
        if let Some(name) = config
            .middleware
            .attach
            .iter()
            .find(|n| middleware.get(n).is_none())
        {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "middleware.attach names {name:?}, which is not registered; registered: {}",
                    middleware.names().join(", ")
                ),
            ));
        }
        if let Some(kind) = config
            .transports
            .keys()
            .find(|k| transports.get(k).is_none())
        {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "[transports.{kind}] configures a transport plugin that is not registered; registered: {}",
                    transports.kinds().join(", ")
                ),
            ));
        }
        let workers = config.server.worker_count();
        let shared = Shared::new(config, transports, middleware, workers);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Addr<ServerActor>>>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("switchboard-server".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let booted = system.block_on(boot(thread_shared, workers));
                let ok = booted.is_ok();
                let _ = ready_tx.send(booted);
                if ok {
                    let _ = system.run();
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::internal(format!("cannot start server thread: {e}")))?;
        let server = ready_rx
            .recv()
            .map_err(|_| Error::internal("server thread died during start-up"))??;
        let _ = shared.server.set(server.clone());
        Ok(ServerHandle {
            shared,
            server,
            done: Arc::new(Mutex::new(Some(done_rx))),
        })
    }
}

async fn boot(shared: Arc<Shared>, workers: usize) -> Result<Addr<ServerActor>> {
    let server = ServerActor::create(|ctx| {
        let server_addr = actix::AsyncContext::address(ctx);
        let slots = (0..workers)
            .map(|i| {
                let arbiter = Arbiter::new().handle();
                let id = WorkerId(i as u32);
                let shared = shared.clone();
                let server = server_addr.clone();
                let addr = WorkerActor::start_in_arbiter(&arbiter, move |_| {
                    WorkerActor::boot(id, shared, server)
                });
                WorkerSlot { arbiter, addr }
            })
            .collect();
        ServerActor {
            shared: shared.clone(),
            workers: slots,
            sampler: crate::placement::Sampler::new(workers),
        }
    });
    let mut addrs = Vec::with_capacity(workers);
    for i in 0..workers {
        let addr = server
            .send(WorkerAddr(WorkerId(i as u32)))
            .await
            .map_err(mailbox("server"))??;
        addrs.push(addr);
    }
    for addr in &addrs {
        if let Err(e) = addr
            .send(Ready)
            .await
            .map_err(mailbox("worker"))
            .and_then(|r| r)
        {
            actix_rt::System::current().stop();
            return Err(Error::new(ErrorCode::InvalidConfig, e.message));
        }
    }
    tracing::info!(workers, "server started");
    Ok(server)
}

/// The workers' arbiters, to run metrics collection on their threads.
pub(crate) struct Arbiters;

impl Message for Arbiters {
    type Result = Vec<ArbiterHandle>;
}

impl Handler<Arbiters> for ServerActor {
    type Result = actix::MessageResult<Arbiters>;
    fn handle(&mut self, _: Arbiters, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.workers.iter().map(|w| w.arbiter.clone()).collect())
    }
}

/// What every worker has counted, as [`ServerHandle::metrics`] gathers it.
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
    pub media: Option<crate::metrics::WorkerMedia>,
}

pub(crate) struct WorkerAddr(pub WorkerId);

impl Message for WorkerAddr {
    type Result = Result<Addr<WorkerActor>>;
}

impl Handler<WorkerAddr> for ServerActor {
    type Result = Result<Addr<WorkerActor>>;
    fn handle(&mut self, msg: WorkerAddr, _: &mut Self::Context) -> Self::Result {
        self.workers
            .get(msg.0.0 as usize)
            .map(|w| w.addr.clone())
            .ok_or_else(|| Error::not_found("worker", msg.0))
    }
}

pub use crate::handle::ServerHandle;
