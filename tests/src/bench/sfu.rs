//! The servers under test, behind one signalling interface: Switchboard over its
//! MessagePack-RPC socket and Janus's VideoRoom over its HTTP API.

use super::engine::{AUDIO_PT, VIDEO_PT};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard::client::Client;

/// A room on the server under test.
#[derive(Clone, Debug)]
pub struct Room(pub String);

/// What a publisher's offer produced.
#[derive(Clone, Debug)]
pub struct Published {
    /// The server's answer.
    pub answer: String,
    /// How subscribers name this publisher (Janus's feed id; unused by Switchboard, which
    /// subscribes everyone to everything in the room).
    pub feed: String,
}

/// What a subscriber needs to answer.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// The server's offer.
    pub offer: String,
    /// Server-side handle to send the answer to.
    pub handle: String,
}

/// Signalling of one server under test. Methods block; they may be called from many threads
/// at once (the join burst does).
pub trait Sfu: Send + Sync {
    /// `switchboard` or `janus`.
    fn name(&self) -> &'static str;
    /// A new room.
    fn create_room(&self) -> Result<Room, String>;
    /// Joins `peer` and sends its offer; returns the answer.
    fn publish(&self, room: &Room, peer: &str, offer: &str) -> Result<Published, String>;
    /// Joins `peer` as a subscriber of `feeds` (Switchboard: of everything in the room).
    fn subscribe(&self, room: &Room, peer: &str, feeds: &[String]) -> Result<Subscription, String>;
    /// Sends the subscriber's answer.
    fn answer(&self, room: &Room, peer: &str, sub: &Subscription, sdp: &str) -> Result<(), String>;
    /// Pauses every consumer in the room; returns how many.
    fn pause_all(&self, room: &Room) -> Result<usize, String>;
    /// Datagrams the server failed to send so far (its socket's send errors), where it
    /// reports them.
    fn send_errors(&self) -> Option<u64> {
        None
    }
    /// `peer` leaves the room, as a backend says so when its user hangs up.
    fn leave(&self, _room: &Room, _peer: &str) -> Result<(), String> {
        Err(format!(
            "{}: leaving is not driven by this generator",
            self.name()
        ))
    }
    /// Closes the room and everything in it.
    fn close_room(&self, _room: &Room) -> Result<(), String> {
        Err(format!(
            "{}: closing rooms is not driven by this generator",
            self.name()
        ))
    }
    /// The objects the server holds now, where it reports them.
    fn objects(&self) -> Option<Objects> {
        None
    }
    /// Plain RTP, where the server has it: a transport that takes the generator's VP8 and
    /// Opus streams (`ssrcs`: video, audio) from `from`, and a producer for each; returns where
    /// to send them.
    fn publish_rtp(
        &self,
        _room: &Room,
        _from: SocketAddr,
        _ssrcs: (u32, u32),
    ) -> Result<SocketAddr, String> {
        Err(format!(
            "{}: plain RTP is not driven by this generator",
            self.name()
        ))
    }
    /// Plain RTP: a transport that sends to `to`, consuming every stream published in `room`
    /// with [`Sfu::publish_rtp`].
    fn subscribe_rtp(&self, _room: &Room, _to: SocketAddr) -> Result<(), String> {
        Err(format!(
            "{}: plain RTP is not driven by this generator",
            self.name()
        ))
    }
}

/// Object counts of a server, summed over its workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Objects {
    /// Rooms (routers).
    pub rooms: u64,
    /// Transports.
    pub transports: u64,
    /// Producers.
    pub producers: u64,
    /// Consumers.
    pub consumers: u64,
}

/// Switchboard through its control socket.
pub struct Switchboard {
    rt: tokio::runtime::Runtime,
    client: Arc<Client>,
    /// A transport whose stats carry the worker socket's counters.
    some_transport: std::sync::Mutex<Option<String>>,
    /// Producers made by [`Sfu::publish_rtp`], by room, for plain subscribers to consume.
    rtp_producers: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

impl Switchboard {
    /// Connects to the control socket at `endpoint` (`127.0.0.1:7700`, `unix:/path`).
    pub fn connect(endpoint: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = rt
            .block_on(Client::connect(endpoint, None))
            .map_err(|e| e.to_string())?
            .with_timeout(Duration::from_secs(30));
        Ok(Self {
            rt,
            client: Arc::new(client),
            some_transport: Default::default(),
            rtp_producers: Default::default(),
        })
    }

