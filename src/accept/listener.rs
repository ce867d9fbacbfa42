//! The accept loop, and the first moments of every connection: read its request head and decide
//! whether it is an HTTP request or a WebSocket upgrade.
//!
//! The accept thread only accepts: each socket is handed to its own `conn-<n>` thread (which
//! answers an HTTP request, or becomes the reader of a WebSocket peer), so a client that connects
//! and then says nothing (or dribbles its head byte by byte) holds up nobody but itself, and only
//! until `HANDSHAKE_TIMEOUT_SECS`. The one exception: a plain HTTP request whose head is already
//! complete goes to the HTTP desk (`http_desk`), which answers it without starting a thread; a
//! connection whose client has sent nothing yet waits a few milliseconds to be told apart
//! (`awaiting_request`). The accept thread does not start threads itself either, it hands the socket
//! to the `starter` thread: while thousands of peers connect, a thread start can take long enough
//! to hold up every connection queued behind it (docs/performance.md). Every 64 connections, though,
//! and once a burst of connections is over, it starts one for itself: the accept loop goes on on a
//! fresh thread (`platform/fresh_thread.rs`).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::accept::awaiting_request::AwaitingRequest;
use crate::accept::handshakes::{Refusal, Ticket};
use crate::accept::http_desk::Arrival;
use crate::accept::request_head::{HeadError, RequestHead, read_head};
use crate::accept::upgrade::AdmittedPeer;
use crate::accept::{handoff, http, http_desk, upgrade};
use crate::context::ServerState;
use crate::error::Error;
use crate::metrics;
use crate::peer;
use crate::platform::poll::{self, Readiness};
use crate::platform::{fresh_thread, service_heap};
use crate::util::threads::spawn_named;
use crate::util::throttled_log::ThrottledLog;

/// Stack of a connection's thread. It parses the request head, and for a WebSocket it goes on to be
/// the peer's reader, whose JSON decoding recurses (serde_json stops at 128 levels). Only the pages
/// a thread touches cost memory; the rest is address space.
const CONNECTION_STACK: usize = 256 * 1024;

/// Starts the desk, the starter and the acceptor, which accepts connections until the server shuts
/// down, handing each to the desk or the starter (see the module docs); one whose client has sent
/// nothing yet waits a moment first (`awaiting_request`). Every [`RELIEVE_EVERY`] connections, and
/// [`QUIET`] after the last of a burst, the work goes on on a fresh thread ([`Acceptor::relieve`]).
/// The desk and the starter end when the last acceptor does, and then `running` is dropped.
pub(crate) fn start(listener: TcpListener, state: &Arc<ServerState>, running: Sender<()>) -> Result<(), Error> {
    let handoffs = Handoffs::start(state)?;
    let state = state.clone();
    spawn_named("acceptor", move || {
        Acceptor::prepare_thread();
        run_accept_loop(listener, state, handoffs, running);
    })?;
    Ok(())
}

fn run_accept_loop(listener: TcpListener, state: Arc<ServerState>, handoffs: Handoffs, running: Sender<()>) {
    // Accepting without waiting lets one `poll` wait on the listener and the silent connections
    // alike. Accepted sockets do not inherit it: a connection's own thread reads as usual.
    let nonblocking = listener.set_nonblocking(true);
    if let Err(err) = &nonblocking {
        log::warn!("cannot make the listening socket non-blocking ({err}): silent connections get a thread at once");
    }
    let hold_silent = nonblocking.is_ok() && !crate::platform::switched_off("awaiting_request");
    Acceptor {
        listener,
        state,
        handoffs,
        awaiting: AwaitingRequest::default(),
        hold_silent,
        relieve_after_burst: !crate::platform::switched_off("fresh_after_burst"),
        accepted_here: 0,
        _running: running,
    }
    .run();
}

/// Connections accepted by one acceptor thread, after which the work goes on on a fresh thread
/// (`platform/fresh_thread.rs` says why). In a storm of 10,000 that is 157 thread starts, against
/// the 10,000 the starter makes; a handful a day on a quiet server.
const RELIEVE_EVERY: u64 = 64;

