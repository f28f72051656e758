//! The `rtp` transport: plain RTP/RTCP over UDP, for ffmpeg, GStreamer, SIP gateways and
//! anything else that speaks RTP without ICE or DTLS (mediasoup calls it a PlainTransport).
//!
//! Each transport binds its own UDP socket (two when RTCP has its own port), from the
//! configured port range or at a port the creator names. What arrives is checked at the
//! edge and handed to the router; what the router sends goes out to the remote address:
//!
//! - **Remote address.** Either given with `connect {ip, port, rtcp_port?}`, or, with
//!   `comedia`, learned from the traffic: the RTP address from the first valid RTP packet, the
//!   RTCP address from the RTP sender's host (with rtcp-mux, the RTP address itself), or,
//!   before any RTP, from RTCP that authenticates or names the transport's streams (other
//!   RTCP is counted as `comedia_refused`). Packets from any other address are counted
//!   (`unexpected_source`) and dropped.
//! - **SRTP state.** Only SRTP of declared SSRCs, or of at most `rtp.srtp_max_ssrcs` others
//!   per direction, reaches the decrypting context (`srtp_ssrc_limit` counts the rest): the
//!   SRTP library keeps state for every SSRC it sees, authentic or not.
//! - **RTCP.** On the RTP port (`rtcp_mux`, the default) or on a port of its own.
//! - **SRTP.** With `srtp`, the transport makes a master key for what it sends and reports
//!   it in its local parameters; the remote side's key comes with `connect`. Keys travel as
//!   SDES writes them: a suite name and `base64(key || salt)` ([`srtp`]).
//! - **Producing.** Create producers with their SSRCs as usual; RTP whose SSRC no producer of
//!   the transport declares is counted (`unknown_ssrc`) and dropped.
//! - **Consuming.** Consumers send to the remote address. `request("sdp")` returns an SDP
//!   description of them that ffmpeg (`-protocol_whitelist file,udp,rtp -i x.sdp`) and
//!   other RTP receivers open directly ([`sdp`]).
//!
//! Bad input never reaches the router: datagrams that are not RTP/RTCP, RTP whose header
//! does not fit, RTCP whose compound lengths do not add up, and SRTP that fails
//! authentication are each counted under their own name in the transport's stats.

mod link;
pub mod packet;
pub mod sdp;
pub mod srtp;

use link::Link;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use srtp::SrtpParameters;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use switchboard_core::report::plugin_value;
use switchboard_core::rtp_parameters::{MediaKind, RtpCapabilities, RtpParameters};
use switchboard_core::transport::{
    MediaSink, RequestOutcome, Transport, TransportContext, TransportFactory, TransportPlugin,
    TransportState,
};
use switchboard_core::{ConsumerId, Error, ErrorCode, ProducerId, Result, WorkerId};

/// The plugin kind.
pub const KIND: &str = "rtp";

/// Server-wide settings of the `rtp` plugin: where transports bind unless their options say
/// otherwise, what they announce, and the limits on hostile input.
pub use crate::settings::RtpSettings;

/// The `rtp` plugin.
pub struct RtpPlugin {
    settings: RtpSettings,
}

impl RtpPlugin {
    /// A plugin with these settings.
    pub fn new(settings: RtpSettings) -> Arc<Self> {
        Arc::new(Self { settings })
    }
}

impl TransportPlugin for RtpPlugin {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start_worker(&self, worker: WorkerId) -> Result<Box<dyn TransportFactory>> {
        // Nothing is bound until a transport asks: each has sockets of its own.
        let listen = &self.settings.listen;
        let span = u32::from(listen.port_max.saturating_sub(listen.port_min)) + 1;
        // Workers start their search at different points of the range, so that they do not
        // all try the same ports first.
        let offset = worker.0.wrapping_mul(span / 8 + 1) % span;
        Ok(Box::new(Factory {
            settings: self.settings.clone(),
            cursor: offset,
        }))
    }
}

/// Options of `transport.create` for kind `rtp`.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    listen_ip: Option<IpAddr>,
    announced_ip: Option<IpAddr>,
    port: u16,
    rtcp_mux: bool,
    rtcp_port: u16,
    comedia: bool,
    srtp: bool,
    srtp_crypto_suite: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen_ip: None,
            announced_ip: None,
            port: 0,
            rtcp_mux: true,
            rtcp_port: 0,
            comedia: false,
            srtp: false,
            srtp_crypto_suite: None,
        }
    }
}

