//! `switchboard_bench`: the load generator. Real WebRTC clients (ICE, DTLS-SRTP) on
//! webrtc-rs's sans-IO core, all on one thread, against a running Switchboard or Janus.
//!
//! ```sh
//! # a scenario against a server that is already running (pin both with taskset):
//! taskset -c 1 switchboard_bench run --target switchboard --rpc 127.0.0.1:7700 \
//!     --server-pid $PID --scenario s1 --steps 10,50,100 --out results.jsonl
//! taskset -c 1 switchboard_bench run --target janus --janus http://127.0.0.1:8088/janus \
//!     --server-pid $JANUS_PID --ip 192.0.2.2 --scenario s1 --steps 10,50 --out results.jsonl
//! # tables and chart from the collected runs:
//! switchboard_bench report --input results.jsonl --chart docs/bench-s1.png
//! ```
//!
//! `scripts/bench` runs the whole interleaved comparison; docs/benchmarks.md explains it.

use clap::{Parser, Subcommand, ValueEnum};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_tests::bench::churn::ChurnPlan;
use switchboard_tests::bench::engine::Engine;
use switchboard_tests::bench::report;
use switchboard_tests::bench::scenario::{Bench, RunResult};
use switchboard_tests::bench::sfu::{Janus, Sfu, Switchboard};

#[derive(Parser)]
#[command(about = "WebRTC load generator for Switchboard and Janus")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    Switchboard,
    Janus,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    S1,
    S2,
    S3,
    S4,
    /// The churn soak (Switchboard only): rooms open, carry media, empty and close.
    Churn,
}

