//! One control connection: a reader that frames and dispatches requests, a writer that owns
//! the socket's write half, and (once the client subscribes) an event pump.
//!
//! ```text
//!  socket ──▶ reader ──spawn per request──▶ handler task ──response──┐
//!                                                                    ▼
//!  event bus ──▶ pump ──(bounded, drop + count when full)──▶ writer ──▶ socket
//! ```
//!
//! Nothing on this path blocks anything outside the connection. A client that stops reading
//! fills its own socket buffer; then its writer waits, its event queue overflows (events are
//! dropped and counted, and an `events.lagged` notification says so when there is room
//! again), its handler tasks wait to hand in responses, and its reader stops taking requests
//! once [`MAX_IN_FLIGHT`] are waiting. Other connections and the media threads never notice.

use super::dispatch::Ctx;
use super::wire::{self, FrameScanner, Incoming, Scan};
use super::{Counters, RpcError, RpcShared};
use bytes::BytesMut;
use rmpv::Value as Msgpack;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;
use switchboard_actors::ServerHandle;
use switchboard_core::event::Event;
use switchboard_core::{ErrorCode, RouterId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Requests one connection may have running at once. The reader waits for a slot before
/// taking the next request, which pushes back on the client through TCP.
pub const MAX_IN_FLIGHT: usize = 256;

/// Event notifications queued for one connection before new ones are dropped.
pub const EVENT_QUEUE: usize = 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes gathered into one socket write when several messages are ready.
const WRITE_BATCH: usize = 64 * 1024;

/// How long a closing connection keeps reading (and discarding) after its last message was
/// written. Closing a TCP socket with unread input sends a reset, which can destroy the
/// error notification explaining the close before the client reads it.
const LINGER: Duration = Duration::from_secs(2);

/// How long a refused connection may take to accept its error notification.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Which events a connection asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriptions {
    /// Every event, of every room and of the workers.
    pub all: bool,
    /// Rooms whose events are wanted. A room leaves the set by itself once its
    /// `router_closed` event has been delivered.
    pub routers: BTreeSet<RouterId>,
}

impl Subscriptions {
    fn wants(&self, event: &Event) -> bool {
        self.all || event.router().is_some_and(|r| self.routers.contains(&r))
    }
}

/// A connection's state that handlers reach through [`Ctx`].
pub(crate) struct Conn {
    subscriptions: Arc<Mutex<Subscriptions>>,
    /// The event queue's sending side until the pump starts (or the connection ends).
    events: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Set when the connection stops reading: the pump drains what the bus already holds
    /// and stops.
    done: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks is always left consistent, so a panic elsewhere while
    // holding one does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Conn {
    fn new(events: mpsc::Sender<Vec<u8>>) -> Arc<Self> {
        Arc::new(Self {
            subscriptions: Arc::default(),
            events: Mutex::new(Some(events)),
            done: CancellationToken::new(),
        })
    }

    /// Adds a subscription (`None` for everything) and starts the pump on first use.
    pub(crate) fn subscribe(
        &self,
        ctx: &Ctx,
        router: Option<RouterId>,
    ) -> Result<Subscriptions, RpcError> {
        let mut subs = lock(&self.subscriptions);
        match router {
            None => subs.all = true,
            Some(router) => {
                subs.routers.insert(router);
            }
        }
        // The bus subscription exists before the caller gets its answer, so every event
        // emitted after the answer reaches this connection.
        if let Some(tx) = lock(&self.events).take() {
            let pump = pump(
                ctx.server().subscribe(),
                tx,
                self.subscriptions.clone(),
                self.done.clone(),
                ctx.rpc.clone(),
            );
            ctx.rpc.tracker.spawn(pump);
        } else if self.done.is_cancelled() {
            return Err(RpcError::new(
                ErrorCode::Closed,
                "the connection is closing",
            ));
        }
        Ok(subs.clone())
    }

    /// Removes a subscription (`None` removes all of them).
    pub(crate) fn unsubscribe(&self, router: Option<RouterId>) -> Subscriptions {
        let mut subs = lock(&self.subscriptions);
        match router {
            None => *subs = Subscriptions::default(),
            Some(router) => {
                subs.routers.remove(&router);
            }
        }
        subs.clone()
    }

    fn finish(&self) {
        self.done.cancel();
        lock(&self.events).take();
    }
}

