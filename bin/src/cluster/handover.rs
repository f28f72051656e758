//! A draining node hands its peers over to other nodes. A peer moves with its WebRTC
//! connections: the node taking it over (of the room's other nodes, the least loaded, else a
//! serving node that opens the room) resumes each connection's SDP session with the same
//! m-lines and offers it with its own ICE credentials, candidate and DTLS fingerprint. The
//! backend gets each offer as `renegotiation_needed` (`connection` says which of the peer's
//! connections) and gives it to the client, which restarts ICE towards the new node and, the
//! fingerprint having changed, starts a new DTLS handshake there; the peer's requests go to
//! the new node from the start. Once the new connections are up, the draining node lets the
//! peer go (`peer_left`, reason `moved`).
//!
//! On the receive connection, every track goes back on its m-line. On the send connection,
//! the client goes on sending the same streams (same SSRCs), now to the new node, where a
//! producer was made again for each of its sending m-lines, with the old one's parameters:
//! the room's receivers get the new producers (auto-subscribe) before the old ones close with
//! the peer's departure, so they see a track replaced by another of the same stream.
//!
//! A peer that only receives plain RTP (its transports `rtp`, without SRTP, carrying
//! consumers only) moves too: the new node makes the same transports towards the same
//! remote addresses, with consumers of the same tracks, and the draining node lets the peer
//! go once they are connected. The receiver gets the streams from the new node's address,
//! with new SSRCs.
//!
//! What stays until the drain ends: peers of `single_connection` rooms (one connection both
//! ways), and peers publishing over plain RTP (they send to this node's address, and nothing
//! can make them send elsewhere).

use super::*;
use futures_util::StreamExt;
use serde_json::Value;
use switchboard_actors::session::{PublishResult, SubscribeResult};
use switchboard_core::event::{CloseReason, TransportState};
use switchboard_core::{PeerId, TransportId};

/// How many rooms, and how many peers of one room, are handed over at once: enough that a
/// room's clients restart side by side, few enough that the other node's handshakes and the
/// publishers' keyframe requests come in waves rather than all at once.
const MOVES_AT_ONCE: usize = 16;

