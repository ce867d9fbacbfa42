//! Hub mode: links to other hubs, the peers learned through them, and relaying (docs/protocol.md §5).
//!
//! Everything here runs under the registry's lock, like the local bookkeeping in `registry.rs`,
//! so local and remote peers always form one consistent picture.
//!
//! **How a discovery travels.** A peer announcing on hub A is sent as `peer-discovered` to every
//! link of A, with `relay: {id, origin: A, seq, hops}`. A hub that receives it caches the peer
//! (for peers that announce later), tells its own peers of that network, and passes it on to its
//! other links, but only if it was news: a peer it already knew with the same or a later `seq`
//! stops there, which is what keeps a ring of hubs from echoing forever. Departures travel the same
//! way and leave a short-lived tombstone, so a late copy of the discovery cannot bring the peer back.
//!
//! **How a signal travels.** A signal for a peer that is not local goes to every link but the one
//! it came from, with a message id and a hop count, even when this hub has not heard of the target
//! yet (it may have announced on another hub a moment ago). Each hub handles an id once (an
//! expiring two-generation set), delivers it if the target is its own, and otherwise passes it on
//! until the hop limit. So a signal crosses any chain, star or ring exactly once per hub.
//!
//! **When a hub goes away.** Three ways, from fastest to slowest:
//! - A hub that shuts down first sends its links a departure for each of its peers.
//! - A link that drops (the other hub was killed, or the network between them failed) makes this
//!   hub flood a `hub-probe`. Every PeerPigeon-rs hub that receives it answers with a heartbeat
//!   naming the probe, and opens a check of its own: the hubs whose answer has not arrived within
//!   [`PROBE_WINDOW`] are cut off, and their peers are dropped at once. In a ring, losing one link
//!   cuts nobody off, so nothing is dropped.
//! - Every hub floods a small `hub-heartbeat` every `HUB_HEARTBEAT_SECS`; the peers of a hub not
//!   heard from for three heartbeats are dropped. This catches a link that hangs without closing.
//!
//! Peers dropped because their hub is out of reach leave no tombstone: when the hub is reached
//! again, it sends them again. The JavaScript hub sends no heartbeats and answers no probes: peers
//! learned from it live as long as the link they came over, and this hub speaks for them to the
//! rest of the mesh.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::value::RawValue;

use crate::peer::outbox::PeerHandle;
use crate::protocol::peer_id::PeerId;
use crate::protocol::{self, LinkMessage, PeerFields, Relay, SignalKind};
use crate::registry::{Registry, State};
use crate::util::clock::unix_millis;
use crate::util::throttled_log::ThrottledLog;

/// How long a relay id is remembered (at least; ids live for one to two of these). Copies of a
/// message arrive within milliseconds of each other; the reference de-duplicates for 5 s.
const SEEN_TTL: Duration = Duration::from_secs(10);
/// Most relay ids remembered per generation; past it the generations turn over early, so the set
/// stays bounded under any flood (a very old duplicate may then get through once more).
const SEEN_MAX: usize = 200_000;
/// How long a departed peer's tombstone stops late copies of its discovery.
const TOMBSTONE_TTL: Duration = Duration::from_secs(20);
/// Most hubs whose heartbeats are followed at once; heartbeats and discoveries naming further hubs
/// are ignored (a mesh this size is far beyond any deployment; a link making up hub ids is not).
const MAX_KNOWN_HUBS: usize = 1024;
/// Heartbeats a hub may miss before its peers are dropped.
const MISSED_HEARTBEATS: u32 = 3;
/// How long a hub waits for answers to a `hub-probe` before dropping the peers of the hubs that did
/// not answer (at most one heartbeat interval). Answers cross the mesh in milliseconds; a hub so
/// busy that it takes longer is taken for gone, and sends its peers again once heard from.
const PROBE_WINDOW: Duration = Duration::from_secs(1);
/// Most reachability checks remembered at once (open, or decided in the last [`SEEN_TTL`]); probes
/// beyond it are passed on and answered but open no check here.
const MAX_CHECKS: usize = 256;

/// Hub settings, fixed at start.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub hub_id: PeerId,
    pub namespace: String,
    /// Host and port this hub reports in its announce.
    pub host: String,
    pub port: u16,
    pub max_hops: u32,
    pub heartbeat: Duration,
    /// Whether `HUB_TOKEN` is set (only for what the logs advise).
    pub hub_token_set: bool,
    /// Most remote peers known at once (`HUB_MAX_REMOTE_PEERS`); one link may introduce half of them.
    pub max_remote_peers: usize,
    /// Largest announce data a remote peer may carry (`MAX_PEER_DATA_BYTES`, as for local peers).
    pub max_peer_data_bytes: usize,
}

/// Which side opened a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Another hub connected to us and announced itself.
    Inbound,
    /// We connected to this `BOOTSTRAP_HUBS` URL.
    Outbound { uri: String },
}

/// A live link to another hub.
pub struct Link {
    pub handle: Arc<PeerHandle>,
    pub direction: Direction,
    /// The other side is a PeerPigeon-rs hub (it understands heartbeats).
    pub speaks_relay: bool,
    /// The other hub's id, when it told us.
    pub remote_hub: Option<PeerId>,
    pub up_since_ms: u64,
}

/// Where a remote peer's liveness comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A PeerPigeon-rs hub, alive while its heartbeats arrive.
    Hub(PeerId),
    /// Learned from a JavaScript hub over the link with this id, alive while that link is up.
    Legacy(u64),
}

