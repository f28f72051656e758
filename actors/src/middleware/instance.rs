//! One attached middleware instance: its thread, its two queues, and what it counted.
//!
//! Nothing here knows an actor: the room holds [`Attached`] and offers it packets and events;
//! the thread delivers them to the instance in the room's order and reports a panic through
//! the callback it was started with.

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::event::Event;
use switchboard_core::middleware::{Metric, Middleware, ProducerInfo, Selection};
use switchboard_core::panics::contain;
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::{Error, ProducerId, Result, RouterId, TransportId};
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

pub(crate) enum Media {
    Rtp(ProducerId, rtc_rtp::Packet),
    Rtcp(ProducerId, Bytes),
}

struct Queued {
    /// Position among the packets queued for this instance.
    index: u64,
    media: Media,
}

pub(crate) enum ControlKind {
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
    pub inject: Option<mpsc::Sender<Bytes>>,
}

impl Attached {
    /// Queues a copy of a packet if the instance selected its producer; never blocks.
    pub fn offer_rtp(&mut self, producer: ProducerId, kind: MediaKind, packet: &rtc_rtp::Packet) {
        if self.selection.matches(producer, kind) {
            self.push(|| Media::Rtp(producer, packet.clone()));
        }
    }

    pub(crate) fn push(&mut self, media: impl FnOnce() -> Media) {
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

    pub(crate) fn send_control(&self, kind: ControlKind) {
        let _ = self.control.send(Control {
            after: self.enqueued,
            kind,
        });
    }

    pub(crate) fn announce(&self, info: ProducerInfo) {
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

pub(crate) struct Running {
    name: String,
    router: RouterId,
    done: watch::Receiver<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Threads {
    pub(crate) fn add(&self, running: Running) {
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

/// A fresh instance number.
pub(crate) fn next_instance() -> u64 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// Starts the thread of instance `id` (registered in `threads`, so shutdown waits for it)
/// and returns the room's side of it. `on_failure` runs on that thread if the instance
/// panics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    id: u64,
    name: &str,
    router: RouterId,
    instance: Box<dyn Middleware>,
    selection: Arc<Selection>,
    capacity: usize,
    threads: &Threads,
    on_failure: Box<dyn Fn(String) + Send>,
) -> Result<Attached> {
    let (media_tx, media_rx) = crossbeam_channel::bounded(capacity.max(1));
    let (control_tx, control_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let runner = Runner {
        name: name.to_owned(),
        router,
        instance,
        counters: counters.clone(),
        media: media_rx,
        control: control_rx,
        pending: VecDeque::new(),
        next_index: 0,
        on_failure,
    };
    let thread = std::thread::Builder::new()
        .name(format!("mw-{name}"))
        .spawn(move || {
            runner.run();
            let _ = done_tx.send(true);
        })
        .map_err(|e| Error::internal(format!("cannot start a middleware thread: {e}")))?;
    threads.add(Running {
        name: name.to_owned(),
        router,
        done: done_rx.clone(),
        thread,
    });
    Ok(Attached {
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
    })
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
