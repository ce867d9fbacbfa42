//! One connected peer: its bounded queue and handle (`outbox`), its rate limits (`rate_limit`),
//! and its two threads, a reader (`<id>-reader`: the connection's own `conn-<n>` thread, which
//! read the request head, renamed; `reader`) and a writer (`<id>-writer`; `writer`).
//!
//! [`serve`] starts the writer and runs the reader, handing each message to the router.
//! Whichever way a connection ends (close frame, error, kill, even a panic in the reader), the
//! reader's exit unregisters the peer, which tells its network it left.

pub(crate) mod outbox;
pub(crate) mod rate_limit;
pub(crate) mod reader;
pub(crate) mod writer;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread;

use tungstenite::protocol::Role;

use crate::accept::upgrade::AdmittedPeer;
use crate::context::ServerState;
use crate::peer::outbox::{PeerHandle, PeerShared};
use crate::platform::thread_name::rename_current_thread;
use crate::protocol::{self, error_code};
use crate::registry::router;
use crate::util::threads::contain_panic;

/// Writer stack: it only frames and writes bytes.
const WRITER_STACK: usize = 128 * 1024;

/// Serves a newly registered peer: starts its writer thread, then runs its reader on the calling
/// thread (the connection's own thread, which read the request head) until the connection ends.
/// If the writer cannot be started the peer is dropped at once.
pub(crate) fn serve(peer: AdmittedPeer, state: Arc<ServerState>) {
    let AdmittedPeer { handle, outbox, shared, leftover, writer_slot } = peer;
    let short = handle.peer_id.short().to_string();
    let writer_shared = shared.clone();
    let writer_name = format!("{short}-writer");
    let spawned = thread::Builder::new().name(writer_name.clone()).stack_size(WRITER_STACK).spawn(move || {
        let _slot = writer_slot;
        contain_panic(&writer_name, || writer::run_writer(outbox, writer_shared.clone()));
        // However the writer ended, the connection ends with it; the reader then cleans up.
        writer_shared.kill();
    });
    if let Err(err) = spawned {
        log::warn!("cannot start a writer thread for peer {short}: {err}");
        state.registry.unregister(handle.peer_id, handle.serial, "server overloaded");
        handle.kill();
        return;
    }
    let reader_name = format!("{short}-reader");
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
