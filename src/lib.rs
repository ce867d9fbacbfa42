//! # PeerPigeon-rs
//!
//! A WebSocket signaling and peer-discovery server for WebRTC meshes, wire-compatible with the
//! JavaScript PeerPigeon server and client (`peerpigeon@1.1.3`). Peers connect to
//! `ws://host:port/?peerId=<40 hex>`, `announce` into a network, hear `peer-discovered` and
//! `peer-disconnected` for the other peers of that network, and exchange `offer` / `answer` /
//! `ice-candidate` through the server. `docs/protocol.md` describes the protocol.
//!
//! ## How it is built (synchronous, a thread per connection)
//!
//! ```text
//! acceptor ──accept──▶ conn-<n>: read the request head ──┬─▶ HTTP reply (http.rs), close
//!  (listener.rs)        (listener.rs, request_head.rs)    └─▶ upgrade (upgrade.rs) ─▶ registry
//!                                                                    │
//!       peer-<id>-rx: read frames ─▶ router ─▶ registry ─▶ outbox of the target peer(s)
//!       peer-<id>-tx: outbox ─▶ socket          (the only thread writing this peer's socket)
//! sweeper (cleanup.rs): pings every peer, closes the idle ones
//! ```
//!
//! - `registry.rs` holds peers and networks behind one lock; `outbox.rs` is a peer's bounded queue.
//! - `protocol.rs` is every message on the wire; `router.rs` decides where a message goes.
//! - `server.rs` binds, starts the threads and shuts down; `config.rs` reads the environment.
//!
//! ## Example
//!
//! ```
//! use peerpigeon::{Config, Server};
//!
//! // Port 0: let the operating system pick a free port.
//! let server = Server::start(Config { port: 0, ..Config::default() })?;
//! let addr = server.local_addr();
//! println!("peers connect to ws://{addr}/?peerId=<40 hex digits>");
//! server.shutdown();
//! # Ok::<(), peerpigeon::Error>(())
//! ```

mod auth;
mod cleanup;
mod clock;
mod config;
mod error;
mod http;
mod hub_link;
mod listener;
pub mod log;
mod mesh;
mod outbox;
mod peer;
mod peer_id;
mod proc_stats;
mod protocol;
mod registry;
mod request_head;
mod router;
mod server;
mod upgrade;

pub use config::{Config, ConfigError, ENV_HELP};
pub use error::Error;
pub use peer_id::PeerId;
pub use server::{Server, ServerHandle};
