//! The churn soak: rooms open, fill, carry media, empty and close, over and over, while the
//! server's memory, descriptors, threads and objects are sampled. Peers leave three ways, as
//! real ones do: the backend says so (`peer.leave`), the client closes its connections (DTLS
//! close_notify, no word from the backend), or the client process vanishes (nothing at all:
//! only the server's consent timeout notices). A leak on any of those paths shows as growth
//! between two idle moments: after a warm-up round and after the whole run.

use super::engine::ClientId;
use super::procfs;
use super::scenario::{Bench, RunResult};
use super::sfu::{Objects, Room};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a churn run is shaped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChurnPlan {
    /// Length of the churn after the warm-up, seconds.
    pub seconds: f64,
    /// Length of the warm-up round, seconds (its idle end is the baseline).
    pub warmup_seconds: f64,
    /// A new room opens every this many seconds.
    pub cycle_seconds: f64,
    /// Participants per room; the first half publish, everyone subscribes.
    pub participants: usize,
    /// Cycles a room carries media before its participants go.
    pub hold_cycles: usize,
    /// How long to wait after the last departure before closing rooms and taking an idle
    /// sample: longer than the server's consent timeout plus its peer timeout, so that
    /// vanished peers are gone by the server's own doing.
    pub drain_seconds: f64,
    /// Seconds between samples.
    pub sample_seconds: f64,
}

/// One reading of the server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnSample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Proportional set size, KiB.
    pub pss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
    /// Objects the server reports.
    pub objects: Objects,
    /// Generator clients alive at that moment.
    pub clients: usize,
}

/// What a churn run found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Churn {
    /// The plan it ran.
    pub plan: Option<ChurnPlan>,
    /// Rooms opened.
    pub rooms: usize,
    /// Connections opened (a publisher and a subscriber connection per publishing peer).
    pub connections: usize,
    /// Peers that left through `peer.leave`.
    pub left: usize,
    /// Peers that closed their connections without a word from the backend.
    pub closed: usize,
    /// Peers that vanished.
    pub vanished: usize,
    /// Connections that did not connect (or subscribers that got no media) in time.
    pub failed: usize,
    /// Signalling calls that failed.
    pub errors: usize,
    /// Transports still open at the last idle moment before the backend closed the rooms,
    /// `drain_seconds` after every peer departed: the ones the server did not close itself.
    pub transports_before_close: u64,
    /// The server before any peer.
    pub cold: ChurnSample,
    /// Idle after the warm-up round: the baseline.
    pub warm: ChurnSample,
    /// Idle after the whole run.
    pub end: ChurnSample,
    /// Every sample, idle ones included.
    pub samples: Vec<ChurnSample>,
}

impl Churn {
    /// Growth of `end` over `warm` in percent: RSS, descriptors, threads.
    pub fn growth(&self) -> (f64, f64, f64) {
        let pct = |a: u64, b: u64| (b as f64 - a as f64) * 100.0 / (a.max(1) as f64);
        (
            pct(self.warm.rss_kib, self.end.rss_kib),
            pct(self.warm.fds, self.end.fds),
            pct(self.warm.threads, self.end.threads),
        )
    }
}

/// How a participant goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Departure {
    Leave,
    Close,
    Vanish,
}

fn departure(index: usize) -> Departure {
    match index % 3 {
        0 => Departure::Leave,
        1 => Departure::Close,
        _ => Departure::Vanish,
    }
}

struct LiveRoom {
    room: Room,
    /// Per participant: its name and its clients.
    participants: Vec<(String, Vec<ClientId>)>,
    opened_cycle: usize,
    departed_at: Option<Instant>,
}

impl Bench {
    fn churn_sample(&self, started: Instant, clients: usize) -> ChurnSample {
        let pid = self.server_pid;
        ChurnSample {
            t_s: started.elapsed().as_secs_f64(),
            rss_kib: procfs::rss_kib(pid).unwrap_or(0),
            pss_kib: procfs::pss_kib(pid).unwrap_or(0),
            fds: procfs::fds(pid).unwrap_or(0),
            threads: procfs::threads(pid).unwrap_or(0),
            objects: self.sfu.objects().unwrap_or_default(),
            clients,
        }
    }