struct RemotePeer {
    /// The link that first introduced it (counted against that link's share).
    via: u64,
    network: Arc<str>,
    is_hub: bool,
    discovery: Box<RawValue>,
    origin: Origin,
    seq: u64,
    hops: u32,
}

/// Relay ids seen recently: two generations, turned over every [`SEEN_TTL`].
struct SeenIds {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    turned_at: Instant,
}

impl SeenIds {
    fn new() -> SeenIds {
        SeenIds { current: HashSet::new(), previous: HashSet::new(), turned_at: Instant::now() }
    }

    /// Records `id`; `true` the first time it is seen.
    fn first_time(&mut self, id: u64) -> bool {
        if self.turned_at.elapsed() >= SEEN_TTL || self.current.len() >= SEEN_MAX {
            self.previous = std::mem::take(&mut self.current);
            self.turned_at = Instant::now();
        }
        if self.previous.contains(&id) {
            return false;
        }
        self.current.insert(id)
    }

    /// Whether `id` was seen, without recording it.
    fn contains(&self, id: u64) -> bool {
        self.current.contains(&id) || self.previous.contains(&id)
    }
}

/// Which hubs answered one `hub-probe`, while its window is open.
struct ReachCheck {
    due: Instant,
    answered: HashSet<PeerId>,
    decided: bool,
}

/// The hub-mode part of the registry's state.
pub struct MeshState {
    pub config: Option<MeshConfig>,
    pub links: HashMap<u64, Link>,
    remote: HashMap<PeerId, RemotePeer>,
    remote_by_network: HashMap<Arc<str>, HashSet<PeerId>>,
    /// Remote peers known, by the link that introduced them.
    introduced_by: HashMap<u64, usize>,
    tombstones: HashMap<PeerId, (u64, Instant)>,
    heard: HashMap<PeerId, Instant>,
    seen: SeenIds,
    last_stamp: u64,
    /// Reachability checks by probe id (see the module docs).
    checks: HashMap<u64, ReachCheck>,
    /// Checks decided, and hubs found cut off by them, since start (for `/hubstats`).
    checks_decided: u64,
    hubs_cut_off: u64,
    next_heartbeat: Instant,
    /// Wakes the mesh timer thread (`hub_link.rs`) when a check opens before its next heartbeat.
    timer_wake: (Sender<()>, Receiver<()>),
}

impl MeshState {
    pub fn new(config: Option<MeshConfig>) -> MeshState {
        MeshState {
            config,
            links: HashMap::new(),
            remote: HashMap::new(),
            remote_by_network: HashMap::new(),
            introduced_by: HashMap::new(),
            tombstones: HashMap::new(),
            heard: HashMap::new(),
            seen: SeenIds::new(),
            last_stamp: 0,
            checks: HashMap::new(),
            checks_decided: 0,
            hubs_cut_off: 0,
            next_heartbeat: Instant::now(),
            timer_wake: crossbeam_channel::bounded(1),
        }
    }

    /// A stamp for a local announcement: microseconds since the epoch, strictly increasing, so that
    /// a later announcement of a peer (here or on another hub) wins over an earlier one.
    pub fn next_stamp(&mut self) -> u64 {
        self.last_stamp = (unix_millis() * 1000).max(self.last_stamp + 1);
        self.last_stamp
    }

    /// Remote peers known, for `/hubstats`.
    pub fn remote_count(&self) -> usize {
        self.remote.len()
    }

    fn hub_id(&self) -> Option<PeerId> {
        self.config.as_ref().map(|c| c.hub_id)
    }

    fn max_hops(&self) -> u32 {
        self.config.as_ref().map_or(0, |c| c.max_hops)
    }

    /// The check for probe `id`, opened now if it is new; `None` when [`MAX_CHECKS`] are held.
    fn check(&mut self, id: u64) -> Option<&mut ReachCheck> {
        if !self.checks.contains_key(&id) {
            if self.checks.len() >= MAX_CHECKS {
                return None;
            }
            let window = self.config.as_ref().map_or(PROBE_WINDOW, |c| c.heartbeat.min(PROBE_WINDOW));
            self.checks
                .insert(id, ReachCheck { due: Instant::now() + window, answered: HashSet::new(), decided: false });
            // A full channel already holds a wake-up, which is all the timer needs.
            let _ = self.timer_wake.0.try_send(());
        }
        self.checks.get_mut(&id)
    }

    /// Hub `origin` was just heard from: it is alive, and reachable for every open check. Returns
    /// `false`, and records nothing, for a new hub past [`MAX_KNOWN_HUBS`].
    fn heard_from(&mut self, origin: PeerId) -> bool {
        if !self.knows_hub(origin) {
            return false;
        }
        self.heard.insert(origin, Instant::now());
        for check in self.checks.values_mut().filter(|c| !c.decided) {
            check.answered.insert(origin);
        }
        true
    }

    /// Gives back the room of tables that were large and are now mostly empty (a hash map keeps
    /// its size when entries are removed), so that memory a departed link's peers took comes back.
    fn shrink_tables(&mut self) {
        fn shrink<K: Eq + Hash, V>(table: &mut HashMap<K, V>) {
            if table.capacity() > 64 && table.capacity() > 4 * table.len() {
                table.shrink_to_fit();
            }
        }
        shrink(&mut self.remote);
        shrink(&mut self.remote_by_network);
        shrink(&mut self.introduced_by);
        shrink(&mut self.tombstones);
        shrink(&mut self.heard);
        shrink(&mut self.checks);
    }

