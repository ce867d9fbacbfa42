//! Workarounds for the kernel and the allocator, each with its measured reason. The rest of the
//! server calls them through the few functions each module offers; this is the only place with
//! `unsafe` code and system calls.
#![allow(unsafe_code)]

pub(crate) mod fd_limit;
pub(crate) mod fresh_thread;
pub(crate) mod futex_hash;
pub(crate) mod idle_stack;
pub(crate) mod listen_backlog;
pub(crate) mod malloc;
pub(crate) mod poll;
pub(crate) mod proc_stats;
pub(crate) mod service_heap;
pub(crate) mod socket_flags;
pub(crate) mod thread_budget;
pub(crate) mod thread_name;
pub(crate) mod time_slice;

use std::sync::OnceLock;

/// Whether the workaround `name` is switched off for a measurement: `PEERPIGEON_WITHOUT` lists the
/// ones to leave out, comma-separated (`futex_hash`, `time_slice`, `http_desk`, `awaiting_request`,
/// `listen_backlog`, `idle_stack`, `fresh_thread`, `fresh_after_burst`, and `broadcast_gate` in
/// `peer/`). It exists so that each workaround's effect can be measured with and without it on the
/// same build (docs/performance.md); a deployment has no reason to set it.
pub(crate) fn switched_off(name: &str) -> bool {
    static WITHOUT: OnceLock<Vec<String>> = OnceLock::new();
    WITHOUT
        .get_or_init(|| {
            let list = std::env::var("PEERPIGEON_WITHOUT").unwrap_or_default();
            list.split(',').map(|item| item.trim().to_string()).filter(|item| !item.is_empty()).collect()
        })
        .iter()
        .any(|item| item == name)
}
