//! Tuning glibc's allocator for thousands of mostly idle threads, and handing freed memory back.
//!
//! In-process at start ([`tune_for_many_threads`]): at most two arenas, blocks of 16 KiB and more
//! mapped on their own, and fixed thresholds for giving memory back (glibc raises them after large
//! frees, and a burst then stays resident).
//! What glibc reads only while loading the program (no per-thread cache, a small cache of ended
//! threads' stacks) is set by the binary, which re-executes itself once with it (`reexec.rs`).

/// Settings made in-process at start: at most two arenas (each arena keeps its own free fragments
/// between long-lived blocks; the threads of two cores contend little for two); blocks of 16 KiB
/// and more (a newcomer's discovery list, a burst's write buffer) mapped on their own and handed
/// back whole when freed, instead of leaving holes in an arena; and fixed thresholds, which glibc
/// otherwise raises each time a large block is freed (up to 32 MiB), after which a burst's memory
/// stays with the process (tests/hostile.rs, `memory_comes_back_after_a_greedy_link_goes`).
/// Measured in docs/performance.md ("What a peer costs").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_for_many_threads() {
    const MMAP_THRESHOLD: libc::c_int = 16 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt takes two integers and only changes the allocator's own parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_for_many_threads() {}

/// Gives freed heap pages back to the operating system. glibc keeps memory freed by a thread cached
/// in that thread's arena; with a thread per connection, a burst (a network of a thousand peers
/// announcing at once is a million messages) would otherwise leave the resident size high long
/// after the messages are gone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointers; it only returns unused pages of the allocator's own
    // heaps to the kernel, and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
