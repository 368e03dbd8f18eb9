//! The correlator's state, pure (no I/O, packet time only): the evidence of every line from
//! every sensor, merged per line, sites across sensors by the core's site rule, and the sensors'
//! alerts received (by idempotency key).
//!
//! Merge rule: a line seen by several sensors is judged on the strongest view of each signal
//! (per signal the largest strength any sensor measured, its figures and the sensor named), so
//! two taps that see the same calls never count them twice; the site key (top peer and rhythm)
//! is that of the sensor with the highest own score. The merged score is the detection score
//! (noisy-OR with `[detection]` weights) of those signals plus the `site` signal of a site formed
//! across sensors; a line any sensor calls `gateway` stays `gateway`.

use serde::{Deserialize, Serialize};
use simboxd_core::detect::{
    combine, site_groups, site_signal, DetectionConfig, LineEvidence, Signal,
};
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The signal names detection weighs (`Signal::name` is `&'static str`).
const SIGNALS: &[&str] = &[
    "foreign_inbound",
    "distinct_called",
    "concurrency_ceiling",
    "machine_rhythm",
    "gap_regularity",
    "registrations",
    "fingerprint",
    "opaque_media",
];

/// A site candidate's key: its top peer and rhythm.
type SiteKey = (IpAddr, simboxd_core::detect::Rhythm);

/// Site members: line -> (site name, site size).
type Groups = BTreeMap<IpAddr, (String, usize)>;

/// One line: its evidence per sensor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineViews {
    pub sensors: BTreeMap<String, LineEvidence>,
}

/// A site formed across sensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub peer: IpAddr,
    pub lines: Vec<IpAddr>,
    /// Sensors that saw at least one member.
    pub sensors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Correlator {
    pub lines: BTreeMap<IpAddr, LineViews>,
    /// Lines evicted to stay within `max_lines` (the one updated longest ago goes).
    pub evictions: u64,
    /// What is derived from `lines` to re-evaluate only what changed (not stored: rebuilt from
    /// `lines` when first needed).
    #[serde(skip)]
    derived: Derived,
}

/// Indexes and the last evaluation's site state, kept in step with `Correlator::lines`.
#[derive(Clone, Debug, Default)]
struct Derived {
    /// The age indexes below describe `lines`.
    indexed: bool,
    /// Every view by its evaluation time (expiry) and every line by its newest view (eviction);
    /// sensors by their index in `sensors`.
    views_by_age: BTreeSet<(Timestamp, IpAddr, u32)>,
    lines_by_age: BTreeSet<(Timestamp, IpAddr)>,
    sensors: Vec<String>,
    /// The configuration the site state below was derived with (`None`: not derived yet).
    cfg: Option<DetectionConfig>,
    /// Site candidates (lines suspect on their own evidence) by top peer, and each one's peer.
    candidates: BTreeMap<IpAddr, BTreeMap<IpAddr, simboxd_core::detect::Rhythm>>,
    candidate_peer: BTreeMap<IpAddr, IpAddr>,
    /// Each member's site (name, size), and the sites of each peer.
    groups: BTreeMap<IpAddr, (String, usize)>,
    sites: BTreeMap<IpAddr, Vec<Site>>,
    /// Lines whose views changed (or went) since the last evaluation.
    dirty: BTreeSet<IpAddr>,
}

/// What [`Correlator::evaluate_changed`] found: the new verdicts of the lines whose evidence or
/// site changed, the lines no longer held, and whether any site changed.
#[derive(Debug, Default)]
pub struct Changed {
    pub verdicts: Vec<LineVerdict>,
    pub removed: Vec<IpAddr>,
    pub sites_changed: bool,
}

/// The newest evaluation among a line's views.
fn newest(v: &LineViews) -> Timestamp {
    v.sensors
        .values()
        .map(|e| e.updated)
        .max()
        .unwrap_or_default()
}

