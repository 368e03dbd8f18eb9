//! `[evidence]`: packets the daemon keeps for flagged lines (`daemon::evidence` keeps them). A
//! leaf: the config aggregate and the daemon import it.

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;

/// `[evidence]`: packets the daemon keeps for flagged lines (offline `analyze --evidence` is
/// separate and takes no setting from here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Keep a pre-alert ring per line and write flagged lines' packets to disk.
    pub enabled: bool,
    /// Most pcap bytes kept under `<state dir>/evidence` (all alerts). When a write would pass it,
    /// the evidence of the oldest closed alerts is deleted; with none left, packets are dropped.
    pub max_bytes: u64,
    /// Most pcap bytes kept for one alert; later packets of that alert are dropped (counted).
    pub per_alert_max_bytes: u64,
    /// Lines with a pre-alert ring (all engine threads together); beyond it the line whose last
    /// packet is oldest loses its ring (counted). Memory is at most ring_lines x ring_bytes.
    pub ring_lines: usize,
    /// Packets kept in one line's ring (the oldest go first).
    pub ring_packets: usize,
    /// Bytes kept in one line's ring (the oldest packets go first).
    pub ring_bytes: usize,
    /// Media (non-SIP UDP) packets kept whole at the start of each flow of a line ...
    pub media_first: u32,
    /// ... then one in this many. Signalling is always kept.
    pub media_every: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            max_bytes: 1 << 30,
            per_alert_max_bytes: 64 << 20,
            ring_lines: 1024,
            ring_packets: 2000,
            ring_bytes: 256 << 10,
            media_first: 50,
            media_every: 50,
        }
    }
}

/// Smallest per-alert cap: a pcap header and a few SIP messages.
pub const MIN_ALERT_BYTES: u64 = 4096;

impl EvidenceConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.per_alert_max_bytes < MIN_ALERT_BYTES {
            return Err(Invalid::new(
                "per_alert_max_bytes",
                format!("evidence.per_alert_max_bytes must be at least {MIN_ALERT_BYTES}"),
            ));
        }
        if self.max_bytes < self.per_alert_max_bytes {
            return Err(Invalid::new(
                "max_bytes",
                "evidence.max_bytes must be at least evidence.per_alert_max_bytes".to_string(),
            ));
        }
        if !(1..=1_000_000).contains(&self.ring_lines) {
            return Err(Invalid::new(
                "ring_lines",
                "evidence.ring_lines must be between 1 and 1000000".to_string(),
            ));
        }
        if !(16..=1_000_000).contains(&self.ring_packets) {
            return Err(Invalid::new(
                "ring_packets",
                "evidence.ring_packets must be between 16 and 1000000".to_string(),
            ));
        }
        if !(4096..=(64 << 20)).contains(&self.ring_bytes) {
            return Err(Invalid::new(
                "ring_bytes",
                "evidence.ring_bytes must be between 4096 and 67108864".to_string(),
            ));
        }
        if self.media_every == 0 {
            return Err(Invalid::new(
                "media_every",
                "evidence.media_every must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}
