//! Threats: attacks on lines, reported as findings about the attacking peer.
//!
//! Contract: [`ThreatTable`] takes every [`Event`] in capture order and keeps, per remote peer
//! that sent requests into the home networks, what it sent to which line and what each line
//! answered. A peer earns one or more [`ThreatKind`]s — `scan`, `enumeration`,
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

use crate::config::{Invalid, NetworkConfig};
use crate::model::{
    CallRecord, Counters, Direction, Event, Participation, ProbeMethod, ProbeRecord, Reason,
    RegistrationRecord, Timestamp,
};
use crate::table::TimedTable;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
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
    pub flood_min_requests: u32,
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
    pub fn validate(&self) -> Result<(), Invalid> {
        let caps: [(&str, bool); 12] = [
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
            ("framing_min_invites", self.framing_min_invites >= 2),
        ];
        if let Some((key, _)) = caps.iter().find(|(_, ok)| !ok) {
            return Err(Invalid::new(*key, format!("threats.{key} is too small")));
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
    Scan,
    Enumeration,
    TollFraudAttempt,
    Flood,
    Framing,
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
    Low,
    Medium,
    High,
}

impl ThreatSeverity {
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
    pub line: IpAddr,
    pub requests: u64,
    /// Status codes (`"404"`), call participations (`"rejected"`, `"answered_one_way"`, ...) and
    /// `"none"` (requests with no answer), with their counts.
    pub answers: BTreeMap<String, u64>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// One finding: a peer and one kind of attack it made, with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    pub peer: IpAddr,
    pub kind: ThreatKind,
    pub severity: ThreatSeverity,
    /// Targets (at most `max_lines_per_peer`), most requests first.
    pub lines: Vec<ThreatTarget>,
    /// Distinct lines the peer sent requests to (estimated beyond `max_lines_per_peer`).
    pub lines_total: u64,
    pub requests: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub user_agents: Vec<String>,
    /// What the lines answered, over all targets (see [`ThreatTarget::answers`]).
    pub answers: BTreeMap<String, u64>,
    pub reasons: Vec<Reason>,
    /// International/premium numbers dialled (a sample; phone numbers: personal data).
    #[serde(default)]
    pub numbers: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Per-peer state.

const PARTICIPATIONS: [Participation; 7] = [
    Participation::Placed,
    Participation::TwoWayVoice,
    Participation::AnsweredNoMedia,
    Participation::EarlyMedia,
    Participation::AnsweredOneWay,
    Participation::Rejected,
    Participation::Ignored,
];

fn participation_index(p: Participation) -> usize {
    PARTICIPATIONS.iter().position(|x| *x == p).unwrap_or(6)
}

/// Distinct status codes kept per answer tally; others are counted as `other`.
const MAX_CODES: usize = 8;
/// Premium numbers kept as text per peer (for the report) and distinct ones remembered.
const MAX_NUMBER_SAMPLES: usize = 8;
const MAX_PREMIUM_HASHES: usize = 64;
/// Recent international INVITEs remembered per watched line (compromised-PBX check).
const MAX_WATCH_PER_LINE: usize = 8;
/// How long an international INVITE is remembered for the outbound-call check: the PBX's
/// outbound call is reported when it ends, and may last this long.
const WATCH_KEEP_SECS: f64 = 4.0 * 3600.0;
/// Threat changes held for `take_changes`; beyond it they are counted, not kept.
const MAX_PENDING_CHANGES: usize = 10_000;
/// Linear-counting bitmap size (bits) for distinct lines beyond the kept targets.
const SKETCH_BITS: usize = 1024;

/// What lines answered: status codes of probes/REGISTERs and participation in INVITEs.
#[derive(Clone, Debug, Default)]
struct Answers {
    codes: Vec<(u16, u64)>,
    other_codes: u64,
    participation: [u64; 7],
    /// Non-INVITE requests sent and final responses seen to them.
    asked: u64,
    answered: u64,
}

impl Answers {
    fn code(&mut self, c: u16) {
        self.answered += 1;
        if let Some(e) = self.codes.iter_mut().find(|(k, _)| *k == c) {
            e.1 += 1;
        } else if self.codes.len() < MAX_CODES {
            self.codes.push((c, 1));
        } else {
            self.other_codes += 1;
        }
    }
    fn to_map(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (c, n) in &self.codes {
            m.insert(c.to_string(), *n);
        }
        if self.other_codes > 0 {
            m.insert("other".into(), self.other_codes);
        }
        for (p, n) in PARTICIPATIONS.iter().zip(self.participation) {
            if n > 0 {
                m.insert(p.label().to_string(), n);
            }
        }
        let none = self.asked.saturating_sub(self.answered);
        if none > 0 {
            m.insert("none".into(), none);
        }
        m
    }
    /// "200 x 3, 404 x 12, none x 197"
    fn text(&self) -> String {
        let mut v: Vec<(String, u64)> = self.to_map().into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k} x {n}")).collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Most INVITEs open at once at a line for its names to count as enumeration.
const ENUMERATION_MAX_OPEN: u32 = 8;

#[derive(Clone, Debug)]
struct Target {
    line: IpAddr,
    first: Timestamp,
    last: Timestamp,
    requests: u64,
    /// Non-INVITE requests (OPTIONS, REGISTER, ...).
    probes: u64,
    /// Distinct user names tried (enumeration) and distinct ordinary numbers called (framing).
    users: u32,
    numbers: u32,
    names: Vec<u64>,
    /// Ordinary (not international/premium) INVITEs that ended, and how many the line relayed.
    calls_ended: u64,
    calls_relayed: u64,
    premium: u64,
    premium_relayed: u64,
    open: u32,
    max_open: u32,
    answers: Answers,
}

impl Target {
    fn new(line: IpAddr, ts: Timestamp) -> Target {
        Target {
            line,
            first: ts,
            last: ts,
            requests: 0,
            probes: 0,
            users: 0,
            numbers: 0,
            names: Vec::new(),
            calls_ended: 0,
            calls_relayed: 0,
            premium: 0,
            premium_relayed: 0,
            open: 0,
            max_open: 0,
            answers: Answers::default(),
        }
    }

    fn framed(&self, cfg: &ThreatsConfig) -> bool {
        self.calls_ended >= u64::from(cfg.framing_min_invites)
            && self.numbers >= cfg.framing_min_numbers
            && self.max_open <= cfg.framing_max_concurrent
            && self.last.secs_since(self.first) >= f64::from(cfg.framing_min_secs)
            && (self.calls_relayed as f64)
                <= cfg.framing_max_relayed_share * self.calls_ended as f64
    }

    fn output(&self) -> ThreatTarget {
        ThreatTarget {
            line: self.line,
            requests: self.requests,
            answers: self.answers.to_map(),
            first_seen: self.first,
            last_seen: self.last,
        }
    }
}

/// Distinct-count sketch (linear counting) for lines beyond the kept targets.
#[derive(Clone, Debug)]
struct Sketch([u64; SKETCH_BITS / 64]);

impl Sketch {
    fn new() -> Sketch {
        Sketch([0; SKETCH_BITS / 64])
    }
    fn insert(&mut self, h: u64) {
        let bit = (h % SKETCH_BITS as u64) as usize;
        if let Some(w) = self.0.get_mut(bit / 64) {
            *w |= 1 << (bit % 64);
        }
    }
    fn estimate(&self) -> u64 {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        let m = SKETCH_BITS as f64;
        let zero = (m - f64::from(set)).max(1.0);
        (-m * (zero / m).ln()).round() as u64
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct MethodCounts {
    options: u64,
    register: u64,
    invite: u64,
    other: u64,
}

#[derive(Clone, Debug)]
struct Peer {
    ip: IpAddr,
    first: Timestamp,
    last: Timestamp,
    requests: u64,
    methods: MethodCounts,
    targets: Vec<Target>,
    /// Some line could not be kept as a target: `lines_total` comes from the sketches.
    overflow: bool,
    lines: Sketch,
    probed: Sketch,
    probed_lines: u64,
    agents: Vec<String>,
    names_used: usize,
    answers: Answers,
    premium_invites: u64,
    premium_ended: u64,
    premium_relayed: u64,
    premium_hashes: Vec<u64>,
    premium_distinct: u64,
    premium_samples: Vec<String>,
    max_users_at_line: u32,
    window_start: Timestamp,
    window_count: u64,
    flood_max: u64,
    kinds: u8,
}

impl Peer {
    fn new(ip: IpAddr, ts: Timestamp) -> Peer {
        Peer {
            ip,
            first: ts,
            last: ts,
            requests: 0,
            methods: MethodCounts::default(),
            targets: Vec::new(),
            overflow: false,
            lines: Sketch::new(),
            probed: Sketch::new(),
            probed_lines: 0,
            agents: Vec::new(),
            names_used: 0,
            answers: Answers::default(),
            premium_invites: 0,
            premium_ended: 0,
            premium_relayed: 0,
            premium_hashes: Vec::new(),
            premium_distinct: 0,
            premium_samples: Vec::new(),
            max_users_at_line: 0,
            window_start: ts,
            window_count: 0,
            flood_max: 0,
            kinds: 0,
        }
    }

    fn lines_total(&self) -> u64 {
        let kept = self.targets.len() as u64;
        if self.overflow {
            kept.max(self.lines.estimate())
        } else {
            kept
        }
    }

    fn probed_total(&self) -> u64 {
        if self.overflow {
            self.probed_lines.max(self.probed.estimate())
        } else {
            self.probed_lines
        }
    }

    fn target_index(&self, line: IpAddr) -> Option<usize> {
        self.targets.iter().position(|t| t.line == line)
    }
}

/// A compromised-PBX finding about one line.
#[derive(Clone, Debug)]
struct PbxFinding {
    line: IpAddr,
    peer: IpAddr,
    first: Timestamp,
    last: Timestamp,
    relayed: u64,
    placed: u64,
    numbers: Vec<String>,
    agents: Vec<String>,
    answers: Answers,
}

/// A recent international INVITE to a line: (number hash, time, peer, number).
type Watched = (u64, Timestamp, IpAddr, String);

/// The threat stage: every attacking peer, its targets and what they answered.
pub struct ThreatTable {
    cfg: std::sync::Arc<ThreatsConfig>,
    network: NetworkConfig,
    prefixes: Vec<String>,
    hasher: ahash::RandomState,
    peers: TimedTable<IpAddr, Peer>,
    past: VecDeque<Threat>,
    pbx: TimedTable<IpAddr, PbxFinding>,
    watch: TimedTable<IpAddr, Vec<Watched>>,
    changes: Vec<Threat>,
    evictions: Counters,
    now: Timestamp,
}

/// Whether a user part is a phone number (digits, optionally after `+`, at least 7).
fn number_like(u: &str) -> bool {
    let d = u.strip_prefix('+').unwrap_or(u);
    d.len() >= 7 && d.bytes().all(|b| b.is_ascii_digit())
}

fn short_span(secs: f64) -> String {
    if secs < 120.0 {
        format!("{:.0} s", secs.max(0.0))
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

fn agents_text(agents: &[String]) -> String {
    if agents.is_empty() {
        String::new()
    } else {
        format!(", User-Agent {}", agents.join(" / "))
    }
}

impl ThreatTable {
    pub fn new(cfg: &ThreatsConfig, network: &NetworkConfig) -> ThreatTable {
        let mut prefixes = cfg.toll_prefixes.clone();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        ThreatTable {
            cfg: std::sync::Arc::new(cfg.clone()),
            network: network.clone(),
            prefixes,
            // Fixed seeds: the distinct-line estimate must not vary between runs.
            hasher: ahash::RandomState::with_seeds(
                0x5173_b0cd,
                0x7e1e_9a11,
                0x0ddb_a11e,
                0x51b0_c5ed,
            ),
            peers: TimedTable::new(cfg.max_peers),
            past: VecDeque::new(),
            pbx: TimedTable::new(cfg.max_pbx_lines),
            watch: TimedTable::new(cfg.max_pbx_lines),
            changes: Vec::new(),
            evictions: Counters::default(),
            now: Timestamp::default(),
        }
    }

    /// Takes a config reload (thresholds apply from now on; kept state stays).
    pub fn set_config(&mut self, cfg: &ThreatsConfig, network: &NetworkConfig) {
        let mut prefixes = cfg.toll_prefixes.clone();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        self.prefixes = prefixes;
        self.cfg = std::sync::Arc::new(cfg.clone());
        self.network = network.clone();
    }

    /// Feeds one event (capture order).
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Probe(p) => self.on_probe(p),
            Event::Registration(r) => self.on_registration(r),
            Event::CallEnded(c) => self.on_call_ended(c),
            _ => {}
        }
    }

    /// The digits after an international/premium prefix, when `number` is one (and not a
    /// home-country number written internationally).
    fn premium(&self, number: &str) -> Option<String> {
        let n = number.trim();
        for p in &self.prefixes {
            let Some(rest) = n.strip_prefix(p.as_str()) else {
                continue;
            };
            if rest.len() < 6 || !rest.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if self
                .cfg
                .home_calling_codes
                .iter()
                .any(|cc| rest.starts_with(cc.as_str()))
            {
                return None;
            }
            return Some(rest.to_string());
        }
        None
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The peer entry for `ip` (created, evicting the oldest unclassified when full), with its
    /// deadline moved.
    fn peer_mut(&mut self, ip: IpAddr, ts: Timestamp) -> Option<&mut Peer> {
        if ts > self.now {
            self.now = ts;
        }
        let idle = f64::from(self.cfg.idle_secs);
        if !self.peers.contains(&ip) {
            if let Some((_, old)) = self.peers.insert(ip, Peer::new(ip, ts), ts.plus_secs(idle)) {
                self.evictions.add("threat_peers", 1);
                self.retire(old);
            }
        }
        let (p, deadline) = self.peers.get_mut_with_deadline(&ip)?;
        if ts > p.last {
            p.last = ts;
        }
        // Events may come out of time order (several workers feed one table).
        p.first = p.first.min(ts);
        // Classified peers are kept longer than the rest: a flood of one-shot senders evicts
        // the unclassified first.
        let keep = if p.kinds != 0 { idle * 24.0 } else { idle };
        let want = p.last.plus_secs(keep);
        if want.micros() - deadline.micros() >= 1_000_000 {
            self.peers.set_deadline(&ip, want);
        }
        self.peers.get_mut(&ip)
    }

    /// A peer leaves the table: what it earned is kept as findings.
    fn retire(&mut self, p: Peer) {
        if p.kinds == 0 {
            return;
        }
        for k in PEER_KINDS {
            if p.kinds & k.bit() != 0 {
                let t = self.build(&p, k);
                if self.past.len() >= self.cfg.max_findings {
                    self.past.pop_front();
                    self.evictions.add("threat_findings", 1);
                }
                self.past.push_back(t);
            }
        }
    }

    /// Index of `line`'s target in `peer` (created when there is room).
    fn target(
        cfg: &ThreatsConfig,
        peer: &mut Peer,
        line: IpAddr,
        lh: u64,
        ts: Timestamp,
    ) -> Option<usize> {
        if let Some(i) = peer.target_index(line) {
            return Some(i);
        }
        peer.lines.insert(lh);
        if peer.targets.len() >= cfg.max_lines_per_peer {
            peer.overflow = true;
            return None;
        }
        peer.targets.push(Target::new(line, ts));
        Some(peer.targets.len() - 1)
    }

    fn on_probe(&mut self, p: &ProbeRecord) {
        let peer_ip = p.peer.ip();
        if self.network.is_home(peer_ip) {
            return;
        }
        match p.status {
            None => self.on_request(peer_ip, p),
            Some(code) => {
                let Some(peer) = self.peers.get_mut(&peer_ip) else {
                    return;
                };
                peer.answers.code(code);
                if let Some(t) = peer
                    .target_index(p.line)
                    .and_then(|i| peer.targets.get_mut(i))
                {
                    t.answers.code(code);
                }
            }
        }
    }

    fn on_request(&mut self, peer_ip: IpAddr, p: &ProbeRecord) {
        let user = p.request_user.as_deref().or(p.to_user.as_deref());
        let premium = match p.method {
            ProbeMethod::Invite => user.and_then(|u| self.premium(u)),
            _ => None,
        };
        let uh = user.map(|u| self.hash(u));
        let ph = premium.as_deref().map(|n| self.hash(n));
        let lh = self.hasher.hash_one(p.line);
        let cfg = self.cfg.clone();
        let Some(peer) = self.peer_mut(peer_ip, p.time) else {
            return;
        };
        Self::count_request(&cfg, peer, p.time, p.user_agent.as_deref());
        let invite = p.method == ProbeMethod::Invite;
        match p.method {
            ProbeMethod::Options => peer.methods.options += 1,
            ProbeMethod::Invite => peer.methods.invite += 1,
            _ => peer.methods.other += 1,
        }
        if !invite {
            peer.answers.asked += 1;
        }
        let ti = Self::target(&cfg, peer, p.line, lh, p.time);
        if !invite {
            Self::mark_probed(peer, ti, lh);
        }
        if let (Some(ph), true) = (ph, premium.is_some()) {
            peer.premium_invites += 1;
            if !peer.premium_hashes.contains(&ph) {
                if peer.premium_hashes.len() < MAX_PREMIUM_HASHES {
                    peer.premium_hashes.push(ph);
                }
                peer.premium_distinct += 1;
            }
            // As dialled: prefix variants of one number (`011...`, `9011...`) are telling.
            if let Some(u) = user {
                if peer.premium_samples.len() < MAX_NUMBER_SAMPLES
                    && !peer.premium_samples.iter().any(|x| x == u)
                {
                    peer.premium_samples.push(u.to_string());
                }
            }
        }
        if let Some(t) = ti.and_then(|i| peer.targets.get_mut(i)) {
            t.requests += 1;
            if p.time > t.last {
                t.last = p.time;
            }
            t.first = t.first.min(p.time);
            if invite {
                t.open = t.open.saturating_add(1);
                t.max_open = t.max_open.max(t.open);
                if premium.is_some() {
                    t.premium += 1;
                }
            } else {
                t.probes += 1;
                t.answers.asked += 1;
            }
        }
        // Names: user names tried (any probe, or an INVITE to an extension-like user) and
        // ordinary numbers called (INVITEs), per line.
        if let (Some(u), Some(h)) = (user, uh) {
            if premium.is_none() {
                let is_number = invite && number_like(u);
                Self::add_name(&cfg, peer, ti, h, is_number);
            }
        }
        self.classify(peer_ip);
        if let (Some(n), Some(ph)) = (premium, ph) {
            self.watch_line(p.line, peer_ip, ph, n, p.time);
        }
    }

    fn count_request(cfg: &ThreatsConfig, peer: &mut Peer, ts: Timestamp, agent: Option<&str>) {
        peer.requests += 1;
        let window = f64::from(cfg.flood_window_secs);
        if ts.secs_since(peer.window_start) >= window {
            peer.window_start = ts;
            peer.window_count = 0;
        }
        // A request older than the current window (events come out of time order: a call is
        // told when it ends, several workers feed one table) counts in it only while it is
        // within one window of it; older ones are no longer part of any rate seen now.
        if peer.window_start.secs_since(ts) < window {
            peer.window_count += 1;
            peer.flood_max = peer.flood_max.max(peer.window_count);
        }
        if let Some(a) = agent {
            if !a.is_empty()
                && peer.agents.len() < cfg.max_agents_per_peer
                && !peer.agents.iter().any(|x| x == a)
            {
                peer.agents.push(a.to_string());
            }
        }
    }

    fn mark_probed(peer: &mut Peer, ti: Option<usize>, lh: u64) {
        peer.probed.insert(lh);
        match ti.and_then(|i| peer.targets.get(i)) {
            Some(t) if t.probes == 0 => peer.probed_lines += 1,
            Some(_) => {}
            None => {}
        }
    }

    fn add_name(cfg: &ThreatsConfig, peer: &mut Peer, ti: Option<usize>, h: u64, number: bool) {
        let Some(t) = ti.and_then(|i| peer.targets.get_mut(i)) else {
            return;
        };
        // The top bit separates numbers from user names.
        let key = if number { h | 1 << 63 } else { h & !(1 << 63) };
        if t.names.contains(&key) {
            return;
        }
        if peer.names_used < cfg.max_users_per_peer {
            t.names.push(key);
            peer.names_used += 1;
        }
        if number {
            t.numbers = t.numbers.saturating_add(1);
        } else {
            t.users = t.users.saturating_add(1);
            peer.max_users_at_line = peer.max_users_at_line.max(t.users);
        }
    }

    /// REGISTERs aimed at a line from outside: probes by the sender.
    fn on_registration(&mut self, r: &RegistrationRecord) {
        let Some(line) = r.line else { return };
        let src = r.source.ip();
        if src == line || self.network.is_home(src) {
            return;
        }
        let user = r.account.split('@').next().filter(|u| !u.is_empty());
        let uh = user.map(|u| self.hash(u));
        let lh = self.hasher.hash_one(line);
        let cfg = self.cfg.clone();
        let Some(peer) = self.peer_mut(src, r.time) else {
            return;
        };
        Self::count_request(&cfg, peer, r.time, r.user_agent.as_deref());
        peer.methods.register += 1;
        peer.answers.asked += 1;
        if let Some(c) = r.status_code {
            peer.answers.code(c);
        }
        let ti = Self::target(&cfg, peer, line, lh, r.time);
        Self::mark_probed(peer, ti, lh);
        if let Some(t) = ti.and_then(|i| peer.targets.get_mut(i)) {
            t.requests += 1;
            t.probes += 1;
            t.answers.asked += 1;
            if let Some(c) = r.status_code {
                t.answers.code(c);
            }
            if r.time > t.last {
                t.last = r.time;
            }
            t.first = t.first.min(r.time);
        }
        if let Some(h) = uh {
            Self::add_name(&cfg, peer, ti, h, false);
        }
        self.classify(src);
    }

    fn on_call_ended(&mut self, c: &CallRecord) {
        match c.direction {
            Direction::Inbound => self.on_inbound_ended(c),
            Direction::Outbound | Direction::Internal => self.on_outbound_ended(c),
            Direction::Transit => {}
        }
    }

    fn on_inbound_ended(&mut self, c: &CallRecord) {
        let (Some(line), Some(peer_sa)) = (c.line, c.peer) else {
            return;
        };
        let peer_ip = peer_sa.ip();
        if self.network.is_home(peer_ip) {
            return;
        }
        let number = c.request_uri.as_deref().or(c.to.as_deref());
        let premium = number.and_then(|n| self.premium(n));
        let cfg = self.cfg.clone();
        let relayed = matches!(
            c.participation,
            Participation::TwoWayVoice | Participation::EarlyMedia
        );
        let carried = relayed || c.participation == Participation::AnsweredNoMedia;
        // Only peers still tracked are followed: an ended call of a peer that was evicted (a
        // flood of one-shot senders) must not evict another in turn.
        let lh = self.hasher.hash_one(line);
        let end = c.end.unwrap_or(c.start);
        if !self.peers.contains(&peer_ip) {
            return;
        }
        let Some(peer) = self.peer_mut(peer_ip, end) else {
            return;
        };
        let pi = participation_index(c.participation);
        if let Some(n) = peer.answers.participation.get_mut(pi) {
            *n += 1;
        }
        if premium.is_some() {
            peer.premium_ended += 1;
            if relayed {
                peer.premium_relayed += 1;
            }
        }
        let ti = Self::target(&cfg, peer, line, lh, c.start);
        let mut pbx_relay = false;
        if let Some(t) = ti.and_then(|i| peer.targets.get_mut(i)) {
            t.open = t.open.saturating_sub(1);
            if let Some(n) = t.answers.participation.get_mut(pi) {
                *n += 1;
            }
            if premium.is_some() {
                if relayed {
                    t.premium_relayed += 1;
                    pbx_relay = true;
                }
            } else {
                t.calls_ended += 1;
                if carried {
                    t.calls_relayed += 1;
                }
            }
        }
        let toll = peer.kinds & ThreatKind::TollFraudAttempt.bit() != 0;
        self.classify(peer_ip);
        if pbx_relay && toll {
            self.pbx_relayed(line, peer_ip, number, c, end);
        }
    }

    /// The line relayed a toll-fraud call from `peer`.
    fn pbx_relayed(
        &mut self,
        line: IpAddr,
        peer: IpAddr,
        number: Option<&str>,
        c: &CallRecord,
        at: Timestamp,
    ) {
        if let Some(f) = self.pbx_finding(line, peer, at) {
            f.relayed += 1;
            if let Some(n) = number {
                if f.numbers.len() < MAX_NUMBER_SAMPLES && !f.numbers.iter().any(|x| x == n) {
                    f.numbers.push(n.to_string());
                }
            }
            let pi = participation_index(c.participation);
            if let Some(x) = f.answers.participation.get_mut(pi) {
                *x += 1;
            }
        }
        self.pbx_changed(line);
    }

    /// The compromised-PBX finding of `line` (created when new; the oldest goes when full).
    fn pbx_finding(
        &mut self,
        line: IpAddr,
        peer: IpAddr,
        at: Timestamp,
    ) -> Option<&mut PbxFinding> {
        if !self.pbx.contains(&line) {
            let agents = self
                .peers
                .get(&peer)
                .map(|p| p.agents.clone())
                .unwrap_or_default();
            let f = PbxFinding {
                line,
                peer,
                first: at,
                last: at,
                relayed: 0,
                placed: 0,
                numbers: Vec::new(),
                agents,
                answers: Answers::default(),
            };
            if self.pbx.insert(line, f, at).is_some() {
                self.evictions.add("pbx_findings", 1);
            }
        } else {
            self.pbx.set_deadline(&line, at);
        }
        let f = self.pbx.get_mut(&line)?;
        if at > f.last {
            f.last = at;
        }
        f.first = f.first.min(at);
        Some(f)
    }

    fn pbx_changed(&mut self, line: IpAddr) {
        let Some(f) = self.pbx.get(&line) else { return };
        // An alert on the first evidence and whenever the evidence doubles.
        let n = f.relayed + f.placed;
        if n.is_power_of_two() {
            let t = self.build_pbx(f);
            self.push_change(t);
        }
    }

    /// Remembers an international INVITE to `line` for the outbound-call check.
    fn watch_line(&mut self, line: IpAddr, peer: IpAddr, h: u64, number: String, ts: Timestamp) {
        let deadline = ts.plus_secs(WATCH_KEEP_SECS + f64::from(self.cfg.pbx_window_secs));
        if let Some(v) = self.watch.get_mut(&line) {
            if v.len() >= MAX_WATCH_PER_LINE {
                v.remove(0);
            }
            v.push((h, ts, peer, number));
            self.watch.set_deadline(&line, deadline);
        } else if self
            .watch
            .insert(line, vec![(h, ts, peer, number)], deadline)
            .is_some()
        {
            self.evictions.add("pbx_watch", 1);
        }
    }

    /// A call the line placed: to a number a foreign peer had just sent it?
    fn on_outbound_ended(&mut self, c: &CallRecord) {
        let Some(line) = c.line else { return };
        let Some(number) = c.request_uri.as_deref().or(c.to.as_deref()) else {
            return;
        };
        let Some(n) = self.premium(number) else {
            return;
        };
        let h = self.hash(&n);
        let window = f64::from(self.cfg.pbx_window_secs);
        let hit = self.watch.get(&line).and_then(|v| {
            v.iter()
                .rev()
                .find(|(wh, t, _, _)| {
                    *wh == h && {
                        let dt = c.start.secs_since(*t);
                        (0.0..=window).contains(&dt)
                    }
                })
                .map(|(_, _, peer, _)| *peer)
        });
        let Some(peer) = hit else { return };
        let at = c.end.unwrap_or(c.start);
        if let Some(f) = self.pbx_finding(line, peer, at) {
            f.placed += 1;
            if f.numbers.len() < MAX_NUMBER_SAMPLES && !f.numbers.iter().any(|x| x == number) {
                f.numbers.push(number.to_string());
            }
        }
        self.pbx_changed(line);
    }

    /// Re-checks the kinds `ip` has earned; a new kind is a change.
    fn classify(&mut self, ip: IpAddr) {
        let cfg = &self.cfg;
        let Some(p) = self.peers.get(&ip) else { return };
        let mut kinds = 0u8;
        if p.probed_total() >= u64::from(cfg.scan_min_lines) {
            kinds |= ThreatKind::Scan.bit();
        }
        // Enumeration tools try names one after another (waiting for each answer); dozens of
        // INVITEs open at once at a line are a burst (a flood from forged sources), not a search.
        let searched = p
            .targets
            .iter()
            .filter(|t| t.max_open <= ENUMERATION_MAX_OPEN)
            .map(|t| t.users)
            .max()
            .unwrap_or(0);
        if searched >= cfg.enumeration_min_users {
            kinds |= ThreatKind::Enumeration.bit();
        }
        if self.toll_fraud(p) {
            kinds |= ThreatKind::TollFraudAttempt.bit();
        }
        if p.flood_max >= u64::from(cfg.flood_min_requests) {
            // A flood's random user names and numbers are not a search nor a gateway feed.
            kinds &= !(ThreatKind::Enumeration.bit() | ThreatKind::Framing.bit());
            kinds |= ThreatKind::Flood.bit();
        }
        // Derived from the (bounded) targets each time, so no change to a target's shape can
        // be missed.
        if kinds & ThreatKind::Flood.bit() == 0 && p.targets.iter().any(|t| t.framed(cfg)) {
            kinds |= ThreatKind::Framing.bit();
        }
        let new = kinds & !p.kinds;
        if new == 0 {
            return;
        }
        // Once a peer floods, what it looked like early in the flood (user names tried, a stream
        // of numbers) is withdrawn: the flood explains it.
        let withdrawn = if kinds & ThreatKind::Flood.bit() != 0 {
            ThreatKind::Enumeration.bit() | ThreatKind::Framing.bit()
        } else {
            0
        };
        let mut out = Vec::new();
        for k in PEER_KINDS {
            if new & k.bit() != 0 {
                out.push(self.build(p, k));
            }
        }
        // Lines that relayed this peer's calls before it was known as a toll-fraud attacker.
        let mut relays = Vec::new();
        if new & ThreatKind::TollFraudAttempt.bit() != 0 {
            for t in p.targets.iter().filter(|t| t.premium_relayed > 0) {
                relays.push((t.line, t.premium_relayed, t.last));
            }
        }
        if let Some(p) = self.peers.get_mut(&ip) {
            p.kinds = (p.kinds | kinds) & !withdrawn;
        }
        for t in out {
            self.push_change(t);
        }
        for (line, n, at) in relays {
            if let Some(f) = self.pbx_finding(line, ip, at) {
                f.relayed += n;
                if let Some(x) = f
                    .answers
                    .participation
                    .get_mut(participation_index(Participation::TwoWayVoice))
                {
                    *x += n;
                }
            }
            self.pbx_changed(line);
        }
    }

    fn toll_fraud(&self, p: &Peer) -> bool {
        if p.premium_invites < u64::from(self.cfg.toll_min_invites) {
            return false;
        }
        if self.network.is_domestic(p.ip) {
            return false;
        }
        // Most of the peer's international calls relayed by the lines it sent them to: the
        // lines' business (detection judges it), not an attempt.
        if p.premium_relayed * 2 > p.premium_ended {
            return false;
        }
        // Without home calling codes, `+CC...` may be the home country: only a few numbers
        // dialled repeatedly (or in prefix variants) count.
        !self.cfg.home_calling_codes.is_empty() || p.premium_distinct * 2 <= p.premium_invites
    }

    fn push_change(&mut self, t: Threat) {
        if self.changes.len() < MAX_PENDING_CHANGES {
            self.changes.push(t);
        } else {
            self.evictions.add("threat_changes", 1);
        }
    }

    /// Threats found or grown since the last call (for alerting), in the order found.
    pub fn take_changes(&mut self) -> Vec<Threat> {
        std::mem::take(&mut self.changes)
    }

    /// Forgets peers idle past their deadline (their findings are kept) at packet time `now`.
    pub fn expire(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
        while let Some(k) = self.peers.first_due(now) {
            if let Some(p) = self.peers.remove(&k) {
                self.retire(p);
            }
        }
        while let Some(k) = self.watch.first_due(now) {
            self.watch.remove(&k);
        }
    }

    /// Every finding: current peers' kinds, those of peers no longer tracked, compromised PBXs;
    /// highest severity first, then most requests.
    pub fn threats(&self) -> Vec<Threat> {
        let mut out: Vec<Threat> = self.past.iter().cloned().collect();
        for p in self.peers.values().filter(|p| p.kinds != 0) {
            for k in PEER_KINDS {
                if p.kinds & k.bit() != 0 {
                    out.push(self.build(p, k));
                }
            }
        }
        for f in self.pbx.values() {
            out.push(self.build_pbx(f));
        }
        sort_threats(&mut out);
        out
    }

    /// Evictions by table (`threat_peers`, `threat_findings`, `pbx_findings`, `pbx_watch`,
    /// `threat_changes`).
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }

    /// Current entries by table.
    pub fn table_sizes(&self) -> [(&'static str, usize); 4] {
        [
            ("threat_peers", self.peers.len()),
            ("threat_findings", self.past.len()),
            ("pbx_findings", self.pbx.len()),
            ("pbx_watch", self.watch.len()),
        ]
    }

    fn build(&self, p: &Peer, kind: ThreatKind) -> Threat {
        let mut lines: Vec<&Target> = p.targets.iter().collect();
        // The targets that matter for this kind first.
        lines.sort_by(|a, b| {
            let key = |t: &Target| match kind {
                ThreatKind::Enumeration => u64::from(t.users),
                ThreatKind::Framing => t.calls_ended,
                ThreatKind::TollFraudAttempt => t.premium,
                _ => t.requests,
            };
            key(b).cmp(&key(a)).then(a.line.cmp(&b.line))
        });
        let reason = self.reason(p, kind);
        Threat {
            peer: p.ip,
            kind,
            severity: kind.severity(),
            lines: lines.iter().map(|t| t.output()).collect(),
            lines_total: p.lines_total(),
            requests: p.requests,
            first_seen: p.first,
            last_seen: p.last,
            user_agents: p.agents.clone(),
            answers: p.answers.to_map(),
            reasons: vec![reason],
            numbers: if kind == ThreatKind::TollFraudAttempt {
                p.premium_samples.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn reason(&self, p: &Peer, kind: ThreatKind) -> Reason {
        let span = short_span(p.last.secs_since(p.first));
        let agents = agents_text(&p.agents);
        let answered = p.answers.text();
        let m = &p.methods;
        let (value, detail) = match kind {
            ThreatKind::Scan => {
                let n = p.probed_total();
                let mut what = Vec::new();
                if m.options > 0 {
                    what.push(format!("OPTIONS x {}", m.options));
                }
                if m.register > 0 {
                    what.push(format!("REGISTER x {}", m.register));
                }
                if m.other > 0 {
                    what.push(format!("other x {}", m.other));
                }
                (
                    n as f64,
                    format!(
                        "{} to {n} lines in {span}{agents}; the lines answered: {answered}",
                        what.join(", ")
                    ),
                )
            }
            ThreatKind::Enumeration => {
                let at = p
                    .targets
                    .iter()
                    .max_by_key(|t| t.users)
                    .map_or_else(|| "one line".to_string(), |t| t.line.to_string());
                let n = p.max_users_at_line;
                (
                    f64::from(n),
                    format!(
                        "{n} user names tried at {at} in {span} (REGISTER x {}, OPTIONS x {}, INVITE x {}){agents}; answered: {answered}",
                        m.register, m.options, m.invite
                    ),
                )
            }
            ThreatKind::TollFraudAttempt => {
                let lines = p.targets.iter().filter(|t| t.premium > 0).count();
                let sample = p
                    .premium_samples
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    p.premium_invites as f64,
                    format!(
                        "{} INVITEs to international/premium numbers ({} distinct: {sample}) at {lines} lines in {span}{agents}; relayed by the lines: {}; answered: {answered}",
                        p.premium_invites, p.premium_distinct, p.premium_relayed
                    ),
                )
            }
            ThreatKind::Flood => {
                let w = self.cfg.flood_window_secs.max(1);
                (
                    p.flood_max as f64 / f64::from(w),
                    format!(
                        "{} requests within {w} s (peak {:.0}/s), {} in all over {span} to {} lines{agents}; answered: {answered}",
                        p.flood_max,
                        p.flood_max as f64 / f64::from(w),
                        p.requests,
                        p.lines_total()
                    ),
                )
            }
            ThreatKind::Framing => {
                let framed: Vec<&Target> =
                    p.targets.iter().filter(|t| t.framed(&self.cfg)).collect();
                let calls: u64 = framed.iter().map(|t| t.calls_ended).sum();
                let numbers: u64 = framed.iter().map(|t| u64::from(t.numbers)).sum();
                let relayed: u64 = framed.iter().map(|t| t.calls_relayed).sum();
                let conc = framed.iter().map(|t| t.max_open).max().unwrap_or(0);
                let mut ans = Answers::default();
                for t in &framed {
                    for (i, n) in t.answers.participation.iter().enumerate() {
                        if let Some(x) = ans.participation.get_mut(i) {
                            *x += n;
                        }
                    }
                }
                (
                    framed.len() as f64,
                    format!(
                        "{calls} INVITEs to {numbers} distinct numbers at {} lines in {span}, up to {conc} at once{agents}; the lines relayed {relayed} ({})",
                        framed.len(),
                        ans.text()
                    ),
                )
            }
            ThreatKind::CompromisedPbx => (0.0, String::new()),
        };
        Reason {
            signal: kind.label().to_string(),
            value,
            strength: 1.0,
            detail,
        }
    }

    fn build_pbx(&self, f: &PbxFinding) -> Threat {
        let peer = self.peers.get(&f.peer);
        let mut parts = Vec::new();
        if f.relayed > 0 {
            parts.push(format!(
                "relayed {} international/premium calls from {} (voice both ways or early media)",
                f.relayed, f.peer
            ));
        }
        if f.placed > 0 {
            parts.push(format!(
                "placed {} calls out to the numbers {} had just sent it (within {} s)",
                f.placed, f.peer, self.cfg.pbx_window_secs
            ));
        }
        let target = peer.and_then(|p| p.target_index(f.line).and_then(|i| p.targets.get(i)));
        let mut lines = vec![target.map_or_else(
            || ThreatTarget {
                line: f.line,
                requests: f.relayed + f.placed,
                answers: f.answers.to_map(),
                first_seen: f.first,
                last_seen: f.last,
            },
            Target::output,
        )];
        lines.truncate(1);
        Threat {
            peer: f.peer,
            kind: ThreatKind::CompromisedPbx,
            severity: ThreatSeverity::High,
            lines,
            lines_total: 1,
            requests: target.map_or(f.relayed + f.placed, |t| t.requests),
            first_seen: f.first,
            last_seen: f.last,
            user_agents: peer.map_or_else(|| f.agents.clone(), |p| p.agents.clone()),
            answers: target.map_or_else(|| f.answers.to_map(), |t| t.answers.to_map()),
            reasons: vec![Reason {
                signal: "compromised_pbx".into(),
                value: (f.relayed + f.placed) as f64,
                strength: 1.0,
                detail: format!(
                    "line {} {}: fraud through the line (IRSF), not a SIM box",
                    f.line,
                    parts.join("; ")
                ),
            }],
            numbers: f.numbers.clone(),
        }
    }
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
/// a peer's targets) as one list: one entry per peer and kind (and line, for `compromised_pbx`),
/// counts added, targets and user agents joined, each engine's reasons kept.
pub fn merge(all: Vec<Threat>) -> Vec<Threat> {
    let mut by: BTreeMap<(IpAddr, ThreatKind, Option<IpAddr>), Threat> = BTreeMap::new();
    for t in all {
        let line = (t.kind == ThreatKind::CompromisedPbx)
            .then(|| t.lines.first().map(|l| l.line))
            .flatten();
        match by.entry((t.peer, t.kind, line)) {
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
            }
        }
    }
    let mut out: Vec<Threat> = by.into_values().collect();
    sort_threats(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, RegOutcome, Transport};
    use std::net::SocketAddr;

    const SCANNER: &str = "185.32.203.219:5070";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn line(i: u32) -> IpAddr {
        IpAddr::from([10, 0, (i >> 8) as u8, i as u8])
    }
    fn at(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_700_000_000.0 + secs)
    }

    fn probe(peer: &str, to: IpAddr, method: ProbeMethod, user: &str, t: f64) -> Event {
        Event::Probe(Box::new(ProbeRecord {
            peer: sa(peer),
            line: to,
            method,
            request_user: Some(user.to_string()),
            to_user: Some(user.to_string()),
            user_agent: Some("friendly-scanner".into()),
            time: at(t),
            status: None,
        }))
    }

    fn answer(peer: &str, from: IpAddr, code: u16, t: f64) -> Event {
        Event::Probe(Box::new(ProbeRecord {
            peer: sa(peer),
            line: from,
            method: ProbeMethod::Options,
            request_user: None,
            to_user: None,
            user_agent: None,
            time: at(t),
            status: Some(code),
        }))
    }

    fn call(
        peer: &str,
        to: IpAddr,
        dir: Direction,
        number: &str,
        t: f64,
        part: Participation,
    ) -> Event {
        Event::CallEnded(Box::new(CallRecord {
            call_id: format!("{peer}-{to}-{number}-{t}"),
            line: Some(to),
            direction: dir,
            peer: Some(sa(peer)),
            from: Some("100".into()),
            to: Some(number.into()),
            request_uri: Some(number.into()),
            user_agent: None,
            server: None,
            allow: None,
            sdp_origin: None,
            sdp_session: None,
            transport: Transport::Udp,
            codec: None,
            codecs: Vec::new(),
            ptime: None,
            start: at(t),
            progress: None,
            answer: None,
            end: Some(at(t + 5.0)),
            outcome: Outcome::Failed,
            status_code: Some(403),
            private_contact: false,
            rtp: Vec::new(),
            participation: part,
        }))
    }

    /// An INVITE from outside as the calls stage reports it: the probe, then the record.
    fn invite(t: &mut ThreatTable, peer: &str, to: IpAddr, number: &str, s: f64, p: Participation) {
        t.on_event(&probe(peer, to, ProbeMethod::Invite, number, s));
        t.on_event(&call(peer, to, Direction::Inbound, number, s, p));
    }

    fn table() -> ThreatTable {
        ThreatTable::new(&ThreatsConfig::default(), &NetworkConfig::default())
    }

    fn kinds(t: &ThreatTable) -> Vec<(IpAddr, ThreatKind)> {
        t.threats().iter().map(|x| (x.peer, x.kind)).collect()
    }

    fn find(t: &ThreatTable, kind: ThreatKind) -> Threat {
        t.threats()
            .into_iter()
            .find(|x| x.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {:?}", kinds(t)))
    }

    #[test]
    fn threats_options_sweep_is_a_scan_with_what_the_lines_answered() {
        let mut t = table();
        for i in 0..212 {
            t.on_event(&probe(
                SCANNER,
                line(i),
                ProbeMethod::Options,
                "100",
                f64::from(i),
            ));
            if i < 3 {
                t.on_event(&answer(SCANNER, line(i), 200, f64::from(i) + 0.01));
            } else if i < 15 {
                t.on_event(&answer(SCANNER, line(i), 404, f64::from(i) + 0.01));
            }
        }
        let s = find(&t, ThreatKind::Scan);
        assert_eq!(s.severity, ThreatSeverity::Low);
        assert_eq!(s.requests, 212);
        // Beyond the 128 kept targets the total is estimated (linear counting, a few % off).
        assert!((200..=225).contains(&s.lines_total), "{}", s.lines_total);
        assert_eq!(s.lines.len(), 128);
        assert_eq!(s.answers.get("200"), Some(&3));
        assert_eq!(s.answers.get("404"), Some(&12));
        assert_eq!(s.answers.get("none"), Some(&197));
        assert_eq!(s.user_agents, vec!["friendly-scanner".to_string()]);
        let d = &s.reasons[0].detail;
        assert!(d.contains("OPTIONS x 212 to"), "{d}");
        assert!(d.contains("User-Agent friendly-scanner"), "{d}");
        assert!(d.contains("none x 197, 404 x 12, 200 x 3"), "{d}");
        // One user name at each line and one packet per line: nothing else.
        assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
        assert_eq!(t.take_changes().len(), 1);
    }

    #[test]
    fn threats_register_guessing_at_one_line_is_enumeration_not_the_lines_registration() {
        let mut t = table();
        for u in 100..140 {
            let r = RegistrationRecord {
                account: format!("{u}@10.0.0.9"),
                registrar: sa("10.0.0.9:5060"),
                source: sa(SCANNER),
                line: Some(line(9)),
                contact: None,
                expires: Some(3600),
                outcome: RegOutcome::Failed,
                status_code: Some(404),
                user_agent: Some("sipcli/v1.8".into()),
                time: at(f64::from(u)),
            };
            t.on_event(&Event::Registration(Box::new(r)));
        }
        // The line's own registration to its provider is no probe.
        let own = RegistrationRecord {
            account: "line9@voip.example".into(),
            registrar: sa("198.51.100.1:5060"),
            source: sa("10.0.0.9:5060"),
            line: Some(line(9)),
            contact: None,
            expires: Some(600),
            outcome: RegOutcome::Registered,
            status_code: Some(200),
            user_agent: None,
            time: at(1.0),
        };
        t.on_event(&Event::Registration(Box::new(own)));
        let e = find(&t, ThreatKind::Enumeration);
        assert_eq!(e.requests, 40);
        assert_eq!(e.lines_total, 1);
        assert_eq!(e.lines[0].answers.get("404"), Some(&40));
        assert_eq!(e.user_agents, vec!["sipcli/v1.8".to_string()]);
        assert!(e.reasons[0]
            .detail
            .starts_with("40 user names tried at 10.0.0.9"));
        assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
    }

    #[test]
    fn threats_premium_invites_rejected_are_a_toll_fraud_attempt_and_a_camera_only_a_target() {
        let mut t = table();
        let numbers = ["011972599123456", "9011972599123456", "00972599123456"];
        for i in 0..6u32 {
            for (k, n) in numbers.iter().enumerate() {
                let s = f64::from(i * 10) + k as f64;
                invite(&mut t, SCANNER, line(i), n, s, Participation::Rejected);
            }
        }
        // A camera answers but sends no voice back: a target, not a finding.
        for k in 0..24 {
            let n = numbers[k % 2];
            invite(
                &mut t,
                SCANNER,
                line(50),
                n,
                100.0 + k as f64,
                Participation::AnsweredOneWay,
            );
        }
        let f = find(&t, ThreatKind::TollFraudAttempt);
        assert_eq!(f.severity, ThreatSeverity::Medium);
        assert_eq!(f.lines_total, 7);
        let cam = f.lines.iter().find(|l| l.line == line(50)).unwrap();
        assert_eq!(cam.answers.get("answered_one_way"), Some(&24));
        assert_eq!(f.answers.get("rejected"), Some(&18));
        assert_eq!(f.numbers.len(), 3);
        // Prefix variants of one number are one number.
        assert!(
            f.reasons[0]
                .detail
                .contains("42 INVITEs to international/premium numbers (1 distinct: 011972599123456, 9011972599123456, 00972599123456)"),
            "{}",
            f.reasons[0].detail
        );
        assert!(t
            .threats()
            .iter()
            .all(|x| x.kind != ThreatKind::CompromisedPbx));
        // Numbers dialled are neither user names (enumeration) nor a gateway feed (framing).
        assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
    }

    #[test]
    fn threats_a_line_relaying_toll_fraud_is_a_compromised_pbx() {
        let mut t = table();
        for i in 0..8u32 {
            invite(
                &mut t,
                SCANNER,
                line(i),
                "011972599123456",
                f64::from(i),
                Participation::Rejected,
            );
        }
        invite(
            &mut t,
            SCANNER,
            line(77),
            "011972599123456",
            20.0,
            Participation::TwoWayVoice,
        );
        let p = find(&t, ThreatKind::CompromisedPbx);
        assert_eq!(p.severity, ThreatSeverity::High);
        assert_eq!(p.peer, sa(SCANNER).ip());
        assert_eq!(p.lines.len(), 1);
        assert_eq!(p.lines[0].line, line(77));
        assert!(p.reasons[0]
            .detail
            .contains("relayed 1 international/premium calls"));
        assert!(p.reasons[0].detail.contains("not a SIM box"));
        let changes = t.take_changes();
        assert!(changes.iter().any(|c| c.kind == ThreatKind::CompromisedPbx));
    }

    #[test]
    fn threats_a_pbx_calling_out_to_the_number_it_was_just_sent_is_compromised() {
        let mut t = table();
        let pbx = line(5);
        // Single target that takes every call: not enough for an attempt by itself...
        invite(
            &mut t,
            SCANNER,
            pbx,
            "00972599123456",
            0.0,
            Participation::TwoWayVoice,
        );
        assert!(t.threats().is_empty());
        // ... but the PBX places the same number out through its trunk seconds later.
        t.on_event(&call(
            "198.51.100.1:5060",
            pbx,
            Direction::Outbound,
            "00972599123456",
            3.0,
            Participation::Placed,
        ));
        let p = find(&t, ThreatKind::CompromisedPbx);
        assert_eq!(p.lines[0].line, pbx);
        assert!(
            p.reasons[0].detail.contains("placed 1 calls out"),
            "{}",
            p.reasons[0].detail
        );
        // Too late: no finding.
        let mut t = table();
        invite(
            &mut t,
            SCANNER,
            pbx,
            "00972599123456",
            0.0,
            Participation::TwoWayVoice,
        );
        t.on_event(&call(
            "198.51.100.1:5060",
            pbx,
            Direction::Outbound,
            "00972599123456",
            500.0,
            Participation::Placed,
        ));
        assert!(t.threats().is_empty());
    }

    #[test]
    fn threats_request_rate_is_a_flood() {
        let mut t = table();
        for i in 0..800 {
            t.on_event(&probe(
                SCANNER,
                line(1),
                ProbeMethod::Options,
                "1",
                f64::from(i) * 0.01,
            ));
        }
        let f = find(&t, ThreatKind::Flood);
        assert_eq!(f.requests, 800);
        assert!(
            f.reasons[0].detail.starts_with("800 requests within 10 s"),
            "{}",
            f.reasons[0].detail
        );
        // Slow and steady is no flood.
        let mut t = table();
        for i in 0..800 {
            t.on_event(&probe(
                SCANNER,
                line(1),
                ProbeMethod::Options,
                "1",
                f64::from(i),
            ));
        }
        assert!(t.threats().is_empty(), "{:?}", kinds(&t));
    }

    #[test]
    fn threats_gateway_shaped_invites_a_line_rejects_are_framing_and_a_relayed_feed_is_not() {
        let mut t = table();
        let framer = "203.0.113.66:5060";
        for i in 0..40u32 {
            let n = format!("1380013{:04}", i);
            let p = if i % 3 == 0 {
                Participation::Ignored
            } else {
                Participation::Rejected
            };
            invite(&mut t, framer, line(3), &n, f64::from(i) * 20.0, p);
        }
        let f = find(&t, ThreatKind::Framing);
        assert_eq!(f.severity, ThreatSeverity::Medium);
        assert!(f.reasons[0]
            .detail
            .starts_with("40 INVITEs to 40 distinct numbers at 1 lines"));
        assert!(f.reasons[0].detail.contains("the lines relayed 0"));
        assert_eq!(kinds(&t).len(), 1, "{:?}", kinds(&t));
        // A softswitch feeding a gateway that relays a third of its calls (numbers written
        // `+86...`/`0086...`): the line's business, no threat at all.
        let mut t = table();
        for i in 0..60u32 {
            let n = if i % 2 == 0 {
                format!("+86138{:08}", i)
            } else {
                format!("0086139{:08}", i)
            };
            let p = if i % 3 == 0 {
                Participation::TwoWayVoice
            } else {
                Participation::Ignored
            };
            invite(&mut t, framer, line(4), &n, f64::from(i) * 20.0, p);
        }
        assert!(t.threats().is_empty(), "{:?}", kinds(&t));
    }

    #[test]
    fn threats_home_calling_codes_make_home_numbers_domestic() {
        let cfg = ThreatsConfig {
            home_calling_codes: vec!["972".into()],
            ..ThreatsConfig::default()
        };
        let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
        for i in 0..10u32 {
            invite(
                &mut t,
                SCANNER,
                line(i),
                "00972599123456",
                f64::from(i),
                Participation::Rejected,
            );
        }
        assert!(t.threats().is_empty());
        // Distinct foreign numbers count once the home codes are known.
        let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
        for i in 0..10u32 {
            let n = format!("0044207946{:04}", i);
            invite(
                &mut t,
                SCANNER,
                line(i),
                &n,
                f64::from(i),
                Participation::Rejected,
            );
        }
        assert_eq!(
            kinds(&t),
            vec![(sa(SCANNER).ip(), ThreatKind::TollFraudAttempt)]
        );
    }

    #[test]
    fn threats_flood_from_random_sources_stays_within_the_caps() {
        let cfg = ThreatsConfig {
            max_peers: 500,
            ..ThreatsConfig::default()
        };
        let mut t = ThreatTable::new(&cfg, &NetworkConfig::default());
        // A scanner found early is kept while 150 k one-shot senders come and go.
        for i in 0..20 {
            t.on_event(&probe(
                SCANNER,
                line(i),
                ProbeMethod::Options,
                "100",
                f64::from(i),
            ));
        }
        for i in 0..150_000u32 {
            let peer = format!(
                "{}.{}.{}.{}:5060",
                150 + (i >> 16) % 50,
                (i >> 8) & 255,
                i & 255,
                7
            );
            let s = 100.0 + f64::from(i) * 0.0001;
            invite(
                &mut t,
                &peer,
                line(i % 4000),
                &format!("138{i:08}"),
                s,
                Participation::Ignored,
            );
            if i % 10_000 == 0 {
                t.expire(at(s));
            }
        }
        let sizes = t.table_sizes();
        assert!(sizes[0].1 <= 500, "{sizes:?}");
        assert!(
            t.evictions().get("threat_peers") >= 149_000,
            "{:?}",
            t.evictions()
        );
        assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
    }

    #[test]
    fn threats_idle_peers_leave_and_their_findings_stay() {
        let mut t = table();
        for i in 0..12 {
            t.on_event(&probe(
                SCANNER,
                line(i),
                ProbeMethod::Options,
                "100",
                f64::from(i),
            ));
        }
        t.expire(at(1_000_000.0));
        assert_eq!(t.table_sizes()[0].1, 0);
        assert_eq!(kinds(&t), vec![(sa(SCANNER).ip(), ThreatKind::Scan)]);
    }

    #[test]
    fn threats_of_several_engines_merge_per_peer_and_kind() {
        // Two workers each saw half of a sweep.
        let mut a = table();
        let mut b = table();
        for i in 0..24 {
            let t = if i % 2 == 0 { &mut a } else { &mut b };
            t.on_event(&probe(
                SCANNER,
                line(i),
                ProbeMethod::Options,
                "100",
                f64::from(i),
            ));
        }
        let merged = merge(a.threats().into_iter().chain(b.threats()).collect());
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].lines_total, 24);
        assert_eq!(merged[0].requests, 24);
        assert_eq!(merged[0].lines.len(), 24);
        assert_eq!(merged[0].first_seen, at(0.0));
        assert_eq!(merged[0].last_seen, at(23.0));
        assert_eq!(merged[0].answers.get("none"), Some(&24));
    }

    #[test]
    fn threats_config_is_validated() {
        assert_eq!(ThreatsConfig::default().validate(), Ok(()));
        let bad = ThreatsConfig {
            max_peers: 0,
            ..ThreatsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "max_peers");
        let bad = ThreatsConfig {
            toll_prefixes: vec!["0x".into()],
            ..ThreatsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "toll_prefixes");
        let bad = ThreatsConfig {
            framing_max_relayed_share: 1.5,
            ..ThreatsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "framing_max_relayed_share");
        let parsed: ThreatsConfig = toml::from_str("scan_min_lines = 5").unwrap();
        assert_eq!(parsed.scan_min_lines, 5);
        assert!(toml::from_str::<ThreatsConfig>("bogus = 1").is_err());
    }
}
