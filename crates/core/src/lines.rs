//! Line profiles: bounded per-line behaviour state built from the call/media event stream.
//!
//! Contract: a [`Profile`] takes the events of one line in capture order (`on_*`), keeps only
//! fixed-size state (bucket rings, histograms, small sketches; the two growable lists are capped
//! and empty when the line is idle) and never panics on any input. Every figure is windowed or
//! decayed by packet time, never the wall clock. Scoring lives in `detect`, which reads profiles
//! through the accessors here; the table of all lines (`LineTable`) lives there too and is
//! re-exported here for convenience.

use crate::config::NetworkConfig;
use crate::model::{
    CallRecord, Direction, MediaFlowRecord, Outcome, Participation, RegOutcome, RegistrationRecord,
    SipOnlyAnswers, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

const US: i64 = 1_000_000;

/// Counters kept per time bucket (saturating).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bucket {
    /// SIP calls into the line.
    pub(crate) calls_in: u16,
    /// SIP calls out of the line (to a peer outside the home networks).
    pub(crate) calls_out: u16,
    /// SIP calls inside the home networks.
    pub(crate) calls_internal: u16,
    /// Inbound SIP calls whose peer is not domestic.
    pub(crate) in_foreign: u16,
    /// Inbound SIP calls that ended in this bucket, and how many of them the line answered.
    pub(crate) in_ended: u16,
    pub(crate) in_answered: u16,
    /// Inbound calls the line took part in, counted in this bucket: an answered call once
    /// voice flows both ways or, on a line whose tap carries no media, once its answer has
    /// lasted (both while it runs), else at its end (early media it sent); how many of those
    /// came from foreign peers, and how many the line answered.
    pub(crate) in_taken: u16,
    pub(crate) in_taken_foreign: u16,
    pub(crate) in_taken_answered: u16,
    /// Calls ended in this bucket whose record carried RTP (the tap shows this line's media).
    pub(crate) media_calls: u16,
    /// Voice-shaped media flows without readable SIP (no call id), and with it.
    pub(crate) opaque_flows: u16,
    pub(crate) sip_flows: u16,
    /// Opaque voice flows confirmed in this bucket to have run beside another flow to the same
    /// peer (each counted once, when a flow's end shows it): channels of one box held at once,
    /// again and again.
    #[serde(default)]
    pub(crate) opaque_overlapped: u16,
}

/// What the long ring keeps per bucket: the figures read over the long window only (its
/// buckets are a quarter of a medium bucket's size; a day of them per line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct LongBucket {
    /// SIP calls started (in, out and internal).
    pub(crate) calls: u32,
    pub(crate) opaque_flows: u16,
    pub(crate) media_calls: u16,
}

impl<'de> Deserialize<'de> for LongBucket {
    /// Also reads a whole [`Bucket`] (the long ring's form in JSON state of earlier versions).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct AnyForm {
                calls: Option<u32>,
                opaque_flows: u16,
                media_calls: u16,
                calls_in: u16,
                calls_out: u16,
                calls_internal: u16,
            }
            let a = AnyForm::deserialize(d)?;
            Ok(LongBucket {
                calls: a.calls.unwrap_or(
                    u32::from(a.calls_in) + u32::from(a.calls_out) + u32::from(a.calls_internal),
                ),
                opaque_flows: a.opaque_flows,
                media_calls: a.media_calls,
            })
        } else {
            #[derive(Deserialize)]
            struct Compact(u32, u16, u16);
            let Compact(calls, opaque_flows, media_calls) = Compact::deserialize(d)?;
            Ok(LongBucket {
                calls,
                opaque_flows,
                media_calls,
            })
        }
    }
}

/// A bucket of a time ring.
trait RingCell: Default + Copy {
    fn add(&mut self, o: &Self);
}

impl RingCell for LongBucket {
    fn add(&mut self, o: &LongBucket) {
        self.calls = self.calls.saturating_add(o.calls);
        self.opaque_flows = self.opaque_flows.saturating_add(o.opaque_flows);
        self.media_calls = self.media_calls.saturating_add(o.media_calls);
    }
}

impl LongBucket {
    fn of(b: &Bucket) -> LongBucket {
        LongBucket {
            calls: b.calls(),
            opaque_flows: b.opaque_flows,
            media_calls: b.media_calls,
        }
    }
}

impl RingCell for Bucket {
    fn add(&mut self, o: &Bucket) {
        Bucket::add(self, o);
    }
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        self.calls_in = self.calls_in.saturating_add(o.calls_in);
        self.calls_out = self.calls_out.saturating_add(o.calls_out);
        self.calls_internal = self.calls_internal.saturating_add(o.calls_internal);
        self.in_foreign = self.in_foreign.saturating_add(o.in_foreign);
        self.in_ended = self.in_ended.saturating_add(o.in_ended);
        self.in_answered = self.in_answered.saturating_add(o.in_answered);
        self.in_taken = self.in_taken.saturating_add(o.in_taken);
        self.in_taken_foreign = self.in_taken_foreign.saturating_add(o.in_taken_foreign);
        self.in_taken_answered = self.in_taken_answered.saturating_add(o.in_taken_answered);
        self.media_calls = self.media_calls.saturating_add(o.media_calls);
        self.opaque_flows = self.opaque_flows.saturating_add(o.opaque_flows);
        self.sip_flows = self.sip_flows.saturating_add(o.sip_flows);
        self.opaque_overlapped = self.opaque_overlapped.saturating_add(o.opaque_overlapped);
    }
    /// All SIP calls started.
    pub(crate) fn calls(&self) -> u32 {
        u32::from(self.calls_in) + u32::from(self.calls_out) + u32::from(self.calls_internal)
    }
    /// Calls the line took part in: inbound calls it took and calls it placed.
    pub(crate) fn calls_taken(&self) -> u32 {
        u32::from(self.in_taken) + u32::from(self.calls_out) + u32::from(self.calls_internal)
    }
}

/// A ring of time buckets over a slice: `newest` is the bucket index (time / width) of the newest.
fn ring_slot<'a, B: RingCell>(
    ring: &'a mut [B],
    newest: &mut i64,
    t: i64,
    width: i64,
) -> Option<&'a mut B> {
    let n = ring.len() as i64;
    if n == 0 || width <= 0 {
        return None;
    }
    let idx = t.div_euclid(width);
    if idx > *newest {
        let steps = (idx - *newest).min(n);
        for k in 0..steps {
            let i = (idx - k).rem_euclid(n) as usize;
            if let Some(b) = ring.get_mut(i) {
                *b = B::default();
            }
        }
        *newest = idx;
    } else if idx <= *newest - n {
        return None; // older than the ring
    }
    ring.get_mut(idx.rem_euclid(n) as usize)
}

/// Sum of the buckets covering `(now - window, now]` (whole buckets).
fn ring_sum<B: RingCell>(ring: &[B], newest: i64, now: i64, width: i64) -> B {
    let mut s = B::default();
    let n = ring.len() as i64;
    if n == 0 || width <= 0 {
        return s;
    }
    let now_idx = now.div_euclid(width).max(newest);
    for idx in (now_idx - n + 1)..=now_idx {
        if idx > newest || idx <= newest - n {
            continue;
        }
        if let Some(b) = ring.get(idx.rem_euclid(n) as usize) {
            s.add(b);
        }
    }
    s
}

/// Upper edges (seconds) of the duration histogram bins; the last bin is open.
pub(crate) const DURATION_EDGES: [f64; 9] =
    [10.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0];

/// Log-spaced histogram of durations (seconds), decayed by halving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DurationHist(pub [u16; 10]);

impl DurationHist {
    /// Counts one duration of `secs` seconds in its bin (bin counts saturate).
    pub(crate) fn add(&mut self, secs: f64) {
        let i = DURATION_EDGES
            .iter()
            .position(|&e| secs < e)
            .unwrap_or(DURATION_EDGES.len());
        if let Some(c) = self.0.get_mut(i) {
            *c = c.saturating_add(1);
        }
    }
    /// Durations counted (sum of the bins).
    pub(crate) fn count(&self) -> u32 {
        self.0.iter().map(|&c| u32::from(c)).sum()
    }
    /// Quantile `q` (0..1) by linear interpolation inside the bin; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * f64::from(total);
        let mut acc = 0.0;
        let mut lo = 0.0;
        for (i, &c) in self.0.iter().enumerate() {
            let hi = DURATION_EDGES.get(i).copied().unwrap_or(2400.0);
            let c = f64::from(c);
            if c > 0.0 && acc + c >= target {
                return Some(lo + (hi - lo) * ((target - acc) / c).clamp(0.0, 1.0));
            }
            acc += c;
            lo = hi;
        }
        Some(lo)
    }
    fn halve(&mut self) {
        for c in &mut self.0 {
            *c /= 2;
        }
    }
}

/// 64-register HyperLogLog (6-bit registers packed 8 per word), about 13 % standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hll64(pub [u64; 8]);

