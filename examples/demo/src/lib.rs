//! # switchboard-demo
//!
//! An example of what a customer's backend does in front of Switchboard: it owns the users
//! and the rooms, talks to the media server over its control socket, and relays session
//! descriptions between the media server and browsers. Switchboard needs no client SDK, so
//! the browser side is one static page with plain `RTCPeerConnection`s.
//!
//! [`serve`] starts it: an HTTP listener serving the page at `/` and a WebSocket at `/ws`.
//! Every WebSocket is one peer, with a random id, in one shared room that the backend creates
//! (with automatic subscription) when the first peer arrives. The WebSocket speaks JSON:
//!
//! | from the page | to the media server | back to the page |
//! | --- | --- | --- |
//! | (connecting) | `peer.join` | `{"type": "joined", "peer", "room"}` |
//! | `{"type": "publish", "sdp"}` | `webrtc.publish` | `{"type": "answer", "sdp"}` |
//! | `{"type": "subscribe"}` | `webrtc.subscribe` | `{"type": "offer", "sdp"}` |
//! | `{"type": "answer", "sdp"}` | `webrtc.answer` | nothing, unless it fails |
//! | (closing) | `peer.leave` | |
//!
//! A `renegotiation_needed` event for the peer becomes `{"type": "offer", "sdp"}`, and every
//! failure becomes `{"type": "error", "code", "message"}` (the media server's error code, or
//! `invalid_message`, `server_unavailable`, `timeout`, `protocol_error`).

#![warn(missing_docs)]

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use switchboard_client::{Client, ClientError, Notification};
use switchboard_core::event::Event;
use switchboard_core::{ErrorCode, RouterId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// The page, embedded so that the binary is all a newcomer needs.
const PAGE: &str = include_str!("page.html");

/// Largest WebSocket message accepted from a page.
const MAX_MESSAGE: usize = 256 * 1024;

/// How long [`Demo::shutdown`] gives open sessions to leave the room.
const LEAVE_GRACE: Duration = Duration::from_secs(5);

/// Why the demo could not start or stop cleanly.
#[derive(Debug)]
pub enum DemoError {
    /// The HTTP listener could not be bound.
    Listen(String),
    /// The media server's control socket could not be reached or refused the token.
    Rpc(String),
    /// The HTTP server failed, or sessions did not end in time at shutdown.
    Serve(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Listen(message) => write!(f, "cannot listen: {message}"),
            DemoError::Rpc(message) => write!(f, "media server: {message}"),
            DemoError::Serve(message) => write!(f, "demo server: {message}"),
        }
    }
}

impl std::error::Error for DemoError {}

/// A running demo backend.
pub struct Demo {
    addr: SocketAddr,
    backend: Arc<Backend>,
    stop: watch::Sender<bool>,
    sessions: TaskTracker,
    /// The HTTP server's task, until something has awaited its end.
    server: Option<JoinHandle<std::io::Result<()>>>,
}

fn served(outcome: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), DemoError> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DemoError::Serve(e.to_string())),
        Err(e) => Err(DemoError::Serve(format!(
            "the HTTP server task failed: {e}"
        ))),
    }
}

