//! A connection's writer: writes the frames queued for it (only signals may skip the queue,
//! written by their sender when nothing is waiting: see `outbox`). It drains the queue, writing
//! everything waiting before one flush; in a burst (its last batch held more than one message) it
//! yields before writing and keeps adding what arrived meanwhile, so that the burst lands in a few
//! large writes, while a lone message is written at once. After a close frame it waits briefly for
//! the other side to close too, then shuts the socket down.

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tungstenite::Bytes;
use tungstenite::protocol::Role;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};

use crate::peer::outbox::{Outbound, PeerShared};

/// Bytes the writer gathers before writing to the socket (it also writes whenever its queue is empty).
const WRITE_BUFFER: usize = 16 * 1024;
/// A write that makes no progress for this long means the peer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a close frame, how long to wait for the reader to finish before cutting the socket.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

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
        shared.metrics.bytes_out(wire.carry.len());
        wire.carry = Vec::new();
    }
    stream.write_all(buffer)?;
    shared.metrics.bytes_out(buffer.len());
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
    use super::run_writer;
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
        let (handle, outbox, shared) = new_peer(
            id,
            1,
            server,
            Role::Server,
            crate::peer::outbox::QueueBudget::new(1 << 30, 1 << 31),
            Default::default(),
        );
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
}
