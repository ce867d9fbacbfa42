//! docs/protocol.md §2, §3: routing signals, `ping`, and the `error` replies.

mod common;

use common::{Client, new_peer_id, start};
use serde_json::{Value, json};
use tungstenite::Message;

fn pair(addr: std::net::SocketAddr, network: &str) -> (Client, Client) {
    let mut a = Client::join(addr, network);
    let b = Client::join(addr, network);
    a.drain();
    (a, b)
}

fn error_of(messages: &[Value]) -> &Value {
    messages.iter().find(|m| m["type"] == "error").unwrap_or_else(|| panic!("no error reply in {messages:?}"))
}

#[test]
fn every_signal_type_reaches_its_target_intact() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    let kinds = [
        "offer",
        "answer",
        "ice-candidate",
        "renegotiation-offer",
        "renegotiation-answer",
        "ice-restart-offer",
        "ice-restart-answer",
    ];
    for kind in kinds {
        let data = json!({"sdp": format!("v=0\r\n{kind}"), "n": 1.5, "nested": {"list": [1, "two", null]}});
        a.send(json!({"type": kind, "data": data, "networkName": "n", "targetPeerId": b.id, "maxPeers": 3}));
        let got = b.wait_for(kind, |m| m["type"] == kind);
        assert_eq!(got["data"], data, "{kind}");
        assert_eq!(got["fromPeerId"], a.id);
        assert_eq!(got["targetPeerId"], b.id);
        assert_eq!(got["networkName"], "n");
        assert!(got["timestamp"].is_u64());
    }
    assert!(a.drain().is_empty(), "the sender gets no reply for a delivered signal");
}

#[test]
fn an_offer_and_answer_cross_in_the_default_network() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    a.send(json!({"type": "announce", "data": {"peerId": a.id}}));
    a.drain();
    b.send(json!({"type": "announce", "data": {"peerId": b.id}}));
    b.drain();
    a.send(json!({"type": "offer", "data": {"sdp": "o"}, "targetPeerId": b.id}));
    assert_eq!(b.wait_for("offer", |m| m["type"] == "offer")["networkName"], "global");
    b.send(json!({"type": "answer", "data": {"sdp": "a"}, "networkName": "global", "targetPeerId": a.id}));
    assert_eq!(a.wait_for("answer", |m| m["type"] == "answer")["data"]["sdp"], "a");
}

#[test]
fn from_peer_id_is_always_the_senders_own() {
    let server = start();
    let addr = server.local_addr();
    let (mut a, mut b) = pair(addr, "n");
    let victim = Client::join(addr, "n");
    b.drain();
    a.send(json!({"type": "offer", "data": {}, "networkName": "n", "targetPeerId": b.id, "fromPeerId": victim.id}));
    assert_eq!(b.wait_for("offer", |m| m["type"] == "offer")["fromPeerId"], a.id);
}

#[test]
fn a_signal_without_a_target_is_ignored() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    a.send(json!({"type": "offer", "data": {}, "networkName": "n"}));
    a.send(json!({"type": "offer", "data": {}, "networkName": "n", "targetPeerId": ""}));
    assert!(a.drain().is_empty());
    assert!(b.drain().is_empty());
}

#[test]
fn a_signal_for_an_unknown_target_gets_a_distinct_error() {
    let server = start();
    let (mut a, _b) = pair(server.local_addr(), "n");
    for target in [new_peer_id(), "not-an-id".to_string()] {
        a.send(json!({"type": "offer", "data": {}, "networkName": "n", "targetPeerId": target}));
        let replies = a.drain();
        let error = error_of(&replies);
        assert_eq!(error["code"], "unknown-target");
        assert!(error["error"].as_str().unwrap().contains("not connected"), "{error}");
    }
}

#[test]
fn signals_never_cross_networks() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::join(addr, "one");
    let mut b = Client::join(addr, "two");
    // Naming the target's network does not help: the sender is not in it.
    a.send(json!({"type": "offer", "data": {}, "networkName": "two", "targetPeerId": b.id}));
    assert_eq!(error_of(&a.drain())["code"], "not-in-network");
    // Naming its own network: the target is not there, and that looks like any unknown peer.
    a.send(json!({"type": "offer", "data": {}, "networkName": "one", "targetPeerId": b.id}));
    assert_eq!(error_of(&a.drain())["code"], "unknown-target");
    assert!(b.drain().is_empty(), "a signal crossed networks");
}

