//! Cluster mode's state (docs/protocol.md §8): the peers of the other instances, which instances
//! are alive, and what to tell them. Sans I/O, like the hub relay (`mesh`): [`Cluster`] is told
//! what happened (a local peer announced or left, a message arrived through Redis, time passed, the
//! connection to Redis went or came back) and answers with [`Effect`]s, which the registry carries
//! out under its lock: messages to publish, and notices for this instance's own peers.
//!
//! **Channels.** Each instance subscribes to the cluster's channel (heartbeats), its own instance
//! channel (signals for its peers, answers meant for it) and one channel per network it has peers
//! in. An announce or a departure is published once, on its network's channel, and reaches exactly
//! the instances with peers there; a signal is published once, on the target's instance channel.
//! Traffic between peers of one instance never goes through Redis.
//!
//! **Catching up.** An instance whose first peer joins a network asks at once who is there (an
//! empty `sync` on the network's channel, published before that peer's announce), so that the
//! answers, `members` lists on its own channel, reach it about when the others' peers hear of its
//! peer, and ahead of anything those peers send it. Once its subscription to the network is
//! confirmed it publishes a `sync` again, with its own peers there, and is answered again. Redis
//! delivers in the order it received, so nothing published after the subscription is missed and
//! nothing before it is left out of the answers. A list replaces what was known of its sender's
//! peers in that network, so departures lost while Redis was away are caught up too.
//!
//! **Liveness.** Every instance publishes a heartbeat each third of `CLUSTER_INSTANCE_TTL_SECS`
//! (and keeps a key of that lifetime, which peer-id claims check). An instance not heard from for
//! the whole time is taken for dead: its peers are announced gone here. If it is heard again, it is
//! asked (`resync`) to publish its lists again.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::value::RawValue;

use crate::protocol::cluster::{self as wire, ClusterMessage, Member};
use crate::protocol::peer_id::PeerId;
use crate::protocol::{self, SignalKind};
use crate::registry::mesh::LocalPeers;
use crate::util::clock::AnnouncementStamps;
use crate::util::throttled_log::ThrottledLog;

/// Most other instances followed at once; heartbeats of further ones are ignored (a cluster this
/// size is far beyond any deployment; the bound keeps the table finite whatever is published).
pub const MAX_INSTANCES: usize = 1024;

/// Cluster settings, fixed at start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This instance's id, new at every start.
    pub instance: String,
    /// Prefix of every key and channel (`CLUSTER_NAMESPACE`), so that clusters can share a Redis.
    pub namespace: String,
    /// How long an instance that is not heard from counts as alive (`CLUSTER_INSTANCE_TTL_SECS`).
    pub liveness: Duration,
    /// Most peers of other instances known at once (`HUB_MAX_REMOTE_PEERS`).
    pub max_remote_peers: usize,
    /// Largest announce data a remote peer may carry (`MAX_PEER_DATA_BYTES`).
    pub max_peer_data_bytes: usize,
}

impl ClusterConfig {
    /// The channel every instance follows (heartbeats, farewells).
    pub fn cluster_channel(&self) -> String {
        format!("{}:cluster", self.namespace)
    }

    /// The channel of instance `instance` (signals for its peers, answers meant for it).
    pub fn instance_channel(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.namespace)
    }

    /// The channel of network `network`, followed by the instances with peers in it.
    pub fn network_channel(&self, network: &str) -> String {
        format!("{}:network:{network}", self.namespace)
    }

    /// The key that exists while instance `instance` is alive.
    pub fn alive_key(&self, instance: &str) -> String {
        format!("{}:alive:{instance}", self.namespace)
    }

    /// The key that says which instance holds peer `peer`.
    pub fn peer_key(&self, peer: PeerId) -> String {
        format!("{}:peer:{peer}", self.namespace)
    }
}

/// Something the registry must do for the cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Publish `text` on `channel`.
    Publish { channel: String, text: String },
    /// Publish this instance's heartbeat (and renew its liveness key).
    Heartbeat { channel: String, text: String },
    /// Tell this instance's peers of the remote peer's network that it arrived.
    Arrived(PeerId),
    /// Tell this instance's peers of `network` that the remote `peer` left.
    Left { peer: PeerId, network: Arc<str>, is_hub: bool, reason: String },
    /// Deliver `text` to this instance's peer `target`.
    Deliver { target: PeerId, text: String },
}

