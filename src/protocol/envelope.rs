//! The shape every server message shares (`type`, `data`, `networkName`, `fromPeerId`,
//! `targetPeerId`, `timestamp`, and between hubs `relay`), and the helpers that turn it into JSON
//! text. `messages` and `link` build their messages with it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::peer_id::PeerId;
use crate::util::clock::unix_millis;

/// Relay bookkeeping carried by every message a PeerPigeon-rs hub sends over a hub link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Relay {
    /// Message id (16 hex digits): a hub handles each id once, however many paths bring it.
    pub id: String,
    /// Hub the message is about or comes from (its hub peer id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Stamp of the announcement a discovery or departure is about: later ones win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Links crossed so far.
    #[serde(default)]
    pub hops: u32,
    /// On a heartbeat: the id of the `hub-probe` it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// Every server message has this shape; absent parts are left out of the JSON. `relay` is only
/// ever set on messages to other hubs.
#[derive(Serialize)]
pub(crate) struct ServerMessage<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(rename = "networkName", skip_serializing_if = "Option::is_none")]
    pub(crate) network_name: Option<&'a str>,
    #[serde(rename = "fromPeerId")]
    pub(crate) from_peer_id: &'a str,
    #[serde(rename = "targetPeerId", skip_serializing_if = "Option::is_none")]
    pub(crate) target_peer_id: Option<&'a str>,
    pub(crate) timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relay: Option<&'a Relay>,
}

/// Sender id of messages the server itself originates.
const SYSTEM: &str = "system";

impl<'a> ServerMessage<'a> {
    /// A message of `kind` from the server itself, stamped now, for no one in particular: the
    /// builders below set whatever else their message has (`..ServerMessage::from_system(..)`).
    pub(crate) fn from_system(kind: &'a str, data: Option<&'a RawValue>) -> ServerMessage<'a> {
        ServerMessage {
            kind,
            data,
            network_name: None,
            from_peer_id: SYSTEM,
            target_peer_id: None,
            timestamp: unix_millis(),
            relay: None,
        }
    }
}

/// The `data` of a `peer-disconnected`: `{"peerId","isHub","reason","timestamp"}`.
pub(crate) fn departure_data(peer: PeerId, is_hub: bool, reason: &str, timestamp: u64) -> Box<RawValue> {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "peerId")]
        peer_id: PeerId,
        #[serde(rename = "isHub")]
        is_hub: bool,
        reason: &'a str,
        timestamp: u64,
    }
    raw(to_json(&Data { peer_id: peer, is_hub, reason, timestamp }))
}

pub(crate) fn encode(message: ServerMessage<'_>) -> String {
    to_json(&message)
}

/// Serialises a value built from strings, numbers, booleans and already-valid raw JSON. That cannot
/// fail, so the fallback is never used; it exists so that no `unwrap` sits on the message path.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("null"))
}

/// Wraps text this module built as valid JSON.
pub(crate) fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}
