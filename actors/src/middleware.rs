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

use crate::room::{Room, RoomIo, TransportNode};
use crate::router::RouterActor;
use crate::shared::Shared;
use crate::supervision::contain;
use crate::transport::TransportActor;
use actix::{Actor, Addr, AsyncContext, Handler, Message};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::middleware::{
    Audience, Metric, Middleware, MiddlewareContext, ProducerInfo, PublishOptions, PublishedTrack,
    RoomAccess, Selection, StreamFeedback,
};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::transport::{MediaSink, Transport, TransportState};
use switchboard_core::{Error, ErrorCode, PeerId, ProducerId, Result, RouterId, TransportId};
use tokio::sync::{mpsc, watch};

/// The transport kind of the internal transport carrying a middleware's published tracks.
pub const MIDDLEWARE_KIND: &str = "middleware";

/// How often an instance's stats and metrics snapshots are refreshed at the least.
const REFRESH: Duration = Duration::from_secs(1);

/// Distinguishes instances, so that a late report from a detached one never hits a newer
/// instance attached under the same name.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// What one instance counted, and the snapshots its thread last took. Shared by the router
/// (which counts queueing and drops) and the thread (which counts deliveries).
#[derive(Default)]
pub struct Counters {
    /// Packets put into the media queue.
    pub queued: AtomicU64,
    /// Packets handed to the instance.
    pub delivered: AtomicU64,
    /// Packets dropped because the media queue was full.
    pub dropped: AtomicU64,
    snapshot: Mutex<Snapshot>,
}

/// An instance's last stats and metrics, as its thread took them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// [`Middleware::stats`].
    pub stats: Value,
    /// [`Middleware::metrics`].
    pub metrics: Vec<Metric>,
}

impl Counters {
    /// The last snapshot. The lock is only ever held to swap or clone it.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

enum Media {
    Rtp(ProducerId, rtc_rtp::Packet),
    Rtcp(ProducerId, Bytes),
}

struct Queued {
    /// Position among the packets queued for this instance.
    index: u64,
    media: Media,
}

enum ControlKind {
    Producer(Box<ProducerInfo>),
    Event(Box<Event>),
    Close,
}

struct Control {
    /// Packets queued before this message: it is delivered after them.
    after: u64,
    kind: ControlKind,
}

/// One middleware instance attached to a room, as the room holds it.
pub(crate) struct Attached {
    pub id: u64,
    pub name: String,
    pub selection: Arc<Selection>,
    pub counters: Arc<Counters>,
    media: Sender<Queued>,
    control: Sender<Control>,
    enqueued: u64,
    done: watch::Receiver<bool>,
    /// The internal transport carrying the tracks it published, once it published one.
    pub transport: Option<TransportId>,
    /// The way into that transport.
    inject: Option<mpsc::Sender<Bytes>>,
}

impl Attached {
    /// Queues a copy of a packet if the instance selected its producer; never blocks.
    pub fn offer_rtp(&mut self, producer: ProducerId, kind: MediaKind, packet: &rtc_rtp::Packet) {
        if self.selection.matches(producer, kind) {
            self.push(|| Media::Rtp(producer, packet.clone()));
        }
    }

