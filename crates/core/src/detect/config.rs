//! The `[detection]` section: weights, thresholds, windows and bounds.

use crate::config::{Invalid, NetworkConfig};
use crate::lines::{FingerprintSet, ProfileParams};
use crate::model::SipOnlyAnswers;
use serde::{Deserialize, Serialize};

/// Weight of each signal in the score (0..1; a signal at full strength alone scores its weight).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Share of calls that come into the line from foreign peers. Default 0.35.
    pub foreign_inbound: f64,
    /// Distinct called numbers per inbound call (DID blocks excepted). Default 0.65.
    pub distinct_called: f64,
    /// Concurrency pinned at a ceiling. Default 0.35.
    pub concurrency_ceiling: f64,
    /// Short inbound calls and a low answer ratio. Default 0.45.
    pub machine_rhythm: f64,
    /// Short, regular gaps between a call's end and the next call on the freed channel. Default 0.3.
    pub gap_regularity: f64,
    /// Many accounts registered from the line to one registrar. Default 0.5.
    pub registrations: f64,
    /// User-Agent/Server, Allow set or SDP o=/s= of gateway products. Default 0.45.
    pub fingerprint: f64,
    /// Concurrent voice-shaped flows to one peer without readable SIP. Default 0.7.
    pub opaque_media: f64,
    /// Member of a site (several suspect lines sharing a peer and rhythm). Default 0.35.
    pub site: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            foreign_inbound: 0.35,
            distinct_called: 0.65,
            concurrency_ceiling: 0.35,
            machine_rhythm: 0.45,
            gap_regularity: 0.3,
            registrations: 0.5,
            fingerprint: 0.45,
            opaque_media: 0.7,
            site: 0.35,
        }
    }
}

/// The `[detection]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// Weight of each signal in the noisy-OR score.
    pub weights: Weights,
    /// Score from which a line is `suspect`. Default 0.5.
    pub suspect_score: f64,
    /// Score from which a line is `gateway`. Default 0.75.
    pub gateway_score: f64,
    /// Signals at strength >= 0.5 needed for `gateway` (else capped at `suspect`). Default 2.
    pub gateway_min_signals: usize,
    /// Sliding window of the signals (12 buckets). Default 3600 s.
    pub window_secs: u32,
    /// Long window for activity figures (24 buckets); a `gateway` verdict also holds this long
    /// after it was last earned. Default 86400 s.
    pub long_window_secs: u32,
    /// Lines kept; beyond it the least recently active is evicted if idle long enough
    /// (`full_table_min_idle_secs`), else the new line is shed. Default 1 000 000.
    pub max_lines: usize,
    /// A line with no event for this long is dropped. Default 604800 s (7 days).
    pub line_idle_secs: u32,
    /// A full table (`max_lines`) makes room for a new line by evicting its least recently
    /// active line only when that line has been idle at least this long; else the new line is
    /// shed (counted), so a burst of new lines cannot push out the lines being watched.
    /// 0: always evict. Default 600 s.
    pub full_table_min_idle_secs: u32,
    /// New lines admitted per second of packet time (a token bucket holding a minute of it);
    /// beyond it new lines are shed (counted) while known lines keep being tracked. 0: no
    /// budget. Default 0.
    pub new_lines_per_sec: u32,
    /// How often (packet time) the engine should call `evaluate`. Default 5 s.
    pub evaluate_every_secs: u32,
    /// Calls and opaque flows tracked as open per line (concurrency). Default 64.
    pub max_open_per_line: usize,
    /// Registered accounts remembered per line. Default 32.
    pub max_accounts_per_line: usize,
    /// A call starting this soon after another ended on the line re-seizes its channel. Default 30 s.
    pub refill_secs: u32,
    /// Inbound calls (or opaque flows) before rate-based signals speak at all. Default 3.
    pub min_calls: u32,
    /// Where the tap carries no media of a line at all (a SIP-only mirror), an inbound call the
    /// line answered counts as its own from this talk time on (elsewhere it must carry voice both
    /// ways). Scanners and enumerators that reach a device answering on its own (a camera, an
    /// intercom) hang up within a round trip or two of its 200 OK; a relayed call talks for
    /// longer. Default 5 s.
    pub sip_only_min_talk_secs: f64,
    /// The same answers count only when they came at least this long after the INVITE: a
    /// relayed call is answered by a person after the far phone has rung (mobile call setup alone
    /// takes seconds), a device answering on its own answers within a second or so. Default 2 s.
    pub sip_only_min_ring_secs: f64,
    /// User-Agent/Server patterns of gateway products (lower-case substring; `=x` exact).
    pub fingerprint_agents: Vec<String>,
    /// SDP o= username / s= patterns of gateway products (same syntax).
    pub fingerprint_sdp: Vec<String>,
    /// Allow header sets of gateway products (comma-separated methods, order-free).
    pub fingerprint_allow: Vec<String>,
    /// Lines needed to form a site. Default 2.
    pub site_min_lines: usize,
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            weights: Weights::default(),
            suspect_score: 0.5,
            gateway_score: 0.75,
            gateway_min_signals: 2,
            window_secs: 3600,
            long_window_secs: 86400,
            max_lines: 1_000_000,
            line_idle_secs: 7 * 86400,
            full_table_min_idle_secs: 600,
            new_lines_per_sec: 0,
            evaluate_every_secs: 5,
            max_open_per_line: 64,
            max_accounts_per_line: 32,
            refill_secs: 30,
            min_calls: 3,
            sip_only_min_talk_secs: 5.0,
            sip_only_min_ring_secs: 2.0,
            // Gateway products named in public material (GoIP/DBL, Dinstar, OpenVox, Hybertone,
            // Ejoin, Portech, Yeastar TG, Synway) and the single-letter agents of clones.
            fingerprint_agents: strings(&[
                "goip",
                "dbl",
                "dinstar",
                "openvox",
                "hybertone",
                "ejoin",
                "portech",
                "yeastar tg",
                "synway",
                "=h",
                "=w",
            ]),
            fingerprint_sdp: strings(&["goip", "dbl", "dinstar", "openvox", "hybertone", "ejoin"]),
            fingerprint_allow: Vec::new(),
            site_min_lines: 2,
        }
    }
}

