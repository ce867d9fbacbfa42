//! A bounded queue from the accept thread to one long-lived thread (the HTTP desk, the starter),
//! whose receiver never yields the CPU while it waits.
//!
//! Why not a crossbeam channel: before it sleeps, a crossbeam (or std) receiver spins and then
//! calls `sched_yield` a few times. Under Linux's EEVDF scheduler a thread that yields gives up its
//! place: while thousands of peer threads are runnable (a connection storm), the desk then waited
//! long before it looked at its queue again, with a `/health` request in it (measured in
//! docs/performance.md, "The door during a storm"). A `Mutex` and a `Condvar` (futexes) sleep and
//! wake without yielding.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The sending side: held by the accept thread. Dropping it ends the receiving thread's loop.
pub(crate) struct Handoff<T> {
    queue: Arc<Queue<T>>,
}

/// The receiving side: iterate it to take items in order until the `Handoff` is dropped.
pub(crate) struct Arrivals<T> {
    queue: Arc<Queue<T>>,
}

struct Queue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    sender_gone: bool,
}

/// A queue that holds at most `capacity` items.
pub(crate) fn bounded<T>(capacity: usize) -> (Handoff<T>, Arrivals<T>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State { items: VecDeque::with_capacity(capacity), capacity, sender_gone: false }),
        arrived: Condvar::new(),
    });
    (Handoff { queue: queue.clone() }, Arrivals { queue })
}

impl<T> Queue<T> {
    /// The queue's state. A thread that panicked while holding the lock left it consistent (every
    /// change is a single push or pop), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T> Handoff<T> {
    /// Queues `item` without waiting; gives it back if `capacity` items are already waiting.
    pub(crate) fn try_pass(&self, item: T) -> Result<(), T> {
        let mut state = self.queue.lock();
        if state.items.len() >= state.capacity {
            return Err(item);
        }
        state.items.push_back(item);
        drop(state);
        self.queue.arrived.notify_one();
        Ok(())
    }
}

impl<T> Drop for Handoff<T> {
    fn drop(&mut self) {
        self.queue.lock().sender_gone = true;
        self.queue.arrived.notify_one();
    }
}

impl<T> Iterator for Arrivals<T> {
    type Item = T;

    /// The next item, sleeping until one arrives; `None` once the `Handoff` is gone and the queue
    /// is empty.
    fn next(&mut self) -> Option<T> {
        let mut state = self.queue.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.sender_gone {
                return None;
            }
            state = self.queue.arrived.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_its_capacity_in_order_and_ends_when_the_sender_goes() {
        let (handoff, arrivals) = bounded(2);
        assert!(handoff.try_pass(1).is_ok());
        assert!(handoff.try_pass(2).is_ok());
        assert_eq!(handoff.try_pass(3), Err(3));
        let receiver = std::thread::spawn(move || arrivals.collect::<Vec<_>>());
        drop(handoff);
        assert_eq!(receiver.join().unwrap(), vec![1, 2]);
    }

    #[test]
    fn a_waiting_receiver_wakes_for_an_item() {
        let (handoff, mut arrivals) = bounded(1);
        let (waiting, receiver_waits) = std::sync::mpsc::channel();
        let (taken, took) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            waiting.send(()).unwrap();
            taken.send(arrivals.next()).unwrap();
        });
        // The receiver is on its way into its wait (and, given a moment, in it) before the item comes;
        // without a wake-up it would never see it, and the bounded wait below fails.
        receiver_waits.recv().unwrap();
        assert!(took.recv_timeout(std::time::Duration::from_millis(50)).is_err(), "nothing to take yet");
        handoff.try_pass(7).unwrap();
        assert_eq!(took.recv_timeout(std::time::Duration::from_secs(5)), Ok(Some(7)));
    }
}
