//! The publisher (`cluster-publisher`): one Redis connection that sends everything this instance
//! tells the cluster, in the order it was queued (`ClusterShared`'s bounded queue), as pipelines of
//! up to [`BATCH`] commands: one round trip for a burst, none per message for a reader to wait on.
//! It also keeps time for the cluster (heartbeats, silent instances), and owns the peer-id claims:
//!
//! - A claim is `SET <ns>:peer:<id> <instance> PX CLAIM_TTL` unless a *live* instance (its
//!   `<ns>:alive:<instance>` key exists) already holds the id: one Lua script, so two instances
//!   claiming at once cannot both win. A dead instance's claims lapse with its liveness key.
//! - Every [`CLAIM_REFRESH`] (and after Redis was away) every local peer is claimed again: that
//!   keeps the claims alive, and a peer that connected while Redis was away and turns out to be
//!   connected elsewhere too is closed here as a duplicate.
//!
//! When Redis fails, whatever the pipeline carried is lost (claims waiting for it are answered
//! `Unknown`), and once it is back the instance publishes its peers again (`resync`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::cluster::{client, connect, stopped};
use crate::context::ServerState;
use crate::registry::cluster::{Claim, ClusterConfig, ClusterShared, ToRedis};

/// Most queued items sent in one pipeline.
const BATCH: usize = 1024;
/// Largest message made of several for one channel (see [`Publisher::send`]).
const MERGED_BYTES: usize = 256 * 1024;
/// How long a peer-id claim lives unless renewed. A claim left behind (its release was dropped
/// with a full queue) keeps the id from other instances for at most this long.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How often every local peer's claim is renewed.
const CLAIM_REFRESH: Duration = Duration::from_secs(20);

/// Claims `KEYS[1]` (a peer id) for instance `ARGV[1]` for `ARGV[2]` ms, unless a live instance
/// other than it holds it (liveness keys are `ARGV[3]` followed by the instance id). 1: granted.
const CLAIM_SCRIPT: &str = "local owner = redis.call('GET', KEYS[1]) \
    if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then return 0 end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";
/// Deletes `KEYS[1]` if instance `ARGV[1]` holds it.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0";

/// Runs until `stop` is dropped; then sends what is still queued (the farewell) and goes.
pub(crate) fn run(state: &ServerState, stop: &Receiver<()>) {
    let (Some(shared), Some(config), Some(url)) =
        (state.cluster.as_ref(), state.cluster_config.as_ref(), state.config.cluster_redis_url.as_deref())
    else {
        return;
    };
    let shown = crate::config::url_for_display(url);
    let client = match client(&state.config) {
        Ok(client) => client,
        Err(err) => {
            log::error!("cluster: Redis at {shown} cannot be used ({err}); this instance runs alone");
            return;
        }
    };
    let dropped_seen = shared.dropped_queue_full.load(Ordering::Relaxed);
    let mut publisher =
        Publisher { state, shared, config, next_refresh: Instant::now(), last_resync: None, dropped_seen };
    let mut first = true;
    while let Some(mut connection) = connect(&client, "publisher", shared, stop) {
        log::info!("cluster: publishing to Redis at {shown} as instance {}", config.instance);
        shared.publisher_up.store(true, Ordering::Release);
        if !first {
            publisher.resync();
        }
        first = false;
        publisher.next_refresh = Instant::now();
        let ended = publisher.serve(&mut connection, stop);
        shared.publisher_up.store(false, Ordering::Release);
        if ended {
            return;
        }
    }
}

struct Publisher<'a> {
    state: &'a ServerState,
    shared: &'a ClusterShared,
    config: &'a ClusterConfig,
    next_refresh: Instant,
    last_resync: Option<Instant>,
    /// Messages dropped on a full queue as of the last resync.
    dropped_seen: u64,
}

