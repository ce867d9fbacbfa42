pub mod clock;
pub mod config;
#[macro_use]
pub mod log;
pub mod outbox;
pub mod peer_id;
pub mod protocol;
pub mod registry;
pub mod request_head;
pub use config::Config;
