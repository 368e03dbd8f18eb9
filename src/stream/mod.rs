//! Scale-out transport: a sensor publishes its alerts, per-line evidence and (optionally) call
//! records to NATS JetStream; `simboxd central` consumes them (see `crate::central`).
//!
//! Contract: subjects are `simboxd.<sensor>.alerts`, `simboxd.<sensor>.lines` and
//! `simboxd.<sensor>.calls`, all in one stream (`[stream] stream`, default `SIMBOXD`, on
//! `simboxd.>`), created when missing. Every message is published with a `Nats-Msg-Id` (an
//! alert's idempotency key; `<sensor>:line:<addr>:<micros>` for evidence) and counts as sent only
//! once JetStream acknowledged it, so a retry after an outage is dropped by the stream's
//! duplicate window instead of stored twice. Alerts are a delivery target of the alert outbox
//! (`AlertSender`); evidence and calls wait in the stream outbox (`outbox::StreamOutbox`) while
//! NATS is down. Payloads are JSON: an alert as the webhook posts it, [`LineEvidenceMsg`], and a
//! call as `analyze --format ndjson` prints it.

pub mod outbox;
pub mod publisher;
pub mod sensor;

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[stream]`: publishing to (and, for `simboxd central`, consuming from) NATS JetStream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// `nats://host:4222` (or `tls://host:4222`). Unset: the sensor publishes nothing.
    pub url: Option<String>,
    /// This sensor's name in the subjects (`simboxd.<sensor>.alerts`); default: the host name.
    pub sensor: Option<String>,
    /// NATS credentials file (JWT + NKey seed, `.creds`).
    pub credentials_file: Option<PathBuf>,
    /// File holding a NATS auth token (instead of credentials).
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for a TLS server; setting it requires TLS.
    pub ca_file: Option<PathBuf>,
    /// JetStream stream holding `simboxd.>`; created when missing.
    pub stream: String,
    /// Seconds between evidence summaries of the lines re-scored since the last one.
    pub evidence_interval_secs: u32,
    /// Also publish every ended call record (`simboxd.<sensor>.calls`).
    pub publish_calls: bool,
    /// Duplicate window of the stream when simboxd creates it (drops replays by message id).
    pub duplicate_window_secs: u32,
    /// Messages kept in the stream outbox while NATS is unreachable; beyond it the oldest call
    /// records go first, then the oldest evidence (counted).
    pub max_pending: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            url: None,
            sensor: None,
            credentials_file: None,
            token_file: None,
            ca_file: None,
            stream: "SIMBOXD".into(),
            evidence_interval_secs: 30,
            publish_calls: false,
            duplicate_window_secs: 600,
            max_pending: 100_000,
        }
    }
}

/// Subject root of every simboxd message.
pub const SUBJECT_ROOT: &str = "simboxd";

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl StreamConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(u) = &self.url {
            let rest = u
                .strip_prefix("nats://")
                .or_else(|| u.strip_prefix("tls://"));
            match rest {
                Some(r) if !r.is_empty() && !r.contains('/') => {}
                _ => {
                    return Err(Invalid::new(
                        "url",
                        format!("stream.url {u:?} must be nats://HOST:PORT or tls://HOST:PORT"),
                    ))
                }
            }
        }
        if let Some(s) = &self.sensor {
            if !valid_token(s) {
                return Err(Invalid::new(
                    "sensor",
                    format!("stream.sensor {s:?}: 1-64 letters, digits, '-' or '_' (it is a subject token)"),
                ));
            }
        }
        if !valid_token(&self.stream) {
            return Err(Invalid::new(
                "stream",
                format!(
                    "stream.stream {:?}: 1-64 letters, digits, '-' or '_'",
                    self.stream
                ),
            ));
        }
        if self.credentials_file.is_some() && self.token_file.is_some() {
            return Err(Invalid::new(
                "token_file",
                "stream.credentials_file and stream.token_file are mutually exclusive".into(),
            ));
        }
        if !(1..=86_400).contains(&self.evidence_interval_secs) {
            return Err(Invalid::new(
                "evidence_interval_secs",
                "stream.evidence_interval_secs must be between 1 and 86400".into(),
            ));
        }
        if !(1..=86_400).contains(&self.duplicate_window_secs) {
            return Err(Invalid::new(
                "duplicate_window_secs",
                "stream.duplicate_window_secs must be between 1 and 86400".into(),
            ));
        }
        if self.max_pending < 100 {
            return Err(Invalid::new(
                "max_pending",
                "stream.max_pending must be at least 100".into(),
            ));
        }
        Ok(())
    }

    /// The sensor name used in subjects.
    pub fn sensor_name(&self) -> String {
        self.sensor.clone().unwrap_or_else(|| {
            let h = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default();
            let h: String = h
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            if h.is_empty() {
                "sensor".into()
            } else {
                h
            }
        })
    }

    /// Checks the files it names are readable (for `validate` and at start).
    pub fn check_files(&self) -> Result<(), (&'static str, String)> {
        for (key, p) in [
            ("credentials_file", &self.credentials_file),
            ("token_file", &self.token_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(p) = p {
                if let Err(e) = std::fs::read(p) {
                    return Err((key, format!("stream.{key} {}: {e}", p.display())));
                }
            }
        }
        Ok(())
    }
}