    /// `peer.join`, where a peer that joined already (its other connection) is fine.
    fn join(&self, room: &Room, peer: &str) -> Result<(), String> {
        let client = self.client.clone();
        let params = json!({"router": room.0, "peer": peer});
        match self
            .rt
            .block_on(async move { client.call_value("peer.join", params).await })
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(switchboard_core::ErrorCode::AlreadyExists) => Ok(()),
            Err(e) => Err(format!("peer.join: {e}")),
        }
    }

    /// An `rtp` transport in `room` connected to `remote` (where it receives from and sends
    /// to).
    fn rtp_transport(&self, room: &Room, remote: SocketAddr) -> Result<Value, String> {
        let t = self.call(
            "transport.create",
            json!({"router": room.0, "kind": "rtp", "options": {"listen_ip": remote.ip()}}),
        )?;
        self.call(
            "transport.connect",
            json!({"transport": text(&t, "id")?,
                   "remote": {"ip": remote.ip(), "port": remote.port()}}),
        )?;
        Ok(t)
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let client = self.client.clone();
        let method_owned = method.to_owned();
        self.rt
            .block_on(async move { client.call_value(&method_owned, params).await })
            .map_err(|e| format!("{method}: {e}"))
    }
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no `{key}` in {v}"))
}

impl Sfu for Switchboard {
    fn name(&self) -> &'static str {
        "switchboard"
    }

    fn create_room(&self) -> Result<Room, String> {
        let r = self.call("router.create", json!({}))?;
        Ok(Room(text(&r, "id")?))
    }

    fn publish(&self, room: &Room, peer: &str, offer: &str) -> Result<Published, String> {
        self.join(room, peer)?;
        let r = self.call(
            "webrtc.publish",
            json!({"router": room.0, "peer": peer, "sdp": offer}),
        )?;
        Ok(Published {
            answer: text(&r, "sdp")?,
            feed: peer.to_owned(),
        })
    }

    fn subscribe(
        &self,
        room: &Room,
        peer: &str,
        _feeds: &[String],
    ) -> Result<Subscription, String> {
        self.join(room, peer)?;
        let r = self.call("webrtc.subscribe", json!({"router": room.0, "peer": peer}))?;
        if let Ok(t) = text(&r, "transport") {
            self.some_transport
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(t);
        }
        Ok(Subscription {
            offer: text(&r, "sdp")?,
            handle: text(&r, "transport")?,
        })
    }

    fn answer(
        &self,
        room: &Room,
        peer: &str,
        _sub: &Subscription,
        sdp: &str,
    ) -> Result<(), String> {
        self.call(
            "webrtc.answer",
            json!({"router": room.0, "peer": peer, "sdp": sdp}),
        )
        .map(|_| ())
    }

    fn pause_all(&self, room: &Room) -> Result<usize, String> {
        let dump = self.call("router.dump", json!({"router": room.0}))?;
        let ids: Vec<String> = dump
            .get("consumers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            self.call("consumer.pause", json!({"consumer": id}))?;
        }
        Ok(ids.len())
    }

    fn leave(&self, room: &Room, peer: &str) -> Result<(), String> {
        self.call("peer.leave", json!({"router": room.0, "peer": peer}))
            .map(|_| ())
    }

    fn close_room(&self, room: &Room) -> Result<(), String> {
        self.call("router.close", json!({"router": room.0}))
            .map(|_| ())
    }

    fn objects(&self) -> Option<Objects> {
        let list = self.call("worker.list", json!({})).ok()?;
        let mut sum = Objects::default();
        for w in list.get("workers")?.as_array()? {
            let n = |k: &str| w.get(k).and_then(Value::as_u64).unwrap_or(0);
            sum.rooms += n("routers");
            sum.transports += n("transports");
            sum.producers += n("producers");
            sum.consumers += n("consumers");
        }
        Some(sum)
    }

    fn publish_rtp(
        &self,
        room: &Room,
        from: SocketAddr,
        (video, audio): (u32, u32),
    ) -> Result<SocketAddr, String> {
        let t = self.rtp_transport(room, from)?;
        let local = &t["local"];
        let server = SocketAddr::new(
            text(local, "ip")?
                .parse()
                .map_err(|e| format!("local ip: {e}"))?,
            local["port"].as_u64().ok_or("no local port")? as u16,
        );
        let transport = text(&t, "id")?;
        let mut ids = Vec::new();
        for (kind, codec, ssrc) in [
            (
                "video",
                json!({"mime_type": "video/VP8", "payload_type": VIDEO_PT, "clock_rate": 90000}),
                video,
            ),
            (
                "audio",
                json!({"mime_type": "audio/opus", "payload_type": AUDIO_PT, "clock_rate": 48000,
                       "channels": 2}),
                audio,
            ),
        ] {
            let p = self.call(
                "producer.create",
                json!({"transport": transport, "kind": kind, "rtp_parameters":
                       {"codecs": [codec], "encodings": [{"ssrc": ssrc}]}}),
            )?;
            ids.push(text(&p, "id")?);
        }
        self.rtp_producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room.0.clone())
            .or_default()
            .extend(ids);
        Ok(server)
    }

    fn subscribe_rtp(&self, room: &Room, to: SocketAddr) -> Result<(), String> {
        let t = self.rtp_transport(room, to)?;
        let transport = text(&t, "id")?;
        let producers = self
            .rtp_producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&room.0)
            .cloned()
            .unwrap_or_default();
        let caps = json!({"codecs": [
            {"kind": "video", "mime_type": "video/VP8", "preferred_payload_type": VIDEO_PT,
             "clock_rate": 90000},
            {"kind": "audio", "mime_type": "audio/opus", "preferred_payload_type": AUDIO_PT,
             "clock_rate": 48000, "channels": 2},
        ]});
        for producer in producers {
            self.call(
                "consumer.create",
                json!({"transport": transport, "producer": producer, "rtp_capabilities": caps}),
            )?;
        }
        Ok(())
    }

    /// The worker socket's `send_errors` (one worker: every transport shares it).
    fn send_errors(&self) -> Option<u64> {
        let t = self
            .some_transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let stats = self.call("transport.stats", json!({"transport": t})).ok()?;
        stats["plugin"]["socket"]["send_errors"].as_u64()
    }
}