impl Hll64 {
    fn reg(&self, i: usize) -> u8 {
        let w = self.0.get(i / 8).copied().unwrap_or(0);
        ((w >> ((i % 8) * 8)) & 0xff) as u8
    }
    fn set_reg(&mut self, i: usize, v: u8) {
        if let Some(w) = self.0.get_mut(i / 8) {
            let shift = (i % 8) * 8;
            *w = (*w & !(0xffu64 << shift)) | (u64::from(v) << shift);
        }
    }
    pub(crate) fn insert(&mut self, h: u64) {
        let i = (h & 63) as usize;
        let rank = ((h >> 6).leading_zeros().saturating_sub(6) + 1).min(58) as u8;
        if rank > self.reg(i) {
            self.set_reg(i, rank);
        }
    }
    pub(crate) fn merge(&self, o: &Hll64) -> Hll64 {
        let mut r = *self;
        for i in 0..64 {
            let v = o.reg(i);
            if v > r.reg(i) {
                r.set_reg(i, v);
            }
        }
        r
    }
    pub(crate) fn estimate(&self) -> f64 {
        let m = 64.0;
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for i in 0..64 {
            let r = self.reg(i);
            if r == 0 {
                zeros += 1;
            }
            sum += 2f64.powi(-i32::from(r));
        }
        let e = 0.709 * m * m / sum;
        if e <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            e
        }
    }
}

/// 64-bit FNV-1a with a final mix: stable across runs, so saved profiles stay valid.
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn hash_ip(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => hash_bytes(&a.octets()) as u32,
        IpAddr::V6(a) => hash_bytes(&a.octets()) as u32,
    }
}

/// The key a call is kept by among the line's open sessions.
pub(crate) fn call_key(call_id: &str) -> u32 {
    hash_bytes(call_id.as_bytes()) as u32
}

/// `called_keys` packed in one word as kept per call: `number << 32 | block`.
fn called_key(user: &str) -> u64 {
    let (num, block) = called_keys(user);
    (u64::from(num) << 32) | u64::from(block)
}

/// A called number reduced to (number key, block key). Numbers in different formats
/// (`138...`, `+86138...`, `0086138...`) share their last nine digits; a DID block shares all but
/// the last three of those. Short or non-numeric users (extensions, names) all fall in one block.
pub(crate) fn called_keys(user: &str) -> (u32, u32) {
    let digits: Vec<u8> = user
        .bytes()
        .take(64)
        .filter(|b| b.is_ascii_digit())
        .collect();
    if digits.len() >= 7 {
        let tail = digits
            .get(digits.len().saturating_sub(9)..)
            .unwrap_or(&digits);
        let block = tail.get(..tail.len().saturating_sub(3)).unwrap_or(tail);
        (hash_bytes(tail) as u32, hash_bytes(block) as u32 | 1)
    } else {
        let lower: Vec<u8> = user
            .bytes()
            .take(64)
            .map(|b| b.to_ascii_lowercase())
            .collect();
        (hash_bytes(&lower) as u32, 1)
    }
}

/// Which field a fingerprint matched in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FpField {
    /// The `User-Agent` header.
    UserAgent,
    /// The `Server` header.
    Server,
    /// The `Allow` header (compared as a set of methods).
    Allow,
    /// The SDP `o=` username.
    SdpOrigin,
    /// The SDP `s=` session name.
    SdpSession,
}

impl FpField {
    /// The field's name as shown to people (`User-Agent`, `SDP o=`, ...).
    pub(crate) fn label(self) -> &'static str {
        match self {
            FpField::UserAgent => "User-Agent",
            FpField::Server => "Server",
            FpField::Allow => "Allow",
            FpField::SdpOrigin => "SDP o=",
            FpField::SdpSession => "SDP s=",
        }
    }
}

/// Gateway fingerprint patterns, lower-cased. A pattern starting with `=` must equal the whole
/// (trimmed) value; otherwise it is a substring. Allow sets compare as sorted method sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FingerprintSet {
    /// User-Agent/Server patterns (lower-cased).
    pub(crate) agents: Vec<String>,
    /// SDP `o=`/`s=` patterns (lower-cased).
    pub(crate) sdp: Vec<String>,
    pub(crate) allow_sets: Vec<Vec<String>>,
}

impl FingerprintSet {
    /// The set from configured patterns: agent and SDP patterns are trimmed and lower-cased, each
    /// allow set (comma-separated methods) becomes a sorted set of upper-case methods.
    pub(crate) fn new(agents: &[String], sdp: &[String], allow_sets: &[String]) -> Self {
        FingerprintSet {
            agents: agents
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            sdp: sdp.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
            allow_sets: allow_sets.iter().map(|s| method_set(s)).collect(),
        }
    }
    fn text_match(patterns: &[String], value: &str) -> Option<usize> {
        let v = value.trim().to_ascii_lowercase();
        patterns.iter().position(|p| match p.strip_prefix('=') {
            Some(exact) => v == exact,
            None => !p.is_empty() && v.contains(p.as_str()),
        })
    }
    /// The first pattern matching `value` in `field`, as its text.
    pub(crate) fn matches(&self, field: FpField, value: &str) -> Option<String> {
        match field {
            FpField::UserAgent | FpField::Server => {
                Self::text_match(&self.agents, value).and_then(|i| self.agents.get(i).cloned())
            }
            FpField::SdpOrigin | FpField::SdpSession => {
                Self::text_match(&self.sdp, value).and_then(|i| self.sdp.get(i).cloned())
            }
            FpField::Allow => {
                let set = method_set(value);
                self.allow_sets
                    .iter()
                    .find(|s| !s.is_empty() && **s == set)
                    .map(|s| s.join(","))
            }
        }
    }
}

fn method_set(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .take(32)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// What a profile needs from configuration while ingesting.
#[derive(Clone, Debug)]
pub(crate) struct ProfileParams {
    /// Medium window (signals), 12 buckets.
    pub(crate) window_us: i64,
    /// Long window (summary, activity), 24 buckets.
    pub(crate) long_window_us: i64,
    /// Calls and flows tracked as open at once per line (concurrency), beyond which they are
    /// not tracked (counted in `open_overflow`).
    pub(crate) max_open: usize,
    /// Registered accounts remembered per line.
    pub(crate) max_accounts: usize,
    /// A call starting this soon after another ended re-seizes its channel (gap statistic).
    pub(crate) refill_us: i64,
    /// On a line whose tap carries no media, when an answered call counts as taken.
    pub(crate) sip_only: SipOnlyAnswers,
    /// Home and domestic networks (which peers are foreign).
    pub(crate) network: NetworkConfig,
    /// Gateway fingerprint patterns.
    pub(crate) fingerprints: FingerprintSet,
}

impl Default for ProfileParams {
    fn default() -> Self {
        ProfileParams {
            window_us: 3600 * US,
            long_window_us: 86400 * US,
            max_open: 64,
            max_accounts: 32,
            refill_us: 30 * US,
            sip_only: SipOnlyAnswers::default(),
            network: NetworkConfig::default(),
            fingerprints: FingerprintSet::default(),
        }
    }
}

impl ProfileParams {
    fn medium_width(&self) -> i64 {
        (self.window_us / MEDIUM_BUCKETS as i64).max(US)
    }
    fn long_width(&self) -> i64 {
        (self.long_window_us / LONG_BUCKETS as i64).max(US)
    }
}

pub(crate) const MEDIUM_BUCKETS: usize = 12;
pub(crate) const LONG_BUCKETS: usize = 24;
/// Concurrency levels tracked in the time-at-level histogram (the last one is "this or more").
pub(crate) const LEVELS: usize = 32;
/// Longest ring time moved up a level when an inbound call is answered (see `on_call_answered`).
const MAX_RING_US: i64 = 180 * US;

/// A remote peer of the line, kept with space-saving counts (the least used is replaced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerStat {
    /// The peer's address.
    pub(crate) ip: IpAddr,
    /// Inbound calls offered by this peer (INVITEs, whatever the line did with them).
    pub(crate) calls_in: u16,
    /// Of those, calls the line took part in.
    #[serde(default)]
    pub(crate) taken_in: u16,
    /// Outbound calls the line placed to this peer.
    pub(crate) calls_out: u16,
    /// Voice-shaped flows without readable SIP to this peer.
    pub(crate) opaque_flows: u16,
    /// Whether the peer is inside the domestic networks.
    pub(crate) domestic: bool,
}

impl PeerStat {
    /// Rank of the peer among the line's peers: offered inbound calls, plus eight times the calls
    /// the line took part in, plus outbound calls and opaque flows. The lowest is replaced first.
    pub(crate) fn weight(&self) -> u32 {
        // Calls the line took part in weigh more than offers anyone can send.
        u32::from(self.calls_in)
            + 8 * u32::from(self.taken_in)
            + u32::from(self.calls_out)
            + u32::from(self.opaque_flows)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum SessionKind {
    /// A call the line placed.
    Call,
    Opaque,
    /// An inbound call the line answered.
    Answered,
}

/// A call or an opaque voice flow in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OpenSession {
    key: u32,
    remote: u32,
    kind: SessionKind,
    /// When the start was reported (microseconds).
    start: i64,
    /// An opaque flow confirmed to have run beside another to the same peer (counted once).
    #[serde(default)]
    overlapped: bool,
    /// An answered inbound call: the caller's address and the called number's keys
    /// (`number << 32 | block`, 0 when none), what counting it as taken needs before it ends.
    #[serde(default)]
    peer: Option<IpAddr>,
    #[serde(default)]
    called: u64,
    /// An answered inbound call already counted as taken: voice flowed both ways while it ran
    /// (see `on_media_started`), or on a tap without media its answer lasted while it ran
    /// (`on_sip_only_answer_due`). Its end does not count it again.
    #[serde(default)]
    taken: bool,
}

/// One registered account (hashes only) and when its binding lapses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    account: u32,
    registrar: u32,
    until: i64,
}

/// The first fingerprint seen on the line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    /// Which field matched.
    pub(crate) field: FpField,
    /// The value that matched, as seen (its first 64 characters).
    pub(crate) value: String,
    /// The configured pattern it matched.
    pub(crate) pattern: String,
}

