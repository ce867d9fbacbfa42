//! The relay logic without sockets: a [`Mesh`] is fed link messages and time, with a made-up set
//! of local peers, and what it asks to send is read back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::*;
use crate::protocol::parse_link_message;

const HEARTBEAT: Duration = Duration::from_secs(10);
const MAX_HOPS: u32 = 3;

/// This hub's own peers, as the registry would show them.
#[derive(Default)]
struct Local {
    peers: HashMap<PeerId, (String, bool, u64, Box<RawValue>)>,
}

impl Local {
    fn with(peers: &[(PeerId, &str)]) -> Local {
        let mut local = Local::default();
        for (seq, (id, network)) in peers.iter().enumerate() {
            let discovery = protocol::discovery_data(*id, false, None);
            local.peers.insert(*id, (network.to_string(), false, seq as u64 + 1, discovery));
        }
        local
    }
}

impl LocalPeers for Local {
    fn is_connected(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    fn network_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|(network, ..)| network.as_str())
    }

    fn each_announced(&self, network: Option<&str>, each: &mut dyn FnMut(AnnouncedPeer<'_>)) {
        for (id, (net, is_hub, seq, discovery)) in &self.peers {
            if network.is_none_or(|n| n == net) {
                each(AnnouncedPeer { id: *id, network: net, is_hub: *is_hub, seq: *seq, discovery });
            }
        }
    }
}

fn hub() -> Mesh {
    let config = MeshConfig {
        hub_id: PeerId::random(),
        namespace: "pigeonhub-mesh".into(),
        host: "localhost".into(),
        port: 3000,
        max_hops: MAX_HOPS,
        heartbeat: HEARTBEAT,
        hub_token_set: true,
        max_remote_peers: 10,
        max_peer_data_bytes: 1024,
    };
    Mesh::new(config, Instant::now())
}

/// A mesh with PeerPigeon-rs links `links` (each to its own hub), what they were sent cleared.
fn hub_with_links(links: &[LinkId], local: &Local) -> Mesh {
    let mut mesh = hub();
    for &link in links {
        mesh.link_up(link, Direction::Inbound, true, Some(PeerId::random()), local);
    }
    mesh.outgoing().for_each(drop);
    mesh
}

/// Feeds `message` to `mesh` as having come over `link` at `now`.
fn arrives(mesh: &mut Mesh, link: LinkId, message: Value, local: &Local, now: Instant) -> LinkEvent {
    let text = message.to_string();
    let parsed = parse_link_message(&text).unwrap();
    mesh.on_link_message(link, &parsed, local, now)
}

/// What the mesh asked to send since the last call, decoded: (to, message).
fn sent(mesh: &mut Mesh) -> Vec<(String, Value)> {
    mesh.outgoing()
        .map(|out| match out {
            Outgoing::Link(link, text) => (format!("link {link}"), serde_json::from_str(&text).unwrap()),
            Outgoing::Peer(peer, text) => (format!("peer {}", peer.short()), serde_json::from_str(&text).unwrap()),
            Outgoing::CloseLink(link) => (format!("close {link}"), Value::Null),
        })
        .collect()
}

fn relay(id: u64, origin: Option<PeerId>, seq: Option<u64>, hops: u32) -> Value {
    let mut relay = json!({"id": format!("{id:016x}"), "hops": hops});
    if let Some(origin) = origin {
        relay["origin"] = json!(origin);
    }
    if let Some(seq) = seq {
        relay["seq"] = json!(seq);
    }
    relay
}

fn offer(from: PeerId, to: PeerId, relay: Value) -> Value {
    json!({"type": "offer", "networkName": "n", "fromPeerId": from, "targetPeerId": to, "data": {"sdp": "x"}, "relay": relay})
}

fn discovered(peer: PeerId, network: &str, relay: Value) -> Value {
    json!({"type": "peer-discovered", "networkName": network, "data": {"peerId": peer, "isHub": false}, "relay": relay})
}

