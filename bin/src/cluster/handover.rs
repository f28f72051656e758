//! A draining node hands its peers over to other nodes. A peer that only receives moves with
//! its WebRTC receive connection: the node taking it over (of the room's other nodes, the
//! least loaded, else a serving node that opens the room) resumes the connection's SDP
//! session with the same m-lines and tracks, and offers it with its own ICE credentials,
//! candidate and DTLS fingerprint. The backend gets that offer as `renegotiation_needed` and
//! gives it to the client, which restarts ICE towards the new node and, the fingerprint
//! having changed, starts a new DTLS handshake there; the peer's requests go to the new
//! node from the start. Once the new connection is up, the draining node lets the peer go
//! (`peer_left`, reason `moved`).
//!
//! A peer that only receives plain RTP (its transports `rtp`, without SRTP, carrying
//! consumers only) moves too: the new node makes the same transports towards the same
//! remote addresses, with consumers of the same tracks, and the draining node lets the peer
//! go once they are connected. The receiver gets the streams from the new node's address,
//! with new SSRCs.
//!
//! A peer that publishes stays: its client makes the offers of its send connection (or sends
//! to this node's address), and the server cannot make it send elsewhere. It leaves when the
//! drain ends.

use super::*;
use serde_json::Value;
use switchboard_core::event::{CloseReason, TransportState};
use switchboard_core::{PeerId, TransportId};

/// How long the draining node waits for a moved peer's new connection before it lets the
/// peer go anyway (the client never answered, or could not reach the new node).
const CONNECT_WAIT: Duration = Duration::from_secs(15);

/// The node and the moved peers it took over, on the draining node.
#[derive(Default)]
pub(super) struct Moves {
    /// Peers of this node's rooms that another node took over: where their requests go.
    moved: Mutex<HashMap<(RouterId, PeerId), Located>>,
    /// Whether the hand-over has started (once per drain).
    started: AtomicBool,
}

impl Cluster {
    /// Starts handing this draining node's receive-only peers over to other nodes, once.
    pub fn hand_over_peers(&self) {
        if self.inner.moves.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let cluster = self.clone();
        self.inner.tasks.spawn(async move {
            for (room, _) in cluster.inner.server.routers() {
                if let Err(e) = cluster.hand_over_room(room).await {
                    warn!(room = %room, error = %e, "could not hand the room's peers over");
                }
            }
        });
    }

    /// Where a moved peer's requests go, while this node still has it.
    pub(super) fn moved_to(&self, room: RouterId, peer: &PeerId) -> Option<Located> {
        lock(&self.inner.moves.moved)
            .get(&(room, peer.clone()))
            .cloned()
    }

