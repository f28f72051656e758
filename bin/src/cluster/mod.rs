//! Membership in a cluster of nodes that share a Redis (`[cluster]`; docs/cluster.md).
//!
//! Each node keeps, in Redis, an entry about itself that expires unless renewed (the
//! heartbeat), and a directory of the rooms and producers it owns. Any node can then list the
//! cluster and say which node owns an object. Nothing on the media path or in a request for a
//! local object waits for Redis: the directory is written from the server's event stream by
//! one task, and when Redis is unreachable that task only counts and retries, then rewrites
//! the node's whole share of the directory once it is back (a restarted Redis has lost it).
//!
//! A node that stops renewing its entry is gone after `cluster.node_ttl_ms`; the first live
//! node to notice removes its directory entries.

mod directory;
mod handover;
mod keys;
mod pipe;
mod span;
mod tasks;
mod traffic;

pub use pipe::{Ends, Requests};

use tasks::{receive_events, run, watch_events};
pub use traffic::PipeTraffic;

pub use switchboard_client::protocol::{ClusterNode, Located, NodeState};

use crate::settings::ClusterConfig;
use keys::Keys;
use redis::aio::MultiplexedConnection;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_actors::ServerHandle;
use switchboard_core::event::Event;
use switchboard_core::{Error, ErrorCode, ProducerId, RouterId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Counters of the cluster task, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Whether Redis answered the last command.
    pub redis_up: bool,
    /// Whether this node's entry is written (Redis reachable and the heartbeat current).
    pub registered: bool,
    /// Live nodes seen at the last heartbeat, this one included.
    pub nodes: u64,
    /// Redis commands or connections that failed.
    pub redis_errors: u64,
    /// Directory entries written or removed.
    pub directory_operations: u64,
    /// Nodes whose entry expired and whose directory entries this node removed.
    pub nodes_lost: u64,
    /// Requests this node forwarded to the node that owns their object.
    pub forwarded_requests: u64,
    /// Room events this node published for the others.
    pub events_published: u64,
    /// Room events of other nodes this node received.
    pub events_received: u64,
    /// Whether this node is subscribed to the other nodes' events.
    pub receiving_events: bool,
    /// Rooms whose router here is a copy (the room's first router is on another node).
    pub room_copies: u64,
    /// Other nodes' tracks piped into this node's routers of rooms spanning nodes.
    pub tracks_in: u64,
    /// Pipes from this node feeding a track to another node's router of its room.
    pub tracks_out: u64,
}

/// This node's membership: started by [`crate::App`] when `[cluster]` names a Redis.
/// Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    node: String,
    rpc: String,
    keys: Keys,
    client: redis::Client,
    server: ServerHandle,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// The directory keys of what this node owns, from its own events: the directory's
    /// truth for this node.
    owned: Mutex<HashSet<String>>,
    started_ms: u64,
    redis_up: AtomicBool,
    registered: AtomicBool,
    nodes: AtomicU64,
    redis_errors: AtomicU64,
    directory_operations: AtomicU64,
    nodes_lost: AtomicU64,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The token to present to other nodes' control sockets (the cluster shares `rpc.token`).
    token: String,
    /// Open connections to other nodes, by node id, for forwarded requests.
    peers: tokio::sync::Mutex<HashMap<String, Arc<switchboard_client::Client>>>,
    forwarded: AtomicU64,
    /// Owners of objects created through requests this node forwarded, so that the next
    /// request about one goes straight there even before the owner's directory entry is
    /// written. A stale entry costs only a forward that the owner answers with `not_found`.
    recent: Mutex<HashMap<String, Located>>,
    /// Other nodes' room events, for this node's control connections.
    remote: tokio::sync::broadcast::Sender<Event>,
    events_published: AtomicU64,
    events_received: AtomicU64,
    /// Whether the pub/sub subscription to the other nodes' events is up.
    receiving: AtomicBool,
    /// This node's ends of pipes (`cluster.pipe`): transport → the node at the other end.
    pipes: Mutex<HashMap<switchboard_core::TransportId, String>>,
    /// What the pipe ends carried, for `/metrics`.
    traffic: Mutex<traffic::Ledger>,
    /// The nodes live at the last heartbeat, to notice one vanishing.
    live: Mutex<HashSet<String>>,
    /// Their entries as the last heartbeat read them, for `/metrics`.
    view: Mutex<Vec<ClusterNode>>,
    /// Until when a node missing from Redis is not taken for lost: after this node
    /// (re)connects, the others need up to a TTL to register again in a Redis that restarted
    /// empty.
    grace_until: Mutex<std::time::Instant>,
    /// Set by `server.drain`: the entry says `draining` and no room is placed here.
    draining: Arc<AtomicBool>,
    /// Rooms spanning nodes: this node's copies and the tracks piped into them.
    spans: span::Spans,
    /// Peers this node handed over while draining.
    moves: handover::Moves,
}

