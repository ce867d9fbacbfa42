//! What the server counts, and `GET /metrics` in the Prometheus text exposition format (0.0.4).
//!
//! Counters only go up; gauges (peers, networks, links, process figures) are read when a scrape
//! asks. Every label takes its value from a short fixed list ([`Refusal`], [`Received`],
//! [`Dropped`], [`CutOff`]), never from what a client sent, so the number of series is fixed.
//! Counting is one relaxed atomic add, cheap enough for every message.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `AUTH_TOKEN` missing or wrong (401).
    Unauthorized,
    /// No valid `peerId` (1008).
    InvalidPeerId,
    /// The id is connected already (1008).
    Duplicate,
    /// `MAX_CONNECTIONS` reached (1008).
    Full,
    /// The server is shutting down.
    ShuttingDown,
    /// No room for another thread.
    NoThread,
    /// Its address holds `MAX_PENDING_HANDSHAKES_PER_IP` unfinished request heads.
    SourceBusy,
    /// `MAX_PENDING_HANDSHAKES` unfinished request heads in all.
    HandshakesFull,
    /// A malformed request head or upgrade (400).
    BadRequest,
    /// The request head did not arrive in time (408).
    HeadTimeout,
    /// The request head was too large (431).
    HeadTooLarge,
}

impl Refusal {
    const ALL: [Refusal; 11] = [
        Refusal::Unauthorized,
        Refusal::InvalidPeerId,
        Refusal::Duplicate,
        Refusal::Full,
        Refusal::ShuttingDown,
        Refusal::NoThread,
        Refusal::SourceBusy,
        Refusal::HandshakesFull,
        Refusal::BadRequest,
        Refusal::HeadTimeout,
        Refusal::HeadTooLarge,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::InvalidPeerId => "invalid_peer_id",
            Refusal::Duplicate => "duplicate",
            Refusal::Full => "max_connections",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::NoThread => "no_thread",
            Refusal::SourceBusy => "handshakes_per_address",
            Refusal::HandshakesFull => "handshakes",
            Refusal::BadRequest => "bad_request",
            Refusal::HeadTimeout => "head_timeout",
            Refusal::HeadTooLarge => "head_too_large",
        }
    }
}

/// What kind of message a peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Announce,
    /// `offer`, `answer`, `ice-candidate` and the renegotiation and ICE-restart ones.
    Signal,
    Goodbye,
    Ping,
    Cleanup,
    /// Hub-to-hub messages (from a link, or ignored from a peer).
    Hub,
    /// A `type` the server does not route.
    Unsupported,
    /// Not JSON, or the wrong shape.
    Invalid,
    Binary,
}

impl Received {
    const ALL: [Received; 9] = [
        Received::Announce,
        Received::Signal,
        Received::Goodbye,
        Received::Ping,
        Received::Cleanup,
        Received::Hub,
        Received::Unsupported,
        Received::Invalid,
        Received::Binary,
    ];

    fn label(self) -> &'static str {
        match self {
            Received::Announce => "announce",
            Received::Signal => "signal",
            Received::Goodbye => "goodbye",
            Received::Ping => "ping",
            Received::Cleanup => "cleanup",
            Received::Hub => "hub",
            Received::Unsupported => "unsupported",
            Received::Invalid => "invalid",
            Received::Binary => "binary",
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// A signal for a peer not connected in the sender's network (and no hub links).
    UnknownTarget,
    /// A signal from a peer outside the network it names.
    NotInNetwork,
    /// Over the sender's rate limit.
    RateLimited,
    /// The recipient's queue was full (it was cut off).
    QueueFull,
    /// Larger than `MAX_MESSAGE_SIZE` (the sender was cut off).
    TooBig,
    /// Cluster mode: a signal for a peer not here while Redis was out of reach, or the queue
    /// towards it full.
    ClusterUnavailable,
}

impl Dropped {
    const ALL: [Dropped; 6] = [
        Dropped::UnknownTarget,
        Dropped::NotInNetwork,
        Dropped::RateLimited,
        Dropped::QueueFull,
        Dropped::TooBig,
        Dropped::ClusterUnavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Dropped::UnknownTarget => "unknown_target",
            Dropped::NotInNetwork => "not_in_network",
            Dropped::RateLimited => "rate_limited",
            Dropped::QueueFull => "queue_full",
            Dropped::TooBig => "too_big",
            Dropped::ClusterUnavailable => "cluster_unavailable",
        }
    }
}

/// Why the server closed a peer's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOff {
    /// It did not read what was queued for it.
    NotReading,
    /// It stayed over its rate limits.
    RateLimited,
    /// Nothing arrived from it for `PEER_TIMEOUT_SECS`.
    Idle,
    /// It sent a message larger than `MAX_MESSAGE_SIZE`.
    TooBig,
    /// It broke the WebSocket protocol (or sent invalid UTF-8).
    ProtocolError,
}

