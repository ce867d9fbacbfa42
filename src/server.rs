//! Starting and stopping a server: binding the port, the long-lived threads, graceful shutdown.
//!
//! [`Server::start`] binds (probing upward from `PORT` while ports are busy), then starts the accept
//! thread (`listener.rs`) and the sweeper (`cleanup.rs`); every connection then gets threads of its
//! own. [`ServerHandle::shutdown`] stops accepting, closes every WebSocket with 1001 and returns
//! within about two seconds, however the peers behave.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::accept::handshakes::PendingHandshakes;
use crate::accept::listener;
use crate::config::Config;
use crate::error::Error;
use crate::hub::links::{self, BootstrapLinks};
use crate::peer::outbox::QueueBudget;
use crate::platform::thread_budget::{self, ThreadBudget};
use crate::platform::{futex_hash, proc_stats};
use crate::protocol::peer_id::PeerId;
use crate::registry::Registry;
use crate::registry::mesh::MeshConfig;
use crate::sweeper;

/// How long shutdown waits for peers to answer the 1001 close before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// What every server thread shares: the configuration, the registry and the server's own facts.
pub(crate) struct ServerState {
    pub config: Config,
    pub registry: Registry,
    /// The address actually bound (the port may differ from `config.port`).
    pub local_addr: SocketAddr,
    pub started: Instant,
    /// This server's own id when it is a hub (docs/protocol.md §5).
    pub hub_peer_id: Option<PeerId>,
    shutting_down: AtomicBool,
    next_serial: AtomicU64,
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
    /// Connection and writer threads may only start with a slot from here (`thread_budget.rs`).
    pub thread_budget: Arc<ThreadBudget>,
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
}

/// Entry point of the library: `Server::start(config)`.
pub struct Server;

impl Server {
    /// Binds the configured address and starts serving. Returns once the server is accepting.
    ///
    /// ```no_run
    /// let server = peerpigeon::Server::start(peerpigeon::Config { port: 0, ..Default::default() })?;
    /// println!("listening on {}", server.local_addr());
    /// server.shutdown();
    /// # Ok::<(), peerpigeon::Error>(())
    /// ```
    pub fn start(config: Config) -> Result<ServerHandle, Error> {
        let listener = bind(&config)?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr: unspecified(), source })?;
        let hub_peer_id = config.is_hub.then(PeerId::random);
        let (config_is_hub, bootstrap) = (config.is_hub, config.bootstrap_hubs.clone());
        let config_max_threads = config.max_threads;
        let config_queue_bounds = (config.max_queued_bytes, config.max_total_queued_bytes);
        let config_max_pending = (config.max_pending_handshakes, config.max_pending_handshakes_per_ip);
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
        let state = Arc::new(ServerState {
            registry: Registry::new(config.max_connections, mesh),
            config,
            local_addr,
            started: Instant::now(),
            hub_peer_id,
            shutting_down: AtomicBool::new(false),
            next_serial: AtomicU64::new(1),
            queue_budget: QueueBudget::new(config_queue_bounds.0, config_queue_bounds.1),
            pending_handshakes: PendingHandshakes::new(config_max_pending.0, config_max_pending.1),
            rejected_messages: AtomicU64::new(0),
            messages_handled: AtomicU64::new(0),
            bootstrap_links: BootstrapLinks::new(if config_is_hub { &bootstrap } else { &[] }),
            thread_budget: ThreadBudget::for_this_system(config_max_threads),
        });
        let threads = thread_budget::threads_wanted(state.config.max_connections, state.config.max_pending_handshakes);
        warn_if_threads_are_short(&state, threads);
        if let Some(slots) = futex_hash::size_for_threads(threads.min(state.thread_budget.limit())) {
            crate::log_debug!("futex hash table: {slots} buckets");
        }

        // Dropping `stop_threads` tells the sweeper and the hub threads to end.
        let (stop_threads, stop_signal) = crossbeam_channel::bounded::<()>(0);
        let stop_signal_for_hubs = stop_signal.clone();
        let sweeper = {
            let state = state.clone();
            spawn_named("sweeper", move || sweeper::run_sweeper(state, stop_signal))?
        };
        let hub_threads = if state.config.is_hub {
            links::start(&state, &stop_signal_for_hubs).map_err(Error::Spawn)?
        } else {
            Vec::new()
        };
        let acceptor = {
            let state = state.clone();
            let handoffs = listener::Handoffs::start(&state)?;
            spawn_named("acceptor", move || {
                crate::platform::time_slice::prefer_prompt_wakeups();
                listener::run_accept_loop(listener, state, handoffs)
            })?
        };
        // The first process figures for /health, with the server's own threads running; the
        // sweeper keeps them current.
        proc_stats::sample();
        crate::log_info!(
            "PeerPigeon-rs {}listening on ws://{local_addr} (max {} connections)",
            if state.config.is_hub { "hub " } else { "" },
            state.config.max_connections
        );
        if !state.config.is_hub && !state.config.bootstrap_hubs.is_empty() {
            crate::log_warn!("BOOTSTRAP_HUBS is set but IS_HUB is not: not linking to any hub");
        }
        if let Some(id) = state.hub_peer_id {
            crate::log_info!("hub peer id {id}, mesh namespace {:?}", state.config.hub_mesh_namespace);
            if state.config.hub_token.is_none() {
                crate::log_warn!(
                    "HUB_TOKEN is not set: only hubs on this machine (loopback) may link to this hub. To link hubs \
                     across machines, set the same HUB_TOKEN on every hub of the mesh"
                );
            }
        }
        drop(hub_threads); // they end by themselves once told to stop; nothing waits for them
        Ok(ServerHandle { state, acceptor: Some(acceptor), sweeper: Some(sweeper), stop_threads: Some(stop_threads) })
    }
}

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    state: Arc<ServerState>,
    acceptor: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    stop_threads: Option<Sender<()>>,
}

