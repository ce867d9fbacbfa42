//! What the server sends a peer: one function per message, each returning ready-to-send JSON text
//! with the fields docs/protocol.md lists (which follow the JavaScript reference).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::client::SignalKind;
use crate::protocol::envelope::{ServerMessage, departure_data, encode, raw, to_json};
use crate::protocol::peer_id::PeerId;
use crate::util::clock::unix_millis;

/// The members of a JSON object in their original order, values kept as raw JSON.
struct RawMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// The `data` of a `peer-discovered` for `peer`: `{"peerId","isHub",...announced fields}`.
///
/// The announced fields are passed through in their order, but `peerId` and `isHub` are always the
/// server's own values **(safer)**: the reference lets announce data override them, so a peer could
/// announce itself under somebody else's id (docs/protocol.md §2).
pub fn discovery_data(peer: PeerId, is_hub: bool, announced: Option<&RawValue>) -> Box<RawValue> {
    let mut json = String::with_capacity(64 + announced.map_or(0, |d| d.get().len()));
    json.push_str("{\"peerId\":\"");
    json.push_str(peer.as_str());
    json.push_str("\",\"isHub\":");
    json.push_str(if is_hub { "true" } else { "false" });
    let members = announced.and_then(|d| serde_json::from_str::<RawMembers<'_>>(d.get()).ok());
    for (name, value) in members.iter().flat_map(|m| m.0.iter()) {
        if name == "peerId" || name == "isHub" {
            continue;
        }
        json.push(',');
        json.push_str(&to_json(&name));
        json.push(':');
        json.push_str(value.get());
    }
    json.push('}');
    raw(json)
}

/// `connected`: the first message on every accepted connection.
pub fn connected(peer: PeerId) -> String {
    let data = raw(format!("{{\"peerId\":\"{peer}\"}}"));
    encode(ServerMessage::from_system("connected", Some(&data)))
}

/// `peer-discovered`, telling `recipient` about the peer described by `data` (see [`discovery_data`]).
pub fn peer_discovered(data: &RawValue, network: &str, recipient: PeerId) -> String {
    encode(ServerMessage {
        network_name: Some(network),
        target_peer_id: Some(recipient.as_str()),
        ..ServerMessage::from_system("peer-discovered", Some(data))
    })
}

/// `peer-discovered` for every other member of `network`, about the peer described by `data`:
/// built once, addressed to each recipient as it is written (see [`ToEach`]).
pub fn peer_discovered_to_each(data: &RawValue, network: &str) -> ToEach {
    ToEach::new(ServerMessage {
        network_name: Some(network),
        ..ServerMessage::from_system("peer-discovered", Some(data))
    })
}

/// `peer-disconnected` for every remaining member of `network`, about `peer` (see [`ToEach`]).
pub fn peer_disconnected_to_each(peer: PeerId, is_hub: bool, reason: &str, network: &str) -> ToEach {
    let now = unix_millis();
    let data = departure_data(peer, is_hub, reason, now);
    ToEach::new(ServerMessage {
        network_name: Some(network),
        timestamp: now,
        ..ServerMessage::from_system("peer-disconnected", Some(&data))
    })
}

/// One message for many recipients that differ only in `targetPeerId`: a network's members hearing
/// that someone arrived or left. The JSON is built once, with a stand-in id where the recipient's
/// goes; each recipient's copy exists only as it is written, so a broadcast to a thousand peers is
/// one allocation, not a thousand.
#[derive(Debug)]
pub struct ToEach {
    text: String,
    /// Where the recipient's id goes in `text`.
    at: usize,
}

impl ToEach {
    /// Stands in for the recipient's id until it is written.
    const STAND_IN: &'static str = "0000000000000000000000000000000000000000";
    /// The member that holds it, as the JSON encoder writes it.
    const MEMBER: &'static str = r#""targetPeerId":"0000000000000000000000000000000000000000""#;

    fn new(message: ServerMessage<'_>) -> ToEach {
        let text = encode(ServerMessage { target_peer_id: Some(ToEach::STAND_IN), ..message });
        // `targetPeerId` is the last string member (only the timestamp follows), so the last
        // occurrence is it, whatever the data holds.
        let key_len = ToEach::MEMBER.len() - ToEach::STAND_IN.len() - 1;
        let at = text.rfind(ToEach::MEMBER).map_or(0, |at| at + key_len);
        ToEach { text, at }
    }

    /// The text before and after the recipient's id.
    pub fn around_recipient(&self) -> (&str, &str) {
        (&self.text[..self.at], &self.text[self.at + ToEach::STAND_IN.len()..])
    }

    /// The length of each recipient's copy, in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// `recipient`'s copy, whole.
    #[cfg(test)]
    pub fn for_recipient(&self, recipient: PeerId) -> String {
        let (before, after) = self.around_recipient();
        [before, recipient.as_str(), after].concat()
    }
}

/// Several messages for one recipient built into one block: the `peer-discovered` of every member
/// of a network for the peer that just joined it (a thousand messages, two allocations).
#[derive(Debug, Default)]
pub struct Batch {
    json: Vec<u8>,
    /// Where each message ends in `json`.
    ends: Vec<usize>,
}

impl Batch {
    /// An empty batch with room for `bytes` of messages, `count` of them.
    pub fn with_capacity(count: usize, bytes: usize) -> Batch {
        Batch { json: Vec::with_capacity(bytes), ends: Vec::with_capacity(count) }
    }

    /// Adds `peer-discovered` telling `recipient` about the peer described by `data`.
    pub fn push_peer_discovered(&mut self, data: &RawValue, network: &str, recipient: PeerId) {
        let message = ServerMessage {
            network_name: Some(network),
            target_peer_id: Some(recipient.as_str()),
            ..ServerMessage::from_system("peer-discovered", Some(data))
        };
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.json, &message);
        self.ends.push(self.json.len());
    }

    /// The messages, in order, each a JSON text.
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(start, end)| &self.json[start..end])
    }

    /// How many messages it holds.
    pub fn count(&self) -> usize {
        self.ends.len()
    }

    /// Their bytes in all.
    pub fn bytes(&self) -> usize {
        self.json.len()
    }
}

