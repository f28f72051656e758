//! The Server actor: supervises the workers and places new rooms.

use crate::group::{RouterGroup, SpawnerFor};
use crate::index::Index;
use crate::room::budget::TransportBudget;
use crate::router::{CloseRouter, RoomSpec, RouterActor, SpawnRouter};
use crate::shared::Shared;
use crate::span::CloseSecondary;
use crate::supervision::mailbox;
use crate::worker::{Ready, WorkerActor, WorkerCrashed};
use actix::{
    Actor, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, Message, Recipient,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use switchboard_core::api::{RouterInfo, RouterOptions};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::negotiation;
use switchboard_core::{Error, ErrorCode, Result, WorkerId};

struct WorkerSlot {
    arbiter: ArbiterHandle,
    addr: Addr<WorkerActor>,
}

/// Supervises the workers and places new routers.
pub struct ServerActor {
    shared: Arc<Shared>,
    index: Arc<Index>,
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
        let index = self.index.clone();
        let server = actix::AsyncContext::address(ctx).recipient();
        let id = msg.worker;
        slot.addr = WorkerActor::start_in_arbiter(&slot.arbiter, move |_| {
            WorkerActor::boot(id, shared, index, server)
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
    type Result = Result<(RouterInfo, Addr<RouterActor>)>;
}

impl Handler<CreateRouterRequest> for ServerActor {
    type Result = actix::ResponseFuture<Result<(RouterInfo, Addr<RouterActor>)>>;

    fn handle(&mut self, msg: CreateRouterRequest, ctx: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        let index = self.index.clone();
        let spawners = ctx.address().recipient();
        let auto_subscribe = msg.0.auto_subscribe;
        let single_connection = msg.0.single_connection;
        let id = msg.0.id.unwrap_or_default();
        let prepared = (|| {
            if index.rooms.contains_key(&id) || index.routers.contains_key(&id) {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("router {id} already exists"),
                ));
            }
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
            let spec = RoomSpec {
                id,
                capabilities,
                auto_subscribe,
                single_connection,
                budget: Arc::new(TransportBudget::default()),
            };
            let result = addr
                .send(SpawnRouter {
                    room: spec.clone(),
                    secondary: false,
                })
                .await
                .map_err(mailbox("worker"))
                .and_then(|r| r);
            match result {
                Ok(router) => {
                    let info = RouterInfo {
                        id: spec.id,
                        worker,
                        rtp_capabilities: spec.capabilities.clone(),
                    };
                    let group = RouterGroup::new(spec, worker, router.clone(), spawners);
                    index.rooms.insert(info.id, Arc::new(group));
                    Ok((info, router))
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
            .index
            .routers
            .iter()
            .map(|e| e.value().1.clone())
            .collect();
        let arbiters: Vec<ArbiterHandle> = self.workers.iter().map(|w| w.arbiter.clone()).collect();
        let shared = self.shared.clone();
        let secondaries: Vec<_> = self
            .index
            .rooms
            .iter()
            .flat_map(|g| g.value().secondaries())
            .collect();
        Box::pin(async move {
            // A room's secondary routers first, so their events come before the room's.
            for (_, router) in secondaries {
                let _ = router.send(CloseSecondary(CloseReason::Shutdown)).await;
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

/// Starts the server actor and one worker per configured worker, each on its own
/// arbiter, and waits until every worker is ready (or the first plugin start-up error).
pub(crate) async fn boot(
    shared: Arc<Shared>,
    index: Arc<Index>,
    workers: usize,
) -> Result<Addr<ServerActor>> {
    let server = ServerActor::create(|ctx| {
        let supervisor = actix::AsyncContext::address(ctx).recipient::<WorkerCrashed>();
        let slots = (0..workers)
            .map(|i| {
                let arbiter = Arbiter::new().handle();
                let id = WorkerId(i as u32);
                let shared = shared.clone();
                let index = index.clone();
                let supervisor = supervisor.clone();
                let addr = WorkerActor::start_in_arbiter(&arbiter, move |_| {
                    WorkerActor::boot(id, shared, index, supervisor)
                });
                WorkerSlot { arbiter, addr }
            })
            .collect();
        ServerActor {
            shared: shared.clone(),
            index: index.clone(),
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

impl Handler<SpawnerFor> for ServerActor {
    type Result = Result<Recipient<SpawnRouter>>;
    fn handle(&mut self, msg: SpawnerFor, _: &mut Self::Context) -> Self::Result {
        self.workers
            .get(msg.0.0 as usize)
            .map(|w| w.addr.clone().recipient())
            .ok_or_else(|| Error::not_found("worker", msg.0))
    }
}