/// Serves one accepted connection until either side ends it.
pub(crate) async fn serve<R, W>(
    rpc: Arc<RpcShared>,
    server: ServerHandle,
    mut reader: R,
    writer: W,
    permit: OwnedSemaphorePermit,
    peer: String,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _open = OpenGuard::new(&rpc.counters, permit);
    let (responses_tx, responses_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let conn = Conn::new(events_tx);
    let writer = rpc.tracker.spawn(write_loop(
        writer,
        responses_rx,
        events_rx,
        rpc.request_timeout(),
        rpc.abort.clone(),
    ));

    let mut session = Session {
        ctx: Ctx::new(server, rpc.clone(), conn.clone()),
        responses: responses_tx,
        authenticated: rpc.config.token.is_empty(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        peer,
    };
    let ended = session.read_loop(&mut reader).await;
    conn.finish();
    drop(session);

    // The writer ends once every handler has handed in its response and the pump has
    // flushed; only then may the socket close.
    let _ = writer.await;
    if let Ended::Refused = ended {
        linger(&mut reader, &rpc.stop).await;
    }
}

/// Why a connection stopped reading.
enum Ended {
    /// The client closed its side, or the socket failed.
    Client,
    /// The server refused the stream (bad framing, failed auth) and told the client why;
    /// the client may still be sending.
    Refused,
    /// The server is shutting down, or the writer gave up on the client.
    Server,
}

/// Answers a connection over the limit with an error notification and closes it.
pub(crate) async fn refuse<R, W>(rpc: Arc<RpcShared>, mut reader: R, mut writer: W, max: usize)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let error = RpcError::new(
        ErrorCode::LimitExceeded,
        format!("connection limit of {max} reached (rpc.max_connections)"),
    );
    let frame = wire::encode_error_notification(&error);
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        writer.write_all(&frame).await?;
        writer.shutdown().await
    })
    .await;
    linger(&mut reader, &rpc.stop).await;
}

/// Keeps the connection counters and slot for as long as the connection lives.
struct OpenGuard<'a> {
    counters: &'a Counters,
    _permit: OwnedSemaphorePermit,
}

impl<'a> OpenGuard<'a> {
    fn new(counters: &'a Counters, permit: OwnedSemaphorePermit) -> Self {
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Self {
            counters,
            _permit: permit,
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads and discards until the client closes, for at most [`LINGER`], and not at all once
/// the server is shutting down.
async fn linger<R: AsyncRead + Unpin>(reader: &mut R, stop: &CancellationToken) {
    let mut scratch = vec![0u8; 8192];
    let drain = async {
        loop {
            match reader.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = drain => {}
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(LINGER) => {}
    }
}

/// Whether the connection goes on after a message.
enum Flow {
    Continue,
    Close,
}

struct Session {
    ctx: Ctx,
    responses: mpsc::Sender<Vec<u8>>,
    authenticated: bool,
    in_flight: Arc<Semaphore>,
    peer: String,
}

impl Session {
    fn rpc(&self) -> &RpcShared {
        &self.ctx.rpc
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Ended {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut scanner = FrameScanner::new(self.rpc().config.max_frame_bytes);
        loop {
            loop {
                match scanner.scan(&buf) {
                    Scan::Complete(len) => {
                        let frame = buf.split_to(len);
                        scanner.reset();
                        if let Flow::Close = self.on_frame(&frame).await {
                            return Ended::Refused;
                        }
                    }
                    Scan::Incomplete => break,
                    Scan::TooLarge => {
                        let max = self.rpc().config.max_frame_bytes;
                        let error = RpcError::new(
                            ErrorCode::FrameTooLarge,
                            format!("message larger than {max} bytes (rpc.max_frame_bytes)"),
                        );
                        self.fatal(error).await;
                        return Ended::Refused;
                    }
                    Scan::Invalid => {
                        let error = RpcError::new(
                            ErrorCode::ParseError,
                            "not MessagePack: reserved byte 0xc1 where a value starts",
                        );
                        self.fatal(error).await;
                        return Ended::Refused;
                    }
                }
            }
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                _ = self.ctx.rpc.stop.cancelled() => return Ended::Server,
                _ = self.responses.closed() => return Ended::Server,
                read = reader.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        let error = RpcError::new(
                            ErrorCode::ParseError,
                            "the stream ended in the middle of a message",
                        );
                        self.fatal(error).await;
                    }
                    return Ended::Client;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "control connection read failed");
                    return Ended::Client;
                }
            }
        }
    }

    /// Sends an error notification for a problem that ends the connection.
    async fn fatal(&self, error: RpcError) {
        Counters::bump(&self.rpc().counters.protocol_errors);
        info!(peer = %self.peer, code = %error.code, message = %error.message, "closing control connection");
        self.send(wire::encode_error_notification(&error)).await;
    }

    async fn send(&self, frame: Vec<u8>) {
        // A closed channel means the writer gave up on the socket; nothing is left to tell.
        let _ = self.responses.send(frame).await;
    }

    async fn on_frame(&mut self, frame: &[u8]) -> Flow {
        let message = wire::decode_frame(frame).map(wire::parse_message);
        let incoming = match message {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(bad)) => {
                let error = RpcError::new(ErrorCode::InvalidRequest, bad.message);
                return self.reject(bad.msgid, error).await;
            }
            Err(message) => {
                let error = RpcError::new(ErrorCode::InvalidRequest, message);
                return self.reject(None, error).await;
            }
        };
        match incoming {
            Incoming::Request {
                msgid,
                method,
                params,
            } if method == "auth" => self.authenticate(msgid, params).await,
            _ if !self.authenticated => {
                let msgid = match &incoming {
                    Incoming::Request { msgid, .. } => Some(*msgid),
                    Incoming::Notification { .. } => None,
                };
                self.unauthorized(msgid, "the first request must be auth {token}")
                    .await
            }
            Incoming::Request {
                msgid,
                method,
                params,
            } => {
                self.spawn_call(Some(msgid), method, params).await;
                Flow::Continue
            }
            Incoming::Notification { method, params } => {
                self.spawn_call(None, method, params).await;
                Flow::Continue
            }
        }
    }

