//! The Producer actor: one incoming track.

use crate::room::RoomRef;
use crate::supervision::{CrashGuard, Stop, crash_guard};
use actix::{Actor, ActorContext, Context, Handler, Message};
use std::time::Instant;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::report;
use switchboard_core::{Error, ProducerId, Result};

/// Lifecycle and control of one producer. Its packets never pass through this actor: the
/// room's forwarder handles them; this actor is the producer's mailbox and supervisor.
pub struct ProducerActor {
    pub(crate) id: ProducerId,
    pub(crate) room: RoomRef,
    pub(crate) guard: CrashGuard,
}

impl ProducerActor {
    pub(crate) fn new(id: ProducerId, room: RoomRef) -> Self {
        Self {
            id,
            guard: crash_guard(&room, move |r, reason| {
                r.close_producer(id, reason);
            }),
            room,
        }
    }
}

impl Actor for ProducerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.guard.stopped_cleanly();
    }
}

impl Handler<Stop> for ProducerActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.guard.disarm();
        ctx.stop();
    }
}

/// Pauses (`true`) or resumes (`false`) the producer.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetProducerPaused(pub bool);

impl Handler<SetProducerPaused> for ProducerActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: SetProducerPaused, _: &mut Self::Context) -> Result<()> {
        let mut r = self.room.borrow_mut();
        let router = r.id;
        r.forwarder
            .set_producer_paused(self.id, msg.0, Instant::now())?;
        let node = r
            .producers
            .get_mut(&self.id)
            .ok_or_else(|| Error::not_found("producer", self.id))?;
        if node.paused != msg.0 {
            node.paused = msg.0;
            r.emit(Event::ProducerPaused {
                router,
                producer: self.id,
                paused: msg.0,
            });
        }
        Ok(())
    }
}

/// Closes the producer and its consumers.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseProducer;

impl Handler<CloseProducer> for ProducerActor {
    type Result = Result<()>;
    fn handle(&mut self, _: CloseProducer, _: &mut Self::Context) -> Result<()> {
        self.room
            .borrow_mut()
            .close_producer(self.id, CloseReason::Requested);
        Ok(())
    }
}

/// Asks the producer's sender for a keyframe (throttled).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RequestProducerKeyframe;

impl Handler<RequestProducerKeyframe> for ProducerActor {
    type Result = Result<()>;
    fn handle(&mut self, _: RequestProducerKeyframe, _: &mut Self::Context) -> Result<()> {
        self.room
            .borrow_mut()
            .forwarder
            .request_keyframe(self.id, Instant::now())
    }
}

/// The producer's statistics.
#[derive(Message)]
#[rtype(result = "Result<report::ProducerStats>")]
pub struct ProducerStatsRequest;

impl Handler<ProducerStatsRequest> for ProducerActor {
    type Result = Result<report::ProducerStats>;
    fn handle(&mut self, _: ProducerStatsRequest, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        let counters = r
            .forwarder
            .producer_stats(self.id)
            .ok_or_else(|| Error::not_found("producer", self.id))?
            .clone();
        let node = r.producers.get(&self.id);
        Ok(report::ProducerStats {
            object: report::ObjectType::Producer,
            id: self.id,
            router: r.id,
            transport: node.map(|n| n.transport),
            kind: node.map(|n| n.kind),
            paused: node.map(|n| n.paused),
            ssrc: r.forwarder.producer_ssrc(self.id),
            counters,
        })
    }
}

/// The producer's full state.
#[derive(Message)]
#[rtype(result = "Result<report::ProducerDump>")]
pub struct DumpProducer;

impl Handler<DumpProducer> for ProducerActor {
    type Result = Result<report::ProducerDump>;
    fn handle(&mut self, _: DumpProducer, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        let node = r
            .producers
            .get(&self.id)
            .ok_or_else(|| Error::not_found("producer", self.id))?;
        Ok(report::ProducerDump {
            id: self.id,
            router: r.id,
            transport: node.transport,
            kind: node.kind,
            rtp_parameters: node.rtp_parameters.clone(),
            consumable: node.consumable.clone(),
            paused: node.paused,
        })
    }
}
