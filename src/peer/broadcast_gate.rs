//! At most a few threads write a broadcast at once; the others wait their turn asleep, in order.
//!
//! A broadcast (an announce's `peer-discovered` to every peer of its network, a departure's
//! `peer-disconnected`) is written by the thread that caused it, one socket after another. When ten
//! thousand peers announce within a second, thousands of readers would otherwise be writing their
//! broadcasts at once, all runnable on two cores: the scheduler shares a CPU among runnable threads,
//! so any other thread that wakes, such as the acceptor or the desk answering `/health`, waits
//! behind thousands (docs/performance.md, "A gate for broadcasts"). Past [`Gate`]'s limit a thread
//! sleeps until a writer is done, so the run queue stays short and the CPUs stay busy; queued
//! writes wait in their peers' outboxes, which are bounded as always. Signals to one peer are not
//! gated: they are not what fills the run queue, and their latency is what users feel.
//!
//! The limit is four per CPU: enough that a writer preempted or waiting on a full socket does not
//! leave a CPU idle, few enough that the door's threads are never far behind.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};

use parking_lot::Mutex;

/// A write to at least this many peers at once is a broadcast.
pub(crate) const BROADCAST_PEERS: usize = 8;
/// Writers per CPU.
const WRITERS_PER_CPU: usize = 4;

/// A counting semaphore that hands each freed place to the longest waiter (no barging).
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

struct GateState {
    /// Places free now.
    free: usize,
    /// Threads waiting, oldest first, each with the flag that says its place was handed to it.
    /// At most one entry per thread, so bounded by the server's thread budget.
    waiting: VecDeque<(Thread, Arc<AtomicBool>)>,
}

/// A place taken; dropping it hands the place to the longest waiter, or frees it.
pub(crate) struct Permit<'a> {
    gate: &'a Gate,
}

impl Gate {
    pub(crate) fn new(places: usize) -> Gate {
        Gate { state: Mutex::new(GateState { free: places.max(1), waiting: VecDeque::new() }) }
    }

    /// The process's gate for broadcasts: [`WRITERS_PER_CPU`] places per CPU.
    pub(crate) fn for_broadcasts() -> &'static Gate {
        static GATE: OnceLock<Gate> = OnceLock::new();
        GATE.get_or_init(|| {
            let cpus = thread::available_parallelism().map_or(1, |cpus| cpus.get());
            Gate::new(WRITERS_PER_CPU * cpus)
        })
    }

    /// Takes a place, sleeping until one is handed over if none is free.
    pub(crate) fn enter(&self) -> Permit<'_> {
        let granted = {
            let mut state = self.state.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Permit { gate: self };
            }
            let granted = Arc::new(AtomicBool::new(false));
            state.waiting.push_back((thread::current(), granted.clone()));
            granted
        };
        // `park` may return early; the flag alone says the place is ours.
        while !granted.load(Ordering::Acquire) {
            thread::park();
        }
        Permit { gate: self }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        match state.waiting.pop_front() {
            Some((thread, granted)) => {
                granted.store(true, Ordering::Release);
                thread.unpark();
            }
            None => state.free += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn never_more_holders_than_places_and_every_waiter_gets_in() {
        let gate = Arc::new(Gate::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                thread::spawn(move || {
                    for _ in 0..50 {
                        let _permit = gate.enter();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(gate.state.lock().free, 2);
    }

    #[test]
    fn a_freed_place_goes_to_the_longest_waiter() {
        let gate = Arc::new(Gate::new(1));
        let held = gate.enter();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for n in 0..3 {
            let (gate2, order2) = (gate.clone(), order.clone());
            threads.push(thread::spawn(move || {
                let _permit = gate2.enter();
                order2.lock().push(n);
            }));
            // Each waits before the next comes (bounded: the queue is looked at directly).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while gate.state.lock().waiting.len() < n + 1 {
                assert!(std::time::Instant::now() < deadline, "waiter {n} never queued");
                thread::sleep(Duration::from_millis(1));
            }
        }
        drop(held);
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
    }
}
