//! docs/protocol.md §6: the HTTP endpoints on the WebSocket port.

mod common;

use common::{Client, http_get, http_raw, http_request, start, start_with};
use std::time::Duration;

fn assert_json_with_cors(response: &common::HttpResponse, origin: &str) {
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(response.header("Access-Control-Allow-Origin"), Some(origin));
}

#[test]
fn health_reports_status_and_counts() {
    let server = start();
    let addr = server.local_addr();
    let _a = Client::join(addr, "n");
    let _b = Client::join(addr, "m");
    let response = http_get(addr, "/health");
    assert_eq!(response.status, 200);
    assert_json_with_cors(&response, "*");
    let health = response.json();
    assert_eq!(health["status"], "healthy");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(health["uptime"].as_f64().unwrap() >= 0.0);
    assert_eq!(health["isHub"], false);
    assert_eq!((health["connections"].as_u64(), health["peers"].as_u64()), (Some(2), Some(2)));
    assert_eq!((health["hubs"].as_u64(), health["networks"].as_u64()), (Some(0), Some(2)));
    assert!(health["memory"]["rss"].as_u64().unwrap() > 0);
}

#[test]
fn stats_has_the_reference_fields() {
    let server = start_with(|c| c.max_connections = 77);
    let addr = server.local_addr();
    let _a = Client::join(addr, "n");
    let response = http_get(addr, "/stats");
    assert_eq!(response.status, 200);
    assert_json_with_cors(&response, "*");
    let stats = response.json();
    for field in [
        "isRunning",
        "isHub",
        "hubPeerId",
        "hubMeshNamespace",
        "connections",
        "peers",
        "hubs",
        "networks",
        "bootstrapHubs",
        "maxConnections",
        "uptime",
        "host",
        "port",
    ] {
        assert!(stats.get(field).is_some(), "missing {field}: {stats}");
    }
    assert_eq!(stats["isRunning"], true);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["maxConnections"], 77);
    assert_eq!(stats["port"], addr.port());
    assert_eq!(stats["hubMeshNamespace"], "pigeonhub-mesh");
    assert_eq!(stats["bootstrapHubs"]["total"], 0);
}

#[test]
fn a_hub_server_reports_its_hub_peer_id() {
    let server = start_with(|c| c.is_hub = true);
    let stats = http_get(server.local_addr(), "/stats").json();
    assert_eq!(stats["isHub"], true);
    assert_eq!(stats["hubPeerId"].as_str().map(str::len), Some(40));
    assert_eq!(stats["hubPeerId"].as_str(), server.hub_peer_id().as_deref());
}

