//! One UDP socket per worker, shared by all of the worker's WebRTC connections.
//!
//! Datagrams are demultiplexed by remote address once a connection has been seen from it, and
//! before that by the ICE username fragment in the STUN binding request (`server:client`), the
//! only thing a first packet from a new address can be matched by. Everything else is counted
//! and dropped. Timers of all connections live in one heap per worker, so an idle server does
//! not scan its connections.

use super::sendmmsg::BATCH_DATAGRAMS;
use bytes::BytesMut;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Counters of the worker socket, for stats and tests.
#[derive(Default)]
pub struct NetCounters {
    /// Datagrams received.
    pub received: Cell<u64>,
    /// Datagrams sent.
    pub sent: Cell<u64>,
    /// Sends that failed (socket buffer full, unreachable).
    pub send_errors: Cell<u64>,
    /// Datagrams from an unknown address that were not a STUN request for a known connection.
    pub unmatched: Cell<u64>,
    /// STUN requests naming a username fragment no connection has.
    pub unknown_ufrag: Cell<u64>,
    /// STUN requests for a known connection whose MESSAGE-INTEGRITY does not verify with its
    /// password (a wrong password or a forgery).
    pub stun_auth_failures: Cell<u64>,
    /// Remote addresses forgotten because their connection had learned
    /// [`MAX_ADDRESSES_PER_CONNECTION`] newer ones.
    pub addresses_evicted: Cell<u64>,
    /// Panics inside a connection's handling of a datagram or timer (each fails that
    /// connection; the socket and the worker's other connections carry on).
    pub panics: Cell<u64>,
}

/// Remote addresses one connection may be reached from at a time. A client checks from each
/// of its interfaces (Chromium: loopback, LAN, IPv6) and moves on NAT rebinding or ICE
/// restart; a participant who knows the ICE password could otherwise grow the table with
/// checks from every port it has.
pub const MAX_ADDRESSES_PER_CONNECTION: usize = 16;

/// What the worker socket needs of a connection it routes datagrams and timers to; both
/// engines' connections (the peer connection and the native one) implement it.
pub trait NetConnection {
    /// The key the socket's tables know the connection by.
    fn key(&self) -> u64;
    /// The current local ICE username fragment (empty before the first description).
    fn ufrag(&self) -> String;
    /// The current local ICE password.
    fn pwd(&self) -> String;
    /// A datagram from `from`.
    fn on_datagram(&self, data: BytesMut, from: SocketAddr, now: Instant);
    /// The connection's timer fired.
    fn on_timer(&self, now: Instant);
    /// Records a remote address routed here; returns the oldest to forget beyond `max`.
    fn learn_address(&self, from: SocketAddr, max: usize) -> Option<SocketAddr>;
    /// The connection panicked: it is failed and closed as crashed.
    fn crashed(&self, message: String);
}

/// The worker's socket and its routing tables.
pub struct Net {
    socket: UdpSocket,
    /// The address written into candidates (the announced IP, or the bound one).
    pub announced: SocketAddr,
    by_ufrag: RefCell<HashMap<String, Weak<dyn NetConnection>>>,
    by_addr: RefCell<HashMap<SocketAddr, Weak<dyn NetConnection>>>,
    timers: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    connections: RefCell<HashMap<u64, Weak<dyn NetConnection>>>,
    next_id: Cell<u64>,
    timer_changed: Notify,
    /// Datagrams queued by [`Net::queue_with`] for one `sendmmsg`.
    batch: RefCell<Batch>,
    /// Wakes the flusher when the batch stops being empty.
    batch_queued: Notify,
    /// Counters.
    pub counters: NetCounters,
}

/// Datagrams waiting to go out together: their bytes back to back in one buffer that is
/// reused from batch to batch, so queuing allocates nothing once the buffer has grown.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// (start, end, destination) of each datagram in `bytes`.
    datagrams: Vec<(usize, usize, SocketAddr)>,
}

impl Net {
    /// Wraps a bound socket; `announced` is what candidates advertise.
    pub fn new(socket: UdpSocket, announced: SocketAddr) -> Rc<Self> {
        Rc::new(Self {
            socket,
            announced,
            by_ufrag: RefCell::default(),
            by_addr: RefCell::default(),
            timers: RefCell::default(),
            connections: RefCell::default(),
            next_id: Cell::new(1),
            timer_changed: Notify::new(),
            batch: RefCell::default(),
            batch_queued: Notify::new(),
            counters: NetCounters::default(),
        })
    }

    /// The worker socket's counters as JSON.
    pub fn stats(&self) -> SocketStats {
        let c = &self.counters;
        SocketStats {
            local_address: self.local_addr().map(|a| a.to_string()),
            announced_address: self.announced.to_string(),
            datagrams_received: c.received.get(),
            datagrams_sent: c.sent.get(),
            send_errors: c.send_errors.get(),
            unmatched_datagrams: c.unmatched.get(),
            unknown_ufrag: c.unknown_ufrag.get(),
            stun_auth_failures: c.stun_auth_failures.get(),
            addresses_evicted: c.addresses_evicted.get(),
            panics: c.panics.get(),
            connections: self.connections.borrow().len(),
            addresses: self.by_addr.borrow().len(),
        }
    }

