//! `[daemon]`: process settings of `simboxd run` (user, workers, queue, tick, logging,
//! checkpoints); `simboxd central` reads its logging keys too. A leaf: the daemon and the
//! central import it, it imports neither.

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;

/// Packets per batch the capture thread hands to a worker; `queue_packets` holds at least one.
pub const BATCH_PACKETS: usize = 256;

/// `[daemon]`: process settings of `simboxd run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// User to switch to once the capture is open (as root). Empty: keep the current user.
    pub user: String,
    /// Group to switch to; empty: the user's primary group.
    pub group: String,
    /// Engine threads; packets are sharded over them by line address. Sites and threats are
    /// formed over the lines of all of them. Default: one per core.
    pub workers: usize,
    /// Packets queued per worker before a live capture drops (counted as `queue_full`).
    pub queue_packets: usize,
    /// Seconds of packet time between housekeeping ticks (expiry, re-evaluation).
    pub tick_secs: f64,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    pub log_level: String,
    /// `text` (journald-friendly lines) or `json` (one object per line).
    pub log_format: String,
    /// Seconds between checkpoints of the line profiles that changed (to `state.redb` beside
    /// the outbox); open alert episodes are committed as they change, and everything at stop.
    pub checkpoint_interval_secs: u64,
}

/// One engine thread per core (the capture thread shares them: it costs far less per packet).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            user: "simboxd".to_string(),
            group: "simboxd".to_string(),
            workers: default_workers(),
            queue_packets: 65536,
            tick_secs: 1.0,
            log_level: "info".to_string(),
            log_format: "text".to_string(),
            checkpoint_interval_secs: 30,
        }
    }
}

/// Most worker threads accepted.
pub const MAX_WORKERS: usize = 64;

impl DaemonConfig {
    /// Values that parse but cannot work.
    pub fn validate(&self) -> Result<(), Invalid> {
        let d = self;
        if d.workers == 0 || d.workers > MAX_WORKERS {
            return Err(Invalid::new(
                "workers",
                format!("daemon.workers must be between 1 and {MAX_WORKERS}"),
            ));
        }
        if d.queue_packets < BATCH_PACKETS {
            return Err(Invalid::new(
                "queue_packets",
                format!("daemon.queue_packets must be at least {BATCH_PACKETS}"),
            ));
        }
        if !(d.tick_secs.is_finite() && (0.05..=60.0).contains(&d.tick_secs)) {
            return Err(Invalid::new(
                "tick_secs",
                "daemon.tick_secs must be between 0.05 and 60".to_string(),
            ));
        }
        if !matches!(
            d.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(Invalid::new(
                "log_level",
                format!(
                    "daemon.log_level {:?} is not one of error, warn, info, debug, trace",
                    d.log_level
                ),
            ));
        }
        if !(1..=86_400).contains(&d.checkpoint_interval_secs) {
            return Err(Invalid::new(
                "checkpoint_interval_secs",
                "daemon.checkpoint_interval_secs must be between 1 and 86400".to_string(),
            ));
        }
        if !matches!(d.log_format.as_str(), "text" | "json") {
            return Err(Invalid::new(
                "log_format",
                format!("daemon.log_format {:?} is not text or json", d.log_format),
            ));
        }
        if d.group.is_empty() && d.user.is_empty() {
            // fine: no drop at all
        } else if d.user.is_empty() {
            return Err(Invalid::new(
                "group",
                "daemon.group needs daemon.user".to_string(),
            ));
        }
        Ok(())
    }
}
