//! Scale-out transport: a sensor publishes its alerts, per-line evidence and (optionally) call
//! records to NATS JetStream (handed over by the daemon's `sensor`); `simboxd central` consumes
//! them (the `central` module).
//!
//! Contract: subjects are `simboxd.<sensor>.alerts`, `simboxd.<sensor>.lines`,
//! `simboxd.<sensor>.threats` and `simboxd.<sensor>.calls`, all in one stream (`[stream] stream`, default `SIMBOXD`, on
//! `simboxd.>`), created when missing. Every message is published with a `Nats-Msg-Id` (an
//! alert's idempotency key; `<sensor>:line:<addr>:<micros>` for evidence) and counts as sent only
//! once JetStream acknowledged it, so a retry after an outage is dropped by the stream's
//! duplicate window instead of stored twice. Alerts are a delivery target of the alert outbox
//! (`AlertSender`); evidence and calls wait in the stream outbox (`outbox::StreamOutbox`) while
//! NATS is down. Payloads are JSON: an alert as the webhook posts it, [`LineEvidenceMsg`],
//! [`ThreatEventsMsg`] (the probes, outside REGISTERs and ended calls the threat table reads,
//! capped per interval and per peer, in chunks) and a call as `analyze --format ndjson` prints it.

pub mod outbox;
pub mod publisher;

