//! What the load generator asks of the system so that thousands of client threads and sockets work:
//! a higher open-file limit, and (Linux 6.16+) a futex hash table sized for its threads, as the
//! server does for its own (see the server's `src/platform/`).

/// Raises the soft open-file limit to the hard limit.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid `struct rlimit` for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Asks for a futex hash table of about one bucket per thread (Linux 6.16+; elsewhere nothing).
pub fn size_futex_hash_for_threads(threads: usize) {
    const PR_FUTEX_HASH: libc::c_int = 78;
    const PR_FUTEX_HASH_SET_SLOTS: libc::c_ulong = 1;
    let slots = threads.clamp(1024, 1 << 16).next_power_of_two();
    // SAFETY: PR_FUTEX_HASH takes only integers.
    unsafe {
        libc::prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots as libc::c_ulong, 0 as libc::c_ulong);
    }
}
