//! The engine as one daemon worker sees it: `engine::Engine` (with its line table and
//! detection) plus a small bounded store of recent calls per line for the API.
//!
//! Contract: events are drained after every packet, so the engine's buffer stays small; they are
//! counted by kind and ended calls remembered per line. Phone numbers shown by the API pass
//! through the `[privacy]` pseudonymizer. The headline figures of a line the API shows (`figures`,
//! and `calls`/`max_concurrent_calls` of its verdicts and profile) come from
//! `figures::LineTally`, the definitions `analyze` uses, not from detection's windowed profile.
//! A worker joined to a `Correlator` hands its events to the shared threat table and exchanges
//! site candidates with the other workers after every packet (see `correlate`).

use super::correlate::Correlator;
use super::outputs::{LineDetail, LineListed, RecentCall, RingFigures, WorkerStats};
use super::pipeline::{PacketEngine, SavedChanges};
use crate::config::Config;
use crate::privacy::Pseudonymizer;
use simboxd_core::detect::{LineEntry, LineTable, TableCounters};
use simboxd_core::engine::Engine;
use simboxd_core::model::{CallRecord, Counters, Event, LineVerdict, RawPacket, Timestamp};
use simboxd_core::table::TimedTable;
use std::collections::VecDeque;
use std::net::IpAddr;

/// Recent calls kept per line for `/api/v1/lines/{addr}`.
pub const RECENT_CALLS_PER_LINE: usize = 20;
/// Lines whose recent calls are kept; beyond it the line whose last call is oldest goes.
pub const RECENT_CALL_LINES: usize = 4096;
/// Lines whose headline figures are tallied; beyond it the line idle longest goes (counted).
pub const TALLY_LINES: usize = 16384;

pub struct EngineWorker {
    engine: Engine,
    network: simboxd_core::config::NetworkConfig,
    privacy: Pseudonymizer,
    /// Events by kind (`call_started`, `call_ended`, ...).
    events: Counters,
    /// Latest calls per line; a full table drops the line whose last call is oldest (counted).
    recent: TimedTable<IpAddr, VecDeque<RecentCall>>,
    /// Headline figures per line; a full table drops the line idle longest (counted).
    tallies: TimedTable<IpAddr, crate::figures::LineTally>,
    /// Latest packet time seen.
    now: Timestamp,
    /// The correlator shared with the other workers, and this worker's index in it.
    corr: Option<(std::sync::Arc<Correlator>, usize)>,
    /// Candidate version last published and correlator generation last picked up.
    published_sites: u64,
    seen_sites: u64,
    /// Ended calls waiting for `[stream] publish_calls` (None when off); bounded, the oldest
    /// dropped and counted in `calls_unpublished`.
    calls_out: Option<VecDeque<CallRecord>>,
    calls_unpublished: u64,
    /// Pre-alert rings and the queue to the evidence writer (`[evidence] enabled`).
    evidence: Option<super::evidence::Tap>,
    /// Lines shed by the table when last looked, and the count at the start of the current
    /// shedding episode (`None`: not shedding), for one log line per episode.
    shed_seen: u64,
    shed_since: Option<u64>,
}

/// Call records held for the stream between two evidence intervals.
pub const STREAM_CALLS: usize = 65536;

impl EngineWorker {
    pub fn new(cfg: &Config, privacy: Pseudonymizer) -> Self {
        EngineWorker {
            engine: Engine::new(&cfg.engine()),
            network: cfg.network.clone(),
            privacy,
            events: Counters::default(),
            recent: TimedTable::new(RECENT_CALL_LINES),
            tallies: TimedTable::new(TALLY_LINES),
            now: Timestamp::default(),
            evidence: None,
            calls_out: (cfg.stream.url.is_some() && cfg.stream.publish_calls).then(VecDeque::new),
            calls_unpublished: 0,
            corr: None,
            published_sites: 0,
            seen_sites: 0,
            shed_seen: 0,
            shed_since: None,
        }
    }