/// Why a signal for a peer that is not here was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalRefusal {
    /// No instance has announced the target in the sender's network.
    UnknownTarget,
    /// Redis is out of reach: whether the target is elsewhere cannot be known.
    Unavailable,
}

/// A peer of another instance, in a network this instance has peers in.
pub struct RemotePeer {
    pub instance: Arc<str>,
    pub network: Arc<str>,
    pub is_hub: bool,
    pub seq: u64,
    /// The `data` of its `peer-discovered`.
    pub discovery: Box<RawValue>,
}

struct Instance {
    last_heard: Instant,
    alive: bool,
}

/// The cluster state of one instance (see the module docs).
pub struct Cluster {
    config: ClusterConfig,
    remote: HashMap<PeerId, RemotePeer>,
    remote_by_network: HashMap<Arc<str>, HashSet<PeerId>>,
    instances: HashMap<Arc<str>, Instance>,
    /// Networks to start (`true`) or stop (`false`) following, not yet taken by the subscriber.
    subscription_changes: HashMap<Arc<str>, bool>,
    connected: bool,
    stamps: AnnouncementStamps,
    next_heartbeat: Instant,
    effects: Vec<Effect>,
}

impl Cluster {
    pub fn new(config: ClusterConfig, now: Instant) -> Cluster {
        Cluster {
            config,
            remote: HashMap::new(),
            remote_by_network: HashMap::new(),
            instances: HashMap::new(),
            subscription_changes: HashMap::new(),
            connected: false,
            stamps: AnnouncementStamps::default(),
            next_heartbeat: now,
            effects: Vec::new(),
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// What the calls since the last take asked for, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// A stamp for a local announcement ([`AnnouncementStamps`]).
    pub fn next_stamp(&mut self) -> u64 {
        self.stamps.next()
    }

    /// Peers of other instances known.
    pub fn remote_count(&self) -> usize {
        self.remote.len()
    }

    /// Other instances alive, as far as this one knows.
    pub fn live_instances(&self) -> usize {
        self.instances.values().filter(|i| i.alive).count()
    }

    pub fn remote_peer(&self, peer: PeerId) -> Option<&RemotePeer> {
        self.remote.get(&peer)
    }

    /// The remote peers of `network`.
    pub fn remote_members(&self, network: &str) -> impl Iterator<Item = &RemotePeer> {
        self.remote_by_network.get(network).into_iter().flatten().filter_map(|peer| self.remote.get(peer))
    }

    /// How many remote peers `network` has.
    pub fn remote_member_count(&self, network: &str) -> usize {
        self.remote_by_network.get(network).map_or(0, HashSet::len)
    }

    // ---- this instance's own peers ------------------------------------------------------------

    /// A local peer announced: the instances following its network hear of it.
    pub fn local_announced(&mut self, peer: PeerId, network: &str, is_hub: bool, seq: u64, discovery: &RawValue) {
        let text = wire::announce(&self.config.instance, peer.as_str(), network, is_hub, seq, discovery);
        self.publish(self.config.network_channel(network), text);
    }

    /// A local peer left `network`.
    pub fn local_left(&mut self, peer: PeerId, network: &str, is_hub: bool, seq: u64, reason: &str) {
        let text = wire::left(&self.config.instance, peer.as_str(), network, is_hub, seq, reason);
        self.publish(self.config.network_channel(network), text);
    }

    /// `network` has its first local peer: start following its channel.
    pub fn network_opened(&mut self, network: &Arc<str>) {
        self.subscription_changes.insert(network.clone(), true);
        // Ask at once who is there, before this instance's first peer is announced: the answers
        // (`members`, on this instance's channel, which it always follows) reach it about when the
        // others' peers hear of its peer, as on one server, where both sides hear at once.
        let text = wire::member_list("sync", &self.config.instance, network, &[]);
        self.publish(self.config.network_channel(network), text);
    }

    /// `network`'s last local peer left: stop following it, and forget its remote peers (there is
    /// no one here to tell about them, and their departures will no longer be heard).
    pub fn network_closed(&mut self, network: &Arc<str>) {
        self.subscription_changes.insert(network.clone(), false);
        let peers: Vec<PeerId> = self.remote_by_network.get(network).into_iter().flatten().copied().collect();
        for peer in peers {
            self.unlink(peer);
        }
    }

    /// Whether networks wait to be followed or left.
    pub fn has_subscription_changes(&self) -> bool {
        !self.subscription_changes.is_empty()
    }

    /// The networks to follow (`true`) and to leave (`false`), for the subscriber.
    pub fn take_subscription_changes(&mut self) -> Vec<(Arc<str>, bool)> {
        self.subscription_changes.drain().collect()
    }

    /// The subscriber now follows `network`: publish this instance's peers there and ask for the
    /// others' (see the module docs, "Catching up").
    pub fn subscribed(&mut self, network: &str, local: &dyn LocalPeers) {
        if let Some(text) = self.member_list("sync", network, local) {
            self.publish(self.config.network_channel(network), text);
        }
    }

    /// This instance's peers in `network` as a `sync` or `members` list; `None` if it has none.
    fn member_list(&self, kind: &'static str, network: &str, local: &dyn LocalPeers) -> Option<String> {
        let mut peers = Vec::new();
        local.each_announced(Some(network), &mut |p| peers.push((p.id, p.is_hub, p.seq, p.discovery.to_owned())));
        if peers.is_empty() {
            return None;
        }
        let members: Vec<Member<'_>> = peers
            .iter()
            .map(|(id, is_hub, seq, data)| Member { peer_id: id.as_str().into(), is_hub: *is_hub, seq: *seq, data })
            .collect();
        Some(wire::member_list(kind, &self.config.instance, network, &members))
    }

    /// Sends instance `instance` this instance's peers in `network` (a `members` list).
    fn introduce(&mut self, instance: &str, network: &str, local: &dyn LocalPeers) {
        if let Some(text) = self.member_list("members", network, local) {
            self.publish(self.config.instance_channel(instance), text);
        }
    }

    /// A signal from local `sender` for `target`, which is not here: published on the channel of
    /// the instance that holds it, if one does in `network`.
    pub fn signal(
        &mut self,
        kind: SignalKind,
        sender: PeerId,
        target: PeerId,
        network: &str,
        data: Option<&RawValue>,
    ) -> Result<(String, String), SignalRefusal> {
        if !self.connected {
            return Err(SignalRefusal::Unavailable);
        }
        let remote = self.remote.get(&target).filter(|r| &*r.network == network).ok_or(SignalRefusal::UnknownTarget)?;
        let text = wire::signal(&self.config.instance, kind.as_str(), sender.as_str(), target.as_str(), network, data);
        Ok((self.config.instance_channel(&remote.instance), text))
    }

    /// This instance is stopping: the others drop its peers at once instead of waiting for silence.
    pub fn farewell(&mut self) {
        let text = wire::bare("bye", &self.config.instance);
        self.publish(self.config.cluster_channel(), text);
    }

    // ---- Redis ------------------------------------------------------------------------------------

    /// The subscriber lost Redis: the peers of other instances are out of reach until it is back.
    pub fn connection_lost(&mut self) {
        self.connected = false;
        let everyone: Vec<PeerId> = self.remote.keys().copied().collect();
        for peer in everyone {
            self.forget(peer, "cluster-unreachable");
        }
        self.instances.clear();
    }

    /// The subscriber is connected again (or for the first time) and follows every network with
    /// local peers: say this instance is alive, and catch up on each of them.
    pub fn connection_restored(&mut self, local: &dyn LocalPeers) {
        self.connected = true;
        self.heartbeat(Instant::now());
        self.resync(local);
    }

    /// Publishes this instance's peers of every network it has peers in (a `sync` each): after
    /// Redis was away, after messages towards it were dropped, or when another instance asks.
    pub fn resync(&mut self, local: &dyn LocalPeers) {
        let mut networks = HashSet::new();
        local.each_announced(None, &mut |p| {
            networks.insert(p.network.to_string());
        });
        for network in networks {
            self.subscribed(&network, local);
        }
    }

    /// The heartbeat if it is due, and the instances gone silent; returns when to call again.
    pub fn tick(&mut self, now: Instant) -> Instant {
        if now >= self.next_heartbeat {
            self.heartbeat(now);
        }
        let liveness = self.config.liveness;
        let silent: Vec<Arc<str>> = self
            .instances
            .iter()
            .filter(|(_, i)| i.alive && now.duration_since(i.last_heard) > liveness)
            .map(|(id, _)| id.clone())
            .collect();
        for instance in silent {
            log::warn!("cluster instance {instance} not heard from for {liveness:?}: its peers are taken for gone");
            self.drop_instance(&instance, "instance-unreachable");
            if let Some(entry) = self.instances.get_mut(&instance) {
                entry.alive = false;
            }
        }
        // The dead are remembered for a while, to ask them to catch up should they be heard again.
        self.instances.retain(|_, i| i.alive || now.duration_since(i.last_heard) < liveness * 10);
        self.next_heartbeat
    }

    fn heartbeat(&mut self, now: Instant) {
        self.next_heartbeat = now + self.config.liveness / 3;
        let text = wire::bare("heartbeat", &self.config.instance);
        self.effects.push(Effect::Heartbeat { channel: self.config.cluster_channel(), text });
    }

    // ---- messages from other instances ----------------------------------------------------------

    /// Handles what arrived through Redis: one message, or several for one channel as a JSON array
    /// (the publisher merges neighbours; `cluster/publisher.rs`).
    pub fn on_message(&mut self, text: &str, local: &dyn LocalPeers, now: Instant) {
        static UNREADABLE: ThrottledLog = ThrottledLog::new();
        if text.starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(messages) => messages.into_iter().for_each(|m| self.on_one_message(m.get(), local, now)),
                Err(err) => UNREADABLE.warn(|| format!("ignored an unreadable cluster message: {err}")),
            }
            return;
        }
        self.on_one_message(text, local, now);
    }

