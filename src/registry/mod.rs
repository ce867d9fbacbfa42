//! Who is connected and who is in which network; every change and the notices it causes.
//!
//! One `parking_lot::Mutex` guards all of it. Each operation takes the lock, updates the maps and
//! queues the resulting messages (`peer-discovered`, `peer-disconnected`, a relay) before letting
//! go. Queueing is a push onto the peer's queue; the writes wait until the lock is let go
//! ([`DeferWrites`]), so holding the lock for it is cheap, and it is what keeps every peer's view
//! consistent: a peer can never hear that someone left and then, from a slower thread, that the
//! same someone arrived.
//!
//! The counts `/health` and `/stats` report are published to atomics whenever the lock is let go
//! ([`Locked`]), so monitoring never waits for the lock, for which a thousand readers may queue in
//! an announce storm. In hub mode the lock also guards the relay state (`mesh`), which answers
//! with the messages to send to links and local peers; in cluster mode, the state shared with the
//! other instances (`cluster`), which answers with messages to publish and notices for local peers
//! (carried out in `cluster_mode.rs`).

pub(crate) mod cluster;
mod cluster_mode;
pub(crate) mod mesh;
pub(crate) mod router;

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde_json::value::RawValue;

use crate::peer::outbox::{DeferWrites, PeerHandle};
use crate::protocol::peer_id::PeerId;
use crate::protocol::{self, SignalKind};
use crate::registry::cluster::{Cluster, ClusterConfig, ClusterShared, SignalRefusal, ToRedis};
use crate::registry::mesh::{
    AnnouncedPeer, Direction, LinkEvent, LinkId, LinkInfo, LocalPeers, Mesh, MeshConfig, Outgoing,
};
use crate::util::throttled_log::ThrottledLog;

/// Why a new connection was not registered. Each maps to a 1008 close reason of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// A live connection already uses this peer id.
    Duplicate,
    /// `MAX_CONNECTIONS` peers are connected.
    Full,
    /// The server is shutting down.
    ShuttingDown,
}

impl RegisterError {
    /// The close reason the reference sends (docs/protocol.md §1).
    pub fn close_reason(self) -> &'static str {
        match self {
            RegisterError::Duplicate => "Peer already connected",
            RegisterError::Full => "Maximum connections reached",
            RegisterError::ShuttingDown => "Server shutting down",
        }
    }
}

/// Where a signal went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To its target, a peer of this server.
    Local,
    /// To another server, the target not being here: over the hub links, or through Redis to the
    /// cluster instance that holds it.
    Relayed,
}

/// Why a signal was not delivered; each becomes an `error` reply to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The sender has not announced, or the signal names another network than the sender's.
    NotInNetwork,
    /// No peer with that id is announced in the sender's network (here).
    UnknownTarget,
    /// Cluster mode: the target is not here, and Redis is out of reach or the queue towards it full.
    ClusterUnavailable,
}

/// Counts reported by `/health` and `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// WebSocket connections registered.
    pub connections: usize,
    /// Peers known (the same as connections: every connection is a peer).
    pub peers: usize,
    /// Live hub links, opened or accepted.
    pub hubs: usize,
    /// Networks with at least one announced peer.
    pub networks: usize,
}

/// What a peer told the server about itself when it announced.
pub(crate) struct Announcement {
    pub network: Arc<str>,
    pub is_hub: bool,
    /// The `data` of the `peer-discovered` that describes this peer, built once at announce.
    pub discovery: Box<RawValue>,
    /// Orders this announcement against others of the same peer across hubs (`mesh`).
    pub seq: u64,
}

pub(crate) struct PeerEntry {
    pub handle: Arc<PeerHandle>,
    pub announced: Option<Announcement>,
}

/// Everything behind the registry's lock.
pub(crate) struct State {
    pub peers: HashMap<PeerId, PeerEntry>,
    pub networks: HashMap<Arc<str>, HashSet<PeerId>>,
    /// Hub mode: the relay state (`mesh`), and the connections of the links it sends over.
    mesh: Option<Mesh>,
    links: HashMap<LinkId, Arc<PeerHandle>>,
    /// Cluster mode: the state shared with the other instances, and the queue towards Redis.
    cluster: Option<InCluster>,
    shutting_down: bool,
}

