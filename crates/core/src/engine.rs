//! Engine: the pipeline stages wired together for one thread.
//!
//! Contract: `process` takes packets in capture order; packet time is the only clock (the
//! latest packet time seen is "now" for expiry, so a capture with a few out-of-order stamps does
//! not expire state early). Every stage's events feed the line table (detection) as they happen
//! and are also buffered until `drain_events`; callers drain after each batch so the buffer stays
//! small. Lines are re-scored every `detection.evaluate_every_secs` of packet time, so verdicts
//! (and `flagged_at`) come while the capture is read. The same `Engine` serves `analyze`, `eval`
//! and the daemon's workers.

use crate::calls::{Tracker, TrackerStats};
use crate::config::{LimitsConfig, NetworkConfig};
use crate::decode::Decoder;
use crate::detect::LineTable;
use crate::model::{Counters, Event, LineVerdict, RawPacket, Timestamp};
use crate::threats::{Threat, ThreatTable};
use serde::Serialize;

/// Changed verdicts held for `take_verdict_changes`; beyond it they are counted, not kept.
const MAX_PENDING_VERDICTS: usize = 100_000;

/// How often (packet time) stages expire idle state.
const HOUSEKEEPING_MICROS: i64 = 1_000_000;

/// Figures of a run so far; serialisable for JSON output and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineStats {
    /// Captured frames fed in.
    pub packets: u64,
    /// Their length on the wire, in bytes.
    pub bytes: u64,
    /// Transport payloads handed from decode to the calls stage.
    pub(crate) datagrams: u64,
    /// Capture time of the first frame.
    pub first: Option<Timestamp>,
    /// Capture time of the latest frame.
    pub last: Option<Timestamp>,
    /// The calls stage's totals (flattened into this object in JSON).
    #[serde(flatten)]
    pub calls: TrackerStats,
    /// Decode stops by layer, plus SIP/SDP/RTP parse errors (`sip.<kind>`, ...).
    pub decode_errors: Counters,
    /// Well-formed packets of protocols not analysed (ARP, STP, ICMP, ...), by kind.
    pub decode_skipped: Counters,
    /// Evictions by table.
    pub evictions: Counters,
    /// Current entries by table.
    pub tables: std::collections::BTreeMap<String, usize>,
}

/// The sections the engine needs, taken from the application's config: each stage's own
/// section (the engine wires the stages; no stage imports another's config).
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Home and domestic networks.
    pub network: NetworkConfig,
    /// Table caps and timeouts of decode and calls.
    pub limits: LimitsConfig,
    /// Line profiles, signal weights and verdict thresholds.
    pub detection: crate::detect::DetectionConfig,
    /// Attack findings about peers.
    pub threats: crate::threats::ThreatsConfig,
}

/// The whole pipeline for one thread: decode -> calls/media -> lines/detect (and threats), fed
/// frames in capture order; packet time is its only clock.
pub struct Engine {
    decoder: Decoder,
    tracker: Tracker,
    lines: LineTable,
    threats: ThreatTable,
    /// False when threats are tracked outside this engine, over several engines' events
    /// (the daemon's workers share one table): then this engine's table stays empty.
    own_threats: bool,
    events: Vec<Event>,
    /// Verdicts that changed since `take_verdict_changes`, bounded by `MAX_PENDING_VERDICTS`.
    verdict_changes: Vec<LineVerdict>,
    verdicts_dropped: u64,
    evaluate_every: f64,
    next_evaluation: Option<Timestamp>,
    packets: u64,
    bytes: u64,
    datagrams: u64,
    first: Option<Timestamp>,
    now: Timestamp,
    next_housekeeping: Timestamp,
    finished: bool,
}

impl Engine {
    /// An engine with empty tables, configured by `cfg`.
    pub fn new(cfg: &EngineConfig) -> Engine {
        Engine {
            decoder: Decoder::new(&cfg.limits),
            tracker: Tracker::new(&cfg.network, &cfg.limits),
            lines: LineTable::new(&cfg.detection, &cfg.network),
            threats: ThreatTable::new(&cfg.threats, &cfg.network),
            own_threats: true,
            events: Vec::with_capacity(64),
            verdict_changes: Vec::new(),
            verdicts_dropped: 0,
            evaluate_every: f64::from(cfg.detection.evaluate_every_secs.max(1)),
            next_evaluation: None,
            packets: 0,
            bytes: 0,
            datagrams: 0,
            first: None,
            now: Timestamp::default(),
            next_housekeeping: Timestamp::default(),
            finished: false,
        }
    }

    /// Runs one packet through every stage.
    pub fn process(&mut self, pkt: &RawPacket<'_>) {
        self.packets += 1;
        self.bytes += u64::from(pkt.wire_len);
        if self.first.is_none() {
            self.first = Some(pkt.ts);
            self.next_housekeeping = pkt.ts;
        }
        if pkt.ts > self.now {
            self.now = pkt.ts;
        }
        let seen = self.events.len();
        let tracker = &mut self.tracker;
        let events = &mut self.events;
        let mut datagrams = 0u64;
        self.decoder.decode(pkt, &mut |d| {
            datagrams += 1;
            tracker.on_datagram(d, events);
        });
        self.datagrams += datagrams;
        self.feed_lines(seen);
        if self.now >= self.next_housekeeping {
            self.tick(self.now);
        }
    }

