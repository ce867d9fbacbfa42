//! The relay ids a hub has handled recently, so that it handles each message once however many
//! paths bring it: two generations of ids, turned over every [`SEEN_TTL`] (or early, when a
//! generation is full, so that the set stays bounded under any flood).

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long an id is remembered (at least; ids live for one to two of these). Copies of a message
/// arrive within milliseconds of each other; the reference de-duplicates for 5 s.
pub const SEEN_TTL: Duration = Duration::from_secs(10);
/// Most ids remembered per generation; past it the generations turn over early (a very old
/// duplicate may then get through once more).
const SEEN_MAX: usize = 200_000;

/// Relay ids seen recently (see the module docs).
pub struct SeenIds {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    turned_at: Instant,
}

impl SeenIds {
    pub fn new(now: Instant) -> SeenIds {
        SeenIds { current: HashSet::new(), previous: HashSet::new(), turned_at: now }
    }

    /// Records `id` at `now`; `true` the first time it is seen.
    pub fn first_time(&mut self, id: u64, now: Instant) -> bool {
        if now.saturating_duration_since(self.turned_at) >= SEEN_TTL || self.current.len() >= SEEN_MAX {
            self.previous = std::mem::take(&mut self.current);
            self.turned_at = now;
        }
        if self.previous.contains(&id) {
            return false;
        }
        self.current.insert(id)
    }

    /// Whether `id` was seen, without recording it.
    pub fn contains(&self, id: u64) -> bool {
        self.current.contains(&id) || self.previous.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_counts_once_until_two_generations_have_passed() {
        let start = Instant::now();
        let mut seen = SeenIds::new(start);
        assert!(seen.first_time(7, start));
        assert!(!seen.first_time(7, start + SEEN_TTL / 2));
        // One turnover later it is in the previous generation: still a duplicate.
        assert!(!seen.first_time(7, start + SEEN_TTL + Duration::from_millis(1)));
        // Two turnovers later it is forgotten.
        assert!(seen.first_time(7, start + SEEN_TTL * 3));
    }

    #[test]
    fn a_flood_of_ids_turns_the_generations_over_early() {
        let start = Instant::now();
        let mut seen = SeenIds::new(start);
        for id in 0..(SEEN_MAX as u64 * 3) {
            seen.first_time(id, start);
        }
        assert!(seen.current.len() + seen.previous.len() <= 2 * SEEN_MAX);
    }
}
