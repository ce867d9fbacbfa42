//! docs/protocol.md §5, "When a hub goes away": when a hub goes away, its peers are gone from the other
//! hubs promptly, however it went (stopped, killed, frozen); when only a link goes away and the
//! mesh still connects everyone, nobody is reported gone.
//!
//! The hub that goes away runs as a separate process (the `peerpigeon` binary), so that it can be
//! sent real signals; the hubs that watch run in this process. The watchers use the default
//! heartbeat (10 s) except in the frozen-hub test, so the first two tests show that departures do
//! not wait for heartbeats.

mod common;

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::process::{Running, run_binary};
use common::{Client, start_with, wait_json, wait_stat};
use parking_lot::Mutex;
use peerpigeon::ServerHandle;
use serde_json::{Value, json};

fn hub(bootstrap: &[SocketAddr], heartbeat: Duration) -> ServerHandle {
    let urls = bootstrap.iter().map(|addr| format!("ws://{addr}")).collect();
    start_with(|c| {
        c.is_hub = true;
        c.bootstrap_hubs = urls;
        c.hub_heartbeat = heartbeat;
    })
}

/// A hub in a process of its own, linked to `bootstrap`.
fn hub_process(bootstrap: SocketAddr, heartbeat_secs: u32) -> (Running, SocketAddr) {
    let url = format!("ws://{bootstrap}");
    let heartbeat = heartbeat_secs.to_string();
    let (running, addr, _log) = run_binary(&[
        ("PORT", &common::test_port().to_string()),
        ("IS_HUB", "true"),
        ("BOOTSTRAP_HUBS", &url),
        ("HUB_HEARTBEAT_SECS", &heartbeat),
    ]);
    (running, addr)
}

fn wait_links(addr: SocketAddr, links: u64) {
    wait_stat(addr, "hubLinks", json!(links));
}

fn wait_discovered(client: &mut Client, peer: &str) {
    client.wait_for("peer-discovered", |m| m["type"] == "peer-discovered" && m["data"]["peerId"] == peer);
}

/// Waits, up to `limit`, for `client` to hear that `peer` left; returns how long it took from `since`.
fn departure_time(client: &mut Client, peer: &str, since: Instant, limit: Duration) -> Duration {
    let deadline = since + limit;
    while Instant::now() < deadline {
        if let Some(message) = client.next()
            && message["type"] == "peer-disconnected"
        {
            assert_eq!(message["data"]["peerId"], peer, "someone else left: {message}");
            return since.elapsed();
        }
    }
    panic!("{}: no departure of {} within {limit:?}", client.short(), &peer[..8]);
}

/// A chain A <- B <- D with a peer on each, D in its own process. A has no link to D: it can only
/// learn of D's departure through B.
struct Chain {
    a: ServerHandle,
    b: ServerHandle,
    d: Running,
    on_a: Client,
    on_b: Client,
    on_d: Client,
}

fn chain(heartbeat: Duration) -> Chain {
    let a = hub(&[], heartbeat);
    let b = hub(&[a.local_addr()], heartbeat);
    wait_links(a.local_addr(), 1);
    let (d, d_addr) = hub_process(b.local_addr(), heartbeat.as_secs().max(1) as u32);
    wait_links(b.local_addr(), 2);
    let mut on_a = Client::join(a.local_addr(), "n");
    let mut on_b = Client::join(b.local_addr(), "n");
    let on_d = Client::join(d_addr, "n");
    wait_discovered(&mut on_a, &on_d.id);
    wait_discovered(&mut on_b, &on_d.id);
    on_a.drain();
    on_b.drain();
    Chain { a, b, d, on_a, on_b, on_d }
}

impl Chain {
    /// Both watchers hear that D's peer left within `limit` of `since`; A and B keep each other.
    fn expect_departures_within(&mut self, since: Instant, limit: Duration) -> [Duration; 2] {
        let id = self.on_d.id.clone();
        let times =
            [departure_time(&mut self.on_a, &id, since, limit), departure_time(&mut self.on_b, &id, since, limit)];
        wait_stat(self.a.local_addr(), "remotePeers", json!(1));
        wait_stat(self.b.local_addr(), "remotePeers", json!(1));
        let (on_a, on_b) = (&mut self.on_a, &mut self.on_b);
        assert!(on_a.drain().iter().all(|m| m["type"] != "peer-disconnected"), "a false departure on A");
        assert!(on_b.drain().iter().all(|m| m["type"] != "peer-disconnected"), "a false departure on B");
        times
    }
}

