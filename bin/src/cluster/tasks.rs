//! The cluster's background tasks: events to directory changes, the heartbeat loop, and
//! other nodes' events from pub/sub.

use super::*;

/// Turns the server's events into directory changes, in order.
pub(super) async fn watch_events(
    cluster: Cluster,
    mut events: mpsc::Receiver<Event>,
    changes: mpsc::UnboundedSender<Change>,
) {
    loop {
        let event = tokio::select! {
            _ = cluster.inner.stop.cancelled() => return,
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        if event.router().is_some()
            && let Ok(json) = serde_json::to_string(&Published {
                node: cluster.inner.node.clone(),
                event: event.clone(),
            })
            && changes.send(Change::Publish(json)).is_err()
        {
            return;
        }
        let node = &cluster.inner.node;
        let keys = &cluster.inner.keys;
        let object = |kind: &str, id: String| keys.object(kind, &id);
        let (entries, add) = match &event {
            Event::RouterCreated { router, .. } | Event::RouterClosed { router, .. } => {
                let mut entries = vec![keys.span(*router, node)];
                // A copy's node is not the room's owner: the first router's node stays that.
                if !cluster.is_copy(*router) {
                    entries.push(object("router", router.to_string()));
                }
                (entries, matches!(event, Event::RouterCreated { .. }))
            }
            Event::PeerJoined { router, peer } => {
                (vec![object("peer", span::peer_key(*router, peer))], true)
            }
            Event::PeerLeft { router, peer, .. } => {
                (vec![object("peer", span::peer_key(*router, peer))], false)
            }
            Event::TransportCreated { transport, .. } => {
                (vec![object("transport", transport.to_string())], true)
            }
            Event::TransportClosed { transport, .. } => {
                cluster
                    .inner
                    .pipes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(transport);
                (vec![object("transport", transport.to_string())], false)
            }
            Event::ProducerCreated { producer, .. } => {
                (vec![object("producer", producer.to_string())], true)
            }
            Event::ProducerClosed { producer, .. } => {
                (vec![object("producer", producer.to_string())], false)
            }
            Event::ConsumerCreated { consumer, .. } => {
                (vec![object("consumer", consumer.to_string())], true)
            }
            Event::ConsumerClosed { consumer, .. } => {
                (vec![object("consumer", consumer.to_string())], false)
            }
            _ => {
                cluster.on_local(&event);
                continue;
            }
        };
        // After the keys: a closed copy is forgotten here, and its keys must say it was one.
        cluster.on_local(&event);
        for key in entries {
            if changes.send(Change::Directory { key, add }).is_err() {
                return;
            }
        }
    }
}

/// The heartbeat and the directory writer: one task, so that a repair and the changes made
/// after it reach Redis in order.
pub(super) async fn run(cluster: Cluster, mut changes: mpsc::UnboundedReceiver<Change>) {
    let period = Duration::from_millis(cluster.inner.config.heartbeat_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cluster.inner.stop.cancelled() => return,
            _ = tick.tick() => {
                // Errors are counted and logged where they happen; the next tick retries.
                let _ = cluster.heartbeat().await;
            }
            change = changes.recv() => match change {
                Some(c) => cluster.apply(c).await,
                None => return,
            },
        }
    }
}

/// Takes the other nodes' room events from Redis and hands them to this node's control
/// connections. Reconnects every heartbeat while Redis is unreachable; what was published
/// meanwhile is lost (pub/sub keeps nothing).
pub(super) async fn receive_events(cluster: Cluster) {
    use futures_util::StreamExt;
    let i = &cluster.inner;
    let period = Duration::from_millis(i.config.heartbeat_ms);
    let timeout = Duration::from_millis(i.config.redis_timeout_ms);
    loop {
        let connected = async {
            let mut pubsub = tokio::time::timeout(timeout, i.client.get_async_pubsub())
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(timeout, pubsub.subscribe(i.keys.events()))
                .await
                .ok()?
                .ok()?;
            Some(pubsub)
        };
        let pubsub = tokio::select! {
            _ = i.stop.cancelled() => return,
            p = connected => p,
        };
        if let Some(pubsub) = pubsub {
            i.receiving.store(true, Ordering::Relaxed);
            let mut messages = pubsub.into_on_message();
            loop {
                let message = tokio::select! {
                    _ = i.stop.cancelled() => return,
                    m = messages.next() => m,
                };
                let Some(message) = message else {
                    i.receiving.store(false, Ordering::Relaxed);
                    break;
                };
                let Ok(published) =
                    serde_json::from_slice::<Published>(message.get_payload_bytes())
                else {
                    continue;
                };
                if published.node != i.node {
                    i.events_received.fetch_add(1, Ordering::Relaxed);
                    cluster.on_remote(&published.node, &published.event);
                    // No receiver (no connection subscribed) is fine.
                    let _ = i.remote.send(published.event);
                }
            }
        }
        tokio::select! {
            _ = i.stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
