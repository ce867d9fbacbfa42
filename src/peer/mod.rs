//! One connected peer: its bounded queue and handle (`outbox`), its rate limits (`rate_limit`),
//! its one thread, the reader (`<id>-reader`: the connection's own `conn-<n>` thread, which read
//! the request head, renamed; `reader`), and the writing done for it by whoever queues a message
//! (`writer`) or, when its socket is full, by the one flusher thread (`flusher`).
//!
//! [`serve`] runs the reader, handing each message to the router.
//! Whichever way a connection ends (close frame, error, kill, even a panic in the reader), the
//! reader's exit unregisters the peer, which tells its network it left.

pub(crate) mod flusher;
pub(crate) mod outbox;
pub(crate) mod queue;
pub(crate) mod rate_limit;
pub(crate) mod reader;
pub(crate) mod writer;

use std::ops::ControlFlow;
use std::sync::Arc;

use tungstenite::protocol::Role;

use crate::accept::upgrade::AdmittedPeer;
use crate::context::ServerState;
use crate::peer::outbox::PeerHandle;
use crate::peer::queue::PeerShared;
use crate::platform::thread_name::rename_current_thread;
use crate::protocol::{self, error_code};
use crate::registry::router;
use crate::util::threads::contain_panic;

/// Serves a newly registered peer: runs its reader on the calling thread (the connection's own
/// thread, which read the request head) until the connection ends. Writing needs no thread of its
/// own (`outbox`).
pub(crate) fn serve(peer: AdmittedPeer, state: Arc<ServerState>) {
    let AdmittedPeer { handle, shared, leftover } = peer;
    let reader_name = format!("{}-reader", handle.peer_id.short());
    rename_current_thread(&reader_name);
    contain_panic(&reader_name, || run_reader(handle, shared, leftover, state));
}

/// Unregisters the peer when the reader ends, however it ends (a panic included).
struct Departure<'a> {
    state: &'a ServerState,
    handle: &'a PeerHandle,
    reason: &'static str,
}

impl Drop for Departure<'_> {
    fn drop(&mut self) {
        let peer = self.handle.peer_id;
        self.state.registry.unregister(peer, self.handle.serial, self.reason);
        log::debug!("peer {} disconnected ({})", peer.short(), self.reason);
    }
}

fn run_reader(handle: Arc<PeerHandle>, shared: Arc<PeerShared>, leftover: Vec<u8>, state: Arc<ServerState>) {
    let mut departure = Departure { state: &state, handle: &handle, reason: "disconnected" };
    departure.reason = reader::read_frames(&handle, &shared, leftover, Role::Server, &state, |message| {
        match message {
            reader::Incoming::Text(text) => router::handle_text(&state, &handle, text),
            reader::Incoming::Binary => {
                state.note_rejected();
                state.metrics.received(crate::metrics::Received::Binary);
                let text = "Binary frames are not supported: send JSON text messages";
                handle.send_text(protocol::error(error_code::BINARY_FRAME, text));
            }
        }
        ControlFlow::Continue(())
    });
    // Tell the network now, not after the linger below.
    drop(departure);
    reader::linger(&shared);
}