/// Loads (percent of a worker's threshold) within one band of this many points count as
/// equal when placing a room.
pub const LOAD_BAND: u64 = 10;

/// Entries [`Inner::recent`] holds before it starts over.
const RECENT_OWNERS: usize = 65_536;

/// What the cluster task writes to Redis, in the order the events happened.
enum Change {
    /// An object's directory key, added or removed.
    Directory { key: String, add: bool },
    /// One of this node's room events, for the other nodes' backends (JSON).
    Publish(String),
}

/// An event as it travels between nodes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Published {
    /// The node that raised it.
    node: String,
    event: Event,
}

/// Remote events kept for connections that are slow to take them; beyond this, a slow
/// connection is told it lagged (`events.lagged`).
const REMOTE_EVENTS: usize = 4096;

/// The kinds of object the directory records, as `cluster.locate` and the request
/// forwarding name them (the name of the parameter that carries the object's id).
pub const OBJECT_KINDS: [&str; 4] = ["consumer", "producer", "transport", "router"];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Locks one of the cluster's maps, poisoned or not, as the rest of this module does.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::ClusterUnavailable, format!("cluster: {what}"))
}

impl Cluster {
    /// Joins the cluster of `config.redis_url`: starts the heartbeat and the directory writer
    /// on the current Tokio runtime. `rpc` is where this node's control socket listens
    /// (advertised unless `cluster.advertise_rpc` says otherwise). Never waits for Redis: an
    /// unreachable one is retried every heartbeat.
    pub fn start(
        config: &ClusterConfig,
        server: ServerHandle,
        rpc: Option<std::net::SocketAddr>,
        token: &str,
        draining: Arc<AtomicBool>,
    ) -> Result<Self, Error> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("cluster.redis_url: {e}")))?;
        let node = if config.node_id.is_empty() {
            format!("node-{}", uuid_like())
        } else {
            config.node_id.clone()
        };
        let rpc = if config.advertise_rpc.is_empty() {
            rpc.map(|a| a.to_string()).unwrap_or_default()
        } else {
            config.advertise_rpc.clone()
        };
        let keys = Keys::new(&config.key_prefix);
        let inner = Arc::new(Inner {
            config: config.clone(),
            node,
            rpc,
            client,
            server: server.clone(),
            conn: tokio::sync::Mutex::new(None),
            owned: Mutex::new(
                server
                    .routers()
                    .into_iter()
                    .map(|(r, _)| keys.object("router", &r.to_string()))
                    .collect(),
            ),
            keys,
            started_ms: now_ms(),
            redis_up: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            nodes: AtomicU64::new(0),
            redis_errors: AtomicU64::new(0),
            directory_operations: AtomicU64::new(0),
            nodes_lost: AtomicU64::new(0),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            token: token.to_owned(),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            forwarded: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            remote: tokio::sync::broadcast::channel(REMOTE_EVENTS).0,
            events_published: AtomicU64::new(0),
            events_received: AtomicU64::new(0),
            receiving: AtomicBool::new(false),
            pipes: Mutex::new(HashMap::new()),
            traffic: Mutex::default(),
            live: Mutex::new(HashSet::new()),
            view: Mutex::default(),
            grace_until: Mutex::new(std::time::Instant::now()),
            draining,
            spans: span::Spans::default(),
            moves: handover::Moves::default(),
        });
        let cluster = Self { inner };
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        cluster.inner.tasks.spawn(watch_events(
            cluster.clone(),
            server.subscribe(),
            changes_tx,
        ));
        cluster.inner.tasks.spawn(run(cluster.clone(), changes_rx));
        cluster.inner.tasks.spawn(receive_events(cluster.clone()));
        info!(node = %cluster.inner.node, rpc = %cluster.inner.rpc, "joining the cluster");
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// The counters, for `/metrics`.
    pub fn stats(&self) -> ClusterStats {
        let i = &self.inner;
        ClusterStats {
            redis_up: i.redis_up.load(Ordering::Relaxed),
            registered: i.registered.load(Ordering::Relaxed),
            nodes: i.nodes.load(Ordering::Relaxed),
            redis_errors: i.redis_errors.load(Ordering::Relaxed),
            directory_operations: i.directory_operations.load(Ordering::Relaxed),
            nodes_lost: i.nodes_lost.load(Ordering::Relaxed),
            forwarded_requests: i.forwarded.load(Ordering::Relaxed),
            events_published: i.events_published.load(Ordering::Relaxed),
            events_received: i.events_received.load(Ordering::Relaxed),
            receiving_events: i.receiving.load(Ordering::Relaxed),
            ..self.span_stats()
        }
    }

    /// The live nodes' entries as the last successful heartbeat read them (this node's
    /// included), for `/metrics`: no scrape waits for Redis.
    pub fn view(&self) -> Vec<ClusterNode> {
        self.inner
            .view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What this node's pipe ends carried, by the node at the other end (each open end read
    /// now), for `/metrics`.
    pub async fn pipe_traffic(&self) -> std::collections::BTreeMap<String, PipeTraffic> {
        let pipes: Vec<(switchboard_core::TransportId, String)> = self
            .inner
            .pipes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, n)| (*t, n.clone()))
            .collect();
        for (t, node) in &pipes {
            self.read_pipe(*t, node).await;
        }
        let open = pipes.iter().map(|(t, _)| *t).collect();
        let mut ledger = self.inner.traffic.lock().unwrap_or_else(|p| p.into_inner());
        ledger.retire_all_but(&open);
        ledger.by_node()
    }

    /// Reads one pipe end's counters into the ledger.
    async fn read_pipe(&self, transport: switchboard_core::TransportId, node: &str) {
        let Ok(stats) = self.inner.server.transport_stats(transport).await else {
            return;
        };
        if let Some(traffic) = PipeTraffic::from_stats(&stats) {
            self.inner
                .traffic
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(transport, node, traffic);
        }
    }

    /// Other nodes' room events, as they arrive (the control socket's event pumps offer them
    /// to their connections' subscriptions like local ones).
    pub fn remote_events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.remote.subscribe()
    }

    /// Whether the node is ready for new work as a member: Redis reachable and its entry
    /// written. (Liveness does not depend on this.)
    pub fn ready(&self) -> bool {
        self.inner.registered.load(Ordering::Relaxed)
    }

    /// The live nodes, as their entries say, ordered by id. `cluster_unavailable` when Redis
    /// cannot be reached.
    pub async fn nodes(&self) -> Result<Vec<ClusterNode>, Error> {
        let k = &self.inner.keys;
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(k.nodes())).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<Option<String>> = self
            .query(redis::cmd("MGET").arg(ids.iter().map(|id| k.node(id)).collect::<Vec<_>>()))
            .await?;
        let mut nodes: Vec<ClusterNode> = entries
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        nodes.sort_by(|a: &ClusterNode, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Which node owns a router or a producer: `not_found` when the directory has no entry,
    /// `cluster_unavailable` when Redis cannot be reached.
    pub async fn locate(
        &self,
        router: Option<RouterId>,
        producer: Option<ProducerId>,
    ) -> Result<Located, Error> {
        match (router, producer) {
            (Some(r), None) => self.locate_object("router", &r.to_string()).await,
            (None, Some(p)) => self.locate_object("producer", &p.to_string()).await,
            _ => Err(Error::invalid(
                "give exactly one of `router` and `producer`",
            )),
        }
    }

    /// Which node owns the object of `kind` (one of [`OBJECT_KINDS`]) with this id.
    pub async fn locate_object(&self, kind: &str, id: &str) -> Result<Located, Error> {
        let k = &self.inner.keys;
        let node: Option<String> = self
            .query(redis::cmd("GET").arg(k.object(kind, id)))
            .await?;
        let Some(node) = node else {
            return Err(Error::not_found(kind, id));
        };
        let entry: Option<String> = self.query(redis::cmd("GET").arg(k.node(&node))).await?;
        let rpc = entry
            .and_then(|json| serde_json::from_str::<ClusterNode>(&json).ok())
            .map(|r| r.rpc);
        Ok(Located { node, rpc })
    }

    /// The node another node's request should go to, when it is not this one: the node named
    /// by a `node` parameter, else the owner of the first object the parameters name
    /// (`consumer`, `producer`, `transport`, then `router`) that this node does not hold.
    /// `None` runs the request here (an object no node holds then gets its `not_found`);
    /// `cluster_unavailable` when the directory cannot be read.
    pub async fn owner_elsewhere(
        &self,
        params: &serde_json::Value,
    ) -> Result<Option<Located>, Error> {
        if let Some(node) = params.get("node").and_then(serde_json::Value::as_str) {
            if node == self.inner.node {
                return Ok(None);
            }
            return Ok(Some(self.located(node).await?));
        }
        // A peer's requests go where it joined (a room spanning nodes has it on one).
        if let Some(placed) = self.peer_elsewhere(params).await? {
            return Ok(placed);
        }
        // A consumer is made on its transport's node (from the copy there of a producer of
        // another node, in a room spanning nodes).
        let by_transport = params.get("transport").is_some();
        for kind in OBJECT_KINDS
            .into_iter()
            .filter(|k| !(by_transport && *k == "producer"))
        {
            let Some(id) = params.get(kind).and_then(serde_json::Value::as_str) else {
                continue;
            };
            if self.inner.server.holds(kind, id) {
                return Ok(None);
            }
            let recent = self
                .inner
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
                .cloned();
            if recent.is_some() {
                return Ok(recent);
            }
            return match self.locate_object(kind, id).await {
                Ok(located) if located.node != self.inner.node => Ok(Some(located)),
                Ok(_) => Ok(None),
                Err(e) if e.code == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(e),
            };
        }
        Ok(None)
    }

    /// Where a new room should go: the serving node with the lowest load (in bands of
    /// [`LOAD_BAND`] points, so that an idle worker's noise decides nothing), then the fewest
    /// rooms, as their last heartbeats said; this node on a tie. `None` for this node, and
    /// also when Redis cannot be read (a room made here beats no room).
    pub async fn place_room(&self) -> Option<Located> {
        let nodes = self.nodes().await.ok()?;
        let me = &self.inner.node;
        let draining = self.inner.draining.load(Ordering::Relaxed);
        let best = nodes
            .iter()
            .filter(|n| n.state == NodeState::Serving && !(draining && &n.id == me))
            .min_by_key(|n| (n.load_percent / LOAD_BAND, n.rooms, &n.id != me))?;
        (&best.id != me).then(|| Located {
            node: best.id.clone(),
            rpc: Some(best.rpc.clone()),
        })
    }

    /// Whether `router.create` places rooms across the cluster (`cluster.place_rooms`, and
    /// always while this node drains).
    pub fn places_rooms(&self) -> bool {
        self.inner.config.place_rooms || self.inner.draining.load(Ordering::Relaxed)
    }

    /// Sends a request to the node at `to` (`cluster.forward`, which that node runs without
    /// forwarding again) and returns its answer unchanged: the result, or the error it
    /// answered. `cluster_unavailable` when the node cannot be reached.
    pub async fn forward(
        &self,
        to: &Located,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, switchboard_client::protocol::RpcError> {
        use switchboard_client::ClientError;
        let client = self.peer(to).await?;
        self.inner.forwarded.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({ "method": method, "params": params });
        match client.call_value("cluster.forward", request).await {
            Ok(v) => {
                self.remember(&v, to);
                Ok(v)
            }
            Err(ClientError::Rpc(e)) => Err(e),
            Err(e) => {
                // The connection is of no more use; the next request reconnects.
                self.inner.peers.lock().await.remove(&to.node);
                Err(unavailable(format!("node {} did not answer: {e}", to.node)).into())
            }
        }
    }

    /// Notes the owner of every object id in a forwarded request's result.
    fn remember(&self, result: &serde_json::Value, owner: &Located) {
        fn ids<'a>(v: &'a serde_json::Value, depth: usize, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(map) if depth < 3 => {
                    for (k, v) in map {
                        match v.as_str() {
                            Some(id) if k == "id" || OBJECT_KINDS.contains(&k.as_str()) => {
                                out.push(id)
                            }
                            _ => ids(v, depth + 1, out),
                        }
                    }
                }
                serde_json::Value::Array(items) if depth < 3 => {
                    for v in items {
                        ids(v, depth + 1, out);
                    }
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        ids(result, 0, &mut found);
        if found.is_empty() {
            return;
        }
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() + found.len() > RECENT_OWNERS {
            recent.clear();
        }
        for id in found {
            recent.insert(id.to_owned(), owner.clone());
        }
    }

    async fn peer(
        &self,
        to: &Located,
    ) -> Result<Arc<switchboard_client::Client>, switchboard_client::protocol::RpcError> {
        let mut peers = self.inner.peers.lock().await;
        if let Some(c) = peers.get(&to.node).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let Some(rpc) = to.rpc.as_deref().filter(|r| !r.is_empty()) else {
            return Err(
                unavailable(format!("node {} has no control-socket address", to.node)).into(),
            );
        };
        let token = Some(self.inner.token.as_str()).filter(|t| !t.is_empty());
        let timeout = Duration::from_millis(self.inner.config.redis_timeout_ms.max(1_000));
        let client = tokio::time::timeout(timeout, switchboard_client::Client::connect(rpc, token))
            .await
            .map_err(|_| unavailable(format!("connecting to node {} timed out", to.node)))?
            .map_err(|e| unavailable(format!("cannot reach node {} at {rpc}: {e}", to.node)))?;
        let client = Arc::new(client);
        peers.insert(to.node.clone(), client.clone());
        Ok(client)
    }

    /// Leaves the cluster: stops the tasks, then removes this node's entry and directory
    /// entries (best effort: if Redis is unreachable, they expire or are swept by the others).
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let node = self.inner.node.clone();
        if self.sweep_node(&node).await.is_ok() {
            info!(node = %node, "left the cluster");
        }
        self.inner.registered.store(false, Ordering::Relaxed);
    }
}

/// A random id for a node that was given none.
fn uuid_like() -> String {
    let n = RouterId::new().to_string();
    n.split('-').next().unwrap_or(&n).to_owned()
}
