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
use super::wire::{self, FrameScanner, HttpSniff, Incoming, Scan};
use super::{Counters, PendingSlot, RpcError, RpcShared, Subscriptions};
use bytes::BytesMut;
use rmpv::Value as Msgpack;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;
use switchboard_actors::ServerHandle;
use switchboard_core::event::Event;
use switchboard_core::{ErrorCode, RouterId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
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

/// A connection's state that handlers reach through [`Ctx`].
pub(crate) struct Conn {
    subscriptions: Arc<Mutex<Subscriptions>>,
    /// The event queue's sending side until the pump starts (or the connection ends).
    events: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Set when the connection stops reading: the pump drains what the bus already holds
    /// and stops.
    done: CancellationToken,
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
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
                ctx.server().clone(),
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
///
/// The connection starts *pending*, holding a pre-auth slot: it must make its first valid
/// request (a successful `auth` when a token is set) within `rpc.auth_timeout_ms`, and may
/// be closed earlier to make room for a newer pending connection. Its first valid request
/// moves it to an `rpc.max_connections` slot.
pub(crate) async fn serve<R, W>(
    rpc: Arc<RpcShared>,
    server: ServerHandle,
    mut reader: R,
    writer: W,
    pending: PendingSlot,
    peer: String,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
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
        token_required: !rpc.config.token.is_empty(),
        pending: Some(pending),
        open: None,
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        protocol_errors: 0,
        peer,
    };
    let ended = session.read_loop(&mut reader).await;
    let established = session.open.is_some();
    conn.finish();
    // The slots go with the session: a closing connection holds none while it flushes.
    drop(session);

    // The writer ends once every handler has handed in its response and the pump has
    // flushed; only then may the socket close.
    let _ = writer.await;
    if let Ended::Refused = ended {
        if established {
            linger(&mut reader, &rpc.stop).await;
        } else if let Ok(_permit) = rpc.refusals.clone().try_acquire_owned() {
            // Lingering costs a task and a socket for up to LINGER; connections that never
            // authenticated get it only while few are lingering.
            linger(&mut reader, &rpc.stop).await;
        }
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

/// Answers a connection over the limit with an error notification and closes it. The
/// caller holds one of the `rpc.max_refusals_in_flight` permits for it.
pub(crate) async fn refuse<R, W>(
    rpc: Arc<RpcShared>,
    mut reader: R,
    mut writer: W,
    max: usize,
    _permit: OwnedSemaphorePermit,
) where
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

/// Keeps an established connection's `rpc.max_connections` slot and its count.
struct OpenGuard {
    rpc: Arc<RpcShared>,
    _permit: OwnedSemaphorePermit,
}

impl OpenGuard {
    fn new(rpc: Arc<RpcShared>, permit: OwnedSemaphorePermit) -> Self {
        rpc.counters
            .connections_open
            .fetch_add(1, Ordering::Relaxed);
        Self {
            rpc,
            _permit: permit,
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.rpc
            .counters
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
    /// Whether `auth` must be the first request.
    token_required: bool,
    /// The pre-auth slot, until the first valid request.
    pending: Option<PendingSlot>,
    /// The `rpc.max_connections` slot, from the first valid request on.
    open: Option<OpenGuard>,
    in_flight: Arc<Semaphore>,
    /// Invalid messages so far; `rpc.max_protocol_errors` of them close the connection.
    protocol_errors: u32,
    peer: String,
}

/// What the reader waits for besides bytes: the deadline that applies now.
#[derive(Clone, Copy)]
enum Deadline {
    /// The first valid request is due (`rpc.auth_timeout_ms`).
    Auth,
    /// A message that has begun must be complete (`rpc.read_timeout_ms`).
    Read,
    /// Something must come (`rpc.idle_timeout_ms`).
    Idle,
}

impl Session {
    fn rpc(&self) -> &RpcShared {
        &self.ctx.rpc
    }

    fn established(&self) -> bool {
        self.open.is_some()
    }

    /// The frame limit now: lower before `auth` when a token is set.
    fn frame_limit(&self) -> usize {
        let config = &self.rpc().config;
        if self.token_required && !self.established() {
            config.max_preauth_frame_bytes.min(config.max_frame_bytes)
        } else {
            config.max_frame_bytes
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Ended {
        let mut scanner = FrameScanner::new(self.frame_limit());
        let mut buf = BytesMut::with_capacity(READ_CHUNK.min(scanner.max_frame_bytes() + 1));
        let config = self.rpc().config.clone();
        let accepted = Instant::now();
        let mut last_read = accepted;
        // When the reader last finished with a message. Reading may pause for a while (a
        // connection with MAX_IN_FLIGHT requests running waits for a slot), and the client
        // must not be blamed for that time.
        let mut last_handled = accepted;
        // When the first bytes of the message now in `buf` arrived.
        let mut message_started: Option<Instant> = None;
        let mut first_frame = true;
        let evicted = self
            .pending
            .as_ref()
            .map(PendingSlot::evicted)
            .unwrap_or_default();
        loop {
            loop {
                if first_frame && !buf.is_empty() {
                    match wire::sniff_http(&buf) {
                        HttpSniff::Http => {
                            self.refuse_http().await;
                            return Ended::Refused;
                        }
                        // Wait for a few more bytes (the auth deadline bounds the wait).
                        HttpSniff::Maybe => break,
                        HttpSniff::No => {}
                    }
                }
                match scanner.scan(&buf) {
                    Scan::Complete(len) => {
                        let frame = buf.split_to(len);
                        scanner.reset();
                        first_frame = false;
                        message_started = None;
                        let was_established = self.established();
                        if let Flow::Close = self.on_frame(&frame).await {
                            return Ended::Refused;
                        }
                        last_handled = Instant::now();
                        if self.established() != was_established {
                            scanner = FrameScanner::new(self.frame_limit());
                        }
                    }
                    Scan::Incomplete => break,
                    Scan::TooLarge => {
                        let max = scanner.max_frame_bytes();
                        let setting = if max < config.max_frame_bytes {
                            "rpc.max_preauth_frame_bytes, before auth"
                        } else {
                            "rpc.max_frame_bytes"
                        };
                        let error = RpcError::new(
                            ErrorCode::FrameTooLarge,
                            format!("message larger than {max} bytes ({setting})"),
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
            let since = last_read.max(last_handled);
            if !buf.is_empty() && message_started.is_none() {
                message_started = Some(since);
            }
            let deadline = if !self.established() {
                Some((accepted + ms(config.auth_timeout_ms), Deadline::Auth))
            } else if let Some(started) = message_started {
                Some((started + ms(config.read_timeout_ms), Deadline::Read))
            } else if config.idle_timeout_ms > 0 {
                Some((since + ms(config.idle_timeout_ms), Deadline::Idle))
            } else {
                None
            };
            let (until, why) = deadline.unwrap_or((accepted, Deadline::Idle));
            buf.reserve(READ_CHUNK.min(scanner.max_frame_bytes() + 1));
            let read = tokio::select! {
                biased;
                _ = self.ctx.rpc.stop.cancelled() => return Ended::Server,
                _ = self.responses.closed() => return Ended::Server,
                _ = evicted.cancelled(), if self.pending.is_some() => {
                    self.evicted().await;
                    return Ended::Refused;
                }
                _ = tokio::time::sleep_until(until), if deadline.is_some() => {
                    self.timed_out(why).await;
                    return Ended::Refused;
                }
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
                Ok(_) => last_read = Instant::now(),
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "control connection read failed");
                    return Ended::Client;
                }
            }
        }
    }

    /// Closes a connection that missed a deadline.
    async fn timed_out(&self, why: Deadline) {
        let config = &self.rpc().config;
        let counters = &self.rpc().counters;
        let message = match why {
            Deadline::Auth => {
                Counters::bump(&counters.auth_timeouts);
                let first = if self.token_required {
                    "auth {token}"
                } else {
                    "a request"
                };
                format!(
                    "no {first} within {} ms of connecting (rpc.auth_timeout_ms)",
                    config.auth_timeout_ms
                )
            }
            Deadline::Read => {
                Counters::bump(&counters.read_timeouts);
                format!(
                    "a message took longer than {} ms to arrive (rpc.read_timeout_ms)",
                    config.read_timeout_ms
                )
            }
            Deadline::Idle => {
                Counters::bump(&counters.idle_timeouts);
                format!(
                    "nothing received for {} ms (rpc.idle_timeout_ms)",
                    config.idle_timeout_ms
                )
            }
        };
        info!(peer = %self.peer, reason = %message, "closing control connection");
        self.send(wire::encode_error_notification(&RpcError::new(
            ErrorCode::Timeout,
            message,
        )))
        .await;
    }

    /// Closes a pending connection to make room for a newer one.
    async fn evicted(&self) {
        let max = self.rpc().config.max_preauth_connections;
        // Counted; at debug level because a flood of connections would flood the log too.
        debug!(peer = %self.peer, max, "closing control connection: pre-auth slots are full");
        self.send(wire::encode_error_notification(&RpcError::new(
            ErrorCode::LimitExceeded,
            format!(
                "closed to make room for a newer connection: {max} connections were waiting \
                 for their first request (rpc.max_preauth_connections)"
            ),
        )))
        .await;
    }

    /// Answers an HTTP request line with an HTTP error, so that whoever sent it (a browser,
    /// a proxy, a server tricked into a request) sees a clear refusal, then closes.
    async fn refuse_http(&self) {
        Counters::bump(&self.rpc().counters.http_refused);
        Counters::bump(&self.rpc().counters.protocol_errors);
        info!(peer = %self.peer, "control connection refused: an HTTP request");
        let body = "This is Switchboard's MessagePack-RPC control socket, not an HTTP server \
                    (docs/rpc.md).\n";
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        self.send(response.into_bytes()).await;
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
        let max_values = self.rpc().config.max_message_values;
        let message = wire::decode_frame_with(frame, max_values).map(wire::parse_message);
        let incoming = match message {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(bad)) => {
                let error = RpcError::new(ErrorCode::InvalidRequest, bad.message);
                return self.reject(bad.msgid, error).await;
            }
            Err(message) => {
                // Too deep or too big to decode, yet a request's msgid may be readable.
                let error = RpcError::new(ErrorCode::InvalidRequest, message);
                return self.reject(wire::peek_msgid(frame), error).await;
            }
        };
        let msgid = match &incoming {
            Incoming::Request { msgid, .. } => Some(*msgid),
            Incoming::Notification { .. } => None,
        };
        match incoming {
            Incoming::Request {
                msgid,
                method,
                params,
            } if method == "auth" => self.authenticate(msgid, params).await,
            _ if self.token_required && !self.established() => {
                self.unauthorized(msgid, "the first request must be auth {token}")
                    .await
            }
            incoming => {
                if !self.established()
                    && let Flow::Close = self.establish(msgid).await
                {
                    return Flow::Close;
                }
                let (msgid, method, params) = match incoming {
                    Incoming::Request {
                        msgid,
                        method,
                        params,
                    } => (Some(msgid), method, params),
                    Incoming::Notification { method, params } => (None, method, params),
                };
                self.spawn_call(msgid, method, params).await;
                Flow::Continue
            }
        }
    }

    /// Moves the connection from its pre-auth slot to an `rpc.max_connections` slot, or
    /// refuses it (answering `msgid`) when they are all taken.
    async fn establish(&mut self, msgid: Option<u32>) -> Flow {
        let rpc = self.ctx.rpc.clone();
        match rpc.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                self.open = Some(OpenGuard::new(rpc, permit));
                self.pending = None;
                Flow::Continue
            }
            Err(_) => {
                Counters::bump(&rpc.counters.connections_rejected);
                let max = rpc.config.max_connections;
                info!(peer = %self.peer, max, "control connection refused: rpc.max_connections reached");
                let error = RpcError::new(
                    ErrorCode::LimitExceeded,
                    format!("connection limit of {max} reached (rpc.max_connections)"),
                );
                let frame = match msgid {
                    Some(msgid) => wire::encode_response(msgid, &Err(error)),
                    None => wire::encode_error_notification(&error),
                };
                self.send(frame).await;
                Flow::Close
            }
        }
    }

    /// Answers a frame that is not a request: a response when it had a msgid, else an
    /// `error` notification. The stream is still in step, so an established connection
    /// goes on, until its `rpc.max_protocol_errors`th invalid message; one that has not made
    /// a valid request yet is closed at once (it is not speaking this protocol: an HTTP
    /// client, say, whose every byte reads as a number).
    async fn reject(&mut self, msgid: Option<u32>, error: RpcError) -> Flow {
        if self.token_required && !self.established() {
            return self
                .unauthorized(msgid, "the first request must be auth {token}")
                .await;
        }
        let counters = &self.ctx.rpc.counters;
        Counters::bump(&counters.protocol_errors);
        self.protocol_errors = self.protocol_errors.saturating_add(1);
        debug!(peer = %self.peer, message = %error.message, "invalid request");
        let frame = match msgid {
            Some(msgid) => wire::encode_response(msgid, &Err(error)),
            None => wire::encode_error_notification(&error),
        };
        self.send(frame).await;
        let max = self.rpc().config.max_protocol_errors;
        let reason = if !self.established() {
            "closing: the first message was not a request".to_owned()
        } else if self.protocol_errors >= max {
            format!("closing after {max} invalid messages (rpc.max_protocol_errors)")
        } else {
            return Flow::Continue;
        };
        Counters::bump(&self.ctx.rpc.counters.protocol_error_closes);
        info!(peer = %self.peer, %reason, "closing control connection");
        let error = RpcError::new(ErrorCode::InvalidRequest, reason)
            .with_data(json!({ "protocol_errors": self.protocol_errors }));
        self.send(wire::encode_error_notification(&error)).await;
        Flow::Close
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
                if !self.established()
                    && let Flow::Close = self.establish(Some(msgid)).await
                {
                    return Flow::Close;
                }
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
///
/// The bus can drop too, if this task falls more than a bus queue behind (it was not
/// scheduled while a burst was emitted). The bus does not say whose events it dropped, so
/// this task watches its own bus queue: drops can only have been its own while that queue
/// was full, and they belong after the events the full queue held. See [`BusGaps`].
async fn pump(
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
struct BusGaps {
    /// The bus's drop counter at the previous receive.
    seen: u64,
    /// Events received from the bus so far.
    received: u64,
    /// Gaps not reached yet: (events received when the gap is reached, events lost).
    ahead: std::collections::VecDeque<(u64, u64)>,
    capacity: usize,
}

impl BusGaps {
    fn new(bus: &mpsc::Receiver<Event>, dropped: u64) -> Self {
        Self {
            seen: dropped,
            received: 0,
            ahead: Default::default(),
            capacity: bus.max_capacity(),
        }
    }

    /// Called right after an event was taken from `bus`.
    fn received(&mut self, bus: &mpsc::Receiver<Event>, dropped: u64) {
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
    fn passed(&mut self, lost: &mut u64, rpc: &RpcShared) {
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
    fn bus_gaps_are_placed_after_what_the_full_queue_held() {
        let rpc = RpcShared::new(
            switchboard_core::config::RpcConfig::default(),
            super::super::MethodTable::builtin(),
        );
        let event = |worker| Event::WorkerStarted {
            worker: switchboard_core::WorkerId(worker),
        };
        let (tx, mut bus) = mpsc::channel(4);
        // Some other subscriber's drop before: not ours.
        let mut gaps = BusGaps::new(&bus, 5);
        for w in 0..4 {
            tx.try_send(event(w)).unwrap();
        }
        // The queue is full; the bus drops 3 of ours (its counter: 5 + 3).
        assert!(tx.try_send(event(9)).is_err());
        let mut lost = 0;
        for expected_lost in [0, 0, 0, 3] {
            bus.try_recv().unwrap();
            gaps.received(&bus, 8);
            gaps.passed(&mut lost, &rpc);
            assert_eq!(lost, expected_lost);
        }
        // After the gap, a queue that never filled drops nothing of ours, whatever the
        // counter says.
        tx.try_send(event(5)).unwrap();
        bus.try_recv().unwrap();
        gaps.received(&bus, 20);
        gaps.passed(&mut lost, &rpc);
        assert_eq!(lost, 3);
        assert_eq!(rpc.stats().events_dropped, 3);
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
