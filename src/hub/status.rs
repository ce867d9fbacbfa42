//! The state of each `BOOTSTRAP_HUBS` link (connecting, connected, waiting, skipped, attempts, last
//! error), kept by the link threads and shown by `/hubstats`.

use parking_lot::Mutex;
use serde::Serialize;

/// What `/hubstats` shows of one bootstrap link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub uri: String,
    /// Whether `state` is `connected` (the reference's field; filled in by [`BootstrapLinks::snapshot`]).
    pub connected: bool,
    /// `connecting`, `connected`, `waiting` (to retry) or `skipped` (it is this hub itself).
    pub state: &'static str,
    /// Unix ms of the last connection attempt.
    #[serde(rename = "lastAttempt")]
    pub last_attempt: Option<u64>,
    /// Attempts since the link was last up (0 while it is up), as the reference counts them.
    #[serde(rename = "attemptNumber")]
    pub attempt_number: u64,
    /// Every attempt since start.
    #[serde(rename = "totalAttempts")]
    pub total_attempts: u64,
    #[serde(rename = "lastError")]
    pub last_error: Option<String>,
    #[serde(rename = "connectedSince")]
    pub connected_since: Option<u64>,
}

/// The status of every bootstrap link, shared with the HTTP endpoints.
pub struct BootstrapLinks {
    statuses: Mutex<Vec<LinkStatus>>,
}

impl BootstrapLinks {
    pub fn new(uris: &[String]) -> BootstrapLinks {
        let statuses = uris
            .iter()
            .map(|uri| LinkStatus {
                uri: crate::config::url_for_display(uri),
                connected: false,
                state: "connecting",
                last_attempt: None,
                attempt_number: 0,
                total_attempts: 0,
                last_error: None,
                connected_since: None,
            })
            .collect();
        BootstrapLinks { statuses: Mutex::new(statuses) }
    }

    pub fn snapshot(&self) -> Vec<LinkStatus> {
        let statuses = self.statuses.lock();
        statuses.iter().map(|s| LinkStatus { connected: s.state == "connected", ..s.clone() }).collect()
    }

    pub fn update(&self, index: usize, change: impl FnOnce(&mut LinkStatus)) {
        if let Some(status) = self.statuses.lock().get_mut(index) {
            change(status);
        }
    }
}