fn options_error(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("rtp transport options: {message}"))
}

impl Options {
    fn parse(v: &Value) -> Result<Self> {
        let o: Options = if v.is_null() {
            Options::default()
        } else {
            serde_json::from_value(v.clone()).map_err(options_error)?
        };
        if o.rtcp_mux && o.rtcp_port != 0 {
            return Err(options_error(
                "rtcp_port needs rtcp_mux = false (with rtcp-mux RTCP shares the RTP port)",
            ));
        }
        if o.rtcp_port != 0 && o.rtcp_port == o.port {
            return Err(options_error("rtcp_port must differ from port"));
        }
        if o.srtp_crypto_suite.is_some() && !o.srtp {
            return Err(options_error("srtp_crypto_suite needs srtp = true"));
        }
        if o.announced_ip.is_some_and(|ip| ip.is_unspecified()) {
            return Err(options_error(
                "announced_ip must be an address the remote side can reach, not a wildcard",
            ));
        }
        Ok(o)
    }
}

struct Factory {
    settings: RtpSettings,
    /// Where the next search of the port range starts, as an offset from `port_min`.
    cursor: u32,
}

fn bind_one(ip: IpAddr, port: u16) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_error(what: &str, ip: IpAddr, port: u16, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::TransportFailed,
        format!("cannot bind the {what} socket at {ip}:{port}: {e}"),
    )
}

type Sockets = (std::net::UdpSocket, Option<std::net::UdpSocket>);

impl Factory {
    /// Binds the RTP socket and, without rtcp-mux, the RTCP one: at the ports the options
    /// name, else from the configured range, else wherever the OS chooses. Without a named
    /// RTCP port, RTCP takes the port after RTP's (RFC 3550's convention, which ffmpeg and
    /// most RTP tools assume).
    fn bind(&mut self, ip: IpAddr, o: &Options) -> Result<Sockets> {
        // The RTCP port that goes with an RTP port, when RTCP has its own.
        let rtcp_port_for = |rtp_port: u16| -> Option<u16> {
            if o.rtcp_port != 0 {
                Some(o.rtcp_port)
            } else {
                rtp_port.checked_add(1)
            }
        };
        let rtcp_for = |rtp_port: u16| -> Result<Option<std::net::UdpSocket>> {
            if o.rtcp_mux {
                return Ok(None);
            }
            let Some(port) = rtcp_port_for(rtp_port) else {
                return Err(Error::new(
                    ErrorCode::TransportFailed,
                    format!("no port after {rtp_port} for RTCP: set rtcp_port"),
                ));
            };
            bind_one(ip, port)
                .map(Some)
                .map_err(|e| bind_error("RTCP", ip, port, e))
        };
        if o.port != 0 {
            let rtp = bind_one(ip, o.port).map_err(|e| bind_error("RTP", ip, o.port, e))?;
            return Ok((rtp, rtcp_for(o.port)?));
        }
        let (min, max) = (self.settings.listen.port_min, self.settings.listen.port_max);
        if min == 0 {
            // The OS picks; when its port's successor is taken, ask again a few times.
            let mut last = None;
            for _ in 0..16 {
                let rtp = bind_one(ip, 0).map_err(|e| bind_error("RTP", ip, 0, e))?;
                let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
                match rtcp_for(port) {
                    Ok(rtcp) => return Ok((rtp, rtcp)),
                    Err(e) if o.rtcp_port != 0 => return Err(e),
                    Err(e) => last = Some(e),
                }
            }
            return Err(last.unwrap_or_else(|| Error::internal("no RTCP port")));
        }
        let span = u32::from(max - min) + 1;
        let separate = !o.rtcp_mux && o.rtcp_port == 0;
        for i in 0..span {
            let offset = (self.cursor + i) % span;
            let Ok(port) = u16::try_from(u32::from(min) + offset) else {
                continue;
            };
            if separate && (port % 2 == 1 || port == max) {
                // RTP on even ports with RTCP on the odd one above, inside the range.
                continue;
            }
            let Ok(rtp) = bind_one(ip, port) else {
                continue;
            };
            match rtcp_for(port) {
                Ok(rtcp) => {
                    self.cursor = (offset + if separate { 2 } else { 1 }) % span;
                    return Ok((rtp, rtcp));
                }
                // A named RTCP port that is taken stays taken whatever RTP port is tried.
                Err(e) if o.rtcp_port != 0 => return Err(e),
                Err(_) => continue,
            }
        }
        Err(Error::new(
            ErrorCode::TransportFailed,
            format!("no free UDP port on {ip} in the rtp range {min}-{max}"),
        ))
    }
}

