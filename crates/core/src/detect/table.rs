//! The table of all line profiles: LRU-capped, idle-evicted, fed events in capture order,
//! re-scoring touched lines and forming sites.

use super::*;
use crate::config::NetworkConfig;
use crate::lines::{Profile, ProfileParams};
use crate::model::{Direction, Event, LineVerdict, Participation, Reason, Timestamp, VerdictLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Headline counters and profile figures of one line (JSON/HTTP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineSummary {
    /// The line's address.
    pub line: IpAddr,
    /// Capture time the line was first seen.
    pub first_seen: Timestamp,
    /// Capture time of the line's latest event.
    pub(crate) last_seen: Timestamp,
    /// Start of the first call or voice flow.
    pub first_call: Option<Timestamp>,
    /// Calls the line took part in over its lifetime: SIP calls plus opaque media sessions.
    pub calls: u64,
    /// SIP calls into the line over the medium window (`window_secs`).
    pub calls_in: u32,
    /// SIP calls out of the line over the medium window.
    pub calls_out: u32,
    pub(crate) calls_internal: u32,
    /// Inbound SIP calls from non-domestic peers over the medium window.
    pub calls_in_foreign: u32,
    pub(crate) calls_last_short_window: u32,
    pub(crate) calls_last_long_window: u32,
    pub(crate) answered_in: u32,
    pub(crate) ended_in: u32,
    /// Inbound calls (window) the line took part in: voice both ways (counted as soon as it
    /// flows, while the call runs), on a SIP-only tap an answer that lasted (counted as soon
    /// as it has, while the call runs), or early media it sent (counted when the call ends).
    /// The signals count these only.
    #[serde(default)]
    pub(crate) taken_in: u32,
    #[serde(default)]
    pub(crate) taken_in_foreign: u32,
    #[serde(default)]
    pub(crate) taken_in_answered: u32,
    pub(crate) answer_ratio_in: Option<f64>,
    pub(crate) median_talk_secs: Option<f64>,
    /// Most calls and opaque flows open at once.
    pub max_concurrent_calls: u32,
    /// Calls and opaque flows open now (at most `max_open_per_line`).
    pub(crate) open_calls: usize,
    /// Distinct called numbers over the medium window (HyperLogLog estimate, rounded).
    pub distinct_called_estimate: f64,
    /// The line's top peers (at most four).
    pub peers: Vec<PeerSummary>,
    /// Peers admitted to the top list so far (an upper estimate of distinct peers).
    pub peers_seen: u32,
    /// Most live accounts the line has registered to one registrar.
    pub accounts_registered: usize,
    /// REGISTER transactions from the line (lifetime).
    pub registrations: u32,
    pub(crate) user_agents_seen: u8,
    /// The first gateway fingerprint seen, as `field: value`.
    pub(crate) fingerprint: Option<String>,
    /// Codecs negotiated on the line's calls.
    pub(crate) codecs: Vec<String>,
    pub(crate) voice_flows_sip: u32,
    /// Voice-shaped media flows without readable SIP (lifetime).
    pub voice_flows_opaque: u64,
    pub(crate) max_opaque_flows_one_peer: u16,
    /// Media flows that ended without being voice-shaped.
    pub other_flows: u32,
    pub(crate) active_hours_utc: Vec<u8>,
}

/// One of a line's top peers, with its counts (halved once per medium window; a newcomer may
/// inherit part of the count of the peer it replaced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSummary {
    /// The peer's address.
    pub peer: IpAddr,
    /// Whether the peer is inside the domestic networks.
    pub(crate) domestic: bool,
    /// Inbound calls the peer offered the line (INVITEs, whatever the line did with them).
    pub calls_in: u16,
    /// Of `calls_in`, calls the line took part in.
    #[serde(default)]
    pub(crate) taken_in: u16,
    /// Outbound calls the line placed to the peer.
    pub calls_out: u16,
    /// Voice-shaped flows without readable SIP between the line and the peer.
    pub opaque_flows: u16,
}

/// What a sensor publishes about one line for a central correlator (bounded: no calls, no
/// packets): its verdict, its own score before any site (`base_score`, what makes it a site
/// candidate), the site key (top `peer` and `rhythm`), the reasons and the headline figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineEvidence {
    /// The line's address.
    pub line: IpAddr,
    /// The line's level.
    pub verdict: VerdictLevel,
    /// Final score 0..1, with the site signal.
    pub score: f64,
    /// The line's own score 0..1, before the site signal.
    pub base_score: f64,
    /// Capture time the line first became `gateway`.
    pub flagged_at: Option<Timestamp>,
    /// Id of the site the line belongs to.
    pub site: Option<String>,
    /// Capture time of the evaluation.
    pub updated: Timestamp,
    /// The peer that sent the line most of its calls and opaque flows.
    pub peer: Option<IpAddr>,
    /// The line's rhythm (median session length, answer ratio): with `peer`, the site key.
    pub rhythm: Option<Rhythm>,
    /// The signals behind the score, strongest first.
    pub reasons: Vec<Reason>,
    /// Headline counters and profile figures.
    pub summary: LineSummary,
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

/// One line: its address, profile and verdict state. Serializable, so that the daemon can
/// store lines one by one (`LineTable::take_changes`, `LineTable::restore_entry`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineEntry {
    ip: IpAddr,
    pub(super) profile: Profile,
    state: VerdictState,
    /// Changed since the last `take_changes` (change tracking only).
    #[serde(skip)]
    unsaved: bool,
}

