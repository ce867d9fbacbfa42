//! What a peer sends: decoding a client frame into a [`ClientMessage`], or into a [`MessageError`]
//! the server can answer with (docs/protocol.md §2). A signal's `data` is never parsed: it stays a
//! `&RawValue`, borrowed from the frame, and is copied through verbatim.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

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

#[cfg(test)]
mod tests {
    use crate::protocol::*;
    use serde_json::value::RawValue;

    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

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
    fn hub_detection_follows_the_reference() {
        let flagged = RawValue::from_string(r#"{"isHub":true}"#.into()).unwrap();
        let stringy = RawValue::from_string(r#"{"isHub":"true"}"#.into()).unwrap();
        assert!(announces_hub(Some(&flagged), "global", "pigeonhub-mesh"));
        assert!(!announces_hub(Some(&stringy), "global", "pigeonhub-mesh"));
        assert!(announces_hub(None, "pigeonhub-mesh", "pigeonhub-mesh"));
        assert!(!announces_hub(None, "global", "pigeonhub-mesh"));
    }
}
