//! Asking the Linux scheduler to run a thread promptly when it wakes: a short time slice.
//!
//! With 10,000 peers announcing at once the run queue holds thousands of runnable reader and writer
//! threads, and a woken thread that answers `/health` waits behind them. Linux's EEVDF scheduler
//! lets a thread ask for a shorter slice (`sched_attr::sched_runtime`, Linux 6.12+): its virtual
//! deadline comes sooner, so it is picked ahead of threads with the default slice (and may preempt
//! them when it wakes), without getting a larger share of the CPU and without privileges.
//!
//! The acceptor, the HTTP desk and the starter ask for one, and the connection threads the starter
//! starts inherit it, so an HTTP request is served promptly; a connection that turns out to be a
//! WebSocket peer goes back to the default before it starts its writer, so peers stay equals among
//! themselves. Measured during the
//! 10,000-peer announce storm (`bench/capacity.sh`), the server's time from accepting a `/health`
//! connection to having written the reply: worst 15-49 ms over three runs with the short slice,
//! 22-1,158 ms without. Elsewhere (older kernels, other systems) the request is refused or absent
//! and nothing changes.

/// The slice asked for: the shortest the kernel allows (0.1 ms; the default is 0.75 ms or more).
const SHORT_SLICE_NS: u64 = 100_000;

/// Asks for the short slice for the calling thread. Best effort: returns whether it was granted.
pub(crate) fn prefer_prompt_wakeups() -> bool {
    set_slice(SHORT_SLICE_NS)
}

/// Puts the calling thread back on the default slice.
pub(crate) fn use_default_slice() {
    set_slice(0);
}

/// Sets the calling thread's slice (0: the default), keeping its policy and nice value.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
fn set_slice(nanoseconds: u64) -> bool {
    /// `struct sched_attr`, as in linux/sched/types.h (its first published size).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    unsafe extern "C" {
        fn syscall(number: i64, ...) -> i64;
        fn getpriority(which: i32, who: u32) -> i32;
    }
    #[cfg(target_arch = "x86_64")]
    const SYS_SCHED_SETATTR: i64 = 314;
    #[cfg(target_arch = "aarch64")]
    const SYS_SCHED_SETATTR: i64 = 274;
    const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;
    const PRIO_PROCESS: i32 = 0;
    // The request sets the nice value too: pass the thread's own (`who` 0: the calling thread).
    // SAFETY: getpriority only reads the calling thread's nice value.
    let nice = unsafe { getpriority(PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: 0,
        flags: SCHED_FLAG_KEEP_POLICY,
        nice,
        priority: 0,
        runtime: nanoseconds,
        deadline: 0,
        period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised sched_attr of the size it declares and outlives
    // the call; pid 0 is the calling thread; flags 0.
    let result = unsafe { syscall(SYS_SCHED_SETATTR, 0i64, &attr as *const SchedAttr, 0i64) };
    result == 0
}

#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn set_slice(_nanoseconds: u64) -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// The slice the kernel reports for the calling thread (`se.slice` in /proc/thread-self/sched).
    fn current_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|line| line.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_thread_can_shorten_its_slice_and_go_back() {
        std::thread::spawn(|| {
            let before = current_slice();
            if super::prefer_prompt_wakeups() {
                assert_eq!(current_slice().map(|slice| slice <= super::SHORT_SLICE_NS), before.map(|_| true));
                super::use_default_slice();
                assert_eq!(current_slice(), before);
            }
        })
        .join()
        .unwrap();
    }
}
