//! The per-peer message rate limit: a token bucket each peer's reader consults before handling a
//! message (`MAX_MESSAGES_PER_SEC`, `MESSAGE_BURST`).
//!
//! A peer may send `burst` messages at once and `per_sec` messages a second after that. A message
//! over the limit is dropped, and the first one of a run gets the peer an `error` reply. A peer that
//! keeps sending while empty-handed, more than a whole burst's worth of dropped messages in a row, is
//! closed with 1008. The bucket lives on the reader's stack: no lock, no sharing.

use std::time::Instant;

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Allow,
    /// Over the limit: drop it; `first` is set on the first drop of a run (time to tell the peer).
    Drop { first: bool },
    /// Over the limit for too long: close the connection.
    Close,
}

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    refilled_at: Instant,
    /// Messages dropped in a row.
    strikes: u32,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `per_sec` a second.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(burst.max(1));
        TokenBucket { capacity, per_sec: f64::from(per_sec), tokens: capacity, refilled_at: now, strikes: 0 }
    }

    /// Takes a token for one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if f64::from(self.strikes) > self.capacity {
            Verdict::Close
        } else {
            Verdict::Drop { first: self.strikes == 1 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_excess_is_dropped_and_reported_once() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert_eq!([bucket.check(start), bucket.check(start), bucket.check(start)], [Verdict::Allow; 3]);
        assert_eq!(bucket.check(start), Verdict::Drop { first: true });
        assert_eq!(bucket.check(start), Verdict::Drop { first: false });
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 1, start);
        assert_eq!(bucket.check(start), Verdict::Allow);
        assert_eq!(bucket.check(start + Duration::from_millis(50)), Verdict::Drop { first: true });
        assert_eq!(bucket.check(start + Duration::from_millis(150)), Verdict::Allow);
    }

    #[test]
    fn hammering_past_a_burst_of_drops_closes() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, 2, start);
        let verdicts: Vec<Verdict> = (0..5).map(|_| bucket.check(start)).collect();
        assert_eq!(
            verdicts[..4],
            [Verdict::Allow, Verdict::Allow, Verdict::Drop { first: true }, Verdict::Drop { first: false }]
        );
        assert_eq!(verdicts[4], Verdict::Close);
    }

    #[test]
    fn an_allowed_message_ends_a_run_of_drops() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 1, start);
        bucket.check(start);
        assert_eq!(bucket.check(start), Verdict::Drop { first: true });
        assert_eq!(bucket.check(start + Duration::from_millis(200)), Verdict::Allow);
        assert_eq!(bucket.check(start + Duration::from_millis(200)), Verdict::Drop { first: true });
    }
}
