//! What hubs send each other over a link (docs/protocol.md §5): the reference's messages plus one
//! optional field, `relay`, which PeerPigeon-rs hubs use to relay across any number of hops (the
//! JavaScript hub ignores it), and the hub-only messages (`hub-hello`, `hub-heartbeat`, `hub-probe`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::client::{DEFAULT_NETWORK, MessageError, SignalKind};
use crate::protocol::envelope::{Relay, ServerMessage, departure_data, encode, raw, to_json};
use crate::protocol::peer_id::PeerId;
use crate::util::clock::unix_millis;

/// Capability a PeerPigeon-rs hub advertises, so that its peers send it heartbeats and relay fields.
pub const RS_CAPABILITY: &str = "peerpigeon-rs-relay";

/// One message received over a hub link, as far as a hub reads it.
#[derive(Debug, Deserialize)]
pub struct LinkMessage<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(rename = "networkName", default, borrow)]
    pub network_name: Option<Cow<'a, str>>,
    #[serde(rename = "fromPeerId", default, borrow)]
    pub from_peer_id: Option<Cow<'a, str>>,
    #[serde(rename = "targetPeerId", default, borrow)]
    pub target_peer_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub relay: Option<Relay>,
    /// An `error` reply's code and text (a hub that refused our link says why).
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
}

impl LinkMessage<'_> {
    /// The message's network, `global` when it names none.
    pub fn network(&self) -> &str {
        self.network_name.as_deref().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NETWORK)
    }
}

/// Decodes a message received over a hub link.
pub fn parse_link_message(text: &str) -> Result<LinkMessage<'_>, MessageError> {
    serde_json::from_str(text).map_err(|err| MessageError::InvalidShape(err.to_string()))
}

/// The `peerId`, `isHub` and capabilities inside a `peer-discovered`, `peer-disconnected` or
/// `hub-hello` message's data.
#[derive(Debug, Default, Deserialize)]
pub struct PeerFields {
    #[serde(rename = "peerId", default)]
    pub peer_id: Option<String>,
    #[serde(rename = "isHub", default)]
    pub is_hub: Option<serde_json::Value>,
    #[serde(rename = "hubId", default)]
    pub hub_id: Option<String>,
    #[serde(default)]
    pub capabilities: Option<Vec<serde_json::Value>>,
}

impl PeerFields {
    /// Reads the fields from `data` (missing or malformed data gives empty fields).
    pub fn of(data: Option<&RawValue>) -> PeerFields {
        data.and_then(|d| serde_json::from_str(d.get()).ok()).unwrap_or_default()
    }

    pub fn is_hub(&self) -> bool {
        self.is_hub == Some(serde_json::Value::Bool(true))
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().flatten().any(|c| c.as_str() == Some(name))
    }
}

/// The announce a hub sends first on a link it opens (docs/protocol.md §5).
pub fn hub_announce(namespace: &str, host: &str, port: u16) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "isHub")]
        is_hub: bool,
        port: u16,
        host: &'a str,
        capabilities: [&'a str; 3],
        timestamp: u64,
    }
    let data = Data {
        is_hub: true,
        port,
        host,
        capabilities: ["signaling", "relay", RS_CAPABILITY],
        timestamp: unix_millis(),
    };
    let data = raw(to_json(&data));
    #[derive(Serialize)]
    struct Announce<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(rename = "networkName")]
        network_name: &'a str,
        data: &'a RawValue,
    }
    to_json(&Announce { kind: "announce", network_name: namespace, data: &data })
}

/// `hub-hello`: a PeerPigeon-rs hub's answer to a hub that announced to it, telling it who it
/// reached and that relay fields and heartbeats are understood. The JavaScript hub logs and ignores it.
pub fn hub_hello(hub: PeerId) -> String {
    let data = raw(format!("{{\"hubId\":\"{hub}\",\"capabilities\":[\"signaling\",\"relay\",\"{RS_CAPABILITY}\"]}}"));
    encode(ServerMessage::from_system("hub-hello", Some(&data)))
}

