//! The sweeper thread: every `CLEANUP_INTERVAL_SECS` it pings every peer and closes the idle ones.
//!
//! Any frame from a peer, a pong included, counts as activity, so a live client (browsers answer
//! pings by themselves) is never idle. A peer whose TCP connection died silently answers nothing and
//! is closed once it has been silent for `PEER_TIMEOUT_SECS` (docs/protocol.md §4); its network is told it
//! left. A peer still registered a whole interval after being asked to close is cut off. Once the
//! server has been quiet for five seconds, the thread also hands memory freed by the connection
//! threads back to the operating system. Once a second it samples the process figures `/health`
//! reports (`proc_stats.rs`: too slow to read on each request with thousands of peers).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::context::ServerState;
use crate::peer::queue::Outbound;
use crate::platform::proc_stats;
use crate::util::clock::unix_millis;

/// Runs until `stop` is dropped (or sent to).
pub(crate) fn run_sweeper(state: Arc<ServerState>, stop: Receiver<()>) {
    let interval = state.config.cleanup_interval;
    let tick = interval.min(SAMPLE_INTERVAL);
    let mut last_sweep = Instant::now();
    let mut last_trim = Instant::now();
    let mut handled_before = state.messages_handled.load(Ordering::Relaxed);
    loop {
        match stop.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {
                proc_stats::sample();
                if last_sweep.elapsed() >= interval {
                    sweep(&state);
                    last_sweep = Instant::now();
                }
                if last_trim.elapsed() >= TRIM_INTERVAL {
                    // Only once a burst is over: pages handed back in the middle of one would have
                    // to be faulted straight back in, which costs more than keeping them.
                    let handled = state.messages_handled.load(Ordering::Relaxed);
                    if handled == handled_before {
                        crate::platform::malloc::release_free_memory();
                    }
                    handled_before = handled;
                    last_trim = Instant::now();
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How often the process figures `/health` reports are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How often memory freed by the connection threads is handed back to the operating system.
const TRIM_INTERVAL: Duration = Duration::from_secs(5);

fn sweep(state: &ServerState) {
    let now = unix_millis();
    let mut closed = 0;
    for peer in state.registry.handles() {
        if peer.is_closing() {
            peer.kill();
        } else if peer.idle_for(now) >= state.config.peer_timeout {
            peer.close(1000, "Idle timeout");
            state.metrics.cut_off(crate::metrics::CutOff::Idle);
            closed += 1;
        } else {
            peer.send_control(Outbound::Ping);
        }
    }
    if closed > 0 {
        log::info!("closed {closed} idle peers");
    }
}
