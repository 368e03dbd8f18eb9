//! Detection: signals over line profiles, the score, sites, and the table of all lines.
//!
//! Contract: every signal is a pure function of one [`Profile`] at a capture time returning a
//! value, a strength 0..1 and the figures behind it. The score combines signal strengths as a
//! noisy-OR with configured weights (`score = 1 - Π(1 - w·s)`). All signals that describe calls
//! look at *inbound* calls only (the softswitch pushes calls into a gateway), so outbound dialers
//! and offices calling out never accumulate evidence. [`LineTable`] owns the profiles (LRU-capped,
//! idle-evicted), is fed `model::Event`s in capture order and re-scores touched lines when asked.

#[cfg(any(test, feature = "synth"))]
pub mod synth;

use crate::config::{Invalid, NetworkConfig};
use crate::lines::{FingerprintSet, Profile, ProfileParams, LEVELS};
use crate::model::{Event, LineVerdict, Reason, Timestamp, VerdictLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

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
    /// Lines kept; beyond it the least recently active is evicted. Default 1 000 000.
    pub max_lines: usize,
    /// A line with no event for this long is dropped. Default 604800 s (7 days).
    pub line_idle_secs: u32,
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
    /// User-Agent/Server patterns of gateway products (lower-case substring; `=x` exact).
    pub fingerprint_agents: Vec<String>,
    /// SDP o= username / s= patterns of gateway products (same syntax).
    pub fingerprint_sdp: Vec<String>,
    /// Allow header sets of gateway products (comma-separated methods, order-free).
    pub fingerprint_allow: Vec<String>,
    /// Lines needed to form a site. Default 2.
    pub site_min_lines: usize,
}

fn strings(v: &[&str]) -> Vec<String> {
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
            evaluate_every_secs: 5,
            max_open_per_line: 64,
            max_accounts_per_line: 32,
            refill_secs: 30,
            min_calls: 3,
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
        if self.max_open_per_line == 0 || self.evaluate_every_secs == 0 {
            return bad(
                "max_open_per_line",
                "max_open_per_line and evaluate_every_secs must be > 0",
            );
        }
        Ok(())
    }

    pub fn profile_params(&self, net: &NetworkConfig) -> ProfileParams {
        ProfileParams {
            window_us: i64::from(self.window_secs.max(60)) * 1_000_000,
            long_window_us: i64::from(self.long_window_secs.max(self.window_secs).max(60))
                * 1_000_000,
            max_open: self.max_open_per_line.max(1),
            max_accounts: self.max_accounts_per_line,
            refill_us: i64::from(self.refill_secs) * 1_000_000,
            network: net.clone(),
            fingerprints: FingerprintSet::new(
                &self.fingerprint_agents,
                &self.fingerprint_sdp,
                &self.fingerprint_allow,
            ),
        }
    }
}

/// Linear ramp: 0 at or below `lo`, 1 at or above `hi`.
pub fn ramp(x: f64, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return if x >= hi { 1.0 } else { 0.0 };
    }
    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// One signal's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub name: &'static str,
    pub value: f64,
    pub strength: f64,
    pub detail: String,
}

/// What signals read: the profile, the time and the configuration.
pub struct Ctx<'a> {
    pub now: Timestamp,
    pub cfg: &'a DetectionConfig,
    pub params: &'a ProfileParams,
}