    /// Logs a shedding episode of the line table once when it starts and once when a tick
    /// passes without a new line shed.
    fn log_shedding(&mut self) {
        let t = self.engine.lines();
        let shed = t.lines_shed();
        match (shed > self.shed_seen, self.shed_since) {
            (true, None) => {
                tracing::warn!(
                    lines = t.len(),
                    max_lines = t.config().max_lines,
                    new_lines_per_sec = t.config().new_lines_per_sec,
                    "shedding new lines: the line table is full of active lines or new lines                      come faster than [detection] new_lines_per_sec (known lines are still tracked)"
                );
                self.shed_since = Some(self.shed_seen);
            }
            (false, Some(from)) => {
                tracing::info!(shed = shed - from, "stopped shedding new lines");
                self.shed_since = None;
            }
            _ => {}
        }
        self.shed_seen = shed;
    }

    /// Joins this worker to the correlator shared by all workers, as worker `index`: threats
    /// are then tracked there, over every worker's events, and sites span every worker's lines.
    pub fn correlated(mut self, corr: std::sync::Arc<Correlator>, index: usize) -> Self {
        self.engine.track_threats_elsewhere();
        self.corr = Some((corr, index));
        self
    }

    /// Publishes this worker's site candidates when they changed and picks up the others'.
    fn sync_sites(&mut self) {
        let Some((corr, index)) = &self.corr else {
            return;
        };
        let version = self.engine.lines().candidates_version();
        if version != self.published_sites {
            self.published_sites = version;
            corr.publish_sites(*index, self.engine.lines().site_candidates());
        }
        let generation = corr.sites_generation();
        if generation != self.seen_sites {
            self.seen_sites = generation;
            let remote = corr.remote_sites(*index);
            self.engine.lines_mut().set_remote_candidates(remote);
        }
    }

    /// Keeps evidence rings for this worker's lines and hands recorded packets to `tap`'s writer.
    pub fn attach_evidence(&mut self, tap: super::evidence::Tap) {
        self.engine.keep_innermost();
        self.evidence = Some(tap);
    }

    fn drain(&mut self) {
        if !self.engine.has_events() {
            return;
        }
        let events: Vec<Event> = self.engine.drain_events().collect();
        if let Some((corr, _)) = &self.corr {
            corr.on_events(&events);
        }
        for ev in &events {
            let kind = match ev {
                Event::CallStarted { .. } => "call_started",
                Event::CallAnswered { .. } => "call_answered",
                Event::CallEnded(_) => "call_ended",
                Event::Registration(_) => "registration",
                Event::MediaStarted { .. } => "media_started",
                Event::MediaEnded(_) => "media_ended",
                Event::Probe(_) => "probe",
            };
            self.events.add(kind, 1);
            match ev {
                Event::CallStarted {
                    call_id,
                    line: Some(line),
                    ts,
                    ..
                } => {
                    if let Some(t) = self.tally(*line, *ts) {
                        t.call_started(call_id, *ts);
                    }
                }
                Event::CallEnded(c) => {
                    if let Some(line) = c.line {
                        let now = self.now.max(c.end.unwrap_or(c.start));
                        if let Some(t) = self.tally(line, now) {
                            t.call_ended(c, now);
                        }
                    }
                    self.remember_call(c);
                    self.queue_call(c);
                }
                _ => {}
            }
        }
    }

    /// The line's tally, made when new (a full table drops the line idle longest, in O(log n)).
    fn tally(&mut self, line: IpAddr, ts: Timestamp) -> Option<&mut crate::figures::LineTally> {
        self.tallies
            .touch_or_insert(line, ts, crate::figures::LineTally::new)
    }

    /// The line's headline figures now (zero calls when none was tallied).
    fn figures(&self, line: IpAddr) -> crate::figures::LiveFigures {
        self.tallies
            .get(&line)
            .map_or_else(crate::figures::LineTally::new, |t| t.clone())
            .figures(self.now)
    }

    /// A line as `/api/v1/lines` lists it: the verdict with its headline figures.
    fn list_entry(&self, v: LineVerdict) -> LineListed {
        LineListed {
            figures: self.figures(v.line),
            verdict: self.with_figures(v),
        }
    }

    /// A verdict with its headline figures from the tally (one definition everywhere).
    fn with_figures(&self, mut v: LineVerdict) -> LineVerdict {
        let f = self.figures(v.line);
        v.calls = f.calls;
        v.max_concurrent_calls = f.max_concurrent_calls;
        v
    }

