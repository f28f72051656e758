//! The `switchboard` binary as an operator meets it: exit codes, messages, layering, signals.

use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::{Running, rpc_address, switchboard};

/// Generous, because CI builds and tests on two busy cores; a healthy run takes well under a
/// second.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longer than the shutdown timeout the tests configure, so the server's own timeout fires
/// first if shutdown hangs.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const SHUTDOWN_TIMEOUT_MS: &str = "server.shutdown_timeout_ms=10000";

/// A config file removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "switchboard-cli-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_to_end(command: &mut Command) -> Output {
    command.output().expect("the switchboard binary runs")
}

#[test]
fn check_config_with_bad_file_exits_2_and_names_every_bad_field() {
    let config = TempConfig::new(
        "bad",
        "[limits]\nmax_rooms = \"lots\"\nmax_peers = 3\n\n[rpc]\nlisten = \"127.0.0.1:7700\"\n",
    );
    let output = run_to_end(switchboard().args(["check-config", "--config", config.path()]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("limits.max_rooms"), "stderr: {stderr}");
    assert!(stderr.contains("limits.max_peers"), "stderr: {stderr}");
    assert!(stderr.contains("line 2"), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing printed as config on failure"
    );
}

#[test]
fn check_config_lists_every_validation_problem() {
    let config = TempConfig::new(
        "invalid",
        "[limits]\nmax_rooms = 0\n\n[rpc]\nlisten = \"0.0.0.0:7700\"\n",
    );
    let output = run_to_end(
        switchboard()
            .args(["check-config", "-c", config.path()])
            .args(["--metrics-listen", "not-an-address"]),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("3 problems"), "stderr: {stderr}");
    for field in ["limits.max_rooms", "rpc.token", "metrics.listen"] {
        assert!(stderr.contains(field), "{field} missing from: {stderr}");
    }
}

#[test]
fn check_config_shows_file_env_and_flag_layers() {
    let config = TempConfig::new(
        "layers",
        "[server]\nworkers = 1\n\n[limits]\nmax_rooms = 10\nmax_peers_per_room = 7\n",
    );
    let output = run_to_end(
        switchboard()
            .env("SWITCHBOARD_CONFIG", config.path())
            .env("SWITCHBOARD_LIMITS__MAX_ROOMS", "20")
            .env("SWITCHBOARD_SERVER__WORKERS", "2")
            .env("SWITCHBOARD_LOG__FORMAT", "json")
            .env("SWITCHBOARD_RPC__TOKEN", "hunter2-hunter2-hunter2")
            .args(["check-config", "--workers", "3"]),
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        text(&output.stderr)
    );
    assert!(stdout.contains("workers = 3\n"), "flag wins: {stdout}");
    assert!(
        stdout.contains("max_rooms = 20\n"),
        "env beats file: {stdout}"
    );
    assert!(
        stdout.contains("max_peers_per_room = 7\n"),
        "file kept: {stdout}"
    );
    assert!(stdout.contains("format = \"json\"\n"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "token redacted: {stdout}");
}

#[test]
fn unknown_environment_variable_is_an_error() {
    let output = run_to_end(
        switchboard()
            .env("SWITCHBOARD_SERVER__WORKRES", "2")
            .arg("check-config"),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("SWITCHBOARD_SERVER__WORKRES"),
        "stderr: {stderr}"
    );
}

#[test]
fn run_with_invalid_config_exits_2_before_starting() {
    let output = run_to_end(switchboard().args(["run", "--rpc-listen", "x"]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("rpc.listen"), "stderr: {stderr}");
    assert!(!stderr.contains("ready"), "stderr: {stderr}");
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let mut server = Running::start(&[
        "run",
        "--workers",
        "1",
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--set",
        SHUTDOWN_TIMEOUT_MS,
    ]);
    server.wait_for("switchboard ready", STARTUP_TIMEOUT);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(EXIT_TIMEOUT);
    let log = server.seen.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(log.contains("shutting down"), "log:\n{log}");
    assert!(log.contains("SIGTERM"), "log:\n{log}");
    assert!(log.contains("shutdown complete"), "log:\n{log}");
}

#[test]
fn sigint_without_subcommand_shuts_down_and_logs_json() {
    let mut server = Running::start(&[
        "--workers",
        "1",
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--log-format",
        "json",
        "--set",
        SHUTDOWN_TIMEOUT_MS,
    ]);
    server.wait_for("switchboard ready", STARTUP_TIMEOUT);
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(EXIT_TIMEOUT);
    let log = server.seen.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    let messages: Vec<String> = server
        .seen
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            value["message"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        messages.iter().any(|m| m == "shutdown complete"),
        "log:\n{log}"
    );
}

#[test]
fn ctl_lists_dumps_and_closes_rooms_of_a_running_server() {
    let mut server = Running::start(&[
        "run",
        "--workers",
        "1",
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--set",
        "rpc.token=s3cret-s3cret-s3cret",
        "--set",
        SHUTDOWN_TIMEOUT_MS,
    ]);
    server.wait_for("switchboard ready", STARTUP_TIMEOUT);
    let addr = rpc_address(&server);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let ctl = |token: Option<&str>, args: &[&str]| {
        let mut command = switchboard();
        if let Some(token) = token {
            command.env("SWITCHBOARD_RPC__TOKEN", token);
        }
        let output = run_to_end(command.args(["ctl", "--rpc", &addr]).args(args));
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };

    let (code, _, stderr) = ctl(None, &["rooms"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unauthorized"), "{stderr}");

    let token = Some("s3cret-s3cret-s3cret");
    let (code, stdout, stderr) = ctl(token, &["rooms"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("0 rooms\n"), "{stdout}");

    let (code, stdout, stderr) = ctl(token, &["call", "router.create"]);
    assert_eq!(code, Some(0), "{stderr}");
    let room: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
    let room = room["id"].as_str().expect("room id").to_owned();
    let (code, _, stderr) = ctl(
        token,
        &[
            "call",
            "peer.join",
            &format!(r#"{{"router": "{room}", "peer": "alice"}}"#),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");

    let (_, stdout, _) = ctl(token, &["rooms"]);
    assert!(stdout.starts_with("ROOM "), "{stdout}");
    assert!(
        stdout.contains(&room) && stdout.ends_with("1 room\n"),
        "{stdout}"
    );
    let (_, stdout, _) = ctl(token, &["workers"]);
    assert!(stdout.starts_with("WORKER "), "{stdout}");
    let (_, stdout, _) = ctl(token, &["dump", &room]);
    assert!(
        stdout.starts_with(&format!("room {room} on worker 0\npeers: alice\n")),
        "{stdout}"
    );
    let (code, stdout, _) = ctl(token, &["--json", "dump", &room]);
    assert_eq!(code, Some(0));
    let dump: serde_json::Value = serde_json::from_str(&stdout).expect("JSON dump");
    assert_eq!(dump["peers"][0]["id"], "alice");

    // Statistics read as aligned lines, nested by section; every object kind has them.
    let (code, stdout, stderr) = ctl(token, &["stats", &room]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = |out: &str, key: &str, value: &str| {
        out.lines().any(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start() == value && rest.starts_with("  "))
        })
    };
    assert!(line(&stdout, "type", "router"), "{stdout}");
    assert!(stdout.contains("counters:\n"), "{stdout}");
    let (code, stdout, stderr) = ctl(
        token,
        &[
            "call",
            "transport.create",
            &format!(r#"{{"router": "{room}", "kind": "direct", "peer": "alice"}}"#),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let transport: serde_json::Value = serde_json::from_str(&stdout).expect("JSON result");
    let transport = transport["id"].as_str().expect("transport id").to_owned();
    let (code, stdout, stderr) = ctl(token, &["transport", "stats", &transport]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(line(&stdout, "state", "connected"), "{stdout}");
    let (code, stdout, stderr) = ctl(token, &["--json", "transport", "dump", &transport]);
    assert_eq!(code, Some(0), "{stderr}");
    let dump: serde_json::Value = serde_json::from_str(&stdout).expect("JSON dump");
    assert_eq!(dump["kind"], "direct");

    let (code, stdout, _) = ctl(token, &["close", &room]);
    assert_eq!((code, stdout), (Some(0), format!("closed room {room}\n")));
    let (code, _, stderr) = ctl(token, &["dump", &room]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("switchboard ctl: not_found: "),
        "{stderr}"
    );

    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(EXIT_TIMEOUT);
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        server.seen.join("\n")
    );
}

#[test]
fn ctl_without_a_server_fails_with_a_message() {
    // Port 1 on loopback: nothing listens there on any machine these tests run on.
    let output = run_to_end(switchboard().args(["ctl", "--rpc", "127.0.0.1:1", "rooms"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).starts_with("switchboard ctl: cannot connect: 127.0.0.1:1"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn sigterm_closes_configured_middleware_before_the_process_exits() {
    let mut server = Running::start(&[
        "run",
        "--workers",
        "1",
        "--rpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "",
        "--set",
        "middleware.attach=[\"logging\"]",
        "--set",
        SHUTDOWN_TIMEOUT_MS,
    ]);
    server.wait_for("switchboard ready", STARTUP_TIMEOUT);
    let addr = rpc_address(&server);
    let output = run_to_end(switchboard().args(["ctl", "--rpc", &addr, "call", "router.create"]));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    server.wait_for("middleware attached", STARTUP_TIMEOUT);
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(EXIT_TIMEOUT);
    let log = server.seen.join("\n");
    assert!(status.success(), "exit {status}; log:\n{log}");
    // The logger's close() logs this; shutdown waits for it, so it comes before the end.
    let closed = log.find("logging detached").expect("close() ran");
    let complete = log.find("shutdown complete").expect("clean exit");
    assert!(closed < complete, "log:\n{log}");
}