impl TransportFactory for Factory {
    fn create(&mut self, ctx: TransportContext, options: &Value) -> Result<Box<dyn Transport>> {
        let o = Options::parse(options)?;
        let listen_ip = o.listen_ip.unwrap_or(self.settings.listen.listen_ip);
        let announced = match (
            o.announced_ip,
            o.listen_ip,
            self.settings.listen.announced_ip,
        ) {
            (Some(ip), _, _) => ip,
            // A transport that names its own listen IP announces that, not the server's.
            (None, Some(ip), _) => ip,
            (None, None, Some(ip)) => ip,
            (None, None, None) => listen_ip,
        };
        if announced.is_unspecified() {
            return Err(options_error(
                "announced_ip is required when listening on a wildcard address",
            ));
        }
        let (srtp_local, srtp_out) = if o.srtp {
            let suite = o
                .srtp_crypto_suite
                .as_deref()
                .unwrap_or(srtp::DEFAULT_SUITE);
            let (params, ctx) = srtp::generate(suite)?;
            (Some(params), Some(ctx))
        } else {
            (None, None)
        };
        let (rtp, rtcp) = self.bind(listen_ip, &o)?;
        let to_tokio = |s: std::net::UdpSocket| {
            tokio::net::UdpSocket::from_std(s)
                .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()))
        };
        let rtp = to_tokio(rtp)?;
        let rtcp = rtcp.map(to_tokio).transpose()?;
        let link = Link::new(
            ctx.io.clone(),
            rtp,
            rtcp,
            o.comedia,
            srtp_out,
            self.settings.srtp_max_ssrcs,
        )
        .map_err(|e| Error::new(ErrorCode::TransportFailed, e.to_string()))?;
        let tasks = link.spawn_receivers();
        tracing::debug!(
            transport = %ctx.id,
            local = %link.local_rtp,
            rtcp = %link.local_rtcp,
            comedia = o.comedia,
            srtp = o.srtp,
            "rtp transport bound"
        );
        Ok(Box::new(RtpTransport {
            link,
            tasks,
            announced,
            rtcp_mux: o.rtcp_mux,
            comedia: o.comedia,
            srtp_local,
            connected: false,
            consumers: Vec::new(),
            session_id: ctx.id.0.as_u64_pair().0 >> 2,
            sdp_version: 1,
            cname: format!("switchboard-{}", ctx.id),
        }))
    }
}

/// Parameters of `connect` for kind `rtp`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ConnectParams {
    ip: Option<IpAddr>,
    port: Option<u16>,
    rtcp_port: Option<u16>,
    srtp: Option<SrtpParameters>,
}

struct RtpTransport {
    link: Rc<Link>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    announced: IpAddr,
    rtcp_mux: bool,
    comedia: bool,
    /// The key this transport encrypts with, when it uses SRTP.
    srtp_local: Option<SrtpParameters>,
    connected: bool,
    consumers: Vec<(ConsumerId, MediaKind, RtpParameters)>,
    session_id: u64,
    sdp_version: u64,
    cname: String,
}

/// An `rtp` transport's state (`transport.dump` → `plugin`).
#[derive(Serialize)]
struct RtpDump {
    kind: &'static str,
    local: Value,
    producer_ssrcs: Vec<u32>,
    consumers: Vec<ConsumerId>,
    stats: link::LinkStats,
}

impl RtpTransport {
    fn local(&self, with_key: bool) -> Value {
        let srtp = self.srtp_local.as_ref().map(|p| {
            if with_key {
                json!(p)
            } else {
                json!({ "crypto_suite": p.crypto_suite })
            }
        });
        json!({
            "ip": self.announced.to_string(),
            "port": self.link.local_rtp.port(),
            "rtcp_port": self.link.local_rtcp.port(),
            "rtcp_mux": self.rtcp_mux,
            "comedia": self.comedia,
            "srtp": srtp,
        })
    }

