//! Running the server: start it with its control socket, log its events, wait for a
//! signal, shut down within the configured time.

use crate::cluster::Cluster;
use crate::ops::MetricsServer;
use crate::rpc::{ListenAddr, MethodTable, RpcServer};
use crate::settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::{Server, ServerHandle};
use switchboard_core::event::Event;
use switchboard_core::middleware::{MiddlewareFactory, MiddlewareRegistry};
use switchboard_core::transport::{TransportPlugin, TransportRegistry};
use switchboard_transports::Builtin;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// How long dropping the runtime may wait for stray blocking tasks. Everything that matters
/// has finished (or timed out) by then; this only keeps a stuck task from holding the exit.
const RUNTIME_DROP_GRACE: Duration = Duration::from_millis(200);

/// How long control connections get, after the server has shut down, to receive what is
/// still queued for them (the closure events of the shutdown among it).
const RPC_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A running server: the actor tree with the built-in plugins, and its control socket.
pub struct App {
    /// The actor server.
    pub server: ServerHandle,
    /// The built-in transport plugins; Rust code reaches `direct` endpoints through it.
    pub transports: Builtin,
    /// The control socket.
    pub rpc: RpcServer,
    /// The Prometheus endpoint, unless `metrics.listen` is empty.
    pub metrics: Option<MetricsServer>,
    /// Membership in a cluster, when `[cluster]` names a Redis.
    pub cluster: Option<Cluster>,
}

/// What an embedder registers next to the built-in transports and middleware.
#[derive(Clone, Default)]
pub struct Plugins {
    /// Transport plugins; their kinds must differ from the built-ins' (`direct`, `pipe`,
    /// `webrtc`, `rtp`).
    pub transports: Vec<Arc<dyn TransportPlugin>>,
    /// Middleware; their names must differ from the built-ins'.
    pub middleware: Vec<Arc<dyn MiddlewareFactory>>,
}

impl App {
    /// Validates the configuration, starts the actor server with the built-in plugins and
    /// middleware, then the control socket. Must run inside a Tokio runtime, which then
    /// carries the control socket.
    ///
    /// Validation runs here as well as when loading, so that an embedder cannot open an
    /// unauthenticated control socket on a public address by skipping it.
    pub async fn start(config: Arc<Settings>) -> Result<Self, RunError> {
        Self::start_with(config, MethodTable::builtin()).await
    }

    /// Like [`App::start`], with the control socket answering the methods of `methods`
    /// (usually [`MethodTable::builtin`] with the embedder's own added).
    pub async fn start_with(config: Arc<Settings>, methods: MethodTable) -> Result<Self, RunError> {
        Self::start_with_middleware(config, methods, Vec::new()).await
    }

    /// Like [`App::start_with`], with the embedder's own middleware registered after the
    /// built-ins (names must differ from theirs), attachable by name like them.
    pub async fn start_with_middleware(
        config: Arc<Settings>,
        methods: MethodTable,
        middleware: Vec<Arc<dyn MiddlewareFactory>>,
    ) -> Result<Self, RunError> {
        let plugins = Plugins {
            middleware,
            ..Plugins::default()
        };
        Self::start_with_plugins(config, methods, plugins).await
    }