/// Cluster mode's part of the registry's state: the state shared with the other instances, and the
/// queue towards Redis its messages go into (`cluster_mode.rs` carries out what it asks).
pub(crate) struct InCluster {
    state: Cluster,
    to_redis: Arc<ClusterShared>,
}

/// The server's table of peers and networks.
pub struct Registry {
    state: Mutex<State>,
    /// The counts as of the last time the lock was let go.
    published: PublishedCounts,
    /// Signalled when the last peer leaves, for shutdown to wait on.
    emptied: Condvar,
    max_connections: usize,
}

impl Registry {
    /// An empty registry that admits at most `max_connections` peers; `mesh` is set in hub mode,
    /// `cluster` in cluster mode.
    pub fn new(
        max_connections: usize,
        mesh: Option<MeshConfig>,
        cluster: Option<(ClusterConfig, Arc<ClusterShared>)>,
    ) -> Registry {
        let state = State {
            peers: HashMap::new(),
            networks: HashMap::new(),
            mesh: mesh.map(|config| Mesh::new(config, Instant::now())),
            links: HashMap::new(),
            cluster: cluster
                .map(|(config, to_redis)| InCluster { state: Cluster::new(config, Instant::now()), to_redis }),
            shutting_down: false,
        };
        Registry {
            state: Mutex::new(state),
            published: PublishedCounts::default(),
            emptied: Condvar::new(),
            max_connections,
        }
    }