/// How long without a new connection, once the current thread has accepted any, before the burst
/// counts as over and the work moves to a fresh thread: the thread that then waits for the next
/// connection owes the scheduler nothing, however much the one before it ran. Without this, the
/// thread that accepted the end of a connection storm kept its debt while thousands of readers
/// handled their peers' announces, and a health check arriving then waited for it.
const QUIET: Duration = Duration::from_millis(1);

/// What the acceptor thread owns, handed on whole to a fresh thread every [`RELIEVE_EVERY`]
/// connections and after a burst ([`QUIET`]).
struct Acceptor {
    listener: TcpListener,
    state: Arc<ServerState>,
    handoffs: Handoffs,
    awaiting: AwaitingRequest,
    hold_silent: bool,
    /// Whether the work moves to a fresh thread once a burst of connections is over ([`QUIET`]).
    relieve_after_burst: bool,
    /// Connections accepted by the current thread.
    accepted_here: u64,
    /// Dropped when the last acceptor ends (after everything above): `ServerHandle` waits for it.
    _running: Sender<()>,
}

impl Acceptor {
    fn run(mut self) {
        let mut burst_over = false;
        while !self.state.is_shutting_down() {
            if burst_over || self.accepted_here >= RELIEVE_EVERY {
                match self.relieve() {
                    Ok(()) => return,
                    Err(same) => self = same,
                }
            }
            let mut limit = self.awaiting.until_next_deadline(Instant::now());
            // After a burst, a moment without connections hands the work on too (see `QUIET`).
            let after_burst = self.relieve_after_burst && self.accepted_here > 0;
            if after_burst {
                limit = Some(limit.map_or(QUIET, |limit| limit.min(QUIET)));
            }
            let sockets: Vec<_> = std::iter::once(self.listener.as_fd()).chain(self.awaiting.sockets()).collect();
            let readiness = match poll::wait_readable(&sockets, limit) {
                Ok(readiness) => readiness,
                Err(err) => {
                    log::error!("the acceptor cannot wait on its sockets: {err}");
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            drop(sockets);
            burst_over = after_burst && readiness.iter().all(|r| *r == Readiness::Waiting);
            if burst_over {
                continue;
            }
            // The ones that spoke (or whose wait is over) first: they were accepted earlier.
            for stream in self.awaiting.take_ready(&readiness[1..], Instant::now()) {
                self.handoffs.route(stream, &self.state);
            }
            if readiness[0] == Readiness::Ready {
                let awaiting = self.hold_silent.then_some(&mut self.awaiting);
                self.accepted_here += accept_waiting(&self.listener, &self.state, &self.handoffs, awaiting);
            }
        }
    }

    /// Hands everything to a fresh acceptor thread, which starts owing the scheduler nothing; gives
    /// it back if no thread can be had (the count starts again either way).
    fn relieve(mut self) -> Result<(), Acceptor> {
        self.accepted_here = 0;
        fresh_thread::continue_on_fresh_thread("acceptor", self, Acceptor::prepare_thread, Acceptor::run)
    }

    /// What an acceptor thread asks for before it accepts: what the desk asks for.
    fn prepare_thread() {
        prepare_door_thread(Heap::Own);
    }
}

/// Connections accepted in one go before the acceptor looks at its silent ones again.
const ACCEPT_BATCH: usize = 64;

/// Accepts the connections waiting on `listener` (up to [`ACCEPT_BATCH`]) and routes each, or
/// holds it in `awaiting` if its client has sent nothing yet and there is room. Returns how many.
fn accept_waiting(
    listener: &TcpListener,
    state: &Arc<ServerState>,
    handoffs: &Handoffs,
    mut awaiting: Option<&mut AwaitingRequest>,
) -> u64 {
    let mut accepted = 0;
    for _ in 0..ACCEPT_BATCH {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return accepted,
            Err(err) => {
                log::warn!("accept failed: {err}");
                // Out of file descriptors: retrying at once would spin. Give closing sockets a moment.
                if err.raw_os_error() == Some(24) || err.raw_os_error() == Some(23) {
                    thread::sleep(Duration::from_millis(50));
                }
                return accepted;
            }
        };
        accepted += 1;
        match (http_desk::look(&stream), awaiting.as_deref_mut()) {
            (Arrival::Nothing, Some(awaiting)) => {
                if let Err(stream) = awaiting.hold(stream, Instant::now()) {
                    handoffs.start_thread(stream, state);
                }
            }
            (arrival, _) => handoffs.route_arrived(stream, arrival, state),
        }
    }
    accepted
}

/// Connections that may wait for the starter thread. Past this the accept thread starts their
/// threads itself, and so accepts more slowly: the listen backlog then holds the rest.
const WAITING_TO_START: usize = 1024;

/// The two threads the accept thread hands connections to.
struct Handoffs {
    /// Answers plain HTTP requests that are complete on arrival (`http_desk`).
    desk: handoff::Handoff<(TcpStream, RequestHead)>,
    /// Starts every other connection's own thread.
    starter: handoff::Handoff<TcpStream>,
}

impl Handoffs {
    /// Starts the desk and the starter threads.
    fn start(state: &Arc<ServerState>) -> Result<Handoffs, Error> {
        let desk_state = state.clone();
        let desk = start_handoff_thread("http-desk", http_desk::WAITING, Heap::Own, move |(stream, head)| {
            http_desk::answer(stream, head, &desk_state)
        })?;
        let starter_state = state.clone();
        let starter = start_handoff_thread("starter", WAITING_TO_START, Heap::Shared, move |stream| {
            hand_off(stream, &starter_state)
        })?;
        Ok(Handoffs { desk, starter })
    }

