//! One connected peer's two threads: a reader (`<id>-reader`: the connection's own `conn-<n>`
//! thread, which read the request head, renamed) and a writer (`<id>-writer`).
//!
//! The **reader** decodes frames and hands text to the router. It never writes to its own socket
//! (it may write a signal to its target's, see `outbox`): tungstenite would
//! answer pings and closes itself, so the reader's view of the socket swallows writes
//! ([`ReadOnly`]) and the reader queues the pong or close echo for the writer instead.
//!
//! The **writer** writes the frames queued for the peer (only signals may skip the queue, written
//! by their sender when nothing is waiting: see `outbox`). It drains the peer's queue,
//! writing everything that is waiting before one flush. In a burst (its last batch held more than
//! one message) it yields before writing and keeps adding what arrived meanwhile, so that the burst
//! lands in a few large writes; a lone message is written at once. After a close frame it waits
//! briefly for the peer to close too, then shuts the socket down.
//!
//! Whichever way a connection ends (close frame, error, kill, even a panic in the reader), the
//! reader's exit unregisters the peer, which tells its network it left.

pub(crate) mod outbox;
pub(crate) mod rate_limit;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, Message};

use crate::accept::upgrade::AdmittedPeer;
use crate::context::ServerState;
use crate::peer::outbox::{Outbound, PeerHandle, PeerShared};
use crate::peer::rate_limit::{Pace, RateLimiter, Verdict};
use crate::platform::thread_name::rename_current_thread;
use crate::protocol::{self, error_code};
use crate::registry::router;
use crate::util::threads::contain_panic;

/// Writer stack: it only frames and writes bytes.
const WRITER_STACK: usize = 128 * 1024;
/// The reader's initial message buffer (tungstenite also keeps a 4 KiB read chunk). Most messages
/// are under 2 KiB; bigger ones grow it as needed. Small, because every idle peer holds one.
const READ_BUFFER: usize = 2 * 1024;
/// Bytes the writer gathers before writing to the socket (it also writes whenever its queue is empty).
const WRITE_BUFFER: usize = 16 * 1024;
/// A write that makes no progress for this long means the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a close frame, how long to wait for the peer's own close before cutting the socket.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

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
        contain_panic(&writer_name, || run_writer(outbox, writer_shared.clone()));
        // However the writer ended, the connection ends with it; the reader then cleans up.
        writer_shared.kill();
    });
    if let Err(err) = spawned {
        crate::log_warn!("cannot start a writer thread for peer {short}: {err}");
        state.registry.unregister(handle.peer_id, handle.serial, "server overloaded");
        handle.kill();
        return;
    }
    let reader_name = format!("{short}-reader");
    rename_current_thread(&reader_name);
    contain_panic(&reader_name, || run_reader(handle, shared, leftover, state));
}

/// The reader's view of the socket: reads go to the socket, paced by the byte rate; writes are
/// dropped (see module docs).
struct ReadOnly<'a> {
    socket: &'a TcpStream,
    limiter: RateLimiter,
    /// Set when the byte rate was exceeded for too long: the read then fails, and the reader closes.
    over_limit: bool,
}

impl Read for ReadOnly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = (&mut &*self.socket).read(buf)?;
        match self.limiter.bytes(count, Instant::now()) {
            Pace::Go => {}
            // Over the byte rate: wait before reading more (see rate_limit.rs).
            Pace::Pause(wait) => thread::sleep(wait),
            Pace::Close => {
                self.over_limit = true;
                return Err(io::Error::other("over the byte rate for too long"));
            }
        }
        Ok(count)
    }
}

impl Write for ReadOnly<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        crate::log_debug!("peer {} disconnected ({})", peer.short(), self.reason);
    }
}

fn run_reader(handle: Arc<PeerHandle>, shared: Arc<PeerShared>, leftover: Vec<u8>, state: Arc<ServerState>) {
    let mut departure = Departure { state: &state, handle: &handle, reason: "disconnected" };
    departure.reason = read_frames(&handle, &shared, leftover, Role::Server, &state, |message| {
        match message {
            Incoming::Text(text) => router::handle_text(&state, &handle, text),
            Incoming::Binary => {
                state.note_rejected();
                let text = "Binary frames are not supported: send JSON text messages";
                handle.send_text(protocol::error(error_code::BINARY_FRAME, text));
            }
        }
        ControlFlow::Continue(())
    });
    // Tell the network now, not after the linger below.
    drop(departure);
    linger(&shared);
}

