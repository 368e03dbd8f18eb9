//! The headline figures of a line, defined once for every output built from records (text,
//! JSON `lines`, the report's tables and charts).
//!
//! Contract:
//! - **Concurrency** counts the line's calls (INVITE dialogs) in progress at one instant: a call
//!   occupies its channel from its first INVITE to its end (BYE, CANCEL or final failure); a call
//!   still open when the capture ends occupies it until the capture's last packet. A call that
//!   ends at the instant another starts does not overlap it (back-to-back calls on one channel).
//! - **Medians** are exact, over the recorded durations (never interpolated in a histogram).
//! - Figures here are counts over the records: exact. An estimate (a sketch's figure) is never
//!   printed as one of these; where the daemon shows one it is listed with its error
//!   (`LiveFigures::estimated`).

use serde::Serialize;
use simboxd_core::model::{
    CallRecord, Direction, Outcome, Participation, SipOnlyAnswers, Timestamp,
};

/// One call as concurrency sees it: start and end (`None`: still open at the end of the capture).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

/// The exact number of calls in progress over time: `(time, level)` at every change, first point
/// at `from` (level 0 before any call), so the level holds until the next point (a step function
/// carried forward). Calls are clipped to `[from, to]`; open calls last until `to`.
pub fn concurrency_steps(spans: &[Span], from: Timestamp, to: Timestamp) -> Vec<(Timestamp, u32)> {
    let mut edges: Vec<(Timestamp, i8)> = Vec::with_capacity(spans.len() * 2);
    for s in spans {
        let start = s.start.max(from);
        let end = s.end.unwrap_or(to).min(to).max(start);
        if end <= start && s.end.is_some() {
            // Zero-length call: occupies no time, never overlaps another.
            continue;
        }
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends (-1) sort before starts (+1) at the same instant.
    edges.sort();
    let mut out: Vec<(Timestamp, u32)> = Vec::with_capacity(edges.len() + 1);
    out.push((from, 0));
    let mut level: i64 = 0;
    let mut i = 0;
    while i < edges.len() {
        let t = edges[i].0;
        while i < edges.len() && edges[i].0 == t {
            level += i64::from(edges[i].1);
            i += 1;
        }
        let v = level.max(0) as u32;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            Some(last) if last.1 == v => {}
            _ => out.push((t, v)),
        }
    }
    out
}

/// The most calls in progress at once (see the module contract).
pub fn max_concurrent(spans: &[Span], capture_end: Option<Timestamp>) -> u32 {
    let Some(first) = spans.iter().map(|s| s.start).min() else {
        return 0;
    };
    let last = spans
        .iter()
        .filter_map(|s| s.end)
        .chain(capture_end)
        .chain(spans.iter().map(|s| s.start))
        .max()
        .unwrap_or(first);
    concurrency_steps(spans, first, last)
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or(0)
}

/// Exact median (mean of the two middle values for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(m)
}

/// Whether a call counts as inbound / outbound for the line (internal calls count as outbound;
/// transit calls as neither).
pub fn is_inbound(c: &CallRecord) -> bool {
    c.direction == Direction::Inbound
}

pub fn is_outbound(c: &CallRecord) -> bool {
    matches!(c.direction, Direction::Outbound | Direction::Internal)
}

/// The number an inbound call was for (To user, else Request-URI user).
pub fn called_number(c: &CallRecord) -> Option<&str> {
    if !is_inbound(c) {
        return None;
    }
    c.to.as_deref().or(c.request_uri.as_deref())
}

/// How an inbound call may count as one the line took part in (see
/// `simboxd_core::model::Participation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Voice both ways, or early media the line sent.
    Media,
    /// An answer without any media that `SipOnlyAnswers` counts (it lasted, and came as late
    /// as a relayed call's): the line's own only where the tap carries no media at all.
    SipOnly,
}

/// How inbound call `c` counts as taken, if at all (`None` for other directions). `now`: when
/// the record was reported (a call not ended then lasted until then; see `SipOnlyAnswers`).
pub fn taken_inbound(c: &CallRecord, sip_only: &SipOnlyAnswers, now: Timestamp) -> Option<Taken> {
    if !is_inbound(c) {
        return None;
    }
    match c.participation {
        Participation::TwoWayVoice | Participation::EarlyMedia => Some(Taken::Media),
        Participation::AnsweredNoMedia if sip_only.count(c, now) => Some(Taken::SipOnly),
        _ => None,
    }
}

/// An inbound call the line took part in, as detection counts it: `taken_inbound`, with a
/// SIP-only answer counted only where the tap carried no media at all (`tap_media` false).
pub fn is_taken_inbound(
    c: &CallRecord,
    tap_media: bool,
    sip_only: &SipOnlyAnswers,
    now: Timestamp,
) -> bool {
    match taken_inbound(c, sip_only, now) {
        Some(Taken::Media) => true,
        Some(Taken::SipOnly) => !tap_media,
        None => false,
    }
}