    /// Hands events from index `from` on to the line table and the threat table, then tells
    /// the line table up to when calls that ended have all been reported.
    fn feed_lines(&mut self, from: usize) {
        self.lines.note_time(self.now);
        for ev in self.events.get(from..).unwrap_or(&[]) {
            self.lines.on_event(ev);
            if self.own_threats {
                self.threats.on_event(ev);
            }
        }
        if self.lines.awaits_sip_only_answers() {
            if let Some(t) = self.tracker.ends_reported_until() {
                self.lines.advance(t);
            }
        }
    }

    /// Re-scores lines when the evaluation period has passed (or always, with `force`).
    fn evaluate(&mut self, force: bool) {
        let due = *self
            .next_evaluation
            .get_or_insert(self.now.plus_secs(self.evaluate_every));
        if !force && self.now < due {
            return;
        }
        self.next_evaluation = Some(self.now.plus_secs(self.evaluate_every));
        for v in self.lines.evaluate(self.now) {
            if self.verdict_changes.len() < MAX_PENDING_VERDICTS {
                self.verdict_changes.push(v);
            } else {
                self.verdicts_dropped += 1;
            }
        }
    }

    /// Expires idle state as of packet time `now` (the daemon also calls it when the tap is quiet).
    pub fn tick(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
        self.decoder.expire(self.now);
        let seen = self.events.len();
        self.tracker.expire(self.now, &mut self.events);
        self.feed_lines(seen);
        if self.own_threats {
            self.threats.expire(self.now);
        }
        self.evaluate(false);
        self.next_housekeeping = self.now.plus_secs(HOUSEKEEPING_MICROS as f64 / 1e6);
    }

    /// End of input: flushes every open call, transaction and media flow as events.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.decoder.expire(self.now);
        let seen = self.events.len();
        self.tracker.finish(self.now, &mut self.events);
        self.feed_lines(seen);
        self.evaluate(true);
    }

    /// From now on, keep what each packet's innermost IP header holds (see
    /// [`innermost`](Self::innermost)).
    pub fn keep_innermost(&mut self) {
        self.decoder.keep_innermost(true);
    }

    /// The innermost IP header of the packet processed last, as the decoder saw it (after tags
    /// and tunnels), once [`keep_innermost`](Self::keep_innermost) was called; `None` for a
    /// packet without IP.
    pub fn innermost(&self) -> Option<&crate::decode::Innermost> {
        self.decoder.innermost()
    }

    /// Threats are tracked elsewhere, over the events of several engines (see
    /// [`drain_events`](Self::drain_events)): this engine's own table is no longer fed.
    pub fn track_threats_elsewhere(&mut self) {
        self.own_threats = false;
    }

    /// Re-scores every touched line and re-forms sites now, whatever the evaluation period
    /// (after other engines' site candidates changed, e.g. at the end of a replay).
    pub fn evaluate_now(&mut self) {
        self.evaluate(true);
    }

    /// Verdicts that changed since the last call (for alerting), in evaluation order.
    pub fn take_verdict_changes(&mut self) -> Vec<LineVerdict> {
        std::mem::take(&mut self.verdict_changes)
    }

    /// Threats found since the last call (new kinds of a peer, compromised PBXs), for alerting.
    pub fn take_threat_changes(&mut self) -> Vec<Threat> {
        self.threats.take_changes()
    }

    /// Every threat found so far (see [`ThreatTable::threats`]).
    pub fn threats(&self) -> Vec<Threat> {
        self.threats.threats()
    }

    /// The threat table (for a config reload).
    pub fn threats_mut(&mut self) -> &mut ThreatTable {
        &mut self.threats
    }

    /// The line profiles and their verdicts.
    pub fn lines(&self) -> &LineTable {
        &self.lines
    }

    /// The line table, once the run is over.
    pub fn into_lines(self) -> LineTable {
        self.lines
    }

    /// For a config reload or restoring saved profiles.
    pub fn lines_mut(&mut self) -> &mut LineTable {
        &mut self.lines
    }

    /// Whether events wait to be drained (most packets produce none: a check is cheaper than
    /// an empty drain).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Events produced since the last drain, in capture order.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Latest packet time seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Figures of the run so far.
    pub fn stats(&self) -> EngineStats {
        let mut decode_errors = self.decoder.errors().clone();
        decode_errors.merge(self.tracker.errors());
        let mut evictions = self.decoder.evictions().clone();
        evictions.merge(self.tracker.evictions());
        if self.lines.evictions() > 0 {
            evictions.add("lines", self.lines.evictions());
        }
        if self.verdicts_dropped > 0 {
            evictions.add("verdict_changes", self.verdicts_dropped);
        }
        evictions.merge(self.threats.evictions());
        let tables = self
            .decoder
            .table_sizes()
            .into_iter()
            .chain(self.tracker.table_sizes())
            .chain([("lines", self.lines.len())])
            .chain(self.threats.table_sizes())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        EngineStats {
            packets: self.packets,
            bytes: self.bytes,
            datagrams: self.datagrams,
            first: self.first,
            last: self.first.map(|_| self.now),
            calls: self.tracker.stats(),
            decode_errors,
            decode_skipped: self.decoder.skipped().clone(),
            evictions,
            tables,
        }
    }
}