#[test]
fn a_hub_stopped_with_sigterm_takes_its_peers_with_it_within_a_second() {
    let mut chain = chain(Duration::from_secs(10));
    let stopped = Instant::now();
    chain.d.signal("TERM");
    let times = chain.expect_departures_within(stopped, Duration::from_secs(1));
    println!("graceful stop: departures heard after {times:?}");
}

#[test]
fn a_hub_killed_with_sigkill_takes_its_peers_with_it_within_two_seconds() {
    let mut chain = chain(Duration::from_secs(10));
    let killed = Instant::now();
    chain.d.signal("KILL");
    let times = chain.expect_departures_within(killed, Duration::from_secs(2));
    println!("SIGKILL: departures heard after {times:?}");
}

#[test]
fn a_frozen_hub_is_dropped_within_the_heartbeat_window() {
    let heartbeat = Duration::from_secs(1);
    let mut chain = chain(heartbeat);
    let frozen = Instant::now();
    chain.d.signal("STOP");
    // Three missed heartbeats, noticed at the next heartbeat tick: at most four intervals.
    let window = heartbeat * 4 + Duration::from_millis(500);
    let times = chain.expect_departures_within(frozen, window);
    println!("SIGSTOP: departures heard after {times:?}");
    chain.d.signal("CONT");
}

/// A TCP relay between a hub and the hub it links to, which the test can cut like a failed network.
struct Cable {
    addr: SocketAddr,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    cut: Arc<AtomicBool>,
}

impl Cable {
    fn to(target: SocketAddr) -> Cable {
        let listener = common::test_listener();
        let addr = listener.local_addr().unwrap();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicBool::new(false));
        let (held, stop) = (sockets.clone(), cut.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                // Once cut, the listener goes away with this thread: reconnecting is refused.
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(near) = incoming else { continue };
                let Ok(far) = TcpStream::connect(target) else { continue };
                for (from, to) in [(&near, &far), (&far, &near)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                held.lock().extend([near, far]);
            }
        });
        Cable { addr, sockets, cut }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for socket in self.sockets.lock().iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the accept loop so that it sees the cut and drops the listener.
        let _ = TcpStream::connect(self.addr);
    }
}

#[test]
fn losing_one_link_of_a_ring_loses_no_peer() {
    let heartbeat = Duration::from_secs(10);
    let a = hub(&[], heartbeat);
    let b = hub(&[a.local_addr()], heartbeat);
    let cable = Cable::to(a.local_addr());
    let c = hub(&[b.local_addr(), cable.addr], heartbeat);
    for h in [&a, &b, &c] {
        wait_links(h.local_addr(), 2);
    }
    let mut peers: Vec<Client> = [&a, &b, &c].iter().map(|h| Client::join(h.local_addr(), "ring")).collect();
    for h in [&a, &b, &c] {
        wait_stat(h.local_addr(), "remotePeers", json!(2));
    }
    for peer in &mut peers {
        peer.drain();
    }

    cable.cut();
    wait_links(a.local_addr(), 1);
    wait_links(c.local_addr(), 1);
    // Both ends of the cut link probe the mesh; once their checks are decided, nothing was lost.
    for h in [&a, &b, &c] {
        wait_json(h.local_addr(), "/hubstats", "a decided reachability check", |s: &Value| {
            s["reachChecks"]["decided"].as_u64() >= Some(2)
        });
    }
    for h in [&a, &b, &c] {
        let stats = wait_json(h.local_addr(), "/hubstats", "the stats", |_| true);
        assert_eq!((stats["remotePeers"].as_u64(), stats["reachChecks"]["hubsCutOff"].as_u64()), (Some(2), Some(0)));
    }
    for peer in &mut peers {
        let extra = peer.drain();
        assert!(extra.iter().all(|m| m["type"] != "peer-disconnected"), "{}: {extra:?}", peer.short());
    }
    // And A and C still reach each other, now through B.
    let (on_a, on_c) = (peers[0].id.clone(), peers[2].id.clone());
    peers[2].send(json!({"type": "offer", "networkName": "ring", "targetPeerId": on_a, "data": {"sdp": "o"}}));
    let offer = peers[0].wait_for("offer", |m| m["type"] == "offer");
    assert_eq!(offer["fromPeerId"], on_c);
}