/// Talk time of an answered inbound call (what the median talk time is taken over).
pub fn inbound_talk_secs(c: &CallRecord) -> Option<f64> {
    (is_inbound(c) && c.outcome == Outcome::Answered)
        .then(|| c.talk_secs())
        .flatten()
}

/// Distinct items, exact up to `KMV_K`, then estimated from the K smallest hashes (a
/// k-minimum-values sketch, relative standard error about 1/sqrt(K-2)).
#[derive(Clone, Debug, Default)]
pub(crate) struct Kmv {
    /// The smallest hashes seen, ascending, at most `KMV_K` (a sorted vector: no allocation
    /// per node, and a line's few numbers cost a few words).
    smallest: Vec<u64>,
    overflowed: bool,
}

pub(crate) const KMV_K: usize = 256;

impl Kmv {
    pub(crate) fn add(&mut self, h: u64) {
        let Err(pos) = self.smallest.binary_search(&h) else {
            return;
        };
        if self.smallest.len() < KMV_K {
            self.smallest.insert(pos, h);
            return;
        }
        self.overflowed = true;
        if pos < self.smallest.len() {
            self.smallest.pop();
            self.smallest.insert(pos, h);
        }
    }

    /// `(value, exact)`.
    pub(crate) fn count(&self) -> (f64, bool) {
        if !self.overflowed {
            return (self.smallest.len() as f64, true);
        }
        let kth = self.smallest.last().copied().unwrap_or(u64::MAX).max(1);
        let frac = kth as f64 / u64::MAX as f64;
        (((KMV_K - 1) as f64) / frac, false)
    }
}

/// A key for telling a line's open calls apart by Call-ID: keyed per process (hostile Call-IDs
/// cannot be made to collide) and a fraction of `hash64`'s cost; never shown or kept.
fn call_key(call_id: &str) -> u64 {
    static KEYS: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    KEYS.get_or_init(ahash::RandomState::new).hash_one(call_id)
}

pub(crate) fn hash64(s: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// Calls open at once that a tally follows exactly; beyond it concurrency is a lower bound.
pub const TALLY_MAX_OPEN: usize = 256;
/// Ended calls held while an older call is still open (to finish counting their overlap).
pub const TALLY_MAX_PENDING: usize = 512;
/// Talk times kept for the median (beyond it, a sample chosen by call-id hash).
pub const TALLY_MAX_TALK: usize = 512;

/// The headline figures of one line kept from the events as they come (the daemon), with the
/// same definitions as the batch figures over records (`analyze`): exact while the line's
/// activity fits the bounds above, then marked as estimates (or, for concurrency, as a lower
/// bound) in `LiveFigures::estimated`.
#[derive(Clone, Debug)]
pub struct LineTally {
    calls: u64,
    inbound_calls: u64,
    outbound_calls: u64,
    answered_calls: u64,
    /// Calls started and not yet ended: (`call_key`, start).
    open: Vec<(u64, Timestamp)>,
    /// Ended calls whose overlap with still-open calls is not counted yet.
    pending: Vec<Span>,
    max_concurrent: u32,
    concurrency_exact: bool,
    called: Kmv,
    talk: Vec<(u64, f64)>,
    talk_seen: u64,
    pub last_event: Timestamp,
}

/// What the API and alerts show for a line; field names as in `analyze`'s `lines`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveFigures {
    pub calls: u64,
    pub inbound_calls: u64,
    pub outbound_calls: u64,
    pub answered_calls: u64,
    pub max_concurrent_calls: u32,
    pub open_calls: u64,
    pub distinct_called_numbers: u64,
    pub median_talk_secs_inbound: Option<f64>,
    /// Figures above that are estimates (name -> relative standard error), or lower bounds
    /// (`max_concurrent_calls` -> 0.0); absent names are exact counts.
    pub estimated: std::collections::BTreeMap<&'static str, f64>,
}

impl Default for LineTally {
    fn default() -> Self {
        LineTally {
            calls: 0,
            inbound_calls: 0,
            outbound_calls: 0,
            answered_calls: 0,
            open: Vec::new(),
            pending: Vec::new(),
            max_concurrent: 0,
            concurrency_exact: true,
            called: Kmv::default(),
            talk: Vec::new(),
            talk_seen: 0,
            last_event: Timestamp::default(),
        }
    }
}

impl LineTally {
    pub fn new() -> Self {
        Self::default()
    }

    /// First INVITE of a dialog on the line.
    pub fn call_started(&mut self, call_id: &str, ts: Timestamp) {
        self.last_event = self.last_event.max(ts);
        let key = call_key(call_id);
        if self.open.iter().any(|o| o.0 == key) {
            return;
        }
        if self.open.len() >= TALLY_MAX_OPEN {
            self.concurrency_exact = false;
            return;
        }
        self.open.push((key, ts));
    }

