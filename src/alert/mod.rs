//! Alerts: lifecycle of flagged lines, the persistent outbox and delivery to receivers.
//!
//! Contract: [`AlertManager`] is pure (no I/O, packet time only). It turns the detection stage's
//! [`LineVerdict`]s into [`Alert`]s: `raised` on the first `suspect`/`gateway` verdict of a line,
//! `updated` when the verdict level rises or the evidence grows materially (score up by
//! `score_step`, or a new signal), never twice for the same state, and `cleared` when a flagged
//! line shows no new evidence for `clear_after_secs`. Each alert of one episode shares a stable
//! `id`; `seq` counts its updates and `idempotency_key` (`id:seq`) identifies one alert record
//! for receivers. The daemon writes alerts to the [`outbox::Outbox`] before any delivery and runs
//! [`delivery::Delivery`] workers (syslog, webhook) that mark them delivered per target.

pub mod delivery;
pub(crate) mod delivery_log;
pub mod format;
pub mod outbox;
pub(crate) mod relp;
pub mod syslog;
pub(crate) mod webhook;

use crate::privacy::Pseudonymizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};
use simboxd_core::threats::{Threat, ThreatKind, ThreatSeverity};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// `[alert]` section: lifecycle settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// A flagged line with no new evidence for this long is cleared.
    pub clear_after_secs: u32,
    /// Score rise (0..1) since the last alert that makes an `updated` alert.
    pub score_step: f64,
    /// Lines with an open alert tracked at once; the one quiet longest is evicted when full.
    pub max_open: usize,
    /// Most reasons carried in one alert (strongest first).
    pub max_reasons: usize,
    /// First delivery retry delay; doubles per failure (jittered) up to `retry_max_secs`.
    pub retry_initial_ms: u32,
    pub retry_max_secs: u32,
    /// Attempts an alert a target refuses (4xx, untrusted certificate, RELP error) gets before
    /// it moves to that target's dead-letter list; outages (timeouts, 5xx) retry without limit.
    pub dead_letter_after: u32,
    /// Name of this sensor in every alert format (ECS `observer.name`, CEF `dvchost`, RFC 5424
    /// `sensor`, the webhook's `sensor`); defaults to the host name.
    pub sensor: Option<String>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            clear_after_secs: 3600,
            score_step: 0.1,
            max_open: 100_000,
            max_reasons: 8,
            retry_initial_ms: 500,
            retry_max_secs: 60,
            dead_letter_after: 5,
            sensor: None,
        }
    }
}

impl AlertConfig {
    pub fn validate(&self) -> Result<(), simboxd_core::config::Invalid> {
        if self.clear_after_secs == 0 {
            return Err(simboxd_core::config::Invalid::new(
                "clear_after_secs",
                "alert.clear_after_secs must be > 0".into(),
            ));
        }
        if !(self.score_step > 0.0 && self.score_step <= 1.0) {
            return Err(simboxd_core::config::Invalid::new(
                "score_step",
                "alert.score_step must be in (0, 1]".into(),
            ));
        }
        if self.max_open == 0 {
            return Err(simboxd_core::config::Invalid::new(
                "max_open",
                "alert.max_open must be > 0".into(),
            ));
        }
        if self.max_reasons == 0 || self.max_reasons > 64 {
            return Err(simboxd_core::config::Invalid::new(
                "max_reasons",
                "alert.max_reasons must be in 1..=64".into(),
            ));
        }
        if self.retry_initial_ms == 0 {
            return Err(simboxd_core::config::Invalid::new(
                "retry_initial_ms",
                "alert.retry_initial_ms must be > 0".into(),
            ));
        }
        if self.retry_max_secs == 0
            || u64::from(self.retry_max_secs) * 1000 < u64::from(self.retry_initial_ms)
        {
            return Err(simboxd_core::config::Invalid::new(
                "retry_max_secs",
                "alert.retry_max_secs must be > 0 and not below retry_initial_ms".into(),
            ));
        }
        if self.dead_letter_after == 0 || self.dead_letter_after > 1000 {
            return Err(simboxd_core::config::Invalid::new(
                "dead_letter_after",
                "alert.dead_letter_after must be in 1..=1000".into(),
            ));
        }
        if let Some(s) = &self.sensor {
            if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
                return Err(simboxd_core::config::Invalid::new(
                    "sensor",
                    "alert.sensor must be 1 to 255 bytes without control characters".into(),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Raised,
    Updated,
    Cleared,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Updated => "updated",
            AlertState::Cleared => "cleared",
        }
    }
}

/// Severity of an episode: `warning` while the line is `suspect`, `critical` once `gateway`.
/// Threat alerts rank below `gateway`: `notice` for scans and enumeration, `warning` for
/// floods, toll-fraud attempts and framing; a compromised PBX is `critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Notice,
    Warning,
    Critical,
}

impl Severity {
    pub fn of(level: VerdictLevel) -> Severity {
        match level {
            VerdictLevel::Gateway => Severity::Critical,
            _ => Severity::Warning,
        }
    }
    /// The alert severity of a threat.
    pub fn of_threat(s: ThreatSeverity) -> Severity {
        match s {
            ThreatSeverity::Low => Severity::Notice,
            ThreatSeverity::Medium => Severity::Warning,
            ThreatSeverity::High => Severity::Critical,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A line's verdict (`suspect`, `gateway`).
    #[default]
    Line,
    /// An attack by a remote peer on lines (`line` is then the peer's address, not a line).
    Threat,
    /// A line that relayed toll fraud (`line` is that line).
    CompromisedPbx,
    /// A site formed across sensors by `simboxd central` (`line` is the shared peer, `lines`
    /// the member lines).
    Site,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Line => "line",
            AlertKind::Threat => "threat",
            AlertKind::CompromisedPbx => "compromised_pbx",
            AlertKind::Site => "site",
        }
    }
}

/// Targets carried in a threat alert (the API and `analyze` list them all).
pub const ALERT_THREAT_LINES: usize = 16;

/// One alert record. This JSON is what the HTTP API serves and the webhook's `json` format posts
/// (with `sensor` and `version` added); [`format`](mod@format) renders it for SIEMs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable for one line and episode: `sbx-` + 16 hex digits.
    pub id: String,
    /// 0 when raised, +1 for every update and for the clear.
    pub seq: u32,
    /// `id:seq`, unique per record; receivers deduplicate on it.
    pub idempotency_key: String,
    pub state: AlertState,
    pub severity: Severity,
    pub line: IpAddr,
    /// The remote peer: for a line, the one that sent it most of its inbound calls and opaque
    /// flows (the softswitch or trunk feeding a SIM box); for a threat, the attacker; for a
    /// compromised PBX, the peer whose toll fraud it relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    pub site: Option<String>,
    pub verdict: VerdictLevel,
    pub score: f64,
    pub reasons: Vec<Reason>,
    /// Capture time of the first flagged verdict of the episode.
    pub first_seen: Timestamp,
    /// Capture time of the latest new evidence.
    pub last_seen: Timestamp,
    /// Capture time when the line first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    /// Capture time this record was made.
    pub created: Timestamp,
    /// `line` (a line's verdict), `threat` (an attack by the peer in `line`) or
    /// `compromised_pbx` (the line in `line` relayed toll fraud).
    #[serde(rename = "type", default)]
    pub kind: AlertKind,
    /// For `threat` and `compromised_pbx`: the finding (at most `ALERT_THREAT_LINES` targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<Box<Threat>>,
    /// For `site`: the member lines (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<IpAddr>,
}