/// Reads frames until the connection ends, handing each message within the connection's rate
/// limits (`rate_limit.rs`: a peer's, or a hub link's once it is one) to `on_message`, which may
/// end the connection with `Break(reason)`. Answers pings and closes through the writer. Returns
/// why the connection ended. Used for peers (server role) and for the links this hub opens to
/// other hubs (client role).
pub(crate) fn read_frames(
    handle: &PeerHandle,
    shared: &PeerShared,
    leftover: Vec<u8>,
    role: Role,
    state: &ServerState,
    mut on_message: impl FnMut(Incoming<'_>) -> ControlFlow<&'static str>,
) -> &'static str {
    let config = &state.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let limits = |is_link: bool| if is_link { config.link_limits() } else { config.peer_limits() };
    let mut limited_as_link = handle.is_link();
    let reader = ReadOnly {
        socket: &shared.socket,
        limiter: RateLimiter::new(limits(limited_as_link), Instant::now()),
        over_limit: false,
    };
    let mut socket = WebSocket::from_partially_read(reader, leftover, role, Some(ws_config));
    loop {
        let message = socket.read();
        if message.is_ok() {
            handle.touch();
        }
        // A peer that just became a hub link gets the link's larger limits from here on.
        if handle.is_link() != limited_as_link {
            limited_as_link = handle.is_link();
            socket.get_mut().limiter = RateLimiter::new(limits(limited_as_link), Instant::now());
        }
        let message = match message {
            // A close is always handled: it ends the connection anyway.
            Ok(Message::Close(frame)) => Message::Close(frame),
            // Every other frame counts against the message rate, control frames too.
            Ok(message) => match socket.get_mut().limiter.message(Instant::now()) {
                Verdict::Allow => message,
                Verdict::Drop { first } => {
                    state.note_rejected();
                    if first {
                        let text = format!(
                            "Rate limit exceeded: at most {} messages a second (bursts of {}); messages are being dropped",
                            config.max_messages_per_sec, config.message_burst
                        );
                        handle.send_text(protocol::error(error_code::RATE_LIMITED, &text));
                    }
                    continue;
                }
                Verdict::Close => {
                    handle.close(1008, "Rate limit exceeded");
                    return "rate limit exceeded";
                }
            },
            Err(_) if socket.get_ref().over_limit => {
                handle.close(1008, "Rate limit exceeded");
                return "rate limit exceeded";
            }
            Err(err) => return ended_by(handle, err),
        };
        match message {
            Message::Text(text) => {
                if let ControlFlow::Break(reason) = on_message(Incoming::Text(text.as_str())) {
                    return reason;
                }
            }
            Message::Binary(_) => {
                if let ControlFlow::Break(reason) = on_message(Incoming::Binary) {
                    return reason;
                }
            }
            Message::Ping(payload) => handle.send_control(Outbound::Pong(payload)),
            Message::Pong(_) | Message::Frame(_) => {}
            Message::Close(frame) => {
                // Echo the peer's code, as RFC 6455 asks.
                let code = frame.map_or(1000, |f| u16::from(f.code));
                handle.send_control(Outbound::Close(echo_code(code), ""));
                return "closed";
            }
        }
    }
}

/// Ends a connection whose frames could not be read, with the close code the error calls for;
/// returns the reason.
fn ended_by(handle: &PeerHandle, err: WsError) -> &'static str {
    match err {
        WsError::Capacity(_) => {
            handle.close(1009, "Message too big");
            "message too big"
        }
        WsError::Utf8(_) => {
            handle.close(1007, "Invalid UTF-8 in text frame");
            "invalid UTF-8"
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            // The TCP connection ended without a close frame: the other side just went away.
            handle.kill();
            "disconnected"
        }
        WsError::Protocol(_) => {
            handle.close(1002, "WebSocket protocol error");
            "protocol error"
        }
        _ => {
            // The socket closed or failed; there is nobody to send a close frame to.
            handle.kill();
            "disconnected"
        }
    }
}

/// A message from the other side, as the frame reader hands it on.
pub(crate) enum Incoming<'a> {
    Text(&'a str),
    /// A binary message: the protocol has none, so its content is not kept.
    Binary,
}

/// Lets the other side read our close frame: consumes what it still sends until it closes its
/// side, or [`CLOSE_GRACE`] passes.
pub(crate) fn linger(shared: &PeerShared) {
    crate::accept::http::drain(&shared.socket, CLOSE_GRACE);
}

/// The close code to answer a peer's close with. Codes that must never be sent (1005, 1006, 1015)
/// become a plain 1000.
fn echo_code(code: u16) -> u16 {
    match code {
        1005 | 1006 | 1015 => 1000,
        code => code,
    }
}

