//! A blocking PeerPigeon client: connect, announce into a network, print who comes and goes.
//!
//! Start a server first (`cargo run --release`), then, in another terminal:
//!
//! ```text
//! cargo run --example discover -- ws://localhost:3000 my-network
//! ```
//!
//! Run it twice to watch two peers discover each other. The server URL may have its own path and
//! query, for example `ws://localhost:3000/?token=secret` when the server sets `AUTH_TOKEN`.
//! Everything here is plain tungstenite, url and serde_json, so it can be copied into any project
//! as a starting point (with `shared/connect.rs`).

#[path = "shared/connect.rs"]
mod connect;

use std::error::Error;

use serde_json::{Value, json};
use tungstenite::Message;

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
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "ws://localhost:3000".to_string());
    let network = args.next().unwrap_or_else(|| "global".to_string());

    // A peer id is 40 hex digits; the PeerPigeon client makes one from 20 random bytes.
    let peer_id = hex::encode(rand::random::<[u8; 20]>());
    let mut socket = connect::connect(&server, &peer_id)?;
    println!("connected as {peer_id}");

    // Join the network. `data` is what the other peers receive about us in `peer-discovered`.
    let announce = json!({"type": "announce", "networkName": network, "data": {"peerId": peer_id}});
    socket.send(Message::text(announce.to_string()))?;
    println!("announced in network {network:?}; waiting for peers (Ctrl-C to stop)");

    loop {
        let text = match socket.read()? {
            Message::Text(text) => text,
            Message::Close(frame) => {
                println!("server closed the connection: {frame:?}");
                return Ok(());
            }
            _ => continue, // tungstenite answers pings by itself
        };
        let message: Value = serde_json::from_str(text.as_str())?;
        let peer = message["data"]["peerId"].as_str().unwrap_or("?");
        match message["type"].as_str() {
            Some("connected") => {}
            Some("peer-discovered") => println!("+ {peer} joined {network:?} (hub: {})", message["data"]["isHub"]),
            Some("peer-disconnected") => println!("- {peer} left ({})", message["data"]["reason"]),
            Some("error") => println!("! server error: {}", message["error"]),
            other => println!("? {} message: {text}", other.unwrap_or("untyped")),
        }
    }
}
