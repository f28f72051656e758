//! What the control-socket tests share: starting a server, a raw socket that sends exactly
//! the bytes a test wants, media parameters and packets, and deadlines instead of sleeps.

use bytes::{Bytes, BytesMut};
use rtc_rtp::Packet;
use rtc_rtp::header::Header;
use rtc_shared::marshal::{Marshal, Unmarshal};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard::App;
use switchboard::client::{Client, Notification};
use switchboard::rpc::wire::{self, FrameScanner, Scan};
use switchboard::settings::Settings;
use switchboard_transports::{DirectEndpoint, DirectPacket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once. Generous, because CI
/// runs tests in parallel on two cores; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a one-worker server listening on an OS-chosen loopback port.
pub async fn start(adjust: impl FnOnce(&mut Settings)) -> App {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    // OS-chosen ports, so test servers never compete with each other or a real server.
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    adjust(&mut config);
    App::start(Arc::new(config)).await.expect("server starts")
}

/// The server's TCP address, as clients take it.
pub fn addr(app: &App) -> String {
    app.rpc_tcp_addr().expect("listening on TCP").to_string()
}

/// A connected client without a token.
pub async fn client(app: &App) -> Client {
    Client::connect(&addr(app), None).await.expect("connects")
}

/// Shuts a test server down.
pub async fn stop(app: App) {
    app.shutdown(DEADLINE).await.expect("clean shutdown");
}

/// A byte stream to the server: TCP or Unix.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A socket speaking raw bytes, reading whole messages back as JSON values.
pub struct Raw {
    stream: Box<dyn Io>,
    buf: BytesMut,
    scanner: FrameScanner,
}

impl Raw {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.expect("connects"))
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: impl Io + 'static) -> Self {
        Self {
            stream: Box::new(stream),
            buf: BytesMut::new(),
            scanner: FrameScanner::new(64 << 20),
        }
    }

    /// Sends bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends a request with a map as its parameters.
    pub async fn request(&mut self, msgid: u32, method: &str, params: Value) {
        self.send(&wire::encode_request(msgid, method, &params))
            .await;
    }

    /// Closes the sending side, as a client that has said everything does.
    pub async fn finish_sending(&mut self) {
        self.stream.shutdown().await.expect("shutdown");
    }

    /// The next message, or `None` once the server has closed the connection.
    pub async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(DEADLINE, self.next_inner())
            .await
            .expect("a message or the end of the stream in time")
    }

    async fn next_inner(&mut self) -> Option<Value> {
        loop {
            match self.scanner.scan(&self.buf) {
                Scan::Complete(len) => {
                    let frame = self.buf.split_to(len);
                    self.scanner.reset();
                    let value = wire::decode_frame(&frame).expect("decodable");
                    return Some(wire::msgpack_to_json(value).expect("JSON data model"));
                }
                Scan::Incomplete => {}
                other => panic!("the server sent bytes that are not one message: {other:?}"),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "stream ended inside a message");
                    return None;
                }
                Ok(_) => {}
                Err(e) => panic!("connection reset instead of closed: {e}"),
            }
        }
    }

    /// The next message, which must be the response to `msgid`: returns (error, result).
    pub async fn response(&mut self, msgid: u32) -> (Value, Value) {
        let message = self.next().await.expect("a response, not the end");
        assert_eq!(message[0], 1, "not a response: {message}");
        assert_eq!(message[1], msgid, "response to another request: {message}");
        (message[2].clone(), message[3].clone())
    }

    /// The response to `msgid`, skipping notifications: returns (error, result).
    pub async fn answer(&mut self, msgid: u32) -> (Value, Value) {
        loop {
            let message = self.next().await.expect("a response, not the end");
            if message[0] == 2 {
                continue;
            }
            assert_eq!(message[0], 1, "not a response: {message}");
            assert_eq!(message[1], msgid, "response to another request: {message}");
            return (message[2].clone(), message[3].clone());
        }
    }

    /// The next message, which must be the response to `msgid` carrying an error: its code.
    pub async fn error_code(&mut self, msgid: u32) -> String {
        let (error, result) = self.response(msgid).await;
        assert!(result.is_null(), "result beside an error: {result}");
        error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {error}"))
            .to_owned()
    }

    /// The next message, which must be an `error` notification: its payload.
    pub async fn error_notification(&mut self) -> Value {
        let message = self.next().await.expect("a notification, not the end");
        assert_eq!(message[0], 2, "not a notification: {message}");
        assert_eq!(message[1], "error", "{message}");
        message[2][0].clone()
    }

    /// Every byte until the server closes the connection, which it must do in time: for
    /// answers that are not MessagePack.
    pub async fn bytes_to_end(&mut self) -> Vec<u8> {
        let mut out = self.buf.split().to_vec();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut out)).await;
        read.expect("the end of the stream in time")
            .expect("closed, not reset");
        out
    }

    /// Waits for the server to end the connection, by a close or a reset (what a socket
    /// closed with unread input sends).
    pub async fn closed_or_reset(&mut self) {
        let mut scratch = Vec::new();
        let read = tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut scratch)).await;
        read.expect("the end of the stream in time").ok();
    }

    /// Sends bytes the server may refuse half-way: the write fails once it has closed.
    pub async fn send_until_refused(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads until the server closes the connection, which it must do in time.
    pub async fn expect_closed(&mut self) {
        if let Some(message) = self.next().await {
            panic!("expected the connection to close, got {message}");
        }
    }
}

