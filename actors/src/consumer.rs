//! The Consumer actor: one outgoing track fed by one producer.

use crate::room::RoomRef;
use crate::supervision::{CrashGuard, Stop, crash_guard};
use actix::{Actor, ActorContext, Context, Handler, Message};
use std::time::Instant;
use switchboard_core::event::{CloseReason, Event};
use switchboard_core::report;
use switchboard_core::{ConsumerId, Error, Result};

/// Lifecycle and control of one consumer; its packets are written by the room's forwarder.
pub struct ConsumerActor {
    pub(crate) id: ConsumerId,
    pub(crate) room: RoomRef,
    pub(crate) guard: CrashGuard,
}

impl ConsumerActor {
    pub(crate) fn new(id: ConsumerId, room: RoomRef) -> Self {
        Self {
            id,
            guard: crash_guard(&room, move |r, reason| {
                r.close_consumer(id, reason);
            }),
            room,
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.guard.stopped_cleanly();
    }
}

impl Handler<Stop> for ConsumerActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.guard.disarm();
        ctx.stop();
    }
}

/// Pauses (`true`) or resumes (`false`) the consumer.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetConsumerPaused(pub bool);

impl Handler<SetConsumerPaused> for ConsumerActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: SetConsumerPaused, _: &mut Self::Context) -> Result<()> {
        let mut r = self.room.borrow_mut();
        let router = r.id;
        r.forwarder
            .set_consumer_paused(self.id, msg.0, Instant::now())?;
        let node = r
            .consumers
            .get_mut(&self.id)
            .ok_or_else(|| Error::not_found("consumer", self.id))?;
        if node.paused != msg.0 {
            node.paused = msg.0;
            r.emit(Event::ConsumerPaused {
                router,
                consumer: self.id,
                paused: msg.0,
            });
        }
        Ok(())
    }
}

/// Closes the consumer.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseConsumer;

impl Handler<CloseConsumer> for ConsumerActor {
    type Result = Result<()>;
    fn handle(&mut self, _: CloseConsumer, _: &mut Self::Context) -> Result<()> {
        self.room
            .borrow_mut()
            .close_consumer(self.id, CloseReason::Requested);
        Ok(())
    }
}

/// Asks the consumer's producer for a keyframe (throttled per producer).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RequestConsumerKeyframe;

impl Handler<RequestConsumerKeyframe> for ConsumerActor {
    type Result = Result<()>;
    fn handle(&mut self, _: RequestConsumerKeyframe, _: &mut Self::Context) -> Result<()> {
        let mut r = self.room.borrow_mut();
        let producer = r
            .consumers
            .get(&self.id)
            .map(|c| c.producer)
            .ok_or_else(|| Error::not_found("consumer", self.id))?;
        r.forwarder.request_keyframe(producer, Instant::now())
    }
}

/// The consumer's statistics.
#[derive(Message)]
#[rtype(result = "Result<report::ConsumerStats>")]
pub struct ConsumerStatsRequest;

impl Handler<ConsumerStatsRequest> for ConsumerActor {
    type Result = Result<report::ConsumerStats>;
    fn handle(&mut self, _: ConsumerStatsRequest, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        let counters = r
            .forwarder
            .consumer_stats(self.id)
            .ok_or_else(|| Error::not_found("consumer", self.id))?
            .clone();
        let node = r.consumers.get(&self.id);
        let clock_rate = node
            .and_then(|n| n.rtp_parameters.codecs.first())
            .map(|c| c.clock_rate)
            .filter(|rate| *rate > 0);
        let remote = report::RemoteInbound {
            round_trip_time: counters.rtt_ms.map(|ms| ms / 1000.0),
            fraction_lost: f64::from(counters.fraction_lost) / 256.0,
            packets_lost: counters.packets_lost,
            jitter: clock_rate.map(|rate| f64::from(counters.jitter) / f64::from(rate)),
        };
        Ok(report::ConsumerStats {
            object: report::ObjectType::Consumer,
            id: self.id,
            router: r.id,
            transport: node.map(|n| n.transport),
            producer: node.map(|n| n.producer),
            kind: node.map(|n| n.kind),
            paused: node.map(|n| n.paused),
            ssrc: node.and_then(|n| n.rtp_parameters.ssrc()),
            counters,
            remote,
        })
    }
}

/// The consumer's full state.
#[derive(Message)]
#[rtype(result = "Result<report::ConsumerDump>")]
pub struct DumpConsumer;

impl Handler<DumpConsumer> for ConsumerActor {
    type Result = Result<report::ConsumerDump>;
    fn handle(&mut self, _: DumpConsumer, _: &mut Self::Context) -> Self::Result {
        let r = self.room.borrow();
        let node = r
            .consumers
            .get(&self.id)
            .ok_or_else(|| Error::not_found("consumer", self.id))?;
        Ok(report::ConsumerDump {
            id: self.id,
            router: r.id,
            transport: node.transport,
            producer: node.producer,
            kind: node.kind,
            rtp_parameters: node.rtp_parameters.clone(),
            paused: node.paused,
        })
    }
}
