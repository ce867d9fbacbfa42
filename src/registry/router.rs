//! What to do with one message from a peer: announce, route a signal, leave, answer a ping, or
//! reply with an error (docs/protocol.md §2, §3).
//!
//! Runs on the sending peer's reader thread. Replies to the sender go into its own outbox; signals go
//! to the target's outbox through the registry.

use serde_json::value::RawValue;

use crate::context::ServerState;
use crate::metrics::{Dropped, Received};
use crate::peer::outbox::PeerHandle;
use crate::protocol::peer_id::PeerId;
use crate::protocol::{self, ClientMessage, SignalKind, error_code};
use crate::registry::mesh::LinkEvent;
use crate::registry::{Route, RouteError};

/// Longest piece of client-chosen text echoed back inside an error reply.
const MAX_ECHOED_LEN: usize = 64;

/// Handles one text frame from `from`.
///
/// Never inlined: it runs on the peer's reader thread, and inlined into the reader loop it would
/// make that loop's frame, which every frame below it (the handshake's too) sits under, deeper, and
/// cost each idle peer a third page of touched stack (docs/performance.md, "What a peer costs").
#[inline(never)]
pub(crate) fn handle_text(state: &ServerState, from: &PeerHandle, text: &str) {
    state.messages_handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let message = match protocol::parse_client_message(text) {
        Ok(message) => message,
        Err(err) => {
            state.metrics.received(Received::Invalid);
            reject(state, from, protocol::error(err.code(), &err.to_string()));
            return;
        }
    };
    state.metrics.received(match &message {
        ClientMessage::Announce { .. } => Received::Announce,
        ClientMessage::Signal { .. } => Received::Signal,
        ClientMessage::Goodbye => Received::Goodbye,
        ClientMessage::Ping => Received::Ping,
        ClientMessage::Cleanup => Received::Cleanup,
        ClientMessage::HubOnly => Received::Hub,
        ClientMessage::Unsupported { .. } => Received::Unsupported,
    });
    match message {
        ClientMessage::Announce { network, data } => {
            if let Err(err) = protocol::check_announce_size(data, state.config.max_peer_data_bytes) {
                reject(state, from, protocol::error(err.code(), &err.to_string()));
                return;
            }
            let is_hub = protocol::announces_hub(data, &network, &state.config.hub_mesh_namespace);
            let discovery = protocol::discovery_data(from.peer_id, is_hub, data);
            state.registry.announce(from.peer_id, &network, is_hub, discovery);
        }
        // A hub link relays other servers' peers: its signals keep their `fromPeerId`.
        ClientMessage::Signal { .. } | ClientMessage::HubOnly if from.is_link() => {
            if state.registry.handle_link_message(from.serial, text) == LinkEvent::LeadsToSelf {
                log::warn!("an inbound hub link leads back to this hub");
            }
        }
        ClientMessage::Signal { kind, network, target, data } => {
            // A signal without a target is ignored, as the reference does.
            if let Some(target) = target {
                route_signal(state, from, kind, &network, &target, data);
            }
        }
        ClientMessage::Goodbye => state.registry.leave(from.peer_id, "goodbye"),
        ClientMessage::Ping => {
            from.send_text(protocol::pong(from.peer_id));
        }
        // The client sends these; the reference accepts them silently.
        ClientMessage::Cleanup => {}
        // Hub-to-hub traffic from a plain peer: it may not inject peers into a network.
        ClientMessage::HubOnly => {}
        ClientMessage::Unsupported { kind } => {
            let text = protocol::unsupported_type_text(shorten(&kind));
            reject(state, from, protocol::error(error_code::UNSUPPORTED_TYPE, &text));
        }
    }
}

fn route_signal(
    state: &ServerState,
    from: &PeerHandle,
    kind: SignalKind,
    network: &str,
    target: &str,
    data: Option<&RawValue>,
) {
    let sender = from.peer_id;
    let delivered = match PeerId::parse(target) {
        Some(target) => state.registry.deliver_signal(sender, network, target, kind, data),
        None => Err(RouteError::UnknownTarget),
    };
    let reply = match delivered {
        Ok(Route::Local) => return state.metrics.delivered(),
        Ok(Route::Relayed) => return state.metrics.relayed(),
        Err(RouteError::NotInNetwork) => protocol::error(
            error_code::NOT_IN_NETWORK,
            &format!("Cannot send '{}': announce in network '{}' first", kind.as_str(), shorten(network)),
        ),
        Err(RouteError::UnknownTarget) => protocol::error(
            error_code::UNKNOWN_TARGET,
            &format!(
                "Cannot send '{}': peer '{}' is not connected in network '{}'",
                kind.as_str(),
                shorten(target),
                shorten(network)
            ),
        ),
        Err(RouteError::ClusterUnavailable) => protocol::error(
            error_code::CLUSTER_UNAVAILABLE,
            &format!(
                "Cannot send '{}': peer '{}' is not on this server, and the cluster's broker (Redis) cannot be \
                 reached right now; try again shortly",
                kind.as_str(),
                shorten(target)
            ),
        ),
    };
    state.metrics.dropped(match delivered {
        Err(RouteError::NotInNetwork) => Dropped::NotInNetwork,
        Err(RouteError::ClusterUnavailable) => Dropped::ClusterUnavailable,
        _ => Dropped::UnknownTarget,
    });
    reject(state, from, reply);
}

/// Sends `from` an `error` reply and counts it. The connection stays open: one bad message is a
/// bug in a client, not an attack.
fn reject(state: &ServerState, from: &PeerHandle, error: String) {
    state.note_rejected();
    from.send_text(error);
}

/// `text` cut to at most [`MAX_ECHOED_LEN`] bytes, on a character boundary.
fn shorten(text: &str) -> &str {
    let mut end = text.len().min(MAX_ECHOED_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(40);
        assert!(shorten(&long).len() <= 64);
        assert!(long.starts_with(shorten(&long)));
    }
}
