//! Running middleware: one thread per attached instance, fed by two queues.
//!
//! The router never calls a middleware itself. Per packet it asks the instance's
//! [`Selection`] whether the producer is wanted and, if so, hands a copy to the instance's
//! bounded media queue with `try_send`: a full queue drops the packet and counts it, so a slow
//! middleware costs the worker a failed `try_send`, never a wait. Events, producer
//! announcements and the final close go through a second, unbounded queue that never drops.
//!
//! Each control message remembers how many packets had been queued before it, and the thread
//! delivers it right after those packets: the instance sees exactly the order the room saw
//! (a producer's announcement before its first packet, its closure after its last one),
//! while a control message never waits behind packets queued after it.
//!
//! A panic in any method is contained: the thread reports it to the router, which detaches
//! the instance and counts the failure; the thread still tries `close` once so files get
//! finalized. Every thread is registered with the server, which joins them all (within
//! `middleware.close_timeout_ms`) before a graceful shutdown completes.

pub mod instance;

pub use instance::{Counters, MIDDLEWARE_KIND, Snapshot, Threads};

use crate::room::renegotiation::{flush_renegotiations, subscribe_to};
use crate::room::{Room, RoomIo, TransportNode, tracks};
use crate::router::{RouterActor, RouterCrashed};
use crate::shared::Shared;
use crate::supervision::contain;
use crate::transport::TransportActor;
use actix::{Actor, Addr, AsyncContext, Handler, Message};
use bytes::Bytes;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::middleware::{
    Audience, MiddlewareContext, PublishOptions, PublishedTrack, RoomAccess, Selection,
    StreamFeedback,
};
use switchboard_core::transport::{MediaSink, Transport, TransportState};
use switchboard_core::{Error, ErrorCode, ProducerId, Result, RouterId, TransportId};
use tokio::sync::mpsc;

/// Creates an instance on the router's thread and starts its own thread.
pub(crate) fn attach(
    room: &mut Room,
    shared: &Arc<Shared>,
    addr: Addr<RouterActor>,
    name: &str,
    requested: &Value,
) -> Result<()> {
    if room.middleware.iter().any(|m| m.name == name) {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("middleware {name:?} is already attached"),
        ));
    }
    let factory = shared.middleware.require(name)?.clone();
    let config = &shared.config;
    let options = factory.merge_options(&config.middleware.configured_options(name), requested)?;
    let id = instance::next_instance();
    let selection = Arc::new(Selection::default());
    let access = Arc::new(Access {
        router: room.id,
        name: name.to_owned(),
        instance: id,
        addr: addr.clone(),
        shared: shared.clone(),
        timeout: Duration::from_millis(config.middleware.request_timeout_ms),
    });
    let ctx = MiddlewareContext {
        router: room.id,
        worker: room.worker,
        room: access,
        selection: selection.clone(),
    };
    let created = contain(|| factory.create(ctx, &options)).map_err(|m| {
        Error::new(
            ErrorCode::MiddlewareFailed,
            format!("middleware panicked: {m}"),
        )
    })??;
    let attached = instance::start(
        id,
        name,
        room.id,
        created,
        selection,
        config.middleware.queue_capacity,
        &shared.middleware_threads,
        Box::new(move |message| addr.do_send(MiddlewareFailed { id, message })),
    )?;
    let mut producers: Vec<ProducerId> = room.producers.keys().copied().collect();
    producers.sort();
    for p in producers {
        if let Some(info) = room.producer_info(p) {
            attached.announce(info);
        }
    }
    tracing::info!(router = %room.id, middleware = %name, "middleware attached");
    room.middleware.push(attached);
    Ok(())
}

/// Attaches a registered middleware to this room.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct AttachMiddleware {
    /// Registered name.
    pub name: String,
    /// Middleware-specific options.
    pub options: Value,
}

impl Handler<AttachMiddleware> for RouterActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: AttachMiddleware, ctx: &mut Self::Context) -> Result<()> {
        let _span = self.log_span.clone().entered();
        let mut r = self.room.borrow_mut();
        attach(&mut r, &self.shared, ctx.address(), &msg.name, &msg.options)
    }
}

/// Attaches a middleware that `middleware.attach` gives every room; sent by the worker
/// before the router's address is handed out. A failure is logged: the room still opens.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AttachConfigured(pub String);

impl Handler<AttachConfigured> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: AttachConfigured, ctx: &mut Self::Context) {
        let _span = self.log_span.clone().entered();
        let mut r = self.room.borrow_mut();
        if let Err(e) = attach(&mut r, &self.shared, ctx.address(), &msg.0, &Value::Null) {
            tracing::error!(router = %self.id, middleware = %msg.0, error = %e, "configured middleware could not be attached");
        }
    }
}

/// An instance's thread reports a panic: detach it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MiddlewareFailed {
    id: u64,
    message: String,
}

