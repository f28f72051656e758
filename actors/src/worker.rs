//! The Worker actor: one media thread (an actix Arbiter) and the routers on it.

use crate::router::RouterActor;
use crate::server::ServerActor;
use crate::shared::Shared;
use crate::supervision::{CrashGuard, contain};
use actix::{Actor, Addr, Context, Handler, Message};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use switchboard_core::event::Event;
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::transport::TransportFactory;
use switchboard_core::{Error, ErrorCode, Result, RouterId, WorkerId};

/// The transport factories of one worker thread, by plugin kind.
pub(crate) type Factories = Rc<RefCell<HashMap<&'static str, Box<dyn TransportFactory>>>>;

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
    factories: Factories,
    init_error: Option<Error>,
    guard: CrashGuard,
    /// Parent of the spans of this worker's rooms, so logs can be filtered by worker.
    log_span: tracing::Span,
}

impl WorkerActor {
    /// Builds the worker on its own thread, starting each plugin there the first time.
    pub(crate) fn boot(id: WorkerId, shared: Arc<Shared>, server: Addr<ServerActor>) -> Self {
        if let Some(tid) = crate::metrics::current_thread_id() {
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
            factories,
            init_error,
            log_span: tracing::info_span!("worker", worker = id.0),
            guard: CrashGuard::new(move |message| {
                server.do_send(WorkerCrashed {
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
#[derive(Message)]
#[rtype(result = "Result<Addr<RouterActor>>")]
pub(crate) struct SpawnRouter {
    pub id: RouterId,
    pub capabilities: RtpCapabilities,
    pub auto_subscribe: bool,
    pub single_connection: bool,
    /// A secondary router of a room whose home is on another worker: not indexed, not
    /// counted as a room, not announced.
    pub secondary: bool,
}

impl Handler<SpawnRouter> for WorkerActor {
    type Result = Result<Addr<RouterActor>>;
    fn handle(&mut self, msg: SpawnRouter, _: &mut Self::Context) -> Self::Result {
        // The router's span is created inside, and so becomes a child of this one.
        let _span = self.log_span.enter();
        let actor = RouterActor::new(
            msg.id,
            self.id,
            self.shared.clone(),
            msg.capabilities,
            self.factories.clone(),
            msg.auto_subscribe,
            msg.single_connection,
            msg.secondary,
        );
        if msg.secondary {
            return Ok(actor.start());
        }
        let addr = actor.start();
        self.shared
            .index
            .routers
            .insert(msg.id, (self.id, addr.clone()));
        self.shared.events.emit(Event::RouterCreated {
            router: msg.id,
            worker: self.id,
        });
        Ok(addr)
    }
}
