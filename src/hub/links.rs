//! The links this hub opens to the hubs in `BOOTSTRAP_HUBS`: one blocking client thread per URL
//! (`hub-link-<n>`).
//!
//! A link thread connects as `URL?peerId=<this hub's id>` (and `&token=` when `AUTH_TOKEN` is set,
//! and the `X-PeerPigeon-Hub-Token` header when `HUB_TOKEN` is),
//! does the WebSocket handshake itself (so no byte the other hub sends right after the 101 is
//! lost), registers the link (which sends the hub announce and everything this hub knows), then
//! reads until the link drops. A lost or refused link is retried for ever, with capped exponential
//! back-off and jitter; every change of state is logged once.

use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tungstenite::protocol::Role;

use crate::accept::request_head::read_head;
use crate::context::ServerState;
use crate::peer::reader::{self, Incoming};
use crate::registry::mesh::LinkEvent;
use crate::util::clock::unix_millis;

/// Stack of a hub thread: a link reads frames and decodes JSON, like a peer's reader.
pub(crate) const HUB_THREAD_STACK: usize = 256 * 1024;
/// First retry delay; each failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Time allowed for the TCP connection to a hub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps one bootstrap link up until the server stops.
pub(crate) fn run_link(index: usize, url: &str, state: &Arc<ServerState>, stop: &Receiver<()>) {
    // The URL may carry a credential: logs and /hubstats get it without path and query.
    let uri = &crate::config::url_for_display(url);
    let links = &state.bootstrap_links;
    let target = match parse_ws_url(url) {
        Ok(target) => target,
        Err(problem) => {
            log::error!("bootstrap hub {uri}: {problem}; not connecting");
            links.update(index, |s| {
                s.state = "skipped";
                s.last_error = Some(problem.to_string());
            });
            return;
        }
    };
    if is_this_server(&target, state) {
        log::info!("bootstrap hub {uri} is this server; skipping it");
        links.update(index, |s| s.state = "skipped");
        return;
    }
    let mut failures: u32 = 0;
    let mut last_logged_error = String::new();
    while !state.is_shutting_down() {
        state.metrics.link_attempt();
        links.update(index, |s| {
            s.state = "connecting";
            s.last_attempt = Some(unix_millis());
            s.attempt_number += 1;
            s.total_attempts += 1;
        });
        match connect(&target, state) {
            Ok((stream, leftover)) => {
                failures = 0;
                last_logged_error.clear();
                log::info!("hub link to {uri} is up");
                links.update(index, |s| {
                    s.state = "connected";
                    s.attempt_number = 0;
                    s.last_error = None;
                    s.connected_since = Some(unix_millis());
                });
                let outcome = serve_link(index, uri, stream, leftover, state);
                links.update(index, |s| {
                    s.state = "waiting";
                    s.connected_since = None;
                    s.last_error = Some(format!("link lost: {}", outcome.reason));
                });
                if outcome.is_self {
                    log::warn!("bootstrap hub {uri} is this hub itself; no longer linking to it");
                    links.update(index, |s| s.state = "skipped");
                    return;
                }
                log::warn!("hub link to {uri} is down ({}); reconnecting", outcome.reason);
            }
            Err(problem) => {
                if problem != last_logged_error {
                    log::warn!("cannot link to hub {uri}: {problem}; will keep retrying");
                    last_logged_error = problem.clone();
                }
                links.update(index, |s| s.last_error = Some(problem));
            }
        }
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        links.update(index, |s| s.state = "waiting");
        if !matches!(stop.recv_timeout(delay), Err(RecvTimeoutError::Timeout)) {
            return;
        }
    }
}

/// Delay before attempt `failures + 1`: doubling from [`FIRST_BACKOFF`], capped at
/// [`MAX_BACKOFF`], then scaled by a random factor in [0.5, 1) so that hubs restarted together do
/// not retry in lockstep.
fn backoff(failures: u32) -> Duration {
    let uncapped = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(16));
    uncapped.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// What ended a link.
struct LinkOutcome {
    reason: &'static str,
    /// The other end turned out to be this very hub.
    is_self: bool,
}