    /// Like [`App::start_with`], with the embedder's own transport plugins and middleware
    /// registered after the built-ins (kinds and names must differ from theirs). A plugin's
    /// `[transports.<kind>]` table reaches it as the default options of each transport.
    pub async fn start_with_plugins(
        config: Arc<Settings>,
        methods: MethodTable,
        plugins: Plugins,
    ) -> Result<Self, RunError> {
        if let Err(problems) = config.validate() {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(RunError::Start(format!(
                "invalid configuration: {}",
                problems.join("; ")
            )));
        }
        let mut registry = TransportRegistry::default();
        let transports = switchboard_transports::register_builtin(&mut registry)
            .map_err(|e| RunError::Start(format!("cannot register the transport plugins: {e}")))?;
        switchboard_transports::register_webrtc(&mut registry, &config.webrtc)
            .map_err(|e| RunError::Start(format!("cannot register the webrtc plugin: {e}")))?;
        switchboard_transports::register_rtp(&mut registry, &config.rtp)
            .map_err(|e| RunError::Start(format!("cannot register the rtp plugin: {e}")))?;
        for plugin in plugins.transports {
            let kind = plugin.kind();
            registry
                .register(plugin)
                .map_err(|e| RunError::Start(format!("cannot register the {kind} plugin: {e}")))?;
        }
        let mut middleware = MiddlewareRegistry::default();
        switchboard_middleware::register_builtin(&mut middleware)
            .map_err(|e| RunError::Start(format!("cannot register the middleware: {e}")))?;
        for factory in plugins.middleware {
            middleware
                .register(factory)
                .map_err(|e| RunError::Start(format!("cannot register the middleware: {e}")))?;
        }

        let server = Server::start(Arc::new(config.config()), registry, middleware)
            .map_err(|e| RunError::Start(e.to_string()))?;
        // Listeners open only once the server can answer what arrives on them.
        let rpc = match RpcServer::start_with(server.clone(), &config.rpc, methods).await {
            Ok(rpc) => rpc,
            Err(e) => {
                let _ = server.shutdown().await;
                return Err(RunError::Start(format!("control socket: {}", e.message)));
            }
        };
        // Started before /metrics so that its first scrape sees the membership; joining never
        // waits for Redis.
        let cluster = if config.cluster.enabled() {
            match Cluster::start(
                &config.cluster,
                server.clone(),
                rpc.tcp_addr(),
                &config.rpc.token,
                rpc.draining(),
            ) {
                Ok(c) => {
                    rpc.set_cluster(c.clone());
                    c.set_requests(rpc.requests(server.clone()));
                    Some(c)
                }
                Err(e) => {
                    rpc.shutdown(RPC_CLOSE_GRACE).await;
                    let _ = server.shutdown().await;
                    return Err(RunError::Start(format!("cluster: {}", e.message)));
                }
            }
        } else {
            None
        };
        let metrics = if config.metrics.listen.is_empty() {
            None
        } else {
            match MetricsServer::start(&config.metrics, server.clone(), Some(&rpc)).await {
                Ok(metrics) => Some(metrics),
                Err(e) => {
                    if let Some(c) = &cluster {
                        c.shutdown().await;
                    }
                    rpc.shutdown(RPC_CLOSE_GRACE).await;
                    let _ = server.shutdown().await;
                    return Err(RunError::Start(format!("metrics: {}", e.message)));
                }
            }
        };
        Ok(Self {
            server,
            transports,
            rpc,
            metrics,
            cluster,
        })
    }

    /// Where `/metrics` is served (the port resolved when the configuration said 0), unless
    /// disabled.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// Where the control socket listens (ports resolved when the configuration said 0).
    pub fn rpc_addrs(&self) -> &[ListenAddr] {
        self.rpc.local_addrs()
    }

    /// The control socket's TCP address, when it listens on TCP.
    pub fn rpc_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.rpc.tcp_addr()
    }

    /// Stops accepting control connections, shuts the server down (connected backends
    /// receive its closure events), then closes the control connections.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), RunError> {
        self.rpc.stop_accepting();
        // Leave the cluster first, so that no node is sent here while the rooms close.
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        let outcome = match tokio::time::timeout(timeout, self.server.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RunError::Shutdown(e.to_string())),
            Err(_) => Err(RunError::Shutdown(format!(
                "did not finish within {} ms",
                timeout.as_millis()
            ))),
        };
        self.rpc.shutdown(RPC_CLOSE_GRACE).await;
        if let Some(metrics) = &self.metrics {
            metrics.shutdown().await;
        }
        outcome
    }
}