/// Starts the demo backend: binds `listen` (port 0 picks a free port; see
/// [`Demo::local_addr`]), checks that the media server's control socket at `rpc` answers
/// (authenticating with `token` when given), and serves until [`Demo::shutdown`].
///
/// Must run inside a Tokio runtime, which then carries the HTTP server and the sessions.
pub async fn serve(listen: &str, rpc: &str, token: Option<&str>) -> Result<Demo, DemoError> {
    let backend = Arc::new(Backend {
        rpc: rpc.to_owned(),
        token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        link: tokio::sync::Mutex::new(None),
    });
    // Fails at start-up, with the reason, rather than on the first page load.
    let probe = backend
        .connect()
        .await
        .map_err(|e| DemoError::Rpc(e.to_string()))?;
    probe
        .server_info()
        .await
        .map_err(|e| DemoError::Rpc(e.to_string()))?;
    drop(probe);

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DemoError::Listen(format!("{listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Listen(format!("{listen}: {e}")))?;
    let (stop, stopped) = watch::channel(false);
    let sessions = TaskTracker::new();
    let app = Router::new()
        .route("/", get(page))
        .route("/ws", get(websocket))
        .with_state(AppState {
            backend: Arc::clone(&backend),
            stop: stopped.clone(),
            sessions: sessions.clone(),
        });
    let mut shutdown = stopped;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // An error means the sender is gone, which also means stop.
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    info!(%addr, rpc, "demo backend listening");
    Ok(Demo {
        addr,
        backend,
        stop,
        sessions,
        server: Some(server),
    })
}

impl Demo {
    /// The address the page is served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The media server's id of the shared room, once the first peer has created it.
    pub async fn room(&self) -> Option<RouterId> {
        let link = self.backend.link.lock().await;
        link.as_ref().filter(|l| l.is_open()).map(|l| l.room)
    }

    /// Stops accepting connections, lets every open session leave the room, closes the
    /// room on the media server, and returns once the HTTP server has stopped.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        let _ = self.stop.send(true);
        let served = match self.server {
            Some(server) => served(server.await),
            None => Ok(()),
        };
        self.sessions.close();
        let left = tokio::time::timeout(LEAVE_GRACE, self.sessions.wait()).await;
        let link = self.backend.link.lock().await.take();
        if let Some(link) = link
            && let Err(e) = link.client.close_router(link.room).await
        {
            warn!(room = %link.room, error = %e, "could not close the demo room");
        }
        served?;
        left.map_err(|_| {
            DemoError::Serve(format!(
                "sessions still open {} s after the shutdown",
                LEAVE_GRACE.as_secs()
            ))
        })
    }

    /// Runs until the HTTP server stops by itself (it only does on an error); for the binary,
    /// which otherwise waits for a signal and calls [`Demo::shutdown`].
    /// Cancel-safe: dropping the future leaves the demo running.
    pub async fn stopped(&mut self) -> Result<(), DemoError> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let outcome = served(server.await);
        self.server = None;
        outcome
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<Backend>,
    stop: watch::Receiver<bool>,
    sessions: TaskTracker,
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn websocket(upgrade: WebSocketUpgrade, State(state): State<AppState>) -> impl IntoResponse {
    let AppState {
        backend,
        stop,
        sessions,
    } = state;
    // Session descriptions are a few kilobytes; the bound keeps a misbehaving client from
    // making the backend buffer megabytes.
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| sessions.track_future(session(socket, backend, stop)))
}

/// A message from the page.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Incoming {
    Publish { sdp: String },
    Subscribe,
    Answer { sdp: String },
}

impl Incoming {
    fn name(&self) -> &'static str {
        match self {
            Incoming::Publish { .. } => "publish",
            Incoming::Subscribe => "subscribe",
            Incoming::Answer { .. } => "answer",
        }
    }
}

/// A message to the page.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outgoing {
    Joined { peer: String, room: RouterId },
    Answer { sdp: String },
    Offer { sdp: String },
    Error { code: String, message: String },
}

impl Outgoing {
    fn error(code: &str, message: impl Into<String>) -> Self {
        Outgoing::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<ClientError> for Outgoing {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            // The message alone: the code travels beside it.
            ClientError::Rpc(rpc) => return Outgoing::error(rpc.code.as_str(), &*rpc.message),
            ClientError::Connect(_) | ClientError::Closed(_) => "server_unavailable",
            ClientError::Timeout => ErrorCode::Timeout.as_str(),
            ClientError::Protocol(_) => "protocol_error",
        };
        Outgoing::error(code, e.to_string())
    }
}

/// Where a room's events for one peer go: that peer's session.
type Inbox = mpsc::UnboundedSender<Outgoing>;

/// The peers of one link, and whether the link still delivers their events.
#[derive(Default)]
struct Peers {
    open: bool,
    inboxes: HashMap<String, Inbox>,
}

fn lock(peers: &Mutex<Peers>) -> MutexGuard<'_, Peers> {
    peers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One control connection and the room created through it. It is replaced when the
/// connection drops or the room closes; sessions on the old one are told and end.
struct Link {
    client: Client,
    room: RouterId,
    peers: Arc<Mutex<Peers>>,
}

impl Link {
    fn is_open(&self) -> bool {
        lock(&self.peers).open
    }

