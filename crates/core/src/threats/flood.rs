//! Floods from many sources: the request rate at one line, whatever the source addresses.
//!
//! A flood tool that forges a random source per request keeps every forged "peer" far below
//! the per-peer rate; what it cannot hide is the rate at its target. Per line that receives
//! requests from outside: requests and distinct sources within `flood_window_secs`. A window
//! at a flood's rate (at least `flood_sources_min_requests` requests in it, or the same rate
//! over a burst of `flood_burst_secs`: see `rate`) from at least `flood_min_sources` sources is a
//! flood window; the line's flood episode is its flood windows (requests, sources, agents,
//! answers counted from the request that tripped it on), and ends when no window has been a
//! flood window for `clear_after_secs`. Lines tracked at once: `max_flood_lines`.

use super::peer::{Answers, MethodCounts, Sketch};
use super::rate::{FloodRule, Rate};
use crate::model::{ProbeMethod, Timestamp};
use std::net::IpAddr;

/// Distinct sources remembered per window (enough to tell "many" from "few").
pub(super) const MAX_WINDOW_SOURCES: usize = 64;
/// Source addresses kept as a sample per flood finding.
pub(super) const MAX_SOURCE_SAMPLES: usize = 8;

/// Request rate at one line, and its flood episode once it had one.
#[derive(Clone, Debug)]
pub(super) struct LineFlood {
    pub(super) line: IpAddr,
    pub(super) rate: Rate,
    /// Distinct sources of the current flood window.
    pub(super) window_sources: Vec<u64>,
    /// Methods of the current window's requests until it became a flood window.
    window_methods: MethodCounts,
    /// The current window is a flood window.
    pub(super) hot: bool,
    /// The line has had a flood window (it is a finding).
    pub(super) flagged: bool,
    pub(super) first: Timestamp,
    pub(super) last: Timestamp,
    pub(super) requests: u64,
    /// Peak requests within a flood window, and within a burst window, since flagged.
    pub(super) peak: u64,
    pub(super) peak_burst: u64,
    /// Distinct sources of the episode; made when the line first floods (most lines a flood
    /// touches never do).
    pub(super) sources: Option<Box<Sketch>>,
    pub(super) samples: Vec<IpAddr>,
    pub(super) agents: Vec<String>,
    pub(super) methods: MethodCounts,
    /// Answers seen since flagged (what was asked is read off `methods`: see `answers()`).
    pub(super) answers: Answers,
    /// When the episode closed (reported as ended), until the line floods again.
    pub(super) ended: Option<Timestamp>,
}

impl LineFlood {
    pub(super) fn new(line: IpAddr, ts: Timestamp) -> LineFlood {
        LineFlood {
            line,
            rate: Rate::new(ts),
            window_sources: Vec::new(),
            window_methods: MethodCounts::default(),
            hot: false,
            flagged: false,
            first: ts,
            last: ts,
            requests: 0,
            peak: 0,
            peak_burst: 0,
            sources: None,
            samples: Vec::new(),
            agents: Vec::new(),
            methods: MethodCounts::default(),
            answers: Answers::default(),
            ended: None,
        }
    }

    /// Counts one request (`method`, `None` for a REGISTER) from `src` (hash `sh`) at `ts`.
    /// Returns true when this request made the window a flood window (a new finding, or a new
    /// episode after one ended).
    pub(super) fn request(
        &mut self,
        ts: Timestamp,
        sh: u64,
        method: Option<ProbeMethod>,
        rule: &FloodRule,
        min_sources: usize,
    ) -> bool {
        let c = self.rate.count(ts, rule);
        if c.restarted {
            self.window_sources.clear();
            self.window_methods = MethodCounts::default();
            self.hot = false;
        }
        // Out of time order by more than a window: no longer part of the rate seen now.
        if !c.counted {
            return false;
        }
        if self.window_sources.len() < MAX_WINDOW_SOURCES && !self.window_sources.contains(&sh) {
            self.window_sources.push(sh);
        }
        if self.hot {
            self.requests += 1;
            self.methods.add(method);
            self.sources
                .get_or_insert_with(|| Box::new(Sketch::new()))
                .insert(sh);
            self.note_peaks();
            if ts > self.last {
                self.last = ts;
            }
            return false;
        }
        self.window_methods.add(method);
        if !self.rate.flooding(rule) || self.window_sources.len() < min_sources {
            return false;
        }
        self.hot = true;
        let renewed = !self.flagged || self.ended.is_some();
        if !self.flagged {
            self.first = self.rate.start;
        }
        self.flagged = true;
        self.ended = None;
        // The whole window that tripped it belongs to the flood.
        self.requests += self.rate.count;
        self.methods.merge(&self.window_methods);
        self.window_methods = MethodCounts::default();
        let sources = self.sources.get_or_insert_with(|| Box::new(Sketch::new()));
        for h in &self.window_sources {
            sources.insert(*h);
        }
        self.note_peaks();
        if ts > self.last {
            self.last = ts;
        }
        renewed
    }

    /// What the lines answered, with the requests that asked for an answer (all but INVITEs).
    pub(super) fn answers(&self) -> Answers {
        let mut a = self.answers.clone();
        a.asked = self.methods.asked();
        a
    }

    fn note_peaks(&mut self) {
        self.peak = self.peak.max(self.rate.count);
        self.peak_burst = self.peak_burst.max(self.rate.burst_count);
    }

    /// Remembers a source address as a sample of the flood's sources.
    pub(super) fn sample(&mut self, src: IpAddr) {
        if self.samples.len() < MAX_SOURCE_SAMPLES && !self.samples.contains(&src) {
            self.samples.push(src);
        }
    }

    pub(super) fn agent(&mut self, agent: Option<&str>, max: usize) {
        if let Some(a) = agent {
            if !a.is_empty() && self.agents.len() < max && !self.agents.iter().any(|x| x == a) {
                self.agents.push(a.to_string());
            }
        }
    }

    /// Distinct sources of the episode (estimated).
    pub(super) fn sources_total(&self) -> u64 {
        // An empty sketch estimates 0.
        let sources = self.sources.as_ref().map_or(0, |s| s.estimate());
        sources.max(self.samples.len() as u64)
    }
}