/// The control socket's addresses for a log line: comma-separated, or `disabled`.
fn describe_rpc(addrs: &[ListenAddr]) -> String {
    if addrs.is_empty() {
        return "disabled".to_owned();
    }
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why the server did not stop cleanly.
#[derive(Debug)]
pub enum RunError {
    /// The runtime, a signal handler or the server could not be set up.
    Start(String),
    /// Shutdown failed, took longer than `server.shutdown_timeout_ms`, or was cut short by a
    /// second signal.
    Shutdown(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Start(message) => write!(f, "failed to start: {message}"),
            RunError::Shutdown(message) => write!(f, "unclean shutdown: {message}"),
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully.
///
/// The actor server runs on its own threads; this runtime waits for signals, logs events and
/// carries the control socket and `/metrics`.
pub fn run(config: Settings) -> Result<(), RunError> {
    run_with(config, Vec::new())
}

/// Like [`run`], with the embedder's own middleware registered next to the built-ins.
pub fn run_with(
    config: Settings,
    middleware: Vec<Arc<dyn MiddlewareFactory>>,
) -> Result<(), RunError> {
    let plugins = Plugins {
        middleware,
        ..Plugins::default()
    };
    run_with_plugins(config, plugins)
}

/// Like [`run`], with the embedder's own transport plugins and middleware registered next to
/// the built-ins.
pub fn run_with_plugins(config: Settings, plugins: Plugins) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchboard-main")
        .build()
        .map_err(|e| RunError::Start(format!("cannot build the tokio runtime: {e}")))?;
    let result = runtime.block_on(serve(Arc::new(config), plugins));
    runtime.shutdown_timeout(RUNTIME_DROP_GRACE);
    result
}

async fn serve(config: Arc<Settings>, plugins: Plugins) -> Result<(), RunError> {
    // Installed before the server starts: until then the default action of both signals is
    // to kill the process, which would skip the graceful shutdown.
    let mut signals = Signals::new()?;

    let app = App::start_with_plugins(Arc::clone(&config), MethodTable::builtin(), plugins).await?;
    let server = &app.server;
    let (drain_tx, drain_rx) = oneshot::channel();
    let events = tokio::spawn(drain_events(server.subscribe(), drain_rx, log_event));

    info!(
        version = env!("CARGO_PKG_VERSION"),
        workers = config.server.worker_count(),
        transports = ?server.transport_kinds(),
        middleware = ?server.middleware_names(),
        rpc = %describe_rpc(app.rpc_addrs()),
        metrics = %app
            .metrics_addr()
            .map_or_else(|| "disabled".to_owned(), |a| format!("http://{a}/metrics")),
        "switchboard ready"
    );

    let mut first = signals.next().await;
    if first == "SIGTERM" && config.cluster.drain_on_sigterm {
        first = drain(&app, &config, &mut signals).await;
    }
    let timeout = Duration::from_millis(config.server.shutdown_timeout_ms);
    info!(
        signal = first,
        timeout_ms = config.server.shutdown_timeout_ms,
        "shutting down"
    );
    app.rpc.stop_accepting();
    if let Some(cluster) = &app.cluster {
        cluster.shutdown().await;
    }
    let outcome = shut_down(server, timeout, &mut signals).await;
    app.rpc.shutdown(RPC_CLOSE_GRACE).await;
    // Scrapes may go on until the end, so the last state of a shutdown can be seen.
    if let Some(metrics) = &app.metrics {
        metrics.shutdown().await;
    }

    // Shutdown has returned, so the closure events it caused are queued; log them all before
    // saying goodbye. A closed drain channel means the task already ended.
    let _ = drain_tx.send(());
    if let Err(e) = events.await {
        warn!(error = %e, "event logger failed");
    }

    if outcome.is_ok() {
        info!("shutdown complete");
    }
    outcome
}

/// SIGTERM with `cluster.drain_on_sigterm`: the node takes no new rooms (and says so to the
/// cluster and on `/ready`) until its rooms have closed, `cluster.drain_timeout_ms` has
/// passed, or another signal comes; returns what ended it, for the shutdown log line.
async fn drain(app: &App, config: &Settings, signals: &mut Signals) -> &'static str {
    app.rpc
        .draining()
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(cluster) = &app.cluster {
        cluster.hand_over_peers();
    }
    let rooms = app.server.routers().len();
    info!(
        rooms,
        timeout_ms = config.cluster.drain_timeout_ms,
        "draining: no new rooms; shutting down when the rooms have closed"
    );
    let deadline = tokio::time::sleep(Duration::from_millis(config.cluster.drain_timeout_ms));
    tokio::pin!(deadline);
    let mut rooms_closed = std::pin::pin!(async {
        // Rooms close through the backend's requests, which no event here announces as
        // "the last one": look every 200 ms.
        while !app.server.routers().is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio::select! {
        _ = &mut rooms_closed => "drained",
        _ = &mut deadline => {
            warn!(rooms = app.server.routers().len(), "drain deadline passed");
            "drain deadline"
        }
        signal = signals.next() => signal,
    }
}

async fn shut_down(
    server: &ServerHandle,
    timeout: Duration,
    signals: &mut Signals,
) -> Result<(), RunError> {
    tokio::select! {
        result = tokio::time::timeout(timeout, server.shutdown()) => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RunError::Shutdown(e.to_string())),
            Err(_) => Err(RunError::Shutdown(format!(
                "did not finish within server.shutdown_timeout_ms ({} ms)",
                timeout.as_millis()
            ))),
        },
        // An operator who signals again wants out now, not after the timeout.
        second = signals.next() => Err(RunError::Shutdown(format!(
            "{second} received during shutdown, exiting without waiting"
        ))),
    }
}

/// Passes every server event to `on_event` until the server closes the channel or `drain`
/// fires; then passes what is already queued and stops.
async fn drain_events(
    mut events: mpsc::Receiver<Event>,
    mut drain: oneshot::Receiver<()>,
    mut on_event: impl FnMut(&Event),
) {
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => on_event(&event),
                None => return,
            },
            _ = &mut drain => break,
        }
    }
    while let Ok(event) = events.try_recv() {
        on_event(&event);
    }
}