    /// The bound local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Registers a connection for timers; returns its key. Its ICE username fragment is
    /// added by [`Net::rename`] once its first local description exists.
    pub fn register(&self, conn: Weak<dyn NetConnection>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.connections.borrow_mut().insert(id, conn);
        id
    }

    /// Forgets a connection (on close or ICE restart of its ufrag).
    pub fn unregister(&self, id: u64, ufrag: &str) {
        self.by_ufrag.borrow_mut().remove(ufrag);
        self.connections.borrow_mut().remove(&id);
        self.by_addr
            .borrow_mut()
            .retain(|_, c| c.upgrade().is_some_and(|c| c.key() != id));
    }

    /// Keys a connection by its (new) username fragment, forgetting the old one.
    pub fn rename(&self, old: &str, new: &str, conn: Weak<dyn NetConnection>) {
        let mut map = self.by_ufrag.borrow_mut();
        if !old.is_empty() {
            map.remove(old);
        }
        map.insert(new.to_owned(), conn);
    }

    /// Asks for `conn` to be woken at `at`.
    pub fn schedule(&self, id: u64, at: Instant) {
        let mut timers = self.timers.borrow_mut();
        let earliest = timers.peek().map(|Reverse((t, _))| *t);
        timers.push(Reverse((at, id)));
        if earliest.is_none_or(|t| at < t) {
            self.timer_changed.notify_one();
        }
    }

    /// Sends one datagram now; a full socket buffer drops it (counted), as a router must not
    /// wait on one receiver.
    pub fn send(&self, data: &[u8], to: SocketAddr) {
        match self.socket.try_send_to(data, to) {
            Ok(_) => self.counters.sent.set(self.counters.sent.get() + 1),
            Err(_) => self
                .counters
                .send_errors
                .set(self.counters.send_errors.get() + 1),
        }
    }

    /// Queues one datagram for `to`, written by `write` at the end of the batch buffer (it
    /// returns `false` to take nothing back). The batch goes out in one `sendmmsg` when it is
    /// full, and otherwise as soon as the worker thread is done with what it is doing (the
    /// fan-out of one incoming packet, say): the flusher task runs at the next yield.
    pub fn queue_with(&self, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let full = {
            let Ok(mut batch) = self.batch.try_borrow_mut() else {
                return false;
            };
            let start = batch.bytes.len();
            if !write(&mut batch.bytes) {
                batch.bytes.truncate(start);
                return false;
            }
            let end = batch.bytes.len();
            batch.datagrams.push((start, end, to));
            if batch.datagrams.len() == 1 {
                self.batch_queued.notify_one();
            }
            batch.datagrams.len() >= BATCH_DATAGRAMS
        };
        if full {
            self.flush();
        }
        true
    }

    /// Sends the queued datagrams now.
    pub fn flush(&self) {
        let Ok(mut batch) = self.batch.try_borrow_mut() else {
            return;
        };
        if batch.datagrams.is_empty() {
            return;
        }
        let (sent, failed) =
            super::sendmmsg::send_all(&self.socket, &batch.bytes, &batch.datagrams);
        self.counters
            .sent
            .set(self.counters.sent.get() + sent as u64);
        self.counters
            .send_errors
            .set(self.counters.send_errors.get() + failed as u64);
        batch.bytes.clear();
        batch.datagrams.clear();
    }

