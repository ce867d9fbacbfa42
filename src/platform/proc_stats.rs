//! What the kernel says about this process (`/proc/self`): memory, threads, open descriptors.
//!
//! Reported by `/health`; on systems without `/proc` every figure is 0. The figures are sampled
//! once at start and then by the sweeper once a second ([`sample`]), never while answering a health
//! check: with thousands of peers, listing `/proc/self/fd` or even reading `/proc/self/status` can
//! take long enough to make a health check slow (docs/performance.md).

use parking_lot::Mutex;
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

/// The figures of the last [`sample`].
static LATEST: Mutex<ProcessStats> = Mutex::new(ProcessStats { rss: 0, peak_rss: 0, threads: 0, open_fds: 0 });

/// The figures as last sampled (at most a second old while the server runs).
pub fn latest() -> ProcessStats {
    *LATEST.lock()
}

/// Reads the figures from `/proc/self` for [`latest`] to report.
pub fn sample() {
    let mut stats =
        std::fs::read_to_string("/proc/self/status").map(|status| parse_status(&status)).unwrap_or_default();
    stats.open_fds = std::fs::read_dir("/proc/self/fd").map(|entries| entries.count() as u64).unwrap_or(0);
    *LATEST.lock() = stats;
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
        sample();
        let stats = latest();
        assert!(stats.rss > 0 && stats.threads >= 1 && stats.open_fds >= 3);
    }
}
