//! The Python example in `docs/examples` runs against a live server, so the documentation
//! cannot drift from the protocol unnoticed.

use crate::support::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// An interpreter that has the `msgpack` package: the one on PATH (scripts/test installs
/// the package there when it is missing), else Debian's with `python3-msgpack`.
fn python() -> String {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import msgpack"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_owned();
        }
    }
    panic!(
        "no python3 with the msgpack package: run scripts/test, which installs it, \
         or `python3 -m pip install msgpack`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_runs_against_the_server() {
    let app = start(|c| c.rpc.token = "py-token-0123456789".to_owned()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/rpc_client.py");
    let child = Command::new(python())
        .arg(&script)
        .arg(addr(&app))
        .arg("py-token-0123456789")
        .env_remove("SWITCHBOARD_RPC__TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the example finishes in time")
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for expected in [
        "server: switchboard",
        "created room",
        "peer alice joined",
        "(direct) for alice",
        "event: peer_joined",
        "event: transport_closed",
        "event: peer_left",
        "event: router_closed {'reason': 'requested'}",
        "router.dump after close: not_found",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    assert!(
        app.server.routers().is_empty(),
        "the example closed its room"
    );
    stop(app).await;
}
