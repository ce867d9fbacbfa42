//! Opening a PeerPigeon connection from a server URL, shared by the examples.
//!
//! The URL may carry its own path and query (`ws://host/signal?token=secret`): the peer id is
//! added to the query with a URL parser, never by pasting strings together. A server that refuses
//! the connection (HTTP 401 for a wrong token, 404, ...) comes back as one readable error line.

use std::error::Error;
use std::net::TcpStream;

use tungstenite::WebSocket;
use tungstenite::stream::MaybeTlsStream;
use url::Url;

/// A blocking WebSocket connection to a PeerPigeon server.
pub type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// The WebSocket URL for `peer_id` on `server`: the server URL with `peerId=<id>` added to its query.
pub fn peer_url(server: &str, peer_id: &str) -> Result<Url, Box<dyn Error>> {
    let mut url = Url::parse(server).map_err(|e| format!("{server:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!("{server:?}: the server URL must start with ws:// or wss://").into());
    }
    url.query_pairs_mut().append_pair("peerId", peer_id);
    Ok(url)
}

/// Connects to `server` as `peer_id`.
pub fn connect(server: &str, peer_id: &str) -> Result<Socket, Box<dyn Error>> {
    let url = peer_url(server, peer_id)?;
    match tungstenite::connect(url.as_str()) {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            Err(format!("{server} refused the connection: HTTP {} {}", response.status(), body.trim()).into())
        }
        Err(other) => Err(format!("cannot connect to {server}: {other}").into()),
    }
}