impl LineEntry {
    /// Packet time of the line's latest event (microseconds).
    #[cfg(test)]
    pub(crate) fn last_seen(&self) -> i64 {
        self.profile.last_seen
    }
}

/// Lines changed and removed since the last `LineTable::take_changes`.
#[derive(Debug, Default)]
pub struct LineChanges {
    /// Lines changed since the last take, to be stored again.
    pub changed: Vec<IpAddr>,
    /// Lines removed (evicted or idle) since the last take, to be deleted from the store.
    pub removed: Vec<IpAddr>,
    /// The removal list overflowed: whoever stores the lines must rewrite them all.
    pub resync: bool,
}

/// Removed lines remembered between two `take_changes` before the table asks for a full
/// rewrite instead (bounds the list under a flood of new lines evicting old ones).
const MAX_REMOVED: usize = 1 << 20;

/// Shed lines remembered so that each counts once (beyond it, a line may count again).
const SHED_REMEMBERED: usize = 1 << 16;

/// Counters of the table kept across restarts with its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableCounters {
    pub(crate) last_eval: Timestamp,
    /// Lines evicted because the table was full (LRU).
    pub evictions: u64,
    pub(crate) idle_evictions: u64,
}

const NIL: u32 = u32::MAX;

/// A slab slot in the LRU list.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) entry: Option<LineEntry>,
    prev: u32,
    next: u32,
}

/// Slots of a slab in chunks of fixed size: growing never moves (copies) the lines already
/// held, and the slack is at most one chunk (a `Vec` grown by doubling copies every line
/// each time and holds up to as much again unused).
#[derive(Debug)]
pub(super) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }
    pub(super) fn len(&self) -> usize {
        self.len
    }
    pub(super) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> CHUNK_BITS)?.get(i & (CHUNK - 1))
    }
    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i >> CHUNK_BITS)?
            .get_mut(i & (CHUNK - 1))
    }
    fn push(&mut self, v: T) {
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(c) = self.chunks.last_mut() {
            c.push(v);
            self.len += 1;
        }
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
    /// Slots `from..to` (clamped to the slab).
    fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &T> {
        (from..to.min(self.len)).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(v) => v,
            None => panic!("slot {i} out of {}", self.len),
        }
    }
}

