//! How a transport's plugin reaches its room: packets, RTCP, state changes, giving up.

use super::{Room, RoomHost, RoomRef};
use crate::events::EventBus;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::panics::contain;
use switchboard_core::transport::{TransportIo, TransportState};
use switchboard_core::{RouterId, TransportId};

/// How a transport hands what it receives to its room.
pub(crate) struct RoomIo {
    pub transport: TransportId,
    pub router: RouterId,
    pub room: Weak<RefCell<Room>>,
    events: Arc<EventBus>,
    host: Rc<dyn RoomHost>,
    on_crash: Box<dyn Fn(String)>,
    /// The transport gave up on its remote: its router closes it with this reason.
    on_gave_up: Box<dyn Fn(CloseReason)>,
    /// Packets dropped because they arrived while the room was busy (a sink re-entering).
    pub reentrant_drops: Cell<u64>,
    /// Whether `transport_created` has been announced; a state change reported while the
    /// plugin is still being created waits for it, so no event precedes its object's birth.
    announced: Cell<bool>,
    pending_state: Cell<Option<TransportState>>,
    /// The plugin kind, for metrics by kind.
    pub kind: String,
    /// The last state the transport reported.
    pub state: Cell<TransportState>,
    /// Whether it was ever connected.
    ever_connected: Cell<bool>,
    /// The stage of a failure the transport is about to report (`on_failure`).
    failure_stage: Cell<Option<&'static str>>,
}

impl RoomIo {
    /// The way into `room` for a new transport of plugin `kind`, starting in `state`. A
    /// panic on its packet path is reported with `on_crash`; a transport giving up on its
    /// remote with `on_gave_up`.
    /// `r` is `room`, borrowed by the caller.
    pub fn new(
        transport: TransportId,
        room: &RoomRef,
        r: &Room,
        kind: &str,
        state: TransportState,
        on_crash: Box<dyn Fn(String)>,
        on_gave_up: Box<dyn Fn(CloseReason)>,
    ) -> Self {
        Self {
            transport,
            router: r.id,
            room: Rc::downgrade(room),
            events: r.events.clone(),
            host: r.host.clone(),
            on_crash,
            on_gave_up,
            reentrant_drops: Cell::default(),
            announced: Cell::default(),
            pending_state: Cell::default(),
            kind: kind.to_owned(),
            state: Cell::new(state),
            ever_connected: Cell::default(),
            failure_stage: Cell::default(),
        }
    }

    /// Marks the transport announced and reports a state it reached before that.
    pub fn announce(&self) {
        self.announced.set(true);
        if let Some(state) = self.pending_state.take() {
            self.on_state(state);
        }
    }
}

impl RoomIo {
    fn with_room(&self, f: impl FnOnce(&mut Room)) {
        let Some(room) = self.room.upgrade() else {
            return;
        };
        let result = contain(|| match room.try_borrow_mut() {
            Ok(mut r) if !r.closed => f(&mut r),
            Ok(_) => {}
            Err(_) => {
                // A sink delivered into the router that is calling it. Dropping keeps the
                // forwarding table consistent; the counter makes the plugin bug visible.
                self.reentrant_drops.set(self.reentrant_drops.get() + 1);
                tracing::warn!(transport = %self.transport, "re-entrant delivery dropped");
            }
        });
        if let Err(message) = result {
            (self.on_crash)(message);
        }
    }
}

impl TransportIo for RoomIo {
    fn on_gave_up(&self, reason: CloseReason) {
        (self.on_gave_up)(reason);
    }

    fn on_rtp(&self, packet: rtc_rtp::Packet) {
        let transport = self.transport;
        self.with_room(|r| r.on_rtp(transport, packet));
    }

    fn on_malformed_rtp(&self) {
        self.with_room(|r| r.on_malformed_rtp());
    }

    fn on_rtcp(&self, packet: Bytes) {
        let transport = self.transport;
        self.with_room(|r| {
            r.offer_rtcp(transport, &packet);
            r.forwarder.on_rtcp(transport, packet, Instant::now());
        });
    }

    fn on_state(&self, state: TransportState) {
        let previous = self.state.replace(state);
        if state == TransportState::Connected && !self.ever_connected.replace(true) {
            // What went to the consumers before their client could first hear it (a keyframe
            // requested when they were created, say) never arrived. Only the first time: a
            // connection that comes back from `disconnected` lost nothing its decoder needs
            // restarting for. A room busy right now is one creating this transport, which has
            // no consumers yet.
            if let Some(room) = self.room.upgrade()
                && let Ok(mut r) = room.try_borrow_mut()
            {
                r.forwarder
                    .transport_connected(self.transport, Instant::now());
            }
        }
        if state == TransportState::Failed && previous != TransportState::Failed {
            let stage = self.failure_stage.take().unwrap_or("unknown");
            self.host.transport_failed(&self.kind, stage);
        }
        if !self.announced.get() {
            self.pending_state.set(Some(state));
            return;
        }
        self.events.emit(Event::TransportStateChanged {
            router: self.router,
            transport: self.transport,
            state,
        });
    }

    fn on_failure(&self, stage: &'static str) {
        self.failure_stage.set(Some(stage));
    }
}
