//! The `pipe` transport: router-to-router forwarding, like mediasoup's PipeTransport.
//!
//! Two pipe transports, one in each router, form a link. A consumer on one side's pipe
//! transport sends a producer's packets across; a producer on the other side's pipe transport
//! receives them, and fans out there. RTCP crosses both ways on the same link, so keyframe
//! requests (PLI, FIR) and NACKs from the far side's subscribers reach the publisher.
//!
//! What crosses is a sequence of datagrams laid out as [`frame`] documents. Today they travel
//! through an in-process channel between two workers of one server (the *channel carrier*);
//! the layout is made so that a UDP socket can carry them between machines later.
//!
//! Connecting mirrors a socket: each transport has a local address (in
//! [`Transport::local_parameters`]), and `connect` with the other side's address starts the
//! flow. A full queue drops the frame and counts it; a worker never blocks on a pipe.
//!
//! Options (all optional): `queue_capacity`, the frames buffered towards this transport
//! (default 8192).

pub mod frame;

use bytes::Bytes;
use dashmap::DashMap;
use frame::{Control, Frame};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use switchboard_core::report::plugin_value;
use switchboard_core::transport::{
    MediaSink, PipeEndpoint, Transport, TransportContext, TransportFactory, TransportIo,
    TransportPlugin, TransportState,
};
use switchboard_core::{Error, Result, TransportId, WorkerId};
use tokio::sync::mpsc;

/// The plugin kind.
pub const KIND: &str = "pipe";

/// The carrier this build speaks.
pub const CARRIER: &str = "channel";

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    queue_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_capacity: 8192,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectParams {
    /// The other side's `address`, from its local parameters.
    address: String,
}

/// The in-process address book: every live pipe transport's inbound queue by address.
type Hub = Arc<DashMap<String, mpsc::Sender<Bytes>>>;

/// The `pipe` plugin.
#[derive(Default)]
pub struct PipePlugin {
    hub: Hub,
}

impl PipePlugin {
    /// A new plugin.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl TransportPlugin for PipePlugin {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start_worker(&self, _worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        Ok(Box::new(Factory {
            hub: self.hub.clone(),
        }))
    }
}

struct Factory {
    hub: Hub,
}

/// What one end counted. Both the pump task and the sink live on the transport's worker
/// thread, so plain cells do.
#[derive(Default)]
struct Counters {
    rtp_sent: Cell<u64>,
    rtcp_sent: Cell<u64>,
    bytes_sent: Cell<u64>,
    /// Frames dropped because the far queue was full.
    dropped_full: Cell<u64>,
    /// Frames dropped because the link was not connected yet, or the far end had closed.
    dropped_unconnected: Cell<u64>,
    rtp_received: Cell<u64>,
    rtcp_received: Cell<u64>,
    bytes_received: Cell<u64>,
    /// Datagrams that were not frames (see [`frame::FrameError`]).
    malformed: Cell<u64>,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get() + by);
}

impl TransportFactory for Factory {
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        let options: Options = if options.is_null() {
            Options::default()
        } else {
            serde_json::from_value(options.clone())
                .map_err(|e| Error::invalid(format!("pipe transport options: {e}")))?
        };
        if options.queue_capacity == 0 {
            return Err(Error::invalid(
                "pipe transport options: queue_capacity must be at least 1",
            ));
        }
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let address = format!("{CARRIER}:{}", ctx.id);
        self.hub.insert(address.clone(), tx);
        let counters = Rc::new(Counters::default());
        let sink = Rc::new(PipeSink {
            far: RefCell::new(None),
            counters: counters.clone(),
        });
        let pump =
            tokio::task::spawn_local(pump(rx, ctx.io.clone(), counters.clone(), sink.clone()));
        Ok(Box::new(PipeTransport {
            id: ctx.id,
            address,
            remote: None,
            hub: self.hub.clone(),
            io: ctx.io,
            sink,
            counters,
            pump: Some(pump),
        }))
    }
}