fn departed(peer: PeerId, network: &str, relay: Value) -> Value {
    json!({"type": "peer-disconnected", "networkName": network, "data": {"peerId": peer, "isHub": false}, "relay": relay})
}

fn heartbeat(origin: PeerId, probe: Option<u64>) -> Value {
    let mut relay = relay(fastrand::u64(..), Some(origin), None, 0);
    if let Some(probe) = probe {
        relay["probe"] = json!(format!("{probe:016x}"));
    }
    json!({"type": "hub-heartbeat", "relay": relay})
}

#[test]
fn a_relayed_signal_is_handled_once_however_many_links_bring_it() {
    let target = PeerId::random();
    let local = Local::with(&[(target, "n")]);
    let mut mesh = hub_with_links(&[1, 2, 3], &local);
    let now = Instant::now();
    let from = PeerId::random();
    arrives(&mut mesh, 1, offer(from, target, relay(42, None, None, 1)), &local, now);
    let first = sent(&mut mesh);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, format!("peer {}", target.short()));
    assert_eq!(first[0].1["fromPeerId"], json!(from));
    // The same message over the two other links: a duplicate, dropped.
    arrives(&mut mesh, 2, offer(from, target, relay(42, None, None, 2)), &local, now);
    arrives(&mut mesh, 3, offer(from, target, relay(42, None, None, 1)), &local, now);
    assert!(sent(&mut mesh).is_empty());
    // A JavaScript hub's copy has no id: the content stands for one, so repeats are dropped too.
    let plain =
        json!({"type": "offer", "networkName": "n", "fromPeerId": from, "targetPeerId": target, "data": {"sdp": "y"}});
    arrives(&mut mesh, 1, plain.clone(), &local, now);
    arrives(&mut mesh, 2, plain, &local, now);
    assert_eq!(sent(&mut mesh).len(), 1);
}

#[test]
fn a_signal_for_a_peer_elsewhere_goes_on_to_the_other_links_until_the_hop_limit() {
    let local = Local::default();
    let mut mesh = hub_with_links(&[1, 2, 3], &local);
    let now = Instant::now();
    let (from, target) = (PeerId::random(), PeerId::random());
    arrives(&mut mesh, 1, offer(from, target, relay(7, None, None, 0)), &local, now);
    let mut onward: Vec<(String, u64)> =
        sent(&mut mesh).into_iter().map(|(to, m)| (to, m["relay"]["hops"].as_u64().unwrap())).collect();
    onward.sort();
    assert_eq!(onward, [("link 2".to_string(), 1), ("link 3".to_string(), 1)], "not back where it came from");
    // One that has crossed the most links a message may cross stops here.
    arrives(&mut mesh, 1, offer(from, target, relay(8, None, None, MAX_HOPS)), &local, now);
    assert!(sent(&mut mesh).is_empty());
}

#[test]
fn a_later_announcement_wins_and_a_departure_leaves_a_tombstone() {
    let watcher = PeerId::random();
    let local = Local::with(&[(watcher, "n")]);
    let mut mesh = hub_with_links(&[1], &local);
    let now = Instant::now();
    let (peer, origin) = (PeerId::random(), PeerId::random());
    let told = |sent: &[(String, Value)], kind: &str| {
        sent.iter().filter(|(to, m)| to.starts_with("peer") && m["type"] == kind).count()
    };
    arrives(&mut mesh, 1, discovered(peer, "n", relay(1, Some(origin), Some(5), 0)), &local, now);
    assert_eq!(told(&sent(&mut mesh), "peer-discovered"), 1);
    assert_eq!(mesh.remote_count(), 1);
    // An older announcement of the same peer (another message, so not a duplicate) is stale.
    arrives(&mut mesh, 1, discovered(peer, "n", relay(2, Some(origin), Some(4), 0)), &local, now);
    assert!(sent(&mut mesh).is_empty());
    // It leaves; a late copy of the announcement it left cannot bring it back, a newer one can.
    arrives(&mut mesh, 1, departed(peer, "n", relay(3, Some(origin), Some(5), 0)), &local, now);
    assert_eq!(told(&sent(&mut mesh), "peer-disconnected"), 1);
    assert_eq!(mesh.remote_count(), 0);
    arrives(&mut mesh, 1, discovered(peer, "n", relay(4, Some(origin), Some(5), 0)), &local, now);
    assert!(sent(&mut mesh).is_empty());
    arrives(&mut mesh, 1, discovered(peer, "n", relay(5, Some(origin), Some(6), 0)), &local, now);
    assert_eq!(told(&sent(&mut mesh), "peer-discovered"), 1);
}