/// `peer-disconnected`, telling `recipient` that `peer` left `network`.
///
/// `networkName` is included even though the reference's broadcast omits it: the client drops
/// messages whose network is not its own, so without it only `global` peers would ever hear.
pub fn peer_disconnected(peer: PeerId, is_hub: bool, reason: &str, network: &str, recipient: PeerId) -> String {
    let now = unix_millis();
    let data = departure_data(peer, is_hub, reason, now);
    encode(ServerMessage {
        network_name: Some(network),
        target_peer_id: Some(recipient.as_str()),
        timestamp: now,
        ..ServerMessage::from_system("peer-disconnected", Some(&data))
    })
}

/// A routed signal, as delivered to its target. `from` is always the sending connection's own id
/// **(safer)** (docs/protocol.md §3).
pub fn signal(kind: SignalKind, data: Option<&RawValue>, from: PeerId, target: PeerId, network: &str) -> String {
    encode(ServerMessage {
        network_name: Some(network),
        from_peer_id: from.as_str(),
        target_peer_id: Some(target.as_str()),
        ..ServerMessage::from_system(kind.as_str(), data)
    })
}

/// `pong`, the answer to a client's `ping`.
pub fn pong(recipient: PeerId) -> String {
    let now = unix_millis();
    let data = raw(format!("{{\"timestamp\":{now}}}"));
    encode(ServerMessage {
        target_peer_id: Some(recipient.as_str()),
        timestamp: now,
        ..ServerMessage::from_system("pong", Some(&data))
    })
}

/// Error codes the server puts in the `code` field of its `error` replies, so clients can tell
/// them apart without parsing the human-readable text.
pub mod error_code {
    /// The reference's reply to a `type` it does not route.
    pub const UNSUPPORTED_TYPE: &str = "unsupported-type";
    /// A signal from a peer that has not announced, or that names another network than its own.
    pub const NOT_IN_NETWORK: &str = "not-in-network";
    /// A signal for a peer that is not connected in the sender's network.
    pub const UNKNOWN_TARGET: &str = "unknown-target";
    /// A binary frame: the protocol is JSON text only.
    pub const BINARY_FRAME: &str = "binary-not-supported";
    /// Messages beyond `MAX_MESSAGES_PER_SEC` / `MESSAGE_BURST`: dropped.
    pub const RATE_LIMITED: &str = "rate-limited";
    /// An announce as a hub from a connection without the hub credential: it stays an ordinary peer.
    pub const NOT_A_HUB_LINK: &str = "not-a-hub-link";
    /// Cluster mode: a signal for a peer not on this instance while Redis cannot be reached.
    pub const CLUSTER_UNAVAILABLE: &str = "cluster-unavailable";
}

/// `error`: `{"type":"error","error":<text>,"code":<code>,"timestamp":<ms>}`.
pub fn error(code: &str, text: &str) -> String {
    #[derive(Serialize)]
    struct ErrorMessage<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        code: &'a str,
        timestamp: u64,
    }
    to_json(&ErrorMessage { kind: "error", error: text, code, timestamp: unix_millis() })
}

/// The reference's text for a `type` it does not route (docs/protocol.md §2).
pub fn unsupported_type_text(kind: &str) -> String {
    format!(
        "Signaling server does not route '{kind}' messages. Use WebRTC data channels for peer-to-peer communication."
    )
}

