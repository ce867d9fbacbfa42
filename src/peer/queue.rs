//! A peer's queue and the state its reader and its writers share: the socket, the queued items,
//! whose turn it is to write, and the byte counts the bounds in `outbox.rs` are kept by.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tungstenite::protocol::Role;
use tungstenite::{Bytes, Utf8Bytes};

use crate::metrics::Metrics;
use crate::protocol::peer_id::PeerId;
use crate::protocol::{Batch, ToEach};

/// What can be queued for a peer.
#[derive(Debug)]
pub enum Outbound {
    /// A protocol message (JSON text).
    Text(Utf8Bytes),
    /// A message to many peers, completed with this peer's id as it is written.
    ToEach(Arc<ToEach>, PeerId),
    /// Several messages at once (a newcomer's discovery list).
    Batch(Batch),
    /// A WebSocket ping, to find dead connections.
    Ping,
    /// The answer to a ping the peer sent.
    Pong(Bytes),
    /// A close frame; nothing queued after it is written.
    Close(u16, &'static str),
}

/// How much one peer may leave unread while all peers together hold more than half the total.
pub const UNDER_PRESSURE: usize = 1 << 20;

/// The bytes queued for all peers together, and their bounds (see `outbox.rs`).
pub struct QueueBudget {
    pub(crate) per_peer: usize,
    pub(crate) total_limit: usize,
    pub(crate) total: AtomicUsize,
}

impl QueueBudget {
    pub fn new(per_peer: usize, total_limit: usize) -> Arc<QueueBudget> {
        Arc::new(QueueBudget { per_peer, total_limit, total: AtomicUsize::new(0) })
    }

    /// Bytes queued for all peers now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Per-item bookkeeping cost counted against the queue bound on top of the payload itself.
const QUEUE_ENTRY_OVERHEAD: usize = 64;

impl Outbound {
    /// What the item counts against the queue bound: its payload plus bookkeeping.
    pub(crate) fn cost(&self) -> usize {
        QUEUE_ENTRY_OVERHEAD
            + match self {
                Outbound::Text(text) => text.len(),
                Outbound::ToEach(message, _) => message.len(),
                Outbound::Batch(batch) => batch.bytes() + QUEUE_ENTRY_OVERHEAD * batch.count(),
                Outbound::Pong(payload) => payload.len(),
                Outbound::Ping | Outbound::Close(..) => 0,
            }
    }
}

/// Queued items, in order. The first is held inline: most turns write one message, and a broadcast
/// to a thousand idle peers would otherwise allocate a thousand queues at once (under the
/// registry's lock, where they all wait for its release) only to free them a moment later.
#[derive(Default)]
pub struct Items {
    first: Option<Outbound>,
    rest: VecDeque<Outbound>,
}

impl Items {
    /// Adds `item` at the end.
    pub(crate) fn push_back(&mut self, item: Outbound) {
        if self.is_empty() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Takes them all, in order, leaving none.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Outbound> + use<> {
        self.first.take().into_iter().chain(std::mem::take(&mut self.rest))
    }
}

/// A peer's queue and the state of its writer's turn, under one lock.
#[derive(Default)]
pub struct Queue {
    /// Items not yet formatted into frames.
    pub(crate) items: Items,
    /// Frames formatted by a turn that the socket did not take yet; they go before `items`.
    pub(crate) unsent: Vec<u8>,
    /// What the items in `unsent` cost against the bound.
    pub(crate) unsent_cost: usize,
    /// Whether `unsent` ends with a close frame: nothing in `items` is written after it.
    pub(crate) unsent_closes: bool,
    /// What `items` and `unsent` cost in all, counted against the bounds.
    pub(crate) queued: usize,
    /// Set while some thread holds the writer's turn (see `outbox.rs`).
    pub(crate) writing: bool,
    /// Set once a close frame went out or a write failed: nothing is queued or written any more.
    pub(crate) closed: bool,
}

/// State of one connection shared by its reader, whoever writes for it, and its handle.
pub struct PeerShared {
    /// The socket. The reader blocks reading it; writes never wait (see `writer.rs`). `shutdown`
    /// from any thread ends the reader.
    pub socket: TcpStream,
    /// Whether this end is the server (frames unmasked) or a client (a link this hub opened).
    pub(crate) role: Role,
    /// The queue and the writer's turn.
    pub(crate) queue: Mutex<Queue>,
    /// The bounds, and the count of all peers' queued bytes this peer's add to.
    pub(crate) budget: Arc<QueueBudget>,
    /// The server's counters (bytes written, peers cut off).
    pub(crate) metrics: Arc<Metrics>,
    /// When the peer last sent anything (Unix milliseconds).
    pub(crate) last_activity_ms: AtomicU64,
    /// Set once the connection is being closed or cut.
    pub(crate) closing: AtomicBool,
}

impl PeerShared {
    /// Records, with the queue locked, that queued items costing `cost` in all were written (or
    /// dropped, once the connection is over).
    pub(crate) fn written(&self, queue: &mut Queue, cost: usize) {
        queue.queued -= cost;
        self.budget.total.fetch_sub(cost, Ordering::Relaxed);
    }

    /// Shuts the socket down both ways, which ends the reader, and any write under way fails.
    pub fn kill(&self) {
        self.closing.store(true, Ordering::Relaxed);
        // Fails only if the socket is already closed, which is what we want anyway.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Drop for PeerShared {
    /// Whatever was still counted as queued when the connection is gone no longer counts against
    /// the total.
    fn drop(&mut self) {
        self.budget.total.fetch_sub(self.queue.get_mut().queued, Ordering::Relaxed);
    }
}
