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

use super::auth::check_token;
use super::dispatch::{ConnectionEvents, Ctx};
use super::wire::{self, FrameScanner, HttpSniff, Incoming, Scan};
use super::{Counters, PendingSlot, RpcError, RpcShared, Subscriptions};
use bytes::BytesMut;
use rmpv::Value as Msgpack;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
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

mod outbound;
mod session;

use outbound::*;
use session::*;

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

    fn finish(&self) {
        self.done.cancel();
        lock(&self.events).take();
    }
}

impl ConnectionEvents for Conn {
    /// Adds a subscription (`None` for everything) and starts the pump on first use.
    fn subscribe(&self, ctx: &Ctx, router: Option<RouterId>) -> Result<Subscriptions, RpcError> {
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
    fn unsubscribe(&self, router: Option<RouterId>) -> Subscriptions {
        let mut subs = lock(&self.subscriptions);
        match router {
            None => *subs = Subscriptions::default(),
            Some(router) => {
                subs.routers.remove(&router);
            }
        }
        subs.clone()
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

#[cfg(test)]
mod tests;
