//! The threat table: events in, per-peer state updated, findings and changes out.

use super::flood::LineFlood;
use super::peer::*;
use super::rate::FloodRule;
use super::{sort_threats, Threat, ThreatKind, ThreatsConfig, PEER_KINDS};
use crate::config::NetworkConfig;
use crate::model::{
    called_user, CallRecord, Counters, Direction, Event, Participation, ProbeMethod, ProbeRecord,
    RegistrationRecord, Timestamp,
};
use crate::table::TimedTable;
use std::collections::VecDeque;
use std::net::IpAddr;

/// What an open threat episode is about: a peer's kinds, a compromised PBX line, a flood from
/// many sources at a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Subject {
    Peer,
    Pbx,
    Flood,
}

/// The threat stage: every attacking peer, its targets and what they answered.
pub struct ThreatTable {
    pub(super) cfg: std::sync::Arc<ThreatsConfig>,
    pub(super) network: NetworkConfig,
    pub(super) prefixes: Vec<String>,
    pub(super) hasher: ahash::RandomState,
    pub(super) peers: TimedTable<IpAddr, Peer>,
    pub(super) past: VecDeque<Threat>,
    pub(super) pbx: TimedTable<IpAddr, PbxFinding>,
    pub(super) watch: TimedTable<IpAddr, Vec<Watched>>,
    pub(super) changes: Vec<Threat>,
    /// Request rate per line, for floods from many sources.
    pub(super) floods: TimedTable<IpAddr, LineFlood>,
    /// Open threat episodes, due when their subject has been quiet for `clear_after_secs`.
    pub(super) episodes: TimedTable<(Subject, IpAddr), ()>,
    pub(super) evictions: Counters,
    pub(super) now: Timestamp,
}

