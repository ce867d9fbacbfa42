//! The HTTP side of the port: `/health`, `/stats`, `/hubstats`, `/hubs`, `/metrics`, the status page at `/`, CORS
//! preflights, and the error replies of a failed handshake (docs/protocol.md §6).
//!
//! One request per connection: the reply is written with tiny_http's `Response` (which formats the
//! status line, `Date`, `Content-Length`) and the socket is closed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::json;
use tiny_http::{HTTPVersion, Header, Response};

use crate::accept::auth;
use crate::accept::request_head::RequestHead;
use crate::context::ServerState;
use crate::metrics;
use crate::platform::proc_stats;
use crate::util::clock::iso8601;

/// The status page served at `/`: one self-contained HTML file (no external assets) that polls
/// `/stats`, `/hubstats` and `/health` every few seconds.
const STATUS_PAGE: &str = include_str!("status_page.html");
/// How long, after replying, unread request bytes are drained so the reply is not lost to a reset.
const LINGER: Duration = Duration::from_millis(500);
/// How long the HTTP desk lets one reply's write take before it gives up on that client.
const PROMPT_WRITE_LIMIT: Duration = Duration::from_millis(100);

/// How a connection ends once its reply is written (and its write side shut down).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Parting {
    /// Drain what the client still sends until it closes, at most [`LINGER`]: the polite end, for
    /// a connection's own thread.
    Linger,
    /// Discard what has arrived unread and close at once: for the HTTP desk, which serves everyone
    /// and must not wait on one client (see `http_desk`).
    Prompt,
}

