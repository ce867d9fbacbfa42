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
