//! `switchboard ctl`: operator commands over the control socket.
//!
//! Output is for people by default (tables, a tree for `dump`) and JSON with `--json`;
//! errors go to standard error with their code, such as
//! `switchboard ctl: not_found: router 6f1c… not found`.

use crate::cli::{CtlArgs, CtlCommand, CtlView};
use crate::client::{Client, ClientError, Notification};
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;
use switchboard_core::RouterId;

/// Where `ctl` connects when neither `--rpc` nor the environment says.
pub const DEFAULT_RPC: &str = "127.0.0.1:7700";

/// Runs a `ctl` command and reports the outcome as an exit code.
pub fn main(args: &CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchboard ctl: cannot build the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The address `ctl` connects to: `--rpc`, else the server's own environment settings.
pub fn resolve_endpoint(flag: Option<&str>, env: &[(String, String)]) -> String {
    let var = |name: &str| {
        env.iter()
            .find(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(addr) = flag {
        return addr.to_owned();
    }
    if let Some(listen) = var("SWITCHBOARD_RPC__LISTEN") {
        return listen;
    }
    if let Some(path) = var("SWITCHBOARD_RPC__UNIX_SOCKET") {
        return format!("unix:{path}");
    }
    DEFAULT_RPC.to_owned()
}

/// Runs a command and returns what to print.
pub async fn run(args: &CtlArgs) -> Result<String, ClientError> {
    let endpoint = resolve_endpoint(args.rpc.as_deref(), &crate::load::process_env());
    let timeout = Duration::from_millis(args.timeout_ms);
    let client = tokio::time::timeout(timeout, Client::connect(&endpoint, args.token.as_deref()))
        .await
        .map_err(|_| ClientError::Connect(format!("{endpoint}: no answer in time")))??
        .with_timeout(timeout);
    match &args.command {
        CtlCommand::Info => {
            let info = client.server_info().await?;
            if args.json {
                return json(&info);
            }
            let mut out = String::new();
            let _ = writeln!(out, "switchboard {}", info.version);
            let _ = writeln!(out, "workers:     {}", info.workers);
            let _ = writeln!(out, "transports:  {}", list(&info.transports));
            let _ = writeln!(out, "middleware:  {}", list(&info.middleware));
            let _ = writeln!(
                out,
                "limits:      {} rooms, {} peers/room, {} transports/room",
                info.limits.max_rooms,
                info.limits.max_peers_per_room,
                info.limits.max_transports_per_room
            );
            let _ = writeln!(
                out,
                "rpc:         {} connections, {} byte frames, {} ms timeout, auth {}",
                info.rpc.max_connections,
                info.rpc.max_frame_bytes,
                info.rpc.request_timeout_ms,
                if info.rpc.auth_required {
                    "required"
                } else {
                    "off"
                }
            );
            Ok(out)
        }
        CtlCommand::Workers => {
            let workers = client.workers().await?;
            if args.json {
                return json(&workers);
            }
            let rows = workers
                .iter()
                .map(|w| {
                    vec![
                        w.id.0.to_string(),
                        w.routers.to_string(),
                        w.transports.to_string(),
                        w.producers.to_string(),
                        w.consumers.to_string(),
                        w.packets_in.to_string(),
                        w.packets_out.to_string(),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "WORKER",
                    "ROOMS",
                    "TRANSPORTS",
                    "PRODUCERS",
                    "CONSUMERS",
                    "PACKETS_IN",
                    "PACKETS_OUT",
                ],
                rows,
            ))
        }
        CtlCommand::Nodes => {
            let nodes = client.cluster_nodes().await?;
            if args.json {
                return json(&nodes);
            }
            let rows = nodes
                .nodes
                .iter()
                .map(|n| {
                    let me = if n.id == nodes.node { "*" } else { "" };
                    vec![
                        format!("{}{me}", n.id),
                        n.rpc.clone(),
                        serde_json::to_value(n.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        n.workers.to_string(),
                        n.rooms.to_string(),
                        n.transports.to_string(),
                        n.load_percent.to_string(),
                    ]
                })
                .collect();
            Ok(table(
                &[
                    "NODE",
                    "RPC",
                    "STATE",
                    "WORKERS",
                    "ROOMS",
                    "TRANSPORTS",
                    "LOAD_%",
                ],
                rows,
            ))
        }
        CtlCommand::Rooms => rooms(&client, args.json).await,
        CtlCommand::Dump { room } => {
            let dump = client.dump_router(*room).await?;
            if args.json {
                return json(&dump);
            }
            Ok(render_dump(&dump))
        }
        CtlCommand::Stats { room } => readable(&client.router_stats(*room).await?, args.json),
        CtlCommand::Transport { view, id } => readable(
            &match view {
                CtlView::Stats => client.transport_stats(*id).await?,
                CtlView::Dump => client.dump_transport(*id).await?,
            },
            args.json,
        ),
        CtlCommand::Producer { view, id } => readable(
            &match view {
                CtlView::Stats => client.producer_stats(*id).await?,
                CtlView::Dump => client.dump_producer(*id).await?,
            },
            args.json,
        ),
        CtlCommand::Consumer { view, id } => readable(
            &match view {
                CtlView::Stats => client.consumer_stats(*id).await?,
                CtlView::Dump => client.dump_consumer(*id).await?,
            },
            args.json,
        ),
        CtlCommand::Close { room } => {
            client.close_router(*room).await?;
            Ok(format!("closed room {room}\n"))
        }
        CtlCommand::Events { room, count } => events(&client, *room, *count).await,
        CtlCommand::Call { method, params } => {
            let params: Value = serde_json::from_str(params)
                .map_err(|e| ClientError::Protocol(format!("PARAMS is not a JSON object: {e}")))?;
            json(&client.call_value(method, params).await?)
        }
    }
}

async fn rooms(client: &Client, as_json: bool) -> Result<String, ClientError> {
    let routers = client.routers().await?;
    // One stats request per room, all in flight at once: the connection multiplexes them.
    let stats = futures_join(routers.iter().map(|r| client.router_stats(r.id))).await;
    if as_json {
        let rooms: Vec<Value> = routers
            .iter()
            .zip(&stats)
            .map(|(r, s)| {
                serde_json::json!({
                    "id": r.id,
                    "worker": r.worker,
                    "stats": s.as_ref().ok(),
                })
            })
            .collect();
        return json(&rooms);
    }
    let count = |s: &Result<Value, ClientError>, key: &str| match s {
        Ok(stats) => stats[key]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        // Closed between the list and the stats request.
        Err(_) => "-".to_owned(),
    };
    let rows = routers
        .iter()
        .zip(&stats)
        .map(|(r, s)| {
            vec![
                r.id.to_string(),
                r.worker.0.to_string(),
                count(s, "peers"),
                count(s, "transports"),
                count(s, "producers"),
                count(s, "consumers"),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ROOM",
            "WORKER",
            "PEERS",
            "TRANSPORTS",
            "PRODUCERS",
            "CONSUMERS",
        ],
        rows,
    );
    let n = routers.len();
    let _ = writeln!(out, "{n} room{}", if n == 1 { "" } else { "s" });
    Ok(out)
}

/// Awaits futures concurrently on the current task, keeping their order.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *slot = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

async fn events(
    client: &Client,
    room: Option<RouterId>,
    count: Option<usize>,
) -> Result<String, ClientError> {
    let Some(mut notifications) = client.notifications() else {
        return Err(ClientError::Protocol("notifications already taken".into()));
    };
    client.subscribe(room).await?;
    let mut seen = 0;
    // Printed as they come, not collected: this runs until interrupted.
    while count.is_none_or(|max| seen < max) {
        let Some(notification) = notifications.recv().await else {
            break;
        };
        let line = match notification {
            Notification::Event(event) => serde_json::to_string(&event),
            Notification::Lagged { dropped } => {
                serde_json::to_string(&serde_json::json!({ "lagged": dropped }))
            }
            Notification::Error(e) => serde_json::to_string(&e),
            Notification::Other { method, params } => {
                serde_json::to_string(&serde_json::json!({ "method": method, "params": params }))
            }
        };
        println!("{}", line.unwrap_or_default());
        seen += 1;
    }
    Ok(String::new())
}

fn json(value: &impl serde::Serialize) -> Result<String, ClientError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Statistics or a dump: JSON with `--json`, else [`render_value`].
fn readable(value: &Value, as_json: bool) -> Result<String, ClientError> {
    if as_json {
        json(value)
    } else {
        Ok(render_value(value))
    }
}

/// Any statistics or dump as indented `key  value` lines: nested objects under their key,
/// lists of plain values on one line, histograms as their count and mean.
pub fn render_value(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            let width = map
                .iter()
                .filter(|(_, v)| inline(v).is_some())
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0);
            for (key, v) in map {
                match inline(v) {
                    Some(text) => {
                        let _ = writeln!(out, "{indent}{key:<width$}  {text}");
                    }
                    None => {
                        let _ = writeln!(out, "{indent}{key}:");
                        write_value(out, v, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                match inline(v) {
                    Some(text) => {
                        let _ = writeln!(out, "{indent}- {text}");
                    }
                    None => {
                        let _ = writeln!(out, "{indent}- [{i}]");
                        write_value(out, v, depth + 1);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{indent}{}", inline(other).unwrap_or_default());
        }
    }
}

/// A value that fits on its key's line, or `None` when it needs lines of its own.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("-".to_owned()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Array(items) if items.is_empty() => Some("(none)".to_owned()),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => Some(
            items
                .iter()
                .map(|v| inline(v).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::Object(map) if map.is_empty() => Some("(none)".to_owned()),
        // A histogram (`le`, `buckets`, `sum`, `count`): its count and mean say enough here.
        Value::Object(map) if map.contains_key("le") && map.contains_key("buckets") => {
            let count = map.get("count").and_then(Value::as_u64).unwrap_or(0);
            let sum = map.get("sum").and_then(Value::as_f64).unwrap_or(0.0);
            Some(if count == 0 {
                "no observations".to_owned()
            } else {
                format!("{count} observations, mean {:.4}", sum / count as f64)
            })
        }
        _ => None,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A room dump as a tree: transports with their producers and consumers under them.
pub fn render_dump(dump: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let items = |key: &str| dump[key].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "room {} on worker {}",
        text(&dump["id"]),
        text(&dump["worker"])
    );
    // A peer is its id, with the WebRTC connections it owns when it has some.
    let peers: Vec<String> = items("peers")
        .iter()
        .map(|p| match p {
            Value::Object(_) => text(&p["id"]),
            other => text(other),
        })
        .collect();
    let _ = writeln!(out, "peers: {}", list(&peers));
    let middleware: Vec<String> = items("middleware").iter().map(text).collect();
    let _ = writeln!(out, "middleware: {}", list(&middleware));
    let transports = items("transports");
    let producers = items("producers");
    let consumers = items("consumers");
    let _ = writeln!(out, "transports: {}", transports.len());
    let paused = |v: &Value| {
        if v["paused"].as_bool() == Some(true) {
            " (paused)"
        } else {
            ""
        }
    };
    for t in &transports {
        let peer = match &t["peer"] {
            Value::Null => String::new(),
            p => format!(" peer {}", text(p)),
        };
        let _ = writeln!(
            out,
            "  transport {} {}{peer}",
            text(&t["id"]),
            text(&t["kind"])
        );
        for p in producers.iter().filter(|p| p["transport"] == t["id"]) {
            let _ = writeln!(
                out,
                "    producer {} {}{}",
                text(&p["id"]),
                text(&p["kind"]),
                paused(p)
            );
        }
        for c in consumers.iter().filter(|c| c["transport"] == t["id"]) {
            let _ = writeln!(
                out,
                "    consumer {} {} <- producer {}{}",
                text(&c["id"]),
                text(&c["kind"]),
                text(&c["producer"]),
                paused(c)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_comes_from_flag_then_environment() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(resolve_endpoint(None, &[]), DEFAULT_RPC);
        assert_eq!(
            resolve_endpoint(
                Some("10.0.0.1:1"),
                &env(&[("SWITCHBOARD_RPC__LISTEN", "x:1")])
            ),
            "10.0.0.1:1"
        );
        assert_eq!(
            resolve_endpoint(None, &env(&[("SWITCHBOARD_RPC__LISTEN", "127.0.0.1:9")])),
            "127.0.0.1:9"
        );
        assert_eq!(
            resolve_endpoint(
                None,
                &env(&[
                    ("SWITCHBOARD_RPC__LISTEN", ""),
                    ("SWITCHBOARD_RPC__UNIX_SOCKET", "/run/sb.sock"),
                ])
            ),
            "unix:/run/sb.sock"
        );
    }

    #[test]
    fn dumps_render_as_a_tree() {
        let dump = json!({
            "id": "r1", "worker": 0, "middleware": [],
            "peers": [{ "id": "alice", "send": null, "recv": null }],
            "transports": [
                { "id": "t1", "kind": "direct", "peer": "alice" },
                { "id": "t2", "kind": "direct", "peer": null },
            ],
            "producers": [{ "id": "p1", "transport": "t1", "kind": "video", "paused": false }],
            "consumers": [{ "id": "c1", "transport": "t2", "producer": "p1", "kind": "video", "paused": true }],
        });
        assert_eq!(
            render_dump(&dump),
            "room r1 on worker 0\n\
             peers: alice\n\
             middleware: (none)\n\
             transports: 2\n\
             \x20 transport t1 direct peer alice\n\
             \x20   producer p1 video\n\
             \x20 transport t2 direct\n\
             \x20   consumer c1 video <- producer p1 (paused)\n"
        );
    }

    #[test]
    fn stats_render_as_aligned_nested_lines() {
        let stats = json!({
            "type": "consumer",
            "paused": false,
            "counters": { "packets": 20, "nacks": 1, "rtt_ms": null },
            "loss": { "le": [0.1], "buckets": [1, 2], "sum": 0.5, "count": 2 },
            "empty": { "le": [0.1], "buckets": [0, 0], "sum": 0.0, "count": 0 },
            "ssrcs": [1, 2],
            "peers": [{ "id": "a" }],
        });
        // Keys come sorted; values line up within each level.
        assert_eq!(
            render_value(&stats),
            "counters:\n\
             \x20 nacks    1\n\
             \x20 packets  20\n\
             \x20 rtt_ms   -\n\
             empty   no observations\n\
             loss    2 observations, mean 0.2500\n\
             paused  false\n\
             peers:\n\
             \x20 - [0]\n\
             \x20   id  a\n\
             ssrcs   1, 2\n\
             type    consumer\n"
        );
    }

    #[test]
    fn tables_align_columns() {
        let out = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "A    LONGER\nxyz  1\n");
    }
}
