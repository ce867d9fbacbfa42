//! docs/protocol.md §2 (`announce`, `goodbye`) and §4: who hears about whom, and who hears that someone left.

mod common;

use common::{Client, discovered_ids, start, start_with};
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn announce_introduces_peers_of_a_network_to_each_other_both_ways() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    let mut c = Client::connect(addr);
    assert!(a.announce("room").is_empty(), "first in the room: nobody to discover");

    // B arrives: B is told about A; A is told about B.
    assert_eq!(discovered_ids(&b.announce("room")), vec![a.id.clone()]);
    let to_a = a.wait_for("peer-discovered(B)", |m| m["type"] == "peer-discovered");
    assert_eq!(to_a["data"]["peerId"], b.id);
    assert_eq!(to_a["data"]["isHub"], false);
    assert_eq!(to_a["networkName"], "room");
    assert_eq!(to_a["fromPeerId"], "system");
    assert_eq!(to_a["targetPeerId"], a.id);
    assert!(to_a["timestamp"].is_u64());

    // C arrives: told about both, and both told about C.
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(discovered_ids(&c.announce("room")), expected);
    assert_eq!(discovered_ids(&a.drain()), vec![c.id.clone()]);
    assert_eq!(discovered_ids(&b.drain()), vec![c.id.clone()]);
}

#[test]
fn networks_never_see_each_other() {
    let server = start();
    let addr = server.local_addr();
    let mut red = Client::join(addr, "red");
    let mut blue = Client::join(addr, "blue");
    let mut red2 = Client::connect(addr);
    assert_eq!(discovered_ids(&red2.announce("red")), vec![red.id.clone()]);
    assert!(blue.drain().is_empty(), "blue heard about a red peer");
    red2.send(json!({"type": "goodbye"}));
    assert_eq!(red.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected")["data"]["peerId"], red2.id);
    assert!(blue.drain().is_empty(), "blue heard a red peer leave");
}

#[test]
fn announce_without_a_network_joins_global() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    a.send(json!({"type": "announce", "data": {"peerId": a.id}}));
    a.drain();
    let mut b = Client::connect(addr);
    let seen = b.announce("global");
    assert_eq!(discovered_ids(&seen), vec![a.id.clone()]);
    assert_eq!(seen[0]["networkName"], "global");
}

#[test]
fn announced_data_is_passed_through_but_cannot_change_identity() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "n");
    let mut b = Client::connect(addr);
    let impostor = common::new_peer_id();
    b.send(json!({"type": "announce", "networkName": "n", "data": {"peerId": impostor, "isHub": "yes", "nick": "bee", "caps": [1, 2]}}));
    let heard = a.wait_for("peer-discovered", |m| m["type"] == "peer-discovered");
    assert_eq!(heard["data"], json!({"peerId": b.id, "isHub": false, "nick": "bee", "caps": [1, 2]}));
}

#[test]
fn a_hub_announce_is_flagged_as_hub() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "pigeonhub-mesh");
    let mut hub = Client::connect(addr);
    hub.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
    assert_eq!(a.wait_for("peer-discovered", |m| m["type"] == "peer-discovered")["data"]["isHub"], true);
    // On a plain server nothing is a hub link: `/hubs` lists none of them.
    let hubs = common::http_get(addr, "/hubs").json();
    assert_eq!(hubs["totalHubs"], 0, "{hubs}");
}

#[test]
fn goodbye_tells_the_network_once_and_the_peer_may_announce_again() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "n");
    let mut b = Client::join(addr, "n");
    a.drain();
    b.send(json!({"type": "goodbye", "data": {"peerId": b.id, "reason": "peer_disconnect"}}));
    let left = a.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], b.id);
    assert_eq!(left["data"]["isHub"], false);
    assert_eq!(left["data"]["reason"], "goodbye");
    assert_eq!(left["networkName"], "n");
    assert_eq!(left["targetPeerId"], a.id);
    // Closing afterwards does not announce the departure a second time.
    b.ws.close(None).expect("close");
    b.expect_close();
    let mut c = Client::join(addr, "n");
    let after: Vec<Value> = a.drain();
    assert_eq!(discovered_ids(&after), vec![c.id.clone()], "only C's arrival, no second departure: {after:?}");
    assert!(c.drain().is_empty());
}

#[test]
fn disconnecting_tells_only_the_peers_network() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "n");
    let mut other = Client::join(addr, "elsewhere");
    let mut b = Client::join(addr, "n");
    a.drain();
    drop(b.ws.close(None));
    b.expect_close();
    let left = a.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], b.id);
    assert_eq!(left["networkName"], "n");
    assert!(other.drain().is_empty(), "another network heard about the departure");
}

#[test]
fn a_dropped_tcp_connection_counts_as_leaving() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "n");
    let b = Client::join(addr, "n");
    a.drain();
    // No close frame: the socket just goes away.
    let id = b.id.clone();
    drop(b);
    assert_eq!(a.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected")["data"]["peerId"], id);
}

#[test]
fn reannouncing_into_another_network_moves_the_peer() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "one");
    let mut z = Client::join(addr, "two");
    let mut b = Client::join(addr, "one");
    a.drain();
    assert_eq!(discovered_ids(&b.announce("two")), vec![z.id.clone()]);
    let left = a.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], b.id);
    assert_eq!(discovered_ids(&z.drain()), vec![b.id.clone()]);
}

#[test]
fn a_silent_peer_is_closed_after_the_idle_timeout_and_its_network_told() {
    let server = start_with(|c| {
        c.peer_timeout = Duration::from_millis(600);
        c.cleanup_interval = Duration::from_millis(100);
    });
    let addr = server.local_addr();
    // A raw socket that completes the upgrade and then never sends or answers anything.
    let silent_id = common::new_peer_id();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /?peerId={silent_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    std::io::Write::write_all(&mut &stream, request.as_bytes()).unwrap();
    let announce = json!({"type": "announce", "networkName": "n"}).to_string();
    let mut frame = vec![0x81, 0x80 | announce.len() as u8, 0, 0, 0, 0]; // masked with a zero key
    frame.extend_from_slice(announce.as_bytes());
    std::io::Write::write_all(&mut &stream, &frame).unwrap();

    // A live client that keeps talking is never closed; it sees the silent one come and go.
    let mut live = Client::connect(addr);
    live.announce("n");
    let left = live.wait_for("peer-disconnected(silent)", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], silent_id);
    assert_eq!(common::http_get(addr, "/stats").json()["connections"], 1);
}

#[test]
fn a_quiet_peer_stays_connected_past_the_handshake_timeout() {
    // Regression: the request head is read with a deadline, which must not outlive the handshake.
    let server = start_with(|c| c.handshake_timeout = Duration::from_millis(300));
    let addr = server.local_addr();
    let mut quiet = Client::join(addr, "n");
    // Nothing arrives for three handshake timeouts (the read gives up after its own timeout).
    quiet.set_read_timeout(Duration::from_millis(900));
    assert!(quiet.ws.read().is_err(), "expected silence");
    quiet.set_read_timeout(common::WAIT);
    assert!(quiet.drain().is_empty(), "the quiet peer was disconnected");
    assert_eq!(common::http_get(addr, "/stats").json()["connections"], 1);
}
