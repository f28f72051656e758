//! The demo in a real browser: a media server in this process (WebRTC on loopback), the demo
//! backend in front of it, and Debian's Chromium, headless with fake camera and microphone,
//! driven by `tests/browser/e2e.mjs` (playwright-core). Two pages join the room; each must
//! decode the other's video and receive its audio; when the second page closes, its video
//! must go from the first; and both peers must leave the room.
//!
//! Chromium and the npm packages come from `./scripts/test`; without them this test fails
//! and says so, since a skipped browser test would hide a broken demo.

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use switchboard::App;
use switchboard::client::{Client, Notification};
use switchboard::settings::Settings;
use switchboard_core::event::Event;

/// Bounds the whole browser run; e2e.mjs has its own, shorter wait inside (40 s), so this
/// only catches a hung node or Chromium.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

/// How long the peers get to leave once the browser has closed their pages.
const LEAVE_DEADLINE: Duration = Duration::from_secs(10);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The e2e script, after checking that everything it needs is installed.
fn prerequisites() -> PathBuf {
    let browser_dir = repo_root().join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!("Chromium ({})", chromium.display()));
    }
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push(format!(
            "playwright-core ({}/node_modules)",
            browser_dir.display()
        ));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        missing.push("node (Node.js 20 or later)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run ./scripts/test, which installs them",
        missing.join(", ")
    );
    browser_dir.join("e2e.mjs")
}

async fn start_server() -> App {
    let mut config = Settings::default();
    config.server.workers = 1;
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = String::new();
    // webrtc-rs announces exactly the address it binds; Chromium reaches loopback only.
    config.webrtc.listen_ip = "127.0.0.1".to_owned();
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    App::start(Arc::new(config))
        .await
        .expect("the media server starts")
}

fn number(page: &Value, path: &str) -> u64 {
    page.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_see_and_hear_each_other() {
    let script = prerequisites();
    let app = start_server().await;
    let rpc = app.rpc_tcp_addr().expect("RPC on TCP").to_string();
    let demo = switchboard_demo::serve("127.0.0.1:0", &rpc, None)
        .await
        .expect("the demo backend starts");

    // An observer of every event, subscribed before the pages exist, to see them leave.
    let observer = Client::connect(&rpc, None)
        .await
        .expect("observer connects");
    let mut events = observer.notifications().expect("notifications");
    observer.subscribe(None).await.expect("events.subscribe");

    let child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(demo.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let output = tokio::time::timeout(BROWSER_DEADLINE, child.wait_with_output())
        .await
        .expect("e2e.mjs finishes in time")
        .expect("e2e.mjs runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "e2e.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary from e2e.mjs:\n{stdout}\n{stderr}"));
    println!("{summary}");

    assert!(
        summary["leftMs"].is_u64(),
        "the first page removed the second's video: {summary}"
    );
    let room = demo.room().await.expect("the demo room exists");
    let pages = summary["pages"].as_array().expect("pages in the summary");
    assert_eq!(pages.len(), 2, "{summary}");
    let mut peers = HashSet::new();
    for page in pages {
        assert!(number(page, "/video/framesDecoded") > 0, "{page}");
        assert!(
            number(page, "/audio/packetsReceived") > 0 || number(page, "/audio/bytesReceived") > 0,
            "{page}"
        );
        // Exactly the other participant, with its audio and video in one stream: the page's
        // own tracks are not sent back to it.
        assert_eq!(
            page["remoteStreams"],
            serde_json::json!([["audio", "video"]]),
            "{page}"
        );
        assert_eq!(page["room"], serde_json::json!(room.to_string()), "{page}");
        assert_eq!(page["errors"], serde_json::json!([]), "{page}");
        let peer = page["peer"].as_str().expect("peer id").to_owned();
        assert!(peers.insert(peer), "two pages with one peer id: {summary}");
    }

    // Both pages are closed now: their WebSockets closed, so their peers leave.
    let left = async {
        while !peers.is_empty() {
            match events.recv().await {
                Some(Notification::Event(Event::PeerLeft { router, peer, .. }))
                    if router == room =>
                {
                    peers.remove(&peer.0);
                }
                Some(_) => {}
                None => panic!("the observer's connection closed"),
            }
        }
    };
    tokio::time::timeout(LEAVE_DEADLINE, left)
        .await
        .expect("both peers leave the room when their pages close");

    demo.shutdown().await.expect("the demo stops cleanly");
    app.shutdown(Duration::from_secs(10))
        .await
        .expect("the media server stops cleanly");
}
