//! A request rate in two tumbling windows: `flood_window_secs`, and the shorter
//! `flood_burst_secs` in which the same rate makes a flood too.
//!
//! Flood tools send for as long as their operator lets them: seconds or hours. A burst of a
//! few seconds at a flood's rate is a flood, though it never fills the long window with
//! `flood_min_requests`; the burst window catches it at the same rate (its threshold is
//! `flood_min_requests` scaled to its length, rounded up). Legitimate senders at a line stay
//! far below that rate over any few seconds: a provider's calls arrive at tens per minute, a
//! phone re-registers every few minutes, a scanner's sweep or a user-name search runs at a
//! few to tens of requests per second.

use super::ThreatsConfig;
use crate::model::Timestamp;

/// The flood thresholds of a `[threats]` section.
#[derive(Clone, Copy, Debug)]
pub(super) struct FloodRule {
    pub(super) window: f64,
    pub(super) burst: f64,
    /// Requests within `window` that make a flood.
    pub(super) min_requests: u64,
    /// Requests within `burst` that make a flood (the same rate).
    pub(super) burst_min: u64,
}

impl FloodRule {
    /// The rule for one peer's requests.
    pub(super) fn of(cfg: &ThreatsConfig) -> FloodRule {
        FloodRule::with(cfg, cfg.flood_min_requests)
    }

    /// The rule for requests at one line from many sources.
    pub(super) fn many_sources(cfg: &ThreatsConfig) -> FloodRule {
        FloodRule::with(cfg, cfg.flood_sources_min_requests)
    }

    fn with(cfg: &ThreatsConfig, min_requests: u32) -> FloodRule {
        let window = cfg.flood_window_secs.max(1);
        let burst = cfg.flood_burst_secs.clamp(1, window);
        let min_requests = u64::from(min_requests);
        FloodRule {
            window: f64::from(window),
            burst: f64::from(burst),
            min_requests,
            burst_min: (min_requests * u64::from(burst)).div_ceil(u64::from(window)),
        }
    }

    /// Whether peaks of `window_max` and `burst_max` requests are a flood.
    pub(super) fn floods(&self, window_max: u64, burst_max: u64) -> bool {
        window_max >= self.min_requests || burst_max >= self.burst_min
    }

    /// The rate (requests per second) that makes peaks of `window_max` and `burst_max` a
    /// flood, and the count and window length it is of: the flood window's when it filled,
    /// else the burst's.
    pub(super) fn peak(&self, window_max: u64, burst_max: u64) -> (f64, u64, f64) {
        if window_max < self.min_requests && burst_max >= self.burst_min {
            (burst_max as f64 / self.burst, burst_max, self.burst)
        } else {
            (window_max as f64 / self.window, window_max, self.window)
        }
    }
}

/// Requests in the current flood window and the current burst window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rate {
    pub(super) start: Timestamp,
    pub(super) count: u64,
    burst_start: Timestamp,
    pub(super) burst_count: u64,
}

impl Rate {
    pub(super) fn new(ts: Timestamp) -> Rate {
        Rate {
            start: ts,
            count: 0,
            burst_start: ts,
            burst_count: 0,
        }
    }

    /// Counts a request at `ts`. Returns whether the long window restarted with it (a fresh
    /// window). A request older than a window (events come out of time order: a call is told
    /// when it ends, several workers feed one table) is no longer part of any rate seen now:
    /// it counts in a window only while it is within that window's length of its start.
    pub(super) fn count(&mut self, ts: Timestamp, rule: &FloodRule) -> Counted {
        let mut restarted = false;
        if ts.secs_since(self.start) >= rule.window {
            self.start = ts;
            self.count = 0;
            restarted = true;
        }
        if ts.secs_since(self.burst_start) >= rule.burst {
            self.burst_start = ts;
            self.burst_count = 0;
        }
        if self.start.secs_since(ts) >= rule.window {
            return Counted {
                restarted,
                counted: false,
            };
        }
        self.count += 1;
        if self.burst_start.secs_since(ts) < rule.burst {
            self.burst_count += 1;
        }
        Counted {
            restarted,
            counted: true,
        }
    }

    /// Whether the current windows are at a flood's rate.
    pub(super) fn flooding(&self, rule: &FloodRule) -> bool {
        rule.floods(self.count, self.burst_count)
    }
}

/// What [`Rate::count`] did with a request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Counted {
    pub(super) restarted: bool,
    pub(super) counted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> FloodRule {
        FloodRule::of(&ThreatsConfig::default())
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    /// Sends `n` requests evenly over `secs` from `t0_ms`; returns the peaks seen.
    fn send(rate: &mut Rate, rule: &FloodRule, t0_ms: i64, n: i64, secs: f64) -> (u64, u64) {
        let (mut wmax, mut bmax) = (0, 0);
        let step = secs * 1000.0 / n as f64;
        for i in 0..n {
            rate.count(at(t0_ms + (i as f64 * step) as i64), rule);
            wmax = wmax.max(rate.count);
            bmax = bmax.max(rate.burst_count);
        }
        (wmax, bmax)
    }

    #[test]
    fn burst_threshold_is_the_window_rate_rounded_up() {
        let r = rule();
        assert_eq!((r.min_requests, r.burst_min), (500, 100));
        let cfg = ThreatsConfig {
            flood_window_secs: 10,
            flood_burst_secs: 3,
            flood_min_requests: 7,
            ..ThreatsConfig::default()
        };
        assert_eq!(FloodRule::of(&cfg).burst_min, 3);
    }

    #[test]
    fn a_short_burst_at_a_floods_rate_is_a_flood() {
        // 494 requests in 6 s (82/s): short of 500 in 10 s, far over 100 in 2 s.
        let r = rule();
        let mut rate = Rate::new(at(0));
        let (w, b) = send(&mut rate, &r, 0, 494, 6.0);
        assert!(w < r.min_requests);
        assert!(r.floods(w, b), "window {w}, burst {b}");
        let (peak, n, secs) = r.peak(w, b);
        assert_eq!(secs, 2.0);
        assert_eq!(peak, n as f64 / 2.0);
        assert!(peak > 50.0);
    }

    #[test]
    fn a_search_at_a_tools_pace_is_no_flood() {
        // 30 requests per second for a minute: a fast sweep or search, not a flood.
        let r = rule();
        let mut rate = Rate::new(at(0));
        let (w, b) = send(&mut rate, &r, 0, 1800, 60.0);
        assert!(!r.floods(w, b), "window {w}, burst {b}");
    }

    #[test]
    fn old_requests_count_in_no_window() {
        let r = rule();
        let mut rate = Rate::new(at(0));
        rate.count(at(20_000), &r);
        let c = rate.count(at(5_000), &r);
        assert!(!c.counted);
        assert_eq!((rate.count, rate.burst_count), (1, 1));
        // Within the window but before the burst window: the long window only.
        let c = rate.count(at(15_000), &r);
        assert!(c.counted);
        assert_eq!((rate.count, rate.burst_count), (2, 1));
    }
}
