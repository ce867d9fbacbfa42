//! A cap on the connection threads the server runs, derived from the kernel's limit on a process's
//! memory mappings.
//!
//! Every thread costs about four mappings: its stack and the stack's guard page, and the alternate
//! signal stack (plus guard) that Rust's standard library gives each thread to report stack
//! overflows. Linux caps a process at `vm.max_map_count` mappings (65,530 by default). Past the cap
//! the kernel does not fail gracefully for us: when a new thread cannot map its signal stack, its
//! start-up panics outside any code that could catch it and **the whole process aborts** (seen at
//! about 8,200 threads on a default system). So each connection thread takes a [`ThreadSlot`]
//! first; with none left, the connection is refused and everyone else is served.
//!
//! The budget is `(max_map_count - mappings at start - headroom) / MAPS_PER_THREAD`, with a
//! mapping of slack per thread for buffers big enough to be mapped on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Mappings counted per thread: stack, guard, signal stack, its guard, and one spare.
const MAPS_PER_THREAD: usize = 5;
/// Mappings kept free for everything else (allocator arenas, the listener, hub links, ...).
const HEADROOM_MAPS: usize = 1024;
/// Threads that peers can never take: when peers have taken all the others, there is still room to
/// answer `/health` and to refuse newcomers with a proper close.
pub(crate) const RESERVED_FOR_HTTP: usize = 64;

/// How many connection threads may run at once, and how many do.
#[derive(Debug)]
pub(crate) struct ThreadBudget {
    live: AtomicUsize,
    limit: usize,
}

/// One thread's place in the budget, given back when dropped (normally when the thread ends).
#[derive(Debug)]
pub(crate) struct ThreadSlot(Arc<ThreadBudget>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ThreadBudget {
    /// A budget of `limit` threads.
    pub fn new(limit: usize) -> Arc<ThreadBudget> {
        Arc::new(ThreadBudget { live: AtomicUsize::new(0), limit })
    }

    /// The budget this system allows, read from `/proc` (unlimited where it cannot be read), or
    /// `configured` (`MAX_THREADS`) if that is smaller and not 0.
    pub fn for_this_system(configured: usize) -> Arc<ThreadBudget> {
        let system = system_limit().unwrap_or(usize::MAX);
        ThreadBudget::new(if configured == 0 { system } else { configured.min(system) })
    }

    /// The most threads this budget allows.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many slots are taken (threads running or about to).
    pub fn in_use(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether a connection whose thread holds a slot may become a peer: only while the threads
    /// kept for HTTP stay free beside it.
    pub fn has_room_for_a_peer(&self) -> bool {
        self.in_use().saturating_add(RESERVED_FOR_HTTP) <= self.limit
    }

    /// Takes a slot, or `None` if all are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<ThreadSlot> {
        self.try_take_leaving(0)
    }

    /// Takes a slot if at least `spare` others stay free afterwards.
    pub fn try_take_leaving(self: &Arc<Self>, spare: usize) -> Option<ThreadSlot> {
        let taken = self.live.fetch_add(1, Ordering::Relaxed);
        if taken.saturating_add(spare) >= self.limit {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ThreadSlot(self.clone()))
    }
}

/// The threads a server configured for `max_connections` peers and `max_pending_handshakes`
/// sockets still sending their head may want at once: one per peer, one per pending socket, and
/// the ones kept for HTTP.
pub(crate) fn threads_wanted(max_connections: usize, max_pending_handshakes: usize) -> usize {
    max_connections + max_pending_handshakes.min(max_connections) + RESERVED_FOR_HTTP
}

/// The `vm.max_map_count` that leaves room for `threads` threads (rounded up to a power of two).
pub(crate) fn max_map_count_for(threads: usize) -> usize {
    (threads * MAPS_PER_THREAD + HEADROOM_MAPS * 4).next_power_of_two()
}

/// Threads the mapping limit leaves room for, on Linux.
fn system_limit() -> Option<usize> {
    let max_maps: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    let maps_now = std::fs::read_to_string("/proc/self/maps").ok()?.lines().count();
    Some(max_maps.saturating_sub(maps_now + HEADROOM_MAPS) / MAPS_PER_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let budget = ThreadBudget::new(2);
        let a = budget.try_take();
        let b = budget.try_take();
        assert!(a.is_some() && b.is_some());
        assert!(budget.try_take().is_none());
        drop(a);
        assert!(budget.try_take().is_some());
    }

    #[test]
    fn a_spare_can_be_kept_free() {
        let budget = ThreadBudget::new(3);
        let a = budget.try_take_leaving(1);
        let b = budget.try_take_leaving(1);
        assert!(a.is_some() && b.is_some());
        assert!(budget.try_take_leaving(1).is_none());
        assert!(budget.try_take().is_some());
    }

    #[test]
    fn the_advised_map_count_leaves_room_for_the_threads_wanted() {
        let threads = threads_wanted(12_000, 1024);
        assert_eq!(threads, 12_000 + 1024 + RESERVED_FOR_HTTP);
        let maps = max_map_count_for(threads);
        assert!(maps.saturating_sub(HEADROOM_MAPS + 100) / MAPS_PER_THREAD >= threads, "{maps} maps");
    }

    #[test]
    fn this_system_allows_some_threads() {
        assert!(ThreadBudget::for_this_system(0).limit() > 100);
        assert_eq!(ThreadBudget::for_this_system(77).limit(), 77);
    }
}
