//! The engine as the live view sees it: `Engine` (the same as `analyze` and the daemon) plus the
//! small bounded per-line state the screens need and detection does not keep (calls in
//! progress, the latest calls with their SIP ladders, registrations, a concurrency history).
//!
//! Contract: no clock, no thread, no I/O; packet time only, like the engine. Every table has a
//! cap (constants here and in `view`) and what does not fit is counted. Numbers leave through
//! the `[privacy]` pseudonymizer. `snapshot` is what the UI draws; `report_inputs` what a
//! report of everything seen so far is built from.

use super::threats::{EngineThreats, ThreatFeed};
use super::view::{
    CallRow, Drops, FlowMessage, LineDetail, LineRow, RegRow, RunState, Snapshot, CALLS_PER_LINE,
    MAX_ROWS, MESSAGES_PER_CALL, SPARK_SAMPLES,
};
use crate::config::Config;
use crate::figures::{LineTally, Span};
use crate::privacy::Pseudonymizer;
use simboxd_core::decode::Decoder;
use simboxd_core::engine::{Engine, EngineStats};
use simboxd_core::model::{
    CallRecord, Direction, Event, LineVerdict, MediaFlowRecord, Participation, RawPacket,
    RegistrationRecord, Timestamp, VerdictLevel, VOICE_MIN_PACKETS,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Lines with per-line view state; beyond it the line idle longest goes (counted).
pub const MAX_LINES: usize = 4096;
/// Calls in progress followed per line.
pub const MAX_OPEN_PER_LINE: usize = 256;
/// Call starts kept per line for the 5-minute / hour counts (beyond: a lower bound).
pub const MAX_STARTS_PER_LINE: usize = 20_000;
/// Registrations and user agents kept per line.
pub const REGS_PER_LINE: usize = 20;
pub const AGENTS_PER_LINE: usize = 16;
/// Calls whose SIP ladder is kept (the latest ones).
pub const MAX_FLOW_CALLS: usize = 512;
/// Records kept for the report, per kind; beyond, counted.
pub const MAX_REPORT_RECORDS: usize = 100_000;
/// Packet-time seconds per sparkline bar.
pub const SAMPLE_SECS: f64 = 1.0;
/// Ended calls kept per line for the sparkline (those of its window).
pub const MAX_SPANS_PER_LINE: usize = 4096;
/// Longest Call-ID kept (longer ones are cut: they only key the ladder).
const MAX_CALL_ID: usize = 128;

#[derive(Clone, Debug)]
struct OpenCall {
    call_id: String,
    start: Timestamp,
    direction: Direction,
    peer: Option<SocketAddr>,
}

#[derive(Default)]
struct LineState {
    tally: LineTally,
    open: Vec<OpenCall>,
    starts: VecDeque<Timestamp>,
    calls: VecDeque<CallRow>,
    regs: VecDeque<RegRow>,
    agents: BTreeMap<String, u64>,
    /// Ended calls that may still show on the concurrency sparkline (its window).
    spans: VecDeque<Span>,
    /// Media flows of the line, and voice-like ones no SIP call announced.
    media_flows: u64,
    voice_without_sip: u64,
    last: Timestamp,
}

impl LineState {
    /// Calls in progress; after the end of a replay, the calls still open when it ended.
    fn calls_now(&self) -> u64 {
        (self.open.len() + self.spans.iter().filter(|x| x.end.is_none()).count()) as u64
    }

    fn count_since(&self, since: Timestamp) -> u64 {
        self.starts
            .iter()
            .rev()
            .take_while(|t| **t >= since)
            .count() as u64
    }

    fn agent(&mut self, ua: Option<&str>) {
        let Some(ua) = ua.filter(|u| !u.is_empty()) else {
            return;
        };
        let ua: String = ua.chars().take(80).collect();
        if let Some(n) = self.agents.get_mut(&ua) {
            *n += 1;
        } else if self.agents.len() < AGENTS_PER_LINE {
            self.agents.insert(ua, 1);
        }
    }
}

/// Records kept for the report.
#[derive(Default)]
struct Records {
    calls: Vec<CallRecord>,
    regs: Vec<RegistrationRecord>,
    media: Vec<MediaFlowRecord>,
    dropped: u64,
}

fn keep<T>(v: &mut Vec<T>, x: T, dropped: &mut u64) {
    if v.len() < MAX_REPORT_RECORDS {
        v.push(x);
    } else {
        *dropped += 1;
    }
}

/// What a report of everything seen so far is built from (moved to a writer thread).
pub struct ReportInputs {
    pub stats: EngineStats,
    pub records: (
        Vec<CallRecord>,
        Vec<RegistrationRecord>,
        Vec<MediaFlowRecord>,
        u64,
    ),
    pub verdicts: Vec<LineVerdict>,
}

pub struct WatchEngine {
    engine: Engine,
    /// A second decoder for the ladders: the engine does not hand out SIP messages.
    sip_decoder: Decoder,
    sip_limits: simboxd_core::sip::Limits,
    privacy: Pseudonymizer,
    lines: HashMap<IpAddr, LineState>,
    line_evictions: u64,
    flows: HashMap<String, Vec<FlowMessage>>,
    flow_order: VecDeque<String>,
    records: Records,
    threats: Box<dyn ThreatFeed>,
    next_sample: Option<Timestamp>,
    now: Timestamp,
}

impl WatchEngine {
    pub fn new(cfg: &Config) -> anyhow::Result<WatchEngine> {
        let privacy = Pseudonymizer::from_config(&cfg.privacy)
            .map_err(|e| anyhow::anyhow!("[privacy]: {e}"))?;
        Ok(WatchEngine {
            engine: Engine::new(&cfg.engine()),
            sip_decoder: Decoder::new(&cfg.limits),
            sip_limits: (&cfg.limits).into(),
            privacy,
            lines: HashMap::new(),
            line_evictions: 0,
            flows: HashMap::new(),
            flow_order: VecDeque::new(),
            records: Records::default(),
            threats: Box::new(EngineThreats),
            next_sample: None,
            now: Timestamp::default(),
        })
    }

    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Records not kept for the report, and lines whose view state was evicted.
    pub fn dropped(&self) -> u64 {
        self.records.dropped + self.line_evictions
    }

    /// Runs one packet through the engine and the ladder decoder.
    pub fn process(&mut self, pkt: &RawPacket<'_>) {
        self.now = self.now.max(pkt.ts);
        self.engine.process(pkt);
        self.ladder(pkt);
        self.drain();
        self.sample();
    }

    /// Expires idle state as of `now` (a quiet live capture).
    pub fn tick(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.engine.tick(self.now);
        self.sip_decoder.expire(self.now);
        self.drain();
        self.sample();
    }

    /// End of a replayed file: every open call is closed and lines are scored once more.
    pub fn finish(&mut self) {
        self.engine.finish();
        self.drain();
    }

    fn ladder(&mut self, pkt: &RawPacket<'_>) {
        let flows = &mut self.flows;
        let order = &mut self.flow_order;
        let limits = &self.sip_limits;
        self.sip_decoder.decode(pkt, &mut |d| {
            if !simboxd_core::sip::looks_like_sip(d.payload) {
                return;
            }
            let Ok(m) = simboxd_core::sip::parse_lenient(d.payload, limits) else {
                return;
            };
            let Some(call_id) = m.call_id() else { return };
            let call_id: String = call_id.chars().take(MAX_CALL_ID).collect();
            let label = match m.start {
                simboxd_core::sip::StartLine::Request { method, .. } => method.as_str().to_string(),
                simboxd_core::sip::StartLine::Response { code, reason } => {
                    format!("{code} {}", reason.chars().take(24).collect::<String>())
                }
            };
            let is_invite = m.is_request() && label == "INVITE";
            let in_dialog = m
                .cseq()
                .map(|(_, meth)| {
                    matches!(
                        meth.as_str(),
                        "INVITE" | "ACK" | "BYE" | "CANCEL" | "PRACK" | "UPDATE" | "INFO"
                    )
                })
                .unwrap_or(false);
            if !in_dialog {
                return;
            }
            let msg = FlowMessage {
                ts: d.ts,
                src: d.src,
                dst: d.dst,
                label,
                sdp: !m.body.is_empty()
                    && m.header("Content-Type")
                        .is_some_and(|c| c.to_ascii_lowercase().contains("sdp")),
            };
            if let Some(v) = flows.get_mut(&call_id) {
                if v.len() < MESSAGES_PER_CALL {
                    v.push(msg);
                }
            } else if is_invite {
                if order.len() >= MAX_FLOW_CALLS {
                    if let Some(old) = order.pop_front() {
                        flows.remove(&old);
                    }
                }
                order.push_back(call_id.clone());
                flows.insert(call_id, vec![msg]);
            }
        });
    }

    fn line(&mut self, ip: IpAddr) -> &mut LineState {
        if !self.lines.contains_key(&ip) && self.lines.len() >= MAX_LINES {
            let idle = self
                .lines
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(ip, _)| *ip);
            if let Some(old) = idle {
                self.lines.remove(&old);
                self.line_evictions += 1;
            }
        }
        let now = self.now;
        let s = self.lines.entry(ip).or_default();
        s.last = s.last.max(now);
        s
    }

    fn drain(&mut self) {
        let events: Vec<Event> = self.engine.drain_events().collect();
        for ev in events {
            match ev {
                Event::CallStarted {
                    call_id,
                    line: Some(line),
                    direction,
                    peer,
                    ts,
                } => {
                    let s = self.line(line);
                    s.tally.call_started(&call_id, ts);
                    if s.starts.len() >= MAX_STARTS_PER_LINE {
                        s.starts.pop_front();
                    }
                    s.starts.push_back(ts);
                    if s.open.len() < MAX_OPEN_PER_LINE
                        && !s.open.iter().any(|o| o.call_id == call_id)
                    {
                        s.open.push(OpenCall {
                            call_id: call_id.chars().take(MAX_CALL_ID).collect(),
                            start: ts,
                            direction,
                            peer,
                        });
                    }
                }
                Event::CallEnded(c) => self.call_ended(*c),
                Event::Registration(r) => {
                    if let Some(line) = r.line {
                        let row = RegRow {
                            time: r.time,
                            account: self.privacy.uri(&r.account),
                            registrar: r.registrar,
                            outcome: format!("{:?}", r.outcome).to_lowercase(),
                            expires: r.expires,
                            user_agent: r.user_agent.clone(),
                        };
                        let s = self.line(line);
                        s.agent(r.user_agent.as_deref());
                        if s.regs.len() >= REGS_PER_LINE {
                            s.regs.pop_back();
                        }
                        s.regs.push_front(row);
                    }
                    keep(&mut self.records.regs, *r, &mut self.records.dropped);
                }
                Event::MediaEnded(m) => {
                    if let Some(line) = m.line {
                        let s = self.line(line);
                        s.media_flows += 1;
                        if m.call_id.is_none() && m.voice_like {
                            s.voice_without_sip += 1;
                        }
                    }
                    keep(&mut self.records.media, *m, &mut self.records.dropped);
                }
                _ => {}
            }
        }
    }

    fn call_ended(&mut self, c: CallRecord) {
        if let Some(line) = c.line {
            let row = self.call_row(&c);
            let now = self.now.max(c.end.unwrap_or(c.start));
            let s = self.line(line);
            s.tally.call_ended(&c, now);
            s.agent(c.user_agent.as_deref());
            s.agent(c.server.as_deref());
            s.open.retain(|o| !c.call_id.starts_with(&o.call_id));
            if s.spans.len() >= MAX_SPANS_PER_LINE {
                s.spans.pop_front();
            }
            s.spans.push_back(Span {
                start: c.start,
                end: c.end,
            });
            if s.calls.len() >= CALLS_PER_LINE {
                s.calls.pop_back();
            }
            s.calls.push_front(row);
        }
        keep(&mut self.records.calls, c, &mut self.records.dropped);
    }

    fn call_row(&self, c: &CallRecord) -> CallRow {
        let (out, inn) = c.line_voice_packets();
        let two_way = match c.direction {
            Direction::Inbound => c.participation == Participation::TwoWayVoice,
            _ => out >= VOICE_MIN_PACKETS && inn >= VOICE_MIN_PACKETS,
        };
        // Talk time when answered, else the time to the final answer; a call closed at the
        // end of the capture lasts until then.
        let end = c.end.unwrap_or(self.now);
        let duration = Some(end.secs_since(c.answer.unwrap_or(c.start)).max(0.0));
        CallRow {
            call_id: c.call_id.chars().take(MAX_CALL_ID).collect(),
            start: c.start,
            direction: c.direction,
            peer: c.peer,
            number: c
                .to
                .as_deref()
                .or(c.request_uri.as_deref())
                .map(|n| self.privacy.number(n)),
            outcome: Some(c.outcome),
            duration_secs: duration,
            codec: c.codec.clone(),
            two_way_voice: Some(two_way),
            user_agent: c.user_agent.clone(),
            flow: Vec::new(),
        }
    }

    /// Forgets call starts older than an hour and spans older than the sparkline's window,
    /// every `SAMPLE_SECS` of packet time.
    fn sample(&mut self) {
        let next = *self.next_sample.get_or_insert(self.now);
        if self.now < next {
            return;
        }
        let hour_ago = self.now.plus_secs(-3600.0);
        let window = self.now.plus_secs(-(SPARK_SAMPLES as f64) * SAMPLE_SECS);
        for s in self.lines.values_mut() {
            while s.starts.front().is_some_and(|t| *t < hour_ago) {
                s.starts.pop_front();
            }
            s.spans.retain(|x| x.end.is_none_or(|e| e >= window));
        }
        self.next_sample = Some(self.now.plus_secs(SAMPLE_SECS));
    }

    /// Calls in progress per `SAMPLE_SECS` bar (the most at any instant of the bar) over the
    /// sparkline's window up to now, with `figures`' definition of concurrency.
    fn concurrency_bars(&self, s: &LineState) -> Vec<u64> {
        let mut spans: Vec<Span> = s.spans.iter().copied().collect();
        spans.extend(s.open.iter().map(|o| Span {
            start: o.start,
            end: None,
        }));
        let Some(first) = spans.iter().map(|x| x.start).min() else {
            return Vec::new();
        };
        let window = self.now.plus_secs(-(SPARK_SAMPLES as f64) * SAMPLE_SECS);
        let from = first.max(window);
        let to = self.now.max(from);
        let steps = crate::figures::concurrency_steps(&spans, from, to);
        bars(&steps, from, to, SAMPLE_SECS)
    }

    /// The report's caveat for a line that carried media but no readable call (its verdict
    /// cannot rest on signalling), with the same rule (`report::unreadable_caveat`).
    fn caveat(&self, s: Option<&LineState>, v: Option<&LineVerdict>) -> Option<String> {
        let s = s?;
        let entry = crate::analyze::LineEntry {
            verdict: v.map(|v| v.verdict),
            calls: s.tally.figures(self.now).calls + s.open.len() as u64,
            media_flows: s.media_flows,
            voice_flows_without_sip: s.voice_without_sip,
            ..Default::default()
        };
        crate::report::unreadable_caveat(&entry)
    }

    /// The lines screen's rows, the detail of `focus` and the threats, over `base` (source,
    /// state and counters filled by the caller).
    pub fn snapshot(&self, focus: Option<IpAddr>, base: Snapshot) -> Snapshot {
        let verdicts = self.engine.lines().verdicts();
        let by_line: HashMap<IpAddr, &LineVerdict> = verdicts.iter().map(|v| (v.line, v)).collect();
        let mut ips: Vec<IpAddr> = verdicts.iter().map(|v| v.line).collect();
        let mut unscored: Vec<IpAddr> = self
            .lines
            .keys()
            .filter(|ip| !by_line.contains_key(ip))
            .copied()
            .collect();
        unscored.sort_unstable();
        ips.extend(unscored);
        let lines_total = ips.len();
        // Rows only for the lines shown: verdicts come most severe first.
        let mut rows: Vec<LineRow> = ips
            .iter()
            .take(MAX_ROWS)
            .map(|ip| self.row(*ip, by_line.get(ip)))
            .collect();
        rows.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then(b.score.total_cmp(&a.score))
                .then(a.line.cmp(&b.line))
        });
        let detail = focus.map(|ip| self.detail(ip, by_line.get(&ip).copied(), &verdicts));
        let mut drops = base.drops.clone();
        drops.records = self.dropped();
        Snapshot {
            clock: (self.now != Timestamp::default()).then_some(self.now),
            lines_total,
            lines: rows,
            detail,
            threats: self.threats.threats(&self.engine),
            pseudonymized: self.privacy.enabled(),
            drops,
            ..base
        }
    }

    fn row(&self, ip: IpAddr, v: Option<&&LineVerdict>) -> LineRow {
        let s = self.lines.get(&ip);
        let summary = self.engine.lines().line_summary(ip);
        let figures = s.map(|s| s.tally.figures(self.now));
        let top_peer = summary.as_ref().and_then(|p| {
            p.peers
                .iter()
                .max_by_key(|x| {
                    u32::from(x.calls_in) + u32::from(x.calls_out) + u32::from(x.opaque_flows)
                })
                .map(|x| x.peer)
        });
        LineRow {
            line: ip,
            verdict: v.map_or(VerdictLevel::Normal, |v| v.verdict),
            score: v.map_or(0.0, |v| v.score),
            calls_now: s.map_or(0, LineState::calls_now),
            max_concurrent: figures.as_ref().map_or(0, |f| f.max_concurrent_calls),
            calls_5min: Some(s.map_or(0, |s| s.count_since(self.now.plus_secs(-300.0)))),
            calls_hour: Some(s.map_or(0, |s| s.count_since(self.now.plus_secs(-3600.0)))),
            foreign_share: summary
                .as_ref()
                .filter(|p| p.calls_in > 0)
                .map(|p| f64::from(p.calls_in_foreign) / f64::from(p.calls_in)),
            distinct_numbers: figures.as_ref().map_or(0, |f| f.distinct_called_numbers),
            peers: summary.as_ref().map_or(0, |p| u64::from(p.peers_seen)),
            top_peer,
            site: v.and_then(|v| v.site.clone()),
            unassessed: self.caveat(s, v.copied()).is_some(),
        }
    }

    fn detail(&self, ip: IpAddr, v: Option<&LineVerdict>, all: &[LineVerdict]) -> LineDetail {
        let s = self.lines.get(&ip);
        let f = s.map(|s| s.tally.figures(self.now));
        let summary = self.engine.lines().line_summary(ip);
        let mut calls: Vec<CallRow> = Vec::new();
        if let Some(s) = s {
            let mut open: Vec<&OpenCall> = s.open.iter().collect();
            open.sort_by_key(|o| std::cmp::Reverse(o.start));
            for o in open {
                calls.push(CallRow {
                    call_id: o.call_id.clone(),
                    start: o.start,
                    direction: o.direction,
                    peer: o.peer,
                    number: None,
                    outcome: None,
                    duration_secs: Some(self.now.secs_since(o.start).max(0.0)),
                    codec: None,
                    two_way_voice: None,
                    user_agent: None,
                    flow: Vec::new(),
                });
            }
            calls.extend(s.calls.iter().cloned());
        }
        calls.truncate(CALLS_PER_LINE);
        for c in &mut calls {
            if let Some(flow) = self.flows.get(&c.call_id) {
                c.flow = flow.clone();
            }
        }
        let figures = match (&f, &summary) {
            (Some(f), _) => format!(
                "calls {} (in {} / out {}), answered {}, now {}, max concurrent {}, {} distinct called, median talk {}{}",
                f.calls,
                f.inbound_calls,
                f.outbound_calls,
                f.answered_calls,
                s.map_or(0, LineState::calls_now),
                f.max_concurrent_calls,
                f.distinct_called_numbers,
                f.median_talk_secs_inbound
                    .map_or_else(|| "-".to_string(), |m| format!("{m:.1} s")),
                summary
                    .as_ref()
                    .map_or(String::new(), |p| format!(", {} registrations, {} voice flows without SIP", p.registrations, p.voice_flows_opaque)),
            ),
            (None, Some(p)) => format!(
                "no call ended yet; {} registrations, {} voice flows without SIP, {} other flows",
                p.registrations, p.voice_flows_opaque, p.other_flows
            ),
            (None, None) => "no activity".to_string(),
        };
        let site = v.and_then(|v| v.site.clone());
        let site_members = match &site {
            Some(name) => all
                .iter()
                .filter(|o| o.line != ip && o.site.as_ref() == Some(name))
                .map(|o| o.line)
                .collect(),
            None => Vec::new(),
        };
        let mut agents: Vec<(String, u64)> = s
            .map(|s| s.agents.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        agents.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        LineDetail {
            line: ip,
            verdict: v.map_or(VerdictLevel::Normal, |v| v.verdict),
            score: v.map_or(0.0, |v| v.score),
            flagged_at: v.and_then(|v| v.flagged_at),
            site,
            reasons: v
                .map(|v| {
                    v.reasons
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.detail = self.privacy.text(&r.detail);
                            r
                        })
                        .collect()
                })
                .unwrap_or_default(),
            figures,
            concurrency: s.map(|s| self.concurrency_bars(s)).unwrap_or_default(),
            sample_secs: SAMPLE_SECS,
            calls,
            registrations: s
                .map(|s| s.regs.iter().cloned().collect())
                .unwrap_or_default(),
            registrations_seen: summary.as_ref().map_or(0, |p| u64::from(p.registrations)),
            accounts: summary.as_ref().map_or(0, |p| p.accounts_registered as u64),
            user_agents: agents,
            site_members,
            caveat: self.caveat(s, v),
        }
    }

    /// A copy of what the report needs (records kept so far, stats, verdicts).
    pub fn report_inputs(&self) -> ReportInputs {
        ReportInputs {
            stats: self.engine.stats(),
            records: (
                self.records.calls.clone(),
                self.records.regs.clone(),
                self.records.media.clone(),
                self.records.dropped,
            ),
            verdicts: self.engine.lines().verdicts(),
        }
    }

    /// A snapshot with the source facts left empty (tests, `replay_to_end`).
    pub fn snapshot_of(&self, source: &str, focus: Option<IpAddr>, state: RunState) -> Snapshot {
        let base = Snapshot {
            state,
            packets: self.engine.stats().packets,
            can_export: true,
            drops: Drops::default(),
            ..Snapshot::empty(source.to_string())
        };
        self.snapshot(focus, base)
    }
}

