//! A subscriber that stops reading loses events (and is told how many), and nobody else
//! notices: not other connections, not media.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use switchboard::App;
use switchboard::client::{Client, Notification};
use switchboard::rpc::RpcStats;
use switchboard_actors::RouterOptions;
use switchboard_core::RouterId;
use tokio::net::UnixStream;

/// Tasks generating events at once.
const GENERATORS: u32 = 8;

/// Makes events through `client` until `done` holds, checking that `client` and media are
/// served all along. Returns how many events were emitted.
async fn generate_until(
    app: &App,
    client: &Arc<Client>,
    room: RouterId,
    media: &mut Forwarding,
    done: impl Fn(&RpcStats) -> bool,
) -> u64 {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut rounds = 0u32;
    while !done(&app.rpc.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after {rounds} rounds: {:?}",
            app.rpc.stats()
        );
        // Each join and each leave is one event.
        let generators: Vec<_> = (0..GENERATORS)
            .map(|g| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        let peer = format!("p{g}-{i}");
                        client.join_peer(room, &peer).await.unwrap();
                        client.leave_peer(room, &peer).await.unwrap();
                    }
                })
            })
            .collect();
        for generator in generators {
            generator.await.unwrap();
        }
        rounds += 1;
        client.server_info().await.unwrap();
        media.check().await;
    }
    u64::from(rounds * GENERATORS * 25 * 2)
}

fn socket_path(name: &str) -> (std::path::PathBuf, String) {
    let path = std::env::temp_dir().join(format!("switchboard-{name}-{}.sock", std::process::id()));
    let text = path.to_str().unwrap().to_owned();
    (path, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_loses_events_without_stalling_anyone() {
    // The stalled subscriber comes over the Unix socket: its kernel buffer is fixed (no
    // autotuning, unlike loopback TCP's megabytes), so it fills after a few hundred events.
    let (path, socket) = socket_path("slow");
    let app = start(|c| c.rpc.unix_socket = socket.clone()).await;
    let fast = Arc::new(client(&app).await);
    let mut fast_notes = fast.notifications().unwrap();
    let mut media = Forwarding::set_up(&app, &fast).await;
    let room = fast.create_router(RouterOptions::default()).await.unwrap();

    // The slow subscriber asks for everything and then reads nothing.
    let mut slow = Raw::from_stream(UnixStream::connect(&path).await.unwrap());
    slow.request(1, "events.subscribe", json!({})).await;
    assert!(slow.response(1).await.0.is_null());
    fast.subscribe(None).await.unwrap();

    // Count what the fast subscriber gets while the slow one's queue overflows.
    let (count_tx, mut fast_count) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        while let Some(note) = fast_notes.recv().await {
            match note {
                Notification::Event(_) => count_tx.send_modify(|n| *n += 1),
                other => panic!("the fast subscriber got {other:?}"),
            }
        }
    });
    let emitted = generate_until(&app, &fast, room.id, &mut media, |s| s.events_dropped > 0).await;

    // Once it reads again it gets what was queued, learns how many events it lost, and
    // the numbers add up.
    let mut received = 0u64;
    let mut lost = 0u64;
    let mut lagged_at = None;
    while received + lost < emitted {
        let message = slow.next().await.expect("the rest of the events");
        assert_eq!(message[0], 2, "{message}");
        match message[1].as_str() {
            Some("event") => received += 1,
            Some("events.lagged") => {
                assert!(lagged_at.is_none(), "one gap, one notice");
                lagged_at = Some(received);
                lost += message[2][0]["dropped"].as_u64().expect("dropped");
            }
            _ => panic!("unexpected {message}"),
        }
    }
    assert!(lost > 0 && lagged_at.is_some());
    assert_eq!(app.rpc.stats().events_dropped, lost);

    // The fast subscriber lost nothing.
    tokio::time::timeout(DEADLINE, fast_count.wait_for(|n| *n >= emitted))
        .await
        .expect("the fast subscriber gets every event")
        .unwrap();
    assert_eq!(*fast_count.borrow(), emitted);
    assert_eq!(fast.notifications_dropped(), 0);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_nothing_is_disconnected_after_the_timeout() {
    let (path, socket) = socket_path("stuck");
    let app = start(|c| {
        c.rpc.unix_socket = socket.clone();
        c.rpc.request_timeout_ms = 200;
    })
    .await;
    let fast = Arc::new(client(&app).await);
    let mut media = Forwarding::set_up(&app, &fast).await;
    let room = fast.create_router(RouterOptions::default()).await.unwrap();
    let mut stuck = Raw::from_stream(UnixStream::connect(&path).await.unwrap());
    stuck.request(1, "events.subscribe", json!({})).await;
    assert!(stuck.response(1).await.0.is_null());
    assert_eq!(app.rpc.stats().connections_open, 2);

    // Once its socket buffer is full, its writer waits; the timeout then frees the slot.
    generate_until(&app, &fast, room.id, &mut media, |s| {
        s.connections_open == 1
    })
    .await;
    fast.server_info().await.unwrap();
    media.check().await;
    // What was in its socket buffer is still there to read, then the stream ends.
    while stuck.next().await.is_some() {}
    stop(app).await;
}
