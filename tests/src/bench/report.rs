//! Turning runs into Markdown tables (medians over the interleaved runs of each server) and
//! the PNG chart of S1.

use super::scenario::{RunResult, Sample};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Loss below which a step counts as carried.
pub const MAX_LOSS: f64 = 0.01;
/// p99 latency below which a step counts as carried, milliseconds.
pub const MAX_P99_MS: f64 = 50.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Whether a step meets the bar: loss under 1%, p99 under 50 ms, generator not saturated.
pub fn carried(s: &Sample) -> bool {
    s.valid && s.loss < MAX_LOSS && s.p99_ms < MAX_P99_MS
}

/// S1 of one run: the largest subscriber count carried, and subscribers per server core
/// there (count divided by the server's CPU share).
pub fn s1_capacity(r: &RunResult) -> (usize, f64) {
    r.samples
        .iter()
        .filter(|s| carried(s))
        .max_by_key(|s| s.load)
        .map(|s| (s.load, s.load as f64 / s.server_cpu.max(1e-6)))
        .unwrap_or((0, 0.0))
}

/// Median S1 curves of one server: step → median sample values.
#[derive(Clone, Debug, Default)]
pub struct Curve {
    /// Subscriber count of each point.
    pub load: Vec<usize>,
    /// Median server CPU share.
    pub cpu: Vec<f64>,
    /// Median loss.
    pub loss: Vec<f64>,
    /// Median p50, p99, p99.9 latency (ms).
    pub p50: Vec<f64>,
    /// p99.
    pub p99: Vec<f64>,
    /// p99.9.
    pub p999: Vec<f64>,
    /// Median server µs per received packet.
    pub us: Vec<f64>,
    /// Median share of the server's CPU spent in the kernel.
    pub sys_share: Vec<f64>,
    /// Median generator CPU share.
    pub gen_cpu: Vec<f64>,
    /// Runs in which this step was valid / measured.
    pub valid: Vec<(usize, usize)>,
    /// Median server PSS growth since before the first subscriber, per subscriber (KiB).
    pub pss_per_sub: Vec<f64>,
}

/// The median curve over `runs` (all S1 of one server).
pub fn curve(runs: &[&RunResult]) -> Curve {
    let mut by: BTreeMap<usize, Vec<&Sample>> = BTreeMap::new();
    let mut pss: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for s in &r.samples {
            by.entry(s.load).or_default().push(s);
            pss.entry(s.load).or_default().push(
                s.server_pss_kib.saturating_sub(r.base_pss_kib) as f64 / s.load.max(1) as f64,
            );
        }
    }
    let mut c = Curve::default();
    for (load, ss) in by {
        let m = |f: &dyn Fn(&Sample) -> f64| median(ss.iter().map(|s| f(s)).collect());
        c.load.push(load);
        c.cpu.push(m(&|s| s.server_cpu));
        c.loss.push(m(&|s| s.loss));
        c.p50.push(m(&|s| s.p50_ms));
        c.p99.push(m(&|s| s.p99_ms));
        c.p999.push(m(&|s| s.p999_ms));
        c.us.push(m(&|s| s.server_us_per_packet));
        c.sys_share
            .push(m(&|s| s.server_sys_cpu / s.server_cpu.max(1e-9)));
        c.gen_cpu.push(m(&|s| s.generator_cpu));
        c.valid
            .push((ss.iter().filter(|s| s.valid).count(), ss.len()));
        c.pss_per_sub
            .push(median(pss.get(&load).cloned().unwrap_or_default()));
    }
    c
}

fn by_server<'a>(runs: &'a [RunResult], scenario: &str) -> BTreeMap<String, Vec<&'a RunResult>> {
    let mut m: BTreeMap<String, Vec<&RunResult>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.scenario == scenario) {
        m.entry(r.server.clone()).or_default().push(r);
    }
    m
}

fn srtp(runs: &[&RunResult]) -> String {
    let mut p: Vec<String> = runs.iter().flat_map(|r| r.srtp.clone()).collect();
    p.sort();
    p.dedup();
    if p.is_empty() {
        "?".into()
    } else {
        p.join(", ")
    }
}

