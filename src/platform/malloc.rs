//! Tuning glibc's allocator for thousands of mostly idle threads, and handing freed memory back.
//!
//! In-process at start ([`tune_for_many_threads`]): at most four arenas, and fixed thresholds for
//! giving memory back (glibc raises them after large frees, and a burst then stays resident).
//! Before start ([`reexec_with_malloc_tunables`]): no per-thread cache of freed chunks, and a 4 MiB
//! cache of ended threads' stacks. glibc reads those only while loading the program, through the
//! `GLIBC_TUNABLES` environment variable, so the binary re-executes itself once with it set; with
//! two mostly idle threads per peer they are a third of a peer's memory (24 against 36 KiB at
//! 10,000 peers, `bash bench/capacity.sh`; docs/performance.md). A `GLIBC_TUNABLES` that is
//! already set, even to an empty string, is left alone: that is how an operator keeps glibc's
//! defaults or chooses other tunables.

/// The tunables only the loader reads: no per-thread cache, and a 4 MiB cache of ended threads'
/// stacks (the arena limit is set in-process, [`tune_for_many_threads`]).
pub const TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=4194304";

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

/// Settings made in-process at start: at most four arenas (two cores' worth of threads contend
/// little for them), and fixed thresholds for giving memory back: glibc otherwise raises both each
/// time a large block is freed (up to 32 MiB), after which a burst's memory stays with the process
/// (tests/hostile.rs, `memory_comes_back_after_a_greedy_link_goes`; docs/performance.md).
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
