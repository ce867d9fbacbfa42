//! Churn and soak test: for a while, many peers keep connecting, announcing, signalling and leaving;
//! at the end the server should be back where it started (threads, open descriptors, memory) with
//! no peer left.
//!
//! Start a server (`cargo run --release`), then:
//!
//! ```text
//! cargo run --release -p peerpigeon-bench --bin soak -- ws://127.0.0.1:3000 --seconds 600 --workers 200 --networks 20
//! ```
//!
//! Each worker thread plays one peer after another: connect with a fresh id, announce into a random
//! network, send offers to the peers it hears about, stay for a random 0.2-1 s, then leave with a
//! `goodbye` and a close (one peer in twenty just drops its TCP connection instead). Every
//! 10 seconds and at the end it prints one JSON line with the counts so far and the server's
//! `/health` figures (`rss`, `threads`, `openFds`), then waits (up to 10 s) for no peer, thread or
//! descriptor to be left over (the server samples these figures once a second), and reads them once
//! more after 12 quiet seconds (the server returns freed memory when quiet).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

#[derive(Default)]
struct Counts {
    peers: AtomicU64,
    signals_sent: AtomicU64,
    signals_received: AtomicU64,
    discoveries: AtomicU64,
    failures: AtomicU64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut url = "ws://127.0.0.1:3000".to_string();
    let (mut seconds, mut workers, mut networks) = (60u64, 200usize, 20usize);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
        match arg.as_str() {
            "--seconds" => seconds = value(),
            "--workers" => workers = value() as usize,
            "--networks" => networks = value() as usize,
            other if other.starts_with("ws://") => url = other.to_string(),
            _ => usage(),
        }
    }
    let http = url.trim_start_matches("ws://").trim_end_matches('/').to_string();
    let before = health(&http);
    println!(
        "{}",
        json!({"event": "start", "url": url, "seconds": seconds, "workers": workers, "networks": networks, "server": before["memory"]})
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (url, counts, stop) = (url.clone(), counts.clone(), stop.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if play_one_peer(&url, networks, &counts).is_err() {
                            counts.failures.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                })
                .expect("spawn a worker")
        })
        .collect();

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds).saturating_sub(started.elapsed())));
        let now = health(&http);
        println!("{}", report("progress", started, &counts, &now));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    // Give the server up to 10 s to notice the last departures and for their threads to finish
    // (a closing connection lingers up to a second for the other side's close).
    let settle = Instant::now();
    let mut after = health(&http);
    // The server samples these figures once a second: wait for a sample after the last close.
    let settled = |h: &Value| {
        let memory = (&h["memory"], &before["memory"]);
        h["connections"].as_u64() == Some(0)
            && memory.0["threads"].as_u64() <= memory.1["threads"].as_u64()
            && memory.0["openFds"].as_u64() <= memory.1["openFds"].as_u64()
    };
    while !settled(&after) && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        after = health(&http);
    }
    println!("{}", report("end", started, &counts, &after));
    // The server hands freed memory back once it has been quiet for a while (about 5 s): look again.
    std::thread::sleep(Duration::from_secs(12));
    let quiet = health(&http);
    let compare = json!({"event": "compare", "before": before["memory"], "after": after["memory"],
                         "afterQuiet": quiet["memory"], "peersLeft": quiet["connections"]});
    println!("{compare}");
}

fn usage() -> ! {
    eprintln!("usage: soak [ws://host:port] [--seconds N] [--workers N] [--networks N]");
    std::process::exit(2)
}

fn report(event: &str, started: Instant, counts: &Counts, health: &Value) -> Value {
    json!({
        "event": event,
        "elapsedSecs": started.elapsed().as_secs(),
        "peers": counts.peers.load(Ordering::Relaxed),
        "signalsSent": counts.signals_sent.load(Ordering::Relaxed),
        "signalsReceived": counts.signals_received.load(Ordering::Relaxed),
        "discoveries": counts.discoveries.load(Ordering::Relaxed),
        "failures": counts.failures.load(Ordering::Relaxed),
        "serverPeers": health["connections"],
        "server": health["memory"],
    })
}

/// One peer's life: connect, announce, signal, leave.
fn play_one_peer(url: &str, networks: usize, counts: &Counts) -> Result<(), Box<dyn std::error::Error>> {
    let id = hex::encode(rand::random::<[u8; 20]>());
    let network = format!("soak-{}", fastrand::usize(..networks.max(1)));
    let (mut socket, _) = tungstenite::connect(format!("{url}/?peerId={id}"))?;
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    }
    counts.peers.fetch_add(1, Ordering::Relaxed);
    socket
        .send(Message::text(json!({"type": "announce", "networkName": network, "data": {"peerId": id}}).to_string()))?;
    let life = Instant::now() + Duration::from_millis(200 + fastrand::u64(..800));
    while Instant::now() < life {
        let text = match socket.read() {
            Ok(Message::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let message: Value = serde_json::from_str(text.as_str())?;
        match message["type"].as_str() {
            Some("peer-discovered") => {
                counts.discoveries.fetch_add(1, Ordering::Relaxed);
                let offer = json!({"type": "offer", "networkName": network, "targetPeerId": message["data"]["peerId"], "data": {"sdp": "v=0 soak"}});
                socket.send(Message::text(offer.to_string()))?;
                counts.signals_sent.fetch_add(1, Ordering::Relaxed);
            }
            Some("offer") => {
                counts.signals_received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    if fastrand::u8(..20) == 0 {
        return Ok(()); // vanish: drop the TCP connection without a goodbye or close frame
    }
    socket.send(Message::text(json!({"type": "goodbye"}).to_string()))?;
    socket.close(None)?;
    // Read until the server's close (or a short deadline), as a polite client does.
    let bye = Instant::now() + Duration::from_millis(500);
    while Instant::now() < bye {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// `GET /health` over plain HTTP.
fn health(host_port: &str) -> Value {
    let Ok(mut stream) = TcpStream::connect(host_port) else { return Value::Null };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ =
        stream.write_all(format!("GET /health HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n").as_bytes());
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok()).unwrap_or(Value::Null)
}
