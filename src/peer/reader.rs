//! A connection's reader: decodes frames, applies the connection's rate limits (`rate_limit`),
//! answers pings and closes through its queue (`outbox`), and hands each message on. It never writes to its
//! own socket: tungstenite would answer pings and closes itself, so the reader's view of the socket
//! swallows writes ([`ReadOnly`]). Used by peers and by the links this hub opens.

use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use crate::config::Config;
use crate::context::ServerState;
use crate::metrics::{CutOff, Dropped, Metrics};
use crate::peer::outbox::{DeferWrites, PeerHandle};
use crate::peer::queue::{Outbound, PeerShared};
use crate::peer::rate_limit::{Limits, Pace, RateLimiter, Verdict};
use crate::protocol::{self, error_code};

/// The reader's buffer, and the most it reads from the socket at a time. Every idle peer holds one,
/// so it is small: an announce or an ICE candidate fits, and a bigger message grows the buffer as
/// needed and is read in several calls (which costs no throughput measurably: docs/performance.md).
const READ_BUFFER: usize = 256;
/// After a close frame, how long to wait for the peer's own close before cutting the socket.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// The reader's view of the socket: reads go to the socket, paced by the byte rate; writes are
/// dropped (see module docs).
struct ReadOnly {
    shared: Arc<PeerShared>,
    limiter: RateLimiter,
    /// Set when the byte rate was exceeded for too long: the read then fails, and the reader closes.
    over_limit: bool,
}

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = (&mut &self.shared.socket).read(buf)?;
        self.shared.metrics.bytes_in(count);
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