#[test]
fn our_own_announcement_coming_back_around_a_ring_stops_here() {
    let ours = PeerId::random();
    let local = Local::with(&[(ours, "n")]);
    let mut mesh = hub_with_links(&[1, 2], &local);
    let me = mesh.config.hub_id;
    let now = Instant::now();
    // Our own peer, announced by this hub, back over link 2: not news, not passed on.
    arrives(&mut mesh, 2, discovered(ours, "n", relay(9, Some(me), Some(1), 2)), &local, now);
    // Another hub's peer comes back too, with the same stamp: the first copy counts, the echo stops.
    let theirs = PeerId::random();
    let origin = PeerId::random();
    arrives(&mut mesh, 1, discovered(theirs, "n", relay(10, Some(origin), Some(3), 0)), &local, now);
    let passed_on = sent(&mut mesh);
    assert!(passed_on.iter().all(|(to, m)| to != "link 1" || m["type"] != "peer-discovered"), "{passed_on:?}");
    assert!(passed_on.iter().any(|(to, _)| to == "link 2"));
    arrives(&mut mesh, 2, discovered(theirs, "n", relay(11, Some(origin), Some(3), 1)), &local, now);
    assert!(sent(&mut mesh).is_empty(), "the ring echoed");
    assert_eq!(mesh.remote_count(), 1);
}

#[test]
fn losing_a_link_drops_only_the_peers_of_hubs_that_do_not_answer() {
    let watcher = PeerId::random();
    let local = Local::with(&[(watcher, "n")]);
    let mut mesh = hub_with_links(&[1, 2], &local);
    let start = Instant::now();
    let (gone_hub, near_hub) = (PeerId::random(), PeerId::random());
    let (gone_peer, near_peer) = (PeerId::random(), PeerId::random());
    arrives(&mut mesh, 1, discovered(gone_peer, "n", relay(1, Some(gone_hub), Some(1), 0)), &local, start);
    arrives(&mut mesh, 2, discovered(near_peer, "n", relay(2, Some(near_hub), Some(1), 0)), &local, start);
    sent(&mut mesh);
    // Link 1 drops: a probe goes out over link 2, with this hub's own answer.
    mesh.link_down(1, &local, start);
    let probe = sent(&mut mesh)
        .into_iter()
        .find(|(to, m)| to == "link 2" && m["type"] == "hub-probe")
        .map(|(_, m)| u64::from_str_radix(m["relay"]["id"].as_str().unwrap(), 16).unwrap())
        .expect("a probe over the remaining link");
    // The hub still reachable answers; the other cannot.
    arrives(&mut mesh, 2, heartbeat(near_hub, Some(probe)), &local, start + Duration::from_millis(5));
    // Nothing is decided before the window closes...
    mesh.tick(&local, start + PROBE_WINDOW / 2);
    assert_eq!(mesh.remote_count(), 2);
    // ...then the unreachable hub's peer is gone, and only it.
    mesh.tick(&local, start + PROBE_WINDOW + Duration::from_millis(1));
    let departures: Vec<Value> = sent(&mut mesh)
        .into_iter()
        .filter(|(to, m)| to.starts_with("peer") && m["type"] == "peer-disconnected")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(departures.len(), 1);
    assert_eq!(departures[0]["data"]["peerId"], json!(gone_peer));
    assert_eq!(mesh.reach_checks(), (1, 1));
    // No tombstone: reached again, the hub sends it again, with the same stamp, and it is taken.
    mesh.link_up(3, Direction::Inbound, true, Some(gone_hub), &local);
    arrives(&mut mesh, 3, discovered(gone_peer, "n", relay(3, Some(gone_hub), Some(1), 0)), &local, start);
    assert_eq!(mesh.remote_count(), 2);
}

