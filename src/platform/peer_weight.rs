//! A peer's reader runs at the lowest weight (nice 19), below the server's own few threads.
//!
//! Thousands of peers mean thousands of reader threads, and when they all have a message at once
//! (ten thousand peers announcing within a second) thousands are runnable together. Linux shares
//! a CPU among runnable threads by weight, so a thread at the same weight as the readers, such as
//! the acceptor or the HTTP desk answering `/health`, may wait as many times its own turn as
//! there are runnable readers. At nice 19 a reader weighs 15 against a thread at nice 0's 1,024:
//! the server's own threads (acceptor, desk, starter, flusher, sweeper, hub links) are served
//! first, and peers remain equals among themselves. Nice values count within a scheduling group
//! (a cgroup, or the autogroup of a terminal session): a container or a systemd service with its
//! own group competes with other processes as a whole, however its threads are weighted; a busy
//! process in the same group outweighs the readers as the server's own threads do
//! (docs/deploy.md). Raising a nice value needs no privileges; a reader never lowers it again (its
//! thread ends with the peer). Where the request fails, nothing changes. Why 19 and not 10, and what it costs: docs/performance.md
//! ("Readers at the lowest weight").

/// The nice value a peer's reader takes: weight 15, against 1,024 at nice 0.
const READER_NICE: i32 = 19;

/// Lowers the calling thread's weight to a peer reader's. Best effort: returns whether it was done.
pub(crate) fn lighten_this_thread() -> bool {
    if super::switched_off("light_readers") {
        return false;
    }
    set_nice(READER_NICE)
}

#[cfg(target_os = "linux")]
fn set_nice(nice: i32) -> bool {
    // SAFETY: setpriority with PRIO_PROCESS and `who` 0 changes only the calling thread's nice
    // value (Linux keeps it per thread).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_nice: i32) -> bool {
    false
}