fn log_event(event: &Event) {
    // JSON keeps each event on one line and machine-readable in both log formats.
    match serde_json::to_string(event) {
        Ok(json) => info!(target: "switchboard::event", event = %json, "server event"),
        Err(_) => info!(target: "switchboard::event", event = ?event, "server event"),
    }
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Self, RunError> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind)
                .map_err(|e| RunError::Start(format!("cannot install the {name} handler: {e}")))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::id::WorkerId;

    fn started(worker: u32) -> Event {
        Event::WorkerStarted {
            worker: WorkerId(worker),
        }
    }

    #[tokio::test]
    async fn events_queued_before_the_drain_are_all_passed_on() {
        let (tx, rx) = mpsc::channel(8);
        let (drain_tx, drain_rx) = oneshot::channel();
        for worker in 0..3 {
            tx.send(started(worker)).await.unwrap();
        }
        drain_tx.send(()).unwrap();
        let mut seen = Vec::new();
        // The sender stays open, as the server's does: only the drain can end the loop.
        drain_events(rx, drain_rx, |e| seen.push(e.clone())).await;
        assert_eq!(seen, [started(0), started(1), started(2)]);
        drop(tx);
    }

    #[tokio::test]
    async fn a_closed_channel_ends_the_loop() {
        let (tx, rx) = mpsc::channel(8);
        let (_drain_tx, drain_rx) = oneshot::channel();
        tx.send(started(7)).await.unwrap();
        drop(tx);
        let mut seen = Vec::new();
        drain_events(rx, drain_rx, |e| seen.push(e.clone())).await;
        assert_eq!(seen, [started(7)]);
    }
}
