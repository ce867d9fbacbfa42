//! What the kernel says about this process (`/proc/self`): memory, threads, open descriptors.
//!
//! Reported by `/health`; on systems without `/proc` every figure is 0. Open descriptors are counted
//! by the sweeper once a second (`count_open_fds`), memory and threads are read on each request.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Resident memory and threads of the server process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub rss: u64,
    /// Peak resident set size, bytes.
    #[serde(rename = "peakRss")]
    pub peak_rss: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Open file descriptors (sockets included).
    #[serde(rename = "openFds")]
    pub open_fds: u64,
}

/// Open descriptors at the last count (see [`count_open_fds`]).
static OPEN_FDS: AtomicU64 = AtomicU64::new(0);

/// Reads the current figures; the descriptor count is the last one [`count_open_fds`] made.
pub fn current() -> ProcessStats {
    let mut stats =
        std::fs::read_to_string("/proc/self/status").map(|status| parse_status(&status)).unwrap_or_default();
    stats.open_fds = OPEN_FDS.load(Ordering::Relaxed);
    stats
}

/// Counts the open descriptors (lists `/proc/self/fd`) for [`current`] to report. The server does
/// it once at start and then the sweeper once a second, never a health check: with 10,000 peers the
/// list is 20,000 entries long, and during an announce storm listing it took up to 380 ms.
pub fn count_open_fds() {
    let count = std::fs::read_dir("/proc/self/fd").map(|entries| entries.count() as u64).unwrap_or(0);
    OPEN_FDS.store(count, Ordering::Relaxed);
}

fn parse_status(status: &str) -> ProcessStats {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    ProcessStats { rss: field("VmRSS") * 1024, peak_rss: field("VmHWM") * 1024, threads: field("Threads"), open_fds: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_it_needs() {
        let stats = parse_status("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n");
        assert_eq!((stats.rss, stats.peak_rss, stats.threads), (1024 * 1024, 2048 * 1024, 7));
    }

    #[test]
    fn reads_this_process() {
        count_open_fds();
        let stats = current();
        assert!(stats.rss > 0 && stats.threads >= 1 && stats.open_fds >= 3);
    }
}