    /// Whether hub `origin` is followed, or may be: known already, or room for one more.
    fn knows_hub(&self, origin: PeerId) -> bool {
        self.heard.contains_key(&origin) || self.heard.len() < MAX_KNOWN_HUBS
    }

    /// Whether link `via` may introduce one more remote peer (see [`MeshConfig::max_remote_peers`]).
    fn room_for_remote_peer(&self, via: u64) -> bool {
        let total = self.config.as_ref().map_or(0, |c| c.max_remote_peers);
        self.remote.len() < total && self.introduced_by.get(&via).copied().unwrap_or(0) < total / 2
    }

    /// Floods this hub's heartbeat; `answering` names the probe it answers, if any.
    fn send_heartbeat(&mut self, answering: Option<u64>) {
        let Some(hub_id) = self.hub_id() else { return };
        let mut relay = new_relay(Some(hub_id.to_string()), None, 0);
        relay.probe = answering.map(|id| format!("{id:016x}"));
        if let Some(id) = parse_relay_id(&relay.id) {
            self.seen.first_time(id);
        }
        self.flood(&protocol::hub_heartbeat(&relay), None, Audience::RelayHubs);
    }

    /// Sends `text` to the links of `audience`, except link `except`.
    fn flood(&self, text: &str, except: Option<u64>, audience: Audience) {
        for (id, link) in &self.links {
            let wanted = match audience {
                Audience::All => true,
                Audience::RelayHubs => link.speaks_relay,
                Audience::JavaScriptHubs => !link.speaks_relay,
            };
            if wanted && Some(*id) != except {
                link.handle.send_text(text.to_string());
            }
        }
    }

    fn forget_remote(&mut self, peer: PeerId) -> Option<RemotePeer> {
        let entry = self.remote.remove(&peer)?;
        if let Some(count) = self.introduced_by.get_mut(&entry.via) {
            *count -= 1;
            if *count == 0 {
                self.introduced_by.remove(&entry.via);
            }
        }
        if let Some(members) = self.remote_by_network.get_mut(&entry.network) {
            members.remove(&peer);
            if members.is_empty() {
                self.remote_by_network.remove(&entry.network);
            }
        }
        Some(entry)
    }
}

/// Which links a message is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    All,
    /// PeerPigeon-rs hubs only (heartbeats).
    RelayHubs,
    /// JavaScript hubs only: they cannot work out for themselves that a hub went silent.
    JavaScriptHubs,
}

/// The relay fields of a new message (a fresh id) about `origin`'s announcement `seq`.
fn new_relay(origin: Option<String>, seq: Option<u64>, hops: u32) -> Relay {
    Relay { id: format!("{:016x}", fastrand::u64(..)), origin, seq, hops, probe: None }
}

fn parse_relay_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id, 16).ok()
}

/// The id of a signal that came without one (from a JavaScript hub): a hash of what it says, the
/// same on every PeerPigeon-rs hub, as the reference's own `type:from:target:hash(data)` key.
fn content_id(kind: &str, from: PeerId, target: PeerId, data: Option<&RawValue>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (kind, from, target, data.map(RawValue::get)).hash(&mut hasher);
    hasher.finish()
}

impl State {
    /// Local peer `peer` announced into `network` (after the local exchange): tell it about the
    /// remote peers of that network, and tell the other hubs about it.
    pub(crate) fn mesh_local_announced(&mut self, peer: PeerId, network: &Arc<str>, is_hub: bool) {
        let Some(newcomer) = self.peers.get(&peer) else {
            return;
        };
        for remote in self.mesh.remote_by_network.get(network).into_iter().flatten() {
            if let Some(entry) = self.mesh.remote.get(remote) {
                newcomer.handle.send_text(protocol::peer_discovered(&entry.discovery, network, peer));
            }
        }
        let Some(hub_id) = self.mesh.hub_id() else {
            return;
        };
        if is_hub || self.mesh.config.as_ref().is_some_and(|c| *c.namespace == **network) {
            return;
        }
        let Some(announced) = &newcomer.announced else {
            return;
        };
        let relay = new_relay(Some(hub_id.to_string()), Some(announced.seq), 0);
        self.mesh.flood(&protocol::link_peer_discovered(&announced.discovery, network, &relay), None, Audience::All);
    }

    /// Local peer `peer` left `network`: tell the other hubs.
    pub(crate) fn mesh_local_left(&mut self, peer: PeerId, network: &str, is_hub: bool, seq: u64, reason: &str) {
        let Some(hub_id) = self.mesh.hub_id() else {
            return;
        };
        if is_hub || self.mesh.config.as_ref().is_some_and(|c| c.namespace == network) {
            return;
        }
        let relay = new_relay(Some(hub_id.to_string()), Some(seq), 0);
        self.mesh.flood(&protocol::link_peer_disconnected(peer, false, reason, network, &relay), None, Audience::All);
    }

