//! One connected peer: its bounded queue and handle (`outbox`), its rate limits (`rate_limit`),
//! its one thread, the reader (`<id>-reader`: the connection's own `conn-<n>` thread, which read
//! the request head, renamed; `reader`), and the writing done for it by whoever queues a message
//! (`writer`) or, when its socket is full, by the one flusher thread (`flusher`).
//!
//! [`serve`] runs the reader, handing each message to the router. Between bursts of messages the
//! reader waits in its thread's shallowest frame, with the deeper pages of its stack handed back
//! (`platform/idle_stack.rs`): an idle peer holds one page of stack.
//! Whichever way a connection ends (close frame, error, kill, even a panic in the reader), the
//! reader's exit unregisters the peer, which tells its network it left.

pub(crate) mod broadcast_gate;
pub(crate) mod flusher;
pub(crate) mod outbox;
pub(crate) mod queue;
pub(crate) mod rate_limit;
pub(crate) mod reader;
pub(crate) mod writer;

use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tungstenite::protocol::Role;

use crate::accept::upgrade::AdmittedPeer;
use crate::context::ServerState;
use crate::peer::outbox::PeerHandle;
use crate::peer::reader::{FrameReader, Incoming, Stop};
use crate::platform::idle_stack::IdleStack;
use crate::platform::thread_name::rename_current_thread;
use crate::protocol::{self, error_code};
use crate::registry::router;
use crate::util::threads::contain_panic;

/// How long a reader waits for its peer's next message before it counts the peer as idle: it then
/// waits in its thread's shallowest frame, with the deeper pages of its stack handed back
/// (`platform/idle_stack.rs`). Signaling comes in bursts (an announce, an offer and its answer, a
/// few ICE candidates), then nothing for a long while. Half a second: shorter, and the readers of a
/// connection storm go idle while threads are still being started, which slows `/health`; longer,
/// and readers keep two pages well after a discovery is over (docs/performance.md, "One page of
/// stack while idle").
const IDLE_AFTER: Duration = Duration::from_millis(500);

/// Serves a newly registered peer: runs its reader on the calling thread (the connection's own
/// thread, which read the request head) until the connection ends. Writing needs no thread of its
/// own (`outbox`).
///
/// Never inlined, and kept small: between bursts of messages the reader waits here, in the thread's
/// shallowest frame, so that the stack below can be handed back while the peer is idle. The work
/// is done deeper, in [`PeerReader::read_until_idle`], which returns here each time.
#[inline(never)]
pub(crate) fn serve(peer: AdmittedPeer, state: Arc<ServerState>) {
    let mut reader = PeerReader::start(peer, state);
    while reader.read_until_idle() {
        reader.idle_stack.wait_readable(reader.frames.shared().socket.as_fd());
    }
    let shared = reader.frames.shared().clone();
    // Tell the network now, not after the linger below.
    drop(reader);
    reader::linger(&shared);
}

/// A peer's reader between calls: all it keeps lives here, on the heap, not on the stack.
struct PeerReader {
    frames: FrameReader,
    idle_stack: IdleStack,
    /// The thread's name, `<id>-reader`, for the log.
    name: String,
    departure: Departure,
}

/// Unregisters the peer when dropped, which tells its network it left: however the reader ends,
/// a panic included, from the moment it starts.
struct Departure {
    state: Arc<ServerState>,
    handle: Arc<PeerHandle>,
    /// Why the connection ended, once it has.
    reason: &'static str,
}

impl PeerReader {
    #[inline(never)]
    fn start(peer: AdmittedPeer, state: Arc<ServerState>) -> Box<PeerReader> {
        let AdmittedPeer { handle, shared, leftover } = peer;
        let departure = Departure { state: state.clone(), handle: handle.clone(), reason: "disconnected" };
        let name = format!("{}-reader", handle.peer_id.short());
        rename_current_thread(&name);
        let idle_stack = IdleStack::of_this_thread();
        // Without a receive timeout the reader never counts its peer as idle: it waits in its read
        // and keeps its stack, nothing else changes.
        if idle_stack.hands_back()
            && let Err(err) = shared.socket.set_read_timeout(Some(IDLE_AFTER))
        {
            log::debug!("cannot set a receive timeout on {name}'s socket: {err}");
        }
        let frames = FrameReader::new(handle, shared, leftover, Role::Server, state);
        Box::new(PeerReader { frames, idle_stack, name, departure })
    }

    /// Reads and handles the peer's messages until it falls silent for [`IDLE_AFTER`] (returns
    /// `true`) or the connection ends (`false`).
    #[inline(never)]
    fn read_until_idle(&mut self) -> bool {
        let PeerReader { frames, name, departure, .. } = self;
        let Departure { state, handle, .. } = &*departure;
        let mut stop = None;
        contain_panic(name, || stop = Some(frames.read(|message| handle_message(state, handle, message))));
        match stop {
            Some(Stop::Idle) => true,
            Some(Stop::Ended(reason)) => {
                departure.reason = reason;
                false
            }
            // A bug, logged: the connection ends as if the peer had gone.
            None => false,
        }
    }
}

impl Drop for Departure {
    fn drop(&mut self) {
        let peer = self.handle.peer_id;
        self.state.registry.unregister(peer, self.handle.serial, self.reason);
        log::debug!("peer {} disconnected ({})", peer.short(), self.reason);
    }
}

fn handle_message(state: &ServerState, handle: &Arc<PeerHandle>, message: Incoming<'_>) -> ControlFlow<&'static str> {
    match message {
        Incoming::Text(text) => router::handle_text(state, handle, text),
        Incoming::Binary => {
            state.note_rejected();
            state.metrics.received(crate::metrics::Received::Binary);
            let text = "Binary frames are not supported: send JSON text messages";
            handle.send_text(protocol::error(error_code::BINARY_FRAME, text));
        }
    }
    ControlFlow::Continue(())
}