impl ServerHandle {
    /// The address the server listens on, with the port actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.state.local_addr
    }

    /// The hub's own peer id, when the server runs as a hub.
    pub fn hub_peer_id(&self) -> Option<String> {
        self.state.hub_peer_id.map(|id| id.to_string())
    }

    /// Stops accepting, closes every WebSocket with 1001 ("going away") and waits, about two seconds
    /// at most, for the peers to go.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.state.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        crate::log_info!("shutting down");
        // The accept thread is blocked in accept(); a connection of our own wakes it to see the flag.
        let woken = TcpStream::connect_timeout(&wake_address(self.state.local_addr), Duration::from_secs(1)).is_ok();
        if let Some(acceptor) = self.acceptor.take().filter(|_| woken) {
            let _ = acceptor.join();
        }
        drop(self.stop_threads.take());
        if let Some(sweeper) = self.sweeper.take() {
            let _ = sweeper.join();
        }

        let peers = self.state.registry.begin_shutdown();
        // The other hubs hear that this hub's peers are leaving before the links close behind it.
        self.state.registry.say_farewell_to_links();
        for link in self.state.registry.link_handles() {
            link.close(1001, "Hub shutting down");
        }
        for peer in &peers {
            peer.close(1001, "Server shutting down");
        }
        if !self.state.registry.wait_until_empty(Instant::now() + SHUTDOWN_GRACE) {
            for peer in self.state.registry.handles() {
                peer.kill();
            }
        }
        crate::log_info!("stopped; {} peers were closed", peers.len());
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a connection thread's body so that a panic in it (a bug: nothing from the network should
/// be able to cause one) is logged and ends only that thread. What the thread owned is cleaned up
/// by its guards while unwinding (a peer's reader unregisters the peer); other peers never notice.
pub(crate) fn contain_panic(thread: &str, body: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        crate::log_error!("thread {thread} panicked: {message}; its connection was closed, nothing else was affected");
    }
}