/// A peer's WebRTC connections, as the room's dump names them.
struct Connections {
    send: Option<TransportId>,
    recv: Option<TransportId>,
}

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
            let rooms = cluster.inner.server.routers().into_iter().map(|(room, _)| {
                let cluster = &cluster;
                async move {
                    if let Err(e) = cluster.hand_over_room(room).await {
                        warn!(room = %room, error = %e, "could not hand the room's peers over");
                    }
                }
            });
            futures_util::stream::iter(rooms)
                .buffer_unordered(MOVES_AT_ONCE)
                .collect::<Vec<()>>()
                .await;
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
        if dump["single_connection"] == true {
            warn!(room = %room, "peers of a single_connection room stay until the drain ends");
            return Ok(());
        }
        let connection = |p: &Value, key: &str| p[key].as_str().and_then(|t| t.parse().ok());
        let peers: Vec<(PeerId, Connections)> = dump["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let peer = p["id"].as_str().and_then(PeerId::parse)?;
                Some((
                    peer,
                    Connections {
                        send: connection(p, "send"),
                        recv: connection(p, "recv"),
                    },
                ))
            })
            .collect();
        if peers.is_empty() {
            return Ok(());
        }
        let Some(target) = self.hand_over_target(room).await? else {
            warn!(room = %room, "no serving node to hand the room's peers to");
            return Ok(());
        };
        // Peers move side by side: each waits for its client, which takes a round trip
        // through the backend, an ICE restart and a DTLS handshake (up to
        // `handover_timeout_ms` for a client that does not follow).
        let moves = peers.into_iter().map(|(peer, connections)| {
            let (dump, target) = (&dump, &target);
            async move {
                let moved = if connections.send.is_some() || connections.recv.is_some() {
                    self.hand_over(room, &peer, connections, dump, target).await
                } else {
                    self.hand_over_plain(room, &peer, dump, target).await
                };
                if let Err(e) = moved {
                    warn!(room = %room, peer = %peer, node = %target.node, error = %e, "could not hand the peer over");
                }
            }
        });
        futures_util::stream::iter(moves)
            .buffer_unordered(MOVES_AT_ONCE)
            .collect::<Vec<()>>()
            .await;
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
    /// serving one; else the least loaded serving node, which opens the room. As peers'
    /// placement chooses (`span::choose_node`), without its threshold: a draining node's
    /// peers must go somewhere.
    async fn hand_over_target(&self, room: RouterId) -> Result<Option<Located>, Error> {
        let mut view = self.live_view().await?;
        let room_nodes = self.room_nodes(room, &view).await?;
        // Never this node, whatever its last heartbeat said.
        view.retain(|n| n.id != self.inner.node);
        let best = span::choose_node(&view, &room_nodes, "", &self.inner.node, u64::MAX);
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
        connections: Connections,
        dump: &Value,
        target: &Located,
    ) -> Result<(), Error> {
        let mut adopt = serde_json::json!({ "router": room, "peer": peer });
        if let Some(recv) = connections.recv {
            let (state, producers) = self.receive_state(recv, dump).await?;
            adopt["resume"] = state;
            adopt["producers"] = serde_json::json!(producers);
        }
        if let Some(send) = connections.send {
            adopt["send"] = self.send_state(send).await?;
        }
        let mut events = self.remote_events();
        let adopted = self.ask(target, "cluster.adopt", adopt).await?;
        let made: Vec<TransportId> = ["transport", "send"]
            .iter()
            .filter_map(|key| adopted[*key].as_str().and_then(|t| t.parse().ok()))
            .collect();
        lock(&self.inner.moves.moved).insert((room, peer.clone()), target.clone());
        info!(room = %room, peer = %peer, node = %target.node, "peer handed over; waiting for its new connections");
        let mut waiting = made.clone();
        let wait = Duration::from_millis(self.inner.config.handover_timeout_ms);
        let came_up = tokio::time::timeout(wait, async {
            while !waiting.is_empty() {
                match events.recv().await {
                    Ok(Event::TransportStateChanged {
                        transport,
                        state: TransportState::Connected,
                        ..
                    }) => waiting.retain(|t| *t != transport),
                    // A new connection that closes (its client did not come, or came without
                    // a new DTLS handshake: `dtls_timeout`) will not come up.
                    Ok(Event::TransportClosed { transport, .. })
                        if waiting.contains(&transport) =>
                    {
                        break;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
        let none_up = waiting.len() == made.len();
        if came_up.is_err() || !waiting.is_empty() {
            let old = [connections.send, connections.recv];
            if none_up && self.still_heard(old.into_iter().flatten()).await {
                // The client never took the new node's offers (the backend did not pass them
                // on, say) and is still here: it stays, and the new node lets it go.
                warn!(room = %room, peer = %peer, node = %target.node, "the moved peer's new connections did not come up and it is still connected here: it stays");
                lock(&self.inner.moves.moved).remove(&(room, peer.clone()));
                if let Err(e) = self
                    .ask(
                        target,
                        "peer.leave",
                        serde_json::json!({ "router": room, "peer": peer }),
                    )
                    .await
                {
                    warn!(room = %room, peer = %peer, error = %e, "could not undo the adoption");
                }
                self.record_peer_now(room, peer).await;
                return Ok(());
            }
            warn!(room = %room, peer = %peer, "the moved peer's new connections did not all come up in time");
        }
        self.inner
            .server
            .leave_peer_because(room, peer.clone(), CloseReason::Moved)
            .await
    }

    /// Whether any of these connections still hears its client (`connected`).
    async fn still_heard(&self, transports: impl Iterator<Item = TransportId>) -> bool {
        for t in transports {
            let stats = self.inner.server.transport_stats(t).await;
            let state = stats
                .ok()
                .and_then(|s| serde_json::to_value(s).ok())
                .map(|s| s["state"].clone());
            if state.as_ref().and_then(Value::as_str) == Some("connected") {
                return true;
            }
        }
        false
    }

    /// A receive connection's state, and the tracks of its open media lines as the other
    /// nodes know them.
    async fn receive_state(
        &self,
        recv: TransportId,
        dump: &Value,
    ) -> Result<(Value, Vec<ProducerId>), Error> {
        let state = self
            .inner
            .server
            .transport_request(recv, "resume_state", Value::Null)
            .await?
            .response;
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
        Ok((state, producers))
    }

    /// A send connection's state, with the producer of each m-line the client sends on
    /// (`{resume, tracks}`, as `cluster.adopt` takes it). A sending line whose producer the
    /// backend closed is stopped on the new node.
    async fn send_state(&self, send: TransportId) -> Result<Value, Error> {
        let mut state = self
            .inner
            .server
            .transport_request(send, "resume_state", Value::Null)
            .await?
            .response;
        let mut tracks = Vec::new();
        for line in state["lines"].as_array_mut().into_iter().flatten() {
            if line["open"] != true || line["receiving"].is_null() {
                continue;
            }
            let producer = line["producer"].as_str().and_then(|p| p.parse().ok());
            let Some(producer) = producer else {
                line["open"] = Value::Bool(false);
                continue;
            };
            let d = self.inner.server.dump_producer(producer).await?;
            tracks.push(switchboard_core::api::ResumedTrack {
                mid: line["mid"].as_str().unwrap_or_default().to_owned(),
                kind: d.kind,
                rtp_parameters: d.rtp_parameters,
                paused: d.paused,
            });
        }
        Ok(serde_json::json!({ "resume": state, "tracks": tracks }))
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
            .ask(
                target,
                "cluster.adopt",
                serde_json::json!({ "router": room, "peer": peer, "rtp": transports }),
            )
            .await?;
        lock(&self.inner.moves.moved).insert((room, peer.clone()), target.clone());
        info!(room = %room, peer = %peer, node = %target.node, "plain RTP peer handed over; waiting for its streams there");
        // Both nodes send until the new node's transports carry media (a video consumer
        // starts at a keyframe): the receiver sees the new streams begin before the old end.
        // No event says so; the new transports' counters are looked at every 20 ms.
        let new: Vec<Value> = adopted["transports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let wait = Duration::from_millis(self.inner.config.handover_timeout_ms);
        let flowing = tokio::time::timeout(wait, async {
            loop {
                let mut all = true;
                for t in &new {
                    let stats = self
                        .ask(
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

    /// `cluster.adopt` with `resume` and/or `send`: takes over a peer another node hands
    /// over, with its WebRTC connections: the send connection (`send`: its state and the
    /// producers to make again) and the receive connection (`recv`: its state and the tracks
    /// of its open lines, by their original ids). All or nothing: on a failure the peer
    /// leaves here again.
    pub async fn adopt(
        &self,
        room: RouterId,
        peer: PeerId,
        send: Option<(Value, Vec<switchboard_core::api::ResumedTrack>)>,
        recv: Option<(Value, Vec<ProducerId>)>,
    ) -> Result<(Option<PublishResult>, Option<SubscribeResult>), Error> {
        let server = &self.inner.server;
        server.join_peer(room, peer.clone()).await?;
        let resumed = async {
            let sent = match send {
                Some((resume, tracks)) => Some(
                    server
                        .resume_sender(room, peer.clone(), resume, tracks)
                        .await?,
                ),
                None => None,
            };
            let received = match recv {
                Some((resume, producers)) => {
                    let local = self.local_tracks(producers)?;
                    Some(
                        server
                            .resume_receiver(room, peer.clone(), resume, local)
                            .await?,
                    )
                }
                None => None,
            };
            Ok::<_, Error>((sent, received))
        };
        match resumed.await {
            Ok(done) => Ok(done),
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