impl Handler<MiddlewareFailed> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: MiddlewareFailed, _: &mut Self::Context) {
        let _span = self.log_span.clone().entered();
        let Ok(mut r) = self.room.try_borrow_mut() else {
            return;
        };
        let Some(i) = r.middleware.iter().position(|m| m.id == msg.id) else {
            return;
        };
        let name = r.middleware[i].name.clone();
        crate::metrics::middleware_failed(&name);
        tracing::error!(router = %r.id, middleware = %name, message = %msg.message, "middleware detached after a panic");
        let _ = r.take_middleware(
            i,
            CloseReason::Crashed {
                message: msg.message,
            },
        );
    }
}

/// What a middleware asks of its room, from its own thread.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum MiddlewareRequest {
    Keyframe(ProducerId),
    Publish {
        instance: u64,
        options: PublishOptions,
        reply: std::sync::mpsc::SyncSender<Result<(ProducerId, mpsc::Sender<Bytes>)>>,
    },
    Unpublish {
        instance: u64,
        producer: ProducerId,
    },
    Feedback {
        producer: ProducerId,
        reply: std::sync::mpsc::SyncSender<Option<StreamFeedback>>,
    },
}

impl Handler<MiddlewareRequest> for RouterActor {
    type Result = ();
    fn handle(&mut self, msg: MiddlewareRequest, ctx: &mut Self::Context) {
        let _span = self.log_span.clone().entered();
        match msg {
            MiddlewareRequest::Keyframe(producer) => {
                if let Ok(mut r) = self.room.try_borrow_mut()
                    && let Err(e) = r.forwarder.request_keyframe(producer, Instant::now())
                {
                    tracing::debug!(%producer, error = %e, "middleware keyframe request ignored");
                }
            }
            MiddlewareRequest::Publish {
                instance,
                options,
                reply,
            } => {
                let result = publish(self, ctx.address(), instance, options);
                let _ = reply.send(result);
            }
            MiddlewareRequest::Feedback { producer, reply } => {
                let feedback = self
                    .room
                    .try_borrow()
                    .ok()
                    .and_then(|r| crate::room::middleware::stream_feedback(&r, producer));
                let _ = reply.send(feedback);
            }
            MiddlewareRequest::Unpublish { instance, producer } => {
                let Ok(mut r) = self.room.try_borrow_mut() else {
                    return;
                };
                // Only the instance's own tracks: a handle outliving a re-attach must not
                // close someone else's.
                let owned = r
                    .middleware
                    .iter()
                    .find(|m| m.id == instance)
                    .and_then(|m| m.transport)
                    .is_some_and(|t| r.producers.get(&producer).is_some_and(|p| p.transport == t));
                if owned {
                    r.close_producer(producer, CloseReason::Requested);
                }
            }
        }
        flush_renegotiations(&self.room);
    }
}

/// Creates a producer for a middleware's track on its internal transport, and subscribes
/// its audience when the room subscribes automatically.
fn publish(
    router: &RouterActor,
    addr: Addr<RouterActor>,
    instance: u64,
    options: PublishOptions,
) -> Result<(ProducerId, mpsc::Sender<Bytes>)> {
    let room = &router.room;
    let (transport, inject) = {
        let mut r = room.borrow_mut();
        let i = r
            .middleware
            .iter()
            .position(|m| m.id == instance)
            .ok_or_else(|| Error::closed("middleware"))?;
        if let Audience::Peer(peer) = &options.audience
            && r.peer(peer).is_none()
        {
            return Err(Error::not_found("peer", peer));
        }
        match (r.middleware[i].transport, r.middleware[i].inject.clone()) {
            (Some(t), Some(inject)) => (t, inject),
            _ => {
                let label = r.middleware[i].name.clone();
                let (t, inject) = internal_transport(&mut r, router, addr, &label)?;
                r.middleware[i].transport = Some(t);
                r.middleware[i].inject = Some(inject.clone());
                (t, inject)
            }
        }
    };
    let info = tracks::create_producer(
        room,
        transport,
        options.kind,
        &options.rtp_parameters,
        false,
    )?;
    let receivers: Vec<TransportId> = {
        let mut r = room.borrow_mut();
        if options.audience != Audience::Everyone {
            r.middleware_audience
                .insert(info.id, options.audience.clone());
        }
        if r.auto_subscribe {
            r.peers
                .iter()
                .filter(|p| p.subscribed)
                .filter(|p| match &options.audience {
                    Audience::Everyone => true,
                    Audience::Peer(a) => *a == p.id,
                    Audience::Nobody => false,
                })
                .filter_map(|p| p.recv)
                .collect()
        } else {
            Vec::new()
        }
    };
    for t in receivers {
        subscribe_to(room, t, &[info.id]);
    }
    tracing::info!(producer = %info.id, label = %options.label, audience = ?options.audience, "middleware published a track");
    Ok((info.id, inject))
}

