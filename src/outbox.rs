//! A peer's outbound queue and the handle other threads use to send to it or close it.
//!
//! Exactly one thread, the peer's writer, writes frames to a peer's socket; everyone else (the
//! peer's own reader, other peers' readers, the sweeper, shutdown) pushes [`Outbound`] items into the
//! peer's queue through its [`PeerHandle`]. Pushing never blocks, so a slow peer cannot stall the
//! peers that send to it.
//!
//! **The bound:** the queue is a crossbeam channel that allocates as it grows, so its limit is kept
//! here, in queued bytes (`Config::max_queued_bytes`). A text message that would take a peer past it
//! is not queued; the peer is declared too slow and its socket is shut down at once (no close frame
//! can reach a peer that has stopped reading). Its reader then ends and the peer leaves as usual.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tungstenite::{Bytes, Utf8Bytes};

use crate::clock::unix_millis;
use crate::peer_id::PeerId;

/// What a peer's writer can be asked to put on the wire.
#[derive(Debug)]
pub enum Outbound {
    /// A protocol message (JSON text).
    Text(Utf8Bytes),
    /// A WebSocket ping, to find dead connections.
    Ping,
    /// The answer to a ping the peer sent.
    Pong(Bytes),
    /// A close frame; the writer stops after sending it.
    Close(u16, &'static str),
}

/// Per-item bookkeeping cost counted against the queue bound on top of the payload itself.
const QUEUE_ENTRY_OVERHEAD: usize = 64;

impl Outbound {
    /// What the item counts against the queue bound: its payload plus bookkeeping.
    fn cost(&self) -> usize {
        QUEUE_ENTRY_OVERHEAD
            + match self {
                Outbound::Text(text) => text.len(),
                Outbound::Pong(payload) => payload.len(),
                Outbound::Ping | Outbound::Close(..) => 0,
            }
    }
}

/// State of one connection shared by its reader, its writer and its handle.
pub struct PeerShared {
    /// The socket. Reader and writer use it through `&TcpStream`; `shutdown` from any thread
    /// unblocks both.
    pub socket: TcpStream,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    last_activity_ms: AtomicU64,
    closing: AtomicBool,
}

impl PeerShared {
    /// Records that the peer's writer has taken `text` off the queue.
    pub fn dequeued(&self, item: &Outbound) {
        self.queued_bytes.fetch_sub(item.cost(), Ordering::Relaxed);
    }

    /// Shuts the socket down both ways, which ends the reader and the writer.
    pub fn kill(&self) {
        self.closing.store(true, Ordering::Relaxed);
        // Fails only if the socket is already closed, which is what we want anyway.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// The way to reach one connected peer. Cheap to share (`Arc`); held by the registry and the
/// peer's reader.
pub struct PeerHandle {
    /// The peer's id.
    pub peer_id: PeerId,
    /// A number unique to this connection, so that a reconnect under the same id is never
    /// mistaken for the old connection.
    pub serial: u64,
    /// Where the connection comes from.
    pub remote_addr: Option<SocketAddr>,
    /// When the connection was accepted (Unix ms).
    pub connected_at_ms: u64,
    tx: Sender<Outbound>,
    shared: Arc<PeerShared>,
    /// Set once the connection is a link to another hub: its messages are then trusted as relays.
    link: AtomicBool,
}

/// Creates the handle of a new connection, plus what its writer needs: the receiving end of the
/// queue and the shared state.
pub fn new_peer(
    peer_id: PeerId,
    serial: u64,
    socket: TcpStream,
    max_queued_bytes: usize,
) -> (Arc<PeerHandle>, Receiver<Outbound>, Arc<PeerShared>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let now = unix_millis();
    let remote_addr = socket.peer_addr().ok();
    let shared = Arc::new(PeerShared {
        socket,
        queued_bytes: AtomicUsize::new(0),
        max_queued_bytes,
        last_activity_ms: AtomicU64::new(now),
        closing: AtomicBool::new(false),
    });
    let handle = Arc::new(PeerHandle {
        peer_id,
        serial,
        remote_addr,
        connected_at_ms: now,
        tx,
        shared: shared.clone(),
        link: AtomicBool::new(false),
    });
    (handle, rx, shared)
}

impl PeerHandle {
    /// Queues a text message. Returns `false` if it was not queued: the peer is going away, or it
    /// has stopped reading and has just been cut off (see the module docs).
    pub fn send_text(&self, text: String) -> bool {
        self.enqueue(Outbound::Text(Utf8Bytes::from(text)))
    }

    /// Queues a control item (ping, pong or close). Counted against the bound like text, so that
    /// a flood of pings from a peer that never reads cannot grow its queue either.
    pub fn send_control(&self, item: Outbound) {
        self.enqueue(item);
    }

    fn enqueue(&self, item: Outbound) -> bool {
        let cost = item.cost();
        let queued = self.shared.queued_bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        if queued > self.shared.max_queued_bytes {
            self.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            if !self.is_closing() {
                crate::log_warn!("peer {} is not reading ({queued} bytes queued); closing it", self.peer_id.short());
            }
            self.kill();
            return false;
        }
        if self.tx.send(item).is_err() {
            // The writer has stopped; undo the accounting so the numbers stay true.
            self.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Asks the writer to close the connection with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.send_control(Outbound::Close(code, reason));
    }

    /// Cuts the connection off at once, without a close frame.
    pub fn kill(&self) {
        self.shared.kill();
    }

    /// Whether the connection is being closed (it may still be registered for a moment).
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Relaxed)
    }

    /// Marks the connection as a link to another hub.
    pub fn mark_link(&self) {
        self.link.store(true, Ordering::Relaxed);
    }

    /// Whether the connection is a link to another hub.
    pub fn is_link(&self) -> bool {
        self.link.load(Ordering::Relaxed)
    }

    /// Records that a frame arrived from the peer.
    pub fn touch(&self) {
        self.shared.last_activity_ms.store(unix_millis(), Ordering::Relaxed);
    }

    /// How long ago the peer last sent anything.
    pub fn idle_for(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.shared.last_activity_ms.load(Ordering::Relaxed)))
    }
}