    /// Sends a new link everything this hub knows: its local peers, then the remote ones.
    fn sync_link(&self, link_id: u64) {
        let Some(link) = self.mesh.links.get(&link_id) else {
            return;
        };
        let Some(config) = &self.mesh.config else {
            return;
        };
        let me = config.hub_id.to_string();
        for entry in self.peers.values() {
            let Some(announced) = entry.announced.as_ref().filter(|a| !a.is_hub && *a.network != *config.namespace)
            else {
                continue;
            };
            let relay = new_relay(Some(me.clone()), Some(announced.seq), 0);
            link.handle.send_text(protocol::link_peer_discovered(&announced.discovery, &announced.network, &relay));
        }
        for remote in self.mesh.remote.values().filter(|r| r.origin != Origin::Legacy(link_id)) {
            let origin = match remote.origin {
                Origin::Hub(hub) => hub.to_string(),
                Origin::Legacy(_) => me.clone(),
            };
            let relay = new_relay(Some(origin), Some(remote.seq), remote.hops + 1);
            link.handle.send_text(protocol::link_peer_discovered(&remote.discovery, &remote.network, &relay));
        }
    }

    /// A remote peer became known (or newer): cache it, tell local peers, pass it on.
    fn learn_remote(&mut self, from_link: u64, message: &LinkMessage<'_>) {
        let Some((hub_id, max_hops)) = self.mesh.config.as_ref().map(|c| (c.hub_id, c.max_hops)) else {
            return;
        };
        let fields = PeerFields::of(message.data);
        let Some(peer) = fields.peer_id.as_deref().and_then(PeerId::parse) else {
            return;
        };
        let network = message.network();
        let max_data = self.mesh.config.as_ref().map_or(0, |c| c.max_peer_data_bytes);
        // The bounds a peer announcing here must keep, a link's peers keep too.
        if network.len() > protocol::MAX_NETWORK_NAME_LEN || message.data.is_some_and(|d| d.get().len() > max_data) {
            return;
        }
        // Hubs are introduced by their links, not by discovery; our own peers echoed back are ours.
        if fields.is_hub()
            || self.mesh.config.as_ref().is_some_and(|c| c.namespace == network)
            || self.peers.contains_key(&peer)
        {
            return;
        }
        let relay = message.relay.as_ref();
        let origin = match relay.and_then(|r| r.origin.as_deref()).and_then(PeerId::parse) {
            Some(hub) if hub == hub_id => return, // our own announcement came back around
            Some(hub) => Origin::Hub(hub),
            None => Origin::Legacy(from_link),
        };
        let seq = match relay.and_then(|r| r.seq) {
            Some(seq) => seq,
            None => self.mesh.next_stamp(),
        };
        let hops = relay.map_or(1, |r| r.hops + 1);
        if self.mesh.tombstones.get(&peer).is_some_and(|(dead, _)| *dead >= seq)
            || self.mesh.remote.get(&peer).is_some_and(|known| known.seq >= seq)
            || (origin == Origin::Legacy(from_link) && self.mesh.remote.contains_key(&peer))
        {
            return;
        }
        if let Origin::Hub(hub) = origin {
            if !self.mesh.knows_hub(hub) {
                return;
            }
            self.mesh.heard.entry(hub).or_insert_with(Instant::now);
        }
        let introduced_by = self.mesh.remote.get(&peer).map_or(from_link, |known| known.via);
        if !self.mesh.remote.contains_key(&peer) && !self.mesh.room_for_remote_peer(from_link) {
            static FULL: ThrottledLog = ThrottledLog::new();
            FULL.warn(|| {
                format!("hub link {from_link} introduced more remote peers than allowed (HUB_MAX_REMOTE_PEERS); ignoring them")
            });
            return;
        }
        // A newer announcement may move the peer to another network: the old one hears it left.
        if let Some(old) = self.mesh.forget_remote(peer).filter(|old| *old.network != *network) {
            self.notify_local(&old.network, |recipient| {
                protocol::peer_disconnected(peer, old.is_hub, "network-change", &old.network, recipient)
            });
        }
        let network: Arc<str> = match self.networks.get_key_value(network) {
            Some((name, _)) => name.clone(),
            None => Arc::from(network),
        };
        let discovery = protocol::discovery_data(peer, false, message.data);
        self.notify_local(&network, |recipient| protocol::peer_discovered(&discovery, &network, recipient));
        if hops <= max_hops {
            let origin_text = match origin {
                Origin::Hub(hub) => hub.to_string(),
                Origin::Legacy(_) => hub_id.to_string(),
            };
            let relay = new_relay(Some(origin_text), Some(seq), hops);
            self.mesh.flood(
                &protocol::link_peer_discovered(&discovery, &network, &relay),
                Some(from_link),
                Audience::All,
            );
        }
        self.mesh.remote_by_network.entry(network.clone()).or_default().insert(peer);
        let entry =
            RemotePeer { via: introduced_by, network: network.clone(), is_hub: false, discovery, origin, seq, hops };
        self.mesh.remote.insert(peer, entry);
        *self.mesh.introduced_by.entry(introduced_by).or_default() += 1;
        if origin == Origin::Legacy(from_link) {
            self.reintroduce_network(from_link, &network);
        }
    }