impl Correlator {
    fn sensor_id(&mut self, sensor: &str) -> u32 {
        let d = &mut self.derived;
        match d.sensors.iter().position(|s| s == sensor) {
            Some(i) => i as u32,
            None => {
                d.sensors.push(sensor.to_string());
                (d.sensors.len() - 1) as u32
            }
        }
    }

    /// Builds the age indexes from `lines` (after a load).
    fn index(&mut self) {
        if self.derived.indexed {
            return;
        }
        let mut views = Vec::new();
        for (ip, v) in &self.lines {
            for (sensor, e) in &v.sensors {
                views.push((e.updated, *ip, sensor.clone()));
            }
        }
        for (t, ip, sensor) in views {
            let id = self.sensor_id(&sensor);
            self.derived.views_by_age.insert((t, ip, id));
        }
        self.derived.lines_by_age = self.lines.iter().map(|(ip, v)| (newest(v), *ip)).collect();
        self.derived.indexed = true;
    }

    /// Removes line `ip` with its index entries.
    fn remove_line(&mut self, ip: IpAddr) {
        let Some(v) = self.lines.remove(&ip) else {
            return;
        };
        self.derived.lines_by_age.remove(&(newest(&v), ip));
        for (sensor, e) in &v.sensors {
            let id = self.sensor_id(sensor);
            self.derived.views_by_age.remove(&(e.updated, ip, id));
        }
        self.derived.dirty.insert(ip);
    }

    /// Takes one sensor's evidence of a line (an older evaluation than the one held is ignored).
    /// Returns whether anything changed.
    pub fn on_evidence(&mut self, sensor: &str, ev: LineEvidence, max_lines: usize) -> bool {
        self.index();
        if !self.lines.contains_key(&ev.line) && self.lines.len() >= max_lines.max(1) {
            if let Some(&(_, victim)) = self.derived.lines_by_age.first() {
                self.remove_line(victim);
                self.evictions += 1;
            }
        }
        let ip = ev.line;
        let id = self.sensor_id(sensor);
        let views = self.lines.entry(ip).or_default();
        let before = newest(views);
        let old = match views.sensors.get(sensor) {
            Some(old) if old.updated > ev.updated => return false,
            Some(old) => Some(old.updated),
            None => None,
        };
        let t = ev.updated;
        views.sensors.insert(sensor.to_string(), ev);
        let after = newest(views);
        let d = &mut self.derived;
        if let Some(o) = old {
            d.views_by_age.remove(&(o, ip, id));
        }
        d.views_by_age.insert((t, ip, id));
        d.lines_by_age.remove(&(before, ip));
        d.lines_by_age.insert((after, ip));
        d.dirty.insert(ip);
        true
    }

    /// Drops the views not refreshed for `idle_secs` before `now`.
    pub fn expire(&mut self, now: Timestamp, idle_secs: u32) {
        self.index();
        let limit = i64::from(idle_secs) * 1_000_000;
        while let Some(&(t, ip, id)) = self.derived.views_by_age.first() {
            if now.micros().saturating_sub(t.micros()) <= limit {
                break;
            }
            self.derived.views_by_age.remove(&(t, ip, id));
            let sensor = self
                .derived
                .sensors
                .get(id as usize)
                .cloned()
                .unwrap_or_default();
            let Some(v) = self.lines.get_mut(&ip) else {
                continue;
            };
            let before = newest(v);
            v.sensors.remove(&sensor);
            self.derived.lines_by_age.remove(&(before, ip));
            if v.sensors.is_empty() {
                self.lines.remove(&ip);
            } else {
                let after = newest(v);
                self.derived.lines_by_age.insert((after, ip));
            }
            self.derived.dirty.insert(ip);
        }
    }