/// Says so at start if the thread budget (the system's mapping limit, or `MAX_THREADS`) cannot
/// give the `wanted` threads, and what to raise the mapping limit to.
fn warn_if_threads_are_short(state: &ServerState, wanted: usize) {
    let limit = state.thread_budget.limit();
    if wanted > limit {
        crate::log_warn!(
            "room for about {limit} threads, {} peers at two threads each; MAX_CONNECTIONS={} needs more. Past \
             it connections are refused. Raise MAX_THREADS if set, or: sysctl -w vm.max_map_count={}",
            limit.saturating_sub(thread_budget::RESERVED_FOR_HTTP) / 2,
            state.config.max_connections,
            thread_budget::max_map_count_for(wanted)
        );
    }
}

/// Starts a named long-lived server thread.
pub(crate) fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    thread::Builder::new().name(name.to_string()).stack_size(256 * 1024).spawn(body).map_err(Error::Spawn)
}

/// Binds `config.host` on the first free port from `config.port` upward (docs/protocol.md §7), trying IPv4
/// addresses of the host first so that `localhost` means 127.0.0.1, as clients usually expect.
fn bind(config: &Config) -> Result<TcpListener, Error> {
    let resolve_error = |source| Error::Resolve { host: config.host.clone(), source };
    let mut addresses: Vec<IpAddr> =
        (config.host.as_str(), 0).to_socket_addrs().map_err(resolve_error)?.map(|a| a.ip()).collect();
    addresses.sort_by_key(|ip| ip.is_ipv6());
    addresses.dedup();
    if addresses.is_empty() {
        return Err(resolve_error(io::Error::new(io::ErrorKind::NotFound, "no addresses")));
    }
    let retries = if config.port == 0 { 0 } else { config.port_retries };
    let last = config.port.saturating_add(retries);
    for port in config.port..=last {
        match bind_first(&addresses, port) {
            Ok(listener) => {
                if port != config.port {
                    crate::log_info!("port {} was in use; using port {port}", config.port);
                }
                return Ok(listener);
            }
            Err(BindFailure::InUse) => crate::log_warn!("port {port} on {} is in use", config.host),
            Err(BindFailure::Other(addr, source)) => return Err(Error::Bind { addr, source }),
        }
    }
    Err(Error::PortsBusy { host: config.host.clone(), first: config.port, last })
}

enum BindFailure {
    InUse,
    Other(SocketAddr, io::Error),
}

fn bind_first(addresses: &[IpAddr], port: u16) -> Result<TcpListener, BindFailure> {
    let mut failure = BindFailure::InUse;
    for &ip in addresses {
        let addr = SocketAddr::new(ip, port);
        match TcpListener::bind(addr) {
            Ok(listener) => {
                deepen_backlog(&listener);
                return Ok(listener);
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => failure = BindFailure::InUse,
            Err(err) => failure = BindFailure::Other(addr, err),
        }
    }
    Err(failure)
}

/// Connections the kernel may hold complete but not yet accepted. The standard library listens
/// with 128; when thousands of peers connect at once the acceptor cannot always keep up, and past
/// the backlog a client's connection attempt is dropped and retried only a second later. Node,
/// and so the reference, uses 511; calling `listen` again on a listening socket just changes it.
const LISTEN_BACKLOG: i32 = 1024;

#[cfg(unix)]
fn deepen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn listen(fd: i32, backlog: i32) -> i32;
    }
    // SAFETY: `listen` takes a descriptor, valid for as long as `listener` is borrowed, and an int.
    if unsafe { listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        crate::log_debug!("could not deepen the listen backlog: {}", io::Error::last_os_error());
    }
}

#[cfg(not(unix))]
fn deepen_backlog(_listener: &TcpListener) {}

/// An address that reaches a listener bound to `bound` (the loopback for a wildcard bind).
fn wake_address(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port()),
        _ => bound,
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)
}
