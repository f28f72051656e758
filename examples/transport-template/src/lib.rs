//! # A template for your own Switchboard transport plugin
//!
//! Copy this crate, rename it, and replace [`EchoPlugin`] with the transport your team needs
//! (a recorder's file replay, a SIP gateway's media leg, a test source). It shows the whole
//! shape of a plugin in one file:
//!
//! - a [`TransportPlugin`] registered once by kind (`echo`), started on every worker thread
//!   ([`TransportPlugin::start_worker`]), where per-worker state (a socket) would live;
//! - a [`TransportFactory`] creating one [`Transport`] per `transport.create`, from JSON
//!   options: the `[transports.echo]` table of the configuration overlaid with the request's
//!   own options, so the plugin needs no section of the core configuration;
//! - the transport's [`MediaSink`], which the router calls for every packet of every consumer
//!   on the transport, synchronously and on the worker thread: it must not block and must
//!   not call back into the router (it queues);
//! - the way back into the room, [`TransportIo`]: packets it receives, RTCP, state changes;
//! - typed statistics for `transport.stats`.
//!
//! What it does: every RTP packet a consumer on an `echo` transport sends comes back into the
//! room as a packet of whichever producer the backend created on the same transport with the
//! consumer's parameters. A room can so hear itself (a loopback test of a call's media path
//! without a client), and the plugin shows both directions of a transport in under 200 lines.
//!
//! `examples/switchboard-echo.rs` is a server binary with it registered next to the
//! built-ins; `docs/architecture.md` ("Adding a transport plugin") walks through it.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;
use switchboard_core::middleware::deps::bytes::Bytes;
use switchboard_core::middleware::deps::serde_json::{self, Value};
use switchboard_core::report::plugin_value;
use switchboard_core::transport::{
    MediaSink, Transport, TransportContext, TransportFactory, TransportIo, TransportPlugin,
    TransportState, parse_rtp,
};
use switchboard_core::{Error, Result, WorkerId};
use tokio::sync::mpsc;

/// The plugin's kind, as `transport.create` names it.
pub const KIND: &str = "echo";

/// The `echo` transport plugin. Register it next to the built-ins (see
/// `switchboard::Plugins`).
pub struct EchoPlugin;

impl TransportPlugin for EchoPlugin {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start_worker(&self, _worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        // Nothing to share between a worker's echo transports; a plugin with a socket per
        // worker would open it here.
        Ok(Box::new(EchoFactory))
    }
}

/// An `echo` transport's options: `[transports.echo]` overlaid with `transport.create`'s.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EchoOptions {
    /// Packets waiting to be echoed at most; more are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for EchoOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
        }
    }
}

impl EchoOptions {
    /// Reads options as `transport.create` and the configuration give them.
    pub fn from_value(options: &Value) -> Result<Self> {
        let options: Self = match options {
            Value::Null => Self::default(),
            other => serde_json::from_value(other.clone())
                .map_err(|e| Error::invalid(format!("echo transport options: {e}")))?,
        };
        if options.queue_capacity == 0 {
            return Err(Error::invalid(
                "echo transport options: queue_capacity must be at least 1",
            ));
        }
        Ok(options)
    }
}

/// Creates the echo transports of one worker.
struct EchoFactory;

impl TransportFactory for EchoFactory {
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        let options = EchoOptions::from_value(options)?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let sink = Rc::new(EchoSink {
            queue: tx,
            counters: Counters::default(),
        });
        // The sink is called with the room busy forwarding: what it queues goes back in here,
        // a moment later, when the room is free again.
        let pump = tokio::task::spawn_local(pump(rx, ctx.io.clone(), sink.clone()));
        ctx.io.on_state(TransportState::Connected);
        Ok(Box::new(EchoTransport {
            sink,
            pump: Some(pump),
        }))
    }
}

async fn pump(mut queue: mpsc::Receiver<Bytes>, io: Rc<dyn TransportIo>, sink: Rc<EchoSink>) {
    while let Some(datagram) = queue.recv().await {
        match parse_rtp(datagram) {
            Some(packet) => {
                bump(&sink.counters.echoed);
                io.on_rtp(packet);
            }
            None => io.on_malformed_rtp(),
        }
    }
}

