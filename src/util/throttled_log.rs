//! A warning that an attacker could make the server write thousands of times a second (a refused
//! socket, a refused hub link): written at most once per interval, with a count of the ones held
//! back, so that a flood costs one log line every few seconds instead of a disk.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a throttled warning may be written.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One kind of warning, throttled (see the module docs). Usable as a `static`.
pub struct ThrottledLog {
    /// When the last line was written, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl ThrottledLog {
    pub const fn new() -> ThrottledLog {
        ThrottledLog { state: Mutex::new((None, 0)) }
    }

    /// Writes `message()` as a warning if [`INTERVAL`] has passed since the last line (adding how
    /// many were held back meanwhile); otherwise only counts it. `message` runs only when written.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let mut state = self.state.lock();
        let now = Instant::now();
        if state.0.is_some_and(|last| now.duration_since(last) < INTERVAL) {
            state.1 += 1;
            return;
        }
        let held_back = std::mem::take(&mut state.1);
        state.0 = Some(now);
        drop(state);
        let message = message();
        if held_back == 0 {
            log::warn!("{message}");
        } else {
            log::warn!("{message} ({held_back} more like it in the last {} s)", INTERVAL.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_a_burst_is_written_and_the_rest_are_counted() {
        let log = ThrottledLog::new();
        let mut written = 0;
        for _ in 0..1000 {
            log.warn(|| {
                written += 1;
                "refused".into()
            });
        }
        assert_eq!(written, 1);
        assert_eq!(log.state.lock().1, 999);
    }
}
