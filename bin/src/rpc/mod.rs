//! The MessagePack-RPC control socket: how the backend drives the server.
//!
//! Framing is the msgpack-rpc specification's: a request `[0, msgid, method, params]`, a
//! response `[1, msgid, error, result]`, a notification `[2, method, params]`, back to back on
//! a TCP or Unix stream. `docs/rpc.md` is the protocol reference; this module is its
//! implementation:
//!
//! - [`wire`]: frame boundaries, message shapes, encoding (synchronous, no I/O);
//! - [`dispatch`]: the [`MethodTable`] mapping method names to typed handlers, and the
//!   context ([`Ctx`]) a handler gets;
//! - [`methods`]: the built-in methods and their parameter types;
//! - `connection`: one connection's reader, writer and event pump;
//! - this file: listening, limits, shutdown, counters.
//!
//! Adding a method is one entry in [`methods::register`] and one `async fn`.

mod auth;
mod connection;
pub mod dispatch;
pub mod methods;

pub use connection::{EVENT_QUEUE, MAX_IN_FLIGHT};
pub use dispatch::{Ctx, MethodTable};
/// The protocol's types and framing live in the client crate, which the server shares.
pub use switchboard_client::protocol::{RpcError, RpcStats, Subscriptions};
pub use switchboard_client::wire;

use crate::settings::{MIN_RPC_TOKEN_BYTES, RpcConfig};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_actors::ServerHandle;
use switchboard_core::{Error, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// How long an accept loop waits after a failed `accept` (out of file descriptors, say)
/// before trying again, so a persistent error does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where the control socket listens (or where a client connects).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    /// TCP addresses print bare (`127.0.0.1:7700`) and Unix sockets as `unix:PATH`, which is
    /// the form `switchboard ctl --rpc` and the client accept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_rejected: AtomicU64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) request_errors: AtomicU64,
    pub(crate) request_timeouts: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) events_sent: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) preauth_evicted: AtomicU64,
    pub(crate) auth_timeouts: AtomicU64,
    pub(crate) read_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) protocol_error_closes: AtomicU64,
    pub(crate) http_refused: AtomicU64,
    pub(crate) refusals_unexplained: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self, connections_preauth: u64) -> RpcStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RpcStats {
            connections_preauth,
            preauth_evicted: get(&self.preauth_evicted),
            auth_timeouts: get(&self.auth_timeouts),
            read_timeouts: get(&self.read_timeouts),
            idle_timeouts: get(&self.idle_timeouts),
            protocol_error_closes: get(&self.protocol_error_closes),
            http_refused: get(&self.http_refused),
            refusals_unexplained: get(&self.refusals_unexplained),
            connections_open: get(&self.connections_open),
            connections_accepted: get(&self.connections_accepted),
            connections_rejected: get(&self.connections_rejected),
            auth_failures: get(&self.auth_failures),
            requests: get(&self.requests),
            request_errors: get(&self.request_errors),
            request_timeouts: get(&self.request_timeouts),
            protocol_errors: get(&self.protocol_errors),
            events_sent: get(&self.events_sent),
            events_dropped: get(&self.events_dropped),
        }
    }
}

/// The connections that have not made their first valid request yet, oldest first.
///
/// They are bounded apart from established connections, so that connections that never
/// authenticate cannot take the backend's slots; and when all `rpc.max_preauth_connections`
/// are taken, the oldest is closed for the newest instead of the newest being refused, so
/// that idle connections cannot lock the backend out: a real backend authenticates within
/// milliseconds of connecting, long before it would be the oldest.
pub(crate) struct Preauth {
    max: usize,
    waiting: Mutex<VecDeque<(u64, CancellationToken)>>,
    next: AtomicU64,
}