    fn queue_call(&mut self, c: &CallRecord) {
        let Some(q) = self.calls_out.as_mut() else {
            return;
        };
        let mut c = c.clone();
        self.privacy.call(&mut c);
        if q.len() >= STREAM_CALLS {
            q.pop_front();
            self.calls_unpublished += 1;
        }
        q.push_back(c);
    }

    fn remember_call(&mut self, c: &CallRecord) {
        let Some(line) = c.line else { return };
        let p = &self.privacy;
        let summary = RecentCall {
            call_id: c.call_id.clone(),
            direction: c.direction,
            peer: c.peer,
            from: p.opt(&c.from),
            to: p.opt(&c.to),
            request_uri: c.request_uri.as_deref().map(|u| p.uri(u)),
            user_agent: c.user_agent.clone(),
            codec: c.codec.clone(),
            start: c.start,
            answer: c.answer,
            end: c.end,
            outcome: c.outcome,
            status_code: c.status_code,
            talk_secs: c.talk_secs(),
        };
        let last = c.end.unwrap_or(c.start);
        if let Some(ring) = self.recent.touch_or_insert(line, last, VecDeque::new) {
            if ring.len() >= RECENT_CALLS_PER_LINE {
                ring.pop_front();
            }
            ring.push_back(summary);
        }
    }
}

impl PacketEngine for EngineWorker {
    fn process(&mut self, pkt: &RawPacket<'_>) {
        self.now = self.now.max(pkt.ts);
        self.engine.process(pkt);
        self.drain();
        self.sync_sites();
        if let Some(t) = self.evidence.as_mut() {
            // The engine's own decode of the frame: no second walk over its headers.
            t.rings.on_decoded(pkt, self.engine.innermost());
        }
    }

    fn tick(&mut self, now: Timestamp) {
        self.engine.tick(now);
        self.drain();
        self.log_shedding();
        if let Some((corr, _)) = &self.corr {
            corr.expire(self.engine.now());
        }
        self.sync_sites();
    }

    fn finish(&mut self) {
        self.engine.finish();
        self.drain();
        self.log_shedding();
        self.sync_sites();
    }

    fn finish_gate(&self) -> Option<std::sync::Arc<Correlator>> {
        self.corr
            .as_ref()
            .filter(|(c, _)| c.workers() > 1)
            .map(|(c, _)| c.clone())
    }

    fn resync(&mut self) {
        self.sync_sites();
        self.engine.evaluate_now();
    }

    fn take_verdict_changes(&mut self) -> Vec<LineVerdict> {
        // Alerts state no headline counters (their episode logic reads detection's own).
        self.engine.take_verdict_changes()
    }

    fn stats(&self) -> WorkerStats {
        let mut engine = self.engine.stats();
        let t = &mut engine.tables;
        t.insert("recent_call_lines".into(), self.recent.len());
        t.insert("figure_lines".into(), self.tallies.len());
        if let Some(ev) = &self.evidence {
            t.insert("evidence_ring_lines".into(), ev.rings.lines());
            t.insert("evidence_ring_bytes".into(), ev.rings.bytes());
        }
        let e = &mut engine.evictions.0;
        e.insert("lines".into(), self.engine.lines().evictions());
        e.insert("recent_call_lines".into(), self.recent.evictions());
        e.insert("figure_lines".into(), self.tallies.evictions());
        e.insert("stream_calls".into(), self.calls_unpublished);
        if let Some(ev) = &self.evidence {
            e.insert("evidence_ring_lines".into(), ev.rings.line_evictions());
        }
        WorkerStats {
            engine,
            events: self.events.clone(),
            evidence_ring: self.evidence.as_ref().map(|ev| {
                let c = ev.rings.counters();
                RingFigures {
                    kept: c.kept,
                    media_sampled_out: c.media_sampled_out,
                    ring_overflow: c.ring_overflow,
                    recording_refused: c.recording_refused,
                }
            }),
            lines: self.engine.lines().counters(),
        }
    }

    fn line_listed(&self, addr: IpAddr) -> Option<LineListed> {
        Some(self.list_entry(self.engine.lines().verdict(addr)?))
    }