    fn on_one_message(&mut self, text: &str, local: &dyn LocalPeers, now: Instant) {
        static UNREADABLE: ThrottledLog = ThrottledLog::new();
        let message = match wire::parse_cluster_message(text) {
            Ok(message) => message,
            Err(err) => {
                UNREADABLE.warn(|| format!("ignored an unreadable cluster message: {err}"));
                return;
            }
        };
        // This instance's own messages (echoes on network channels, its `wake`s) tell it nothing.
        if *message.instance == *self.config.instance {
            return;
        }
        let Some(instance) = self.hear(&message.instance, now) else { return };
        match &*message.kind {
            "announce" => self.on_announce(&instance, &message, local),
            "left" => self.on_left(&instance, &message),
            "sync" | "members" => self.on_member_list(&instance, &message, local),
            "signal" => self.on_signal(&message, local),
            "resync" => self.resync(local),
            "bye" => {
                log::info!("cluster instance {instance} stopped");
                self.drop_instance(&instance, "instance-stopped");
                self.instances.remove(&instance);
            }
            _ => {}
        }
    }

    /// Notes that `instance` was heard from; the shared name, or `None` past [`MAX_INSTANCES`].
    fn hear(&mut self, instance: &str, now: Instant) -> Option<Arc<str>> {
        if let Some(entry) = self.instances.get_mut(instance) {
            if !entry.alive {
                log::info!("cluster instance {instance} heard from again; asking it to catch up");
                let text = wire::bare("resync", &self.config.instance);
                self.effects.push(Effect::Publish { channel: self.config.instance_channel(instance), text });
            }
            *entry = Instance { last_heard: now, alive: true };
            return self.instances.get_key_value(instance).map(|(name, _)| name.clone());
        }
        if self.instances.len() >= MAX_INSTANCES {
            return None;
        }
        let name: Arc<str> = Arc::from(instance);
        self.instances.insert(name.clone(), Instance { last_heard: now, alive: true });
        Some(name)
    }