/// Creates the internal transport of one middleware instance: it has no network side; the
/// instance's published packets enter it through a bounded queue.
fn internal_transport(
    r: &mut Room,
    router: &RouterActor,
    addr: Addr<RouterActor>,
    label: &str,
) -> Result<(TransportId, mpsc::Sender<Bytes>)> {
    let slot = router
        .budget
        .take(r.config.limits.max_transports_per_room)?;
    let id = TransportId::new();
    let crash = addr.clone();
    let io = Rc::new(RoomIo::new(
        id,
        &router.room,
        r,
        MIDDLEWARE_KIND,
        TransportState::Connected,
        Box::new(move |message| crash.do_send(RouterCrashed(message))),
        Box::new(|_| {}),
    ));
    let capacity = r.config.middleware.queue_capacity.max(1);
    let (tx, mut rx) = mpsc::channel::<Bytes>(capacity);
    let pump_io = io.clone();
    let pump = tokio::task::spawn_local(async move {
        while let Some(packet) = rx.recv().await {
            use switchboard_core::transport::{TransportIo, parse_rtp};
            match parse_rtp(packet) {
                Some(packet) => pump_io.on_rtp(packet),
                None => pump_io.on_malformed_rtp(),
            }
        }
    });
    let plugin: Box<dyn Transport> = Box::new(InternalTransport {
        label: label.to_owned(),
        pump: Some(pump),
    });
    let sink = plugin.sink();
    let plugin = Rc::new(RefCell::new(Some(plugin)));
    let span = tracing::info_span!("transport", transport = %id, kind = MIDDLEWARE_KIND, middleware = %label);
    let actor = TransportActor::new(
        id,
        r.id,
        MIDDLEWARE_KIND.to_owned(),
        router.room.clone(),
        plugin.clone(),
        addr.recipient(),
        span,
    )
    .start();
    router.host.transport_started(id, actor);
    slot.keep();
    r.add_transport(
        id,
        TransportNode {
            io: io.clone(),
            peer: None,
            kind: MIDDLEWARE_KIND.to_owned(),
            sink,
            plugin,
        },
        false,
    );
    io.announce();
    Ok((id, tx))
}

/// The transport under a middleware's published tracks.
struct InternalTransport {
    label: String,
    pump: Option<tokio::task::JoinHandle<()>>,
}

/// Nothing is ever consumed on an internal transport.
struct NoSink;

impl MediaSink for NoSink {
    fn send_rtp(&self, _packet: &[u8]) {}
    fn send_rtcp(&self, _packet: &[u8]) {}
}

impl Transport for InternalTransport {
    fn local_parameters(&self) -> Value {
        json!({ "kind": MIDDLEWARE_KIND, "middleware": self.label })
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        Rc::new(NoSink)
    }

    fn dump(&self) -> Value {
        /// The state of a middleware's internal transport (`transport.dump` → `plugin`).
        #[derive(serde::Serialize)]
        struct InternalDump<'a> {
            middleware: &'a str,
        }
        switchboard_core::report::plugin_value(&InternalDump {
            middleware: &self.label,
        })
    }

    fn close(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

impl Drop for InternalTransport {
    fn drop(&mut self) {
        self.close();
    }
}

/// [`RoomAccess`] over the router's address: usable from any thread.
struct Access {
    router: RouterId,
    name: String,
    instance: u64,
    addr: Addr<RouterActor>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl RoomAccess for Access {
    fn request_keyframe(&self, producer: ProducerId) {
        self.addr.do_send(MiddlewareRequest::Keyframe(producer));
    }

    fn publish(&self, options: PublishOptions) -> Result<Box<dyn PublishedTrack>> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.addr
            .try_send(MiddlewareRequest::Publish {
                instance: self.instance,
                options,
                reply,
            })
            .map_err(|_| Error::closed(format!("router {}", self.router)))?;
        let (id, inject) = match answer.recv_timeout(self.timeout) {
            Ok(result) => result?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(Error::new(
                    ErrorCode::Timeout,
                    "the room did not answer the publish request in time \
                     (publish from the middleware's own methods, not from its factory)",
                ));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::closed(format!("router {}", self.router)));
            }
        };
        Ok(Box::new(Published {
            id,
            inject,
            instance: self.instance,
            addr: self.addr.clone(),
            dropped: AtomicU64::new(0),
        }))
    }

    fn feedback(&self, producer: ProducerId) -> Option<StreamFeedback> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.addr
            .try_send(MiddlewareRequest::Feedback { producer, reply })
            .ok()?;
        answer.recv_timeout(self.timeout).ok().flatten()
    }

    fn notify(&self, name: &str, data: Value) {
        // Straight onto the event bus: the notification must get out even while the room is
        // closing (a recorder reports its finished files from `close`).
        self.shared.events.emit(Event::Middleware {
            router: self.router,
            middleware: self.name.clone(),
            name: name.to_owned(),
            data,
        });
    }
}

/// A published track's handle.
struct Published {
    id: ProducerId,
    inject: mpsc::Sender<Bytes>,
    instance: u64,
    addr: Addr<RouterActor>,
    dropped: AtomicU64,
}

impl PublishedTrack for Published {
    fn id(&self) -> ProducerId {
        self.id
    }

    fn send_rtp(&self, packet: Bytes) -> Result<()> {
        match self.inject.try_send(packet) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                Err(Error::new(
                    ErrorCode::LimitExceeded,
                    format!("the published track's queue is full ({n} packets dropped so far)"),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Error::closed(format!("producer {}", self.id)))
            }
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.addr.do_send(MiddlewareRequest::Unpublish {
            instance: self.instance,
            producer: self.id,
        });
    }
}