    fn line_keys(&self, from: usize, max: usize) -> (Vec<(u8, f64, IpAddr)>, Option<usize>) {
        let (keys, next) = self.engine.lines().verdict_keys(from, max);
        let keys = keys
            .into_iter()
            .map(|(level, score, ip)| (level as u8, score, ip))
            .collect();
        (keys, next)
    }

    fn track_changes(&mut self) {
        self.engine.lines_mut().track_changes();
    }

    fn take_changes(&mut self, max: usize) -> SavedChanges {
        let table = self.engine.lines_mut();
        let ch = table.take_changes(max);
        let more = ch.changed.len() == max;
        let mut lines = Vec::with_capacity(ch.changed.len());
        for ip in ch.changed {
            // A line changed and then removed is in `removed`.
            let Some(e) = table.entry(ip) else { continue };
            match postcard::to_stdvec(e) {
                Ok(bytes) => lines.push((ip, bytes)),
                Err(e) => tracing::warn!(line = %ip, error = %e, "line profile not encoded"),
            }
        }
        SavedChanges {
            lines,
            removed: ch.removed,
            resync: ch.resync,
            more,
        }
    }

    fn verdict_counts(&self) -> ([u64; 3], u64) {
        let t = self.engine.lines();
        (t.level_counts(), t.evictions())
    }

    fn mark_unsaved(&mut self, lines: &[IpAddr]) {
        self.engine.lines_mut().mark_unsaved_lines(lines);
    }

    fn unsaved_lines(&self) -> usize {
        self.engine.lines().unsaved_lines()
    }

    fn mark_all_unsaved(&mut self) {
        self.engine.lines_mut().mark_all_unsaved();
    }

    fn restore_line(&mut self, bytes: &[u8]) -> Result<(), String> {
        let e: LineEntry = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        self.engine.lines_mut().restore_entry(e);
        Ok(())
    }

    fn reserve_lines(&mut self, n: usize) {
        self.engine.lines_mut().reserve(n);
    }

    fn finish_restore(&mut self) {
        self.engine.lines_mut().sort_lru_by_activity();
    }