impl Write for ReadOnly {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why [`FrameReader::read`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Nothing arrived within the socket's receive timeout: the connection goes on, and the next
    /// `read` continues where this one stopped (a frame read in part included).
    Idle,
    /// The connection is over, for this reason.
    Ended(&'static str),
}

/// Reads one connection's frames, applying its rate limits (`rate_limit.rs`: a peer's, or a hub
/// link's once it is one). Answers pings and closes through the queue. Used for peers (server
/// role) and for the links this hub opens to other hubs (client role).
pub(crate) struct FrameReader {
    socket: WebSocket<ReadOnly>,
    handle: Arc<PeerHandle>,
    state: Arc<ServerState>,
    /// Whether the limits in force are a link's.
    limited_as_link: bool,
}

impl FrameReader {
    /// A reader for the connection of `handle` and `shared`; `leftover` holds the stream's bytes
    /// that arrived with the request head.
    pub(crate) fn new(
        handle: Arc<PeerHandle>,
        shared: Arc<PeerShared>,
        leftover: Vec<u8>,
        role: Role,
        state: Arc<ServerState>,
    ) -> FrameReader {
        let config = &state.config;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        let limited_as_link = handle.is_link();
        let reader = ReadOnly {
            shared,
            limiter: RateLimiter::new(limits(config, limited_as_link), Instant::now()),
            over_limit: false,
        };
        let socket = WebSocket::from_partially_read(reader, leftover, role, Some(ws_config));
        FrameReader { socket, handle, state, limited_as_link }
    }

    /// The connection's shared state (its socket among it).
    pub(crate) fn shared(&self) -> &Arc<PeerShared> {
        &self.socket.get_ref().shared
    }

    /// Reads frames, handing each message within the rate limits to `on_message`, which may end
    /// the connection with `Break(reason)`, until the connection ends or the socket's receive
    /// timeout (if it has one) passes with nothing to read.
    pub(crate) fn read(&mut self, mut on_message: impl FnMut(Incoming<'_>) -> ControlFlow<&'static str>) -> Stop {
        let FrameReader { socket, handle, state, limited_as_link } = self;
        let config = &state.config;
        loop {
            let message = socket.read();
            if message.is_ok() {
                handle.touch();
            }
            // A peer that just became a hub link gets the link's larger limits from here on.
            if handle.is_link() != *limited_as_link {
                *limited_as_link = handle.is_link();
                socket.get_mut().limiter = RateLimiter::new(limits(config, *limited_as_link), Instant::now());
            }
            let message = match message {
                // A close is always handled: it ends the connection anyway.
                Ok(Message::Close(frame)) => Message::Close(frame),
                // Every other frame counts against the message rate, control frames too.
                Ok(message) => match socket.get_mut().limiter.message(Instant::now()) {
                    Verdict::Allow => message,
                    Verdict::Drop { first } => {
                        state.note_rejected();
                        state.metrics.dropped(Dropped::RateLimited);
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
                        state.metrics.cut_off(CutOff::RateLimited);
                        handle.close(1008, "Rate limit exceeded");
                        return Stop::Ended("rate limit exceeded");
                    }
                },
                Err(_) if socket.get_ref().over_limit => {
                    state.metrics.cut_off(CutOff::RateLimited);
                    handle.close(1008, "Rate limit exceeded");
                    return Stop::Ended("rate limit exceeded");
                }
                // The receive timeout passed: tungstenite keeps what it read so far.
                Err(WsError::Io(err)) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Stop::Idle;
                }
                Err(err) => return Stop::Ended(ended_by(handle, err, &state.metrics)),
            };
            match message {
                Message::Text(text) => {
                    // What handling the message queues is written when it is handled, from here, where
                    // the stack is shallow: a reader thread's stack then stays two pages deep.
                    let handled = {
                        let _writes = DeferWrites::begin();
                        on_message(Incoming::Text(text.as_str()))
                    };
                    if let ControlFlow::Break(reason) = handled {
                        return Stop::Ended(reason);
                    }
                }
                Message::Binary(_) => {
                    if let ControlFlow::Break(reason) = on_message(Incoming::Binary) {
                        return Stop::Ended(reason);
                    }
                }
                Message::Ping(payload) => handle.send_control(Outbound::Pong(payload)),
                Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(frame) => {
                    // Echo the peer's code, as RFC 6455 asks.
                    let code = frame.map_or(1000, |f| u16::from(f.code));
                    handle.send_control(Outbound::Close(echo_code(code), ""));
                    return Stop::Ended("closed");
                }
            }
        }
    }
}

/// The rate limits of a peer, or of a hub link.
fn limits(config: &Config, is_link: bool) -> Limits {
    if is_link { config.link_limits() } else { config.peer_limits() }
}

/// Reads frames until the connection ends, as [`FrameReader::read`] does, and returns why it
/// ended. For connections whose thread has nothing else to do while its peer is silent (the links
/// this hub opens).
pub(crate) fn read_frames(
    handle: Arc<PeerHandle>,
    shared: Arc<PeerShared>,
    leftover: Vec<u8>,
    role: Role,
    state: Arc<ServerState>,
    mut on_message: impl FnMut(Incoming<'_>) -> ControlFlow<&'static str>,
) -> &'static str {
    let mut frames = FrameReader::new(handle, shared, leftover, role, state);
    loop {
        if let Stop::Ended(reason) = frames.read(&mut on_message) {
            return reason;
        }
    }
}

/// Ends a connection whose frames could not be read, with the close code the error calls for;
/// returns the reason.
fn ended_by(handle: &PeerHandle, err: WsError, metrics: &Metrics) -> &'static str {
    match err {
        WsError::Capacity(_) => {
            metrics.dropped(Dropped::TooBig);
            metrics.cut_off(CutOff::TooBig);
            handle.close(1009, "Message too big");
            "message too big"
        }
        WsError::Utf8(_) => {
            metrics.cut_off(CutOff::ProtocolError);
            handle.close(1007, "Invalid UTF-8 in text frame");
            "invalid UTF-8"
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            // The TCP connection ended without a close frame: the other side just went away.
            handle.kill();
            "disconnected"
        }
        WsError::Protocol(_) => {
            metrics.cut_off(CutOff::ProtocolError);
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

#[cfg(test)]
mod tests {
    use super::echo_code;

    #[test]
    fn reserved_close_codes_are_never_echoed() {
        assert_eq!(echo_code(1001), 1001);
        assert_eq!(echo_code(4000), 4000);
        for reserved in [1005, 1006, 1015] {
            assert_eq!(echo_code(reserved), 1000);
        }
    }
}
