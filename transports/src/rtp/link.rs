//! One plain RTP transport's sockets, remote address, keys and counters: the part the receive
//! tasks and the router's sends share.
//!
//! Everything here runs on the transport's worker thread, so plain `Cell`s and `RefCell`s
//! suffice. A received datagram goes through, in order: the source check, the structural
//! check, the SSRC check, the SRTP SSRC budget, SRTP, and only then to the router; each step
//! that refuses it counts it under its own name, and nothing on this path can panic on what
//! it is given.
//!
//! Two rules hold against strangers (see `docs/security.md`, "Media plane"):
//!
//! - **SRTP state stays bounded.** `rtc-srtp` makes per-SSRC state (a map entry and a replay
//!   window) for every packet it is handed, before authenticating it, and never frees it. So
//!   a packet reaches the inbound context only if its SSRC is one a producer of the
//!   transport declared, or one of at most `rtp.srtp_max_ssrcs` others per direction (RTP,
//!   RTCP); before a comedia transport knows its remote, strangers may take only half of
//!   those. The rest is counted (`srtp_ssrc_limit`) and dropped unread.
//! - **Comedia learns only from plausible packets, and RTP decides.** The RTP address is
//!   learned from the first valid RTP packet of a declared SSRC. Before it, RTCP teaches the
//!   RTCP address only when it is authentic (SRTP) or names one of the transport's streams
//!   (plain RTP); other RTCP is counted (`comedia_refused`) and dropped. When RTP is learned,
//!   the RTCP address follows it with rtcp-mux, and an RTCP address learned from another
//!   host is forgotten: a stranger's early RTCP never locks the real sender out.

use super::packet::{self, Kind};
use bytes::Bytes;
use rtc_srtp::context::Context as SrtpContext;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use switchboard_core::rtp_parameters::RtpParameters;
use switchboard_core::transport::{MediaSink, TransportIo, TransportState};
use switchboard_core::{ConsumerId, ProducerId};
use tokio::net::UdpSocket;

/// Largest datagram accepted. Far above any RTP packet a sane sender makes (they stay under
/// the path MTU); a datagram that fills the buffer completely may have been cut off by the
/// kernel, so it is counted as malformed rather than forwarded truncated.
const RECEIVE_BUFFER: usize = 8192;