impl Preauth {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            waiting: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
        // Every critical section leaves the queue consistent.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a new connection, evicting the oldest pending one if none is free.
    fn enter(self: &Arc<Self>, counters: &Counters) -> PendingSlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut waiting = self.lock();
        while waiting.len() >= self.max {
            if let Some((_, oldest)) = waiting.pop_front() {
                oldest.cancel();
                Counters::bump(&counters.preauth_evicted);
            }
        }
        waiting.push_back((id, evicted.clone()));
        PendingSlot {
            id,
            evicted,
            preauth: self.clone(),
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A connection's pre-auth slot; dropping it frees the slot.
pub(crate) struct PendingSlot {
    id: u64,
    evicted: CancellationToken,
    preauth: Arc<Preauth>,
}

impl PendingSlot {
    /// Cancelled when the connection is evicted for a newer one.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut waiting = self.preauth.lock();
        if let Some(at) = waiting.iter().position(|(id, _)| *id == self.id) {
            waiting.remove(at);
        }
    }
}

/// What every connection of one control socket shares.
pub(crate) struct RpcShared {
    pub(crate) config: RpcConfig,
    pub(crate) methods: MethodTable,
    pub(crate) counters: Counters,
    /// Requests by method and result, and their latency, for `/metrics`.
    pub(crate) metrics: crate::ops::RpcMetrics,
    /// Established connections' slots; a connection holds one from its first valid request
    /// to its end.
    pub(crate) connections: Arc<Semaphore>,
    /// Connections that have not made a valid request yet.
    preauth: Arc<Preauth>,
    /// Refused connections being told why (or lingering after a pre-auth close).
    pub(crate) refusals: Arc<Semaphore>,
    /// Stop accepting connections; open ones carry on (a child of `stop`).
    accept_stop: CancellationToken,
    /// Stop accepting and stop reading requests.
    pub(crate) stop: CancellationToken,
    /// Give up on flushing: close every connection now.
    pub(crate) abort: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// The node's cluster membership, once started (`cluster.*` methods, `/ready`).
    pub(crate) cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// Set by `server.drain`: no new rooms here, `/ready` answers 503.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
}

impl RpcShared {
    pub(crate) fn new(config: RpcConfig, methods: MethodTable) -> Arc<Self> {
        let stop = CancellationToken::new();
        Arc::new(Self {
            // Clamped: the semaphore panics above its maximum, and no machine holds that many
            // connections anyway.
            connections: Arc::new(Semaphore::new(
                config.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            preauth: Preauth::new(config.max_preauth_connections),
            refusals: Arc::new(Semaphore::new(
                config
                    .max_refusals_in_flight
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            config,
            methods,
            counters: Counters::default(),
            metrics: crate::ops::RpcMetrics::new(),
            accept_stop: stop.child_token(),
            stop,
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
            cluster: std::sync::OnceLock::new(),
            draining: Arc::default(),
        })
    }

    pub(crate) fn stats(&self) -> RpcStats {
        self.counters.snapshot(self.preauth.len() as u64)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }
}

/// A running control socket: its listeners and connections.
///
/// Dropping it stops the listeners and the connections' reading; [`RpcServer::shutdown`]
/// also waits for queued responses and events to be written.
pub struct RpcServer {
    shared: Arc<RpcShared>,
    addrs: Vec<ListenAddr>,
    unix_path: Option<PathBuf>,
}

impl RpcServer {
    /// Binds the configured TCP address and Unix socket (each only when set) and starts
    /// serving the built-in methods.
    ///
    /// Refuses, as configuration validation does, to listen on a non-loopback TCP address
    /// without `rpc.token`: the check is repeated here so that no caller of this library can
    /// open an unauthenticated control socket to the network by skipping validation.
    pub async fn start(server: ServerHandle, config: &RpcConfig) -> Result<Self, Error> {
        Self::start_with(server, config, MethodTable::builtin()).await
    }

    /// Like [`RpcServer::start`], with a method table of the caller's.
    pub async fn start_with(
        server: ServerHandle,
        config: &RpcConfig,
        methods: MethodTable,
    ) -> Result<Self, Error> {
        let invalid = |message: String| Error::new(ErrorCode::InvalidConfig, message);
        if config.max_connections == 0 {
            return Err(invalid("rpc.max_connections must be at least 1".into()));
        }
        if !config.token.is_empty() && config.token.len() < MIN_RPC_TOKEN_BYTES {
            return Err(invalid(format!(
                "rpc.token must be at least {MIN_RPC_TOKEN_BYTES} bytes long"
            )));
        }
        let shared = RpcShared::new(config.clone(), methods);
        let mut addrs = Vec::new();
        let mut unix_path = None;

        if !config.listen.is_empty() {
            let addr: SocketAddr = config.listen.parse().map_err(|e| {
                invalid(format!(
                    "rpc.listen: {:?} is not a socket address: {e}",
                    config.listen
                ))
            })?;
            if config.token.is_empty() && !addr.ip().to_canonical().is_loopback() {
                return Err(invalid(format!(
                    "rpc.token must be set to listen on {addr}, which is not a loopback address"
                )));
            }
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                Error::new(
                    ErrorCode::TransportFailed,
                    format!("cannot listen on {addr}: {e}"),
                )
            })?;
            let bound = listener.local_addr().map_err(|e| {
                Error::new(ErrorCode::TransportFailed, format!("no local address: {e}"))
            })?;
            addrs.push(ListenAddr::Tcp(bound));
            shared
                .tracker
                .spawn(accept_tcp(listener, shared.clone(), server.clone()));
        }

        if !config.unix_socket.is_empty() {
            let path = PathBuf::from(&config.unix_socket);
            let listener = bind_unix(&path).await?;
            addrs.push(ListenAddr::Unix(path.clone()));
            unix_path = Some(path);
            shared
                .tracker
                .spawn(accept_unix(listener, shared.clone(), server.clone()));
        }

        Ok(Self {
            shared,
            addrs,
            unix_path,
        })
    }

    /// Gives the methods (and `/ready`) the node's cluster membership. Set once; later calls
    /// are ignored.
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.shared.cluster.set(cluster);
    }

    /// How the cluster runs the requests it builds pipes and spanning rooms from: as this
    /// socket runs a backend's, forwarded to the owners of their objects.
    pub fn requests(&self, server: ServerHandle) -> Arc<dyn crate::cluster::Requests> {
        Arc::new(dispatch::InternalRequests::new(server, self.shared.clone()))
    }

    /// The node's cluster membership, when it has one.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.shared.cluster.get()
    }

