//! docs/protocol.md §1: who may connect, and what a connection is told first.

mod common;

use common::{Client, new_peer_id, open, refused, start, start_with};
use tungstenite::Message;

/// The HTTP error with which the server refuses an upgrade.
fn upgrade_error(addr: std::net::SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> String {
    match open(addr, path_and_query, headers) {
        Err(error) => error,
        Ok(_) => panic!("the upgrade to {path_and_query} was accepted"),
    }
}

#[test]
fn a_valid_peer_id_is_greeted_with_connected() {
    let server = start();
    // `connect_as` checks the whole greeting: type, data.peerId, fromPeerId "system".
    let mut client = Client::connect(server.local_addr());
    assert!(client.drain().is_empty(), "nothing but the greeting before any announce");
}

#[test]
fn the_upgrade_is_accepted_on_any_path_and_either_case() {
    let server = start();
    let addr = server.local_addr();
    for path in ["/", "/ws", "/some/other/path"] {
        let id = new_peer_id().to_uppercase();
        let mut ws = open(addr, &format!("{path}?peerId={id}"), &[]).unwrap_or_else(|e| panic!("{path}: {e}"));
        let Ok(Message::Text(greeting)) = ws.read() else { panic!("{path}: no greeting") };
        assert!(greeting.as_str().contains(&id), "{path}: {greeting}");
    }
}

#[test]
fn an_invalid_or_missing_peer_id_is_closed_with_1008() {
    let server = start();
    let addr = server.local_addr();
    let too_short = &new_peer_id()[..39];
    let not_hex = format!("{}g", &new_peer_id()[..39]);
    for query in ["/", "/?peerId=", &format!("/?peerId={too_short}"), &format!("/?peerId={not_hex}"), "/?peerId=%00%01"]
    {
        assert_eq!(refused(addr, query), (1008, "Invalid peerId format".to_string()), "{query}");
    }
}

#[test]
fn a_second_connection_with_a_live_peer_id_is_refused() {
    let server = start();
    let addr = server.local_addr();
    let mut first = Client::connect(addr);
    assert_eq!(refused(addr, &format!("/?peerId={}", first.id)), (1008, "Peer already connected".to_string()));
    // The same id in upper case is the same id, not a second peer.
    let twin = first.id.to_ascii_uppercase();
    assert_eq!(refused(addr, &format!("/?peerId={twin}")), (1008, "Peer already connected".to_string()));
    // The first connection is unharmed.
    assert!(first.drain().is_empty());
}

#[test]
fn a_peer_id_is_echoed_as_sent() {
    let server = start();
    let addr = server.local_addr();
    let id = new_peer_id().to_ascii_uppercase();
    // connect_as checks that `connected` carries the id exactly as sent.
    let mut upper = Client::connect_as(addr, &id);
    upper.announce("n");
    let mut other = Client::join(addr, "n");
    let heard = upper.wait_for("peer-discovered", |m| m["type"] == "peer-discovered");
    assert_eq!(heard["targetPeerId"], id);
    other.drain();
}

#[test]
fn a_peer_id_is_free_again_once_its_connection_closed() {
    let server = start();
    let addr = server.local_addr();
    let id = new_peer_id();
    let mut first = Client::connect_as(addr, &id);
    first.ws.close(None).expect("close");
    first.expect_close();
    // The server unregisters the id when the close completes; poll /stats until it has.
    common::wait_stat(addr, "connections", serde_json::json!(0));
    Client::connect_as(addr, &id);
}

#[test]
fn max_connections_refuses_the_extra_peer() {
    let server = start_with(|c| c.max_connections = 2);
    let addr = server.local_addr();
    let _a = Client::connect(addr);
    let mut b = Client::connect(addr);
    assert_eq!(
        refused(addr, &format!("/?peerId={}", new_peer_id())),
        (1008, "Maximum connections reached".to_string())
    );
    // Room again once a peer leaves.
    b.ws.close(None).expect("close");
    b.expect_close();
    common::wait_stat(addr, "connections", serde_json::json!(1));
    Client::connect(addr);
}

#[test]
fn auth_token_is_required_by_header_or_query_when_set() {
    let server = start_with(|c| c.auth_token = Some("s3cret token".into()));
    let addr = server.local_addr();
    let id = new_peer_id();

    let missing = upgrade_error(addr, &format!("/?peerId={id}"), &[]);
    assert!(missing.starts_with("HTTP 401"), "{missing}");
    let raw = common::http_raw(
        addr,
        &format!(
            "GET /?peerId={id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    );
    assert_eq!(raw.status, 401);
    assert_eq!(raw.header("Content-Type"), Some("application/json"));
    assert!(raw.json()["error"].as_str().unwrap().contains("token"), "{}", raw.body);
    assert!(!raw.body.contains("s3cret"), "the token is never echoed");
    let wrong = upgrade_error(addr, &format!("/?peerId={id}"), &[("Authorization", "Bearer nope")]);
    assert!(wrong.starts_with("HTTP 401"), "{wrong}");
    let wrong_query = upgrade_error(addr, &format!("/?peerId={id}&token=s3cret"), &[]);
    assert!(wrong_query.starts_with("HTTP 401"), "{wrong_query}");

    let mut by_header =
        open(addr, &format!("/?peerId={id}"), &[("Authorization", "Bearer s3cret token")]).expect("accepted");
    assert!(matches!(by_header.read(), Ok(Message::Text(t)) if t.as_str().contains("connected")));
    let other = new_peer_id();
    let mut by_query = open(addr, &format!("/ws?peerId={other}&token=s3cret%20token"), &[]).expect("accepted");
    assert!(matches!(by_query.read(), Ok(Message::Text(t)) if t.as_str().contains("connected")));
}

#[test]
fn a_broken_upgrade_request_gets_a_400() {
    let server = start();
    let response = common::http_raw(
        server.local_addr(),
        "GET /?peerId=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    assert!(response.json()["error"].as_str().unwrap().contains("Sec-WebSocket"));
}