impl CutOff {
    const ALL: [CutOff; 5] =
        [CutOff::NotReading, CutOff::RateLimited, CutOff::Idle, CutOff::TooBig, CutOff::ProtocolError];

    fn label(self) -> &'static str {
        match self {
            CutOff::NotReading => "not_reading",
            CutOff::RateLimited => "rate_limited",
            CutOff::Idle => "idle",
            CutOff::TooBig => "too_big",
            CutOff::ProtocolError => "protocol_error",
        }
    }
}

/// The server's counters (see the module docs).
#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    received: [AtomicU64; Received::ALL.len()],
    delivered: AtomicU64,
    relayed: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    cut_off: [AtomicU64; CutOff::ALL.len()],
    link_attempts: AtomicU64,
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

impl Metrics {
    /// A WebSocket peer was admitted.
    pub fn accepted(&self) {
        add(&self.accepted, 1);
    }

    pub fn refused(&self, why: Refusal) {
        add(&self.refused[why as usize], 1);
    }

    pub fn received(&self, kind: Received) {
        add(&self.received[kind as usize], 1);
    }

    /// A peer's signal was delivered to a peer of this server.
    pub fn delivered(&self) {
        add(&self.delivered, 1);
    }

    /// A peer's signal was sent to the hub links.
    pub fn relayed(&self) {
        add(&self.relayed, 1);
    }

    pub fn dropped(&self, why: Dropped) {
        add(&self.dropped[why as usize], 1);
    }

    pub fn bytes_in(&self, count: usize) {
        add(&self.bytes_in, count as u64);
    }

    pub fn bytes_out(&self, count: usize) {
        add(&self.bytes_out, count as u64);
    }

    pub fn cut_off(&self, why: CutOff) {
        add(&self.cut_off[why as usize], 1);
    }

    /// A connection attempt to a `BOOTSTRAP_HUBS` link began.
    pub fn link_attempt(&self) {
        add(&self.link_attempts, 1);
    }

    /// The counters and `gauges` in the text exposition format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        family(&mut out, "peerpigeon_connections_accepted_total", "counter", "WebSocket peers admitted.");
        sample(&mut out, "peerpigeon_connections_accepted_total", &[], get(&self.accepted));
        family(&mut out, "peerpigeon_connections_refused_total", "counter", "Connections refused, by reason.");
        for why in Refusal::ALL {
            let value = get(&self.refused[why as usize]);
            sample(&mut out, "peerpigeon_connections_refused_total", &[("reason", why.label())], value);
        }
        family(
            &mut out,
            "peerpigeon_messages_received_total",
            "counter",
            "Messages received from peers and links, by type.",
        );
        for kind in Received::ALL {
            let value = get(&self.received[kind as usize]);
            sample(&mut out, "peerpigeon_messages_received_total", &[("type", kind.label())], value);
        }
        family(
            &mut out,
            "peerpigeon_signals_delivered_total",
            "counter",
            "Signals delivered to a peer of this server.",
        );
        sample(&mut out, "peerpigeon_signals_delivered_total", &[], get(&self.delivered));
        family(&mut out, "peerpigeon_signals_relayed_total", "counter", "Signals sent over hub links.");
        sample(&mut out, "peerpigeon_signals_relayed_total", &[], get(&self.relayed));
        family(&mut out, "peerpigeon_messages_dropped_total", "counter", "Messages not delivered, by reason.");
        for why in Dropped::ALL {
            let value = get(&self.dropped[why as usize]);
            sample(&mut out, "peerpigeon_messages_dropped_total", &[("reason", why.label())], value);
        }
        family(&mut out, "peerpigeon_received_bytes_total", "counter", "Bytes read from WebSocket connections.");
        sample(&mut out, "peerpigeon_received_bytes_total", &[], get(&self.bytes_in));
        family(&mut out, "peerpigeon_sent_bytes_total", "counter", "Bytes written to WebSocket connections.");
        sample(&mut out, "peerpigeon_sent_bytes_total", &[], get(&self.bytes_out));
        family(&mut out, "peerpigeon_peers_cut_off_total", "counter", "Peers the server closed, by reason.");
        for why in CutOff::ALL {
            let value = get(&self.cut_off[why as usize]);
            sample(&mut out, "peerpigeon_peers_cut_off_total", &[("reason", why.label())], value);
        }
        family(&mut out, "peerpigeon_hub_link_attempts_total", "counter", "Connection attempts to BOOTSTRAP_HUBS.");
        sample(&mut out, "peerpigeon_hub_link_attempts_total", &[], get(&self.link_attempts));
        gauges.render(&mut out);
        out
    }
}

/// Figures read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub peers: usize,
    pub networks: usize,
    pub links_inbound: usize,
    pub links_outbound: usize,
    /// `BOOTSTRAP_HUBS` links by state: connecting, connected, waiting, skipped.
    pub bootstrap_states: [usize; 4],
    pub remote_peers: usize,
    pub queued_bytes: usize,
    pub pending_handshakes: usize,
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub uptime_seconds: f64,
    /// Cluster mode only.
    pub cluster: Option<ClusterGauges>,
}

