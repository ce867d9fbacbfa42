//! Writing a peer's queue to its socket: one turn at a time, by whoever holds it (`outbox.rs`).
//!
//! A turn formats every queued item into one buffer and writes it without waiting; if more
//! arrived meanwhile it goes round again, and it ends when the queue is empty. What the socket
//! does not take at once stays in the queue as unsent bytes, ahead of everything else, and the
//! turn passes to the flusher (`flusher.rs`), which goes on when the socket can take more. After a
//! close frame nothing more is written: the write side is shut down, and the flusher cuts the
//! socket after a grace period unless the peer has gone by then.

use std::io;
use std::net::Shutdown;
use std::sync::Arc;

use tungstenite::protocol::Role;

use crate::peer::queue::{Items, Outbound, PeerShared, Queue};
use crate::platform::socket_flags::write_without_waiting;

/// How a turn ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Everything queued was written; the turn is given up.
    Done,
    /// The socket would not take everything; the turn is still held, with bytes unsent.
    /// `progress` says whether it took any.
    Blocked { progress: bool },
    /// A close frame went out and the write side is shut down; the turn is given up. The caller
    /// has the socket cut after a grace period (`flusher.rs`).
    Closed,
    /// The connection is over for writing (closed earlier, or broken); the turn is given up.
    Over,
}

