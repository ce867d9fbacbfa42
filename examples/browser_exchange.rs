//! The whole exchange two PeerPigeon browsers have through the server, played by two blocking
//! clients: connect, announce, discover each other, offer and answer, trade ICE candidates, and
//! say goodbye. Real browsers put their WebRTC stack's SDP and candidates in `data`; the server
//! passes `data` through untouched, so made-up ones show the same flow.
//!
//! Start a server first (`cargo run --release`), then:
//!
//! ```text
//! cargo run --example browser_exchange -- ws://localhost:3000
//! ```
//!
//! Who offers: when two peers discover each other at once, PeerPigeon's client lets the peer with
//! the greater id make the offer (the other one would answer a crossing offer with
//! `connection-rejected`, which the server does not pass on; see docs/protocol.md §2).

#[path = "shared/connect.rs"]
mod connect;

use std::error::Error;
use std::time::Duration;

use connect::Socket;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

const NETWORK: &str = "browser-exchange-example";

/// One side of the exchange.
struct Browser {
    name: &'static str,
    id: String,
    socket: Socket,
}

impl Browser {
    /// Connects with a fresh id, waits for `connected`, and announces as the client does.
    fn join(server: &str, name: &'static str) -> Result<Browser, Box<dyn Error>> {
        let id = hex::encode(rand::random::<[u8; 20]>());
        let socket = connect::connect(server, &id)?;
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        }
        let mut browser = Browser { name, id, socket };
        browser.wait_for("connected")?;
        // The client's announce: its id in `data`, its network, and how many peers it wants.
        browser
            .send(json!({"type": "announce", "networkName": NETWORK, "data": {"peerId": browser.id}, "maxPeers": 3}))?;
        println!("{}: connected and announced as {}…", name, &browser.id[..8]);
        Ok(browser)
    }

    fn send(&mut self, message: Value) -> Result<(), Box<dyn Error>> {
        self.socket.send(Message::text(message.to_string()))?;
        Ok(())
    }

    /// Sends a signal of `kind` to `target`; the server fills in `fromPeerId`.
    fn signal(&mut self, kind: &str, target: &str, data: Value) -> Result<(), Box<dyn Error>> {
        self.send(json!({"type": kind, "networkName": NETWORK, "targetPeerId": target, "data": data}))
    }

    /// Reads messages until one of type `kind` arrives, and returns it.
    fn wait_for(&mut self, kind: &str) -> Result<Value, Box<dyn Error>> {
        loop {
            if let Message::Text(text) = self.socket.read()? {
                let message: Value = serde_json::from_str(text.as_str())?;
                if message["type"] == kind {
                    return Ok(message);
                }
            }
        }
    }
}

/// `from` sends `to` one ICE candidate (made up: a real one comes from the WebRTC stack).
fn trade_candidate(from: &mut Browser, to: &mut Browser) -> Result<(), Box<dyn Error>> {
    let candidate = json!({"candidate": "candidate:1 1 udp 2113937151 192.0.2.1 50000 typ host",
                           "sdpMid": "0", "sdpMLineIndex": 0});
    from.signal("ice-candidate", &to.id.clone(), candidate)?;
    let got = to.wait_for("ice-candidate")?;
    println!("{}: ICE candidate from {}: {}", to.name, got["fromPeerId"], got["data"]["candidate"]);
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let server = std::env::args().nth(1).unwrap_or_else(|| "ws://localhost:3000".to_string());
    let mut a = Browser::join(&server, "alice")?;
    let mut b = Browser::join(&server, "bob")?;

    // 1. Discovery: each hears `peer-discovered` for the other.
    let heard = a.wait_for("peer-discovered")?;
    println!("alice: discovered {}", heard["data"]["peerId"]);
    let heard = b.wait_for("peer-discovered")?;
    println!("bob: discovered {}", heard["data"]["peerId"]);

    // 2. The peer with the greater id offers; the other answers.
    let (offerer, answerer) = if a.id > b.id { (&mut a, &mut b) } else { (&mut b, &mut a) };
    offerer.signal("offer", &answerer.id.clone(), json!({"type": "offer", "sdp": "v=0 (the offer's SDP)"}))?;
    let offer = answerer.wait_for("offer")?;
    println!("{}: offer from {}", answerer.name, offer["fromPeerId"]);
    answerer.signal("answer", &offerer.id.clone(), json!({"type": "answer", "sdp": "v=0 (the answer's SDP)"}))?;
    let answer = offerer.wait_for("answer")?;
    println!("{}: answer from {}", offerer.name, answer["fromPeerId"]);

    // 3. ICE candidates, both ways, as each side's WebRTC stack finds them.
    trade_candidate(offerer, answerer)?;
    trade_candidate(answerer, offerer)?;

    // 4. The data channel is up (in a browser); the signaling server is no longer needed. One
    //    side says goodbye, and the other hears that it left.
    offerer.send(json!({"type": "goodbye", "networkName": NETWORK}))?;
    let left = answerer.wait_for("peer-disconnected")?;
    println!("{}: {} left ({})", answerer.name, left["data"]["peerId"], left["data"]["reason"]);

    a.socket.close(None)?;
    b.socket.close(None)?;
    Ok(())
}
