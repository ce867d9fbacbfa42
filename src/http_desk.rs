//! The HTTP desk: one long-lived thread that answers plain HTTP requests (`/health`, `/stats`, ...)
//! whose whole head had already arrived when the connection was accepted.
//!
//! Every other connection gets a thread of its own (see `listener`), which is what lets a slow
//! client hold up nobody but itself. But starting a thread is most of the cost of a health check,
//! and while thousands of peers connect at once (each starting two threads) a new thread can wait
//! tens of milliseconds to run for the first time: measured during the 10,000-peer storm
//! (`bench/capacity.sh`), up to 98 ms from accept to the new thread's first instruction. The desk
//! is already running, so a request that is complete on arrival is answered without one.
//!
//! The desk never waits on one client: the head is already there, the reply is written with a
//! short limit, and the connection is closed without lingering (`http::Parting::Prompt`).
//!
//! **The bound:** at most [`WAITING`] connections wait for the desk. A connection past that, one
//! whose head has not fully arrived, and every WebSocket upgrade go the usual way: a thread of their
//! own.

use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::http;
use crate::request_head::{RequestHead, read_head};
use crate::server::{ServerState, contain_panic};

/// Connections that may wait for the desk.
const WAITING: usize = 64;
/// How much of a request the acceptor looks at: plenty for a monitor's request head.
const PEEK_LEN: usize = 2048;
/// How long the desk waits for a head that was complete on arrival (it is already there).
const HEAD_LIMIT: Duration = Duration::from_millis(100);
/// The desk's stack: it parses heads and formats small replies.
const DESK_STACK: usize = 128 * 1024;

/// The acceptor's side of the desk.
pub(crate) struct HttpDesk {
    waiting: Sender<TcpStream>,
}

impl HttpDesk {
    /// Starts the desk thread; `None` if it cannot be started (every connection then gets its own
    /// thread). The thread ends when the desk is dropped.
    pub(crate) fn start(state: Arc<ServerState>) -> Option<HttpDesk> {
        let (waiting, arrivals) = crossbeam_channel::bounded(WAITING);
        let spawned = thread::Builder::new().name("http-desk".into()).stack_size(DESK_STACK).spawn(move || {
            crate::time_slice::prefer_prompt_wakeups();
            serve_arrivals(arrivals, &state)
        });
        match spawned {
            Ok(_) => Some(HttpDesk { waiting }),
            Err(err) => {
                crate::log_warn!("cannot start the HTTP desk ({err}); HTTP requests get threads of their own");
                None
            }
        }
    }

    /// Takes `stream` if it carries a complete plain HTTP request and the desk has room; gives it
    /// back otherwise. Never waits.
    pub(crate) fn try_take(&self, stream: TcpStream) -> Result<(), TcpStream> {
        if !holds_plain_request(&stream) {
            return Err(stream);
        }
        self.waiting.try_send(stream).map_err(|err| match err {
            TrySendError::Full(stream) | TrySendError::Disconnected(stream) => stream,
        })
    }
}

/// Whether a complete request head that is not a WebSocket upgrade is waiting on `stream`. Looks
/// without reading or waiting.
fn holds_plain_request(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; PEEK_LEN];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = stream.peek(&mut buffer);
    if stream.set_nonblocking(false).is_err() {
        return false;
    }
    let Ok(len) = peeked else { return false };
    let Some(end) = buffer[..len].windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    RequestHead::parse(&buffer[..end + 4]).is_ok_and(|head| !head.wants_websocket())
}

/// The desk thread: answers each connection handed to it, until the acceptor drops the desk.
fn serve_arrivals(arrivals: Receiver<TcpStream>, state: &ServerState) {
    for stream in arrivals {
        contain_panic("http-desk", || answer(stream, state));
    }
}

fn answer(mut stream: TcpStream, state: &ServerState) {
    let _ = stream.set_nodelay(true);
    // The head was whole when peeked; if it is not now, the client is misbehaving: just close.
    let Ok((head, _body)) = read_head(&mut stream, HEAD_LIMIT) else { return };
    if let Ok(head) = RequestHead::parse(&head) {
        http::respond(stream, &head, state, http::Parting::Prompt);
    }
}

#[cfg(test)]
mod tests {
    use super::holds_plain_request;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
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

    #[test]
    fn only_whole_plain_heads_go_to_the_desk() {
        let (_c, server) = received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(holds_plain_request(&server));
        let (_c, server) = received(b"GET /health HTTP/1.1\r\nHost: x\r\n");
        assert!(!holds_plain_request(&server), "an unfinished head");
        let upgrade = b"GET /ws?peerId=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (_c, server) = received(upgrade);
        assert!(!holds_plain_request(&server), "a WebSocket upgrade");
        let (_c, server) = received(b"NOT HTTP AT ALL\r\n\r\n");
        assert!(!holds_plain_request(&server), "a malformed head");
        // Looking took nothing: the head is still there for whoever serves the connection.
        let (_c, server) = received(b"GET / HTTP/1.1\r\n\r\n");
        assert!(holds_plain_request(&server));
        assert!(holds_plain_request(&server));
    }

    #[test]
    fn nothing_sent_yet_is_not_for_the_desk_and_does_not_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let started = Instant::now();
        assert!(!holds_plain_request(&server));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
