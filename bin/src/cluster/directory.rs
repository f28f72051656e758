//! Keeping this node's entries in Redis: the connection and its timeouts, the heartbeat,
//! sweeping nodes whose entry expired, repairing the directory after Redis comes back, and
//! applying the changes the server's events make.

use super::*;

impl Cluster {
    /// One command with the configured timeout, on the current connection (made if there is
    /// none). A failure drops the connection and counts, and is `cluster_unavailable`.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        let mut conn = self.connection().await?;
        self.bounded(cmd.query_async::<T>(&mut conn)).await
    }

    /// Like [`Cluster::query`] for a pipeline.
    pub(super) async fn exec<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let mut conn = self.connection().await?;
        self.bounded(pipe.query_async::<T>(&mut conn)).await
    }

    /// Waits at most `cluster.redis_timeout_ms` for a Redis answer.
    pub(super) async fn bounded<T>(
        &self,
        answer: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let timeout = Duration::from_millis(self.inner.config.redis_timeout_ms);
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed("timed out")),
        }
    }

    pub(super) async fn connection(&self) -> Result<MultiplexedConnection, Error> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let timeout = Duration::from_millis(self.inner.config.redis_timeout_ms);
        match tokio::time::timeout(
            timeout,
            self.inner.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed("connecting timed out")),
        }
    }

    pub(super) fn failed(&self, why: impl std::fmt::Display) -> Error {
        let i = &self.inner;
        i.redis_errors.fetch_add(1, Ordering::Relaxed);
        if i.redis_up.swap(false, Ordering::Relaxed) {
            warn!(error = %why, "redis unreachable: the cluster view is unavailable until it returns");
        }
        i.registered.store(false, Ordering::Relaxed);
        // The next command reconnects.
        if let Ok(mut slot) = i.conn.try_lock() {
            *slot = None;
        }
        unavailable(why)
    }

    /// Renews this node's entry and looks at the others; on the first success after Redis
    /// was unreachable (or at start), first rewrites this node's whole share of the directory.
    pub(super) async fn heartbeat(&self) -> Result<(), Error> {
        let i = &self.inner;
        let was_up = i.redis_up.load(Ordering::Relaxed) && i.registered.load(Ordering::Relaxed);
        // An entry that vanished while the node thought itself registered (it stalled past
        // its TTL and another node swept it, or Redis restarted between two heartbeats) took
        // the node's directory entries with it: repair as after an outage.
        let lapsed = was_up
            && !self
                .query::<bool>(redis::cmd("EXISTS").arg(i.keys.node(&i.node)))
                .await?;
        if !was_up || lapsed {
            *i.grace_until.lock().unwrap_or_else(|p| p.into_inner()) =
                std::time::Instant::now() + Duration::from_millis(i.config.node_ttl_ms);
            if lapsed {
                warn!(node = %i.node, "this node's entry had expired: rewriting its directory entries");
            }
            self.repair().await?;
        }
        let record = self.record();
        let json = serde_json::to_string(&record)
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(i.keys.node(&i.node))
            .arg(json)
            .arg("PX")
            .arg(i.config.node_ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(i.keys.nodes())
            .arg(&i.node)
            .ignore();
        self.exec::<()>(&pipe).await?;
        if !i.redis_up.swap(true, Ordering::Relaxed) {
            info!(node = %i.node, "registered in the cluster");
        }
        i.registered.store(true, Ordering::Relaxed);
        self.sweep().await
    }

    /// Removes the directory entries of nodes whose entry expired.
    pub(super) async fn sweep(&self) -> Result<(), Error> {
        let k = &self.inner.keys;
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(k.nodes())).await?;
        let entries: Vec<Option<String>> = if ids.is_empty() {
            Vec::new()
        } else {
            self.query(redis::cmd("MGET").arg(ids.iter().map(|id| k.node(id)).collect::<Vec<_>>()))
                .await?
        };
        let mut live = 0;
        let mut now_live = HashSet::new();
        let mut view = Vec::new();
        for (id, entry) in ids.iter().zip(entries) {
            if let Some(json) = entry {
                live += 1;
                now_live.insert(id.clone());
                view.extend(serde_json::from_str::<ClusterNode>(&json).ok());
            } else if id != &self.inner.node {
                warn!(node = %id, "node lost: its entry expired; removing its directory entries");
                self.sweep_node(id).await?;
                self.inner.nodes_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.inner.nodes.store(live, Ordering::Relaxed);
        view.sort_by(|a, b| a.id.cmp(&b.id));
        *self.inner.view.lock().unwrap_or_else(|p| p.into_inner()) = view;
        let in_grace = std::time::Instant::now()
            < *self
                .inner
                .grace_until
                .lock()
                .unwrap_or_else(|p| p.into_inner());
        let vanished: Vec<String> = {
            let mut known = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            if in_grace {
                // Nodes may still be registering again: only learn, never conclude.
                known.extend(now_live);
                Vec::new()
            } else {
                let gone = known.difference(&now_live).cloned().collect();
                *known = now_live;
                gone
            }
        };
        for node in vanished {
            self.close_pipes_from(&node).await;
            self.take_over_rooms_of(&node).await;
        }
        Ok(())
    }

    /// Remembers that `transport`, on this node, is one end of a pipe whose other end is on
    /// `peer`: it closes with `node_lost` when that node vanishes.
    pub fn record_pipe(&self, transport: switchboard_core::TransportId, peer: String) {
        self.inner
            .pipes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(transport, peer);
    }

    /// Closes this node's ends of the pipes to or from a node that vanished, with
    /// `node_lost`: nothing will arrive on them or be taken from them again, and the piped
    /// producers' consumers must learn it.
    pub(super) async fn close_pipes_from(&self, node: &str) {
        let transports: Vec<switchboard_core::TransportId> = {
            let mut pipes = self.inner.pipes.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<_> = pipes
                .iter()
                .filter(|(_, source)| source.as_str() == node)
                .map(|(t, _)| *t)
                .collect();
            for t in &gone {
                pipes.remove(t);
            }
            gone
        };
        for t in transports {
            // Its last counts, before they vanish with it.
            self.read_pipe(t, node).await;
            warn!(node = %node, transport = %t, "closing a pipe to a lost node");
            let _ = self
                .inner
                .server
                .close_transport_because(t, switchboard_core::event::CloseReason::NodeLost)
                .await;
        }
    }

    /// Deletes a node's entry and everything it wrote to the directory.
    pub(super) async fn sweep_node(&self, node: &str) -> Result<(), Error> {
        let k = &self.inner.keys;
        let owned: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(k.owned(node)))
            .await?;
        let mut pipe = redis::pipe();
        for key in &owned {
            del_if_owner(&mut pipe, key, node);
        }
        pipe.cmd("DEL")
            .arg(k.owned(node))
            .ignore()
            .cmd("DEL")
            .arg(k.node(node))
            .ignore()
            .cmd("SREM")
            .arg(k.nodes())
            .arg(node)
            .ignore();
        self.exec::<()>(&pipe).await?;
        self.inner
            .directory_operations
            .fetch_add(owned.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Rewrites this node's share of the directory from what it owns now, removing entries it
    /// wrote for objects that closed while Redis was unreachable.
    pub(super) async fn repair(&self) -> Result<(), Error> {
        let i = &self.inner;
        let k = &i.keys;
        let wanted: HashSet<String> = i.owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let written: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(k.owned(&i.node)))
            .await?;
        let keep: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        let mut pipe = redis::pipe();
        let mut ops = 0u64;
        for stale in written.iter().filter(|w| !keep.contains(w.as_str())) {
            del_if_owner(&mut pipe, stale, &i.node);
            pipe.cmd("SREM").arg(k.owned(&i.node)).arg(stale).ignore();
            ops += 1;
        }
        for key in &wanted {
            pipe.cmd("SET").arg(key).arg(&i.node).ignore();
            pipe.cmd("SADD").arg(k.owned(&i.node)).arg(key).ignore();
            ops += 1;
        }
        if ops > 0 {
            self.exec::<()>(&pipe).await?;
        }
        i.directory_operations.fetch_add(ops, Ordering::Relaxed);
        if ops > 0 {
            info!(
                entries = wanted.len(),
                "directory repaired from this node's own state"
            );
        }
        Ok(())
    }

    /// Writes a new room's directory entries at once instead of when its event comes round,
    /// so that `router.create` answers with the room findable from every node: a backend
    /// that makes a room and then joins a peer to it on another node finds it there.
    pub async fn record_router_now(&self, router: switchboard_core::RouterId) {
        let i = &self.inner;
        let mut keys = vec![i.keys.span(router, &i.node)];
        // A copy's node is not the room's owner (as for the event's change).
        if !self.is_copy(router) {
            keys.push(i.keys.object("router", &router.to_string()));
        }
        self.record_now(keys).await;
    }

    /// Writes a peer's directory entry at once (see [`Cluster::record_router_now`]): the
    /// backend's next request for the peer, asked of any node, reaches this one.
    pub async fn record_peer_now(
        &self,
        router: switchboard_core::RouterId,
        peer: &switchboard_core::PeerId,
    ) {
        let key = self
            .inner
            .keys
            .object("peer", &super::span::peer_key(router, peer));
        self.record_now(vec![key]).await;
    }

    /// Best effort: with Redis unreachable, the event's change and the next repair carry it.
    async fn record_now(&self, keys: Vec<String>) {
        let i = &self.inner;
        if !i.registered.load(Ordering::Relaxed) {
            return;
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            lock(&i.owned).insert(key.clone());
            pipe.cmd("SET").arg(key).arg(&i.node).ignore();
            pipe.cmd("SADD")
                .arg(i.keys.owned(&i.node))
                .arg(key)
                .ignore();
        }
        if self.exec::<()>(&pipe).await.is_ok() {
            i.directory_operations
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
        }
    }

    /// Applies one change to the local view, and to Redis when it is reachable (otherwise the
    /// next repair carries it).
    pub(super) async fn apply(&self, change: Change) {
        let i = &self.inner;
        let k = &i.keys;
        let (key, add) = match change {
            Change::Directory { key, add } => (key, add),
            Change::Publish(json) => {
                // Lost while Redis is unreachable: the other nodes' backends re-read state
                // with dumps when they see `cluster_unavailable`.
                if i.registered.load(Ordering::Relaxed)
                    && self
                        .query::<()>(redis::cmd("PUBLISH").arg(k.events()).arg(json))
                        .await
                        .is_ok()
                {
                    i.events_published.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        {
            let mut owned = i.owned.lock().unwrap_or_else(|p| p.into_inner());
            if add {
                owned.insert(key.clone());
            } else {
                owned.remove(&key);
            }
        }
        if !i.registered.load(Ordering::Relaxed) {
            return;
        }
        let mut pipe = redis::pipe();
        if add {
            pipe.cmd("SET").arg(&key).arg(&i.node).ignore();
            pipe.cmd("SADD").arg(k.owned(&i.node)).arg(&key).ignore();
        } else {
            del_if_owner(&mut pipe, &key, &i.node);
            pipe.cmd("SREM").arg(k.owned(&i.node)).arg(&key).ignore();
        }
        if self.exec::<()>(&pipe).await.is_ok() {
            i.directory_operations.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn record(&self) -> ClusterNode {
        let i = &self.inner;
        let workers = i.server.workers();
        ClusterNode {
            id: i.node.clone(),
            rpc: i.rpc.clone(),
            state: if i.draining.load(Ordering::Relaxed) {
                NodeState::Draining
            } else {
                NodeState::Serving
            },
            workers: workers.len(),
            rooms: workers.iter().map(|w| w.routers).sum(),
            transports: workers.iter().map(|w| w.transports).sum(),
            producers: workers.iter().map(|w| w.producers).sum(),
            consumers: workers.iter().map(|w| w.consumers).sum(),
            packets_per_second: workers.iter().map(|w| w.packets_per_second).sum(),
            load_percent: workers.iter().map(|w| w.load_percent).max().unwrap_or(0),
            spare_load_percent: workers.iter().map(|w| w.load_percent).min().unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms: i.started_ms,
            heartbeat_ms: now_ms(),
        }
    }
}

/// Deletes a directory key only while it still names `node`: another node may have written
/// it since (a peer that left one node and joined the room on another), and its entry must
/// stay.
fn del_if_owner(pipe: &mut redis::Pipeline, key: &str, node: &str) {
    const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
    pipe.cmd("EVAL")
        .arg(SCRIPT)
        .arg(1)
        .arg(key)
        .arg(node)
        .ignore();
}
