//! The subscriber (`cluster-subscriber`): one Redis connection in subscribe mode, following the
//! cluster's channel, this instance's own channel, and the channel of every network with peers
//! here. Each message is handed to the registry (`Registry::cluster_message`). Networks opening and
//! closing set a flag and publish a `wake` on this instance's channel, which gets this thread out
//! of its wait to follow or leave them.
//!
//! Losing Redis (an error, or nothing at all, not even this instance's own heartbeat, for a whole
//! `CLUSTER_INSTANCE_TTL_SECS` and no answer to a ping) drops every remote peer (the local ones
//! hear they left) until it is back; then every channel is followed again and each network caught
//! up (`sync`).

use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use redis::{PubSub, RedisResult};

use crate::cluster::{client, connect, stopped};
use crate::context::ServerState;

/// Most channels named in one SUBSCRIBE.
const CHANNELS_PER_SUBSCRIBE: usize = 256;

/// Runs until `stop` is dropped.
pub(crate) fn run(state: &ServerState, stop: &Receiver<()>) {
    let (Some(shared), Some(url)) = (state.cluster.as_ref(), state.config.cluster_redis_url.as_deref()) else {
        return;
    };
    let Ok(client) = client(&state.config) else { return }; // the publisher says why
    let shown = crate::config::url_for_display(url);
    while let Some(mut connection) = connect(&client, "subscriber", shared, stop) {
        let result = follow(&mut connection.as_pubsub(), state, &shown, stop);
        let was_up = shared.subscriber_up.swap(false, Ordering::AcqRel);
        state.registry.cluster_connection_lost();
        match result {
            Ok(()) => return,
            Err(err) if was_up => {
                log::warn!("cluster subscriber: lost Redis ({err}); remote peers are out of reach until it is back")
            }
            Err(err) => log::warn!("cluster subscriber: Redis failed ({err}); retrying"),
        }
    }
}

/// Subscribes to everything this instance follows, catches up, then hands each message to the
/// registry until Redis fails (`Err`) or the server stops (`Ok`).
fn follow(pubsub: &mut PubSub<'_>, state: &ServerState, shown: &str, stop: &Receiver<()>) -> RedisResult<()> {
    let (Some(shared), Some(config)) = (state.cluster.as_ref(), state.cluster_config.as_ref()) else {
        return Ok(());
    };
    pubsub.set_read_timeout(Some(config.liveness))?;
    pubsub.subscribe(&[config.cluster_channel(), config.instance_channel(&config.instance)])?;
    let networks = state.registry.cluster_networks();
    for chunk in networks.chunks(CHANNELS_PER_SUBSCRIBE) {
        pubsub.subscribe(chunk.iter().map(|n| config.network_channel(n)).collect::<Vec<_>>())?;
    }
    shared.subscriber_up.store(true, Ordering::Release);
    log::info!("cluster: following {} networks through Redis at {shown}", networks.len());
    state.registry.cluster_connection_restored();
    while !stopped(stop) {
        match pubsub.get_message() {
            Ok(message) => {
                shared.received.fetch_add(1, Ordering::Relaxed);
                if let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) {
                    state.registry.cluster_message(text);
                }
            }
            // Silence for a whole TTL: this instance's own heartbeats stopped arriving. Redis may
            // be stuck or the publisher away; a ping tells which.
            Err(err) if err.is_timeout() => {
                pubsub.ping::<String>()?;
            }
            Err(err) => return Err(err),
        }
        if shared.subscriptions_pending.load(Ordering::Acquire) {
            for (network, start) in state.registry.cluster_subscription_changes() {
                let channel = config.network_channel(&network);
                if start {
                    pubsub.subscribe(&channel)?;
                    state.registry.cluster_subscribed(&network);
                } else {
                    pubsub.unsubscribe(&channel)?;
                }
            }
        }
    }
    Ok(())
}
