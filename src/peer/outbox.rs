//! A peer's outbound queue and the handle other threads use to send to it or close it.
//!
//! A peer's writer thread writes its frames to its socket; everyone else (the peer's own reader,
//! other peers' readers, the sweeper, shutdown) pushes [`Outbound`] items into the peer's queue
//! through its [`PeerHandle`] (the one exception, signals, is below). Pushing never blocks, so a
//! slow peer cannot stall the peers that send to it.
//!
//! **The bounds:** the queue is a crossbeam channel that allocates as it grows, so its limits are
//! kept here, in queued bytes, per peer (`MAX_QUEUED_BYTES`) and for all peers together
//! (`MAX_TOTAL_QUEUED_BYTES`, the [`QueueBudget`]). A message that would take a peer past its bound
//! is not queued; the peer is declared too slow and its socket is shut down at once (no close frame
//! can reach a peer that has stopped reading). Its reader then ends and the peer leaves as usual.
//! While all peers together hold more than half the total, a peer's own bound shrinks to
//! [`UNDER_PRESSURE`], so the peers that do not read are the ones cut off; a message that would take
//! the total past its bound cuts off the peer it is for.
//!
//! **Signals skip the queue when they can.** A signal for a peer whose queue is empty and whose
//! writer is not writing is written straight to its socket by the sending peer's reader
//! ([`PeerHandle::send_signal`]), without waiting: one thread wake-up fewer per signal. Whoever
//! writes holds the peer's [`Wire`]; the writer takes it to write, a sender only tries it. Order is
//! kept because a queued item counts in `queued_bytes` until the writer has written it, and a
//! sender writes directly only while that count is zero. If the socket takes only part of the
//! frame, the rest waits in the wire's `carry`, which the writer sends before anything else.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Bytes, Utf8Bytes};

use crate::metrics::{CutOff, Dropped, Metrics};
use crate::protocol::peer_id::PeerId;
use crate::util::clock::unix_millis;
use crate::util::throttled_log::ThrottledLog;

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
    /// The rest of a frame a sender began writing directly (this many bytes, in the [`Wire`]'s
    /// carry): wakes the writer to send it.
    Carried(usize),
}

/// How much one peer may leave unread while all peers together hold more than half the total.
pub const UNDER_PRESSURE: usize = 1 << 20;

/// The bytes queued for all peers together, and their bound (see the module docs).
pub struct QueueBudget {
    per_peer: usize,
    total_limit: usize,
    total: AtomicUsize,
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
/// The longest header of an unmasked WebSocket frame: opcode byte, length byte, 8-byte length.
const MAX_HEADER_LEN: usize = 10;

impl Outbound {
    /// What the item counts against the queue bound: its payload plus bookkeeping.
    pub(crate) fn cost(&self) -> usize {
        QUEUE_ENTRY_OVERHEAD
            + match self {
                Outbound::Text(text) => text.len(),
                Outbound::Pong(payload) => payload.len(),
                Outbound::Carried(len) => *len,
                Outbound::Ping | Outbound::Close(..) => 0,
            }
    }
}

/// The right to write to a peer's socket, and what goes with it. The writer locks it to write; a
/// sender writing a signal directly only tries to (it never waits for a busy writer).
#[derive(Default)]
pub(crate) struct Wire {
    /// Bytes of a frame a sender began writing directly that the socket did not take at once. The
    /// writer sends them before anything else. At most one frame: a direct write is only tried
    /// while this is empty.
    pub(crate) carry: Vec<u8>,
    /// Set once the writer has sent a close frame or stopped: nothing may be written after it.
    pub(crate) closed: bool,
}

/// State of one connection shared by its reader, its writer and its handle.
pub struct PeerShared {
    /// The socket. Reader and writer use it through `&TcpStream`; `shutdown` from any thread
    /// unblocks both.
    pub socket: TcpStream,
    /// Whether this end is the server (frames unmasked) or a client (a link this hub opened).
    pub(crate) role: Role,
    /// Held while writing to `socket` (see the module docs).
    pub(crate) wire: Mutex<Wire>,
    /// Bytes queued and not yet written, counted per item as [`Outbound::cost`] says.
    queued_bytes: AtomicUsize,
    /// The bounds, and the count of all peers' queued bytes this peer's add to.
    budget: Arc<QueueBudget>,
    /// The server's counters (bytes written, peers cut off).
    pub(crate) metrics: Arc<Metrics>,
    last_activity_ms: AtomicU64,
    closing: AtomicBool,
}

impl PeerShared {
    /// Records that the writer has written queued items costing `cost` in all (or dropped them,
    /// once the connection is over). Until then they count, so that no signal is written directly
    /// ahead of them.
    pub fn written(&self, cost: usize) {
        self.queued_bytes.fetch_sub(cost, Ordering::Release);
        self.budget.total.fetch_sub(cost, Ordering::Relaxed);
    }

