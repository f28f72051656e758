//! One connection's writing side: responses first, then events, written in batches; a
//! client that stops reading loses events (counted, and told with a gap notice), never the
//! server's time.

use super::*;

/// Owns the write half: writes responses (first) and events until both queues are closed.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut responses: mpsc::Receiver<Vec<u8>>,
    mut events: mpsc::Receiver<Vec<u8>>,
    stall: Duration,
    abort: CancellationToken,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let (mut responses_open, mut events_open) = (true, true);
    while responses_open || events_open {
        tokio::select! {
            biased;
            _ = abort.cancelled() => return,
            frame = responses.recv(), if responses_open => match frame {
                Some(frame) => batch.extend_from_slice(&frame),
                None => responses_open = false,
            },
            frame = events.recv(), if events_open => match frame {
                Some(frame) => batch.extend_from_slice(&frame),
                None => events_open = false,
            },
        }
        while batch.len() < WRITE_BATCH {
            match responses.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        while batch.len() < WRITE_BATCH {
            match events.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let written = tokio::select! {
            _ = abort.cancelled() => return,
            written = write_with_progress(&mut writer, &batch, stall) => written,
        };
        match written {
            Ok(()) => batch.clear(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                warn!(
                    stall_ms = stall.as_millis() as u64,
                    "control connection closed: the client took no bytes for rpc.request_timeout_ms"
                );
                return;
            }
            Err(e) => {
                debug!(error = %e, "control connection write failed");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(stall, writer.shutdown()).await;
}

/// Writes all of `bytes`, failing with `TimedOut` when the client takes nothing at all for
/// `stall`. A slow reader is fine; one that takes no bytes is gone or stuck, and holding its
/// slot forever would let dead clients lock out live ones.
pub(super) async fn write_with_progress<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut bytes: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match tokio::time::timeout(stall, writer.write(bytes)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}

/// Moves a connection's events from the server's bus to its outbound queue.
///
/// The bus queue is only a hand-off (this task always reads it promptly); the outbound
/// queue is where a slow client's backlog sits. When it is full, events are dropped and
/// counted, and nothing is queued after the gap until an `events.lagged {dropped}`
/// notification is, so the client sees exactly where it lost events and how many.
///
/// The bus can drop too, if this task falls more than a bus queue behind (it was not
/// scheduled while a burst was emitted). The bus does not say whose events it dropped, so
/// this task watches its own bus queue: drops can only have been its own while that queue
/// was full, and they belong after the events the full queue held. See [`BusGaps`].
pub(super) async fn pump(
    mut bus: mpsc::Receiver<Event>,
    server: ServerHandle,
    tx: mpsc::Sender<Vec<u8>>,
    subscriptions: Arc<Mutex<Subscriptions>>,
    done: CancellationToken,
    rpc: Arc<RpcShared>,
) {
    let mut lost: u64 = 0;
    let mut gaps = BusGaps::new(&bus, server.dropped_events());
    // In a cluster, the other nodes' room events are offered like this node's own.
    let mut remote = rpc
        .cluster
        .get()
        .map(crate::cluster::Cluster::remote_events);
    loop {
        tokio::select! {
            biased;
            permit = tx.reserve(), if lost > 0 => match permit {
                Ok(permit) => {
                    permit.send(lagged(lost));
                    lost = 0;
                }
                Err(_) => return,
            },
            _ = done.cancelled() => break,
            _ = tx.closed() => return,
            event = bus.recv() => match event {
                Some(event) => {
                    gaps.received(&bus, server.dropped_events());
                    offer(&event, &tx, &mut lost, &subscriptions, &rpc);
                    gaps.passed(&mut lost, &rpc);
                }
                None => break,
            },
            event = async {
                match remote.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            }, if remote.is_some() => match event {
                Ok(event) => offer(&event, &tx, &mut lost, &subscriptions, &rpc),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    lost += n;
                    rpc.counters.events_dropped.fetch_add(n, Ordering::Relaxed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => remote = None,
            },
        }
    }
    // The connection is ending; pass on what was emitted before that (the closures of a
    // server shutdown, for instance) if there is room.
    while let Ok(event) = bus.try_recv() {
        gaps.received(&bus, server.dropped_events());
        offer(&event, &tx, &mut lost, &subscriptions, &rpc);
        gaps.passed(&mut lost, &rpc);
    }
    if lost > 0 {
        let _ = tx.try_send(lagged(lost));
    }
}

/// Where the server's event bus dropped this connection's events, and how many.
///
/// Only this task takes from its bus queue, so between two of its receives the queue only
/// grows; if it is not full at a receive, it was never full since the previous one and the
/// bus dropped nothing of this connection's. If it was full, the bus's drop counter grew by
/// what it dropped for this connection (plus, if other subscribers fell behind at the same
/// moment, theirs: the count is then an upper bound), and those events were emitted after
/// every event the full queue held: the gap is placed there.
pub(super) struct BusGaps {
    /// The bus's drop counter at the previous receive.
    seen: u64,
    /// Events received from the bus so far.
    received: u64,
    /// Gaps not reached yet: (events received when the gap is reached, events lost).
    ahead: std::collections::VecDeque<(u64, u64)>,
    capacity: usize,
}

impl BusGaps {
    pub(super) fn new(bus: &mpsc::Receiver<Event>, dropped: u64) -> Self {
        Self {
            seen: dropped,
            received: 0,
            ahead: Default::default(),
            capacity: bus.max_capacity(),
        }
    }

    /// Called right after an event was taken from `bus`.
    pub(super) fn received(&mut self, bus: &mpsc::Receiver<Event>, dropped: u64) {
        self.received += 1;
        let queued = bus.len();
        // Full just before this receive: the event taken plus those still queued.
        if queued + 1 >= self.capacity && dropped > self.seen {
            let at = self.received + queued as u64;
            self.ahead.push_back((at, dropped - self.seen));
        }
        self.seen = dropped;
    }

    /// Called after the event was offered: adds the gaps now reached to `lost`.
    pub(super) fn passed(&mut self, lost: &mut u64, rpc: &RpcShared) {
        while let Some(&(at, count)) = self.ahead.front() {
            if at > self.received {
                break;
            }
            self.ahead.pop_front();
            *lost += count;
            rpc.counters
                .events_dropped
                .fetch_add(count, Ordering::Relaxed);
        }
    }
}

pub(super) fn lagged(dropped: u64) -> Vec<u8> {
    wire::encode_notification("events.lagged", &json!({ "dropped": dropped }))
}

pub(super) fn offer(
    event: &Event,
    tx: &mpsc::Sender<Vec<u8>>,
    lost: &mut u64,
    subscriptions: &Mutex<Subscriptions>,
    rpc: &RpcShared,
) {
    let wanted = {
        let mut subs = lock(subscriptions);
        let wanted = subs.wants(event);
        if let Event::RouterClosed { router, .. } = event {
            // The room is gone for good; keep long-lived connections' sets from growing.
            subs.routers.remove(router);
        }
        wanted
    };
    if !wanted {
        return;
    }
    if *lost > 0 {
        *lost += 1;
        Counters::bump(&rpc.counters.events_dropped);
        return;
    }
    let body = match serde_json::to_value(event) {
        Ok(body) => body,
        Err(e) => {
            warn!(event = event.name(), error = %e, "cannot encode event");
            return;
        }
    };
    match tx.try_send(wire::encode_notification("event", &body)) {
        Ok(()) => Counters::bump(&rpc.counters.events_sent),
        Err(mpsc::error::TrySendError::Full(_)) => {
            *lost = 1;
            Counters::bump(&rpc.counters.events_dropped);
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}