/// `hub-heartbeat`: flooded by each PeerPigeon-rs hub so the others know it is still reachable;
/// also its answer to a `hub-probe` (then `relay.probe` names the probe).
pub fn hub_heartbeat(relay: &Relay) -> String {
    encode(ServerMessage { relay: Some(relay), ..ServerMessage::from_system("hub-heartbeat", None) })
}

/// `hub-probe`: flooded by a PeerPigeon-rs hub that lost a link; every hub that still reaches it
/// answers with a heartbeat, so each can tell which hubs the lost link cut off.
pub fn hub_probe(relay: &Relay) -> String {
    encode(ServerMessage { relay: Some(relay), ..ServerMessage::from_system("hub-probe", None) })
}

/// `peer-discovered` sent to another hub: a peer of `network` described by `data`.
pub fn link_peer_discovered(data: &RawValue, network: &str, relay: &Relay) -> String {
    encode(ServerMessage {
        network_name: Some(network),
        relay: Some(relay),
        ..ServerMessage::from_system("peer-discovered", Some(data))
    })
}

/// `peer-disconnected` sent to another hub.
pub fn link_peer_disconnected(peer: PeerId, is_hub: bool, reason: &str, network: &str, relay: &Relay) -> String {
    let data = departure_data(peer, is_hub, reason, unix_millis());
    encode(ServerMessage {
        network_name: Some(network),
        relay: Some(relay),
        ..ServerMessage::from_system("peer-disconnected", Some(&data))
    })
}

/// A signal relayed to another hub, keeping its original sender.
pub fn link_signal(
    kind: SignalKind,
    data: Option<&RawValue>,
    from: PeerId,
    target: PeerId,
    network: &str,
    relay: &Relay,
) -> String {
    encode(ServerMessage {
        network_name: Some(network),
        from_peer_id: from.as_str(),
        target_peer_id: Some(target.as_str()),
        relay: Some(relay),
        ..ServerMessage::from_system(kind.as_str(), data)
    })
}

#[cfg(test)]
mod tests {
    use crate::protocol::peer_id::PeerId;
    use crate::protocol::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn id(text: &str) -> PeerId {
        PeerId::parse(text).unwrap()
    }

    #[test]
    fn link_messages_round_trip_their_relay_fields() {
        let relay = Relay { id: "00ff".into(), origin: Some(A.into()), seq: Some(7), hops: 2, probe: None };
        let data = discovery_data(id(B), false, None);
        let text = link_peer_discovered(&data, "net", &relay);
        let parsed = parse_link_message(&text).unwrap();
        assert_eq!(parsed.kind, "peer-discovered");
        assert_eq!(parsed.network(), "net");
        assert_eq!(parsed.relay, Some(relay.clone()));
        assert_eq!(PeerFields::of(parsed.data).peer_id.as_deref(), Some(B));

        let text = link_signal(SignalKind::Answer, None, id(A), id(B), "net", &relay);
        let parsed = parse_link_message(&text).unwrap();
        assert_eq!(SignalKind::from_type(&parsed.kind), Some(SignalKind::Answer));
        assert_eq!(parsed.from_peer_id.as_deref(), Some(A));

        // What the JavaScript hub sends: no relay field.
        let js = r#"{"type":"peer-discovered","data":{"peerId":"x","isHub":false},"networkName":"n","fromPeerId":"system","timestamp":1}"#;
        assert_eq!(parse_link_message(js).unwrap().relay, None);
        let announce: serde_json::Value = serde_json::from_str(&hub_announce("mesh", "h", 1)).unwrap();
        assert_eq!(announce["data"]["isHub"], true);
        assert_eq!(announce["networkName"], "mesh");
        let hello_text = hub_hello(id(A));
        let hello = parse_link_message(&hello_text).unwrap();
        let fields = PeerFields::of(hello.data);
        assert_eq!(fields.hub_id.as_deref(), Some(A));
        assert!(fields.has_capability(RS_CAPABILITY));
    }
}