impl Alert {
    /// Escapes every text that may come from the wire (reasons, the site, a threat's
    /// User-Agents, numbers and answers) with [`crate::text::escape`], so that no receiver
    /// gets a raw control character (a NUL in a SIP User-Agent made a webhook answer 400).
    /// Idempotent; done when an alert is made and again before any send (older records).
    pub fn sanitize(&mut self) {
        use crate::text::escape_in_place as esc;
        for r in &mut self.reasons {
            esc(&mut r.signal);
            esc(&mut r.detail);
        }
        if let Some(s) = &mut self.site {
            esc(s);
        }
        if let Some(t) = &mut self.threat {
            t.user_agents.iter_mut().for_each(esc);
            t.numbers.iter_mut().for_each(esc);
            for r in &mut t.reasons {
                esc(&mut r.signal);
                esc(&mut r.detail);
            }
            let clean = |m: &mut BTreeMap<String, u64>| {
                if m.keys().any(|k| k.contains(crate::text::needs_escape)) {
                    *m = std::mem::take(m)
                        .into_iter()
                        .map(|(k, v)| (crate::text::escape(&k).into_owned(), v))
                        .collect();
                }
            };
            clean(&mut t.answers);
            for l in &mut t.lines {
                clean(&mut l.answers);
            }
        }
    }

    /// A sanitized copy (see [`Alert::sanitize`]).
    pub fn sanitized(&self) -> Alert {
        let mut a = self.clone();
        a.sanitize();
        a
    }

    /// Syslog severity (RFC 5424 numeric): critical 2, warning 4, notice 5 for a clear.
    pub fn syslog_severity(&self) -> u8 {
        match (self.state, self.severity) {
            (AlertState::Cleared, _) => 5,
            (_, Severity::Critical) => 2,
            (_, Severity::Warning) => 4,
            (_, Severity::Notice) => 5,
        }
    }

    /// One line of text: line, verdict, score and the strongest reasons.
    pub fn summary(&self, max_reasons: usize) -> String {
        if self.kind == AlertKind::Site {
            let lines: Vec<String> = self.lines.iter().map(|l| l.to_string()).collect();
            return one_line(&format!(
                "{} site {} of {} lines from {} score {:.2}: {}",
                self.state.as_str(),
                self.site.as_deref().unwrap_or("-"),
                self.lines.len(),
                self.line,
                self.score,
                lines.join(", ")
            ));
        }
        if let Some(t) = &self.threat {
            let what = match self.kind {
                AlertKind::CompromisedPbx => format!(
                    "compromised_pbx line {} relayed toll fraud from {}",
                    self.line, t.peer
                ),
                _ if t.sources_total > 0 => format!(
                    "threat {} from ~{} sources to line {}",
                    t.kind.label(),
                    t.sources_total,
                    self.line
                ),
                _ => format!(
                    "threat {} from {} to {} lines",
                    t.kind.label(),
                    t.peer,
                    t.lines_total
                ),
            };
            let mut s = format!("{} {what}", self.state.as_str());
            for (i, r) in self.reasons.iter().take(max_reasons).enumerate() {
                s.push_str(if i == 0 { ": " } else { "; " });
                s.push_str(&r.detail);
            }
            return one_line(&s);
        }
        let mut s = format!(
            "{} line {} {} score {:.2}",
            self.state.as_str(),
            self.line,
            verdict_str(self.verdict),
            self.score
        );
        if let Some(site) = &self.site {
            s.push_str(&format!(" site {site}"));
        }
        let mut first = true;
        for r in self.reasons.iter().take(max_reasons) {
            s.push_str(if first { ": " } else { "; " });
            first = false;
            s.push_str(&r.signal);
            if !r.detail.is_empty() {
                s.push_str(" (");
                s.push_str(&r.detail);
                s.push(')');
            }
        }
        one_line(&s)
    }
}