    /// A JavaScript hub that accepted our link forwards what we tell it to its peers but never
    /// remembers it, so its peers that announce later would never hear of ours. When it introduces
    /// one of its peers, tell it again about every peer of that network we know (its other peers get
    /// these again, which clients take in their stride: the reference re-sends on re-announce too).
    fn reintroduce_network(&self, link_id: u64, network: &str) {
        let Some(link) = self.mesh.links.get(&link_id) else { return };
        let Some(config) = &self.mesh.config else { return };
        if link.speaks_relay || link.direction == Direction::Inbound {
            return;
        }
        let me = config.hub_id.to_string();
        for member in self.networks.get(network).into_iter().flatten() {
            let announced = self.peers.get(member).and_then(|e| e.announced.as_ref()).filter(|a| !a.is_hub);
            let Some(announced) = announced else { continue };
            let relay = new_relay(Some(me.clone()), Some(announced.seq), 0);
            link.handle.send_text(protocol::link_peer_discovered(&announced.discovery, network, &relay));
        }
        for remote in self.mesh.remote_by_network.get(network).into_iter().flatten() {
            let Some(entry) = self.mesh.remote.get(remote).filter(|r| r.origin != Origin::Legacy(link_id)) else {
                continue;
            };
            let relay = new_relay(Some(me.clone()), Some(entry.seq), entry.hops + 1);
            link.handle.send_text(protocol::link_peer_discovered(&entry.discovery, network, &relay));
        }
    }

    /// A remote peer left: forget it, tell local peers, pass it on.
    fn forget_remote_peer(&mut self, from_link: u64, message: &LinkMessage<'_>) {
        let fields = PeerFields::of(message.data);
        let Some(peer) = fields.peer_id.as_deref().and_then(PeerId::parse) else {
            return;
        };
        let Some(known) = self.mesh.remote.get(&peer) else {
            return;
        };
        let relay = message.relay.as_ref();
        let accepted = match (relay.and_then(|r| r.seq), known.origin) {
            // A departure from a PeerPigeon-rs hub ends the announcement it names, or an older one.
            (Some(seq), _) => seq >= known.seq,
            // The JavaScript hub speaks for the peers it introduced.
            (None, Origin::Legacy(link)) => link == from_link,
            (None, Origin::Hub(_)) => false,
        };
        if !accepted {
            return;
        }
        let hops = relay.map_or(1, |r| r.hops + 1);
        self.drop_remote(peer, "disconnected", Some((from_link, hops)));
    }

    /// Removes remote `peer`, tells its network here, and (if `pass_on` names the link it came from
    /// and the hops so far) the other hubs. Only such a departure, relayed from the peer's hub,
    /// leaves a tombstone: a peer dropped because its hub is out of reach may be sent again.
    fn drop_remote(&mut self, peer: PeerId, reason: &str, pass_on: Option<(u64, u32)>) {
        let Some(entry) = self.mesh.forget_remote(peer) else {
            return;
        };
        if pass_on.is_some() {
            self.bury(peer, entry.seq);
        }
        self.notify_local(&entry.network, |recipient| {
            protocol::peer_disconnected(peer, entry.is_hub, reason, &entry.network, recipient)
        });
        let Some(config) = &self.mesh.config else {
            return;
        };
        let origin = match entry.origin {
            Origin::Hub(hub) => hub,
            Origin::Legacy(_) => config.hub_id,
        };
        let (except, hops, audience) = match (pass_on, entry.origin) {
            (Some((link, hops)), _) => (Some(link), hops, Audience::All),
            // This hub spoke for the peer to the mesh: it must also say that it is gone.
            (None, Origin::Legacy(_)) => (None, 0, Audience::All),
            // Every PeerPigeon-rs hub notices a silent hub by itself; JavaScript hubs cannot.
            (None, Origin::Hub(_)) => (None, 0, Audience::JavaScriptHubs),
        };
        if hops <= config.max_hops {
            let relay = new_relay(Some(origin.to_string()), Some(entry.seq), hops);
            let notice = protocol::link_peer_disconnected(peer, entry.is_hub, reason, &entry.network, &relay);
            self.mesh.flood(&notice, except, audience);
        }
    }

    /// Leaves a tombstone for `peer`'s announcement `seq`. Tombstones are bounded like remote peers:
    /// when full of live ones, no more are left (a late copy of a discovery may then bring a
    /// departed peer back until its hub's next departure or silence).
    fn bury(&mut self, peer: PeerId, seq: u64) {
        let now = Instant::now();
        let bound = self.mesh.config.as_ref().map_or(0, |c| c.max_remote_peers);
        if self.mesh.tombstones.len() >= bound {
            self.mesh.tombstones.retain(|_, (_, until)| *until > now);
        }
        if self.mesh.tombstones.len() < bound {
            self.mesh.tombstones.insert(peer, (seq, now + TOMBSTONE_TTL));
        }
    }

    /// Queues a message built for each local, non-hub peer announced in `network`.
    fn notify_local(&self, network: &str, build: impl Fn(PeerId) -> String) {
        for member in self.networks.get(network).into_iter().flatten() {
            if let Some(entry) = self.peers.get(member).filter(|e| e.announced.as_ref().is_some_and(|a| !a.is_hub)) {
                entry.handle.send_text(build(*member));
            }
        }
    }

