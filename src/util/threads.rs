//! Starting the server's named threads, and keeping a bug in one connection's thread from
//! reaching any other.

use std::thread::{self, JoinHandle};

use crate::error::Error;

/// Starts a named long-lived server thread.
pub(crate) fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    thread::Builder::new().name(name.to_string()).stack_size(256 * 1024).spawn(body).map_err(Error::Spawn)
}

/// Runs a connection thread's body so that a panic in it (a bug: nothing from the network should
/// be able to cause one) is logged and ends only that thread. What the thread owned is cleaned up
/// by its guards while unwinding (a peer's reader unregisters the peer); other peers never notice.
pub(crate) fn contain_panic(thread: &str, body: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        log::error!("thread {thread} panicked: {message}; its connection was closed, nothing else was affected");
    }
}