/// Writes what is queued for `peer` until nothing is, the socket is full, or the connection is
/// over. Only the holder of the turn may call it.
pub(crate) fn write_turn(peer: &Arc<PeerShared>) -> Turn {
    let mut progress = false;
    let mut buffer;
    loop {
        let mut queue = peer.queue.lock();
        if queue.closed {
            return give_up(peer, &mut queue);
        }
        if queue.unsent.is_empty() && queue.items.is_empty() {
            queue.writing = false;
            return Turn::Done;
        }
        // Unsent bytes first, then the frames of the items queued behind them.
        // The unsent bytes' own buffer becomes this round's (the queue keeps no room it does not use).
        buffer = std::mem::take(&mut queue.unsent);
        // What the queued items cost is what the queue holds beyond its unsent bytes.
        let wanted = queue.queued - queue.unsent_cost;
        let mut cost = std::mem::take(&mut queue.unsent_cost);
        let mut closes = std::mem::take(&mut queue.unsent_closes);
        let items = queue.items.take();
        drop(queue);
        // Room for all the frames at once (an item's cost is at least its frame's size): a burst's
        // buffer is allocated once, not doubled its way up.
        buffer.reserve(wanted);
        let mut dropped = 0;
        for item in items {
            if closes {
                // Nothing follows a close frame.
                dropped += item.cost();
                continue;
            }
            cost += item.cost();
            closes = matches!(item, Outbound::Close(..));
            push_frames(item, peer.role, &mut buffer);
        }
        let (sent, result) = send_all(peer, &buffer);
        progress |= sent > 0;
        let mut queue = peer.queue.lock();
        peer.written(&mut queue, dropped);
        match result {
            Ok(()) => {
                peer.written(&mut queue, cost);
                if closes {
                    queue.closed = true;
                    give_up(peer, &mut queue);
                    drop(queue);
                    let _ = peer.socket.shutdown(Shutdown::Write);
                    return Turn::Closed;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                buffer.drain(..sent);
                queue.unsent = buffer;
                queue.unsent_cost = cost;
                queue.unsent_closes = closes;
                return Turn::Blocked { progress };
            }
            Err(_) => {
                // The connection is broken; its reader notices too and the peer leaves.
                peer.written(&mut queue, cost);
                queue.closed = true;
                give_up(peer, &mut queue);
                drop(queue);
                peer.kill();
                return Turn::Over;
            }
        }
    }
}

/// Drops what is still queued for a closed connection and gives the turn up.
fn give_up(peer: &PeerShared, queue: &mut Queue) -> Turn {
    let left = queue.queued;
    peer.written(queue, left);
    queue.items = Items::default();
    queue.unsent = Vec::new();
    queue.unsent_cost = 0;
    queue.writing = false;
    Turn::Over
}

/// Writes as much of `bytes` as the socket takes without waiting: how much it took, and whether
/// that was all (`Ok`), or why not (`WouldBlock` when its buffer is full).
fn send_all(peer: &PeerShared, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut sent = 0;
    let result = loop {
        if sent == bytes.len() {
            break Ok(());
        }
        match write_without_waiting(&peer.socket, &bytes[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => sent += count,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break Err(err),
        }
    };
    peer.metrics.bytes_out(sent);
    (sent, result)
}

/// Appends the WebSocket frame (or frames) of a queued item to `buffer`. Frames a client sends (on
/// links this hub opens) are masked, as RFC 6455 requires.
fn push_frames(item: Outbound, role: Role, buffer: &mut Vec<u8>) {
    let masked = role == Role::Client;
    match item {
        Outbound::Text(text) => push_frame(buffer, TEXT, &[text.as_bytes()], masked),
        Outbound::ToEach(message, recipient) => {
            let (before, after) = message.around_recipient();
            push_frame(buffer, TEXT, &[before.as_bytes(), recipient.as_str().as_bytes(), after.as_bytes()], masked);
        }
        Outbound::Batch(batch) => {
            for text in batch.texts() {
                push_frame(buffer, TEXT, &[text], masked);
            }
        }
        Outbound::Ping => push_frame(buffer, PING, &[], masked),
        Outbound::Pong(payload) => push_frame(buffer, PONG, &[&payload], masked),
        Outbound::Close(code, reason) => push_frame(buffer, CLOSE, &[&code.to_be_bytes(), reason.as_bytes()], masked),
    }
}

/// Opcodes (RFC 6455 §5.2).
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Appends one final frame with opcode `opcode` whose payload is `parts` joined (RFC 6455 §5.2):
/// the header, the length in 7, 16 or 64 bits, and, when `masked`, a random key XORed over the payload.
fn push_frame(buffer: &mut Vec<u8>, opcode: u8, parts: &[&[u8]], masked: bool) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mask_bit = if masked { 0x80 } else { 0 };
    buffer.reserve(len + 14);
    buffer.push(0x80 | opcode);
    match len {
        0..=125 => buffer.push(mask_bit | len as u8),
        126..=0xFFFF => {
            buffer.push(mask_bit | 126);
            buffer.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buffer.push(mask_bit | 127);
            buffer.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = buffer.len() + if masked { 4 } else { 0 };
    let key: [u8; 4] = if masked { rand::random() } else { [0; 4] };
    if masked {
        buffer.extend_from_slice(&key);
    }
    for part in parts {
        buffer.extend_from_slice(part);
    }
    if masked {
        for (n, byte) in buffer[start..].iter_mut().enumerate() {
            *byte ^= key[n % 4];
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::peer::flusher::Flusher;
    use crate::peer::outbox::{PeerHandle, new_peer};
    use crate::peer::queue::{PeerShared, QueueBudget};
    use crate::protocol::peer_id::PeerId;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;
    use tungstenite::protocol::{Role, WebSocket};

    /// A peer with a real loopback socket, and the client end of it (which the test reads, or not).
    fn peer(n: u8, budget: Arc<QueueBudget>) -> (Arc<PeerHandle>, Arc<PeerShared>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let id = PeerId::parse(&format!("{n:02x}").repeat(20)).unwrap();
        let (handle, shared) =
            new_peer(id, u64::from(n), server, Role::Server, budget, Default::default(), Flusher::start().unwrap());
        (handle, shared, client)
    }

    fn message(n: usize) -> String {
        format!("{n:08}{}", "x".repeat(16 * 1024 + n % 7))
    }

    fn has_unsent(shared: &PeerShared) -> bool {
        !shared.queue.lock().unsent.is_empty()
    }

    /// Messages written at once by their senders, messages left to the flusher when the socket was
    /// full (the first of them taken only in part) and messages queued behind those reach the peer
    /// whole and in the order they were sent.
    #[test]
    fn order_holds_across_direct_writes_a_full_socket_and_the_flusher() {
        let (handle, shared, client) = peer(1, QueueBudget::new(1 << 30, 1 << 31));
        // Nobody reads yet: messages are written at once until the socket's buffers are full.
        let mut sent = 0;
        while !has_unsent(&shared) {
            assert!(handle.send_text(message(sent)));
            sent += 1;
            assert!(sent < 100_000, "the socket never filled up");
        }
        for _ in 0..10 {
            assert!(handle.send_text(message(sent)));
            sent += 1;
        }
        assert!(shared.queue.lock().writing, "the flusher holds the turn");
        let mut socket = WebSocket::from_raw_socket(client, Role::Client, None);
        socket.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for n in 0..sent {
            let text = socket.read().unwrap().into_text().unwrap();
            assert_eq!(text.as_str(), message(n));
        }
        // Once the flusher is done, the turn is free again and a new message is written at once.
        assert!(handle.send_text(message(sent)));
        assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), message(sent));
        assert!(!shared.queue.lock().writing);
    }

    /// A peer that does not read never holds up the thread sending to it, nor the flusher's work for
    /// another peer; past its bound it is cut off and later messages are refused.
    #[test]
    fn a_peer_that_does_not_read_slows_no_one_and_is_cut_off_at_its_bound() {
        let budget = QueueBudget::new(1 << 20, 1 << 30);
        let (stuck, stuck_shared, _stuck_client) = peer(2, budget.clone());
        let (reading, reading_shared, reading_client) = peer(3, budget.clone());
        let (done_tx, done) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            // Both sockets fill up, so both turns are with the flusher.
            let mut to_stuck = 0;
            while !has_unsent(&stuck_shared) {
                assert!(stuck.send_text(message(to_stuck)));
                to_stuck += 1;
            }
            let mut to_reading = 0;
            while !has_unsent(&reading_shared) {
                assert!(reading.send_text(message(to_reading)));
                to_reading += 1;
            }
            // A few more behind the unsent bytes, well inside the bound.
            for _ in 0..10 {
                assert!(reading.send_text(message(to_reading)));
                to_reading += 1;
            }
            done_tx.send(to_reading).unwrap();
            // Then the stuck peer goes past its bound.
            while stuck.send_text(message(to_stuck)) {
                to_stuck += 1;
                assert!(to_stuck < 100_000, "the stuck peer was never cut off");
            }
            (stuck_shared, to_stuck)
        });
        // Every send returned at once (none waited for a reader): the sender gets this far.
        let sent_to_reader = done.recv_timeout(Duration::from_secs(30)).expect("a sender was held up");
        // The flusher serves the reading peer while the stuck one waits with it.
        let mut socket = WebSocket::from_raw_socket(reading_client, Role::Client, None);
        socket.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for n in 0..sent_to_reader {
            assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), message(n));
        }
        let (stuck_shared, _) = sender.join().unwrap();
        assert!(stuck_shared.queue.lock().queued <= 1 << 20);
        assert!(budget.total() <= 2 << 20);
        // Cut off: its socket was shut down both ways, so reading our end returns at once.
        stuck_shared.socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let read = std::io::Read::read(&mut &stuck_shared.socket, &mut [0u8; 16]);
        assert!(matches!(read, Ok(0)), "{read:?}");
    }

    /// After a close frame nothing more is written, the write side is shut down at once, and the
    /// connection is cut after the grace period when the peer does not close its end.
    #[test]
    fn nothing_follows_a_close_frame_and_the_socket_is_cut_after_the_grace() {
        let (handle, shared, client) = peer(4, QueueBudget::new(1 << 20, 1 << 30));
        assert!(handle.send_text("before".into()));
        handle.close(1000, "bye");
        assert!(!handle.send_text("after".into()));
        let mut socket = WebSocket::from_raw_socket(client, Role::Client, None);
        socket.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), "before");
        assert!(socket.read().unwrap().is_close());
        // The flusher shuts the socket both ways after the grace: reading from our end of it
        // then returns at once instead of waiting for the read timeout.
        shared.socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 16];
        let read = std::io::Read::read(&mut &shared.socket, &mut buffer);
        assert!(matches!(read, Ok(0)), "{read:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the socket was never cut");
        assert_eq!(shared.queue.lock().queued, 0);
    }
}