    /// A signal arrived over a link: deliver it here, or pass it on.
    fn relay_signal(&mut self, from_link: u64, kind: SignalKind, message: &LinkMessage<'_>) {
        let from = message.from_peer_id.as_deref().and_then(PeerId::parse);
        let target = message.target_peer_id.as_deref().and_then(PeerId::parse);
        let (Some(from), Some(target)) = (from, target) else {
            return;
        };
        let relay = message.relay.as_ref();
        let id = relay
            .and_then(|r| parse_relay_id(&r.id))
            .unwrap_or_else(|| content_id(kind.as_str(), from, target, message.data));
        if !self.mesh.seen.first_time(id) {
            return;
        }
        let network = message.network();
        if network.len() > protocol::MAX_NETWORK_NAME_LEN {
            return;
        }
        if let Some(entry) = self.peers.get(&target) {
            // Local target: delivered only inside its announced network (docs/protocol.md §3).
            if entry.announced.as_ref().is_some_and(|a| *a.network == *network) {
                entry.handle.send_text(protocol::signal(kind, message.data, from, target, network));
            }
            return;
        }
        let hops = relay.map_or(1, |r| r.hops + 1);
        if hops <= self.mesh.max_hops() {
            let relay = Relay { id: format!("{id:016x}"), origin: None, seq: None, hops, probe: None };
            let text = protocol::link_signal(kind, message.data, from, target, network, &relay);
            self.mesh.flood(&text, Some(from_link), Audience::All);
        }
    }

    /// Sends a local peer's signal for a peer that is not here to the other hubs, whether or not this
    /// hub has heard of the target: it may have announced elsewhere a moment ago, and its discovery
    /// may still be on the way. Returns `false` when there are no links.
    pub(crate) fn relay_local_signal(
        &mut self,
        kind: SignalKind,
        from: PeerId,
        target: PeerId,
        network: &str,
        data: Option<&RawValue>,
    ) -> bool {
        if self.mesh.links.is_empty() {
            return false;
        }
        // Every send of a local peer is a new message, even one identical to an earlier send (a
        // client may repeat itself); only copies made by relaying are duplicates.
        let id = fastrand::u64(..);
        self.mesh.seen.first_time(id);
        let relay = Relay { id: format!("{id:016x}"), origin: None, seq: None, hops: 0, probe: None };
        self.mesh.flood(&protocol::link_signal(kind, data, from, target, network, &relay), None, Audience::All);
        true
    }

    /// Forgets a link and the peers only it vouched for, and finds out which hubs it cut off.
    pub(crate) fn remove_link(&mut self, link_id: u64) {
        let Some(link) = self.mesh.links.remove(&link_id) else { return };
        if link.direction == Direction::Inbound {
            crate::log_info!("inbound hub link {link_id} closed");
        }
        let orphans: Vec<PeerId> =
            self.mesh.remote.iter().filter(|(_, r)| r.origin == Origin::Legacy(link_id)).map(|(id, _)| *id).collect();
        for peer in orphans {
            self.drop_remote(peer, "hub link lost", None);
        }
        // Any link may have carried peers of PeerPigeon-rs hubs (a JavaScript hub relays them one
        // hop), so every lost link makes the mesh check who is still reachable.
        self.probe_reachability();
    }

    /// Floods a `hub-probe` and opens a check for it (see the module docs). With no PeerPigeon-rs
    /// link left, no answer can come: the check is decided at once.
    fn probe_reachability(&mut self) {
        let Some(hub_id) = self.mesh.hub_id() else { return };
        let id = fastrand::u64(..);
        self.mesh.seen.first_time(id);
        let alone = !self.mesh.links.values().any(|l| l.speaks_relay);
        if let Some(check) = self.mesh.check(id)
            && alone
        {
            check.due = Instant::now();
        }
        let relay =
            Relay { id: format!("{id:016x}"), origin: Some(hub_id.to_string()), seq: None, hops: 0, probe: None };
        self.mesh.flood(&protocol::hub_probe(&relay), None, Audience::RelayHubs);
        // The other hubs' checks need this hub's answer too.
        self.mesh.send_heartbeat(Some(id));
        if alone {
            self.decide_checks(Instant::now());
        }
    }

    /// Decides the checks whose window has closed: the peers of every hub that did not answer are
    /// dropped. Forgets decided checks once their probe can no longer come around.
    fn decide_checks(&mut self, now: Instant) {
        let Some(hub_id) = self.mesh.hub_id() else { return };
        let mut cut_off: HashSet<PeerId> = HashSet::new();
        for check in self.mesh.checks.values_mut().filter(|c| !c.decided && c.due <= now) {
            check.decided = true;
            self.mesh.checks_decided += 1;
            let unanswered = self.mesh.remote.values().filter_map(|r| match r.origin {
                Origin::Hub(hub) if hub != hub_id && !check.answered.contains(&hub) => Some(hub),
                _ => None,
            });
            cut_off.extend(unanswered);
        }
        self.mesh.checks.retain(|_, c| !c.decided || c.due + SEEN_TTL > now);
        if !cut_off.is_empty() {
            self.mesh.hubs_cut_off += cut_off.len() as u64;
            self.drop_peers_of_hubs(&cut_off, "hub unreachable");
        }
    }

    /// Drops the remote peers whose hub is one of `hubs` (gone out of reach or silent).
    fn drop_peers_of_hubs(&mut self, hubs: &HashSet<PeerId>, reason: &str) {
        let stale: Vec<PeerId> = self
            .mesh
            .remote
            .iter()
            .filter(|(_, r)| matches!(r.origin, Origin::Hub(hub) if hubs.contains(&hub)))
            .map(|(id, _)| *id)
            .collect();
        if !stale.is_empty() {
            crate::log_info!("{} peers of {} unreachable hubs dropped", stale.len(), hubs.len());
        }
        for peer in stale {
            self.drop_remote(peer, reason, None);
        }
        self.mesh.heard.retain(|hub, _| !hubs.contains(hub));
    }

