//! Cost of mixing: N Opus speakers decoded, mixed and encoded, per 20 ms frame.
//!
//! `cargo bench -p switchboard-middleware --bench mixer` prints a Markdown table for
//! docs/benchmarks.md: CPU time per frame for the full mix alone, and with a mix-minus per
//! speaker (N + 1 encodes). A frame is 20 ms of audio, so the last column is the share of one
//! core that one room's mixer keeps busy.

use bytes::Bytes;
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard_core::middleware::PublishedTrack;
use switchboard_core::{ProducerId, Result};
use switchboard_middleware::mixer::input::{Input, InputTuning};
use switchboard_middleware::mixer::output::Output;
use switchboard_middleware::mixer::{FRAME, SAMPLE_RATE, mix};

/// Counts what would be sent.
struct Sink(ProducerId);

impl PublishedTrack for Sink {
    fn id(&self) -> ProducerId {
        self.0
    }
    fn send_rtp(&self, packet: Bytes) -> Result<()> {
        black_box(packet);
        Ok(())
    }
}

/// 20 ms frames of speech-like audio (a tone with a slow amplitude envelope) for one speaker.
fn speaker_packets(speaker: usize, frames: usize) -> Vec<Bytes> {
    let mut enc =
        opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let freq = 200.0 + 37.0 * speaker as f32;
    (0..frames)
        .map(|f| {
            let pcm: Vec<i16> = (0..FRAME)
                .map(|i| {
                    let t = (f * FRAME + i) as f32 / SAMPLE_RATE as f32;
                    let envelope = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                    (6000.0 * envelope * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16
                })
                .collect();
            Bytes::from(enc.encode_vec(&pcm, 1500).unwrap())
        })
        .collect()
}

fn per_frame(speakers: usize, mix_minus: bool, frames: usize) -> Duration {
    let packets: Vec<Vec<Bytes>> = (0..speakers).map(|s| speaker_packets(s, 50)).collect();
    let mut inputs: Vec<Input> = (0..speakers)
        .map(|_| Input::new(InputTuning::default()).unwrap())
        .collect();
    let outputs = if mix_minus { speakers + 1 } else { 1 };
    let mut outs: Vec<Output> = (0..outputs)
        .map(|i| Output::new(Box::new(Sink(ProducerId::new())), 1000 + i as u32, 48_000).unwrap())
        .collect();
    let mut frame = vec![vec![0i16; FRAME]; speakers];
    let mut contributing = vec![false; speakers];
    let mut acc = vec![0i32; FRAME];
    let mut minus = vec![0i32; FRAME];
    let mut pcm = vec![0i16; FRAME];
    let t0 = Instant::now();
    // The mixer's notion of time advances 20 ms per frame; the stopwatch measures CPU work.
    let mut busy = Duration::ZERO;
    for f in 0..frames {
        let now = t0 + Duration::from_millis(20 * f as u64);
        let started = Instant::now();
        acc.fill(0);
        for (s, input) in inputs.iter_mut().enumerate() {
            input.push(f as u16, packets[s][f % 50].clone(), now);
            contributing[s] = input.pull(&mut frame[s], now);
            if contributing[s] {
                mix::accumulate(&mut acc, &frame[s]);
            }
        }
        mix::limit(&acc, &mut pcm);
        outs[0].send(&pcm);
        for s in 0..outputs - 1 {
            minus.copy_from_slice(&acc);
            if contributing[s] {
                mix::subtract(&mut minus, &frame[s]);
            }
            mix::limit(&minus, &mut pcm);
            outs[s + 1].send(&pcm);
        }
        busy += started.elapsed();
    }
    busy / frames as u32
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less arguments; keep that quick.
    let frames = if std::env::args().any(|a| a == "--bench") {
        1000
    } else {
        20
    };
    println!(
        "| speakers | full mix: ms per 20 ms frame | with mix-minus: ms per frame | mix-minus: share of one core |"
    );
    println!("|---:|---:|---:|---:|");
    // The least of three runs: other load on the machine only ever adds time.
    let best = |n, mix_minus| {
        (0..3)
            .map(|_| per_frame(n, mix_minus, frames))
            .min()
            .unwrap_or_default()
    };
    for n in [1, 2, 5, 10, 20, 50] {
        let full = best(n, false);
        let minus = best(n, true);
        println!(
            "| {n} | {:.3} | {:.3} | {:.1} % |",
            full.as_secs_f64() * 1e3,
            minus.as_secs_f64() * 1e3,
            minus.as_secs_f64() / 0.020 * 100.0
        );
    }
}
