//! Rooms across nodes. A room that outgrows its node gets a router on another node, with the
//! room's id, and every track a peer publishes on one node is piped once into the room's
//! router on each other node (`cluster.pipe`'s SRTP pipe). Peers joined on a node have
//! their connections there; their requests reach that node wherever the backend sends them
//! (the directory's `peer` entries). Each node pulls what it needs: a node holding a router
//! of the room pipes in the other nodes' published tracks when it opens its router and as
//! they appear (their `producer_created` events), and closes its copy when the original
//! closes; so no node coordinates the room, and a lost node takes only its own share.

use super::pipe::{Ends, Requests, on};
use super::*;
use serde_json::Value;
use switchboard_client::protocol::RpcError;
use switchboard_core::api::RouterOptions;
use switchboard_core::event::CloseReason;
use switchboard_core::{PeerId, TransportId};

/// This node's share of the rooms that span nodes.
#[derive(Default)]
pub(super) struct Spans {
    /// Rooms whose router here is a copy: room → the node of the room's first router.
    copies: Mutex<HashMap<RouterId, String>>,
    /// Other nodes' producers piped into this node's router of their room, by original.
    pulled: Mutex<HashMap<ProducerId, Pulled>>,
    /// This node's source ends of pipes feeding other nodes, and the original producer each
    /// carries: how many nodes this node feeds a track to.
    feeding: Mutex<HashMap<TransportId, ProducerId>>,
    /// Serialises opening copies here, so that two peers arriving together open one.
    opening: tokio::sync::Mutex<()>,
    /// How the cluster runs requests (set by the RPC layer at start).
    requests: std::sync::OnceLock<Arc<dyn Requests>>,
}

/// One original producer of another node, piped in.
struct Pulled {
    room: RouterId,
    /// The node that holds the original.
    origin: String,
    /// The node it is piped from: the origin, or a node that has a copy (a tree).
    source: String,
    /// Set once the pipe is built.
    ends: Option<PulledEnds>,
}

#[derive(Clone, Copy)]
struct PulledEnds {
    /// The copy here, which this node's consumers take.
    copy: ProducerId,
    /// The pipe's transport here.
    here: TransportId,
    /// The pipe's transport on the source node.
    there: TransportId,
}

/// Where a new peer of a room should go, from the live nodes' last heartbeats (each node's
/// least loaded worker's load).
/// `room_nodes` hold a router of the room; `primary` holds its first. The room's least
/// loaded node while one is under `above` percent (the first router's on a tie, then this
/// one), else the least loaded serving node outside the room that is under it, else the
/// first router's node: a room never moves to a node as loaded as its own.
pub(super) fn choose_node<'a>(
    view: &'a [ClusterNode],
    room_nodes: &[String],
    primary: &str,
    me: &str,
    above: u64,
) -> Option<&'a ClusterNode> {
    // A node's workers share a room (`placement.span_rooms`), so what counts is its least
    // loaded worker: one hot worker does not send a room's peers to another node.
    let serving = |n: &&ClusterNode| n.state == NodeState::Serving && n.spare_load_percent < above;
    let rank = |n: &&ClusterNode| {
        (
            n.spare_load_percent / LOAD_BAND,
            n.id != primary,
            n.id != me,
        )
    };
    if let Some(n) = view
        .iter()
        .filter(|n| room_nodes.contains(&n.id))
        .filter(serving)
        .min_by_key(rank)
    {
        return Some(n);
    }
    view.iter()
        .filter(|n| !room_nodes.contains(&n.id))
        .filter(serving)
        .min_by_key(|n| (n.spare_load_percent / LOAD_BAND, n.rooms, n.id != me))
}

impl Cluster {
    /// Gives the cluster the RPC layer's way of running requests; needed before rooms can
    /// span nodes or `cluster.pipe` can run.
    pub fn set_requests(&self, requests: Arc<dyn Requests>) {
        let _ = self.inner.spans.requests.set(requests);
    }