/// The WebRTC ÷ plain RTP table: the same S1 fan-out over both transports, step by step,
/// with the server's CPU per delivered packet split into user and kernel time.
fn transport_cost(webrtc: &Curve, plain: &Curve) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nThe WebRTC transport's cost: server CPU µs per delivered packet over WebRTC \
         (switchboard) and plain RTP (switchboard-rtp), medians, split into user and kernel \
         time:\n"
    );
    let _ = writeln!(
        out,
        "| N | WebRTC µs/pkt | of it user / kernel | plain RTP µs/pkt | of it user / kernel | WebRTC ÷ plain RTP |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, n) in webrtc.load.iter().enumerate() {
        let Some(j) = plain.load.iter().position(|m| m == n) else {
            continue;
        };
        let (w, p) = (webrtc.us[i], plain.us[j]);
        let split = |us: f64, sys: f64| format!("{:.2} / {:.2}", us * (1.0 - sys), us * sys);
        let _ = writeln!(
            out,
            "| {n} | {w:.2} | {} | {p:.2} | {} | **{:.2}** |",
            split(w, webrtc.sys_share[i]),
            split(p, plain.sys_share[j]),
            w / p
        );
    }
    out
}

/// Markdown for every scenario present in `runs`.
pub fn markdown(runs: &[RunResult]) -> String {
    let mut out = String::new();
    let s1 = by_server(runs, "s1");
    if !s1.is_empty() {
        let _ = writeln!(out, "### S1: one publisher → N subscribers\n");
        let _ = writeln!(
            out,
            "Medians over the runs of each server. Loss and latency are measured at the subscribers; \
             server CPU is the whole server process (`/proc/<pid>/stat`), as a share of its one pinned core; \
             \"µs/pkt\" is server CPU time per packet delivered to a subscriber. A step is valid when the \
             generator stayed under 80% of its core and every client connected.\n"
        );
        for (server, rs) in &s1 {
            let c = curve(rs);
            let _ = writeln!(out, "**{server}** ({} runs; SRTP {})\n", rs.len(), srtp(rs));
            let _ = writeln!(
                out,
                "| N | loss | p50 ms | p99 ms | p99.9 ms | server CPU | of it kernel | µs/pkt | pkt/s per core | PSS per subscriber | generator CPU | valid runs |"
            );
            let _ = writeln!(
                out,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            for i in 0..c.load.len() {
                let _ = writeln!(
                    out,
                    "| {} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.1}% | {:.0}% | {:.2} | {:.0} | {:.0} KiB | {:.0}% | {}/{} |",
                    c.load[i],
                    c.loss[i] * 100.0,
                    c.p50[i],
                    c.p99[i],
                    c.p999[i],
                    c.cpu[i] * 100.0,
                    c.sys_share[i] * 100.0,
                    c.us[i],
                    1e6 / c.us[i],
                    c.pss_per_sub[i],
                    c.gen_cpu[i] * 100.0,
                    c.valid[i].0,
                    c.valid[i].1
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "Capacity per run (largest N with loss < 1%, p99 < 50 ms, valid), and subscribers per server core \
             there (N ÷ server CPU share):\n"
        );
        let _ = writeln!(
            out,
            "| server | max N per run | median max N | median subscribers per core | median µs/pkt at max N |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
        let mut per_core = BTreeMap::new();
        for (server, rs) in &s1 {
            let caps: Vec<(usize, f64)> = rs.iter().map(|r| s1_capacity(r)).collect();
            let us: Vec<f64> = rs
                .iter()
                .zip(&caps)
                .filter_map(|(r, &(n, _))| {
                    r.samples
                        .iter()
                        .find(|s| s.load == n)
                        .map(|s| s.server_us_per_packet)
                })
                .collect();
            let n_med = median(caps.iter().map(|c| c.0 as f64).collect());
            let pc_med = median(caps.iter().map(|c| c.1).collect());
            per_core.insert(server.clone(), pc_med);
            let _ = writeln!(
                out,
                "| {server} | {} | {n_med:.0} | {pc_med:.0} | {:.2} |",
                caps.iter()
                    .map(|c| c.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                median(us)
            );
        }
        for ours in ["switchboard", "switchboard-native"] {
            if let (Some(a), Some(b)) = (per_core.get(ours), per_core.get("janus")) {
                let _ = writeln!(
                    out,
                    "\nRatio of subscribers per core, {ours} ÷ janus: **{:.2}×**",
                    a / b
                );
            }
        }
        if let (Some(webrtc), Some(plain)) = (s1.get("switchboard"), s1.get("switchboard-rtp")) {
            out.push_str(&transport_cost(&curve(webrtc), &curve(plain)));
        }
        let _ = writeln!(out);
    }
    let s2 = by_server(runs, "s2");
    if !s2.is_empty() {
        let _ = writeln!(out, "### S2: rooms of all-publishing peers\n");
        let _ = writeln!(
            out,
            "| server | peers | runs | loss | p50 ms | p99 ms | p99.9 ms | server CPU | µs/pkt | generator CPU | SRTP |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        for (server, rs) in &s2 {
            let ss: Vec<&Sample> = rs.iter().flat_map(|r| r.samples.iter()).collect();
            let m = |f: &dyn Fn(&Sample) -> f64| median(ss.iter().map(|s| f(s)).collect());
            let _ = writeln!(
                out,
                "| {server} | {} | {} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.1}% | {:.2} | {:.0}% | {} |",
                ss.first().map(|s| s.load).unwrap_or(0),
                rs.len(),
                m(&|s| s.loss) * 100.0,
                m(&|s| s.p50_ms),
                m(&|s| s.p99_ms),
                m(&|s| s.p999_ms),
                m(&|s| s.server_cpu) * 100.0,
                m(&|s| s.server_us_per_packet),
                m(&|s| s.generator_cpu) * 100.0,
                srtp(rs)
            );
        }
        let _ = writeln!(out);
    }
    let s3 = by_server(runs, "s3");
    if !s3.is_empty() {
        let _ = writeln!(out, "### S3: burst of simultaneous joins\n");
        let _ = writeln!(
            out,
            "| server | runs | joins | got media | join → first packet p50 ms | p95 ms | max ms | join → connected p50 ms |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (server, rs) in &s3 {
            let js: Vec<_> = rs.iter().filter_map(|r| r.join.clone()).collect();
            let m =
                |f: &dyn Fn(&super::scenario::JoinBurst) -> f64| median(js.iter().map(f).collect());
            let _ = writeln!(
                out,
                "| {server} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                rs.len(),
                m(&|j| j.joins as f64),
                m(&|j| j.completed as f64),
                m(&|j| j.p50_ms),
                m(&|j| j.p95_ms),
                m(&|j| j.max_ms),
                m(&|j| j.connected_p50_ms)
            );
        }
        let _ = writeln!(out);
    }
    let s4 = by_server(runs, "s4");
    if !s4.is_empty() {
        let _ = writeln!(out, "### S4: paused consumers\n");
        let _ = writeln!(
            out,
            "| server | runs | consumers | subscribers | server CPU, media flowing | server CPU, all paused | packets while paused | PSS per consumer |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (server, rs) in &s4 {
            let ps: Vec<_> = rs.iter().filter_map(|r| r.paused.clone()).collect();
            let m =
                |f: &dyn Fn(&super::scenario::Paused) -> f64| median(ps.iter().map(f).collect());
            let _ = writeln!(
                out,
                "| {server} | {} | {:.0} | {:.0} | {:.1}% | {:.1}% | {:.0} | {:.1} KiB |",
                rs.len(),
                m(&|p| p.consumers as f64),
                m(&|p| p.subscribers as f64),
                m(&|p| p.active_cpu) * 100.0,
                m(&|p| p.paused_cpu) * 100.0,
                m(&|p| p.received_while_paused as f64),
                m(&|p| p.pss_per_consumer_kib)
            );
        }
        let _ = writeln!(out);
    }
    for r in runs.iter().filter(|r| r.scenario == "churn") {
        let Some(c) = &r.churn else { continue };
        let minutes = c.plan.as_ref().map_or(0.0, |p| p.seconds / 60.0);
        let _ = writeln!(out, "### Churn: {minutes:.0} minutes ({})\n", r.server);
        let _ = writeln!(
            out,
            "{} rooms, {} connections; peers left through `peer.leave` {}, closed their connections {}, vanished {}; {} connections failed, {} signalling errors. Transports still open {} s after the last departure, before the rooms were closed: {}.\n",
            c.rooms,
            c.connections,
            c.left,
            c.closed,
            c.vanished,
            c.failed,
            c.errors,
            c.plan.as_ref().map_or(0.0, |p| p.drain_seconds),
            c.transports_before_close
        );
        let _ = writeln!(
            out,
            "| idle moment | t (s) | RSS KiB | PSS KiB | fds | threads | rooms | transports | producers | consumers |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (name, s) in [
            ("before any peer", &c.cold),
            ("after the warm-up", &c.warm),
            ("after the run", &c.end),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.t_s,
                s.rss_kib,
                s.pss_kib,
                s.fds,
                s.threads,
                s.objects.rooms,
                s.objects.transports,
                s.objects.producers,
                s.objects.consumers
            );
        }
        let (rss, fds, threads) = c.growth();
        let peak = c.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "\nGrowth from the warm-up's idle end to the run's: RSS {rss:+.1}%, fds {fds:+.1}%, threads {threads:+.1}%; peak RSS {peak} KiB.\n"
        );
    }
    out
}

/// Draws the churn soak: server RSS over time, and its objects over time.
pub fn churn_chart(
    runs: &[RunResult],
    path: &std::path::Path,
    font: &std::path::Path,
) -> Result<(), String> {
    use plotters::prelude::*;
    let c = runs
        .iter()
        .rev()
        .find_map(|r| r.churn.as_ref())
        .ok_or("no churn run in the input")?;
    register_font(font)?;
    let minutes = |s: &super::churn::ChurnSample| s.t_s / 60.0;
    let max_t = c.samples.iter().map(minutes).fold(1.0f64, f64::max);
    let root = BitMapBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, 2));
    let blue = RGBColor(0x1f, 0x77, 0xb4);
    let red = RGBColor(0xd6, 0x27, 0x28);
    let green = RGBColor(0x2c, 0xa0, 0x2c);
    let grey = RGBColor(0x7f, 0x7f, 0x7f);
    let max_rss = c.samples.iter().map(|s| s.rss_kib).max().unwrap_or(1) as f64 / 1024.0 * 1.15;
    let mut rss = ChartBuilder::on(&panels[0])
        .caption("Churn: server memory (MiB)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..max_t * 1.02, 0f64..max_rss)
        .map_err(|e| e.to_string())?;
    rss.configure_mesh()
        .x_desc("minutes")
        .y_desc("MiB")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    type Pick = fn(&super::churn::ChurnSample) -> f64;
    let memory: [(&str, RGBColor, Pick); 2] = [
        ("RSS", blue, |s| s.rss_kib as f64 / 1024.0),
        ("PSS", grey, |s| s.pss_kib as f64 / 1024.0),
    ];
    for (label, color, pick) in memory {
        let points: Vec<(f64, f64)> = c.samples.iter().map(|s| (minutes(s), pick(s))).collect();
        rss.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    rss.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    let counts: [(&str, RGBColor, Pick); 4] = [
        ("transports", blue, |s| s.objects.transports as f64),
        ("consumers", red, |s| s.objects.consumers as f64),
        ("producers", green, |s| s.objects.producers as f64),
        ("fds", grey, |s| s.fds as f64),
    ];
    let max_n = c
        .samples
        .iter()
        .flat_map(|s| counts.iter().map(move |(_, _, pick)| pick(s)))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut objects = ChartBuilder::on(&panels[1])
        .caption("Churn: server objects and descriptors", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..max_t * 1.02, 0f64..max_n)
        .map_err(|e| e.to_string())?;
    objects
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("count")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (label, color, pick) in counts {
        let points: Vec<(f64, f64)> = c.samples.iter().map(|s| (minutes(s), pick(s))).collect();
        objects
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    objects
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn register_font(font: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::FontStyle;
    let bytes = std::fs::read(font).map_err(|e| format!("{}: {e}", font.display()))?;
    // plotters keeps registered fonts for the process's lifetime.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "cannot load the font".to_owned())
}

/// Draws S1's median curves: subscribers vs server CPU, and subscribers vs loss, one line per
/// server. Text needs a TrueType font: `font` (DejaVu Sans on Debian).
pub fn chart(
    runs: &[RunResult],
    path: &std::path::Path,
    font: &std::path::Path,
) -> Result<(), String> {
    use plotters::prelude::*;
    register_font(font)?;
    let s1 = by_server(runs, "s1");
    let curves: Vec<(String, Curve)> = s1.iter().map(|(k, v)| (k.clone(), curve(v))).collect();
    let max_n = curves
        .iter()
        .flat_map(|(_, c)| c.load.iter().copied())
        .max()
        .unwrap_or(10) as f64;
    let root = BitMapBackend::new(path, (1100, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((1, 2));
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    type Value = fn(&Curve, usize) -> f64;
    let specs: [(&str, &str, Value); 2] = [
        ("Server CPU (% of one core)", "server CPU %", |c, i| {
            c.cpu[i] * 100.0
        }),
        ("Loss at subscribers (%)", "loss %", |c, i| {
            c.loss[i] * 100.0
        }),
    ];
    for (panel, (title, ylabel, value)) in panels.iter().zip(specs) {
        let max_y = curves
            .iter()
            .flat_map(|(_, c)| (0..c.load.len()).map(move |i| value(c, i)))
            .filter(|v| v.is_finite())
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("S1: 1 publisher → N subscribers — {title}"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..max_n * 1.05, 0f64..max_y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("subscribers")
            .y_desc(ylabel)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (server, c)) in curves.iter().enumerate() {
            let color = colors[k % colors.len()];
            let points: Vec<(f64, f64)> = (0..c.load.len())
                .map(|i| (c.load[i] as f64, value(c, i)))
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(server.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