/// Cluster mode's figures, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ClusterGauges {
    /// Both Redis connections (publisher and subscriber) are up.
    pub redis_up: bool,
    pub other_instances: usize,
    pub remote_peers: usize,
    /// Messages waiting to go to Redis.
    pub queued: usize,
    pub published: u64,
    pub received: u64,
    pub dropped_queue_full: u64,
}

impl ClusterGauges {
    fn render(&self, out: &mut String) {
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            family(out, name, kind, help);
            sample(out, name, &[], value);
        };
        gauge(
            out,
            "peerpigeon_cluster_redis_up",
            "gauge",
            "1 while both Redis connections are up.",
            self.redis_up.into(),
        );
        gauge(
            out,
            "peerpigeon_cluster_instances",
            "gauge",
            "Other cluster instances alive.",
            self.other_instances as u64,
        );
        gauge(
            out,
            "peerpigeon_cluster_remote_peers",
            "gauge",
            "Peers of other instances known.",
            self.remote_peers as u64,
        );
        gauge(out, "peerpigeon_cluster_queued", "gauge", "Messages waiting to go to Redis.", self.queued as u64);
        gauge(out, "peerpigeon_cluster_published_total", "counter", "Commands sent to Redis.", self.published);
        gauge(out, "peerpigeon_cluster_received_total", "counter", "Messages received from Redis.", self.received);
        let help = "Messages for Redis dropped because the queue towards it was full (CLUSTER_QUEUE).";
        gauge(out, "peerpigeon_cluster_dropped_total", "counter", help, self.dropped_queue_full);
    }
}

/// The `BOOTSTRAP_HUBS` link states, in [`Gauges::bootstrap_states`] order.
pub const BOOTSTRAP_STATES: [&str; 4] = ["connecting", "connected", "waiting", "skipped"];

impl Gauges {
    fn render(&self, out: &mut String) {
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            family(out, name, "gauge", help);
            sample(out, name, &[], value);
        };
        gauge(out, "peerpigeon_peers", "WebSocket connections registered.", self.peers as u64);
        gauge(out, "peerpigeon_networks", "Networks with at least one announced peer.", self.networks as u64);
        family(out, "peerpigeon_hub_links", "gauge", "Live hub links, by which side opened them.");
        sample(out, "peerpigeon_hub_links", &[("direction", "inbound")], self.links_inbound as u64);
        sample(out, "peerpigeon_hub_links", &[("direction", "outbound")], self.links_outbound as u64);
        family(out, "peerpigeon_bootstrap_links", "gauge", "BOOTSTRAP_HUBS links, by state.");
        for (state, count) in BOOTSTRAP_STATES.iter().zip(self.bootstrap_states) {
            sample(out, "peerpigeon_bootstrap_links", &[("state", state)], count as u64);
        }
        gauge(out, "peerpigeon_remote_peers", "Peers of other hubs known.", self.remote_peers as u64);
        gauge(out, "peerpigeon_queued_bytes", "Bytes waiting to be written to peers.", self.queued_bytes as u64);
        gauge(
            out,
            "peerpigeon_pending_handshakes",
            "Sockets still sending their request head.",
            self.pending_handshakes as u64,
        );
        gauge(out, "process_resident_memory_bytes", "Resident memory, sampled once a second.", self.resident_bytes);
        gauge(out, "process_threads", "Threads, sampled once a second.", self.threads);
        gauge(out, "process_open_fds", "Open file descriptors, sampled once a second.", self.open_fds);
        family(out, "process_uptime_seconds", "gauge", "Seconds since the server started.");
        let _ = writeln!(out, "process_uptime_seconds {:.3}", self.uptime_seconds);
        if let Some(cluster) = &self.cluster {
            cluster.render(out);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line. Label values here are fixed words, so they need no escaping.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{value}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_with_their_labels_and_every_family_once() {
        let metrics = Metrics::default();
        metrics.refused(Refusal::Duplicate);
        metrics.refused(Refusal::Duplicate);
        metrics.received(Received::Signal);
        metrics.bytes_in(10);
        let text = metrics.render(&Gauges { peers: 3, ..Gauges::default() });
        assert!(text.contains("peerpigeon_connections_refused_total{reason=\"duplicate\"} 2\n"), "{text}");
        assert!(text.contains("peerpigeon_messages_received_total{type=\"signal\"} 1\n"));
        assert!(text.contains("peerpigeon_received_bytes_total 10\n"));
        assert!(text.contains("peerpigeon_peers 3\n"));
        let mut families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let count = families.len();
        families.sort();
        families.dedup();
        assert_eq!(families.len(), count, "a family declared twice");
    }
}