/// Waits for the next notification matching `pred`, returning it and those skipped.
pub async fn wait_for(
    rx: &mut mpsc::Receiver<Notification>,
    mut pred: impl FnMut(&Notification) -> bool,
) -> (Notification, Vec<Notification>) {
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(n)) if pred(&n) => return (n, skipped),
            Ok(Some(n)) => skipped.push(n),
            Ok(None) => panic!("notifications ended; skipped {skipped:?}"),
            Err(_) => panic!("no matching notification in time; skipped {skipped:?}"),
        }
    }
}

/// Polls a condition the server reports no event for, until it holds or the deadline.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `producer.create` parameters for an Opus sender on payload type 111.
pub fn opus_producer(transport: &str, ssrc: u32) -> Value {
    json!({
        "transport": transport,
        "kind": "audio",
        "rtp_parameters": {
            "mid": "0",
            "codecs": [{
                "mime_type": "audio/opus",
                "payload_type": 111,
                "clock_rate": 48000,
                "channels": 2,
            }],
            "encodings": [{ "ssrc": ssrc }],
        },
    })
}

/// Receive capabilities of a subscriber taking Opus on payload type 100.
pub fn opus_caps() -> Value {
    json!({
        "codecs": [{
            "kind": "audio",
            "mime_type": "audio/opus",
            "preferred_payload_type": 100,
            "clock_rate": 48000,
            "channels": 2,
        }],
    })
}

/// An Opus RTP packet on payload type 111.
pub fn opus_packet(ssrc: u32, seq: u16, payload: &[u8]) -> Bytes {
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc,
            ..Header::default()
        },
        payload: Bytes::copy_from_slice(payload),
    }
    .marshal()
    .expect("marshal")
    .freeze()
}

/// The next RTP packet out of a direct endpoint, skipping RTCP.
pub async fn next_rtp(endpoint: &DirectEndpoint) -> Packet {
    loop {
        match tokio::time::timeout(DEADLINE, endpoint.recv()).await {
            Ok(Some(DirectPacket::Rtp(mut bytes))) => {
                return Packet::unmarshal(&mut bytes).expect("valid RTP");
            }
            Ok(Some(DirectPacket::Rtcp(_))) => continue,
            Ok(None) => panic!("endpoint closed while waiting for RTP"),
            Err(_) => panic!("no RTP in time"),
        }
    }
}

/// A forwarding path set up over RPC: a producer on one direct transport and its consumer
/// on another, to show that media keeps flowing whatever else a test does.
pub struct Forwarding {
    /// Where packets go in.
    pub input: DirectEndpoint,
    /// Where they come out.
    pub output: DirectEndpoint,
    ssrc: u32,
    seq: u16,
}

impl Forwarding {
    /// Builds the room through `client`.
    pub async fn set_up(app: &App, client: &Client) -> Self {
        let router: Value = client
            .call_value("router.create", json!({}))
            .await
            .expect("router");
        let router = router["id"].as_str().expect("id").to_owned();
        let mut transports = Vec::new();
        for _ in 0..2 {
            let t = client
                .call_value(
                    "transport.create",
                    json!({ "router": router, "kind": "direct" }),
                )
                .await
                .expect("transport");
            transports.push(t["id"].as_str().expect("id").to_owned());
        }
        let ssrc = 0x5EED_0001;
        let producer = client
            .call_value("producer.create", opus_producer(&transports[0], ssrc))
            .await
            .expect("producer");
        client
            .call_value(
                "consumer.create",
                json!({
                    "transport": transports[1],
                    "producer": producer["id"],
                    "rtp_capabilities": opus_caps(),
                }),
            )
            .await
            .expect("consumer");
        let endpoint = |id: &str| {
            app.transports
                .direct
                .endpoint(id.parse().expect("transport id"))
                .expect("direct endpoint")
        };
        Self {
            input: endpoint(&transports[0]),
            output: endpoint(&transports[1]),
            ssrc,
            seq: 1,
        }
    }

    /// Sends one packet through and checks it comes out.
    pub async fn check(&mut self) {
        let payload = format!("still forwarding {}", self.seq);
        self.input
            .send_rtp(opus_packet(self.ssrc, self.seq, payload.as_bytes()))
            .expect("inject");
        self.seq += 1;
        let packet = next_rtp(&self.output).await;
        assert_eq!(packet.payload.as_ref(), payload.as_bytes());
    }
}