#[test]
fn hubstats_and_hubs_list_hub_links() {
    let server = start_with(|c| c.is_hub = true);
    let addr = server.local_addr();
    let mut hub = Client::connect(addr);
    hub.send(
        serde_json::json!({"type": "announce", "networkName": "pigeonhub-mesh", "data": {"isHub": true, "port": 1}}),
    );
    hub.drain();
    let response = http_get(addr, "/hubstats");
    assert_json_with_cors(&response, "*");
    let stats = response.json();
    assert_eq!((stats["totalHubs"].as_u64(), stats["connectedHubs"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["hubs"][0]["peerId"], hub.id);
    assert_eq!(stats["hubs"][0]["direction"], "inbound");
    assert!(stats["bootstrapHubs"].is_array());

    let response = http_get(addr, "/hubs");
    assert_json_with_cors(&response, "*");
    let hubs = response.json();
    assert_eq!(hubs["totalHubs"], 1);
    assert!(hubs["timestamp"].as_str().unwrap().contains('T'));
    assert_eq!(hubs["hubs"][0]["peerId"], hub.id);
    assert_eq!(hubs["hubs"][0]["networkName"], "pigeonhub-mesh");
    assert!(hubs["hubs"][0]["connectedAt"].is_u64());
}

#[test]
fn root_serves_the_status_page_and_unknown_paths_a_json_404() {
    let server = start();
    let addr = server.local_addr();
    let root = http_get(addr, "/");
    assert_eq!(root.status, 200);
    assert_eq!(root.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(root.body.contains("PeerPigeon") && root.body.contains("data-detail=\"false\""));
    // Self-contained: nothing is loaded from anywhere else.
    assert!(!root.body.contains("src=\"http") && !root.body.contains("href=\"http"), "an external asset");
    assert_eq!(root.header("Access-Control-Allow-Origin"), Some("*"));
    let detailed = start_with(|c| c.status_detail = true);
    assert!(http_get(detailed.local_addr(), "/").body.contains("data-detail=\"true\""));
    // And a WebSocket upgrade on `/` is still a WebSocket.
    Client::connect(addr);
    let missing = http_get(addr, "/no/such/thing");
    assert_eq!(missing.status, 404);
    assert_json_with_cors(&missing, "*");
    assert_eq!(missing.json()["error"], "Not found");
}

#[test]
fn options_is_a_cors_preflight_on_any_path() {
    let server = start_with(|c| c.cors_origin = "https://app.example".into());
    for path in ["/", "/health", "/anything"] {
        let response = http_request(server.local_addr(), "OPTIONS", path);
        assert!(response.status == 200 || response.status == 204, "{path}: {}", response.status);
        assert_eq!(response.header("Access-Control-Allow-Origin"), Some("https://app.example"));
        assert_eq!(response.header("Access-Control-Allow-Methods"), Some("GET, POST, OPTIONS"));
        assert_eq!(response.header("Access-Control-Allow-Headers"), Some("Content-Type, Authorization"));
    }
}

#[test]
fn head_sends_headers_without_a_body() {
    let server = start();
    let response = http_request(server.local_addr(), "HEAD", "/health");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert!(response.body.is_empty(), "{:?}", response.body);
}

#[test]
fn configured_cors_origin_is_on_every_reply() {
    let server = start_with(|c| c.cors_origin = "https://app.example".into());
    for path in ["/health", "/stats", "/hubstats", "/hubs", "/missing"] {
        let response = http_get(server.local_addr(), path);
        assert_json_with_cors(&response, "https://app.example");
    }
}

#[test]
fn every_reply_names_this_server() {
    let server = start();
    let addr = server.local_addr();
    let name = concat!("PeerPigeon-rs/", env!("CARGO_PKG_VERSION"));
    for response in
        [http_get(addr, "/health"), http_get(addr, "/"), http_get(addr, "/missing"), http_raw(addr, "NONSENSE\r\n\r\n")]
    {
        assert_eq!(response.header("Server"), Some(name), "{} reply", response.status);
    }
    // The WebSocket upgrade's 101 too: read its head only, the connection stays open.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /?peerId={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "ab".repeat(20)
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && std::io::Read::read(&mut stream, &mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains(&format!("\r\nServer: {name}\r\n")), "{head}");
}

#[test]
fn a_query_string_does_not_change_the_endpoint() {
    let server = start();
    assert_eq!(http_get(server.local_addr(), "/health?verbose=1").json()["status"], "healthy");
}

#[test]
fn a_garbled_request_gets_a_400_and_a_slow_one_a_408() {
    let server = start_with(|c| c.handshake_timeout = Duration::from_millis(300));
    let addr = server.local_addr();
    assert_eq!(http_raw(addr, "NOT HTTP AT ALL\r\n\r\n").status, 400);
    // A head that never finishes.
    assert_eq!(http_raw(addr, "GET /health HTTP/1.1\r\nHost: x\r\n").status, 408);
    // And the server still answers.
    assert_eq!(http_get(addr, "/health").status, 200);
}

/// Segments received so far on `stream` (Linux `TCP_INFO`, field `tcpi_segs_in`).
#[cfg(target_os = "linux")]
fn segments_received(stream: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn getsockopt(fd: i32, level: i32, name: i32, value: *mut u8, len: *mut u32) -> i32;
    }
    const IPPROTO_TCP: i32 = 6;
    const TCP_INFO: i32 = 11;
    const SEGS_IN_OFFSET: usize = 140;
    let mut info = [0u8; 256];
    let mut len = info.len() as u32;
    // SAFETY: `info` and `len` are valid for writes of `len` bytes; the fd is an open TCP socket.
    let result = unsafe { getsockopt(stream.as_raw_fd(), IPPROTO_TCP, TCP_INFO, info.as_mut_ptr(), &mut len) };
    assert_eq!(result, 0, "getsockopt(TCP_INFO)");
    assert!(len as usize >= SEGS_IN_OFFSET + 4, "TCP_INFO too short: {len}");
    u32::from_ne_bytes(info[SEGS_IN_OFFSET..SEGS_IN_OFFSET + 4].try_into().unwrap())
}

/// Each reply is one write: tiny_http printed replies piece by piece, which with Nagle off was about
/// forty packets (and client wake-ups) per `/health` and per `101 Switching Protocols`. An HTTP
/// reply also carries the FIN, so that the client wakes once, to the whole answer.
#[test]
#[cfg(target_os = "linux")]
fn replies_arrive_in_one_packet() {
    use std::io::{Read, Write};
    let server = start();
    let addr = server.local_addr();

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    // SYN-ACK, the ACK of the request, and the reply with the FIN on it (sent apart, 4).
    let segments = segments_received(&stream);
    assert!(segments <= 3, "/health arrived in {segments} segments");

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let upgrade = format!(
        "GET /?peerId={} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        common::new_peer_id()
    );
    stream.write_all(upgrade.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("\"connected\"") {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 101"));
    // SYN-ACK, the 101, the `connected` frame, perhaps an ACK of the request on its own.
    let segments = segments_received(&stream);
    assert!(segments <= 5, "101 and `connected` arrived in {segments} segments");
}

/// One sample of a `/metrics` scrape: its name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses a `/metrics` body by the rules of the Prometheus text format (0.0.4): `# HELP` and
/// `# TYPE` lines, then samples `name{label="value",...} value`; each family declared once,
/// before its samples, which come together. Panics on anything else.
fn parse_metrics(body: &str) -> Vec<Sample> {
    let is_name = |s: &str, colon: bool| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let mut declared: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name, true), "bad name in {line:?}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                is_name(name, true) && ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(!declared.contains(&name.to_string()), "{name} declared twice");
            declared.push(name.to_string());
            current = Some(name.to_string());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    let labels: Vec<(String, String)> = inner
                        .split(',')
                        .map(|pair| {
                            let (key, quoted) = pair.split_once('=').unwrap();
                            assert!(is_name(key, false), "bad label name in {line:?}");
                            let value = quoted.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap();
                            assert!(!value.contains('"') && !value.contains('\n'), "{line:?}");
                            (key.to_string(), value.to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            assert!(is_name(name, true), "bad name in {line:?}");
            assert_eq!(current.as_deref(), Some(name), "sample {name} outside its family");
            samples.push((name.to_string(), labels, value));
        }
    }
    samples
}

fn metric(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .find(|(n, labels, _)| n == name && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, value)| *value)
        .unwrap_or_else(|| panic!("no {name} {label:?}"))
}

#[test]
fn metrics_follow_the_text_format_count_what_happens_and_never_go_down() {
    let server = start();
    let addr = server.local_addr();
    let response = http_get(addr, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let before = parse_metrics(&response.body);

    let network = "a-network-nobody-should-see";
    let mut a = Client::join(addr, network);
    let b = Client::join(addr, network);
    a.send(serde_json::json!({"type": "offer", "networkName": network, "targetPeerId": b.id, "data": {}}));
    a.send(
        serde_json::json!({"type": "offer", "networkName": network, "targetPeerId": common::new_peer_id(), "data": {}}),
    );
    a.drain();
    assert_eq!(common::refused(addr, "/?peerId=nope").0, 1008);

    let body = http_get(addr, "/metrics").body;
    assert!(!body.contains(network) && !body.contains(&a.id), "a client's words in a label");
    let after = parse_metrics(&body);
    for (name, labels, value) in &before {
        let now = after.iter().find(|(n, l, _)| n == name && l == labels).map(|s| s.2).expect("a series disappeared");
        if name.ends_with("_total") {
            assert!(now >= *value, "{name}{labels:?} went down");
        }
    }
    let grew = |name: &str, label: Option<(&str, &str)>, by: f64| {
        assert_eq!(metric(&after, name, label) - metric(&before, name, label), by, "{name} {label:?}");
    };
    grew("peerpigeon_connections_accepted_total", None, 2.0);
    grew("peerpigeon_connections_refused_total", Some(("reason", "invalid_peer_id")), 1.0);
    grew("peerpigeon_messages_received_total", Some(("type", "signal")), 2.0);
    grew("peerpigeon_messages_received_total", Some(("type", "announce")), 2.0);
    grew("peerpigeon_signals_delivered_total", None, 1.0);
    grew("peerpigeon_messages_dropped_total", Some(("reason", "unknown_target")), 1.0);
    assert_eq!(metric(&after, "peerpigeon_peers", None), 2.0);
    assert_eq!(metric(&after, "peerpigeon_networks", None), 1.0);
    assert!(
        metric(&after, "peerpigeon_received_bytes_total", None)
            > metric(&before, "peerpigeon_received_bytes_total", None)
    );
    assert!(metric(&after, "peerpigeon_sent_bytes_total", None) > 0.0);
    assert!(metric(&after, "process_resident_memory_bytes", None) > 0.0);
}

#[test]
fn metrics_can_be_switched_off_or_given_a_token() {
    let off = start_with(|c| c.metrics = false);
    assert_eq!(http_get(off.local_addr(), "/metrics").status, 404);
    let guarded = start_with(|c| c.metrics_token = Some("scrape me".into()));
    let addr = guarded.local_addr();
    assert_eq!(http_get(addr, "/metrics").status, 401);
    assert_eq!(http_get(addr, "/metrics?token=wrong").status, 401);
    assert_eq!(http_get(addr, "/metrics?token=scrape%20me").status, 200);
    let with_header = http_raw(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer scrape me\r\n\r\n");
    assert_eq!(with_header.status, 200);
    assert!(with_header.body.contains("peerpigeon_peers 0"));
}