    /// Takes the lock; the counts are published when it is let go.
    pub(crate) fn lock(&self) -> Locked<'_> {
        let defer = DeferWrites::begin();
        Locked { guard: self.state.lock(), published: &self.published, _defer: defer }
    }

    /// Admits a new connection. A previous connection under the same id that is already closing is
    /// replaced (and its network told it left); a live one makes this one a duplicate.
    pub fn register(&self, handle: Arc<PeerHandle>) -> Result<(), RegisterError> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(RegisterError::ShuttingDown);
        }
        let mut stale = None;
        if let Some(existing) = state.peers.get(&handle.peer_id) {
            if !existing.handle.is_closing() {
                return Err(RegisterError::Duplicate);
            }
            stale = Some(existing.handle.clone());
            state.remove(handle.peer_id, "replaced");
        }
        if state.peers.len() >= self.max_connections {
            return Err(RegisterError::Full);
        }
        state.peers.insert(handle.peer_id, PeerEntry { handle, announced: None });
        drop(state);
        // Make sure the replaced connection is really gone; done outside the lock (it is a syscall).
        if let Some(stale) = stale {
            stale.kill();
        }
        Ok(())
    }

    /// Forgets connection `serial` of `peer` and tells its network it left with `reason`.
    /// Does nothing if that connection was already replaced or removed.
    pub fn unregister(&self, peer: PeerId, serial: u64, reason: &str) {
        let mut state = self.lock();
        if state.peers.get(&peer).is_some_and(|entry| entry.handle.serial == serial) {
            state.remove(peer, reason);
            if state.peers.is_empty() {
                self.emptied.notify_all();
            }
        }
    }

    /// Waits until no peer is registered, or `deadline`. Returns whether it emptied.
    pub fn wait_until_empty(&self, deadline: std::time::Instant) -> bool {
        let mut state = self.lock();
        while !state.peers.is_empty() {
            if self.emptied.wait_until(&mut state.guard, deadline).timed_out() {
                return state.peers.is_empty();
            }
        }
        true
    }

    /// Puts `peer` into `network` (leaving any other network it was in) and exchanges
    /// `peer-discovered` with every other peer there: each of them hears about the newcomer and the
    /// newcomer hears about each of them (docs/protocol.md §2). Announcing again re-sends both directions,
    /// as the reference does.
    pub fn announce(&self, peer: PeerId, network: &str, is_hub: bool, discovery: Box<RawValue>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.peers.get(&peer) else {
            return;
        };
        if entry.announced.as_ref().is_some_and(|a| &*a.network != network) {
            state.leave_network(peer, "network-change");
        }
        let network = state.join_network(peer, network);
        let seq = match (&mut state.mesh, &mut state.cluster) {
            (Some(mesh), _) => mesh.next_stamp(),
            (None, Some(cluster)) => cluster.state.next_stamp(),
            (None, None) => 0,
        };
        if let Some(entry) = state.peers.get_mut(&peer) {
            entry.announced = Some(Announcement { network: network.clone(), is_hub, discovery, seq });
        }

        {
            let state = &*state;
            let Some(newcomer) = state.peers.get(&peer) else {
                return;
            };
            let Some(ours) = &newcomer.announced else {
                return;
            };
            // The members' news is one message built once; the newcomer's list is one block.
            let arrived = Arc::new(protocol::peer_discovered_to_each(&ours.discovery, &network));
            let members_here = state.networks.get(&network);
            let remote = state.cluster.as_ref().map_or(0, |cluster| cluster.state.remote_member_count(&network));
            let others = members_here.map_or(0, |members| members.len().saturating_sub(1)) + remote;
            // Each member's message is about as long as the newcomer's own news.
            let mut members = protocol::Batch::with_capacity(others, others * (arrived.len() + 16));
            for &other in members_here.into_iter().flatten() {
                let Some(entry) = state.peers.get(&other).filter(|_| other != peer) else {
                    continue;
                };
                entry.handle.send_to_each(&arrived);
                if let Some(theirs) = &entry.announced {
                    members.push_peer_discovered(&theirs.discovery, &network, newcomer.handle.peer_id);
                }
            }
            // Cluster mode: the members on the other instances too.
            for theirs in state.cluster.iter().flat_map(|cluster| cluster.state.remote_members(&network)) {
                members.push_peer_discovered(&theirs.discovery, &network, newcomer.handle.peer_id);
            }
            newcomer.handle.send_batch(members);
        }
        state.with_mesh(|mesh, local| {
            if let Some(a) = local.peers.get(&peer).and_then(|e| e.announced.as_ref()) {
                mesh.local_announced(peer, &network, a.is_hub, a.seq, &a.discovery);
            }
        });
        state.with_cluster(|cluster, local| {
            if let Some(a) = local.peers.get(&peer).and_then(|e| e.announced.as_ref()) {
                cluster.local_announced(peer, &network, a.is_hub, a.seq, &a.discovery);
            }
        });
        // In hub mode, a hub announcing to us becomes a link if it holds the hub credential
        // (docs/protocol.md §5, "Who is a hub"); without it, it stays an ordinary peer.
        let Some(hub_token_set) = state.mesh.as_ref().map(Mesh::hub_token_set) else { return };
        let Some(entry) = state.peers.get(&peer).filter(|e| is_hub && !e.handle.is_link()) else { return };
        if !entry.handle.may_link() {
            refused_link(&entry.handle, hub_token_set);
            let why = if hub_token_set {
                "Not accepted as a hub link: present this mesh's HUB_TOKEN; served as an ordinary peer"
            } else {
                "Not accepted as a hub link: this hub has no HUB_TOKEN and takes links from its own machine only; served as an ordinary peer"
            };
            entry.handle.send_text(protocol::error(protocol::error_code::NOT_A_HUB_LINK, why));
            return;
        }
        let handle = entry.handle.clone();
        let fields = protocol::PeerFields::of(entry.announced.as_ref().map(|a| &*a.discovery));
        let speaks_relay = fields.has_capability(protocol::RS_CAPABILITY);
        state.add_link(handle, Direction::Inbound, speaks_relay, Some(peer));
    }

    /// Takes `peer` out of its network and tells the others it left with `reason` (a `goodbye`).
    /// The connection stays registered and may announce again.
    pub fn leave(&self, peer: PeerId, reason: &str) {
        self.lock().leave_network(peer, reason);
    }

    /// Delivers a `kind` signal from local peer `sender` to `target`, both announced in `network`
    /// (docs/protocol.md §3), or in hub mode relays it to the other hubs when the target is not here.
    pub fn deliver_signal(
        &self,
        sender: PeerId,
        network: &str,
        target: PeerId,
        kind: SignalKind,
        data: Option<&RawValue>,
    ) -> Result<Route, RouteError> {
        let mut state = self.lock();
        let sender_network = state.peers.get(&sender).and_then(|e| e.announced.as_ref()).map(|a| &a.network);
        if sender_network.is_none_or(|n| &**n != network) {
            return Err(RouteError::NotInNetwork);
        }
        // A target in another network is reported exactly like a missing one, so that signalling
        // cannot be used to probe who is connected elsewhere.
        if let Some(entry) = state.peers.get(&target) {
            if entry.announced.as_ref().is_none_or(|a| &*a.network != network) {
                return Err(RouteError::UnknownTarget);
            }
            // Built and sent after the lock is released: the send may write to the target's socket.
            let handle = entry.handle.clone();
            drop(state);
            handle.send_text(protocol::signal(kind, data, sender, target, network));
            return Ok(Route::Local);
        }
        if let Some(cluster) = &mut state.cluster {
            let (channel, text) =
                cluster.state.signal(kind, sender, target, network, data).map_err(|refusal| match refusal {
                    SignalRefusal::UnknownTarget => RouteError::UnknownTarget,
                    SignalRefusal::Unavailable => RouteError::ClusterUnavailable,
                })?;
            let sent = cluster.to_redis.send(ToRedis::Publish { channel, text });
            return if sent { Ok(Route::Relayed) } else { Err(RouteError::ClusterUnavailable) };
        }
        let now = Instant::now();
        let relayed = state.with_mesh(|mesh, _| mesh.local_signal(kind, sender, target, network, data, now));
        if relayed == Some(true) { Ok(Route::Relayed) } else { Err(RouteError::UnknownTarget) }
    }

    /// Every registered connection, for the sweeper and shutdown to work through without the lock.
    pub fn handles(&self) -> Vec<Arc<PeerHandle>> {
        self.lock().peers.values().map(|e| e.handle.clone()).collect()
    }

    /// Refuses new connections and stops leave notices (everyone is leaving), then returns every
    /// connection so that it can be closed.
    pub fn begin_shutdown(&self) -> Vec<Arc<PeerHandle>> {
        let mut state = self.lock();
        state.shutting_down = true;
        state.peers.values().map(|e| e.handle.clone()).collect()
    }

    /// Current counts for the HTTP endpoints.
    pub fn counts(&self) -> Counts {
        let peers = self.published.peers.load(Ordering::Relaxed);
        Counts {
            connections: peers,
            peers,
            hubs: self.published.hubs.load(Ordering::Relaxed),
            networks: self.published.networks.load(Ordering::Relaxed),
        }
    }
}