pub fn verdict_str(v: VerdictLevel) -> &'static str {
    match v {
        VerdictLevel::Normal => "normal",
        VerdictLevel::Suspect => "suspect",
        VerdictLevel::Gateway => "gateway",
    }
}

/// Control characters (newlines included) and bidi controls as visible escapes
/// ([`crate::text::escape`]): the text stays one line and cannot forge another.
pub fn one_line(s: &str) -> String {
    crate::text::escape(s).into_owned()
}

/// Alert id for a line and the start of its episode.
pub fn alert_id(line: IpAddr, first_seen: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(line.to_string().as_bytes());
    h.update(b"|");
    h.update(first_seen.micros().to_be_bytes());
    let d = h.finalize();
    format!("sbx-{}", hex::encode(d.get(..8).unwrap_or(&[])))
}

/// The open alert of one line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Episode {
    id: String,
    seq: u32,
    /// Highest level alerted so far.
    level: VerdictLevel,
    /// Score carried by the last alert sent.
    alerted_score: f64,
    /// Signals already alerted on.
    signals: BTreeSet<String>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    flagged_at: Option<Timestamp>,
    site: Option<String>,
    /// The line's main peer at the latest verdict.
    #[serde(default)]
    peer: Option<IpAddr>,
    /// Latest verdict figures, to tell new evidence from a repeated evaluation.
    score: f64,
    calls: u64,
    reasons: Vec<Reason>,
}

/// Lifecycle of alerts per line. Serialize it to keep open episodes across a daemon restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AlertManager {
    config: AlertConfig,
    open: BTreeMap<IpAddr, Episode>,
    /// Open episodes dropped because `max_open` was reached.
    evictions: u64,
    /// Open threat episodes (peer, kind; line for a compromised PBX or a flood from many
    /// sources) -> (id, seq). Threat alerts are raised once, updated as the finding grows and
    /// cleared when the threat table closes the episode (`threats.clear_after_secs` quiet).
    #[serde(default)]
    threats: BTreeMap<String, (String, u32)>,
    /// Threat episodes closed so far per key (a new episode of the same key gets a new id).
    #[serde(default)]
    threats_closed: BTreeMap<String, u32>,
}

impl AlertManager {
    pub fn new(config: AlertConfig) -> Self {
        AlertManager {
            config,
            open: BTreeMap::new(),
            evictions: 0,
            threats: BTreeMap::new(),
            threats_closed: BTreeMap::new(),
        }
    }

