//! Sizing this process's futex hash table, so that waking a thread stays cheap with thousands of
//! threads.
//!
//! Every blocked thread waits on a futex, and the kernel files futex waiters in a hash table that,
//! since Linux 6.16, each threaded process gets for itself, sized by its CPUs (16 buckets on two
//! cores): with 20,000 threads a wake-up walks a chain of over a thousand waiters. The server asks
//! for about a bucket per thread it may run (`PR_FUTEX_HASH`); older kernels do not know the
//! request and keep their global table. Measured with `bash bench/capacity.sh` (docs/performance.md).

/// `prctl` option and sub-command (linux/prctl.h, Linux 6.16+; newer than the libc crate).
const PR_FUTEX_HASH: libc::c_int = 78;
const PR_FUTEX_HASH_SET_SLOTS: libc::c_ulong = 1;
/// Bucket counts asked for are kept within these (each bucket is about 64 bytes).
const MIN_SLOTS: usize = 1024;
const MAX_SLOTS: usize = 1 << 16;

/// Asks for a futex hash table of about one bucket per thread, for `threads` threads. Returns the
/// number of buckets set, or `None` where the kernel has no such setting.
#[cfg(target_os = "linux")]
pub fn size_for_threads(threads: usize) -> Option<usize> {
    if super::switched_off("futex_hash") {
        return None;
    }
    let slots = threads.clamp(MIN_SLOTS, MAX_SLOTS).next_power_of_two();
    // SAFETY: PR_FUTEX_HASH takes only integers (sub-command, slot count, flags); the unused
    // trailing argument is passed as zero, as prctl(2) asks.
    let result =
        unsafe { libc::prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots as libc::c_ulong, 0 as libc::c_ulong) };
    (result == 0).then_some(slots)
}

/// Elsewhere there is nothing to size.
#[cfg(not(target_os = "linux"))]
pub fn size_for_threads(_threads: usize) -> Option<usize> {
    None
}