/// Counters of one transport. Names match the JSON keys of its stats.
#[derive(Default)]
struct Counters {
    datagrams_received: Cell<u64>,
    bytes_received: Cell<u64>,
    rtp_received: Cell<u64>,
    rtcp_received: Cell<u64>,
    rtp_sent: Cell<u64>,
    rtcp_sent: Cell<u64>,
    bytes_sent: Cell<u64>,
    send_errors: Cell<u64>,
    /// Packets the router sent before the remote address was known.
    no_remote_drops: Cell<u64>,
    /// Datagrams from an address other than the remote's.
    unexpected_source: Cell<u64>,
    /// Datagrams that are not RTP or RTCP, or RTP whose header does not fit.
    malformed_rtp: Cell<u64>,
    /// RTCP whose compound structure does not add up.
    malformed_rtcp: Cell<u64>,
    /// RTP whose SSRC belongs to none of the transport's producers.
    unknown_ssrc: Cell<u64>,
    /// SRTP/SRTCP that fails authentication or replay checks, or arrives before the remote
    /// key does.
    srtp_failures: Cell<u64>,
    /// SRTP/SRTCP dropped before decryption: its SSRC is none a producer declared, and the
    /// context already holds its share of other SSRCs (`rtp.srtp_max_ssrcs`).
    srtp_ssrc_limit: Cell<u64>,
    /// RTCP a comedia transport refused before it knew its remote: plain RTCP that names
    /// none of the transport's streams, which must not teach it where the remote is.
    comedia_refused: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Which SSRCs the transport's producers send, to refuse the rest at the edge, and which
/// its consumers send, to recognise RTCP about them.
#[derive(Default)]
struct Ssrcs {
    by_producer: HashMap<ProducerId, Vec<u32>>,
    known: HashSet<u32>,
    /// Producers that declared no SSRC (matched by the router by `mid`): while there is one,
    /// the transport cannot tell unknown SSRCs apart and leaves that to the router.
    undeclared: usize,
    by_consumer: HashMap<ConsumerId, Vec<u32>>,
}

/// The SSRCs handed to the inbound SRTP context, which keeps state for each for good: those
/// of declared producers (bounded by the producers the backend creates) and at most
/// `max_other` others per direction.
#[derive(Default)]
struct SrtpSsrcs {
    rtp: HashSet<u32>,
    rtcp: HashSet<u32>,
    other_rtp: usize,
    other_rtcp: usize,
}

/// The transport's network side.
pub struct Link {
    io: Rc<dyn TransportIo>,
    rtp_socket: RefCell<Option<Rc<UdpSocket>>>,
    /// The RTCP socket when RTCP has its own port; `None` with rtcp-mux.
    rtcp_socket: RefCell<Option<Rc<UdpSocket>>>,
    /// The local RTP and RTCP addresses (equal with rtcp-mux).
    pub local_rtp: SocketAddr,
    /// See [`Link::local_rtp`].
    pub local_rtcp: SocketAddr,
    comedia: bool,
    remote_rtp: Cell<Option<SocketAddr>>,
    remote_rtcp: Cell<Option<SocketAddr>>,
    /// With SRTP: the context that decrypts what the remote sends (set by `connect`) and the
    /// one that encrypts what the router sends (made with the transport).
    srtp: bool,
    srtp_in: RefCell<Option<SrtpContext>>,
    srtp_out: RefCell<Option<SrtpContext>>,
    srtp_ssrcs: RefCell<SrtpSsrcs>,
    srtp_max_ssrcs: usize,
    /// RTCP shares the RTP port (and so its remote address).
    rtcp_mux: bool,
    ssrcs: RefCell<Ssrcs>,
    state: Cell<TransportState>,
    counters: Counters,
}

impl Link {
    /// Wraps bound sockets; `rtcp_socket` is `None` with rtcp-mux. `srtp_out` is the sending
    /// context when the transport encrypts; `srtp_max_ssrcs` bounds the SSRCs no producer
    /// declared that the receiving context may hold state for, per direction.
    pub fn new(
        io: Rc<dyn TransportIo>,
        rtp_socket: UdpSocket,
        rtcp_socket: Option<UdpSocket>,
        comedia: bool,
        srtp_out: Option<SrtpContext>,
        srtp_max_ssrcs: usize,
    ) -> std::io::Result<Rc<Self>> {
        let local_rtp = rtp_socket.local_addr()?;
        let local_rtcp = match &rtcp_socket {
            Some(s) => s.local_addr()?,
            None => local_rtp,
        };
        let rtcp_mux = rtcp_socket.is_none();
        Ok(Rc::new(Self {
            io,
            rtp_socket: RefCell::new(Some(Rc::new(rtp_socket))),
            rtcp_socket: RefCell::new(rtcp_socket.map(Rc::new)),
            local_rtp,
            local_rtcp,
            comedia,
            remote_rtp: Cell::new(None),
            remote_rtcp: Cell::new(None),
            srtp: srtp_out.is_some(),
            srtp_in: RefCell::new(None),
            srtp_out: RefCell::new(srtp_out),
            srtp_ssrcs: RefCell::default(),
            srtp_max_ssrcs,
            rtcp_mux,
            ssrcs: RefCell::default(),
            state: Cell::new(TransportState::New),
            counters: Counters::default(),
        }))
    }

    /// Starts the receive tasks on the current `LocalSet`; abort them to stop receiving.
    pub fn spawn_receivers(self: &Rc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(s) = self.rtp_socket.borrow().clone() {
            tasks.push(tokio::task::spawn_local(receive(
                Rc::downgrade(self),
                s,
                false,
            )));
        }
        if let Some(s) = self.rtcp_socket.borrow().clone() {
            tasks.push(tokio::task::spawn_local(receive(
                Rc::downgrade(self),
                s,
                true,
            )));
        }
        tasks
    }

