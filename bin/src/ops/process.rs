//! Process and thread figures from Linux's `/proc`: CPU time, memory, file descriptors.
//!
//! Read by the metrics listener, off the media threads. A worker's CPU time is read from its
//! own task entry (`/proc/self/task/<tid>/stat`) by thread id, so it is there even while the
//! worker is too busy to answer anything. Every reader returns `None` rather than failing
//! when a file is missing or unexpected (another kernel, a container without `/proc`).

/// What the kernel says about this process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory, in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Reads this process's figures.
pub fn process() -> ProcessStats {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s));
    let ticks = clock_ticks();
    let page = page_size();
    let statm = std::fs::read_to_string("/proc/self/statm").ok();
    let statm_field = |i: usize| -> Option<u64> {
        statm
            .as_deref()?
            .split_whitespace()
            .nth(i)?
            .parse::<u64>()
            .ok()
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    ProcessStats {
        cpu_seconds: stat
            .as_ref()
            .zip(ticks)
            .map(|(s, t)| (s.utime + s.stime) as f64 / t),
        resident_bytes: statm_field(1).zip(page).map(|(p, size)| p * size),
        virtual_bytes: statm_field(0).zip(page).map(|(p, size)| p * size),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| max_open_files(&s)),
        threads: stat.as_ref().map(|s| s.threads),
        start_time_seconds: stat
            .as_ref()
            .zip(ticks)
            .zip(boot)
            .map(|((s, t), boot)| boot as f64 + s.start_ticks as f64 / t),
    }
}

/// CPU time of one thread of this process, in seconds.
pub fn thread_cpu_seconds(tid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let s = parse_stat(&stat)?;
    Some((s.utime + s.stime) as f64 / clock_ticks()?)
}

/// The fields of a `stat` file this module uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// User-mode time, in clock ticks.
    pub utime: u64,
    /// Kernel-mode time, in clock ticks.
    pub stime: u64,
    /// Threads of the process.
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14, stime 15, threads
    // 20, starttime 22.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
    })
}

/// The soft "Max open files" limit from `/proc/<pid>/limits`.
pub fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as a thread may be named.
        let line = "4242 (sw (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 200 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                threads: 9,
                start_ticks: 123456,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("nothing"), None);
    }

    #[test]
    fn this_process_and_thread_can_be_read() {
        let p = process();
        assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n > 0), "{p:?}");
        assert!(p.max_fds.is_some(), "{p:?}");
        assert!(p.cpu_seconds.is_some(), "{p:?}");
        assert!(p.start_time_seconds.is_some_and(|t| t > 1e9), "{p:?}");
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: u32 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert!(thread_cpu_seconds(tid).is_some());
        assert_eq!(thread_cpu_seconds(u32::MAX), None);
    }
}
