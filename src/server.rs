//! Starting and stopping a server: binding the port, the long-lived threads, graceful shutdown.
//!
//! [`Server::start`] binds (probing upward from `PORT` while ports are busy), then starts the accept
//! thread (`listener.rs`) and the sweeper (`cleanup.rs`); every connection then gets threads of its
//! own. [`ServerHandle::shutdown`] stops accepting, closes every WebSocket with 1001 and returns
//! within about two seconds, however the peers behave.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::accept::bind::bind;
use crate::accept::listener;
use crate::config::Config;
use crate::context::ServerState;
use crate::error::Error;
use crate::hub;
use crate::peer::flusher::Flusher;
use crate::platform::thread_budget;
use crate::platform::{futex_hash, proc_stats};
use crate::sweeper;
use crate::util::threads::spawn_named;

/// How long shutdown waits for peers to answer the 1001 close before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

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
        config.check_modes().map_err(Error::Config)?;
        crate::platform::malloc::tune_for_many_threads();
        // One descriptor per peer, plus a few for the listener and HTTP requests.
        let descriptors = config.max_connections as u64 + 64;
        if let Some(limit) = crate::platform::fd_limit::raise_open_file_limit() {
            if limit < descriptors {
                log::warn!(
                    "open-file limit is {limit}, too low for MAX_CONNECTIONS={}; raise it (ulimit -n, or LimitNOFILE)",
                    config.max_connections
                );
            }
            crate::platform::fd_limit::reserve_descriptor_table(descriptors, limit);
        }
        let listener = bind(&config)?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr: unspecified(), source })?;
        let flusher = Flusher::start().map_err(Error::Spawn)?;
        let state = Arc::new(ServerState::new(config, local_addr, flusher));
        let threads = thread_budget::threads_wanted(state.config.max_connections, state.config.max_pending_handshakes);
        warn_if_threads_are_short(&state, threads);
        if let Some(slots) = futex_hash::size_for_threads(threads.min(state.thread_budget.limit())) {
            log::debug!("futex hash table: {slots} buckets");
        }

        // Dropping `stop_threads` tells the sweeper and the hub threads to end.
        let (stop_threads, stop_signal) = crossbeam_channel::bounded::<()>(0);
        let stop_for_hub_and_cluster = stop_signal.clone();
        let sweeper = {
            let state = state.clone();
            spawn_named("sweeper", move || sweeper::run_sweeper(state, stop_signal))?
        };
        let hub_threads = if state.config.is_hub {
            hub::start(&state, &stop_for_hub_and_cluster).map_err(Error::Spawn)?
        } else {
            Vec::new()
        };
        // The acceptor may go on on another thread (`listener.rs`): what shutdown waits for is the
        // end of the last one, when `running` is dropped.
        let (running, acceptor_gone) = crossbeam_channel::bounded::<()>(0);
        listener::start(listener, &state, running)?;
        // The first process figures for /health, with the server's own threads running; the
        // sweeper keeps them current.
        proc_stats::sample();
        log::info!(
            "PeerPigeon-rs {}listening on ws://{local_addr} (max {} connections)",
            if state.config.is_hub { "hub " } else { "" },
            state.config.max_connections
        );
        log::info!("configuration: {}", crate::config::effective(&state.config));
        if !state.config.is_hub && !state.config.bootstrap_hubs.is_empty() {
            log::warn!("BOOTSTRAP_HUBS is set but IS_HUB is not: not linking to any hub");
        }
        if let Some(id) = state.hub_peer_id {
            log::info!("hub peer id {id}, mesh namespace {:?}", state.config.hub_mesh_namespace);
            if state.config.hub_token.is_none() {
                log::warn!(
                    "HUB_TOKEN is not set: only hubs on this machine (loopback) may link to this hub. To link hubs \
                     across machines, set the same HUB_TOKEN on every hub of the mesh"
                );
            }
        }
        // Cluster mode: the publisher is waited on at shutdown, for the farewell.
        let cluster_publisher = match state.cluster {
            Some(_) => Some(crate::cluster::start(&state, &stop_for_hub_and_cluster).map_err(Error::Spawn)?),
            None => None,
        };
        if let Some(cluster) = &state.cluster_config {
            log::info!("cluster instance {} (namespace {:?})", cluster.instance, cluster.namespace);
        }
        drop(hub_threads); // they end by themselves once told to stop; nothing waits for them
        Ok(ServerHandle {
            state,
            acceptor_gone: Some(acceptor_gone),
            sweeper: Some(sweeper),
            cluster_publisher,
            stop_threads: Some(stop_threads),
        })
    }
}

/// A running server. Dropping it shuts the server down.
pub struct ServerHandle {
    state: Arc<ServerState>,
    /// Disconnected once the (last) acceptor thread has ended.
    acceptor_gone: Option<Receiver<()>>,
    sweeper: Option<JoinHandle<()>>,
    cluster_publisher: Option<JoinHandle<()>>,
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
        log::info!("shutting down");
        // The acceptor waits in poll; a connection of our own wakes it to see the flag.
        let woken = TcpStream::connect_timeout(&wake_address(self.state.local_addr), Duration::from_secs(1)).is_ok();
        if let Some(acceptor_gone) = self.acceptor_gone.take().filter(|_| woken) {
            let _ = acceptor_gone.recv();
        }
        // Cluster mode: the others hear that this instance's peers are all leaving, before the
        // publisher stops (it sends what is queued first).
        self.state.registry.cluster_farewell();
        drop(self.stop_threads.take());
        if let Some(sweeper) = self.sweeper.take() {
            let _ = sweeper.join();
        }
        if let Some(publisher) = self.cluster_publisher.take() {
            // Bounded: the publisher's Redis commands time out, and its waits end when told to stop.
            let _ = publisher.join();
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
        log::info!("stopped; {} peers were closed", peers.len());
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Says so at start if the thread budget (the system's mapping limit, or `MAX_THREADS`) cannot
/// give the `wanted` threads, and what to raise the mapping limit to.
fn warn_if_threads_are_short(state: &ServerState, wanted: usize) {
    let limit = state.thread_budget.limit();
    if wanted > limit {
        log::warn!(
            "room for about {limit} threads, {} peers at a thread each; MAX_CONNECTIONS={} needs more. Past \
             it connections are refused. Raise MAX_THREADS if set, or: sysctl -w vm.max_map_count={}",
            limit.saturating_sub(thread_budget::RESERVED_FOR_HTTP),
            state.config.max_connections,
            thread_budget::max_map_count_for(wanted)
        );
    }
}

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
