//! A room across workers: its routers, and what is done to all of them at once.
//!
//! A room is one *home* router on the worker placement chose for it and, once that worker
//! is loaded, *secondary* routers of the same room on other workers, linked pairwise by
//! `pipe` transports (see [`crate::span`] for what each router does with its links). This
//! module owns the room-wide side: adding a router and linking it, and the operations whose
//! order across routers matters (children's events before their parents'): a peer leaving,
//! a producer's copies closing, the room closing.

use crate::router::{
    CloseRouter, LeavePeer, PeerTransportCount, RoomSpec, RouterActor, SpawnRouter,
};
use crate::shared::Shared;
use crate::span::{
    AttachLink, ClosePiped, CloseSecondary, ConnectLink, CreateLink, DescribeRouter,
    DropMirrorPeer, MirrorPeer, PIPE_KIND, PausePiped, PeerConnection, PeerProducers, RouterPart,
};
use crate::supervision::mailbox;
use actix::{Addr, Message, Recipient};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use switchboard_core::event::CloseReason;
use switchboard_core::report;
use switchboard_core::{Error, PeerId, ProducerId, Result, WorkerId};

/// Asks the server how to spawn a router on a worker (the worker's current actor: it may
/// have been restarted since the room opened).
#[derive(Message)]
#[rtype(result = "Result<Recipient<SpawnRouter>>")]
pub(crate) struct SpawnerFor(pub WorkerId);

/// One room across the workers, shared by all threads.
pub(crate) struct RouterGroup {
    /// What each of the room's routers is spawned with.
    spec: RoomSpec,
    pub home: WorkerId,
    pub home_addr: Addr<RouterActor>,
    /// Where new routers of the room come from.
    spawners: Recipient<SpawnerFor>,
    /// Serialises adding routers to the room.
    setup: tokio::sync::Mutex<()>,
    state: Mutex<GroupState>,
}

#[derive(Default)]
pub(crate) struct GroupState {
    /// Secondary routers by worker.
    pub secondaries: BTreeMap<WorkerId, Addr<RouterActor>>,
    /// Peers whose receive connection is on a secondary router.
    pub recv_on: HashMap<PeerId, WorkerId>,
    /// The peers in the room, so that a cluster can tell without asking the router whether
    /// a peer is here.
    pub peers: HashSet<PeerId>,
    pub closed: bool,
}