    /// Answers a frame that is not a request: a response when it had a msgid, else an
    /// `error` notification. The stream is still in step, so the connection goes on, unless
    /// it has not authenticated yet.
    async fn reject(&mut self, msgid: Option<u32>, error: RpcError) -> Flow {
        if !self.authenticated {
            return self
                .unauthorized(msgid, "the first request must be auth {token}")
                .await;
        }
        Counters::bump(&self.rpc().counters.protocol_errors);
        debug!(peer = %self.peer, message = %error.message, "invalid request");
        let frame = match msgid {
            Some(msgid) => wire::encode_response(msgid, &Err(error)),
            None => wire::encode_error_notification(&error),
        };
        self.send(frame).await;
        Flow::Continue
    }

    async fn unauthorized(&mut self, msgid: Option<u32>, message: &str) -> Flow {
        Counters::bump(&self.rpc().counters.auth_failures);
        warn!(peer = %self.peer, reason = message, "control connection refused: not authenticated");
        let error = RpcError::new(ErrorCode::Unauthorized, message);
        let frame = match msgid {
            Some(msgid) => wire::encode_response(msgid, &Err(error)),
            None => wire::encode_error_notification(&error),
        };
        self.send(frame).await;
        Flow::Close
    }

    /// `auth` runs here, before the next message is read, so no request that follows it on
    /// the stream can slip through ahead of the check.
    async fn authenticate(&mut self, msgid: u32, params: Msgpack) -> Flow {
        match check_token(&self.rpc().config.token, params) {
            Ok(()) => {
                self.authenticated = true;
                self.send(wire::encode_response(msgid, &Ok(serde_json::Value::Null)))
                    .await;
                Flow::Continue
            }
            Err(error) => {
                Counters::bump(&self.rpc().counters.auth_failures);
                warn!(peer = %self.peer, "control connection refused: bad token");
                self.send(wire::encode_response(msgid, &Err(error))).await;
                Flow::Close
            }
        }
    }