    /// The hub is shutting down: tell every link that the peers it speaks for are leaving, before
    /// the links close, so the other hubs need not find out by themselves.
    fn say_farewell(&mut self) {
        let locals: Vec<(PeerId, Arc<str>, bool, u64)> = self
            .peers
            .iter()
            .filter_map(|(id, e)| e.announced.as_ref().map(|a| (*id, a.network.clone(), a.is_hub, a.seq)))
            .collect();
        for (peer, network, is_hub, seq) in locals {
            self.mesh_local_left(peer, &network, is_hub, seq, "hub shutting down");
        }
        let spoken_for: Vec<PeerId> =
            self.mesh.remote.iter().filter(|(_, r)| matches!(r.origin, Origin::Legacy(_))).map(|(id, _)| *id).collect();
        for peer in spoken_for {
            self.drop_remote(peer, "hub shutting down", None);
        }
    }
}

impl State {
    /// Registers an open link to another hub and sends it what this hub knows. An outbound link
    /// first carries this hub's announce; an inbound one first gets a `hub-hello`.
    pub(crate) fn add_link(
        &mut self,
        handle: Arc<PeerHandle>,
        direction: Direction,
        speaks_relay: bool,
        remote_hub: Option<PeerId>,
    ) {
        let Some(config) = &self.mesh.config else {
            return;
        };
        let link_id = handle.serial;
        match &direction {
            Direction::Outbound { .. } => {
                let (host, port) = (&config.host, config.port);
                handle.send_text(protocol::hub_announce(&config.namespace, host, port));
            }
            Direction::Inbound => {
                handle.send_text(protocol::hub_hello(config.hub_id));
            }
        }
        handle.mark_link();
        // Outbound links are logged by their own thread (`hub_link.rs`), with the URL and the reason.
        if direction == Direction::Inbound {
            let hub = remote_hub.map_or("?".to_string(), |h| h.short().to_string());
            crate::log_info!("hub {hub} linked to us (link {link_id})");
        }
        let link = Link { handle, direction, speaks_relay, remote_hub, up_since_ms: unix_millis() };
        self.mesh.links.insert(link_id, link);
        self.sync_link(link_id);
    }
}

/// What a message over a link tells the link's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Nothing,
    /// The link leads back to this very hub; it is being closed.
    LeadsToSelf,
    /// The other hub does not take this connection as a hub link, and says why.
    NotAccepted(String),
}

/// One live hub link, opened by this hub or accepted by it, as `/hubs` and `/hubstats` list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkInfo {
    pub id: u64,
    /// The other hub's id, once it told us (a JavaScript hub we linked to never does).
    #[serde(rename = "peerId")]
    pub peer_id: Option<PeerId>,
    /// The hub mesh namespace the link belongs to.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// `inbound` (the other hub connected to us) or `outbound` (a `BOOTSTRAP_HUBS` link).
    pub direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The other side is a PeerPigeon-rs hub (relays across hops, sends heartbeats).
    #[serde(rename = "multiHop")]
    pub multi_hop: bool,
    #[serde(rename = "connectedAt")]
    pub connected_at: u64,
    /// Remote peers whose liveness this link vouches for.
    #[serde(rename = "remotePeers")]
    pub remote_peers: usize,
}

