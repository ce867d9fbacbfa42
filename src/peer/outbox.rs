//! A peer's outbound queue and the handle other threads use to send to it or close it.
//!
//! Nobody owns a peer's socket for writing. Whoever queues a message for a peer whose queue has
//! no writer takes the writer's turn and writes at once (`writer.rs`), without waiting: the sending
//! peer's reader, the sweeper, shutdown. Whoever queues while a turn is under way only adds to the
//! queue, and the turn's holder writes it too, in order. A socket that will not take more bytes is
//! handed, with the rest of its turn, to the one flusher thread (`flusher.rs`), which waits for all
//! such sockets at once. So an idle peer costs no thread, and a slow peer cannot stall the peers
//! that send to it.
//!
//! **The bounds:** a peer's queue counts its bytes (payload plus bookkeeping, until the socket has
//! taken them), per peer (`MAX_QUEUED_BYTES`) and for all peers together (`MAX_TOTAL_QUEUED_BYTES`,
//! the [`QueueBudget`]). A message that would take a peer past its bound is not queued; the peer
//! is declared too slow and its socket is shut down at once (no close frame can reach a peer that
//! has stopped reading). Its reader then ends and the peer leaves as usual. While all peers
//! together hold more than half the total, a peer's own bound shrinks to [`UNDER_PRESSURE`], so
//! the peers that do not read are the ones cut off; a message that would take the total past its
//! bound cuts off the peer it is for.
//!
//! **Writes wait until the message that caused them is handled.** A reader writes what handling a
//! message queued once it is done with it, and messages queued under the registry's lock are
//! written after the lock is let go ([`DeferWrites`]): the lock is never held across socket I/O, a
//! reader's stack stays shallow where it writes, and messages queued for one peer meanwhile by
//! other threads join the same write.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tungstenite::Utf8Bytes;
use tungstenite::protocol::Role;

use crate::metrics::{CutOff, Dropped, Metrics};
use crate::peer::broadcast_gate::{BROADCAST_PEERS, Gate};
use crate::peer::flusher::Flusher;
use crate::peer::queue::{Outbound, PeerShared, Queue, QueueBudget, UNDER_PRESSURE};
use crate::peer::writer::{Turn, write_turn};
use crate::protocol::peer_id::PeerId;
use crate::protocol::{Batch, ToEach};
use crate::util::clock::unix_millis;
use crate::util::throttled_log::ThrottledLog;

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
    shared: Arc<PeerShared>,
    /// Where its turn goes when its socket is full.
    flusher: Arc<Flusher>,
    /// Set once the connection is a link to another hub: its messages are then trusted as relays.
    link: AtomicBool,
    /// Set at the handshake when the connection may become a hub link: it presented `HUB_TOKEN`
    /// (or, with none set, came from this machine), or it is a link this hub opened itself.
    may_link: AtomicBool,
}

/// Creates the handle of a new connection and the state its reader shares with it. `role` is this
/// end's: `Server` for peers, `Client` for the links this hub opens.
pub(crate) fn new_peer(
    peer_id: PeerId,
    serial: u64,
    socket: TcpStream,
    role: Role,
    budget: Arc<QueueBudget>,
    metrics: Arc<Metrics>,
    flusher: Arc<Flusher>,
) -> (Arc<PeerHandle>, Arc<PeerShared>) {
    let now = unix_millis();
    let remote_addr = socket.peer_addr().ok();
    let shared = Arc::new(PeerShared {
        socket,
        role,
        queue: Mutex::new(Queue::default()),
        budget,
        metrics,
        last_activity_ms: AtomicU64::new(now),
        closing: AtomicBool::new(false),
    });
    let handle = Arc::new(PeerHandle {
        peer_id,
        serial,
        remote_addr,
        shared: shared.clone(),
        flusher,
        link: AtomicBool::new(false),
        may_link: AtomicBool::new(false),
    });
    (handle, shared)
}

impl PeerHandle {
    /// Queues a text message and writes it unless someone else is writing for the peer. Returns
    /// `false` if it was not queued: the peer is going away, or it has stopped reading and has just
    /// been cut off (see the module docs).
    pub fn send_text(&self, text: String) -> bool {
        self.enqueue(Outbound::Text(Utf8Bytes::from(text)))
    }

    /// Queues this peer's copy of a message built once for many peers (see [`ToEach`]).
    pub fn send_to_each(&self, message: &Arc<ToEach>) -> bool {
        self.enqueue(Outbound::ToEach(message.clone(), self.peer_id))
    }

    /// Queues several messages at once, in order (nothing if there are none).
    pub fn send_batch(&self, batch: Batch) -> bool {
        batch.count() == 0 || self.enqueue(Outbound::Batch(batch))
    }

    /// Queues a control item (ping, pong or close). Counted against the bound like text, so that
    /// a flood of pings from a peer that never reads cannot grow its queue either.
    pub fn send_control(&self, item: Outbound) {
        self.enqueue(item);
    }