    fn close(&self) {
        close_peers(&self.peers);
    }
}

/// Makes a link refuse new peers and end its sessions (their inboxes close).
fn close_peers(peers: &Mutex<Peers>) {
    let mut peers = lock(peers);
    peers.open = false;
    peers.inboxes.clear();
}

struct Backend {
    rpc: String,
    token: Option<String>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
}

impl Backend {
    async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(&self.rpc, self.token.as_deref()).await
    }

    /// The current link, or a new one: a fresh control connection, the shared room created
    /// with automatic subscription, and the room's events subscribed to before any peer
    /// joins, so that no offer for a peer can be missed.
    async fn link(&self) -> Result<Arc<Link>, ClientError> {
        let mut current = self.link.lock().await;
        if let Some(link) = current.as_ref().filter(|l| l.is_open()) {
            return Ok(Arc::clone(link));
        }
        let client = self.connect().await?;
        let notifications = client
            .notifications()
            .ok_or_else(|| ClientError::Protocol("notifications already taken".to_owned()))?;
        let created = client
            .call_value("router.create", json!({ "auto_subscribe": true }))
            .await?;
        let room: RouterId = serde_json::from_value(created["id"].clone()).map_err(|e| {
            ClientError::Protocol(format!("router.create returned no room id: {e}"))
        })?;
        client.subscribe(Some(room)).await?;
        let peers = Arc::new(Mutex::new(Peers {
            open: true,
            inboxes: HashMap::new(),
        }));
        tokio::spawn(dispatch(room, notifications, Arc::clone(&peers)));
        info!(%room, "created the demo room");
        let link = Arc::new(Link {
            client,
            room,
            peers,
        });
        *current = Some(Arc::clone(&link));
        Ok(link)
    }

    /// Joins `peer` to the room, its events going to `inbox`. A room that closed since the
    /// link was made is replaced once.
    async fn join(&self, peer: &str, inbox: &Inbox) -> Result<Arc<Link>, ClientError> {
        let mut last_try = false;
        loop {
            let link = self.link().await?;
            let registered = {
                let mut peers = lock(&link.peers);
                if peers.open {
                    peers.inboxes.insert(peer.to_owned(), inbox.clone());
                }
                peers.open
            };
            let outcome = if registered {
                link.client.join_peer(link.room, peer).await
            } else {
                Err(ClientError::Closed(None))
            };
            let e = match outcome {
                Ok(()) => return Ok(link),
                Err(e) => e,
            };
            lock(&link.peers).inboxes.remove(peer);
            let stale = matches!(e.code(), Some(ErrorCode::NotFound))
                || matches!(e, ClientError::Closed(_));
            if !stale || last_try {
                return Err(e);
            }
            link.close();
            last_try = true;
        }
    }

    async fn leave(&self, link: &Link, peer: &str) {
        let was_open = {
            let mut peers = lock(&link.peers);
            peers.inboxes.remove(peer);
            peers.open
        };
        // A closed room took its peers with it.
        if !was_open {
            return;
        }
        match link.client.leave_peer(link.room, peer).await {
            Ok(()) => debug!(peer, "peer left"),
            Err(e) => warn!(peer, error = %e, "peer.leave failed"),
        }
    }
}

/// Routes a link's notifications to its peers' sessions, until the connection drops or the
/// room closes; then closes the link, which ends those sessions.
async fn dispatch(
    room: RouterId,
    mut notifications: mpsc::Receiver<Notification>,
    peers: Arc<Mutex<Peers>>,
) {
    while let Some(notification) = notifications.recv().await {
        match notification {
            Notification::Event(Event::RenegotiationNeeded {
                router,
                peer: Some(peer),
                sdp,
                ..
            }) if router == room => {
                debug!(peer = %peer, "renegotiation_needed");
                if let Some(inbox) = lock(&peers).inboxes.get(&peer.0) {
                    // A send fails only when the session is ending; its offer no longer
                    // matters then.
                    let _ = inbox.send(Outgoing::Offer { sdp });
                }
            }
            Notification::Event(Event::RouterClosed { router, .. }) if router == room => {
                warn!(%room, "the demo room was closed on the media server");
                break;
            }
            Notification::Lagged { dropped } => {
                // A lost offer leaves that peer's receive connection behind until the next
                // change in the room; the server only drops events for a backend that does
                // not keep up, which this one does unless the machine is overloaded.
                warn!(dropped, "the media server dropped events for this backend");
            }
            Notification::Error(e) => warn!(error = %e, "error from the media server"),
            _ => {}
        }
    }
    close_peers(&peers);
}

