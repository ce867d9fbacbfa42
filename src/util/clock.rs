//! Wall-clock helpers: Unix milliseconds for message `timestamp`s and ISO-8601 strings for HTTP replies.
//!
//! The protocol stamps every message with `Date.now()`-style milliseconds and the HTTP endpoints report
//! `new Date().toISOString()`-style UTC strings; both are produced here without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()` reports them.
pub(crate) fn unix_millis() -> u64 {
    since_epoch(SystemTime::now()).as_millis() as u64
}

/// Stamps for a server's own announcements: microseconds since the epoch, strictly increasing, so
/// that a later announcement of a peer wins over an earlier one on any server (hub or instance).
#[derive(Debug, Default)]
pub(crate) struct AnnouncementStamps {
    last: u64,
}

impl AnnouncementStamps {
    pub(crate) fn next(&mut self) -> u64 {
        self.last = (unix_millis() * 1000).max(self.last + 1);
        self.last
    }
}

/// `time` as an ISO-8601 UTC string with millisecond precision, e.g. `2026-11-24T17:41:00.123Z`,
/// the format of JavaScript's `Date.prototype.toISOString()`.
pub(crate) fn iso8601(time: SystemTime) -> String {
    let since = since_epoch(time);
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let second_of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since.subsec_millis()
    )
}

fn since_epoch(time: SystemTime) -> Duration {
    // A clock set before 1970 is reported as the epoch rather than failing a reply.
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Converts days since 1970-01-01 into a (year, month, day) civil date.
/// This is Howard Hinnant's `civil_from_days` algorithm, exact for the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_stamps_always_increase() {
        let mut stamps = AnnouncementStamps::default();
        let (first, second) = (stamps.next(), stamps.next());
        assert!(second > first && first >= unix_millis().saturating_sub(1000) * 1000);
    }

    #[test]
    fn formats_the_epoch() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn formats_a_leap_day_with_millis() {
        // 2024-02-29T12:34:56.789Z
        let time = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(iso8601(time), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn formats_the_end_of_a_century_year() {
        // 2000-12-31T23:59:59.000Z
        let time = UNIX_EPOCH + Duration::from_secs(978_307_199);
        assert_eq!(iso8601(time), "2000-12-31T23:59:59.000Z");
    }
}