    async fn hand_over_room(&self, room: RouterId) -> Result<(), Error> {
        let dump = serde_json::to_value(self.inner.server.dump_router(room).await?)
            .map_err(|e| Error::internal(e.to_string()))?;
        let peers: Vec<(PeerId, Option<TransportId>)> = dump["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["send"].is_null())
            .filter_map(|p| {
                let peer = p["id"].as_str().and_then(PeerId::parse)?;
                Some((peer, p["recv"].as_str().and_then(|r| r.parse().ok())))
            })
            .collect();
        if peers.is_empty() {
            return Ok(());
        }
        let Some(target) = self.hand_over_target(room).await? else {
            warn!(room = %room, "no serving node to hand the room's peers to");
            return Ok(());
        };
        for (peer, recv) in peers {
            let moved = match recv {
                Some(recv) => self.hand_over(room, &peer, recv, &dump, &target).await,
                None => self.hand_over_plain(room, &peer, &dump, &target).await,
            };
            if let Err(e) = moved {
                warn!(room = %room, peer = %peer, node = %target.node, error = %e, "could not hand the peer over");
            }
        }
        // A copy of a room with nobody left here has nothing to do: closing it lets the drain
        // end. (The room's first router stays until the room closes or this node shuts down,
        // when the room's other nodes take it over.)
        if self.is_copy(room) {
            let left = self.inner.server.dump_router(room).await?;
            if left.peers.is_empty() {
                info!(room = %room, "every peer handed over: closing this node's router of the room");
                self.inner.server.close_router(room).await?;
            }
        }
        Ok(())
    }

    /// The node that takes a room's peers: of the room's other nodes, the least loaded
    /// serving one; else the least loaded serving node, which opens the room.
    async fn hand_over_target(&self, room: RouterId) -> Result<Option<Located>, Error> {
        let me = &self.inner.node;
        let view = self.live_view().await?;
        let room_nodes = self.room_nodes(room, &view).await?;
        let serving = |n: &&ClusterNode| n.state == NodeState::Serving && &n.id != me;
        let rank = |n: &&ClusterNode| (n.spare_load_percent / LOAD_BAND, n.rooms);
        let best = view
            .iter()
            .filter(|n| room_nodes.contains(&n.id))
            .filter(serving)
            .min_by_key(rank)
            .or_else(|| view.iter().filter(serving).min_by_key(rank));
        let Some(best) = best else {
            return Ok(None);
        };
        if !room_nodes.contains(&best.id) {
            self.ask_node(
                &best.id,
                "cluster.span",
                serde_json::json!({ "router": room }),
            )
            .await?;
        }
        Ok(Some(Located {
            node: best.id.clone(),
            rpc: Some(best.rpc.clone()),
        }))
    }

    async fn hand_over(
        &self,
        room: RouterId,
        peer: &PeerId,
        recv: TransportId,
        dump: &Value,
        target: &Located,
    ) -> Result<(), Error> {
        let state = self
            .inner
            .server
            .transport_request(recv, "resume_state", Value::Null)
            .await?
            .response;
        // The tracks of its open media lines, named as the other nodes know them.
        let producer_of = |consumer: &str| {
            dump["consumers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["id"] == consumer)
                .and_then(|c| c["producer"].as_str())
                .and_then(|p| p.parse::<ProducerId>().ok())
        };
        let mut producers = Vec::new();
        for line in state["lines"].as_array().into_iter().flatten() {
            if line["open"] != true || line["kind"].is_null() {
                continue;
            }
            let copy = line["consumer"]
                .as_str()
                .and_then(producer_of)
                .ok_or_else(|| Error::internal("an open line without its track"))?;
            producers.push(self.original_of(copy));
        }
        let mut events = self.remote_events();
        let adopted = self
            .forward(
                target,
                "cluster.adopt",
                serde_json::json!({
                    "router": room,
                    "peer": peer,
                    "resume": state,
                    "producers": producers,
                }),
            )
            .await
            .map_err(|e| Error::new(e.code, e.message))?;
        let new: TransportId = adopted["transport"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::internal("no transport in the adoption's answer"))?;
        lock(&self.inner.moves.moved).insert((room, peer.clone()), target.clone());
        info!(room = %room, peer = %peer, node = %target.node, "peer handed over; waiting for its new connection");
        let connected = tokio::time::timeout(CONNECT_WAIT, async {
            loop {
                match events.recv().await {
                    Ok(Event::TransportStateChanged {
                        transport,
                        state: TransportState::Connected,
                        ..
                    }) if transport == new => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if !connected {
            warn!(room = %room, peer = %peer, "the moved peer's new connection did not come up in time");
        }
        self.inner
            .server
            .leave_peer_because(room, peer.clone(), CloseReason::Moved)
            .await
    }

    /// Hands over a peer whose transports are plain RTP receivers (see the module's doc);
    /// a peer with anything else (a producer, SRTP, another kind) stays.
    async fn hand_over_plain(
        &self,
        room: RouterId,
        peer: &PeerId,
        dump: &Value,
        target: &Located,
    ) -> Result<(), Error> {
        let list = |key: &str| dump[key].as_array().cloned().unwrap_or_default();
        let mine: Vec<Value> = list("transports")
            .into_iter()
            .filter(|t| t["peer"] == peer.0.as_str())
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        let mut transports = Vec::new();
        for t in &mine {
            let id = t["id"].as_str().unwrap_or_default();
            let publishes = list("producers").iter().any(|p| p["transport"] == id);
            if t["kind"] != "rtp" || publishes {
                return Ok(());
            }
            let parsed: TransportId = id
                .parse()
                .map_err(|_| Error::internal("transport id in the dump"))?;
            let state = serde_json::to_value(self.inner.server.dump_transport(parsed).await?)
                .map_err(|e| Error::internal(e.to_string()))?;
            let plugin = &state["plugin"];
            if !plugin["local"]["srtp"].is_null() {
                return Ok(());
            }
            let address = |key: &str| {
                plugin["stats"][key]
                    .as_str()
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            };
            let Some(rtp) = address("remote_rtp") else {
                // Not connected yet: nothing flows to move.
                return Ok(());
            };
            let rtcp_mux = plugin["local"]["rtcp_mux"].as_bool().unwrap_or(true);
            let mut remote = serde_json::json!({ "ip": rtp.ip().to_string(), "port": rtp.port() });
            if let Some(rtcp) = address("remote_rtcp") {
                remote["rtcp_port"] = serde_json::json!(rtcp.port());
            }
            let producers: Vec<ProducerId> = list("consumers")
                .iter()
                .filter(|c| c["transport"] == id)
                .filter_map(|c| c["producer"].as_str().and_then(|p| p.parse().ok()))
                .map(|p| self.original_of(p))
                .collect();
            transports.push(serde_json::json!({
                "options": { "rtcp_mux": rtcp_mux },
                "remote": remote,
                "producers": producers,
            }));
        }
        let adopted = self
            .forward(
                target,
                "cluster.adopt",
                serde_json::json!({ "router": room, "peer": peer, "rtp": transports }),
            )
            .await
            .map_err(|e| Error::new(e.code, e.message))?;
        lock(&self.inner.moves.moved).insert((room, peer.clone()), target.clone());
        info!(room = %room, peer = %peer, node = %target.node, "plain RTP peer handed over; waiting for its streams there");
        // Both nodes send until the new node's transports carry media (a video consumer
        // starts at a keyframe): the receiver sees the new streams begin before the old end.
        // No event says so; the new transports' counters are looked at every 20 ms.
        let new: Vec<Value> = adopted["transports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let flowing = tokio::time::timeout(CONNECT_WAIT, async {
            loop {
                let mut all = true;
                for t in &new {
                    let stats = self
                        .forward(
                            target,
                            "transport.stats",
                            serde_json::json!({ "transport": t }),
                        )
                        .await;
                    all &= stats.is_ok_and(|s| s["plugin"]["rtp_sent"].as_u64() > Some(0));
                }
                if all {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if flowing.is_err() {
            warn!(room = %room, peer = %peer, "the moved peer's streams did not start on the new node in time");
        }
        self.inner
            .server
            .leave_peer_because(room, peer.clone(), CloseReason::Moved)
            .await
    }

    /// The original of a producer this node has a copy of (the producer itself otherwise).
    fn original_of(&self, producer: ProducerId) -> ProducerId {
        self.pulled_original(producer).unwrap_or(producer)
    }

    /// Each track as this node has it: its own, or its copy.
    fn local_tracks(&self, producers: Vec<ProducerId>) -> Result<Vec<ProducerId>, Error> {
        producers
            .into_iter()
            .map(|p| {
                if self.inner.server.holds("producer", &p.to_string()) {
                    Ok(p)
                } else {
                    self.local_copy(p)
                        .ok_or_else(|| Error::not_found("producer", p))
                }
            })
            .collect()
    }

    /// `cluster.adopt` with `resume`: takes over a peer another node hands over, with its
    /// WebRTC receive connection (the tracks of its open lines as `producers`).
    pub async fn adopt(
        &self,
        room: RouterId,
        peer: PeerId,
        resume: Value,
        producers: Vec<ProducerId>,
    ) -> Result<switchboard_core::api::SubscribeResult, Error> {
        let server = &self.inner.server;
        let local = self.local_tracks(producers)?;
        server.join_peer(room, peer.clone()).await?;
        match server
            .resume_receiver(room, peer.clone(), resume, local)
            .await
        {
            Ok(result) => Ok(result),
            Err(e) => {
                let _ = server.leave_peer(room, peer).await;
                Err(e)
            }
        }
    }

    /// `cluster.adopt` with `rtp`: takes over a peer of plain RTP receivers, each
    /// `{options, remote, producers}`: the same transports towards the same addresses, with
    /// consumers of the same tracks. The new transports' ids.
    pub async fn adopt_plain(
        &self,
        room: RouterId,
        peer: PeerId,
        transports: Vec<Value>,
    ) -> Result<Vec<TransportId>, Error> {
        let server = &self.inner.server;
        server.join_peer(room, peer.clone()).await?;
        let built = async {
            let mut made = Vec::new();
            for t in transports {
                let producers: Vec<ProducerId> = serde_json::from_value(t["producers"].clone())
                    .map_err(|e| Error::invalid(format!("producers: {e}")))?;
                let local = self.local_tracks(producers)?;
                let info = server
                    .create_peer_transport(room, Some(peer.clone()), "rtp", t["options"].clone())
                    .await?;
                made.push(info.id);
                server
                    .connect_transport(info.id, t["remote"].clone())
                    .await?;
                for p in local {
                    server
                        .consume(
                            info.id,
                            switchboard_core::api::ConsumeOptions {
                                producer: p,
                                rtp_capabilities: Default::default(),
                                paused: false,
                            },
                        )
                        .await?;
                }
            }
            Ok::<_, Error>(made)
        };
        match built.await {
            Ok(made) => Ok(made),
            Err(e) => {
                let _ = server.leave_peer(room, peer).await;
                Err(e)
            }
        }
    }
}