/// All line profiles: an LRU-capped table fed events in capture order.
#[derive(Debug)]
pub struct LineTable {
    cfg: DetectionConfig,
    pub(super) params: ProfileParams,
    pub(super) index: crate::model::FastMap<IpAddr, u32>,
    pub(super) slots: Slab<Slot>,
    free: Vec<u32>,
    /// Most recently used and least recently used slots.
    head: u32,
    tail: u32,
    dirty: Vec<u32>,
    evictions: u64,
    idle_evictions: u64,
    events_without_line: u64,
    /// New lines refused: the table was full of lines active within
    /// `full_table_min_idle_secs`, or the `new_lines_per_sec` budget was spent.
    shed_full: u64,
    shed_rate: u64,
    /// Lines refused lately (so that a line's later events do not count it again); cleared
    /// when it holds `SHED_REMEMBERED`.
    shed_seen: crate::model::FastMap<IpAddr, ()>,
    /// Admission budget left (lines) and the packet time it was last refilled.
    admit_tokens: f64,
    admit_at: Option<Timestamp>,
    /// Offers to lines without a profile (INVITEs they did not take, probes, one-way media):
    /// dropped here, they cost no memory.
    offers_to_unknown_lines: u64,
    /// Whether the tap has carried any media so far (else it is a SIP-only mirror, where an
    /// answered call cannot show voice).
    tap_media: bool,
    /// Latest time the table has been told of (events, `note_time`, `advance`): when a call
    /// reported before it ended was reported (see `SipOnlyAnswers::count`).
    latest: Timestamp,
    /// Inbound calls answered while the tap carried no media, late enough to count (see
    /// `SipOnlyAnswers`), by when they will have lasted long enough: (due, line, call key), in
    /// the order answered (so nearly in due order; one answered out of order waits for the one
    /// before). At most `max_lines`; an answer that finds it full counts at its end instead
    /// (`sip_only_answers_late`).
    sip_only_due: std::collections::VecDeque<(Timestamp, IpAddr, u32)>,
    sip_only_late: u64,
    last_eval: Timestamp,
    /// Lines that are suspect on their own evidence: site candidates (line -> peer, rhythm).
    candidates: BTreeMap<IpAddr, (IpAddr, Rhythm)>,
    /// Bumped whenever `candidates` changes (other engines need the new set).
    candidates_version: u64,
    /// Candidates of lines other engines own (the daemon's other workers): sites are formed over
    /// both sets, so a site spans every worker.
    remote: BTreeMap<IpAddr, (IpAddr, Rhythm)>,
    /// Lines whose verdict names a site (so that finding those that left one is not a scan of
    /// every line at every evaluation).
    sited: std::collections::BTreeSet<IpAddr>,
    /// Change tracking for incremental saving (off unless `track_changes`).
    tracking: bool,
    /// Lines by verdict (normal, suspect, gateway), kept as verdicts change.
    level_counts: [u64; 3],
    unsaved: Vec<IpAddr>,
    removed: Vec<IpAddr>,
    resync: bool,
}

impl LineTable {
    /// An empty table with `cfg`'s caps and weights; `net` says which peers are foreign.
    pub fn new(cfg: &DetectionConfig, net: &NetworkConfig) -> Self {
        LineTable {
            cfg: cfg.clone(),
            params: cfg.profile_params(net),
            index: crate::model::FastMap::default(),
            slots: Slab::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            dirty: Vec::new(),
            evictions: 0,
            idle_evictions: 0,
            events_without_line: 0,
            shed_full: 0,
            shed_rate: 0,
            shed_seen: crate::model::FastMap::default(),
            admit_tokens: 0.0,
            admit_at: None,
            offers_to_unknown_lines: 0,
            tap_media: false,
            latest: Timestamp::default(),
            sip_only_due: std::collections::VecDeque::new(),
            sip_only_late: 0,
            last_eval: Timestamp::default(),
            candidates: BTreeMap::new(),
            candidates_version: 0,
            remote: BTreeMap::new(),
            sited: std::collections::BTreeSet::new(),
            tracking: false,
            level_counts: [0; 3],
            unsaved: Vec::new(),
            removed: Vec::new(),
            resync: false,
        }
    }

    /// Lines with a verdict, by verdict (normal, suspect, gateway). O(1).
    pub fn level_counts(&self) -> [u64; 3] {
        self.level_counts
    }

