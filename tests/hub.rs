//! docs/protocol.md §5: hub mode. Several hubs in one test process, linked over real sockets; peers on
//! different hubs discover and signal each other through chains and rings of hubs.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, discovered_ids, http_get, start_with, wait_json, wait_stat};
use peerpigeon::ServerHandle;
use serde_json::{Value, json};

/// Heartbeat used by the test hubs, so that a vanished hub is noticed quickly.
const HEARTBEAT: Duration = Duration::from_millis(200);

fn hub(bootstrap: &[&ServerHandle]) -> ServerHandle {
    let urls: Vec<String> = bootstrap.iter().map(|h| format!("ws://{}", h.local_addr())).collect();
    start_with(|c| {
        c.is_hub = true;
        c.bootstrap_hubs = urls;
        c.hub_heartbeat = HEARTBEAT;
    })
}

/// Waits until `addr` reports `links` hub links up.
fn wait_links(addr: SocketAddr, links: u64) {
    wait_stat(addr, "hubLinks", json!(links));
}

/// Waits until `addr` knows `count` peers of other hubs.
fn wait_remote_peers(addr: SocketAddr, count: u64) {
    wait_stat(addr, "remotePeers", json!(count));
}

fn wait_discovered(client: &mut Client, peer: &str) -> Value {
    client.wait_for(&format!("peer-discovered({})", &peer[..8]), |m| {
        m["type"] == "peer-discovered" && m["data"]["peerId"] == peer
    })
}

/// `from` sends `to` an offer, `to` answers; both arrive intact, with the right sender.
fn offer_and_answer(from: &mut Client, to: &mut Client, network: &str) {
    let sdp = format!("offer from {}", from.short());
    from.send(json!({"type": "offer", "networkName": network, "targetPeerId": to.id, "data": {"sdp": sdp}}));
    let offer = to.wait_for("offer", |m| m["type"] == "offer");
    assert_eq!(
        (offer["fromPeerId"].as_str(), offer["data"]["sdp"].as_str()),
        (Some(from.id.as_str()), Some(sdp.as_str()))
    );
    assert_eq!(offer["targetPeerId"], to.id);
    to.send(json!({"type": "answer", "networkName": network, "targetPeerId": from.id, "data": {"sdp": "answer"}}));
    let answer = from.wait_for("answer", |m| m["type"] == "answer");
    assert_eq!(answer["fromPeerId"], to.id);
}

#[test]
fn two_hubs_introduce_their_peers_and_relay_signals() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    wait_links(a.local_addr(), 1);
    wait_links(b.local_addr(), 1);

    let mut on_a = Client::join(a.local_addr(), "n");
    let mut other_network = Client::join(b.local_addr(), "elsewhere");
    wait_remote_peers(b.local_addr(), 1);
    // A peer announcing later on B hears about A's peer from B's cache of remote peers.
    let mut on_b = Client::connect(b.local_addr());
    assert_eq!(discovered_ids(&on_b.announce("n")), vec![on_a.id.clone()]);
    let heard = wait_discovered(&mut on_a, &on_b.id);
    assert_eq!((heard["networkName"].as_str(), heard["targetPeerId"].as_str()), (Some("n"), Some(on_a.id.as_str())));
    assert_eq!(heard["data"]["isHub"], false);

    offer_and_answer(&mut on_a, &mut on_b, "n");
    offer_and_answer(&mut on_b, &mut on_a, "n");
    assert!(discovered_ids(&other_network.drain()).is_empty(), "networks leaked across hubs");
    let stats = http_get(b.local_addr(), "/hubstats").json();
    assert_eq!(stats["bootstrapHubs"][0]["connected"], true, "{stats}");
    assert_eq!(stats["bootstrapHubs"][0]["state"], "connected");
    assert_eq!(stats["hubs"][0]["multiHop"], true);
    // Each side counts the link, whichever opened it.
    for (side, direction) in [(&a, "inbound"), (&b, "outbound")] {
        let hubs = http_get(side.local_addr(), "/hubs").json();
        assert_eq!((hubs["totalHubs"].as_u64(), hubs["hubs"][0]["direction"].as_str()), (Some(1), Some(direction)));
    }
}

#[test]
fn a_chain_of_three_hubs_carries_discovery_and_signals_end_to_end() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    let c = hub(&[&b]);
    wait_links(b.local_addr(), 2);
    wait_links(c.local_addr(), 1);

    let mut on_a = Client::join(a.local_addr(), "chain");
    wait_remote_peers(c.local_addr(), 1);
    let mut on_c = Client::connect(c.local_addr());
    assert_eq!(discovered_ids(&on_c.announce("chain")), vec![on_a.id.clone()]);
    wait_discovered(&mut on_a, &on_c.id);
    offer_and_answer(&mut on_c, &mut on_a, "chain");

    // Exactly once: nothing more arrived for either of them.
    assert!(on_a.drain().is_empty());
    assert!(on_c.drain().is_empty());
}

