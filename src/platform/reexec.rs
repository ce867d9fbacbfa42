//! The binary's allocator settings that glibc reads only while loading the program: no per-thread
//! cache of freed chunks (tcache), a 4 MiB cache of ended threads' stacks, and no room for
//! later-loaded libraries at the top of every thread's stack. With a mostly idle thread per peer
//! they are a large part of a peer's memory (figures in docs/performance.md, "Each workaround, with
//! and without"), and there is no way to set them in-process:
//! glibc reads them from the `GLIBC_TUNABLES` environment variable at start, so the binary
//! re-executes itself once with it set (same pid, same arguments). A `GLIBC_TUNABLES` that is
//! already set, even to an empty string, is left alone: that is how an operator keeps glibc's
//! defaults or chooses other tunables. Used by `main.rs` only: a library must not exec.

/// The tunables only the loader reads: no per-thread cache, a 4 MiB cache of ended threads'
/// stacks (the arena limit is set in-process, by `malloc.rs`), and no room kept at the top of every
/// thread's stack for libraries that might be loaded later: one namespace for them (`rtld.nns=1`,
/// glibc's default keeps four) and no optional static TLS. glibc puts that room above the thread's
/// first frame, in the same pages, so it decides whether a reader that has signalled stays within
/// two pages of stack, and whether an idle reader's wait fits in the first (`idle_stack.rs`;
/// docs/performance.md, "What a peer costs"). The server loads no library after start but the NSS
/// modules of a name lookup, which need none of it.
pub const TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=4194304:\
                            glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0";

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
    // The logger is not installed yet (this runs first thing): say it on stderr directly.
    eprintln!("peerpigeon: could not re-execute with GLIBC_TUNABLES={TUNABLES} ({err}); running with glibc's defaults");
}

/// Other C libraries have no such tunables.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec_with_malloc_tunables() {}
