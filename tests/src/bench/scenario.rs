//! The scenarios: S1 fan-out steps, S2 rooms of all-publishing peers, S3 a burst of joins,
//! S4 paused consumers (the churn soak is in [`super::churn`]). Each returns plain results that `report` turns into tables and charts.

use super::engine::{AUDIO_PPS, ClientId, Engine, VIDEO_PPS, publisher_ssrcs};
use super::procfs::{self, CpuMark};
use super::sfu::{Room, Sfu};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The generator is "the bottleneck" above this share of its core: the run is marked invalid.
pub const GENERATOR_LIMIT: f64 = 0.80;

/// Where the scenarios run.
pub struct Bench {
    /// The client loop.
    pub engine: Arc<Engine>,
    /// The server under test.
    pub sfu: Arc<dyn Sfu>,
    /// Its process id (CPU and memory are read from `/proc/<pid>`).
    pub server_pid: u32,
    /// The address the clients bind (loopback for Switchboard; the machine's own interface
    /// for Janus, which leaves loopback out of ICE).
    pub ip: IpAddr,
    /// Measurement seconds per sample.
    pub seconds: f64,
    /// Clients connect with plain RTP (Switchboard's `rtp` plugin) instead of WebRTC: the
    /// same streams and fan-out without ICE, DTLS and SRTP, for the cost of the transport.
    pub plain_rtp: bool,
}

/// One measurement window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Subscribers (S1), peers (S2) or consumers (S4) at this point.
    pub load: usize,
    /// Wall seconds measured.
    #[serde(deserialize_with = "nullable")]
    pub seconds: f64,
    /// Packets the publishers sent in the window.
    pub sent: u64,
    /// Packets that should have reached subscribers (sent × receivers of each).
    pub expected: u64,
    /// Packets that did, inside the window.
    pub received: u64,
    /// 1 − received / expected.
    #[serde(deserialize_with = "nullable")]
    pub loss: f64,
    /// Forwarding latency percentiles, milliseconds (send → receive, same clock).
    #[serde(deserialize_with = "nullable")]
    pub p50_ms: f64,
    /// 99th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p99_ms: f64,
    /// 99.9th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p999_ms: f64,
    /// Server CPU, share of one core.
    #[serde(deserialize_with = "nullable")]
    pub server_cpu: f64,
    /// The part of `server_cpu` spent in the kernel (socket calls, mostly).
    #[serde(default)]
    #[serde(deserialize_with = "nullable")]
    pub server_sys_cpu: f64,
    /// Server CPU microseconds per packet received by subscribers.
    #[serde(deserialize_with = "nullable")]
    pub server_us_per_packet: f64,
    /// Generator CPU, share of one core.
    #[serde(deserialize_with = "nullable")]
    pub generator_cpu: f64,
    /// Whether the generator stayed under [`GENERATOR_LIMIT`] and every client connected.
    pub valid: bool,
    /// Server proportional set size at the end of the window, KiB.
    pub server_pss_kib: u64,
    /// Clients whose connection failed or never connected.
    pub failed_clients: usize,
    /// Datagrams the server's socket failed to send during the window (Switchboard only).
    #[serde(default)]
    pub server_send_errors: Option<u64>,
}

/// Result of the join burst.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JoinBurst {
    /// Joins started at once.
    pub joins: usize,
    /// Joins that got media.
    pub completed: usize,
    /// RPC call → first media packet at the client, milliseconds.
    #[serde(deserialize_with = "nullable")]
    pub p50_ms: f64,
    /// 95th percentile.
    #[serde(deserialize_with = "nullable")]
    pub p95_ms: f64,
    /// Slowest.
    #[serde(deserialize_with = "nullable")]
    pub max_ms: f64,
    /// RPC call → connection `connected`, median milliseconds.
    #[serde(deserialize_with = "nullable")]
    pub connected_p50_ms: f64,
}

