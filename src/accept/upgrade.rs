//! Turning an HTTP upgrade request into a registered peer (docs/protocol.md §1).
//!
//! In order: check the handshake headers (400 if broken), check `AUTH_TOKEN` (401, before any
//! upgrade), switch protocols (101), then check the `peerId` and admit the peer to the registry.
//! As in the reference, an invalid id, a duplicate id or a full server are told *after* the
//! upgrade, with a 1008 close and the reference's reason text, so clients see what they expect.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use tiny_http::{Header, Response};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocket};

use crate::accept::auth;
use crate::accept::http;
use crate::accept::request_head::RequestHead;
use crate::context::ServerState;
use crate::metrics::Refusal;
use crate::peer::outbox::PeerHandle;
use crate::peer::queue::PeerShared;
use crate::protocol;
use crate::protocol::peer_id::PeerId;
use crate::registry::RegisterError;
use crate::registry::cluster::Claim;

/// How long a refused peer gets to read its 1008 close before the socket is closed.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// A peer that completed the handshake and is registered: what its reader needs.
pub(crate) struct AdmittedPeer {
    pub handle: Arc<PeerHandle>,
    pub shared: Arc<PeerShared>,
    /// Bytes of the WebSocket stream that arrived with the request head.
    pub leftover: Vec<u8>,
}

/// Completes (or refuses) the WebSocket handshake on `stream`; if all is well, the peer is
/// registered (and told `connected`) and returned, to be served by [`crate::peer::serve`].
/// `leftover` holds any bytes the client sent after its request head.
pub(crate) fn accept(
    stream: TcpStream,
    head: &RequestHead,
    leftover: Vec<u8>,
    state: &Arc<ServerState>,
) -> Option<AdmittedPeer> {
    let key = match check_handshake(head) {
        Ok(key) => key,
        Err(problem) => {
            let extra = Some(("Sec-WebSocket-Version", "13"));
            state.metrics.refused(Refusal::BadRequest);
            http::reply_error_with(stream, 400, problem, state, extra);
            return None;
        }
    };
    let hub_credential = state.config.is_hub
        && auth::holds_hub_credential(head, state.config.hub_token.as_deref(), stream.peer_addr().ok());
    // A presented HUB_TOKEN stands in for AUTH_TOKEN (a JavaScript hub can carry only one secret);
    // coming from loopback does not.
    let hub_token_presented = hub_credential && state.config.hub_token.is_some();
    if let Some(token) = &state.config.auth_token
        && !hub_token_presented
        && !auth::is_authorized(head, token)
    {
        log::debug!("refused an upgrade without a valid token");
        state.metrics.refused(Refusal::Unauthorized);
        let extra = Some(("WWW-Authenticate", "Bearer"));
        http::reply_error_with(stream, 401, "Unauthorized: a valid token is required", state, extra);
        return None;
    }
    switch_protocols(&stream, head, key).ok()?;

    let Some(peer_id) = head.query_param("peerId").and_then(|id| PeerId::parse(&id)) else {
        state.metrics.refused(Refusal::InvalidPeerId);
        refuse(stream, "Invalid peerId format");
        return None;
    };
    // The peer keeps this connection's thread for as long as it stays: admit it only while the
    // threads kept for HTTP stay free beside it.
    if !state.thread_budget.has_room_for_a_peer() {
        log::warn!("no room for another peer thread (vm.max_map_count); refusing peer {}", peer_id.short());
        state.metrics.refused(Refusal::NoThread);
        refuse(stream, "Server cannot accept more connections");
        return None;
    }
    let socket = match stream.try_clone() {
        Ok(socket) => socket,
        Err(_) => {
            state.metrics.refused(Refusal::NoThread);
            refuse(stream, "Server cannot accept more connections");
            return None;
        }
    };
    let (handle, shared) = state.new_peer(peer_id, socket, Role::Server);
    if hub_credential {
        handle.grant_hub_credential();
    }
    if let Err(refusal) = state.registry.register(handle.clone()) {
        log::debug!("refused peer {}: {}", peer_id.short(), refusal.close_reason());
        state.metrics.refused(match refusal {
            RegisterError::Duplicate => Refusal::Duplicate,
            RegisterError::Full => Refusal::Full,
            RegisterError::ShuttingDown => Refusal::ShuttingDown,
        });
        refuse(stream, refusal.close_reason());
        return None;
    }
    // Cluster mode: the id must be free on every instance, not only here (one atomic claim in Redis).
    if let Some(cluster) = &state.cluster
        && crate::cluster::claim(cluster, peer_id) == Claim::Taken
    {
        log::debug!("refused peer {}: connected to another instance", peer_id.short());
        state.registry.unregister(peer_id, handle.serial, "duplicate");
        state.metrics.refused(Refusal::Duplicate);
        refuse(stream, RegisterError::Duplicate.close_reason());
        return None;
    }
    drop(stream);
    state.metrics.accepted();
    handle.send_text(protocol::connected(peer_id));
    if let Some(from) = handle.remote_addr {
        log::debug!("peer {} connected from {from}", peer_id.short());
    }
    Some(AdmittedPeer { handle, shared, leftover })
}

/// The `Sec-WebSocket-Key` of a well-formed upgrade request, or what is wrong with it.
fn check_handshake(head: &RequestHead) -> Result<&str, &'static str> {
    if head.method != "GET" {
        return Err("WebSocket upgrades must use GET");
    }
    if head.minor_version != 1 {
        return Err("WebSocket upgrades need HTTP/1.1");
    }
    if head.header("Sec-WebSocket-Version") != Some("13") {
        return Err("Missing or unsupported Sec-WebSocket-Version (13 is supported)");
    }
    match head.header("Sec-WebSocket-Key") {
        Some(key) if !key.is_empty() && key.len() <= 64 => Ok(key),
        _ => Err("Missing or invalid Sec-WebSocket-Key"),
    }
}

/// Writes the `101 Switching Protocols` reply.
fn switch_protocols(stream: &TcpStream, head: &RequestHead, key: &str) -> std::io::Result<()> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut reply = Response::empty(101);
    if let Ok(header) = Header::from_bytes(&b"Sec-WebSocket-Accept"[..], accept.as_bytes()) {
        reply.add_header(header);
    }
    http::write_reply(stream, reply, head.minor_version, true, Some("websocket"))
}

/// Closes a just-upgraded connection with 1008 and `reason`, before it ever became a peer.
/// Nothing else writes to this socket yet, so it is written directly.
fn refuse(stream: TcpStream, reason: &'static str) {
    let mut socket = WebSocket::from_raw_socket(&stream, Role::Server, None);
    let close = CloseFrame { code: CloseCode::Policy, reason: reason.into() };
    if socket.close(Some(close)).is_ok() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        http::drain(&stream, REFUSAL_LINGER);
    }
}
