//! Threats: attacks on lines, reported as findings about the attacking peer.
//!
//! Contract: [`ThreatTable`] takes every [`Event`](crate::model::Event) in capture order and
//! keeps, per remote peer that sent requests into the home networks, what it sent to which line
//! and what each line answered. A peer earns one or more [`ThreatKind`]s — `scan`, `enumeration`,
//! `toll_fraud_attempt`, `flood`, `framing` — by thresholds of the `[threats]` section; a line
//! that relayed a toll-fraud call (voice both ways or early media it sent, or a call it placed to
//! the same international number shortly after) is a `compromised_pbx` finding about that line.
//! What others send a line is never a finding against the line: a device that answers without
//! relaying (a camera, an intercom) is listed as a target with its answer.
//!
//! Bounds: `max_peers` peers (the least recently seen unclassified peer goes first; evictions
//! counted), `max_lines_per_peer` targets, `max_users_per_peer` remembered user names and
//! numbers, `max_agents_per_peer` User-Agents per peer; findings of peers no longer tracked are
//! kept up to `max_findings`, compromised-PBX findings up to `max_pbx_lines`. Packet time only.
//!
//! Files: this one holds the public types and `merge`; `table` the table and how events update
//! it, `peer` the per-peer state, `classify` the rules that earn kinds and the findings built
//! from them, `user` how a dialled number or user name is read (and its pseudonymous form),
//! `tests` the tests.

mod classify;
mod flood;
mod peer;
mod rate;
mod table;
#[cfg(test)]
mod tests;
mod user;

pub use table::ThreatTable;
pub use user::{pseudonymous, UserClass};

use crate::config::Invalid;
use crate::model::{Reason, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// `[threats]` section: caps and thresholds of the threat table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreatsConfig {
    /// Remote peers tracked at once.
    pub max_peers: usize,
    /// Target lines kept per peer (more are counted, not listed).
    pub max_lines_per_peer: usize,
    /// Distinct user names and called numbers remembered per peer (beyond: counted as new).
    pub max_users_per_peer: usize,
    /// Distinct User-Agent strings kept per peer.
    pub max_agents_per_peer: usize,
    /// Findings of peers no longer tracked (idle or evicted) that are kept for the output.
    pub max_findings: usize,
    /// Lines watched for compromised-PBX behaviour, and compromised-PBX findings kept.
    pub max_pbx_lines: usize,
    /// A peer with no request for this long is forgotten (its findings are kept).
    pub idle_secs: u32,
    /// `scan`: OPTIONS/REGISTER/other out-of-dialog requests to at least this many lines.
    pub scan_min_lines: u32,
    /// `enumeration`: at least this many distinct user names tried at one line.
    pub enumeration_min_users: u32,
    /// `toll_fraud_attempt`: at least this many INVITEs to international/premium numbers.
    pub toll_min_invites: u32,
    /// `flood`: at least `flood_min_requests` requests within `flood_window_secs`.
    pub flood_window_secs: u32,
    /// `flood`: requests from one peer within `flood_window_secs` that make a flood.
    pub flood_min_requests: u32,
    /// `flood`: a burst this long at the same rate (`flood_min_requests` per
    /// `flood_window_secs`) is a flood too, though it ends before the window fills.
    pub flood_burst_secs: u32,
    /// `flood` from many sources: requests at one line within `flood_window_secs`, at least
    /// `flood_min_requests` of them from at least this many source addresses (forged sources
    /// each stay below the per-peer rate). One finding per line, "from many sources".
    pub flood_min_sources: u32,
    /// `flood` from many sources: requests at one line within `flood_window_secs` (or the
    /// same rate over `flood_burst_secs`) that make a flood when they come from at least
    /// `flood_min_sources` addresses. Lower than `flood_min_requests`: a flood aimed at a range
    /// splits its rate over its targets, and no legitimate traffic reaches one line from that
    /// many addresses at once.
    pub flood_sources_min_requests: u32,
    /// Lines whose request rate is tracked at once for floods from many sources (the quietest
    /// goes first when full; evictions counted).
    pub max_flood_lines: usize,
    /// A threat episode closes (its alert is `cleared`) when the attacker (for a flood from
    /// many sources: the flood at the line; for a compromised PBX: its relaying) has been
    /// quiet this long; renewed activity opens a new episode.
    pub clear_after_secs: u32,
    /// `framing`: at one line, at least this many ended INVITEs ...
    pub framing_min_invites: u32,
    /// ... to at least this many distinct numbers ...
    pub framing_min_numbers: u32,
    /// ... of which the line relayed at most this share ...
    pub framing_max_relayed_share: f64,
    /// ... in a gateway's shape: at most this many at once (a gateway's channel count, not a
    /// flood) ...
    pub framing_max_concurrent: u32,
    /// ... over at least this many seconds (a stream, not a burst).
    pub framing_min_secs: u32,
    /// `compromised_pbx`: an outbound call from the line to a number a foreign peer had just
    /// sent it (as an international/premium INVITE) within this many seconds.
    pub pbx_window_secs: u32,
    /// Dial prefixes of international or premium numbers (`00`, `011`, `9011`, `+`, `900`).
    pub toll_prefixes: Vec<String>,
    /// Country calling codes of the home country (e.g. `["49"]`): an international prefix
    /// followed by one of them is a domestic number. When empty, a peer only counts as a
    /// toll-fraud attempt when it dials few numbers repeatedly (a feed of mostly distinct
    /// numbers is a line's business, judged by detection).
    pub home_calling_codes: Vec<String>,
}

