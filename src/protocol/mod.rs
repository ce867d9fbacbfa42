//! The messages on the wire: decoding what a client sends and encoding what the server sends.
//!
//! No I/O happens here. A client frame becomes a [`ClientMessage`] (or a [`MessageError`] the server can
//! answer with); every server message is built by one function below and comes out as ready-to-send
//! JSON text. A signal's `data` is never parsed: it stays a `&RawValue` and is copied through verbatim.
//! Field names follow `docs/protocol.md`, which follows the JavaScript reference.

pub mod peer_id;

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::peer_id::PeerId;
use crate::util::clock::unix_millis;

/// Network a message belongs to when it names none (or an empty one), as in the reference client.
pub const DEFAULT_NETWORK: &str = "global";
/// Longest accepted network name, in bytes.
pub const MAX_NETWORK_NAME_LEN: usize = 256;

/// The signal types the server routes to a target peer (docs/protocol.md, "What a peer sends"). The
/// first three are the reference's; the rest are sent by the real client and routed the same way.
///
/// `connection-rejected` is deliberately not among them: the real client's glare handling relies on
/// the server answering it with an error instead of routing it (see the protocol document).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
    RenegotiationOffer,
    RenegotiationAnswer,
    IceRestartOffer,
    IceRestartAnswer,
}

impl SignalKind {
    const ALL: [SignalKind; 7] = [
        SignalKind::Offer,
        SignalKind::Answer,
        SignalKind::IceCandidate,
        SignalKind::RenegotiationOffer,
        SignalKind::RenegotiationAnswer,
        SignalKind::IceRestartOffer,
        SignalKind::IceRestartAnswer,
    ];

    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "ice-candidate",
            SignalKind::RenegotiationOffer => "renegotiation-offer",
            SignalKind::RenegotiationAnswer => "renegotiation-answer",
            SignalKind::IceRestartOffer => "ice-restart-offer",
            SignalKind::IceRestartAnswer => "ice-restart-answer",
        }
    }

    pub fn from_type(kind: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// One decoded client frame. Borrowed from the frame's text, so decoding copies nothing big.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// Join `network` and tell its peers; `data` is the peer's own description, passed through.
    Announce { network: Cow<'a, str>, data: Option<&'a RawValue> },
    /// A WebRTC signal for one target peer. `target` is `None` when the client named none.
    Signal { kind: SignalKind, network: Cow<'a, str>, target: Option<Cow<'a, str>>, data: Option<&'a RawValue> },
    /// The peer is leaving its network.
    Goodbye,
    /// Application-level keep-alive, answered with `pong`.
    Ping,
    /// `cleanup` / `cleanup-all`: sent by the client, accepted and ignored.
    Cleanup,
    /// Hub-to-hub traffic (`peer-discovered`, `peer-disconnected`, `hub-heartbeat`, `hub-probe`,
    /// `hub-hello`): only hub links may send it.
    HubOnly,
    /// Any other `type`: answered with the reference's error.
    Unsupported { kind: Cow<'a, str> },
}

/// Why a client frame could not be understood. Its `Display` is sent back in the `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The text is not JSON at all.
    InvalidJson(String),
    /// It is JSON, but not an object with a string `type` and correctly typed fields.
    InvalidShape(String),
    /// `networkName` longer than [`MAX_NETWORK_NAME_LEN`].
    NetworkNameTooLong,
    /// An announce whose `data` is not an object, or is larger than `MAX_PEER_DATA_BYTES`.
    InvalidAnnounceData(String),
}

impl MessageError {
    /// Stable machine-readable code, sent as the error reply's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::InvalidJson(_) => "invalid-json",
            MessageError::InvalidShape(_) => "invalid-message",
            MessageError::NetworkNameTooLong => "invalid-network",
            MessageError::InvalidAnnounceData(_) => "invalid-announce",
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::InvalidJson(detail) => write!(f, "Invalid JSON: {detail}"),
            MessageError::InvalidShape(detail) => {
                write!(f, "Invalid message: expected a JSON object with a string \"type\" ({detail})")
            }
            MessageError::NetworkNameTooLong => {
                write!(f, "Invalid message: networkName is longer than {MAX_NETWORK_NAME_LEN} bytes")
            }
            MessageError::InvalidAnnounceData(why) => write!(f, "Invalid announce: data {why}"),
        }
    }
}

