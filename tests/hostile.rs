//! Hardening: bad input, hostile peers and faults. Each test does something a broken or hostile
//! client would do, checks the server's answer, and then checks that a well-behaved pair of peers
//! is still served.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, WAIT, http_get, http_raw, new_peer_id, refused, start, start_with, wait_json, wait_stat};
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// Two fresh peers join a network, discover each other and exchange an offer.
fn pair_still_works(addr: SocketAddr) {
    let network = format!("check-{}", &new_peer_id()[..6]);
    let mut a = Client::join(addr, &network);
    let mut b = Client::connect(addr);
    assert_eq!(common::discovered_ids(&b.announce(&network)), vec![a.id.clone()]);
    a.send(json!({"type": "offer", "networkName": network, "targetPeerId": b.id, "data": {"sdp": "still fine"}}));
    assert_eq!(b.wait_for("offer", |m| m["type"] == "offer")["data"]["sdp"], "still fine");
}

fn error_code(messages: &[Value]) -> Option<String> {
    messages.iter().find(|m| m["type"] == "error").and_then(|m| m["code"].as_str()).map(String::from)
}

/// Opens a raw TCP connection and completes a WebSocket upgrade as `peer_id`, reading the 101.
fn raw_upgrade(addr: SocketAddr, peer_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /?peerId={peer_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// A masked client frame (zero mask key, so the payload goes as is).
fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        len if len < 126 => frame.push(0x80 | len as u8),
        len if len < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn invalid_missing_and_duplicate_peer_ids_are_refused() {
    let server = start();
    let addr = server.local_addr();
    let holder = Client::connect(addr);
    for query in ["/", "/?peerId=", "/?peerId=xyz", &format!("/?peerId={}0", holder.id)] {
        assert_eq!(refused(addr, query).0, 1008, "{query}");
    }
    assert_eq!(refused(addr, &format!("/?peerId={}", holder.id)), (1008, "Peer already connected".into()));
    pair_still_works(addr);
}

#[test]
fn a_wrong_token_is_refused_before_the_upgrade() {
    let server = start_with(|c| c.auth_token = Some("right".into()));
    let addr = server.local_addr();
    let error = common::open(addr, &format!("/?peerId={}&token=wrong", new_peer_id()), &[]).err().unwrap_or_default();
    assert!(error.starts_with("HTTP 401"), "{error}");
    // The well-behaved pair needs the token too.
    let ws = common::open(addr, &format!("/?peerId={}&token=right", new_peer_id()), &[]);
    assert!(ws.is_ok());
}

#[test]
fn malformed_json_shapes_and_types_get_errors_and_the_peer_stays() {
    let server = start();
    let addr = server.local_addr();
    let mut bad = Client::join(addr, "n");
    let cases: [(&str, &str); 9] = [
        ("", "invalid-json"),
        ("{\"type\":\"offer\"", "invalid-json"),
        ("null", "invalid-message"),
        ("42", "invalid-message"),
        ("{\"type\":null}", "invalid-message"),
        ("{\"type\":\"announce\",\"networkName\":{}}", "invalid-message"),
        ("{\"type\":\"offer\",\"targetPeerId\":[1]}", "invalid-message"),
        ("{\"type\":\"no-such-type\"}", "unsupported-type"),
        ("{\"type\":\"announce\",\"data\":[1,2]}", "invalid-announce"),
    ];
    for (text, code) in cases {
        bad.send_raw(Message::text(text));
        assert_eq!(error_code(&bad.drain()).as_deref(), Some(code), "{text:?}");
    }
    // Deep nesting costs no stack: `data` is skipped over, never parsed into a tree.
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    bad.send_raw(Message::text(format!("{{\"type\":\"offer\",\"data\":{}}}", nested(100_000))));
    // (An announce's data must stay under 16 KiB.)
    let announce =
        format!("{{\"type\":\"announce\",\"networkName\":\"deep\",\"data\":{{\"isHub\":{}}}}}", nested(8000));
    bad.send_raw(Message::text(announce));
    assert!(error_code(&bad.drain()).is_none());
    pair_still_works(addr);
}

#[test]
fn a_10_mb_frame_is_closed_with_1009() {
    let server = start();
    let addr = server.local_addr();
    let mut stream = raw_upgrade(addr, &new_peer_id());
    let payload = vec![b'x'; 10 << 20];
    // The server stops reading at the limit; the rest of the write may fail, which is fine.
    let _ = stream.write_all(&client_frame(0x1, true, &payload));
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    // The server sends only the close frame (opcode byte 0x88, unmasked, 2-byte code first).
    let close_at = reply.iter().position(|&b| b == 0x88).expect("a close frame");
    assert_eq!(u16::from_be_bytes([reply[close_at + 2], reply[close_at + 3]]), 1009);
    pair_still_works(addr);
}

#[test]
fn fragmented_frames_are_reassembled_and_binary_frames_refused() {
    let server = start();
    let addr = server.local_addr();
    let mut target = Client::join(addr, "frag");
    let mut sender = Client::join(addr, "frag");
    target.drain();
    let text =
        json!({"type": "offer", "networkName": "frag", "targetPeerId": target.id, "data": {"sdp": "in three parts"}})
            .to_string();
    let (first, rest) = text.split_at(10);
    let (second, third) = rest.split_at(10);
    let mut frames = vec![Frame::message(first.as_bytes().to_vec(), OpCode::Data(Data::Text), false)];
    frames.push(Frame::message(second.as_bytes().to_vec(), OpCode::Data(Data::Continue), false));
    frames.push(Frame::message(third.as_bytes().to_vec(), OpCode::Data(Data::Continue), true));
    for frame in frames {
        sender.ws.write(Message::Frame(frame)).unwrap();
    }
    sender.ws.flush().unwrap();
    assert_eq!(target.wait_for("offer", |m| m["type"] == "offer")["data"]["sdp"], "in three parts");
    sender.send_raw(Message::binary(vec![0u8; 100]));
    assert_eq!(error_code(&sender.drain()).as_deref(), Some("binary-not-supported"));
    // A continuation frame with nothing to continue is a protocol error: close 1002.
    let header = FrameHeader { opcode: OpCode::Data(Data::Continue), ..FrameHeader::default() };
    let orphan = Frame::from_payload(header, b"orphan".to_vec().into());
    sender.ws.write(Message::Frame(orphan)).unwrap();
    sender.ws.flush().unwrap();
    assert_eq!(sender.expect_close().map(|f| u16::from(f.code)), Some(1002));
    pair_still_works(addr);
}

#[test]
fn slowloris_silent_and_oversized_heads_are_cut_off() {
    let server = start_with(|c| c.handshake_timeout = Duration::from_millis(500));
    let addr = server.local_addr();
    // Ten sockets dribbling a head that never ends, and ten that say nothing at all.
    let mut dribblers: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for socket in &mut dribblers {
        socket.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").unwrap();
    }
    let silent: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Meanwhile everyone else is served.
    pair_still_works(addr);
    // A huge header is refused with 431.
    let huge = format!("GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(http_raw(addr, &huge).status, 431);
    // The slow and the silent are answered 408 and closed, within the handshake timeout.
    for mut socket in dribblers.into_iter().chain(silent) {
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let mut reply = String::new();
        let started = Instant::now();
        let _ = socket.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    pair_still_works(addr);
}

#[test]
fn a_peer_that_never_reads_is_cut_off_without_slowing_its_senders() {
    let server = start_with(|c| {
        c.max_queued_bytes = 256 * 1024;
        c.max_messages_per_sec = 1_000_000;
        c.max_bytes_per_sec = 1 << 40;
        c.message_burst = 1_000_000;
    });
    let addr = server.local_addr();
    let deaf_id = new_peer_id();
    let deaf = raw_upgrade(addr, &deaf_id);
    let announce = json!({"type": "announce", "networkName": "n"}).to_string();
    (&deaf).write_all(&client_frame(0x1, true, announce.as_bytes())).unwrap();
    let mut sender = Client::connect(addr);
    let deadline = Instant::now() + WAIT;
    while !common::discovered_ids(&sender.announce("n")).contains(&deaf_id) {
        assert!(Instant::now() < deadline, "the deaf peer never joined");
    }
    // 40 MB of offers for a peer that reads nothing: far more than socket buffers and its queue.
    let blob = "x".repeat(16 * 1024);
    let started = Instant::now();
    let mut cut_off = false;
    for _ in 0..2500 {
        sender.send(json!({"type": "offer", "networkName": "n", "targetPeerId": deaf_id, "data": {"sdp": blob}}));
        if http_get(addr, "/stats").json()["connections"] == 1 {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the deaf peer was never cut off");
    assert!(started.elapsed() < Duration::from_secs(20), "senders were slowed down: {:?}", started.elapsed());
    let left = sender.wait_for("peer-disconnected", |m| m["type"] == "peer-disconnected");
    assert_eq!(left["data"]["peerId"], deaf_id);
    drop(deaf);
    pair_still_works(addr);
}

#[test]
fn twice_max_connections_leaves_no_thread_or_descriptor_behind() {
    let server = start_with(|c| c.max_connections = 20);
    let addr = server.local_addr();
    let baseline = http_get(addr, "/health").json()["memory"].clone();
    let mut accepted = Vec::new();
    let mut refusals = 0;
    for _ in 0..40 {
        let id = new_peer_id();
        let mut ws = common::open(addr, &format!("/?peerId={id}"), &[]).expect("upgrade");
        match ws.read() {
            Ok(Message::Text(_)) => accepted.push(ws),
            Ok(Message::Close(Some(frame))) => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1008, "Maximum connections reached"));
                refusals += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((accepted.len(), refusals), (20, 20));
    assert_eq!(http_get(addr, "/stats").json()["connections"], 20);
    for mut ws in accepted {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    wait_stat(addr, "connections", json!(0));
    // Threads and descriptors come back to where they were (the test process shares them, so allow
    // a little slack for the test's own threads).
    wait_json(addr, "/health", &format!("threads and fds back to {baseline}"), |health| {
        let now = &health["memory"];
        let threads_back = now["threads"].as_u64() <= baseline["threads"].as_u64().map(|t| t + 2);
        let fds_back = now["openFds"].as_u64() <= baseline["openFds"].as_u64().map(|f| f + 2);
        threads_back && fds_back
    });
    pair_still_works(addr);
}

#[test]
fn out_of_threads_refuses_newcomers_but_still_answers_health() {
    // 64 threads are always kept for HTTP; this leaves room for three peers (a thread each).
    let server = start_with(|c| c.max_threads = 64 + 3);
    let addr = server.local_addr();
    let mut peers: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    assert_eq!(
        refused(addr, &format!("/?peerId={}", new_peer_id())),
        (1008, "Server cannot accept more connections".to_string())
    );
    assert_eq!(http_get(addr, "/health").json()["status"], "healthy");
    // Room again once peers leave.
    for mut peer in peers.drain(..2) {
        peer.ws.close(None).expect("close");
        peer.expect_close();
    }
    wait_stat(addr, "connections", json!(1));
    // Their threads end a moment after they are unregistered (the request asking is answered by the
    // HTTP desk, which takes no thread of its own).
    wait_json(addr, "/stats", "the departed peers' threads to end", |stats| stats["connectionThreads"] == 1);
    pair_still_works(addr);
}

#[test]
fn hub_only_messages_from_a_plain_peer_change_nothing() {
    let server = start_with(|c| c.is_hub = true);
    let addr = server.local_addr();
    let mut watcher = Client::join(addr, "n");
    let mut liar = Client::join(addr, "n");
    watcher.drain();
    let fake = new_peer_id();
    for message in [
        json!({"type": "peer-discovered", "networkName": "n", "data": {"peerId": fake, "isHub": false}}),
        json!({"type": "peer-disconnected", "networkName": "n", "data": {"peerId": watcher.id}}),
        json!({"type": "hub-heartbeat", "relay": {"id": "01", "origin": fake, "hops": 0}}),
        json!({"type": "hub-hello", "data": {"hubId": fake, "capabilities": ["peerpigeon-rs-relay"]}}),
    ] {
        liar.send(message);
    }
    assert!(liar.drain().is_empty());
    assert!(watcher.drain().is_empty(), "a plain peer's hub message reached another peer");
    assert_eq!(http_get(addr, "/stats").json()["remotePeers"], 0);
    pair_still_works(addr);
}

/// Floods at five times the message rate, of text, pings and pongs: each run of dropped messages
/// gets one error, and a flood that goes on for the grace period (3 s) is closed with 1008.
#[test]
fn message_floods_of_any_frame_are_dropped_then_closed() {
    let server = start_with(|c| {
        c.max_messages_per_sec = 100;
        c.message_burst = 50;
    });
    let addr = server.local_addr();
    type Flood = (&'static str, fn() -> Message);
    let floods: [Flood; 3] = [
        ("text", || Message::text(json!({"type": "cleanup"}).to_string())),
        ("ping", || Message::Ping(Vec::new().into())),
        ("pong", || Message::Pong(Vec::new().into())),
    ];
    for (kind, frame) in floods {
        let mut flooder = Client::join(addr, "n");
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = flooder.ws.get_mut() {
            stream.set_nonblocking(true).unwrap();
        }
        let started = Instant::now();
        let (mut errors, mut closed) = (0, None);
        // 500 frames a second, reading what comes back, until closed or 8 s.
        'flood: while started.elapsed() < Duration::from_secs(8) {
            for _ in 0..5 {
                if flooder.ws.send(frame()).is_err() {
                    break 'flood;
                }
            }
            let pause = Instant::now() + Duration::from_millis(10);
            while Instant::now() < pause {
                match flooder.ws.read() {
                    Ok(Message::Text(text)) if text.as_str().contains("rate-limited") => errors += 1,
                    Ok(Message::Close(frame)) => {
                        closed = frame.map(|f| u16::from(f.code));
                        break 'flood;
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::yield_now()
                    }
                    Err(_) => break 'flood,
                }
            }
        }
        let took = started.elapsed();
        assert_eq!(closed, Some(1008), "{kind} flood");
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(6), "{kind} flood closed after {took:?}");
        if kind == "text" {
            assert_eq!(errors, 1, "one error per run of dropped messages");
        }
        pair_still_works(addr);
    }
}

/// Bytes count whatever frame they come in: a flood of big messages under the message rate, and a
/// flood of empty continuation frames that never completes a message, are both paused for and then
/// closed with 1008.
#[test]
fn byte_floods_are_paused_then_closed() {
    let server = start_with(|c| {
        c.max_bytes_per_sec = 64 * 1024;
        c.max_message_size = 64 * 1024;
        c.max_messages_per_sec = 1_000_000;
        c.message_burst = 1_000_000;
    });
    let addr = server.local_addr();
    let big = json!({"type": "cleanup", "data": "x".repeat(32 * 1024)}).to_string();
    let floods: [(&str, Vec<u8>); 2] = [
        ("32 KiB messages", client_frame(0x1, true, big.as_bytes())),
        ("empty continuations", client_frame(0x0, false, b"")),
    ];
    for (kind, frame) in floods {
        let mut socket = raw_upgrade(addr, &new_peer_id());
        if kind == "empty continuations" {
            // A text message begun and never finished.
            socket.write_all(&client_frame(0x1, false, b"{")).unwrap();
        }
        socket.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
        let started = Instant::now();
        // Bytes the server took in the first two seconds (after its close it reads and discards
        // whatever still comes, for a moment, so later bytes say nothing about pacing).
        let mut sent: usize = 0;
        // Write as fast as the server reads, until it closes (writes then fail) or 10 s pass.
        while started.elapsed() < Duration::from_secs(10) {
            match socket.write(&frame) {
                Ok(n) if started.elapsed() < Duration::from_secs(2) => sent += n,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let mut reply = Vec::new();
        let _ = socket.read_to_end(&mut reply);
        let took = started.elapsed();
        // The close frame: 0x88, length, then the code 1008 (0x03F0).
        let close_at = reply.windows(4).position(|w| w[0] == 0x88 && w[2..4] == [0x03, 0xF0]);
        assert!(close_at.is_some(), "{kind}: no 1008 close in {} bytes back", reply.len());
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(8), "{kind}: closed after {took:?}");
        // Paced: the burst, two seconds' worth and what socket buffers hold; unpaced, loopback
        // takes gigabytes in two seconds.
        assert!(sent < 32 << 20, "{kind}: {sent} bytes taken in 2 s");
        pair_still_works(addr);
    }
}

#[test]
fn shutdown_under_load_delivers_everything_acknowledged_before_closing() {
    let server = start_with(|c| {
        c.max_messages_per_sec = 1_000_000;
        c.max_bytes_per_sec = 1 << 40;
        c.message_burst = 1_000_000;
    });
    let addr = server.local_addr();
    let mut receiver = Client::join(addr, "n");
    let mut sender = Client::join(addr, "n");
    receiver.drain();
    const SIGNALS: usize = 2000;
    for n in 0..SIGNALS {
        sender.send(json!({"type": "offer", "networkName": "n", "targetPeerId": receiver.id, "data": {"n": n}}));
    }
    // The pong acknowledges that the server has handled every offer before it.
    sender.drain();
    let closer = std::thread::spawn(move || server.shutdown());
    let mut got = Vec::new();
    let code = loop {
        match receiver.ws.read() {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(text.as_str()).unwrap();
                got.push(message["data"]["n"].as_u64().unwrap());
            }
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(err) => panic!("connection lost before the close frame: {err}"),
        }
    };
    closer.join().unwrap();
    assert_eq!(code, Some(1001));
    assert_eq!(got, (0..SIGNALS as u64).collect::<Vec<_>>(), "every acknowledged signal, in order, before the close");
}

#[test]
fn a_hub_link_dropping_mid_relay_neither_crashes_nor_duplicates() {
    let hub = |bootstrap: Option<SocketAddr>| {
        start_with(move |c| {
            c.is_hub = true;
            c.bootstrap_hubs = bootstrap.map(|a| format!("ws://{a}")).into_iter().collect();
            c.hub_heartbeat = Duration::from_millis(200);
            c.max_messages_per_sec = 1_000_000;
            c.max_bytes_per_sec = 1 << 40;
            c.message_burst = 1_000_000;
        })
    };
    let a = hub(None);
    let b = hub(Some(a.local_addr()));
    let c = hub(Some(b.local_addr()));
    wait_stat(c.local_addr(), "hubLinks", json!(1));
    wait_stat(b.local_addr(), "hubLinks", json!(2));
    let mut target = Client::join(c.local_addr(), "n");
    let mut sender = Client::connect(a.local_addr());
    let deadline = Instant::now() + WAIT;
    while !common::discovered_ids(&sender.announce("n")).contains(&target.id) {
        assert!(Instant::now() < deadline, "the target never became known on hub A");
    }
    let (c_addr, a_addr) = (c.local_addr(), a.local_addr());
    // Drop the middle hub while signals are crossing it: after the 500th of 3000.
    let (midway_tx, midway) = crossbeam_channel::bounded::<()>(1);
    let killer = std::thread::spawn(move || {
        let _ = midway.recv();
        b.shutdown();
    });
    for n in 0..3000u32 {
        if n == 500 {
            let _ = midway_tx.send(());
        }
        let offer =
            json!({"type": "offer", "networkName": "n", "targetPeerId": target.id, "data": {"n": n}}).to_string();
        if sender.ws.send(Message::text(offer)).is_err() {
            break;
        }
    }
    sender.drain();
    killer.join().unwrap();
    let mut seen = std::collections::HashSet::new();
    for message in target.drain() {
        if message["type"] == "offer" {
            let n = message["data"]["n"].as_u64().unwrap();
            assert!(seen.insert(n), "offer {n} arrived twice");
        }
    }
    // Both ends are alive and well.
    pair_still_works(a_addr);
    pair_still_works(c_addr);
}

#[test]
fn announce_data_over_the_stored_data_limit_is_refused() {
    let server = start_with(|c| c.max_peer_data_bytes = 100);
    let addr = server.local_addr();
    let mut watcher = Client::join(addr, "n");
    let mut bloated = Client::connect(addr);
    bloated.send(json!({"type": "announce", "networkName": "n", "data": {"blob": "x".repeat(200)}}));
    let replies = bloated.drain();
    assert_eq!(error_code(&replies).as_deref(), Some("invalid-announce"));
    assert!(watcher.drain().is_empty(), "a refused announce was still announced");
    // Within the limit it is fine.
    bloated.send(json!({"type": "announce", "networkName": "n", "data": {"blob": "small"}}));
    assert_eq!(watcher.wait_for("peer-discovered", |m| m["type"] == "peer-discovered")["data"]["blob"], "small");
    pair_still_works(addr);
}

/// A client that announces `{"isHub": true}` to a hub, without the hub credential: it gets no
/// hub-only message, nothing it sends is trusted as a relay, and it is not listed as a hub. Run
/// without `AUTH_TOKEN`, and with it (every browser of a deployment holds that token).
#[test]
fn a_client_claiming_to_be_a_hub_is_an_ordinary_peer() {
    for auth_token in [None, Some("peers-token")] {
        let server = start_with(|c| {
            c.is_hub = true;
            c.hub_token = Some("the hubs' secret".into());
            c.auth_token = auth_token.map(String::from);
        });
        let addr = server.local_addr();
        let query = auth_token.map(|t| format!("&token={t}")).unwrap_or_default();
        let join = |network: &str| {
            let id = new_peer_id();
            let ws = common::open(addr, &format!("/?peerId={id}{query}"), &[]).expect("upgrade");
            let mut client = Client { id, ws };
            client.next().expect("connected");
            client.announce(network);
            client
        };
        let mut a = join("n");
        let mut b = join("n");
        a.drain();
        let mut impostor = join("elsewhere");
        // It announces as a hub, into the hub namespace.
        impostor.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
        let told = impostor.drain();
        assert_eq!(error_code(&told).as_deref(), Some("not-a-hub-link"), "{told:?}");
        assert!(told.iter().all(|m| m["type"] != "peer-discovered" && m["type"] != "hub-hello"), "{told:?}");
        assert_eq!(http_get(addr, "/hubs").json()["totalHubs"], 0);
        assert_eq!(http_get(addr, "/hubstats").json()["totalHubs"], 0);
        // What a link could do, it cannot: inject a peer, make a real one leave, speak for someone else.
        let fake = new_peer_id();
        for message in [
            json!({"type": "peer-discovered", "networkName": "n", "data": {"peerId": fake, "isHub": false}}),
            json!({"type": "peer-disconnected", "networkName": "n", "data": {"peerId": a.id}}),
            json!({"type": "hub-heartbeat", "relay": {"id": "02", "origin": fake, "hops": 0}}),
            json!({"type": "offer", "networkName": "n", "targetPeerId": b.id, "fromPeerId": a.id, "data": {}}),
        ] {
            impostor.send(message);
        }
        let replies = impostor.drain();
        assert_eq!(error_code(&replies).as_deref(), Some("not-in-network"), "{replies:?}");
        assert!(a.drain().is_empty() && b.drain().is_empty(), "an impostor's message reached a peer");
        // In the peers' network it is a peer like any other: its isHub passes through, its id is its own.
        impostor.send(json!({"type": "announce", "networkName": "n", "data": {"isHub": true}}));
        assert_eq!(a.wait_for("the impostor", |m| m["type"] == "peer-discovered")["data"]["isHub"], true);
        impostor.drain();
        impostor
            .send(json!({"type": "offer", "networkName": "n", "targetPeerId": b.id, "fromPeerId": a.id, "data": {}}));
        assert_eq!(b.wait_for("offer", |m| m["type"] == "offer")["fromPeerId"], impostor.id);
        assert_eq!(http_get(addr, "/hubs").json()["totalHubs"], 0);
        // And a well-behaved pair, with the token where one is needed.
        let mut c = join("check");
        let mut d = join("check");
        c.wait_for("d", |m| m["type"] == "peer-discovered" && m["data"]["peerId"] == d.id);
        c.send(json!({"type": "offer", "networkName": "check", "targetPeerId": d.id, "data": {"sdp": "fine"}}));
        assert_eq!(d.wait_for("offer", |m| m["type"] == "offer")["data"]["sdp"], "fine");
    }
}

/// Hubs of one mesh link with `HUB_TOKEN`; a hub with the wrong one is told it is not taken as a
/// link, and says so in its `/hubstats`.
#[test]
fn only_hubs_with_the_hub_token_link() {
    let hub = |token: &str, bootstrap: Option<SocketAddr>| {
        let token = token.to_string();
        start_with(move |c| {
            c.is_hub = true;
            c.hub_token = Some(token);
            c.bootstrap_hubs = bootstrap.map(|a| format!("ws://{a}")).into_iter().collect();
        })
    };
    let a = hub("mesh secret", None);
    let b = hub("mesh secret", Some(a.local_addr()));
    wait_stat(a.local_addr(), "hubLinks", json!(1));
    wait_stat(b.local_addr(), "hubLinks", json!(1));
    let outsider = hub("a guess", Some(a.local_addr()));
    let stats = wait_json(outsider.local_addr(), "/hubstats", "the refusal", |s| {
        s["bootstrapHubs"][0]["lastError"].as_str().is_some_and(|e| e.contains("HUB_TOKEN"))
    });
    assert_eq!(stats["bootstrapHubs"][0]["lastError"].as_str().map(|e| e.contains("ordinary peer")), Some(true));
    assert_eq!(http_get(a.local_addr(), "/stats").json()["hubLinks"], 1);
    // The token also works as a path segment, the form a JavaScript hub's bootstrap URL can carry.
    let id = new_peer_id();
    let ws = common::open(a.local_addr(), &format!("/mesh/mesh%20secret?peerId={id}"), &[]).expect("upgrade");
    let mut by_path = Client { id, ws };
    by_path.next().expect("connected");
    by_path.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
    by_path.wait_for("hub-hello", |m| m["type"] == "hub-hello");
    wait_stat(a.local_addr(), "hubLinks", json!(2));
    pair_still_works(a.local_addr());
}

/// With no `HUB_TOKEN`, only this machine may link: a connection from the machine's own network
/// address (not loopback) that announces as a hub stays an ordinary peer.
#[test]
fn without_a_hub_token_only_loopback_may_link() {
    let Some(own_address) = common::non_loopback_address() else {
        println!("no non-loopback address on this machine; the rule is covered by auth.rs's unit test");
        return;
    };
    let server = start_with(|c| {
        c.is_hub = true;
        c.host = "0.0.0.0".into();
    });
    let addr = SocketAddr::new(own_address, server.local_addr().port());
    let mut remote = Client::connect(addr);
    remote.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
    assert_eq!(error_code(&remote.drain()).as_deref(), Some("not-a-hub-link"));
    let loopback = SocketAddr::new([127, 0, 0, 1].into(), server.local_addr().port());
    let mut local = Client::connect(loopback);
    local.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
    local.wait_for("hub-hello", |m| m["type"] == "hub-hello");
    assert_eq!(http_get(loopback, "/stats").json()["hubLinks"], 1);
    pair_still_works(loopback);
}

/// Slowloris from several addresses at once: one address gets only its share of the handshake
/// places, and when all are taken a newcomer from an address holding fewer displaces the oldest of
/// the biggest holder. Meanwhile a well-behaved pair connects and `/health` answers every time.
#[test]
fn slow_heads_from_some_addresses_do_not_lock_out_the_others() {
    let server = start_with(|c| {
        c.max_pending_handshakes = 30;
        c.max_pending_handshakes_per_ip = 10;
    });
    let addr = server.local_addr();
    let source = |n: u8| std::net::Ipv4Addr::new(127, 0, 0, n);
    let slow_head = |from: u8| {
        let mut socket = common::connect_from(source(from), addr).unwrap();
        let _ = socket.write_all(b"GET / HTTP/1.1\r\n");
        socket
    };
    // One address dribbling 25 heads holds 10 places; the rest of its sockets are closed at once.
    let mut held: Vec<TcpStream> = (0..25).map(|_| slow_head(2)).collect();
    wait_json(addr, "/stats", "ten held handshakes", |s| s["pendingHandshakes"] == 10);
    let mut closed = 0;
    for socket in &mut held[10..] {
        socket.set_read_timeout(Some(WAIT)).unwrap();
        if matches!(socket.read(&mut [0u8; 64]), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 15, "the sockets over the per-address share are closed on accept");
    held.truncate(10);
    for _ in 0..10 {
        assert_eq!(http_get(addr, "/health").status, 200);
    }
    pair_still_works(addr);
    // Three more addresses want more places than there are...
    for from in 3..=5 {
        held.extend((0..10).map(|_| slow_head(from)));
    }
    // (A health check of our own may hold a place for a moment, so 29 is as full as 30.)
    wait_json(addr, "/stats", "every place taken", |s| s["pendingHandshakes"].as_u64() >= Some(29));
    // ...and still: a health check whose head is not complete on arrival (it takes the place of the
    // oldest slow head of an address holding ten), a pair, and more health checks.
    let mut late = TcpStream::connect(addr).unwrap();
    late.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    late.write_all(b"Host: x\r\n\r\n").unwrap();
    late.set_read_timeout(Some(WAIT)).unwrap();
    let mut reply = String::new();
    let _ = late.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    pair_still_works(addr);
    for _ in 0..10 {
        assert_eq!(http_get(addr, "/health").status, 200);
    }
    assert!(http_get(addr, "/stats").json()["pendingHandshakes"].as_u64() <= Some(30));
}

/// A monitor that sends its request a moment after connecting, while the only handshake place of its
/// address is held by a silent client: the acceptor holds the monitor's connection until its
/// request arrives and hands it to the HTTP desk, which needs no place. Sent the usual way, as soon
/// as it was accepted, it would have needed a place and been closed unanswered.
#[test]
fn a_request_sent_a_moment_after_connecting_is_answered_without_a_handshake_place() {
    let server = start_with(|c| {
        c.max_pending_handshakes = 1;
        c.max_pending_handshakes_per_ip = 1;
    });
    let addr = server.local_addr();
    let _silent = TcpStream::connect(addr).unwrap();
    wait_json(addr, "/stats", "the place taken", |s| s["pendingHandshakes"] == 1);
    for _ in 0..5 {
        let mut monitor = TcpStream::connect(addr).unwrap();
        // The client's own pause, not a wait for the server: it speaks a moment after connecting.
        std::thread::sleep(Duration::from_millis(5));
        monitor.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        monitor.set_read_timeout(Some(WAIT)).unwrap();
        let mut reply = String::new();
        let _ = monitor.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    }
    // All the while, the silent client held the one place.
    assert_eq!(http_get(addr, "/stats").json()["pendingHandshakes"], 1);
}

/// Peers that never read, several of them: together they may hold at most `MAX_TOTAL_QUEUED_BYTES`;
/// past half of it each may hold only 1 MiB, so the non-readers are cut off and the total stays
/// within its bound while their sender goes on unharmed.
#[test]
fn all_queues_together_are_bounded_too() {
    const TOTAL: u64 = 8 << 20;
    let server = start_with(|c| {
        c.max_queued_bytes = 4 << 20;
        c.max_total_queued_bytes = TOTAL as usize;
        c.max_messages_per_sec = 1_000_000;
        c.message_burst = 1_000_000;
        c.max_bytes_per_sec = 1 << 40;
    });
    let addr = server.local_addr();
    let deaf_ids: Vec<String> = (0..8).map(|_| new_peer_id()).collect();
    let deaf: Vec<TcpStream> = deaf_ids
        .iter()
        .map(|id| {
            let socket = raw_upgrade(addr, id);
            let announce = json!({"type": "announce", "networkName": "n"}).to_string();
            (&socket).write_all(&client_frame(0x1, true, announce.as_bytes())).unwrap();
            socket
        })
        .collect();
    let mut sender = Client::connect(addr);
    let deadline = Instant::now() + WAIT;
    while common::discovered_ids(&sender.announce("n")).len() < deaf_ids.len() {
        assert!(Instant::now() < deadline, "the deaf peers never all joined");
    }
    let blob = "x".repeat(32 * 1024);
    let mut most_queued = 0;
    for round in 0..400 {
        for id in &deaf_ids {
            sender.send(json!({"type": "offer", "networkName": "n", "targetPeerId": id, "data": {"sdp": blob}}));
        }
        if round % 10 == 0 {
            let stats = http_get(addr, "/stats").json();
            most_queued = most_queued.max(stats["queuedBytes"].as_u64().unwrap());
            if stats["connections"] == 1 {
                break;
            }
        }
    }
    wait_stat(addr, "connections", json!(1));
    assert!(most_queued <= TOTAL, "{most_queued} bytes queued in all, over the bound {TOTAL}");
    assert!(most_queued > 0, "nothing was ever queued: the test did not test");
    // The sender was never cut off, and everything drains back to nothing.
    sender.drain();
    wait_stat(addr, "queuedBytes", json!(0));
    drop(deaf);
    pair_still_works(addr);
}

/// A trusted hub link still has bounds: it may introduce only its share of remote peers, each with
/// no more announce data than a local peer, in networks with names no longer than a local one's;
/// and a link flooding past its message rate is closed like any peer.
#[test]
fn a_hub_link_over_its_limits_is_held_to_them() {
    let server = start_with(|c| {
        c.is_hub = true;
        c.hub_token = Some("mesh".into());
        c.hub_max_remote_peers = 100;
        c.max_peer_data_bytes = 1024;
        c.link_messages_per_sec = 1000;
    });
    let addr = server.local_addr();
    let mut watcher = Client::join(addr, "n");
    let id = new_peer_id();
    let ws = common::open(addr, &format!("/mesh/mesh?peerId={id}"), &[]).expect("upgrade");
    let mut link = Client { id, ws };
    link.next().expect("connected");
    link.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true}}));
    link.wait_for("hub-hello", |m| m["type"] == "hub-hello");
    let origin = new_peer_id();
    let discovered = |network: &str, data: Value| {
        json!({"type": "peer-discovered", "networkName": network, "data": data,
               "relay": {"id": format!("{:016x}", fastrand::u64(..)), "origin": origin, "seq": 1, "hops": 0}})
    };
    // Too much data, too long a network name: ignored.
    link.send(discovered("n", json!({"peerId": new_peer_id(), "blob": "x".repeat(2000)})));
    link.send(discovered(&"n".repeat(300), json!({"peerId": new_peer_id()})));
    // 80 peers: only half of HUB_MAX_REMOTE_PEERS may come from one link.
    for _ in 0..80 {
        link.send(discovered("n", json!({"peerId": new_peer_id()})));
    }
    link.drain();
    assert_eq!(http_get(addr, "/stats").json()["remotePeers"], 50);
    let heard: Vec<Value> = watcher.drain().into_iter().filter(|m| m["type"] == "peer-discovered").collect();
    assert_eq!(heard.len(), 50, "the local peer heard of exactly the peers the link may introduce");
    // A flood at ten times the link's message rate: closed with 1008 after the grace period.
    let started = Instant::now();
    let mut closed = None;
    'flood: while started.elapsed() < Duration::from_secs(8) {
        for _ in 0..100 {
            if link.ws.send(Message::text(json!({"type": "pong"}).to_string())).is_err() {
                break 'flood;
            }
        }
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = link.ws.get_mut() {
            stream.set_nonblocking(true).unwrap();
        }
        loop {
            match link.ws.read() {
                Ok(Message::Close(frame)) => {
                    closed = frame.map(|f| u16::from(f.code));
                    break 'flood;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(closed, Some(1008));
    // The link gone, its peers go too.
    wait_stat(addr, "remotePeers", json!(0));
    pair_still_works(addr);
}

/// Everything a trusted link can make a hub remember (remote peers with their data, heartbeat
/// origins, relay ids, tombstones) is bounded and expires: once the link is gone, the server's
/// memory comes back to within 10% of where it was before. Runs the binary, so that the resident
/// size measured is this server's alone.
#[test]
fn memory_comes_back_after_a_greedy_link_goes() {
    let port = common::test_port().to_string();
    let (server, addr, _log) = common::process::run_binary(&[
        ("PORT", &port),
        ("IS_HUB", "true"),
        ("HUB_TOKEN", "mesh"),
        ("HUB_HEARTBEAT_SECS", "1"),
        ("LOG_LEVEL", "info"),
        // The greedy link sends 47,500 messages as fast as it can: past the default 20,000 a second
        // (bursts of 40,000) on a quick run, and the dropped ones would include the ping it waits on.
        ("HUB_LINK_MESSAGES_PER_SEC", "1000000"),
    ]);
    // The exact resident size (smaps_rollup; /health's VmRSS is the kernel's quick estimate,
    // which swings by hundreds of KB at rest), once per second of server time, so that the
    // sweeper's hand-back of freed memory every few quiet seconds is seen.
    let pid = server.pid();
    let mut last_uptime = 0.0;
    let mut rss = move || {
        let health = wait_json(addr, "/health", "a second later", |h| h["uptime"].as_f64() > Some(last_uptime + 1.0));
        last_uptime = health["uptime"].as_f64().unwrap();
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
        let kib: u64 = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Rss:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    };
    // A greedy link: its peers (n of them, with data), half of them leaving again (tombstones),
    // heartbeats from made-up hubs and signals nobody takes (relay ids).
    let greedy_link = |n: usize, noise: usize| {
        let id = new_peer_id();
        let ws = common::open(addr, &format!("/mesh/mesh?peerId={id}"), &[]).expect("upgrade");
        let mut link = Client { id, ws };
        link.next().expect("connected");
        let capabilities = json!(["signaling", "relay", "peerpigeon-rs-relay"]);
        link.send(json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true, "capabilities": capabilities}}));
        link.wait_for("hub-hello", |m| m["type"] == "hub-hello");
        let relay = |origin: &str, seq: u64| json!({"id": format!("{:016x}", fastrand::u64(..)), "origin": origin, "seq": seq, "hops": 0});
        let origins: Vec<String> = (0..10).map(|_| new_peer_id()).collect();
        let blob = "x".repeat(8 * 1024);
        let peers: Vec<(String, &String)> = (0..n).map(|i| (new_peer_id(), &origins[i % origins.len()])).collect();
        // The made-up hubs the peers come from must stay alive: a hub not heard from for three
        // heartbeats (3 s here) has its peers dropped, and a busy machine may take longer than
        // that to read all of this. So they beat every 500 peers, every 1,000 noise rounds and at the end.
        let beat = |link: &mut Client| {
            for origin in &origins {
                link.send(json!({"type": "hub-heartbeat", "relay": relay(origin, 0)}));
            }
        };
        for (i, (peer, origin)) in peers.iter().enumerate() {
            if i % 500 == 0 {
                beat(&mut link);
            }
            link.send(json!({"type": "peer-discovered", "networkName": format!("net-{}", i % 50),
                             "data": {"peerId": peer, "blob": blob}, "relay": relay(origin, 1)}));
        }
        for (peer, origin) in &peers[..n / 2] {
            link.send(json!({"type": "peer-disconnected", "networkName": "net-0", "data": {"peerId": peer}, "relay": relay(origin, 2)}));
        }
        for i in 0..noise {
            if i % 1000 == 0 {
                beat(&mut link);
            }
            link.send(json!({"type": "hub-heartbeat", "relay": relay(&new_peer_id(), 0)}));
            link.send(
                json!({"type": "offer", "networkName": "n", "fromPeerId": new_peer_id(), "targetPeerId": new_peer_id(),
                             "data": {"sdp": "x"}, "relay": relay(&origins[0], 0)}),
            );
        }
        beat(&mut link);
        link.drain();
        link
    };
    pair_still_works(addr);
    // A first, small link comes and goes, so that the baseline is that of a hub that has had one.
    drop(greedy_link(20, 20));
    wait_stat(addr, "remotePeers", json!(0));
    // The baseline: the lowest of eight samples (once a second), once the server has settled.
    let baseline = (0..8).map(|_| rss()).min().unwrap();

    let link = greedy_link(5_000, 20_000);
    // The server reads the link's 40 MB at its own pace, after the link has sent it all: wait
    // (bounded) until it has taken the link's peers.
    common::wait_json(addr, "/stats", "the link's peers taken", |stats| stats["remotePeers"].as_u64() > Some(1000));
    let during = rss();
    drop(link);
    // The link's peers go at once; its other traces expire; memory comes back.
    wait_stat(addr, "remotePeers", json!(0));
    // Freed memory is handed back every few quiet seconds, so single samples swing; like the
    // baseline, "after" is the lowest of the last eight.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut recent = std::collections::VecDeque::from(vec![u64::MAX; 8]);
    let mut now = u64::MAX;
    while now > baseline + baseline / 10 {
        assert!(Instant::now() < deadline, "RSS {now} still over {baseline} + 10% (it was {during} with the link)");
        recent.pop_front();
        recent.push_back(rss());
        now = recent.iter().copied().min().unwrap();
    }
    println!("RSS: {baseline} before, {during} with the link, {now} after");
    pair_still_works(addr);
    drop(server);
}