/// Result of the paused-consumer scenario.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Paused {
    /// Consumers paused.
    pub consumers: usize,
    /// Subscribing connections.
    pub subscribers: usize,
    /// Server CPU before pausing (share of one core) with media flowing.
    #[serde(deserialize_with = "nullable")]
    pub active_cpu: f64,
    /// Server CPU with every consumer paused.
    #[serde(deserialize_with = "nullable")]
    pub paused_cpu: f64,
    /// Packets received by subscribers while paused (should be none).
    pub received_while_paused: u64,
    /// Server PSS growth per consumer (its subscriber connection's share included), KiB.
    #[serde(deserialize_with = "nullable")]
    pub pss_per_consumer_kib: f64,
}

/// Everything one run produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// `switchboard` or `janus`.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// Negotiated SRTP profiles seen on the clients.
    pub srtp: Vec<String>,
    /// Generator CPUs allowed (from `taskset`).
    pub generator_cpus: String,
    /// S1/S2 samples.
    pub samples: Vec<Sample>,
    /// S3.
    pub join: Option<JoinBurst>,
    /// S4.
    pub paused: Option<Paused>,
    /// The churn soak.
    #[serde(default)]
    pub churn: Option<super::churn::Churn>,
    /// Server PSS before any subscriber, KiB.
    pub base_pss_kib: u64,
    /// `/proc/loadavg` when the run started: the machine is shared, so say how busy it was.
    #[serde(default)]
    pub loadavg: String,
}

/// Reads a number that may have been written as `null` (JSON has no NaN: serde_json writes
/// NaN, "no value", as `null`).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

/// `perf record` of the server during one measurement window, when the environment variable
/// `BENCH_PERF` names a folder: call graphs of the whole server process (kernel
/// included) go to `<folder>/<server>-<load>.data`, for `perf report`. The sampling costs
/// the server a little, so profiled runs are for finding where the time goes, not for the
/// tables.
struct Profile(Option<std::process::Child>);

impl Profile {
    fn start(pid: u32, name: &str) -> Self {
        let Some(dir) = std::env::var_os("BENCH_PERF") else {
            return Self(None);
        };
        let out = std::path::Path::new(&dir).join(format!("{name}.data"));
        let child = std::process::Command::new("perf")
            .args(["record", "-F", "999", "-g", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(c) => Self(Some(c)),
            Err(e) => {
                eprintln!("perf record: {e}");
                Self(None)
            }
        }
    }

    /// Ends the recording (perf writes its file on SIGINT).
    fn stop(self) {
        let Some(mut child) = self.0 else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
    }
}

impl Bench {
    /// A publisher in `room`: returns its client and feed.
    pub fn add_publisher(&self, room: &Room, name: &str) -> Result<(ClientId, String), String> {
        let ip = self.ip;
        if self.plain_rtp {
            let id = self.engine.call(move |s| s.add_plain_client(ip, true))?;
            let from = self
                .engine
                .call(move |s| s.local_addr(id))
                .ok_or("no client")?;
            let server = self.sfu.publish_rtp(room, from, publisher_ssrcs(id))?;
            self.engine
                .call(move |s| s.connect_plain(id, Some(server)))?;
            return Ok((id, name.to_owned()));
        }
        let id = self.engine.call(move |s| s.add_client(ip, true))?;
        let offer = self.engine.call(move |s| s.create_offer(id))?;
        let published = self.sfu.publish(room, name, &offer)?;
        let answer = published.answer.clone();
        self.engine.call(move |s| s.set_answer(id, answer))?;
        Ok((id, published.feed))
    }

    /// A subscriber in `room` of `feeds`.
    pub fn add_subscriber(
        &self,
        room: &Room,
        name: &str,
        feeds: &[String],
    ) -> Result<ClientId, String> {
        let ip = self.ip;
        if self.plain_rtp {
            let id = self.engine.call(move |s| s.add_plain_client(ip, false))?;
            let to = self
                .engine
                .call(move |s| s.local_addr(id))
                .ok_or("no client")?;
            self.sfu.subscribe_rtp(room, to)?;
            self.engine.call(move |s| s.connect_plain(id, None))?;
            return Ok(id);
        }
        let id = self.engine.call(move |s| s.add_client(ip, false))?;
        let sub = self.sfu.subscribe(room, name, feeds)?;
        let offer = sub.offer.clone();
        let answer = self.engine.call(move |s| s.answer_offer(id, offer))?;
        self.sfu.answer(room, name, &sub, &answer)?;
        Ok(id)
    }

