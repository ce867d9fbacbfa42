//! What one connection may send: messages a second and bytes a second, each a token bucket that
//! its reader consults, with no lock and nothing shared.
//!
//! Every frame counts as a message, control frames included (a flood of pongs costs as much to
//! read as a flood of pings), and every byte read from the socket counts against the byte rate,
//! whatever frame it belongs to (so a stream of empty continuation frames, which never completes a
//! message, is limited too). What happens at a limit:
//! - A message over the message rate is dropped; the first of a run gets the peer an `error`.
//! - Bytes over the byte rate are not refused but waited for: the reader pauses before reading
//!   more, so the sender's own TCP window fills and the flood costs the sender, not the server.
//! - A connection that stays over a limit for [`GRACE`] (drops or pauses with no second-long quiet
//!   gap between them) is closed with 1008.
//!
//! Peers get `MAX_MESSAGES_PER_SEC` / `MESSAGE_BURST` and `MAX_BYTES_PER_SEC`; hub links, which carry
//! many peers' traffic, get `HUB_LINK_MESSAGES_PER_SEC` and `HUB_LINK_BYTES_PER_SEC`.

use std::time::{Duration, Instant};

/// How long a connection may stay over its limits before it is closed.
pub const GRACE: Duration = Duration::from_secs(3);
/// A gap this long without going over ends a run of going over.
const QUIET_GAP: Duration = Duration::from_secs(1);
/// Longest single pause of a reader over its byte rate; it pauses again if still over.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub messages_per_sec: u32,
    pub message_burst: u32,
    pub bytes_per_sec: u64,
    /// Bytes that may arrive at once before the byte rate applies; at least one largest message.
    pub byte_burst: u64,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Allow,
    /// Over the limit: drop it; `first` is set on the first drop of a run (time to tell the peer).
    Drop { first: bool },
    /// Over the limit for [`GRACE`]: close the connection.
    Close,
}

/// What the reader should do after reading some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Within the byte rate: read on.
    Go,
    /// Over it: pause this long before reading more.
    Pause(Duration),
    /// Over it for [`GRACE`]: close the connection.
    Close,
}

/// A token bucket. Tokens may go below zero (bytes already read are a debt to wait off).
#[derive(Debug)]
struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(per_sec: f64, capacity: f64, now: Instant) -> TokenBucket {
        let capacity = capacity.max(1.0);
        TokenBucket { capacity, per_sec, tokens: capacity, refilled_at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.refilled_at = now;
    }
}

/// The limits of one connection, applied (see the module docs).
#[derive(Debug)]
pub struct RateLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
    /// While over a limit: when this run of going over began, and when it last went over.
    over: Option<(Instant, Instant)>,
}

impl RateLimiter {
    pub fn new(limits: Limits, now: Instant) -> RateLimiter {
        RateLimiter {
            messages: TokenBucket::new(f64::from(limits.messages_per_sec), f64::from(limits.message_burst), now),
            bytes: TokenBucket::new(limits.bytes_per_sec as f64, limits.byte_burst as f64, now),
            over: None,
        }
    }

    /// One frame arrived at `now`.
    pub fn message(&mut self, now: Instant) -> Verdict {
        self.messages.refill(now);
        if self.messages.tokens >= 1.0 {
            self.messages.tokens -= 1.0;
            return Verdict::Allow;
        }
        match self.went_over(now) {
            Over::TooLong => Verdict::Close,
            Over::Began => Verdict::Drop { first: true },
            Over::Continues => Verdict::Drop { first: false },
        }
    }

    /// `count` bytes were read from the socket at `now`.
    pub fn bytes(&mut self, count: usize, now: Instant) -> Pace {
        self.bytes.refill(now);
        self.bytes.tokens -= count as f64;
        if self.bytes.tokens >= 0.0 {
            return Pace::Go;
        }
        if self.went_over(now) == Over::TooLong {
            return Pace::Close;
        }
        let wait = Duration::from_secs_f64(-self.bytes.tokens / self.bytes.per_sec.max(1.0));
        Pace::Pause(wait.min(MAX_PAUSE))
    }

    /// Records going over a limit at `now`, and says where that leaves the run of going over.
    fn went_over(&mut self, now: Instant) -> Over {
        let (began, over) = match self.over {
            Some((began, last)) if now.saturating_duration_since(last) < QUIET_GAP => (began, Over::Continues),
            _ => (now, Over::Began),
        };
        self.over = Some((began, now));
        if now.saturating_duration_since(began) >= GRACE { Over::TooLong } else { over }
    }
}

/// Where a connection stands after going over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// A new run of going over (after a quiet second or more).
    Began,
    Continues,
    /// The run has lasted [`GRACE`].
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages_per_sec: u32, message_burst: u32) -> Limits {
        Limits { messages_per_sec, message_burst, bytes_per_sec: 1000, byte_burst: 2000 }
    }

    #[test]
    fn a_burst_passes_then_excess_is_dropped_and_reported_once() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(limits(10, 3), start);
        assert_eq!([limiter.message(start), limiter.message(start), limiter.message(start)], [Verdict::Allow; 3]);
        assert_eq!(limiter.message(start), Verdict::Drop { first: true });
        assert_eq!(limiter.message(start), Verdict::Drop { first: false });
    }

    #[test]
    fn tokens_come_back_at_the_configured_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(limits(10, 1), start);
        assert_eq!(limiter.message(start), Verdict::Allow);
        assert_eq!(limiter.message(start + Duration::from_millis(50)), Verdict::Drop { first: true });
        assert_eq!(limiter.message(start + Duration::from_millis(150)), Verdict::Allow);
    }

    #[test]
    fn staying_over_the_message_rate_for_the_grace_period_closes() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(limits(100, 10), start);
        // 1,000 messages a second against a limit of 100: over all the time.
        let mut closed_at = None;
        for n in 0..10_000u64 {
            let now = start + Duration::from_millis(n);
            if limiter.message(now) == Verdict::Close {
                closed_at = Some(n);
                break;
            }
        }
        let closed_at = closed_at.expect("closed");
        assert!((3000..3100).contains(&closed_at), "closed after {closed_at} ms");
    }

    #[test]
    fn going_over_now_and_then_never_closes() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(limits(10, 5), start);
        // A burst of 20 every two seconds for a minute: some dropped each time, never closed.
        for burst in 0..30u64 {
            let now = start + Duration::from_secs(2 * burst);
            for _ in 0..20 {
                assert_ne!(limiter.message(now), Verdict::Close);
            }
        }
    }

    #[test]
    fn bytes_over_the_rate_are_paused_for_then_closed() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(limits(1000, 1000), start);
        assert_eq!(limiter.bytes(2000, start), Pace::Go, "the burst");
        // 500 bytes over at 1,000 bytes a second: half a second's wait, capped.
        assert_eq!(limiter.bytes(500, start), Pace::Pause(MAX_PAUSE));
        let mut now = start;
        let mut closed = false;
        for _ in 0..100 {
            now += Duration::from_millis(100);
            // Sending 10x the rate, never waiting: over all the time, closed after the grace.
            if limiter.bytes(1000, now) == Pace::Close {
                closed = true;
                break;
            }
        }
        assert!(closed && now.duration_since(start) >= GRACE);
    }
}
