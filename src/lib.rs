//! # PeerPigeon-rs
//!
//! A WebSocket signaling and peer-discovery server for WebRTC meshes, wire-compatible with the
//! JavaScript PeerPigeon server and client (`peerpigeon@1.1.3`). Peers connect to
//! `ws://host:port/?peerId=<40 hex>`, `announce` into a network, hear `peer-discovered` and
//! `peer-disconnected` for the other peers of that network, and exchange `offer` / `answer` /
//! `ice-candidate` through the server. `docs/protocol.md` describes the protocol.
//!
//! ## How it is built
//!
//! Synchronous, a thread per connection, the file tree following a message's life: `accept/`
//! (listener, request head, upgrade, HTTP endpoints), `peer/` (reader, writer, flusher, bounded queue, rate
//! limits), `registry/` (peers and networks behind one lock, the router, the hub relay), `protocol/`
//! (the wire format, no I/O), `hub/` (links to other hubs), `cluster/` (instances sharing a Redis),
//! `platform/` (kernel and allocator workarounds). The diagram, and where each message, thread and bound lives, is
//! `docs/architecture.md` in the repository; the protocol is `docs/protocol.md`.
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

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod accept;
mod cluster;
mod config;
mod context;
mod error;
mod hub;
mod metrics;
mod peer;
mod platform;
mod protocol;
mod registry;
mod server;
mod sweeper;
mod util;

pub use config::{Config, ConfigError, LogFormat, SETTINGS, Setting, env_help};
pub use error::Error;
pub use platform::service_heap::ServiceHeap;
pub use server::{Server, ServerHandle};

/// Entry points for the fuzz targets in `fuzz/` (not part of the supported API).
#[doc(hidden)]
pub mod fuzzing {
    use crate::accept::{auth, request_head::RequestHead};
    use crate::protocol::{self, peer_id::PeerId};

    /// Decodes `text` as a peer's message and as a hub-link message, and builds what the server
    /// would build from it, as the reader threads do.
    pub fn client_message(text: &str) {
        if let Ok(protocol::ClientMessage::Announce { network, data }) = protocol::parse_client_message(text) {
            let is_hub = protocol::announces_hub(data, &network, "pigeonhub-mesh");
            let id = PeerId::parse("0123456789abcdef0123456789abcdef01234567");
            if let Some(id) = id {
                let discovery = protocol::discovery_data(id, is_hub, data);
                let _ = protocol::peer_discovered(&discovery, &network, id);
            }
        }
        if let Ok(message) = protocol::parse_link_message(text) {
            let _ = protocol::PeerFields::of(message.data);
            let _ = message.network();
        }
    }

    /// Parses `bytes` as a request head and classifies it, as the connection threads do.
    pub fn request_head(bytes: &[u8]) {
        if let Ok(head) = RequestHead::parse(bytes) {
            let _ = head.wants_websocket();
            let _ = head.path();
            let _ = head.query_param("peerId").map(|id| PeerId::parse(&id));
            let _ = auth::is_authorized(&head, "fuzz-token");
        }
    }
}
