//! Per-peer state: what one remote peer sent to which line, and what each line answered.

use super::rate::Rate;
use super::{ThreatTarget, ThreatsConfig};
use crate::model::{Participation, ProbeMethod, Timestamp};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub(super) fn participation_index(p: Participation) -> usize {
    Participation::ALL.iter().position(|x| *x == p).unwrap_or(6)
}

/// Distinct status codes kept per answer tally; others are counted as `other`.
pub(super) const MAX_CODES: usize = 8;
/// Premium numbers kept as text per peer (for the report) and distinct ones remembered.
pub(super) const MAX_NUMBER_SAMPLES: usize = 8;
pub(super) const MAX_PREMIUM_HASHES: usize = 64;
/// Recent international INVITEs remembered per watched line (compromised-PBX check).
pub(super) const MAX_WATCH_PER_LINE: usize = 8;
/// How long an international INVITE is remembered for the outbound-call check: the PBX's
/// outbound call is reported when it ends, and may last this long.
pub(super) const WATCH_KEEP_SECS: f64 = 4.0 * 3600.0;
/// Threat changes held for `take_changes`; beyond it they are counted, not kept.
pub(super) const MAX_PENDING_CHANGES: usize = 10_000;
/// Targets a peer has before they are indexed by line (fewer are scanned).
pub(super) const INDEXED_TARGETS: usize = 8;
/// Linear-counting bitmap size (bits) for distinct lines beyond the kept targets.
pub(super) const SKETCH_BITS: usize = 1024;

/// What lines answered: status codes of probes/REGISTERs and participation in INVITEs.
#[derive(Clone, Debug, Default)]
pub(super) struct Answers {
    pub(super) codes: Vec<(u16, u64)>,
    pub(super) other_codes: u64,
    pub(super) participation: [u64; 7],
    /// Non-INVITE requests sent and final responses seen to them.
    pub(super) asked: u64,
    pub(super) answered: u64,
}

