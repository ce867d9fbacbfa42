//! Helpers shared by the integration tests: start a real server on a free port, and talk to it with
//! real WebSocket clients (tungstenite) and raw HTTP over TCP. Every wait has a deadline.
#![allow(dead_code)] // each test file uses a different subset

pub mod process;
pub mod redis;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use peerpigeon::{Config, Server, ServerHandle};
use serde_json::{Value, json};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{ClientRequestBuilder, Message, WebSocket};

/// Generous upper bound for anything the server should do "at once".
pub const WAIT: Duration = Duration::from_secs(5);

/// A loopback port for a test server to start probing from: below 32768, because the range above
/// is where the kernel picks the ports of client sockets, which could take it first. The server
/// moves up from it while ports are busy (`PORT_RETRIES`).
pub fn test_port() -> u16 {
    fastrand::u16(20_000..32_000)
}

/// A listener on a free loopback port below 32768 (see [`test_port`]).
pub fn test_listener() -> std::net::TcpListener {
    loop {
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", test_port())) {
            return listener;
        }
    }
}

/// An address of this machine that is not loopback (the source address of its default route), if
/// it has one: a connection to it comes from outside the loopback range.
pub fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the route and so the source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A TCP connection to `addr` from the loopback address `source` (any of 127.0.0.0/8 works on
/// Linux), so that one test can be several hosts.
pub fn connect_from(source: std::net::Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source.into(), 0).into())?;
    socket.connect_timeout(&addr.into(), WAIT)?;
    Ok(socket.into())
}

/// Starts a server on 127.0.0.1 and a free port, with `tweak` applied to the default config.
pub fn start_with(tweak: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = Config { host: "127.0.0.1".into(), port: test_port(), ..Config::default() };
    tweak(&mut config);
    Server::start(config).expect("server starts")
}

/// Starts a server with the default configuration (on a free port).
pub fn start() -> ServerHandle {
    start_with(|_| {})
}

/// A fresh random 40-hex peer id.
pub fn new_peer_id() -> String {
    (0..40).map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)])).collect()
}

/// A WebSocket client of the server under test.
pub struct Client {
    pub id: String,
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

/// Opens a WebSocket to `ws://addr{path_and_query}` with extra request headers. Returns the
/// handshake error as text when the server refuses the upgrade.
pub fn open(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, String> {
    let uri: tungstenite::http::Uri = format!("ws://{addr}{path_and_query}").parse().map_err(|e| format!("{e}"))?;
    let mut request = ClientRequestBuilder::new(uri);
    for (name, value) in headers {
        request = request.with_header(*name, *value);
    }
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let (ws, _) = tungstenite::client(request, MaybeTlsStream::Plain(stream)).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            format!("HTTP {} {body}", response.status().as_u16())
        }
        other => other.to_string(),
    })?;
    Ok(ws)
}

impl Client {
    /// Connects as `id` to `/` and checks the `connected` greeting.
    pub fn connect_as(addr: SocketAddr, id: &str) -> Client {
        let ws = open(addr, &format!("/?peerId={id}"), &[]).expect("upgrade accepted");
        let mut client = Client { id: id.to_string(), ws };
        let greeting = client.next().expect("a greeting");
        assert_eq!(greeting["type"], "connected", "{greeting}");
        assert_eq!(greeting["data"]["peerId"], id);
        assert_eq!(greeting["fromPeerId"], "system");
        client
    }