impl Publisher<'_> {
    /// Sends until Redis fails (`false`) or the server stops (`true`).
    fn serve(&mut self, connection: &mut redis::Connection, stop: &Receiver<()>) -> bool {
        let queued = &self.shared.queued;
        let mut batch = Vec::with_capacity(BATCH);
        let mut next_tick = Instant::now();
        loop {
            // The cluster's timed work takes the registry lock: only when it is due, not per batch.
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + self.state.registry.cluster_tick();
            }
            let wait = next_tick.saturating_duration_since(Instant::now());
            let stopping = match queued.recv_timeout(wait.min(Duration::from_secs(1))) {
                Ok(item) => {
                    batch.push(item);
                    false
                }
                Err(RecvTimeoutError::Timeout) => stopped(stop),
                Err(RecvTimeoutError::Disconnected) => true,
            };
            while batch.len() < BATCH
                && let Ok(item) = queued.try_recv()
            {
                batch.push(item);
            }
            if Instant::now() >= self.next_refresh {
                self.next_refresh = Instant::now() + CLAIM_REFRESH;
                if !self.refresh_claims(connection) {
                    return false;
                }
            }
            if !batch.is_empty() && !self.send(connection, &mut batch) {
                return false;
            }
            // Messages were dropped on a full queue: once there is room, publish the peers again,
            // at most once a heartbeat, so that the others' view is whole again.
            let dropped = self.shared.dropped_queue_full.load(Ordering::Relaxed);
            if dropped != self.dropped_seen && queued.len() < queued.capacity().unwrap_or(usize::MAX) / 2 {
                let due = self.last_resync.is_none_or(|at| at.elapsed() >= self.config.liveness / 3);
                if due {
                    self.dropped_seen = dropped;
                    self.resync();
                }
            }
            if stopping || stopped(stop) {
                while let Ok(item) = queued.try_recv() {
                    batch.push(item);
                }
                if !batch.is_empty() {
                    self.send(connection, &mut batch);
                }
                // The claims of a stopped instance lapse at once.
                let _: redis::RedisResult<i64> =
                    redis::cmd("DEL").arg(self.config.alive_key(&self.config.instance)).query(connection);
                return true;
            }
        }
    }

    /// Sends `batch` as one pipeline and answers its claims; `false` if Redis failed.
    ///
    /// Messages for one channel that follow each other in the batch go as one, a JSON array of
    /// them (up to [`MERGED_BYTES`]): an instance that receives a burst (a thousand peers announcing
    /// at once) handles it under one lock and writes each of its peers the whole burst at once,
    /// instead of once per message. Only neighbours are merged, so the order holds.
    fn send(&mut self, connection: &mut redis::Connection, batch: &mut Vec<ToRedis>) -> bool {
        let mut pipe = redis::pipe();
        let mut claims = Vec::new();
        let alive_prefix = self.config.alive_key("");
        let mut merging = Merging::default();
        for item in batch.drain(..) {
            // Anything but a message ends the run being merged: it goes first, so the order holds.
            if !matches!(item, ToRedis::Publish { .. })
                && let Some(run) = merging.finish()
            {
                publish(&mut pipe, run);
            }
            match item {
                ToRedis::Publish { channel, text } => {
                    if let Some(run) = merging.add(channel, text) {
                        publish(&mut pipe, run);
                    }
                }
                ToRedis::Heartbeat { channel, text } => {
                    let ttl = self.config.liveness.as_millis() as u64;
                    pipe.cmd("SET")
                        .arg(self.config.alive_key(&self.config.instance))
                        .arg(1)
                        .arg("PX")
                        .arg(ttl)
                        .ignore();
                    publish(&mut pipe, (channel, text));
                }
                ToRedis::Claim { peer, reply } => {
                    let key = self.config.peer_key(peer);
                    pipe.cmd("EVAL").arg(CLAIM_SCRIPT).arg(1).arg(key).arg(&self.config.instance);
                    pipe.arg(CLAIM_TTL.as_millis() as u64).arg(&alive_prefix);
                    claims.push(reply);
                }
                ToRedis::Release { peer } => {
                    let key = self.config.peer_key(peer);
                    pipe.cmd("EVAL").arg(RELEASE_SCRIPT).arg(1).arg(key).arg(&self.config.instance).ignore();
                }
            }
        }
        if let Some(run) = merging.finish() {
            publish(&mut pipe, run);
        }
        let count = pipe.len() as u64;
        match pipe.query::<Vec<i64>>(connection) {
            Ok(granted) => {
                self.shared.published.fetch_add(count, Ordering::Relaxed);
                for (reply, granted) in claims.into_iter().zip(granted) {
                    let _ = reply.try_send(if granted == 1 { Claim::Granted } else { Claim::Taken });
                }
                true
            }
            Err(err) => {
                for reply in claims {
                    let _ = reply.try_send(Claim::Unknown);
                }
                log::warn!("cluster publisher: Redis failed ({err}); reconnecting");
                false
            }
        }
    }

    /// Claims every local peer's id again; a peer whose id a live instance holds is closed here.
    fn refresh_claims(&mut self, connection: &mut redis::Connection) -> bool {
        let peers = self.state.registry.peer_ids();
        let alive_prefix = self.config.alive_key("");
        for chunk in peers.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for &peer in chunk {
                pipe.cmd("EVAL").arg(CLAIM_SCRIPT).arg(1).arg(self.config.peer_key(peer)).arg(&self.config.instance);
                pipe.arg(CLAIM_TTL.as_millis() as u64).arg(&alive_prefix);
            }
            match pipe.query::<Vec<i64>>(connection) {
                Ok(granted) => {
                    for (&peer, granted) in chunk.iter().zip(granted) {
                        if granted != 1 {
                            self.state.registry.refuse_duplicate(peer);
                        }
                    }
                }
                Err(err) => {
                    log::warn!("cluster publisher: Redis failed renewing claims ({err}); reconnecting");
                    return false;
                }
            }
        }
        true
    }

    fn resync(&mut self) {
        self.last_resync = Some(Instant::now());
        self.state.registry.cluster_resync();
    }
}

