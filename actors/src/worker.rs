//! The Worker actor: one media thread (an actix Arbiter) and the routers on it.

use crate::host::ActorHost;
use crate::index::Index;
use crate::middleware::AttachConfigured;
use crate::router::{Factories, RouterActor, SpawnRouter};
use crate::shared::Shared;
use crate::supervision::{CrashGuard, contain};
use actix::{Actor, Addr, Context, Handler, Message, Recipient};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use switchboard_core::event::Event;
use switchboard_core::transport::TransportFactory;
use switchboard_core::{Error, ErrorCode, Result, WorkerId};

thread_local! {
    /// Plugin state outlives a Worker actor that crashes: routers and transports on this
    /// thread keep using it, and the restarted Worker picks it up again.
    static THREAD_FACTORIES: RefCell<Option<(Factories, Option<Error>)>> = const { RefCell::new(None) };
}

/// One worker: creates routers on its thread and holds its transport plugins' per-worker
/// state (such as a shared UDP socket).
pub struct WorkerActor {
    id: WorkerId,
    shared: Arc<Shared>,
    index: Arc<Index>,
    factories: Factories,
    init_error: Option<Error>,
    guard: CrashGuard,
    /// Parent of the spans of this worker's rooms, so logs can be filtered by worker.
    log_span: tracing::Span,
}

impl WorkerActor {
    /// Builds the worker on its own thread, starting each plugin there the first time.
    pub(crate) fn boot(
        id: WorkerId,
        shared: Arc<Shared>,
        index: Arc<Index>,
        supervisor: Recipient<WorkerCrashed>,
    ) -> Self {
        if let Some(tid) = crate::load::current_thread_id() {
            shared
                .load(id)
                .thread_id
                .store(tid, std::sync::atomic::Ordering::Relaxed);
        }
        let (factories, init_error) = THREAD_FACTORIES.with(|slot| {
            let mut slot = slot.borrow_mut();
            slot.get_or_insert_with(|| start_plugins(id, &shared))
                .clone()
        });
        Self {
            id,
            shared,
            index,
            factories,
            init_error,
            log_span: tracing::info_span!("worker", worker = id.0),
            guard: CrashGuard::new(move |message| {
                supervisor.do_send(WorkerCrashed {
                    worker: id,
                    message,
                })
            }),
        }
    }
}

fn start_plugins(id: WorkerId, shared: &Shared) -> (Factories, Option<Error>) {
    let mut map: HashMap<&'static str, Box<dyn TransportFactory>> = HashMap::new();
    let mut error = None;
    for plugin in shared.transports.iter() {
        match contain(|| plugin.start_worker(id)) {
            Ok(Ok(factory)) => {
                map.insert(plugin.kind(), factory);
            }
            Ok(Err(e)) => {
                error.get_or_insert(Error::new(
                    e.code,
                    format!("plugin {} on {id}: {}", plugin.kind(), e.message),
                ));
            }
            Err(panic) => {
                error.get_or_insert(Error::new(
                    ErrorCode::TransportFailed,
                    format!(
                        "plugin {} panicked starting on {id}: {panic}",
                        plugin.kind()
                    ),
                ));
            }
        }
    }
    (Rc::new(RefCell::new(map)), error)
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(worker = %self.id, "worker started");
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.guard.stopped_cleanly();
    }
}

/// Tells the server a worker actor died.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WorkerCrashed {
    pub worker: WorkerId,
    pub message: String,
}

/// Test-only (`fault-injection`): the Worker actor panics in its handler, as a bug in it
/// would, for the crash drill of the worker-restart path.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct InjectPanic;

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanic> for WorkerActor {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, _: &mut Self::Context) {
        panic!("injected fault in worker {}", self.id);
    }
}

/// Checks the worker started its plugins.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct Ready;

impl Handler<Ready> for WorkerActor {
    type Result = Result<()>;
    fn handle(&mut self, _: Ready, _: &mut Self::Context) -> Result<()> {
        match &self.init_error {
            Some(e) => Err(e.clone()),
            None => {
                self.shared
                    .events
                    .emit(Event::WorkerStarted { worker: self.id });
                Ok(())
            }
        }
    }
}

/// Creates a router on this worker.
impl Handler<SpawnRouter> for WorkerActor {
    type Result = Result<Addr<RouterActor>>;
    fn handle(&mut self, msg: SpawnRouter, _: &mut Self::Context) -> Self::Result {
        let _span = self.log_span.enter();
        let (id, secondary) = (msg.room.id, msg.secondary);
        let host = Rc::new(ActorHost::new(
            self.index.clone(),
            id,
            self.id,
            msg.room.budget.clone(),
        ));
        let addr = RouterActor::new(
            msg,
            self.id,
            self.shared.clone(),
            self.factories.clone(),
            host,
        )
        .start();
        // Before anyone else has the address, so before any other request.
        for name in &self.shared.config.middleware.attach {
            addr.do_send(AttachConfigured(name.clone()));
        }
        if secondary {
            return Ok(addr);
        }
        self.index.routers.insert(id, (self.id, addr.clone()));
        self.shared.events.emit(Event::RouterCreated {
            router: id,
            worker: self.id,
        });
        Ok(addr)
    }
}
