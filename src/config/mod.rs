//! Configuration: TOML with every section optional and every key defaulted.
//!
//! Contract: unknown keys and bad values are errors naming the file, line, column and reason
//! (`ConfigError::Invalid`); a loaded `Config` is valid, so later stages never re-check it.

pub mod central;
pub mod daemon;
pub mod evidence;

use serde::{Deserialize, Serialize};
use simboxd_core::config::{Invalid, LimitsConfig, NetworkConfig};
use simboxd_core::detect::DetectionConfig;
use simboxd_core::engine::EngineConfig;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: crate::capture::CaptureConfig,
    pub network: NetworkConfig,
    pub limits: LimitsConfig,
    pub alert: crate::alert::AlertConfig,
    pub syslog: crate::alert::syslog::SyslogConfig,
    pub webhook: crate::alert::webhook::WebhookConfig,
    pub storage: crate::alert::outbox::StorageConfig,
    pub privacy: crate::privacy::PrivacyConfig,
    /// Line profiles, signal weights and verdict thresholds (see `detect::DetectionConfig`).
    pub detection: DetectionConfig,
    /// Attacks on lines, reported about the attacking peer (see `threats::ThreatsConfig`).
    pub threats: simboxd_core::threats::ThreatsConfig,
    pub daemon: daemon::DaemonConfig,
    pub http: crate::http::HttpConfig,
    /// Publishing to NATS JetStream (sensors) and consuming it (`simboxd central`).
    pub stream: crate::stream::StreamConfig,
    /// `simboxd central`: the correlator of many sensors.
    pub central: central::CentralConfig,
    /// Packets the daemon keeps for flagged lines (see `daemon::evidence`).
    pub evidence: evidence::EvidenceConfig,
}

impl Config {
    /// The sections a run's provenance shows (report, evidence).
    pub fn used_sections(&self) -> crate::report::provenance::UsedSections<'_> {
        crate::report::provenance::UsedSections {
            network: &self.network,
            limits: &self.limits,
            detection: &self.detection,
            privacy: &self.privacy,
        }
    }

    /// The sections alert delivery is built from (a sensor's alerts also go to `[stream]`).
    pub fn delivery(&self) -> crate::alert::delivery::DeliverySections<'_> {
        crate::alert::delivery::DeliverySections {
            alert: &self.alert,
            syslog: &self.syslog,
            webhook: &self.webhook,
            storage: &self.storage,
            stream: Some(&self.stream),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate(text, file)?;
        let mut cfg = cfg;
        crate::geoip::open_geoip(&mut cfg.network).map_err(|message| {
            let (line, column) = key_position(text, "network", "geoip_db");
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: format!("network.{message}"),
            }
        })?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        let sections: [(&str, Result<(), Invalid>); 12] = [
            ("limits", self.limits.validate()),
            ("alert", self.alert.validate()),
            ("webhook", self.webhook.validate()),
            ("storage", self.storage.validate()),
            ("privacy", self.privacy.validate()),
            ("detection", self.detection.validate()),
            ("threats", self.threats.validate()),
            ("daemon", self.daemon.validate()),
            ("http", self.http.validate()),
            ("stream", self.stream.validate()),
            ("central", self.central.validate()),
            ("evidence", self.evidence.validate()),
        ];
        for (section, r) in sections {
            if let Err(Invalid { key, message }) = r {
                // A dotted key names a subsection: `weights.site` is `site` in `[detection.weights]`.
                let (table, last) = match key.rsplit_once('.') {
                    Some((sub, last)) => (format!("{section}.{sub}"), last.to_string()),
                    None => (section.to_string(), key.clone()),
                };
                let (line, column) = key_position(text, &table, &last);
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    message,
                });
            }
        }
        Ok(())
    }

    /// The sections the core engine runs on.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            network: self.network.clone(),
            limits: self.limits.clone(),
            detection: self.detection.clone(),
            threats: self.threats.clone(),
        }
    }
}

pub use simboxd_core::config::line_col;

/// Best-effort position of `key` inside `[section]` for errors found after parsing.
pub fn key_position(text: &str, section: &str, key: &str) -> (usize, usize) {
    // The key's span from toml's own parser (`section` may be dotted: `detection.weights`);
    // 1:1 when the file does not set it (the value is a default, or the file is unparsable).
    use toml::de::{DeTable, DeValue};
    let Ok(root) = DeTable::parse(text) else {
        return (1, 1);
    };
    let mut table = root.get_ref();
    for part in section.split('.').filter(|p| !p.is_empty()) {
        let found = table.iter().find(|(k, _)| k.get_ref().as_ref() == part);
        match found.map(|(_, v)| v.get_ref()) {
            Some(DeValue::Table(t)) => table = t,
            _ => return (1, 1),
        }
    }
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map_or((1, 1), |(k, _)| line_col(text, k.span().start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.limits.dialogs, LimitsConfig::default().dialogs);
        assert!(c.network.is_home("192.168.1.2".parse().unwrap()));
        assert!(!c.network.is_home("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn unknown_key_names_file_line_column() {
        let err = Config::parse("[limits]\ndialogs = 10\nbogus = 1\n", "x.toml").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("x.toml:3:1: "), "{s}");
        assert!(s.contains("bogus"), "{s}");
    }

    #[test]
    fn bad_cidr_is_located() {
        let err = Config::parse("[network]\nhome = [\"10.0.0.0/33\"]\n", "n.toml").unwrap_err();
        assert!(err.to_string().starts_with("n.toml:2:"), "{err}");
    }

    #[test]
    fn detection_section_is_parsed_and_validated() {
        let c = Config::parse(
            "[detection]\nmax_lines = 10\n[detection.weights]\nsite = 0.2\n",
            "d.toml",
        )
        .unwrap();
        assert_eq!(c.detection.max_lines, 10);
        assert_eq!(c.detection.weights.site, 0.2);
        let err = Config::parse("[detection.weights]\n\nsite = 2.0\n", "d.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.toml:3:1: detection.weights.site: must be within 0..1"
        );
    }

    #[test]
    fn zero_capacity_is_rejected_with_position() {
        let err = Config::parse("[limits]\n\n  dialogs = 0\n", "z.toml").unwrap_err();
        assert_eq!(err.to_string(), "z.toml:3:3: limits.dialogs is too small");
    }
}