/// The most calls in progress in each `secs`-long bar from `from` to `to`, from a step function
/// (`figures::concurrency_steps`: each level holds until the next point, the last until `to`).
pub fn bars(steps: &[(Timestamp, u32)], from: Timestamp, to: Timestamp, secs: f64) -> Vec<u64> {
    let secs = if secs > 0.0 { secs } else { 1.0 };
    let n = ((to.secs_since(from) / secs).ceil().max(1.0) as usize).min(SPARK_SAMPLES);
    let mut out = vec![0u64; n];
    for (i, &(t, level)) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(to, |s| s.0);
        let a = (t.secs_since(from) / secs).floor().max(0.0) as usize;
        let b = ((end.secs_since(from) / secs).ceil().max(0.0) as usize)
            .max(a + 1)
            .min(n);
        for x in out.iter_mut().take(b).skip(a.min(n)) {
            *x = (*x).max(u64::from(level));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1000.0 + s)
    }

    #[test]
    fn bars_hold_the_peak_of_each_second() {
        let spans = [
            Span {
                start: t(0.0),
                end: Some(t(2.5)),
            },
            Span {
                start: t(1.2),
                end: Some(t(1.4)),
            },
            Span {
                start: t(2.5),
                end: None,
            },
        ];
        let steps = crate::figures::concurrency_steps(&spans, t(0.0), t(4.0));
        assert_eq!(bars(&steps, t(0.0), t(4.0), 1.0), vec![1, 2, 1, 1]);
        assert_eq!(bars(&[], t(0.0), t(0.0), 1.0), vec![0]);
    }
}