fn minutes(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// Share of all calls that come into the line from foreign peers.
pub fn foreign_inbound(p: &Profile, c: &Ctx) -> Signal {
    let w = p.window(c.now, c.params);
    let all = f64::from(w.calls());
    let share = if all > 0.0 {
        f64::from(w.in_foreign) / all
    } else {
        0.0
    };
    let min = f64::from(c.cfg.min_calls);
    let volume = ramp(f64::from(w.in_foreign), min - 1.0, min + 2.0);
    let peer = p
        .top_peer()
        .filter(|x| !x.domestic)
        .map_or(String::from("foreign peers"), |x| {
            format!("{} (foreign)", x.ip)
        });
    Signal {
        name: "foreign_inbound",
        value: share,
        strength: ramp(share, 0.5, 0.9) * volume,
        detail: format!(
            "{} of {} calls came in from {} in {}",
            w.in_foreign,
            w.calls(),
            peer,
            minutes(p.window_span_secs(c.now, c.params))
        ),
    }
}

/// Distinct called numbers per inbound call over the last 16 inbound calls; calls spread over a
/// DID block (numbers sharing all but the last three digits) or to extensions do not count.
pub fn distinct_called(p: &Profile, c: &Ctx) -> Signal {
    let (nums, blocks, n) = p.recent_called();
    let ratio = if n > 0 { nums as f64 / n as f64 } else { 0.0 };
    let block_ratio = if n > 0 { blocks as f64 / n as f64 } else { 0.0 };
    let w = p.window(c.now, c.params);
    let est = p.distinct_called(c.now, c.params);
    let span = minutes(p.window_span_secs(c.now, c.params));
    let min = f64::from(c.cfg.min_calls);
    // The ring keeps the last 16 whenever they were: only calls ended inside the window count.
    let volume = ramp((n as f64).min(f64::from(w.in_ended)), min - 1.0, min + 1.0);
    let did_block = n >= 4 && blocks <= 2 && nums > blocks;
    let (strength, detail) = if did_block {
        (
            0.0,
            format!("{nums} distinct numbers in the last {n} inbound calls, all within {blocks} DID block(s)"),
        )
    } else {
        (
            ramp(ratio.min(block_ratio), 0.45, 0.85) * volume,
            format!(
                "{} inbound calls in {} to ~{:.0} distinct numbers ({nums} of the last {n} distinct)",
                w.calls_in, span, est
            ),
        )
    };
    Signal {
        name: "distinct_called",
        value: ratio,
        strength,
        detail,
    }
}

/// Concurrency pinned at a ceiling: the highest level held for >= 5 % of busy time, and the
/// share of busy time spent at it. Channel counts of gateway products (4/8/16/32) count more.
pub fn concurrency_ceiling(p: &Profile, c: &Ctx) -> Signal {
    let secs = p.level_seconds(c.now);
    let busy: f64 = secs.iter().skip(1).sum();
    let mut ceiling = 0usize;
    for lvl in (1..LEVELS).rev() {
        if secs.get(lvl).copied().unwrap_or(0.0) >= 0.05 * busy && busy > 0.0 {
            ceiling = lvl;
            break;
        }
    }
    let at: f64 = secs.iter().skip(ceiling.max(1)).sum();
    let share = if busy > 0.0 { at / busy } else { 0.0 };
    let channel_like = matches!(ceiling, 4 | 8 | 16 | 32);
    let mut strength = ramp(ceiling as f64, 2.0, 6.0) * ramp(share, 0.25, 0.55);
    if !channel_like {
        strength *= 0.8;
    }
    // Pinning needs time: a couple of minutes of busy time before full strength.
    strength *= ramp(busy, 30.0, 120.0);
    // Only traffic pushed into the line counts (dialers pin their outbound trunk too).
    let w = p.window(c.now, c.params);
    let pushed = f64::from(w.calls_in) + f64::from(w.opaque_flows);
    let all = f64::from(w.calls()) + f64::from(w.opaque_flows);
    let inbound_share = if all > 0.0 { pushed / all } else { 0.0 };
    strength *= ramp(inbound_share, 0.5, 0.8);
    Signal {
        name: "concurrency_ceiling",
        value: ceiling as f64,
        strength,
        detail: format!(
            "{} concurrent calls for {} of {} busy (max {}{})",
            ceiling,
            pct(share),
            minutes(busy),
            p.max_concurrent,
            if channel_like {
                ", a gateway channel count"
            } else {
                ""
            }
        ),
    }
}

/// Machine rhythm of inbound calls: short talk time and a low answer ratio. For lines without
/// readable SIP the same is read from opaque voice flows (their duration).
pub fn machine_rhythm(p: &Profile, c: &Ctx) -> Signal {
    let w = p.window(c.now, c.params);
    let min = f64::from(c.cfg.min_calls);
    let sip_n = f64::from(w.in_ended);
    // Durations decay slowly; only as many as ended inside the window count.
    let opaque_n = f64::from(p.opaque_durations.count()).min(f64::from(w.opaque_flows));
    if sip_n >= opaque_n || opaque_n == 0.0 {
        let asr = if sip_n > 0.0 {
            f64::from(w.in_answered) / sip_n
        } else {
            1.0
        };
        let median = p.talk.quantile(0.5);
        let short = median.map_or(0.0, |m| 1.0 - ramp(m, 60.0, 180.0));
        let low_asr = 1.0 - ramp(asr, 0.55, 0.85);
        let strength = ramp(sip_n, min - 1.0, min + 4.0)
            * (0.6 * short + 0.4 * low_asr).min(1.0)
            * if median.is_some() { 1.0 } else { 0.5 };
        Signal {
            name: "machine_rhythm",
            value: median.unwrap_or(0.0),
            strength,
            detail: format!(
                "{} inbound calls ended, {} answered (ASR {}), median talk {}",
                w.in_ended,
                w.in_answered,
                pct(asr),
                median.map_or("n/a".into(), minutes)
            ),
        }
    } else {
        let median = p.opaque_durations.quantile(0.5).unwrap_or(0.0);
        let strength = ramp(opaque_n, min - 1.0, min + 2.0) * (1.0 - ramp(median, 90.0, 240.0));
        Signal {
            name: "machine_rhythm",
            value: median,
            strength,
            detail: format!(
                "{} voice flows without readable SIP ended, median duration {}",
                p.opaque_durations.count(),
                minutes(median)
            ),
        }
    }
}

/// Gap regularity: the pause between a call ending and the next inbound call (or opaque flow)
/// re-seizing the channel is short and regular on a gateway fed by a softswitch.
pub fn gap_regularity(p: &Profile, c: &Ctx) -> Signal {
    let g = &p.gaps;
    // Gap statistics decay slowly; only as many as sessions started inside the window count.
    let w = p.window(c.now, c.params);
    let n = f64::from(g.n).min(f64::from(w.calls_in) + f64::from(w.opaque_flows));
    let mean = f64::from(g.mean);
    let cv = if mean > 0.0 {
        f64::from(g.sd()) / mean
    } else {
        0.0
    };
    let min = f64::from(c.cfg.min_calls);
    let strength =
        ramp(n, min, min + 7.0) * (1.0 - ramp(cv, 0.5, 0.9)) * (1.0 - ramp(mean, 6.0, 15.0));
    Signal {
        name: "gap_regularity",
        value: cv,
        strength,
        detail: format!(
            "{:.0} channel re-seizures, gap {:.1} s ± {:.1} s (CV {:.2})",
            n,
            mean,
            g.sd(),
            cv
        ),
    }
}

/// Many accounts registered from the line to one registrar (one per SIM port).
pub fn registrations(p: &Profile, c: &Ctx) -> Signal {
    let n = p.max_accounts_one_registrar(c.now);
    let strength = ramp(n as f64, 2.0, 6.0);
    let mut detail = format!("{n} accounts registered");
    if let Some(r) = p.top_registrar {
        let _ = write!(detail, " to {r}");
    }
    if let Some(e) = p.min_expires {
        let _ = write!(detail, ", shortest Expires {e} s");
    }
    Signal {
        name: "registrations",
        value: n as f64,
        strength,
        detail,
    }
}

/// Gateway product fingerprints (User-Agent/Server, Allow, SDP o=/s=).
pub fn fingerprint(p: &Profile, _c: &Ctx) -> Signal {
    let hits = f64::from(p.fingerprint_hits);
    let checked = f64::from(p.fingerprint_checked).max(1.0);
    match &p.fingerprint {
        Some(f) if hits > 0.0 => Signal {
            name: "fingerprint",
            value: hits / checked,
            strength: ramp(hits / checked, 0.2, 0.6),
            detail: format!(
                "{} \"{}\" matches gateway pattern \"{}\" ({} of {} records)",
                f.field.label(),
                f.value,
                f.pattern,
                p.fingerprint_hits,
                p.fingerprint_checked
            ),
        },
        _ => Signal {
            name: "fingerprint",
            value: 0.0,
            strength: 0.0,
            detail: String::new(),
        },
    }
}

/// Several voice-shaped flows at once to one peer without readable SIP: encrypted or proprietary
/// signalling with media that still looks like calls. One or two at a time is an app call.
pub fn opaque_media(p: &Profile, c: &Ctx) -> Signal {
    let peak = f64::from(p.opaque_peak_same_peer);
    let w = p.window(c.now, c.params);
    // Flows started in the last two buckets (10 min by default): a gateway starts dozens, a
    // household on app calls one or two. Concurrency is read when flows start, so a flow that
    // ended less than the media timeout ago may still count: hence the rate gate.
    let recent = f64::from(p.recent(c.now, c.params, 2).opaque_flows);
    let min = f64::from(c.cfg.min_calls);
    // Verified concurrency (read when flows end) counts from 3; the unverified count taken
    // when flows start, which a just-ended flow can inflate by one, only from 4.
    let verified = f64::from(p.opaque_verified_peak);
    let conc = ramp(verified, 1.5, 3.0).max(ramp(peak, 2.5, 4.0));
    let strength = conc * ramp(recent, min - 1.0, min + 2.0);
    let peer = p
        .top_peer()
        .filter(|x| x.opaque_flows > 0)
        .map_or(String::from("one peer"), |x| {
            format!("{}{}", x.ip, if x.domestic { "" } else { " (foreign)" })
        });
    Signal {
        name: "opaque_media",
        value: peak,
        strength,
        detail: format!(
            "up to {} concurrent voice-shaped flows ({} confirmed) to {} without readable SIP; {} such flows in {} ({:.0} in the last {})",
            p.opaque_peak_same_peer,
            p.opaque_verified_peak,
            peer,
            w.opaque_flows,
            minutes(p.window_span_secs(c.now, c.params)),
            recent,
            minutes(f64::from(c.cfg.window_secs) / 6.0)
        ),
    }
}

/// Every line signal, in a stable order.
pub fn signals(p: &Profile, c: &Ctx) -> Vec<Signal> {
    vec![
        foreign_inbound(p, c),
        distinct_called(p, c),
        concurrency_ceiling(p, c),
        machine_rhythm(p, c),
        gap_regularity(p, c),
        registrations(p, c),
        fingerprint(p, c),
        opaque_media(p, c),
    ]
}

fn weight(w: &Weights, name: &str) -> f64 {
    match name {
        "foreign_inbound" => w.foreign_inbound,
        "distinct_called" => w.distinct_called,
        "concurrency_ceiling" => w.concurrency_ceiling,
        "machine_rhythm" => w.machine_rhythm,
        "gap_regularity" => w.gap_regularity,
        "registrations" => w.registrations,
        "fingerprint" => w.fingerprint,
        "opaque_media" => w.opaque_media,
        "site" => w.site,
        _ => 0.0,
    }
}

/// Noisy-OR of weighted strengths, and the level it earns.
pub fn combine(sigs: &[Signal], cfg: &DetectionConfig) -> (f64, VerdictLevel) {
    let mut keep = 1.0;
    let mut strong = 0usize;
    for s in sigs {
        let ws = (weight(&cfg.weights, s.name) * s.strength).clamp(0.0, 1.0);
        keep *= 1.0 - ws;
        if s.strength >= 0.5 && weight(&cfg.weights, s.name) > 0.0 {
            strong += 1;
        }
    }
    let score = (1.0 - keep).clamp(0.0, 1.0);
    let level = if score >= cfg.gateway_score && strong >= cfg.gateway_min_signals {
        VerdictLevel::Gateway
    } else if score >= cfg.suspect_score {
        VerdictLevel::Suspect
    } else {
        VerdictLevel::Normal
    };
    (score, level)
}

/// Rhythm of a line for site grouping: median session duration (s) and inbound answer ratio.
fn rhythm(p: &Profile, c: &Ctx) -> Rhythm {
    let w = p.window(c.now, c.params);
    let median = p
        .talk
        .quantile(0.5)
        .or(p.opaque_durations.quantile(0.5))
        .unwrap_or(0.0);
    let asr = if w.in_ended > 0 {
        f64::from(w.in_answered) / f64::from(w.in_ended)
    } else {
        1.0
    };
    Rhythm { median, asr }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rhythm {
    median: f64,
    asr: f64,
}

impl Rhythm {
    /// Same rhythm: medians within a factor 1.6 and answer ratios within 0.2.
    fn close(&self, o: &Rhythm) -> bool {
        let (a, b) = (self.median.max(1.0), o.median.max(1.0));
        a.max(b) / a.min(b) <= 1.6 && (self.asr - o.asr).abs() <= 0.2
    }
}

/// Headline counters and profile figures of one line (JSON/HTTP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineSummary {
    pub line: IpAddr,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Start of the first call or voice flow.
    pub first_call: Option<Timestamp>,
    pub calls: u64,
    pub calls_in: u32,
    pub calls_out: u32,
    pub calls_internal: u32,
    pub calls_in_foreign: u32,
    pub calls_last_short_window: u32,
    pub calls_last_long_window: u32,
    pub answered_in: u32,
    pub ended_in: u32,
    pub answer_ratio_in: Option<f64>,
    pub median_talk_secs: Option<f64>,
    pub max_concurrent_calls: u32,
    pub open_calls: usize,
    pub distinct_called_estimate: f64,
    pub peers: Vec<PeerSummary>,
    pub peers_seen: u32,
    pub accounts_registered: usize,
    pub registrations: u32,
    pub user_agents_seen: u8,
    pub fingerprint: Option<String>,
    pub codecs: Vec<String>,
    pub voice_flows_sip: u32,
    pub voice_flows_opaque: u64,
    pub max_opaque_flows_one_peer: u16,
    pub other_flows: u32,
    pub active_hours_utc: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSummary {
    pub peer: IpAddr,
    pub domestic: bool,
    pub calls_in: u16,
    pub calls_out: u16,
    pub opaque_flows: u16,
}

/// Verdict state of one line between evaluations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct VerdictState {
    level: Option<VerdictLevel>,
    score: f64,
    base_score: f64,
    flagged_at: Option<Timestamp>,
    /// Last time the line earned `gateway` on current evidence, and with what score.
    gateway_seen: Option<Timestamp>,
    peak_score: f64,
    site: Option<String>,
    site_size: usize,
    reasons: Vec<Reason>,
    updated: Timestamp,
    dirty: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LineEntry {
    ip: IpAddr,
    profile: Profile,
    state: VerdictState,
}

const NIL: u32 = u32::MAX;

/// A slab slot in the LRU list.
#[derive(Clone, Debug)]
struct Slot {
    entry: Option<LineEntry>,
    prev: u32,
    next: u32,
}

/// All line profiles: an LRU-capped table fed events in capture order.
#[derive(Debug)]
pub struct LineTable {
    cfg: DetectionConfig,
    params: ProfileParams,
    index: crate::model::FastMap<IpAddr, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently used and least recently used slots.
    head: u32,
    tail: u32,
    dirty: Vec<u32>,
    evictions: u64,
    idle_evictions: u64,
    events_without_line: u64,
    last_eval: Timestamp,
    /// Lines that are suspect on their own evidence: site candidates (line -> peer, rhythm).
    candidates: BTreeMap<IpAddr, (IpAddr, Rhythm)>,
}

impl LineTable {
    pub fn new(cfg: &DetectionConfig, net: &NetworkConfig) -> Self {
        LineTable {
            cfg: cfg.clone(),
            params: cfg.profile_params(net),
            index: crate::model::FastMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            dirty: Vec::new(),
            evictions: 0,
            idle_evictions: 0,
            events_without_line: 0,
            last_eval: Timestamp::default(),
            candidates: BTreeMap::new(),
        }
    }

    /// Applies a new configuration (reload) keeping the profiles; every line is re-scored at the
    /// next `evaluate`, and the table shrinks to a smaller `max_lines`.
    pub fn reconfigure(&mut self, cfg: &DetectionConfig, net: &NetworkConfig) {
        self.cfg = cfg.clone();
        self.params = cfg.profile_params(net);
        while self.index.len() > self.cfg.max_lines.max(1) {
            self.evict_tail(false);
        }
        let all: Vec<u32> = self.index.values().copied().collect();
        for i in all {
            self.mark_dirty(i);
        }
    }

    pub fn config(&self) -> &DetectionConfig {
        &self.cfg
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// Lines evicted because the table was full (LRU).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
    /// Counters for metrics: evictions, idle removals, events without a line.
    pub fn counters(&self) -> crate::model::Counters {
        let mut c = crate::model::Counters::default();
        c.add("lines_evicted", self.evictions);
        c.add("lines_idle_removed", self.idle_evictions);
        c.add("events_without_line", self.events_without_line);
        c
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = match self.slots.get(i as usize) {
            Some(s) => (s.prev, s.next),
            None => return,
        };
        if let Some(p) = self.slots.get_mut(prev as usize) {
            p.next = next;
        } else {
            self.head = next;
        }
        if let Some(n) = self.slots.get_mut(next as usize) {
            n.prev = prev;
        } else {
            self.tail = prev;
        }
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.prev = NIL;
            s.next = NIL;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.prev = NIL;
            s.next = old;
        }
        if let Some(h) = self.slots.get_mut(old as usize) {
            h.prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    fn evict_tail(&mut self, idle: bool) {
        let i = self.tail;
        if i == NIL {
            return;
        }
        self.unlink(i);
        if let Some(e) = self.slots.get_mut(i as usize).and_then(|s| s.entry.take()) {
            self.index.remove(&e.ip);
            self.candidates.remove(&e.ip);
        }
        self.free.push(i);
        if idle {
            self.idle_evictions += 1;
        } else {
            self.evictions += 1;
        }
    }

    fn mark_dirty(&mut self, i: u32) {
        if let Some(e) = self
            .slots
            .get_mut(i as usize)
            .and_then(|s| s.entry.as_mut())
        {
            if !e.state.dirty {
                e.state.dirty = true;
                self.dirty.push(i);
            }
        }
    }

    /// The slot of `ip`, created (evicting the least recently used line when full) and moved to
    /// the front.
    fn slot_for(&mut self, ip: IpAddr, ts: Timestamp) -> u32 {
        if let Some(&i) = self.index.get(&ip) {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return i;
        }
        while self.index.len() >= self.cfg.max_lines.max(1) {
            self.evict_tail(false);
        }
        let entry = LineEntry {
            ip,
            profile: Profile::new(ts),
            state: VerdictState::default(),
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    s.entry = Some(entry);
                }
                i
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by a quarter (not double): at a million lines the slack is the
                    // largest memory cost after the profiles themselves.
                    let room = self.cfg.max_lines.saturating_sub(self.slots.len());
                    self.slots
                        .reserve_exact((self.slots.len() / 4).max(64).min(room.max(1)));
                }
                self.slots.push(Slot {
                    entry: Some(entry),
                    prev: NIL,
                    next: NIL,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(ip, i);
        self.push_front(i);
        i
    }

    /// Feeds one event (capture order).
    pub fn on_event(&mut self, ev: &Event) {
        let (line, ts) = match ev {
            Event::CallStarted { line, ts, .. } => (*line, *ts),
            Event::CallAnswered { line, ts, .. } => (*line, *ts),
            Event::CallEnded(r) => (r.line, r.end.unwrap_or(r.start)),
            Event::Registration(r) => (r.line, r.time),
            Event::MediaStarted { line, ts, .. } => (*line, *ts),
            Event::MediaEnded(r) => (r.line, r.last),
            // Probes are evidence about the peer (`threats`), never about the line.
            Event::Probe(_) => return,
        };
        let Some(ip) = line else {
            self.events_without_line += 1;
            return;
        };
        if matches!(ev, Event::CallAnswered { .. }) {
            return; // the answer is read from the call record when it ends
        }
        let i = self.slot_for(ip, ts);
        let params = &self.params;
        if let Some(e) = self
            .slots
            .get_mut(i as usize)
            .and_then(|s| s.entry.as_mut())
        {
            let p = &mut e.profile;
            match ev {
                Event::CallStarted {
                    call_id,
                    direction,
                    peer,
                    ts,
                    ..
                } => p.on_call_started(call_id, *direction, *peer, *ts, params),
                Event::CallEnded(r) => p.on_call_ended(r, params),
                Event::Registration(r) => p.on_registration(r, params),
                Event::MediaStarted {
                    local,
                    remote,
                    call_id,
                    ts,
                    ..
                } => p.on_media_started(*local, *remote, call_id.as_deref(), *ts, params),
                Event::MediaEnded(r) => p.on_media_ended(r, params),
                Event::CallAnswered { .. } | Event::Probe(_) => {}
            }
        }
        self.mark_dirty(i);
    }

    fn ctx(&self, now: Timestamp) -> Ctx<'_> {
        Ctx {
            now,
            cfg: &self.cfg,
            params: &self.params,
        }
    }

    /// Re-scores lines touched since the last call and returns those whose verdict, score (by
    /// 0.05 or more), site or reasons changed. Also drops lines idle beyond `line_idle_secs`.
    pub fn evaluate(&mut self, now: Timestamp) -> Vec<LineVerdict> {
        self.last_eval = self.last_eval.max(now);
        let idle_us = i64::from(self.cfg.line_idle_secs) * 1_000_000;
        while let Some(e) = self
            .slots
            .get(self.tail as usize)
            .and_then(|s| s.entry.as_ref())
        {
            if now.0.saturating_sub(e.profile.last_seen) <= idle_us {
                break;
            }
            self.evict_tail(true);
        }
        // 1. Base scores of touched lines; site candidates follow them.
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let Some(e) = self.slots.get(i as usize).and_then(|s| s.entry.as_ref()) else {
                continue;
            };
            let c = self.ctx(now);
            let sigs = signals(&e.profile, &c);
            let (base, _) = combine(&sigs, &self.cfg);
            let key = e.profile.top_peer().map(|x| (x.ip, rhythm(&e.profile, &c)));
            let ip = e.ip;
            match key {
                Some(k) if base >= self.cfg.suspect_score => {
                    self.candidates.insert(ip, k);
                }
                _ => {
                    self.candidates.remove(&ip);
                }
            }
            if let Some(e) = self
                .slots
                .get_mut(i as usize)
                .and_then(|s| s.entry.as_mut())
            {
                e.state.base_score = base;
            }
        }
        // 2. Sites from the candidates; members whose site changed are re-scored too.
        let sites = self.sites();
        let mut todo = dirty;
        for (ip, (site, size)) in &sites {
            if let Some(&i) = self.index.get(ip) {
                if let Some(e) = self.slots.get(i as usize).and_then(|s| s.entry.as_ref()) {
                    if e.state.site.as_deref() != Some(site.as_str()) || e.state.site_size != *size
                    {
                        todo.push(i);
                    }
                }
            }
        }
        // Lines that left a site.
        let left: Vec<u32> = self
            .index
            .iter()
            .filter(|(ip, _)| !sites.contains_key(ip))
            .filter_map(|(_, &i)| {
                let e = self.slots.get(i as usize)?.entry.as_ref()?;
                e.state.site.is_some().then_some(i)
            })
            .collect();
        // (Only candidates can hold a site, so this scan is over a small set in practice; it
        // is kept simple rather than indexed.)
        todo.extend(left);
        todo.sort_unstable();
        todo.dedup();
        let mut out = Vec::new();
        for i in todo {
            let site = self
                .slots
                .get(i as usize)
                .and_then(|s| s.entry.as_ref())
                .and_then(|e| sites.get(&e.ip).cloned());
            if let Some(v) = self.rescore(i, now, site) {
                out.push(v);
            }
        }
        out
    }

    /// Groups candidates by peer, then by rhythm (each joins the first group whose first member
    /// it is close to); groups of `site_min_lines` or more are sites.
    fn sites(&self) -> BTreeMap<IpAddr, (String, usize)> {
        let mut by_peer: BTreeMap<IpAddr, Vec<(Rhythm, Vec<IpAddr>)>> = BTreeMap::new();
        for (ip, (peer, r)) in &self.candidates {
            let groups = by_peer.entry(*peer).or_default();
            match groups.iter_mut().find(|(anchor, _)| anchor.close(r)) {
                Some((_, members)) => members.push(*ip),
                None => groups.push((*r, vec![*ip])),
            }
        }
        let mut out = BTreeMap::new();
        for (peer, groups) in by_peer {
            let mut k = 0;
            for (_, members) in groups {
                if members.len() < self.cfg.site_min_lines.max(2) {
                    continue;
                }
                k += 1;
                let name = if k == 1 {
                    format!("site-{peer}")
                } else {
                    format!("site-{peer}-{k}")
                };
                for m in &members {
                    out.insert(*m, (name.clone(), members.len()));
                }
            }
        }
        out
    }

    fn rescore(
        &mut self,
        i: u32,
        now: Timestamp,
        site: Option<(String, usize)>,
    ) -> Option<LineVerdict> {
        let e = self.slots.get(i as usize)?.entry.as_ref()?;
        let c = self.ctx(now);
        let mut sigs = signals(&e.profile, &c);
        if let Some((name, size)) = &site {
            let peer = e
                .profile
                .top_peer()
                .map(|x| x.ip.to_string())
                .unwrap_or_default();
            sigs.push(Signal {
                name: "site",
                value: *size as f64,
                strength: ramp(*size as f64, 1.0, 3.0),
                detail: format!(
                    "one of {size} lines in {name} taking traffic from {peer} with the same rhythm"
                ),
            });
        }
        let (score, level) = combine(&sigs, &self.cfg);
        let long_us = i64::from(self.cfg.long_window_secs) * 1_000_000;
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
        let prev = e.state.clone();
        let mut st = prev.clone();
        st.dirty = false;
        st.updated = now;
        st.base_score = prev.base_score;
        st.site = site.as_ref().map(|s| s.0.clone());
        st.site_size = site.as_ref().map_or(0, |s| s.1);
        let mut level = level;
        let mut score = score;
        if level == VerdictLevel::Gateway {
            st.gateway_seen = Some(now);
            st.peak_score = st.peak_score.max(score);
            if st.flagged_at.is_none() {
                st.flagged_at = Some(now);
            }
        } else if let Some(seen) = st
            .gateway_seen
            .filter(|s| now.0.saturating_sub(s.0) <= long_us)
        {
            // A gateway stays a gateway for the long window after it last earned it.
            reasons.push(Reason {
                signal: "flagged_earlier".into(),
                value: st.peak_score,
                strength: 0.0,
                detail: format!(
                    "earned gateway (score {:.2}) until {}; current evidence scores {:.2}",
                    st.peak_score, seen, score
                ),
            });
            level = VerdictLevel::Gateway;
            score = st.peak_score;
        }
        st.level = Some(level);
        st.score = score;
        st.reasons = reasons;
        let changed = prev.level != st.level
            || (prev.score - st.score).abs() >= 0.05
            || prev.site != st.site
            || signal_names(&prev.reasons) != signal_names(&st.reasons);
        let e = self.slots.get_mut(i as usize)?.entry.as_mut()?;
        e.state = st;
        changed.then(|| verdict_of(e))
    }

    /// Every line with activity, flagged first (gateway, suspect, normal; then by score).
    pub fn verdicts(&self) -> Vec<LineVerdict> {
        let mut v: Vec<LineVerdict> = self
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .map(verdict_of)
            .collect();
        v.sort_by(|a, b| {
            b.verdict
                .cmp(&a.verdict)
                .then(b.score.total_cmp(&a.score))
                .then(a.line.cmp(&b.line))
        });
        v
    }

    /// Headline counters and profile figures of one line.
    pub fn line_summary(&self, ip: IpAddr) -> Option<LineSummary> {
        let &i = self.index.get(&ip)?;
        let e = self.slots.get(i as usize)?.entry.as_ref()?;
        let p = &e.profile;
        let now = self.last_eval.max(Timestamp(p.last_seen));
        let w = p.window(now, &self.params);
        let l = p.long_window(now, &self.params);
        Some(LineSummary {
            line: ip,
            first_seen: Timestamp(p.first_seen),
            last_seen: Timestamp(p.last_seen),
            first_call: p.first_call.map(Timestamp),
            calls: p.calls_total + p.opaque_total,
            calls_in: w.calls_in.into(),
            calls_out: w.calls_out.into(),
            calls_internal: w.calls_internal.into(),
            calls_in_foreign: w.in_foreign.into(),
            calls_last_short_window: p.short_window(now, &self.params).calls(),
            calls_last_long_window: l.calls() + u32::from(l.opaque_flows),
            answered_in: w.in_answered.into(),
            ended_in: w.in_ended.into(),
            answer_ratio_in: (w.in_ended > 0)
                .then(|| f64::from(w.in_answered) / f64::from(w.in_ended)),
            median_talk_secs: p.talk.quantile(0.5),
            max_concurrent_calls: p.max_concurrent,
            open_calls: p.open_sessions(),
            distinct_called_estimate: p.distinct_called(now, &self.params).round(),
            peers: p
                .peers
                .iter()
                .flatten()
                .map(|x| PeerSummary {
                    peer: x.ip,
                    domestic: x.domestic,
                    calls_in: x.calls_in,
                    calls_out: x.calls_out,
                    opaque_flows: x.opaque_flows,
                })
                .collect(),
            peers_seen: p.peers_seen,
            accounts_registered: p.max_accounts_one_registrar(now),
            registrations: p.registrations_total,
            user_agents_seen: p.user_agents_seen,
            fingerprint: p
                .fingerprint
                .as_ref()
                .map(|f| format!("{}: {}", f.field.label(), f.value)),
            codecs: p.codec_names().into_iter().map(String::from).collect(),
            voice_flows_sip: w.sip_flows.into(),
            voice_flows_opaque: p.opaque_total,
            max_opaque_flows_one_peer: p.opaque_peak_same_peer,
            other_flows: p.other_flows,
            active_hours_utc: p.active_hours(),
        })
    }

    /// Lines in LRU order, least recently used first (for saving).
    fn entries_lru(&self) -> impl Iterator<Item = &LineEntry> {
        let mut i = self.tail;
        std::iter::from_fn(move || {
            let s = self.slots.get(i as usize)?;
            i = s.prev;
            s.entry.as_ref()
        })
    }
}

fn signal_names(r: &[Reason]) -> Vec<&str> {
    let mut v: Vec<&str> = r.iter().map(|x| x.signal.as_str()).collect();
    v.sort_unstable();
    v
}

fn verdict_of(e: &LineEntry) -> LineVerdict {
    LineVerdict {
        line: e.ip,
        verdict: e.state.level.unwrap_or(VerdictLevel::Normal),
        score: e.state.score,
        flagged_at: e.state.flagged_at,
        site: e.state.site.clone(),
        reasons: e.state.reasons.clone(),
        updated: e.state.updated,
        calls: e.profile.calls_total + e.profile.opaque_total,
        max_concurrent_calls: e.profile.max_concurrent,
    }
}

/// Saved form of the table (profiles in LRU order, oldest first, and the counters). The
/// configuration is not saved: a restored table takes the running one via `reconfigure`.
#[derive(Serialize)]
struct SavedRef<'a> {
    version: u32,
    last_eval: Timestamp,
    evictions: u64,
    idle_evictions: u64,
    lines: LinesRef<'a>,
}

struct LinesRef<'a>(&'a LineTable);

impl Serialize for LinesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.entries_lru())
    }
}