    fn on_announce(&mut self, instance: &Arc<str>, message: &ClusterMessage<'_>, local: &dyn LocalPeers) {
        let (Some(peer), Some(network), Some(data)) = (parse_peer(&message.peer_id), &message.network, message.data)
        else {
            return;
        };
        self.learn(instance, peer, network, message.is_hub, message.seq, data, local);
    }

    fn on_left(&mut self, instance: &Arc<str>, message: &ClusterMessage<'_>) {
        let Some(peer) = parse_peer(&message.peer_id) else { return };
        let theirs = self.remote.get(&peer).is_some_and(|r| r.instance == *instance && r.seq <= message.seq);
        if theirs {
            self.forget(peer, message.reason.as_deref().unwrap_or("disconnected"));
        }
    }

    /// A `sync` or `members`: the whole of `instance`'s peers in a network. A `sync` is answered
    /// with this instance's own.
    fn on_member_list(&mut self, instance: &Arc<str>, message: &ClusterMessage<'_>, local: &dyn LocalPeers) {
        let Some(network) = &message.network else { return };
        let listed: HashSet<PeerId> = message.members.iter().filter_map(|m| PeerId::parse(&m.peer_id)).collect();
        let gone: Vec<PeerId> = (self.remote_by_network.get(&**network).into_iter().flatten())
            .filter(|peer| !listed.contains(peer) && self.remote.get(peer).is_some_and(|r| r.instance == *instance))
            .copied()
            .collect();
        for peer in gone {
            self.forget(peer, "disconnected");
        }
        for member in &message.members {
            if let Some(peer) = PeerId::parse(&member.peer_id) {
                self.learn(instance, peer, network, member.is_hub, member.seq, member.data, local);
            }
        }
        if message.kind == "sync" {
            self.introduce(instance, network, local);
        }
    }

