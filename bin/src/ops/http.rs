//! The HTTP listener for `/metrics`, `/health` and `/ready`.
//!
//! It runs on the control runtime (the one carrying the control socket), so serving a scrape
//! never takes a media thread; the workers only answer one message each per scrape. It
//! speaks HTTP/1.1 through hyper, answers `GET` and `HEAD` on `/metrics`, `/health`
//! (liveness) and `/ready` (readiness: with a cluster, registered in it), and bounds what a
//! client can hold: the time to send request headers and the number of open connections.

use super::metrics::Snapshot;
use crate::rpc::RpcServer;
use crate::settings::MetricsConfig;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::ServerHandle;
use switchboard_core::{Error, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Connections served at once; more are closed on arrival. A handful of Prometheus servers
/// and an operator's curl need far fewer.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client gets to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads.
struct Sources {
    server: ServerHandle,
    rpc: Option<Arc<crate::rpc::RpcShared>>,
    per_room: bool,
}

impl Sources {
    async fn scrape(&self) -> String {
        let rpc = self.rpc.as_ref().map(|r| (r.stats(), r.metrics.render()));
        let mut snapshot = Snapshot::gather(&self.server, rpc, self.per_room).await;
        if let Some(c) = self.rpc.as_ref().and_then(|r| r.cluster.get()) {
            snapshot.cluster = Some(c.stats());
            snapshot.cluster_pipes = c.pipe_traffic().await;
            snapshot.cluster_view = c.view();
        }
        snapshot.render()
    }
}

/// A running `/metrics` listener.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl MetricsServer {
    /// Binds `config.listen` (`IP:PORT`) and serves the server's metrics, with those of the
    /// control socket when there is one.
    pub async fn start(
        config: &MetricsConfig,
        server: ServerHandle,
        rpc: Option<&RpcServer>,
    ) -> Result<Self, Error> {
        let listen = &config.listen;
        let addr: SocketAddr = listen.parse().map_err(|e| {
            Error::new(
                ErrorCode::InvalidConfig,
                format!("metrics.listen: {listen:?} is not a socket address: {e}"),
            )
        })?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorCode::TransportFailed,
                format!("cannot listen on {addr}: {e}"),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| {
            Error::new(ErrorCode::TransportFailed, format!("no local address: {e}"))
        })?;
        let per_room = config.per_room_labels;
        let sources = Arc::new(Sources {
            server,
            rpc: rpc.map(RpcServer::shared),
            per_room,
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept(listener, sources, stop.clone(), tracker.clone()));
        info!(%addr, "metrics listening");
        Ok(Self {
            addr,
            stop,
            tracker,
        })
    }

    /// The bound address (a port of 0 resolved to the one the OS chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes open connections, waiting for them to finish.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    sources: Arc<Sources>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, typically; back off instead of spinning.
                warn!(error = %e, "metrics accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics connection refused: too many open");
            continue;
        };
        let sources = sources.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(respond(&sources, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "metrics connection ended with an error");
                    }
                }
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            drop(permit);
        });
    }
}

async fn respond(sources: &Sources, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let method = req.method();
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics, liveness at /health, readiness at /ready\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        // Liveness: the process answers. It never depends on Redis, so that a cluster's
        // store going away does not get every node restarted.
        "/health" => return text(StatusCode::OK, "ok\n"),
        // Readiness: a clustered node takes new work only while it is registered.
        "/ready" => {
            let draining = sources
                .rpc
                .as_ref()
                .is_some_and(|r| r.draining.load(std::sync::atomic::Ordering::Relaxed));
            if draining {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: draining (server.drain)\n",
                );
            }
            let cluster = sources.rpc.as_ref().and_then(|r| r.cluster.get());
            return match cluster {
                Some(c) if !c.ready() => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: not registered in the cluster (redis unreachable)\n",
                ),
                _ => text(StatusCode::OK, "ready\n"),
            };
        }
        _ => {}
    }
    let body = sources.scrape().await;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
