//! Raising the process's open-file limit, which a thread-per-connection server runs into first.
//!
//! Every peer is one socket. Many systems start processes with a soft limit of 1024 open files
//! and a much higher hard limit; the server raises its soft limit to the hard limit at start.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the limit now in force, if known.
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() -> Option<u64> {
    #[repr(C)]
    struct Rlimit {
        current: u64,
        maximum: u64,
    }
    const RLIMIT_NOFILE: i32 = 7;
    unsafe extern "C" {
        fn getrlimit(resource: i32, limit: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
    }
    let mut limit = Rlimit { current: 0, maximum: 0 };
    // SAFETY: `limit` is a valid, exclusively borrowed `struct rlimit` (two 64-bit fields on Linux).
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.current < limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        // SAFETY: `raised` is a valid `struct rlimit` that lives across the call.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.current);
        }
    }
    Some(limit.current)
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() -> Option<u64> {
    None
}
