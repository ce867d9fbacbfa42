//! Two blocking peers exchange a WebRTC offer and answer through a PeerPigeon server.
//!
//! Start a server first (`cargo run --release`), then:
//!
//! ```text
//! cargo run --example two_peers -- ws://localhost:3000
//! ```
//!
//! Alice and Bob each connect and announce into the same network. When Alice hears that Bob
//! arrived she sends him an `offer`; Bob answers with an `answer`. A real application would put an
//! SDP from its WebRTC stack in `data`; the server passes `data` through untouched. The server URL
//! may have its own path and query (`ws://localhost:3000/?token=secret`).

#[path = "shared/connect.rs"]
mod connect;

use std::error::Error;
use std::time::Duration;

use connect::Socket;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::stream::MaybeTlsStream;

const NETWORK: &str = "two-peers-example";

/// Connects with a fresh peer id and announces into [`NETWORK`].
fn join(server: &str, name: &str) -> Result<(Socket, String), Box<dyn Error>> {
    let peer_id = hex::encode(rand::random::<[u8; 20]>());
    let mut socket = connect::connect(server, &peer_id)?;
    // Give up instead of hanging if the server never answers.
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    }
    let announce = json!({"type": "announce", "networkName": NETWORK, "data": {"peerId": peer_id, "name": name}});
    socket.send(Message::text(announce.to_string()))?;
    println!("{name}: connected and announced as {}…", &peer_id[..8]);
    Ok((socket, peer_id))
}

/// Reads messages until one of type `kind` arrives.
fn wait_for(socket: &mut Socket, who: &str, kind: &str) -> Result<Value, Box<dyn Error>> {
    loop {
        if let Message::Text(text) = socket.read()? {
            let message: Value = serde_json::from_str(text.as_str())?;
            if message["type"] == kind {
                return Ok(message);
            }
            println!("{who}: (skipping {})", message["type"]);
        }
    }
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
    let (mut alice, alice_id) = join(&server, "alice")?;
    let (mut bob, bob_id) = join(&server, "bob")?;

    // Alice learns about Bob from the server...
    let discovered = wait_for(&mut alice, "alice", "peer-discovered")?;
    println!("alice: discovered {} ({})", discovered["data"]["peerId"], discovered["data"]["name"]);

    // ...and sends him an offer. `targetPeerId` says who gets it; the server fills in `fromPeerId`.
    let offer = json!({"type": "offer", "networkName": NETWORK, "targetPeerId": bob_id,
                       "data": {"type": "offer", "sdp": "v=0 (an SDP offer would go here)"}});
    alice.send(Message::text(offer.to_string()))?;

    let offer = wait_for(&mut bob, "bob", "offer")?;
    println!("bob: got an offer from {}: {}", offer["fromPeerId"], offer["data"]["sdp"]);
    let answer = json!({"type": "answer", "networkName": NETWORK, "targetPeerId": offer["fromPeerId"],
                        "data": {"type": "answer", "sdp": "v=0 (an SDP answer would go here)"}});
    bob.send(Message::text(answer.to_string()))?;

    let answer = wait_for(&mut alice, "alice", "answer")?;
    assert_eq!(answer["fromPeerId"], bob_id.as_str());
    println!("alice: got the answer from {}: {}", answer["fromPeerId"], answer["data"]["sdp"]);
    println!("done: {} and {} exchanged an offer and an answer", &alice_id[..8], &bob_id[..8]);

    alice.close(None)?;
    bob.close(None)?;
    Ok(())
}