/// Codec names tracked in `codecs` (bit i = `CODECS[i]`, the last bit is "other").
pub(crate) const CODECS: [&str; 11] = [
    "PCMU", "PCMA", "G729", "G722", "G723", "GSM", "iLBC", "opus", "AMR", "AMR-WB", "other",
];

fn codec_bit(name: &str) -> u16 {
    let i = CODECS
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name.trim()))
        .unwrap_or(CODECS.len() - 1);
    1 << i
}

/// Welford statistics with decay (halving the weight keeps mean and variance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunningStats {
    /// Weight of the samples (halved by decay).
    pub(crate) n: f32,
    /// Mean of the samples.
    pub(crate) mean: f32,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub(crate) m2: f32,
}

impl RunningStats {
    /// Adds one sample.
    pub(crate) fn add(&mut self, x: f32) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    /// Sample standard deviation; 0 with fewer than two samples.
    pub(crate) fn sd(&self) -> f32 {
        if self.n < 2.0 {
            0.0
        } else {
            (self.m2 / (self.n - 1.0)).max(0.0).sqrt()
        }
    }
    fn halve(&mut self) {
        self.n /= 2.0;
        self.m2 /= 2.0;
    }
}

/// Per-line behaviour profile. Fixed size apart from two capped lists that are empty when the
/// line is idle (open sessions, registered accounts) and one optional fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Capture time the line was first seen (microseconds since the epoch).
    pub(crate) first_seen: i64,
    /// Capture time of the line's latest event (microseconds since the epoch).
    pub(crate) last_seen: i64,
    /// Start of the first call or voice flow (time-to-detect is measured from it).
    pub(crate) first_call: Option<i64>,
    /// Medium-window ring (12 buckets) and long-window ring (24 buckets).
    medium: [Bucket; MEDIUM_BUCKETS],
    medium_newest: i64,
    long: [LongBucket; LONG_BUCKETS],
    long_newest: i64,
    /// Lifetime totals (saturating).
    pub(crate) calls_total: u64,
    pub(crate) opaque_total: u64,
    /// Media flows that ended without being voice-shaped.
    pub(crate) other_flows: u32,
    /// Most calls and opaque flows open at once.
    pub(crate) max_concurrent: u32,
    /// Time (0.1 s units) spent at each concurrency level of calls + opaque flows.
    level_time: [u32; LEVELS],
    level_since: i64,
    open: Vec<OpenSession>,
    pub(crate) open_overflow: u32,
    /// Most opaque flows to one peer at once (since the last decay), counted when flows start:
    /// a flow that ended less than the media timeout before may still be counted.
    pub(crate) opaque_peak_same_peer: u16,
    /// The same, verified when flows end (their true start is known then).
    pub(crate) opaque_verified_peak: u16,
    /// Recently ended opaque flows (start, end, remote hash) while others are still open.
    closed_opaque: Vec<(i64, i64, u32)>,
    /// Talk time of answered inbound calls; durations of opaque flows.
    pub(crate) talk: DurationHist,
    pub(crate) opaque_durations: DurationHist,
    /// Gap between a session end and the next inbound/opaque start that re-seized the channel.
    pub(crate) gaps: RunningStats,
    pending_ends: [i64; 8],
    /// Called numbers of the last 16 inbound calls: (number key << 32 | block key), 0 = empty.
    recent_called: [u64; 16],
    recent_pos: u8,
    /// Distinct called numbers over the medium window: current and previous half-window sketch.
    called_hll: [Hll64; 2],
    called_epoch: i64,
    /// The line's top peers (at most four, space-saving: the least weighty is replaced).
    pub(crate) peers: [Option<PeerStat>; 4],
    /// New peers admitted (an upper estimate of distinct peers).
    pub(crate) peers_seen: u32,
    accounts: Vec<Account>,
    /// Registrar with the most accounts from this line, and the shortest Expires seen.
    pub(crate) top_registrar: Option<SocketAddr>,
    pub(crate) min_expires: Option<u32>,
    pub(crate) registrations_total: u32,
    ua_hashes: [u32; 4],
    pub(crate) user_agents_seen: u8,
    /// The first gateway fingerprint seen on the line.
    pub(crate) fingerprint: Option<Box<Fingerprint>>,
    /// Records (calls/registrations) that matched a fingerprint, of records with any UA/SDP.
    pub(crate) fingerprint_hits: u16,
    pub(crate) fingerprint_checked: u16,
    /// Codecs negotiated on the line's calls: bit i set for the i-th name of the tracked list
    /// (PCMU, PCMA, G729, G722, G723, GSM, iLBC, opus, AMR, AMR-WB, other).
    pub(crate) codecs: u16,
    pub(crate) g729_calls: u16,
    /// Session starts by UTC hour of day (decayed).
    pub(crate) hours: [u16; 24],
    last_decay: i64,
    /// Call key of an inbound call whose INVITE came before the profile existed (offers to
    /// unknown lines are not kept) and whose offer is to be counted when the call's answer or end
    /// tells its peer and start; 0: none. Not kept across restarts (at worst one offer uncounted).
    #[serde(skip)]
    offer_uncounted: u32,
}

impl Profile {
    /// An empty profile for a line first seen at `ts`.
    pub(crate) fn new(ts: Timestamp) -> Self {
        Profile {
            first_seen: ts.0,
            last_seen: ts.0,
            first_call: None,
            medium: [Bucket::default(); MEDIUM_BUCKETS],
            medium_newest: i64::MIN / 2,
            long: [LongBucket::default(); LONG_BUCKETS],
            long_newest: i64::MIN / 2,
            calls_total: 0,
            opaque_total: 0,
            other_flows: 0,
            max_concurrent: 0,
            level_time: [0; LEVELS],
            level_since: ts.0,
            open: Vec::new(),
            open_overflow: 0,
            opaque_peak_same_peer: 0,
            opaque_verified_peak: 0,
            closed_opaque: Vec::new(),
            talk: DurationHist::default(),
            opaque_durations: DurationHist::default(),
            gaps: RunningStats::default(),
            pending_ends: [0; 8],
            recent_called: [0; 16],
            recent_pos: 0,
            called_hll: [Hll64::default(); 2],
            called_epoch: i64::MIN / 2,
            peers: [None; 4],
            peers_seen: 0,
            accounts: Vec::new(),
            top_registrar: None,
            min_expires: None,
            registrations_total: 0,
            ua_hashes: [0; 4],
            user_agents_seen: 0,
            fingerprint: None,
            fingerprint_hits: 0,
            fingerprint_checked: 0,
            codecs: 0,
            g729_calls: 0,
            hours: [0; 24],
            last_decay: ts.0,
            offer_uncounted: 0,
        }
    }

    fn touch(&mut self, ts: i64, p: &ProfileParams) {
        if ts > self.last_seen {
            self.last_seen = ts;
        }
        // Histograms and sketches without buckets decay by halving once per medium window.
        if ts.saturating_sub(self.last_decay) >= p.window_us {
            self.last_decay = ts;
            self.talk.halve();
            self.opaque_durations.halve();
            self.gaps.halve();
            for t in &mut self.level_time {
                *t /= 2;
            }
            for h in &mut self.hours {
                *h /= 2;
            }
            for peer in self.peers.iter_mut().flatten() {
                peer.calls_in /= 2;
                peer.taken_in /= 2;
                peer.calls_out /= 2;
                peer.opaque_flows /= 2;
            }
            self.opaque_peak_same_peer = self.opaque_same_peer_now();
            self.opaque_verified_peak = 0;
            self.fingerprint_hits /= 2;
            self.fingerprint_checked /= 2;
        }
    }

    fn bump(&mut self, ts: i64, p: &ProfileParams, f: impl Fn(&mut Bucket)) {
        let (mw, lw) = (p.medium_width(), p.long_width());
        if let Some(b) = ring_slot(&mut self.medium, &mut self.medium_newest, ts, mw) {
            f(b);
        }
        if let Some(b) = ring_slot(&mut self.long, &mut self.long_newest, ts, lw) {
            let mut d = Bucket::default();
            f(&mut d);
            b.add(&LongBucket::of(&d));
        }
    }

    /// Window sums at `now`: the medium window (signals) and the long window.
    pub(crate) fn window(&self, now: Timestamp, p: &ProfileParams) -> Bucket {
        ring_sum(&self.medium, self.medium_newest, now.0, p.medium_width())
    }
    pub(crate) fn long_window(&self, now: Timestamp, p: &ProfileParams) -> LongBucket {
        ring_sum(&self.long, self.long_newest, now.0, p.long_width())
    }
    /// Sum of the last `k` medium buckets (window/12 each: 5 min by default).
    pub(crate) fn recent(&self, now: Timestamp, p: &ProfileParams, k: usize) -> Bucket {
        let w = p.medium_width();
        let k = k.clamp(1, MEDIUM_BUCKETS) as i64;
        let now_idx = now.0.div_euclid(w).max(self.medium_newest);
        let mut s = Bucket::default();
        for idx in (now_idx - k + 1)..=now_idx {
            if idx > self.medium_newest || idx <= self.medium_newest - MEDIUM_BUCKETS as i64 {
                continue;
            }
            if let Some(b) = self
                .medium
                .get(idx.rem_euclid(MEDIUM_BUCKETS as i64) as usize)
            {
                s.add(b);
            }
        }
        s
    }

