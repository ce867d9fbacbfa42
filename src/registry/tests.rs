//! The registry with real loopback sockets: what each peer is sent, read from the other end.

use super::*;
use crate::peer::flusher::Flusher;
use crate::peer::outbox::new_peer;
use crate::peer::queue::QueueBudget;
use crate::registry::mesh::MeshConfig;
use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use tungstenite::protocol::{Role, WebSocket};

/// A registered-able peer and the client end of its real loopback socket, which the test reads.
struct TestPeer {
    handle: Arc<PeerHandle>,
    rx: RefCell<WebSocket<TcpStream>>,
}

fn peer(n: u8, serial: u64) -> TestPeer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let id = PeerId::parse(&format!("{:02x}", n).repeat(20)).unwrap();
    let (handle, _) = new_peer(
        id,
        serial,
        server,
        Role::Server,
        QueueBudget::new(1 << 20, 1 << 30),
        Default::default(),
        Flusher::start().unwrap(),
    );
    // Messages are written before the registry call that queued them returns, and a loopback
    // write lands in the other end's buffer at once: what is not there now was never sent.
    client.set_nonblocking(true).unwrap();
    TestPeer { handle, rx: RefCell::new(WebSocket::from_raw_socket(client, Role::Client, None)) }
}

/// The messages that reached the peer's client end so far.
fn texts(rx: &RefCell<WebSocket<TcpStream>>) -> Vec<serde_json::Value> {
    let mut socket = rx.borrow_mut();
    let mut texts = Vec::new();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => texts.push(serde_json::from_str(text.as_str()).unwrap()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(err)) if err.kind() == std::io::ErrorKind::WouldBlock => return texts,
            Err(err) => panic!("reading the test peer's socket: {err}"),
        }
    }
}

fn announce(registry: &Registry, p: &TestPeer, network: &str) {
    let id = p.handle.peer_id;
    registry.announce(id, network, false, protocol::discovery_data(id, false, None));
}

#[test]
fn duplicate_ids_and_the_connection_limit_are_refused() {
    let registry = Registry::new(2, None, None);
    let (a, a2, b, c) = (peer(1, 1), peer(1, 2), peer(2, 3), peer(3, 4));
    registry.register(a.handle.clone()).unwrap();
    assert_eq!(registry.register(a2.handle.clone()), Err(RegisterError::Duplicate));
    registry.register(b.handle.clone()).unwrap();
    assert_eq!(registry.register(c.handle.clone()), Err(RegisterError::Full));
    // A closing connection is replaced by a new one with the same id.
    a.handle.kill();
    registry.register(a2.handle.clone()).unwrap();
    // The stale connection's own cleanup must not remove its replacement.
    registry.unregister(a.handle.peer_id, a.handle.serial, "closed");
    assert_eq!(registry.counts().connections, 2);
}

fn hub_mode() -> Option<MeshConfig> {
    Some(MeshConfig {
        hub_id: PeerId::random(),
        namespace: "pigeonhub-mesh".into(),
        host: "localhost".into(),
        port: 3000,
        max_hops: 16,
        heartbeat: std::time::Duration::from_secs(10),
        hub_token_set: true,
        max_remote_peers: 1000,
        max_peer_data_bytes: 16 * 1024,
    })
}

#[test]
fn published_counts_follow_links_networks_and_departures() {
    let registry = Registry::new(10, hub_mode(), None);
    let (a, b, c) = (peer(1, 1), peer(2, 2), peer(3, 3));
    for p in [&a, &b, &c] {
        registry.register(p.handle.clone()).unwrap();
    }
    let announce_as = |p: &TestPeer, network: &str, is_hub: bool| {
        let id = p.handle.peer_id;
        registry.announce(id, network, is_hub, protocol::discovery_data(id, is_hub, None));
    };
    let counts = |registry: &Registry| {
        let c = registry.counts();
        (c.peers, c.hubs, c.networks)
    };
    assert_eq!(counts(&registry), (3, 0, 0));
    a.handle.grant_hub_credential();
    announce_as(&a, "pigeonhub-mesh", true);
    assert_eq!(counts(&registry), (3, 1, 1));
    assert!(a.handle.is_link());
    // Claiming to be a hub without the credential makes an ordinary peer, not a link.
    announce_as(&c, "pigeonhub-mesh", true);
    announce_as(&b, "one", false);
    assert_eq!(counts(&registry), (3, 1, 2));
    assert!(!c.handle.is_link());
    registry.unregister(a.handle.peer_id, a.handle.serial, "closed");
    assert_eq!(counts(&registry), (2, 0, 2));
    registry.leave(c.handle.peer_id, "goodbye");
    assert_eq!(counts(&registry), (2, 0, 1));
}