/// Hub mode: the links and the mesh, for the link threads, the mesh timer, shutdown and the HTTP
/// endpoints. On a server that is not a hub there are no links and these do nothing.
impl Registry {
    /// Registers an outbound link (a `BOOTSTRAP_HUBS` connection that just opened).
    pub fn link_up(&self, handle: Arc<PeerHandle>, uri: &str) {
        self.lock().add_link(handle, Direction::Outbound { uri: uri.to_string() }, false, None);
    }

    /// Forgets link `link` (its connection ended).
    pub fn link_down(&self, link: LinkId) {
        self.lock().remove_link(link);
    }

    /// Handles one message that arrived over link `link`.
    pub fn handle_link_message(&self, link: LinkId, text: &str) -> LinkEvent {
        let Ok(message) = protocol::parse_link_message(text) else {
            log::debug!("ignored an unreadable message on hub link {link}");
            return LinkEvent::Nothing;
        };
        let now = Instant::now();
        let mut state = self.lock();
        state.with_mesh(|mesh, local| mesh.on_link_message(link, &message, local, now)).unwrap_or(LinkEvent::Nothing)
    }

    /// The mesh's timed work (`Mesh::tick`); returns how long the timer may sleep.
    pub fn mesh_tick(&self) -> Duration {
        let now = Instant::now();
        let next = self.lock().with_mesh(|mesh, local| mesh.tick(local, now));
        next.map_or(Duration::from_secs(3600), |next| next.saturating_duration_since(now))
    }

    /// Signalled when the mesh timer should run [`Self::mesh_tick`] before the time it was given.
    pub fn mesh_timer_wakeups(&self) -> Receiver<()> {
        self.lock().mesh.as_ref().map_or_else(crossbeam_channel::never, Mesh::timer_wakeups)
    }

    /// Tells every hub link that this hub's peers are leaving (it is shutting down).
    pub fn say_farewell_to_links(&self) {
        self.lock().with_mesh(|mesh, local| mesh.farewell(local));
    }