impl Default for ThreatsConfig {
    fn default() -> Self {
        ThreatsConfig {
            max_peers: 2048,
            max_lines_per_peer: 128,
            max_users_per_peer: 512,
            max_agents_per_peer: 4,
            max_findings: 512,
            max_pbx_lines: 1024,
            idle_secs: 3600,
            scan_min_lines: 10,
            enumeration_min_users: 10,
            toll_min_invites: 3,
            flood_window_secs: 10,
            flood_min_requests: 500,
            flood_burst_secs: 2,
            flood_min_sources: 16,
            flood_sources_min_requests: 100,
            max_flood_lines: 4096,
            clear_after_secs: 3600,
            framing_min_invites: 10,
            framing_min_numbers: 8,
            framing_max_relayed_share: 0.1,
            framing_max_concurrent: 32,
            framing_min_secs: 60,
            pbx_window_secs: 120,
            toll_prefixes: ["00", "011", "9011", "+", "900"]
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            home_calling_codes: Vec::new(),
        }
    }
}

impl ThreatsConfig {
    /// Checks every cap and threshold; the first bad key is the error.
    pub fn validate(&self) -> Result<(), Invalid> {
        let caps: [(&str, bool); 17] = [
            ("max_peers", self.max_peers > 0),
            ("max_lines_per_peer", self.max_lines_per_peer > 0),
            ("max_users_per_peer", self.max_users_per_peer > 0),
            ("max_findings", self.max_findings > 0),
            ("max_pbx_lines", self.max_pbx_lines > 0),
            ("idle_secs", self.idle_secs > 0),
            ("scan_min_lines", self.scan_min_lines >= 2),
            ("enumeration_min_users", self.enumeration_min_users >= 2),
            ("toll_min_invites", self.toll_min_invites > 0),
            ("flood_window_secs", self.flood_window_secs > 0),
            ("flood_min_requests", self.flood_min_requests >= 2),
            ("flood_burst_secs", self.flood_burst_secs > 0),
            ("framing_min_invites", self.framing_min_invites >= 2),
            ("flood_min_sources", self.flood_min_sources >= 2),
            (
                "flood_sources_min_requests",
                self.flood_sources_min_requests >= 2,
            ),
            ("max_flood_lines", self.max_flood_lines > 0),
            ("clear_after_secs", self.clear_after_secs > 0),
        ];
        if let Some((key, _)) = caps.iter().find(|(_, ok)| !ok) {
            return Err(Invalid::new(*key, format!("threats.{key} is too small")));
        }
        if self.flood_burst_secs > self.flood_window_secs {
            return Err(Invalid::new(
                "flood_burst_secs",
                "threats.flood_burst_secs must not exceed threats.flood_window_secs".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.framing_max_relayed_share) {
            return Err(Invalid::new(
                "framing_max_relayed_share",
                "threats.framing_max_relayed_share must be within 0..1".into(),
            ));
        }
        if self.framing_min_numbers == 0 {
            return Err(Invalid::new(
                "framing_min_numbers",
                "threats.framing_min_numbers is too small".into(),
            ));
        }
        let digits = |s: &String| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(p) = self
            .toll_prefixes
            .iter()
            .find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit() || b == b'+'))
        {
            return Err(Invalid::new(
                "toll_prefixes",
                format!("threats.toll_prefixes: {p:?} is not a dial prefix (digits or +)"),
            ));
        }
        if let Some(c) = self.home_calling_codes.iter().find(|c| !digits(c)) {
            return Err(Invalid::new(
                "home_calling_codes",
                format!("threats.home_calling_codes: {c:?} is not a calling code (digits)"),
            ));
        }
        Ok(())
    }
}