impl Registry {
    /// The hub links now up, both directions, for `/hubs` and `/hubstats`.
    pub fn mesh_links(&self) -> Vec<LinkInfo> {
        let state = self.lock();
        let namespace = state.mesh.config.as_ref().map(|c| c.namespace.clone()).unwrap_or_default();
        let mut links: Vec<LinkInfo> = state
            .mesh
            .links
            .iter()
            .map(|(id, link)| LinkInfo {
                id: *id,
                direction: match link.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound { .. } => "outbound",
                },
                uri: match &link.direction {
                    Direction::Outbound { uri } => Some(uri.clone()),
                    Direction::Inbound => None,
                },
                peer_id: link.remote_hub,
                network_name: namespace.clone(),
                multi_hop: link.speaks_relay,
                connected_at: link.up_since_ms,
                remote_peers: state
                    .mesh
                    .remote
                    .values()
                    .filter(|r| match r.origin {
                        Origin::Legacy(via) => via == *id,
                        Origin::Hub(hub) => Some(hub) == link.remote_hub,
                    })
                    .count(),
            })
            .collect();
        links.sort_by_key(|l| l.id);
        links
    }

    /// How many hub links are up, both directions.
    pub fn link_count(&self) -> usize {
        self.lock().mesh.links.len()
    }

    /// Reachability checks decided since start, and hubs they found cut off, for `/hubstats`.
    pub fn reach_checks(&self) -> (u64, u64) {
        let state = self.lock();
        (state.mesh.checks_decided, state.mesh.hubs_cut_off)
    }

    /// How many peers of other hubs this hub knows.
    pub fn remote_peer_count(&self) -> usize {
        self.lock().mesh.remote_count()
    }

    /// The open hub links, for shutdown to close.
    pub fn link_handles(&self) -> Vec<Arc<PeerHandle>> {
        self.lock().mesh.links.values().map(|l| l.handle.clone()).collect()
    }

    /// Registers an outbound link (a `BOOTSTRAP_HUBS` connection that just opened).
    pub fn link_up(&self, handle: Arc<PeerHandle>, uri: &str) {
        self.lock().add_link(handle, Direction::Outbound { uri: uri.to_string() }, false, None);
    }

    /// Forgets the link with id `link_id` (its connection ended).
    pub fn link_down(&self, link_id: u64) {
        self.lock().remove_link(link_id);
    }

    /// Handles one message that arrived over link `link_id`, and says what the link's owner should
    /// know about it.
    pub fn handle_link_message(&self, link_id: u64, text: &str) -> LinkEvent {
        let Ok(message) = protocol::parse_link_message(text) else {
            crate::log_debug!("ignored an unreadable message on hub link {link_id}");
            return LinkEvent::Nothing;
        };
        if message.kind == "error" && message.code.as_deref() == Some(protocol::error_code::NOT_A_HUB_LINK) {
            return LinkEvent::NotAccepted(message.error.as_deref().unwrap_or_default().to_string());
        }
        let mut state = self.lock();
        if !state.mesh.links.contains_key(&link_id) {
            return LinkEvent::Nothing;
        }
        match message.kind.as_ref() {
            "peer-discovered" => state.learn_remote(link_id, &message),
            "peer-disconnected" => state.forget_remote_peer(link_id, &message),
            "hub-heartbeat" | "hub-probe" => {
                let Some(relay) = &message.relay else {
                    return LinkEvent::Nothing;
                };
                let Some(origin) = relay.origin.as_deref().and_then(PeerId::parse) else {
                    return LinkEvent::Nothing;
                };
                let Some(id) = parse_relay_id(&relay.id) else {
                    return LinkEvent::Nothing;
                };
                if Some(origin) == state.mesh.hub_id() || !state.mesh.seen.first_time(id) {
                    return LinkEvent::Nothing;
                }
                if !state.mesh.heard_from(origin) {
                    return LinkEvent::Nothing;
                }
                let is_probe = message.kind == "hub-probe";
                if is_probe {
                    state.mesh.check(id);
                    state.mesh.send_heartbeat(Some(id));
                } else if let Some(probe) = relay.probe.as_deref().and_then(parse_relay_id) {
                    // An answer that overtook its probe: open the check now, or this answer is lost.
                    if !state.mesh.checks.contains_key(&probe)
                        && !state.mesh.seen.contains(probe)
                        && let Some(check) = state.mesh.check(probe)
                    {
                        check.answered.insert(origin);
                    }
                }
                if relay.hops < state.mesh.max_hops() {
                    let onward = Relay { hops: relay.hops + 1, ..relay.clone() };
                    let text = if is_probe { protocol::hub_probe(&onward) } else { protocol::hub_heartbeat(&onward) };
                    state.mesh.flood(&text, Some(link_id), Audience::RelayHubs);
                }
            }
            "hub-hello" => {
                let fields = PeerFields::of(message.data);
                let hub = fields.hub_id.as_deref().and_then(PeerId::parse);
                let me = state.mesh.hub_id();
                if let Some(link) = state.mesh.links.get_mut(&link_id) {
                    link.speaks_relay = fields.has_capability(protocol::RS_CAPABILITY);
                    link.remote_hub = hub;
                    if hub.is_some() && hub == me {
                        crate::log_warn!("hub link {link_id} leads back to this hub; closing it");
                        link.handle.close(1000, "Link to self");
                        return LinkEvent::LeadsToSelf;
                    }
                }
            }
            kind => {
                // `connected`, `pong`, and whatever else a hub may say besides signals: nothing to do.
                if let Some(signal) = SignalKind::from_type(kind) {
                    state.relay_signal(link_id, signal, &message);
                }
            }
        }
        LinkEvent::Nothing
    }

    /// The mesh's timed work, run by the mesh timer thread: the heartbeat when it is due (dropping
    /// the peers of hubs that missed three), and the reachability checks whose window closed.
    /// Returns how long the thread may sleep before the next piece is due.
    pub fn mesh_tick(&self) -> Duration {
        let mut state = self.lock();
        let Some(heartbeat) = state.mesh.config.as_ref().map(|c| c.heartbeat) else {
            return Duration::from_secs(3600);
        };
        let now = Instant::now();
        if now >= state.mesh.next_heartbeat {
            state.mesh.next_heartbeat = now + heartbeat;
            state.mesh.send_heartbeat(None);
            let deadline = heartbeat * MISSED_HEARTBEATS;
            let silent: HashSet<PeerId> = state
                .mesh
                .heard
                .iter()
                .filter(|(_, at)| now.duration_since(**at) > deadline)
                .map(|(hub, _)| *hub)
                .collect();
            if !silent.is_empty() {
                state.drop_peers_of_hubs(&silent, "hub unreachable");
            }
            state.mesh.tombstones.retain(|_, (_, until)| *until > now);
            state.mesh.shrink_tables();
        }
        state.decide_checks(now);
        let next_check = state.mesh.checks.values().filter(|c| !c.decided).map(|c| c.due).min();
        let next = next_check.map_or(state.mesh.next_heartbeat, |due| due.min(state.mesh.next_heartbeat));
        next.saturating_duration_since(now)
    }

    /// Signalled when the mesh timer should run [`Self::mesh_tick`] before the time it was given.
    pub fn mesh_timer_wakeups(&self) -> Receiver<()> {
        self.lock().mesh.timer_wake.1.clone()
    }

    /// Tells every hub link that this hub's peers are leaving (it is shutting down).
    pub fn say_farewell_to_links(&self) {
        self.lock().say_farewell();
    }
}