/// SRTP profiles the clients offer.
#[derive(Clone, Copy, ValueEnum)]
enum Srtp {
    /// The stack's defaults, in its order (AES-GCM first); the server picks.
    Any,
    /// AEAD_AES_128_GCM only.
    Gcm,
    /// AES_CM_128_HMAC_SHA1_80 only (what Chromium negotiated with Switchboard here).
    Cm,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario against one server and appends its result (one JSON line) to --out.
    Run {
        #[arg(long, value_enum)]
        target: Target,
        /// Switchboard's control socket.
        #[arg(long, default_value = "127.0.0.1:7700")]
        rpc: String,
        /// Janus's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8088/janus")]
        janus: String,
        /// Janus VideoRoom room.
        #[arg(long, default_value_t = 1234)]
        janus_room: u64,
        /// The server's process id, for its CPU time and memory.
        #[arg(long)]
        server_pid: u32,
        /// Address the clients bind: 127.0.0.1 for Switchboard, the machine's own address
        /// for Janus (it leaves loopback out of ICE).
        #[arg(long, default_value = "127.0.0.1")]
        ip: IpAddr,
        #[arg(long, value_enum)]
        scenario: Scenario,
        /// S1: subscriber counts to step through.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100,200")]
        steps: Vec<usize>,
        /// S2: rooms.
        #[arg(long, default_value_t = 5)]
        rooms: usize,
        /// S2: peers per room.
        #[arg(long, default_value_t = 4)]
        peers: usize,
        /// S3: simultaneous joins.
        #[arg(long, default_value_t = 50)]
        joins: usize,
        /// S4: subscribers (two consumers each).
        #[arg(long, default_value_t = 250)]
        subscribers: usize,
        /// Churn: seconds of churn after the warm-up.
        #[arg(long, default_value_t = 1800.0)]
        churn_seconds: f64,
        /// Churn: seconds of the warm-up round whose idle end is the baseline.
        #[arg(long, default_value_t = 120.0)]
        warmup_seconds: f64,
        /// Churn: a room opens every this many seconds.
        #[arg(long, default_value_t = 10.0)]
        cycle_seconds: f64,
        /// Churn: participants per room (the first half publish, all subscribe).
        #[arg(long, default_value_t = 4)]
        participants: usize,
        /// Churn: cycles a room carries media before its participants go.
        #[arg(long, default_value_t = 2)]
        hold_cycles: usize,
        /// Churn: seconds from the last departure to closing the room; longer than the
        /// server's webrtc.consent_timeout_ms plus webrtc.peer_timeout_ms.
        #[arg(long, default_value_t = 20.0)]
        drain_seconds: f64,
        /// Churn: seconds between samples.
        #[arg(long, default_value_t = 5.0)]
        sample_seconds: f64,
        /// SRTP profiles the clients offer.
        #[arg(long, value_enum, default_value = "any")]
        srtp: Srtp,
        /// Seconds per measurement window.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// File to append the result to (JSON lines).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The server's name in the results, when one target runs in several setups (for
        /// example `switchboard-native` for `webrtc.engine = "native"`); default: the target.
        #[arg(long)]
        label: Option<String>,
        /// Every this-many-th subscriber authenticates and decrypts its media (latency and
        /// payload checks); the others count RTP packets from the header. 1: all decrypt.
        #[arg(long, default_value_t = 1)]
        decrypt_every: usize,
        /// Switchboard only: the clients use the `rtp` plugin (plain RTP, no ICE, DTLS or
        /// SRTP) instead of WebRTC; the same streams and fan-out, for the WebRTC ÷ plain RTP
        /// cost ratio. S1 only.
        #[arg(long)]
        plain_rtp: bool,
    },
    /// Reads results and prints Markdown tables; draws the S1 chart.
    Report {
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// PNG to draw (subscribers vs server CPU and vs loss).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// PNG of the churn soak (RSS and objects over time).
        #[arg(long)]
        churn_chart: Option<PathBuf>,
        #[arg(
            long,
            default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
        )]
        font: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run {
            target,
            rpc,
            janus,
            janus_room,
            server_pid,
            ip,
            scenario,
            steps,
            rooms,
            peers,
            joins,
            subscribers,
            churn_seconds,
            warmup_seconds,
            cycle_seconds,
            participants,
            hold_cycles,
            drain_seconds,
            sample_seconds,
            srtp,
            seconds,
            out,
            label,
            decrypt_every,
            plain_rtp,
        } => {
            if plain_rtp
                && !(matches!(target, Target::Switchboard) && matches!(scenario, Scenario::S1))
            {
                fail("--plain-rtp is for S1 against Switchboard");
            }
            let sfu: Arc<dyn Sfu> = match target {
                Target::Switchboard => match Switchboard::connect(&rpc) {
                    Ok(s) => Arc::new(s),
                    Err(e) => fail(&format!("cannot reach switchboard at {rpc}: {e}")),
                },
                Target::Janus => match Janus::connect(&janus, janus_room) {
                    Ok(j) => {
                        let j = Arc::new(j);
                        let keep = Arc::downgrade(&j);
                        std::thread::spawn(move || {
                            while let Some(j) = keep.upgrade() {
                                j.keepalive();
                                drop(j);
                                std::thread::sleep(std::time::Duration::from_secs(20));
                            }
                        });
                        j
                    }
                    Err(e) => fail(&format!("cannot reach janus at {janus}: {e}")),
                },
            };
            let profiles = match srtp {
                Srtp::Any => vec![],
                Srtp::Gcm => vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm],
                Srtp::Cm => vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80],
            };
            let engine = match Engine::start_sampling(profiles, decrypt_every) {
                Ok(e) => Arc::new(e),
                Err(e) => fail(&format!("cannot start the client loop: {e}")),
            };
            let bench = Arc::new(Bench {
                engine,
                sfu,
                server_pid,
                ip,
                seconds,
                plain_rtp,
            });
            let result = match scenario {
                Scenario::S1 => bench.s1(&steps),
                Scenario::S2 => bench.s2(rooms, peers),
                Scenario::S3 => bench.s3(joins),
                Scenario::S4 => bench.s4(subscribers),
                Scenario::Churn => bench.churn(ChurnPlan {
                    seconds: churn_seconds,
                    warmup_seconds,
                    cycle_seconds,
                    participants,
                    hold_cycles,
                    drain_seconds,
                    sample_seconds,
                }),
            };
            let result = result.map(|mut r| {
                if let Some(label) = label {
                    r.server = label;
                }
                r
            });
            match result {
                Ok(r) => {
                    let line = serde_json::to_string(&r).unwrap_or_default();
                    println!("{line}");
                    if let Some(path) = out {
                        let written = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&path)
                            .and_then(|mut f| writeln!(f, "{line}"));
                        if let Err(e) = written {
                            fail(&format!("{}: {e}", path.display()));
                        }
                    }
                    0
                }
                Err(e) => {
                    eprintln!("scenario failed: {e}");
                    1
                }
            }
        }
        Command::Report {
            input,
            chart,
            churn_chart,
            font,
        } => {
            let mut runs: Vec<RunResult> = Vec::new();
            for path in &input {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    match serde_json::from_str(line) {
                        Ok(r) => runs.push(r),
                        Err(e) => eprintln!("{}: skipping a line: {e}", path.display()),
                    }
                }
            }
            print!("{}", report::markdown(&runs));
            if let Some(png) = chart
                && let Err(e) = report::chart(&runs, &png, &font)
            {
                fail(&format!("chart: {e}"));
            }
            if let Some(png) = churn_chart
                && let Err(e) = report::churn_chart(&runs, &png, &font)
            {
                fail(&format!("churn chart: {e}"));
            }
            0
        }
    };
    std::process::exit(code);
}

fn fail(message: &str) -> ! {
    eprintln!("switchboard_bench: {message}");
    std::process::exit(2);
}