impl ThreatTable {
    /// An empty table with `cfg`'s caps and thresholds; `network` says which end is the line.
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
            floods: TimedTable::new(cfg.max_flood_lines),
            episodes: TimedTable::new(
                cfg.max_peers
                    .saturating_add(cfg.max_pbx_lines)
                    .saturating_add(cfg.max_flood_lines),
            ),
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
            Event::CallAnswered {
                line: Some(line),
                direction: Direction::Inbound,
                peer: Some(peer),
                ..
            } => self.on_inbound_answered(*line, peer.ip()),
            _ => {}
        }
    }

    /// A line answered an inbound call of a tracked peer: until it ends, the call counts as
    /// taken in the framing rule (see `Target::answered_open`).
    fn on_inbound_answered(&mut self, line: IpAddr, peer_ip: IpAddr) {
        let Some(peer) = self.peers.get_mut(&peer_ip) else {
            return;
        };
        if let Some(t) = peer
            .target_index(line)
            .and_then(|i| peer.targets.get_mut(i))
        {
            t.answered_open += 1;
        }
    }

    /// The digits after an international/premium prefix, when `number` is one (and not a
    /// home-country number written internationally); of a pseudonymous user part, the pseudonym
    /// of those digits (see [`ThreatTable::user_class`]).
    pub(super) fn premium(&self, number: &str) -> Option<String> {
        match self.user_class(number) {
            super::UserClass::Toll { rest, .. } => Some(rest.to_string()),
            _ => None,
        }
    }

    pub(super) fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The peer entry for `ip` (created, evicting the oldest unclassified when full), with its
    /// deadline moved.
    pub(super) fn peer_mut(&mut self, ip: IpAddr, ts: Timestamp) -> Option<&mut Peer> {
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
        let classified = p.kinds != 0;
        let last = p.last;
        // A peer whose episode had closed is at it again: a new episode.
        let reopened = classified && p.ended.take().is_some();
        if want.micros() - deadline.micros() >= 1_000_000 {
            self.peers.set_deadline(&ip, want);
        }
        if classified {
            self.episode(Subject::Peer, ip, last);
        }
        if reopened {
            self.peer_changed(ip);
        }
        self.peers.get_mut(&ip)
    }

    /// Every kind of `ip` as a change (an episode opened or closed).
    pub(super) fn peer_changed(&mut self, ip: IpAddr) {
        let Some(p) = self.peers.get(&ip) else { return };
        let mut out = Vec::new();
        for k in PEER_KINDS {
            if p.kinds & k.bit() != 0 {
                out.push(self.build(p, k));
            }
        }
        for t in out {
            self.push_change(t);
        }
    }

    /// Moves the episode of `(subject, ip)` (opened when new) to close `clear_after_secs` after
    /// `last`.
    pub(super) fn episode(&mut self, subject: Subject, ip: IpAddr, last: Timestamp) {
        let due = last.plus_secs(f64::from(self.cfg.clear_after_secs));
        let key = (subject, ip);
        match self.episodes.deadline(&key) {
            Some(d) if due.micros() - d.micros() < 1_000_000 => {}
            Some(_) => self.episodes.set_deadline(&key, due),
            None => {
                if let Some((old, ())) = self.episodes.insert(key, (), due) {
                    self.evictions.add("threat_episodes", 1);
                    self.close(old, self.now);
                }
            }
        }
    }

    /// Closes the episode of `key` at `now`: its findings, as changes with `ended` set.
    pub(super) fn close(&mut self, key: (Subject, IpAddr), now: Timestamp) {
        let (subject, ip) = key;
        match subject {
            Subject::Peer => {
                let Some(p) = self.peers.get_mut(&ip) else {
                    return;
                };
                if p.kinds == 0 || p.ended.is_some() {
                    return;
                }
                p.ended = Some(now);
                self.peer_changed(ip);
            }
            Subject::Pbx => {
                let Some(f) = self.pbx.get_mut(&ip) else {
                    return;
                };
                if f.ended.is_some() {
                    return;
                }
                f.ended = Some(now);
                if let Some(t) = self.pbx.get(&ip).map(|f| self.build_pbx(f)) {
                    self.push_change(t);
                }
            }
            Subject::Flood => {
                let Some(e) = self.floods.get_mut(&ip) else {
                    return;
                };
                if !e.flagged || e.ended.is_some() {
                    return;
                }
                e.ended = Some(now);
                e.hot = false;
                if let Some(t) = self.floods.get(&ip).map(|e| self.build_flood(e)) {
                    self.push_change(t);
                }
            }
        }
    }

    /// A peer leaves the table: what it earned is kept as findings.
    pub(super) fn retire(&mut self, mut p: Peer) {
        if p.kinds == 0 {
            return;
        }
        // Its episode closes with it.
        let open = p.ended.is_none();
        if open {
            p.ended = Some(self.now);
        }
        self.episodes.remove(&(Subject::Peer, p.ip));
        for k in PEER_KINDS {
            if p.kinds & k.bit() != 0 {
                let t = self.build(&p, k);
                if open {
                    self.push_change(t.clone());
                }
                if self.past.len() >= self.cfg.max_findings {
                    self.past.pop_front();
                    self.evictions.add("threat_findings", 1);
                }
                self.past.push_back(t);
            }
        }
    }

    /// Index of `line`'s target in `peer` (created when there is room).
    pub(super) fn target(
        cfg: &ThreatsConfig,
        peer: &mut Peer,
        line: IpAddr,
        lh: u64,
        ts: Timestamp,
    ) -> Option<usize> {
        if let Some(i) = peer.target_index(line) {
            return Some(i);
        }
        if peer.targets.len() >= cfg.max_lines_per_peer {
            peer.sketches
                .get_or_insert_with(|| Box::new(PeerSketches::of_targets(&peer.targets)))
                .lines
                .insert(lh);
            return None;
        }
        if let Some(s) = peer.sketches.as_mut() {
            s.lines.insert(lh);
        }
        Some(peer.push_target(Target::new(line, lh, ts)))
    }

    pub(super) fn on_probe(&mut self, p: &ProbeRecord) {
        let peer_ip = p.peer.ip();
        if self.network.is_home(peer_ip) {
            return;
        }
        match p.status {
            None => {
                self.line_request(
                    p.line,
                    peer_ip,
                    p.time,
                    Some(p.method),
                    p.user_agent.as_deref(),
                );
                self.on_request(peer_ip, p);
            }
            Some(code) => {
                if let Some(e) = self.floods.get_mut(&p.line).filter(|e| e.hot) {
                    e.answers.code(code);
                }
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

    pub(super) fn on_request(&mut self, peer_ip: IpAddr, p: &ProbeRecord) {
        let user = called_user(p.request_user.as_deref(), p.to_user.as_deref());
        // One classification for both questions (a flood asks them on every request).
        let class = user.map(|u| self.user_class(u));
        let premium = match (p.method, class) {
            (ProbeMethod::Invite, Some(super::UserClass::Toll { rest, .. })) => {
                Some(rest.to_string())
            }
            _ => None,
        };
        let uh = user.map(|u| self.hash(u));
        let number = class == Some(super::UserClass::Number);
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
        // numbers called (INVITEs), per line. A number written internationally counts as a
        // number too: a gateway-shaped stream's numbers are often `+CC...`/`00CC...` (the home
        // country's, which only `home_calling_codes` tells apart); a toll-fraud attempt's few
        // numbers never make a stream of distinct ones.
        if let Some(h) = uh {
            let is_number = invite && (number || premium.is_some());
            Self::add_name(&cfg, peer, ti, h, is_number);
        }
        self.classify(peer_ip);
        if let (Some(n), Some(ph)) = (premium, ph) {
            self.watch_line(p.line, peer_ip, ph, n, p.time);
        }
    }

    pub(super) fn count_request(
        cfg: &ThreatsConfig,
        peer: &mut Peer,
        ts: Timestamp,
        agent: Option<&str>,
    ) {
        peer.requests += 1;
        if peer.rate.count(ts, &FloodRule::of(cfg)).counted {
            peer.flood_max = peer.flood_max.max(peer.rate.count);
            peer.burst_max = peer.burst_max.max(peer.rate.burst_count);
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

    pub(super) fn mark_probed(peer: &mut Peer, ti: Option<usize>, lh: u64) {
        // Before the sketches exist, the probed lines are the kept targets with probes.
        if let Some(s) = peer.sketches.as_mut() {
            s.probed.insert(lh);
        }
        match ti.and_then(|i| peer.targets.get(i)) {
            Some(t) if t.probes == 0 => peer.probed_lines += 1,
            Some(_) => {}
            None => {}
        }
    }

    pub(super) fn add_name(
        cfg: &ThreatsConfig,
        peer: &mut Peer,
        ti: Option<usize>,
        h: u64,
        number: bool,
    ) {
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
    pub(super) fn on_registration(&mut self, r: &RegistrationRecord) {
        let Some(line) = r.line else { return };
        let src = r.source.ip();
        if src == line || self.network.is_home(src) {
            return;
        }
        self.line_request(line, src, r.time, None, r.user_agent.as_deref());
        if let (Some(c), Some(e)) = (r.status_code, self.floods.get_mut(&line)) {
            if e.hot {
                e.answers.code(c);
            }
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

    pub(super) fn on_call_ended(&mut self, c: &CallRecord) {
        match c.direction {
            Direction::Inbound => self.on_inbound_ended(c),
            Direction::Outbound | Direction::Internal => self.on_outbound_ended(c),
            Direction::Transit => {}
        }
    }

    pub(super) fn on_inbound_ended(&mut self, c: &CallRecord) {
        let (Some(line), Some(peer_sa)) = (c.line, c.peer) else {
            return;
        };
        let peer_ip = peer_sa.ip();
        if self.network.is_home(peer_ip) {
            return;
        }
        let number = c.called();
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
            if premium.is_some() && relayed {
                t.premium_relayed += 1;
                pbx_relay = true;
            }
            // Every INVITE counts in the stream (see the names above).
            t.calls_ended += 1;
            if carried {
                t.calls_relayed += 1;
            }
            if c.answer.is_some() {
                t.answered_open = t.answered_open.saturating_sub(1);
            }
        }
        let toll = peer.kinds & ThreatKind::TollFraudAttempt.bit() != 0;
        self.classify(peer_ip);
        if pbx_relay && toll {
            self.pbx_relayed(line, peer_ip, number, c, end);
        }
    }

    /// The line relayed a toll-fraud call from `peer`.
    pub(super) fn pbx_relayed(
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
    pub(super) fn pbx_finding(
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
                ended: None,
                renewed: false,
            };
            if let Some((_, mut old)) = self.pbx.insert(line, f, at) {
                self.evictions.add("pbx_findings", 1);
                self.episodes.remove(&(Subject::Pbx, old.line));
                if old.ended.is_none() {
                    old.ended = Some(self.now);
                    let t = self.build_pbx(&old);
                    self.push_change(t);
                }
            }
        } else {
            self.pbx.set_deadline(&line, at);
        }
        let f = self.pbx.get_mut(&line)?;
        if at > f.last {
            f.last = at;
        }
        f.first = f.first.min(at);
        // Relaying again after its episode closed: a new episode.
        if f.ended.take().is_some() {
            f.renewed = true;
        }
        let last = f.last;
        self.episode(Subject::Pbx, line, last);
        self.pbx.get_mut(&line)
    }

    pub(super) fn pbx_changed(&mut self, line: IpAddr) {
        let Some(f) = self.pbx.get(&line) else { return };
        // An alert on the first evidence and whenever the evidence doubles.
        let n = f.relayed + f.placed;
        if n.is_power_of_two() || f.renewed {
            let t = self.build_pbx(f);
            self.push_change(t);
        }
        if let Some(f) = self.pbx.get_mut(&line) {
            f.renewed = false;
        }
    }

    /// Remembers an international INVITE to `line` for the outbound-call check.
    pub(super) fn watch_line(
        &mut self,
        line: IpAddr,
        peer: IpAddr,
        h: u64,
        number: String,
        ts: Timestamp,
    ) {
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
    pub(super) fn on_outbound_ended(&mut self, c: &CallRecord) {
        let Some(line) = c.line else { return };
        let Some(number) = c.called() else {
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

    pub(super) fn push_change(&mut self, t: Threat) {
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
        while let Some(k) = self.episodes.first_due(now) {
            self.episodes.remove(&k);
            self.close(k, now);
        }
        while let Some(k) = self.floods.first_due(now) {
            if let Some(e) = self.floods.remove(&k) {
                self.retire_flood(e);
            }
        }
    }

    /// A line's flood entry leaves the table: a flood it had is kept as a finding.
    pub(super) fn retire_flood(&mut self, mut e: LineFlood) {
        if !e.flagged {
            return;
        }
        self.episodes.remove(&(Subject::Flood, e.line));
        if e.ended.is_none() {
            e.ended = Some(self.now);
            let t = self.build_flood(&e);
            self.push_change(t);
        }
        let t = self.build_flood(&e);
        if self.past.len() >= self.cfg.max_findings {
            self.past.pop_front();
            self.evictions.add("threat_findings", 1);
        }
        self.past.push_back(t);
    }

    /// One request from outside at `line`: the line's request rate (floods from many sources).
    pub(super) fn line_request(
        &mut self,
        line: IpAddr,
        src: IpAddr,
        ts: Timestamp,
        method: Option<ProbeMethod>,
        agent: Option<&str>,
    ) {
        let cfg = self.cfg.clone();
        let window = f64::from(cfg.flood_window_secs);
        let sh = self.hasher.hash_one(src);
        if !self.floods.contains(&line) {
            let due = ts.plus_secs(2.0 * window);
            if let Some((_, old)) = self.floods.insert(line, LineFlood::new(line, ts), due) {
                self.evictions.add("threat_flood_lines", 1);
                self.retire_flood(old);
            }
        }
        // Sources the line does business with (it relayed their calls), and domestic ones,
        // are not named as the flood's sources.
        let business = self.network.is_domestic(src)
            || self.peers.get(&src).is_some_and(|p| {
                p.target_index(line)
                    .and_then(|i| p.targets.get(i))
                    .is_some_and(|t| t.calls_relayed > 0)
            });
        let Some((e, deadline)) = self.floods.get_mut_with_deadline(&line) else {
            return;
        };
        let tripped = e.request(
            ts,
            sh,
            method,
            &FloodRule::many_sources(&cfg),
            cfg.flood_min_sources as usize,
        );
        if !e.hot {
            return;
        }
        if !business {
            e.sample(src);
        }
        e.agent(agent, cfg.max_agents_per_peer);
        let last = e.last;
        // A line that flooded is kept (as a finding) as long as a classified peer.
        let want = last.plus_secs(f64::from(cfg.idle_secs) * 24.0);
        if want.micros() - deadline.micros() >= 1_000_000 {
            self.floods.set_deadline(&line, want);
        }
        if tripped {
            if let Some(t) = self.floods.get(&line).map(|e| self.build_flood(e)) {
                self.push_change(t);
            }
        }
        self.episode(Subject::Flood, line, last);
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
        for e in self.floods.values().filter(|e| e.flagged) {
            out.push(self.build_flood(e));
        }
        sort_threats(&mut out);
        out
    }

    /// Evictions by table (`threat_peers`, `threat_findings`, `pbx_findings`, `pbx_watch`,
    /// `threat_changes`, `threat_flood_lines`, `threat_episodes`).
    pub fn evictions(&self) -> &Counters {
        &self.evictions
    }

    /// Current entries by table.
    pub fn table_sizes(&self) -> [(&'static str, usize); 6] {
        [
            ("threat_peers", self.peers.len()),
            ("threat_findings", self.past.len()),
            ("pbx_findings", self.pbx.len()),
            ("pbx_watch", self.watch.len()),
            ("threat_flood_lines", self.floods.len()),
            ("threat_episodes", self.episodes.len()),
        ]
    }
}