/// Janus's VideoRoom through the HTTP API: one session, one plugin handle per client, a
/// long-poll thread that hands events to whoever waits for their handle.
pub struct Janus {
    base: String,
    session: u64,
    agent: ureq::Agent,
    waiting: Arc<std::sync::Mutex<std::collections::HashMap<u64, std::sync::mpsc::Sender<Value>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The room the first scenario room maps to (VideoRoom room 1234 of the shared
    /// configuration).
    room: u64,
    rooms_made: std::sync::atomic::AtomicU64,
    /// Subscriber handles by room, and how many streams each receives.
    subscribers: std::sync::Mutex<std::collections::HashMap<u64, Vec<(u64, usize)>>>,
}

/// `general.admin_key` of the shared VideoRoom configuration (`../shared/peers/janus`),
/// needed to create rooms.
const JANUS_ADMIN_KEY: &str = "supersecret";

fn room_number(room: &Room) -> Result<u64, String> {
    room.0
        .parse()
        .map_err(|_| format!("not a Janus room: {}", room.0))
}

impl Janus {
    /// Creates a session on the Janus at `base` (`http://127.0.0.1:8088/janus`).
    pub fn connect(base: &str, room: u64) -> Result<Self, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(70)))
            .build()
            .into();
        let r = post(&agent, base, json!({"janus": "create"}))?;
        let session = r["data"]["id"].as_u64().ok_or(format!("create: {r}"))?;
        let janus = Self {
            base: base.to_owned(),
            session,
            agent,
            waiting: Arc::default(),
            stop: Arc::default(),
            room,
            rooms_made: Default::default(),
            subscribers: Default::default(),
        };
        janus.start_poller();
        Ok(janus)
    }

    fn start_poller(&self) {
        let url = format!("{}/{}?maxev=50", self.base, self.session);
        let agent = self.agent.clone();
        let waiting = self.waiting.clone();
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut resp) = agent.get(&url).call() else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let Ok(body) = resp.body_mut().read_to_string() else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(&body) else {
                    continue;
                };
                let events = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                let map = waiting.lock().unwrap_or_else(|p| p.into_inner());
                for e in events {
                    if let Some(tx) = e
                        .get("sender")
                        .and_then(Value::as_u64)
                        .and_then(|s| map.get(&s))
                    {
                        let _ = tx.send(e);
                    }
                }
            }
        });
    }

    fn attach(&self) -> Result<(u64, std::sync::mpsc::Receiver<Value>), String> {
        let r =
            self.session_post(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))?;
        let handle = r["data"]["id"].as_u64().ok_or(format!("attach: {r}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle, tx);
        Ok((handle, rx))
    }

    fn session_post(&self, body: Value) -> Result<Value, String> {
        post(
            &self.agent,
            &format!("{}/{}", self.base, self.session),
            body,
        )
    }

    /// Sends a plugin message and waits for the plugin's event carrying a result (and JSEP).
    fn message(
        &self,
        handle: u64,
        events: &std::sync::mpsc::Receiver<Value>,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let r = post(
            &self.agent,
            &format!("{}/{}/{}", self.base, self.session, handle),
            msg,
        )?;
        if r["janus"] == "error" {
            return Err(format!("janus: {r}"));
        }
        loop {
            let e = events
                .recv_timeout(Duration::from_secs(20))
                .map_err(|_| "janus: no event within 20 s".to_owned())?;
            if e["janus"] == "event" {
                let data = &e["plugindata"]["data"];
                if data.get("error").is_some() {
                    return Err(format!("videoroom: {data}"));
                }
                return Ok(e);
            }
        }
    }

    /// Sends a keepalive (Janus drops sessions idle for `session_timeout`).
    pub fn keepalive(&self) {
        let _ = self.session_post(json!({"janus": "keepalive"}));
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.session_post(json!({"janus": "destroy"}));
    }
}