    /// Replaces the settings (e.g. after restoring saved state under a new config).
    pub fn set_config(&mut self, config: AlertConfig) {
        self.config = config;
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Id of the open alert of `line`, if any.
    pub fn open_id(&self, line: IpAddr) -> Option<&str> {
        self.open.get(&line).map(|e| e.id.as_str())
    }

    /// Feeds one verdict; returns the alerts it causes (none, one raise or one update).
    pub fn on_verdict(&mut self, v: &LineVerdict) -> Vec<Alert> {
        self.on_verdict_with(v, &Pseudonymizer::disabled())
    }

    /// As [`AlertManager::on_verdict`], pseudonymising numbers in the reasons' details.
    pub fn on_verdict_with(&mut self, v: &LineVerdict, privacy: &Pseudonymizer) -> Vec<Alert> {
        let score = if v.score.is_finite() {
            v.score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let reasons = self.top_reasons(&v.reasons, privacy);
        let flagged = v.verdict >= VerdictLevel::Suspect;
        let cfg_step = self.config.score_step;

        if let Some(ep) = self.open.get_mut(&v.line) {
            // New evidence: more calls, a different score or different reasons than last time.
            let fresh = v.calls != ep.calls
                || (score - ep.score).abs() > 1e-9
                || reasons.len() != ep.reasons.len()
                || reasons
                    .iter()
                    .zip(&ep.reasons)
                    .any(|(a, b)| a.signal != b.signal || a.value != b.value);
            if !flagged {
                // Detection no longer flags the line: let it go quiet and clear on expiry.
                return Vec::new();
            }
            if fresh && v.updated > ep.last_seen {
                ep.last_seen = v.updated;
            }
            ep.score = score;
            ep.calls = v.calls;
            ep.reasons = reasons;
            // The alert names the site the verdict names now: a site that dissolved (or changed)
            // is corrected by an update, never left standing.
            let site_changed = v.site != ep.site;
            ep.site = v.site.clone();
            ep.peer = v.peer;
            if ep.flagged_at.is_none() {
                ep.flagged_at = v.flagged_at;
            }
            let new_signal = ep
                .reasons
                .iter()
                .any(|r| r.strength > 0.0 && !ep.signals.contains(&r.signal));
            let rises = v.verdict > ep.level;
            let grows = score >= ep.alerted_score + cfg_step - 1e-9;
            if !(rises || grows || new_signal || site_changed) {
                return Vec::new();
            }
            ep.seq = ep.seq.saturating_add(1);
            if rises {
                ep.level = v.verdict;
                if v.verdict == VerdictLevel::Gateway && ep.flagged_at.is_none() {
                    ep.flagged_at = Some(v.updated);
                }
            }
            ep.alerted_score = score;
            for r in &ep.reasons {
                if r.strength > 0.0 {
                    ep.signals.insert(r.signal.clone());
                }
            }
            let alert = make_alert(v.line, ep, AlertState::Updated, v.updated, v.verdict);
            return vec![alert];
        }

        if !flagged {
            return Vec::new();
        }
        if self.open.len() >= self.config.max_open {
            self.evict_one();
        }
        let flagged_at = v.flagged_at.or(if v.verdict == VerdictLevel::Gateway {
            Some(v.updated)
        } else {
            None
        });
        let ep = Episode {
            id: alert_id(v.line, v.updated),
            seq: 0,
            level: v.verdict,
            alerted_score: score,
            signals: reasons
                .iter()
                .filter(|r| r.strength > 0.0)
                .map(|r| r.signal.clone())
                .collect(),
            first_seen: v.updated,
            last_seen: v.updated,
            flagged_at,
            site: v.site.clone(),
            peer: v.peer,
            score,
            calls: v.calls,
            reasons,
        };
        let alert = make_alert(v.line, &ep, AlertState::Raised, v.updated, v.verdict);
        self.open.insert(v.line, ep);
        vec![alert]
    }

    /// Feeds one threat finding (new, grown, or its episode closed: `ended`); returns its alert
    /// (a raise, then updates, then `cleared`).
    pub fn on_threat(
        &mut self,
        t: &Threat,
        created: Timestamp,
        privacy: &Pseudonymizer,
    ) -> Vec<Alert> {
        let target = t.lines.first().map_or(t.peer, |l| l.line);
        // A flood from many sources is about its target line; its sources are forged.
        let many = t.sources_total > 0;
        let (kind, subject) = match t.kind {
            ThreatKind::CompromisedPbx => (AlertKind::CompromisedPbx, target),
            _ if many => (AlertKind::Threat, target),
            _ => (AlertKind::Threat, t.peer),
        };
        let key = if many {
            format!("{}|many|{subject}", t.kind.label())
        } else {
            format!("{}|{}|{subject}", t.kind.label(), t.peer)
        };
        let (id, seq, state) = match self.threats.get_mut(&key) {
            Some((id, seq)) if t.ended.is_some() => {
                let out = (id.clone(), seq.saturating_add(1), AlertState::Cleared);
                self.threats.remove(&key);
                if self.threats_closed.len() >= self.config.max_open
                    && !self.threats_closed.contains_key(&key)
                {
                    self.threats_closed.pop_first();
                }
                let n = self.threats_closed.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                out
            }
            // A closed episode of a key with no open alert (already cleared): nothing to say.
            None if t.ended.is_some() => return Vec::new(),
            Some((id, seq)) => {
                *seq = seq.saturating_add(1);
                (id.clone(), *seq, AlertState::Updated)
            }
            None => {
                if self.threats.len() >= self.config.max_open {
                    self.threats.pop_first();
                    self.evictions += 1;
                }
                let mut h = Sha256::new();
                h.update(key.as_bytes());
                h.update(t.first_seen.micros().to_be_bytes());
                // Later episodes of the same key get ids of their own.
                if let Some(n) = self.threats_closed.get(&key) {
                    h.update(n.to_be_bytes());
                }
                let d = h.finalize();
                let id = format!("sbx-{}", hex::encode(d.get(..8).unwrap_or(&[])));
                self.threats.insert(key, (id.clone(), 0));
                (id, 0, AlertState::Raised)
            }
        };
        let mut finding = t.clone();
        finding.lines.truncate(ALERT_THREAT_LINES);
        privacy.threat(&mut finding);
        let reasons = finding.reasons.clone();
        let mut alert = Alert {
            idempotency_key: format!("{id}:{seq}"),
            id,
            seq,
            state,
            severity: Severity::of_threat(t.severity),
            line: subject,
            peer: Some(t.peer),
            site: None,
            verdict: VerdictLevel::Normal,
            score: 0.0,
            reasons,
            first_seen: t.first_seen,
            last_seen: t.last_seen,
            flagged_at: None,
            created,
            kind,
            threat: Some(Box::new(finding)),
            lines: Vec::new(),
        };
        alert.sanitize();
        vec![alert]
    }

    /// Clears every open alert with no new evidence for `clear_after_secs` before `now`.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Alert> {
        let limit = i64::from(self.config.clear_after_secs).saturating_mul(1_000_000);
        let quiet: Vec<IpAddr> = self
            .open
            .iter()
            .filter(|(_, e)| now.micros().saturating_sub(e.last_seen.micros()) >= limit)
            .map(|(ip, _)| *ip)
            .collect();
        let mut out = Vec::with_capacity(quiet.len());
        for ip in quiet {
            if let Some(mut ep) = self.open.remove(&ip) {
                ep.seq = ep.seq.saturating_add(1);
                let level = ep.level;
                out.push(make_alert(ip, &ep, AlertState::Cleared, now, level));
            }
        }
        out
    }

    fn top_reasons(&self, reasons: &[Reason], privacy: &Pseudonymizer) -> Vec<Reason> {
        let mut refs: Vec<(usize, &Reason)> = reasons.iter().enumerate().collect();
        // total_cmp: a NaN strength from upstream must not break the sort.
        refs.sort_by(|(ia, a), (ib, b)| b.strength.total_cmp(&a.strength).then(ia.cmp(ib)));
        refs.into_iter()
            .take(self.config.max_reasons)
            .map(|(_, r)| r)
            .map(|r| Reason {
                signal: r.signal.clone(),
                value: r.value,
                strength: r.strength,
                detail: crate::text::escape(&privacy.text(&r.detail)).into_owned(),
            })
            .collect()
    }

    fn evict_one(&mut self) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.open.remove(&ip);
            self.evictions += 1;
        }
    }
}