    /// The drain flag (`server.drain`): shared with the cluster membership, which reports the
    /// node `draining`, and with `/ready`.
    pub fn draining(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.shared.draining.clone()
    }

    /// The addresses actually bound (a TCP port of 0 resolved to the one the OS chose).
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.addrs
    }

    /// The bound TCP address, if TCP is enabled.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find_map(|a| match a {
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Unix(_) => None,
        })
    }

    /// The control socket's counters.
    pub fn stats(&self) -> RpcStats {
        self.shared.stats()
    }

    /// What the metrics listener reads: the counters and the per-method recorder.
    pub(crate) fn shared(&self) -> Arc<RpcShared> {
        self.shared.clone()
    }

    /// Stops accepting connections; open ones carry on, so backends still receive the
    /// events of a shutdown that follows.
    pub fn stop_accepting(&self) {
        self.shared.accept_stop.cancel();
    }

    /// Stops accepting, stops reading requests, lets in-flight requests finish and queued
    /// responses and events be written for up to `grace`, then closes every connection and
    /// removes the Unix socket file.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.stop.cancel();
        self.shared.tracker.close();
        if tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "control socket connections did not finish in time; closing them"
            );
            self.shared.abort.cancel();
            self.shared.tracker.wait().await;
        }
        self.remove_socket_file();
    }

    fn remove_socket_file(&self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.remove_socket_file();
    }
}

/// Binds a Unix socket, replacing a stale socket file left by a server that did not exit
/// cleanly, but never one that a live server still answers on.
async fn bind_unix(path: &Path) -> Result<UnixListener, Error> {
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorCode::TransportFailed,
            format!("cannot listen on unix:{}: {e}", path.display()),
        )
    };
    match UnixListener::bind(path) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(Error::new(
                    ErrorCode::TransportFailed,
                    format!("another server is listening on unix:{}", path.display()),
                ));
            }
            std::fs::remove_file(path).map_err(failed)?;
            UnixListener::bind(path).map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

async fn accept_tcp(listener: TcpListener, shared: Arc<RpcShared>, server: ServerHandle) {
    loop {
        let accepted = tokio::select! {
            _ = shared.accept_stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Responses are small and latency matters more than packing.
                let _ = stream.set_nodelay(true);
                let (reader, writer) = stream.into_split();
                admit(&shared, &server, reader, writer, peer.to_string());
            }
            Err(e) => {
                if !accept_failed(&shared, &e).await {
                    break;
                }
            }
        }
    }
}

async fn accept_unix(listener: UnixListener, shared: Arc<RpcShared>, server: ServerHandle) {
    loop {
        let accepted = tokio::select! {
            _ = shared.accept_stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let (reader, writer) = stream.into_split();
                admit(&shared, &server, reader, writer, "unix".to_owned());
            }
            Err(e) => {
                if !accept_failed(&shared, &e).await {
                    break;
                }
            }
        }
    }
}

/// Logs a failed accept and backs off; false when the socket is shutting down meanwhile.
async fn accept_failed(shared: &RpcShared, e: &std::io::Error) -> bool {
    warn!(error = %e, "control socket accept failed");
    tokio::select! {
        _ = shared.accept_stop.cancelled() => false,
        _ = tokio::time::sleep(ACCEPT_BACKOFF) => true,
    }
}

/// Takes a new connection in: as a pending connection while established slots remain
/// (evicting the oldest pending one when the pre-auth slots are full), else refused with an
/// explanation, or, when `rpc.max_refusals_in_flight` refusals are already being explained,
/// closed at once. Nothing here spawns a task that is not bounded by a limit.
fn admit<R, W>(shared: &Arc<RpcShared>, server: &ServerHandle, reader: R, writer: W, peer: String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if shared.connections.available_permits() > 0 {
        Counters::bump(&shared.counters.connections_accepted);
        debug!(%peer, "control connection accepted");
        let pending = shared.preauth.enter(&shared.counters);
        shared.tracker.spawn(connection::serve(
            shared.clone(),
            server.clone(),
            reader,
            writer,
            pending,
            peer,
        ));
        return;
    }
    Counters::bump(&shared.counters.connections_rejected);
    info!(
        %peer,
        max = shared.config.max_connections,
        "control connection refused: rpc.max_connections reached"
    );
    match shared.refusals.clone().try_acquire_owned() {
        Ok(permit) => {
            shared.tracker.spawn(connection::refuse(
                shared.clone(),
                reader,
                writer,
                shared.config.max_connections,
                permit,
            ));
        }
        // Dropping the halves closes the socket.
        Err(_) => Counters::bump(&shared.counters.refusals_unexplained),
    }
}
