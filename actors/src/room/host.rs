//! What a room asks of the server around it.

use super::span::PipedProducer;
use crate::middleware::Counters;
use switchboard_core::event::CloseReason;
use switchboard_core::forward::MediaTotals;
use switchboard_core::{ConsumerId, ProducerId, TransportId, WorkerId};

/// An object of a room, as its host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Object {
    /// A transport; an `internal` one (a pipe between routers) takes no room-wide slot.
    Transport { id: TransportId, internal: bool },
    /// A producer; a `copy` is a piped copy of another router's producer, sharing its id.
    Producer { id: ProducerId, copy: bool },
    /// A consumer.
    Consumer(ConsumerId),
}

/// A child of a transport that closed, for its plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildClosed {
    Producer(ProducerId),
    Consumer(ConsumerId),
}

/// What a router must tell the other routers of its room.
#[derive(Clone, Debug)]
pub(crate) enum SpanNotice {
    /// A producer of this router now feeds the pipe to `to`: create its copy there.
    Pipe {
        to: WorkerId,
        producer: PipedProducer,
    },
    /// The original of a producer piped to `to` closed: close its copy there.
    Unpipe { to: WorkerId, producer: ProducerId },
    /// This (secondary) router closed: the router on `to` drops its pipe to it.
    Unlink { to: WorkerId },
}

/// The server around a room: the actor layer implements it; tests record what it is told.
///
/// Every call is made on the room's thread, most with the room borrowed, so an implementation
/// must not call back into the room: it starts, stops or messages actors, and edits indexes.
pub(crate) trait RoomHost {
    /// A producer or consumer was created: make it reachable (index it, start its actor).
    fn created(&self, object: Object);
    /// An object closed (its event is about to be emitted): make it unreachable.
    fn closed(&self, object: Object);
    /// A transport's plugin was busy when one of its children closed: tell it once free.
    fn tell_plugin_later(&self, transport: TransportId, child: ChildClosed);
    /// Something the room's other routers must hear.
    fn span(&self, notice: SpanNotice);
    /// The home router of the room starts closing: the room's other routers close too.
    fn room_closing(&self, reason: &CloseReason);
    /// The router closed, having counted `totals` in its life.
    fn room_closed(&self, totals: &MediaTotals, secondary: bool);
    /// A transport of plugin `kind` failed at `stage` (`ice`, `dtls`, `unknown`).
    fn transport_failed(&self, kind: &str, stage: &'static str);
    /// A middleware instance left the room; keep what it counted.
    fn middleware_retired(&self, name: &str, counters: &Counters);
}
