//! The cluster logic without Redis: a [`Cluster`] is fed other instances' messages, time and
//! connection changes, with a made-up set of local peers, and what it asks for is read back.
//! `tests/cluster.rs` runs the same against a real `redis-server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::*;
use crate::registry::mesh::AnnouncedPeer;

const TTL: Duration = Duration::from_secs(6);

/// This instance's own peers, as the registry would show them.
#[derive(Default)]
struct Local {
    peers: HashMap<PeerId, (String, Box<RawValue>)>,
}

impl Local {
    fn with(peers: &[(PeerId, &str)]) -> Local {
        let mut local = Local::default();
        for (id, network) in peers {
            local.peers.insert(*id, (network.to_string(), protocol::discovery_data(*id, false, None)));
        }
        local
    }
}

impl LocalPeers for Local {
    fn is_connected(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    fn network_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer).map(|(network, _)| network.as_str())
    }

    fn each_announced(&self, network: Option<&str>, each: &mut dyn FnMut(AnnouncedPeer<'_>)) {
        for (id, (net, discovery)) in &self.peers {
            if network.is_none_or(|n| n == net) {
                each(AnnouncedPeer { id: *id, network: net, is_hub: false, seq: 1, discovery });
            }
        }
    }
}

fn cluster(now: Instant) -> Cluster {
    let config = ClusterConfig {
        instance: "me".into(),
        namespace: "pp".into(),
        liveness: TTL,
        max_remote_peers: 3,
        max_peer_data_bytes: 1024,
    };
    let mut cluster = Cluster::new(config, now);
    cluster.connection_restored(&Local::default());
    cluster.take_effects();
    cluster
}

fn announce_from(instance: &str, peer: PeerId, network: &str, seq: u64) -> String {
    wire::announce(instance, peer.as_str(), network, false, seq, &protocol::discovery_data(peer, false, None))
}

fn arrived(effects: &[Effect]) -> Vec<PeerId> {
    effects.iter().filter_map(|e| if let Effect::Arrived(p) = e { Some(*p) } else { None }).collect()
}

fn left(effects: &[Effect]) -> Vec<(PeerId, String)> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Left { peer, reason, .. } = e { Some((*peer, reason.clone())) } else { None })
        .collect()
}

fn published(effects: &[Effect]) -> Vec<(&str, ClusterMessage<'_>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { channel, text } => Some((channel.as_str(), wire::parse_cluster_message(text).unwrap())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_remote_peer_is_news_once_and_only_in_networks_with_local_peers() {
    let now = Instant::now();
    let (mine, theirs, elsewhere) = (PeerId::random(), PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n")]);
    let mut cluster = cluster(now);
    cluster.on_message(&announce_from("b", theirs, "n", 5), &local, now);
    cluster.on_message(&announce_from("b", theirs, "n", 5), &local, now);
    cluster.on_message(&announce_from("b", elsewhere, "other", 5), &local, now);
    // Its own echo, and a peer connected here, are not news either.
    cluster.on_message(&announce_from("me", PeerId::random(), "n", 5), &local, now);
    cluster.on_message(&announce_from("c", mine, "n", 9), &local, now);
    assert_eq!(arrived(&cluster.take_effects()), vec![theirs]);
    // A later announcement is news again (the reference re-sends discovery on every announce).
    cluster.on_message(&announce_from("b", theirs, "n", 6), &local, now);
    assert_eq!(arrived(&cluster.take_effects()), vec![theirs]);
    assert_eq!(cluster.remote_member_count("n"), 1);
}

#[test]
fn a_departure_counts_only_from_the_instance_that_holds_the_peer() {
    let now = Instant::now();
    let (mine, moved) = (PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n")]);
    let mut cluster = cluster(now);
    cluster.on_message(&announce_from("b", moved, "n", 5), &local, now);
    // It reconnected to c; b's late notice that it left must not take it away.
    cluster.on_message(&announce_from("c", moved, "n", 7), &local, now);
    cluster.take_effects();
    cluster.on_message(&wire::left("b", moved.as_str(), "n", false, 5, "disconnected"), &local, now);
    assert!(left(&cluster.take_effects()).is_empty());
    cluster.on_message(&wire::left("c", moved.as_str(), "n", false, 7, "goodbye"), &local, now);
    assert_eq!(left(&cluster.take_effects()), vec![(moved, "goodbye".to_string())]);
}

#[test]
fn a_member_list_replaces_what_was_known_and_a_sync_is_answered() {
    let now = Instant::now();
    let (mine, stays, went, new) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n")]);
    let mut cluster = cluster(now);
    cluster.on_message(&announce_from("b", stays, "n", 1), &local, now);
    cluster.on_message(&announce_from("b", went, "n", 1), &local, now);
    cluster.take_effects();
    let data = protocol::discovery_data(stays, false, None);
    let data_new = protocol::discovery_data(new, false, None);
    let members = [
        Member { peer_id: stays.as_str().into(), is_hub: false, seq: 1, data: &data },
        Member { peer_id: new.as_str().into(), is_hub: false, seq: 1, data: &data_new },
    ];
    cluster.on_message(&wire::member_list("sync", "b", "n", &members), &local, now);
    let effects = cluster.take_effects();
    assert_eq!(left(&effects), vec![(went, "disconnected".to_string())]);
    assert_eq!(arrived(&effects), vec![new]);
    let answers = published(&effects);
    assert_eq!(answers.len(), 1);
    let (channel, answer) = &answers[0];
    assert_eq!((*channel, &*answer.kind, answer.members.len()), ("pp:instance:b", "members", 1));
    assert_eq!(answer.members[0].peer_id, mine.as_str());
    // A `members` answer is not answered again.
    cluster.on_message(&wire::member_list("members", "b", "n", &members), &local, now);
    assert!(published(&cluster.take_effects()).is_empty());
}

#[test]
fn a_silent_instance_is_dropped_and_asked_to_catch_up_when_heard_again() {
    let start = Instant::now();
    let (mine, theirs) = (PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n")]);
    let mut cluster = cluster(start);
    cluster.on_message(&announce_from("b", theirs, "n", 1), &local, start);
    cluster.take_effects();
    cluster.tick(start + TTL / 2);
    assert!(left(&cluster.take_effects()).is_empty());
    cluster.tick(start + TTL + Duration::from_millis(1));
    assert_eq!(left(&cluster.take_effects()), vec![(theirs, "instance-unreachable".to_string())]);
    assert_eq!(cluster.live_instances(), 0);
    cluster.on_message(&wire::bare("heartbeat", "b"), &local, start + TTL * 2);
    let effects = cluster.take_effects();
    let asked = published(&effects);
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].0, &*asked[0].1.kind), ("pp:instance:b", "resync"));
}