    /// The last medium bucket (the short window, window/12: 5 min by default).
    pub(crate) fn short_window(&self, now: Timestamp, p: &ProfileParams) -> Bucket {
        let w = p.medium_width();
        let idx = now.0.div_euclid(w);
        if idx == self.medium_newest {
            self.medium
                .get(idx.rem_euclid(MEDIUM_BUCKETS as i64) as usize)
                .copied()
                .unwrap_or_default()
        } else {
            Bucket::default()
        }
    }
    /// Seconds of history the medium window covers at `now` (less for a new line).
    pub(crate) fn window_span_secs(&self, now: Timestamp, p: &ProfileParams) -> f64 {
        let span = now.0.saturating_sub(self.first_seen).clamp(0, p.window_us);
        span as f64 / 1e6
    }

    fn level(&self) -> usize {
        self.open.len()
    }

    fn account_level(&mut self, ts: i64) {
        let dt = ts.saturating_sub(self.level_since);
        if dt > 0 {
            let lvl = self.level().min(LEVELS - 1);
            if let Some(t) = self.level_time.get_mut(lvl) {
                *t = t.saturating_add((dt / 100_000).min(u32::MAX as i64) as u32);
            }
            self.level_since = ts;
        }
    }

    /// Time (seconds) at each concurrency level, including the current level up to `now`.
    pub(crate) fn level_seconds(&self, now: Timestamp) -> [f64; LEVELS] {
        let mut out = [0.0; LEVELS];
        for (o, &t) in out.iter_mut().zip(self.level_time.iter()) {
            *o = f64::from(t) / 10.0;
        }
        let dt = now.0.saturating_sub(self.level_since);
        if dt > 0 {
            if let Some(o) = out.get_mut(self.level().min(LEVELS - 1)) {
                *o += dt as f64 / 1e6;
            }
        }
        out
    }

    pub(crate) fn open_sessions(&self) -> usize {
        self.open.len()
    }

    fn opaque_same_peer_now(&self) -> u16 {
        let mut best = 0u16;
        for s in self.open.iter().filter(|s| s.kind == SessionKind::Opaque) {
            let n = self
                .open
                .iter()
                .filter(|o| o.kind == SessionKind::Opaque && o.remote == s.remote)
                .count();
            best = best.max(n.min(u16::MAX as usize) as u16);
        }
        best
    }

    fn open_session(
        &mut self,
        key: u32,
        remote: u32,
        kind: SessionKind,
        ts: i64,
        p: &ProfileParams,
    ) {
        if self.open.iter().any(|s| s.key == key) {
            return;
        }
        if self.open.len() >= p.max_open {
            self.open_overflow = self.open_overflow.saturating_add(1);
            return;
        }
        self.account_level(ts);
        self.open.push(OpenSession {
            key,
            remote,
            kind,
            start: ts,
            overlapped: false,
            peer: None,
            called: 0,
            taken: false,
        });
        self.max_concurrent = self.max_concurrent.max(self.open.len() as u32);
        if kind == SessionKind::Opaque {
            let n = self.opaque_same_peer_now();
            self.opaque_peak_same_peer = self.opaque_peak_same_peer.max(n);
        }
    }

    /// Closes an open session; returns it when it was open.
    fn close_session(&mut self, key: u32, ts: i64) -> Option<OpenSession> {
        let i = self.open.iter().position(|s| s.key == key)?;
        self.account_level(ts.max(self.level_since));
        let s = self.open.swap_remove(i);
        if self.open.is_empty() {
            self.open = Vec::new(); // release capacity on idle lines
        }
        Some(s)
    }

    fn note_start_for_gap(&mut self, ts: i64, p: &ProfileParams) {
        // The oldest pending end within the refill gap is the channel this start re-seizes.
        let mut best: Option<(usize, i64)> = None;
        for (i, slot) in self.pending_ends.iter_mut().enumerate() {
            let e = *slot;
            if e == 0 || e > ts {
                continue;
            }
            if ts.saturating_sub(e) > p.refill_us {
                *slot = 0; // too old to be re-seized by anything later
                continue;
            }
            if best.is_none_or(|(_, b)| e < b) {
                best = Some((i, e));
            }
        }
        let best = best.map(|(i, _)| i);
        if let Some(i) = best {
            if let Some(slot) = self.pending_ends.get_mut(i) {
                let gap = ts.saturating_sub(*slot) as f64 / 1e6;
                *slot = 0;
                self.gaps.add(gap as f32);
            }
        }
    }

    fn note_end_for_gap(&mut self, ts: i64) {
        // Replace an empty slot, else the oldest end.
        let mut idx = 0;
        let mut oldest = i64::MAX;
        for (i, &e) in self.pending_ends.iter().enumerate() {
            if e == 0 {
                idx = i;
                break;
            }
            if e < oldest {
                oldest = e;
                idx = i;
            }
        }
        if let Some(slot) = self.pending_ends.get_mut(idx) {
            *slot = ts.max(1);
        }
    }

