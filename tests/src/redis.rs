//! A `redis-server` for cluster tests, started and stopped by the test. Standard library
//! only: `bin/tests` includes this file by path, as it cannot depend on this crate.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a Unix socket in a directory of its own, with nothing persisted, so
/// that a restart starts empty as a Redis that lost its data does.
pub struct Redis {
    child: Option<Child>,
    dir: PathBuf,
}

impl Redis {
    /// Starts one whose directory is named after `name` (and this process).
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sb-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis directory");
        let mut redis = Self { child: None, dir };
        redis.restart();
        redis
    }

    /// Its Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL nodes are given (`cluster.redis_url`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt install redis-server; scripts/setup does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (a Redis outage); [`Redis::restart`] brings it back empty.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