    fn push(&mut self, media: impl FnOnce() -> Media) {
        // Checked first so that a full queue costs no copy of the packet.
        if self.media.is_full() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let queued = Queued {
            index: self.enqueued,
            media: media(),
        };
        match self.media.try_send(queued) {
            Ok(()) => {
                self.enqueued += 1;
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The thread ended (it failed); the router is about to detach it.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn send_control(&self, kind: ControlKind) {
        let _ = self.control.send(Control {
            after: self.enqueued,
            kind,
        });
    }

    fn announce(&self, info: ProducerInfo) {
        self.send_control(ControlKind::Producer(Box::new(info)));
    }

    /// Asks the thread to deliver what is queued, run `close` and end; returns a receiver
    /// that turns `true` (or closes) when it has.
    pub fn close(self) -> watch::Receiver<bool> {
        self.send_control(ControlKind::Close);
        self.done.clone()
    }
}

/// Waits until an instance's thread has ended, at most `timeout`.
pub(crate) async fn wait_closed(mut done: watch::Receiver<bool>, timeout: Duration) -> bool {
    // An error means the thread dropped its sender: it ended too.
    tokio::time::timeout(timeout, done.wait_for(|d| *d))
        .await
        .is_ok()
}

/// The middleware threads of one server, so shutdown can wait for them.
#[derive(Default)]
pub struct Threads(Mutex<Vec<Running>>);

struct Running {
    name: String,
    router: RouterId,
    done: watch::Receiver<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Threads {
    fn add(&self, running: Running) {
        let Ok(mut list) = self.0.lock() else { return };
        // Join the threads that ended since, so the list does not grow with every attach.
        let (ended, live): (Vec<Running>, Vec<Running>) =
            list.drain(..).partition(|r| r.thread.is_finished());
        *list = live;
        list.push(running);
        drop(list);
        for r in ended {
            let _ = r.thread.join();
        }
    }

    /// Waits for every middleware thread to end, all together at most `timeout`, and joins
    /// those that did. Returns how many did not end in time.
    pub async fn join_all(&self, timeout: Duration) -> usize {
        let list: Vec<Running> = match self.0.lock() {
            Ok(mut list) => list.drain(..).collect(),
            Err(_) => return 0,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut late = 0;
        for r in list {
            let mut done = r.done;
            let ended = tokio::time::timeout_at(deadline, done.wait_for(|d| *d))
                .await
                .is_ok();
            if ended {
                // Its last act was to report `done`: this returns at once.
                let _ = r.thread.join();
            } else {
                late += 1;
                tracing::error!(router = %r.router, middleware = %r.name,
                    timeout_ms = timeout.as_millis() as u64,
                    "middleware did not close in time; leaving it behind");
            }
        }
        late
    }
}

/// Creates an instance on the router's thread and starts its own thread.
pub(crate) fn attach(
    room: &mut Room,
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
    let factory = room.shared.middleware.require(name)?.clone();
    let config = &room.shared.config;
    let options = factory.merge_options(&config.middleware.configured_options(name), requested)?;
    let capacity = config.middleware.queue_capacity.max(1);
    let id = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    let selection = Arc::new(Selection::default());
    let access = Arc::new(Access {
        router: room.id,
        name: name.to_owned(),
        instance: id,
        addr: addr.clone(),
        shared: room.shared.clone(),
        timeout: Duration::from_millis(config.rpc.request_timeout_ms),
    });
    let ctx = MiddlewareContext {
        router: room.id,
        worker: room.worker,
        room: access,
        selection: selection.clone(),
    };
    let instance = contain(|| factory.create(ctx, &options)).map_err(|m| {
        Error::new(
            ErrorCode::MiddlewareFailed,
            format!("middleware panicked: {m}"),
        )
    })??;
    let (media_tx, media_rx) = crossbeam_channel::bounded(capacity);
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let router = room.id;
    let runner = Runner {
        name: name.to_owned(),
        router,
        instance,
        counters: counters.clone(),
        media: media_rx,
        control: control_rx,
        pending: VecDeque::new(),
        next_index: 0,
        on_failure: Box::new(move |message| addr.do_send(MiddlewareFailed { id, message })),
    };
    let thread = std::thread::Builder::new()
        .name(format!("mw-{name}"))
        .spawn(move || {
            runner.run();
            let _ = done_tx.send(true);
        })
        .map_err(|e| Error::internal(format!("cannot start a middleware thread: {e}")))?;
    room.shared.middleware_threads.add(Running {
        name: name.to_owned(),
        router,
        done: done_rx.clone(),
        thread,
    });
    let attached = Attached {
        id,
        name: name.to_owned(),
        selection,
        counters,
        media: media_tx,
        control: control_tx,
        enqueued: 0,
        done: done_rx,
        transport: None,
        inject: None,
    };
    let mut producers: Vec<ProducerId> = room.producers.keys().copied().collect();
    producers.sort();
    for p in producers {
        if let Some(info) = room.producer_info(p) {
            attached.announce(info);
        }
    }
    tracing::info!(router = %router, middleware = %name, "middleware attached");
    room.middleware.push(attached);
    Ok(())
}

impl Room {
    /// A producer as middleware sees it.
    pub(crate) fn producer_info(&self, id: ProducerId) -> Option<ProducerInfo> {
        let p = self.producers.get(&id)?;
        let transport = self.transports.get(&p.transport);
        Some(ProducerInfo {
            id,
            transport: p.transport,
            peer: transport.and_then(|t| t.peer.clone()),
            kind: p.kind,
            rtp_parameters: p.rtp_parameters.clone(),
            paused: p.paused,
            from_middleware: transport.is_some_and(|t| t.kind == MIDDLEWARE_KIND),
        })
    }

    /// Hands an event to every attached instance; a new producer is announced first.
    pub(crate) fn offer_event(&mut self, event: &Event) {
        if self.middleware.is_empty() {
            return;
        }
        match event {
            Event::ProducerCreated { producer, .. } => {
                if let Some(info) = self.producer_info(*producer) {
                    for m in &self.middleware {
                        m.announce(info.clone());
                    }
                }
            }
            Event::ProducerClosed { producer, .. } => {
                self.middleware_audience.remove(producer);
            }
            _ => {}
        }
        for m in &self.middleware {
            m.send_control(ControlKind::Event(Box::new(event.clone())));
        }
    }

    /// Hands a producer's RTCP (a compound with its sender report or SDES) to the instances
    /// that selected the producer.
    pub(crate) fn offer_rtcp(&mut self, transport: TransportId, packet: &Bytes) {
        if self.middleware.is_empty() {
            return;
        }
        let Ok(packets) = rtc_rtcp::packet::unmarshal(&mut packet.clone()) else {
            return;
        };
        let mut senders = Vec::new();
        for p in &packets {
            let any = p.as_any();
            if let Some(sr) = any.downcast_ref::<rtc_rtcp::sender_report::SenderReport>() {
                senders.push(sr.ssrc);
            } else if let Some(sdes) =
                any.downcast_ref::<rtc_rtcp::source_description::SourceDescription>()
            {
                senders.extend(sdes.chunks.iter().map(|c| c.source));
            }
        }
        if senders.is_empty() {
            return;
        }
        let Room {
            producers,
            forwarder,
            middleware,
            ..
        } = self;
        for (id, p) in producers.iter() {
            if p.transport != transport
                || !forwarder
                    .producer_ssrc(*id)
                    .is_some_and(|s| senders.contains(&s))
            {
                continue;
            }
            for m in middleware.iter_mut() {
                if m.selection.matches(*id, p.kind) {
                    m.push(|| Media::Rtcp(*id, packet.clone()));
                }
            }
        }
    }

    /// Removes an instance (detached, failed or its room closing): tells its thread to
    /// close, moves its counters into the worker's totals, and closes its published tracks.
    pub(crate) fn take_middleware(
        &mut self,
        index: usize,
        reason: CloseReason,
    ) -> watch::Receiver<bool> {
        let m = self.middleware.remove(index);
        crate::metrics::middleware_retired(&m.name, &m.counters);
        let transport = m.transport;
        let done = m.close();
        if let Some(t) = transport {
            self.close_transport(t, reason);
        }
        done
    }
}

/// The thread side of an instance.
struct Runner {
    name: String,
    router: RouterId,
    instance: Box<dyn Middleware>,
    counters: Arc<Counters>,
    media: Receiver<Queued>,
    control: Receiver<Control>,
    /// Control messages waiting for packets queued before them.
    pending: VecDeque<Control>,
    /// The index of the next packet to arrive.
    next_index: u64,
    on_failure: Box<dyn Fn(String) + Send>,
}

/// Where a panic happened, so close is not retried after a panic in close itself.
enum Failure {
    Running(String),
    Closing(String),
}

impl Runner {
    fn run(mut self) {
        let span = tracing::info_span!("middleware", middleware = %self.name, room = %self.router);
        let _entered = span.enter();
        let failure = match self.serve() {
            Ok(()) => None,
            Err(Failure::Running(m)) => {
                // Still give it the chance to finish its files.
                if let Err(e) = contain(|| self.instance.close()) {
                    tracing::error!(panic = %e, "middleware panicked again while closing");
                }
                Some(m)
            }
            Err(Failure::Closing(m)) => Some(m),
        };
        if let Some(message) = failure {
            tracing::error!(%message, "middleware panicked; detached");
            (self.on_failure)(message);
        }
        let Runner { instance, .. } = self;
        if let Err(e) = contain(move || drop(instance)) {
            tracing::error!(panic = %e, "middleware panicked while being dropped");
        }
    }

    fn serve(&mut self) -> std::result::Result<(), Failure> {
        let tick = self.call(|m| m.tick_interval())?;
        let mut next_tick = tick.map(|d| Instant::now() + d);
        let mut next_refresh = Instant::now();
        loop {
            let now = Instant::now();
            if let (Some(every), Some(at)) = (tick, next_tick)
                && at <= now
            {
                self.call(|m| m.on_tick(now))?;
                // Late ticks are not made up for: a slow tick skips to the next period.
                next_tick = Some(if at + every <= now {
                    now + every
                } else {
                    at + every
                });
                next_refresh = now;
            }
            if next_refresh <= now {
                self.refresh()?;
                next_refresh = now + REFRESH;
            }
            while self
                .pending
                .front()
                .is_some_and(|c| c.after <= self.next_index)
            {
                let Some(c) = self.pending.pop_front() else {
                    break;
                };
                if self.deliver_control(c)? {
                    return Ok(());
                }
            }
            let deadline = next_tick.map_or(next_refresh, |t| t.min(next_refresh));
            if !self.pending.is_empty() {
                // The first control message waits for packets queued before it.
                match self.media.recv_deadline(deadline) {
                    Ok(q) => self.deliver_media(q)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.next_index = u64::MAX,
                }
                continue;
            }
            crossbeam_channel::select! {
                recv(self.control) -> c => match c {
                    Ok(c) => self.pending.push_back(c),
                    // The room dropped the instance without closing it: close after the rest.
                    Err(_) => self.pending.push_back(Control { after: u64::MAX, kind: ControlKind::Close }),
                },
                recv(self.media) -> q => if let Ok(q) = q {
                    self.deliver_media(q)?;
                },
                default(deadline.saturating_duration_since(now)) => {}
            }
        }
    }

    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Middleware) -> T,
    ) -> std::result::Result<T, Failure> {
        let instance = &mut self.instance;
        contain(|| f(instance.as_mut())).map_err(Failure::Running)
    }

    fn refresh(&mut self) -> std::result::Result<(), Failure> {
        let stats = self.call(|m| m.stats())?;
        let metrics = self.call(|m| m.metrics())?;
        if let Ok(mut s) = self.counters.snapshot.lock() {
            *s = Snapshot { stats, metrics };
        }
        Ok(())
    }

    /// Delivers one control message; true when it was the close.
    fn deliver_control(&mut self, c: Control) -> std::result::Result<bool, Failure> {
        match c.kind {
            ControlKind::Producer(info) => self.call(|m| m.on_producer(&info))?,
            ControlKind::Event(event) => self.call(|m| m.on_event(&event))?,
            ControlKind::Close => {
                let instance = &mut self.instance;
                contain(|| instance.close()).map_err(Failure::Closing)?;
                // The last numbers stay readable for stats until the room lets go.
                let _ = self.refresh();
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn deliver_media(&mut self, q: Queued) -> std::result::Result<(), Failure> {
        // Control messages sent before this packet are in their queue by now: deliver those
        // first, so the instance sees the room's order.
        while let Ok(c) = self.control.try_recv() {
            self.pending.push_back(c);
        }
        while self.pending.front().is_some_and(|c| c.after <= q.index) {
            let Some(c) = self.pending.pop_front() else {
                break;
            };
            // A close is always queued after every packet, so it cannot come up here.
            self.deliver_control(c)?;
        }
        self.next_index = q.index + 1;
        match q.media {
            Media::Rtp(producer, packet) => self.call(|m| m.on_rtp(producer, &packet))?,
            Media::Rtcp(producer, packet) => self.call(|m| m.on_rtcp(producer, &packet))?,
        }
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
        let _span = self.span.clone().entered();
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
        let _span = self.span.clone().entered();
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
                let result = publish(&self.room, ctx.address(), instance, options);
                let _ = reply.send(result);
            }
            MiddlewareRequest::Feedback { producer, reply } => {
                let feedback = self
                    .room
                    .try_borrow()
                    .ok()
                    .and_then(|r| stream_feedback(&r, producer));
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
        crate::session::flush_renegotiations(&self.room);
    }
}

/// Creates a producer for a middleware's track on its internal transport, and subscribes
/// its audience when the room subscribes automatically.
fn publish(
    room: &crate::room::RoomRef,
    addr: Addr<RouterActor>,
    instance: u64,
    options: PublishOptions,
) -> Result<(ProducerId, mpsc::Sender<Bytes>)> {
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
                let (t, inject) = internal_transport(&mut r, room, addr, &label)?;
                r.middleware[i].transport = Some(t);
                r.middleware[i].inject = Some(inject.clone());
                (t, inject)
            }
        }
    };
    let info = crate::ops::create_producer(
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
        crate::session::subscribe_to(room, t, &[info.id]);
    }
    tracing::info!(producer = %info.id, label = %options.label, audience = ?options.audience, "middleware published a track");
    Ok((info.id, inject))
}

/// Creates the internal transport of one middleware instance: it has no network side; the
/// instance's published packets enter it through a bounded queue.
fn internal_transport(
    r: &mut Room,
    room: &crate::room::RoomRef,
    addr: Addr<RouterActor>,
    label: &str,
) -> Result<(TransportId, mpsc::Sender<Bytes>)> {
    let max = r.shared.config.limits.max_transports_per_room;
    let group = r.shared.rooms.get(&r.id).map(|g| g.value().clone());
    if group.is_none() && r.transports.len() >= max {
        return Err(Error::limit("transports per room", max));
    }
    let slot = crate::span::TransportSlot::take(group, max)?;
    let id = TransportId::new();
    let router = r.id;
    let io = Rc::new(RoomIo {
        transport: id,
        router,
        room: Rc::downgrade(room),
        shared: r.shared.clone(),
        on_crash: Box::new(move |message| {
            addr.do_send(crate::router::RouterCrashed(message));
        }),
        on_gave_up: Box::new(|_| {}),
        reentrant_drops: Default::default(),
        announced: Default::default(),
        pending_state: Default::default(),
        kind: MIDDLEWARE_KIND.to_owned(),
        state: std::cell::Cell::new(TransportState::Connected),
        failure_stage: Default::default(),
        ever_connected: Default::default(),
    });
    let capacity = r.shared.config.middleware.queue_capacity.max(1);
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
        router,
        MIDDLEWARE_KIND.to_owned(),
        room.clone(),
        plugin.clone(),
        span,
    )
    .start();
    r.transports.insert(
        id,
        TransportNode {
            addr: actor.clone(),
            io: io.clone(),
            peer: None,
            kind: MIDDLEWARE_KIND.to_owned(),
            sink,
            plugin,
        },
    );
    r.shared.index.transports.insert(id, (router, actor));
    slot.keep();
    r.shared
        .load(r.worker)
        .transports
        .fetch_add(1, Ordering::Relaxed);
    r.emit(Event::TransportCreated {
        router,
        transport: id,
        kind: MIDDLEWARE_KIND.to_owned(),
        peer: None,
    });
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
        json!({ "middleware": self.label })
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

/// Feedback about a producer's stream: its consumers' counters summed, and its own count of
/// keyframe requests passed upstream.
fn stream_feedback(room: &Room, producer: ProducerId) -> Option<StreamFeedback> {
    let p = room.forwarder.producer_stats(producer)?;
    let mut f = StreamFeedback {
        keyframe_requests_sent: p.keyframe_requests_sent,
        ..StreamFeedback::default()
    };
    for (id, _) in room
        .consumers
        .iter()
        .filter(|(_, c)| c.producer == producer)
    {
        if let Some(c) = room.forwarder.consumer_stats(*id) {
            f.nacks += c.nacks;
            f.retransmitted += c.retransmitted;
            f.plis += c.plis;
            f.firs += c.firs;
        }
    }
    Some(f)
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

/// Whether automatic subscription gives `peer` this producer: always, unless a middleware
/// published it for someone else or for nobody.
pub(crate) fn audience_allows(room: &Room, producer: ProducerId, peer: &PeerId) -> bool {
    match room.middleware_audience.get(&producer) {
        None | Some(Audience::Everyone) => true,
        Some(Audience::Peer(a)) => a == peer,
        Some(Audience::Nobody) => false,
    }
}
