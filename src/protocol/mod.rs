//! The messages on the wire, and nothing else: no I/O happens here. What a peer sends
//! (`client`), what the server sends (`messages`), what hubs send each other (`link`), what the instances of a cluster tell each other
//! (`cluster`), the shape
//! they share (`envelope`), and the peer id every connection presents (`peer_id`). Field names follow `docs/protocol.md`.

pub mod client;
pub mod cluster;
pub mod envelope;
pub mod link;
pub mod messages;
pub mod peer_id;

pub use client::*;
pub use envelope::Relay;
pub use link::*;
pub use messages::*;