    /// Sends batches as they are queued, until the worker stops.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            self.batch_queued.notified().await;
            self.flush();
        }
    }

    /// Receives and dispatches datagrams until the socket fails.
    pub async fn run_receiver(self: Rc<Self>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port unreachable surfaces here on Linux; it concerns one peer only.
                    tracing::debug!(error = %e, "webrtc socket receive error");
                    continue;
                }
            };
            self.counters.received.set(self.counters.received.get() + 1);
            self.dispatch(&buf[..n], from);
            // The end of this datagram's fan-out: what it queued goes now, not after the
            // datagrams already waiting in the socket (the receive loop does not yield while
            // there are some).
            self.flush();
        }
    }

    fn dispatch(&self, data: &[u8], from: SocketAddr) {
        let known = self.by_addr.borrow().get(&from).and_then(Weak::upgrade);
        let conn = match known {
            Some(c) => c,
            None => {
                let Some(ufrag) = stun_server_ufrag(data) else {
                    self.counters
                        .unmatched
                        .set(self.counters.unmatched.get() + 1);
                    return;
                };
                let found = self.by_ufrag.borrow().get(ufrag).and_then(Weak::upgrade);
                let Some(c) = found else {
                    self.counters
                        .unknown_ufrag
                        .set(self.counters.unknown_ufrag.get() + 1);
                    return;
                };
                // Only an authenticated request may teach us a new address: otherwise anyone
                // who learned a ufrag could steer datagrams into the connection.
                if !stun_authentic(data, &c.pwd()) {
                    self.counters
                        .stun_auth_failures
                        .set(self.counters.stun_auth_failures.get() + 1);
                    return;
                }
                self.learn(&c, from);
                c
            }
        };
        let handled = switchboard_core::panics::contain(|| {
            #[cfg(feature = "fault-injection")]
            if data.starts_with(switchboard_core::fault::RECEIVE_PANIC) {
                panic!("injected fault in a connection's datagram handling");
            }
            conn.on_datagram(BytesMut::from(data), from, Instant::now());
        });
        if let Err(message) = handled {
            self.crashed(&conn, message);
        }
    }

    /// Routes datagrams from `from` to `conn`, forgetting the connection's oldest address
    /// when it has too many.
    fn learn(&self, conn: &Rc<dyn NetConnection>, from: SocketAddr) {
        let mut by_addr = self.by_addr.borrow_mut();
        by_addr.insert(from, Rc::downgrade(conn));
        if let Some(old) = conn.learn_address(from, MAX_ADDRESSES_PER_CONNECTION) {
            by_addr.remove(&old);
            self.counters
                .addresses_evicted
                .set(self.counters.addresses_evicted.get() + 1);
        }
    }

    /// A connection panicked while handling a datagram or a timer: its state is unknown, so
    /// it stops receiving and is reported failed. The socket's tasks, and so the worker's
    /// other connections, are not affected.
    fn crashed(&self, conn: &Rc<dyn NetConnection>, message: String) {
        self.counters.panics.set(self.counters.panics.get() + 1);
        tracing::error!(ufrag = %conn.ufrag(), %message, "a webrtc connection panicked; it is failed and no longer receives");
        self.unregister(conn.key(), &conn.ufrag());
        conn.crashed(message);
    }

    /// Runs due timers until the worker stops.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            let next = self.timers.borrow().peek().map(|Reverse((t, _))| *t);
            match next {
                Some(at) if at <= Instant::now() => {
                    let due: Vec<u64> = {
                        let mut timers = self.timers.borrow_mut();
                        let now = Instant::now();
                        let mut due = Vec::new();
                        while let Some(Reverse((t, id))) = timers.peek().copied() {
                            if t > now {
                                break;
                            }
                            timers.pop();
                            due.push(id);
                        }
                        due
                    };
                    for id in due {
                        let conn = self.connections.borrow().get(&id).and_then(Weak::upgrade);
                        if let Some(c) = conn {
                            let handled =
                                switchboard_core::panics::contain(|| c.on_timer(Instant::now()));
                            if let Err(message) = handled {
                                self.crashed(&c, message);
                            }
                        }
                    }
                }
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = self.timer_changed.notified() => {}
                    }
                }
                None => self.timer_changed.notified().await,
            }
        }
    }
}

/// Whether a STUN message carries a MESSAGE-INTEGRITY that verifies with this ICE password.
/// Public, with [`stun_server_ufrag`], for the fuzzer (`fuzz/`): they read every datagram from
/// an unknown address.
pub fn stun_authentic(data: &[u8], pwd: &str) -> bool {
    let mut msg = rtc_stun::message::Message::new();
    if msg.unmarshal_binary(data).is_err() {
        return false;
    }
    let Ok(provider) = rtc_crypto::default_provider() else {
        return false;
    };
    rtc_stun::integrity::MessageIntegrity::check(&mut msg, pwd.as_bytes(), provider.crypto())
        .is_ok()
}

/// The server's username fragment from a STUN binding request (`USERNAME = server:client`).
pub fn stun_server_ufrag(data: &[u8]) -> Option<&str> {
    // STUN: first two bits zero, magic cookie at bytes 4..8 (RFC 5389).
    if data.len() < 20 || data[0] & 0xC0 != 0 || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + length)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// A worker socket's counters (`transport.stats` → `plugin.socket`).
#[derive(Serialize)]
pub struct SocketStats {
    /// The bound address.
    pub local_address: Option<String>,
    /// The address candidates carry.
    pub announced_address: String,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams the kernel refused.
    pub send_errors: u64,
    /// Datagrams from an address of no connection, not STUN.
    pub unmatched_datagrams: u64,
    /// Connectivity checks for no known connection.
    pub unknown_ufrag: u64,
    /// Connectivity checks that failed authentication.
    pub stun_auth_failures: u64,
    /// Client addresses forgotten to make room for new ones.
    pub addresses_evicted: u64,
    /// Panics contained while handling a datagram.
    pub panics: u64,
    /// Connections on the socket.
    pub connections: usize,
    /// Client addresses known.
    pub addresses: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn finds_the_server_ufrag_in_a_binding_request() {
        assert_eq!(
            stun_server_ufrag(&binding_request("srv1:cli")),
            Some("srv1")
        );
        let mut truncated = binding_request("srv1:cli");
        truncated.truncate(25);
        assert_eq!(stun_server_ufrag(&truncated), None);
        assert_eq!(stun_server_ufrag(b"\x16\xfe\xfd not stun, DTLS"), None);
        assert_eq!(stun_server_ufrag(&[0u8; 20]), None);
    }
}