#[test]
fn discovery_goes_both_ways_inside_a_network_only() {
    let registry = Registry::new(10, None, None);
    let (a, b, c) = (peer(1, 1), peer(2, 2), peer(3, 3));
    for p in [&a, &b, &c] {
        registry.register(p.handle.clone()).unwrap();
    }
    announce(&registry, &a, "one");
    announce(&registry, &c, "two");
    announce(&registry, &b, "one");
    let to_a = texts(&a.rx);
    let to_b = texts(&b.rx);
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_a[0]["data"]["peerId"], b.handle.peer_id.as_str());
    assert_eq!(to_b.len(), 1);
    assert_eq!(to_b[0]["data"]["peerId"], a.handle.peer_id.as_str());
    assert!(texts(&c.rx).is_empty());
    assert_eq!(registry.counts(), Counts { connections: 3, peers: 3, hubs: 0, networks: 2 });
}

/// A newcomer hears of every member (one block, written as separate messages), each member hears
/// of the newcomer addressed to itself (one message built for all), and a departure right after
/// reaches the newcomer after the member it concerns.
#[test]
fn a_newcomer_hears_every_member_before_any_later_departure() {
    let registry = Registry::new(10, None, None);
    let peers: Vec<TestPeer> = (1..=5).map(|n| peer(n, u64::from(n))).collect();
    for p in &peers {
        registry.register(p.handle.clone()).unwrap();
    }
    for p in &peers[..4] {
        announce(&registry, p, "n");
    }
    for p in &peers[..4] {
        texts(&p.rx);
    }
    let newcomer = &peers[4];
    announce(&registry, newcomer, "n");
    registry.leave(peers[1].handle.peer_id, "goodbye");
    let heard = texts(&newcomer.rx);
    let kinds: Vec<(&str, &str)> =
        heard.iter().map(|m| (m["type"].as_str().unwrap(), m["data"]["peerId"].as_str().unwrap())).collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    let discovered: std::collections::HashSet<&str> =
        kinds[..4].iter().map(|(kind, id)| if *kind == "peer-discovered" { *id } else { "" }).collect();
    let members: std::collections::HashSet<&str> = peers[..4].iter().map(|p| p.handle.peer_id.as_str()).collect();
    assert_eq!(discovered, members);
    assert_eq!(kinds[4], ("peer-disconnected", peers[1].handle.peer_id.as_str()));
    for member in &peers[..4] {
        let to_member = texts(&member.rx);
        let first = &to_member[0];
        assert_eq!(first["type"], "peer-discovered");
        assert_eq!(first["data"]["peerId"], newcomer.handle.peer_id.as_str());
        assert_eq!(first["targetPeerId"], member.handle.peer_id.as_str());
    }
}

#[test]
fn leaving_tells_the_network_once() {
    let registry = Registry::new(10, None, None);
    let (a, b) = (peer(1, 1), peer(2, 2));
    registry.register(a.handle.clone()).unwrap();
    registry.register(b.handle.clone()).unwrap();
    announce(&registry, &a, "n");
    announce(&registry, &b, "n");
    texts(&a.rx);
    registry.leave(b.handle.peer_id, "goodbye");
    registry.unregister(b.handle.peer_id, b.handle.serial, "closed");
    let to_a = texts(&a.rx);
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_a[0]["type"], "peer-disconnected");
    assert_eq!(to_a[0]["data"]["reason"], "goodbye");
}

#[test]
fn signals_stay_inside_the_senders_network() {
    let registry = Registry::new(10, None, None);
    let (a, b, c) = (peer(1, 1), peer(2, 2), peer(3, 3));
    for p in [&a, &b, &c] {
        registry.register(p.handle.clone()).unwrap();
    }
    let (ida, idb, idc) = (a.handle.peer_id, b.handle.peer_id, c.handle.peer_id);
    let offer = SignalKind::Offer;
    assert_eq!(registry.deliver_signal(ida, "n", idb, offer, None), Err(RouteError::NotInNetwork));
    announce(&registry, &a, "n");
    announce(&registry, &b, "n");
    announce(&registry, &c, "m");
    assert_eq!(registry.deliver_signal(ida, "m", idc, offer, None), Err(RouteError::NotInNetwork));
    assert_eq!(registry.deliver_signal(ida, "n", idc, offer, None), Err(RouteError::UnknownTarget));
    texts(&b.rx);
    let data = RawValue::from_string("{\"x\":1}".to_string()).unwrap();
    registry.deliver_signal(ida, "n", idb, offer, Some(&data)).unwrap();
    let got = texts(&b.rx);
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0]["data"], got[0]["fromPeerId"].as_str()), (&serde_json::json!({"x": 1}), Some(ida.as_str())));
}
