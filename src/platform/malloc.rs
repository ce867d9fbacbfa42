//! Tuning glibc's allocator (and its cache of thread stacks) for thousands of mostly idle threads.
//!
//! glibc gives every thread a cache of freed memory chunks (the *tcache*: up to 7 chunks of each
//! size up to 1 KiB) and spreads threads over up to 8 arenas per core. A signaling server has two
//! threads per peer and nearly all of them sit idle holding whatever their last messages freed:
//! measured with 1,000 announced idle peers, the caches alone cost about 10 KiB per peer, and the
//! chunks they hold pin arena pages that `malloc_trim` could otherwise hand back.
//!
//! glibc also keeps the stacks of ended threads (up to 40 MiB of them) for new threads to reuse,
//! with every page they touched still resident. After a 60-second soak that held the server at
//! 6.5 MB instead of the 3 MB it started with; a 4 MiB cache returns it to 4.2 MB and connection
//! churn is as fast as before (no cache at all: 4.0 MB, but about 5% slower churn).
//!
//! These settings can only be made before the process starts (glibc reads the `GLIBC_TUNABLES`
//! environment variable while loading the program), so the binary re-executes itself once with
//! them set. A `GLIBC_TUNABLES` that is already set, even to an empty string, is left alone: that
//! is how an operator keeps glibc's defaults or chooses other tunables.

/// The tunables the server runs with: no per-thread cache, at most four arenas (two cores' worth
/// of threads contend little for them), and a 4 MiB cache of ended threads' stacks.
pub const TUNABLES: &str =
    "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4:glibc.pthread.stack_cache_size=4194304";

/// Re-executes the running binary with [`TUNABLES`] unless `GLIBC_TUNABLES` is already set. Returns
/// only when it did not re-execute: the variable was set, or the exec failed (then the server runs
/// with glibc's defaults, which only costs memory).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec_with_malloc_tunables() {
    use std::os::unix::process::CommandExt;

    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` replaces this process (same pid) and only returns if it failed.
    let err = command.args(args).env("GLIBC_TUNABLES", TUNABLES).exec();
    crate::log_warn!("could not re-execute with GLIBC_TUNABLES={TUNABLES} ({err}); running with glibc's defaults");
}

/// Other C libraries have no such tunables.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_malloc_tunables() {}

/// Settings made in-process at start: at most four arenas, and fixed thresholds for giving memory
/// back. glibc otherwise raises both thresholds each time a large block is freed (up to 32 MiB), after
/// which a burst's memory stays with the process for good: measured with a hub link that sent
/// 5,000 peers and went away, the resident size stayed 1.1 MB (20%) above where it started with
/// the raised thresholds, and came back within 10% with fixed ones (tests/hostile.rs,
/// memory_comes_back_after_a_greedy_link_goes).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_for_many_threads() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt takes two integers and only changes the allocator's own parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 4);
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
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
