//! Shared by the tests that run the `switchboard` binary as a child process.
// Each test file uses the part it needs.
#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary with an environment free of settings that would change what the test sees.
pub fn switchboard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SWITCHBOARD_") || name == "RUST_LOG" {
            command.env_remove(name.as_ref());
        }
    }
    command.stdin(Stdio::null());
    command
}

/// A running server whose standard error is read line by line on a thread.
pub struct Running {
    /// The server process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Standard-error lines read so far.
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(args: &[&str]) -> Self {
        let mut child = switchboard()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the switchboard binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.seen.iter().any(|line| line.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => self.fail(&format!("no line containing {needle:?}")),
            }
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit and its standard error to close.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => self.fail("standard error still open"),
            }
        }
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.fail("process still running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{what}; output so far:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a server behind when an assertion fails.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The control socket address a running server logged in its ready line.
pub fn rpc_address(server: &Running) -> String {
    let line = server
        .seen
        .iter()
        .find(|line| line.contains("switchboard ready"))
        .expect("ready line");
    let start = line.find("rpc=").expect("rpc address in the ready line") + "rpc=".len();
    line[start..]
        .split_whitespace()
        .next()
        .expect("an address")
        .to_owned()
}