pub(crate) fn run_writer(outbox: Receiver<Outbound>, shared: Arc<PeerShared>) {
    let _ = shared.socket.set_write_timeout(Some(WRITE_TIMEOUT));
    // Frames are formatted into one buffer and written in chunks of about WRITE_BUFFER bytes, so a
    // burst costs few system calls. The buffer is given back when the queue runs dry, so an idle
    // peer holds none.
    let mut buffer: Vec<u8> = Vec::new();
    // What the items formatted into `buffer` cost against the queue bound; they keep counting
    // until written, so that no signal is written directly ahead of them (see outbox).
    let mut unwritten = 0;
    // Whether the last batch held more than one message: the sign of a burst (see below).
    let mut in_burst = false;
    'connection: while let Ok(first) = outbox.recv() {
        let mut next = Some(first);
        let mut closing = false;
        let mut batched = 0;
        while let Some(item) = next {
            batched += 1;
            unwritten += item.cost();
            closing = matches!(item, Outbound::Close(..));
            if let Some(frame) = frame_of(item, shared.role)
                && frame.format(&mut buffer).is_err()
            {
                break 'connection;
            }
            if buffer.len() >= WRITE_BUFFER {
                if write_out(&shared, &buffer, false).is_err() {
                    break 'connection;
                }
                shared.written(std::mem::take(&mut unwritten));
                buffer.clear();
            }
            if closing {
                break;
            }
            next = outbox.try_recv().ok();
            if next.is_none() && (in_burst || batched > 1) {
                // In a burst (a thousand peers announcing), yield before writing: the threads
                // producing for this peer get a chance to add to the batch, and as long as they do
                // the batch grows (up to WRITE_BUFFER), so one write and one wake-up per message
                // become one per batch. Messages that come one at a time (steady signalling) are
                // written at once: a yield would only hand the CPU to whatever else is runnable
                // while the message waits.
                thread::yield_now();
                next = outbox.try_recv().ok();
            }
        }
        in_burst = batched > 1;
        if write_out(&shared, &buffer, closing).is_err() || closing {
            break;
        }
        shared.written(std::mem::take(&mut unwritten));
        buffer = Vec::new();
    }
    shared.wire.lock().closed = true;
    let _ = shared.socket.shutdown(Shutdown::Write);
    // Wait for the reader to finish (every sender dropped) or the grace period to end.
    let deadline = Instant::now() + CLOSE_GRACE;
    while let Ok(item) = outbox.recv_deadline(deadline) {
        shared.written(item.cost());
    }
    shared.kill();
}

/// Writes what a sender left in the wire's carry, then `buffer`, holding the wire throughout.
/// After a close frame (`closing`), marks the wire closed so that nothing follows it.
fn write_out(shared: &PeerShared, buffer: &[u8], closing: bool) -> io::Result<()> {
    let mut stream = &shared.socket;
    let mut wire = shared.wire.lock();
    if !wire.carry.is_empty() {
        stream.write_all(&wire.carry)?;
        wire.carry = Vec::new();
    }
    stream.write_all(buffer)?;
    wire.closed |= closing;
    Ok(())
}

/// The WebSocket frame for a queued item (none for [`Outbound::Carried`], whose bytes are in the
/// wire's carry). Frames a client sends (on links this hub opens) are masked, as RFC 6455 requires.
fn frame_of(item: Outbound, role: Role) -> Option<Frame> {
    let mut frame = match item {
        Outbound::Text(text) => Frame::message(Bytes::from(text), OpCode::Data(Data::Text), true),
        Outbound::Ping => Frame::ping(Bytes::new()),
        Outbound::Pong(payload) => Frame::pong(payload),
        Outbound::Close(code, reason) => Frame::close(Some(CloseFrame { code: code.into(), reason: reason.into() })),
        Outbound::Carried(_) => return None,
    };
    if role == Role::Client {
        frame.header_mut().mask = Some(rand::random());
    }
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::{echo_code, run_writer};
    use crate::peer::outbox::new_peer;
    use crate::protocol::peer_id::PeerId;
    use std::net::{TcpListener, TcpStream};
    use tungstenite::protocol::{Role, WebSocket};

    /// Signals written directly by their senders and signals queued for the writer reach the peer
    /// whole and in the order they were sent, also when the socket took only part of a frame.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_frame_the_socket_took_in_part_is_finished_before_anything_queued() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let id = PeerId::parse(&"ab".repeat(20)).unwrap();
        let (handle, outbox, shared) =
            new_peer(id, 1, server, Role::Server, crate::peer::outbox::QueueBudget::new(1 << 30, 1 << 31));
        let signal = |n: usize| format!("{n:08}{}", "x".repeat(16 * 1024 + n % 7));
        // Nobody reads yet: signals are written directly until the socket's buffers are full and
        // one frame is taken only in part (its rest is queued as carried), then they queue.
        let mut sent = 0;
        while outbox.is_empty() {
            assert!(handle.send_signal(signal(sent)));
            sent += 1;
            assert!(sent < 100_000, "the socket never filled up");
        }
        for _ in 0..10 {
            assert!(handle.send_signal(signal(sent)));
            sent += 1;
        }
        assert_eq!(outbox.len(), 11, "signals were written directly ahead of the carried rest");
        let writer = std::thread::spawn(move || run_writer(outbox, shared));
        let mut socket = WebSocket::from_raw_socket(client, Role::Client, None);
        for n in 0..sent {
            let message = socket.read().unwrap();
            assert_eq!(message.into_text().unwrap().as_str(), signal(n));
        }
        drop(handle);
        writer.join().unwrap();
    }

    #[test]
    fn reserved_close_codes_are_never_echoed() {
        assert_eq!(echo_code(1001), 1001);
        assert_eq!(echo_code(4000), 4000);
        for reserved in [1005, 1006, 1015] {
            assert_eq!(echo_code(reserved), 1000);
        }
    }
}
