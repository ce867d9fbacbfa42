//! Small helpers every part uses: the wall clock, throttled warnings, named threads.

pub(crate) mod clock;
pub(crate) mod threads;
pub(crate) mod throttled_log;