    /// Merged verdicts of every line and the sites across sensors.
    pub fn evaluate(&self, cfg: &DetectionConfig) -> (BTreeMap<IpAddr, LineVerdict>, Vec<Site>) {
        let mut merged: BTreeMap<IpAddr, (Vec<Signal>, Option<SiteKey>)> = BTreeMap::new();
        let mut candidates = BTreeMap::new();
        for (ip, views) in &self.lines {
            let (sigs, key, candidate) = own_view(views, cfg);
            if let (Some(k), true) = (key, candidate) {
                candidates.insert(*ip, k);
            }
            merged.insert(*ip, (sigs, key));
        }
        let groups = site_groups(&candidates, cfg.site_min_lines);
        let mut verdicts = BTreeMap::new();
        let mut sites: BTreeMap<String, Site> = BTreeMap::new();
        for (ip, (mut sigs, key)) in merged {
            let Some(views) = self.lines.get(&ip) else {
                continue;
            };
            let site = groups.get(&ip).cloned();
            if let (Some((name, size)), Some((peer, _))) = (&site, key) {
                sigs.push(site_signal(name, *size, &peer.to_string()));
                let s = sites.entry(name.clone()).or_insert_with(|| Site {
                    name: name.clone(),
                    peer,
                    lines: Vec::new(),
                    sensors: Vec::new(),
                });
                s.lines.push(ip);
                for sensor in views.sensors.keys() {
                    if !s.sensors.contains(sensor) {
                        s.sensors.push(sensor.clone());
                    }
                }
            }
            verdicts.insert(ip, merged_verdict(ip, views, sigs, site.map(|s| s.0), cfg));
        }
        (verdicts, sites.into_values().collect())
    }

    /// Re-evaluates what changed since the last call: the lines whose views changed and the
    /// members of the sites of their peers (a site is formed per peer, so no other line can
    /// change). The verdicts and sites are those [`Correlator::evaluate`] gives; the first call
    /// (after a load or with another configuration) evaluates every line.
    pub fn evaluate_changed(&mut self, cfg: &DetectionConfig) -> Changed {
        self.index();
        let d = &mut self.derived;
        if d.cfg.as_ref() != Some(cfg) {
            d.cfg = Some(cfg.clone());
            d.candidates.clear();
            d.candidate_peer.clear();
            d.groups.clear();
            d.sites.clear();
            d.dirty = self.lines.keys().copied().collect();
        }
        let dirty = std::mem::take(&mut d.dirty);
        let mut out = Changed::default();
        let mut recompute: BTreeSet<IpAddr> = BTreeSet::new();
        let mut peers: BTreeSet<IpAddr> = BTreeSet::new();
        for ip in dirty {
            if let Some(p) = d.candidate_peer.remove(&ip) {
                if let Some(c) = d.candidates.get_mut(&p) {
                    c.remove(&ip);
                }
                peers.insert(p);
            }
            let Some(views) = self.lines.get(&ip) else {
                out.removed.push(ip);
                d.groups.remove(&ip);
                continue;
            };
            recompute.insert(ip);
            if let (_, Some((peer, rhythm)), true) = own_view(views, cfg) {
                d.candidates.entry(peer).or_default().insert(ip, rhythm);
                d.candidate_peer.insert(ip, peer);
                peers.insert(peer);
            }
        }
        // The affected peers' sites again; members that left them first (a line may have moved
        // from one peer to another), then the members now.
        let regrouped: Vec<(IpAddr, Groups)> = peers
            .into_iter()
            .map(|peer| {
                let cands: BTreeMap<IpAddr, SiteKey> = d
                    .candidates
                    .get(&peer)
                    .map(|c| c.iter().map(|(ip, r)| (*ip, (peer, *r))).collect())
                    .unwrap_or_default();
                (peer, site_groups(&cands, cfg.site_min_lines))
            })
            .collect();
        for (peer, groups) in &regrouped {
            let old = d.sites.get(peer).into_iter().flatten();
            for ip in old.flat_map(|s| s.lines.iter()) {
                if !groups.contains_key(ip) && d.groups.remove(ip).is_some() {
                    recompute.insert(*ip);
                }
            }
        }
        for (peer, groups) in regrouped {
            let mut sites: BTreeMap<String, Site> = BTreeMap::new();
            for (ip, g) in groups {
                let s = sites.entry(g.0.clone()).or_insert_with(|| Site {
                    name: g.0.clone(),
                    peer,
                    lines: Vec::new(),
                    sensors: Vec::new(),
                });
                s.lines.push(ip);
                if let Some(views) = self.lines.get(&ip) {
                    for sensor in views.sensors.keys() {
                        if !s.sensors.contains(sensor) {
                            s.sensors.push(sensor.clone());
                        }
                    }
                }
                if d.groups.get(&ip) != Some(&g) {
                    d.groups.insert(ip, g);
                    recompute.insert(ip);
                }
            }
            let sites: Vec<Site> = sites.into_values().collect();
            if d.sites
                .get(&peer)
                .map_or(!sites.is_empty(), |old| *old != sites)
            {
                out.sites_changed = true;
            }
            if sites.is_empty() {
                d.sites.remove(&peer);
            } else {
                d.sites.insert(peer, sites);
            }
            if d.candidates.get(&peer).is_some_and(|c| c.is_empty()) {
                d.candidates.remove(&peer);
            }
        }
        for ip in recompute {
            let Some(views) = self.lines.get(&ip) else {
                continue;
            };
            let (mut sigs, key, _) = own_view(views, cfg);
            let site = d.groups.get(&ip).cloned();
            if let (Some((name, size)), Some((peer, _))) = (&site, key) {
                sigs.push(site_signal(name, *size, &peer.to_string()));
            }
            out.verdicts
                .push(merged_verdict(ip, views, sigs, site.map(|s| s.0), cfg));
        }
        out
    }

