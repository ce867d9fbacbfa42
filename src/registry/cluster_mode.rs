//! What the registry does in cluster mode: carrying out what the cluster state (`cluster`) asks
//! for, under the lock, and the calls the Redis threads (`crate::cluster`) and the HTTP endpoints
//! make. On a server that is not in a cluster these do nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::protocol::{self, peer_id::PeerId};
use crate::registry::cluster::{Cluster, Effect, ToRedis};
use crate::registry::{InCluster, LocalView, RegisterError, Registry, State};

impl State {
    /// Cluster mode: runs `work` on the cluster state, with a view of this instance's own peers,
    /// then does what it asked (queueing, as everything under the lock). `None` when not in a cluster.
    pub(super) fn with_cluster<R>(&mut self, work: impl FnOnce(&mut Cluster, &LocalView<'_>) -> R) -> Option<R> {
        let State { peers, networks, cluster, .. } = self;
        let result = work(&mut cluster.as_mut()?.state, &LocalView { peers, networks });
        self.carry_out_cluster_effects();
        Some(result)
    }

    /// Does what the cluster state asked for. Never inlined: `with_cluster` is called on a peer's
    /// reader (announce, leave), and this much code inlined there would deepen the reader's stack
    /// for every peer, clustered or not (docs/performance.md, "What a peer costs").
    #[inline(never)]
    fn carry_out_cluster_effects(&mut self) {
        let State { peers, networks, cluster, .. } = self;
        let Some(InCluster { state: cluster, to_redis: shared }) = cluster.as_mut() else { return };
        for effect in cluster.take_effects() {
            match effect {
                Effect::Publish { channel, text } => {
                    shared.send(ToRedis::Publish { channel, text });
                }
                Effect::Heartbeat { channel, text } => {
                    shared.send(ToRedis::Heartbeat { channel, text });
                }
                Effect::Arrived(peer) => {
                    let Some(remote) = cluster.remote_peer(peer) else { continue };
                    let arrived = Arc::new(protocol::peer_discovered_to_each(&remote.discovery, &remote.network));
                    for member in networks.get(&remote.network).into_iter().flatten() {
                        if let Some(entry) = peers.get(member) {
                            entry.handle.send_to_each(&arrived);
                        }
                    }
                }
                Effect::Left { peer, network, is_hub, reason } => {
                    let left = Arc::new(protocol::peer_disconnected_to_each(peer, is_hub, &reason, &network));
                    for member in networks.get(&network).into_iter().flatten() {
                        if let Some(entry) = peers.get(member) {
                            entry.handle.send_to_each(&left);
                        }
                    }
                }
                Effect::Deliver { target, text } => {
                    if let Some(entry) = peers.get(&target) {
                        entry.handle.send_text(text);
                    }
                }
            }
        }
        // The subscriber follows networks as they open and close; a `wake` on this instance's own
        // channel gets it out of its wait for messages to take them.
        if cluster.has_subscription_changes() && !shared.subscriptions_pending.swap(true, Ordering::AcqRel) {
            let config = cluster.config();
            let text = protocol::cluster::bare("wake", &config.instance);
            shared.send(ToRedis::Publish { channel: config.instance_channel(&config.instance), text });
        }
    }
}

/// Cluster mode: what the Redis threads (`cluster/`) and the HTTP endpoints ask of the registry.
/// On a server that is not in a cluster these do nothing.
impl Registry {
    /// Handles one message that arrived through Redis.
    pub fn cluster_message(&self, text: &str) {
        let now = Instant::now();
        self.lock().with_cluster(|cluster, local| cluster.on_message(text, local, now));
    }

    /// The cluster's timed work (heartbeat, silent instances); returns how long to wait.
    pub fn cluster_tick(&self) -> Duration {
        let now = Instant::now();
        let next = self.lock().with_cluster(|cluster, _| cluster.tick(now));
        next.map_or(Duration::from_secs(1), |next| next.saturating_duration_since(now))
    }

    /// The subscriber lost Redis.
    pub fn cluster_connection_lost(&self) {
        self.lock().with_cluster(|cluster, _| cluster.connection_lost());
    }

    /// The subscriber is connected and follows `networks` (all that have peers here, as
    /// [`Self::cluster_networks`] gave them).
    pub fn cluster_connection_restored(&self) {
        self.lock().with_cluster(|cluster, local| cluster.connection_restored(local));
    }

    /// Publishes this instance's peers again (messages towards Redis were lost).
    pub fn cluster_resync(&self) {
        self.lock().with_cluster(|cluster, local| cluster.resync(local));
    }

    /// Every network with peers here, for a subscriber that (re)connects; pending changes are
    /// taken with them.
    pub fn cluster_networks(&self) -> Vec<Arc<str>> {
        let mut state = self.lock();
        state.with_cluster(|cluster, _| cluster.take_subscription_changes());
        if let Some(InCluster { to_redis: shared, .. }) = &state.cluster {
            shared.subscriptions_pending.store(false, Ordering::Release);
        }
        state.networks.keys().cloned().collect()
    }

    /// The networks to start (`true`) and stop (`false`) following.
    pub fn cluster_subscription_changes(&self) -> Vec<(Arc<str>, bool)> {
        let mut state = self.lock();
        if let Some(InCluster { to_redis: shared, .. }) = &state.cluster {
            shared.subscriptions_pending.store(false, Ordering::Release);
        }
        state.with_cluster(|cluster, _| cluster.take_subscription_changes()).unwrap_or_default()
    }

    /// The subscriber now follows `network`.
    pub fn cluster_subscribed(&self, network: &str) {
        self.lock().with_cluster(|cluster, local| cluster.subscribed(network, local));
    }

    /// This instance is stopping: tell the others.
    pub fn cluster_farewell(&self) {
        self.lock().with_cluster(|cluster, _| cluster.farewell());
    }

    /// Ids of the peers connected here, for claiming them again.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.lock().peers.keys().copied().collect()
    }

    /// Other instances alive and peers known on them, for `/stats` and `/metrics`.
    pub fn cluster_counts(&self) -> Option<(usize, usize)> {
        let state = self.lock();
        state.cluster.as_ref().map(|cluster| (cluster.state.live_instances(), cluster.state.remote_count()))
    }

    /// Closes the local connection of `peer` whose id another instance holds.
    pub fn refuse_duplicate(&self, peer: PeerId) {
        let handle = self.lock().peers.get(&peer).map(|entry| entry.handle.clone());
        if let Some(handle) = handle {
            log::warn!("peer {} is connected to another instance of the cluster; closing it here", peer.short());
            handle.close(1008, RegisterError::Duplicate.close_reason());
        }
    }
}
