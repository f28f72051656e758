//! What `/metrics` says, and where each number comes from.
//!
//! A scrape reads, in this order:
//! - the workers, through [`ServerHandle::metrics`]: object counts, packets and bytes from the
//!   shared load counters (the numbers placement and `worker.list` use), and the media
//!   counters each worker thread keeps in its rooms (the numbers `router.stats`,
//!   `producer.stats` and `consumer.stats` show);
//! - each worker thread's CPU time and the process's figures, from `/proc`;
//! - the control socket's counters (the numbers `server.stats` shows), and its per-method
//!   requests and latencies, which are recorded as they happen through the `metrics` facade
//!   into a Prometheus recorder of this server's own.
//!
//! Nothing is counted twice: every number has one source, and the RPC statistics read the
//! same one. The packet path pays nothing for a scrape beyond answering one message per
//! worker.

use super::exposition::{Exposition, Kind, Labels};
use super::process::{self, ProcessStats};
use crate::rpc::RpcStats;
use metrics::{Key, Label, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use std::time::Duration;
use switchboard_actors::metrics::{MediaTotals, WorkerMedia};
use switchboard_actors::{ServerHandle, ServerMetrics};
use switchboard_core::middleware::{Metric, MetricKind};
use switchboard_core::transport::TransportState;

/// A middleware or metric name as part of a Prometheus name: anything but ASCII letters,
/// digits and `_` becomes `_`.
fn metric_name_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

mod sections;

use sections::{render_cluster, render_process, render_rpc};

/// How long a scrape waits for a worker thread to report its counters. A worker that takes
/// longer is shown as not responsive, and the others are reported without it.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bounds of the RPC latency buckets, in seconds.
pub const RPC_LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const RPC_REQUESTS: &str = "switchboard_rpc_requests_total";

/// A family read from one field: its name, its help text, and how to read the value.
type Field<T, V> = (&'static str, &'static str, fn(&T) -> V);
const RPC_DURATION: &str = "switchboard_rpc_request_duration_seconds";

/// Every state a transport can report, so that each has a series (at 0 when empty).
const STATES: [TransportState; 6] = [
    TransportState::New,
    TransportState::Connecting,
    TransportState::Connected,
    TransportState::Disconnected,
    TransportState::Failed,
    TransportState::Closed,
];

/// Control-socket requests by method and result, and their latency: recorded per request
/// into a Prometheus recorder that belongs to this server (not the process-wide one, so two
/// servers in one process, as in tests, keep their numbers apart).
pub struct RpcMetrics {
    recorder: PrometheusRecorder,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcMetrics {
    /// An empty recorder.
    pub fn new() -> Self {
        // Only fails for an empty bucket list, which this is not; fall back to summaries
        // rather than panic.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), RPC_LATENCY_BOUNDS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        recorder.describe_counter(
            RPC_REQUESTS.into(),
            None,
            SharedString::const_str(
                "Control-socket requests and notifications handled, by method and result (ok or the error code).",
            ),
        );
        recorder.describe_histogram(
            RPC_DURATION.into(),
            Some(Unit::Seconds),
            SharedString::const_str(
                "Time from dispatching a control-socket request to its outcome, by method.",
            ),
        );
        Self { recorder }
    }

    /// Records one handled request. `method` is a name from the method table, or `unknown`
    /// (names from the wire are not labels: anyone could create series without end).
    pub fn record(&self, method: &'static str, result: &str, elapsed: Duration) {
        static META: metrics::Metadata<'static> =
            metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);
        let requests = Key::from_parts(
            RPC_REQUESTS,
            vec![
                Label::new("method", method),
                Label::new("result", result.to_owned()),
            ],
        );
        self.recorder
            .register_counter(&requests, &META)
            .increment(1);
        let duration = Key::from_parts(RPC_DURATION, vec![Label::new("method", method)]);
        self.recorder
            .register_histogram(&duration, &META)
            .record(elapsed.as_secs_f64());
    }

    /// The recorded families in the text format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// Everything one scrape reports, gathered before anything is written.
pub struct Snapshot {
    /// The workers' counters.
    pub server: ServerMetrics,
    /// Each worker thread's CPU seconds, by worker number.
    pub worker_cpu: Vec<Option<f64>>,
    /// Registered transport kinds.
    pub kinds: Vec<&'static str>,
    /// Registered middleware names.
    pub middleware: Vec<&'static str>,
    /// The control socket's counters and rendered per-method families, when it runs.
    pub rpc: Option<(RpcStats, String)>,
    /// The process.
    pub process: ProcessStats,
    /// Whether rooms get series of their own.
    pub per_room: bool,
    /// The cluster membership's counters, when the node is in a cluster.
    pub cluster: Option<crate::cluster::ClusterStats>,
    /// Traffic through this node's pipes to other nodes, by node.
    pub cluster_pipes: std::collections::BTreeMap<String, crate::cluster::PipeTraffic>,
    /// The live nodes' entries as this node's last heartbeat read them.
    pub cluster_view: Vec<crate::cluster::ClusterNode>,
}

impl Snapshot {
    /// Gathers a snapshot: asks every worker (at most [`WORKER_TIMEOUT`]), reads `/proc`.
    pub async fn gather(
        server: &ServerHandle,
        rpc: Option<(RpcStats, String)>,
        per_room: bool,
    ) -> Self {
        let metrics = server.metrics(per_room, WORKER_TIMEOUT).await;
        let worker_cpu = metrics
            .workers
            .iter()
            .map(|w| w.thread_id.and_then(process::thread_cpu_seconds))
            .collect();
        Self {
            server: metrics,
            worker_cpu,
            kinds: server.transport_kinds(),
            middleware: server.middleware_names(),
            rpc,
            process: process::process(),
            per_room,
            cluster: None,
            cluster_pipes: Default::default(),
            cluster_view: Vec::new(),
        }
    }

    /// The snapshot in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        e.family(
            "switchboard_build_info",
            Kind::Gauge,
            "Always 1; the version label says which build runs.",
            |f| f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        );
        self.render_workers(&mut e);
        self.render_transports(&mut e);
        self.render_media(&mut e);
        self.render_middleware(&mut e);
        if self.per_room {
            self.render_rooms(&mut e);
        }
        e.family(
            "switchboard_events_dropped_total",
            Kind::Counter,
            "Server events dropped because a subscriber did not keep up.",
            |f| f.sample(&[], self.server.events_dropped as f64),
        );
        if let Some((stats, rendered)) = &self.rpc {
            render_rpc(&mut e, stats);
            e.append(rendered);
        }
        if let Some(cluster) = &self.cluster {
            render_cluster(&mut e, cluster, &self.cluster_view, &self.cluster_pipes);
        }
        render_process(&mut e, &self.process);
        e.finish()
    }

    fn worker_labels(&self) -> Vec<String> {
        self.server
            .workers
            .iter()
            .map(|w| w.load.id.0.to_string())
            .collect()
    }

    fn render_workers(&self, e: &mut Exposition) {
        let ids = self.worker_labels();
        let workers = &self.server.workers;
        e.family(
            "switchboard_worker_cpu_seconds_total",
            Kind::Counter,
            "CPU time used by the worker's thread (user and system), in seconds.",
            |f| {
                for (id, cpu) in ids.iter().zip(&self.worker_cpu) {
                    if let Some(cpu) = cpu {
                        f.sample(&[("worker", id)], *cpu);
                    }
                }
            },
        );
        e.family(
            "switchboard_worker_responsive",
            Kind::Gauge,
            "1 when the worker thread reported its media counters for this scrape in time, 0 when it was too busy.",
            |f| {
                for (id, w) in ids.iter().zip(workers) {
                    f.sample(&[("worker", id)], f64::from(u8::from(w.media.is_some())));
                }
            },
        );
        let gauges: [Field<switchboard_actors::WorkerInfo, f64>; 5] = [
            (
                "switchboard_worker_rooms",
                "Rooms (routers) on the worker.",
                |l| l.routers as f64,
            ),
            (
                "switchboard_worker_transports",
                "Transports on the worker.",
                |l| l.transports as f64,
            ),
            (
                "switchboard_worker_producers",
                "Producers (incoming tracks) on the worker.",
                |l| l.producers as f64,
            ),
            (
                "switchboard_worker_consumers",
                "Consumers (outgoing tracks) on the worker.",
                |l| l.consumers as f64,
            ),
            (
                "switchboard_worker_load_score",
                "The worker's load as room placement sees it (rooms + transports + producers + consumers); new rooms go to the lowest.",
                |l| l.score as f64,
            ),
        ];
        for (name, help, value) in gauges {
            e.family(name, Kind::Gauge, help, |f| {
                for (id, w) in ids.iter().zip(workers) {
                    f.sample(&[("worker", id)], value(&w.load));
                }
            });
        }
        let counters: [Field<switchboard_actors::WorkerInfo, f64>; 4] = [
            (
                "switchboard_worker_received_packets_total",
                "RTP packets received by the worker's rooms.",
                |l| l.packets_in as f64,
            ),
            (
                "switchboard_worker_received_bytes_total",
                "RTP payload bytes received by the worker's rooms.",
                |l| l.bytes_in as f64,
            ),
            (
                "switchboard_worker_forwarded_packets_total",
                "RTP packets sent to consumers by the worker (one per consumer; retransmissions not included).",
                |l| l.packets_out as f64,
            ),
            (
                "switchboard_worker_forwarded_bytes_total",
                "RTP payload bytes sent to consumers by the worker.",
                |l| l.bytes_out as f64,
            ),
        ];
        for (name, help, value) in counters {
            e.family(name, Kind::Counter, help, |f| {
                for (id, w) in ids.iter().zip(workers) {
                    f.sample(&[("worker", id)], value(&w.load));
                }
            });
        }
    }

    /// Workers that answered, with their label.
    fn answered(&self) -> Vec<(String, &WorkerMedia)> {
        self.server
            .workers
            .iter()
            .filter_map(|w| Some((w.load.id.0.to_string(), w.media.as_ref()?)))
            .collect()
    }

    fn render_transports(&self, e: &mut Exposition) {
        let answered = self.answered();
        e.family(
            "switchboard_transports",
            Kind::Gauge,
            "Open transports by worker, plugin kind and connection state.",
            |f| {
                for (id, m) in &answered {
                    for kind in &self.kinds {
                        for state in STATES {
                            let n = m
                                .transport_states
                                .get(&((*kind).to_owned(), state))
                                .copied()
                                .unwrap_or(0);
                            let state = state.to_string();
                            f.sample(
                                &[("worker", id), ("kind", kind), ("state", &state)],
                                n as f64,
                            );
                        }
                    }
                }
            },
        );
        e.family(
            "switchboard_transport_failures_total",
            Kind::Counter,
            "Transports that reached the failed state, by plugin kind and the stage that failed (ice, dtls, unknown).",
            |f| {
                for (id, m) in &answered {
                    for ((kind, stage), n) in &m.transport_failures {
                        f.sample(&[("worker", id), ("kind", kind), ("stage", stage)], *n as f64);
                    }
                }
            },
        );
    }

    fn render_media(&self, e: &mut Exposition) {
        let answered = self.answered();
        let rows: Vec<(&str, &MediaTotals)> = answered
            .iter()
            .map(|(id, m)| (id.as_str(), &m.media))
            .collect();
        e.family(
            "switchboard_rtp_dropped_packets_total",
            Kind::Counter,
            "RTP not forwarded, by reason: malformed, unknown_ssrc, unknown_payload_type, producer_paused and duplicate_rtx per incoming packet; waiting_keyframe and unmapped_payload_type per consumer copy; reentrant for packets a transport delivered while its room was busy.",
            |f| {
                for (id, m) in &rows {
                    let reasons = [
                        ("malformed", m.router.malformed_rtp),
                        ("unknown_ssrc", m.router.unknown_ssrc),
                        (
                            "unknown_payload_type",
                            m.producers.dropped_unknown_payload_type,
                        ),
                        ("producer_paused", m.producers.dropped_paused),
                        ("duplicate_rtx", m.producers.duplicates),
                        ("waiting_keyframe", m.consumers.dropped_waiting_keyframe),
                        ("unmapped_payload_type", m.consumers.dropped_unmapped),
                        ("reentrant", m.reentrant_drops),
                    ];
                    for (reason, n) in reasons {
                        f.sample(&[("worker", id), ("reason", reason)], n as f64);
                    }
                }
            },
        );
        e.family(
            "switchboard_rtcp_dropped_packets_total",
            Kind::Counter,
            "RTCP not used, by reason: malformed compound packets, and packets about no known stream.",
            |f| {
                for (id, m) in &rows {
                    f.sample(&[("worker", id), ("reason", "malformed")], m.router.malformed_rtcp as f64);
                    f.sample(&[("worker", id), ("reason", "unmatched")], m.router.unmatched_rtcp as f64);
                }
            },
        );
        let counters: [Field<MediaTotals, u64>; 11] = [
            (
                "switchboard_nacks_received_total",
                "RTCP NACK messages received from receivers.",
                |m| m.consumers.nacks,
            ),
            (
                "switchboard_retransmitted_packets_total",
                "Packets resent to receivers in answer to their NACKs.",
                |m| m.consumers.retransmitted,
            ),
            (
                "switchboard_retransmission_misses_total",
                "NACKed packets that could not be resent (no longer held).",
                |m| m.consumers.retransmission_misses,
            ),
            (
                "switchboard_rtx_recovered_packets_total",
                "Packets senders repaired with RTX (after NACKs sent to them).",
                |m| m.producers.rtx_packets,
            ),
            (
                "switchboard_plis_received_total",
                "RTCP PLI (picture loss) messages received from receivers.",
                |m| m.consumers.plis,
            ),
            (
                "switchboard_firs_received_total",
                "RTCP FIR (full intra request) messages received from receivers.",
                |m| m.consumers.firs,
            ),
            (
                "switchboard_keyframe_requests_total",
                "Keyframes asked of producers (receivers' PLI/FIR, joins, resumes, the backend), before throttling.",
                |m| m.producers.keyframe_requests,
            ),
            (
                "switchboard_keyframe_requests_sent_total",
                "Keyframe requests (PLI or FIR) actually sent to senders, after throttling.",
                |m| m.producers.keyframe_requests_sent,
            ),
            (
                "switchboard_keyframes_received_total",
                "Keyframes received from producers.",
                |m| m.producers.keyframes,
            ),
            (
                "switchboard_sender_reports_received_total",
                "RTCP sender reports received from producers.",
                |m| m.producers.sender_reports,
            ),
            (
                "switchboard_sender_reports_sent_total",
                "RTCP sender reports sent to receivers.",
                |m| m.consumers.sender_reports,
            ),
        ];
        for (name, help, value) in counters {
            e.family(name, Kind::Counter, help, |f| {
                for (id, m) in &rows {
                    f.sample(&[("worker", id)], value(m) as f64);
                }
            });
        }
        e.family(
            "switchboard_nack_refused_packets_total",
            Kind::Counter,
            "NACKed packets the NACK policy did not resend, by reason: duplicate (listed twice in one NACK), recently_resent (within the receiver's RTT), over_limit (media.nack_max_resends_per_nack), rate_limited (media.nack_max_resends_per_second).",
            |f| {
                for (id, m) in &rows {
                    let reasons = [
                        ("duplicate", m.consumers.nack_duplicates),
                        ("recently_resent", m.consumers.nack_recently_resent),
                        ("over_limit", m.consumers.nack_over_limit),
                        ("rate_limited", m.consumers.nack_rate_limited),
                    ];
                    for (reason, n) in reasons {
                        f.sample(&[("worker", id), ("reason", reason)], n as f64);
                    }
                }
            },
        );
        e.family(
            "switchboard_receiver_rtt_seconds",
            Kind::Histogram,
            "Round-trip time to receivers, one observation per receiver report that echoes one of our sender reports.",
            |f| {
                for (id, m) in &rows {
                    f.histogram(&[("worker", id)], &m.router.quality.rtt_seconds);
                }
            },
        );
        e.family(
            "switchboard_receiver_loss_ratio",
            Kind::Histogram,
            "Fraction of packets lost (0 to 1) as receivers report it, one observation per report block.",
            |f| {
                for (id, m) in &rows {
                    f.histogram(&[("worker", id)], &m.router.quality.loss_ratio);
                }
            },
        );
        e.family(
            "switchboard_receiver_jitter_seconds",
            Kind::Histogram,
            "Interarrival jitter as receivers report it, one observation per report block.",
            |f| {
                for (id, m) in &rows {
                    f.histogram(&[("worker", id)], &m.router.quality.jitter_seconds);
                }
            },
        );
        e.family(
            "switchboard_middleware_attached",
            Kind::Gauge,
            "Middleware instances attached to rooms, by name.",
            |f| {
                for (id, m) in &answered {
                    for name in &self.middleware {
                        let n = m.middleware_attached.get(*name).copied().unwrap_or(0);
                        f.sample(&[("worker", id), ("name", name)], n as f64);
                    }
                }
            },
        );
        e.family(
            "switchboard_middleware_failures_total",
            Kind::Counter,
            "Middleware detached from a room because it panicked, by name.",
            |f| {
                for (id, m) in &answered {
                    for (name, n) in &m.middleware_failures {
                        f.sample(&[("worker", id), ("name", name)], *n as f64);
                    }
                }
            },
        );
    }

    fn render_middleware(&self, e: &mut Exposition) {
        let answered = self.answered();
        type PacketField = (
            &'static str,
            &'static str,
            fn(&switchboard_actors::metrics::MiddlewarePackets) -> u64,
        );
        let packets: [PacketField; 3] = [
            (
                "switchboard_middleware_queued_packets_total",
                "Packets (RTP and producer RTCP) put into middleware instances' queues, by middleware name.",
                |p| p.queued,
            ),
            (
                "switchboard_middleware_delivered_packets_total",
                "Packets handed to middleware instances, by middleware name.",
                |p| p.delivered,
            ),
            (
                "switchboard_middleware_dropped_packets_total",
                "Packets dropped because a middleware instance's queue (middleware.queue_capacity) was full, by middleware name.",
                |p| p.dropped,
            ),
        ];
        for (name, help, value) in packets {
            e.family(name, Kind::Counter, help, |f| {
                for (id, m) in &answered {
                    for (mw, p) in &m.middleware_packets {
                        f.sample(&[("worker", id), ("name", mw)], value(p) as f64);
                    }
                }
            });
        }
        // The instances' own metrics: one family per middleware and metric name, a series per
        // room with per-room labels, else one per label set summed over rooms (counters of
        // detached instances included, so the sums never go backwards).
        type Series = Vec<(Vec<(String, String)>, f64)>;
        let mut families: std::collections::BTreeMap<String, (Kind, &str, Series)> =
            Default::default();
        let mut add = |mw: &str, router: Option<String>, metric: &Metric| {
            let name = format!(
                "switchboard_middleware_{}_{}",
                metric_name_part(mw),
                metric_name_part(metric.name)
            );
            let kind = match metric.kind {
                MetricKind::Counter => Kind::Counter,
                MetricKind::Gauge => Kind::Gauge,
            };
            let mut labels: Vec<(String, String)> = router
                .map(|r| vec![("router".to_owned(), r)])
                .unwrap_or_default();
            labels.extend(
                metric
                    .labels
                    .iter()
                    .map(|(k, v)| (metric_name_part(k), v.clone())),
            );
            let entry = families
                .entry(name)
                .or_insert_with(|| (kind, metric.help, Vec::new()));
            match entry.2.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, v)) => *v += metric.value,
                None => entry.2.push((labels, metric.value)),
            }
        };
        for (_, m) in &answered {
            for (mw, router, metric) in &m.middleware_metrics {
                add(mw, self.per_room.then(|| router.to_string()), metric);
            }
            if !self.per_room {
                for (mw, metric) in &m.middleware_retired_metrics {
                    add(mw, None, metric);
                }
            }
        }
        for (name, (kind, help, series)) in &families {
            e.family(name, *kind, help, |f| {
                for (labels, value) in series {
                    let labels: Vec<(&str, &str)> = labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    f.sample(&labels, *value);
                }
            });
        }
    }

    fn render_rooms(&self, e: &mut Exposition) {
        let answered = self.answered();
        let rooms: Vec<(&str, String, &switchboard_actors::metrics::RoomMetrics)> = answered
            .iter()
            .flat_map(|(id, m)| {
                m.rooms
                    .iter()
                    .map(move |r| (id.as_str(), r.id.to_string(), r))
            })
            .collect();
        type RoomField = Field<switchboard_actors::metrics::RoomMetrics, u64>;
        let gauges: [RoomField; 4] = [
            ("switchboard_room_peers", "Peers in the room.", |r| {
                r.peers as u64
            }),
            (
                "switchboard_room_transports",
                "Transports in the room.",
                |r| r.transports as u64,
            ),
            (
                "switchboard_room_producers",
                "Producers in the room.",
                |r| r.producers as u64,
            ),
            (
                "switchboard_room_consumers",
                "Consumers in the room.",
                |r| r.consumers as u64,
            ),
        ];
        let counters: [RoomField; 8] = [
            (
                "switchboard_room_received_packets_total",
                "RTP packets the room received.",
                |r| r.media.router.rtp_in,
            ),
            (
                "switchboard_room_forwarded_packets_total",
                "RTP packets the room sent to consumers.",
                |r| r.media.router.rtp_out,
            ),
            (
                "switchboard_room_forwarded_bytes_total",
                "RTP payload bytes the room sent to consumers.",
                |r| r.media.consumers.bytes,
            ),
            (
                "switchboard_room_nacks_received_total",
                "NACK messages the room's receivers sent.",
                |r| r.media.consumers.nacks,
            ),
            (
                "switchboard_room_retransmitted_packets_total",
                "Packets the room resent in answer to NACKs.",
                |r| r.media.consumers.retransmitted,
            ),
            (
                "switchboard_room_plis_received_total",
                "PLI messages the room's receivers sent.",
                |r| r.media.consumers.plis,
            ),
            (
                "switchboard_room_firs_received_total",
                "FIR messages the room's receivers sent.",
                |r| r.media.consumers.firs,
            ),
            (
                "switchboard_room_keyframe_requests_total",
                "Keyframes asked of the room's producers, before throttling.",
                |r| r.media.producers.keyframe_requests,
            ),
        ];
        let families = gauges
            .iter()
            .map(|g| (g, Kind::Gauge))
            .chain(counters.iter().map(|c| (c, Kind::Counter)));
        for ((name, help, value), kind) in families {
            e.family(name, kind, help, |f| {
                for (worker, room, r) in &rooms {
                    let labels: Labels<'_> = &[("worker", worker), ("room", room)];
                    f.sample(labels, value(r) as f64);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