    /// Releases the sockets. Sends after this are dropped silently: the router is removing
    /// the transport.
    pub fn close(&self) {
        self.rtp_socket.borrow_mut().take();
        self.rtcp_socket.borrow_mut().take();
    }

    /// Whether the remote side is fixed: by `connect`, or learned (comedia).
    pub fn remote(&self) -> Option<(SocketAddr, SocketAddr)> {
        let rtp = self.remote_rtp.get()?;
        Some((rtp, self.remote_rtcp.get().unwrap_or(rtp)))
    }

    /// Fixes the remote RTP and RTCP addresses (an explicit `connect`).
    pub fn set_remote(&self, rtp: SocketAddr, rtcp: SocketAddr) {
        self.remote_rtp.set(Some(rtp));
        self.remote_rtcp.set(Some(rtcp));
    }

    /// Installs the context that decrypts what the remote side sends.
    pub fn set_srtp_in(&self, ctx: SrtpContext) {
        *self.srtp_in.borrow_mut() = Some(ctx);
    }

    /// Reports a state change to the router, once per change.
    pub fn set_state(&self, state: TransportState) {
        if self.state.replace(state) != state {
            self.io.on_state(state);
        }
    }

    /// Remembers the SSRCs (media and RTX) a new producer of this transport sends.
    pub fn add_producer(&self, id: ProducerId, params: &RtpParameters) {
        let ssrcs: Vec<u32> = params
            .encodings
            .iter()
            .flat_map(|e| e.ssrc.into_iter().chain(e.rtx.as_ref().map(|r| r.ssrc)))
            .collect();
        let mut s = self.ssrcs.borrow_mut();
        if ssrcs.is_empty() {
            s.undeclared += 1;
        }
        s.known.extend(ssrcs.iter().copied());
        s.by_producer.insert(id, ssrcs);
    }

    /// Forgets a closed producer's SSRCs.
    pub fn remove_producer(&self, id: ProducerId) {
        let mut s = self.ssrcs.borrow_mut();
        let Some(ssrcs) = s.by_producer.remove(&id) else {
            return;
        };
        if ssrcs.is_empty() {
            s.undeclared = s.undeclared.saturating_sub(1);
        }
        for ssrc in ssrcs {
            if !s.by_producer.values().any(|v| v.contains(&ssrc)) {
                s.known.remove(&ssrc);
            }
        }
    }

    /// Remembers the SSRCs (media and RTX) a new consumer of this transport sends, so that
    /// RTCP about them is recognised before the remote address is known.
    pub fn add_consumer(&self, id: ConsumerId, params: &RtpParameters) {
        let ssrcs: Vec<u32> = params
            .encodings
            .iter()
            .flat_map(|e| e.ssrc.into_iter().chain(e.rtx.as_ref().map(|r| r.ssrc)))
            .collect();
        self.ssrcs.borrow_mut().by_consumer.insert(id, ssrcs);
    }

    /// Forgets a closed consumer's SSRCs.
    pub fn remove_consumer(&self, id: ConsumerId) {
        self.ssrcs.borrow_mut().by_consumer.remove(&id);
    }

    /// The producers' SSRCs, for dumps.
    pub fn producer_ssrcs(&self) -> Vec<u32> {
        let s = self.ssrcs.borrow();
        let mut known: Vec<u32> = s.known.iter().copied().collect();
        known.sort_unstable();
        known
    }

    fn ssrc_known(&self, ssrc: u32) -> bool {
        let s = self.ssrcs.borrow();
        s.undeclared > 0 || s.known.contains(&ssrc)
    }

