//! Where every live object is, so a request from any thread reaches its actor directly.

use crate::consumer::ConsumerActor;
use crate::group::RouterGroup;
use crate::producer::ProducerActor;
use crate::router::RouterActor;
use crate::transport::TransportActor;
use actix::Addr;
use dashmap::DashMap;
use std::sync::Arc;
use switchboard_core::{ConsumerId, Error, ProducerId, Result, RouterId, TransportId, WorkerId};

/// The server's live objects. Written by the actors that create and close them (workers
/// for routers, each router's host for its transports, producers and consumers), read by
/// the [`crate::ServerHandle`].
#[derive(Default)]
pub(crate) struct Index {
    /// Rooms' home routers.
    pub routers: DashMap<RouterId, (WorkerId, Addr<RouterActor>)>,
    /// Every open room with the routers it has on the workers.
    pub rooms: DashMap<RouterId, Arc<RouterGroup>>,
    /// Transports and their rooms.
    pub transports: DashMap<TransportId, (RouterId, Addr<TransportActor>)>,
    /// Producers and their rooms.
    pub producers: DashMap<ProducerId, (RouterId, Addr<ProducerActor>)>,
    /// Consumers and their rooms.
    pub consumers: DashMap<ConsumerId, (RouterId, Addr<ConsumerActor>)>,
}

/// The address of a live object of `map`, or `not_found` naming `what`.
fn find<K, A>(map: &DashMap<K, (RouterId, Addr<A>)>, id: K, what: &str) -> Result<Addr<A>>
where
    K: std::hash::Hash + Eq + std::fmt::Display,
    A: actix::Actor,
{
    map.get(&id)
        .map(|e| e.value().1.clone())
        .ok_or_else(|| Error::not_found(what, id))
}

impl Index {
    /// A room's home router.
    pub fn router(&self, id: RouterId) -> Result<Addr<RouterActor>> {
        self.routers
            .get(&id)
            .map(|e| e.value().1.clone())
            .ok_or_else(|| Error::not_found("router", id))
    }

    /// A room across its routers.
    pub fn group(&self, id: RouterId) -> Result<Arc<RouterGroup>> {
        self.rooms
            .get(&id)
            .map(|e| e.value().clone())
            .ok_or_else(|| Error::not_found("router", id))
    }

    pub fn transport(&self, id: TransportId) -> Result<Addr<TransportActor>> {
        find(&self.transports, id, "transport")
    }

    pub fn producer(&self, id: ProducerId) -> Result<Addr<ProducerActor>> {
        find(&self.producers, id, "producer")
    }

    pub fn consumer(&self, id: ConsumerId) -> Result<Addr<ConsumerActor>> {
        find(&self.consumers, id, "consumer")
    }

    /// The room a producer belongs to, across its routers.
    pub fn producer_group(&self, id: ProducerId) -> Option<Arc<RouterGroup>> {
        let room = self.producers.get(&id).map(|e| e.value().0)?;
        self.group(room).ok()
    }
}
