//! Streaming analysis: records leave as they are produced and per-line figures come from
//! bounded tallies, so memory does not grow with the number of calls in the capture.
//!
//! Contract: `RecordWriter` writes one JSON object per line (`{"type":"call",...}`,
//! `{"type":"registration",...}`, `{"type":"media_flow",...}`), fields as in `analyze --format
//! json`'s arrays, phone numbers through the `[privacy]` pseudonymizer. `LineTallies` keeps per
//! line the figures of `analyze`'s `lines` with `figures`' definitions (the daemon's
//! `LineTally` plus the counters it lacks): exact while a line fits the tally's bounds, then
//! listed in the line's `estimated` map. At most `MAX_TALLY_LINES` lines are tallied; beyond it
//! the longest-idle eighth is evicted at once (counted as `line_tallies`). `FirstCalls` keeps the
//! calls the text output lists (the earliest by start).

use super::LineEntry;
use crate::figures::{hash64, Kmv, LineTally, Taken, KMV_K};
use crate::privacy::Pseudonymizer;
use serde::Serialize;
use simboxd_core::model::{
    CallRecord, MediaFlowRecord, Outcome, RegistrationRecord, SipOnlyAnswers, Timestamp,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;

/// Lines tallied at once in a streaming analysis.
pub const MAX_TALLY_LINES: usize = 1 << 17;
/// Distinct peers listed per line; beyond it `peers` is marked as a partial list.
pub const MAX_PEERS: usize = 64;

/// Writes records as NDJSON, each object tagged with its `type`.
pub struct RecordWriter<W: Write> {
    out: W,
    privacy: Pseudonymizer,
    buf: Vec<u8>,
    pub written: u64,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W, privacy: Pseudonymizer) -> Self {
        RecordWriter {
            out,
            privacy,
            buf: Vec::with_capacity(4096),
            written: 0,
        }
    }

    /// `{"type":"<kind>",` followed by the fields of `value` (an object with at least one field).
    pub fn object<T: Serialize>(&mut self, kind: &str, value: &T) -> std::io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, value)?;
        let rest = self.buf.get(1..).unwrap_or(b"}");
        write!(self.out, "{{\"type\":\"{kind}\"")?;
        if rest != b"}" {
            self.out.write_all(b",")?;
        }
        self.out.write_all(rest)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// A call record, written by `record_json` (the same bytes as `object`'s, for a fraction
    /// of the instructions: a flood ends a call per packet or two).
    pub fn call(&mut self, c: &CallRecord) -> std::io::Result<()> {
        if self.privacy.enabled() {
            let mut c = c.clone();
            self.privacy.call(&mut c);
            return self.call_line(&c);
        }
        self.call_line(c)
    }

    fn call_line(&mut self, c: &CallRecord) -> std::io::Result<()> {
        self.hand_written(b"{\"type\":\"call\",", |b| {
            super::record_json::call_fields(b, c)
        })
    }

    /// `head` and the rest of an object written by `fields` (see `record_json`), one line.
    fn hand_written(
        &mut self,
        head: &[u8],
        fields: impl FnOnce(&mut Vec<u8>),
    ) -> std::io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(head);
        fields(&mut self.buf);
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.written += 1;
        Ok(())
    }

    /// A `line` object of the NDJSON tail: `l`'s fields and its `estimated` map.
    pub fn line(
        &mut self,
        l: &super::LineEntry,
        estimated: &BTreeMap<&'static str, f64>,
    ) -> std::io::Result<()> {
        self.hand_written(b"{\"type\":\"line\",", |b| {
            super::record_json::line_fields(b, l, estimated)
        })
    }

    pub fn registration(&mut self, r: &RegistrationRecord) -> std::io::Result<()> {
        if self.privacy.enabled() {
            let mut r = r.clone();
            self.privacy.registration(&mut r);
            return self.registration_line(&r);
        }
        self.registration_line(r)
    }

    fn registration_line(&mut self, r: &RegistrationRecord) -> std::io::Result<()> {
        self.hand_written(b"{\"type\":\"registration\",", |b| {
            super::record_json::registration_fields(b, r)
        })
    }

    pub fn media_flow(&mut self, m: &MediaFlowRecord) -> std::io::Result<()> {
        self.object("media_flow", m)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// One line's figures, kept from its records as they come.
#[derive(Default)]
struct LineAcc {
    tally: LineTally,
    open_calls_at_end: u64,
    /// Inbound calls the line took part in whatever the tap: voice both ways, early media.
    taken_media: u64,
    taken_media_answered: u64,
    numbers_media: Kmv,
    /// Answered inbound calls without media that lasted (taken only on a SIP-only tap).
    taken_sip: u64,
    taken_sip_answered: u64,
    /// Numbers of both kinds above (the SIP-only tap's count).
    numbers_sip: Kmv,
    peers: Vec<IpAddr>,
    peers_partial: bool,
    registrations: u64,
    media_flows: u64,
    voice_flows_without_sip: u64,
    last: Timestamp,
}

/// Per-line tallies of a streaming analysis (see the module contract).
pub struct LineTallies {
    /// Boxed: a flood of lines grows the map's spare capacity by pointers, not tallies.
    lines: simboxd_core::model::FastMap<IpAddr, Box<LineAcc>>,
    sip_only: SipOnlyAnswers,
    /// The tap carried media (any call with RTP, any media flow): answers must carry voice
    /// both ways to count (detection's rule).
    tap_media: bool,
    pub evictions: u64,
}

impl LineTallies {
    pub fn new(sip_only: SipOnlyAnswers) -> Self {
        LineTallies {
            lines: Default::default(),
            sip_only,
            tap_media: false,
            evictions: 0,
        }
    }

    fn acc(&mut self, line: IpAddr, ts: Timestamp) -> &mut LineAcc {
        if self.lines.len() >= MAX_TALLY_LINES && !self.lines.contains_key(&line) {
            self.evict();
        }
        let a = self.lines.entry(line).or_default();
        a.last = a.last.max(ts);
        a
    }

    /// Drops the longest-idle eighth of the lines (amortised: one pass per many new lines).
    fn evict(&mut self) {
        let mut lasts: Vec<Timestamp> = self.lines.values().map(|a| a.last).collect();
        if lasts.is_empty() {
            return;
        }
        let k = (lasts.len() / 8).max(1);
        let cut = *lasts.select_nth_unstable(k - 1).1;
        let before = self.lines.len();
        let mut removed = 0;
        self.lines.retain(|_, a| {
            if removed < k && a.last <= cut {
                removed += 1;
                false
            } else {
                true
            }
        });
        self.evictions += (before - self.lines.len()) as u64;
    }

    pub fn call_started(&mut self, line: IpAddr, call_id: &str, ts: Timestamp) {
        self.acc(line, ts).tally.call_started(call_id, ts);
    }

    /// An ended call (`now`: the latest packet time).
    pub fn call_ended(&mut self, c: &CallRecord, now: Timestamp) {
        let Some(line) = c.line else { return };
        let sip_only = self.sip_only;
        self.tap_media |= !c.rtp.is_empty();
        // One hash of the called number for the tally and the taken-call sketches.
        let number = crate::figures::called_number(c).map(hash64);
        let a = self.acc(line, now);
        a.tally.call_ended_hashed(c, number, now);
        if c.end.is_none() {
            a.open_calls_at_end += 1;
        }
        // The two readings of `figures::is_taken_inbound` (with media on the line or not),
        // chosen when the line's figures are read.
        if let Some(kind) = crate::figures::taken_inbound(c, &sip_only, now) {
            let answered = u64::from(c.outcome == Outcome::Answered);
            match kind {
                Taken::Media => {
                    a.taken_media += 1;
                    a.taken_media_answered += answered;
                    if let Some(h) = number {
                        a.numbers_media.add(h);
                    }
                }
                Taken::SipOnly => {
                    a.taken_sip += 1;
                    a.taken_sip_answered += answered;
                }
            }
            if let Some(h) = number {
                a.numbers_sip.add(h);
            }
        }
        if let Some(p) = c.peer {
            let ip = p.ip();
            if !a.peers.contains(&ip) {
                if a.peers.len() < MAX_PEERS {
                    a.peers.push(ip);
                } else {
                    a.peers_partial = true;
                }
            }
        }
    }

    pub fn registration(&mut self, r: &RegistrationRecord) {
        if let Some(line) = r.line {
            self.acc(line, r.time).registrations += 1;
        }
    }

    pub fn media_flow(&mut self, m: &MediaFlowRecord, now: Timestamp) {
        self.tap_media = true;
        if let Some(line) = m.line {
            let a = self.acc(line, now);
            a.media_flows += 1;
            if m.call_id.is_none() && m.voice_like {
                a.voice_flows_without_sip += 1;
            }
        }
    }

    /// Every tallied line's entry (ordered by address) and, per line, its figures that are
    /// estimates (name -> relative standard error; 0.0 for a lower bound or a partial list).
    pub fn entries(
        &self,
        capture_end: Timestamp,
    ) -> (
        Vec<LineEntry>,
        BTreeMap<IpAddr, BTreeMap<&'static str, f64>>,
    ) {
        let mut order: Vec<(&IpAddr, &LineAcc)> =
            self.lines.iter().map(|(k, v)| (k, &**v)).collect();
        order.sort_by_key(|(ip, _)| **ip);
        let mut estimated = BTreeMap::new();
        let entries = order
            .into_iter()
            .map(|(ip, a)| {
                let f = a.tally.figures(capture_end);
                let mut est = f.estimated.clone();
                let (taken, taken_answered, numbers) = if self.tap_media {
                    (a.taken_media, a.taken_media_answered, &a.numbers_media)
                } else {
                    (
                        a.taken_media + a.taken_sip,
                        a.taken_media_answered + a.taken_sip_answered,
                        &a.numbers_sip,
                    )
                };
                let (distinct_taken, exact) = numbers.count();
                if !exact {
                    est.insert(
                        "distinct_called_numbers_taken",
                        1.0 / ((KMV_K - 2) as f64).sqrt(),
                    );
                }
                if a.peers_partial {
                    est.insert("peers", 0.0);
                }
                let mut peers: Vec<String> = a.peers.iter().map(|p| p.to_string()).collect();
                peers.sort();
                if !est.is_empty() {
                    estimated.insert(*ip, est);
                }
                LineEntry {
                    line: Some(*ip),
                    calls: f.calls,
                    inbound_calls: f.inbound_calls,
                    outbound_calls: f.outbound_calls,
                    answered_calls: f.answered_calls,
                    max_concurrent_calls: f.max_concurrent_calls,
                    open_calls_at_end: a.open_calls_at_end,
                    distinct_called_numbers: f.distinct_called_numbers,
                    inbound_calls_taken: taken,
                    inbound_calls_taken_answered: taken_answered,
                    distinct_called_numbers_taken: (distinct_taken.round() as u64).min(taken),
                    median_talk_secs_inbound: f.median_talk_secs_inbound,
                    peers,
                    registrations: a.registrations,
                    media_flows: a.media_flows,
                    voice_flows_without_sip: a.voice_flows_without_sip,
                    ..Default::default()
                }
            })
            .collect();
        (entries, estimated)
    }
}

/// The earliest calls by (start, Call-ID), at most `n` (what the text output lists).
pub struct FirstCalls {
    n: usize,
    calls: Vec<CallRecord>,
}

impl FirstCalls {
    pub fn new(n: usize) -> Self {
        FirstCalls {
            n,
            calls: Vec::new(),
        }
    }

    pub fn offer(&mut self, c: &CallRecord) {
        fn key(x: &CallRecord) -> (Timestamp, &str) {
            (x.start, x.call_id.as_str())
        }
        if self.calls.len() >= self.n {
            match self.calls.last() {
                Some(last) if key(c) < key(last) => {
                    self.calls.pop();
                }
                _ => return,
            }
        }
        let pos = self.calls.partition_point(|x| key(x) <= key(c));
        self.calls.insert(pos, c.clone());
    }

    pub fn into_vec(self) -> Vec<CallRecord> {
        self.calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simboxd_core::model::RegOutcome;

    fn reg(line: IpAddr, t: f64) -> RegistrationRecord {
        RegistrationRecord {
            account: "100@example".into(),
            registrar: "198.51.100.1:5060".parse().unwrap(),
            source: std::net::SocketAddr::new(line, 5060),
            line: Some(line),
            contact: None,
            expires: None,
            outcome: RegOutcome::Registered,
            status_code: Some(200),
            user_agent: None,
            time: Timestamp::from_secs_f64(t),
        }
    }

    #[test]
    fn a_flood_of_lines_keeps_the_tally_bounded_and_counts_evictions() {
        let mut t = LineTallies::new(SipOnlyAnswers {
            min_talk_secs: 10.0,
            min_ring_secs: 0.0,
        });
        let n = MAX_TALLY_LINES as u32 + 1000;
        for i in 0..n {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.registration(&reg(ip, 1000.0 + f64::from(i)));
        }
        assert!(t.lines.len() <= MAX_TALLY_LINES);
        assert_eq!(t.evictions as usize + t.lines.len(), n as usize);
        // The longest idle went; the latest line is still there.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n - 1));
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000));
        assert!(t.lines.contains_key(&last));
        assert!(!t.lines.contains_key(&first));
    }

    #[test]
    fn first_calls_are_the_earliest_in_order() {
        let mut f = FirstCalls::new(3);
        let mut c = CallRecord::new(
            String::new(),
            simboxd_core::model::Direction::Inbound,
            Timestamp::default(),
        );
        for (id, s) in [
            ("e", 50.0),
            ("a", 10.0),
            ("d", 40.0),
            ("b", 10.0),
            ("c", 30.0),
        ] {
            c.call_id = id.into();
            c.start = Timestamp::from_secs_f64(s);
            f.offer(&c);
        }
        let ids: Vec<String> = f.into_vec().into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        FirstCalls::new(0).offer(&c);
    }
}
