//! Hub mode's relay state (docs/protocol.md §5): the links to other hubs, the peers learned through
//! them, and what to relay where. Sans I/O: [`Mesh`] is told what happened (a link came up or went,
//! a message arrived over a link, a local peer announced or left, time passed) and answers with
//! [`Outgoing`] messages, which the registry sends under its lock. It sees the hub's own peers
//! through [`LocalPeers`], and time only as the `now` it is given, so it is tested without sockets.
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
//! yet (it may have announced on another hub a moment ago). Each hub handles an id once
//! ([`seen`]), delivers it if the target is its own, and otherwise passes it on until the hop
//! limit. So a signal crosses any chain, star or ring exactly once per hub.
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
//!
//! **Bounds.** Every table a link can grow has a bound and an expiry: remote peers
//! (`HUB_MAX_REMOTE_PEERS`, half of them per link), hubs followed ([`MAX_KNOWN_HUBS`]), relay ids
//! ([`seen`]), tombstones, reachability checks ([`MAX_CHECKS`]).

pub mod seen;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::value::RawValue;

use crate::protocol::peer_id::PeerId;
use crate::protocol::{self, LinkMessage, PeerFields, Relay, SignalKind};
use crate::registry::mesh::seen::{SEEN_TTL, SeenIds};
use crate::util::clock::{AnnouncementStamps, unix_millis};
use crate::util::throttled_log::ThrottledLog;

/// How long a departed peer's tombstone stops late copies of its discovery.
const TOMBSTONE_TTL: Duration = Duration::from_secs(20);
/// Most hubs whose heartbeats are followed at once; heartbeats and discoveries naming further hubs
/// are ignored (a mesh this size is far beyond any deployment; a link making up hub ids is not).
pub const MAX_KNOWN_HUBS: usize = 1024;
/// Heartbeats a hub may miss before its peers are dropped.
const MISSED_HEARTBEATS: u32 = 3;
/// How long a hub waits for answers to a `hub-probe` before dropping the peers of the hubs that did
/// not answer (at most one heartbeat interval). Answers cross the mesh in milliseconds; a hub so
/// busy that it takes longer is taken for gone, and sends its peers again once heard from.
pub const PROBE_WINDOW: Duration = Duration::from_secs(1);
/// Most reachability checks remembered at once (open, or decided in the last [`SEEN_TTL`]); probes
/// beyond it are passed on and answered but open no check here.
pub const MAX_CHECKS: usize = 256;

/// A link's id: the serial number of its connection.
pub type LinkId = u64;

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

/// Something the mesh asks its owner to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `text` over link `LinkId`.
    Link(LinkId, String),
    /// `text` to this hub's own peer `PeerId`.
    Peer(PeerId, String),
    /// Close link `LinkId`: it leads back to this very hub.
    CloseLink(LinkId),
}

/// One of this hub's own announced peers, as [`LocalPeers`] shows it.
pub struct AnnouncedPeer<'a> {
    pub id: PeerId,
    pub network: &'a str,
    pub is_hub: bool,
    /// The stamp of its announcement ([`Mesh::next_stamp`]).
    pub seq: u64,
    /// The `data` of its `peer-discovered`.
    pub discovery: &'a RawValue,
}

/// What the mesh (and the cluster state, `registry::cluster`) needs to know of this server's own
/// peers: the registry's view of them.
pub trait LocalPeers {
    /// Whether `peer` is connected here, announced or not.
    fn is_connected(&self, peer: PeerId) -> bool;
    /// The network `peer` announced in, if it is connected here and announced.
    fn network_of(&self, peer: PeerId) -> Option<&str>;
    /// Calls `each` for every announced peer (`network: None`) or for those of one network.
    fn each_announced(&self, network: Option<&str>, each: &mut dyn FnMut(AnnouncedPeer<'_>));
    /// Whether any peer here is announced in `network`.
    fn has_members(&self, network: &str) -> bool {
        let mut any = false;
        self.each_announced(Some(network), &mut |_| any = true);
        any
    }
}

/// Which side opened a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Another hub connected to us and announced itself.
    Inbound,
    /// We connected to this `BOOTSTRAP_HUBS` URL.
    Outbound { uri: String },
}

/// What the owner of a link should know about a message that came over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Nothing,
    /// The link leads back to this very hub; it is being closed.
    LeadsToSelf,
    /// The other hub does not take this connection as a hub link, and says why.
    NotAccepted(String),
}