/// Runs an open link: its registration, and reading until it drops.
fn serve_link(index: usize, uri: &str, stream: TcpStream, leftover: Vec<u8>, state: &Arc<ServerState>) -> LinkOutcome {
    let Some(hub_id) = state.hub_peer_id else {
        return LinkOutcome { reason: "not a hub", is_self: false };
    };
    let (handle, shared) = state.new_peer(hub_id, stream, Role::Client);
    let serial = handle.serial;
    state.registry.link_up(handle.clone(), uri);
    let mut is_self = false;
    let reason =
        reader::read_frames(handle.clone(), shared.clone(), leftover, Role::Client, state.clone(), |message| {
            if let Incoming::Text(text) = message {
                match state.registry.handle_link_message(serial, text) {
                    LinkEvent::Nothing => {}
                    LinkEvent::LeadsToSelf => is_self = true,
                    LinkEvent::NotAccepted(why) => {
                        log::warn!("hub {uri} does not take this hub's link: {why}");
                        state.bootstrap_links.update(index, |s| s.last_error = Some(why));
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        });
    state.registry.link_down(serial);
    drop(handle);
    reader::linger(&shared);
    LinkOutcome { reason, is_self }
}

/// A `ws://` URL taken apart.
struct WsTarget {
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

fn parse_ws_url(uri: &str) -> Result<WsTarget, &'static str> {
    let rest = uri.strip_prefix("ws://").ok_or("only ws:// URLs are supported")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse().map_err(|_| "the port is not a number")?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the URL has no host");
    }
    Ok(WsTarget { host: host.to_string(), port, path })
}

/// Whether `target` names this very server (docs/protocol.md §5: a hub skips itself).
fn is_this_server(target: &WsTarget, state: &ServerState) -> bool {
    if target.port != state.local_addr.port() {
        return false;
    }
    let ours = [state.config.host.as_str(), "localhost", "127.0.0.1", "::1", "0.0.0.0"];
    ours.contains(&target.host.as_str()) || target.host == state.local_addr.ip().to_string()
}

/// Opens the TCP connection and completes the WebSocket handshake as a client. Returns the stream
/// and any bytes that arrived after the 101 response.
fn connect(target: &WsTarget, state: &ServerState) -> Result<(TcpStream, Vec<u8>), String> {
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let Some(hub_id) = state.hub_peer_id else {
        return Err("not a hub".into());
    };
    let separator = if target.path.contains('?') { '&' } else { '?' };
    let mut path = format!("{}{separator}peerId={hub_id}", target.path);
    let mut credentials = String::new();
    if let Some(token) = &state.config.auth_token {
        path.push_str("&token=");
        path.push_str(&percent_encode(token));
        credentials = format!("Authorization: Bearer {token}\r\n");
    }
    if let Some(token) = &state.config.hub_token {
        credentials.push_str(&format!("{}: {token}\r\n", crate::accept::auth::HUB_TOKEN_HEADER));
    }
    let key = tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{credentials}\r\n",
        target.host, target.port
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send the handshake: {e}"))?;
    let (head, leftover) =
        read_head(&mut stream, state.config.handshake_timeout).map_err(|e| format!("no handshake reply: {e:?}"))?;
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("101") {
        let _ = stream.shutdown(Shutdown::Both);
        return Err(format!("the hub refused the upgrade: {status_line}"));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accepted = lines
        .filter_map(|line| line.split_once(':'))
        .any(|(name, value)| name.trim().eq_ignore_ascii_case("Sec-WebSocket-Accept") && value.trim() == expected);
    if !accepted {
        return Err("the hub's handshake reply has a wrong Sec-WebSocket-Accept".into());
    }
    Ok((stream, leftover))
}

/// Percent-encodes everything but unreserved characters, for a token in a query string.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        let t = parse_ws_url("ws://hub.example:3001/ws?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("hub.example", 3001, "/ws?x=1"));
        let t = parse_ws_url("ws://127.0.0.1:3000").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 3000, "/"));
        let t = parse_ws_url("ws://[::1]:4000?a").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 4000, "/?a"));
        assert!(parse_ws_url("http://x:1").is_err());
        assert!(parse_ws_url("ws://:1").is_err());
        assert!(parse_ws_url("ws://x:port").is_err());
    }

    #[test]
    fn backoff_starts_under_a_second_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        for failures in [10, 20, 1000] {
            let delay = backoff(failures);
            assert!(delay <= MAX_BACKOFF && delay >= MAX_BACKOFF / 2, "{delay:?}");
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a b&c=d~"), "a%20b%26c%3Dd~");
    }
}