use serde::{Deserialize, Serialize};
use simboxd_core::config::Invalid;
use simboxd_core::model::{CallRecord, Direction, Event, ProbeRecord, RegistrationRecord};
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
    /// NATS user name (with `password_file`; instead of a token or credentials).
    pub user: Option<String>,
    /// File holding the NATS user's password.
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle for a TLS server; setting it requires TLS.
    pub ca_file: Option<PathBuf>,
    /// JetStream stream holding `simboxd.>`; created when missing.
    pub stream: String,
    /// Seconds between evidence summaries of the lines re-scored since the last one.
    pub evidence_interval_secs: u32,
    /// Also publish every ended call record (`simboxd.<sensor>.calls`).
    pub publish_calls: bool,
    /// Publish the events the threat table reads (`simboxd.<sensor>.threats`), so that the
    /// central forms threats over every sensor's view of an attacking peer.
    pub publish_threats: bool,
    /// Threat events handed over per evidence interval at most (beyond: dropped, counted).
    pub threat_events_per_interval: u32,
    /// Of those, at most this many per attacking peer (a flood does not crowd out the rest).
    pub threat_events_per_peer: u32,
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
            user: None,
            password_file: None,
            ca_file: None,
            stream: "SIMBOXD".into(),
            evidence_interval_secs: 30,
            publish_calls: false,
            publish_threats: true,
            threat_events_per_interval: 20_000,
            threat_events_per_peer: 2_000,
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
                // Credentials never go in the URL (it is logged): user/password_file instead.
                Some(r) if r.contains('@') => {
                    return Err(Invalid::new(
                        "url",
                        "stream.url must not carry credentials: use stream.user and \
                         stream.password_file, token_file or credentials_file"
                            .into(),
                    ))
                }
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
        let ways = [
            self.credentials_file.is_some(),
            self.token_file.is_some(),
            self.user.is_some() || self.password_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(Invalid::new(
                "token_file",
                "stream.credentials_file, stream.token_file and stream.user/password_file are \
                 mutually exclusive"
                    .into(),
            ));
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err(Invalid::new(
                "user",
                "stream.user and stream.password_file go together".into(),
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
        if !(1..=1_000_000).contains(&self.threat_events_per_interval) {
            return Err(Invalid::new(
                "threat_events_per_interval",
                "stream.threat_events_per_interval must be between 1 and 1000000".into(),
            ));
        }
        if !(1..=self.threat_events_per_interval).contains(&self.threat_events_per_peer) {
            return Err(Invalid::new(
                "threat_events_per_peer",
                "stream.threat_events_per_peer must be between 1 and threat_events_per_interval"
                    .into(),
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
            ("password_file", &self.password_file),
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
    Threats,
}

impl Kind {
    pub fn token(self) -> &'static str {
        match self {
            Kind::Alerts => "alerts",
            Kind::Lines => "lines",
            Kind::Calls => "calls",
            Kind::Threats => "threats",
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
        "threats" => Kind::Threats,
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

/// One event the threat table reads (`simboxd_core::threats::ThreatTable::on_event`), as a
/// sensor publishes it: probes and their answers, REGISTERs from outside, ended calls with an
/// outside peer or to an international/premium number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatEvent {
    Probe(Box<ProbeRecord>),
    Registration(Box<RegistrationRecord>),
    Call(Box<CallRecord>),
}

impl ThreatEvent {
    /// The event when the threat table would read it (`None` for every other kind).
    pub fn of(
        ev: &Event,
        network: &simboxd_core::config::NetworkConfig,
        toll_prefixes: &[String],
    ) -> Option<ThreatEvent> {
        Self::attacker(ev, network, toll_prefixes)?;
        Self::copy(ev)
    }

    /// When the threat table would read `ev` (see [`ThreatEvent::of`]): its attacking peer as
    /// [`ThreatEvent::peer`] names it (unspecified when it has none), without copying the event,
    /// so that caps are checked before the copy.
    pub fn attacker(
        ev: &Event,
        network: &simboxd_core::config::NetworkConfig,
        toll_prefixes: &[String],
    ) -> Option<std::net::IpAddr> {
        let outside = |ip: std::net::IpAddr| !network.is_home(ip);
        match ev {
            Event::Probe(p) if outside(p.peer.ip()) => Some(p.peer.ip()),
            Event::Registration(r)
                if r.line.is_some_and(|l| l != r.source.ip()) && outside(r.source.ip()) =>
            {
                Some(r.source.ip())
            }
            Event::CallEnded(c) if c.line.is_some() => {
                let inbound =
                    c.direction == Direction::Inbound && c.peer.is_some_and(|p| outside(p.ip()));
                // An outbound call matters only as a compromised PBX calling a toll number.
                let tolled = matches!(c.direction, Direction::Outbound | Direction::Internal)
                    && c.called()
                        .is_some_and(|n| toll_prefixes.iter().any(|p| n.starts_with(p.as_str())));
                (inbound || tolled).then(|| {
                    c.peer
                        .map(|p| p.ip())
                        .or(c.line)
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())
                })
            }
            _ => None,
        }
    }

    /// A copy of a probe, registration or ended call.
    fn copy(ev: &Event) -> Option<ThreatEvent> {
        match ev {
            Event::Probe(p) => Some(ThreatEvent::Probe(p.clone())),
            Event::Registration(r) => Some(ThreatEvent::Registration(r.clone())),
            Event::CallEnded(c) => Some(ThreatEvent::Call(c.clone())),
            _ => None,
        }
    }

    /// The event as a sensor publishes it: with `[privacy] pseudonymize`, every SIP user part
    /// the threat table reads becomes its pseudonymous form (the keyed pseudonym and its class
    /// by `table`'s rules, `simboxd_core::threats::pseudonymous`), the other numbers their
    /// pseudonyms, and what the table does not read and may hold a number (SDP origin and
    /// session names) is left out; without it, the event as seen.
    pub fn publishable(
        ev: &Event,
        privacy: &crate::privacy::Pseudonymizer,
        table: &simboxd_core::threats::ThreatTable,
    ) -> Option<ThreatEvent> {
        use simboxd_core::threats::pseudonymous;
        let mut te = Self::copy(ev)?;
        if !privacy.enabled() {
            return Some(te);
        }
        let user = |u: &str| {
            if u.is_empty() {
                String::new()
            } else {
                pseudonymous(u, table.user_class(u), |s| privacy.exact(s))
            }
        };
        let user_opt = |u: &mut Option<String>| {
            if let Some(x) = u.as_mut() {
                *x = user(x.as_str());
            }
        };
        match &mut te {
            ThreatEvent::Probe(p) => {
                user_opt(&mut p.request_user);
                user_opt(&mut p.to_user);
            }
            ThreatEvent::Registration(r) => {
                r.account = match r.account.split_once('@') {
                    Some((u, host)) => format!("{}@{host}", user(u)),
                    None => user(r.account.as_str()),
                };
                r.contact = r.contact.as_deref().map(|c| privacy.uri(c));
            }
            ThreatEvent::Call(c) => {
                user_opt(&mut c.request_uri);
                user_opt(&mut c.to);
                c.from = privacy.opt(&c.from);
                c.call_id = privacy.exact(&c.call_id);
                c.sdp_origin = None;
                c.sdp_session = None;
            }
        }
        Some(te)
    }

    /// The attacking peer (for the per-peer cap); the line for an outbound call.
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        match self {
            ThreatEvent::Probe(p) => Some(p.peer.ip()),
            ThreatEvent::Registration(r) => Some(r.source.ip()),
            ThreatEvent::Call(c) => c.peer.map(|p| p.ip()).or(c.line),
        }
    }

    pub fn into_event(self) -> Event {
        match self {
            ThreatEvent::Probe(p) => Event::Probe(p),
            ThreatEvent::Registration(r) => Event::Registration(r),
            ThreatEvent::Call(c) => Event::CallEnded(c),
        }
    }
}

/// A chunk of one sensor's threat events on `simboxd.<sensor>.threats`, in capture order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatEventsMsg {
    pub sensor: String,
    pub events: Vec<ThreatEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("NATS connect {0}: {1}")]
    Connect(String, String),
    /// The server refused the credentials (never retried quietly: a config error).
    #[error("NATS at {0} refused the credentials ({1}): check stream.token_file, stream.user/password_file or stream.credentials_file")]
    Auth(String, String),
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
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password_file) {
        let pw = std::fs::read_to_string(p)
            .map_err(|e| StreamError::Config(format!("stream.password_file: {e}")))?;
        opts = opts.user_and_password(u.clone(), pw.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Some(ca) = &cfg.ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    match tokio::time::timeout(timeout, opts.connect(url.as_str())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => {
            use async_nats::ConnectErrorKind as K;
            match e.kind() {
                K::AuthorizationViolation | K::Authentication => {
                    Err(StreamError::Auth(url, e.to_string()))
                }
                _ => Err(StreamError::Connect(url, e.to_string())),
            }
        }
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
    fn threat_events_are_those_the_threat_table_reads_and_round_trip() {
        use simboxd_core::model::ProbeMethod;
        let net = simboxd_core::config::NetworkConfig::default();
        let tolls = vec!["00".to_string(), "+".to_string()];
        let probe = |peer: &str| {
            Event::Probe(Box::new(ProbeRecord {
                peer: peer.parse().unwrap(),
                line: "10.1.0.1".parse().unwrap(),
                method: ProbeMethod::Options,
                request_user: Some("100".into()),
                to_user: None,
                user_agent: Some("friendly-scanner".into()),
                time: simboxd_core::model::Timestamp(1_700_000_000_000_000),
                status: None,
            }))
        };
        let outside = ThreatEvent::of(&probe("203.0.113.10:5060"), &net, &tolls).unwrap();
        assert_eq!(outside.peer(), Some("203.0.113.10".parse().unwrap()));
        // A request from a home address is no attack from outside.
        assert!(ThreatEvent::of(&probe("10.1.0.2:5060"), &net, &tolls).is_none());
        let json = serde_json::to_string(&ThreatEventsMsg {
            sensor: "tap-a".into(),
            events: vec![outside.clone()],
        })
        .unwrap();
        assert!(json.contains("\"probe\""), "{json}");
        let back: ThreatEventsMsg = serde_json::from_str(&json).unwrap();
        assert_eq!(back.events, vec![outside.clone()]);
        assert_eq!(
            back.events[0].clone().into_event(),
            probe("203.0.113.10:5060")
        );
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