    /// Connects with a fresh random id.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::connect_as(addr, &new_peer_id())
    }

    /// Connects and announces into `network`; returns once the announce has been handled.
    pub fn join(addr: SocketAddr, network: &str) -> Client {
        let mut client = Client::connect(addr);
        client.announce(network);
        client
    }

    pub fn send(&mut self, message: Value) {
        self.ws.send(Message::text(message.to_string())).expect("send");
    }

    pub fn send_raw(&mut self, message: Message) {
        self.ws.send(message).expect("send");
    }

    /// Announces into `network` as the real client does. Returns once the server has handled it,
    /// with the messages that arrived meanwhile (the `peer-discovered` of the peers already there).
    pub fn announce(&mut self, network: &str) -> Vec<Value> {
        let id = self.id.clone();
        self.send(json!({"type": "announce", "networkName": network, "data": {"peerId": id}, "maxPeers": 10}));
        self.drain()
    }

    /// The next text message as JSON, or `None` if none came within [`WAIT`] (or the socket closed).
    pub fn next(&mut self) -> Option<Value> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(text.as_str()).expect("server sends JSON"));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Reads until a message matches `predicate`, failing the test after [`WAIT`].
    pub fn wait_for(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let mut seen = Vec::new();
        loop {
            match self.next() {
                Some(message) if predicate(&message) => return message,
                Some(message) => seen.push(message["type"].clone()),
                None => panic!("{}: no {what} within {WAIT:?}; saw {seen:?}", self.short()),
            }
        }
    }

    /// Sends a `ping` and returns every message that arrived before its `pong`. Whatever the server
    /// queued for this client before handling the ping is in the result, so absence can be
    /// asserted without waiting for time to pass.
    pub fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"}));
        let mut before = Vec::new();
        // Bounded as a whole, not only per message: a server that keeps sending (heartbeats) but
        // never answers this ping (it dropped it as over a rate limit) must fail the test, not hang
        // it. Generous, for a server still working through a flood the test sent before the ping.
        let deadline = Instant::now() + WAIT * 4;
        loop {
            assert!(Instant::now() < deadline, "{}: no pong in time ({} other messages)", self.short(), before.len());
            match self.next() {
                Some(message) if message["type"] == "pong" => return before,
                Some(message) => before.push(message),
                None => panic!("{}: no pong within {WAIT:?}", self.short()),
            }
        }
    }

    /// Reads until the server closes the connection; returns its close frame.
    pub fn expect_close(&mut self) -> Option<CloseFrame> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        panic!("{}: the server did not close within {WAIT:?}", self.short())
    }

    /// Sets how long a read may wait before giving up.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        if let MaybeTlsStream::Plain(stream) = self.ws.get_mut() {
            stream.set_read_timeout(Some(timeout)).expect("read timeout");
        }
    }

    pub fn short(&self) -> &str {
        &self.id[..8]
    }
}

/// The sorted peer ids of the `peer-discovered` messages among `messages`.
pub fn discovered_ids(messages: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = messages
        .iter()
        .filter(|m| m["type"] == "peer-discovered")
        .map(|m| m["data"]["peerId"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Polls `GET path` on `addr` until its JSON satisfies `ready` (failing the test after [`WAIT`]),
/// and returns that JSON. The server's state changes on other threads; this is the bounded wait for it.
pub fn wait_json(addr: SocketAddr, path: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = http_get(addr, path).json();
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{addr}{path}: no {what} within {WAIT:?}; last {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the server at `addr` reports `value` for `field` of `/stats`.
pub fn wait_stat(addr: SocketAddr, field: &str, value: Value) {
    wait_json(addr, "/stats", &format!("{field} = {value}"), |stats| stats[field] == value);
}

/// Reads the close frame of a connection the server refuses right after the upgrade.
pub fn refused(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    let mut ws = open(addr, path_and_query, &[]).expect("upgrade accepted");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => (u16::from(frame.code), frame.reason.to_string()),
        Ok(Message::Close(None)) => panic!("closed without a code"),
        Ok(other) => panic!("expected a close frame, got {other:?}"),
        Err(err) => panic!("expected a close frame, got error {err}"),
    }
}

/// A raw HTTP response.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `request` (a complete request head, and body if any) and reads the whole response.
pub fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// `GET path` over HTTP/1.1.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path)
}

pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    http_raw(addr, &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse { status, headers, body: body.to_string() }
}