    fn enqueue(&self, item: Outbound) -> bool {
        let cost = item.cost();
        let budget = &self.shared.budget;
        let mut queue = self.shared.queue.lock();
        if queue.closed {
            return false;
        }
        let queued = queue.queued + cost;
        let total = budget.total.fetch_add(cost, Ordering::Relaxed) + cost;
        let own_limit =
            if total > budget.total_limit / 2 { budget.per_peer.min(UNDER_PRESSURE) } else { budget.per_peer };
        if queued > own_limit || total > budget.total_limit {
            // Bound hit: the message is dropped and the peer cut off (see the module docs).
            budget.total.fetch_sub(cost, Ordering::Relaxed);
            drop(queue);
            self.cut_off(queued, total);
            return false;
        }
        queue.queued = queued;
        queue.items.push_back(item);
        let takes_turn = !queue.writing;
        queue.writing = true;
        drop(queue);
        if takes_turn {
            take_turn(&self.shared, &self.flusher);
        }
        true
    }

    /// Cuts off a peer that leaves more than its bound unread.
    fn cut_off(&self, queued: usize, total: usize) {
        if !self.is_closing() {
            self.shared.metrics.dropped(Dropped::QueueFull);
            self.shared.metrics.cut_off(CutOff::NotReading);
            static CUT_OFF: ThrottledLog = ThrottledLog::new();
            CUT_OFF.warn(|| {
                format!(
                    "peer {} is not reading ({queued} bytes queued for it, {total} for all peers); closing it",
                    self.peer_id.short()
                )
            });
        }
        self.kill();
    }

    /// Queues a close frame with `code` and `reason`; the socket is shut down once it is written.
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

    /// Records that the connection holds the hub credential (see `may_link`).
    pub fn grant_hub_credential(&self) {
        self.may_link.store(true, Ordering::Relaxed);
    }

    /// Whether the connection may become a hub link.
    pub fn may_link(&self) -> bool {
        self.may_link.load(Ordering::Relaxed)
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

/// The most deferred turns a thread keeps room for between messages.
const KEPT_DEFERRED: usize = 4;

thread_local! {
    /// How many [`DeferWrites`] this thread holds, and the peers whose turn it took meanwhile.
    static DEFERRING: Cell<usize> = const { Cell::new(0) };
    static DEFERRED: RefCell<Vec<(Arc<PeerShared>, Arc<Flusher>)>> = const { RefCell::new(Vec::new()) };
}

/// While one is held, turns this thread takes are not written at once but when the last one is
/// let go (the registry holds one with its lock; see the module docs). Turns of [`BROADCAST_PEERS`]
/// or more peers are a broadcast, written once a place is free (`broadcast_gate`).
pub(crate) struct DeferWrites {
    /// Tied to the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl DeferWrites {
    pub(crate) fn begin() -> DeferWrites {
        DEFERRING.with(|depth| depth.set(depth.get() + 1));
        DeferWrites { _not_send: std::marker::PhantomData }
    }

    /// Whether this thread defers its writes now; if so, `peer`'s turn is kept for later.
    fn keep_for_later(peer: &Arc<PeerShared>, flusher: &Arc<Flusher>) -> bool {
        if DEFERRING.with(Cell::get) == 0 {
            return false;
        }
        DEFERRED.with(|deferred| deferred.borrow_mut().push((peer.clone(), flusher.clone())));
        true
    }
}

impl Drop for DeferWrites {
    fn drop(&mut self) {
        let depth = DEFERRING.with(|depth| {
            depth.set(depth.get() - 1);
            depth.get()
        });
        if depth > 0 {
            return;
        }
        let peers = DEFERRED.with(|deferred| std::mem::take(&mut *deferred.borrow_mut()));
        // A broadcast waits for its turn to be written (`broadcast_gate`); nothing is held meanwhile
        // but what it is about to write.
        let _permit = (peers.len() >= BROADCAST_PEERS && !crate::platform::switched_off("broadcast_gate"))
            .then(|| Gate::for_broadcasts().enter());
        for (peer, flusher) in &peers {
            take_turn(peer, flusher);
        }
        // Keep the list's room for the next message only if it is small: every idle reader keeps
        // what its thread holds, and a broadcast's list would cost each of them a kilobyte.
        if peers.capacity() <= KEPT_DEFERRED {
            let mut peers = peers;
            peers.clear();
            DEFERRED.with(|deferred| {
                let mut deferred = deferred.borrow_mut();
                if deferred.is_empty() {
                    *deferred = peers;
                }
            });
        }
    }
}

/// Runs the turn the caller has just taken: now, or when this thread lets its registry lock go
/// ([`DeferWrites`]); if the socket fills up, the flusher goes on with it.
fn take_turn(peer: &Arc<PeerShared>, flusher: &Arc<Flusher>) {
    if DeferWrites::keep_for_later(peer, flusher) {
        return;
    }
    match write_turn(peer) {
        Turn::Blocked { .. } => flusher.watch(peer.clone()),
        Turn::Closed => flusher.kill_later(Arc::downgrade(peer)),
        Turn::Done | Turn::Over => {}
    }
}