fn post(agent: &ureq::Agent, url: &str, mut body: Value) -> Result<Value, String> {
    static TX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    body["transaction"] = json!(format!(
        "t{}",
        TX.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .map_err(|e| format!("POST {url}: {e}"))?;
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("POST {url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("POST {url}: {e}: {text}"))
}

impl Sfu for Janus {
    fn name(&self) -> &'static str {
        "janus"
    }

    /// Room 1234 of the shared configuration first; then new rooms with its settings (VP8
    /// and Opus, 2 Mbit/s, a keyframe request every 10 s), created with the configured
    /// `admin_key`.
    fn create_room(&self) -> Result<Room, String> {
        let n = self
            .rooms_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == 0 {
            return Ok(Room(self.room.to_string()));
        }
        let (handle, _events) = self.attach()?;
        let room = self.room + 1000 + n;
        let r = post(
            &self.agent,
            &format!("{}/{}/{}", self.base, self.session, handle),
            json!({"janus": "message", "body": {
                "request": "create", "room": room, "admin_key": JANUS_ADMIN_KEY,
                "publishers": 32, "bitrate": 2_000_000, "fir_freq": 10,
                "videocodec": "vp8", "audiocodec": "opus"}}),
        )?;
        let data = &r["plugindata"]["data"];
        if data["videoroom"] != "created" {
            return Err(format!("videoroom create: {r}"));
        }
        Ok(Room(room.to_string()))
    }

    fn publish(&self, room: &Room, peer: &str, offer: &str) -> Result<Published, String> {
        let room = room_number(room)?;
        let (handle, events) = self.attach()?;
        let e = self.message(
            handle,
            &events,
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                   "display": peer, "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
        )?;
        let answer = e["jsep"]["sdp"]
            .as_str()
            .ok_or(format!("no answer in {e}"))?
            .to_owned();
        let feed = e["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or(format!("no feed id in {e}"))?;
        Ok(Published {
            answer,
            feed: feed.to_string(),
        })
    }

    fn subscribe(
        &self,
        room: &Room,
        _peer: &str,
        feeds: &[String],
    ) -> Result<Subscription, String> {
        let room = room_number(room)?;
        let (handle, events) = self.attach()?;
        let streams: Vec<Value> = feeds
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .map(|f| json!({"feed": f}))
            .collect();
        let e = self.message(
            handle,
            &events,
            json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
            None,
        )?;
        let offer = e["jsep"]["sdp"]
            .as_str()
            .ok_or(format!("no offer in {e}"))?
            .to_owned();
        // Later events of this handle go to a closed channel until the next request waits on
        // it with a fresh one.
        drop(events);
        let streams = e["plugindata"]["data"]["streams"]
            .as_array()
            .map_or(0, Vec::len);
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(room)
            .or_default()
            .push((handle, streams));
        Ok(Subscription {
            offer,
            handle: handle.to_string(),
        })
    }

    fn answer(
        &self,
        _room: &Room,
        _peer: &str,
        sub: &Subscription,
        sdp: &str,
    ) -> Result<(), String> {
        let handle: u64 = sub.handle.parse().map_err(|_| "bad handle".to_owned())?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle, tx);
        self.message(
            handle,
            &rx,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": sdp, "trickle": false})),
        )
        .map(|_| ())
    }

    /// VideoRoom's `pause` on every subscriber handle of the room: Janus stops relaying to it
    /// (the counterpart of pausing its consumers). Returns the streams paused.
    fn pause_all(&self, room: &Room) -> Result<usize, String> {
        let room = room_number(room)?;
        let handles = self
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&room)
            .cloned()
            .unwrap_or_default();
        let mut streams = 0;
        for (handle, n) in handles {
            let (tx, rx) = std::sync::mpsc::channel();
            self.waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(handle, tx);
            self.message(handle, &rx, json!({"request": "pause"}), None)?;
            streams += n;
        }
        Ok(streams)
    }
}
