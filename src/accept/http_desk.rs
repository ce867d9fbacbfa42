//! The HTTP desk: one long-lived thread that answers plain HTTP requests (`/health`, `/stats`, ...)
//! whose whole head has arrived by the time the acceptor looks.
//!
//! Every other connection gets a thread of its own (see `listener`), which is what lets a slow
//! client hold up nobody but itself. But while thousands of peers connect at once, a new thread can
//! wait long to run for the first time (docs/performance.md); the desk is already running, so a
//! request that is complete on arrival is answered without one. The acceptor looks at the request
//! (a peek, [`look`]) and hands the desk the parsed head; the desk thread
//! ([`answer`], started by `listener`) never waits on one client: the reply is written with a short
//! limit, and the connection is closed without lingering.
//!
//! **The bound:** at most [`WAITING`] connections wait for the desk. A connection past that, one
//! whose head has not fully arrived, and every WebSocket upgrade go the usual way: a thread of their
//! own. A connection whose client has sent nothing yet waits a moment in `awaiting_request`.

use std::net::TcpStream;

use crate::accept::http;
use crate::accept::request_head::{RequestHead, find_head_end};
use crate::context::ServerState;
use crate::util::threads::contain_panic;

/// Connections that may wait for the desk.
pub(crate) const WAITING: usize = 64;
/// How much of a request the acceptor looks at: plenty for a monitor's request head.
const PEEK_LEN: usize = 2048;

/// What has arrived on a just-accepted connection, as far as the desk is concerned.
pub(crate) enum Arrival {
    /// Nothing yet.
    Nothing,
    /// The whole head of a plain HTTP request (not a WebSocket upgrade): the desk's.
    PlainRequest(RequestHead),
    /// Anything else: an upgrade, part of a head, something that is not HTTP, a closed connection.
    Other,
}

/// Looks at what has arrived on `stream`, without taking anything off the socket and without
/// waiting.
pub(crate) fn look(stream: &TcpStream) -> Arrival {
    let mut buffer = [0u8; PEEK_LEN];
    let len = match crate::platform::socket_flags::peek_without_waiting(stream, &mut buffer) {
        Ok(len) => len,
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Arrival::Nothing,
        Err(_) => return Arrival::Other,
    };
    if crate::platform::switched_off("http_desk") {
        return Arrival::Other;
    }
    let head = find_head_end(&buffer[..len]).and_then(|end| RequestHead::parse(&buffer[..end]).ok());
    match head {
        Some(head) if !head.wants_websocket() => Arrival::PlainRequest(head),
        _ => Arrival::Other,
    }
}

/// Answers one request on the desk thread. Its head is still unread on the socket: closing
/// without lingering discards it (`http::Parting::Prompt`).
pub(crate) fn answer(stream: TcpStream, head: RequestHead, state: &ServerState) {
    contain_panic("http-desk", || http::respond(stream, &head, state, http::Parting::Prompt));
}

#[cfg(test)]
mod tests {
    use super::{Arrival, look};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    /// A connected pair whose server side has received `sent` (waits, bounded, for it to arrive).
    fn received(sent: &[u8]) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(sent).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buffer = vec![0u8; sent.len() + 1];
        while server.peek(&mut buffer).unwrap() < sent.len() {
            assert!(Instant::now() < deadline, "the bytes never arrived");
        }
        (client, server)
    }

    /// Whether the desk would take the connection.
    fn for_the_desk(stream: &TcpStream) -> bool {
        matches!(look(stream), Arrival::PlainRequest(_))
    }

    #[test]
    fn only_whole_plain_heads_go_to_the_desk() {
        let (_c, server) = received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(for_the_desk(&server));
        let (_c, server) = received(b"GET /health HTTP/1.1\r\nHost: x\r\n");
        assert!(!for_the_desk(&server), "an unfinished head");
        let upgrade = b"GET /ws?peerId=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (_c, server) = received(upgrade);
        assert!(!for_the_desk(&server), "a WebSocket upgrade");
        let (_c, server) = received(b"NOT HTTP AT ALL\r\n\r\n");
        assert!(!for_the_desk(&server), "a malformed head");
        // Looking took nothing: the head is still there for whoever serves the connection.
        let (_c, server) = received(b"GET / HTTP/1.1\r\n\r\n");
        assert!(for_the_desk(&server));
        assert!(for_the_desk(&server));
    }

    #[test]
    fn nothing_sent_yet_is_not_for_the_desk_and_does_not_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let started = Instant::now();
        assert!(matches!(look(&server), Arrival::Nothing));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(client);
        let closed = crate::platform::poll::wait_readable(&[server.as_fd()], Some(Duration::from_secs(5))).unwrap();
        assert_eq!(closed, [crate::platform::poll::Readiness::Ready], "the close never arrived");
        assert!(matches!(look(&server), Arrival::Other), "a closed connection is not the desk's");
    }
}