    /// Runs a request (or a notification, when `msgid` is `None`) on its own task.
    async fn spawn_call(&mut self, msgid: Option<u32>, method: String, params: Msgpack) {
        let permit = tokio::select! {
            permit = self.in_flight.clone().acquire_owned() => permit,
            _ = self.ctx.rpc.stop.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        let rpc = self.ctx.rpc.clone();
        Counters::bump(&rpc.counters.requests);
        let ctx = self.ctx.clone();
        let responses = self.responses.clone();
        rpc.tracker.clone().spawn(async move {
            let started = std::time::Instant::now();
            let outcome = run(&ctx, &method, params).await;
            if let Err(e) = &outcome {
                Counters::bump(&rpc.counters.request_errors);
                if e.code == ErrorCode::Timeout {
                    Counters::bump(&rpc.counters.request_timeouts);
                }
            }
            let label = rpc.methods.canonical(&method).unwrap_or("unknown");
            let result = match &outcome {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.code.to_string(),
            };
            rpc.metrics.record(label, &result, started.elapsed());
            let frame = match (msgid, &outcome) {
                (Some(msgid), _) => Some(wire::encode_response(msgid, &outcome)),
                (None, Ok(_)) => None,
                (None, Err(e)) => {
                    let mut e = e.clone();
                    let data = e.data.take();
                    Some(wire::encode_error_notification(
                        &e.with_data(json!({ "method": method, "detail": data })),
                    ))
                }
            };
            if let Some(frame) = frame {
                let _ = responses.send(frame).await;
            }
            drop(permit);
        });
    }
}

/// Runs a method with the request timeout, on a task of its own so that a panicking
/// handler becomes an `internal` error instead of a request that is never answered.
async fn run(ctx: &Ctx, method: &str, params: Msgpack) -> Result<serde_json::Value, RpcError> {
    let timeout = ctx.rpc.request_timeout();
    let task_ctx = ctx.clone();
    let name = method.to_owned();
    let mut handler = tokio::spawn(async move { task_ctx.call(&name, params).await });
    tokio::select! {
        joined = &mut handler => match joined {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => {
                warn!(method, "RPC handler panicked");
                Err(RpcError::internal(format!("{method} failed unexpectedly")))
            }
            Err(_) => Err(RpcError::new(ErrorCode::Closed, "the server is shutting down")),
        },
        _ = tokio::time::sleep(timeout) => {
            // The operation may still complete inside the server; the backend learns the
            // outcome from events or by asking again.
            handler.abort();
            Err(RpcError::new(
                ErrorCode::Timeout,
                format!("{method} did not finish within {} ms (rpc.request_timeout_ms)", timeout.as_millis()),
            ))
        }
        _ = ctx.rpc.abort.cancelled() => {
            handler.abort();
            Err(RpcError::new(ErrorCode::Closed, "the server is shutting down"))
        }
    }
}

/// Checks `auth` parameters against the configured token in constant time. Without a
/// configured token any `auth` succeeds, so clients may always send one.
pub(crate) fn check_token(expected: &str, params: Msgpack) -> Result<(), RpcError> {
    let params: super::methods::AuthParams =
        super::dispatch::typed_params(wire::params_map(params)?)?;
    if expected.is_empty() || tokens_match(expected.as_bytes(), params.token.as_bytes()) {
        Ok(())
    } else {
        Err(RpcError::new(ErrorCode::Unauthorized, "wrong token"))
    }
}

/// Compares without an early exit, so response timing reveals neither the token's content
/// nor its length: the work depends on the presented token's length only.
fn tokens_match(expected: &[u8], presented: &[u8]) -> bool {
    if expected.is_empty() {
        return presented.is_empty();
    }
    let mut same = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    for (i, byte) in presented.iter().enumerate() {
        same &= byte.ct_eq(&expected[i % expected.len()]);
    }
    same.into()
}

/// Owns the write half: writes responses (first) and events until both queues are closed.
async fn write_loop<W: AsyncWrite + Unpin>(
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
async fn write_with_progress<W: AsyncWrite + Unpin>(
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
async fn pump(
    mut bus: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Vec<u8>>,
    subscriptions: Arc<Mutex<Subscriptions>>,
    done: CancellationToken,
    rpc: Arc<RpcShared>,
) {
    let mut lost: u64 = 0;
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
                Some(event) => offer(&event, &tx, &mut lost, &subscriptions, &rpc),
                None => break,
            },
        }
    }
    // The connection is ending; pass on what was emitted before that (the closures of a
    // server shutdown, for instance) if there is room.
    while let Ok(event) = bus.try_recv() {
        offer(&event, &tx, &mut lost, &subscriptions, &rpc);
    }
    if lost > 0 {
        let _ = tx.try_send(lagged(lost));
    }
}

fn lagged(dropped: u64) -> Vec<u8> {
    wire::encode_notification("events.lagged", &json!({ "dropped": dropped }))
}

fn offer(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cret", b"s3cre"));
        assert!(!tokens_match(b"s3cret", b"s3cret!"));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"s3cret", b""));
        // Repeating the token is not the token.
        assert!(!tokens_match(b"ab", b"abab"));
    }

    #[test]
    fn auth_params_are_checked() {
        let params = |token: &str| Msgpack::Map(vec![("token".into(), token.into())]);
        assert!(check_token("t", params("t")).is_ok());
        assert_eq!(
            check_token("t", params("u")).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert!(check_token("", params("anything")).is_ok());
        assert_eq!(
            check_token("t", Msgpack::Nil).unwrap_err().code,
            ErrorCode::InvalidParams
        );
    }
}