/// Delivers what the far end sent, on this transport's worker thread: one hand-off between
/// threads per frame, then plain calls into the router.
async fn pump(
    mut rx: mpsc::Receiver<Bytes>,
    io: Rc<dyn TransportIo>,
    counters: Rc<Counters>,
    sink: Rc<PipeSink>,
) {
    while let Some(datagram) = rx.recv().await {
        let len = datagram.len() as u64;
        match frame::decode(datagram) {
            Ok(Frame::Rtp(p)) => match switchboard_core::transport::parse_rtp(p) {
                Some(packet) => {
                    bump(&counters.rtp_received, 1);
                    bump(&counters.bytes_received, len);
                    io.on_rtp(packet);
                }
                None => {
                    bump(&counters.malformed, 1);
                    io.on_malformed_rtp();
                }
            },
            Ok(Frame::Rtcp(p)) => {
                bump(&counters.rtcp_received, 1);
                bump(&counters.bytes_received, len);
                io.on_rtcp(p);
            }
            Ok(Frame::Control(Control::Bye)) => {
                sink.far.borrow_mut().take();
                io.on_state(TransportState::Disconnected);
            }
            Err(e) => {
                bump(&counters.malformed, 1);
                tracing::debug!(error = %e, "pipe frame dropped");
            }
        }
    }
}

struct PipeSink {
    /// The far end's inbound queue, once connected.
    far: RefCell<Option<mpsc::Sender<Bytes>>>,
    counters: Rc<Counters>,
}

impl PipeSink {
    fn send(&self, datagram: Bytes) -> bool {
        let far = self.far.borrow();
        let Some(tx) = far.as_ref() else {
            bump(&self.counters.dropped_unconnected, 1);
            return false;
        };
        let len = datagram.len() as u64;
        match tx.try_send(datagram) {
            Ok(()) => {
                bump(&self.counters.bytes_sent, len);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.counters.dropped_full, 1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                bump(&self.counters.dropped_unconnected, 1);
                false
            }
        }
    }
}

impl MediaSink for PipeSink {
    fn send_rtp(&self, packet: &[u8]) {
        if self.send(frame::rtp(packet)) {
            bump(&self.counters.rtp_sent, 1);
        }
    }

    fn send_rtcp(&self, packet: &[u8]) {
        if self.send(frame::rtcp(packet)) {
            bump(&self.counters.rtcp_sent, 1);
        }
    }
}

struct PipeTransport {
    id: TransportId,
    address: String,
    remote: Option<String>,
    hub: Hub,
    io: Rc<dyn TransportIo>,
    sink: Rc<PipeSink>,
    counters: Rc<Counters>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl PipeEndpoint for PipeTransport {
    fn pipe_address(&self) -> String {
        self.address.clone()
    }

    fn connect_pipe(&mut self, remote: &str) -> Result<()> {
        if let Some(connected) = &self.remote {
            return Err(Error::invalid(format!(
                "pipe connect: already connected to {connected:?}"
            )));
        }
        if remote == self.address {
            return Err(Error::invalid(
                "pipe connect: a pipe cannot connect to itself",
            ));
        }
        let tx = self
            .hub
            .get(remote)
            .map(|e| e.value().clone())
            .ok_or_else(|| Error::not_found("pipe address", remote))?;
        *self.sink.far.borrow_mut() = Some(tx);
        self.remote = Some(remote.to_owned());
        self.io.on_state(TransportState::Connected);
        Ok(())
    }
}

/// A pipe's counters (`transport.stats` → `plugin`).
#[derive(Serialize)]
struct PipeStats {
    rtp_sent: u64,
    rtcp_sent: u64,
    bytes_sent: u64,
    frames_dropped_full: u64,
    frames_dropped_unconnected: u64,
    rtp_received: u64,
    rtcp_received: u64,
    bytes_received: u64,
    frames_malformed: u64,
}

/// A pipe's state (`transport.dump` → `plugin`).
#[derive(Serialize)]
struct PipeDump {
    id: TransportId,
    kind: &'static str,
    local: Value,
    remote: Option<String>,
    stats: PipeStats,
}

impl PipeTransport {
    fn counters(&self) -> PipeStats {
        let c = &self.counters;
        PipeStats {
            rtp_sent: c.rtp_sent.get(),
            rtcp_sent: c.rtcp_sent.get(),
            bytes_sent: c.bytes_sent.get(),
            frames_dropped_full: c.dropped_full.get(),
            frames_dropped_unconnected: c.dropped_unconnected.get(),
            rtp_received: c.rtp_received.get(),
            rtcp_received: c.rtcp_received.get(),
            bytes_received: c.bytes_received.get(),
            frames_malformed: c.malformed.get(),
        }
    }
}

impl Transport for PipeTransport {
    fn local_parameters(&self) -> Value {
        json!({ "kind": KIND, "carrier": CARRIER, "address": self.address })
    }

    fn pipe_endpoint(&mut self) -> Option<&mut dyn PipeEndpoint> {
        Some(self)
    }

    fn connect(&mut self, params: &Value) -> Result<Value> {
        let p: ConnectParams = serde_json::from_value(params.clone())
            .map_err(|e| Error::invalid(format!("pipe connect: {e}")))?;
        self.connect_pipe(&p.address)?;
        Ok(Value::Null)
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        self.sink.clone()
    }