    fn on_signal(&mut self, message: &ClusterMessage<'_>, local: &dyn LocalPeers) {
        let (Some(kind), Some(from), Some(target), Some(network)) = (
            message.signal_kind.as_deref().and_then(SignalKind::from_type),
            parse_peer(&message.from_peer_id),
            parse_peer(&message.target_peer_id),
            &message.network,
        ) else {
            return;
        };
        // Network isolation holds across instances: the target must be in the sender's network.
        if local.network_of(target) == Some(&**network) {
            let text = protocol::signal(kind, message.data, from, target, network);
            self.effects.push(Effect::Deliver { target, text });
        }
    }

    /// Records a remote peer's announcement, unless it is old news, and says so to the local peers.
    #[allow(clippy::too_many_arguments)]
    fn learn(
        &mut self,
        instance: &Arc<str>,
        peer: PeerId,
        network: &str,
        is_hub: bool,
        seq: u64,
        data: &RawValue,
        local: &dyn LocalPeers,
    ) {
        static IGNORED: ThrottledLog = ThrottledLog::new();
        // Only networks with peers here are followed; a late message for another is ignored. A
        // peer connected here is this instance's to speak for.
        if local.is_connected(peer) || !local.has_members(network) {
            return;
        }
        if let Some(known) = self.remote.get(&peer) {
            let same = known.instance == *instance && &*known.network == network;
            if known.seq > seq || (same && known.seq == seq) {
                return;
            }
            if &*known.network != network {
                self.forget(peer, "network-change");
            } else {
                self.unlink(peer);
            }
        }
        if data.get().len() > self.config.max_peer_data_bytes + 256 {
            IGNORED.warn(|| {
                format!("ignored peer {} of cluster instance {instance}: its data is too large", peer.short())
            });
            return;
        }
        if !self.remote.contains_key(&peer) && self.remote.len() >= self.config.max_remote_peers {
            IGNORED.warn(|| {
                format!("{} remote peers known (HUB_MAX_REMOTE_PEERS); ignoring more", self.config.max_remote_peers)
            });
            return;
        }
        let network: Arc<str> = match self.remote_by_network.get_key_value(network) {
            Some((name, _)) => name.clone(),
            None => Arc::from(network),
        };
        self.remote_by_network.entry(network.clone()).or_default().insert(peer);
        let discovery = data.to_owned();
        self.remote.insert(peer, RemotePeer { instance: instance.clone(), network, is_hub, seq, discovery });
        self.effects.push(Effect::Arrived(peer));
    }