/// What a peer did to lines (or, for `compromised_pbx`, what a line did with an attack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatKind {
    /// Out-of-dialog requests (OPTIONS, REGISTER, ...) sweeping many lines.
    Scan,
    /// Many distinct user names tried at one line (account guessing).
    Enumeration,
    /// INVITEs to international or premium numbers through the lines.
    TollFraudAttempt,
    /// A request rate no telephone makes, from one peer or from many forged sources at one line.
    Flood,
    /// A stream of calls to many numbers that the line (mostly) does not relay: an attempt to make
    /// a line look like a gateway.
    Framing,
    /// A line that relayed a foreign peer's international/premium call out: fraud through the line.
    CompromisedPbx,
}

/// The kinds a peer can earn, in report order.
const PEER_KINDS: [ThreatKind; 5] = [
    ThreatKind::TollFraudAttempt,
    ThreatKind::Framing,
    ThreatKind::Flood,
    ThreatKind::Enumeration,
    ThreatKind::Scan,
];

impl ThreatKind {
    /// The kind's name in JSON, alerts and reports (`scan`, `toll_fraud_attempt`, ...).
    pub fn label(self) -> &'static str {
        match self {
            ThreatKind::Scan => "scan",
            ThreatKind::Enumeration => "enumeration",
            ThreatKind::TollFraudAttempt => "toll_fraud_attempt",
            ThreatKind::Flood => "flood",
            ThreatKind::Framing => "framing",
            ThreatKind::CompromisedPbx => "compromised_pbx",
        }
    }
    /// The severity every finding of this kind has.
    pub fn severity(self) -> ThreatSeverity {
        match self {
            ThreatKind::Scan | ThreatKind::Enumeration => ThreatSeverity::Low,
            ThreatKind::TollFraudAttempt | ThreatKind::Flood | ThreatKind::Framing => {
                ThreatSeverity::Medium
            }
            ThreatKind::CompromisedPbx => ThreatSeverity::High,
        }
    }
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Severity of a threat. Attacks on lines rank below a `gateway` verdict; a compromised PBX
/// (fraud through the line) is `high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreatSeverity {
    /// Reconnaissance (scan, enumeration).
    Low,
    /// An attack in progress (toll fraud attempt, flood, framing).
    Medium,
    /// Fraud through a line (compromised PBX).
    High,
}

impl ThreatSeverity {
    /// The severity's name (`low`, `medium`, `high`).
    pub fn label(self) -> &'static str {
        match self {
            ThreatSeverity::Low => "low",
            ThreatSeverity::Medium => "medium",
            ThreatSeverity::High => "high",
        }
    }
}

/// One line a threat was aimed at, with what that line answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreatTarget {
    /// The targeted line.
    pub line: IpAddr,
    /// Requests the peer sent to it.
    pub requests: u64,
    /// Status codes (`"404"`), call participations (`"rejected"`, `"answered_one_way"`, ...) and
    /// `"none"` (requests with no answer), with their counts.
    pub answers: BTreeMap<String, u64>,
    /// Capture time of the first request to the line.
    pub first_seen: Timestamp,
    /// Capture time of the latest request to the line.
    pub last_seen: Timestamp,
}

