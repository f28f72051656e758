//! The event bus: fan-out of [`Event`]s to subscribers, which never blocks the emitter.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_core::RouterId;
use switchboard_core::event::Event;
use tokio::sync::mpsc;

struct Subscriber {
    tx: mpsc::Sender<Event>,
    room: Option<RouterId>,
}

/// Delivers events to every subscriber whose filter matches.
///
/// Emitters are actors on media threads, so delivery is `try_send` into a bounded queue per
/// subscriber: a subscriber that stops reading loses events (counted in
/// [`EventBus::dropped`]) instead of stalling a room.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Subscriber>>,
    dropped: AtomicU64,
    emitted: AtomicU64,
}

impl EventBus {
    /// Subscribes to every event (`room` = `None`) or one room's, with a queue of `capacity`.
    pub fn subscribe(&self, room: Option<RouterId>, capacity: usize) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(Subscriber { tx, room });
        }
        rx
    }

    /// Delivers an event.
    pub fn emit(&self, event: Event) {
        tracing::debug!(event = event.name(), ?event, "event");
        self.emitted.fetch_add(1, Ordering::Relaxed);
        let room = event.router();
        let Ok(mut subs) = self.subscribers.lock() else {
            return;
        };
        subs.retain(|s| !s.tx.is_closed());
        for s in subs.iter() {
            if s.room.is_some() && s.room != room {
                continue;
            }
            if s.tx.try_send(event.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events lost because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events emitted in all.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }
}
