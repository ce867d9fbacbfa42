//! Raising the process's open-file limit, which a thread-per-connection server runs into first.
//!
//! Every peer is one socket. Many systems start processes with a soft limit of 1024 open files
//! and a much higher hard limit; the server raises its soft limit to the hard limit at start.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the limit now in force, if known.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on some targets
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, exclusively borrowed `struct rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid `struct rlimit` that lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur as u64);
        }
    }
    Some(limit.rlim_cur as u64)
}

/// Elsewhere the limit is left as it is.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}

/// Grows the process's descriptor table at start to hold `descriptors`, so that it does not grow
/// while peers connect. The kernel doubles the table when a new descriptor does not fit, and each
/// time the thread that opens the descriptor (the acceptor, in `accept`) waits for an RCU grace
/// period, several times over in the first 10,000 connections, while every connection and every
/// `/health` request behind it waits too (docs/performance.md, "The door during a storm").
/// Asking for a descriptor numbered `descriptors - 1` (capped by the open-file limit) and closing
/// it again grows the table once, before anyone is waiting; the table stays grown. Costs the kernel
/// 8 bytes per slot (160 KiB for 20,000), not the process.
#[cfg(unix)]
pub fn reserve_descriptor_table(descriptors: u64, open_file_limit: u64) {
    let highest = descriptors.min(open_file_limit).saturating_sub(1);
    let Ok(highest) = libc::c_int::try_from(highest) else { return };
    // SAFETY: F_DUPFD_CLOEXEC duplicates standard error (which may be closed: then it fails and
    // nothing happens) onto the lowest free descriptor at or above `highest`; the duplicate is
    // closed at once and was never visible to any other code.
    unsafe {
        let duplicate = libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, highest);
        if duplicate >= 0 {
            libc::close(duplicate);
        }
    }
}

/// Elsewhere the table is left to grow by itself.
#[cfg(not(unix))]
pub fn reserve_descriptor_table(_descriptors: u64, _open_file_limit: u64) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The size of this process's descriptor table (`FDSize` in /proc/self/status).
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|line| line.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_descriptor_table_is_grown_once_and_stays_grown() {
        let limit = super::raise_open_file_limit().unwrap();
        let wanted = 3000.min(limit);
        super::reserve_descriptor_table(wanted, limit);
        assert!(table_size() >= wanted, "FDSize {} after reserving {wanted}", table_size());
    }
}