    fn open_room(&self, cycle: usize, plan: &ChurnPlan, out: &mut Churn) -> Option<LiveRoom> {
        let room = match self.sfu.create_room() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("churn: router.create: {e}");
                out.errors += 1;
                return None;
            }
        };
        out.rooms += 1;
        let mut live = LiveRoom {
            room,
            participants: Vec::new(),
            opened_cycle: cycle,
            departed_at: None,
        };
        let publishers = plan.participants.div_ceil(2);
        // Publishers first, so that each subscriber's first offer carries every track.
        for p in 0..plan.participants {
            let name = format!("c{cycle}p{p}");
            let mut clients = Vec::new();
            if p < publishers {
                match self.add_publisher(&live.room, &name) {
                    Ok((id, _)) => clients.push(id),
                    Err(e) => {
                        eprintln!("churn: publish {name}: {e}");
                        out.errors += 1;
                    }
                }
            }
            live.participants.push((name, clients));
        }
        let mut waiting = Vec::new();
        for (name, clients) in &mut live.participants {
            match self.add_subscriber(&live.room, name, &[]) {
                Ok(id) => {
                    clients.push(id);
                    waiting.push(id);
                }
                Err(e) => {
                    eprintln!("churn: subscribe {name}: {e}");
                    out.errors += 1;
                }
            }
        }
        out.connections += live
            .participants
            .iter()
            .map(|(_, c)| c.len())
            .sum::<usize>();
        out.failed += self.settle(&waiting, true, Duration::from_secs(10));
        Some(live)
    }

    fn depart(&self, live: &mut LiveRoom, out: &mut Churn) {
        for (i, (name, clients)) in live.participants.iter().enumerate() {
            let how = departure(i);
            if how == Departure::Leave {
                if let Err(e) = self.sfu.leave(&live.room, name) {
                    eprintln!("churn: leave {name}: {e}");
                    out.errors += 1;
                }
                out.left += 1;
            } else if how == Departure::Close {
                out.closed += 1;
            } else {
                out.vanished += 1;
            }
            let graceful = how != Departure::Vanish;
            for &id in clients {
                let _ = self.engine.call(move |s| s.remove_client(id, graceful));
            }
        }
        live.departed_at = Some(Instant::now());
    }

    fn close(&self, live: &LiveRoom, out: &mut Churn) {
        if let Err(e) = self.sfu.close_room(&live.room) {
            eprintln!("churn: router.close: {e}");
            out.errors += 1;
        }
    }

    fn live_clients(&self) -> usize {
        self.engine.call(|s| s.live_clients())
    }

    /// Everything departs, the server gets `drain_seconds` to notice the vanished, then
    /// every room closes and the server is sampled idle.
    fn drain(
        &self,
        rooms: &mut VecDeque<LiveRoom>,
        plan: &ChurnPlan,
        started: Instant,
        out: &mut Churn,
    ) {
        for live in rooms.iter_mut().filter(|r| r.departed_at.is_none()) {
            self.depart(live, out);
        }
        let deadline = Instant::now() + Duration::from_secs_f64(plan.drain_seconds);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs_f64(plan.sample_seconds).min(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
            ));
            let sample = self.churn_sample(started, self.live_clients());
            out.samples.push(sample);
        }
        // Every peer departed drain_seconds ago: whatever transports remain now are ones the
        // server failed to close by itself (the vanished peers' ones, if consent failed).
        out.transports_before_close = self.sfu.objects().map_or(0, |o| o.transports);
        for live in rooms.drain(..) {
            self.close(&live, out);
        }
        // Closing answers before the last objects are gone from the workers' counts.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && self.sfu.objects().is_some_and(|o| o != Objects::default())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let idle = self.churn_sample(started, self.live_clients());
        out.samples.push(idle);
    }

    fn churn_for(
        &self,
        seconds: f64,
        plan: &ChurnPlan,
        started: Instant,
        out: &mut Churn,
        cycle: &mut usize,
    ) {
        let mut rooms: VecDeque<LiveRoom> = VecDeque::new();
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let step = Duration::from_secs_f64(plan.cycle_seconds);
        let mut next_sample = Instant::now();
        while Instant::now() < until {
            let cycle_start = Instant::now();
            if let Some(live) = self.open_room(*cycle, plan, out) {
                rooms.push_back(live);
            }
            for live in rooms.iter_mut() {
                if live.departed_at.is_none() && live.opened_cycle + plan.hold_cycles <= *cycle {
                    self.depart(live, out);
                }
            }
            let drained = Duration::from_secs_f64(plan.drain_seconds);
            while rooms
                .front()
                .and_then(|r| r.departed_at)
                .is_some_and(|at| at.elapsed() >= drained)
            {
                if let Some(live) = rooms.pop_front() {
                    self.close(&live, out);
                }
            }
            *cycle += 1;
            let cycle_end = cycle_start + step;
            while Instant::now() < cycle_end {
                if Instant::now() >= next_sample {
                    let sample = self.churn_sample(started, self.live_clients());
                    eprintln!(
                        "churn t={:.0}s rss {} KiB fds {} threads {} rooms {} transports {} consumers {} clients {}",
                        sample.t_s,
                        sample.rss_kib,
                        sample.fds,
                        sample.threads,
                        sample.objects.rooms,
                        sample.objects.transports,
                        sample.objects.consumers,
                        sample.clients
                    );
                    out.samples.push(sample);
                    next_sample += Duration::from_secs_f64(plan.sample_seconds);
                }
                let wake = next_sample.min(cycle_end);
                std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            }
        }
        self.drain(&mut rooms, plan, started, out);
    }

    /// The churn soak (see the module documentation): a warm-up round, an idle baseline,
    /// `plan.seconds` of churn, and an idle end to compare with the baseline.
    pub fn churn(&self, plan: ChurnPlan) -> Result<RunResult, String> {
        if plan.participants == 0 || plan.cycle_seconds <= 0.0 || plan.sample_seconds <= 0.0 {
            return Err("churn needs participants, a cycle and a sample period".into());
        }
        let started = Instant::now();
        let mut out = Churn {
            cold: self.churn_sample(started, 0),
            ..Default::default()
        };
        out.samples.push(out.cold.clone());
        let mut cycle = 0;
        self.churn_for(plan.warmup_seconds, &plan, started, &mut out, &mut cycle);
        out.warm = out.samples.last().cloned().unwrap_or_default();
        self.churn_for(plan.seconds, &plan, started, &mut out, &mut cycle);
        out.end = out.samples.last().cloned().unwrap_or_default();
        let (rss, fds, threads) = out.growth();
        eprintln!(
            "churn: {} rooms, {} connections ({} left, {} closed, {} vanished; {} failed, {} errors); idle after warm-up → end: RSS {} → {} KiB ({rss:+.1}%), fds {} → {} ({fds:+.1}%), threads {} → {} ({threads:+.1}%), objects {:?}",
            out.rooms,
            out.connections,
            out.left,
            out.closed,
            out.vanished,
            out.failed,
            out.errors,
            out.warm.rss_kib,
            out.end.rss_kib,
            out.warm.fds,
            out.end.fds,
            out.warm.threads,
            out.end.threads,
            out.end.objects,
        );
        out.plan = Some(plan);
        let mut result = self.result("churn");
        result.base_pss_kib = out.cold.pss_kib;
        result.churn = Some(out);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_leave_every_way_in_turn() {
        let ways: Vec<Departure> = (0..6).map(departure).collect();
        assert_eq!(
            ways,
            [
                Departure::Leave,
                Departure::Close,
                Departure::Vanish,
                Departure::Leave,
                Departure::Close,
                Departure::Vanish
            ]
        );
    }

    #[test]
    fn growth_is_measured_from_the_warm_baseline() {
        let c = Churn {
            warm: ChurnSample {
                rss_kib: 100_000,
                fds: 40,
                threads: 10,
                ..Default::default()
            },
            end: ChurnSample {
                rss_kib: 104_000,
                fds: 40,
                threads: 11,
                ..Default::default()
            },
            ..Default::default()
        };
        let (rss, fds, threads) = c.growth();
        assert!((rss - 4.0).abs() < 1e-9);
        assert_eq!(fds, 0.0);
        assert!((threads - 10.0).abs() < 1e-9);
    }
}
