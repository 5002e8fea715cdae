//! Wall-clock helpers for tests of per-minute limits and time windows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// rpm/tpm counters are per calendar minute: when the minute is more than `after` seconds
/// old, wait until just past the next one, so a check does not start in its last seconds.
pub async fn away_from_minute_boundary(after: f64) {
    let into = unix_now() % 60.0;
    if into > after {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - into)).await;
    }
}