    fn note_peer(&mut self, ip: IpAddr, p: &ProfileParams, f: impl Fn(&mut PeerStat)) {
        if let Some(peer) = self.peers.iter_mut().flatten().find(|x| x.ip == ip) {
            f(peer);
            return;
        }
        self.peers_seen = self.peers_seen.saturating_add(1);
        let mut fresh = PeerStat {
            ip,
            calls_in: 0,
            taken_in: 0,
            calls_out: 0,
            opaque_flows: 0,
            domestic: p.network.is_domestic(ip),
        };
        let slot = match self.peers.iter().position(|x| x.is_none()) {
            Some(i) => i,
            None => {
                // Space-saving: the least used peer makes room and the newcomer inherits its
                // count floor (halved, so a steady peer is not pushed out by one-off ones).
                let (i, w) = self
                    .peers
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (i, x.map_or(0, |x| x.weight())))
                    .min_by_key(|&(_, w)| w)
                    .unwrap_or((0, 0));
                let floor = (w / 2).min(u32::from(u16::MAX)) as u16;
                fresh.calls_in = floor;
                i
            }
        };
        f(&mut fresh);
        if let Some(s) = self.peers.get_mut(slot) {
            *s = Some(fresh);
        }
    }

    /// The peer carrying the most inbound calls and opaque flows.
    pub(crate) fn top_peer(&self) -> Option<PeerStat> {
        self.peers
            .iter()
            .flatten()
            .filter(|x| x.taken_in > 0 || x.opaque_flows > 0)
            .max_by_key(|x| u32::from(x.taken_in) + u32::from(x.opaque_flows))
            .copied()
    }

    fn count_hour(&mut self, ts: i64) {
        self.first_call = Some(self.first_call.map_or(ts, |f| f.min(ts)));
        let h = ts.div_euclid(3600 * US).rem_euclid(24) as usize;
        if let Some(c) = self.hours.get_mut(h) {
            *c = c.saturating_add(1);
        }
    }

    fn start_call(
        &mut self,
        key: u32,
        direction: Direction,
        peer: Option<SocketAddr>,
        ts: i64,
        p: &ProfileParams,
    ) {
        let foreign = peer.is_some_and(|a| !p.network.is_domestic(a.ip()));
        self.calls_total = self.calls_total.saturating_add(1);
        self.bump(ts, p, |b| match direction {
            Direction::Inbound => {
                b.calls_in = b.calls_in.saturating_add(1);
                if foreign {
                    b.in_foreign = b.in_foreign.saturating_add(1);
                }
            }
            Direction::Outbound => b.calls_out = b.calls_out.saturating_add(1),
            Direction::Internal | Direction::Transit => {
                b.calls_internal = b.calls_internal.saturating_add(1)
            }
        });
        if let Some(a) = peer {
            self.note_peer(a.ip(), p, |x| match direction {
                Direction::Inbound => x.calls_in = x.calls_in.saturating_add(1),
                _ => x.calls_out = x.calls_out.saturating_add(1),
            });
        }
        if direction != Direction::Inbound {
            // The line placed the call: it holds a channel from its INVITE on. An inbound call
            // seizes one only when the line answers it (`on_call_answered`).
            self.count_hour(ts);
            let remote = peer.map_or(0, |a| hash_ip(a.ip()));
            self.open_session(key, remote, SessionKind::Call, ts, p);
        }
    }

    /// The callee answered (on an inbound call: the line itself, from its own address). The
    /// call held a channel from its INVITE (`invited`) on: the ring time is moved one level up,
    /// taking the level during the ring as the level now (exact unless another call started or
    /// ended while this one rang). `peer` and `called` are kept with the open call, so that it
    /// can count as taken as soon as voice flows both ways (`on_media_started`) or, where the
    /// tap carries no media, once the answer has lasted (`on_sip_only_answer_due`). Returns
    /// whether the call is now open on the line as an answered inbound call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_call_answered(
        &mut self,
        call_id: &str,
        direction: Direction,
        peer: Option<SocketAddr>,
        called: Option<&str>,
        invited: Timestamp,
        ts: Timestamp,
        p: &ProfileParams,
    ) -> bool {
        self.touch(ts.0, p);
        if direction != Direction::Inbound {
            return false;
        }
        self.count_hour(invited.0.min(ts.0));
        let key = call_key(call_id);
        self.count_uncounted_offer(key, peer, invited.0, p);
        let before = self.open.len();
        self.open_session(key, 0, SessionKind::Answered, ts.0, p);
        if self.open.len() > before {
            if let Some(s) = self.open.last_mut() {
                s.peer = peer.map(|a| a.ip());
                s.called = called.filter(|c| !c.is_empty()).map_or(0, called_key);
            }
            let ring = ts.0.saturating_sub(invited.0).clamp(0, MAX_RING_US);
            let units = u32::try_from(ring / 100_000).unwrap_or(u32::MAX);
            let (lo, hi) = (before.min(LEVELS - 1), (before + 1).min(LEVELS - 1));
            let moved = self.level_time.get(lo).map_or(0, |&t| t.min(units));
            if let Some(t) = self.level_time.get_mut(lo) {
                *t -= moved;
            }
            if let Some(t) = self.level_time.get_mut(hi) {
                *t = t.saturating_add(moved);
            }
            if let Some(s) = self.open.last_mut() {
                s.start = invited.0.min(ts.0);
            }
            return true;
        }
        false
    }

    /// Whether an ended inbound call was the line's own doing: it relayed voice both ways or
    /// sent early media; an answer without any media counts only where the tap carries no media
    /// at all (a SIP-only mirror: `tap_media` false, and none of this line's calls had media) and
    /// only when the call lasted (`reported`: when the record came, the end of a call not
    /// ended then).
    fn took_part(
        &self,
        r: &CallRecord,
        now: i64,
        reported: Timestamp,
        p: &ProfileParams,
        tap_media: bool,
    ) -> bool {
        match r.participation {
            Participation::Placed | Participation::TwoWayVoice | Participation::EarlyMedia => true,
            Participation::AnsweredNoMedia => {
                !tap_media && self.no_media_seen(now, p) && p.sip_only.count(r, reported)
            }
            Participation::AnsweredOneWay | Participation::Rejected | Participation::Ignored => {
                false
            }
        }
    }

    /// The profile was made by the line's part in inbound call `call_id` (its answer, its early
    /// media, its end), whose INVITE came while the line was unknown and was not counted: it is
    /// counted when the call's peer and start are known (at once, if given), so that a reason
    /// never reads "23 inbound calls; the line took part in 24".
    pub(crate) fn offer_before_profile(
        &mut self,
        call_id: &str,
        known: Option<(Option<SocketAddr>, Timestamp)>,
        p: &ProfileParams,
    ) {
        let key = call_key(call_id);
        self.offer_uncounted = key | 1;
        if let Some((peer, invited)) = known {
            self.count_uncounted_offer(key, peer, invited.0, p);
        }
    }

    fn count_uncounted_offer(
        &mut self,
        key: u32,
        peer: Option<SocketAddr>,
        invited: i64,
        p: &ProfileParams,
    ) {
        if self.offer_uncounted == key | 1 {
            self.offer_uncounted = 0;
            self.start_call(key, Direction::Inbound, peer, invited, p);
        }
    }

    /// First INVITE of a dialog on this line.
    pub(crate) fn on_call_started(
        &mut self,
        call_id: &str,
        direction: Direction,
        peer: Option<SocketAddr>,
        ts: Timestamp,
        p: &ProfileParams,
    ) {
        self.touch(ts.0, p);
        self.start_call(call_key(call_id), direction, peer, ts.0, p);
    }

    fn check_fingerprint(
        &mut self,
        field: FpField,
        value: Option<&str>,
        p: &ProfileParams,
    ) -> bool {
        let Some(v) = value.filter(|v| !v.trim().is_empty()) else {
            return false;
        };
        let Some(pattern) = p.fingerprints.matches(field, v) else {
            return false;
        };
        if self.fingerprint.is_none() {
            self.fingerprint = Some(Box::new(Fingerprint {
                field,
                value: v.chars().take(64).collect(),
                pattern,
            }));
        }
        true
    }

    fn note_agent(&mut self, ua: &str) {
        let h = (hash_bytes(ua.trim().as_bytes()) as u32) | 1;
        if self.ua_hashes.contains(&h) {
            return;
        }
        self.user_agents_seen = self.user_agents_seen.saturating_add(1);
        if let Some(slot) = self.ua_hashes.iter_mut().find(|x| **x == 0) {
            *slot = h;
        }
    }

    fn fingerprints_of(&mut self, items: &[(FpField, Option<&str>)], p: &ProfileParams) {
        if items.iter().all(|(_, v)| v.is_none()) {
            return;
        }
        let mut hit = false;
        for &(field, v) in items {
            hit |= self.check_fingerprint(field, v, p);
        }
        self.fingerprint_checked = self.fingerprint_checked.saturating_add(1);
        if hit {
            self.fingerprint_hits = self.fingerprint_hits.saturating_add(1);
        }
    }

    /// None of the line's calls over the long window carried media (at `now`).
    fn no_media_seen(&self, now: i64, p: &ProfileParams) -> bool {
        ring_sum(&self.long, self.long_newest, now, p.long_width()).media_calls == 0
    }

    /// A dialog ended (or was closed at the end of the capture), reported at `reported` (the
    /// latest packet time). `tap_media`: whether the tap has carried any media so far (see
    /// `took_part`).
    pub(crate) fn on_call_ended(
        &mut self,
        r: &CallRecord,
        reported: Timestamp,
        p: &ProfileParams,
        tap_media: bool,
    ) {
        let end = r.end.unwrap_or(r.start).max(r.start);
        self.touch(end.0, p);
        let key = call_key(&r.call_id);
        let inbound = r.direction == Direction::Inbound;
        if inbound {
            self.count_uncounted_offer(key, r.peer, r.start.0, p);
        }
        let closed = self.close_session(key, end.0);
        if closed.is_none() && !inbound {
            // A placed call whose start was not seen (line restored or table evicted).
            self.start_call(key, r.direction, r.peer, r.start.0, p);
            self.close_session(key, end.0);
        }
        let media = !r.rtp.is_empty();
        if inbound {
            let answered = r.outcome == Outcome::Answered;
            // Counted already while it ran (voice both ways): the line's part showed then,
            // whatever the record's final figures say; it is not counted twice.
            let counted = closed.is_some_and(|s| s.kind == SessionKind::Answered && s.taken);
            let taken = counted || self.took_part(r, end.0, reported, p, tap_media);
            self.bump(end.0, p, |b| {
                b.in_ended = b.in_ended.saturating_add(1);
                if answered {
                    b.in_answered = b.in_answered.saturating_add(1);
                }
                if media {
                    b.media_calls = b.media_calls.saturating_add(1);
                }
            });
            if taken {
                if !counted {
                    let called = r.called().map_or(0, called_key);
                    let peer = r.peer.map(|a| a.ip());
                    self.count_taken(peer, called, answered, r.start.0, end.0, p);
                }
                if answered {
                    if let Some(t) = r.talk_secs() {
                        self.talk.add(t.max(0.0));
                    }
                }
                // The channel this call re-seized: measured from its INVITE, now that the line
                // is known to have taken it.
                self.note_start_for_gap(r.start.0, p);
                self.note_end_for_gap(end.0);
            }
        } else if media {
            self.bump(end.0, p, |b| {
                b.media_calls = b.media_calls.saturating_add(1)
            });
        }
        for ua in [r.user_agent.as_deref(), r.server.as_deref()]
            .into_iter()
            .flatten()
        {
            self.note_agent(ua);
        }
        self.fingerprints_of(
            &[
                (FpField::UserAgent, r.user_agent.as_deref()),
                (FpField::Server, r.server.as_deref()),
                (FpField::Allow, r.allow.as_deref()),
                (FpField::SdpOrigin, r.sdp_origin.as_deref()),
                (FpField::SdpSession, r.sdp_session.as_deref()),
            ],
            p,
        );
        if let Some(c) = r.codec.as_deref() {
            self.codecs |= codec_bit(c);
            if c.eq_ignore_ascii_case("G729") {
                self.g729_calls = self.g729_calls.saturating_add(1);
            }
        }
    }

    /// Counts an inbound call the line took part in, at `ts`: the call counters, its peer's
    /// share and its called number (`called` as kept in `OpenSession`; 0 when none), the
    /// number's sketch epoch taken from the call's INVITE (`invited`).
    fn count_taken(
        &mut self,
        peer: Option<IpAddr>,
        called: u64,
        answered: bool,
        invited: i64,
        ts: i64,
        p: &ProfileParams,
    ) {
        let foreign = peer.is_some_and(|ip| !p.network.is_domestic(ip));
        self.bump(ts, p, |b| {
            b.in_taken = b.in_taken.saturating_add(1);
            if foreign {
                b.in_taken_foreign = b.in_taken_foreign.saturating_add(1);
            }
            if answered {
                b.in_taken_answered = b.in_taken_answered.saturating_add(1);
            }
        });
        if let Some(ip) = peer {
            self.note_peer(ip, p, |x| x.taken_in = x.taken_in.saturating_add(1));
        }
        if called != 0 {
            self.note_called(called, invited, p);
        }
    }

    /// Voice flowed both ways on an answered inbound call that is still running: the line has
    /// taken part (it answered and relays voice; the same evidence that makes the ended call
    /// `TwoWayVoice`, and more of it). Counting it now rather than at its end bounds the delay
    /// by the call rate, not the call length: a one-channel gateway holds its only channel for
    /// minutes on a long call.
    fn take_voiced(&mut self, key: u32, ts: i64, p: &ProfileParams) {
        let Some(s) = self
            .open
            .iter_mut()
            .find(|s| s.key == key && s.kind == SessionKind::Answered && !s.taken)
        else {
            return;
        };
        s.taken = true;
        let (peer, called, invited) = (s.peer, s.called, s.start);
        self.count_taken(peer, called, true, invited, ts, p);
    }

    /// On a tap that has carried no media (`LineTable` asks only then), an inbound call the
    /// line answered as late as a relayed call is (`SipOnlyAnswers::rang_long_enough`) has now
    /// lasted `min_talk_secs` (`due`) and still runs: the line has taken part, by the rule that
    /// would count the call at its end, applied as soon as it holds. Counted once; its end does
    /// not count it again. Returns whether it counted.
    pub(crate) fn on_sip_only_answer_due(
        &mut self,
        call_id_key: u32,
        due: Timestamp,
        p: &ProfileParams,
    ) -> bool {
        if !self.no_media_seen(due.0, p) {
            return false;
        }
        let Some(s) = self
            .open
            .iter_mut()
            .find(|s| s.key == call_id_key && s.kind == SessionKind::Answered && !s.taken)
        else {
            return false;
        };
        s.taken = true;
        let (peer, called, invited) = (s.peer, s.called, s.start);
        self.touch(due.0, p);
        self.count_taken(peer, called, true, invited, due.0, p);
        true
    }

    /// Notes a called number (`called_key`) among the recent ones and in the window's sketch.
    fn note_called(&mut self, key: u64, ts: i64, p: &ProfileParams) {
        let slot = usize::from(self.recent_pos) % self.recent_called.len();
        if let Some(s) = self.recent_called.get_mut(slot) {
            *s = key;
        }
        let num = (key >> 32) as u32;
        self.recent_pos = ((slot + 1) % self.recent_called.len()) as u8;
        let half = (p.window_us / 2).max(US);
        let epoch = ts.div_euclid(half);
        if epoch > self.called_epoch {
            let [cur, prev] = &mut self.called_hll;
            if epoch == self.called_epoch + 1 {
                *prev = *cur;
            } else {
                *prev = Hll64::default();
            }
            *cur = Hll64::default();
            self.called_epoch = epoch;
        }
        if epoch >= self.called_epoch - 1 {
            let i = if epoch == self.called_epoch { 0 } else { 1 };
            if let Some(h) = self.called_hll.get_mut(i) {
                h.insert(hash_bytes(&num.to_le_bytes()));
            }
        }
    }

    /// Distinct called numbers and distinct number blocks among the last (up to 16) inbound
    /// calls, and how many calls that is.
    pub(crate) fn recent_called(&self) -> (usize, usize, usize) {
        let filled: Vec<u64> = self
            .recent_called
            .iter()
            .copied()
            .filter(|&x| x != 0)
            .collect();
        let mut nums: Vec<u32> = filled.iter().map(|x| (x >> 32) as u32).collect();
        let mut blocks: Vec<u32> = filled.iter().map(|&x| x as u32).collect();
        nums.sort_unstable();
        nums.dedup();
        blocks.sort_unstable();
        blocks.dedup();
        (nums.len(), blocks.len(), filled.len())
    }

    /// Estimated distinct called numbers over the medium window at `now`; never more than the
    /// inbound calls the line took part in within it, nor fewer than the distinct ones among
    /// the last 16 (the sketch errs by about 13 %, and a reason may not read "33 calls to ~39
    /// distinct numbers" or "~10 distinct numbers (11 of the last 11 distinct)").
    pub(crate) fn distinct_called(&self, now: Timestamp, p: &ProfileParams) -> f64 {
        let half = (p.window_us / 2).max(US);
        let epoch = now.0.div_euclid(half);
        let [cur, prev] = &self.called_hll;
        let h = if epoch == self.called_epoch {
            cur.merge(prev)
        } else if epoch == self.called_epoch + 1 {
            *cur
        } else {
            Hll64::default()
        };
        // The ring's distinct numbers are exact: a floor while its calls are the window's.
        let taken = self.window(now, p).in_taken;
        let (nums, _, n) = self.recent_called();
        let floor = if n <= taken as usize {
            nums as f64
        } else {
            0.0
        };
        h.estimate().max(floor).min(f64::from(taken))
    }

    /// A REGISTER transaction from this line.
    pub(crate) fn on_registration(&mut self, r: &RegistrationRecord, p: &ProfileParams) {
        // Only REGISTERs the line sent are its registrations; those aimed at it are probes of
        // others (evidence about them, see `threats`).
        if r.line != Some(r.source.ip()) {
            return;
        }
        let ts = r.time.0;
        self.touch(ts, p);
        self.registrations_total = self.registrations_total.saturating_add(1);
        if let Some(ua) = r.user_agent.as_deref() {
            self.note_agent(ua);
        }
        self.fingerprints_of(&[(FpField::UserAgent, r.user_agent.as_deref())], p);
        let account = hash_bytes(r.account.trim().to_ascii_lowercase().as_bytes()) as u32;
        let registrar = hash_ip(r.registrar.ip());
        self.accounts.retain(|a| a.until > ts);
        match r.outcome {
            RegOutcome::Registered => {
                let expires = r.expires.unwrap_or(3600).min(86400);
                if expires > 0 {
                    self.min_expires = Some(self.min_expires.map_or(expires, |m| m.min(expires)));
                }
                // A binding lives until it expires, plus a grace period for late refreshes.
                let until = ts.saturating_add(i64::from(expires.max(60)) * US * 2);
                if let Some(a) = self
                    .accounts
                    .iter_mut()
                    .find(|a| a.account == account && a.registrar == registrar)
                {
                    a.until = until;
                } else if self.accounts.len() < p.max_accounts {
                    self.accounts.push(Account {
                        account,
                        registrar,
                        until,
                    });
                }
                let (top, _) = self.accounts_per_registrar(Timestamp(ts));
                if top == registrar {
                    self.top_registrar = Some(r.registrar);
                }
            }
            RegOutcome::Unregistered => {
                self.accounts
                    .retain(|a| !(a.account == account && a.registrar == registrar));
            }
            _ => {}
        }
        if self.accounts.is_empty() {
            self.accounts = Vec::new();
        }
    }

    /// (registrar hash, accounts) for the registrar with most live accounts at `now`.
    fn accounts_per_registrar(&self, now: Timestamp) -> (u32, usize) {
        let live = || self.accounts.iter().filter(|a| a.until > now.0);
        live()
            .map(|a| {
                (
                    a.registrar,
                    live().filter(|b| b.registrar == a.registrar).count(),
                )
            })
            .max_by_key(|&(_, n)| n)
            .unwrap_or((0, 0))
    }

    /// Most live accounts registered to one registrar at `now`.
    pub(crate) fn max_accounts_one_registrar(&self, now: Timestamp) -> usize {
        self.accounts_per_registrar(now).1
    }

    /// A voice-shaped flow started.
    pub(crate) fn on_media_started(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        call_id: Option<&str>,
        ts: Timestamp,
        p: &ProfileParams,
    ) {
        self.touch(ts.0, p);
        if let Some(id) = call_id {
            self.bump(ts.0, p, |b| b.sip_flows = b.sip_flows.saturating_add(1));
            self.take_voiced(call_key(id), ts.0, p);
            return;
        }
        self.start_opaque(flow_key(local, remote), remote.ip(), ts.0, p);
    }

    fn start_opaque(&mut self, key: u32, remote: IpAddr, ts: i64, p: &ProfileParams) {
        self.opaque_total = self.opaque_total.saturating_add(1);
        self.bump(ts, p, |b| b.opaque_flows = b.opaque_flows.saturating_add(1));
        self.note_peer(remote, p, |x| {
            x.opaque_flows = x.opaque_flows.saturating_add(1)
        });
        self.note_start_for_gap(ts, p);
        self.count_hour(ts);
        self.open_session(key, hash_ip(remote), SessionKind::Opaque, ts, p);
    }

    /// A media flow ended (any shape).
    pub(crate) fn on_media_ended(&mut self, r: &MediaFlowRecord, p: &ProfileParams) {
        let end = r.last.max(r.first);
        self.touch(end.0, p);
        if !r.voice_like {
            self.other_flows = self.other_flows.saturating_add(1);
            return;
        }
        if r.call_id.is_some() {
            return;
        }
        let key = flow_key(r.local, r.remote);
        if !self.open.iter().any(|s| s.key == key) {
            self.start_opaque(key, r.remote.ip(), r.first.0, p);
        }
        let marked = self.open.iter().any(|s| s.key == key && s.overlapped);
        self.close_session(key, end.0);
        let remote = hash_ip(r.remote.ip());
        let n = self.verify_opaque(remote, r.first.0, end.0);
        // Flows still open to the same peer that started before this one ended ran beside it
        // (see `verify_opaque`); each flow is counted once, when it is first shown.
        let mut newly = u16::from(n >= 2 && !marked);
        for s in self.open.iter_mut().filter(|s| {
            s.kind == SessionKind::Opaque && s.remote == remote && s.start <= end.0 && !s.overlapped
        }) {
            s.overlapped = true;
            newly = newly.saturating_add(1);
        }
        if newly > 0 {
            self.bump(end.0, p, |b| {
                b.opaque_overlapped = b.opaque_overlapped.saturating_add(newly)
            });
        }
        self.opaque_durations.add(end.secs_since(r.first).max(0.0));
        self.note_end_for_gap(end.0);
    }

    /// Concurrency at the true start of an opaque flow that just ended: flows to the same peer
    /// still open that were reported before it (still running now, so running then) plus
    /// recently ended ones whose span covers it. Or at its end: a flow still open now (not idle
    /// for the media timeout, so running when this one ended) that started before this one
    /// ended ran beside it then; that is known as soon as this one is told, not only when the
    /// later flows end. Returns that concurrency (1: the flow ran alone).
    fn verify_opaque(&mut self, remote: u32, start: i64, end: i64) -> u16 {
        let open = self
            .open
            .iter()
            .filter(|s| s.kind == SessionKind::Opaque && s.remote == remote && s.start <= start)
            .count();
        let closed = self
            .closed_opaque
            .iter()
            .filter(|&&(s, e, r)| r == remote && s <= start && start <= e)
            .count();
        let open_at_end = self
            .open
            .iter()
            .filter(|s| s.kind == SessionKind::Opaque && s.remote == remote && s.start <= end)
            .count();
        let n = (1 + (open + closed).max(open_at_end)).min(usize::from(u16::MAX)) as u16;
        self.opaque_verified_peak = self.opaque_verified_peak.max(n);
        if self.open.iter().any(|s| s.kind == SessionKind::Opaque) {
            if self.closed_opaque.len() >= 16 {
                self.closed_opaque.remove(0);
            }
            self.closed_opaque.push((start, end, remote));
        } else {
            // Nothing open: any later flow starts after all of these ended.
            self.closed_opaque = Vec::new();
        }
        n
    }

    /// Codec names seen on the line's calls.
    pub(crate) fn codec_names(&self) -> Vec<&'static str> {
        CODECS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.codecs & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    /// UTC hours of the day with activity (after decay).
    pub(crate) fn active_hours(&self) -> Vec<u8> {
        (0u8..24)
            .filter(|&h| self.hours.get(usize::from(h)).is_some_and(|&c| c > 0))
            .collect()
    }
}