    fn describe(&self) -> Result<String> {
        let Some((remote_rtp, remote_rtcp)) = self.link.remote() else {
            return Err(Error::invalid(
                "sdp: the transport has no remote address yet; call connect first (or, with \
                 comedia, wait for the remote side's first packet)",
            ));
        };
        if self.consumers.is_empty() {
            return Err(Error::invalid(
                "sdp: the transport has no consumers to describe",
            ));
        }
        Ok(sdp::write(&sdp::Description {
            origin: self.announced,
            session_id: self.session_id,
            version: self.sdp_version,
            remote_rtp,
            remote_rtcp,
            rtcp_mux: self.rtcp_mux,
            srtp: self.srtp_local.as_ref(),
            cname: &self.cname,
            media: self
                .consumers
                .iter()
                .map(|(_, kind, params)| (*kind, params))
                .collect(),
        }))
    }
}

fn params<T: for<'de> Deserialize<'de>>(method: &str, v: &Value) -> Result<T> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_json::from_value(v).map_err(|e| Error::invalid(format!("{method}: {e}")))
}

impl Transport for RtpTransport {
    fn receive_capabilities(&self, router: &RtpCapabilities) -> RtpCapabilities {
        // A plain RTP receiver learns only what an SDP file tells it: no retransmission
        // streams and no header-extension ids unless its creator asks for them explicitly,
        // and so none of the feedback that needs an extension (transport-wide congestion
        // control, REMB).
        let mut caps = router.clone();
        caps.codecs
            .retain(|c| !c.mime_type.eq_ignore_ascii_case("video/rtx"));
        for codec in &mut caps.codecs {
            codec
                .rtcp_feedback
                .retain(|fb| !matches!(fb.kind.as_str(), "transport-cc" | "goog-remb"));
        }
        caps.header_extensions.clear();
        caps
    }

    fn local_parameters(&self) -> Value {
        self.local(true)
    }

    fn connect(&mut self, p: &Value) -> Result<Value> {
        if self.connected {
            return Err(Error::invalid(
                "connect: the transport is already connected",
            ));
        }
        let ConnectParams {
            ip,
            port,
            rtcp_port,
            srtp,
        } = params("connect", p)?;
        if self.comedia && (ip.is_some() || port.is_some() || rtcp_port.is_some()) {
            return Err(Error::invalid(
                "connect: a comedia transport learns the remote address from the first packet; \
                 give only srtp",
            ));
        }
        let remote = if self.comedia {
            None
        } else {
            let (Some(ip), Some(port)) = (ip, port.filter(|p| *p != 0)) else {
                return Err(Error::invalid("connect: ip and port are required"));
            };
            if ip.is_unspecified() {
                return Err(Error::invalid(format!(
                    "connect: ip {ip} is a wildcard, not an address packets can go to"
                )));
            }
            let rtcp_port = match (rtcp_port, self.rtcp_mux) {
                (Some(0), _) => return Err(Error::invalid("connect: rtcp_port must not be 0")),
                (Some(p), _) => p,
                (None, true) => port,
                (None, false) => port.checked_add(1).ok_or_else(|| {
                    Error::invalid("connect: rtcp_port is required when port is 65535")
                })?,
            };
            Some((SocketAddr::new(ip, port), SocketAddr::new(ip, rtcp_port)))
        };
        let srtp_in = match (srtp, self.srtp_local.is_some()) {
            (Some(s), true) => Some(srtp::context(&s, true)?),
            (None, true) => {
                return Err(Error::invalid(
                    "connect: srtp (crypto_suite, key_base64) is required: the transport was \
                     created with srtp",
                ));
            }
            (Some(_), false) => {
                return Err(Error::invalid(
                    "connect: srtp given, but the transport was created without srtp",
                ));
            }
            (None, false) => None,
        };
        if let Some(ctx) = srtp_in {
            self.link.set_srtp_in(ctx);
        }
        self.connected = true;
        if let Some((rtp, rtcp)) = remote {
            self.link.set_remote(rtp, rtcp);
            self.link.set_state(TransportState::Connected);
        }
        Ok(Value::Null)
    }

