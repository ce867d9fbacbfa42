//! Hub mode's threads: one per `BOOTSTRAP_HUBS` link this hub opens (`links.rs`, their state in
//! `status.rs`), and the mesh timer (`timer.rs`). What travels over links, and what the mesh
//! remembers, is `registry::mesh`.

pub(crate) mod links;
pub(crate) mod status;
pub(crate) mod timer;

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::Receiver;

use crate::context::ServerState;
use crate::util::threads::contain_panic;

/// Starts the mesh timer and one thread per bootstrap URL. They stop when `stop` is dropped.
pub(crate) fn start(state: &Arc<ServerState>, stop: &Receiver<()>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    let (timer_state, timer_stop) = (state.clone(), stop.clone());
    let timer = thread::Builder::new().name("hub-timer".into()).stack_size(links::HUB_THREAD_STACK);
    threads.push(timer.spawn(move || contain_panic("hub-timer", || timer::run(&timer_state, &timer_stop)))?);
    for (index, uri) in state.config.bootstrap_hubs.iter().enumerate() {
        let (state, stop, uri) = (state.clone(), stop.clone(), uri.clone());
        let name = format!("hub-link-{index}");
        let link = thread::Builder::new().name(name.clone()).stack_size(links::HUB_THREAD_STACK);
        threads.push(link.spawn(move || contain_panic(&name, || links::run_link(index, &uri, &state, &stop)))?);
    }
    Ok(threads)
}