impl Answers {
    pub(super) fn code(&mut self, c: u16) {
        self.answered += 1;
        if let Some(e) = self.codes.iter_mut().find(|(k, _)| *k == c) {
            e.1 += 1;
        } else if self.codes.len() < MAX_CODES {
            self.codes.push((c, 1));
        } else {
            self.other_codes += 1;
        }
    }
    pub(super) fn to_map(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (c, n) in &self.codes {
            m.insert(c.to_string(), *n);
        }
        if self.other_codes > 0 {
            m.insert("other".into(), self.other_codes);
        }
        for (p, n) in Participation::ALL.iter().zip(self.participation) {
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
    pub(super) fn text(&self) -> String {
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

#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) line: IpAddr,
    /// The line's hash (the table's hasher), for the peer's sketches once they exist.
    pub(super) line_hash: u64,
    pub(super) first: Timestamp,
    pub(super) last: Timestamp,
    pub(super) requests: u64,
    /// Non-INVITE requests (OPTIONS, REGISTER, ...).
    pub(super) probes: u64,
    /// Distinct user names tried (enumeration) and distinct ordinary numbers called (framing).
    pub(super) users: u32,
    pub(super) numbers: u32,
    pub(super) names: Vec<u64>,
    /// INVITEs that ended, and how many the line relayed (took part in, or answered).
    pub(super) calls_ended: u64,
    pub(super) calls_relayed: u64,
    /// INVITEs the line answered that have not ended yet: a gateway's answered calls
    /// end after its failed attempts, so without them its feed would read as a stream it
    /// rejects until the answers end.
    pub(super) answered_open: u64,
    pub(super) premium: u64,
    pub(super) premium_relayed: u64,
    pub(super) open: u32,
    pub(super) max_open: u32,
    pub(super) answers: Answers,
}

impl Target {
    pub(super) fn new(line: IpAddr, line_hash: u64, ts: Timestamp) -> Target {
        Target {
            line,
            line_hash,
            first: ts,
            last: ts,
            requests: 0,
            probes: 0,
            users: 0,
            numbers: 0,
            names: Vec::new(),
            calls_ended: 0,
            calls_relayed: 0,
            answered_open: 0,
            premium: 0,
            premium_relayed: 0,
            open: 0,
            max_open: 0,
            answers: Answers::default(),
        }
    }

    /// Part of a gateway-shaped stream: INVITEs to a new number nearly every time, within a
    /// gateway's channel count at once, hardly any relayed by the line.
    pub(super) fn stream_shaped(&self, cfg: &ThreatsConfig) -> bool {
        self.calls_ended >= 2
            && u64::from(self.numbers) * 2 >= self.calls_ended
            && self.max_open <= cfg.framing_max_concurrent
            && self.hardly_relayed(cfg)
    }

    pub(super) fn framed(&self, cfg: &ThreatsConfig) -> bool {
        self.calls_ended >= u64::from(cfg.framing_min_invites)
            && self.numbers >= cfg.framing_min_numbers
            && self.max_open <= cfg.framing_max_concurrent
            && self.last.secs_since(self.first) >= f64::from(cfg.framing_min_secs)
            && self.hardly_relayed(cfg)
    }

    /// The line relayed (or answered: still running) at most `framing_max_relayed_share` of
    /// the calls.
    fn hardly_relayed(&self, cfg: &ThreatsConfig) -> bool {
        let taken = self.calls_relayed + self.answered_open;
        let all = self.calls_ended + self.answered_open;
        (taken as f64) <= cfg.framing_max_relayed_share * all as f64
    }

    pub(super) fn output(&self) -> ThreatTarget {
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
pub(super) struct Sketch(pub(super) [u64; SKETCH_BITS / 64]);

impl Sketch {
    pub(super) fn new() -> Sketch {
        Sketch([0; SKETCH_BITS / 64])
    }
    pub(super) fn insert(&mut self, h: u64) {
        let bit = (h % SKETCH_BITS as u64) as usize;
        if let Some(w) = self.0.get_mut(bit / 64) {
            *w |= 1 << (bit % 64);
        }
    }
    pub(super) fn estimate(&self) -> u64 {
        let set: u32 = self.0.iter().map(|w| w.count_ones()).sum();
        let m = SKETCH_BITS as f64;
        let zero = (m - f64::from(set)).max(1.0);
        (-m * (zero / m).ln()).round() as u64
    }
}

/// A peer's distinct-line sketches: lines it sent requests to, lines it probed.
#[derive(Clone, Debug)]
pub(super) struct PeerSketches {
    pub(super) lines: Sketch,
    pub(super) probed: Sketch,
}

impl PeerSketches {
    /// The sketches as they would be had they been fed from the start: every kept target
    /// (targets are never dropped), and those it probed.
    pub(super) fn of_targets(targets: &[Target]) -> PeerSketches {
        let mut s = PeerSketches {
            lines: Sketch::new(),
            probed: Sketch::new(),
        };
        for t in targets {
            s.lines.insert(t.line_hash);
            if t.probes > 0 {
                s.probed.insert(t.line_hash);
            }
        }
        s
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct MethodCounts {
    pub(super) options: u64,
    pub(super) register: u64,
    pub(super) invite: u64,
    pub(super) other: u64,
}

impl MethodCounts {
    /// Counts one request (`None`: a REGISTER).
    pub(super) fn add(&mut self, method: Option<ProbeMethod>) {
        match method {
            Some(ProbeMethod::Options) => self.options += 1,
            Some(ProbeMethod::Invite) => self.invite += 1,
            None => self.register += 1,
            Some(_) => self.other += 1,
        }
    }

    pub(super) fn merge(&mut self, o: &MethodCounts) {
        self.options += o.options;
        self.register += o.register;
        self.invite += o.invite;
        self.other += o.other;
    }

    /// Requests that are not INVITEs (asked for an answer outside a call).
    pub(super) fn asked(&self) -> u64 {
        self.options + self.register + self.other
    }
}

#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) ip: IpAddr,
    pub(super) first: Timestamp,
    pub(super) last: Timestamp,
    pub(super) requests: u64,
    pub(super) methods: MethodCounts,
    pub(super) targets: Vec<Target>,
    /// Index of `targets` by line, made once there are more than `INDEXED_TARGETS` (a flood
    /// peer's 128 targets are not scanned per request).
    pub(super) target_ix: Option<Box<crate::model::FastMap<IpAddr, u32>>>,
    /// Distinct lines sent to and probed, made from the kept targets when the first line is
    /// not kept as a target, then fed every line (`lines_total` comes from them from then on):
    /// a one-shot sender (a random-source flood makes one peer per packet) never pays for them.
    pub(super) sketches: Option<Box<PeerSketches>>,
    pub(super) probed_lines: u64,
    pub(super) agents: Vec<String>,
    pub(super) names_used: usize,
    pub(super) answers: Answers,
    pub(super) premium_invites: u64,
    pub(super) premium_ended: u64,
    pub(super) premium_relayed: u64,
    pub(super) premium_hashes: Vec<u64>,
    pub(super) premium_distinct: u64,
    pub(super) premium_samples: Vec<String>,
    pub(super) max_users_at_line: u32,
    pub(super) rate: Rate,
    /// Peak requests within a flood window, and within a burst window.
    pub(super) flood_max: u64,
    pub(super) burst_max: u64,
    pub(super) kinds: u8,
    /// When its episode closed (quiet for `clear_after_secs`), until it is active again.
    pub(super) ended: Option<Timestamp>,
}

impl Peer {
    pub(super) fn new(ip: IpAddr, ts: Timestamp) -> Peer {
        Peer {
            ip,
            first: ts,
            last: ts,
            requests: 0,
            methods: MethodCounts::default(),
            targets: Vec::new(),
            target_ix: None,
            sketches: None,
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
            rate: Rate::new(ts),
            flood_max: 0,
            burst_max: 0,
            kinds: 0,
            ended: None,
        }
    }

    /// Some line could not be kept as a target (the sketches exist from then on).
    #[cfg(test)]
    pub(super) fn overflowed(&self) -> bool {
        self.sketches.is_some()
    }

    pub(super) fn lines_total(&self) -> u64 {
        let kept = self.targets.len() as u64;
        match &self.sketches {
            Some(s) => kept.max(s.lines.estimate()),
            None => kept,
        }
    }

    pub(super) fn probed_total(&self) -> u64 {
        match &self.sketches {
            Some(s) => self.probed_lines.max(s.probed.estimate()),
            None => self.probed_lines,
        }
    }

    /// The targets of a framing stream: those framed on their own, or else one stream split
    /// over several lines (each stream-shaped, together past the thresholds). Empty if none.
    pub(super) fn framed_targets(&self, cfg: &ThreatsConfig) -> Vec<&Target> {
        let alone: Vec<&Target> = self.targets.iter().filter(|t| t.framed(cfg)).collect();
        if !alone.is_empty() {
            return alone;
        }
        let split: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.stream_shaped(cfg))
            .collect();
        let calls: u64 = split.iter().map(|t| t.calls_ended).sum();
        let numbers: u64 = split.iter().map(|t| u64::from(t.numbers)).sum();
        let first = split.iter().map(|t| t.first).min();
        let last = split.iter().map(|t| t.last).max();
        let span = match (first, last) {
            (Some(f), Some(l)) => l.secs_since(f),
            _ => 0.0,
        };
        if split.len() >= 2
            && calls >= u64::from(cfg.framing_min_invites)
            && numbers >= u64::from(cfg.framing_min_numbers)
            && span >= f64::from(cfg.framing_min_secs)
        {
            split
        } else {
            Vec::new()
        }
    }

    pub(super) fn target_index(&self, line: IpAddr) -> Option<usize> {
        match &self.target_ix {
            Some(ix) => ix.get(&line).map(|&i| i as usize),
            None => self.targets.iter().position(|t| t.line == line),
        }
    }

    /// Adds a target (for a line not among them); returns its index.
    pub(super) fn push_target(&mut self, t: Target) -> usize {
        let i = self.targets.len();
        let line = t.line;
        self.targets.push(t);
        if let Some(ix) = self.target_ix.as_mut() {
            ix.insert(line, i as u32);
        } else if self.targets.len() > INDEXED_TARGETS {
            let ix = self
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| (t.line, i as u32))
                .collect();
            self.target_ix = Some(Box::new(ix));
        }
        i
    }
}

/// A compromised-PBX finding about one line.
#[derive(Clone, Debug)]
pub(super) struct PbxFinding {
    pub(super) line: IpAddr,
    pub(super) peer: IpAddr,
    pub(super) first: Timestamp,
    pub(super) last: Timestamp,
    pub(super) relayed: u64,
    pub(super) placed: u64,
    pub(super) numbers: Vec<String>,
    pub(super) agents: Vec<String>,
    pub(super) answers: Answers,
    /// When its episode closed (quiet for `clear_after_secs`), until it relays again.
    pub(super) ended: Option<Timestamp>,
    /// Relaying again after its episode closed: the next change is reported.
    pub(super) renewed: bool,
}

/// A recent international INVITE to a line: (number hash, time, peer, number).
pub(super) type Watched = (u64, Timestamp, IpAddr, String);

/// Whether a user part is a phone number (digits, optionally after `+`, at least 7).
pub(super) fn number_like(u: &str) -> bool {
    let d = u.strip_prefix('+').unwrap_or(u);
    d.len() >= 7 && d.bytes().all(|b| b.is_ascii_digit())
}