#[derive(Deserialize)]
struct SavedOwned {
    version: u32,
    last_eval: Timestamp,
    evictions: u64,
    idle_evictions: u64,
    lines: Vec<LineEntry>,
}

impl Serialize for LineTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SavedRef {
            version: 1,
            last_eval: self.last_eval,
            evictions: self.evictions,
            idle_evictions: self.idle_evictions,
            lines: LinesRef(self),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LineTable {
    /// Restores with the default configuration; call `reconfigure` with the running one.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let saved = SavedOwned::deserialize(d)?;
        if saved.version != 1 {
            return Err(serde::de::Error::custom(format!(
                "unknown line table version {}",
                saved.version
            )));
        }
        let mut t = LineTable::new(&DetectionConfig::default(), &NetworkConfig::default());
        t.last_eval = saved.last_eval;
        t.evictions = saved.evictions;
        t.idle_evictions = saved.idle_evictions;
        for mut e in saved.lines {
            if t.index.contains_key(&e.ip) {
                continue;
            }
            while t.index.len() >= t.cfg.max_lines.max(1) {
                t.evict_tail(false);
            }
            e.state.dirty = false;
            let ip = e.ip;
            t.slots.push(Slot {
                entry: Some(e),
                prev: NIL,
                next: NIL,
            });
            let i = (t.slots.len() - 1) as u32;
            t.index.insert(ip, i);
            t.push_front(i);
            t.mark_dirty(i);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::synth::{self, at, Builder, CallSpec, GatewaySpec};
    use super::*;
    use crate::model::{Direction, Outcome};
    use std::net::SocketAddr;

    fn net() -> NetworkConfig {
        NetworkConfig {
            domestic: vec![synth::DOMESTIC.parse().unwrap()],
            ..Default::default()
        }
    }
    fn cfg() -> DetectionConfig {
        DetectionConfig::default()
    }
    fn line() -> IpAddr {
        "10.9.0.1".parse().unwrap()
    }
    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Profile of `events` for `line()`, and the time of the last event.
    fn profile(events: &[Event], params: &ProfileParams) -> (Profile, Timestamp) {
        let mut t = LineTable::new(&cfg(), &net());
        t.params = params.clone();
        for e in events {
            t.on_event(e);
        }
        let i = *t.index.get(&line()).unwrap();
        let p = t.slots[i as usize].entry.as_ref().unwrap().profile.clone();
        let now = Timestamp(p.last_seen);
        (p, now)
    }

    fn sig(f: fn(&Profile, &Ctx) -> Signal, events: &[Event]) -> Signal {
        let c = cfg();
        let params = c.profile_params(&net());
        let (p, now) = profile(events, &params);
        f(
            &p,
            &Ctx {
                now,
                cfg: &c,
                params: &params,
            },
        )
    }

    /// `n` sequential calls, one every `every` seconds, with the given shape.
    fn calls(
        n: usize,
        every: f64,
        dir: Direction,
        from_peer: &str,
        to: impl Fn(usize) -> String,
        talk: impl Fn(usize) -> Option<f64>,
    ) -> Vec<Event> {
        let mut b = Builder::new(line(), 1);
        for i in 0..n {
            let spec = CallSpec {
                direction: dir,
                peer: peer(from_peer),
                from: "+442071234567".into(),
                to: to(i),
                start: i as f64 * every,
                ring: 5.0,
                talk: talk(i),
                fail: Outcome::NoAnswer,
                codec: "PCMA",
                media: false,
            };
            b.call(&spec);
        }
        b.finish()
    }

    #[test]
    fn ramp_edges() {
        assert_eq!(ramp(0.0, 1.0, 2.0), 0.0);
        assert_eq!(ramp(1.5, 1.0, 2.0), 0.5);
        assert_eq!(ramp(9.0, 1.0, 2.0), 1.0);
        assert_eq!(ramp(2.0, 2.0, 2.0), 1.0);
    }

    #[test]
    fn foreign_inbound_needs_foreign_peer_and_volume() {
        let own = |_| "+31205551234".to_string();
        let s = sig(
            foreign_inbound,
            &calls(10, 60.0, Direction::Inbound, synth::SOFTSWITCH, own, |_| {
                Some(30.0)
            }),
        );
        assert!(s.strength > 0.9, "{s:?}");
        assert!(s.detail.contains("203.0.113.10 (foreign)"), "{}", s.detail);
        let s = sig(
            foreign_inbound,
            &calls(10, 60.0, Direction::Inbound, synth::PROVIDER, own, |_| {
                Some(30.0)
            }),
        );
        assert_eq!(s.strength, 0.0);
        let s = sig(
            foreign_inbound,
            &calls(2, 60.0, Direction::Inbound, synth::SOFTSWITCH, own, |_| {
                Some(30.0)
            }),
        );
        assert_eq!(s.strength, 0.0, "two calls are not a pattern");
        let s = sig(
            foreign_inbound,
            &calls(
                10,
                60.0,
                Direction::Outbound,
                synth::SOFTSWITCH,
                own,
                |_| Some(30.0),
            ),
        );
        assert_eq!(
            s.strength, 0.0,
            "outbound calls abroad are not pushed traffic"
        );
    }

    #[test]
    fn distinct_called_spots_many_numbers_but_not_own_number_or_did_block() {
        let mobiles = |i: usize| format!("+86138{:08}", 1000 + i * 7919);
        let s = sig(
            distinct_called,
            &calls(
                16,
                30.0,
                Direction::Inbound,
                synth::SOFTSWITCH,
                mobiles,
                |_| None,
            ),
        );
        assert!(s.strength > 0.9 && s.value > 0.9, "{s:?}");
        let s = sig(
            distinct_called,
            &calls(
                16,
                30.0,
                Direction::Inbound,
                synth::SOFTSWITCH,
                |_| "+31205551234".into(),
                |_| None,
            ),
        );
        assert_eq!(s.strength, 0.0);
        assert!(s.value < 0.1);
        let did = |i: usize| format!("+312055501{:02}", i * 3);
        let s = sig(
            distinct_called,
            &calls(16, 30.0, Direction::Inbound, synth::PROVIDER, did, |_| None),
        );
        assert_eq!(s.strength, 0.0, "{s:?}");
        assert!(s.detail.contains("DID block"), "{}", s.detail);
        assert!(s.value > 0.9, "many numbers, but one block");
    }

    #[test]
    fn concurrency_ceiling_pinned_vs_varying() {
        // 8 channels kept busy for 10 minutes, 2 s re-seize.
        let g = GatewaySpec {
            channels: 8,
            asr: 1.0,
            talk: (50.0, 70.0),
            gap: (1.0, 3.0),
            ..Default::default()
        };
        let s = sig(
            concurrency_ceiling,
            &synth::gateway(line(), 3, 0.0, 600.0, &g),
        );
        assert_eq!(s.value, 8.0, "{s:?}");
        assert!(s.strength > 0.7, "{s:?}");
        // Poisson arrivals of long calls do not sit at one level.
        let s = sig(
            concurrency_ceiling,
            &synth::office_pbx(line(), 3, 0.0, 3600.0),
        );
        assert!(s.strength < 0.2, "{s:?}");
        // The same pinned pattern outbound (a dialer) is not pushed traffic.
        let s = sig(concurrency_ceiling, &synth::dialer(line(), 3, 0.0, 1200.0));
        assert_eq!(s.strength, 0.0, "{s:?}");
    }

    #[test]
    fn machine_rhythm_short_failed_calls_vs_conversations() {
        let s = sig(
            machine_rhythm,
            &calls(
                12,
                40.0,
                Direction::Inbound,
                synth::SOFTSWITCH,
                |_| "1".into(),
                |i| (i % 3 == 0).then_some(35.0),
            ),
        );
        assert!(s.strength > 0.8, "{s:?}");
        assert!(s.detail.contains("ASR 33 %"), "{}", s.detail);
        let s = sig(
            machine_rhythm,
            &calls(
                12,
                600.0,
                Direction::Inbound,
                synth::SOFTSWITCH,
                |_| "1".into(),
                |_| Some(420.0),
            ),
        );
        assert!(s.strength < 0.05, "{s:?}");
        // Opaque flows: short ones are call-like.
        let mut b = Builder::new(line(), 2);
        for i in 0..10 {
            b.flow(peer("203.0.113.10:40000"), f64::from(i) * 70.0, 45.0, true);
        }
        let s = sig(machine_rhythm, &b.finish());
        assert!(
            s.strength > 0.9 && s.detail.contains("without readable SIP"),
            "{s:?}"
        );
    }

    #[test]
    fn gap_regularity_short_regular_vs_sparse() {
        // One channel: call, 3 s pause, next call.
        let ev = calls(
            15,
            48.0,
            Direction::Inbound,
            synth::SOFTSWITCH,
            |_| "1".into(),
            |_| Some(40.0),
        );
        let s = sig(gap_regularity, &ev);
        assert!(s.strength > 0.9, "{s:?}");
        assert!(s.value < 0.2, "{s:?}");
        let ev = calls(
            15,
            1800.0,
            Direction::Inbound,
            synth::SOFTSWITCH,
            |_| "1".into(),
            |_| Some(40.0),
        );
        assert_eq!(sig(gap_regularity, &ev).strength, 0.0);
    }

    #[test]
    fn registrations_many_accounts_to_one_registrar() {
        let mut b = Builder::new(line(), 1);
        for i in 0..8 {
            b.register(
                &format!("sim{i}@sw"),
                peer(synth::SOFTSWITCH),
                f64::from(i),
                60,
            );
        }
        let s = sig(registrations, &b.finish());
        assert_eq!(s.value, 8.0);
        assert_eq!(s.strength, 1.0);
        assert!(
            s.detail.contains("to 203.0.113.10:5060") && s.detail.contains("Expires 60"),
            "{}",
            s.detail
        );
        let mut b = Builder::new(line(), 1);
        b.register("me@provider", peer(synth::PROVIDER), 0.0, 3600);
        b.register("me@provider", peer(synth::PROVIDER), 1800.0, 3600);
        assert_eq!(sig(registrations, &b.finish()).strength, 0.0);
    }

    #[test]
    fn fingerprint_matches_gateway_agents_only() {
        let mut b = Builder::new(line(), 1);
        b.user_agent = Some("dble GoIP-16".into());
        let spec = CallSpec {
            direction: Direction::Inbound,
            peer: peer(synth::SOFTSWITCH),
            from: "1".into(),
            to: "2".into(),
            start: 0.0,
            ring: 3.0,
            talk: Some(20.0),
            fail: Outcome::Busy,
            codec: "G729",
            media: false,
        };
        b.call(&spec);
        let s = sig(fingerprint, &b.finish());
        assert!(s.strength > 0.9, "{s:?}");
        assert!(
            s.detail.contains("User-Agent \"dble GoIP-16\""),
            "{}",
            s.detail
        );
        let mut b = Builder::new(line(), 1);
        b.user_agent = Some("Asterisk PBX 18".into());
        b.call(&spec);
        assert_eq!(sig(fingerprint, &b.finish()).strength, 0.0);
    }

    #[test]
    fn opaque_media_many_flows_to_one_peer_vs_app_calls() {
        let g = GatewaySpec {
            opaque: true,
            ..Default::default()
        };
        let s = sig(opaque_media, &synth::gateway(line(), 5, 0.0, 600.0, &g));
        assert!(s.value >= 4.0 && s.strength > 0.9, "{s:?}");
        let s = sig(opaque_media, &synth::app_calls(line(), 5, 0.0, 7200.0));
        assert!(s.value <= 3.0 && s.strength <= 0.5, "{s:?}");
    }

    #[test]
    fn one_signal_alone_is_never_a_gateway() {
        let c = cfg();
        let one = vec![Signal {
            name: "opaque_media",
            value: 9.0,
            strength: 1.0,
            detail: String::new(),
        }];
        let (score, level) = combine(&one, &c);
        assert!((score - c.weights.opaque_media).abs() < 1e-9);
        assert!(level < VerdictLevel::Gateway);
        let mut two = one.clone();
        two.push(Signal {
            name: "machine_rhythm",
            value: 40.0,
            strength: 1.0,
            detail: String::new(),
        });
        assert_eq!(combine(&two, &c).1, VerdictLevel::Gateway);
    }

    fn feed(t: &mut LineTable, ev: &[Event]) {
        for e in ev {
            t.on_event(e);
        }
    }

    #[test]
    fn lru_evicts_least_recent_line_and_counts() {
        let c = DetectionConfig {
            max_lines: 2,
            ..cfg()
        };
        let mut t = LineTable::new(&c, &net());
        for (k, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3"]
            .iter()
            .enumerate()
        {
            let mut b = Builder::new(ip.parse().unwrap(), 1);
            b.register("a@b", peer(synth::PROVIDER), k as f64, 3600);
            feed(&mut t, &b.finish());
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.evictions(), 1);
        assert!(
            t.line_summary("10.0.0.2".parse().unwrap()).is_none(),
            "10.0.0.2 was least recent"
        );
        assert!(t.line_summary("10.0.0.1".parse().unwrap()).is_some());
    }

    #[test]
    fn idle_lines_are_dropped() {
        let c = DetectionConfig {
            line_idle_secs: 3600,
            ..cfg()
        };
        let mut t = LineTable::new(&c, &net());
        feed(&mut t, &synth::household(line(), 1, 0.0, 600.0));
        assert_eq!(t.len(), 1);
        t.evaluate(at(600.0 + 7200.0));
        assert_eq!(t.len(), 0);
        assert_eq!(t.counters().get("lines_idle_removed"), 1);
    }

    #[test]
    fn evaluate_reports_changes_only_and_flags_once() {
        let mut t = LineTable::new(&cfg(), &net());
        let ev = synth::gateway(line(), 1, 0.0, 600.0, &GatewaySpec::default());
        feed(&mut t, &ev);
        let first = t.evaluate(at(600.0));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].verdict, VerdictLevel::Gateway);
        let flagged = first[0].flagged_at;
        assert!(
            t.evaluate(at(605.0)).is_empty(),
            "nothing touched, nothing reported"
        );
        feed(
            &mut t,
            &synth::gateway(line(), 2, 600.0, 60.0, &GatewaySpec::default()),
        );
        let again = t.evaluate(at(700.0));
        assert!(again.iter().all(|v| v.flagged_at == flagged));
        assert_eq!(t.verdicts()[0].flagged_at, flagged);
    }

    #[test]
    fn gateway_verdict_holds_through_a_quiet_shift() {
        let mut t = LineTable::new(&cfg(), &net());
        feed(
            &mut t,
            &synth::gateway(line(), 1, 0.0, 600.0, &GatewaySpec::default()),
        );
        t.evaluate(at(600.0));
        // Two hours later one household-like call touches the line.
        let mut b = Builder::new(line(), 9);
        b.register("x@y", peer(synth::PROVIDER), 8000.0, 3600);
        feed(&mut t, &b.finish());
        t.evaluate(at(8000.0));
        let v = &t.verdicts()[0];
        assert_eq!(v.verdict, VerdictLevel::Gateway);
        assert!(
            v.reasons.iter().any(|r| r.signal == "flagged_earlier"),
            "{v:?}"
        );
    }

    #[test]
    fn site_groups_lines_sharing_softswitch_and_rhythm() {
        let mut t = LineTable::new(&cfg(), &net());
        let g = GatewaySpec {
            channels: 4,
            ..Default::default()
        };
        for (k, ip) in ["10.3.0.1", "10.3.0.2", "10.3.0.3"].iter().enumerate() {
            feed(
                &mut t,
                &synth::gateway(ip.parse().unwrap(), k as u64, 0.0, 900.0, &g),
            );
        }
        feed(
            &mut t,
            &synth::household("10.3.0.9".parse().unwrap(), 1, 0.0, 900.0),
        );
        t.evaluate(at(900.0));
        let v = t.verdicts();
        let sites: Vec<_> = v.iter().filter_map(|x| x.site.clone()).collect();
        assert_eq!(sites.len(), 3, "{v:?}");
        assert!(sites.iter().all(|s| s == "site-203.0.113.10"));
        let r = v[0]
            .reasons
            .iter()
            .find(|r| r.signal == "site")
            .expect("site reason");
        assert!(r.detail.contains("one of 3 lines"), "{}", r.detail);
        assert!(v
            .iter()
            .find(|x| x.line == "10.3.0.9".parse::<IpAddr>().unwrap())
            .unwrap()
            .site
            .is_none());
    }

    #[test]
    fn table_round_trips_through_serde() {
        let mut t = LineTable::new(&cfg(), &net());
        feed(
            &mut t,
            &synth::gateway(line(), 1, 0.0, 600.0, &GatewaySpec::default()),
        );
        feed(
            &mut t,
            &synth::household("10.9.0.2".parse().unwrap(), 1, 0.0, 600.0),
        );
        t.evaluate(at(600.0));
        let json = serde_json::to_string(&t).unwrap();
        let mut back: LineTable = serde_json::from_str(&json).unwrap();
        back.reconfigure(&cfg(), &net());
        assert_eq!(back.len(), 2);
        let same = |a: &[LineVerdict], b: &[LineVerdict]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.line == y.line
                        && x.verdict == y.verdict
                        && (x.score - y.score).abs() < 1e-9
                        && x.flagged_at == y.flagged_at
                        && x.reasons.len() == y.reasons.len()
                        && x.calls == y.calls
                })
        };
        assert!(same(&back.verdicts(), &t.verdicts()));
        let (a, b) = (
            back.line_summary(line()).unwrap(),
            t.line_summary(line()).unwrap(),
        );
        assert_eq!(
            (a.calls, a.max_concurrent_calls, a.calls_in),
            (b.calls, b.max_concurrent_calls, b.calls_in)
        );
        // Re-evaluating the restored table reproduces the same verdicts.
        back.evaluate(at(600.0));
        let (a, b) = (back.verdicts(), t.verdicts());
        assert_eq!(a[0].verdict, b[0].verdict);
        assert!((a[0].score - b[0].score).abs() < 1e-9);
        assert!(serde_json::from_str::<LineTable>("{\"version\":9,\"last_eval\":\"2026-01-01T00:00:00Z\",\"evictions\":0,\"idle_evictions\":0,\"lines\":[]}").is_err());
    }

    #[test]
    fn config_defaults_validate_and_reject_nonsense() {
        assert!(cfg().validate().is_ok());
        let bad = DetectionConfig {
            gateway_score: 0.3,
            ..cfg()
        };
        assert_eq!(bad.validate().unwrap_err().key, "gateway_score");
        let mut bad = cfg();
        bad.weights.site = 1.5;
        assert_eq!(bad.validate().unwrap_err().key, "weights.site");
        let parsed: DetectionConfig =
            toml::from_str("gateway_score = 0.8\n[weights]\nsite = 0.1\n").unwrap();
        assert_eq!(parsed.gateway_score, 0.8);
        assert_eq!(parsed.weights.site, 0.1);
        assert_eq!(parsed.weights.opaque_media, Weights::default().opaque_media);
        assert!(toml::from_str::<DetectionConfig>("bogus = 1\n").is_err());
    }
}