/// Answers one HTTP request. Any method is served like `GET` (as the reference does), except `HEAD`
/// (no body) and `OPTIONS` (a CORS preflight, on any path).
pub(crate) fn respond(stream: TcpStream, head: &RequestHead, state: &ServerState, parting: Parting) {
    if head.method == "OPTIONS" {
        let reply = with_cors(Response::from_data(Vec::new()), state);
        let reply = with_header(reply, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        let reply = with_header(reply, "Access-Control-Allow-Headers", "Content-Type, Authorization");
        return send(stream, head, reply, parting);
    }
    let reply = match head.path() {
        "/" => {
            let page = STATUS_PAGE.replace("{{DETAIL}}", if state.config.status_detail { "true" } else { "false" });
            with_header(with_cors(Response::from_string(page), state), "Content-Type", "text/html; charset=utf-8")
        }
        "/health" => json_reply(200, &health(state), state),
        "/stats" => json_reply(200, &stats(state), state),
        "/hubstats" => json_reply(200, &hub_stats(state), state),
        "/hubs" => json_reply(200, &hubs(state), state),
        "/metrics" if state.config.metrics => {
            if let Some(token) = &state.config.metrics_token
                && !auth::is_authorized(head, token)
            {
                let reply = json_reply(
                    401,
                    &json!({"error": "Unauthorized: /metrics needs METRICS_TOKEN", "status": 401}),
                    state,
                );
                return send(stream, head, with_header(reply, "WWW-Authenticate", "Bearer"), parting);
            }
            let reply = with_cors(Response::from_string(metrics(state)), state);
            with_header(reply, "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        }
        _ => json_reply(
            404,
            &json!({"error": "Not found", "endpoints": ["/health", "/stats", "/hubstats", "/hubs", "/metrics"]}),
            state,
        ),
    };
    send(stream, head, reply, parting);
}

/// Answers a request that cannot be served (bad head, failed handshake) with a JSON error.
pub(crate) fn reply_error(stream: TcpStream, status: u16, message: &str, state: &ServerState) {
    reply_error_with(stream, status, message, state, None);
}

/// Like [`reply_error`], with one extra header (e.g. `WWW-Authenticate`).
pub(crate) fn reply_error_with(
    stream: TcpStream,
    status: u16,
    message: &str,
    state: &ServerState,
    extra: Option<(&str, &str)>,
) {
    let mut reply = json_reply(status, &json!({"error": message, "status": status}), state);
    if let Some((name, value)) = extra {
        reply = with_header(reply, name, value);
    }
    write_and_close(stream, reply, 1, false, Parting::Linger);
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    timestamp: String,
    uptime: f64,
    #[serde(rename = "isHub")]
    is_hub: bool,
    connections: usize,
    peers: usize,
    hubs: usize,
    networks: usize,
    memory: proc_stats::ProcessStats,
}

fn health(state: &ServerState) -> Health {
    let counts = state.registry.counts();
    Health {
        status: "healthy",
        timestamp: iso8601(SystemTime::now()),
        uptime: state.started.elapsed().as_secs_f64(),
        is_hub: state.config.is_hub,
        connections: counts.connections,
        peers: counts.peers,
        hubs: counts.hubs,
        networks: counts.networks,
        memory: proc_stats::latest(),
    }
}

/// The reference's `getStats()` (docs/protocol.md §6), plus the mesh: links up and remote peers known.
fn stats(state: &ServerState) -> serde_json::Value {
    let counts = state.registry.counts();
    let bootstrap = state.bootstrap_links.snapshot();
    json!({
        "isRunning": !state.is_shutting_down(),
        "isHub": state.config.is_hub,
        "hubPeerId": state.hub_peer_id,
        "hubMeshNamespace": state.config.hub_mesh_namespace,
        "connections": counts.connections,
        "peers": counts.peers,
        "hubs": counts.hubs,
        "networks": counts.networks,
        "bootstrapHubs": {
            "total": bootstrap.len(),
            "connected": bootstrap.iter().filter(|link| link.connected).count(),
        },
        "hubLinks": state.registry.link_count(),
        "remotePeers": state.registry.remote_peer_count(),
        "maxConnections": state.config.max_connections,
        "connectionThreads": state.thread_budget.in_use(),
        "maxThreads": state.thread_budget.limit(),
        "uptime": state.started.elapsed().as_millis() as u64,
        "rejectedMessages": state.rejected_messages(),
        "messagesHandled": state.messages_handled.load(std::sync::atomic::Ordering::Relaxed),
        "pendingHandshakes": state.pending_handshakes.count(),
        "queuedBytes": state.queue_budget.total(),
        "host": state.config.host,
        "port": state.local_addr.port(),
        "cluster": cluster_stats(state),
    })
}

/// Cluster mode's part of `/stats` (`null` when the server runs alone).
fn cluster_stats(state: &ServerState) -> serde_json::Value {
    let (Some(shared), Some(config)) = (&state.cluster, &state.cluster_config) else {
        return serde_json::Value::Null;
    };
    let (instances, remote_peers) = state.registry.cluster_counts().unwrap_or_default();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    json!({
        "instance": config.instance,
        "namespace": config.namespace,
        "redis": crate::config::url_for_display(state.config.cluster_redis_url.as_deref().unwrap_or_default()),
        "subscriberConnected": shared.subscriber_up.load(relaxed),
        "publisherConnected": shared.publisher_up.load(relaxed),
        "otherInstances": instances,
        "remotePeers": remote_peers,
        "queued": shared.queue_len(),
        "published": shared.published.load(relaxed),
        "received": shared.received.load(relaxed),
        "droppedQueueFull": shared.dropped_queue_full.load(relaxed),
        "lastError": *shared.last_error.lock(),
    })
}

/// The reference's `getHubStats()`: the live hub links (both the ones this hub opened and the
/// ones it accepted) and the state of each bootstrap link, plus the remote peers known.
fn hub_stats(state: &ServerState) -> serde_json::Value {
    let links = state.registry.mesh_links();
    let (decided, cut_off) = state.registry.reach_checks();
    json!({
        "totalHubs": links.len(),
        "connectedHubs": links.len(),
        "hubs": links,
        "bootstrapHubs": state.bootstrap_links.snapshot(),
        "remotePeers": state.registry.remote_peer_count(),
        "reachChecks": {"decided": decided, "hubsCutOff": cut_off},
    })
}

/// `/metrics`: the counters, and the gauges read now.
fn metrics(state: &ServerState) -> String {
    let counts = state.registry.counts();
    let links = state.registry.mesh_links();
    let inbound = links.iter().filter(|l| l.direction == "inbound").count();
    let mut bootstrap_states = [0; 4];
    for link in state.bootstrap_links.snapshot() {
        if let Some(at) = metrics::BOOTSTRAP_STATES.iter().position(|s| *s == link.state) {
            bootstrap_states[at] += 1;
        }
    }
    let process = proc_stats::latest();
    let gauges = metrics::Gauges {
        peers: counts.peers,
        networks: counts.networks,
        links_inbound: inbound,
        links_outbound: links.len() - inbound,
        bootstrap_states,
        remote_peers: state.registry.remote_peer_count(),
        queued_bytes: state.queue_budget.total(),
        pending_handshakes: state.pending_handshakes.count(),
        resident_bytes: process.rss,
        threads: process.threads,
        open_fds: process.open_fds,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        cluster: state.cluster.as_ref().map(|shared| {
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            let (instances, remote_peers) = state.registry.cluster_counts().unwrap_or_default();
            metrics::ClusterGauges {
                redis_up: shared.subscriber_up.load(relaxed) && shared.publisher_up.load(relaxed),
                other_instances: instances,
                remote_peers,
                queued: shared.queue_len(),
                published: shared.published.load(relaxed),
                received: shared.received.load(relaxed),
                dropped_queue_full: shared.dropped_queue_full.load(relaxed),
            }
        }),
    };
    state.metrics.render(&gauges)
}

/// The live hub links, as `/hubstats` lists them.
fn hubs(state: &ServerState) -> serde_json::Value {
    let links = state.registry.mesh_links();
    json!({"timestamp": iso8601(SystemTime::now()), "totalHubs": links.len(), "hubs": links})
}

fn json_reply<T: Serialize>(status: u16, body: &T, state: &ServerState) -> Response<std::io::Cursor<Vec<u8>>> {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let reply = with_cors(Response::from_data(body), state).with_status_code(status);
    with_header(reply, "Content-Type", "application/json")
}

fn with_cors<R: Read>(reply: Response<R>, state: &ServerState) -> Response<R> {
    with_header(reply, "Access-Control-Allow-Origin", &state.config.cors_origin)
}

/// Adds a header whose value this module controls (configuration is validated to hold no control
/// characters). A value that still does not fit is left out rather than failing the reply.
fn with_header<R: Read>(reply: Response<R>, name: &str, value: &str) -> Response<R> {
    match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        Ok(header) => reply.with_header(header),
        Err(()) => reply,
    }
}

fn send<R: Read>(stream: TcpStream, head: &RequestHead, reply: Response<R>, parting: Parting) {
    write_and_close(stream, reply, head.minor_version, head.method == "HEAD", parting);
}

/// Writes `reply`, then closes the socket: write side first, then both sides, as `parting` says.
fn write_and_close<R: Read>(
    stream: TcpStream,
    reply: Response<R>,
    minor_version: u8,
    head_only: bool,
    parting: Parting,
) {
    // A reply fits a fresh connection's send buffer, so the write never waits for a client that
    // reads: the limit is for one that does not. The desk allows it less.
    let write_limit = if parting == Parting::Prompt { PROMPT_WRITE_LIMIT } else { Duration::from_secs(5) };
    let _ = stream.set_write_timeout(Some(write_limit));
    // The reply leaves with the FIN: the client wakes once, to a complete answer. Sent apart, the
    // reply woke it (and could hand it this thread's CPU) before the FIN was even sent.
    let Ok(rendered) = render_reply(reply, minor_version, head_only, None) else { return };
    if crate::platform::socket_flags::write_all_before_fin(&stream, &rendered).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    match parting {
        Parting::Linger => drain(&stream, LINGER),
        Parting::Prompt => discard_unread(&stream),
    }
}

/// What is read at a time from a socket whose input is thrown away. On the heap, not the stack: the
/// thread may have been, or its stack may next serve, a long-lived peer reader, and every stack
/// page a thread touches stays resident (a cached stack keeps them for its next thread). Not
/// smaller: a lingering socket must keep up with a client that floods it, or the client is never
/// told the connection is over (tests/hostile.rs, `byte_floods_are_paused_then_closed`).
const SINK: usize = 4096;

/// Reads and drops whatever has already arrived, without waiting: closing a socket with unread
/// input would send a reset, which can destroy the reply before the client reads it.
fn discard_unread(stream: &TcpStream) {
    let mut sink = vec![0u8; SINK];
    while let Ok(1..) = crate::platform::socket_flags::read_without_waiting(stream, &mut sink) {}
}

/// The `Server` header of every reply, the WebSocket upgrade's included.
pub(crate) const SERVER_NAME: &str = concat!("PeerPigeon-rs/", env!("CARGO_PKG_VERSION"));

/// Writes `reply` (as HTTP/1.`minor_version`) with one system call. tiny_http prints a reply piece
/// by piece (status, each header name, `: `, value...): straight onto a socket with Nagle off that
/// was some forty writes and as many packets, each waking the client, so it is printed into memory
/// first. `upgrade` names the protocol of a `101 Switching Protocols` reply.
pub(crate) fn write_reply<R: Read>(
    mut stream: &TcpStream,
    reply: Response<R>,
    minor_version: u8,
    head_only: bool,
    upgrade: Option<&str>,
) -> std::io::Result<()> {
    stream.write_all(&render_reply(reply, minor_version, head_only, upgrade)?)
}

/// `reply` as the bytes to send (see [`write_reply`]).
fn render_reply<R: Read>(
    reply: Response<R>,
    minor_version: u8,
    head_only: bool,
    upgrade: Option<&str>,
) -> std::io::Result<Vec<u8>> {
    let mut rendered = Vec::with_capacity(512);
    // Named here, or tiny_http names itself.
    let reply = match Header::from_bytes("Server", SERVER_NAME) {
        Ok(server) => reply.with_header(server),
        Err(()) => reply,
    };
    reply.raw_print(&mut rendered, HTTPVersion(1, minor_version), &[], head_only, upgrade)?;
    Ok(rendered)
}

/// Reads and discards until the peer closes, an error, or `limit` has passed: the polite end of a
/// connection, so that what we wrote last is not lost to a reset caused by unread input.
pub(crate) fn drain(mut stream: &TcpStream, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut sink = vec![0u8; SINK];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
