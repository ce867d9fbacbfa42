//! Cluster mode's threads: several instances behind one address share what one instance must tell
//! the others through Redis (`CLUSTER_REDIS_URL`). Two blocking Redis connections, each on a thread
//! of its own: the publisher (`publisher.rs`) sends everything, in order, from one bounded queue,
//! and claims peer ids; the subscriber (`subscriber.rs`) receives, and follows one channel per
//! network with peers here. What they carry, and what it means, is `registry::cluster`.

pub(crate) mod publisher;
pub(crate) mod subscriber;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::context::ServerState;
use crate::protocol::peer_id::PeerId;
use crate::registry::cluster::{Claim, ClusterShared, ToRedis};
use crate::util::threads::contain_panic;

/// Stack of a Redis thread: it parses replies and JSON, like a peer's reader.
const REDIS_THREAD_STACK: usize = 256 * 1024;
/// Longest a new connection waits for its peer id to be claimed; past it, it is admitted on this
/// instance's word alone and claimed again later.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// First delay before connecting to Redis again; each failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Time allowed to connect to Redis, and for one command or pipeline to be answered.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts the publisher and the subscriber; they stop when `stop` is dropped. Returns the
/// publisher's handle, for shutdown to wait on its farewell; the subscriber ends by itself.
pub(crate) fn start(state: &Arc<ServerState>, stop: &Receiver<()>) -> std::io::Result<JoinHandle<()>> {
    let (publisher_state, publisher_stop) = (state.clone(), stop.clone());
    let publisher = thread::Builder::new().name("cluster-publisher".into()).stack_size(REDIS_THREAD_STACK);
    let publisher = publisher
        .spawn(move || contain_panic("cluster-publisher", || publisher::run(&publisher_state, &publisher_stop)))?;
    let (subscriber_state, subscriber_stop) = (state.clone(), stop.clone());
    let subscriber = thread::Builder::new().name("cluster-subscriber".into()).stack_size(REDIS_THREAD_STACK);
    subscriber
        .spawn(move || contain_panic("cluster-subscriber", || subscriber::run(&subscriber_state, &subscriber_stop)))?;
    Ok(publisher)
}

/// Claims `peer`'s id for this instance, waiting at most [`CLAIM_WAIT`]. Runs on the new
/// connection's own thread, which has nothing else to do meanwhile; no reader waits for it.
pub(crate) fn claim(shared: &ClusterShared, peer: PeerId) -> Claim {
    if !shared.publisher_up.load(Ordering::Acquire) {
        return Claim::Unknown;
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    if !shared.send(ToRedis::Claim { peer, reply }) {
        return Claim::Unknown;
    }
    answer.recv_timeout(CLAIM_WAIT).unwrap_or(Claim::Unknown)
}

/// The Redis client of `CLUSTER_REDIS_URL` (with `CLUSTER_REDIS_CA_FILE`'s authority for TLS), or
/// why there can be none.
fn client(config: &crate::config::Config) -> Result<redis::Client, String> {
    let url = config.cluster_redis_url.as_deref().unwrap_or_default();
    let client = match &config.cluster_redis_ca_file {
        None => redis::Client::open(url),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|err| format!("CLUSTER_REDIS_CA_FILE {path}: {err}"))?;
            let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
            redis::Client::build_with_tls(url, certificates)
        }
    };
    client.map_err(|err| err.to_string())
}

/// Connects to Redis, retrying with capped exponential back-off until it answers or `stop` is
/// dropped (then `None`). Each new kind of failure is logged once.
fn connect(
    client: &redis::Client,
    role: &str,
    shared: &ClusterShared,
    stop: &Receiver<()>,
) -> Option<redis::Connection> {
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    loop {
        match client.get_connection_with_timeout(REDIS_TIMEOUT) {
            Ok(connection) => {
                let timeouts = connection
                    .set_read_timeout(Some(REDIS_TIMEOUT))
                    .and_then(|()| connection.set_write_timeout(Some(REDIS_TIMEOUT)));
                match timeouts {
                    Ok(()) => return Some(connection),
                    Err(err) => last_error = err.to_string(),
                }
            }
            Err(err) => {
                let text = err.to_string();
                *shared.last_error.lock() = Some(text.clone());
                if text != last_error {
                    log::warn!("cluster {role}: cannot reach Redis ({text}); retrying with back-off");
                    last_error = text;
                }
            }
        }
        if let Err(RecvTimeoutError::Disconnected) = stop.recv_timeout(backoff) {
            return None;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether the server asked its threads to stop (the sending side of `stop` is gone).
fn stopped(stop: &Receiver<()>) -> bool {
    matches!(stop.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected))
}