    fn request(&mut self, method: &str, p: &Value) -> Result<RequestOutcome> {
        match method {
            "sdp" => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NoParams {}
                let NoParams {} = params(method, p)?;
                Ok(RequestOutcome {
                    response: json!({ "type": "sdp", "sdp": self.describe()? }),
                    ..Default::default()
                })
            }
            other => Err(Error::invalid(format!(
                "rtp transports have no operation {other:?} (sdp)"
            ))),
        }
    }

    fn sink(&self) -> Rc<dyn MediaSink> {
        self.link.clone()
    }

    fn producer_added(&mut self, id: ProducerId, _kind: MediaKind, params: &RtpParameters) {
        self.link.add_producer(id, params);
    }

    fn producer_removed(&mut self, id: ProducerId) {
        self.link.remove_producer(id);
    }

    fn consumer_added(&mut self, id: ConsumerId, kind: MediaKind, params: &RtpParameters) {
        self.link.add_consumer(id, params);
        self.consumers.push((id, kind, params.clone()));
        self.sdp_version += 1;
    }

    fn consumer_removed(&mut self, id: ConsumerId) {
        self.link.remove_consumer(id);
        self.consumers.retain(|(c, _, _)| *c != id);
        self.sdp_version += 1;
    }

    fn stats(&self) -> Value {
        plugin_value(&self.link.stats())
    }

    fn dump(&self) -> Value {
        plugin_value(&RtpDump {
            kind: KIND,
            local: self.local(false),
            producer_ssrcs: self.link.producer_ssrcs(),
            consumers: self.consumers.iter().map(|(id, _, _)| *id).collect(),
            stats: self.link.stats(),
        })
    }

    fn close(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.link.close();
    }
}

impl Drop for RtpTransport {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An even port on loopback with the `n - 1` ports above it free (when checked).
    fn free_range(n: u16) -> u16 {
        for _ in 0..200 {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let base = probe.local_addr().unwrap().port() & !1;
            drop(probe);
            if base.checked_add(n).is_none() {
                continue;
            }
            let held: Vec<_> = (base..base + n)
                .map_while(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).ok())
                .collect();
            if held.len() == usize::from(n) {
                return base;
            }
        }
        panic!("no {n} free consecutive ports");
    }

    fn factory(min: u16, max: u16) -> Factory {
        Factory {
            settings: RtpSettings {
                listen: crate::settings::ListenSettings {
                    port_min: min,
                    port_max: max,
                    ..Default::default()
                },
                ..RtpSettings::default()
            },
            cursor: 0,
        }
    }

    fn options(v: Value) -> Options {
        Options::parse(&v).unwrap()
    }

    fn port_of(s: &std::net::UdpSocket) -> u16 {
        s.local_addr().unwrap().port()
    }

    #[test]
    fn the_range_is_used_port_by_port_and_then_exhausted() {
        let base = free_range(4);
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let mut f = factory(base, base + 3);
        let muxed = options(json!({}));
        let held: Vec<_> = (0..4).map(|_| f.bind(ip, &muxed).unwrap()).collect();
        let mut ports: Vec<u16> = held
            .iter()
            .map(|(rtp, rtcp)| {
                assert!(rtcp.is_none());
                port_of(rtp)
            })
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, [base, base + 1, base + 2, base + 3]);
        let err = f.bind(ip, &muxed).err().unwrap();
        assert!(err.message.contains("no free UDP port"), "{err}");
    }

    #[test]
    fn separate_rtcp_takes_even_and_odd_ports_of_the_range() {
        let base = free_range(4);
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let mut f = factory(base, base + 3);
        let separate = options(json!({ "rtcp_mux": false }));
        let mut pairs = Vec::new();
        for _ in 0..2 {
            let (rtp, rtcp) = f.bind(ip, &separate).unwrap();
            let rtcp = rtcp.unwrap();
            assert_eq!(port_of(&rtp) % 2, 0);
            assert_eq!(port_of(&rtcp), port_of(&rtp) + 1);
            pairs.push((rtp, rtcp));
        }
        assert!(f.bind(ip, &separate).is_err());
        // Freeing one pair makes it available again.
        pairs.pop();
        assert!(f.bind(ip, &separate).is_ok());
    }
}