    /// Waits until every client in `ids` is connected and has had media (`media`), or the
    /// deadline passes; returns how many did not.
    pub fn settle(&self, ids: &[ClientId], media: bool, deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        loop {
            let ids = ids.to_vec();
            let missing = self.engine.call(move |s| {
                ids.iter()
                    .filter(|&&i| {
                        let c = &s.clients[i];
                        c.connected.is_none() || (media && c.first_media.is_none())
                    })
                    .count()
            });
            if missing == 0 || Instant::now() >= until {
                return missing;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One measurement window: every stream is expected at `receivers` subscribers.
    pub fn measure(&self, load: usize, receivers: u64) -> Sample {
        let me = std::process::id();
        let server = CpuMark::now(self.server_pid);
        let send_errors = self.sfu.send_errors();
        let generator = CpuMark::now(me);
        let profile = Profile::start(self.server_pid, &format!("{}-{load}", self.label()));
        self.engine.call(|s| s.start_window());
        std::thread::sleep(Duration::from_secs_f64(self.seconds));
        self.engine.call(|s| s.end_window());
        profile.stop();
        let server_sys = server.sys_since(self.server_pid);
        let (server_cpu, wall) = server.since(self.server_pid);
        let (gen_cpu, gen_wall) = generator.since(me);
        // Let the window's last packets arrive.
        std::thread::sleep(Duration::from_millis(300));
        let (window, failed) = self.engine.call(|s| {
            let failed = s
                .clients
                .iter()
                .filter(|c| c.failed || c.connected.is_none())
                .count();
            (s.take_window(), failed)
        });
        let mut sample = Sample {
            load,
            seconds: wall,
            server_cpu: server_cpu / wall,
            server_sys_cpu: server_sys / wall,
            generator_cpu: gen_cpu / gen_wall,
            server_pss_kib: procfs::pss_kib(self.server_pid).unwrap_or(0),
            failed_clients: failed,
            server_send_errors: self
                .sfu
                .send_errors()
                .zip(send_errors)
                .map(|(b, a)| b.saturating_sub(a)),
            ..Default::default()
        };
        if let Some(w) = window {
            let end = w.end.clone().unwrap_or_default();
            sample.sent = end
                .iter()
                .zip(&w.start)
                .map(|(e, s)| u64::from(e.saturating_sub(*s)))
                .sum();
            sample.expected = sample.sent * receivers;
            sample.received = w.received.iter().sum::<u64>() + w.light_received;
            if let Some(h) = &w.latency_us {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                sample.p50_ms = ms(0.50);
                sample.p99_ms = ms(0.99);
                sample.p999_ms = ms(0.999);
            }
        }
        sample.loss = if sample.expected > 0 {
            (1.0 - sample.received as f64 / sample.expected as f64).max(0.0)
        } else {
            1.0
        };
        sample.server_us_per_packet = if sample.received > 0 {
            server_cpu * 1e6 / sample.received as f64
        } else {
            f64::NAN
        };
        sample.valid = sample.generator_cpu <= GENERATOR_LIMIT && failed == 0;
        sample
    }

    /// The server's name in file names: `switchboard-rtp` for the plain RTP mode.
    fn label(&self) -> String {
        if self.plain_rtp {
            format!("{}-rtp", self.sfu.name())
        } else {
            self.sfu.name().to_owned()
        }
    }

    fn srtp_profiles(&self) -> Vec<String> {
        if self.plain_rtp {
            return vec!["none (plain RTP)".to_owned()];
        }
        let mut p: Vec<String> = self.engine.call(|s| {
            s.clients
                .iter()
                .filter_map(|c| c.srtp.clone())
                .filter(|p| !p.is_empty())
                .collect()
        });
        p.sort();
        p.dedup();
        p
    }

    pub(super) fn result(&self, scenario: &str) -> RunResult {
        RunResult {
            server: self.sfu.name().to_owned(),
            scenario: scenario.to_owned(),
            srtp: self.srtp_profiles(),
            generator_cpus: procfs::allowed_cpus(),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    /// S1: one publisher, subscribers added step by step up to each count in `steps`.
    /// Stepping stops early once a step loses more than 20% or the generator saturates.
    pub fn s1(&self, steps: &[usize]) -> Result<RunResult, String> {
        let room = self.sfu.create_room()?;
        let (publisher, feed) = self.add_publisher(&room, "pub")?;
        if self.settle(&[publisher], false, Duration::from_secs(10)) > 0 {
            return Err("the publisher did not connect".into());
        }
        std::thread::sleep(Duration::from_secs(1));
        let mut result = self.result("s1");
        result.base_pss_kib = procfs::pss_kib(self.server_pid).unwrap_or(0);
        let mut subs = Vec::new();
        for &n in steps {
            let mut refused = None;
            while subs.len() < n {
                let name = format!("sub{}", subs.len());
                match self.add_subscriber(&room, &name, std::slice::from_ref(&feed)) {
                    Ok(id) => subs.push(id),
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = refused {
                // An overloaded server may stop answering in time: the steps so far stand.
                eprintln!("{} s1: stopped before n={n}: {e}", self.sfu.name());
                break;
            }
            let missing = self.settle(&subs, true, Duration::from_secs(20));
            std::thread::sleep(Duration::from_secs(1));
            let sample = self.measure(n, n as u64);
            eprintln!(
                "{} s1 n={n}: loss {:.3}% (server send errors {:?}) p50 {:.2} ms p99 {:.2} ms server cpu {:.1}% ({:.2} µs/pkt) generator cpu {:.1}%{}",
                self.sfu.name(),
                sample.loss * 100.0,
                sample.server_send_errors,
                sample.p50_ms,
                sample.p99_ms,
                sample.server_cpu * 100.0,
                sample.server_us_per_packet,
                sample.generator_cpu * 100.0,
                if missing > 0 {
                    format!(" ({missing} clients without media)")
                } else {
                    String::new()
                }
            );
            let stop = sample.loss > 0.2 || sample.generator_cpu > 0.95;
            result.samples.push(sample);
            if stop {
                break;
            }
        }
        result.srtp = self.srtp_profiles();
        Ok(result)
    }

    /// S2: `rooms` rooms of `peers` peers, each publishing and subscribing to the others.
    pub fn s2(&self, rooms: usize, peers: usize) -> Result<RunResult, String> {
        let mut clients = Vec::new();
        let mut rooms_made = Vec::new();
        for r in 0..rooms {
            let room = self.sfu.create_room()?;
            let mut feeds = Vec::new();
            for p in 0..peers {
                let (id, feed) = self.add_publisher(&room, &format!("r{r}p{p}"))?;
                clients.push(id);
                feeds.push(feed);
            }
            rooms_made.push((room, feeds));
        }
        let mut result = self.result("s2");
        result.base_pss_kib = procfs::pss_kib(self.server_pid).unwrap_or(0);
        for (r, (room, feeds)) in rooms_made.iter().enumerate() {
            for p in 0..peers {
                let others: Vec<String> = feeds
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != p)
                    .map(|(_, f)| f.clone())
                    .collect();
                clients.push(self.add_subscriber(room, &format!("r{r}p{p}"), &others)?);
            }
        }
        self.settle(&clients, false, Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(2));
        let sample = self.measure(rooms * peers, (peers - 1) as u64);
        eprintln!(
            "{} s2 {rooms}x{peers}: loss {:.3}% p99 {:.2} ms server cpu {:.1}% ({:.2} µs/pkt) generator cpu {:.1}%",
            self.sfu.name(),
            sample.loss * 100.0,
            sample.p99_ms,
            sample.server_cpu * 100.0,
            sample.server_us_per_packet,
            sample.generator_cpu * 100.0
        );
        result.samples.push(sample);
        result.srtp = self.srtp_profiles();
        Ok(result)
    }

    /// S3: `joins` subscribers join at the same moment (one thread each, released together);
    /// each one's latency runs from its first RPC call to its first media packet.
    pub fn s3(self: &Arc<Self>, joins: usize) -> Result<RunResult, String> {
        let room = self.sfu.create_room()?;
        let (publisher, feed) = self.add_publisher(&room, "pub")?;
        if self.settle(&[publisher], false, Duration::from_secs(10)) > 0 {
            return Err("the publisher did not connect".into());
        }
        std::thread::sleep(Duration::from_secs(1));
        let barrier = Arc::new(std::sync::Barrier::new(joins));
        let threads: Vec<_> = (0..joins)
            .map(|i| {
                let bench = Arc::clone(self);
                let barrier = barrier.clone();
                let room = room.clone();
                let feed = feed.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let id = bench.add_subscriber(&room, &format!("burst{i}"), &[feed]);
                    (started, id)
                })
            })
            .collect();
        let mut started = Vec::new();
        for t in threads {
            if let Ok((at, Ok(id))) = t.join() {
                started.push((at, id));
            }
        }
        let ids: Vec<ClientId> = started.iter().map(|&(_, id)| id).collect();
        self.settle(&ids, true, Duration::from_secs(20));
        let times: Vec<(Instant, Option<Instant>, Option<Instant>)> = {
            let started = started.clone();
            self.engine.call(move |s| {
                started
                    .iter()
                    .map(|&(at, id)| (at, s.clients[id].connected, s.clients[id].first_media))
                    .collect()
            })
        };
        let mut media: Vec<f64> = times
            .iter()
            .filter_map(|&(at, _, m)| m.map(|m| m.duration_since(at).as_secs_f64() * 1000.0))
            .collect();
        let mut connected: Vec<f64> = times
            .iter()
            .filter_map(|&(at, c, _)| c.map(|c| c.duration_since(at).as_secs_f64() * 1000.0))
            .collect();
        let burst = JoinBurst {
            joins,
            completed: media.len(),
            p50_ms: percentile(&mut media, 0.5),
            p95_ms: percentile(&mut media, 0.95),
            max_ms: percentile(&mut media, 1.0),
            connected_p50_ms: percentile(&mut connected, 0.5),
        };
        eprintln!(
            "{} s3 {joins} joins: {} got media; join → first media p50 {:.0} ms p95 {:.0} ms max {:.0} ms",
            self.sfu.name(),
            burst.completed,
            burst.p50_ms,
            burst.p95_ms,
            burst.max_ms
        );
        let mut result = self.result("s3");
        result.join = Some(burst);
        Ok(result)
    }

    /// S4: `subscribers` subscribers of one publisher (two consumers each), then every
    /// consumer paused: server CPU with media flowing and paused, memory per consumer.
    pub fn s4(&self, subscribers: usize) -> Result<RunResult, String> {
        let room = self.sfu.create_room()?;
        let (publisher, feed) = self.add_publisher(&room, "pub")?;
        if self.settle(&[publisher], false, Duration::from_secs(10)) > 0 {
            return Err("the publisher did not connect".into());
        }
        std::thread::sleep(Duration::from_secs(1));
        let mut result = self.result("s4");
        result.base_pss_kib = procfs::pss_kib(self.server_pid).unwrap_or(0);
        let mut subs = Vec::new();
        for i in 0..subscribers {
            subs.push(self.add_subscriber(
                &room,
                &format!("idle{i}"),
                std::slice::from_ref(&feed),
            )?);
        }
        self.settle(&subs, true, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(1));
        let active = self.measure(subscribers, subscribers as u64);
        let consumers = self.sfu.pause_all(&room)?;
        std::thread::sleep(Duration::from_secs(1));
        let paused = self.measure(subscribers, subscribers as u64);
        let pss = procfs::pss_kib(self.server_pid).unwrap_or(0);
        let p = Paused {
            consumers,
            subscribers,
            active_cpu: active.server_cpu,
            paused_cpu: paused.server_cpu,
            received_while_paused: paused.received,
            pss_per_consumer_kib: pss.saturating_sub(result.base_pss_kib) as f64
                / consumers.max(1) as f64,
        };
        eprintln!(
            "{} s4 {consumers} paused consumers: server cpu {:.1}% active, {:.1}% paused; {:.1} KiB per consumer",
            self.sfu.name(),
            p.active_cpu * 100.0,
            p.paused_cpu * 100.0,
            p.pss_per_consumer_kib
        );
        result.samples = vec![active, paused];
        result.paused = Some(p);
        result.srtp = self.srtp_profiles();
        Ok(result)
    }
}

/// Packets per second one publisher sends (video plus audio).
pub fn publisher_pps() -> u32 {
    VIDEO_PPS + AUDIO_PPS
}
