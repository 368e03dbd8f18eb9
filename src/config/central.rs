//! `[central]`: the correlator of many sensors (only `simboxd central` reads it). A leaf: the
//! config aggregate and `central` import it.

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;
use std::path::PathBuf;

/// `[central]`: the correlator (only `simboxd central` reads it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CentralConfig {
    /// Durable JetStream consumer name shared by central instances.
    pub durable: String,
    /// State file (redb): line evidence per sensor, sensor alerts received, open episodes.
    pub state_path: PathBuf,
    /// Lines held; beyond it the line updated longest ago is dropped (counted).
    pub max_lines: usize,
    /// A sensor's view of a line not refreshed for this long (packet time) is dropped.
    pub line_idle_secs: u32,
    /// Messages fetched, applied and committed together before their acks.
    pub batch: usize,
    /// Seconds JetStream waits for an ack before redelivering a message.
    pub ack_wait_secs: u32,
    /// Threat events of all sensors kept in the state file (the threat table is rebuilt from
    /// them at start); beyond it the oldest go (counted).
    pub max_threat_events: u64,
    /// Sensor alert keys and threat-event chunk keys remembered (each) to drop redeliveries;
    /// beyond it the oldest are forgotten (counted).
    pub max_dedup_keys: u64,
    /// Packet seconds a site must stay dissolved before its alert is cleared (a site missing a
    /// member between two sensors' summaries stays the same episode).
    pub site_clear_secs: u32,
}

impl Default for CentralConfig {
    fn default() -> Self {
        CentralConfig {
            durable: "simboxd-central".into(),
            state_path: PathBuf::from("/var/lib/simboxd/central.redb"),
            max_lines: 1_000_000,
            line_idle_secs: 7 * 86_400,
            batch: 512,
            ack_wait_secs: 30,
            max_threat_events: 200_000,
            max_dedup_keys: 1_000_000,
            site_clear_secs: 300,
        }
    }
}

impl CentralConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.durable.is_empty()
            || !self
                .durable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "durable",
                format!(
                    "central.durable {:?}: letters, digits, '-' or '_'",
                    self.durable
                ),
            ));
        }
        if self.state_path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "state_path",
                "central.state_path must not be empty".into(),
            ));
        }
        if self.max_lines == 0 {
            return Err(Invalid::new(
                "max_lines",
                "central.max_lines must be at least 1".into(),
            ));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(Invalid::new(
                "batch",
                "central.batch must be between 1 and 10000".into(),
            ));
        }
        if !(1..=3600).contains(&self.ack_wait_secs) {
            return Err(Invalid::new(
                "ack_wait_secs",
                "central.ack_wait_secs must be between 1 and 3600".into(),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.max_threat_events) {
            return Err(Invalid::new(
                "max_threat_events",
                "central.max_threat_events must be between 1000 and 100000000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.site_clear_secs) {
            return Err(Invalid::new(
                "site_clear_secs",
                "central.site_clear_secs must be between 1 and 86400".into(),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.max_dedup_keys) {
            return Err(Invalid::new(
                "max_dedup_keys",
                "central.max_dedup_keys must be between 1000 and 100000000".into(),
            ));
        }
        if self.line_idle_secs < 60 {
            return Err(Invalid::new(
                "line_idle_secs",
                "central.line_idle_secs must be at least 60".into(),
            ));
        }
        Ok(())
    }
}