    /// The sites of the last [`Correlator::evaluate_changed`], by name.
    pub fn sites(&self) -> Vec<Site> {
        let mut all: Vec<Site> = self.derived.sites.values().flatten().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// A line on its own: the merged signals, its site key (of the sensor with the highest own
/// score) and whether it is a site candidate (suspect on its own evidence).
fn own_view(views: &LineViews, cfg: &DetectionConfig) -> (Vec<Signal>, Option<SiteKey>, bool) {
    let sigs = merged_signals(views);
    let (base, _) = combine(&sigs, cfg);
    let key = views
        .sensors
        .values()
        .max_by(|a, b| a.base_score.total_cmp(&b.base_score))
        .and_then(|e| Some((e.peer?, e.rhythm?)));
    let candidate = key.is_some() && base >= cfg.suspect_score;
    (sigs, key, candidate)
}

/// Per signal, the strongest view any sensor has (its detail names the sensor when several saw
/// the line).
fn merged_signals(views: &LineViews) -> Vec<Signal> {
    let many = views.sensors.len() > 1;
    let mut best: BTreeMap<&'static str, Signal> = BTreeMap::new();
    for (sensor, e) in &views.sensors {
        for r in &e.reasons {
            let Some(name) = SIGNALS.iter().find(|n| **n == r.signal) else {
                continue;
            };
            if best.get(name).is_some_and(|b| b.strength >= r.strength) {
                continue;
            }
            let detail = if many {
                format!("{} (sensor {sensor})", r.detail)
            } else {
                r.detail.clone()
            };
            best.insert(
                name,
                Signal {
                    name,
                    value: r.value,
                    strength: r.strength,
                    detail,
                },
            );
        }
    }
    best.into_values().collect()
}

fn merged_verdict(
    ip: IpAddr,
    views: &LineViews,
    sigs: Vec<Signal>,
    site: Option<String>,
    cfg: &DetectionConfig,
) -> LineVerdict {
    let (mut score, mut level) = combine(&sigs, cfg);
    let all = views.sensors.values();
    let sensor_level = all
        .clone()
        .map(|e| e.verdict)
        .max()
        .unwrap_or(VerdictLevel::Normal);
    let sensor_score = all.clone().map(|e| e.score).fold(0.0, f64::max);
    if sensor_level > level {
        level = sensor_level;
    }
    score = score.max(sensor_score);
    let flagged_at = all.clone().filter_map(|e| e.flagged_at).min();
    // The peer (softswitch) as the sensor with the strongest view of the line saw it.
    let peer = all
        .clone()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .and_then(|e| e.peer);
    let updated = all.clone().map(|e| e.updated).max().unwrap_or_default();
    let mut reasons: Vec<Reason> = sigs
        .into_iter()
        .filter(|s| s.strength >= 0.05)
        .map(|s| Reason {
            signal: s.name.to_string(),
            value: s.value,
            strength: s.strength,
            detail: s.detail,
        })
        .collect();
    reasons.sort_by(|a, b| b.strength.total_cmp(&a.strength));
    LineVerdict {
        line: ip,
        peer,
        verdict: level,
        score,
        flagged_at: if level == VerdictLevel::Gateway {
            flagged_at.or(Some(updated))
        } else {
            flagged_at
        },
        site,
        reasons,
        updated,
        calls: all.clone().map(|e| e.summary.calls).max().unwrap_or(0),
        max_concurrent_calls: all
            .map(|e| e.summary.max_concurrent_calls)
            .max()
            .unwrap_or(0),
    }
}

/// Default packet seconds a site must stay dissolved before it is cleared (`[central]
/// site_clear_secs`): the members' evidence arrives line by line and sensor by sensor, so a site
/// can miss a member between two summaries; one that re-forms within this is the same episode
/// (updated, not cleared and raised again).
#[cfg(test)]
pub const SITE_CLEAR_SECS: f64 = 300.0;

/// Lifecycle of site alerts: raised when a site forms, updated when its members change, cleared
/// when it has stayed dissolved for `clear_secs`. Ids are stable per site name and start.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SiteAlerts {
    open: BTreeMap<String, SiteEpisode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SiteEpisode {
    id: String,
    seq: u32,
    first_seen: Timestamp,
    lines: BTreeSet<IpAddr>,
    peer: IpAddr,
    /// Packet time the site was first found dissolved (cleared `clear_secs` later).
    #[serde(default)]
    missing_since: Option<Timestamp>,
}

impl SiteAlerts {
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Alerts for what changed between the open sites and `sites` at `now`; a site dissolved
    /// for `clear_secs` (packet time) is cleared.
    pub fn update(
        &mut self,
        sites: &[Site],
        verdicts: &BTreeMap<IpAddr, LineVerdict>,
        now: Timestamp,
        clear_secs: f64,
    ) -> Vec<crate::alert::Alert> {
        use crate::alert::AlertState;
        let mut out = Vec::new();
        let names: BTreeSet<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        let mut gone = Vec::new();
        for (name, ep) in self.open.iter_mut() {
            if names.contains(name.as_str()) {
                ep.missing_since = None;
                continue;
            }
            let since = *ep.missing_since.get_or_insert(now);
            if now.secs_since(since) >= clear_secs {
                gone.push(name.clone());
            }
        }
        for name in gone {
            if let Some(mut ep) = self.open.remove(&name) {
                ep.seq += 1;
                let lines: Vec<IpAddr> = ep.lines.iter().copied().collect();
                out.push(site_alert(
                    &name,
                    &ep,
                    AlertState::Cleared,
                    &lines,
                    &[],
                    verdicts,
                    now,
                ));
            }
        }
        for s in sites {
            let members: BTreeSet<IpAddr> = s.lines.iter().copied().collect();
            let state = match self.open.get_mut(&s.name) {
                Some(ep) if ep.lines == members => continue,
                Some(ep) => {
                    ep.seq += 1;
                    ep.lines = members;
                    AlertState::Updated
                }
                None => {
                    let id = {
                        use sha2::{Digest, Sha256};
                        let mut h = Sha256::new();
                        h.update(b"site|");
                        h.update(s.name.as_bytes());
                        h.update(now.micros().to_be_bytes());
                        format!("sbx-{}", hex::encode(h.finalize().get(..8).unwrap_or(&[])))
                    };
                    self.open.insert(
                        s.name.clone(),
                        SiteEpisode {
                            id,
                            seq: 0,
                            first_seen: now,
                            lines: members,
                            peer: s.peer,
                            missing_since: None,
                        },
                    );
                    AlertState::Raised
                }
            };
            if let Some(ep) = self.open.get(&s.name) {
                out.push(site_alert(
                    &s.name, ep, state, &s.lines, &s.sensors, verdicts, now,
                ));
            }
        }
        out
    }
}

fn site_alert(
    name: &str,
    ep: &SiteEpisode,
    state: crate::alert::AlertState,
    lines: &[IpAddr],
    sensors: &[String],
    verdicts: &BTreeMap<IpAddr, LineVerdict>,
    now: Timestamp,
) -> crate::alert::Alert {
    use crate::alert::{Alert, AlertKind, Severity};
    let members: Vec<&LineVerdict> = lines.iter().filter_map(|l| verdicts.get(l)).collect();
    let verdict = members
        .iter()
        .map(|v| v.verdict)
        .max()
        .unwrap_or(VerdictLevel::Suspect)
        .max(VerdictLevel::Suspect);
    let score = members.iter().map(|v| v.score).fold(0.0, f64::max);
    let mut reasons = vec![Reason {
        signal: "site".into(),
        value: lines.len() as f64,
        strength: 1.0,
        detail: format!(
            "{} lines taking traffic from {} with the same rhythm, seen by sensors {}",
            lines.len(),
            ep.peer,
            if sensors.is_empty() {
                "-".to_string()
            } else {
                sensors.join(", ")
            }
        ),
    }];
    for v in &members {
        reasons.push(Reason {
            signal: "site_line".into(),
            value: v.score,
            strength: v.score,
            detail: format!(
                "{} {} {:.2}",
                v.line,
                crate::alert::verdict_str(v.verdict),
                v.score
            ),
        });
    }
    Alert {
        idempotency_key: format!("{}:{}", ep.id, ep.seq),
        id: ep.id.clone(),
        seq: ep.seq,
        state,
        severity: Severity::of(verdict),
        line: ep.peer,
        peer: Some(ep.peer),
        site: Some(name.to_string()),
        verdict,
        score,
        reasons,
        first_seen: ep.first_seen,
        last_seen: now,
        flagged_at: members.iter().filter_map(|v| v.flagged_at).min(),
        created: now,
        kind: AlertKind::Site,
        threat: None,
        lines: lines.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simboxd_core::config::NetworkConfig;
    use simboxd_core::detect::synth::{self, GatewaySpec};
    use simboxd_core::detect::LineTable;
    use simboxd_core::model::Event;

    fn cfg(site_min_lines: usize) -> DetectionConfig {
        DetectionConfig {
            site_min_lines,
            ..DetectionConfig::default()
        }
    }

    fn ts(e: &Event) -> Timestamp {
        match e {
            Event::CallStarted { ts, .. }
            | Event::CallAnswered { ts, .. }
            | Event::MediaStarted { ts, .. } => *ts,
            Event::CallEnded(r) => r.end.unwrap_or(r.start),
            Event::Registration(r) => r.time,
            Event::MediaEnded(r) => r.last,
            Event::Probe(p) => p.time,
        }
    }

    /// What one sensor publishes after seeing `events` (a line table as the engine runs it).
    fn sensor(mut events: Vec<Event>, c: &DetectionConfig) -> Vec<LineEvidence> {
        events.sort_by_key(ts);
        let net = NetworkConfig {
            domestic: vec![synth::DOMESTIC.parse().unwrap()],
            ..Default::default()
        };
        let mut t = LineTable::new(c, &net);
        let mut last = Timestamp::default();
        for e in &events {
            let now = ts(e);
            if now.secs_since(last) >= 5.0 {
                t.evaluate(now);
                last = now;
            }
            t.on_event(e);
        }
        t.evaluate(last);
        t.evidence_since(Timestamp::default(), 1000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_site_split_over_two_sensors_forms_only_centrally() {
        let c = cfg(3);
        let g = GatewaySpec {
            channels: 4,
            ..Default::default()
        };
        let lines = ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"];
        let events = |ls: &[&str]| -> Vec<Event> {
            ls.iter()
                .enumerate()
                .flat_map(|(i, l)| synth::gateway(ip(l), 40 + i as u64, 0.0, 1800.0, &g))
                .collect()
        };
        let a = sensor(events(&lines[..2]), &c);
        let b = sensor(events(&lines[2..]), &c);
        assert!(
            a.iter().chain(&b).all(|e| e.site.is_none()),
            "no site per sensor"
        );
        let mut k = Correlator::default();
        for e in a {
            assert!(k.on_evidence("tap-a", e, 100));
        }
        for e in b {
            k.on_evidence("tap-b", e, 100);
        }
        let (verdicts, sites) = k.evaluate(&c);
        assert_eq!(sites.len(), 1, "{sites:?}");
        let s = &sites[0];
        assert_eq!(s.lines.len(), 4);
        assert_eq!(s.sensors, vec!["tap-a".to_string(), "tap-b".to_string()]);
        for l in lines {
            let v = &verdicts[&ip(l)];
            assert_eq!(v.site.as_deref(), Some(s.name.as_str()));
            assert!(v.reasons.iter().any(|r| r.signal == "site"));
        }
        // Site alerts: raised once, nothing on a repeat, cleared when the site dissolves.
        let mut sa = SiteAlerts::default();
        let now = Timestamp(1);
        let raised = sa.update(&sites, &verdicts, now, SITE_CLEAR_SECS);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, crate::alert::AlertKind::Site);
        assert_eq!(raised[0].lines.len(), 4);
        assert!(sa
            .update(&sites, &verdicts, now, SITE_CLEAR_SECS)
            .is_empty());
        // Dissolved for a moment: nothing; back within SITE_CLEAR_SECS: the same episode.
        assert!(sa.update(&[], &verdicts, now, SITE_CLEAR_SECS).is_empty());
        let later = now.plus_secs(SITE_CLEAR_SECS / 2.0);
        assert!(sa
            .update(&sites, &verdicts, later, SITE_CLEAR_SECS)
            .is_empty());
        assert!(sa.update(&[], &verdicts, later, SITE_CLEAR_SECS).is_empty());
        let cleared = sa.update(
            &[],
            &verdicts,
            later.plus_secs(SITE_CLEAR_SECS),
            SITE_CLEAR_SECS,
        );
        assert_eq!(cleared[0].state, crate::alert::AlertState::Cleared);
        assert_eq!(cleared[0].id, raised[0].id);
    }

    #[test]
    fn re_evaluating_what_changed_gives_what_evaluating_everything_gives() {
        use simboxd_core::detect::Rhythm;
        let c = cfg(3);
        let g = GatewaySpec {
            channels: 4,
            ..Default::default()
        };
        let tpl = sensor(synth::gateway(ip("10.9.0.1"), 40, 0.0, 1800.0, &g), &c).remove(0);
        let t0 = tpl.updated;
        let mut k = Correlator::default();
        let mut verdicts: BTreeMap<IpAddr, LineVerdict> = BTreeMap::new();
        let mut sites_seen = 0;
        // A fixed pseudo-random walk: lines move between two peers and two rhythms, lose and
        // regain their own evidence, come from two sensors; a small max_lines evicts and
        // expiry drops views.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..400u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut e = tpl.clone();
            e.line = IpAddr::from([10, 9, 0, (x % 14) as u8]);
            e.peer = Some(IpAddr::from([203, 0, 113, 1 + ((x >> 8) % 2) as u8]));
            e.rhythm = Some(Rhythm {
                median: if (x >> 12) % 4 == 0 { 400.0 } else { 40.0 },
                asr: 0.5,
            });
            if (x >> 16) % 5 == 0 {
                e.reasons.clear();
                e.base_score = 0.0;
            }
            e.updated = t0.plus_secs(f64::from(step) * 10.0);
            let sensor = if (x >> 20) % 2 == 0 { "tap-a" } else { "tap-b" };
            k.on_evidence(sensor, e, 12);
            if step % 11 == 0 {
                k.expire(t0.plus_secs(f64::from(step) * 10.0), 600);
            }
            if step % 3 == 0 {
                let ch = k.evaluate_changed(&c);
                for ip in ch.removed {
                    verdicts.remove(&ip);
                }
                for v in ch.verdicts {
                    verdicts.insert(v.line, v);
                }
                let (full, sites) = k.evaluate(&c);
                assert_eq!(
                    verdicts.keys().collect::<Vec<_>>(),
                    full.keys().collect::<Vec<_>>(),
                    "step {step}"
                );
                for (ip, v) in &full {
                    assert_eq!(verdicts.get(ip), Some(v), "step {step}, line {ip}");
                }
                assert_eq!(k.sites(), sites, "step {step}");
                sites_seen += sites.len();
            }
        }
        assert!(k.evictions > 0);
        assert!(sites_seen > 0, "the walk formed sites");
        // A copy as loaded from the state file (no indexes) evaluates alike.
        let mut loaded = Correlator {
            lines: k.lines.clone(),
            ..Default::default()
        };
        let all: BTreeMap<IpAddr, LineVerdict> = loaded
            .evaluate_changed(&c)
            .verdicts
            .into_iter()
            .map(|v| (v.line, v))
            .collect();
        assert_eq!(all, k.evaluate(&c).0);
        assert_eq!(loaded.sites(), k.sites());
    }

    #[test]
    fn a_line_seen_twice_takes_the_strongest_view_and_older_evidence_is_ignored() {
        let c = cfg(2);
        let g = GatewaySpec::default();
        let all = synth::gateway(ip("10.9.1.1"), 7, 0.0, 1800.0, &g);
        // One tap sees only the first 5 minutes of the line, the other all of it.
        let early: Vec<Event> = all
            .iter()
            .filter(|e| ts(e).secs_since(Timestamp::default()) < synth::T0 + 300.0)
            .cloned()
            .collect();
        let weak = sensor(early, &c).remove(0);
        let strong = sensor(all, &c).remove(0);
        let mut k = Correlator::default();
        k.on_evidence("tap-a", weak.clone(), 10);
        k.on_evidence("tap-b", strong.clone(), 10);
        let (v, _) = k.evaluate(&c);
        let merged = &v[&ip("10.9.1.1")];
        assert!(merged.score >= weak.score.max(strong.score) - 1e-9);
        assert_eq!(merged.verdict, strong.verdict.max(weak.verdict));
        for r in &merged.reasons {
            let best = weak
                .reasons
                .iter()
                .chain(&strong.reasons)
                .filter(|x| x.signal == r.signal)
                .map(|x| x.strength)
                .fold(0.0, f64::max);
            assert!((r.strength - best).abs() < 1e-9, "{}", r.signal);
        }
        // A redelivered older evaluation changes nothing.
        let mut older = strong.clone();
        older.updated = Timestamp(strong.updated.micros() - 1);
        assert!(!k.on_evidence("tap-b", older, 10));
    }
}