    /// The hub links now up, both directions, for `/hubs` and `/hubstats`.
    pub fn mesh_links(&self) -> Vec<LinkInfo> {
        self.lock().mesh.as_ref().map_or_else(Vec::new, Mesh::links)
    }

    /// How many hub links are up, both directions.
    pub fn link_count(&self) -> usize {
        self.lock().links.len()
    }

    /// Reachability checks decided since start, and hubs they found cut off, for `/hubstats`.
    pub fn reach_checks(&self) -> (u64, u64) {
        self.lock().mesh.as_ref().map_or((0, 0), Mesh::reach_checks)
    }

    /// How many peers of other hubs (or cluster instances) this server knows.
    pub fn remote_peer_count(&self) -> usize {
        let state = self.lock();
        state.mesh.as_ref().map_or(0, Mesh::remote_count) + state.cluster.as_ref().map_or(0, |c| c.state.remote_count())
    }

    /// The open hub links, for shutdown to close.
    pub fn link_handles(&self) -> Vec<Arc<PeerHandle>> {
        self.lock().links.values().cloned().collect()
    }
}

/// Logs (throttled) that a connection announced itself as a hub without the hub credential, and
/// what the operator should set if it was a real hub.
fn refused_link(handle: &PeerHandle, hub_token_set: bool) {
    static REFUSED: ThrottledLog = ThrottledLog::new();
    let from = handle.remote_addr.map_or_else(|| "an unknown address".to_string(), |addr| addr.to_string());
    REFUSED.warn(|| {
        if hub_token_set {
            format!(
                "{from} announced itself as a hub without HUB_TOKEN; it is served as an ordinary peer. A hub of \
                 this mesh must present it (BOOTSTRAP_HUBS URL path ws://host:port/mesh/<HUB_TOKEN>)"
            )
        } else {
            format!(
                "{from} announced itself as a hub, but with no HUB_TOKEN set only hubs on this machine may link; \
                 it is served as an ordinary peer. Set the same HUB_TOKEN on every hub of the mesh"
            )
        }
    });
}

/// The registry's lock, held. Derefs to the [`State`]; letting it go publishes the counts, then
/// writes what was queued meanwhile (fields drop in order: the lock first, then `_defer`).
pub(crate) struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    published: &'a PublishedCounts,
    _defer: DeferWrites,
}

impl Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let published = self.published;
        publish(&published.peers, self.guard.peers.len());
        publish(&published.hubs, self.guard.links.len());
        publish(&published.networks, self.guard.networks.len());
    }
}

/// Stores `value` only if it changed: most lock holders (every routed signal) change no count, and
/// a load leaves the cache line shared where a store would take it from every other core.
fn publish(count: &AtomicUsize, value: usize) {
    if count.load(Ordering::Relaxed) != value {
        count.store(value, Ordering::Relaxed);
    }
}

/// Counts readable without the lock (see the module docs).
#[derive(Default)]
struct PublishedCounts {
    peers: AtomicUsize,
    hubs: AtomicUsize,
    networks: AtomicUsize,
}

impl State {
    /// Adds `peer` to `network`'s member set, creating it, and returns the shared network name.
    fn join_network(&mut self, peer: PeerId, network: &str) -> Arc<str> {
        let name: Arc<str> = match self.networks.get_key_value(network) {
            Some((name, _)) => name.clone(),
            None => {
                let name = Arc::from(network);
                self.with_cluster(|cluster, _| cluster.network_opened(&name));
                name
            }
        };
        self.networks.entry(name.clone()).or_default().insert(peer);
        name
    }

    /// Takes `peer` out of its network, if it announced, and tells the remaining members and,
    /// in hub mode, the other hubs.
    fn leave_network(&mut self, peer: PeerId, reason: &str) {
        let Some(announced) = self.peers.get_mut(&peer).and_then(|e| e.announced.take()) else {
            return;
        };
        let network = announced.network;
        if let Some(members) = self.networks.get_mut(&network) {
            members.remove(&peer);
            if members.is_empty() {
                self.networks.remove(&network);
                self.with_cluster(|cluster, _| cluster.network_closed(&network));
            }
        }
        if self.shutting_down {
            return;
        }
        self.with_cluster(|cluster, _| cluster.local_left(peer, &network, announced.is_hub, announced.seq, reason));
        let left = Arc::new(protocol::peer_disconnected_to_each(peer, announced.is_hub, reason, &network));
        for other in self.networks.get(&network).into_iter().flatten() {
            if let Some(entry) = self.peers.get(other) {
                entry.handle.send_to_each(&left);
            }
        }
        self.with_mesh(|mesh, _| mesh.local_left(peer, &network, announced.is_hub, announced.seq, reason));
    }

