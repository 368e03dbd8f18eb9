//! Logging of one delivery worker's failures and recoveries, rate-limited: the first failure of
//! an outage is logged at once (target and error), then at most one line per `EVERY` with the
//! number of failures since; the first success after failures logs the recovery and how long
//! the target was down. Targets are named `scheme://host:port` (no credentials).

use std::time::{Duration, Instant};

/// Least time between two failure lines of one target.
pub const EVERY: Duration = Duration::from_secs(30);

pub struct DeliveryLog {
    target: String,
    down_since: Option<Instant>,
    last_line: Option<Instant>,
    failures: u64,
    unlogged: u64,
}

impl DeliveryLog {
    pub fn new(target_url: &str) -> DeliveryLog {
        DeliveryLog {
            target: crate::metrics::target_label(target_url),
            down_since: None,
            last_line: None,
            failures: 0,
            unlogged: 0,
        }
    }

    /// A failed attempt; returns whether a line was logged.
    pub fn failed(
        &mut self,
        now: Instant,
        error: &dyn std::fmt::Display,
        retry_in: Duration,
    ) -> bool {
        self.down_since.get_or_insert(now);
        self.failures += 1;
        self.unlogged += 1;
        if self
            .last_line
            .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            return false;
        }
        tracing::warn!(
            target: "simboxd::alert",
            delivery_target = %self.target,
            error = %error,
            failures = self.unlogged,
            retry_in_ms = retry_in.as_millis() as u64,
            "alert delivery failed"
        );
        self.last_line = Some(now);
        self.unlogged = 0;
        true
    }

    /// A successful attempt; returns whether it ended an outage (and logged so).
    pub fn delivered(&mut self, now: Instant) -> bool {
        let Some(since) = self.down_since.take() else {
            return false;
        };
        tracing::info!(
            target: "simboxd::alert",
            delivery_target = %self.target,
            down_secs = now.duration_since(since).as_secs_f64(),
            failures = self.failures,
            "alert delivery recovered"
        );
        self.failures = 0;
        self.unlogged = 0;
        self.last_line = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_logs_then_once_per_period_and_recovery_once() {
        let mut l = DeliveryLog::new("https://u:secret@soc.example:443/hook?k=v");
        assert_eq!(l.target, "https://soc.example:443");
        let t0 = Instant::now();
        let e = "connection refused";
        assert!(l.failed(t0, &e, Duration::from_millis(500)));
        assert!(!l.failed(t0 + Duration::from_secs(1), &e, Duration::from_secs(1)));
        assert!(!l.failed(t0 + Duration::from_secs(29), &e, Duration::from_secs(2)));
        assert!(l.failed(t0 + Duration::from_secs(31), &e, Duration::from_secs(4)));
        assert!(l.delivered(t0 + Duration::from_secs(40)));
        assert!(!l.delivered(t0 + Duration::from_secs(41)));
        // A new outage logs at once again.
        assert!(l.failed(t0 + Duration::from_secs(42), &e, Duration::from_millis(500)));
    }
}
