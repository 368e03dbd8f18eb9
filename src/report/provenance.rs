//! Provenance of a report or an evidence folder: which build made it, how it was run, on which
//! host, for which case, in which timezone; the configuration it used with secrets removed; and
//! the file's own SHA-256 written beside it (`<file>.sha256`, sha256sum format).

use serde::Serialize;
use sha2::{Digest, Sha256};
use simboxd_core::model::Timestamp;
use std::io::Write as _;
use std::path::Path;

/// The sections a run's provenance shows: those offline analysis uses (the aggregate
/// `config::Config` hands them out: `Config::used_sections`).
#[derive(Clone, Copy, Debug)]
pub struct UsedSections<'a> {
    pub network: &'a simboxd_core::config::NetworkConfig,
    pub limits: &'a simboxd_core::config::LimitsConfig,
    pub detection: &'a simboxd_core::detect::DetectionConfig,
    pub privacy: &'a crate::privacy::PrivacyConfig,
}

/// The git commit the binary was built from (`-dirty` when tracked files differed), or
/// `unknown` (see build.rs).
pub const BUILD_COMMIT: &str = env!("SIMBOXD_BUILD_COMMIT");

/// "simboxd 0.1.0 (commit 1234abcd...)".
pub fn build() -> String {
    format!(
        "simboxd {} (commit {BUILD_COMMIT})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The host name, or "unknown".
pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The process's command line, arguments lossily decoded.
pub fn command_line() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The command line as one shell-like string (arguments with spaces or quotes are quoted).
pub fn command_line_text(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Local time in a named zone for the report (`--timezone Area/City`), beside UTC.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    pub tz: Option<chrono_tz::Tz>,
}

impl Clock {
    pub fn parse(name: &str) -> anyhow::Result<Clock> {
        let tz: chrono_tz::Tz = name.parse().map_err(|_| {
            anyhow::anyhow!("--timezone {name:?}: not an IANA zone name such as Europe/Berlin")
        })?;
        Ok(Clock { tz: Some(tz) })
    }

    fn utc(t: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::<chrono::Utc>::from_timestamp_micros(t.0)
    }

    /// "2026-01-05 09:00:45.858 UTC" plus " (10:00:45.858 CET)" with a timezone.
    pub fn full(&self, t: Timestamp) -> String {
        let Some(u) = Self::utc(t) else {
            return t.to_string();
        };
        let mut s = u.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string();
        if let Some(tz) = self.tz {
            let l = u.with_timezone(&tz);
            s.push_str(&l.format(" (%Y-%m-%d %H:%M:%S%.3f %Z)").to_string());
        }
        s
    }

    /// Clock time on a chart axis: in the local zone when one is given, else UTC.
    pub fn axis(&self, t: Timestamp, seconds: bool) -> String {
        let Some(u) = Self::utc(t) else {
            return String::new();
        };
        let f = if seconds { "%H:%M:%S" } else { "%H:%M" };
        match self.tz {
            Some(tz) => u.with_timezone(&tz).format(f).to_string(),
            None => u.format(f).to_string(),
        }
    }

    /// The zone a chart axis is drawn in, e.g. "UTC" or "Europe/Berlin, UTC+01:00".
    pub fn axis_zone(&self, at: Timestamp) -> String {
        match (self.tz, Self::utc(at)) {
            (Some(tz), Some(u)) => {
                format!("{}, UTC{}", tz.name(), u.with_timezone(&tz).format("%:z"))
            }
            (Some(tz), None) => tz.name().to_string(),
            (None, _) => "UTC".into(),
        }
    }

    /// Hour of day (0..24) in the axis zone.
    pub fn hour(&self, t: Timestamp) -> usize {
        use chrono::Timelike;
        let Some(u) = Self::utc(t) else { return 0 };
        match self.tz {
            Some(tz) => u.with_timezone(&tz).hour() as usize,
            None => u.hour() as usize,
        }
    }
}

/// Facts about the run that the report states for provenance.
pub struct Provenance {
    /// The configuration analysis used, as TOML with secrets removed (`used_config_toml`).
    pub config_toml: String,
    /// Wall-clock generation time (the only clock read, at the binary's edge).
    pub generated: String,
    pub command_line: Vec<String>,
    pub host: String,
    pub case: Option<String>,
    pub examiner: Option<String>,
    pub clock: Clock,
    /// Verdict thresholds in force (for the method section).
    pub suspect_score: f64,
    pub gateway_score: f64,
    pub gateway_min_signals: usize,
    /// Whether phone numbers were replaced by keyed pseudonyms.
    pub pseudonymized: bool,
}

impl Provenance {
    /// Provenance of this process run with `cfg`'s sections.
    pub fn of_run(
        cfg: UsedSections<'_>,
        case: Option<String>,
        examiner: Option<String>,
        clock: Clock,
    ) -> Self {
        Provenance {
            config_toml: used_config_toml(cfg),
            generated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command_line: command_line(),
            host: host(),
            case,
            examiner,
            clock,
            suspect_score: cfg.detection.suspect_score,
            gateway_score: cfg.detection.gateway_score,
            gateway_min_signals: cfg.detection.gateway_min_signals,
            pseudonymized: cfg.privacy.pseudonymize,
        }
    }
}

/// The sections offline analysis uses ([network], [limits], [detection], and of [privacy] only
/// whether pseudonyms are on), pretty-printed. Everything else (alert targets, webhook, HTTP,
/// storage, daemon, capture) and every key or token is left out.
pub fn used_config_toml(cfg: UsedSections<'_>) -> String {
    #[derive(Serialize)]
    struct Privacy {
        pseudonymize: bool,
    }
    #[derive(Serialize)]
    struct Used<'a> {
        network: &'a simboxd_core::config::NetworkConfig,
        limits: &'a simboxd_core::config::LimitsConfig,
        detection: &'a simboxd_core::detect::DetectionConfig,
        privacy: Privacy,
    }
    let used = Used {
        network: cfg.network,
        limits: cfg.limits,
        detection: cfg.detection,
        privacy: Privacy {
            pseudonymize: cfg.privacy.pseudonymize,
        },
    };
    toml::to_string_pretty(&used).unwrap_or_else(|e| format!("# not printable: {e}"))
}

/// Writes `bytes` to `path` and its SHA-256 to `<path>.sha256` in sha256sum format
/// (`<hex>  <file name>`, checkable with `sha256sum -c` in the file's folder). Returns the hash.
pub fn write_with_sha256(path: &Path, bytes: &[u8]) -> std::io::Result<String> {
    std::fs::write(path, bytes)?;
    let hash = hex::encode(Sha256::digest(bytes));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut side = path.as_os_str().to_owned();
    side.push(".sha256");
    let mut f = std::fs::File::create(side)?;
    writeln!(f, "{hash}  {name}")?;
    f.sync_all()?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_what_needs_it() {
        let a: Vec<String> = ["simboxd", "analyze", "my file.pcap", "--case", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line_text(&a),
            "simboxd analyze 'my file.pcap' --case 'it'\\''s'"
        );
    }

    #[test]
    fn clock_shows_local_time_beside_utc() {
        let c = Clock::parse("Europe/Berlin").unwrap();
        let t = Timestamp::parse_rfc3339("2026-01-05T09:00:45.5Z").unwrap();
        assert_eq!(
            c.full(t),
            "2026-01-05 09:00:45.500 UTC (2026-01-05 10:00:45.500 CET)"
        );
        assert_eq!(c.axis(t, false), "10:00");
        assert_eq!(c.axis_zone(t), "Europe/Berlin, UTC+01:00");
        assert!(Clock::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn config_shows_only_the_sections_analysis_used() {
        let mut cfg = crate::config::Config::default();
        cfg.http.token = Some("tok-SECRET".into());
        cfg.privacy.key = Some("key-SECRET".into());
        let t = used_config_toml(cfg.used_sections());
        assert!(t.contains("[network]") && t.contains("[detection]"), "{t}");
        assert!(!t.contains("SECRET") && !t.contains("[webhook]") && !t.contains("[syslog]"));
        assert!(t.lines().count() > 10, "pretty-printed: {t}");
    }
}