#[test]
fn signals_go_to_the_holding_instance_or_are_refused_with_the_reason() {
    let now = Instant::now();
    let (mine, theirs, other_network) = (PeerId::random(), PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n"), (PeerId::random(), "m")]);
    let mut cluster = cluster(now);
    cluster.on_message(&announce_from("b", theirs, "n", 1), &local, now);
    cluster.on_message(&announce_from("b", other_network, "m", 1), &local, now);
    let (channel, text) = cluster.signal(SignalKind::Offer, mine, theirs, "n", None).unwrap();
    assert_eq!(channel, "pp:instance:b");
    let sent = wire::parse_cluster_message(&text).unwrap();
    assert_eq!(
        (sent.from_peer_id.as_deref(), sent.target_peer_id.as_deref()),
        (Some(mine.as_str()), Some(theirs.as_str()))
    );
    assert_eq!(cluster.signal(SignalKind::Offer, mine, other_network, "n", None), Err(SignalRefusal::UnknownTarget));
    cluster.connection_lost();
    assert_eq!(left(&cluster.take_effects()).len(), 2);
    assert_eq!(cluster.signal(SignalKind::Offer, mine, theirs, "n", None), Err(SignalRefusal::Unavailable));
}

#[test]
fn a_signal_from_another_instance_reaches_only_a_target_in_its_network() {
    let now = Instant::now();
    let (in_n, in_m, sender) = (PeerId::random(), PeerId::random(), PeerId::random());
    let local = Local::with(&[(in_n, "n"), (in_m, "m")]);
    let mut cluster = cluster(now);
    for target in [in_n, in_m] {
        let text = wire::signal("b", "offer", sender.as_str(), target.as_str(), "n", None);
        cluster.on_message(&text, &local, now);
    }
    let delivered: Vec<PeerId> = cluster
        .take_effects()
        .iter()
        .filter_map(|e| if let Effect::Deliver { target, .. } = e { Some(*target) } else { None })
        .collect();
    assert_eq!(delivered, vec![in_n]);
}

#[test]
fn remote_peers_are_bounded() {
    let now = Instant::now();
    let local = Local::with(&[(PeerId::random(), "n")]);
    let mut cluster = cluster(now);
    for _ in 0..10 {
        cluster.on_message(&announce_from("b", PeerId::random(), "n", 1), &local, now);
    }
    assert_eq!(cluster.remote_count(), 3);
}

/// An instance whose first peer joins a network asks who is there before it announces that peer:
/// the others' answers (on its own channel) then come ahead of anything their peers send its peer.
#[test]
fn an_instance_new_to_a_network_asks_who_is_there_before_announcing() {
    let now = Instant::now();
    let (mine, theirs) = (PeerId::random(), PeerId::random());
    let mut cluster = cluster(now);
    let network: Arc<str> = Arc::from("n");
    cluster.network_opened(&network);
    cluster.local_announced(mine, "n", false, 1, &protocol::discovery_data(mine, false, None));
    let effects = cluster.take_effects();
    let sent = published(&effects);
    let kinds: Vec<(&str, &str, usize)> = sent.iter().map(|(c, m)| (*c, &*m.kind, m.members.len())).collect();
    assert_eq!(kinds, vec![("pp:network:n", "sync", 0), ("pp:network:n", "announce", 0)]);

    // On the other side, an empty `sync` is answered with the members there.
    let there = Local::with(&[(theirs, "n")]);
    let mut other = self::cluster(now);
    other.on_message(&wire::member_list("sync", "me2", "n", &[]), &there, now);
    let effects = other.take_effects();
    let answer = published(&effects);
    assert_eq!(answer.len(), 1);
    assert_eq!((answer[0].0, &*answer[0].1.kind, answer[0].1.members.len()), ("pp:instance:me2", "members", 1));
}

/// Several messages for one channel arrive as one JSON array (the publisher merges neighbours):
/// each is handled, in order.
#[test]
fn a_merged_burst_is_handled_message_by_message() {
    let now = Instant::now();
    let (mine, first, second) = (PeerId::random(), PeerId::random(), PeerId::random());
    let local = Local::with(&[(mine, "n")]);
    let mut cluster = cluster(now);
    let burst = format!(
        "[{},{},{}]",
        announce_from("b", first, "n", 1),
        announce_from("b", second, "n", 1),
        wire::left("b", first.as_str(), "n", false, 1, "goodbye")
    );
    cluster.on_message(&burst, &local, now);
    let effects = cluster.take_effects();
    assert_eq!(arrived(&effects), vec![first, second]);
    assert_eq!(left(&effects), vec![(first, "goodbye".to_string())]);
    cluster.on_message("[not json", &local, now);
    assert!(cluster.take_effects().is_empty());
}