    /// The counters and addresses.
    pub fn stats(&self) -> LinkStats {
        let c = &self.counters;
        LinkStats {
            state: self.state.get(),
            local_rtp: self.local_rtp.to_string(),
            local_rtcp: self.local_rtcp.to_string(),
            remote_rtp: self.remote_rtp.get().map(|a| a.to_string()),
            remote_rtcp: self.remote_rtcp.get().map(|a| a.to_string()),
            datagrams_received: c.datagrams_received.get(),
            bytes_received: c.bytes_received.get(),
            rtp_received: c.rtp_received.get(),
            rtcp_received: c.rtcp_received.get(),
            rtp_sent: c.rtp_sent.get(),
            rtcp_sent: c.rtcp_sent.get(),
            bytes_sent: c.bytes_sent.get(),
            send_errors: c.send_errors.get(),
            no_remote_drops: c.no_remote_drops.get(),
            unexpected_source: c.unexpected_source.get(),
            malformed_rtp: c.malformed_rtp.get(),
            malformed_rtcp: c.malformed_rtcp.get(),
            unknown_ssrc: c.unknown_ssrc.get(),
            srtp_failures: c.srtp_failures.get(),
            srtp_ssrc_limit: c.srtp_ssrc_limit.get(),
            srtp_ssrcs: self.srtp_ssrc_count(),
            comedia_refused: c.comedia_refused.get(),
        }
    }

    /// One datagram from `from`, on the RTCP socket when `rtcp_port`.
    pub fn on_datagram(&self, data: &[u8], from: SocketAddr, rtcp_port: bool) {
        let c = &self.counters;
        bump(&c.datagrams_received);
        c.bytes_received
            .set(c.bytes_received.get() + data.len() as u64);
        let kind = if data.len() >= RECEIVE_BUFFER {
            None
        } else {
            packet::classify(data)
        };
        match (kind, rtcp_port) {
            (Some(Kind::Rtcp), _) => self.on_rtcp(data, from),
            (Some(Kind::Rtp), false) => self.on_rtp(data, from),
            (_, true) => bump(&c.malformed_rtcp),
            (None, false) => bump(&c.malformed_rtp),
        }
    }

    /// Whether the remote address is known (fixed by `connect`, or learned).
    fn remote_known(&self) -> bool {
        self.remote_rtp.get().is_some() || self.remote_rtcp.get().is_some()
    }

    /// Whether the inbound SRTP context may be handed a packet of `ssrc` (an RTCP packet's
    /// sender SSRC when `rtcp`): always for a declared producer SSRC, otherwise only for
    /// SSRCs already handed to it or while fewer than `srtp_max_ssrcs` others have been (half
    /// of them before a comedia transport knows its remote, so that strangers cannot use up
    /// the real remote's share).
    fn srtp_admits(&self, ssrc: u32, rtcp: bool) -> bool {
        let declared = self.ssrcs.borrow().known.contains(&ssrc);
        let mut handed = self.srtp_ssrcs.borrow_mut();
        let handed = &mut *handed;
        let (set, others) = if rtcp {
            (&mut handed.rtcp, &mut handed.other_rtcp)
        } else {
            (&mut handed.rtp, &mut handed.other_rtp)
        };
        if set.contains(&ssrc) {
            return true;
        }
        if declared {
            set.insert(ssrc);
            return true;
        }
        let share = if self.remote_known() {
            self.srtp_max_ssrcs
        } else {
            self.srtp_max_ssrcs / 2
        };
        if *others >= share {
            return false;
        }
        *others += 1;
        set.insert(ssrc);
        true
    }

    /// SSRCs the inbound SRTP context holds state for (RTP and RTCP).
    fn srtp_ssrc_count(&self) -> usize {
        let s = self.srtp_ssrcs.borrow();
        s.rtp.len() + s.rtcp.len()
    }

    /// Whether plain RTCP names one of the transport's streams (a producer's SSRC as sender,
    /// a consumer's in a report block or as the subject of feedback).
    fn rtcp_plausible(&self, plain: &[u8]) -> bool {
        let s = self.ssrcs.borrow();
        packet::rtcp_names_stream(
            plain,
            |ssrc| s.known.contains(&ssrc),
            |ssrc| s.by_consumer.values().any(|v| v.contains(&ssrc)),
        )
    }

