//! The sweeper thread: every `CLEANUP_INTERVAL_SECS` it pings every peer and closes the idle ones.
//!
//! Any frame from a peer, a pong included, counts as activity, so a live client (browsers answer
//! pings by themselves) is never idle. A peer whose TCP connection died silently answers nothing and
//! is closed once it has been silent for `PEER_TIMEOUT_SECS` (contract §4); its network is told it
//! left. A peer still registered a whole interval after being asked to close is cut off.

use std::sync::Arc;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock::unix_millis;
use crate::outbox::Outbound;
use crate::server::ServerState;

/// Runs until `stop` is dropped (or sent to).
pub(crate) fn run_sweeper(state: Arc<ServerState>, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(state.config.cleanup_interval) {
            Err(RecvTimeoutError::Timeout) => sweep(&state),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn sweep(state: &ServerState) {
    let now = unix_millis();
    let mut closed = 0;
    for peer in state.registry.handles() {
        if peer.is_closing() {
            peer.kill();
        } else if peer.idle_for(now) >= state.config.peer_timeout {
            peer.close(1000, "Idle timeout");
            closed += 1;
        } else {
            peer.send_control(Outbound::Ping);
        }
    }
    if closed > 0 {
        crate::log_info!("closed {closed} idle peers");
    }
}