/// A live link to another hub.
struct Link {
    direction: Direction,
    /// The other side is a PeerPigeon-rs hub (it understands heartbeats and probes).
    speaks_relay: bool,
    /// The other hub's id, when it told us.
    remote_hub: Option<PeerId>,
    up_since_ms: u64,
}

/// One hub link as `/hubs` and `/hubstats` list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkInfo {
    pub id: LinkId,
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

/// Where a remote peer's liveness comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A PeerPigeon-rs hub, alive while its heartbeats arrive.
    Hub(PeerId),
    /// Learned from a JavaScript hub over this link, alive while that link is up.
    Legacy(LinkId),
}

struct RemotePeer {
    /// The link that first introduced it (counted against that link's share).
    via: LinkId,
    network: Arc<str>,
    is_hub: bool,
    discovery: Box<RawValue>,
    origin: Origin,
    seq: u64,
    hops: u32,
}

/// Which hubs answered one `hub-probe`, while its window is open.
struct ReachCheck {
    due: Instant,
    answered: HashSet<PeerId>,
    decided: bool,
}

/// Which links a message is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    All,
    /// PeerPigeon-rs hubs only (heartbeats, probes).
    RelayHubs,
    /// JavaScript hubs only: they cannot work out for themselves that a hub went silent.
    JavaScriptHubs,
}

/// The relay state of one hub (see the module docs).
pub struct Mesh {
    config: MeshConfig,
    links: HashMap<LinkId, Link>,
    remote: HashMap<PeerId, RemotePeer>,
    remote_by_network: HashMap<Arc<str>, HashSet<PeerId>>,
    /// Remote peers known, by the link that introduced them.
    introduced_by: HashMap<LinkId, usize>,
    tombstones: HashMap<PeerId, (u64, Instant)>,
    /// When each hub was last heard from.
    heard: HashMap<PeerId, Instant>,
    seen: SeenIds,
    stamps: AnnouncementStamps,
    /// Reachability checks by probe id (see the module docs).
    checks: HashMap<u64, ReachCheck>,
    /// Checks decided, and hubs found cut off by them, since start (for `/hubstats`).
    checks_decided: u64,
    hubs_cut_off: u64,
    next_heartbeat: Instant,
    /// Wakes the mesh timer thread (`hub/timer.rs`) when a check opens before its next heartbeat.
    timer_wake: (Sender<()>, Receiver<()>),
    /// What to send, collected by every call; the owner drains it with [`Mesh::outgoing`].
    outgoing: Vec<Outgoing>,
}

impl Mesh {
    pub fn new(config: MeshConfig, now: Instant) -> Mesh {
        Mesh {
            config,
            links: HashMap::new(),
            remote: HashMap::new(),
            remote_by_network: HashMap::new(),
            introduced_by: HashMap::new(),
            tombstones: HashMap::new(),
            heard: HashMap::new(),
            seen: SeenIds::new(now),
            stamps: AnnouncementStamps::default(),
            checks: HashMap::new(),
            checks_decided: 0,
            hubs_cut_off: 0,
            next_heartbeat: now,
            timer_wake: crossbeam_channel::bounded(1),
            outgoing: Vec::new(),
        }
    }