    fn counters(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.engine.lines().counters_state()).unwrap_or_default()
    }

    fn restore_counters(&mut self, bytes: &[u8]) {
        if let Ok(c) = postcard::from_bytes::<TableCounters>(bytes) {
            self.engine.lines_mut().restore_counters(c);
        }
    }

    fn line_detail(&self, addr: IpAddr) -> Option<LineDetail> {
        let lines = self.engine.lines();
        let mut profile = lines.line_summary(addr)?;
        let verdict = lines.verdict(addr).map(|v| self.with_figures(v));
        let recent_calls = self
            .recent
            .get(&addr)
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default();
        let figures = self.figures(addr);
        // The profile's own counters are detection's (windowed, sketched); the headline ones
        // shown beside them must not contradict `figures`.
        profile.calls = figures.calls;
        profile.max_concurrent_calls = figures.max_concurrent_calls;
        let cap = u64::from(profile.calls_in).min(figures.inbound_calls) as f64;
        profile.distinct_called_estimate = profile.distinct_called_estimate.min(cap);
        Some(LineDetail {
            line: addr,
            verdict,
            profile,
            figures,
            recent_calls,
        })
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.engine.lines()).ok()
    }

    fn restore_state(&mut self, state: serde_json::Value) -> Result<usize, String> {
        if state.is_null() {
            return Ok(0);
        }
        let t: LineTable = serde_json::from_value(state).map_err(|e| e.to_string())?;
        let counters = t.counters_state();
        // Into the running table (its config wins), oldest first so the LRU order holds.
        let table = self.engine.lines_mut();
        let mut n = 0;
        for e in t.into_entries() {
            table.restore_entry(e);
            n += 1;
        }
        table.restore_counters(counters);
        table.mark_all_unsaved();
        Ok(n)
    }

    fn threats(&self) -> Vec<simboxd_core::threats::Threat> {
        let mut all = self.engine.threats();
        for t in &mut all {
            self.privacy.threat(t);
        }
        all
    }

    fn take_threat_changes(&mut self) -> Vec<simboxd_core::threats::Threat> {
        // Pseudonymised by the alert side, like verdict reasons.
        self.engine.take_threat_changes()
    }

    fn evidence_since(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Vec<simboxd_core::detect::LineEvidence> {
        let mut all = self.engine.lines().evidence_since(since, limit);
        for e in &mut all {
            for r in &mut e.reasons {
                r.detail = self.privacy.text(&r.detail);
            }
        }
        all
    }

    fn take_calls(&mut self) -> Vec<CallRecord> {
        self.calls_out
            .as_mut()
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn evidence_start(&mut self, line: IpAddr, id: &str) -> bool {
        self.evidence.as_mut().is_some_and(|t| t.start(line, id))
    }

    fn evidence_stop(&mut self, line: IpAddr) {
        if let Some(t) = self.evidence.as_mut() {
            t.stop(line);
        }
    }

    fn evidence_flush(&mut self) {
        if let Some(t) = self.evidence.as_mut() {
            t.flush();
        }
    }

    fn reload(&mut self, cfg: &Config) {
        // Thresholds, weights and home/domestic nets apply at the next evaluation; the
        // evaluation period and the decode/calls limits stay until a restart.
        self.engine
            .lines_mut()
            .reconfigure(&cfg.detection, &cfg.network);
        match &self.corr {
            // The shared table is reloaded once, by the runtime.
            Some(_) => {}
            None => self
                .engine
                .threats_mut()
                .set_config(&cfg.threats, &cfg.network),
        }
        self.network = cfg.network.clone();
        if let Some(t) = self.evidence.as_mut() {
            t.rings.set_network(&cfg.network);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The edge's conversion: the runtime, the metrics and the stream sensor do the same.
    fn json<T: serde::Serialize>(x: T) -> serde_json::Value {
        serde_json::to_value(x).expect("serialises")
    }

    /// The JSON the API, `/metrics` and the stream get from one worker after the shipped site
    /// sample: line list entries, line details, engine figures and published calls.
    fn worker_json() -> serde_json::Value {
        let mut cfg = Config::default();
        cfg.stream.url = Some("nats://127.0.0.1:4222".into());
        cfg.stream.publish_calls = true;
        let privacy = Pseudonymizer::with_key(b"golden-key-golden-key-golden-key").expect("key");
        let mut w = EngineWorker::new(&cfg, privacy);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/sample-site.pcap");
        let mut cap = crate::capture::Capture::open_file(&path).expect("sample capture");
        while let Some(p) = cap.next_packet().expect("read") {
            w.process(&p);
        }
        w.finish();
        let lines: Vec<serde_json::Value> = w
            .engine
            .lines()
            .verdicts()
            .into_iter()
            .map(|v| json(w.list_entry(v)))
            .collect();
        let mut addrs: Vec<IpAddr> = lines
            .iter()
            .filter_map(|l| l.get("line")?.as_str()?.parse().ok())
            .collect();
        addrs.sort();
        let listed: Vec<_> = addrs.iter().map(|a| w.line_listed(*a).map(json)).collect();
        let details: Vec<_> = addrs
            .iter()
            .take(12)
            .map(|a| w.line_detail(*a).map(json))
            .collect();
        let calls: Vec<_> = w.take_calls().into_iter().take(25).map(json).collect();
        serde_json::json!({
            "lines": lines,
            "listed": listed,
            "details": details,
            "stats": json(w.stats()),
            "calls": calls,
        })
    }

    /// The engine's outputs are typed and turn into JSON at the edge; the bytes stay those the
    /// worker gave before (recorded in tests/data/worker_api.json from the JSON-returning code).
    #[test]
    fn worker_outputs_serialize_to_the_recorded_api_json() {
        let got = serde_json::to_string_pretty(&worker_json()).expect("json") + "\n";
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/worker_api.json");
        let want = std::fs::read_to_string(&file).expect("recorded output");
        if got != want {
            // Left for a diff against the recording.
            let out = std::env::temp_dir().join("worker_api.got.json");
            let _ = std::fs::write(&out, &got);
            panic!(
                "worker JSON differs from {} (this run's output: {})",
                file.display(),
                out.display()
            );
        }
    }
}