impl DetectionConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), Invalid> {
        let w = &self.weights;
        for (k, v) in [
            ("foreign_inbound", w.foreign_inbound),
            ("distinct_called", w.distinct_called),
            ("concurrency_ceiling", w.concurrency_ceiling),
            ("machine_rhythm", w.machine_rhythm),
            ("gap_regularity", w.gap_regularity),
            ("registrations", w.registrations),
            ("fingerprint", w.fingerprint),
            ("opaque_media", w.opaque_media),
            ("site", w.site),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Invalid::new(
                    format!("weights.{k}"),
                    format!("detection.weights.{k}: must be within 0..1"),
                ));
            }
        }
        let bad = |k: &str, why: &str| Err(Invalid::new(k, format!("detection.{k}: {why}")));
        if !(self.suspect_score > 0.0
            && self.suspect_score <= self.gateway_score
            && self.gateway_score <= 1.0)
        {
            return bad(
                "gateway_score",
                "need 0 < suspect_score <= gateway_score <= 1",
            );
        }
        if self.max_lines == 0 {
            return bad("max_lines", "must be at least 1");
        }
        if self.window_secs < 60 || self.long_window_secs < self.window_secs {
            return bad("window_secs", "need 60 <= window_secs <= long_window_secs");
        }
        if !(0.0..=3600.0).contains(&self.sip_only_min_talk_secs) {
            return bad("sip_only_min_talk_secs", "must be within 0..3600");
        }
        if !(0.0..=600.0).contains(&self.sip_only_min_ring_secs) {
            return bad("sip_only_min_ring_secs", "must be within 0..600");
        }
        if self.max_open_per_line == 0 || self.evaluate_every_secs == 0 {
            return bad(
                "max_open_per_line",
                "max_open_per_line and evaluate_every_secs must be > 0",
            );
        }
        Ok(())
    }

    /// When an answer without media counts where the tap carries none (`sip_only_min_*`).
    pub fn sip_only_answers(&self) -> SipOnlyAnswers {
        SipOnlyAnswers {
            min_talk_secs: self.sip_only_min_talk_secs,
            min_ring_secs: self.sip_only_min_ring_secs,
        }
    }

    pub(crate) fn profile_params(&self, net: &NetworkConfig) -> ProfileParams {
        ProfileParams {
            window_us: i64::from(self.window_secs.max(60)) * 1_000_000,
            long_window_us: i64::from(self.long_window_secs.max(self.window_secs).max(60))
                * 1_000_000,
            max_open: self.max_open_per_line.max(1),
            max_accounts: self.max_accounts_per_line,
            refill_us: i64::from(self.refill_secs) * 1_000_000,
            sip_only: self.sip_only_answers(),
            network: net.clone(),
            fingerprints: FingerprintSet::new(
                &self.fingerprint_agents,
                &self.fingerprint_sdp,
                &self.fingerprint_allow,
            ),
        }
    }
}
