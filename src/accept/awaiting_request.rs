//! Connections the acceptor took before their client had sent anything: they wait here, a few
//! milliseconds at most, until their first bytes show what they are.
//!
//! A monitor's `GET /health` usually arrives a moment after its connection is accepted. Sent on at
//! once, such a connection gets a thread of its own like any peer; during a storm of connecting
//! peers that thread can be hundreds of milliseconds in coming (behind a thousand thread starts,
//! and a new thread's first turn on a CPU is slow then; docs/performance.md), and with its
//! address's handshake places all held it would be refused. Held here until its request is in, it
//! goes to the HTTP desk instead, which answers at once. The acceptor waits on these sockets and
//! the listening socket together (`poll(2)`), so holding them costs no thread and delays no other
//! connection.
//!
//! **The bounds:** at most [`ROOM`] connections wait, each for at most [`LONGEST_WAIT`]. A
//! connection arriving while all places are taken, and one still silent when its wait is over, go
//! the usual way: a thread of their own, which waits for the request head with the handshake's
//! own limits (`handshakes.rs`). A client that stays silent on purpose holds a place for
//! `LONGEST_WAIT` and nothing more.

use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::platform::poll::Readiness;

/// Connections that may wait for their first bytes at once.
const ROOM: usize = 64;
/// How long a connection waits for its first bytes before it is given a thread regardless.
const LONGEST_WAIT: Duration = Duration::from_millis(50);

/// The connections waiting for their first bytes, oldest first.
#[derive(Default)]
pub(crate) struct AwaitingRequest {
    waiting: Vec<(TcpStream, Instant)>,
}

impl AwaitingRequest {
    /// Adds a connection accepted at `now`; gives it back if every place is taken.
    pub(crate) fn hold(&mut self, stream: TcpStream, now: Instant) -> Result<(), TcpStream> {
        if self.waiting.len() >= ROOM {
            return Err(stream);
        }
        self.waiting.push((stream, now + LONGEST_WAIT));
        Ok(())
    }

    /// The sockets to wait on, in the order [`take_ready`](Self::take_ready) expects their readiness.
    pub(crate) fn sockets(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.waiting.iter().map(|(stream, _)| stream.as_fd())
    }

    /// How long until the first wait is over (`None`: nobody waits).
    pub(crate) fn until_next_deadline(&self, now: Instant) -> Option<Duration> {
        self.waiting.iter().map(|(_, deadline)| deadline.saturating_duration_since(now)).min()
    }

    /// Removes and returns the connections that have something to read (`readiness`, one per
    /// socket in the order of [`sockets`](Self::sockets)) or whose wait is over at `now`.
    pub(crate) fn take_ready(&mut self, readiness: &[Readiness], now: Instant) -> Vec<TcpStream> {
        let (ready, kept): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).enumerate().partition(|(index, (_, deadline))| {
                readiness.get(*index) == Some(&Readiness::Ready) || *deadline <= now
            });
        self.waiting = kept.into_iter().map(|(_, waiting)| waiting).collect();
        ready.into_iter().map(|(_, (stream, _))| stream).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{AwaitingRequest, LONGEST_WAIT, ROOM};
    use crate::platform::poll::Readiness;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn holds_up_to_its_room_and_lets_go_of_those_heard_or_out_of_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut awaiting = AwaitingRequest::default();
        let mut clients = Vec::new();
        for index in 0..=ROOM {
            clients.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
            let (stream, _) = listener.accept().unwrap();
            // Each a millisecond later than the one before.
            let held = awaiting.hold(stream, start + Duration::from_millis(index as u64));
            assert_eq!(held.is_ok(), index < ROOM, "connection {index}");
        }
        assert_eq!(awaiting.sockets().count(), ROOM);
        assert_eq!(awaiting.until_next_deadline(start), Some(LONGEST_WAIT));
        // The third has spoken: only it leaves.
        let mut readiness = vec![Readiness::Waiting; ROOM];
        readiness[2] = Readiness::Ready;
        assert_eq!(awaiting.take_ready(&readiness, start).len(), 1);
        assert_eq!(awaiting.sockets().count(), ROOM - 1);
        // The wait of the first two is over; the rest keep theirs.
        let later = start + LONGEST_WAIT + Duration::from_millis(1);
        assert_eq!(awaiting.take_ready(&[Readiness::Waiting; ROOM - 1], later).len(), 2);
        assert_eq!(awaiting.until_next_deadline(later), Some(Duration::from_millis(2)));
        let last = start + LONGEST_WAIT + Duration::from_millis(ROOM as u64);
        assert_eq!(awaiting.take_ready(&[], last).len(), ROOM - 3);
        assert_eq!(awaiting.until_next_deadline(start), None);
    }
}