#[test]
fn with_no_link_left_the_peers_of_other_hubs_go_at_once() {
    let local = Local::default();
    let mut mesh = hub_with_links(&[1], &local);
    let now = Instant::now();
    arrives(&mut mesh, 1, discovered(PeerId::random(), "n", relay(1, Some(PeerId::random()), Some(1), 0)), &local, now);
    mesh.link_down(1, &local, now);
    assert_eq!(mesh.remote_count(), 0);
}

#[test]
fn the_peers_of_a_silent_hub_expire_after_three_heartbeats() {
    let local = Local::default();
    let mut mesh = hub_with_links(&[1], &local);
    let start = Instant::now();
    let (silent, chatty) = (PeerId::random(), PeerId::random());
    arrives(&mut mesh, 1, discovered(PeerId::random(), "n", relay(1, Some(silent), Some(1), 0)), &local, start);
    arrives(&mut mesh, 1, discovered(PeerId::random(), "n", relay(2, Some(chatty), Some(1), 0)), &local, start);
    // The timer's first tick sends this hub's heartbeat, and says when to come back.
    let next = mesh.tick(&local, start);
    assert_eq!(next, start + HEARTBEAT);
    assert!(sent(&mut mesh).iter().any(|(_, m)| m["type"] == "hub-heartbeat"));
    let mut now = start;
    for _ in 0..3 {
        now += HEARTBEAT;
        arrives(&mut mesh, 1, heartbeat(chatty, None), &local, now);
        mesh.tick(&local, now);
        assert_eq!(mesh.remote_count(), 2, "dropped before three heartbeats were missed");
    }
    now += HEARTBEAT;
    arrives(&mut mesh, 1, heartbeat(chatty, None), &local, now);
    mesh.tick(&local, now);
    assert_eq!(mesh.remote_count(), 1, "the silent hub's peer stayed");
}

#[test]
fn a_link_may_introduce_only_its_share_of_remote_peers() {
    let local = Local::default();
    let mut mesh = hub_with_links(&[1, 2], &local);
    let now = Instant::now();
    let origin = PeerId::random();
    for n in 0..10 {
        arrives(&mut mesh, 1, discovered(PeerId::random(), "n", relay(n, Some(origin), Some(1), 0)), &local, now);
    }
    assert_eq!(mesh.remote_count(), 5, "half of max_remote_peers from one link");
    for n in 10..20 {
        arrives(&mut mesh, 2, discovered(PeerId::random(), "n", relay(n, Some(origin), Some(1), 0)), &local, now);
    }
    assert_eq!(mesh.remote_count(), 10, "and no more than max_remote_peers in all");
}

#[test]
fn a_link_back_to_this_hub_is_closed() {
    let local = Local::default();
    let mut mesh = hub();
    mesh.link_up(1, Direction::Outbound { uri: "ws://me".into() }, false, None, &local);
    sent(&mut mesh);
    let hello =
        json!({"type": "hub-hello", "data": {"hubId": mesh.config.hub_id, "capabilities": ["peerpigeon-rs-relay"]}});
    assert_eq!(arrives(&mut mesh, 1, hello, &local, Instant::now()), LinkEvent::LeadsToSelf);
    assert_eq!(sent(&mut mesh), [("close 1".to_string(), Value::Null)]);
}