    pub(super) fn requests(&self) -> Result<Arc<dyn Requests>, Error> {
        self.inner
            .spans
            .requests
            .get()
            .cloned()
            .ok_or_else(|| Error::internal("the cluster has no request runner yet"))
    }

    /// The span counts of [`ClusterStats`].
    pub(super) fn span_stats(&self) -> ClusterStats {
        let spans = &self.inner.spans;
        ClusterStats {
            room_copies: lock(&spans.copies).len() as u64,
            tracks_in: lock(&spans.pulled)
                .values()
                .filter(|p| p.ends.is_some())
                .count() as u64,
            tracks_out: lock(&spans.feeding).len() as u64,
            ..ClusterStats::default()
        }
    }

    /// Whether this node's router of `room` is a copy (the room's first router is elsewhere).
    pub fn is_copy(&self, room: RouterId) -> bool {
        lock(&self.inner.spans.copies).contains_key(&room)
    }

    /// The original of a copy here of another node's producer.
    pub(super) fn pulled_original(&self, copy: ProducerId) -> Option<ProducerId> {
        lock(&self.inner.spans.pulled)
            .iter()
            .find(|(_, p)| p.ends.is_some_and(|e| e.copy == copy))
            .map(|(original, _)| *original)
    }

    /// The copy here of another node's producer, once it is piped in.
    pub fn local_copy(&self, original: ProducerId) -> Option<ProducerId> {
        lock(&self.inner.spans.pulled)
            .get(&original)
            .and_then(|p| p.ends.map(|e| e.copy))
    }

    /// The live node `node`, with its control socket, from the last heartbeat's view or
    /// Redis; `not_found` for a node that is not live.
    pub(super) async fn node_entry(&self, node: &str) -> Result<ClusterNode, Error> {
        if let Some(n) = lock(&self.inner.view).iter().find(|n| n.id == node) {
            return Ok(n.clone());
        }
        let entry: Option<String> = self
            .query(redis::cmd("GET").arg(self.inner.keys.node(node)))
            .await?;
        entry
            .and_then(|j| serde_json::from_str::<ClusterNode>(&j).ok())
            .ok_or_else(|| Error::not_found("node", node))
    }

    /// [`Cluster::node_entry`] as where to send requests.
    pub(super) async fn located(&self, node: &str) -> Result<Located, Error> {
        let entry = self.node_entry(node).await?;
        Ok(Located {
            node: entry.id,
            rpc: Some(entry.rpc),
        })
    }