fn make_alert(
    line: IpAddr,
    ep: &Episode,
    state: AlertState,
    created: Timestamp,
    verdict: VerdictLevel,
) -> Alert {
    Alert {
        id: ep.id.clone(),
        seq: ep.seq,
        idempotency_key: format!("{}:{}", ep.id, ep.seq),
        state,
        severity: Severity::of(ep.level),
        line,
        site: ep
            .site
            .as_deref()
            .map(|s| crate::text::escape(s).into_owned()),
        peer: ep.peer,
        verdict,
        score: ep.score,
        reasons: ep.reasons.clone(),
        first_seen: ep.first_seen,
        last_seen: ep.last_seen,
        flagged_at: ep.flagged_at,
        created,
        kind: AlertKind::Line,
        threat: None,
        lines: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000;

    fn reason(signal: &str, strength: f64) -> Reason {
        Reason {
            signal: signal.into(),
            value: 1.0,
            strength,
            detail: format!("{signal} figures"),
        }
    }

    fn verdict(
        level: VerdictLevel,
        score: f64,
        secs: i64,
        calls: u64,
        signals: &[&str],
    ) -> LineVerdict {
        LineVerdict {
            line: "10.1.2.3".parse().unwrap(),
            verdict: level,
            score,
            flagged_at: None,
            site: None,
            reasons: signals.iter().map(|s| reason(s, 0.5)).collect(),
            updated: Timestamp(T0 + secs * 1_000_000),
            calls,
            max_concurrent_calls: 4,
            peer: Some("203.0.113.10".parse().unwrap()),
        }
    }

    #[test]
    fn normal_line_raises_nothing() {
        let mut m = AlertManager::new(AlertConfig::default());
        assert!(m
            .on_verdict(&verdict(VerdictLevel::Normal, 0.1, 0, 3, &[]))
            .is_empty());
        assert_eq!(m.open_count(), 0);
    }

    #[test]
    fn raise_update_dedup_clear() {
        let mut m = AlertManager::new(AlertConfig {
            clear_after_secs: 600,
            ..Default::default()
        });
        let a = m.on_verdict(&verdict(
            VerdictLevel::Suspect,
            0.5,
            0,
            10,
            &["inbound_many_numbers"],
        ));
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(
            (a.state, a.seq, a.severity),
            (AlertState::Raised, 0, Severity::Warning)
        );
        assert_eq!(a.idempotency_key, format!("{}:0", a.id));
        assert!(a.id.starts_with("sbx-") && a.id.len() == 20);
        assert_eq!(a.syslog_severity(), 4);

        // Same state again, and a small score rise: deduplicated.
        assert!(m
            .on_verdict(&verdict(
                VerdictLevel::Suspect,
                0.5,
                60,
                10,
                &["inbound_many_numbers"]
            ))
            .is_empty());
        assert!(m
            .on_verdict(&verdict(
                VerdictLevel::Suspect,
                0.55,
                120,
                12,
                &["inbound_many_numbers"]
            ))
            .is_empty());

        // Score +0.1 over the last alert: update.
        let u = m.on_verdict(&verdict(
            VerdictLevel::Suspect,
            0.61,
            180,
            14,
            &["inbound_many_numbers"],
        ));
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].state, u[0].seq, u[0].id.as_str()),
            (AlertState::Updated, 1, a.id.as_str())
        );

        // A new signal: update.
        let u = m.on_verdict(&verdict(
            VerdictLevel::Suspect,
            0.62,
            240,
            15,
            &["inbound_many_numbers", "channel_ceiling"],
        ));
        assert_eq!(u[0].seq, 2);

        // Level rises to gateway: critical update, flagged_at set.
        let u = m.on_verdict(&verdict(
            VerdictLevel::Gateway,
            0.64,
            300,
            16,
            &["inbound_many_numbers", "channel_ceiling"],
        ));
        assert_eq!(
            (u[0].seq, u[0].severity, u[0].verdict),
            (3, Severity::Critical, VerdictLevel::Gateway)
        );
        assert_eq!(u[0].flagged_at, Some(Timestamp(T0 + 300_000_000)));
        assert_eq!(u[0].syslog_severity(), 2);
        assert_eq!(u[0].first_seen, Timestamp(T0));

        // Same gateway state repeated, with no new calls: no alert, and last_seen stays.
        assert!(m
            .on_verdict(&verdict(
                VerdictLevel::Gateway,
                0.64,
                800,
                16,
                &["inbound_many_numbers", "channel_ceiling"],
            ))
            .is_empty());
        assert!(m.expire(Timestamp(T0 + 899_000_000)).is_empty());
        let c = m.expire(Timestamp(T0 + 900_000_000));
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].state, c[0].seq, c[0].id.as_str()),
            (AlertState::Cleared, 4, a.id.as_str())
        );
        assert_eq!(c[0].syslog_severity(), 5);
        assert_eq!(m.open_count(), 0);

        // Flagged again later: a new episode with a new id.
        let r = m.on_verdict(&verdict(VerdictLevel::Suspect, 0.5, 2000, 30, &["x"]));
        assert_eq!(r[0].state, AlertState::Raised);
        assert_ne!(r[0].id, a.id);
    }

    #[test]
    fn ids_are_stable_per_line_and_episode() {
        let l: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(alert_id(l, Timestamp(5)), alert_id(l, Timestamp(5)));
        assert_ne!(alert_id(l, Timestamp(5)), alert_id(l, Timestamp(6)));
        assert_ne!(
            alert_id(l, Timestamp(5)),
            alert_id("10.1.2.4".parse().unwrap(), Timestamp(5))
        );
        // Same input to two managers gives the same id.
        let v = verdict(VerdictLevel::Gateway, 0.9, 0, 1, &["a"]);
        let a = AlertManager::default().on_verdict(&v);
        let b = AlertManager::default().on_verdict(&v);
        assert_eq!(a[0].id, b[0].id);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut m = AlertManager::new(AlertConfig::default());
        m.on_verdict(&verdict(VerdictLevel::Gateway, 0.9, 0, 5, &["a"]));
        let json = serde_json::to_string(&m).unwrap();
        let mut back: AlertManager = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open_count(), 1);
        // Restored manager dedups and continues the same episode.
        assert!(back
            .on_verdict(&verdict(VerdictLevel::Gateway, 0.9, 10, 5, &["a"]))
            .is_empty());
        let u = back.on_verdict(&verdict(VerdictLevel::Gateway, 0.9, 20, 6, &["a", "b"]));
        assert_eq!(u[0].seq, 1);
        assert_eq!(
            Some(u[0].id.as_str()),
            m.open_id("10.1.2.3".parse().unwrap())
        );
    }

    /// Regression (issue 15): an alert named a site that the line's verdict later dropped, and
    /// no alert corrected it.
    #[test]
    fn a_dissolved_site_is_corrected_by_an_update() {
        let mut m = AlertManager::new(AlertConfig::default());
        let mut v = verdict(VerdictLevel::Gateway, 0.9, 0, 10, &["a", "b"]);
        v.site = Some("site-203.0.113.10".into());
        let raised = m.on_verdict(&v);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].site.as_deref(), Some("site-203.0.113.10"));
        let mut later = verdict(VerdictLevel::Gateway, 0.9, 10, 10, &["a", "b"]);
        later.site = None;
        let upd = m.on_verdict(&later);
        assert_eq!(upd.len(), 1, "the site change is alerted");
        assert_eq!(upd[0].site, None);
        assert_eq!(upd[0].seq, 1);
        // Nothing new after that: quiet.
        assert!(m.on_verdict(&later).is_empty());
    }

    #[test]
    fn capacity_evicts_quietest_and_counts() {
        let mut m = AlertManager::new(AlertConfig {
            max_open: 2,
            ..Default::default()
        });
        for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            let mut v = verdict(VerdictLevel::Suspect, 0.5, i as i64, 1, &["a"]);
            v.line = ip.parse().unwrap();
            assert_eq!(m.on_verdict(&v).len(), 1);
        }
        assert_eq!(m.open_count(), 2);
        assert_eq!(m.evictions(), 1);
        assert!(m.open_id("10.0.0.1".parse().unwrap()).is_none());
    }

    fn threat(kind: ThreatKind) -> Threat {
        use simboxd_core::threats::ThreatTarget;
        Threat {
            peer: "203.0.113.9".parse().unwrap(),
            kind,
            severity: kind.severity(),
            lines: (0..20)
                .map(|i| ThreatTarget {
                    line: format!("10.0.0.{i}").parse().unwrap(),
                    requests: 1,
                    answers: BTreeMap::new(),
                    first_seen: Timestamp(T0),
                    last_seen: Timestamp(T0),
                })
                .collect(),
            lines_total: 20,
            requests: 20,
            first_seen: Timestamp(T0),
            last_seen: Timestamp(T0 + 1),
            user_agents: vec!["friendly-scanner".into()],
            answers: BTreeMap::new(),
            reasons: vec![Reason {
                signal: kind.label().into(),
                value: 20.0,
                strength: 1.0,
                detail: "INVITEs to 011972599123456".into(),
            }],
            numbers: vec!["011972599123456".into()],
            sources: Vec::new(),
            sources_total: 0,
            ended: None,
        }
    }

    #[test]
    fn threats_are_alerts_of_their_own_type_below_gateway() {
        let mut m = AlertManager::new(AlertConfig::default());
        let p = Pseudonymizer::with_key(b"0123456789abcdef").unwrap();
        let scan = m.on_threat(&threat(ThreatKind::Scan), Timestamp(T0), &p);
        assert_eq!(scan.len(), 1);
        let a = &scan[0];
        assert_eq!(
            (a.kind, a.state, a.severity),
            (AlertKind::Threat, AlertState::Raised, Severity::Notice)
        );
        assert!(a.severity < Severity::of(VerdictLevel::Gateway));
        assert_eq!(a.line.to_string(), "203.0.113.9");
        assert_eq!(a.verdict, VerdictLevel::Normal);
        assert_eq!(a.threat.as_ref().unwrap().lines.len(), ALERT_THREAT_LINES);
        // Numbers are pseudonymised, in the finding and its reasons.
        assert!(a.threat.as_ref().unwrap().numbers[0].starts_with("p:"));
        assert!(!a.reasons[0].detail.contains("011972599123456"));
        assert_eq!(a.syslog_severity(), 5);
        let j = serde_json::to_value(a).unwrap();
        assert_eq!(j["type"], "threat");
        assert_eq!(j["threat"]["kind"], "scan");
        assert!(a
            .summary(3)
            .starts_with("raised threat scan from 203.0.113.9 to 20 lines: "));
        // The same finding again (e.g. from another worker) is an update of the same episode.
        let again = m.on_threat(&threat(ThreatKind::Scan), Timestamp(T0 + 5), &p);
        assert_eq!(
            (again[0].state, again[0].seq, &again[0].id),
            (AlertState::Updated, 1, &a.id)
        );
        let toll = m.on_threat(&threat(ThreatKind::TollFraudAttempt), Timestamp(T0), &p);
        assert_eq!(toll[0].severity, Severity::Warning);
        assert_ne!(toll[0].id, a.id);
        let pbx = m.on_threat(&threat(ThreatKind::CompromisedPbx), Timestamp(T0), &p);
        assert_eq!(
            (pbx[0].kind, pbx[0].severity),
            (AlertKind::CompromisedPbx, Severity::Critical)
        );
        assert_eq!(pbx[0].line.to_string(), "10.0.0.0");
        assert_eq!(pbx[0].syslog_severity(), 2);
        // Old records without a type read back as line alerts.
        let mut old = serde_json::to_value(&pbx[0]).unwrap();
        if let Some(o) = old.as_object_mut() {
            o.remove("type");
            o.remove("threat");
        }
        let back: Alert = serde_json::from_value(old).unwrap();
        assert_eq!((back.kind, back.threat), (AlertKind::Line, None));
    }

    #[test]
    fn threat_episodes_are_cleared_when_the_table_closes_them() {
        let mut m = AlertManager::new(AlertConfig::default());
        let p = Pseudonymizer::disabled();
        let t = threat(ThreatKind::Scan);
        let raised = m.on_threat(&t, Timestamp(T0), &p);
        let up = m.on_threat(&t, Timestamp(T0 + 5), &p);
        let mut ended = t.clone();
        ended.ended = Some(Timestamp(T0 + 3600));
        let cleared = m.on_threat(&ended, Timestamp(T0 + 3600), &p);
        assert_eq!(
            (cleared[0].state, cleared[0].seq, &cleared[0].id),
            (AlertState::Cleared, 2, &raised[0].id)
        );
        assert_eq!(up[0].seq, 1);
        assert!(cleared[0]
            .summary(1)
            .starts_with("cleared threat scan from"));
        assert_eq!(cleared[0].syslog_severity(), 5);
        // Cleared once: a second close (another worker's) says nothing.
        assert!(m.on_threat(&ended, Timestamp(T0 + 3605), &p).is_empty());
        // The same peer at it again: a new episode with an id of its own.
        let again = m.on_threat(&t, Timestamp(T0 + 7200), &p);
        assert_eq!((again[0].state, again[0].seq), (AlertState::Raised, 0));
        assert_ne!(again[0].id, raised[0].id);
        // A flood from many sources is about its line, whichever source it names first.
        let mut f = threat(ThreatKind::Flood);
        f.sources = vec!["198.51.100.7".parse().unwrap()];
        f.sources_total = 180;
        let a = m.on_threat(&f, Timestamp(T0), &p);
        assert_eq!(a[0].line.to_string(), "10.0.0.0");
        assert!(a[0]
            .summary(0)
            .starts_with("raised threat flood from ~180 sources to line 10.0.0.0"));
        f.peer = "198.51.100.9".parse().unwrap();
        let b = m.on_threat(&f, Timestamp(T0 + 1), &p);
        assert_eq!((b[0].state, &b[0].id), (AlertState::Updated, &a[0].id));
    }

    #[test]
    fn alert_json_field_names_and_summary() {
        let mut v = verdict(VerdictLevel::Gateway, 0.93, 0, 5, &["inbound_many_numbers"]);
        v.reasons[0].detail = "40 calls to 13800001111\nand more".into();
        let p = Pseudonymizer::with_key(b"0123456789abcdef").unwrap();
        let a = AlertManager::default().on_verdict_with(&v, &p).remove(0);
        assert!(!a.reasons[0].detail.contains("13800001111"));
        let j: serde_json::Value = serde_json::to_value(&a).unwrap();
        for k in [
            "id",
            "seq",
            "idempotency_key",
            "state",
            "severity",
            "line",
            "site",
            "verdict",
            "score",
            "reasons",
            "first_seen",
            "last_seen",
            "flagged_at",
            "created",
        ] {
            assert!(j.get(k).is_some(), "missing {k}");
        }
        assert_eq!(j["state"], "raised");
        assert_eq!(j["severity"], "critical");
        assert_eq!(j["verdict"], "gateway");
        let back: Alert = serde_json::from_value(j).unwrap();
        assert_eq!(back, a);
        let s = a.summary(3);
        assert!(
            s.starts_with("raised line 10.1.2.3 gateway score 0.93: inbound_many_numbers ("),
            "{s}"
        );
        assert!(!s.contains('\n'));
    }

    #[test]
    fn config_sections_parse_and_errors_are_located() {
        use crate::config::Config;
        let ok = "[syslog]\ntargets = [\"udp://127.0.0.1:514\", \"tls://logs.example.net\"]\nformat = \"rfc3164\"\nfacility = \"local3\"\n\n[webhook]\nurl = \"https://hooks.example.net/simbox\"\nauth_header = \"Authorization: Bearer abc\"\n\n[storage]\npath = \"/tmp/x.redb\"\n\n[privacy]\npseudonymize = true\nkey = \"0123456789abcdef0\"\n\n[alert]\nclear_after_secs = 900\n";
        let c = Config::parse(ok, "ok.toml").unwrap();
        assert_eq!(c.syslog.targets.len(), 2);
        assert_eq!(c.syslog.targets[1].target.port, 6514);
        assert_eq!(c.syslog.format, syslog::SyslogFormat::Rfc3164);
        assert_eq!(c.syslog.facility.code(), 19);
        assert_eq!(c.webhook.url.as_ref().unwrap().host, "hooks.example.net");
        assert_eq!(c.alert.clear_after_secs, 900);
        assert!(c.privacy.pseudonymize);

        let e = Config::parse(
            "[syslog]\ntargets = [\"udp://a:514\",\n  \"smtp://b:25\"]\n",
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        // The bad element itself is named (was the array's opening bracket).
        assert!(e.starts_with("s.toml:3:3: ") && e.contains("smtp"), "{e}");

        // Per-target formats, the webhook's format, the SD-ID number and the sensor name.
        let c = Config::parse(
            "[alert]\nsensor = \"tap-7\"\n[syslog]\nformat = \"cef\"\nsd_enterprise = 99999\ntargets = [\"udp://a:514\", { url = \"tcp://b\", format = \"ecs\" }]\n[webhook]\nformat = \"cef\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(c.syslog.format, syslog::SyslogFormat::Cef);
        assert_eq!(c.syslog.sd_enterprise.get(), 99999);
        assert_eq!(
            (c.syslog.targets[0].format, c.syslog.targets[1].format),
            (None, Some(syslog::SyslogFormat::Ecs))
        );
        assert_eq!(c.syslog.targets[1].target.to_string(), "tcp://b:601");
        assert_eq!(c.webhook.format, webhook::WebhookFormat::Cef);
        assert_eq!(c.alert.sensor.as_deref(), Some("tap-7"));
        // And back: a target with its own format serialises as a table.
        let back = toml::to_string(&c.syslog).unwrap();
        let again: syslog::SyslogConfig = toml::from_str(&back).unwrap();
        assert_eq!(again, c.syslog, "{back}");
        let defaults = Config::parse("", "d.toml").unwrap();
        assert_eq!(defaults.syslog.sd_enterprise.get(), 32473);
        assert_eq!(defaults.webhook.format, webhook::WebhookFormat::Json);
        for (text, at, what) in [
            ("[syslog]\nformat = \"leef\"\n", "x.toml:2:10: ", "leef"),
            (
                "[syslog]\ntargets = [\n { url = \"udp://a\", format = \"xml\" }]\n",
                "x.toml:3:",
                "xml",
            ),
            (
                "[syslog]\ntargets = [{ url = \"udp://a\", fmt = \"ecs\" }]\n",
                "x.toml:2:",
                "fmt",
            ),
            ("[syslog]\nsd_enterprise = 0\n", "x.toml:2:17: ", "nonzero"),
            (
                "[webhook]\nformat = \"rfc5424\"\n",
                "x.toml:2:10: ",
                "rfc5424",
            ),
            ("[alert]\nsensor = \"\"\n", "x.toml:2:1: ", "alert.sensor"),
        ] {
            let e = Config::parse(text, "x.toml").unwrap_err().to_string();
            assert!(e.starts_with(at) && e.contains(what), "{text}: {e}");
        }
        let e = Config::parse("[syslog]\nformat = \"rfc9999\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml:2:10: "), "{e}");
        let e = Config::parse("[webhook]\nurl = \"http://h/\"\nretries = 3\n", "w.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("w.toml:3:1: ") && e.contains("retries"),
            "{e}"
        );
        let e = Config::parse("[webhook]\nauth_header = \"Bearer x\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:2:15: ") && e.contains("Name: value"),
            "{e}"
        );
        let e = Config::parse("[privacy]\n pseudonymize = true\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml:2:2: ") && e.contains("key"), "{e}");
        let e = Config::parse("[alert]\nscore_step = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.toml:2:1: alert.score_step must be in (0, 1]");
    }
}