    /// What the calls since the last drain asked to send, in order.
    pub fn outgoing(&mut self) -> std::vec::Drain<'_, Outgoing> {
        self.outgoing.drain(..)
    }

    /// Gives back the room of a large batch (a new link's sync, a network told of a departed hub):
    /// kept, it would hold memory for as long as the hub runs.
    pub fn release_outgoing_room(&mut self) {
        if self.outgoing.capacity() > 1024 {
            self.outgoing = Vec::new();
        }
    }

    /// Whether `HUB_TOKEN` is set (for what the logs advise).
    pub fn hub_token_set(&self) -> bool {
        self.config.hub_token_set
    }

    /// A stamp for a local announcement ([`AnnouncementStamps`]).
    pub fn next_stamp(&mut self) -> u64 {
        self.stamps.next()
    }

    /// Remote peers known.
    pub fn remote_count(&self) -> usize {
        self.remote.len()
    }

    /// Reachability checks decided since start, and hubs they found cut off.
    pub fn reach_checks(&self) -> (u64, u64) {
        (self.checks_decided, self.hubs_cut_off)
    }

    /// Signalled when a reachability check opens: the timer should call [`Mesh::tick`] before the
    /// time it was last given.
    pub fn timer_wakeups(&self) -> Receiver<()> {
        self.timer_wake.1.clone()
    }

    /// The links now up, for `/hubs` and `/hubstats`.
    pub fn links(&self) -> Vec<LinkInfo> {
        let mut links: Vec<LinkInfo> = self
            .links
            .iter()
            .map(|(id, link)| LinkInfo {
                id: *id,
                peer_id: link.remote_hub,
                network_name: self.config.namespace.clone(),
                direction: match link.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound { .. } => "outbound",
                },
                uri: match &link.direction {
                    Direction::Outbound { uri } => Some(uri.clone()),
                    Direction::Inbound => None,
                },
                multi_hop: link.speaks_relay,
                connected_at: link.up_since_ms,
                remote_peers: self
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

    // ---- links coming and going ---------------------------------------------------------------

    /// A link is up: an outbound one first carries this hub's announce, an inbound one a
    /// `hub-hello`; then it gets everything this hub knows.
    pub fn link_up(
        &mut self,
        link: LinkId,
        direction: Direction,
        speaks_relay: bool,
        remote_hub: Option<PeerId>,
        local: &dyn LocalPeers,
    ) {
        let greeting = match &direction {
            Direction::Outbound { .. } => {
                protocol::hub_announce(&self.config.namespace, &self.config.host, self.config.port)
            }
            Direction::Inbound => {
                let hub = remote_hub.map_or("?".to_string(), |h| h.short().to_string());
                log::info!("hub {hub} linked to us (link {link})");
                protocol::hub_hello(self.config.hub_id)
            }
        };
        self.outgoing.push(Outgoing::Link(link, greeting));
        self.links.insert(link, Link { direction, speaks_relay, remote_hub, up_since_ms: unix_millis() });
        self.sync_link(link, local);
    }

    /// A link went away: forget the peers only it vouched for, and find out which hubs it cut off
    /// (any link may have carried peers of PeerPigeon-rs hubs: a JavaScript hub relays one hop).
    pub fn link_down(&mut self, link: LinkId, local: &dyn LocalPeers, now: Instant) {
        let Some(gone) = self.links.remove(&link) else { return };
        if gone.direction == Direction::Inbound {
            log::info!("inbound hub link {link} closed");
        }
        let orphans: Vec<PeerId> =
            self.remote.iter().filter(|(_, r)| r.origin == Origin::Legacy(link)).map(|(id, _)| *id).collect();
        for peer in orphans {
            self.drop_remote(peer, "hub link lost", None, local);
        }
        self.probe_reachability(local, now);
    }

    /// This hub is shutting down: tell every link that the peers it speaks for are leaving, before
    /// the links close, so the other hubs need not find out by themselves.
    pub fn farewell(&mut self, local: &dyn LocalPeers) {
        let mut leaving = Vec::new();
        local.each_announced(None, &mut |p| leaving.push((p.id, p.network.to_string(), p.is_hub, p.seq)));
        for (peer, network, is_hub, seq) in leaving {
            self.local_left(peer, &network, is_hub, seq, "hub shutting down");
        }
        let spoken_for: Vec<PeerId> =
            self.remote.iter().filter(|(_, r)| matches!(r.origin, Origin::Legacy(_))).map(|(id, _)| *id).collect();
        for peer in spoken_for {
            self.drop_remote(peer, "hub shutting down", None, local);
        }
    }

    // ---- this hub's own peers -----------------------------------------------------------------

    /// Local peer `peer` announced into `network` (after the local exchange): tell it about the
    /// remote peers of that network, and tell the other hubs about it (its announcement `seq`, its
    /// `discovery` data), unless it is a hub.
    pub fn local_announced(&mut self, peer: PeerId, network: &str, is_hub: bool, seq: u64, discovery: &RawValue) {
        for remote in self.remote_by_network.get(network).into_iter().flatten() {
            if let Some(entry) = self.remote.get(remote) {
                let text = protocol::peer_discovered(&entry.discovery, network, peer);
                self.outgoing.push(Outgoing::Peer(peer, text));
            }
        }
        if is_hub || network == self.config.namespace {
            return;
        }
        let relay = new_relay(Some(self.config.hub_id.to_string()), Some(seq), 0);
        self.flood(&protocol::link_peer_discovered(discovery, network, &relay), None, Audience::All);
    }

    /// Local peer `peer` left `network` (announcement `seq`): tell the other hubs.
    pub fn local_left(&mut self, peer: PeerId, network: &str, is_hub: bool, seq: u64, reason: &str) {
        if is_hub || network == self.config.namespace {
            return;
        }
        let relay = new_relay(Some(self.config.hub_id.to_string()), Some(seq), 0);
        self.flood(&protocol::link_peer_disconnected(peer, false, reason, network, &relay), None, Audience::All);
    }

    /// Sends a local peer's signal for a peer that is not here to the other hubs, whether or not this
    /// hub has heard of the target: it may have announced elsewhere a moment ago, and its discovery
    /// may still be on the way. Returns `false` when there are no links.
    pub fn local_signal(
        &mut self,
        kind: SignalKind,
        from: PeerId,
        target: PeerId,
        network: &str,
        data: Option<&RawValue>,
        now: Instant,
    ) -> bool {
        if self.links.is_empty() {
            return false;
        }
        // Every send of a local peer is a new message, even one identical to an earlier send (a
        // client may repeat itself); only copies made by relaying are duplicates.
        let id = fastrand::u64(..);
        self.seen.first_time(id, now);
        let relay = Relay { id: format!("{id:016x}"), origin: None, seq: None, hops: 0, probe: None };
        self.flood(&protocol::link_signal(kind, data, from, target, network, &relay), None, Audience::All);
        true
    }

    // ---- messages over links ------------------------------------------------------------------

    /// Handles one message that arrived over `link`, and says what the link's owner should know.
    pub fn on_link_message(
        &mut self,
        link: LinkId,
        message: &LinkMessage<'_>,
        local: &dyn LocalPeers,
        now: Instant,
    ) -> LinkEvent {
        if message.kind == "error" && message.code.as_deref() == Some(protocol::error_code::NOT_A_HUB_LINK) {
            return LinkEvent::NotAccepted(message.error.as_deref().unwrap_or_default().to_string());
        }
        if !self.links.contains_key(&link) {
            return LinkEvent::Nothing;
        }
        match message.kind.as_ref() {
            "peer-discovered" => self.learn_remote(link, message, local, now),
            "peer-disconnected" => self.forget_remote_peer(link, message, local),
            "hub-heartbeat" | "hub-probe" => self.heard_over(link, message, now),
            "hub-hello" => return self.hello(link, message),
            kind => {
                // `connected`, `pong`, and whatever else a hub may say besides signals: nothing to do.
                if let Some(signal) = SignalKind::from_type(kind) {
                    self.relay_signal(link, signal, message, local, now);
                }
            }
        }
        LinkEvent::Nothing
    }

    /// A `hub-hello`: the other end of an outbound link says who it is and what it speaks.
    fn hello(&mut self, link: LinkId, message: &LinkMessage<'_>) -> LinkEvent {
        let fields = PeerFields::of(message.data);
        let hub = fields.hub_id.as_deref().and_then(PeerId::parse);
        let Some(entry) = self.links.get_mut(&link) else { return LinkEvent::Nothing };
        entry.speaks_relay = fields.has_capability(protocol::RS_CAPABILITY);
        entry.remote_hub = hub;
        if hub == Some(self.config.hub_id) {
            log::warn!("hub link {link} leads back to this hub; closing it");
            self.outgoing.push(Outgoing::CloseLink(link));
            return LinkEvent::LeadsToSelf;
        }
        LinkEvent::Nothing
    }

    /// A heartbeat or a probe: its hub is alive and reachable; a probe is answered and opens a
    /// check here; both are passed on.
    fn heard_over(&mut self, link: LinkId, message: &LinkMessage<'_>, now: Instant) {
        let Some(relay) = &message.relay else { return };
        let Some(origin) = relay.origin.as_deref().and_then(PeerId::parse) else { return };
        let Some(id) = parse_relay_id(&relay.id) else { return };
        if origin == self.config.hub_id || !self.seen.first_time(id, now) {
            return;
        }
        if !self.heard_from(origin, now) {
            return;
        }
        let is_probe = message.kind == "hub-probe";
        if is_probe {
            self.check(id, now);
            self.send_heartbeat(Some(id), now);
        } else if let Some(probe) = relay.probe.as_deref().and_then(parse_relay_id) {
            // An answer that overtook its probe: open the check now, or this answer is lost.
            if !self.checks.contains_key(&probe)
                && !self.seen.contains(probe)
                && let Some(check) = self.check(probe, now)
            {
                check.answered.insert(origin);
            }
        }
        if relay.hops < self.config.max_hops {
            let onward = Relay { hops: relay.hops + 1, ..relay.clone() };
            let text = if is_probe { protocol::hub_probe(&onward) } else { protocol::hub_heartbeat(&onward) };
            self.flood(&text, Some(link), Audience::RelayHubs);
        }
    }

    /// A remote peer became known (or newer): cache it, tell local peers, pass it on.
    fn learn_remote(&mut self, from_link: LinkId, message: &LinkMessage<'_>, local: &dyn LocalPeers, now: Instant) {
        let fields = PeerFields::of(message.data);
        let Some(peer) = fields.peer_id.as_deref().and_then(PeerId::parse) else { return };
        let network = message.network();
        // The bounds a peer announcing here must keep, a link's peers keep too.
        if network.len() > protocol::MAX_NETWORK_NAME_LEN
            || message.data.is_some_and(|d| d.get().len() > self.config.max_peer_data_bytes)
        {
            return;
        }
        // Hubs are introduced by their links, not by discovery; our own peers echoed back are ours.
        if fields.is_hub() || network == self.config.namespace || local.is_connected(peer) {
            return;
        }
        let relay = message.relay.as_ref();
        let origin = match relay.and_then(|r| r.origin.as_deref()).and_then(PeerId::parse) {
            Some(hub) if hub == self.config.hub_id => return, // our own announcement came back around
            Some(hub) => Origin::Hub(hub),
            None => Origin::Legacy(from_link),
        };
        let seq = match relay.and_then(|r| r.seq) {
            Some(seq) => seq,
            None => self.next_stamp(),
        };
        let hops = relay.map_or(1, |r| r.hops + 1);
        if self.tombstones.get(&peer).is_some_and(|(dead, _)| *dead >= seq)
            || self.remote.get(&peer).is_some_and(|known| known.seq >= seq)
            || (origin == Origin::Legacy(from_link) && self.remote.contains_key(&peer))
        {
            return;
        }
        if let Origin::Hub(hub) = origin {
            if !self.knows_hub(hub) {
                return;
            }
            self.heard.entry(hub).or_insert(now);
        }
        let introduced_by = self.remote.get(&peer).map_or(from_link, |known| known.via);
        if !self.remote.contains_key(&peer) && !self.room_for_remote_peer(from_link) {
            static FULL: ThrottledLog = ThrottledLog::new();
            FULL.warn(|| {
                format!("hub link {from_link} introduced more remote peers than allowed (HUB_MAX_REMOTE_PEERS); ignoring them")
            });
            return;
        }
        // A newer announcement may move the peer to another network: the old one hears it left.
        if let Some(old) = self.forget_remote(peer).filter(|old| *old.network != *network) {
            self.notify_local(&old.network, local, |recipient| {
                protocol::peer_disconnected(peer, old.is_hub, "network-change", &old.network, recipient)
            });
        }
        let network: Arc<str> = match self.remote_by_network.get_key_value(network) {
            Some((name, _)) => name.clone(),
            None => Arc::from(network),
        };
        let discovery = protocol::discovery_data(peer, false, message.data);
        self.notify_local(&network, local, |recipient| protocol::peer_discovered(&discovery, &network, recipient));
        if hops <= self.config.max_hops {
            let origin_text = match origin {
                Origin::Hub(hub) => hub.to_string(),
                Origin::Legacy(_) => self.config.hub_id.to_string(),
            };
            let relay = new_relay(Some(origin_text), Some(seq), hops);
            self.flood(&protocol::link_peer_discovered(&discovery, &network, &relay), Some(from_link), Audience::All);
        }
        self.remote_by_network.entry(network.clone()).or_default().insert(peer);
        let entry =
            RemotePeer { via: introduced_by, network: network.clone(), is_hub: false, discovery, origin, seq, hops };
        self.remote.insert(peer, entry);
        *self.introduced_by.entry(introduced_by).or_default() += 1;
        if origin == Origin::Legacy(from_link) {
            self.reintroduce_network(from_link, &network, local);
        }
    }

    /// A JavaScript hub that accepted our link forwards what we tell it to its peers but never
    /// remembers it, so its peers that announce later would never hear of ours. When it introduces
    /// one of its peers, tell it again about every peer of that network we know (its other peers get
    /// these again, which clients take in their stride: the reference re-sends on re-announce too).
    fn reintroduce_network(&mut self, link: LinkId, network: &str, local: &dyn LocalPeers) {
        let Some(entry) = self.links.get(&link) else { return };
        if entry.speaks_relay || entry.direction == Direction::Inbound {
            return;
        }
        let me = self.config.hub_id.to_string();
        let mut texts = Vec::new();
        local.each_announced(Some(network), &mut |p| {
            if !p.is_hub {
                let relay = new_relay(Some(me.clone()), Some(p.seq), 0);
                texts.push(protocol::link_peer_discovered(p.discovery, network, &relay));
            }
        });
        for remote in self.remote_by_network.get(network).into_iter().flatten() {
            let Some(entry) = self.remote.get(remote).filter(|r| r.origin != Origin::Legacy(link)) else {
                continue;
            };
            let relay = new_relay(Some(me.clone()), Some(entry.seq), entry.hops + 1);
            texts.push(protocol::link_peer_discovered(&entry.discovery, network, &relay));
        }
        self.outgoing.extend(texts.into_iter().map(|text| Outgoing::Link(link, text)));
    }

    /// A remote peer left: forget it, tell local peers, pass it on.
    fn forget_remote_peer(&mut self, from_link: LinkId, message: &LinkMessage<'_>, local: &dyn LocalPeers) {
        let fields = PeerFields::of(message.data);
        let Some(peer) = fields.peer_id.as_deref().and_then(PeerId::parse) else { return };
        let Some(known) = self.remote.get(&peer) else { return };
        let relay = message.relay.as_ref();
        let accepted = match (relay.and_then(|r| r.seq), known.origin) {
            // A departure from a PeerPigeon-rs hub ends the announcement it names, or an older one.
            (Some(seq), _) => seq >= known.seq,
            // The JavaScript hub speaks for the peers it introduced.
            (None, Origin::Legacy(link)) => link == from_link,
            (None, Origin::Hub(_)) => false,
        };
        if accepted {
            let hops = relay.map_or(1, |r| r.hops + 1);
            self.drop_remote(peer, "disconnected", Some((from_link, hops)), local);
        }
    }

    /// A signal arrived over a link: deliver it here, or pass it on.
    fn relay_signal(
        &mut self,
        from_link: LinkId,
        kind: SignalKind,
        message: &LinkMessage<'_>,
        local: &dyn LocalPeers,
        now: Instant,
    ) {
        let from = message.from_peer_id.as_deref().and_then(PeerId::parse);
        let target = message.target_peer_id.as_deref().and_then(PeerId::parse);
        let (Some(from), Some(target)) = (from, target) else { return };
        let relay = message.relay.as_ref();
        let id = relay
            .and_then(|r| parse_relay_id(&r.id))
            .unwrap_or_else(|| content_id(kind.as_str(), from, target, message.data));
        if !self.seen.first_time(id, now) {
            return;
        }
        let network = message.network();
        if network.len() > protocol::MAX_NETWORK_NAME_LEN {
            return;
        }
        if local.is_connected(target) {
            // Local target: delivered only inside its announced network (docs/protocol.md §3).
            if local.network_of(target) == Some(network) {
                let text = protocol::signal(kind, message.data, from, target, network);
                self.outgoing.push(Outgoing::Peer(target, text));
            }
            return;
        }
        let hops = relay.map_or(1, |r| r.hops + 1);
        if hops <= self.config.max_hops {
            let relay = Relay { id: format!("{id:016x}"), origin: None, seq: None, hops, probe: None };
            let text = protocol::link_signal(kind, message.data, from, target, network, &relay);
            self.flood(&text, Some(from_link), Audience::All);
        }
    }

    // ---- time ---------------------------------------------------------------------------------

    /// The mesh's timed work: the heartbeat when it is due (dropping the peers of hubs that missed
    /// three), and the reachability checks whose window closed. Returns when to call again.
    pub fn tick(&mut self, local: &dyn LocalPeers, now: Instant) -> Instant {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat;
            self.send_heartbeat(None, now);
            let deadline = self.config.heartbeat * MISSED_HEARTBEATS;
            let silent: HashSet<PeerId> = self
                .heard
                .iter()
                .filter(|(_, at)| now.saturating_duration_since(**at) > deadline)
                .map(|(hub, _)| *hub)
                .collect();
            if !silent.is_empty() {
                self.drop_peers_of_hubs(&silent, "hub unreachable", local);
            }
            self.tombstones.retain(|_, (_, until)| *until > now);
            self.shrink_tables();
        }
        self.decide_checks(local, now);
        let next_check = self.checks.values().filter(|c| !c.decided).map(|c| c.due).min();
        next_check.map_or(self.next_heartbeat, |due| due.min(self.next_heartbeat))
    }

    // ---- reachability -------------------------------------------------------------------------

    /// Floods a `hub-probe` and opens a check for it (see the module docs). With no PeerPigeon-rs
    /// link left, no answer can come: the check is decided at once.
    fn probe_reachability(&mut self, local: &dyn LocalPeers, now: Instant) {
        let id = fastrand::u64(..);
        self.seen.first_time(id, now);
        let alone = !self.links.values().any(|l| l.speaks_relay);
        if let Some(check) = self.check(id, now)
            && alone
        {
            check.due = now;
        }
        let me = self.config.hub_id.to_string();
        let relay = Relay { id: format!("{id:016x}"), origin: Some(me), seq: None, hops: 0, probe: None };
        self.flood(&protocol::hub_probe(&relay), None, Audience::RelayHubs);
        // The other hubs' checks need this hub's answer too.
        self.send_heartbeat(Some(id), now);
        if alone {
            self.decide_checks(local, now);
        }
    }

    /// The check for probe `id`, opened at `now` if it is new; `None` when [`MAX_CHECKS`] are held.
    fn check(&mut self, id: u64, now: Instant) -> Option<&mut ReachCheck> {
        if !self.checks.contains_key(&id) {
            if self.checks.len() >= MAX_CHECKS {
                return None;
            }
            let due = now + self.config.heartbeat.min(PROBE_WINDOW);
            self.checks.insert(id, ReachCheck { due, answered: HashSet::new(), decided: false });
            // A full channel already holds a wake-up, which is all the timer needs.
            let _ = self.timer_wake.0.try_send(());
        }
        self.checks.get_mut(&id)
    }

    /// Decides the checks whose window has closed: the peers of every hub that did not answer are
    /// dropped. Forgets decided checks once their probe can no longer come around.
    fn decide_checks(&mut self, local: &dyn LocalPeers, now: Instant) {
        let mut cut_off: HashSet<PeerId> = HashSet::new();
        for check in self.checks.values_mut().filter(|c| !c.decided && c.due <= now) {
            check.decided = true;
            self.checks_decided += 1;
            let unanswered = self.remote.values().filter_map(|r| match r.origin {
                Origin::Hub(hub) if !check.answered.contains(&hub) => Some(hub),
                _ => None,
            });
            cut_off.extend(unanswered);
        }
        self.checks.retain(|_, c| !c.decided || c.due + SEEN_TTL > now);
        if !cut_off.is_empty() {
            self.hubs_cut_off += cut_off.len() as u64;
            self.drop_peers_of_hubs(&cut_off, "hub unreachable", local);
        }
    }

    /// Hub `origin` was just heard from: it is alive, and reachable for every open check. Returns
    /// `false`, and records nothing, for a new hub past [`MAX_KNOWN_HUBS`].
    fn heard_from(&mut self, origin: PeerId, now: Instant) -> bool {
        if !self.knows_hub(origin) {
            return false;
        }
        self.heard.insert(origin, now);
        for check in self.checks.values_mut().filter(|c| !c.decided) {
            check.answered.insert(origin);
        }
        true
    }

    /// Whether hub `origin` is followed, or may be: known already, or room for one more.
    fn knows_hub(&self, origin: PeerId) -> bool {
        self.heard.contains_key(&origin) || self.heard.len() < MAX_KNOWN_HUBS
    }

    /// Floods this hub's heartbeat; `answering` names the probe it answers, if any.
    fn send_heartbeat(&mut self, answering: Option<u64>, now: Instant) {
        let mut relay = new_relay(Some(self.config.hub_id.to_string()), None, 0);
        relay.probe = answering.map(|id| format!("{id:016x}"));
        if let Some(id) = parse_relay_id(&relay.id) {
            self.seen.first_time(id, now);
        }
        self.flood(&protocol::hub_heartbeat(&relay), None, Audience::RelayHubs);
    }

    // ---- remote peers -------------------------------------------------------------------------

    /// Whether link `via` may introduce one more remote peer (see [`MeshConfig::max_remote_peers`]).
    fn room_for_remote_peer(&self, via: LinkId) -> bool {
        let total = self.config.max_remote_peers;
        self.remote.len() < total && self.introduced_by.get(&via).copied().unwrap_or(0) < total / 2
    }

    /// Drops the remote peers whose hub is one of `hubs` (gone out of reach or silent).
    fn drop_peers_of_hubs(&mut self, hubs: &HashSet<PeerId>, reason: &str, local: &dyn LocalPeers) {
        let stale: Vec<PeerId> = self
            .remote
            .iter()
            .filter(|(_, r)| matches!(r.origin, Origin::Hub(hub) if hubs.contains(&hub)))
            .map(|(id, _)| *id)
            .collect();
        if !stale.is_empty() {
            log::info!("{} peers of {} unreachable hubs dropped", stale.len(), hubs.len());
        }
        for peer in stale {
            self.drop_remote(peer, reason, None, local);
        }
        self.heard.retain(|hub, _| !hubs.contains(hub));
    }

    /// Removes remote `peer`, tells its network here, and (if `pass_on` names the link it came from
    /// and the hops so far) the other hubs. Only such a departure, relayed from the peer's hub,
    /// leaves a tombstone: a peer dropped because its hub is out of reach may be sent again.
    fn drop_remote(&mut self, peer: PeerId, reason: &str, pass_on: Option<(LinkId, u32)>, local: &dyn LocalPeers) {
        let Some(entry) = self.forget_remote(peer) else { return };
        if pass_on.is_some() {
            self.bury(peer, entry.seq);
        }
        self.notify_local(&entry.network, local, |recipient| {
            protocol::peer_disconnected(peer, entry.is_hub, reason, &entry.network, recipient)
        });
        let origin = match entry.origin {
            Origin::Hub(hub) => hub,
            Origin::Legacy(_) => self.config.hub_id,
        };
        let (except, hops, audience) = match (pass_on, entry.origin) {
            (Some((link, hops)), _) => (Some(link), hops, Audience::All),
            // This hub spoke for the peer to the mesh: it must also say that it is gone.
            (None, Origin::Legacy(_)) => (None, 0, Audience::All),
            // Every PeerPigeon-rs hub notices an unreachable hub by itself; JavaScript hubs cannot.
            (None, Origin::Hub(_)) => (None, 0, Audience::JavaScriptHubs),
        };
        if hops <= self.config.max_hops {
            let relay = new_relay(Some(origin.to_string()), Some(entry.seq), hops);
            let notice = protocol::link_peer_disconnected(peer, entry.is_hub, reason, &entry.network, &relay);
            self.flood(&notice, except, audience);
        }
    }

    /// Leaves a tombstone for `peer`'s announcement `seq`. Tombstones are bounded like remote peers:
    /// when full of live ones, no more are left (a late copy of a discovery may then bring a
    /// departed peer back until its hub's next departure or silence).
    fn bury(&mut self, peer: PeerId, seq: u64) {
        let now = Instant::now();
        let bound = self.config.max_remote_peers;
        if self.tombstones.len() >= bound {
            self.tombstones.retain(|_, (_, until)| *until > now);
        }
        if self.tombstones.len() < bound {
            self.tombstones.insert(peer, (seq, now + TOMBSTONE_TTL));
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

    /// Sends a new link everything this hub knows: its local peers, then the remote ones.
    fn sync_link(&mut self, link: LinkId, local: &dyn LocalPeers) {
        let me = self.config.hub_id.to_string();
        let namespace = self.config.namespace.as_str();
        let mut texts = Vec::new();
        local.each_announced(None, &mut |p| {
            if !p.is_hub && p.network != namespace {
                let relay = new_relay(Some(me.clone()), Some(p.seq), 0);
                texts.push(protocol::link_peer_discovered(p.discovery, p.network, &relay));
            }
        });
        for remote in self.remote.values().filter(|r| r.origin != Origin::Legacy(link)) {
            let origin = match remote.origin {
                Origin::Hub(hub) => hub.to_string(),
                Origin::Legacy(_) => me.clone(),
            };
            let relay = new_relay(Some(origin), Some(remote.seq), remote.hops + 1);
            texts.push(protocol::link_peer_discovered(&remote.discovery, &remote.network, &relay));
        }
        self.outgoing.extend(texts.into_iter().map(|text| Outgoing::Link(link, text)));
    }

    // ---- plumbing -----------------------------------------------------------------------------

    /// A message built for each local, non-hub peer announced in `network`.
    fn notify_local(&mut self, network: &str, local: &dyn LocalPeers, build: impl Fn(PeerId) -> String) {
        let mut recipients = Vec::new();
        local.each_announced(Some(network), &mut |p| {
            if !p.is_hub {
                recipients.push(p.id);
            }
        });
        self.outgoing.extend(recipients.into_iter().map(|peer| Outgoing::Peer(peer, build(peer))));
    }

    /// `text` for the links of `audience`, except link `except`.
    fn flood(&mut self, text: &str, except: Option<LinkId>, audience: Audience) {
        for (id, link) in &self.links {
            let wanted = match audience {
                Audience::All => true,
                Audience::RelayHubs => link.speaks_relay,
                Audience::JavaScriptHubs => !link.speaks_relay,
            };
            if wanted && Some(*id) != except {
                self.outgoing.push(Outgoing::Link(*id, text.to_string()));
            }
        }
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
