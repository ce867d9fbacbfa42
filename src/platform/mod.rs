//! Workarounds for the kernel and the allocator, each with its measured reason. The rest of the
//! server calls them through the few functions each module offers; this is the only place with
//! `unsafe` code and system calls.
#![allow(unsafe_code)]

pub(crate) mod fd_limit;
pub(crate) mod futex_hash;
pub(crate) mod malloc;
pub(crate) mod proc_stats;
pub(crate) mod socket_flags;
pub(crate) mod thread_budget;
pub(crate) mod thread_name;
pub(crate) mod time_slice;
