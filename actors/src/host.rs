//! The actor layer's side of a room: a [`RoomHost`] that starts and stops the actors of the
//! room's objects, keeps the server's index of them, and reaches the room's other routers.

use crate::consumer::ConsumerActor;
use crate::index::Index;
use crate::middleware::instance::Counters;
use crate::producer::ProducerActor;
use crate::room::budget::TransportBudget;
use crate::room::{ChildClosed, Object, Room, RoomHost, SpanNotice};
use crate::router::{RouterActor, RouterHost};
use crate::span::{ClosePiped, CloseSecondary, DetachLink, Piped};
use crate::supervision::Stop;
use crate::transport::{PluginChildClosed, TransportActor};
use actix::{Actor, Addr};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Weak;
use std::sync::Arc;
use switchboard_core::event::CloseReason;
use switchboard_core::forward::MediaTotals;
use switchboard_core::{PeerId, RouterId, TransportId, WorkerId};

/// The host of one router's room.
pub(crate) struct ActorHost {
    index: Arc<Index>,
    router: RouterId,
    worker: WorkerId,
    /// The room's transport limit, given back as the backend's transports close.
    budget: Arc<TransportBudget>,
    /// The room, for the actors of its objects; set once the room exists.
    room: RefCell<Weak<RefCell<Room>>>,
    /// The room's other routers this one has a pipe to, by worker.
    links: RefCell<BTreeMap<WorkerId, Addr<RouterActor>>>,
}

impl ActorHost {
    pub(crate) fn new(
        index: Arc<Index>,
        router: RouterId,
        worker: WorkerId,
        budget: Arc<TransportBudget>,
    ) -> Self {
        Self {
            index,
            router,
            worker,
            budget,
            room: RefCell::new(Weak::new()),
            links: RefCell::default(),
        }
    }

    fn link(&self, worker: WorkerId) -> Option<Addr<RouterActor>> {
        self.links.borrow().get(&worker).cloned()
    }
}

impl RouterHost for ActorHost {
    fn bind(&self, room: Weak<RefCell<Room>>) {
        *self.room.borrow_mut() = room;
    }

    fn transport_started(&self, id: TransportId, actor: Addr<TransportActor>) {
        self.index.transports.insert(id, (self.router, actor));
    }

    fn add_link(&self, worker: WorkerId, router: Addr<RouterActor>) {
        self.links.borrow_mut().insert(worker, router);
    }

    fn peer_gave_up(&self, peer: PeerId, reason: CloseReason) {
        let Ok(group) = self.index.group(self.router) else {
            return;
        };
        actix::spawn(async move {
            if let Err(e) = group.leave_if_disconnected(peer, reason).await {
                tracing::debug!(error = %e, "peer timeout: nothing to do");
            }
        });
    }
}

impl RoomHost for ActorHost {
    fn created(&self, object: Object) {
        let Some(room) = self.room.borrow().upgrade() else {
            return;
        };
        let index = &self.index;
        match object {
            // A copy shares its original's id: requests for that id go to the original.
            Object::Producer { copy: true, .. } | Object::Transport { .. } => {}
            Object::Producer { id, copy: false } => {
                let addr = ProducerActor::new(id, room).start();
                index.producers.insert(id, (self.router, addr));
            }
            Object::Consumer(id) => {
                let addr = ConsumerActor::new(id, room).start();
                index.consumers.insert(id, (self.router, addr));
            }
        }
    }

    fn closed(&self, object: Object) {
        let index = &self.index;
        match object {
            Object::Producer { copy: true, .. } => {}
            Object::Producer { id, copy: false } => {
                if let Some((_, (_, addr))) = index.producers.remove(&id) {
                    addr.do_send(Stop);
                }
            }
            Object::Consumer(id) => {
                if let Some((_, (_, addr))) = index.consumers.remove(&id) {
                    addr.do_send(Stop);
                }
            }
            Object::Transport { id, internal } => {
                if let Some((_, (_, addr))) = index.transports.remove(&id) {
                    addr.do_send(Stop);
                }
                if !internal {
                    self.budget.release();
                }
            }
        }
    }

    fn tell_plugin_later(&self, transport: TransportId, child: ChildClosed) {
        if let Some(entry) = self.index.transports.get(&transport) {
            entry.value().1.do_send(PluginChildClosed(child));
        }
    }

    fn span(&self, notice: SpanNotice) {
        match notice {
            SpanNotice::Pipe { to, producer } => {
                if let Some(router) = self.link(to) {
                    router.do_send(Piped(producer));
                }
            }
            SpanNotice::Unpipe { to, producer } => {
                if let Some(router) = self.link(to) {
                    router.do_send(ClosePiped(producer));
                }
            }
            SpanNotice::Unlink { to } => {
                if let Some(router) = self.links.borrow_mut().remove(&to) {
                    router.do_send(DetachLink(self.worker));
                }
            }
        }
    }

    fn room_closing(&self, reason: &CloseReason) {
        // The room is gone, and its secondary routers close too (at once if the backend
        // closed the room, since it closed them first).
        let Some((_, group)) = self.index.rooms.remove(&self.router) else {
            return;
        };
        let secondaries = {
            let mut st = group.state();
            st.closed = true;
            std::mem::take(&mut st.secondaries)
        };
        for addr in secondaries.into_values() {
            addr.do_send(CloseSecondary(reason.clone()));
        }
    }

    fn room_closed(&self, totals: &MediaTotals, secondary: bool) {
        if secondary {
            if let Some(group) = self.index.rooms.get(&self.router) {
                let mut st = group.state();
                st.secondaries.remove(&self.worker);
                st.recv_on.retain(|_, w| *w != self.worker);
            }
        } else {
            self.index.routers.remove(&self.router);
        }
        crate::metrics::room_closed(self.router, totals);
    }

    fn transport_failed(&self, kind: &str, stage: &'static str) {
        crate::metrics::transport_failed(kind, stage);
    }

    fn middleware_retired(&self, name: &str, counters: &Counters) {
        crate::metrics::middleware_retired(name, counters);
    }
}
