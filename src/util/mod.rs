//! Small helpers every part uses: the wall clock, throttled warnings.

pub(crate) mod clock;
pub(crate) mod throttled_log;
