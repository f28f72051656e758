//! The exposition of the control socket's, the process's and the cluster's series.

use super::*;

pub(super) fn render_rpc(e: &mut Exposition, s: &RpcStats) {
    e.family(
        "switchboard_rpc_connections",
        Kind::Gauge,
        "Control-socket connections open now that have made their first valid request.",
        |f| f.sample(&[], s.connections_open as f64),
    );
    e.family(
        "switchboard_rpc_preauth_connections",
        Kind::Gauge,
        "Control-socket connections open that have not made their first valid request.",
        |f| f.sample(&[], s.connections_preauth as f64),
    );
    let counters: [(&str, &str, u64); 14] = [
        (
            "switchboard_rpc_connections_accepted_total",
            "Control-socket connections accepted.",
            s.connections_accepted,
        ),
        (
            "switchboard_rpc_connections_rejected_total",
            "Control-socket connections refused because rpc.max_connections were open.",
            s.connections_rejected,
        ),
        (
            "switchboard_rpc_refusals_unexplained_total",
            "Refused control-socket connections closed without an explanation \
             (rpc.max_refusals_in_flight).",
            s.refusals_unexplained,
        ),
        (
            "switchboard_rpc_preauth_evicted_total",
            "Pre-auth control-socket connections closed for a newer one \
             (rpc.max_preauth_connections).",
            s.preauth_evicted,
        ),
        (
            "switchboard_rpc_auth_timeouts_total",
            "Control-socket connections closed without a valid request in rpc.auth_timeout_ms.",
            s.auth_timeouts,
        ),
        (
            "switchboard_rpc_read_timeouts_total",
            "Control-socket connections closed because a message took over rpc.read_timeout_ms.",
            s.read_timeouts,
        ),
        (
            "switchboard_rpc_idle_timeouts_total",
            "Control-socket connections closed after rpc.idle_timeout_ms without input.",
            s.idle_timeouts,
        ),
        (
            "switchboard_rpc_protocol_error_closes_total",
            "Control-socket connections closed for invalid messages (first message or \
             rpc.max_protocol_errors).",
            s.protocol_error_closes,
        ),
        (
            "switchboard_rpc_http_refused_total",
            "HTTP requests to the control socket, answered 400 and closed.",
            s.http_refused,
        ),
        (
            "switchboard_rpc_auth_failures_total",
            "Control-socket connections closed for a missing or wrong token.",
            s.auth_failures,
        ),
        (
            "switchboard_rpc_protocol_errors_total",
            "Control-socket frames refused as unparsable, invalid or too large.",
            s.protocol_errors,
        ),
        (
            "switchboard_rpc_request_timeouts_total",
            "Control-socket requests that ran past rpc.request_timeout_ms.",
            s.request_timeouts,
        ),
        (
            "switchboard_rpc_events_sent_total",
            "Event notifications queued to control-socket subscribers.",
            s.events_sent,
        ),
        (
            "switchboard_rpc_events_dropped_total",
            "Event notifications dropped because a subscriber's queue was full.",
            s.events_dropped,
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help, |f| f.sample(&[], value as f64));
    }
}

