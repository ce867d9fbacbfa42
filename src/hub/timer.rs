//! The mesh timer (`hub-timer`): sends this hub's heartbeats, drops the peers of hubs gone silent,
//! and decides reachability checks when their window closes (the logic is `registry::mesh`; this
//! thread only keeps time). It sleeps until the next of these is due, or until a check opens.

use crossbeam_channel::Receiver;

use crate::context::ServerState;

/// Runs until `stop` is dropped.
pub(crate) fn run(state: &ServerState, stop: &Receiver<()>) {
    let wakeups = state.registry.mesh_timer_wakeups();
    loop {
        let sleep = state.registry.mesh_tick();
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(wakeups) -> _ => {}
            default(sleep) => {}
        }
    }
}
