//! Going on with a thread's work on a fresh thread, to leave the old one's debt with the scheduler
//! behind.
//!
//! Linux's EEVDF scheduler keeps, for each thread, how far it is ahead of its fair share of the CPU
//! (its "lag"), across sleeps, and makes a thread that ran more than its share wait until the
//! others have caught up. The acceptor runs far more than its share in a connection storm (ten
//! thousand accepts in a second, among thousands of runnable peer threads), and paid for it by
//! waiting on the run queue at the end of the storm, with `/health` requests behind it. A new thread
//! starts owing nothing, so the acceptor hands its listener and its state to a new thread every 64
//! connections, and once a burst of connections is over, and ends (measured in docs/performance.md,
//! "The door during a storm" and "The load generator's herd"). `PEERPIGEON_WITHOUT=fresh_thread`
//! keeps the same thread, for measuring; `fresh_after_burst` leaves out only the second.

use crossbeam_channel::bounded;

use crate::util::threads::spawn_named;
use crate::util::throttled_log::ThrottledLog;

/// Goes on with `body(work)` on a new thread named `name`, which first calls `prepare` (thread
/// settings are not inherited in full: the time slice is, the allocator's choice is not). Gives
/// `work` back if the new thread cannot be had (or the workaround is switched off), to go on here.
pub(crate) fn continue_on_fresh_thread<T: Send + 'static>(
    name: &str,
    work: T,
    prepare: fn(),
    body: fn(T),
) -> Result<(), T> {
    if super::switched_off("fresh_thread") {
        return Err(work);
    }
    // Through a channel, so that `work` is not lost with the closure if the thread cannot start.
    let (handover, takeover) = bounded(1);
    handover.send(work).unwrap_or_else(|_| unreachable!("the channel has room and a receiver"));
    let taken_by_new_thread = takeover.clone();
    let spawned = spawn_named(name, move || {
        if let Ok(work) = taken_by_new_thread.recv() {
            prepare();
            body(work);
        }
    });
    match spawned {
        Ok(_) => Ok(()),
        Err(err) => {
            // Out of threads, this would repeat at every hand-over: said at most every 10 s.
            static NO_THREAD: ThrottledLog = ThrottledLog::new();
            NO_THREAD.warn(|| format!("cannot start a fresh {name} thread ({err}); going on with the old one"));
            takeover.try_recv().map_or(Ok(()), Err)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    #[test]
    fn the_work_goes_on_on_another_thread() {
        let (done, finished) = mpsc::channel();
        let here = std::thread::current().id();
        let handed = super::continue_on_fresh_thread(
            "fresh-test",
            (done, here),
            || {},
            |(done, before)| {
                let name = std::thread::current().name().map(str::to_string);
                done.send((std::thread::current().id() != before, name)).unwrap();
            },
        );
        assert!(handed.is_ok());
        let (elsewhere, name) = finished.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(elsewhere);
        assert_eq!(name.as_deref(), Some("fresh-test"));
    }
}
