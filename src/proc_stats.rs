//! What the kernel says about this process (`/proc/self`): memory, threads, open descriptors.
//!
//! Reported by `/health`; on systems without `/proc` every figure is 0.

use std::time::{Duration, Instant};

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

/// How long a count of open descriptors is reused: counting lists `/proc/self/fd`, which takes
/// about 10 ms with 10,000 peers, too long to pay on every health check.
const FD_COUNT_MAX_AGE: Duration = Duration::from_secs(1);

/// Reads the current figures (the descriptor count may be up to a second old).
pub fn current() -> ProcessStats {
    let mut stats =
        std::fs::read_to_string("/proc/self/status").map(|status| parse_status(&status)).unwrap_or_default();
    stats.open_fds = open_fds();
    stats
}

/// The open descriptor count, counted at most once a second. The lock is held while counting, so
/// health checks that arrive together wait for one count instead of each making their own.
fn open_fds() -> u64 {
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let mut last = LAST.lock();
    match *last {
        Some((at, count)) if at.elapsed() < FD_COUNT_MAX_AGE => count,
        _ => {
            let count = std::fs::read_dir("/proc/self/fd").map(|entries| entries.count() as u64).unwrap_or(0);
            *last = Some((Instant::now(), count));
            count
        }
    }
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
        let stats = current();
        assert!(stats.rss > 0 && stats.threads >= 1 && stats.open_fds >= 3);
    }
}