pub(super) fn render_process(e: &mut Exposition, p: &ProcessStats) {
    let families: [(&str, Kind, &str, Option<f64>); 7] = [
        (
            "process_cpu_seconds_total",
            Kind::Counter,
            "CPU time of the whole process (user and system), in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory, in bytes.",
            p.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory, in bytes.",
            p.virtual_bytes.map(|v| v as f64),
        ),
        (
            "process_open_fds",
            Kind::Gauge,
            "Open file descriptors (sockets included).",
            p.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            Kind::Gauge,
            "The limit on open file descriptors.",
            p.max_fds.map(|v| v as f64),
        ),
        (
            "process_threads",
            Kind::Gauge,
            "Threads in the process.",
            p.threads.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            "When the process started, in seconds since the Unix epoch.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in families {
        if let Some(v) = value {
            e.family(name, kind, help, |f| f.sample(&[], v));
        }
    }
}

pub(super) fn render_cluster(
    e: &mut Exposition,
    c: &crate::cluster::ClusterStats,
    view: &[crate::cluster::ClusterNode],
    pipes: &std::collections::BTreeMap<String, crate::cluster::PipeTraffic>,
) {
    let gauge = |e: &mut Exposition, name: &str, help: &str, v: f64| {
        e.family(name, Kind::Gauge, help, |f| f.sample(&[], v));
    };
    let counter = |e: &mut Exposition, name: &str, help: &str, v: u64| {
        e.family(name, Kind::Counter, help, |f| f.sample(&[], v as f64));
    };
    gauge(
        e,
        "switchboard_cluster_redis_up",
        "1 while the cluster's Redis answers.",
        f64::from(u8::from(c.redis_up)),
    );
    gauge(
        e,
        "switchboard_cluster_registered",
        "1 while this node's entry is current (the node is ready as a member).",
        f64::from(u8::from(c.registered)),
    );
    gauge(
        e,
        "switchboard_cluster_nodes",
        "Live nodes at the last heartbeat, this one included.",
        c.nodes as f64,
    );
    counter(
        e,
        "switchboard_cluster_redis_errors_total",
        "Redis commands or connections that failed or timed out.",
        c.redis_errors,
    );
    counter(
        e,
        "switchboard_cluster_directory_operations_total",
        "Directory entries (rooms, producers) written or removed by this node.",
        c.directory_operations,
    );
    counter(
        e,
        "switchboard_cluster_forwarded_requests_total",
        "Control-socket requests this node forwarded to the node owning their object.",
        c.forwarded_requests,
    );
    counter(
        e,
        "switchboard_cluster_events_published_total",
        "Room events this node published for the other nodes' control connections.",
        c.events_published,
    );
    counter(
        e,
        "switchboard_cluster_events_received_total",
        "Room events of other nodes this node received.",
        c.events_received,
    );
    counter(
        e,
        "switchboard_cluster_nodes_lost_total",
        "Nodes whose entry expired and whose directory entries this node removed.",
        c.nodes_lost,
    );
    gauge(
        e,
        "switchboard_cluster_room_copies",
        "Rooms spanning nodes whose router here is not the room's first.",
        c.room_copies as f64,
    );
    gauge(
        e,
        "switchboard_cluster_span_tracks_in",
        "Other nodes' tracks piped into this node's routers of rooms spanning nodes.",
        c.tracks_in as f64,
    );
    gauge(
        e,
        "switchboard_cluster_span_tracks_out",
        "Pipes from this node feeding a track to another node's router of its room.",
        c.tracks_out as f64,
    );
    render_cluster_view(e, view);
    if pipes.is_empty() {
        return;
    }
    type Counts = fn(&crate::cluster::PipeTraffic) -> (u64, u64);
    let families: [(&str, &str, Counts); 2] = [
        (
            "switchboard_cluster_pipe_packets_total",
            "RTP packets through this node's pipes (cluster.pipe) to and from another node.",
            |t| (t.packets_in, t.packets_out),
        ),
        (
            "switchboard_cluster_pipe_bytes_total",
            "Bytes (SRTP and SRTCP datagrams) through this node's pipes to and from another node.",
            |t| (t.bytes_in, t.bytes_out),
        ),
    ];
    for (name, help, counts) in families {
        e.family(name, Kind::Counter, help, |f| {
            for (node, t) in pipes {
                let (incoming, outgoing) = counts(t);
                f.sample(&[("node", node), ("direction", "in")], incoming as f64);
                f.sample(&[("node", node), ("direction", "out")], outgoing as f64);
            }
        });
    }
}

/// The nodes as this node's last heartbeat read their entries: one series per live node.
fn render_cluster_view(e: &mut Exposition, view: &[crate::cluster::ClusterNode]) {
    if view.is_empty() {
        return;
    }
    e.family(
        "switchboard_cluster_node_state",
        Kind::Gauge,
        "1 for each live node, labelled with the state its entry says (serving, draining).",
        |f| {
            for n in view {
                let state = match n.state {
                    crate::cluster::NodeState::Serving => "serving",
                    crate::cluster::NodeState::Draining => "draining",
                };
                f.sample(&[("node", &n.id), ("state", state)], 1.0);
            }
        },
    );
    let per_node = |e: &mut Exposition,
                    name: &str,
                    help: &str,
                    value: fn(&crate::cluster::ClusterNode) -> f64| {
        e.family(name, Kind::Gauge, help, |f| {
            for n in view {
                f.sample(&[("node", &n.id)], value(n));
            }
        });
    };
    per_node(
        e,
        "switchboard_cluster_node_load_percent",
        "Each live node's busiest worker's load, percent of its threshold, as its entry says.",
        |n| n.load_percent as f64,
    );
    per_node(
        e,
        "switchboard_cluster_node_rooms",
        "Rooms (routers) each live node holds, as its entry says.",
        |n| n.rooms as f64,
    );
    per_node(
        e,
        "switchboard_cluster_node_packets_per_second",
        "RTP packets per second each live node's workers handle, as its entry says.",
        |n| n.packets_per_second as f64,
    );
}