#[test]
fn a_peer_must_announce_before_signalling() {
    let server = start();
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    let mut b = Client::join(addr, "global");
    a.send(json!({"type": "offer", "data": {}, "targetPeerId": b.id}));
    let replies = a.drain();
    let error = error_of(&replies);
    assert_eq!(error["code"], "not-in-network");
    assert!(error["error"].as_str().unwrap().contains("announce"), "{error}");
    assert!(b.drain().is_empty());
}

#[test]
fn ping_gets_pong() {
    let server = start();
    let mut a = Client::connect(server.local_addr());
    a.send(json!({"type": "ping", "data": {"timestamp": 1}}));
    let pong = a.wait_for("pong", |m| m["type"] == "pong");
    assert_eq!(pong["fromPeerId"], "system");
    assert_eq!(pong["targetPeerId"], a.id);
    assert!(pong["data"]["timestamp"].is_u64());
    assert!(pong["timestamp"].is_u64());
}

#[test]
fn cleanup_messages_are_accepted_silently() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    a.send(json!({"type": "cleanup", "data": {"peerId": a.id, "targetPeerId": b.id}, "networkName": "n", "targetPeerId": b.id}));
    a.send(json!({"type": "cleanup-all"}));
    assert!(a.drain().is_empty());
    assert!(b.drain().is_empty());
}

#[test]
fn an_unknown_type_gets_the_reference_error() {
    let server = start();
    let mut a = Client::join(server.local_addr(), "n");
    a.send(json!({"type": "chat", "data": "hi"}));
    let replies = a.drain();
    let error = error_of(&replies);
    assert_eq!(
        error["error"],
        "Signaling server does not route 'chat' messages. Use WebRTC data channels for peer-to-peer communication."
    );
    assert!(error["timestamp"].is_u64());
}

/// The real client answers a simultaneous offer with `connection-rejected`; its glare handling works
/// only if the server does not pass that on (the rejected side would close its half-built connection
/// and never answer), so it is answered like any unknown type, as the reference does.
#[test]
fn connection_rejected_is_answered_not_routed() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    let rejection = json!({"reason": "initiator_role_conflict", "peerId": a.id});
    a.send(json!({"type": "connection-rejected", "data": rejection, "networkName": "n", "targetPeerId": b.id}));
    let replies = a.drain();
    let error = error_of(&replies);
    assert_eq!(error["code"], "unsupported-type");
    assert!(error["error"].as_str().unwrap().contains("'connection-rejected'"), "{error}");
    // a's reader would have routed it before replying to a, so b would have it before its pong.
    assert!(b.drain().is_empty(), "connection-rejected was routed");
}

#[test]
fn peer_discovered_from_a_plain_peer_is_ignored() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    a.send(json!({"type": "peer-discovered", "data": {"peerId": new_peer_id()}, "networkName": "n"}));
    assert!(a.drain().is_empty());
    assert!(b.drain().is_empty(), "a plain peer injected a discovery");
}

#[test]
fn malformed_messages_get_an_error_and_the_connection_stays() {
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    let cases = [
        ("{not json", "invalid-json"),
        ("[1,2,3]", "invalid-message"),
        ("{\"data\":{}}", "invalid-message"),
        ("{\"type\":42}", "invalid-message"),
        ("{\"type\":\"offer\",\"targetPeerId\":{}}", "invalid-message"),
        ("{\"type\":\"announce\",\"data\":\"x\"}", "invalid-announce"),
    ];
    for (text, code) in cases {
        a.send_raw(Message::text(text));
        let replies = a.drain();
        assert_eq!(error_of(&replies)["code"], code, "{text}");
    }
    a.send_raw(Message::binary(vec![1u8, 2, 3]));
    assert_eq!(error_of(&a.drain())["code"], "binary-not-supported");
    let stats = common::http_get(server.local_addr(), "/stats").json();
    assert_eq!(stats["rejectedMessages"], cases.len() + 1, "every rejected message is counted");
    // Still a working peer.
    a.send(json!({"type": "offer", "data": {"ok": true}, "networkName": "n", "targetPeerId": b.id}));
    assert_eq!(b.wait_for("offer", |m| m["type"] == "offer")["data"]["ok"], true);
}

#[test]
fn an_oversized_message_closes_with_1009_and_others_are_unharmed() {
    let server = common::start_with(|c| c.max_message_size = 64 * 1024);
    let (mut a, mut b) = pair(server.local_addr(), "n");
    let huge = format!("{{\"type\":\"offer\",\"data\":\"{}\"}}", "x".repeat(100 * 1024));
    // The server may close before the whole frame is written; a failed write is fine here.
    let _ = a.ws.send(Message::text(huge));
    let close = a.expect_close().expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    let left = b.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], a.id);
}