fn flow_key(local: SocketAddr, remote: SocketAddr) -> u32 {
    let s = format!("{local}>{remote}");
    hash_bytes(s.as_bytes()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> ProfileParams {
        ProfileParams {
            network: NetworkConfig {
                domestic: vec!["198.51.100.0/24".parse().unwrap()],
                ..Default::default()
            },
            ..Default::default()
        }
    }
    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_800_000_000.0 + s)
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ring_counts_within_window_only() {
        let p = p();
        let mut pr = Profile::new(t(0.0));
        for i in 0..10 {
            pr.on_call_started(
                &format!("c{i}"),
                Direction::Inbound,
                Some(sa("203.0.113.9:5060")),
                t(f64::from(i) * 60.0),
                &p,
            );
        }
        let w = pr.window(t(600.0), &p);
        assert_eq!(w.calls_in, 10);
        assert_eq!(w.in_foreign, 10);
        // Two hours later the medium window is empty but the long one still has them.
        assert_eq!(pr.window(t(7800.0), &p).calls_in, 0);
        assert_eq!(pr.long_window(t(7800.0), &p).calls, 10);
        assert_eq!(pr.calls_total, 10);
    }

    #[test]
    fn ring_slot_rejects_too_old_and_survives_extremes() {
        let mut ring = [Bucket::default(); 4];
        let mut newest = i64::MIN / 2;
        assert!(ring_slot(&mut ring, &mut newest, 100, 10).is_some());
        assert!(ring_slot(&mut ring, &mut newest, 50, 10).is_none());
        assert!(ring_slot(&mut ring, &mut newest, i64::MAX, 10).is_some());
        assert!(ring_slot(&mut ring, &mut newest, i64::MIN, 10).is_none());
        assert!(ring_slot(&mut ring, &mut newest, 5, 0).is_none());
    }

    #[test]
    fn concurrency_and_time_at_level() {
        let p = p();
        let mut pr = Profile::new(t(0.0));
        for i in 0..4 {
            pr.on_call_started(
                &format!("c{i}"),
                Direction::Outbound,
                None,
                t(f64::from(i)),
                &p,
            );
        }
        assert_eq!(pr.max_concurrent, 4);
        let secs = pr.level_seconds(t(103.0));
        assert!((secs[4] - 100.0).abs() < 0.01, "{secs:?}");
        assert!((secs[1] - 1.0).abs() < 0.01);
    }

    #[test]
    fn inbound_calls_hold_a_channel_only_once_the_line_answers() {
        let p = p();
        let mut pr = Profile::new(t(0.0));
        // Offers alone (INVITEs the line never answers) seize nothing.
        for i in 0..6 {
            let id = format!("offer{i}");
            pr.on_call_started(&id, Direction::Inbound, None, t(f64::from(i)), &p);
        }
        assert_eq!(pr.open_sessions(), 0);
        assert_eq!(pr.max_concurrent, 0);
        // Two answered calls: each holds its channel from its INVITE (ring 5 s) on.
        for (i, at) in [(0, 10.0), (1, 12.0)] {
            let id = format!("c{i}");
            pr.on_call_started(&id, Direction::Inbound, None, t(at), &p);
            pr.on_call_answered(&id, Direction::Inbound, None, None, t(at), t(at + 5.0), &p);
        }
        assert_eq!(pr.max_concurrent, 2);
        let secs = pr.level_seconds(t(27.0));
        // c0 alone 10..12, both 12..27 (c1 rang 12..17, moved up from level 1).
        assert!((secs[2] - 15.0).abs() < 0.01, "{secs:?}");
        assert!((secs[1] - 2.0).abs() < 0.01, "{secs:?}");
    }

    fn answered_record(id: &str, to: &str, start: f64, answer: f64, end: f64) -> CallRecord {
        let line: IpAddr = "10.0.0.9".parse().unwrap();
        let mut r = CallRecord::new(id.into(), Direction::Inbound, t(start));
        r.line = Some(line);
        r.peer = Some(sa("203.0.113.9:5060"));
        r.to = Some(to.into());
        r.request_uri = Some(to.into());
        r.answer = Some(t(answer));
        r.end = Some(t(end));
        r.outcome = Outcome::Answered;
        r.status_code = Some(200);
        r.participation = Participation::TwoWayVoice;
        for (src, dst) in [
            ("10.0.0.9:10000", "203.0.113.9:20000"),
            ("203.0.113.9:20000", "10.0.0.9:10000"),
        ] {
            r.rtp.push(crate::model::RtpStreamStats {
                src: sa(src),
                dst: sa(dst),
                ssrc: 1,
                payload_type: 18,
                packets: ((end - answer) * 50.0) as u64,
                bytes: 0,
                lost: 0,
                jitter_ms: 0.0,
                first: t(answer),
                last: t(end),
            });
        }
        r
    }

    #[test]
    fn answered_call_counts_as_taken_once_voice_flows_both_ways() {
        // A one-channel box answers a call that runs 300 s: the line's part shows when voice
        // flows both ways (1 s after the answer), not five minutes later at the BYE.
        let p = p();
        let mut pr = Profile::new(t(0.0));
        let peer = sa("203.0.113.9:5060");
        pr.on_call_started("long", Direction::Inbound, Some(peer), t(0.0), &p);
        pr.on_call_answered(
            "long",
            Direction::Inbound,
            Some(peer),
            Some("13812345678"),
            t(0.0),
            t(5.0),
            &p,
        );
        let w = |pr: &Profile, at: f64| pr.window(t(at), &p);
        assert_eq!(
            w(&pr, 5.0).in_taken,
            0,
            "an answer alone is not taking part"
        );
        pr.on_media_started(
            sa("10.0.0.9:10000"),
            sa("203.0.113.9:20000"),
            Some("long"),
            t(6.0),
            &p,
        );
        let now = w(&pr, 6.0);
        assert_eq!(
            (
                now.in_taken,
                now.in_taken_foreign,
                now.in_taken_answered,
                now.in_ended
            ),
            (1, 1, 1, 0)
        );
        assert_eq!(pr.recent_called(), (1, 1, 1));
        assert_eq!(pr.top_peer().map(|x| x.taken_in), Some(1));
        // A second MediaStarted (a re-INVITE moved the media) does not count it again.
        pr.on_media_started(
            sa("10.0.0.9:10002"),
            sa("203.0.113.9:20002"),
            Some("long"),
            t(60.0),
            &p,
        );
        // Its end brings its figures (ended, talk time) but does not count it twice.
        pr.on_call_ended(
            &answered_record("long", "13812345678", 0.0, 5.0, 305.0),
            t(305.0),
            &p,
            true,
        );
        let end = w(&pr, 305.0);
        assert_eq!(
            (
                end.in_taken,
                end.in_taken_foreign,
                end.in_taken_answered,
                end.in_ended
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(end.in_answered, 1);
        assert_eq!(pr.recent_called(), (1, 1, 1));
        assert_eq!(pr.top_peer().map(|x| x.taken_in), Some(1));
        assert_eq!(pr.talk.count(), 1);
        assert_eq!(pr.open_sessions(), 0);
    }

    #[test]
    fn answered_call_without_voice_both_ways_counts_only_by_its_end() {
        let p = p();
        let peer = sa("203.0.113.9:5060");
        // Voice of another call (or of no call the line answered) moves nothing.
        let mut pr = Profile::new(t(0.0));
        pr.on_call_started("a", Direction::Inbound, Some(peer), t(0.0), &p);
        pr.on_media_started(
            sa("10.0.0.9:10000"),
            sa("203.0.113.9:20000"),
            Some("a"),
            t(2.0),
            &p,
        );
        assert_eq!(
            pr.window(t(2.0), &p).in_taken,
            0,
            "not answered by the line"
        );
        pr.on_call_answered(
            "a",
            Direction::Inbound,
            Some(peer),
            Some("1"),
            t(0.0),
            t(3.0),
            &p,
        );
        pr.on_media_started(
            sa("10.0.0.9:10000"),
            sa("203.0.113.9:20000"),
            Some("b"),
            t(4.0),
            &p,
        );
        assert_eq!(pr.window(t(4.0), &p).in_taken, 0, "voice of another call");
        // Ended with voice both ways: counted then, once (the end-of-call rule as before).
        pr.on_call_ended(
            &answered_record("a", "13812345678", 0.0, 3.0, 40.0),
            t(40.0),
            &p,
            true,
        );
        let w = pr.window(t(40.0), &p);
        assert_eq!((w.in_taken, w.in_taken_answered, w.in_ended), (1, 1, 1));
        // Answered one-way (the line sent no voice back): never taken.
        let mut r = answered_record("c", "13812345679", 50.0, 52.0, 90.0);
        r.rtp
            .retain(|s| s.src.ip() != "10.0.0.9".parse::<IpAddr>().unwrap());
        r.participation = Participation::AnsweredOneWay;
        pr.on_call_started("c", Direction::Inbound, Some(peer), t(50.0), &p);
        pr.on_call_answered(
            "c",
            Direction::Inbound,
            Some(peer),
            Some("13812345679"),
            t(50.0),
            t(52.0),
            &p,
        );
        pr.on_call_ended(&r, t(90.0), &p, true);
        let w = pr.window(t(90.0), &p);
        assert_eq!((w.in_taken, w.in_ended, w.in_answered), (1, 2, 2));
        assert_eq!(pr.recent_called(), (1, 1, 1));
    }

    #[test]
    fn called_keys_normalise_formats_and_blocks() {
        let a = called_keys("13812345678");
        let b = called_keys("+8613812345678");
        let c = called_keys("008613812345678");
        assert_eq!(a.0, b.0);
        assert_eq!(b.0, c.0);
        let d1 = called_keys("+31205550101");
        let d2 = called_keys("+31205550177");
        assert_ne!(d1.0, d2.0);
        assert_eq!(d1.1, d2.1, "same DID block");
        assert_eq!(called_keys("alice").1, called_keys("201").1);
    }

    #[test]
    fn hll_estimates_distinct_counts() {
        let mut h = Hll64::default();
        for i in 0..200u32 {
            h.insert(hash_bytes(&i.to_le_bytes()));
            h.insert(hash_bytes(&i.to_le_bytes()));
        }
        let e = h.estimate();
        assert!((140.0..260.0).contains(&e), "{e}");
        assert!(Hll64::default().estimate() < 0.5);
    }

    #[test]
    fn duration_quantile() {
        let mut d = DurationHist::default();
        for s in [20.0, 40.0, 45.0, 50.0, 70.0] {
            d.add(s);
        }
        let m = d.quantile(0.5).unwrap();
        assert!((30.0..60.0).contains(&m), "{m}");
        assert_eq!(DurationHist::default().quantile(0.5), None);
    }

    #[test]
    fn fingerprint_patterns() {
        let f = FingerprintSet::new(
            &["goip".into(), "=h".into()],
            &["dbl".into()],
            &["INVITE, ACK, BYE".into()],
        );
        assert_eq!(
            f.matches(FpField::UserAgent, "DBL GoIP-8 v1"),
            Some("goip".into())
        );
        assert_eq!(f.matches(FpField::UserAgent, "H"), Some("=h".into()));
        assert_eq!(f.matches(FpField::UserAgent, "Hello phone"), None);
        assert!(f.matches(FpField::Allow, "bye,INVITE , ack").is_some());
        assert!(f.matches(FpField::Allow, "INVITE,ACK,BYE,CANCEL").is_none());
        assert!(f.matches(FpField::SdpOrigin, "DBL").is_some());
    }

    #[test]
    fn registrations_count_live_accounts_per_registrar() {
        let p = p();
        let mut pr = Profile::new(t(0.0));
        for i in 0..6 {
            let r = RegistrationRecord {
                account: format!("port{i}@sw.example"),
                registrar: sa("203.0.113.5:5060"),
                source: sa("10.0.0.9:5060"),
                line: Some("10.0.0.9".parse().unwrap()),
                contact: None,
                expires: Some(60),
                outcome: RegOutcome::Registered,
                status_code: Some(200),
                user_agent: Some("GoIP".into()),
                time: t(f64::from(i)),
            };
            pr.on_registration(&r, &p);
        }
        assert_eq!(pr.max_accounts_one_registrar(t(10.0)), 6);
        assert_eq!(pr.top_registrar, Some(sa("203.0.113.5:5060")));
        assert_eq!(pr.min_expires, Some(60));
        assert_eq!(
            pr.max_accounts_one_registrar(t(1000.0)),
            0,
            "bindings lapse"
        );
    }

    fn flow_ended(local: &str, remote: &str, first: f64, last: f64) -> MediaFlowRecord {
        MediaFlowRecord {
            local: sa(local),
            remote: sa(remote),
            line: Some("10.0.0.9".parse().unwrap()),
            call_id: None,
            first: t(first),
            last: t(last),
            packets_out: 1000,
            packets_in: 1000,
            bytes_out: 72_000,
            bytes_in: 72_000,
            mean_ip_len: 72.0,
            rtp: false,
            voice_like: true,
            streams: Vec::new(),
        }
    }

    #[test]
    fn opaque_concurrency_is_verified_when_flows_end() {
        // A and B overlap; A ends at 60 s but is reported 30 s later, after C started at 70 s.
        let p = p();
        let mut pr = Profile::new(t(0.0));
        let r = "203.0.113.9:4000";
        pr.on_media_started(sa("10.0.0.9:1000"), sa(r), None, t(0.0), &p);
        pr.on_media_started(sa("10.0.0.9:1002"), sa(r), None, t(10.0), &p);
        pr.on_media_started(sa("10.0.0.9:1004"), sa(r), None, t(70.0), &p);
        assert_eq!(
            pr.opaque_peak_same_peer, 3,
            "counted at start: A is still open"
        );
        pr.on_media_ended(&flow_ended("10.0.0.9:1000", r, 0.0, 60.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1004", r, 70.0, 100.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1002", r, 10.0, 120.0), &p);
        assert_eq!(pr.opaque_verified_peak, 2, "A had ended before C started");
        assert_eq!(pr.open_sessions(), 0);
    }

    #[test]
    fn opaque_concurrency_is_verified_at_a_flows_end_too() {
        // A runs 0..60 s; B (from 10 s) and C (from 50 s) are still open when A is told: all
        // three ran at 60 s, known then (not only when B or C end).
        let p = p();
        let mut pr = Profile::new(t(0.0));
        let r = "203.0.113.9:4000";
        pr.on_media_started(sa("10.0.0.9:1000"), sa(r), None, t(0.0), &p);
        pr.on_media_started(sa("10.0.0.9:1002"), sa(r), None, t(10.0), &p);
        pr.on_media_started(sa("10.0.0.9:1004"), sa(r), None, t(50.0), &p);
        // D starts after A ended: it did not run beside A.
        pr.on_media_started(sa("10.0.0.9:1006"), sa(r), None, t(75.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1000", r, 0.0, 60.0), &p);
        assert_eq!(pr.opaque_verified_peak, 3);
    }

    #[test]
    fn opaque_flows_that_ran_beside_another_are_counted_once() {
        // A 0..60 s and B 10..50 s overlap; C 100..115 s runs alone, D 150..200 s too.
        let p = p();
        let mut pr = Profile::new(t(0.0));
        let r = "203.0.113.9:4000";
        pr.on_media_started(sa("10.0.0.9:1000"), sa(r), None, t(0.0), &p);
        pr.on_media_started(sa("10.0.0.9:1002"), sa(r), None, t(10.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1002", r, 10.0, 50.0), &p);
        let seen = |pr: &Profile| pr.window(t(300.0), &p).opaque_overlapped;
        assert_eq!(seen(&pr), 2, "B's end shows A beside it");
        pr.on_media_ended(&flow_ended("10.0.0.9:1000", r, 0.0, 60.0), &p);
        assert_eq!(seen(&pr), 2, "A is not counted twice");
        pr.on_media_started(sa("10.0.0.9:1004"), sa(r), None, t(100.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1004", r, 100.0, 115.0), &p);
        assert_eq!(seen(&pr), 2, "C ran alone");
        pr.on_media_started(sa("10.0.0.9:1006"), sa(r), None, t(150.0), &p);
        pr.on_media_ended(&flow_ended("10.0.0.9:1006", r, 150.0, 200.0), &p);
        assert_eq!(seen(&pr), 2, "D started after C ended");
    }

    #[test]
    fn open_sessions_are_capped() {
        let mut p = p();
        p.max_open = 3;
        let mut pr = Profile::new(t(0.0));
        for i in 0..10 {
            pr.on_call_started(&format!("c{i}"), Direction::Outbound, None, t(0.0), &p);
        }
        assert_eq!(pr.open_sessions(), 3);
        assert_eq!(pr.open_overflow, 7);
    }

    #[test]
    fn peers_are_bounded_and_keep_the_heavy_one() {
        let p = p();
        let mut pr = Profile::new(t(0.0));
        for i in 0..50 {
            pr.on_call_started(
                &format!("a{i}"),
                Direction::Inbound,
                Some(sa("203.0.113.10:5060")),
                t(f64::from(i)),
                &p,
            );
            let other = format!("192.0.2.{}:5060", i + 1);
            pr.on_call_started(
                &format!("b{i}"),
                Direction::Outbound,
                Some(sa(&other)),
                t(f64::from(i)),
                &p,
            );
        }
        // Offers alone make no top peer: it is the peer of calls the line took part in.
        assert!(pr.top_peer().is_none());
        for i in 0..5 {
            pr.note_peer(sa("203.0.113.10:5060").ip(), &p, |x| {
                x.taken_in = x.taken_in.saturating_add(1)
            });
            let _ = i;
        }
        let top = pr.top_peer().unwrap();
        assert_eq!(top.ip, "203.0.113.10".parse::<IpAddr>().unwrap());
        assert!(!top.domestic);
        assert_eq!(pr.peers.iter().flatten().count(), 4);
    }
}