    /// Shuts the socket down both ways, which ends the reader and the writer.
    pub fn kill(&self) {
        self.closing.store(true, Ordering::Relaxed);
        // Fails only if the socket is already closed, which is what we want anyway.
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

impl Drop for PeerShared {
    /// Whatever was still counted as queued when the connection is gone (items the writer never
    /// reached) no longer counts against the total.
    fn drop(&mut self) {
        self.budget.total.fetch_sub(*self.queued_bytes.get_mut(), Ordering::Relaxed);
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
    tx: Sender<Outbound>,
    shared: Arc<PeerShared>,
    /// Set once the connection is a link to another hub: its messages are then trusted as relays.
    link: AtomicBool,
    /// Set at the handshake when the connection may become a hub link: it presented `HUB_TOKEN`
    /// (or, with none set, came from this machine), or it is a link this hub opened itself.
    may_link: AtomicBool,
}

/// Creates the handle of a new connection, plus what its writer needs: the receiving end of the
/// queue and the shared state. `role` is this end's: `Server` for peers, `Client` for the links
/// this hub opens.
pub(crate) fn new_peer(
    peer_id: PeerId,
    serial: u64,
    socket: TcpStream,
    role: Role,
    budget: Arc<QueueBudget>,
    metrics: Arc<Metrics>,
) -> (Arc<PeerHandle>, Receiver<Outbound>, Arc<PeerShared>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let now = unix_millis();
    let remote_addr = socket.peer_addr().ok();
    let shared = Arc::new(PeerShared {
        socket,
        role,
        wire: Mutex::new(Wire::default()),
        queued_bytes: AtomicUsize::new(0),
        budget,
        metrics,
        last_activity_ms: AtomicU64::new(now),
        closing: AtomicBool::new(false),
    });
    let handle = Arc::new(PeerHandle {
        peer_id,
        serial,
        remote_addr,
        tx,
        shared: shared.clone(),
        link: AtomicBool::new(false),
        may_link: AtomicBool::new(false),
    });
    (handle, rx, shared)
}

impl PeerHandle {
    /// Queues a text message. Returns `false` if it was not queued: the peer is going away, or it
    /// has stopped reading and has just been cut off (see the module docs).
    pub fn send_text(&self, text: String) -> bool {
        self.enqueue(Outbound::Text(Utf8Bytes::from(text)))
    }

    /// Sends a signal: written straight to the socket from the calling thread if nothing is
    /// queued ahead of it and the writer is not writing, queued otherwise (see the module docs).
    /// Never waits. Returns `false` if the signal could not be sent (as [`Self::send_text`]).
    pub fn send_signal(&self, text: String) -> bool {
        if !crate::platform::socket_flags::direct_writes() || self.shared.role != Role::Server {
            return self.send_text(text);
        }
        let Some(mut wire) = self.shared.wire.try_lock() else {
            return self.send_text(text);
        };
        if wire.closed || !wire.carry.is_empty() || self.shared.queued_bytes.load(Ordering::Acquire) != 0 {
            drop(wire);
            return self.send_text(text);
        }
        let mut frame = Vec::with_capacity(text.len() + MAX_HEADER_LEN);
        // Formatting into a Vec cannot fail (it is the only I/O `format` does).
        let _ = Frame::message(Bytes::from(text), OpCode::Data(Data::Text), true).format(&mut frame);
        let sent = match crate::platform::socket_flags::write_without_waiting(&self.shared.socket, &frame) {
            Ok(sent) if sent == frame.len() => {
                self.shared.metrics.bytes_out(sent);
                return true;
            }
            Ok(sent) => {
                self.shared.metrics.bytes_out(sent);
                sent
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                // The connection is broken; its reader will notice and clean up.
                drop(wire);
                self.kill();
                return false;
            }
        };
        // The socket's buffer is full: the rest of the frame goes out before anything queued.
        frame.drain(..sent);
        let rest = frame.len();
        wire.carry = frame;
        drop(wire);
        self.enqueue(Outbound::Carried(rest))
    }

    /// Queues a control item (ping, pong or close). Counted against the bound like text, so that
    /// a flood of pings from a peer that never reads cannot grow its queue either.
    pub fn send_control(&self, item: Outbound) {
        self.enqueue(item);
    }

    fn enqueue(&self, item: Outbound) -> bool {
        let cost = item.cost();
        let budget = &self.shared.budget;
        let queued = self.shared.queued_bytes.fetch_add(cost, Ordering::Relaxed) + cost;
        let total = budget.total.fetch_add(cost, Ordering::Relaxed) + cost;
        let own_limit =
            if total > budget.total_limit / 2 { budget.per_peer.min(UNDER_PRESSURE) } else { budget.per_peer };
        if queued > own_limit || total > budget.total_limit {
            self.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            budget.total.fetch_sub(cost, Ordering::Relaxed);
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
            return false;
        }
        if self.tx.send(item).is_err() {
            // The writer has stopped; undo the accounting so the numbers stay true.
            self.shared.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            budget.total.fetch_sub(cost, Ordering::Relaxed);
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