/// The fields of a client frame the server reads; everything else (`maxPeers`, …) is ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(rename = "networkName", default, borrow)]
    network_name: Option<Cow<'a, str>>,
    #[serde(rename = "targetPeerId", default, borrow)]
    target_peer_id: Option<Cow<'a, str>>,
}

/// Decodes one client text frame.
pub fn parse_client_message(text: &str) -> Result<ClientMessage<'_>, MessageError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            MessageError::InvalidJson(err.to_string())
        } else {
            MessageError::InvalidShape(err.to_string())
        }
    })?;
    // The client's `networkName || 'global'`: absent, null and "" all mean the default network.
    let network = match envelope.network_name {
        Some(name) if name.len() > MAX_NETWORK_NAME_LEN => {
            return Err(MessageError::NetworkNameTooLong);
        }
        Some(name) if !name.is_empty() => name,
        _ => Cow::Borrowed(DEFAULT_NETWORK),
    };
    let data = envelope.data;
    Ok(match envelope.kind.as_ref() {
        "announce" => {
            validate_announce_data(data)?;
            ClientMessage::Announce { network, data }
        }
        "goodbye" => ClientMessage::Goodbye,
        "ping" => ClientMessage::Ping,
        "cleanup" | "cleanup-all" => ClientMessage::Cleanup,
        "peer-discovered" | "peer-disconnected" | "hub-heartbeat" | "hub-probe" | "hub-hello" => ClientMessage::HubOnly,
        other => match SignalKind::from_type(other) {
            Some(kind) => {
                let target = envelope.target_peer_id.filter(|t| !t.is_empty());
                ClientMessage::Signal { kind, network, target, data }
            }
            None => ClientMessage::Unsupported { kind: envelope.kind },
        },
    })
}

/// Checks an announce's `data` for the server's limit on what one peer may store: it is copied into
/// every `peer-discovered` its network receives, so it is kept far below the message size limit.
pub fn check_announce_size(data: Option<&RawValue>, limit: usize) -> Result<(), MessageError> {
    match data {
        Some(data) if data.get().len() > limit => {
            Err(MessageError::InvalidAnnounceData(format!("is larger than {limit} bytes (MAX_PEER_DATA_BYTES)")))
        }
        _ => Ok(()),
    }
}

fn validate_announce_data(data: Option<&RawValue>) -> Result<(), MessageError> {
    let Some(data) = data else { return Ok(()) };
    if !data.get().starts_with('{') {
        return Err(MessageError::InvalidAnnounceData("must be a JSON object".into()));
    }
    Ok(())
}

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

/// Whether an announce makes the peer a hub: `data.isHub === true`, or announcing into the hub
/// mesh namespace (docs/protocol.md §2).
pub fn announces_hub(data: Option<&RawValue>, network: &str, hub_mesh_namespace: &str) -> bool {
    #[derive(Deserialize)]
    struct IsHub {
        #[serde(rename = "isHub", default)]
        is_hub: Option<serde_json::Value>,
    }
    let flagged = data
        .and_then(|d| serde_json::from_str::<IsHub>(d.get()).ok())
        .is_some_and(|d| d.is_hub == Some(serde_json::Value::Bool(true)));
    flagged || network == hub_mesh_namespace
}

/// Every server message has this shape; absent parts are left out of the JSON. `relay` is only
/// ever set on messages to other hubs.
#[derive(Serialize)]
struct ServerMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(rename = "networkName", skip_serializing_if = "Option::is_none")]
    network_name: Option<&'a str>,
    #[serde(rename = "fromPeerId")]
    from_peer_id: &'a str,
    #[serde(rename = "targetPeerId", skip_serializing_if = "Option::is_none")]
    target_peer_id: Option<&'a str>,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<&'a Relay>,
}

/// Sender id of messages the server itself originates.
const SYSTEM: &str = "system";

