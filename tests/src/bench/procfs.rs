//! CPU time and memory of a process, from `/proc` (CPU time, not wall time).

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// User plus system CPU seconds of process `pid` (all its threads), `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(u, s)| u + s)
}

/// User and system (kernel: the socket calls, mostly) CPU seconds of process `pid`.
pub fn cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = stat.rsplit(')').next()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / TICKS, stime / TICKS))
}

/// Proportional set size of process `pid` in KiB, from `smaps_rollup`.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident set size of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Threads of process `pid`.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

/// Open file descriptors of process `pid` (sockets included).
pub fn fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The CPUs this process may run on (what `taskset` set), as the kernel lists them.
pub fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// A CPU-time reading of one process at one moment.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    cpu: f64,
    sys: f64,
    at: Instant,
}

impl CpuMark {
    /// Reads process `pid` now.
    pub fn now(pid: u32) -> Self {
        let (user, sys) = cpu_split(pid).unwrap_or((0.0, 0.0));
        Self {
            cpu: user + sys,
            sys,
            at: Instant::now(),
        }
    }

    /// System (kernel) CPU seconds used since this mark.
    pub fn sys_since(&self, pid: u32) -> f64 {
        (Self::now(pid).sys - self.sys).max(0.0)
    }

    /// CPU seconds used since this mark, and the wall seconds that passed.
    pub fn since(&self, pid: u32) -> (f64, f64) {
        let now = Self::now(pid);
        (
            (now.cpu - self.cpu).max(0.0),
            now.at.duration_since(self.at).as_secs_f64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(pss_kib(pid).is_some_and(|k| k > 0));
        assert!(!allowed_cpus().is_empty());
        assert!(rss_kib(pid).is_some_and(|k| k > 0));
        assert!(threads(pid).is_some_and(|t| t >= 1));
        let before = fds(pid).expect("fd count");
        let file = std::fs::File::open("/proc/self/status").expect("open");
        assert_eq!(fds(pid), Some(before + 1));
        drop(file);
    }
}