#[test]
fn a_ring_of_three_hubs_delivers_everything_exactly_once() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    let c = hub(&[&b, &a]);
    for h in [&a, &b, &c] {
        wait_links(h.local_addr(), 2);
    }
    let mut peers = Vec::new();
    let mut heard = Vec::new();
    for h in [&a, &b, &c] {
        let mut peer = Client::connect(h.local_addr());
        heard.push(peer.announce("ring"));
        peers.push(peer);
    }
    for h in [&a, &b, &c] {
        wait_remote_peers(h.local_addr(), 2);
    }
    let ids: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut expected: Vec<String> =
            ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, id)| id.clone()).collect();
        expected.sort();
        // Some discoveries came at announce time, the rest since: each other peer exactly once.
        heard[i].extend(peer.drain());
        assert_eq!(discovered_ids(&heard[i]), expected, "peer {i} discoveries");
    }
    let (first, rest) = peers.split_at_mut(1);
    offer_and_answer(&mut first[0], &mut rest[1], "ring");
    for peer in &mut peers {
        let extra = peer.drain();
        assert!(extra.is_empty(), "{}: duplicates {extra:?}", peer.short());
    }
}

#[test]
fn a_peer_leaving_one_hub_is_gone_on_the_others() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    let c = hub(&[&b]);
    wait_links(c.local_addr(), 1);
    wait_links(b.local_addr(), 2);
    let mut on_b = Client::join(b.local_addr(), "n");
    let mut on_c = Client::join(c.local_addr(), "n");
    let mut leaving = Client::join(a.local_addr(), "n");
    wait_discovered(&mut on_b, &leaving.id);
    wait_discovered(&mut on_c, &leaving.id);
    leaving.send(json!({"type": "goodbye"}));
    for watcher in [&mut on_b, &mut on_c] {
        let left = watcher.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
        assert_eq!(
            (left["data"]["peerId"].as_str(), left["networkName"].as_str()),
            (Some(leaving.id.as_str()), Some("n"))
        );
    }
    // Gone from the caches too: a late joiner does not hear about it.
    wait_remote_peers(c.local_addr(), 1);
    let mut late = Client::connect(c.local_addr());
    assert_eq!(discovered_ids(&late.announce("n")), {
        let mut ids = vec![on_b.id.clone(), on_c.id.clone()];
        ids.sort();
        ids
    });
}

#[test]
fn peers_of_a_hub_that_dies_expire_and_the_restarted_hub_is_linked_again() {
    let a = hub(&[]);
    let a_addr = a.local_addr();
    let b = hub(&[&a]);
    wait_links(b.local_addr(), 1);
    let mut on_b = Client::join(b.local_addr(), "n");
    let on_a = Client::join(a_addr, "n");
    wait_discovered(&mut on_b, &on_a.id);

    let killed = Instant::now();
    a.shutdown();
    // A's peer is reported gone within a few heartbeats (3 missed + one sweep).
    let left = on_b.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], on_a.id);
    assert!(killed.elapsed() < HEARTBEAT * 8, "took {:?}", killed.elapsed());

    // A comes back on the same port; B's link retries (back-off starts under a second).
    let restarted = Instant::now();
    let a2 = start_with(|c| {
        c.is_hub = true;
        c.port = a_addr.port();
        c.port_retries = 0;
        c.hub_heartbeat = HEARTBEAT;
    });
    assert_eq!(a2.local_addr(), a_addr);
    wait_links(b.local_addr(), 1);
    let mut on_a2 = Client::join(a_addr, "n");
    wait_discovered(&mut on_b, &on_a2.id);
    assert_eq!(discovered_ids(&on_a2.drain()), Vec::<String>::new(), "B's peer was sent at announce time");
    assert!(restarted.elapsed() < Duration::from_secs(10), "mesh healed in {:?}", restarted.elapsed());
    offer_and_answer(&mut on_b, &mut on_a2, "n");
}

#[test]
fn a_hub_with_links_up_relays_signals_for_peers_it_has_not_heard_of() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    wait_links(b.local_addr(), 1);
    let mut on_b = Client::join(b.local_addr(), "n");
    on_b.send(json!({"type": "offer", "networkName": "n", "targetPeerId": common::new_peer_id(), "data": {}}));
    let replies = on_b.drain();
    assert!(replies.iter().all(|m| m["type"] != "error"), "{replies:?}");
}