/// What kind of message a subject carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Alerts,
    Lines,
    Calls,
}

impl Kind {
    pub fn token(self) -> &'static str {
        match self {
            Kind::Alerts => "alerts",
            Kind::Lines => "lines",
            Kind::Calls => "calls",
        }
    }
}

/// `simboxd.<sensor>.<kind>`.
pub fn subject(sensor: &str, kind: Kind) -> String {
    format!("{SUBJECT_ROOT}.{sensor}.{}", kind.token())
}

/// Splits a subject into (sensor, kind); `None` for anything else.
pub fn parse_subject(s: &str) -> Option<(&str, Kind)> {
    let mut it = s.split('.');
    if it.next()? != SUBJECT_ROOT {
        return None;
    }
    let sensor = it.next()?;
    let kind = match it.next()? {
        "alerts" => Kind::Alerts,
        "lines" => Kind::Lines,
        "calls" => Kind::Calls,
        _ => return None,
    };
    if it.next().is_some() || !valid_token(sensor) {
        return None;
    }
    Some((sensor, kind))
}

/// One line's evidence as a sensor publishes it on `simboxd.<sensor>.lines`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineEvidenceMsg {
    pub sensor: String,
    #[serde(flatten)]
    pub evidence: simboxd_core::detect::LineEvidence,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("NATS connect {0}: {1}")]
    Connect(String, String),
    #[error("JetStream stream {0}: {1}")]
    Stream(String, String),
    #[error("publish {0}: {1}")]
    Publish(String, String),
    #[error("{0}: timed out")]
    Timeout(String),
    #[error("{0}")]
    Config(String),
}

/// Connects to `cfg.url` with its credentials/token/CA; `name` is the client name the server
/// shows. The client reconnects by itself after a connection is lost.
pub async fn connect(
    cfg: &StreamConfig,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, StreamError> {
    let url = cfg
        .url
        .clone()
        .ok_or_else(|| StreamError::Config("stream.url is not set".into()))?;
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .max_reconnects(None::<usize>);
    if let Some(p) = &cfg.credentials_file {
        opts = opts
            .credentials_file(p)
            .await
            .map_err(|e| StreamError::Config(format!("stream.credentials_file: {e}")))?;
    }
    if let Some(p) = &cfg.token_file {
        let t = std::fs::read_to_string(p)
            .map_err(|e| StreamError::Config(format!("stream.token_file: {e}")))?;
        opts = opts.token(t.trim().to_string());
    }
    if let Some(ca) = &cfg.ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    match tokio::time::timeout(timeout, opts.connect(url.as_str())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(StreamError::Connect(url, e.to_string())),
        Err(_) => Err(StreamError::Timeout(format!("NATS connect {url}"))),
    }
}

/// Creates the stream on `simboxd.>` when it does not exist (an existing one is kept as is).
pub async fn ensure_stream(
    js: &async_nats::jetstream::Context,
    cfg: &StreamConfig,
) -> Result<(), StreamError> {
    let config = async_nats::jetstream::stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{SUBJECT_ROOT}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(u64::from(cfg.duplicate_window_secs)),
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map(|_| ())
        .map_err(|e| StreamError::Stream(cfg.stream.clone(), e.to_string()))
}

/// The stream outbox file beside the alert outbox (`stream.redb`).
pub fn outbox_path(storage: &Path) -> PathBuf {
    storage
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("stream.redb"), |d| d.join("stream.redb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_reject_others() {
        let s = subject("tap-01", Kind::Lines);
        assert_eq!(s, "simboxd.tap-01.lines");
        assert_eq!(parse_subject(&s), Some(("tap-01", Kind::Lines)));
        assert_eq!(parse_subject("simboxd.a.b.alerts"), None);
        assert_eq!(parse_subject("other.a.alerts"), None);
        assert_eq!(parse_subject("simboxd.a.nope"), None);
    }

    #[test]
    fn bad_values_are_located() {
        let e =
            crate::config::Config::parse("[stream]\nurl = \"http://x\"\n", "s.toml").unwrap_err();
        assert!(e.to_string().starts_with("s.toml:2:1: stream.url"), "{e}");
        let e =
            crate::config::Config::parse("[stream]\n\nsensor = \"a.b\"\n", "s.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("s.toml:3:1: stream.sensor"),
            "{e}"
        );
        let e = crate::config::Config::parse("[stream]\nevidence_interval_secs = 0\n", "s.toml")
            .unwrap_err();
        assert!(e.to_string().starts_with("s.toml:2:1:"), "{e}");
        let ok = crate::config::Config::parse(
            "[stream]\nurl = \"nats://127.0.0.1:4222\"\nsensor = \"tap-01\"\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(ok.stream.sensor_name(), "tap-01");
    }
}