#[test]
fn signals_to_a_peer_that_reads_late_arrive_whole_and_in_order() {
    // Two senders at once, 12 MB of offers in all, for a target that reads nothing until they are
    // done: the socket fills, some signals go straight to it and the rest wait in its queue.
    let server = common::start_with(|c| {
        c.max_messages_per_sec = 1_000_000;
        c.max_bytes_per_sec = 1 << 40;
        c.message_burst = 1_000_000;
        c.max_queued_bytes = 64 << 20;
    });
    let addr = server.local_addr();
    let mut target = Client::join(addr, "n");
    let senders: Vec<Client> = (0..2).map(|_| Client::join(addr, "n")).collect();
    let sender_ids: Vec<String> = senders.iter().map(|s| s.id.clone()).collect();
    target.wait_for("both senders", |m| m["type"] == "peer-discovered" && m["data"]["peerId"] == sender_ids[1]);
    const EACH: usize = 384;
    let blob = "x".repeat(16 * 1024);
    let threads: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let (blob, target_id) = (blob.clone(), target.id.clone());
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let data = json!({"n": n, "blob": blob});
                    sender.send(json!({"type": "offer", "networkName": "n", "targetPeerId": target_id, "data": data}));
                }
                sender
            })
        })
        .collect();
    let _senders: Vec<Client> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut next = [0; 2];
    while next.iter().any(|&n| n < EACH) {
        let offer = target.wait_for("the next offer", |m| m["type"] == "offer");
        let from = sender_ids.iter().position(|id| offer["fromPeerId"] == *id).expect("an offer from a sender");
        assert_eq!(offer["data"]["n"], next[from], "offers from one sender out of order");
        assert_eq!(offer["data"]["blob"].as_str().map(str::len), Some(blob.len()));
        next[from] += 1;
    }
}

/// A reader whose peer falls silent for a while stops waiting in its read and waits with the
/// deeper part of its stack handed back (`peer/mod.rs`, `IDLE_AFTER`; `platform/idle_stack.rs`).
/// A frame that arrives in two parts around such a pause is read whole, and so is every message
/// after the next pause.
#[test]
fn a_message_split_by_a_pause_arrives_whole_and_the_peer_goes_on() {
    // Longer than the server's idle wait (half a second), twice over. The pause is the scenario, a
    // peer's silence, not a wait for the server.
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(1000);
    let server = start();
    let (mut a, mut b) = pair(server.local_addr(), "n");
    // Bigger than the reader's 256-byte buffer, so the frame takes several reads on either side.
    let sdp = "a=candidate:1 1 udp 2122260223 10.0.0.1 54321 typ host\r\n".repeat(20);
    let offer = json!({"type": "offer", "data": {"sdp": sdp}, "networkName": "n", "targetPeerId": b.id});
    let frame = masked_text_frame(offer.to_string().as_bytes(), [0x37, 0xfa, 0x21, 0x3d]);
    let (first, rest) = frame.split_at(frame.len() / 2);
    let tungstenite::stream::MaybeTlsStream::Plain(socket) = a.ws.get_mut() else { unreachable!("plain ws://") };
    std::io::Write::write_all(socket, first).unwrap();
    std::thread::sleep(PAUSE);
    std::io::Write::write_all(socket, rest).unwrap();
    let got = b.wait_for("the offer", |m| m["type"] == "offer");
    assert_eq!(got["data"]["sdp"], sdp);
    assert_eq!(got["fromPeerId"], a.id);

    std::thread::sleep(PAUSE);
    b.send(json!({"type": "answer", "data": {"sdp": "answer"}, "networkName": "n", "targetPeerId": a.id}));
    assert_eq!(a.wait_for("the answer", |m| m["type"] == "answer")["data"]["sdp"], "answer");
    assert!(a.drain().is_empty() && b.drain().is_empty(), "no error replies");
}

/// A client's text frame, masked with `key`, as RFC 6455 §5.2 lays it out (payloads under 64 KiB).
fn masked_text_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x81];
    match u16::try_from(payload.len()) {
        Ok(len) if len < 126 => frame.push(0x80 | len as u8),
        Ok(len) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => panic!("payloads of 64 KiB and more need the 8-byte length"),
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ key[i % 4]));
    frame
}
