//! A longer queue of connections waiting to be accepted than std's 128.
//!
//! When everyone connects at once (10,000 peers on a stock kernel, `bash bench/capacity.sh`), a
//! queue of 128 overflows. The kernel then drops the last packet of a client's handshake: the
//! client believes it is connected, but the server only learns of it when it retransmits, a second
//! later, and a health check caught in that waits a second (measured in docs/performance.md).
//! `listen` again on the listening socket sets a longer queue; the kernel caps it at
//! `net.core.somaxconn` (4,096 by default since Linux 5.4).

use std::net::TcpListener;
use std::os::fd::AsRawFd;

/// Connections the kernel may hold for the acceptor.
const BACKLOG: i32 = 4096;

/// Lengthens `listener`'s queue of connections not yet accepted. Failing leaves std's 128, which
/// only costs latency in a connection storm.
pub(crate) fn lengthen(listener: &TcpListener) {
    if super::switched_off("listen_backlog") {
        return;
    }
    // SAFETY: the descriptor belongs to `listener`, which outlives the call; `listen` on a socket
    // already listening only changes the length of its queue.
    let result = unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    if result != 0 {
        log::debug!("could not lengthen the accept queue: {}", std::io::Error::last_os_error());
    }
}
