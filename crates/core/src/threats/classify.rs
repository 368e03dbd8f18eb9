//! Classification: which kinds a peer has earned, and the findings (with reasons) built from
//! its state.

use super::flood::LineFlood;
use super::peer::*;
use super::rate::FloodRule;
use super::table::{Subject, ThreatTable};
use super::{Threat, ThreatKind, ThreatSeverity, ThreatTarget, PEER_KINDS};
use crate::model::{Participation, Reason};
use std::net::IpAddr;

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
    /// Re-checks the kinds `ip` has earned; a new kind is a change.
    pub(super) fn classify(&mut self, ip: IpAddr) {
        let cfg = &self.cfg;
        let Some(p) = self.peers.get(&ip) else { return };
        let mut kinds = 0u8;
        if p.probed_total() >= u64::from(cfg.scan_min_lines) {
            kinds |= ThreatKind::Scan.bit();
        }
        // Many user names at one line, whatever the rhythm (one at a time, or many INVITEs
        // open at once at a device that answers or lingers). A flood's random names are no
        // search: names tried at a pace that could be a flood's start count once the peer has
        // been at it for a flood window (by then a flood is known as one); a search at a
        // tool's pace below a flood's (sipcli, svwar: a few to tens per second) counts at
        // once, so a short burst is found too. Never at a line flooded from many sources
        // while the names came.
        let active = p.last.secs_since(p.first);
        let window = f64::from(cfg.flood_window_secs);
        let below_flood_pace =
            (p.requests as f64) * window < f64::from(cfg.flood_min_requests) * active;
        let settled = active >= window || below_flood_pace;
        // Whether some line not flooded meanwhile saw enough names: the flood table is looked
        // up only for targets past the threshold (a flood peer has up to `max_lines_per_peer`
        // targets, and this runs on every request it sends).
        let min_users = cfg.enumeration_min_users;
        let searched = || {
            min_users == 0
                || p.targets
                    .iter()
                    .any(|t| t.users >= min_users && !self.flooded_during(t))
        };
        let flooding = FloodRule::of(cfg).floods(p.flood_max, p.burst_max);
        // A flooding peer's targets are not searched: the flood withdraws enumeration below.
        if !flooding && settled && searched() {
            kinds |= ThreatKind::Enumeration.bit();
        }
        if self.toll_fraud(p) {
            kinds |= ThreatKind::TollFraudAttempt.bit();
        }
        if flooding {
            // A flood's random user names and numbers are not a search nor a gateway feed.
            kinds &= !(ThreatKind::Enumeration.bit() | ThreatKind::Framing.bit());
            kinds |= ThreatKind::Flood.bit();
        }
        // Derived from the (bounded) targets each time, so no change to a target's shape can
        // be missed.
        // A toll-fraud attempt's INVITEs are that, not a stream framing the lines.
        let other = ThreatKind::Flood.bit() | ThreatKind::TollFraudAttempt.bit();
        if kinds & other == 0 && !p.framed_targets(cfg).is_empty() {
            kinds |= ThreatKind::Framing.bit();
        }
        // Once a peer floods, what it looked like early in the flood (user names tried, a stream
        // of numbers) is withdrawn: the flood explains it. A stream the lines went on to take
        // part in (a gateway's feed whose answered calls end after its failed ones, most of all
        // where the tap carries no media) is no framing: withdrawn too.
        // (A flood never earns framing above, so its withdrawal is covered by the first term.)
        let mut withdrawn = ThreatKind::Framing.bit() & !kinds;
        if kinds & ThreatKind::Flood.bit() != 0 {
            withdrawn |= ThreatKind::Enumeration.bit();
        }
        let new = kinds & !p.kinds;
        if new == 0 && p.kinds & withdrawn == 0 {
            return;
        }
        let mut out = Vec::new();
        for k in PEER_KINDS {
            if new & k.bit() != 0 {
                out.push(self.build(p, k));
            }
        }
        // Kinds reported before and withdrawn now: their episodes close.
        for k in PEER_KINDS {
            if p.kinds & withdrawn & k.bit() != 0 {
                let mut t = self.build(p, k);
                t.ended = Some(self.now);
                out.push(t);
            }
        }
        // Lines that relayed this peer's calls before it was known as a toll-fraud attacker.
        let mut relays = Vec::new();
        if new & ThreatKind::TollFraudAttempt.bit() != 0 {
            for t in p.targets.iter().filter(|t| t.premium_relayed > 0) {
                relays.push((t.line, t.premium_relayed, t.last));
            }
        }
        let mut last = None;
        if let Some(p) = self.peers.get_mut(&ip) {
            p.kinds = (p.kinds | kinds) & !withdrawn;
            last = Some(p.last);
        }
        if let Some(last) = last {
            self.episode(Subject::Peer, ip, last);
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

    /// Whether the peer at `ip` has a finding of a kind other than a flood.
    fn named_otherwise(&self, ip: IpAddr) -> bool {
        self.peers
            .get(&ip)
            .is_some_and(|p| p.kinds & !ThreatKind::Flood.bit() != 0)
    }

    /// Whether `t`'s line was flooded from many sources while the peer sent it requests.
    fn flooded_during(&self, t: &Target) -> bool {
        self.floods
            .get(&t.line)
            .is_some_and(|e| e.flagged && t.first <= e.last && e.first <= t.last)
    }

    pub(super) fn toll_fraud(&self, p: &Peer) -> bool {
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

    pub(super) fn build(&self, p: &Peer, kind: ThreatKind) -> Threat {
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
            sources: Vec::new(),
            sources_total: 0,
            ended: p.ended,
        }
    }

    /// The finding of a flood from many sources at one line.
    pub(super) fn build_flood(&self, e: &LineFlood) -> Threat {
        let (peak, n, w) = FloodRule::many_sources(&self.cfg).peak(e.peak, e.peak_burst);
        let sources_total = e.sources_total();
        let m = &e.methods;
        let mut what = Vec::new();
        for (name, n) in [
            ("INVITE", m.invite),
            ("REGISTER", m.register),
            ("OPTIONS", m.options),
            ("other", m.other),
        ] {
            if n > 0 {
                what.push(format!("{name} x {n}"));
            }
        }
        let detail = format!(
            "{n} requests at {} from ~{sources_total} source addresses within {w} s (peak {peak:.0}/s; no source near the per-peer rate: forged sources), {} in all over {} ({}){}; answered: {}",
            e.line,
            e.requests,
            short_span(e.last.secs_since(e.first)),
            what.join(", "),
            agents_text(&e.agents),
            e.answers().text()
        );
        let answers = e.answers().to_map();
        // A source with a finding of another kind of its own (a search or a sweep that hit
        // the line during the flood) is an attacker in its own right, not one of the flood's
        // forged sources.
        let sources: Vec<IpAddr> = e
            .samples
            .iter()
            .copied()
            .filter(|ip| !self.named_otherwise(*ip))
            .collect();
        Threat {
            peer: sources.first().copied().unwrap_or(e.line),
            kind: ThreatKind::Flood,
            severity: ThreatKind::Flood.severity(),
            lines: vec![ThreatTarget {
                line: e.line,
                requests: e.requests,
                answers: answers.clone(),
                first_seen: e.first,
                last_seen: e.last,
            }],
            lines_total: 1,
            requests: e.requests,
            first_seen: e.first,
            last_seen: e.last,
            user_agents: e.agents.clone(),
            answers,
            reasons: vec![Reason {
                signal: "flood".into(),
                value: peak,
                strength: 1.0,
                detail,
            }],
            numbers: Vec::new(),
            sources,
            sources_total,
            ended: e.ended,
        }
    }

    pub(super) fn reason(&self, p: &Peer, kind: ThreatKind) -> Reason {
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
                let (peak, n, secs) = FloodRule::of(&self.cfg).peak(p.flood_max, p.burst_max);
                (
                    peak,
                    format!(
                        "{n} requests within {secs} s (peak {peak:.0}/s), {} in all over {span} to {} lines{agents}; answered: {answered}",
                        p.requests,
                        p.lines_total()
                    ),
                )
            }
            ThreatKind::Framing => {
                let framed = p.framed_targets(&self.cfg);
                if framed.is_empty() {
                    // Withdrawn (see `classify`): what the lines did with the stream.
                    let calls: u64 = p.targets.iter().map(|t| t.calls_ended).sum();
                    let relayed: u64 = p.targets.iter().map(|t| t.calls_relayed).sum();
                    let open: u64 = p.targets.iter().map(|t| t.answered_open).sum();
                    (
                        0.0,
                        format!(
                            "no longer framing: the lines took part in {relayed} of the {calls} INVITEs that ended ({open} answered and still running){agents}: their business, judged by detection"
                        ),
                    )
                } else {
                    let calls: u64 = framed.iter().map(|t| t.calls_ended).sum();
                    // INVITEs sent (some may still be open; their numbers are counted as sent).
                    let invites: u64 = framed
                        .iter()
                        .map(|t| t.requests.saturating_sub(t.probes))
                        .sum();
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
                            "{invites} INVITEs to {numbers} distinct numbers at {} lines in {span} ({calls} ended), up to {conc} at once{agents}; the lines relayed {relayed} ({})",
                            framed.len(),
                            ans.text()
                        ),
                    )
                }
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

    pub(super) fn build_pbx(&self, f: &PbxFinding) -> Threat {
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
            sources: Vec::new(),
            sources_total: 0,
            ended: f.ended,
        }
    }
}