    /// Hands a connection to the desk or the starter, by what has arrived on it.
    fn route(&self, stream: TcpStream, state: &Arc<ServerState>) {
        let arrival = http_desk::look(&stream);
        self.route_arrived(stream, arrival, state);
    }

    /// Hands a connection on which `arrival` was seen to the desk (a plain request) or the starter.
    fn route_arrived(&self, stream: TcpStream, arrival: Arrival, state: &Arc<ServerState>) {
        let stream = match arrival {
            Arrival::PlainRequest(head) => match self.desk.try_pass((stream, head)) {
                Ok(()) => return,
                Err((stream, _)) => stream,
            },
            Arrival::Nothing | Arrival::Other => stream,
        };
        self.start_thread(stream, state);
    }

    /// Has the starter start the connection's thread; if its queue is full, the calling thread
    /// starts it itself.
    fn start_thread(&self, stream: TcpStream, state: &Arc<ServerState>) {
        if let Err(stream) = self.starter.try_pass(stream) {
            // What a thread start allocates is freed by the new thread, one of the crowd.
            service_heap::with_shared_heap(|| hand_off(stream, state));
        }
    }
}

/// Which heap a door thread allocates from (`service_heap`): the acceptor and the desk answer
/// `/health` during connection storms and take their own; the starter's allocations are freed by
/// the threads it starts, so it shares glibc's with them.
enum Heap {
    Own,
    Shared,
}

/// What the acceptor, the desk and the starter ask for when they start: the short time slice (see
/// `time_slice`; the threads the starter starts, peers' readers included, inherit it), and `heap`.
fn prepare_door_thread(heap: Heap) {
    crate::platform::time_slice::prefer_prompt_wakeups();
    if let Heap::Own = heap {
        service_heap::use_on_this_thread();
    }
}

/// Starts a thread that serves what it is handed, one item at a time, from a bounded queue that
/// it waits on without yielding the CPU (`handoff`); returns the queue's sending side. The thread
/// is prepared as a door thread ([`prepare_door_thread`]) and ends when the returned `Handoff` is
/// dropped.
fn start_handoff_thread<T: Send + 'static>(
    name: &str,
    capacity: usize,
    heap: Heap,
    mut serve: impl FnMut(T) + Send + 'static,
) -> Result<handoff::Handoff<T>, Error> {
    let (waiting, arrivals) = handoff::bounded::<T>(capacity);
    spawn_named(name, move || {
        prepare_door_thread(heap);
        for item in arrivals {
            serve(item);
        }
    })?;
    Ok(waiting)
}