    /// Runs a request on `node` itself (the nodes' own methods, or a room's state there).
    pub(super) async fn ask_node(
        &self,
        node: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, Error> {
        let target = self.located(node).await?;
        self.ask(&target, method, params).await
    }

    /// [`Cluster::forward`] for the cluster's own requests, whose failures are its errors.
    pub(super) async fn ask(
        &self,
        to: &Located,
        method: &str,
        params: Value,
    ) -> Result<Value, Error> {
        self.forward(to, method, params)
            .await
            .map_err(|e| Error::new(e.code, e.message))
    }

    /// The live nodes, from the last heartbeat (Redis when there was none yet).
    pub(super) async fn live_view(&self) -> Result<Vec<ClusterNode>, Error> {
        let view = self.view();
        if view.is_empty() {
            self.nodes().await
        } else {
            Ok(view)
        }
    }

    /// The live nodes that hold a router of `room`.
    pub(super) async fn room_nodes(
        &self,
        room: RouterId,
        view: &[ClusterNode],
    ) -> Result<Vec<String>, Error> {
        if view.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = view
            .iter()
            .map(|n| self.inner.keys.span(room, &n.id))
            .collect();
        let held: Vec<Option<String>> = self.query(redis::cmd("MGET").arg(keys)).await?;
        Ok(view
            .iter()
            .zip(held)
            .filter(|(_, h)| h.is_some())
            .map(|(n, _)| n.id.clone())
            .collect())
    }

    /// Where `peer.join` with these parameters should run, when not where ordinary routing
    /// would send it (the room's first node): a node named by `node`, or, with
    /// `cluster.span_rooms`, the room's node with headroom, else a new node for the room.
    /// The room's router there is opened first. `None` routes the request as usual; so does
    /// an unreadable directory (the peer then joins the room's first node).
    pub async fn place_peer(&self, params: &Value) -> Result<Option<Located>, Error> {
        let Some(room) = room_of(params) else {
            return Ok(None);
        };
        let me = self.inner.node.clone();
        // A peer is in a room once, on one node: a second join is refused wherever asked.
        if let Some(peer) = params
            .get("peer")
            .and_then(Value::as_str)
            .and_then(PeerId::parse)
        {
            if self.inner.server.holds_peer(room, &peer) {
                return Ok(None);
            }
            if let Ok(there) = self.locate_object("peer", &peer_key(room, &peer)).await {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("peer {peer} is already in the room, on node {}", there.node),
                ));
            }
        }
        if let Some(node) = params.get("node").and_then(Value::as_str) {
            if node == me {
                self.open_copy(room).await?;
                return Ok(None);
            }
            let target = self.located(node).await?;
            self.open_copy_on(&target.node, room).await?;
            return Ok(Some(target));
        }
        if !self.inner.config.span_rooms {
            return Ok(None);
        }
        let Ok(view) = self.live_view().await else {
            return Ok(None);
        };
        let Ok(room_nodes) = self.room_nodes(room, &view).await else {
            return Ok(None);
        };
        let Ok(primary) = self.locate_object("router", &room.to_string()).await else {
            return Ok(None);
        };
        // A node's own key may not be written yet (the room was made a moment ago).
        let mut room_nodes = room_nodes;
        if !room_nodes.contains(&primary.node) {
            room_nodes.push(primary.node.clone());
        }
        if self.inner.server.holds("router", &room.to_string()) && !room_nodes.contains(&me) {
            room_nodes.push(me.clone());
        }
        let Some(best) = choose_node(
            &view,
            &room_nodes,
            &primary.node,
            &me,
            self.inner.config.span_above_percent,
        ) else {
            return Ok(None);
        };
        if best.id == me {
            if !self.inner.server.holds("router", &room.to_string()) {
                self.open_copy(room).await?;
            }
            return Ok(None);
        }
        let target = Located {
            node: best.id.clone(),
            rpc: Some(best.rpc.clone()),
        };
        if !room_nodes.contains(&best.id) {
            info!(room = %room, node = %best.id, "the room's nodes are loaded: it spans to another node");
            self.open_copy_on(&target.node, room).await?;
        }
        Ok(Some(target))
    }

    /// Where a request about a whole room goes when this node's router of the room is a copy:
    /// the room's first node, so that closing the room or attaching a middleware (a
    /// recorder, a mixer) acts on the room, whose first router has every track. `None`
    /// otherwise, or when the request names its `node`.
    pub async fn room_request_owner(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<Option<Located>, Error> {
        const ROOM_METHODS: [&str; 3] = ["router.close", "middleware.attach", "middleware.detach"];
        if !ROOM_METHODS.contains(&method) || params.get("node").is_some_and(|n| !n.is_null()) {
            return Ok(None);
        }
        let Some(room) = room_of(params) else {
            return Ok(None);
        };
        let Some(first) = lock(&self.inner.spans.copies).get(&room).cloned() else {
            return Ok(None);
        };
        Ok(Some(self.located(&first).await?))
    }

    /// `cluster.span`: opens a router of `room` on `node` (this one by default). The node
    /// that holds it, and whether it was opened now.
    pub async fn span_room(
        &self,
        room: RouterId,
        node: Option<&str>,
    ) -> Result<(String, bool), Error> {
        match node.filter(|n| *n != self.inner.node) {
            None => Ok((self.inner.node.clone(), self.open_copy(room).await?)),
            Some(node) => {
                let answer = self
                    .ask_node(node, "cluster.span", serde_json::json!({ "router": room }))
                    .await?;
                Ok((node.to_owned(), answer["opened"].as_bool().unwrap_or(false)))
            }
        }
    }

    /// Opens the room's router on another node (`cluster.span` there).
    async fn open_copy_on(&self, node: &str, room: RouterId) -> Result<(), Error> {
        self.ask_node(node, "cluster.span", serde_json::json!({ "router": room }))
            .await
            .map(|_| ())
    }

    /// Opens a router of `room` on this node, with the room's id and settings, and pipes in
    /// every track the room's peers publish on its other nodes, before answering (so that a
    /// peer joining here next is offered them). Whether it was opened (false: this node
    /// already has one).
    pub async fn open_copy(&self, room: RouterId) -> Result<bool, Error> {
        // Nothing can be piped in without it: fail before the router is made.
        self.requests()?;
        let _one_at_a_time = self.inner.spans.opening.lock().await;
        let id = room.to_string();
        if self.inner.server.holds("router", &id) {
            return Ok(false);
        }
        if self.inner.draining.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorCode::Closed,
                "this node is draining: it opens no room (server.drain)",
            ));
        }
        let primary = self.locate_object("router", &id).await?;
        if primary.node == self.inner.node {
            return Err(Error::not_found("router", room));
        }
        let dump = self
            .ask_node(
                &primary.node,
                "router.dump",
                serde_json::json!({ "router": room }),
            )
            .await?;
        if dump["single_connection"].as_bool() == Some(true) {
            return Err(Error::invalid(
                "a room whose peers send and receive on one connection cannot span nodes",
            ));
        }
        // The room's codecs as configured: its capabilities less the RTX entries the router
        // adds itself.
        let codecs = dump["rtp_capabilities"]["codecs"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|c| {
                        !c["mime_type"]
                            .as_str()
                            .is_some_and(|m| m.to_ascii_lowercase().ends_with("/rtx"))
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let codecs = serde_json::from_value(Value::Array(codecs))
            .map_err(|e| Error::internal(format!("the room's codecs: {e}")))?;
        lock(&self.inner.spans.copies).insert(room, primary.node.clone());
        let options = RouterOptions {
            id: Some(room),
            codecs: Some(codecs),
            auto_subscribe: dump["auto_subscribe"].as_bool().unwrap_or(true),
            ..RouterOptions::default()
        };
        if let Err(e) = self.inner.server.create_router(options).await {
            lock(&self.inner.spans.copies).remove(&room);
            return Err(e);
        }
        info!(room = %room, first = %primary.node, "opened a router of a room spanning nodes");
        let view = self.live_view().await.unwrap_or_default();
        let mut sources = self.room_nodes(room, &view).await.unwrap_or_default();
        if !sources.contains(&primary.node) {
            sources.push(primary.node.clone());
        }
        for node in sources.into_iter().filter(|n| *n != self.inner.node) {
            if let Err(e) = self.pull_all(room, &node).await {
                warn!(room = %room, node = %node, error = %e, "could not pipe a node's tracks in");
            }
        }
        Ok(true)
    }

    /// Pipes in every track that began on `node`'s router of `room`.
    async fn pull_all(&self, room: RouterId, node: &str) -> Result<(), RpcError> {
        for producer in self.originals_on(node, room, None).await? {
            self.pull(room, node, producer).await;
        }
        Ok(())
    }

    /// The tracks that began on `node`'s router of `room` (on `transport` only, when given):
    /// see [`originals`].
    async fn originals_on(
        &self,
        node: &str,
        room: RouterId,
        transport: Option<TransportId>,
    ) -> Result<Vec<ProducerId>, RpcError> {
        let dump = self
            .requests()?
            .call(
                "router.dump",
                on(Some(node), serde_json::json!({ "router": room })),
            )
            .await?;
        Ok(originals(&dump, transport))
    }

    /// Pipes one original producer of `origin` into this node's router of `room`, once:
    /// from the origin while it feeds fewer than `cluster.fanout` nodes, else from the node
    /// with a copy that feeds the fewest (a tree rather than a star).
    async fn pull(&self, room: RouterId, origin: &str, producer: ProducerId) {
        {
            let mut pulled = lock(&self.inner.spans.pulled);
            if pulled.contains_key(&producer) {
                return;
            }
            pulled.insert(
                producer,
                Pulled {
                    room,
                    origin: origin.to_owned(),
                    source: origin.to_owned(),
                    ends: None,
                },
            );
        }
        let source = self.feeder(room, origin, producer).await;
        if let Some(p) = lock(&self.inner.spans.pulled).get_mut(&producer) {
            p.source = source.clone();
        }
        let ends = Ends {
            source: Some(&source),
            destination: Some(&self.inner.node),
        };
        match self.pipe(producer, room, ends).await {
            Ok(piped) => {
                let built = PulledEnds {
                    copy: piped.producer,
                    here: piped.transport,
                    there: piped.source_transport,
                };
                let kept = match lock(&self.inner.spans.pulled).get_mut(&producer) {
                    Some(p) => {
                        p.ends = Some(built);
                        true
                    }
                    None => false,
                };
                if !kept {
                    // The original closed while the pipe was being built.
                    self.unpipe(source, built).await;
                }
            }
            Err(e) => {
                lock(&self.inner.spans.pulled).remove(&producer);
                warn!(room = %room, producer = %producer, node = %source, error = %e.message, "could not pipe a track in");
            }
        }
    }

    /// The node to pipe `producer` from: its origin, unless the origin already feeds
    /// `cluster.fanout` nodes and another node of the room has a copy and feeds fewer.
    async fn feeder(&self, room: RouterId, origin: &str, producer: ProducerId) -> String {
        let fanout = self.inner.config.fanout;
        if fanout == 0 {
            return origin.to_owned();
        }
        let feeds = |node: String| async move {
            let answer = self
                .ask_node(
                    &node,
                    "cluster.feeds",
                    serde_json::json!({ "producer": producer }),
                )
                .await
                .ok()?;
            Some((
                node,
                answer["has"].as_bool().unwrap_or(false),
                answer["feeds"].as_u64().unwrap_or(0),
            ))
        };
        match feeds(origin.to_owned()).await {
            Some((_, _, n)) if n < fanout => return origin.to_owned(),
            None => return origin.to_owned(),
            Some(_) => {}
        }
        let view = self.live_view().await.unwrap_or_default();
        let others: Vec<String> = self
            .room_nodes(room, &view)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n != origin && *n != self.inner.node)
            .collect();
        let mut best: Option<(String, u64)> = None;
        for node in others {
            if let Some((node, true, n)) = feeds(node).await
                && n < fanout
                && best.as_ref().is_none_or(|(_, b)| n < *b)
            {
                best = Some((node, n));
            }
        }
        best.map_or_else(|| origin.to_owned(), |(node, _)| node)
    }

    /// `cluster.feeds`: whether this node has `producer` (the original or a copy), and how
    /// many nodes it feeds it to.
    pub fn feeds(&self, producer: ProducerId) -> (bool, usize) {
        let has = self.inner.server.holds("producer", &producer.to_string())
            || self.local_copy(producer).is_some();
        let feeds = lock(&self.inner.spans.feeding)
            .values()
            .filter(|p| **p == producer)
            .count();
        (has, feeds)
    }

    /// Notes that `transport`, this node's source end of a pipe, feeds another node the
    /// original `producer`.
    pub fn record_feed(&self, transport: TransportId, producer: ProducerId) {
        lock(&self.inner.spans.feeding).insert(transport, producer);
    }

    /// Closes both ends of a pulled producer's pipe.
    async fn unpipe(&self, source: String, ends: PulledEnds) {
        let _ = self.inner.server.close_transport(ends.here).await;
        if let Ok(requests) = self.requests() {
            let _ = requests
                .call(
                    "transport.close",
                    on(
                        Some(&source),
                        serde_json::json!({ "transport": ends.there }),
                    ),
                )
                .await;
        }
    }

    /// Reacts to one of this node's own events: a pipe end or router of a spanning room that
    /// closed.
    pub(super) fn on_local(&self, event: &Event) {
        match event {
            Event::TransportClosed {
                transport, reason, ..
            } => {
                lock(&self.inner.spans.feeding).remove(transport);
                let gone: Vec<(ProducerId, Pulled)> = {
                    let mut pulled = lock(&self.inner.spans.pulled);
                    let ids: Vec<ProducerId> = pulled
                        .iter()
                        .filter(|(_, p)| p.ends.is_some_and(|e| e.here == *transport))
                        .map(|(id, _)| *id)
                        .collect();
                    ids.iter()
                        .filter_map(|id| pulled.remove(id).map(|p| (*id, p)))
                        .collect()
                };
                for (producer, p) in gone {
                    let cluster = self.clone();
                    if *reason == CloseReason::NodeLost {
                        // A lost feeder that was not the origin: the track lives on there.
                        if p.source != p.origin {
                            self.inner.tasks.spawn(async move {
                                if cluster.inner.server.holds("router", &p.room.to_string()) {
                                    cluster.pull(p.room, &p.origin, producer).await;
                                }
                            });
                        }
                    } else if let Some(ends) = p.ends {
                        self.inner
                            .tasks
                            .spawn(async move { cluster.unpipe(p.source, ends).await });
                    }
                }
            }
            Event::RouterClosed { router, .. } => {
                lock(&self.inner.spans.copies).remove(router);
            }
            _ => {}
        }
    }

    /// Reacts to another node's event in a room this node also holds: a track published
    /// there is piped in, a piped track's original closing closes its copy, a pause is
    /// mirrored, and the room's first router closing closes this node's.
    pub(super) fn on_remote(&self, node: &str, event: &Event) {
        let Some(room) = event.router() else {
            return;
        };
        if !self.inner.server.holds("router", &room.to_string()) {
            return;
        }
        let cluster = self.clone();
        let node = node.to_owned();
        match event.clone() {
            Event::ProducerCreated {
                producer,
                transport,
                ..
            } => {
                self.inner.tasks.spawn(async move {
                    // Only what began there crosses: the copies other nodes made arrive on
                    // their pipes' transports (see `originals`).
                    let began_there = cluster.originals_on(&node, room, Some(transport)).await;
                    if began_there.is_ok_and(|o| o.contains(&producer)) {
                        cluster.pull(room, &node, producer).await;
                    }
                });
            }
            Event::ProducerClosed { producer, .. } => {
                let removed = lock(&self.inner.spans.pulled).remove(&producer);
                if let Some(Pulled {
                    source,
                    ends: Some(ends),
                    ..
                }) = removed
                {
                    self.inner
                        .tasks
                        .spawn(async move { cluster.unpipe(source, ends).await });
                }
            }
            Event::ProducerPaused {
                producer, paused, ..
            } => {
                if let Some(copy) = self.local_copy(producer) {
                    self.inner.tasks.spawn(async move {
                        let _ = cluster.inner.server.set_producer_paused(copy, paused).await;
                    });
                }
            }
            Event::RouterClosed { router, reason } => {
                let first = lock(&self.inner.spans.copies).get(&router).cloned();
                if first.as_deref() != Some(node.as_str()) {
                    return;
                }
                if reason == CloseReason::Shutdown {
                    // Its node is going away, not the room: the room lives on here and on
                    // its other nodes, as after a crash.
                    self.inner
                        .tasks
                        .spawn(async move { cluster.take_over_rooms_of(&node).await });
                } else {
                    info!(room = %router, "the room's first router closed: closing this node's");
                    self.inner.tasks.spawn(async move {
                        let _ = cluster.inner.server.close_router(router).await;
                    });
                }
            }
            _ => {}
        }
    }

    /// After `gone` left the cluster: each room whose first router was there gets a new
    /// first router, the one of its remaining nodes with the lowest id (every node of the
    /// room works it out alike from the directory), which takes the room's directory entry.
    /// So a room with peers on other nodes lives on: it takes new peers and can be closed.
    pub(super) async fn take_over_rooms_of(&self, gone: &str) {
        let orphaned: Vec<RouterId> = lock(&self.inner.spans.copies)
            .iter()
            .filter(|(_, first)| first.as_str() == gone)
            .map(|(room, _)| *room)
            .collect();
        if orphaned.is_empty() {
            return;
        }
        let me = self.inner.node.clone();
        let view: Vec<ClusterNode> = self.view().into_iter().filter(|n| n.id != gone).collect();
        for room in orphaned {
            let mut nodes = self.room_nodes(room, &view).await.unwrap_or_default();
            nodes.retain(|n| n != gone);
            if !nodes.contains(&me) {
                nodes.push(me.clone());
            }
            nodes.sort();
            let first = nodes.swap_remove(0);
            if first == me {
                lock(&self.inner.spans.copies).remove(&room);
                self.apply(Change::Directory {
                    key: self.inner.keys.object("router", &room.to_string()),
                    add: true,
                })
                .await;
                warn!(room = %room, lost = %gone, "the room's first node is gone: this node's router of it is now the first");
            } else {
                lock(&self.inner.spans.copies).insert(room, first.clone());
                info!(room = %room, lost = %gone, first = %first, "the room's first node is gone: another node's router of it is now the first");
            }
        }
    }

    /// Where a request naming a room and a peer goes: `Some(None)` here (the peer joined
    /// here), `Some(Some(node))` the node where it joined, `None` when no node has it (the
    /// request is routed by its other objects, as `peer.join` is).
    pub(super) async fn peer_elsewhere(
        &self,
        params: &Value,
    ) -> Result<Option<Option<Located>>, Error> {
        let (Some(router), Some(peer)) = (
            params.get("router").and_then(Value::as_str),
            params.get("peer").and_then(Value::as_str),
        ) else {
            return Ok(None);
        };
        let (Ok(room), Some(peer_id)) = (router.parse::<RouterId>(), PeerId::parse(peer)) else {
            return Ok(None);
        };
        if let Some(there) = self.moved_to(room, &peer_id) {
            return Ok(Some(Some(there)));
        }
        if self.inner.server.holds_peer(room, &peer_id) {
            return Ok(Some(None));
        }
        let key = peer_key(room, &peer_id);
        let recent = lock(&self.inner.recent)
            .get(&format!("peer:{key}"))
            .cloned();
        if recent.is_some() {
            return Ok(Some(recent));
        }
        match self.locate_object("peer", &key).await {
            Ok(l) if l.node != self.inner.node => Ok(Some(Some(l))),
            Ok(_) => Ok(Some(None)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            // The room is here: a local request must not fail on Redis.
            Err(_) if self.inner.server.holds("router", router) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Notes that a peer was placed on `node`, for requests made before its directory entry
    /// is written.
    pub fn remember_peer(&self, params: &Value, node: &Located) {
        if let (Some(Ok(room)), Some(Some(peer))) = (
            params
                .get("router")
                .and_then(Value::as_str)
                .map(str::parse::<RouterId>),
            params
                .get("peer")
                .and_then(Value::as_str)
                .map(PeerId::parse),
        ) {
            lock(&self.inner.recent)
                .insert(format!("peer:{}", peer_key(room, &peer)), node.clone());
        }
    }
}

/// The room a request's `router` parameter names.
fn room_of(params: &Value) -> Option<RouterId> {
    params
        .get("router")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// The directory id of a peer: its room and its name.
pub(super) fn peer_key(room: RouterId, peer: &PeerId) -> String {
    format!("{room}/{peer}")
}

/// The tracks of a `router.dump` that began on its node (limited to those on `transport`
/// when given): everything but what arrived through a plain `rtp` transport of no peer,
/// which is how the pipes from other nodes arrive (so nothing is piped twice, or back).
/// Peers' tracks, direct transports' and middleware's cross; a plain RTP ingest crosses when
/// it is given a peer.
fn originals(dump: &Value, transport: Option<TransportId>) -> Vec<ProducerId> {
    let piped_in: HashSet<&str> = dump["transports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["peer"].is_null() && t["kind"] == "rtp")
        .filter_map(|t| t["id"].as_str())
        .collect();
    let wanted = transport.map(|t| t.to_string());
    dump["producers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["transport"]
                .as_str()
                .is_some_and(|t| !piped_in.contains(t) && wanted.as_deref().is_none_or(|w| w == t))
        })
        .filter_map(|p| p["id"].as_str().and_then(|id| id.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, load: u64, rooms: usize, state: NodeState) -> ClusterNode {
        ClusterNode {
            id: id.to_owned(),
            rpc: String::new(),
            state,
            workers: 1,
            rooms,
            transports: 0,
            producers: 0,
            consumers: 0,
            packets_per_second: 0,
            load_percent: load,
            spare_load_percent: load,
            version: String::new(),
            started_ms: 0,
            heartbeat_ms: 0,
        }
    }

    fn pick(view: &[ClusterNode], room: &[&str], me: &str) -> Option<String> {
        let room: Vec<String> = room.iter().map(|s| s.to_string()).collect();
        choose_node(view, &room, "a", me, 80).map(|n| n.id.clone())
    }

    #[test]
    fn what_arrived_through_a_pipe_is_not_piped_on() {
        let ids: Vec<ProducerId> = (0..4).map(|_| ProducerId::new()).collect();
        let ts: Vec<TransportId> = (0..4).map(|_| TransportId::new()).collect();
        let dump = serde_json::json!({
            "transports": [
                {"id": ts[0], "kind": "webrtc", "peer": "alice"},
                {"id": ts[1], "kind": "direct", "peer": null},
                {"id": ts[2], "kind": "rtp", "peer": null},
                {"id": ts[3], "kind": "rtp", "peer": "ingest"},
            ],
            "producers": [
                {"id": ids[0], "transport": ts[0]},
                {"id": ids[1], "transport": ts[1]},
                {"id": ids[2], "transport": ts[2]},
                {"id": ids[3], "transport": ts[3]},
            ],
        });
        assert_eq!(originals(&dump, None), [ids[0], ids[1], ids[3]]);
        assert_eq!(originals(&dump, Some(ts[1])), [ids[1]]);
        assert!(originals(&dump, Some(ts[2])).is_empty());
    }

    #[test]
    fn a_room_with_headroom_stays_on_its_first_node() {
        let view = [
            node("a", 30, 5, NodeState::Serving),
            node("b", 0, 0, NodeState::Serving),
        ];
        // Within one band of load counts as equal; then the first router's node wins.
        assert_eq!(pick(&view, &["a"], "b").as_deref(), Some("a"));
        let view = [
            node("a", 3, 5, NodeState::Serving),
            node("b", 0, 0, NodeState::Serving),
        ];
        assert_eq!(pick(&view, &["a", "b"], "b").as_deref(), Some("a"));
    }

    #[test]
    fn a_loaded_room_goes_to_its_least_loaded_node_then_to_a_new_one() {
        let view = [
            node("a", 95, 5, NodeState::Serving),
            node("b", 40, 1, NodeState::Serving),
            node("c", 10, 9, NodeState::Serving),
        ];
        assert_eq!(pick(&view, &["a", "b"], "a").as_deref(), Some("b"));
        assert_eq!(pick(&view, &["a"], "a").as_deref(), Some("c"));
    }

    #[test]
    fn a_node_with_one_hot_worker_still_takes_its_rooms_peers() {
        let mut a = node("a", 0, 5, NodeState::Serving);
        a.load_percent = 150;
        a.spare_load_percent = 20;
        let view = [a, node("b", 0, 0, NodeState::Serving)];
        assert_eq!(pick(&view, &["a"], "b").as_deref(), Some("a"));
    }

    #[test]
    fn draining_and_loaded_nodes_take_no_room_and_a_full_cluster_keeps_it() {
        let view = [
            node("a", 95, 5, NodeState::Serving),
            node("b", 0, 0, NodeState::Draining),
            node("c", 85, 0, NodeState::Serving),
        ];
        assert_eq!(pick(&view, &["a"], "a"), None);
    }
}
