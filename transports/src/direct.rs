//! The `direct` transport: RTP and RTCP in and out of the server from Rust code in the same
//! process, like mediasoup's DirectTransport.
//!
//! The transport itself lives on its worker thread; Rust code elsewhere reaches it through a
//! [`DirectEndpoint`], found with [`DirectPlugin::endpoint`] by transport id. Both directions
//! are bounded queues: a full queue drops (and counts) instead of blocking a worker.

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_core::report::plugin_value;
use switchboard_core::transport::{
    MediaSink, Transport, TransportContext, TransportFactory, TransportPlugin, TransportState,
};
use switchboard_core::{Error, ErrorCode, Result, TransportId, WorkerId};
use tokio::sync::{Mutex, mpsc};

/// The plugin kind.
pub const KIND: &str = "direct";

/// A packet crossing a direct transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectPacket {
    /// An RTP packet.
    Rtp(Bytes),
    /// An RTCP compound packet.
    Rtcp(Bytes),
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    /// Packets buffered in each direction.
    queue_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_capacity: 4096,
        }
    }
}

#[derive(Default)]
struct Counters {
    injected: AtomicU64,
    inject_dropped: AtomicU64,
    delivered: AtomicU64,
    deliver_dropped: AtomicU64,
}

/// The Rust side of one direct transport. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct DirectEndpoint {
    inject: mpsc::Sender<DirectPacket>,
    outbound: Arc<Mutex<mpsc::Receiver<DirectPacket>>>,
    counters: Arc<Counters>,
}

impl DirectEndpoint {
    /// Injects an RTP packet as if the transport had received it.
    pub fn send_rtp(&self, packet: Bytes) -> Result<()> {
        self.inject(DirectPacket::Rtp(packet))
    }

    /// Injects an RTCP compound packet (feedback such as NACK or PLI, or reports).
    pub fn send_rtcp(&self, packet: Bytes) -> Result<()> {
        self.inject(DirectPacket::Rtcp(packet))
    }

    fn inject(&self, packet: DirectPacket) -> Result<()> {
        match self.inject.try_send(packet) {
            Ok(()) => {
                self.counters.injected.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.inject_dropped.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(
                    ErrorCode::LimitExceeded,
                    "direct transport queue is full",
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::closed("direct transport")),
        }
    }

    /// The next packet the router sent out of this transport; `None` once it is closed.
    pub async fn recv(&self) -> Option<DirectPacket> {
        self.outbound.lock().await.recv().await
    }

    /// The next packet if one is waiting.
    pub fn try_recv(&self) -> Option<DirectPacket> {
        self.outbound.try_lock().ok()?.try_recv().ok()
    }
}

/// The `direct` plugin. Keep the `Arc` to reach endpoints of the transports it creates.
#[derive(Default)]
pub struct DirectPlugin {
    endpoints: Arc<DashMap<TransportId, DirectEndpoint>>,
}

impl DirectPlugin {
    /// A new plugin.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The endpoint of a live direct transport.
    pub fn endpoint(&self, id: TransportId) -> Option<DirectEndpoint> {
        self.endpoints.get(&id).map(|e| e.value().clone())
    }
}

impl TransportPlugin for DirectPlugin {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start_worker(&self, _worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        Ok(Box::new(Factory {
            endpoints: self.endpoints.clone(),
        }))
    }
}

struct Factory {
    endpoints: Arc<DashMap<TransportId, DirectEndpoint>>,
}

impl TransportFactory for Factory {
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        let options: Options = if options.is_null() {
            Options::default()
        } else {
            serde_json::from_value(options.clone())
                .map_err(|e| Error::invalid(format!("direct transport options: {e}")))?
        };
        if options.queue_capacity == 0 {
            return Err(Error::invalid(
                "direct transport options: queue_capacity must be at least 1",
            ));
        }
        let (inject_tx, mut inject_rx) = mpsc::channel(options.queue_capacity);
        let (out_tx, out_rx) = mpsc::channel(options.queue_capacity);
        let counters = Arc::new(Counters::default());
        let endpoint = DirectEndpoint {
            inject: inject_tx,
            outbound: Arc::new(Mutex::new(out_rx)),
            counters: counters.clone(),
        };
        self.endpoints.insert(ctx.id, endpoint);
        let io = ctx.io.clone();
        // The injected packets reach the router on its own thread: one hand-off per packet.
        let pump = tokio::task::spawn_local(async move {
            while let Some(packet) = inject_rx.recv().await {
                match packet {
                    DirectPacket::Rtp(p) => match switchboard_core::transport::parse_rtp(p) {
                        Some(packet) => io.on_rtp(packet),
                        None => io.on_malformed_rtp(),
                    },
                    DirectPacket::Rtcp(p) => io.on_rtcp(p),
                }
            }
        });
        ctx.io.on_state(TransportState::Connected);
        Ok(Box::new(DirectTransport {
            id: ctx.id,
            endpoints: self.endpoints.clone(),
            sink: Rc::new(DirectSink {
                tx: out_tx,
                counters: counters.clone(),
                sent_rtp: Cell::new(0),
            }),
            counters,
            pump: Some(pump),
        }))
    }
}

struct DirectSink {
    tx: mpsc::Sender<DirectPacket>,
    counters: Arc<Counters>,
    sent_rtp: Cell<u64>,
}

impl DirectSink {
    fn deliver(&self, packet: DirectPacket) {
        if self.tx.try_send(packet).is_ok() {
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters
                .deliver_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl MediaSink for DirectSink {
    fn send_rtp(&self, packet: &[u8]) {
        self.sent_rtp.set(self.sent_rtp.get() + 1);
        self.deliver(DirectPacket::Rtp(Bytes::copy_from_slice(packet)));
    }

    fn send_rtcp(&self, packet: &[u8]) {
        self.deliver(DirectPacket::Rtcp(Bytes::copy_from_slice(packet)));
    }
}

struct DirectTransport {
    id: TransportId,
    endpoints: Arc<DashMap<TransportId, DirectEndpoint>>,
    sink: Rc<DirectSink>,
    counters: Arc<Counters>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

/// A direct transport's counters (`transport.stats` → `plugin`).
#[derive(Serialize)]
struct DirectStats {
    packets_injected: u64,
    packets_inject_dropped: u64,
    packets_delivered: u64,
    packets_deliver_dropped: u64,
    rtp_sent: u64,
}

/// A direct transport's state (`transport.dump` → `plugin`).
#[derive(Serialize)]
struct DirectDump {
    id: TransportId,
    kind: &'static str,
    stats: DirectStats,
}

impl DirectTransport {
    fn counters(&self) -> DirectStats {
        let c = &self.counters;
        DirectStats {
            packets_injected: c.injected.load(Ordering::Relaxed),
            packets_inject_dropped: c.inject_dropped.load(Ordering::Relaxed),
            packets_delivered: c.delivered.load(Ordering::Relaxed),
            packets_deliver_dropped: c.deliver_dropped.load(Ordering::Relaxed),
            rtp_sent: self.sink.sent_rtp.get(),
        }
    }
}

impl Transport for DirectTransport {
    fn local_parameters(&self) -> Value {
        json!({ "kind": KIND })
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        self.sink.clone()
    }

    fn stats(&self) -> Value {
        plugin_value(&self.counters())
    }

    fn dump(&self) -> Value {
        plugin_value(&DirectDump {
            id: self.id,
            kind: KIND,
            stats: self.counters(),
        })
    }

    fn close(&mut self) {
        self.endpoints.remove(&self.id);
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
    }
}

impl Drop for DirectTransport {
    fn drop(&mut self) {
        self.close();
    }
}