    /// Forgets a remote peer and tells the local peers of its network.
    fn forget(&mut self, peer: PeerId, reason: &str) {
        let Some(gone) = self.unlink(peer) else { return };
        self.effects.push(Effect::Left {
            peer,
            network: gone.network,
            is_hub: gone.is_hub,
            reason: reason.to_string(),
        });
    }

    /// Takes a remote peer out of every table, telling no one.
    fn unlink(&mut self, peer: PeerId) -> Option<RemotePeer> {
        let gone = self.remote.remove(&peer)?;
        if let Some(members) = self.remote_by_network.get_mut(&gone.network) {
            members.remove(&peer);
            if members.is_empty() {
                self.remote_by_network.remove(&gone.network);
            }
        }
        Some(gone)
    }

    fn drop_instance(&mut self, instance: &str, reason: &str) {
        let theirs: Vec<PeerId> =
            self.remote.iter().filter(|(_, r)| &*r.instance == instance).map(|(p, _)| *p).collect();
        for peer in theirs {
            self.forget(peer, reason);
        }
    }

    fn publish(&mut self, channel: String, text: String) {
        self.effects.push(Effect::Publish { channel, text });
    }
}

fn parse_peer(id: &Option<std::borrow::Cow<'_, str>>) -> Option<PeerId> {
    id.as_deref().and_then(PeerId::parse)
}

/// What goes to Redis, in order, through the one publishing connection (`cluster/publisher.rs`).
#[derive(Debug)]
pub enum ToRedis {
    Publish {
        channel: String,
        text: String,
    },
    /// Publish a heartbeat and renew this instance's liveness key.
    Heartbeat {
        channel: String,
        text: String,
    },
    /// Claim `peer`'s id for this instance; the answer goes to `reply`.
    Claim {
        peer: PeerId,
        reply: Sender<Claim>,
    },
    /// Give `peer`'s id up, if this instance still holds it.
    Release {
        peer: PeerId,
    },
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id is this instance's now.
    Granted,
    /// A live instance holds it.
    Taken,
    /// Redis did not answer: the id is unique on this instance only, and claimed again when
    /// Redis is back.
    Unknown,
}

/// What the registry, the Redis threads and the HTTP endpoints share: the queue towards Redis,
/// and what is counted about it.
pub struct ClusterShared {
    queue: Sender<ToRedis>,
    pub(crate) queued: Receiver<ToRedis>,
    /// Whether the publishing connection is up (claims are not waited for while it is not).
    pub publisher_up: AtomicBool,
    /// Whether the subscriber is connected.
    pub subscriber_up: AtomicBool,
    /// Set when networks wait to be followed or left (the subscriber takes them).
    pub subscriptions_pending: AtomicBool,
    /// Messages dropped because the queue towards Redis was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages published, and received from other instances.
    pub published: AtomicU64,
    pub received: AtomicU64,
    /// Why the last attempt to connect to Redis failed (for `/stats`).
    pub last_error: parking_lot::Mutex<Option<String>>,
}

impl ClusterShared {
    /// A queue towards Redis of at most `capacity` messages.
    pub fn new(capacity: usize) -> Arc<ClusterShared> {
        let (queue, queued) = crossbeam_channel::bounded(capacity);
        Arc::new(ClusterShared {
            queue,
            queued,
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            subscriptions_pending: AtomicBool::new(false),
            dropped_queue_full: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            last_error: parking_lot::Mutex::new(None),
        })
    }

    /// Items waiting for the publisher.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Queues `item` for the publisher without waiting. When the queue is full (Redis slower than
    /// the traffic, or away) the item is dropped and counted, and `false` returned: a reader never
    /// waits for Redis. What a dropped announce or departure leaves wrong is put right by the
    /// next `sync` (the publisher asks for one after it dropped or failed anything).
    pub fn send(&self, item: ToRedis) -> bool {
        match self.queue.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}
