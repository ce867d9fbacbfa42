//! What every server thread shares: the configuration, the registry, the bounds that span all
//! connections, and the server's own counters. Built once by `server.rs`; starts nothing itself.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::accept::handshakes::PendingHandshakes;
use crate::config::Config;
use crate::hub::status::BootstrapLinks;
use crate::metrics::Metrics;
use tungstenite::protocol::Role;

use crate::peer::flusher::Flusher;
use crate::peer::outbox::{self, PeerHandle};
use crate::peer::queue::{PeerShared, QueueBudget};
use crate::platform::thread_budget::ThreadBudget;
use crate::protocol::peer_id::PeerId;
use crate::registry::Registry;
use crate::registry::cluster::{ClusterConfig, ClusterShared};
use crate::registry::mesh::MeshConfig;

/// What every server thread shares: the configuration, the registry and the server's own facts.
pub(crate) struct ServerState {
    pub config: Config,
    pub registry: Registry,
    /// The address actually bound (the port may differ from `config.port`).
    pub local_addr: SocketAddr,
    pub started: Instant,
    /// This server's own id when it is a hub (docs/protocol.md §5).
    pub hub_peer_id: Option<PeerId>,
    pub(crate) shutting_down: AtomicBool,
    next_serial: AtomicU64,
    /// What the server counts, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The bytes queued for all peers, and their bounds (`outbox.rs`).
    pub queue_budget: Arc<QueueBudget>,
    /// Sockets accepted whose request head is still being read.
    pub pending_handshakes: Arc<PendingHandshakes>,
    /// Client messages answered with an `error` since start (reported by `/stats`).
    rejected_messages: AtomicU64,
    /// Messages handled since start; the sweeper reads it to tell a quiet server from a busy one.
    pub messages_handled: AtomicU64,
    /// The state of each `BOOTSTRAP_HUBS` link (hub mode).
    pub bootstrap_links: BootstrapLinks,
    /// Finishes writes sockets would not take at once (`flusher.rs`).
    pub flusher: Arc<Flusher>,
    /// Connection threads may only start with a slot from here (`thread_budget.rs`).
    pub thread_budget: Arc<ThreadBudget>,
    /// Cluster mode: the queue towards Redis and its counters (`registry::cluster`), and the
    /// cluster's settings with this instance's id.
    pub cluster: Option<Arc<ClusterShared>>,
    pub cluster_config: Option<ClusterConfig>,
}

impl ServerState {
    /// A number no other connection of this server has had.
    pub fn next_serial(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a client message that was answered with an `error`.
    pub fn note_rejected(&self) {
        self.rejected_messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Client messages answered with an `error` since start.
    pub fn rejected_messages(&self) -> u64 {
        self.rejected_messages.load(Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// The handle and shared state of a new connection on `socket`, under this server's bounds,
    /// counters and flusher (`role`: `Server` for peers, `Client` for links this hub opens).
    pub(crate) fn new_peer(
        &self,
        peer_id: PeerId,
        socket: TcpStream,
        role: Role,
    ) -> (Arc<PeerHandle>, Arc<PeerShared>) {
        let (budget, metrics, flusher) = (self.queue_budget.clone(), self.metrics.clone(), self.flusher.clone());
        outbox::new_peer(peer_id, self.next_serial(), socket, role, budget, metrics, flusher)
    }
}

impl ServerState {
    /// The shared state of a server bound to `local_addr` (hub mode gets a fresh hub id).
    pub fn new(config: Config, local_addr: SocketAddr, flusher: Arc<Flusher>) -> ServerState {
        let hub_peer_id = config.is_hub.then(PeerId::random);
        let mesh = hub_peer_id.map(|hub_id| MeshConfig {
            hub_id,
            namespace: config.hub_mesh_namespace.clone(),
            host: config.host.clone(),
            port: local_addr.port(),
            max_hops: config.hub_max_hops,
            heartbeat: config.hub_heartbeat,
            hub_token_set: config.hub_token.is_some(),
            max_remote_peers: config.hub_max_remote_peers,
            max_peer_data_bytes: config.max_peer_data_bytes,
        });
        let bootstrap: &[String] = if config.is_hub { &config.bootstrap_hubs } else { &[] };
        let cluster_config = config.cluster_redis_url.as_ref().map(|_| ClusterConfig {
            instance: format!("{:016x}", fastrand::u64(..)),
            namespace: config.cluster_namespace.clone(),
            liveness: config.cluster_instance_ttl,
            max_remote_peers: config.hub_max_remote_peers,
            max_peer_data_bytes: config.max_peer_data_bytes,
        });
        let cluster = cluster_config.as_ref().map(|_| ClusterShared::new(config.cluster_queue));
        let registry_cluster = cluster_config.clone().zip(cluster.clone());
        ServerState {
            registry: Registry::new(config.max_connections, mesh, registry_cluster),
            cluster,
            cluster_config,
            local_addr,
            started: Instant::now(),
            hub_peer_id,
            shutting_down: AtomicBool::new(false),
            next_serial: AtomicU64::new(1),
            metrics: Arc::new(Metrics::default()),
            queue_budget: QueueBudget::new(config.max_queued_bytes, config.max_total_queued_bytes),
            pending_handshakes: PendingHandshakes::new(
                config.max_pending_handshakes,
                config.max_pending_handshakes_per_ip,
            ),
            rejected_messages: AtomicU64::new(0),
            messages_handled: AtomicU64::new(0),
            bootstrap_links: BootstrapLinks::new(bootstrap),
            thread_budget: ThreadBudget::for_this_system(config.max_threads),
            flusher,
            config,
        }
    }
}