/// One finding: a peer and one kind of attack it made, with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    /// The attacking peer (for a flood from many sources: the first source seen).
    pub peer: IpAddr,
    /// What the peer did.
    pub kind: ThreatKind,
    /// The kind's severity.
    pub severity: ThreatSeverity,
    /// Targets (at most `max_lines_per_peer`), most requests first.
    pub lines: Vec<ThreatTarget>,
    /// Distinct lines the peer sent requests to (estimated beyond `max_lines_per_peer`).
    pub lines_total: u64,
    /// Requests from the peer counted for this finding.
    pub requests: u64,
    /// Capture time of the peer's first request.
    pub first_seen: Timestamp,
    /// Capture time of the peer's latest request.
    pub last_seen: Timestamp,
    /// User-Agent strings the peer sent (at most `max_agents_per_peer`).
    pub user_agents: Vec<String>,
    /// What the lines answered, over all targets (see [`ThreatTarget::answers`]).
    pub answers: BTreeMap<String, u64>,
    /// The figures behind the finding (name, value and text, as for a line verdict).
    pub reasons: Vec<Reason>,
    /// International/premium numbers dialled (a sample; phone numbers: personal data).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// A flood from many (forged) sources at one line: a sample of the source addresses
    /// (`peer` is the first of them) and how many there were (estimated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<IpAddr>,
    /// How many distinct source addresses the flood came from (estimated).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sources_total: u64,
    /// When the episode closed: the attacker had been quiet for `threats.clear_after_secs`
    /// (packet time). Absent while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Orders findings: highest severity first, then most requests.
fn sort_threats(v: &mut [Threat]) {
    v.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.requests.cmp(&a.requests))
            .then(a.peer.cmp(&b.peer))
            .then(a.kind.cmp(&b.kind))
    });
}

/// Findings of several engines (the daemon shards lines over workers, so each sees its share of
/// a peer's targets) as one list: one entry per peer and kind (and line, for `compromised_pbx`;
/// per line only, for a flood from many sources), counts added, targets and user agents joined,
/// each engine's reasons kept.
pub fn merge(all: Vec<Threat>) -> Vec<Threat> {
    let mut by: BTreeMap<(IpAddr, ThreatKind, Option<IpAddr>), Threat> = BTreeMap::new();
    for t in all {
        // A compromised PBX, and a flood from many sources, are about one line.
        let line = (t.kind == ThreatKind::CompromisedPbx || !t.sources.is_empty())
            .then(|| t.lines.first().map(|l| l.line))
            .flatten();
        // A flood from many sources is one per line, whichever source each engine names.
        let peer = if t.sources.is_empty() {
            t.peer
        } else {
            IpAddr::from([0u8, 0, 0, 0])
        };
        match by.entry((peer, t.kind, line)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(t);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let m = e.get_mut();
                m.requests += t.requests;
                m.lines_total += t.lines_total;
                m.first_seen = m.first_seen.min(t.first_seen);
                m.last_seen = m.last_seen.max(t.last_seen);
                m.lines.extend(t.lines);
                m.lines
                    .sort_by(|a, b| b.requests.cmp(&a.requests).then(a.line.cmp(&b.line)));
                for a in t.user_agents {
                    if !m.user_agents.contains(&a) {
                        m.user_agents.push(a);
                    }
                }
                for (k, n) in t.answers {
                    *m.answers.entry(k).or_insert(0) += n;
                }
                m.reasons.extend(t.reasons);
                for n in t.numbers {
                    if !m.numbers.contains(&n) {
                        m.numbers.push(n);
                    }
                }
                for a in t.sources {
                    if !m.sources.contains(&a) {
                        m.sources.push(a);
                    }
                }
                m.sources_total += t.sources_total;
                // Closed only when every engine's episode is.
                m.ended = match (m.ended, t.ended) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
        }
    }
    let mut out: Vec<Threat> = by.into_values().collect();
    sort_threats(&mut out);
    out
}
