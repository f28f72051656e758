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
        Self::spawn(switchboard(), args)
    }

    /// Like [`Running::start`], inside the network namespace `netns` (`ip netns exec`, which
    /// execs the server: signals reach it directly).
    pub fn start_in(netns: &str, args: &[&str]) -> Self {
        let plain = switchboard();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(plain.get_program());
        for (name, value) in plain.get_envs() {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        command.stdin(Stdio::null());
        Self::spawn(command, args)
    }

    fn spawn(mut command: Command, args: &[&str]) -> Self {
        let mut child = command
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

// One Redis launcher for both test crates: a file, not a dependency (the tests crate
// depends on this one).
#[path = "../../../tests/src/redis.rs"]
mod redis;
#[allow(unused_imports)]
pub use redis::Redis;

/// Polls `check` until it returns `Some`, or fails after `deadline` saying what it waited
/// for. For cluster state, which changes on heartbeats that no event announces.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether an RTCP compound packet carries a picture loss indication.
pub fn is_pli(datagram: &[u8]) -> bool {
    let mut buf = datagram;
    rtc_rtcp::packet::unmarshal(&mut buf).is_ok_and(|packets| {
        packets.iter().any(|p| {
            p.as_any()
                .downcast_ref::<rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
                .is_some()
        })
    })
}

/// A VP8 RTP packet (payload type 96) whose payload is `tag` after the VP8 descriptor and the
/// sequence number, so that a receiver can check it exactly.
pub fn vp8_packet(ssrc: u32, seq: u16, keyframe: bool, tag: &[u8]) -> Vec<u8> {
    use rtc_shared::marshal::Marshal;
    rtc_rtp::Packet {
        header: rtc_rtp::header::Header {
            version: 2,
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            ssrc,
            marker: true,
            ..Default::default()
        },
        payload: vp8_payload(seq, keyframe, tag).into(),
    }
    .marshal()
    .expect("marshal")
    .to_vec()
}

/// The payload [`vp8_packet`] carries.
pub fn vp8_payload(seq: u16, keyframe: bool, tag: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x10, if keyframe { 0x00 } else { 0x01 }];
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(tag);
    payload
}