    fn on_rtp(&self, data: &[u8], from: SocketAddr) {
        let c = &self.counters;
        // The RTP address is fixed (by `connect`) or learned from the first valid RTP packet
        // (comedia). RTCP learned earlier does not constrain it: RTP decides.
        let learn = match self.remote_rtp.get() {
            Some(addr) if addr == from => false,
            None if self.comedia => true,
            _ => {
                bump(&c.unexpected_source);
                return;
            }
        };
        let Some(header) = packet::rtp_header(data) else {
            bump(&c.malformed_rtp);
            return;
        };
        if !self.ssrc_known(header.ssrc) {
            bump(&c.unknown_ssrc);
            return;
        }
        let plain = if self.srtp {
            if !self.srtp_admits(header.ssrc, false) {
                bump(&c.srtp_ssrc_limit);
                return;
            }
            let decrypted = match self.srtp_in.borrow_mut().as_mut() {
                Some(ctx) => ctx.decrypt_rtp(data).ok(),
                None => None,
            };
            match decrypted {
                Some(p) => p.freeze(),
                None => {
                    bump(&c.srtp_failures);
                    return;
                }
            }
        } else {
            Bytes::copy_from_slice(data)
        };
        if !packet::padding_fits(&plain, header.header_len) {
            bump(&c.malformed_rtp);
            return;
        }
        // Parsed before anything is learned from it: a datagram that is not RTP teaches comedia
        // nothing.
        let Some(packet) = switchboard_core::transport::parse_rtp(plain) else {
            bump(&c.malformed_rtp);
            self.io.on_malformed_rtp();
            return;
        };
        if learn {
            self.remote_rtp.set(Some(from));
            if self.rtcp_mux {
                // One port for both: RTCP goes where RTP comes from.
                self.remote_rtcp.set(Some(from));
            } else if self.remote_rtcp.get().is_some_and(|r| r.ip() != from.ip()) {
                // RTCP learned from another host than the sender's: forget it, and learn the
                // sender's own RTCP port when it comes.
                self.remote_rtcp.set(None);
            }
            self.set_state(TransportState::Connected);
        }
        bump(&c.rtp_received);
        self.io.on_rtp(packet);
    }

    fn on_rtcp(&self, data: &[u8], from: SocketAddr) {
        let c = &self.counters;
        let rtcp = self.remote_rtcp.get();
        let rtp = self.remote_rtp.get();
        // A peer may send RTCP from its RTP port (symmetric RTP) as well as its RTCP port.
        // Otherwise the RTCP address is fixed, or (comedia) learned: from the RTP sender's
        // host once RTP is known, from anyone plausible before.
        let learn = match (rtp, rtcp) {
            (Some(r), _) if r == from => false,
            (_, Some(addr)) if addr == from => false,
            (_, Some(_)) => {
                bump(&c.unexpected_source);
                return;
            }
            (Some(r), None) if self.comedia && r.ip() == from.ip() => true,
            (None, None) if self.comedia => true,
            _ => {
                bump(&c.unexpected_source);
                return;
            }
        };
        let plain = if self.srtp {
            // The sender SSRC is in the clear; classify() guaranteed four bytes, not eight.
            let Some(ssrc) = packet::rtcp_sender_ssrc(data) else {
                bump(&c.malformed_rtcp);
                return;
            };
            if !self.srtp_admits(ssrc, true) {
                bump(&c.srtp_ssrc_limit);
                return;
            }
            let decrypted = match self.srtp_in.borrow_mut().as_mut() {
                Some(ctx) => ctx.decrypt_rtcp(data).ok(),
                None => None,
            };
            match decrypted {
                Some(p) => p.freeze(),
                None => {
                    bump(&c.srtp_failures);
                    return;
                }
            }
        } else {
            Bytes::copy_from_slice(data)
        };
        if !packet::rtcp_compound_fits(&plain) {
            bump(&c.malformed_rtcp);
            return;
        }
        // Before the RTP sender is known, plain RTCP proves nothing about who sent it: only
        // RTCP about the transport's own streams may teach the RTCP address (SRTCP proved
        // itself by authenticating).
        if learn && rtp.is_none() && !self.srtp && !self.rtcp_plausible(&plain) {
            bump(&c.comedia_refused);
            return;
        }
        if learn {
            self.remote_rtcp.set(Some(from));
        }
        bump(&c.rtcp_received);
        self.io.on_rtcp(plain);
    }