    fn stats(&self) -> Value {
        plugin_value(&self.counters())
    }

    fn dump(&self) -> Value {
        plugin_value(&PipeDump {
            id: self.id,
            kind: KIND,
            local: self.local_parameters(),
            remote: self.remote.clone(),
            stats: self.counters(),
        })
    }

    fn close(&mut self) {
        self.hub.remove(&self.address);
        // Tell the far end, so it stops sending into a queue nobody reads.
        let _ = self.sink.send(frame::control(Control::Bye));
        self.sink.far.borrow_mut().take();
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

impl Drop for PipeTransport {
    fn drop(&mut self) {
        if self.pump.is_some() {
            self.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::RouterId;
    use switchboard_core::rtp_parameters::RtpCapabilities;

    #[derive(Default)]
    struct Recorder {
        rtp: RefCell<Vec<rtc_rtp::Packet>>,
        rtcp: RefCell<Vec<Bytes>>,
        states: RefCell<Vec<TransportState>>,
    }

    impl TransportIo for Recorder {
        fn on_rtp(&self, packet: rtc_rtp::Packet) {
            self.rtp.borrow_mut().push(packet);
        }
        fn on_rtcp(&self, packet: Bytes) {
            self.rtcp.borrow_mut().push(packet);
        }
        fn on_state(&self, state: TransportState) {
            self.states.borrow_mut().push(state);
        }
    }

    fn create(
        factory: &mut dyn TransportFactory,
        worker: u32,
    ) -> (Box<dyn Transport>, Rc<Recorder>) {
        let io = Rc::new(Recorder::default());
        let ctx = TransportContext {
            id: TransportId::new(),
            router: RouterId::new(),
            worker: WorkerId(worker),
            capabilities: RtpCapabilities::default(),
            io: io.clone(),
        };
        (factory.create(ctx, &Value::Null).unwrap(), io)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn two_ends_carry_rtp_and_rtcp_both_ways_and_say_bye() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let plugin = PipePlugin::new();
            let mut fa = plugin.start_worker(WorkerId(0)).unwrap();
            let mut fb = plugin.start_worker(WorkerId(1)).unwrap();
            let (mut a, a_io) = create(fa.as_mut(), 0);
            let (mut b, b_io) = create(fb.as_mut(), 1);
            // Nothing crosses before connect; it is counted.
            a.sink().send_rtp(&[0x80, 96, 0, 1]);
            assert_eq!(a.stats()["frames_dropped_unconnected"], 1);
            let err = a
                .connect(&json!({ "address": "channel:nowhere" }))
                .unwrap_err();
            assert_eq!(err.code, switchboard_core::ErrorCode::NotFound);
            a.connect(&json!({ "address": b.local_parameters()["address"] }))
                .unwrap();
            b.connect(&json!({ "address": a.local_parameters()["address"] }))
                .unwrap();
            assert!(
                a.connect(&json!({ "address": "x" })).is_err(),
                "connects once"
            );
            let rtp = [0x80u8, 96, 0, 2, 0, 0, 0, 1, 0, 0, 0, 7, 0xAB];
            a.sink().send_rtp(&rtp);
            let pli = [0x81u8, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 7];
            b.sink().send_rtcp(&pli);
            settle().await;
            {
                let received = b_io.rtp.borrow();
                assert_eq!(received.len(), 1);
                assert_eq!(received[0].header.ssrc, 7);
                assert_eq!(received[0].header.sequence_number, 2);
                assert_eq!(received[0].payload.as_ref(), &[0xAB]);
            }
            assert_eq!(
                a_io.rtcp.borrow().as_slice(),
                &[Bytes::copy_from_slice(&pli)]
            );
            assert_eq!(a.stats()["rtp_sent"], 1);
            assert_eq!(b.stats()["rtp_received"], 1);
            assert_eq!(
                b_io.states.borrow().as_slice(),
                &[TransportState::Connected]
            );
            // A stray datagram in the queue is counted, not delivered.
            plugin
                .hub
                .get(b.local_parameters()["address"].as_str().unwrap())
                .unwrap()
                .try_send(Bytes::from_static(&[0x7f, 1]))
                .unwrap();
            settle().await;
            assert_eq!(b.stats()["frames_malformed"], 1);
            a.close();
            settle().await;
            assert_eq!(
                b_io.states.borrow().last(),
                Some(&TransportState::Disconnected)
            );
            b.sink().send_rtp(&rtp);
            assert_eq!(b.stats()["frames_dropped_unconnected"], 1);
        });
    }
}