    /// Forgets `peer` entirely, telling its network (and, if it was a hub link, dropping the link).
    fn remove(&mut self, peer: PeerId, reason: &str) {
        self.leave_network(peer, reason);
        if let Some(entry) = self.peers.remove(&peer)
            && entry.handle.is_link()
        {
            self.remove_link(entry.handle.serial);
        }
        // Cluster mode: the id is free for any instance again. If the queue is full, the claim
        // lapses by itself (`cluster/publisher.rs`, CLAIM_TTL).
        if let Some(cluster) = &self.cluster {
            cluster.to_redis.send(ToRedis::Release { peer });
        }
    }

    /// Registers an open link and lets the mesh greet it and tell it what this hub knows.
    fn add_link(&mut self, handle: Arc<PeerHandle>, direction: Direction, speaks_relay: bool, remote: Option<PeerId>) {
        let link = handle.serial;
        handle.mark_link();
        self.links.insert(link, handle);
        self.with_mesh(|mesh, local| mesh.link_up(link, direction, speaks_relay, remote, local));
    }

    /// Forgets link `link`, and lets the mesh work out what went with it.
    fn remove_link(&mut self, link: LinkId) {
        if self.links.remove(&link).is_some() {
            self.with_mesh(|mesh, local| mesh.link_down(link, local, Instant::now()));
        }
    }

    /// Hub mode: runs `work` on the mesh, with a view of this hub's own peers, then sends what the
    /// mesh asked to (queueing, as everything under the lock). `None` when not a hub.
    fn with_mesh<R>(&mut self, work: impl FnOnce(&mut Mesh, &LocalView<'_>) -> R) -> Option<R> {
        let State { peers, networks, mesh, links, .. } = self;
        let mesh = mesh.as_mut()?;
        let local = LocalView { peers, networks };
        let result = work(mesh, &local);
        for outgoing in mesh.outgoing() {
            match outgoing {
                Outgoing::Link(link, text) => {
                    if let Some(handle) = links.get(&link) {
                        handle.send_text(text);
                    }
                }
                Outgoing::Peer(peer, text) => {
                    if let Some(entry) = peers.get(&peer) {
                        entry.handle.send_text(text);
                    }
                }
                Outgoing::CloseLink(link) => {
                    if let Some(handle) = links.get(&link) {
                        handle.close(1000, "Link to self");
                    }
                }
            }
        }
        mesh.release_outgoing_room();
        Some(result)
    }
}

/// This server's own peers, as the hub relay (`mesh`) and the cluster state (`cluster`) see them.
struct LocalView<'a> {
    peers: &'a HashMap<PeerId, PeerEntry>,
    networks: &'a HashMap<Arc<str>, HashSet<PeerId>>,
}

impl LocalPeers for LocalView<'_> {
    fn is_connected(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    fn network_of(&self, peer: PeerId) -> Option<&str> {
        self.peers.get(&peer)?.announced.as_ref().map(|a| &*a.network)
    }

    fn has_members(&self, network: &str) -> bool {
        self.networks.contains_key(network)
    }

    fn each_announced(&self, network: Option<&str>, each: &mut dyn FnMut(AnnouncedPeer<'_>)) {
        let mut visit = |id: &PeerId, entry: &PeerEntry| {
            if let Some(a) = &entry.announced {
                each(AnnouncedPeer {
                    id: *id,
                    network: &a.network,
                    is_hub: a.is_hub,
                    seq: a.seq,
                    discovery: &a.discovery,
                });
            }
        };
        match network {
            Some(network) => {
                for id in self.networks.get(network).into_iter().flatten() {
                    if let Some(entry) = self.peers.get(id) {
                        visit(id, entry);
                    }
                }
            }
            None => self.peers.iter().for_each(|(id, entry)| visit(id, entry)),
        }
    }
}

#[cfg(test)]
mod tests;