fn new_peer_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("peer-{}", &id[..12])
}

async fn send(socket: &mut WebSocket, message: &Outgoing) -> bool {
    let text = match serde_json::to_string(message) {
        Ok(text) => text,
        Err(e) => {
            warn!(error = %e, "cannot encode a message for the page");
            return true;
        }
    };
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// One page: one peer, from the WebSocket's opening to its closing (or the demo's shutdown).
async fn session(mut socket: WebSocket, backend: Arc<Backend>, mut stop: watch::Receiver<bool>) {
    let peer = new_peer_id();
    // Unbounded because the server keeps at most one offer in flight per receive
    // connection: events for a peer never pile up faster than its page answers them.
    let (inbox, mut events) = mpsc::unbounded_channel();
    let link = match backend.join(&peer, &inbox).await {
        Ok(link) => link,
        Err(e) => {
            warn!(peer, error = %e, "cannot join the demo room");
            send(&mut socket, &Outgoing::from(e)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    // Only the link's copy remains, so closing the link closes the inbox.
    drop(inbox);
    info!(peer, room = %link.room, "peer joined");
    let joined = Outgoing::Joined {
        peer: peer.clone(),
        room: link.room,
    };
    if send(&mut socket, &joined).await {
        run_session(&mut socket, &link, &peer, &mut events, &mut stop).await;
    }
    backend.leave(&link, &peer).await;
    info!(peer, "peer left");
}

/// What woke a session up.
enum Wake {
    Page(Option<Result<Message, axum::Error>>),
    Event(Option<Outgoing>),
    Stop,
}

async fn run_session(
    socket: &mut WebSocket,
    link: &Link,
    peer: &str,
    events: &mut mpsc::UnboundedReceiver<Outgoing>,
    stop: &mut watch::Receiver<bool>,
) {
    loop {
        // Messages from the page are carried out one at a time, in order; events wait in
        // the inbox meanwhile.
        let wake = tokio::select! {
            incoming = socket.recv() => Wake::Page(incoming),
            event = events.recv() => Wake::Event(event),
            _ = stop.wait_for(|stop| *stop) => Wake::Stop,
        };
        let reply = match wake {
            Wake::Page(Some(Ok(Message::Text(text)))) => handle(link, peer, text.as_str()).await,
            Wake::Page(Some(Ok(Message::Binary(_)))) => {
                Some(Outgoing::error("invalid_message", "messages are JSON text"))
            }
            Wake::Page(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => None,
            Wake::Page(Some(Ok(Message::Close(_)) | Err(_)) | None) => return,
            Wake::Event(Some(message)) => Some(message),
            Wake::Event(None) => {
                let message = "the connection to the media server or the room closed";
                send(socket, &Outgoing::error("server_unavailable", message)).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            Wake::Stop => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        if let Some(reply) = reply
            && !send(socket, &reply).await
        {
            return;
        }
    }
}

/// Carries out one message from the page; returns what to send back, if anything.
async fn handle(link: &Link, peer: &str, text: &str) -> Option<Outgoing> {
    let request: Incoming = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(e) => return Some(Outgoing::error("invalid_message", e.to_string())),
    };
    let room = link.room;
    debug!(peer, request = request.name(), "from the page");
    let outcome = match request {
        Incoming::Publish { sdp } => link
            .client
            .publish(room, peer, &sdp)
            .await
            .map(|published| Some(Outgoing::Answer { sdp: published.sdp })),
        Incoming::Subscribe => link
            .client
            .subscribe_peer(room, peer)
            .await
            .map(|offer| Some(Outgoing::Offer { sdp: offer.sdp })),
        Incoming::Answer { sdp } => link.client.answer(room, peer, &sdp).await.map(|()| None),
    };
    outcome.unwrap_or_else(|e| {
        debug!(peer, error = %e, "request from the page failed");
        Some(Outgoing::from(e))
    })
}
