//! From a new socket to a served connection: the accept loop, the request head, the handshake
//! places, the WebSocket upgrade and its credentials, and the HTTP endpoints.

pub(crate) mod auth;
pub(crate) mod awaiting_request;
pub(crate) mod bind;
pub(crate) mod handoff;
pub(crate) mod handshakes;
pub(crate) mod http;
pub(crate) mod http_desk;
pub(crate) mod listener;
pub(crate) mod request_head;
pub(crate) mod upgrade;