impl<'a> ServerMessage<'a> {
    /// A message of `kind` from the server itself, stamped now, for no one in particular: the
    /// builders below set whatever else their message has (`..ServerMessage::from_system(..)`).
    fn from_system(kind: &'a str, data: Option<&'a RawValue>) -> ServerMessage<'a> {
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

/// The `data` of a `peer-disconnected`: `{"peerId","isHub","reason","timestamp"}`.
fn departure_data(peer: PeerId, is_hub: bool, reason: &str, timestamp: u64) -> Box<RawValue> {
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

fn encode(message: ServerMessage<'_>) -> String {
    to_json(&message)
}

/// Serialises a value built from strings, numbers, booleans and already-valid raw JSON. That cannot
/// fail, so the fallback is never used; it exists so that no `unwrap` sits on the message path.
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("null"))
}

/// Wraps text this module built as valid JSON.
fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn id(text: &str) -> PeerId {
        PeerId::parse(text).unwrap()
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn announce_defaults_to_the_global_network() {
        for text in [
            r#"{"type":"announce","data":{"peerId":"x"}}"#,
            r#"{"type":"announce","networkName":null}"#,
            r#"{"type":"announce","networkName":""}"#,
        ] {
            match parse_client_message(text).unwrap() {
                ClientMessage::Announce { network, .. } => assert_eq!(network, "global"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn signals_keep_their_data_verbatim_and_every_kind_is_routed() {
        for kind in SignalKind::ALL {
            let text = format!(
                r#"{{"type":"{}","networkName":"n","targetPeerId":"{B}","data":{{"sdp":"v=0\r\n","n":1.50}},"maxPeers":3}}"#,
                kind.as_str()
            );
            match parse_client_message(&text).unwrap() {
                ClientMessage::Signal { kind: parsed, network, target, data } => {
                    assert_eq!(parsed, kind);
                    assert_eq!(network, "n");
                    assert_eq!(target.as_deref(), Some(B));
                    assert_eq!(data.unwrap().get(), r#"{"sdp":"v=0\r\n","n":1.50}"#);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn control_types_are_recognised() {
        assert!(matches!(parse_client_message(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping)));
        assert!(matches!(parse_client_message(r#"{"type":"goodbye","data":{}}"#), Ok(ClientMessage::Goodbye)));
        assert!(matches!(parse_client_message(r#"{"type":"cleanup"}"#), Ok(ClientMessage::Cleanup)));
        assert!(matches!(parse_client_message(r#"{"type":"cleanup-all"}"#), Ok(ClientMessage::Cleanup)));
        match parse_client_message(r#"{"type":"chat"}"#) {
            Ok(ClientMessage::Unsupported { kind }) => assert_eq!(kind, "chat"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_becomes_an_error_value() {
        let cases = [
            ("not json", "invalid-json"),
            ("{\"type\":", "invalid-json"),
            ("[1,2]", "invalid-message"),
            ("\"announce\"", "invalid-message"),
            ("{}", "invalid-message"),
            (r#"{"type":5}"#, "invalid-message"),
            (r#"{"type":"offer","targetPeerId":7}"#, "invalid-message"),
            (r#"{"type":"announce","networkName":["x"]}"#, "invalid-message"),
            (r#"{"type":"announce","data":"text"}"#, "invalid-announce"),
        ];
        for (text, code) in cases {
            let err = parse_client_message(text).unwrap_err();
            assert_eq!(err.code(), code, "{text}: {err}");
        }
        let long = format!(r#"{{"type":"announce","networkName":"{}"}}"#, "n".repeat(MAX_NETWORK_NAME_LEN + 1));
        assert_eq!(parse_client_message(&long).unwrap_err(), MessageError::NetworkNameTooLong);
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
    fn hub_detection_follows_the_reference() {
        let flagged = RawValue::from_string(r#"{"isHub":true}"#.into()).unwrap();
        let stringy = RawValue::from_string(r#"{"isHub":"true"}"#.into()).unwrap();
        assert!(announces_hub(Some(&flagged), "global", "pigeonhub-mesh"));
        assert!(!announces_hub(Some(&stringy), "global", "pigeonhub-mesh"));
        assert!(announces_hub(None, "pigeonhub-mesh", "pigeonhub-mesh"));
        assert!(!announces_hub(None, "global", "pigeonhub-mesh"));
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

// ---------------------------------------------------------------------------------------------
// Hub links (docs/protocol.md §5). Messages between hubs are the reference's messages plus one optional
// field, `relay`, which PeerPigeon-rs hubs use to relay across any number of hops; the JavaScript
// hub ignores it.

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