    /// A dialog ended (or was closed at the end of the capture, `end` = None); `now` is the
    /// latest packet time.
    pub fn call_ended(&mut self, c: &CallRecord, now: Timestamp) {
        self.call_ended_hashed(c, called_number(c).map(hash64), now);
    }

    /// `call_ended` with the called number's `hash64` already made (the caller needs it too).
    pub fn call_ended_hashed(&mut self, c: &CallRecord, number: Option<u64>, now: Timestamp) {
        self.last_event = self.last_event.max(now);
        self.calls += 1;
        if is_inbound(c) {
            self.inbound_calls += 1;
        } else if is_outbound(c) {
            self.outbound_calls += 1;
        }
        if c.outcome == Outcome::Answered {
            self.answered_calls += 1;
        }
        if let Some(h) = number {
            self.called.add(h);
        }
        if let Some(t) = inbound_talk_secs(c) {
            self.talk_seen += 1;
            // Which talk times are kept beyond the cap is part of the output: a stable hash.
            let h = hash64(&c.call_id);
            if self.talk.len() < TALLY_MAX_TALK {
                self.talk.push((h, t));
            } else if let Some(i) = self
                .talk
                .iter()
                .enumerate()
                .max_by_key(|(_, x)| x.0)
                .map(|(i, _)| i)
                .filter(|&i| self.talk[i].0 > h)
            {
                self.talk[i] = (h, t);
            }
        }
        let key = call_key(&c.call_id);
        if let Some(i) = self.open.iter().position(|o| o.0 == key) {
            self.open.swap_remove(i);
        }
        if self.pending.len() >= TALLY_MAX_PENDING {
            self.concurrency_exact = false;
            self.pending.remove(0);
        }
        self.pending.push(Span {
            start: c.start,
            end: c.end,
        });
        self.settle(now);
    }

    /// Counts the overlap of ended calls at every instant before the oldest open call started
    /// (all calls in progress then are known), and forgets the calls that cannot overlap later.
    fn settle(&mut self, now: Timestamp) {
        let horizon = self
            .open
            .iter()
            .map(|o| o.1)
            .min()
            .map_or(now, |m| m.min(now));
        let Some(from) = self.pending.iter().map(|s| s.start).min() else {
            return;
        };
        let to = now.max(from);
        for (t, level) in concurrency_steps(&self.pending, from, to) {
            if t < horizon {
                self.max_concurrent = self.max_concurrent.max(level);
            } else {
                break;
            }
        }
        // Instants at or after the horizon are counted once the calls open then have ended.
        self.pending
            .retain(|s| s.end.is_none_or(|e| e > horizon) || s.start >= horizon);
    }

    /// The figures as of `now` (open calls count as in progress until `now`).
    pub fn figures(&self, now: Timestamp) -> LiveFigures {
        let mut spans: Vec<Span> = self.pending.clone();
        spans.extend(self.open.iter().map(|o| Span {
            start: o.1,
            end: None,
        }));
        let max_now = max_concurrent(&spans, Some(now.max(self.last_event)));
        let mut estimated = std::collections::BTreeMap::new();
        let (distinct, exact) = self.called.count();
        if !exact {
            estimated.insert("distinct_called_numbers", 1.0 / ((KMV_K - 2) as f64).sqrt());
        }
        if !self.concurrency_exact {
            estimated.insert("max_concurrent_calls", 0.0);
        }
        if self.talk_seen > self.talk.len() as u64 {
            estimated.insert(
                "median_talk_secs_inbound",
                1.0 / (self.talk.len().max(1) as f64).sqrt(),
            );
        }
        let talk: Vec<f64> = self.talk.iter().map(|x| x.1).collect();
        LiveFigures {
            calls: self.calls,
            inbound_calls: self.inbound_calls,
            outbound_calls: self.outbound_calls,
            answered_calls: self.answered_calls,
            max_concurrent_calls: self.max_concurrent.max(max_now),
            open_calls: self.open.len() as u64,
            // An estimate of distinct numbers is never above the calls it counts them in.
            distinct_called_numbers: (distinct.round() as u64).min(self.inbound_calls),
            median_talk_secs_inbound: median(&talk),
            estimated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_000.0 + s)
    }

    fn span(a: f64, b: Option<f64>) -> Span {
        Span {
            start: t(a),
            end: b.map(t),
        }
    }

    #[test]
    fn back_to_back_calls_do_not_overlap() {
        let s = [span(0.0, Some(10.0)), span(10.0, Some(20.0))];
        assert_eq!(max_concurrent(&s, Some(t(30.0))), 1);
    }