impl RouterGroup {
    pub fn new(
        spec: RoomSpec,
        home: WorkerId,
        home_addr: Addr<RouterActor>,
        spawners: Recipient<SpawnerFor>,
    ) -> Self {
        Self {
            spec,
            home,
            home_addr,
            spawners,
            setup: tokio::sync::Mutex::new(()),
            state: Mutex::new(GroupState::default()),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The secondary routers.
    pub fn secondaries(&self) -> Vec<(WorkerId, Addr<RouterActor>)> {
        self.state()
            .secondaries
            .iter()
            .map(|(w, a)| (*w, a.clone()))
            .collect()
    }

    /// Every router of the room, home first.
    pub fn routers(&self) -> Vec<(WorkerId, Addr<RouterActor>)> {
        let mut all = vec![(self.home, self.home_addr.clone())];
        all.extend(self.secondaries());
        all
    }

    /// The router on `worker`, if the room has one there.
    pub fn router_on(&self, worker: WorkerId) -> Option<Addr<RouterActor>> {
        if worker == self.home {
            return Some(self.home_addr.clone());
        }
        self.state().secondaries.get(&worker).cloned()
    }

    /// The router holding a peer's receive connection (home unless it was placed elsewhere).
    pub fn receiving_router(&self, peer: &PeerId) -> Addr<RouterActor> {
        let w = self.state().recv_on.get(peer).copied();
        w.and_then(|w| self.router_on(w))
            .unwrap_or_else(|| self.home_addr.clone())
    }

    /// Whether a new transport of `kind` may go to another worker.
    fn may_span(&self, shared: &Shared, kind: &str) -> bool {
        shared.config.placement.span_rooms
            && shared.loads.len() > 1
            && !self.spec.single_connection
            && kind != PIPE_KIND
            && shared.transports.get(PIPE_KIND).is_some()
    }

    /// Where a new transport of `kind` goes, for `peer`: the one placement decision for
    /// transports. The home router while its worker has headroom (or the room may not
    /// span), else a router of the room on the worker placement picks, created and piped on
    /// first use, where the peer is then mirrored. The peer must be in the room; that is
    /// checked before anything is created elsewhere.
    pub async fn place(
        &self,
        shared: &Shared,
        kind: &str,
        peer: Option<&PeerId>,
    ) -> Result<(WorkerId, Addr<RouterActor>)> {
        if !self.may_span(shared, kind) {
            return Ok((self.home, self.home_addr.clone()));
        }
        if let Some(peer) = peer {
            self.home_addr
                .send(PeerConnection(peer.clone()))
                .await
                .map_err(mailbox("router"))??;
        }
        self.place_known(shared, peer).await
    }

    /// [`RouterGroup::place`] for a transport that may span, once the peer is known to be
    /// in the room.
    async fn place_known(
        &self,
        shared: &Shared,
        peer: Option<&PeerId>,
    ) -> Result<(WorkerId, Addr<RouterActor>)> {
        let worker = crate::placement::transport_worker(shared, self.home);
        let addr = self.ensure_router(worker).await?;
        if worker != self.home
            && let Some(peer) = peer
        {
            addr.send(MirrorPeer(peer.clone()))
                .await
                .map_err(mailbox("router"))?;
        }
        Ok((worker, addr))
    }

    /// The router that holds (or, placed like any transport, will hold) a peer's receive
    /// connection.
    pub async fn receive_connection_router(
        &self,
        shared: &Shared,
        peer: &PeerId,
    ) -> Result<Addr<RouterActor>> {
        let placed = self.state().recv_on.get(peer).copied();
        if let Some(addr) = placed.and_then(|w| self.router_on(w)) {
            return Ok(addr);
        }
        let existing = self
            .home_addr
            .send(PeerConnection(peer.clone()))
            .await
            .map_err(mailbox("router"))??;
        if existing.is_some() {
            return Ok(self.home_addr.clone());
        }
        if !self.may_span(shared, crate::session::SESSION_KIND) {
            return Ok(self.home_addr.clone());
        }
        let (worker, addr) = self.place_known(shared, Some(peer)).await?;
        if worker != self.home {
            self.state().recv_on.insert(peer.clone(), worker);
        }
        Ok(addr)
    }

    /// The room's router on `worker`, spawned there (and linked to every other router of
    /// the room, with every producer piped) if the room has none there yet.
    pub async fn ensure_router(&self, worker: WorkerId) -> Result<Addr<RouterActor>> {
        if let Some(addr) = self.router_on(worker) {
            return Ok(addr);
        }
        let _setup = self.setup.lock().await;
        {
            let st = self.state();
            if st.closed {
                return Err(Error::closed(format!("router {}", self.spec.id)));
            }
            if let Some(addr) = st.secondaries.get(&worker) {
                return Ok(addr.clone());
            }
        }
        let spawner = self
            .spawners
            .send(SpawnerFor(worker))
            .await
            .map_err(mailbox("server"))??;
        let addr = spawner
            .send(SpawnRouter {
                room: self.spec.clone(),
                secondary: true,
            })
            .await
            .map_err(mailbox("router"))??;
        for (w, other) in self.routers() {
            if let Err(e) = link((w, &other), (worker, &addr)).await {
                addr.do_send(CloseSecondary(CloseReason::Crashed {
                    message: e.message.clone(),
                }));
                return Err(e);
            }
        }
        let closed = {
            let mut st = self.state();
            st.secondaries.insert(worker, addr.clone());
            st.closed
        };
        if closed {
            addr.do_send(CloseSecondary(CloseReason::Requested));
            return Err(Error::closed(format!("router {}", self.spec.id)));
        }
        tracing::info!(room = %self.spec.id, %worker, "room spans another worker");
        Ok(addr)
    }

    /// Closes the room: its secondary routers first, so their events come before the room's.
    pub async fn close(&self, reason: CloseReason) -> Result<()> {
        for (_, addr) in self.secondaries() {
            let _ = addr.send(CloseSecondary(reason.clone())).await;
        }
        self.home_addr
            .send(CloseRouter(reason))
            .await
            .map_err(mailbox("router"))
    }

    /// Each router's part of the room, home first.
    pub async fn describe(&self) -> Vec<RouterPart> {
        let mut parts = Vec::new();
        for (_, addr) in self.routers() {
            if let Ok(part) = addr.send(DescribeRouter).await {
                parts.push(part);
            }
        }
        parts
    }

    /// The home router's dump with the lists of every router of the room (each entry with
    /// its `worker`), and `routers` listing the routers with their pipes.
    pub async fn merge_dump(&self, mut dump: report::RouterDump) -> report::RouterDump {
        let parts = self.describe().await;
        dump.transports.clear();
        dump.producers.clear();
        dump.consumers.clear();
        let mut routers = Vec::with_capacity(parts.len());
        for p in parts {
            dump.transports.extend(p.transports);
            dump.producers.extend(p.producers);
            dump.consumers.extend(p.consumers);
            routers.push(report::RouterPartDump {
                worker: p.worker,
                role: p.role,
                pipes: p.pipes,
            });
        }
        dump.routers = Some(routers);
        dump
    }

    /// The home router's statistics with `routers`: each router of the room with its own
    /// counts and counters.
    pub async fn merge_stats(&self, mut stats: report::RouterStats) -> report::RouterStats {
        let parts = self.describe().await;
        stats.routers = Some(
            parts
                .into_iter()
                .map(|p| report::RouterPartStats {
                    worker: p.worker,
                    role: p.role,
                    transports: p.transports.len(),
                    producers: p.producers.len(),
                    consumers: p.consumers.len(),
                    pipes: p.pipes,
                    counters: p.counters,
                })
                .collect(),
        );
        stats
    }

    /// Closes the copies of `producers` on every router of the room, with their consumers,
    /// before the originals close.
    pub async fn unpipe(&self, producers: &[ProducerId]) {
        for (_, addr) in self.routers() {
            for p in producers {
                let _ = addr.send(ClosePiped(*p)).await;
            }
        }
    }

    /// Pauses or resumes the copies of a producer with it.
    pub fn pause_piped(&self, producer: ProducerId, paused: bool) {
        for (_, addr) in self.routers() {
            addr.do_send(PausePiped(producer, paused));
        }
    }

    /// Removes a peer: the copies of its producers first, then its transports on the
    /// secondary routers, then the peer itself on the home router (whose event the backend
    /// sees).
    pub async fn leave_peer(&self, peer: PeerId, reason: CloseReason) -> Result<()> {
        let secondaries = self.secondaries();
        if !secondaries.is_empty() {
            let producers = self
                .home_addr
                .send(PeerProducers(peer.clone()))
                .await
                .unwrap_or_default();
            for (_, addr) in &secondaries {
                for p in &producers {
                    let _ = addr.send(ClosePiped(*p)).await;
                }
            }
        }
        for (_, addr) in secondaries {
            let _ = addr.send(DropMirrorPeer(peer.clone())).await;
        }
        {
            let mut state = self.state();
            state.recv_on.remove(&peer);
            state.peers.remove(&peer);
        }
        self.home_addr
            .send(LeavePeer(peer, reason))
            .await
            .map_err(mailbox("router"))?
    }

    /// Removes a peer whose transports all closed on their own (its client vanished), with
    /// `reason`; a peer the backend gave a transport again meanwhile stays. Whether it left.
    pub async fn leave_if_disconnected(&self, peer: PeerId, reason: CloseReason) -> Result<bool> {
        for (_, addr) in self.routers() {
            let n = addr
                .send(PeerTransportCount(peer.clone()))
                .await
                .unwrap_or(0);
            if n > 0 {
                return Ok(false);
            }
        }
        self.leave_peer(peer, reason).await?;
        Ok(true)
    }
}

/// Links two routers of a room with a pair of pipe transports, then lets each pipe its
/// producers to the other.
async fn link(
    (a_worker, a): (WorkerId, &Addr<RouterActor>),
    (b_worker, b): (WorkerId, &Addr<RouterActor>),
) -> Result<()> {
    let ta = a.send(CreateLink).await.map_err(mailbox("router"))??;
    let tb = b.send(CreateLink).await.map_err(mailbox("router"))??;
    a.send(ConnectLink {
        transport: ta.id,
        remote: tb.address.clone(),
    })
    .await
    .map_err(mailbox("router"))??;
    b.send(ConnectLink {
        transport: tb.id,
        remote: ta.address,
    })
    .await
    .map_err(mailbox("router"))??;
    b.send(AttachLink {
        worker: a_worker,
        remote: a.clone(),
        transport: tb.id,
    })
    .await
    .map_err(mailbox("router"))?;
    a.send(AttachLink {
        worker: b_worker,
        remote: b.clone(),
        transport: ta.id,
    })
    .await
    .map_err(mailbox("router"))?;
    Ok(())
}
