//! Reading and parsing the HTTP request head that starts every connection.
//!
//! HTTP requests and WebSocket upgrades arrive on the same port, so each new socket's head is read
//! here (bounded in size and time) and parsed into a [`RequestHead`]; the listener then looks at it
//! to decide whether the socket becomes a peer or gets an HTTP reply.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head accepted; a longer one is answered with 431.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Most header lines accepted in one head.
const MAX_HEADERS: usize = 100;
/// Bytes asked of the socket per read while the head comes in.
const READ_CHUNK: usize = 1024;

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The head did not finish within the handshake timeout.
    TimedOut,
    /// The head grew past [`MAX_HEAD_LEN`] or [`MAX_HEADERS`].
    TooLarge,
    /// The bytes are not an HTTP/1.x request head.
    Malformed(&'static str),
    /// The socket closed or failed before the head was complete.
    Io(io::Error),
}

/// A parsed request head: request line and headers. Nothing in it has been trusted yet.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `OPTIONS`, … as sent.
    pub method: String,
    /// The request target: path and query, e.g. `/ws?peerId=…`.
    pub target: String,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names and values in order, values trimmed.
    pub headers: Vec<(String, String)>,
}

/// Reads one request head from `stream`, waiting at most `timeout` in all; on success the socket is
/// left without a read timeout. Returns the head's bytes and whatever arrived after it (the start
/// of a WebSocket stream, if any).
pub fn read_head(stream: &mut TcpStream, timeout: Duration) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let deadline = Instant::now() + timeout;
    // Read straight into the heap buffer, not into a chunk on the stack: this thread goes on to be
    // a long-lived peer reader, and every stack page it ever touches stays resident.
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HeadError::TimedOut);
        }
        stream.set_read_timeout(Some(remaining)).map_err(HeadError::Io)?;
        let filled = buffer.len();
        buffer.resize(filled + READ_CHUNK, 0);
        let result = stream.read(&mut buffer[filled..]);
        buffer.truncate(filled + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(HeadError::TimedOut);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(HeadError::Io(err)),
        }
        // Only the bytes that can complete a terminator need searching again.
        let search_from = filled.saturating_sub(3);
        if let Some(end) = find_head_end(&buffer[search_from..]) {
            let rest = buffer.split_off(search_from + end);
            // The deadline was for the head only: whatever the socket is used for next (a peer that
            // may stay quiet for minutes, a hub link) must not inherit it.
            stream.set_read_timeout(None).map_err(HeadError::Io)?;
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD_LEN {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Position just past the blank line that ends a head.
pub(crate) fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

impl RequestHead {
    /// Parses a complete head (as returned by [`read_head`]).
    pub fn parse(bytes: &[u8]) -> Result<RequestHead, HeadError> {
        if bytes.len() > MAX_HEAD_LEN {
            return Err(HeadError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HeadError::Malformed("request line is not 'METHOD TARGET HTTP/1.x'"));
        };
        let minor_version = match version {
            "HTTP/1.1" => 1,
            "HTTP/1.0" => 0,
            _ => {
                return Err(HeadError::Malformed("only HTTP/1.0 and HTTP/1.1 are spoken here"));
            }
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(HeadError::Malformed("method is not an HTTP token"));
        }
        if !target.starts_with('/') {
            return Err(HeadError::Malformed("request target must start with '/'"));
        }
        let mut headers = Vec::new();
        for line in lines.take_while(|line| !line.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(HeadError::Malformed("header line without ':'"));
            };
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(HeadError::Malformed("bad header name"));
            }
            if headers.len() == MAX_HEADERS {
                return Err(HeadError::TooLarge);
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        Ok(RequestHead { method: method.to_string(), target: target.to_string(), minor_version, headers })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The first value of query parameter `name`, percent-decoded as `URLSearchParams` does.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, Plus::IsSpace) == name).then(|| percent_decode(value, Plus::IsSpace))
        })
    }

    /// The segments of the path, percent-decoded (`+` stays a plus, as in any path).
    pub fn path_segments(&self) -> impl Iterator<Item = String> + '_ {
        self.path().split('/').filter(|segment| !segment.is_empty()).map(|s| percent_decode(s, Plus::IsPlus))
    }

    /// Whether the client asks to switch to WebSocket (`Upgrade: websocket`). The handshake's other
    /// headers are checked later, so that a broken upgrade gets a clear 400 rather than a page.
    pub fn wants_websocket(&self) -> bool {
        self.header("Upgrade").is_some_and(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("websocket")))
    }
}

/// Decodes `%XX` escapes and `+` (a space in form encoding); invalid escapes are kept literally.
/// What `+` means where a text is decoded: a space in a query string, itself in a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plus {
    IsSpace,
    IsPlus,
}

fn percent_decode(text: &str, plus: Plus) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus == Plus::IsSpace => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> RequestHead {
        RequestHead::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn parses_an_upgrade_request() {
        let h = head(
            "GET /ws?peerId=abc&token=a%2Bb+c HTTP/1.1\r\nHost: x\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k==\r\n\r\n",
        );
        assert_eq!((h.method.as_str(), h.path(), h.minor_version), ("GET", "/ws", 1));
        assert!(h.wants_websocket());
        assert_eq!(h.header("sec-websocket-key"), Some("k=="));
        assert_eq!(h.query_param("peerId").as_deref(), Some("abc"));
        assert_eq!(h.query_param("token").as_deref(), Some("a+b c"));
        assert_eq!(h.query_param("missing"), None);
    }

    #[test]
    fn plain_requests_are_not_upgrades() {
        let h = head("GET /health HTTP/1.0\r\n\r\n");
        assert!(!h.wants_websocket());
        assert_eq!((h.path(), h.minor_version), ("/health", 0));
    }

    #[test]
    fn percent_decoding_keeps_broken_escapes() {
        assert_eq!(percent_decode("%41%zz%4", Plus::IsSpace), "A%zz%4");
        assert_eq!(percent_decode("%", Plus::IsSpace), "%");
    }

    #[test]
    fn malformed_heads_are_errors_not_panics() {
        for bad in [
            "",
            "GET\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET noslash HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
        ] {
            assert!(RequestHead::parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert!(RequestHead::parse(&[0xff, 0xfe, b'\r', b'\n']).is_err());
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(RequestHead::parse(many.as_bytes()), Err(HeadError::TooLarge)));
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