    #[test]
    fn open_call_lasts_to_the_capture_end() {
        let s = [span(0.0, None), span(50.0, Some(60.0))];
        assert_eq!(max_concurrent(&s, Some(t(100.0))), 2);
        let steps = concurrency_steps(&s, t(0.0), t(100.0));
        assert_eq!(
            steps,
            vec![(t(0.0), 1), (t(50.0), 2), (t(60.0), 1), (t(100.0), 0)]
        );
    }

    #[test]
    fn steps_start_at_zero_and_merge_equal_levels() {
        let s = [span(5.0, Some(10.0)), span(10.0, Some(15.0))];
        let steps = concurrency_steps(&s, t(0.0), t(20.0));
        assert_eq!(steps, vec![(t(0.0), 0), (t(5.0), 1), (t(15.0), 0)]);
    }

    #[test]
    fn median_is_exact() {
        assert_eq!(median(&[10.2, 3.0, 75.0]), Some(10.2));
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    fn rec(id: u32, start: f64, end: Option<f64>, inbound: bool, answered: bool) -> CallRecord {
        let direction = if inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        CallRecord {
            to: Some(format!("1380000{:04}", id % 37)),
            answer: answered.then(|| t(start + 1.0)),
            end: end.map(t),
            outcome: if answered {
                Outcome::Answered
            } else {
                Outcome::Busy
            },
            ..CallRecord::new(format!("call-{id}"), direction, t(start))
        }
    }

    /// The live tally, fed events in the order the engine reports them (starts at once, ends
    /// after a linger of up to 40 s, calls still open closed at the end), gives exactly the
    /// batch figures over the same records.
    #[test]
    fn live_tally_equals_batch_figures() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..40 {
            let n = 5 + rnd(120) as u32;
            let capture_end = 1200.0;
            let mut recs = Vec::new();
            for id in 0..n {
                let start = rnd(1100) as f64 + rnd(1000) as f64 / 1000.0;
                let dur = rnd(200) as f64;
                let end = (start + dur < capture_end).then_some(start + dur);
                recs.push(rec(id, start, end, rnd(3) > 0, rnd(2) == 0));
            }
            // (time, kind 0 = start / 1 = end report, index)
            let mut evs: Vec<(f64, u8, usize)> = Vec::new();
            for (i, r) in recs.iter().enumerate() {
                evs.push((r.start.secs_f64() - 1_000.0, 0, i));
                let report = r
                    .end
                    .map(|e| e.secs_f64() - 1_000.0 + rnd(40) as f64)
                    .filter(|x| *x <= capture_end)
                    .unwrap_or(capture_end + 1.0);
                evs.push((report, 1, i));
            }
            evs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut tally = LineTally::new();
            for (time, kind, i) in evs {
                let now = t(time.min(capture_end));
                let mut r = recs[i].clone();
                if kind == 0 {
                    tally.call_started(&r.call_id, r.start);
                } else {
                    if time > capture_end {
                        // Still lingering at the end: the end is known from the record.
                        r = recs[i].clone();
                    }
                    tally.call_ended(&r, now);
                }
            }
            let live = tally.figures(t(capture_end));
            let spans: Vec<Span> = recs
                .iter()
                .map(|r| Span {
                    start: r.start,
                    end: r.end,
                })
                .collect();
            assert_eq!(
                live.max_concurrent_calls,
                max_concurrent(&spans, Some(t(capture_end))),
                "round {round}"
            );
            assert_eq!(live.calls, u64::from(n));
            assert_eq!(
                live.inbound_calls,
                recs.iter().filter(|r| is_inbound(r)).count() as u64
            );
            let distinct: std::collections::BTreeSet<&str> =
                recs.iter().filter_map(|r| called_number(r)).collect();
            assert_eq!(live.distinct_called_numbers, distinct.len() as u64);
            let talk: Vec<f64> = recs.iter().filter_map(inbound_talk_secs).collect();
            assert_eq!(live.median_talk_secs_inbound, median(&talk));
            assert!(live.estimated.is_empty(), "{:?}", live.estimated);
        }
    }

    #[test]
    fn many_distinct_numbers_are_an_estimate_never_above_the_calls() {
        let mut tally = LineTally::new();
        for id in 0..2000u32 {
            let mut r = rec(id, f64::from(id), Some(f64::from(id) + 0.5), true, false);
            r.to = Some(format!("86138{id:08}"));
            tally.call_started(&r.call_id, r.start);
            tally.call_ended(&r, t(f64::from(id) + 1.0));
        }
        let f = tally.figures(t(2001.0));
        assert!(f.estimated.contains_key("distinct_called_numbers"));
        assert!(f.distinct_called_numbers <= 2000);
        assert!(
            (f.distinct_called_numbers as f64 - 2000.0).abs() < 2000.0 * 0.3,
            "{}",
            f.distinct_called_numbers
        );
        assert_eq!(f.max_concurrent_calls, 1);
    }
}