/// Starts the connection's own thread, unless its place among the handshakes in flight is refused
/// (`handshakes.rs` says how) or no thread can be had. Refusals are logged at most every 10 s.
fn hand_off(stream: TcpStream, state: &Arc<ServerState>) {
    static SOURCE_FULL: ThrottledLog = ThrottledLog::new();
    static ALL_FULL: ThrottledLog = ThrottledLog::new();
    static NO_THREADS: ThrottledLog = ThrottledLog::new();
    let Ok(source) = stream.peer_addr().map(|addr| addr.ip()) else { return };
    let ticket = match state.pending_handshakes.admit(source, &stream) {
        Ok(ticket) => ticket,
        Err(Refusal::SourceFull) => {
            state.metrics.refused(metrics::Refusal::SourceBusy);
            let limit = state.config.max_pending_handshakes_per_ip;
            SOURCE_FULL.warn(|| {
                format!(
                    "refused a connection from {source}: it holds {limit} unfinished request heads \
                     (MAX_PENDING_HANDSHAKES_PER_IP; behind a reverse proxy, raise it to MAX_PENDING_HANDSHAKES)"
                )
            });
            return;
        }
        Err(Refusal::Full) => {
            state.metrics.refused(metrics::Refusal::HandshakesFull);
            let limit = state.config.max_pending_handshakes;
            ALL_FULL.warn(|| {
                format!("refused a connection from {source}: {limit} request heads unfinished (MAX_PENDING_HANDSHAKES)")
            });
            return;
        }
    };
    // The bound the system puts on threads (see thread_budget.rs): past it, new sockets are closed.
    let Some(slot) = state.thread_budget.try_take() else {
        state.metrics.refused(metrics::Refusal::NoThread);
        NO_THREADS.warn(|| "no room for another thread (vm.max_map_count); refusing connections".into());
        return;
    };
    let serial = state.next_serial();
    let thread_state = state.clone();
    let spawned = thread::Builder::new().name(format!("conn-{serial}")).stack_size(CONNECTION_STACK).spawn(move || {
        let _slot = slot;
        // The handshake's stack frames are gone before a peer is served: this thread may live for
        // hours as the peer's reader, and every stack page it ever touched stays resident.
        // A peer's reader keeps the short slice it inherited from the starter (`time_slice`).
        if let Some(peer) = handle_connection(stream, ticket, &thread_state) {
            peer::serve(peer, thread_state);
        }
    });
    if let Err(err) = spawned {
        log::warn!("cannot start a connection thread: {err}");
    }
}

/// Reads the request head and answers it: an HTTP reply, or the WebSocket handshake, which returns
/// the admitted peer.
/// `pending` is the connection's place among the handshakes in flight, freed once the head is read.
/// Never inlined into the thread's body: its frames, the handshake's, are then gone from the stack
/// before the peer is served, instead of lying under the reader's for as long as it lives.
#[inline(never)]
fn handle_connection(mut stream: TcpStream, pending: Ticket, state: &Arc<ServerState>) -> Option<AdmittedPeer> {
    // Signals are small and latency-bound: never let Nagle hold one back.
    let _ = stream.set_nodelay(true);
    let (head, leftover) = match read_head(&mut stream, state.config.handshake_timeout) {
        Ok(read) => read,
        Err(err) => {
            reject_head(stream, err, state);
            return None;
        }
    };
    let parsed = RequestHead::parse(&head);
    // The raw bytes are done with: let them go before anything that lives as long as the peer is
    // allocated, so that they do not leave a hole between long-lived allocations.
    drop(head);
    let head = match parsed {
        Ok(head) => head,
        Err(err) => {
            reject_head(stream, err, state);
            return None;
        }
    };
    drop(pending);
    if head.wants_websocket() {
        upgrade::accept(stream, &head, leftover, state)
    } else {
        http::respond(stream, &head, state, http::Parting::Linger);
        None
    }
}

fn reject_head(stream: TcpStream, err: HeadError, state: &ServerState) {
    match err {
        HeadError::TimedOut => {
            state.metrics.refused(metrics::Refusal::HeadTimeout);
            http::reply_error(stream, 408, "Request head not received in time", state);
        }
        HeadError::TooLarge => {
            state.metrics.refused(metrics::Refusal::HeadTooLarge);
            http::reply_error(stream, 431, "Request head too large", state);
        }
        HeadError::Malformed(why) => {
            state.metrics.refused(metrics::Refusal::BadRequest);
            http::reply_error(stream, 400, why, state);
        }
        HeadError::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {}
        HeadError::Io(err) => log::debug!("reading a request head failed: {err}"),
    }
}