    fn count_level(&mut self, level: Option<VerdictLevel>, add: bool) {
        if let Some(c) = level.and_then(|l| self.level_counts.get_mut(l as usize)) {
            *c = if add { *c + 1 } else { c.saturating_sub(1) };
        }
    }

    /// From now on, remember which lines change or go, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.tracking = true;
    }

    /// Lines changed (at most `max`) and removed since the last call; the rest stays for the
    /// next call. A changed line removed since is listed in both (it has no `entry`). O(returned).
    pub fn take_changes(&mut self, max: usize) -> LineChanges {
        let n = self.unsaved.len().min(max);
        let start = self.unsaved.len() - n;
        let changed: Vec<IpAddr> = self.unsaved.drain(start..).collect();
        for ip in &changed {
            if let Some(e) = self
                .index
                .get(ip)
                .and_then(|&i| self.slots.get_mut(i as usize))
                .and_then(|s| s.entry.as_mut())
            {
                e.unsaved = false;
            }
        }
        LineChanges {
            changed,
            removed: std::mem::take(&mut self.removed),
            resync: std::mem::take(&mut self.resync),
        }
    }

    /// Lines changed and not yet taken by `take_changes`.
    pub fn unsaved_lines(&self) -> usize {
        self.unsaved.len()
    }

    /// Every line counts as changed (after a failed save, or to rewrite the store).
    pub fn mark_all_unsaved(&mut self) {
        let all: Vec<u32> = self.index.values().copied().collect();
        for i in all {
            self.mark_unsaved(i);
        }
    }

    /// These lines count as changed again (their write failed); lines gone are skipped.
    pub fn mark_unsaved_lines(&mut self, ips: &[IpAddr]) {
        for ip in ips {
            if let Some(&i) = self.index.get(ip) {
                self.mark_unsaved(i);
            }
        }
    }

    fn mark_unsaved(&mut self, i: u32) {
        if !self.tracking {
            return;
        }
        if let Some(e) = self
            .slots
            .get_mut(i as usize)
            .and_then(|s| s.entry.as_mut())
        {
            if !e.unsaved {
                e.unsaved = true;
                self.unsaved.push(e.ip);
            }
        }
    }

    /// The stored form of one line.
    pub fn entry(&self, ip: IpAddr) -> Option<&LineEntry> {
        let &i = self.index.get(&ip)?;
        self.slots.get(i as usize)?.entry.as_ref()
    }

    /// Adds a stored line (not counted as changed; re-scored at its next event). A line
    /// already present is kept; a full table evicts its least recently used line first.
    /// Restore oldest first, so that the LRU order follows the lines' activity.
    pub fn restore_entry(&mut self, mut e: LineEntry) {
        if self.index.contains_key(&e.ip) {
            return;
        }
        while self.index.len() >= self.cfg.max_lines.max(1) {
            self.evict_tail(false);
        }
        e.state.dirty = false;
        e.unsaved = false;
        let ip = e.ip;
        self.count_level(e.state.level, true);
        if e.state.site.is_some() {
            self.sited.insert(ip);
        }
        let slot = Slot {
            entry: Some(e),
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(ip, i);
        self.push_front(i);
        // Not marked for re-scoring: the stored verdict stands until the line's next event
        // (re-scoring a million restored lines at once would hold the engine for seconds).
    }

    /// Room for `n` more lines (up to `max_lines`) without growing (before a restore).
    pub fn reserve(&mut self, n: usize) {
        let n = n.min(self.cfg.max_lines.saturating_sub(self.index.len()));
        self.slots.chunks.reserve(n / CHUNK + 1);
        self.index.reserve(n);
    }

    /// Every line, least recently used first (consumes the table: the migration of a saved
    /// JSON table into the running one).
    pub fn into_entries(mut self) -> Vec<LineEntry> {
        let mut out = Vec::with_capacity(self.index.len());
        let mut i = self.tail;
        while let Some(s) = self.slots.get_mut(i as usize) {
            i = s.prev;
            if let Some(e) = s.entry.take() {
                out.push(e);
            }
        }
        out
    }

    /// Re-links the LRU list by the lines' last activity (after restoring lines in another
    /// order): the idle sweep and eviction take the longest-idle line first again.
    pub fn sort_lru_by_activity(&mut self) {
        let mut order: Vec<(i64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.entry.as_ref().map(|e| (e.profile.last_seen, i as u32)))
            .collect();
        order.sort_unstable();
        self.head = NIL;
        self.tail = NIL;
        for (_, i) in order {
            self.push_front(i);
        }
    }

    /// The counters to save with the lines (restored by `LineTable::restore_counters`).
    pub fn counters_state(&self) -> TableCounters {
        TableCounters {
            last_eval: self.last_eval,
            evictions: self.evictions,
            idle_evictions: self.idle_evictions,
        }
    }

    /// Adds restored counters (several stored tables may fold into one).
    pub fn restore_counters(&mut self, c: TableCounters) {
        self.last_eval = self.last_eval.max(c.last_eval);
        self.evictions += c.evictions;
        self.idle_evictions += c.idle_evictions;
    }

    /// Sort keys of up to `max` lines from slot `from` on: (verdict, score, line), and the slot
    /// to continue from (`None` at the end). Lets a reader list a million lines in short
    /// steps instead of one long hold of the engine.
    pub fn verdict_keys(
        &self,
        from: usize,
        max: usize,
    ) -> (Vec<(VerdictLevel, f64, IpAddr)>, Option<usize>) {
        let end = from.saturating_add(max).min(self.slots.len());
        let keys = self
            .slots
            .range(from, end)
            .filter_map(|s| s.entry.as_ref())
            .map(|e| {
                (
                    e.state.level.unwrap_or(VerdictLevel::Normal),
                    e.state.score,
                    e.ip,
                )
            })
            .collect();
        (keys, (end < self.slots.len()).then_some(end))
    }

    /// This table's site candidates: its lines that are suspect on their own evidence, with
    /// their peer and rhythm, in address order.
    pub fn site_candidates(&self) -> Vec<SiteCandidate> {
        self.candidates
            .iter()
            .map(|(line, (peer, rhythm))| SiteCandidate {
                line: *line,
                peer: *peer,
                rhythm: *rhythm,
            })
            .collect()
    }

    /// Changes whenever [`site_candidates`](Self::site_candidates) would return another set.
    pub fn candidates_version(&self) -> u64 {
        self.candidates_version
    }

    /// Replaces the candidates of lines that other engines own; sites are formed over them and
    /// this table's own at the next [`evaluate`](Self::evaluate) (a line this table holds keeps
    /// its own candidacy). With none, sites are this table's alone.
    pub fn set_remote_candidates(&mut self, remote: impl IntoIterator<Item = SiteCandidate>) {
        self.remote = remote
            .into_iter()
            .filter(|c| !self.index.contains_key(&c.line))
            .map(|c| (c.line, (c.peer, c.rhythm)))
            .collect();
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

    /// The configuration the table scores with.
    pub fn config(&self) -> &DetectionConfig {
        &self.cfg
    }
    /// Lines in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }
    /// Whether the table holds no line.
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
        c.add("offers_to_unknown_lines", self.offers_to_unknown_lines);
        c.add("lines_shed_table_full", self.shed_full);
        c.add("lines_shed_rate", self.shed_rate);
        c.add("sip_only_answers_late", self.sip_only_late);
        c
    }

    /// New lines shed so far (table full of active lines, or over the admission budget).
    pub fn lines_shed(&self) -> u64 {
        self.shed_full + self.shed_rate
    }

    /// Whether a new line may be created at `ts` (counts it when not): the admission budget,
    /// then room in the table (evicting a line idle long enough). O(1) but for the eviction.
    fn admit(&mut self, ip: IpAddr, ts: Timestamp) -> bool {
        match self.admission(ts) {
            Ok(()) => true,
            Err(full) => {
                if self.shed_seen.len() >= SHED_REMEMBERED {
                    self.shed_seen.clear();
                }
                if self.shed_seen.insert(ip, ()).is_none() {
                    if full {
                        self.shed_full += 1;
                    } else {
                        self.shed_rate += 1;
                    }
                }
                false
            }
        }
    }

    /// `Err(true)`: the table is full of active lines; `Err(false)`: over the budget.
    fn admission(&mut self, ts: Timestamp) -> Result<(), bool> {
        let rate = f64::from(self.cfg.new_lines_per_sec);
        if rate > 0.0 {
            let burst = rate * 60.0;
            let dt = match self.admit_at {
                Some(at) => (ts.0.saturating_sub(at.0)).max(0) as f64 / 1e6,
                None => f64::INFINITY,
            };
            if self.admit_at.is_none_or(|at| ts > at) {
                self.admit_at = Some(ts);
            }
            self.admit_tokens = (self.admit_tokens + dt * rate).min(burst);
            if self.admit_tokens < 1.0 {
                return Err(false);
            }
        }
        let min_idle = i64::from(self.cfg.full_table_min_idle_secs) * 1_000_000;
        while self.index.len() >= self.cfg.max_lines.max(1) {
            let idle_enough = self
                .slots
                .get(self.tail as usize)
                .and_then(|s| s.entry.as_ref())
                .is_some_and(|e| ts.0.saturating_sub(e.profile.last_seen) >= min_idle);
            if !idle_enough {
                return Err(true);
            }
            self.evict_tail(false);
        }
        if rate > 0.0 {
            self.admit_tokens -= 1.0;
        }
        Ok(())
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
            self.sited.remove(&e.ip);
            if self.candidates.remove(&e.ip).is_some() {
                self.candidates_version += 1;
            }
            self.count_level(e.state.level, false);
            if self.tracking {
                if self.removed.len() >= MAX_REMOVED {
                    // Too many to list: the store is rewritten whole instead.
                    self.removed.clear();
                    self.resync = true;
                } else {
                    self.removed.push(e.ip);
                }
            }
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
        self.mark_unsaved(i);
    }

    /// The slot of `ip`, created (evicting the least recently used line when full) and moved to
    /// the front.
    fn slot_for(&mut self, ip: IpAddr, ts: Timestamp) -> Option<u32> {
        if let Some(&i) = self.index.get(&ip) {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return Some(i);
        }
        if !self.admit(ip, ts) {
            return None;
        }
        let entry = LineEntry {
            ip,
            profile: Profile::new(ts),
            state: VerdictState::default(),
            unsaved: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    s.entry = Some(entry);
                }
                i
            }
            None => {
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
        Some(i)
    }

    /// The latest packet time is `now` (a call reported without an end lasted until then).
    pub fn note_time(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
    }

    /// Whether answers on a tap without media wait to fall due (see `advance`).
    pub fn awaits_sip_only_answers(&self) -> bool {
        !self.sip_only_due.is_empty()
    }

    /// Every call that ended by `ended_by` has been reported (fed as `CallEnded`; see
    /// `Tracker::ends_reported_until`): the answers on a tap without media that have lasted by
    /// then and are still open ran that long, and count as taken
    /// (`Profile::on_sip_only_answer_due`). O(1) when none is due.
    pub fn advance(&mut self, ended_by: Timestamp) {
        self.note_time(ended_by);
        while let Some(&(due, ip, key)) = self.sip_only_due.front() {
            if due > ended_by {
                break;
            }
            self.sip_only_due.pop_front();
            if self.tap_media {
                // Media showed up since: answers must carry voice to count (`took_part`).
                self.sip_only_due.clear();
                break;
            }
            let Some(&i) = self.index.get(&ip) else {
                continue;
            };
            let params = &self.params;
            let counted = self
                .slots
                .get_mut(i as usize)
                .and_then(|s| s.entry.as_mut())
                .is_some_and(|e| e.profile.on_sip_only_answer_due(key, due, params));
            if counted {
                if self.head != i {
                    self.unlink(i);
                    self.push_front(i);
                }
                self.mark_dirty(i);
            }
        }
    }

    /// An inbound call answered on line `ip` (its session opened): where the tap has carried
    /// no media and the answer came late enough, it is to count once it has lasted.
    fn await_sip_only_answer(
        &mut self,
        ip: IpAddr,
        call_id: &str,
        invited: Timestamp,
        ts: Timestamp,
    ) {
        let rule = &self.params.sip_only;
        if self.tap_media || !rule.rang_long_enough(invited, ts) {
            return;
        }
        if self.sip_only_due.len() >= self.cfg.max_lines.max(1) {
            self.sip_only_late += 1;
            return;
        }
        let due = rule.due(ts);
        self.sip_only_due
            .push_back((due, ip, crate::lines::call_key(call_id)));
    }

    /// Feeds one event (capture order).
    pub fn on_event(&mut self, ev: &Event) {
        // Any RTP or voice flow, whoever sent it, shows the tap carries media.
        self.tap_media |= match ev {
            Event::CallEnded(r) => !r.rtp.is_empty(),
            Event::MediaStarted { .. } => true,
            Event::MediaEnded(r) => r.rtp || r.voice_like,
            _ => false,
        };
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
        // Only the line's own doing creates its profile. Offers (INVITEs it rejected or
        // ignored, probes aimed at it, media it did not answer) update a line already known and
        // are otherwise dropped: a flood of offers costs no memory here.
        let own = match ev {
            Event::CallStarted { direction, .. } => *direction != Direction::Inbound,
            Event::CallAnswered { .. } | Event::MediaStarted { .. } => true,
            Event::CallEnded(r) => {
                r.direction != Direction::Inbound
                    || r.participation.relayed()
                    || r.participation == Participation::AnsweredNoMedia
            }
            Event::Registration(r) => r.line == Some(r.source.ip()),
            // A flow the line sent packets on (voice or not); one-way floods at it are not.
            Event::MediaEnded(r) => r.voice_like || r.packets_out > 0,
            Event::Probe(_) => false,
        };
        // A profile made by the line's part in an inbound call: that call's offer came while
        // the line was unknown.
        let fresh = own && !self.index.contains_key(&ip);
        let i = if own {
            match self.slot_for(ip, ts) {
                Some(i) => i,
                None => return,
            }
        } else {
            match self.index.get(&ip) {
                Some(&i) => i,
                None => {
                    self.offers_to_unknown_lines += 1;
                    return;
                }
            }
        };
        self.note_time(ts);
        let params = &self.params;
        let tap_media = self.tap_media;
        let reported = self.latest;
        // An answered inbound call now open on the line: (call id, INVITE, answer).
        let mut answered = None;
        if let Some(e) = self
            .slots
            .get_mut(i as usize)
            .and_then(|s| s.entry.as_mut())
        {
            let p = &mut e.profile;
            if fresh {
                match ev {
                    Event::CallAnswered {
                        call_id,
                        direction: Direction::Inbound,
                        peer,
                        invited,
                        ..
                    } => p.offer_before_profile(call_id, Some((*peer, *invited)), params),
                    Event::CallEnded(r) if r.direction == Direction::Inbound => {
                        p.offer_before_profile(&r.call_id, Some((r.peer, r.start)), params)
                    }
                    Event::MediaStarted {
                        call_id: Some(id), ..
                    } => p.offer_before_profile(id, None, params),
                    _ => {}
                }
            }
            match ev {
                Event::CallStarted {
                    call_id,
                    direction,
                    peer,
                    ts,
                    ..
                } => p.on_call_started(call_id, *direction, *peer, *ts, params),
                Event::CallEnded(r) => p.on_call_ended(r, reported, params, tap_media),
                Event::Registration(r) => p.on_registration(r, params),
                Event::MediaStarted {
                    local,
                    remote,
                    call_id,
                    ts,
                    ..
                } => p.on_media_started(*local, *remote, call_id.as_deref(), *ts, params),
                Event::MediaEnded(r) => p.on_media_ended(r, params),
                Event::Probe(_) => {}
                Event::CallAnswered {
                    call_id,
                    direction,
                    peer,
                    called,
                    invited,
                    ts,
                    ..
                } => {
                    let open = p.on_call_answered(
                        call_id,
                        *direction,
                        *peer,
                        called.as_deref(),
                        *invited,
                        *ts,
                        params,
                    );
                    if open {
                        answered = Some((call_id.as_str(), *invited, *ts));
                    }
                }
            }
        }
        if let Some((call_id, invited, ts)) = answered {
            self.await_sip_only_answer(ip, call_id, invited, ts);
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
                    if self.candidates.insert(ip, k) != Some(k) {
                        self.candidates_version += 1;
                    }
                }
                _ => {
                    if self.candidates.remove(&ip).is_some() {
                        self.candidates_version += 1;
                    }
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
        let left = self
            .sited
            .iter()
            .filter(|ip| !sites.contains_key(*ip))
            .filter_map(|ip| self.index.get(ip).copied());
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

    /// Sites among the candidates (see [`site_groups`]): this table's and other engines'
    /// (`remote`) together, so every engine forms the same sites.
    fn sites(&self) -> BTreeMap<IpAddr, (String, usize)> {
        if self.remote.is_empty() {
            return site_groups(&self.candidates, self.cfg.site_min_lines);
        }
        let mut all = self.remote.clone();
        all.extend(self.candidates.iter().map(|(k, v)| (*k, *v)));
        site_groups(&all, self.cfg.site_min_lines)
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
            sigs.push(site_signal(name, *size, &peer));
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
        let (old, new) = (prev.level, st.level);
        let e = self.slots.get_mut(i as usize)?.entry.as_mut()?;
        e.state = st;
        if e.state.site.is_some() {
            self.sited.insert(e.ip);
        } else {
            self.sited.remove(&e.ip);
        }
        let v = changed.then(|| verdict_of(e));
        if old != new {
            self.count_level(old, false);
            self.count_level(new, true);
        }
        if changed {
            // A re-score that changes nothing shown is not worth rewriting the stored line.
            self.mark_unsaved(i);
        }
        v
    }

    /// The verdict of one line (O(1)).
    pub fn verdict(&self, ip: IpAddr) -> Option<LineVerdict> {
        let &i = self.index.get(&ip)?;
        self.slots.get(i as usize)?.entry.as_ref().map(verdict_of)
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
            calls_last_long_window: l.calls + u32::from(l.opaque_flows),
            answered_in: w.in_answered.into(),
            ended_in: w.in_ended.into(),
            taken_in: w.in_taken.into(),
            taken_in_foreign: w.in_taken_foreign.into(),
            taken_in_answered: w.in_taken_answered.into(),
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
                    taken_in: x.taken_in,
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

    /// What a central correlator needs of one line (see [`LineEvidence`]).
    pub fn evidence(&self, ip: IpAddr) -> Option<LineEvidence> {
        let &i = self.index.get(&ip)?;
        let e = self.slots.get(i as usize)?.entry.as_ref()?;
        let now = self.last_eval.max(Timestamp(e.profile.last_seen));
        let c = self.ctx(now);
        let v = verdict_of(e);
        Some(LineEvidence {
            line: ip,
            verdict: v.verdict,
            score: v.score,
            base_score: e.state.base_score,
            flagged_at: v.flagged_at,
            site: v.site,
            updated: v.updated,
            peer: e.profile.top_peer().map(|x| x.ip),
            rhythm: Some(rhythm(&e.profile, &c)),
            reasons: v.reasons,
            summary: self.line_summary(ip)?,
        })
    }

    /// Evidence of the lines re-scored after `since` that have any score (a line with none
    /// has nothing to correlate), at most `limit`.
    pub fn evidence_since(&self, since: Timestamp, limit: usize) -> Vec<LineEvidence> {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .filter(|e| {
                e.state.updated > since && (e.state.score > 0.0 || e.state.base_score > 0.0)
            })
            .take(limit)
            .filter_map(|e| self.evidence(e.ip))
            .collect()
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
        peer: e.profile.top_peer().map(|x| x.ip),
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
            t.count_level(e.state.level, true);
            if e.state.site.is_some() {
                t.sited.insert(ip);
            }
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