/// Adds the publishing of `text` on `channel` to the pipeline.
fn publish(pipe: &mut redis::Pipeline, (channel, text): (String, String)) {
    pipe.cmd("PUBLISH").arg(channel).arg(text).ignore();
}

/// Neighbouring messages for one channel, being merged into one (see [`Publisher::send`]).
#[derive(Default)]
struct Merging {
    /// The channel, its messages so far, and their size as one JSON array.
    run: Option<(String, Vec<String>, usize)>,
}

impl Merging {
    /// Adds a message for `channel`; returns the run it ends (another channel, or
    /// [`MERGED_BYTES`] reached), ready to publish.
    fn add(&mut self, channel: String, text: String) -> Option<(String, String)> {
        if let Some((to, texts, bytes)) = &mut self.run
            && *to == channel
            && *bytes + text.len() < MERGED_BYTES
        {
            *bytes += text.len() + 1;
            texts.push(text);
            return None;
        }
        let bytes = text.len() + 2;
        let ended = self.finish();
        self.run = Some((channel, vec![text], bytes));
        ended
    }

    /// Ends the run: one message as it is, several as a JSON array of them.
    fn finish(&mut self) -> Option<(String, String)> {
        let (channel, mut texts, _) = self.run.take()?;
        let text = if texts.len() == 1 { texts.pop()? } else { format!("[{}]", texts.join(",")) };
        Some((channel, text))
    }
}

#[cfg(test)]
mod tests {
    use super::{MERGED_BYTES, Merging};

    #[test]
    fn merges_neighbours_for_one_channel_only_and_up_to_the_bound() {
        let mut merging = Merging::default();
        assert_eq!(merging.add("a".into(), "1".into()), None);
        assert_eq!(merging.add("a".into(), "2".into()), None);
        assert_eq!(merging.add("b".into(), "3".into()), Some(("a".into(), "[1,2]".into())));
        assert_eq!(merging.finish(), Some(("b".into(), "3".into())), "one message goes as it is");
        assert_eq!(merging.finish(), None);
        let big = "x".repeat(MERGED_BYTES / 2);
        assert_eq!(merging.add("a".into(), big.clone()), None);
        assert_eq!(merging.add("a".into(), big.clone()), Some(("a".into(), big.clone())), "past the bound");
        assert_eq!(merging.finish(), Some(("a".into(), big)));
    }
}
