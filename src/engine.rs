//! Engine: the pipeline stages wired together for one thread.
//!
//! Contract: `process` takes packets in capture order; packet time is the only clock (the
//! latest packet time seen is "now" for expiry, so a capture with a few out-of-order stamps does
//! not expire state early). Every stage's events are buffered until `drain_events`; callers drain
//! after each batch so the buffer stays small. The same `Engine` serves `analyze` and the daemon.

use crate::calls::{Tracker, TrackerStats};
use crate::config::Config;
use crate::decode::Decoder;
use crate::model::{Counters, Event, RawPacket, Timestamp};
use serde::Serialize;

/// How often (packet time) stages expire idle state.
const HOUSEKEEPING_MICROS: i64 = 1_000_000;

/// Figures of a run so far; serialisable for JSON output and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Transport payloads handed from decode to the calls stage.
    pub datagrams: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    #[serde(flatten)]
    pub calls: TrackerStats,
    /// Decode stops by layer, plus SIP/SDP/RTP parse errors (`sip.<kind>`, ...).
    pub decode_errors: Counters,
    /// Evictions by table.
    pub evictions: Counters,
    /// Current entries by table.
    pub tables: std::collections::BTreeMap<String, usize>,
}

pub struct Engine {
    decoder: Decoder,
    tracker: Tracker,
    events: Vec<Event>,
    packets: u64,
    bytes: u64,
    datagrams: u64,
    first: Option<Timestamp>,
    now: Timestamp,
    next_housekeeping: Timestamp,
    finished: bool,
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        Engine {
            decoder: Decoder::new(&cfg.limits),
            tracker: Tracker::new(cfg),
            events: Vec::with_capacity(64),
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
        let tracker = &mut self.tracker;
        let events = &mut self.events;
        let mut datagrams = 0u64;
        self.decoder.decode(pkt, &mut |d| {
            datagrams += 1;
            tracker.on_datagram(d, events);
        });
        self.datagrams += datagrams;
        if self.now >= self.next_housekeeping {
            self.tick(self.now);
        }
    }

    /// Expires idle state as of packet time `now` (the daemon also calls it when the tap is quiet).
    pub fn tick(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
        self.decoder.expire(self.now);
        self.tracker.expire(self.now, &mut self.events);
        self.next_housekeeping = self.now.plus_secs(HOUSEKEEPING_MICROS as f64 / 1e6);
    }

    /// End of input: flushes every open call, transaction and media flow as events.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.decoder.expire(self.now);
        self.tracker.finish(self.now, &mut self.events);
    }

    /// Events produced since the last drain, in capture order.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Latest packet time seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn stats(&self) -> EngineStats {
        let mut decode_errors = self.decoder.errors().clone();
        decode_errors.merge(self.tracker.errors());
        let mut evictions = self.decoder.evictions().clone();
        evictions.merge(self.tracker.evictions());
        let tables = self
            .decoder
            .table_sizes()
            .into_iter()
            .chain(self.tracker.table_sizes())
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
            evictions,
            tables,
        }
    }
}
