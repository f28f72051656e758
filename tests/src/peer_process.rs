//! Other WebRTC stacks in a test, each a process spoken to in JSON lines while the test does
//! the signalling with the server, as a backend would:
//! - Chromium, driven by `tests/browser/pair.mjs` (playwright-core): one page with a
//!   publishing and a subscribing connection;
//! - aiortc, `tests/interop/aiortc_peer.py` in the virtual environment `scripts/test`
//!   prepares: one connection that publishes or subscribes;
//! - GStreamer's webrtcbin, `tests/interop/webrtcbin_peer.py` with Debian's python3-gi: the
//!   same;
//! - Firefox ESR in a network namespace, `tests/interop/firefox_peer.py`: a page like
//!   Chromium's.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Bounds each message from the peer (Chromium's start and first frames included).
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(45);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Fails the test with what to install when Chromium, node or playwright-core is missing.
fn chromium_prerequisites() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        chromium.exists() && playwright.exists() && node,
        "browser tests need Chromium ({}), node and playwright-core ({}): run ./scripts/test, which installs them",
        chromium.display(),
        playwright.display()
    );
}

/// A peer process. It has a process group of its own (node, Chromium and Chromium's helpers,
/// say), so that [`PeerProcess::kill`] takes all of it down at once.
pub struct PeerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// The Python of the virtual environment with aiortc.
fn aiortc_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/.venv/bin/python");
    assert!(
        python.exists(),
        "the interop test needs aiortc in {}: run ./scripts/test, which installs it",
        python.display()
    );
    python
}

impl PeerProcess {
    /// Chromium with `pair.mjs`; the first message to expect is its `offer`.
    pub fn chromium() -> Self {
        Self::chromium_offering(None)
    }

    /// Chromium whose camera offers only `video_codec` (`H264`, `VP9`, ...) when given.
    pub fn chromium_offering(video_codec: Option<&str>) -> Self {
        chromium_prerequisites();
        let mut command = tokio::process::Command::new("node");
        command
            .arg(browser_dir().join("pair.mjs"))
            .current_dir(browser_dir());
        if let Some(codec) = video_codec {
            command.env("PAIR_VIDEO_CODEC", codec);
        }
        Self::spawn(command)
    }

    /// aiortc as a `publish`er (expect its `offer` first) or a `subscribe`r (send it the
    /// server's offer as `subscribe` first).
    pub fn aiortc(role: &str) -> Self {
        Self::aiortc_offering(role, None)
    }

    /// aiortc whose publisher offers only `video_codec` (`H264`, `VP8`) when given.
    pub fn aiortc_offering(role: &str, video_codec: Option<&str>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/aiortc_peer.py");
        let mut command = tokio::process::Command::new(aiortc_python());
        command.arg(script).arg(role);
        command.args(video_codec);
        Self::spawn(command)
    }

    /// GStreamer webrtcbin as a `publish`er or a `subscribe`r, as [`PeerProcess::aiortc`].
    pub fn webrtcbin(role: &str) -> Self {
        let python = Path::new("/usr/bin/python3");
        let ready = std::process::Command::new(python)
            .args([
                "-c",
                "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('webrtcbin') and Gst.ElementFactory.find('vp8enc')",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ready,
            "the interop test needs GStreamer's webrtcbin, vp8 and python3-gi: run ./scripts/test, which installs them"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/webrtcbin_peer.py");
        let mut command = tokio::process::Command::new(python);
        command.arg(script).arg(role);
        Self::spawn(command)
    }

    /// Firefox ESR in `netns`, with a page like Chromium's (`pair.mjs` protocol), served on
    /// the namespace's host address.
    pub fn firefox(netns: &crate::netns::Namespace) -> Self {
        assert!(
            Path::new("/usr/bin/firefox-esr").exists(),
            "the interop test needs Debian's firefox-esr: run ./scripts/test, which installs it"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/firefox_peer.py");
        let mut command = tokio::process::Command::new("/usr/bin/python3");
        command
            .arg(script)
            .arg(&netns.name)
            .arg(netns.host.to_string());
        Self::spawn(command)
    }

    fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("the peer process starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("the peer reads");
    }

    /// The next message, which must carry `key`; returns that value.
    pub async fn expect(&mut self, key: &str) -> Value {
        let line = tokio::time::timeout(BROWSER_DEADLINE, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `{key}` from the peer in time"))
            .expect("the peer's output")
            .unwrap_or_else(|| panic!("the peer exited before `{key}`"));
        let message: Value = serde_json::from_str(&line).expect("a JSON line from the peer");
        assert!(
            message.get("error").is_none(),
            "the peer failed: {}",
            message["error"]
        );
        message
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("expected `{key}` from the peer, got {message}"))
    }

    /// `expect` for an SDP.
    pub async fn expect_sdp(&mut self, key: &str) -> String {
        let v = self.expect(key).await;
        v.as_str()
            .unwrap_or_else(|| panic!("`{key}` is not an SDP string: {v}"))
            .to_owned()
    }

    /// The page's counters now (see `pair.mjs`).
    pub async fn stats(&mut self) -> Value {
        self.send(json!({ "mark": true })).await;
        self.expect("stats").await
    }

    /// Ends the peer (`done`) and waits for it to exit.
    pub async fn finish(mut self) {
        self.send(json!({ "done": true })).await;
        let _ = tokio::time::timeout(BROWSER_DEADLINE, self.child.wait()).await;
    }

    /// SIGKILL to the whole process group at once: the peer vanishes as a
    /// crashed or killed app does, without closing anything.
    pub async fn kill(mut self) {
        let group = self
            .child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .expect("the peer is running");
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("the peer's process group is killed");
        let _ = tokio::time::timeout(BROWSER_DEADLINE, self.child.wait()).await;
    }
}

impl Drop for PeerProcess {
    /// Whatever happened to the test, nothing of the peer outlives it: SIGKILL to its
    /// process group (a no-op once it has exited).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A counter of `side` (`publisher` or `subscriber`) in a `stats` reading.
pub fn count(stats: &Value, side: &str, key: &str) -> u64 {
    stats[side][key].as_f64().unwrap_or(0.0) as u64
}

/// How much a counter of `side` grew between two readings.
pub fn grew(before: &Value, after: &Value, side: &str, key: &str) -> u64 {
    count(after, side, key).saturating_sub(count(before, side, key))
}