#[cfg(test)]
mod tests {
    use crate::protocol::peer_id::PeerId;
    use crate::protocol::*;
    use serde_json::value::RawValue;
    use serde_json::{Value, json};

    /// A broadcast built once reads, for each recipient, as the message built for it alone would,
    /// also when the announced data holds the stand-in id itself.
    #[test]
    fn a_message_to_each_is_the_message_to_one_with_the_recipient_filled_in() {
        let peer = PeerId::parse(&"ab".repeat(20)).unwrap();
        let recipient = PeerId::parse(&"Cd".repeat(20)).unwrap();
        let tricky = RawValue::from_string(format!("{{\"targetPeerId\":\"{}\"}}", "0".repeat(40))).unwrap();
        let data = discovery_data(peer, false, Some(&tricky));
        let without_time = |text: &str| {
            let mut value: Value = serde_json::from_str(text).unwrap();
            value.as_object_mut().unwrap().remove("timestamp");
            value
        };
        let to_each = peer_discovered_to_each(&data, "net");
        assert_eq!(
            without_time(&to_each.for_recipient(recipient)),
            without_time(&peer_discovered(&data, "net", recipient))
        );
        assert_eq!(to_each.len(), to_each.for_recipient(recipient).len());
        let gone = peer_disconnected_to_each(peer, true, "goodbye", "net");
        let gone: Value = serde_json::from_str(&gone.for_recipient(recipient)).unwrap();
        assert_eq!(gone["targetPeerId"], recipient.as_str());
        assert_eq!(gone["data"]["reason"], "goodbye");
        let mut batch = Batch::default();
        for n in 1..=3u8 {
            let other = PeerId::parse(&format!("{n:02x}").repeat(20)).unwrap();
            batch.push_peer_discovered(&discovery_data(other, false, None), "net", recipient);
        }
        let texts: Vec<Value> = batch.texts().map(|text| serde_json::from_slice(text).unwrap()).collect();
        assert_eq!(texts.len(), 3);
        assert_eq!(texts[2]["data"]["peerId"], "03".repeat(20));
        assert_eq!(texts[0]["targetPeerId"], recipient.as_str());
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn id(text: &str) -> PeerId {
        PeerId::parse(text).unwrap()
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn discovery_data_passes_fields_through_but_never_lets_them_override_identity() {
        let announced =
            RawValue::from_string(r#"{"peerId":"spoof","isHub":true,"name":"n","nested":{"a":[1]}}"#.into()).unwrap();
        let data = discovery_data(id(A), false, Some(&announced));
        assert_eq!(value(data.get()), json!({"peerId": A, "isHub": false, "name": "n", "nested": {"a": [1]}}));
        assert_eq!(value(discovery_data(id(A), true, None).get()), json!({"peerId": A, "isHub": true}));
    }

    #[test]
    fn server_messages_have_the_documented_fields() {
        let v = value(&connected(id(A)));
        assert_eq!(
            (v["type"].as_str(), v["data"]["peerId"].as_str(), v["fromPeerId"].as_str()),
            (Some("connected"), Some(A), Some("system"))
        );
        assert!(v["timestamp"].is_u64());

        let data = discovery_data(id(A), false, None);
        let v = value(&peer_discovered(&data, "net", id(B)));
        assert_eq!(v["type"], "peer-discovered");
        assert_eq!((v["networkName"].as_str(), v["targetPeerId"].as_str()), (Some("net"), Some(B)));

        let v = value(&peer_disconnected(id(A), false, "goodbye", "net", id(B)));
        assert_eq!(v["data"]["peerId"], A);
        assert_eq!(v["data"]["reason"], "goodbye");
        assert_eq!((v["networkName"].as_str(), v["targetPeerId"].as_str()), (Some("net"), Some(B)));

        let sdp = RawValue::from_string(r#"{"sdp":"x"}"#.into()).unwrap();
        let v = value(&signal(SignalKind::Offer, Some(&sdp), id(A), id(B), "global"));
        assert_eq!(
            v,
            json!({"type":"offer","data":{"sdp":"x"},"networkName":"global","fromPeerId":A,"targetPeerId":B,"timestamp":v["timestamp"]})
        );

        let v = value(&pong(id(A)));
        assert_eq!((v["type"].as_str(), v["targetPeerId"].as_str()), (Some("pong"), Some(A)));
        assert!(v["data"]["timestamp"].is_u64());

        let v = value(&error(error_code::UNSUPPORTED_TYPE, &unsupported_type_text("chat")));
        assert_eq!(v["type"], "error");
        assert!(v["error"].as_str().unwrap().starts_with("Signaling server does not route 'chat' messages."));
    }
}
