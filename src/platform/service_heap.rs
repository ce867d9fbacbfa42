//! A small heap of their own for the threads that serve everyone: the acceptor and the HTTP desk.
//!
//! glibc's allocator is tuned here for ten thousand threads (`malloc.rs`: two arenas, no per-thread
//! cache), so every allocation takes one of two arena locks that all peer threads share. While
//! thousands of peers are runnable, a peer thread that holds such a lock when its time slice ends
//! keeps it until it runs again, and a `/health` request behind it waited on that lock (measured in
//! docs/performance.md, "The door during a storm"). Threads that call [`use_on_this_thread`]
//! allocate from this heap instead, whose lock only they take.
//!
//! It is a plain size-class allocator: blocks of 16 bytes to 64 KiB in powers of two, carved from
//! one reserved region and kept on a free list per size once freed (never handed back: the two
//! threads need little, and the same sizes again and again). Any thread may free a block from it
//! (it is told by its address); anything bigger, or once the region is used up, comes from glibc.
//! It takes effect only in a binary that installs [`ServiceHeap`] as its global allocator (the
//! `peerpigeon` binary does); elsewhere [`use_on_this_thread`] changes nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Address space reserved for the heap (only the pages used cost memory).
const REGION_BYTES: usize = 16 << 20;
/// The smallest block (a power of two) and the number of sizes: 16 bytes to 64 KiB.
const SMALLEST_SHIFT: u32 = 4;
const SIZES: usize = 13;
/// `REGION_BASE` before the region is reserved, and after reserving it failed.
const NOT_YET: usize = 0;
const UNAVAILABLE: usize = usize::MAX;

/// A global allocator that gives the server's acceptor and HTTP desk threads a small heap of their
/// own, so that a `/health` request never waits for a malloc lock held by one of thousands of peer
/// threads, and every other thread glibc's (`System`). The `peerpigeon` binary installs it; a
/// program that embeds the server may too:
/// `#[global_allocator] static ALLOCATOR: peerpigeon::ServiceHeap = peerpigeon::ServiceHeap;`.
pub struct ServiceHeap;

thread_local! {
    /// Whether the current thread allocates from the service heap.
    static OWN_HEAP: Cell<bool> = const { Cell::new(false) };
}

/// Where the region starts (`NOT_YET`, `UNAVAILABLE` or an address); set once.
static REGION_BASE: AtomicUsize = AtomicUsize::new(NOT_YET);
/// The heap's bookkeeping; only threads using the heap (and frees of its blocks) take the lock.
static HEAP: Mutex<Blocks> = Mutex::new(Blocks { carved: 0, free: [ptr::null_mut(); SIZES] });

struct Blocks {
    /// Bytes of the region handed out so far.
    carved: usize,
    /// Per size, the first free block; each free block holds the address of the next.
    free: [*mut u8; SIZES],
}

// SAFETY: the pointers are addresses inside the region, only used under the `HEAP` lock.
unsafe impl Send for Blocks {}

/// Makes the calling thread allocate from the service heap from now on.
pub(crate) fn use_on_this_thread() {
    OWN_HEAP.with(|own| own.set(true));
}

/// Runs `f` with the calling thread allocating from glibc, as peer threads do: for what it hands
/// to a thread that will free it in a crowd (a new connection thread's start-up allocations).
pub(crate) fn with_shared_heap<R>(f: impl FnOnce() -> R) -> R {
    let before = uses_own_heap();
    OWN_HEAP.with(|own| own.set(false));
    let result = f();
    OWN_HEAP.with(|own| own.set(before));
    result
}

fn uses_own_heap() -> bool {
    OWN_HEAP.try_with(Cell::get).unwrap_or(false)
}

/// The size index of the block that holds `layout`, if the heap has one.
fn size_index(layout: Layout) -> Option<usize> {
    if layout.align() > 4096 {
        return None;
    }
    let bytes = layout.size().max(layout.align()).max(1 << SMALLEST_SHIFT).checked_next_power_of_two()?;
    let index = (bytes.trailing_zeros() - SMALLEST_SHIFT) as usize;
    (index < SIZES).then_some(index)
}

fn block_bytes(index: usize) -> usize {
    1 << (index as u32 + SMALLEST_SHIFT)
}

/// Whether `ptr` is a block of the service heap.
fn in_region(ptr: *mut u8) -> bool {
    let base = REGION_BASE.load(Ordering::Acquire);
    base != NOT_YET && base != UNAVAILABLE && (ptr as usize).wrapping_sub(base) < REGION_BYTES
}

fn lock() -> std::sync::MutexGuard<'static, Blocks> {
    // Nothing under the lock can panic; should it ever, the lists are still whole.
    HEAP.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A block for `layout` from the service heap, or `None` (too big, or no room left).
fn take(layout: Layout) -> Option<*mut u8> {
    let index = size_index(layout)?;
    let mut blocks = lock();
    let head = blocks.free[index];
    if !head.is_null() {
        // SAFETY: a free block of this size starts with the address of the next free one.
        blocks.free[index] = unsafe { head.cast::<*mut u8>().read() };
        return Some(head);
    }
    let base = reserve_region()?;
    let bytes = block_bytes(index);
    // Blocks are aligned to their size up to a page (the region is page-aligned; a layout that asks
    // for more goes to glibc).
    let start = blocks.carved.next_multiple_of(bytes.min(4096));
    if start + bytes > REGION_BYTES {
        return None;
    }
    blocks.carved = start + bytes;
    Some((base + start) as *mut u8)
}