    fn send(&self, data: &[u8], rtcp: bool) {
        let c = &self.counters;
        let to = if rtcp {
            // Until comedia has seen the remote's RTCP port, its RTP port is the best guess:
            // with rtcp-mux it is the right one.
            self.remote_rtcp.get().or(self.remote_rtp.get())
        } else {
            self.remote_rtp.get()
        };
        let Some(to) = to else {
            bump(&c.no_remote_drops);
            return;
        };
        let socket = if rtcp {
            self.rtcp_socket
                .borrow()
                .clone()
                .or_else(|| self.rtp_socket.borrow().clone())
        } else {
            self.rtp_socket.borrow().clone()
        };
        let Some(socket) = socket else {
            return;
        };
        let encrypted;
        let out = if self.srtp {
            let result = match self.srtp_out.borrow_mut().as_mut() {
                Some(ctx) if rtcp => ctx.encrypt_rtcp(data).ok(),
                Some(ctx) => ctx.encrypt_rtp(data).ok(),
                None => None,
            };
            match result {
                Some(b) => {
                    encrypted = b;
                    &encrypted[..]
                }
                None => {
                    bump(&c.send_errors);
                    return;
                }
            }
        } else {
            data
        };
        // Never wait on one receiver: a full socket buffer drops the packet (counted).
        match socket.try_send_to(out, to) {
            Ok(n) => {
                bump(if rtcp { &c.rtcp_sent } else { &c.rtp_sent });
                c.bytes_sent.set(c.bytes_sent.get() + n as u64);
            }
            Err(_) => bump(&c.send_errors),
        }
    }
}

impl MediaSink for Link {
    fn send_rtp(&self, packet: &[u8]) {
        self.send(packet, false);
    }

    fn send_rtcp(&self, packet: &[u8]) {
        self.send(packet, true);
    }
}

/// Receives datagrams on one socket until the task is aborted or the link is gone.
async fn receive(link: Weak<Link>, socket: Rc<UdpSocket>, rtcp_port: bool) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // ICMP port-unreachable for an earlier send surfaces here on Linux; it
                // concerns that send only, so the socket keeps receiving.
                tracing::debug!(error = %e, "rtp socket receive error");
                continue;
            }
        };
        let Some(link) = link.upgrade() else {
            return;
        };
        link.on_datagram(&buf[..n], from, rtcp_port);
    }
}

/// An `rtp` transport's counters and addresses (`transport.stats` → `plugin`).
#[derive(Serialize)]
pub struct LinkStats {
    pub state: TransportState,
    pub local_rtp: String,
    pub local_rtcp: String,
    pub remote_rtp: Option<String>,
    pub remote_rtcp: Option<String>,
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub rtp_received: u64,
    pub rtcp_received: u64,
    pub rtp_sent: u64,
    pub rtcp_sent: u64,
    pub bytes_sent: u64,
    pub send_errors: u64,
    pub no_remote_drops: u64,
    pub unexpected_source: u64,
    pub malformed_rtp: u64,
    pub malformed_rtcp: u64,
    pub unknown_ssrc: u64,
    pub srtp_failures: u64,
    pub srtp_ssrc_limit: u64,
    pub srtp_ssrcs: usize,
    pub comedia_refused: u64,
}

#[cfg(test)]
mod tests;
