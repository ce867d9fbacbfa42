//! Asking the Linux scheduler to run a thread promptly when it wakes: a short time slice.
//!
//! With thousands of peers announcing at once the run queue holds thousands of runnable threads,
//! and a woken thread that answers `/health` waits behind them. Linux's EEVDF scheduler lets a
//! thread ask for a shorter slice (`sched_attr::sched_runtime`, Linux 6.12+): its virtual deadline
//! comes sooner, and once it has run its slice it gives way at the next wake-up on its CPU; no
//! thread gets a larger share of the CPU, and no privilege is needed. The acceptor, the HTTP desk
//! and the starter ask for one, and every connection thread the starter starts inherits it, the
//! peers' readers included: the turns on a busy CPU are then short for all of the server's threads,
//! so whoever wakes (the door, a reader, another process) waits behind short turns, and peers stay
//! equals among themselves. Elsewhere the request is refused or absent and nothing changes.
//! Measured with `bash bench/capacity.sh` and `bash bench/compare.sh` (docs/performance.md).

/// The slice asked for: the shortest the kernel allows (0.1 ms; the default is 0.75 ms or more).
const SHORT_SLICE_NS: u64 = 100_000;

/// Asks for the short slice for the calling thread and the threads it starts from then on. Best
/// effort: returns whether it was granted.
pub(crate) fn prefer_prompt_wakeups() -> bool {
    set_slice(SHORT_SLICE_NS)
}

/// Sets the calling thread's slice, keeping its policy and nice value.
#[cfg(target_os = "linux")]
fn set_slice(nanoseconds: u64) -> bool {
    const SCHED_FLAG_KEEP_POLICY: u64 = 0x08;
    if super::switched_off("time_slice") {
        return false;
    }
    // The request sets the nice value too: pass the thread's own (`who` 0: the calling thread).
    // SAFETY: getpriority only reads the calling thread's nice value.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: 0,
        sched_flags: SCHED_FLAG_KEEP_POLICY,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: nanoseconds,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised sched_attr of the size it declares and outlives
    // the call; pid 0 is the calling thread; flags 0.
    let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
    result == 0
}

#[cfg(not(target_os = "linux"))]
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
    fn a_thread_can_shorten_its_slice_and_the_threads_it_starts_inherit_it() {
        std::thread::spawn(|| {
            let before = current_slice();
            if super::prefer_prompt_wakeups() {
                let short = current_slice();
                assert_eq!(short.map(|slice| slice <= super::SHORT_SLICE_NS), before.map(|_| true));
                assert_eq!(std::thread::spawn(current_slice).join().unwrap(), short);
            }
        })
        .join()
        .unwrap();
    }
}