#[test]
fn a_hub_in_the_middle_counts_both_of_its_links() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    let c = hub(&[&b]);
    wait_links(c.local_addr(), 1);
    let stats = wait_json(b.local_addr(), "/hubstats", "two links", |s| s["totalHubs"] == 2);
    assert_eq!(stats["connectedHubs"], 2);
    let mut directions: Vec<&str> =
        stats["hubs"].as_array().unwrap().iter().filter_map(|h| h["direction"].as_str()).collect();
    directions.sort();
    assert_eq!(directions, ["inbound", "outbound"]);
    assert_eq!(http_get(b.local_addr(), "/hubs").json()["totalHubs"], 2);
}

/// A peer that signals a peer of another hub the moment that peer announced, before its own hub can
/// have heard of it: the signal still arrives, every time, exactly once.
#[test]
fn signals_to_a_peer_just_announced_elsewhere_arrive_in_a_ring() {
    let a = hub(&[]);
    let b = hub(&[&a]);
    let c = hub(&[&b, &a]);
    for h in [&a, &b, &c] {
        wait_links(h.local_addr(), 2);
    }
    let mut sender = Client::join(a.local_addr(), "race");
    for round in 0..50 {
        let mut target = Client::connect(c.local_addr());
        target.announce("race");
        let sdp = format!("offer {round}");
        sender.send(json!({"type": "offer", "networkName": "race", "targetPeerId": target.id, "data": {"sdp": sdp}}));
        let offer = target.wait_for("offer", |m| m["type"] == "offer");
        assert_eq!(
            (offer["data"]["sdp"].as_str(), offer["fromPeerId"].as_str()),
            (Some(sdp.as_str()), Some(sender.id.as_str()))
        );
        let errors: Vec<Value> = sender.drain().into_iter().filter(|m| m["type"] == "error").collect();
        assert!(errors.is_empty(), "round {round}: {errors:?}");
        assert!(target.drain().iter().all(|m| m["type"] != "offer"), "round {round}: a duplicate offer");
    }
}

#[test]
fn a_hub_skips_a_bootstrap_url_that_is_itself() {
    let probe = common::test_listener();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let server = start_with(|c| {
        c.is_hub = true;
        c.port = port;
        c.port_retries = 0;
        c.bootstrap_hubs = vec![format!("ws://127.0.0.1:{port}")];
    });
    let stats = wait_json(server.local_addr(), "/hubstats", "skipped self link", |stats| {
        stats["bootstrapHubs"][0]["state"] == "skipped"
    });
    assert_eq!(stats["hubs"].as_array().map(Vec::len), Some(0));
}

#[test]
fn hub_links_present_the_auth_token() {
    let secured = |bootstrap: Vec<String>| {
        start_with(move |c| {
            c.is_hub = true;
            c.bootstrap_hubs = bootstrap;
            c.auth_token = Some("mesh secret".into());
            c.hub_heartbeat = HEARTBEAT;
        })
    };
    let a = secured(Vec::new());
    let b = secured(vec![format!("ws://{}", a.local_addr())]);
    wait_links(a.local_addr(), 1);
    wait_links(b.local_addr(), 1);
    // And a hub without the token is refused.
    let outsider = hub(&[&a]);
    let stats = wait_json(outsider.local_addr(), "/hubstats", "a 401 refusal", |stats| {
        stats["bootstrapHubs"][0]["lastError"].as_str().is_some_and(|e| e.contains("401"))
    });
    assert_eq!(stats["bootstrapHubs"][0]["connected"], false);
    assert_eq!(http_get(a.local_addr(), "/stats").json()["hubLinks"], 1);
}

#[test]
fn a_star_of_hubs_connects_peers_on_different_leaves() {
    let center = hub(&[]);
    let leaves: Vec<ServerHandle> = (0..3).map(|_| hub(&[&center])).collect();
    wait_links(center.local_addr(), 3);
    let mut first = Client::join(leaves[0].local_addr(), "star");
    let mut last = Client::join(leaves[2].local_addr(), "star");
    wait_discovered(&mut first, &last.id);
    offer_and_answer(&mut first, &mut last, "star");
    // The third leaf's peer, in the same network, heard about both but no signal.
    let mut bystander = Client::connect(leaves[1].local_addr());
    let heard = bystander.announce("star");
    assert_eq!(discovered_ids(&heard), {
        let mut ids = vec![first.id.clone(), last.id.clone()];
        ids.sort();
        ids
    });
    assert!(bystander.drain().iter().all(|m| m["type"] != "offer" && m["type"] != "answer"));
    assert!(first.drain().iter().all(|m| m["type"] != "answer"), "a duplicate answer");
}
