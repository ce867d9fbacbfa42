//! What the instances of a cluster tell each other through Redis (docs/protocol.md §8). Peers
//! never see these messages; they are JSON like the rest, on Redis channels of the cluster's
//! namespace. Every message names the instance that sent it, so each instance can ignore its own
//! and follow the others'.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::protocol::client::MessageError;
use crate::protocol::envelope::to_json;

/// One message between instances, as read. Which fields are set depends on `kind`:
///
/// | `type` | channel | fields |
/// |---|---|---|
/// | `announce` | the network's | `peerId`, `networkName`, `isHub`, `seq`, `data` (its `peer-discovered` data) |
/// | `left` | the network's | `peerId`, `networkName`, `isHub`, `seq`, `reason` |
/// | `sync` | the network's | `networkName`, `members`: all the sender's peers there; answer with `members` |
/// | `members` | the asker's instance channel | `networkName`, `members` (the answer to `sync`) |
/// | `signal` | the target's instance channel | `kind`, `fromPeerId`, `targetPeerId`, `networkName`, `data` |
/// | `heartbeat`, `bye` | the cluster's | nothing more |
/// | `resync` | the instance channel | nothing more: publish a `sync` for each of your networks |
/// | `wake` | the sender's own instance channel | nothing: it only wakes the sender's subscriber |
#[derive(Debug, Deserialize)]
pub struct ClusterMessage<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub instance: Cow<'a, str>,
    #[serde(rename = "peerId", default, borrow)]
    pub peer_id: Option<Cow<'a, str>>,
    #[serde(rename = "networkName", default, borrow)]
    pub network: Option<Cow<'a, str>>,
    #[serde(rename = "isHub", default)]
    pub is_hub: bool,
    #[serde(default)]
    pub seq: u64,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub members: Vec<Member<'a>>,
    #[serde(rename = "signal", default, borrow)]
    pub signal_kind: Option<Cow<'a, str>>,
    #[serde(rename = "fromPeerId", default, borrow)]
    pub from_peer_id: Option<Cow<'a, str>>,
    #[serde(rename = "targetPeerId", default, borrow)]
    pub target_peer_id: Option<Cow<'a, str>>,
}

/// One peer in a `sync` or `members` list.
#[derive(Debug, Deserialize, Serialize)]
pub struct Member<'a> {
    #[serde(rename = "peerId", borrow)]
    pub peer_id: Cow<'a, str>,
    #[serde(rename = "isHub", default)]
    pub is_hub: bool,
    #[serde(default)]
    pub seq: u64,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// Decodes a message from another instance.
pub fn parse_cluster_message(text: &str) -> Result<ClusterMessage<'_>, MessageError> {
    serde_json::from_str(text).map_err(|err| MessageError::InvalidShape(err.to_string()))
}

/// The message every variant is written from; absent parts are left out.
#[derive(Serialize, Default)]
struct Out<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    instance: &'a str,
    #[serde(rename = "peerId", skip_serializing_if = "Option::is_none")]
    peer_id: Option<&'a str>,
    #[serde(rename = "networkName", skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    #[serde(rename = "isHub", skip_serializing_if = "std::ops::Not::not")]
    is_hub: bool,
    #[serde(skip_serializing_if = "is_zero")]
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a [Member<'a>]>,
    #[serde(rename = "signal", skip_serializing_if = "Option::is_none")]
    signal_kind: Option<&'a str>,
    #[serde(rename = "fromPeerId", skip_serializing_if = "Option::is_none")]
    from_peer_id: Option<&'a str>,
    #[serde(rename = "targetPeerId", skip_serializing_if = "Option::is_none")]
    target_peer_id: Option<&'a str>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A peer of `instance` announced in `network`, described by `data` (its `peer-discovered` data).
pub fn announce(instance: &str, peer: &str, network: &str, is_hub: bool, seq: u64, data: &RawValue) -> String {
    to_json(&Out {
        kind: "announce",
        instance,
        peer_id: Some(peer),
        network: Some(network),
        is_hub,
        seq,
        data: Some(data),
        ..Out::default()
    })
}

/// A peer of `instance` left `network` (its announcement `seq`) for `reason`.
pub fn left(instance: &str, peer: &str, network: &str, is_hub: bool, seq: u64, reason: &str) -> String {
    to_json(&Out {
        kind: "left",
        instance,
        peer_id: Some(peer),
        network: Some(network),
        is_hub,
        seq,
        reason: Some(reason),
        ..Out::default()
    })
}

/// All of `instance`'s peers in `network`: `sync` asks the others for theirs, `members` answers.
pub fn member_list(kind: &'static str, instance: &str, network: &str, members: &[Member<'_>]) -> String {
    to_json(&Out { kind, instance, network: Some(network), members: Some(members), ..Out::default() })
}

/// A signal from `from`, a peer of `instance`, for `target` on the instance whose channel it goes to.
pub fn signal(instance: &str, kind: &str, from: &str, target: &str, network: &str, data: Option<&RawValue>) -> String {
    to_json(&Out {
        kind: "signal",
        instance,
        signal_kind: Some(kind),
        from_peer_id: Some(from),
        target_peer_id: Some(target),
        network: Some(network),
        data,
        ..Out::default()
    })
}

/// A message that carries nothing but its type and sender: `heartbeat`, `bye`, `resync`, `wake`.
pub fn bare(kind: &'static str, instance: &str) -> String {
    to_json(&Out { kind, instance, ..Out::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::envelope::raw;

    #[test]
    fn every_message_reads_back_as_written() {
        let data = raw("{\"peerId\":\"ab\",\"isHub\":false,\"x\":[1,2]}".to_string());
        let text = announce("i1", "ab", "net", false, 7, &data);
        let m = parse_cluster_message(&text).unwrap();
        assert_eq!(
            (&*m.kind, &*m.instance, m.peer_id.as_deref(), m.network.as_deref()),
            ("announce", "i1", Some("ab"), Some("net"))
        );
        assert_eq!((m.seq, m.data.map(RawValue::get)), (7, Some(data.get())));

        let members = [Member { peer_id: "ab".into(), is_hub: true, seq: 3, data: &data }];
        let text = member_list("sync", "i2", "n\"et", &members);
        let m = parse_cluster_message(&text).unwrap();
        assert_eq!((&*m.kind, m.network.as_deref(), m.members.len()), ("sync", Some("n\"et"), 1));
        assert_eq!((m.members[0].is_hub, m.members[0].seq, m.members[0].data.get()), (true, 3, data.get()));

        let text = signal("i3", "offer", "aa", "bb", "net", None);
        let m = parse_cluster_message(&text).unwrap();
        assert_eq!(
            (m.signal_kind.as_deref(), m.from_peer_id.as_deref(), m.target_peer_id.as_deref()),
            (Some("offer"), Some("aa"), Some("bb"))
        );
        assert!(m.data.is_none());

        let text = left("i4", "ab", "net", false, 9, "goodbye");
        let m = parse_cluster_message(&text).unwrap();
        assert_eq!((&*m.kind, m.reason.as_deref(), m.seq), ("left", Some("goodbye"), 9));
        assert_eq!(&*parse_cluster_message(&bare("heartbeat", "i5")).unwrap().kind, "heartbeat");
    }
}