/// One echo transport.
struct EchoTransport {
    sink: Rc<EchoSink>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

/// What an echo transport counted (`transport.stats` → `plugin`).
#[derive(Default)]
struct Counters {
    queued: Cell<u64>,
    echoed: Cell<u64>,
    dropped: Cell<u64>,
    rtcp_ignored: Cell<u64>,
}

#[derive(Serialize)]
struct EchoStats {
    packets_queued: u64,
    packets_echoed: u64,
    packets_dropped: u64,
    rtcp_ignored: u64,
}

/// Where the router writes the consumers' packets.
struct EchoSink {
    queue: mpsc::Sender<Bytes>,
    counters: Counters,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl MediaSink for EchoSink {
    fn send_rtp(&self, packet: &[u8]) {
        // Never wait here: the router is in the middle of its fan-out.
        match self.queue.try_send(Bytes::copy_from_slice(packet)) {
            Ok(()) => bump(&self.counters.queued),
            Err(_) => bump(&self.counters.dropped),
        }
    }

    fn send_rtcp(&self, _packet: &[u8]) {
        // Sender reports for the consumers have no one to go to.
        bump(&self.counters.rtcp_ignored);
    }
}

impl Transport for EchoTransport {
    fn local_parameters(&self) -> Value {
        Value::Object(serde_json::Map::from_iter([(
            "kind".to_owned(),
            Value::from(KIND),
        )]))
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        self.sink.clone()
    }

    fn stats(&self) -> Value {
        let c = &self.sink.counters;
        plugin_value(&EchoStats {
            packets_queued: c.queued.get(),
            packets_echoed: c.echoed.get(),
            packets_dropped: c.dropped.get(),
            rtcp_ignored: c.rtcp_ignored.get(),
        })
    }

    fn close(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

impl Drop for EchoTransport {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use switchboard_core::middleware::deps::rtc_rtp::Packet;
    use switchboard_core::middleware::deps::rtc_rtp::header::Header;
    use switchboard_core::middleware::deps::rtc_shared::marshal::Marshal;
    use switchboard_core::rtp_parameters::RtpCapabilities;
    use switchboard_core::{RouterId, TransportId};

    #[derive(Default)]
    struct Io {
        rtp: RefCell<Vec<Packet>>,
        malformed: Cell<u32>,
        state: Cell<Option<TransportState>>,
    }

    impl TransportIo for Io {
        fn on_rtp(&self, packet: Packet) {
            self.rtp.borrow_mut().push(packet);
        }
        fn on_malformed_rtp(&self) {
            self.malformed.set(self.malformed.get() + 1);
        }
        fn on_rtcp(&self, _packet: Bytes) {}
        fn on_state(&self, state: TransportState) {
            self.state.set(Some(state));
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        Packet {
            header: Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                ssrc: 7,
                ..Default::default()
            },
            payload: Bytes::from(vec![seq as u8; 4]),
        }
        .marshal()
        .expect("marshal")
        .to_vec()
    }

    #[test]
    fn options_default_and_refuse_what_they_do_not_know() {
        assert_eq!(
            EchoOptions::from_value(&Value::Null)
                .expect("defaults")
                .queue_capacity,
            256
        );
        let e = EchoOptions::from_value(&serde_json::json!({ "queue": 1 })).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(EchoOptions::from_value(&serde_json::json!({ "queue_capacity": 0 })).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn what_the_router_sends_comes_back_in_order_and_a_full_queue_counts_drops() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let io = Rc::new(Io::default());
                let ctx = TransportContext {
                    id: TransportId::new(),
                    router: RouterId::new(),
                    worker: WorkerId(0),
                    capabilities: RtpCapabilities::default(),
                    io: io.clone(),
                };
                let options = serde_json::json!({ "queue_capacity": 3 });
                let transport = EchoFactory.create(ctx, &options).expect("created");
                assert_eq!(io.state.get(), Some(TransportState::Connected));
                let sink = transport.sink();
                for seq in 0..5 {
                    sink.send_rtp(&rtp(seq));
                }
                sink.send_rtp(b"not rtp");
                // Nothing is delivered while the "router" is still sending.
                assert!(io.rtp.borrow().is_empty());
                while io.rtp.borrow().len() < 3 {
                    tokio::task::yield_now().await;
                }
                let seqs: Vec<u16> = io
                    .rtp
                    .borrow()
                    .iter()
                    .map(|p| p.header.sequence_number)
                    .collect();
                assert_eq!(seqs, [0, 1, 2]);
                let stats = transport.stats();
                assert_eq!(stats["packets_queued"], 3);
                assert_eq!(stats["packets_dropped"], 3, "{stats}");
                assert_eq!(stats["packets_echoed"], 3);
            })
            .await;
    }
}
