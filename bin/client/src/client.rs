//! A typed async client for the control socket.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_client::ClientError> {
//! use switchboard_client::Client;
//! use switchboard_core::api::RouterOptions;
//!
//! let client = Client::connect("127.0.0.1:7700", Some("s3cret")).await?;
//! let room = client.create_router(RouterOptions::default()).await?;
//! client.join_peer(room.id, "alice").await?;
//! let mut notifications = client.notifications().expect("taken once");
//! client.subscribe(Some(room.id)).await?;
//! client.close_router(room.id).await?;
//! while let Some(n) = notifications.recv().await {
//!     println!("{n:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Calls may be made concurrently from many tasks through `&Client`; each is matched to its
//! response by msgid. Requests are handed to a writer task whole, so a call abandoned
//! half-way (a dropped future, a timeout) never leaves half a message on the stream.

use crate::protocol::{ClusterLocateParams, ClusterNodes, Located, RpcError, Subscriptions};
use crate::protocol::{
    ConsumerParams, EventsParams, MiddlewareAttachParams, MiddlewareDetachParams, NoParams,
    PeerParams, ProducerParams, RouterList, RouterParams, RouterSummary, ServerInfo, ServerStats,
    TransportConnectParams, TransportCreateParams, TransportParams, TransportRequestParams,
    WebRtcAnswerParams, WebRtcOfferParams, WebRtcPublishResult, WorkerList, WorkerSummary,
};
use crate::wire::{self, FrameScanner, Scan};
use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use switchboard_core::api::{
    ConsumeOptions, ConsumerInfo, ProduceOptions, ProducerInfo, RouterInfo, RouterOptions,
    SubscribeResult, TransportInfo, TransportRequestResult,
};
use switchboard_core::event::{Connection, Event};
use switchboard_core::rtp_parameters::RtpCapabilities;
use switchboard_core::{ConsumerId, ErrorCode, ProducerId, RouterId, TransportId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Default time a call waits for its response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

mod methods;

/// Largest message the client accepts from the server. Dumps of big rooms are the largest
/// results; this is far above them and still bounds memory against a broken server.
const MAX_FRAME: usize = 64 << 20;

/// Notifications kept for an application that does not read them, before new ones are
/// dropped (and counted in [`Client::notifications_dropped`]).
const NOTIFICATION_QUEUE: usize = 8192;

/// Requests queued for the writer task.
const REQUEST_QUEUE: usize = 1024;

/// Where the server listens: `IP:PORT`, `HOST:PORT`, `tcp://HOST:PORT`, `unix:PATH`, or a
/// path (anything containing a `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address, resolved when connecting.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl FromStr for Endpoint {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if s.contains('/') && !s.starts_with("tcp://") {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let addr = s.strip_prefix("tcp://").unwrap_or(s);
        if addr.is_empty() {
            return Err(ClientError::Connect("empty address".to_owned()));
        }
        Ok(Endpoint::Tcp(addr.to_owned()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => f.write_str(addr),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The server could not be reached.
    Connect(String),
    /// The server answered with an error.
    Rpc(RpcError),
    /// No answer within the client's timeout. The server may still carry the call out.
    Timeout,
    /// The connection closed; with the server's last `error` notification, if it sent one.
    Closed(Option<RpcError>),
    /// The server sent something this client cannot read, or a result of another shape.
    Protocol(String),
}

impl ClientError {
    /// The server's error code, for [`ClientError::Rpc`] and for a close the server
    /// explained.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Rpc(e) | ClientError::Closed(Some(e)) => Some(e.code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(message) => write!(f, "cannot connect: {message}"),
            ClientError::Rpc(e) => write!(f, "{e}"),
            ClientError::Timeout => f.write_str("no answer in time"),
            ClientError::Closed(None) => f.write_str("connection closed"),
            ClientError::Closed(Some(e)) => write!(f, "connection closed by the server: {e}"),
            ClientError::Protocol(message) => write!(f, "protocol error: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A notification from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// An event the connection subscribed to.
    Event(Event),
    /// The server dropped this many events because this connection fell behind.
    Lagged {
        /// How many.
        dropped: u64,
    },
    /// A problem no request owns (a malformed message, a refused connection).
    Error(RpcError),
    /// A notification this client does not know, as sent.
    Other {
        /// Its method name.
        method: String,
        /// Its parameters.
        params: Value,
    },
}

type Reply = oneshot::Sender<Result<Value, ClientError>>;

#[derive(Default)]
struct State {
    pending: HashMap<u32, Reply>,
    /// Set once the connection is gone: why (the server's last error, if any).
    closed: Option<Option<RpcError>>,
    last_error: Option<RpcError>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection to the control socket.
pub struct Client {
    requests: mpsc::Sender<Vec<u8>>,
    state: Arc<Mutex<State>>,
    next_id: AtomicU32,
    notifications: Mutex<Option<mpsc::Receiver<Notification>>>,
    dropped: Arc<AtomicU64>,
    timeout: Duration,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client {
    /// Connects and, when `token` is given and not empty, authenticates.
    pub async fn connect(endpoint: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let endpoint: Endpoint = endpoint.parse()?;
        let client = match &endpoint {
            Endpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| ClientError::Connect(format!("{endpoint}: {e}")))?;
                let _ = stream.set_nodelay(true);
                let (reader, writer) = stream.into_split();
                Self::from_io(reader, writer)
            }
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| ClientError::Connect(format!("{endpoint}: {e}")))?;
                let (reader, writer) = stream.into_split();
                Self::from_io(reader, writer)
            }
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            client.auth(token).await?;
        }
        Ok(client)
    }

    /// A client over an already-connected stream's halves.
    pub fn from_io<R, W>(reader: R, writer: W) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(Mutex::new(State::default()));
        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (notify_tx, notify_rx) = mpsc::channel(NOTIFICATION_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let read = tokio::spawn(read_loop(reader, state.clone(), notify_tx, dropped.clone()));
        let write = tokio::spawn(write_loop(writer, requests_rx, state.clone()));
        Self {
            requests,
            state,
            next_id: AtomicU32::new(1),
            notifications: Mutex::new(Some(notify_rx)),
            dropped,
            timeout: DEFAULT_TIMEOUT,
            tasks: [read, write],
        }
    }

    /// Whether the connection has closed (every further call fails with
    /// [`ClientError::Closed`]).
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Sets how long each call waits for its response.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's notifications (events, `events.lagged`, errors). The first call takes
    /// the stream; later calls return `None`.
    pub fn notifications(&self) -> Option<mpsc::Receiver<Notification>> {
        self.notifications
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Notifications dropped because the application did not take them in time.
    pub fn notifications_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Calls a method with typed parameters and result.
    pub async fn call<P, R>(&self, method: &str, params: &P) -> Result<R, ClientError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        // Through JSON first: ids must travel as text, and serializers that are not
        // human-readable (MessagePack's) would write UUIDs as 16 raw bytes.
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the parameters: {e}")))?;
        let result = self.call_value(method, params).await?;
        serde_json::from_value(result)
            .map_err(|e| ClientError::Protocol(format!("unexpected result of {method}: {e}")))
    }

    /// Calls a method with parameters and result as JSON values.
    pub async fn call_value(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let msgid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            if let Some(reason) = &state.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            state.pending.insert(msgid, tx);
        }
        let frame = wire::encode_request(msgid, method, &params);
        let outcome = async {
            self.requests
                .send(frame)
                .await
                .map_err(|_| ClientError::Closed(None))?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(ClientError::Closed(None)),
            }
        };
        let result = match tokio::time::timeout(self.timeout, outcome).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout),
        };
        if result.is_err() {
            lock(&self.state).pending.remove(&msgid);
        }
        result
    }

    /// Sends a notification: the server runs the method and sends no answer (an error
    /// comes back as an `error` notification).
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        let frame = wire::encode_notification(method, &params);
        self.requests
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed(None))
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut requests: mpsc::Receiver<Vec<u8>>,
    state: Arc<Mutex<State>>,
) {
    while let Some(frame) = requests.recv().await {
        if writer.write_all(&frame).await.is_err() {
            close(&state, None);
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    state: Arc<Mutex<State>>,
    notifications: mpsc::Sender<Notification>,
    dropped: Arc<AtomicU64>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = FrameScanner::new(MAX_FRAME);
    loop {
        loop {
            match scanner.scan(&buf) {
                Scan::Complete(len) => {
                    let frame = buf.split_to(len);
                    scanner.reset();
                    on_frame(&frame, &state, &notifications, &dropped);
                }
                Scan::Incomplete => break,
                Scan::TooLarge | Scan::Invalid => {
                    close(&state, None);
                    return;
                }
            }
        }
        buf.reserve(64 * 1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                close(&state, None);
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Marks the connection closed and fails every pending call.
fn close(state: &Mutex<State>, reason: Option<RpcError>) {
    let mut state = lock(state);
    let reason = reason.or_else(|| state.last_error.clone());
    state.closed.get_or_insert(reason.clone());
    for (_, reply) in state.pending.drain() {
        let _ = reply.send(Err(ClientError::Closed(reason.clone())));
    }
}

fn on_frame(
    frame: &[u8],
    state: &Mutex<State>,
    notifications: &mpsc::Sender<Notification>,
    dropped: &AtomicU64,
) {
    let Ok(message) = wire::decode_frame(frame).and_then(wire::msgpack_to_json) else {
        return;
    };
    let Value::Array(parts) = message else { return };
    match parts.as_slice() {
        [kind, msgid, error, result] if kind.as_u64() == Some(wire::RESPONSE) => {
            let Some(msgid) = msgid.as_u64().and_then(|id| u32::try_from(id).ok()) else {
                return;
            };
            let Some(reply) = lock(state).pending.remove(&msgid) else {
                return;
            };
            let outcome = if error.is_null() {
                Ok(result.clone())
            } else {
                Err(ClientError::Rpc(rpc_error(error.clone())))
            };
            let _ = reply.send(outcome);
        }
        [kind, method, params] if kind.as_u64() == Some(wire::NOTIFICATION) => {
            let method = method.as_str().unwrap_or_default().to_owned();
            let param = match params {
                Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
                other => other.clone(),
            };
            let notification = match method.as_str() {
                "event" => match serde_json::from_value::<Event>(param.clone()) {
                    Ok(event) => Notification::Event(event),
                    Err(_) => Notification::Other {
                        method,
                        params: param,
                    },
                },
                "events.lagged" => Notification::Lagged {
                    dropped: param["dropped"].as_u64().unwrap_or(0),
                },
                "error" => {
                    let error = rpc_error(param);
                    lock(state).last_error = Some(error.clone());
                    Notification::Error(error)
                }
                _ => Notification::Other {
                    method,
                    params: param,
                },
            };
            if notifications.try_send(notification).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {}
    }
}

/// Reads an error map; a code this client does not know (from a newer server) is kept in
/// the message under `internal`.
fn rpc_error(value: Value) -> RpcError {
    match serde_json::from_value::<RpcError>(value.clone()) {
        Ok(error) => error,
        Err(_) => RpcError::internal(format!("unrecognised error from the server: {value}")),
    }
}

#[cfg(test)]
mod tests;