/// Puts a block of the service heap back on its free list.
fn give_back(ptr: *mut u8, layout: Layout) {
    let Some(index) = size_index(layout) else { return };
    let mut blocks = lock();
    // SAFETY: `ptr` is a block of this size that its owner no longer uses; a block is at least
    // 16 bytes, aligned to its size, so it can hold the address of the next free one.
    unsafe { ptr.cast::<*mut u8>().write(blocks.free[index]) };
    blocks.free[index] = ptr;
}

/// The region's address, reserving it on first use (called under the `HEAP` lock).
fn reserve_region() -> Option<usize> {
    match REGION_BASE.load(Ordering::Acquire) {
        UNAVAILABLE => return None,
        NOT_YET => {}
        base => return Some(base),
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing; nothing else
    // refers to it. NORESERVE: only the pages written are ever committed.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            REGION_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    let base = if base == libc::MAP_FAILED { UNAVAILABLE } else { base as usize };
    REGION_BASE.store(base, Ordering::Release);
    (base != UNAVAILABLE).then_some(base)
}

// SAFETY: every block handed out is either glibc's (`System`, freed by `System`) or a block of the
// region that no one else holds, at least `layout.size()` bytes and aligned to `layout.align()`;
// `dealloc` and `realloc` tell them apart by address.
unsafe impl GlobalAlloc for ServiceHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if uses_own_heap()
            && let Some(block) = take(layout)
        {
            return block;
        }
        // SAFETY: passed on as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if uses_own_heap()
            && let Some(block) = take(layout)
        {
            // SAFETY: the block is at least `layout.size()` bytes and ours alone.
            unsafe { block.write_bytes(0, layout.size()) };
            return block;
        }
        // SAFETY: passed on as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_region(ptr) {
            give_back(ptr, layout);
        } else {
            // SAFETY: not ours, so glibc's, with the layout it was allocated with.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ours = in_region(ptr);
        if !ours && !uses_own_heap() {
            // SAFETY: glibc's block, passed on as received.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller promises that `new_size`, rounded up to `layout.align()`, fits an isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if ours && size_index(new_layout) == size_index(layout) {
            return ptr;
        }
        // SAFETY: `new_layout` has a non-zero size (the caller's promise for `new_size`).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size, and they are different blocks.
            unsafe {
                ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own that uses the service heap.
    fn on_a_service_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::spawn(move || {
            use_on_this_thread();
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_service_thread_gets_aligned_blocks_of_the_region_and_reuses_freed_ones() {
        let (first, again, aligned) = on_a_service_thread(|| unsafe {
            let layout = Layout::from_size_align(100, 8).unwrap();
            let first = ServiceHeap.alloc(layout);
            assert!(in_region(first));
            first.write_bytes(7, 100);
            ServiceHeap.dealloc(first, layout);
            let again = ServiceHeap.alloc(layout);
            let wide = Layout::from_size_align(64, 64).unwrap();
            let aligned = ServiceHeap.alloc(wide);
            ServiceHeap.dealloc(again, layout);
            ServiceHeap.dealloc(aligned, wide);
            (first as usize, again as usize, aligned as usize)
        });
        assert_eq!(first, again, "a freed block of the same size is used again");
        assert_eq!(aligned % 64, 0);
    }

    #[test]
    fn other_threads_and_big_blocks_use_glibc_and_any_thread_may_free_a_service_block() {
        let layout = Layout::from_size_align(48, 8).unwrap();
        let elsewhere = unsafe { ServiceHeap.alloc(layout) };
        assert!(!in_region(elsewhere));
        unsafe { ServiceHeap.dealloc(elsewhere, layout) };
        let big = Layout::from_size_align(1 << 20, 8).unwrap();
        let (big_block, block) = on_a_service_thread(move || unsafe {
            let big_block = ServiceHeap.alloc(big);
            let outside = with_shared_heap(|| ServiceHeap.alloc(layout));
            assert!(!in_region(outside));
            ServiceHeap.dealloc(outside, layout);
            (big_block as usize, ServiceHeap.alloc(layout) as usize)
        });
        assert!(!in_region(big_block as *mut u8));
        unsafe { ServiceHeap.dealloc(big_block as *mut u8, big) };
        assert!(in_region(block as *mut u8));
        unsafe { ServiceHeap.dealloc(block as *mut u8, layout) };
    }

    #[test]
    fn realloc_keeps_the_contents_within_and_across_sizes() {
        on_a_service_thread(|| unsafe {
            let layout = Layout::from_size_align(20, 1).unwrap();
            let block = ServiceHeap.alloc(layout);
            block.copy_from_nonoverlapping(b"twenty bytes of text".as_ptr(), 20);
            let same = ServiceHeap.realloc(block, layout, 30);
            assert_eq!(same, block, "20 and 30 bytes share a 32-byte block");
            let grown = ServiceHeap.realloc(same, Layout::from_size_align(30, 1).unwrap(), 5000);
            assert!(in_region(grown));
            assert_eq!(std::slice::from_raw_parts(grown, 20), b"twenty bytes of text");
            ServiceHeap.dealloc(grown, Layout::from_size_align(5000, 1).unwrap());
        });
    }
}
