//! Handing back the stack an idle reader no longer uses. Every page of a thread's stack that was
//! ever touched stays resident until the thread ends, so a reader that went two or three pages deep
//! to handle its peer's messages would hold them for as long as the peer stays connected, mostly
//! idle. Instead, an idle reader waits in its thread's shallowest frame and first gives the pages
//! below that frame back to the kernel (`madvise(MADV_DONTNEED)`: they read as zeroes when next
//! touched). That frame lies within the stack's first page, beside glibc's thread descriptor and
//! thread-local storage, so an idle peer holds one page of stack instead of two or three (figures in
//! docs/performance.md, "What a peer costs").

use std::os::fd::{AsRawFd, BorrowedFd};

use super::switched_off;

/// Room kept below the waiting frame's own variables while the pages below are handed back: the
/// return address the `madvise` call pushes, and the red zone under it (128 bytes on x86-64) that
/// a function calling nothing may use without moving the stack pointer.
const CALL_ROOM: usize = 160;

/// The calling thread's stack, as far as handing its pages back needs to know it.
pub(crate) struct IdleStack {
    /// The lowest address of the stack (above its guard page), or `None` when pages are not
    /// handed back: the system did not say where the stack is, or the workaround is switched off.
    lowest: Option<usize>,
    page: usize,
}

impl IdleStack {
    /// The stack of the calling thread (not the process's main thread: its stack grows on demand).
    pub(crate) fn of_this_thread() -> IdleStack {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let lowest = if switched_off("idle_stack") { None } else { lowest_stack_address() };
        IdleStack { lowest, page }
    }

    /// Whether pages are handed back; when not, there is no point in waiting here rather than in
    /// the read itself.
    pub(crate) fn hands_back(&self) -> bool {
        self.lowest.is_some()
    }

    /// Waits until `socket` has something to read (or failed, or hung up: a read will then tell
    /// why), or a signal interrupts the wait; the stack below this call is handed back first.
    /// Call it from the thread's shallowest frame: the pages that frame is on stay in use.
    #[inline(never)]
    pub(crate) fn wait_readable(&self, socket: BorrowedFd<'_>) {
        let mut wanted = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        if let Some(lowest) = self.lowest {
            // An address in this very frame: the stack grows down, so what lies below it, less
            // the room for the calls below, holds nothing that is still needed.
            let here = std::ptr::addr_of!(wanted) as usize;
            let keep_from = here.saturating_sub(CALL_ROOM) & !(self.page - 1);
            if keep_from > lowest {
                // SAFETY: [lowest, keep_from) is part of this thread's own stack mapping, wholly
                // below every live frame and the room the next calls need; those pages' contents
                // are dead, and the kernel maps fresh zeroed pages in when they are touched again.
                unsafe { libc::madvise(lowest as *mut libc::c_void, keep_from - lowest, libc::MADV_DONTNEED) };
            }
        }
        // Not `poll::wait_readable`: its vector and its calls would reach below this frame, into the
        // page just handed back. The outcome needs no looking at: the caller reads next, which
        // tells data, end or error apart; an interrupted wait just means that read comes sooner.
        // SAFETY: `wanted` is one valid pollfd, and the descriptor is borrowed for the call.
        unsafe { libc::poll(&mut wanted, 1, -1) };
    }
}

/// The lowest usable address of the calling thread's stack, as glibc (or the C library in use)
/// reports it.
fn lowest_stack_address() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut lowest: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let found = libc::pthread_attr_getstack(&attr, &mut lowest, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (found && !lowest.is_null()).then_some(lowest as usize)
    }
}
